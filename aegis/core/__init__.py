"""What every layer of aegis needs: no aegis dependency, and no I/O beyond reading the
environment and the TOML file it names.

Settings: ``config`` (``Settings``, the ``OPTIONS`` table and how they load),
``parsing`` (the parsers of one value), ``toml_file`` (the TOML file AEGIS_CONFIG
names), ``autoheal`` (docker-autoheal's variables read as aegis's own) and
``config_doc`` (the configuration reference, rendered from ``OPTIONS``). Per-job settings
are read here and parsed by scheduling (aegis/scheduling/job_settings.py). Beside them:
``errors``, ``clock`` and ``durations``, ``logs``, ``redact``, ``jsonable`` and
``processes``.
"""
