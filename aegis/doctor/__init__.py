"""``aegis doctor``: the checks of an installation (report.py runs them in order) — the
database and clock (database.py), the Docker engine and what it runs (engine.py, with the
pure host linter in hostlint.py, and the jobs containers declare in labeljobs.py), the
notification channels (channels.py), the journal folder and the daemon (local.py) — each
an ok, warn or fail with its one-line fix (checks.py)."""
