"""The TOML file named by AEGIS_CONFIG: read, and its tables flattened to the dotted keys of
``OPTIONS`` (aegis/core/config.py). A file that cannot be read, or is not TOML, is a
ConfigError naming AEGIS_CONFIG; its ``[jobs.ID]`` tables are handed on as found, for
scheduling to parse (aegis/scheduling/job_settings.py), and its ``[[maintenance]]`` tables
for supervision (aegis/supervision/protocol/windows.py)."""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aegis.core.errors import ConfigError

# The array of [[maintenance]] tables: the recurring maintenance windows.
MAINTENANCE = "maintenance"


def read(env: Mapping[str, str]) -> tuple[Path | None, dict[str, Any]]:
    """The file AEGIS_CONFIG names, read as TOML (None and {} when it names none)."""
    name = env.get("AEGIS_CONFIG", "").strip()
    if not name:
        return None, {}
    path = Path(name).expanduser()
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError("AEGIS_CONFIG", f"cannot read {path}: {reason}") from None
    try:
        return path, tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("AEGIS_CONFIG", f"{path} is not valid TOML: {exc}") from None


def flatten(document: Mapping[str, Any], config_file: Path | None) -> dict[str, Any]:
    """``{"docker": {"scope": "all"}}`` -> ``{"docker.scope": "all"}``; ``jobs`` stays nested
    and the ``[[maintenance]]`` tables are left out (``maintenance_tables``)."""
    flat: dict[str, Any] = {}
    for key, value in document.items():
        if key == MAINTENANCE:
            continue
        if key == "jobs":
            if not isinstance(value, dict):
                raise ConfigError(f"{config_file}: jobs", "must be a table of [jobs.ID] tables")
            flat.update({f"jobs.{k}": v for k, v in value.items()})
        elif isinstance(value, dict):
            for sub_key, sub_value in value.items():
                flat[f"{key}.{sub_key}"] = sub_value
        else:
            flat[key] = value
    return flat


def maintenance_tables(document: Mapping[str, Any], config_file: Path | None
                       ) -> tuple[Any, ...]:
    """The file's ``[[maintenance]]`` tables as found, for supervision to parse
    (aegis/supervision/protocol/windows.py)."""
    tables = document.get(MAINTENANCE, [])
    if not isinstance(tables, list):
        raise ConfigError(f"{config_file}: {MAINTENANCE}",
                          "must be an array of [[maintenance]] tables")
    return tuple(tables)


def unknown_key(key: str, known: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f"unknown key (did you mean {close[0]}?)" if close else "unknown key"
