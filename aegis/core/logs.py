"""structlog, configured once at the CLI entry (or by ``aegis.connect``)."""

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

from aegis.core.config import OPTIONS, LogFormat, Settings
from aegis.core.redact import redact

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def secret_values(settings: Settings) -> list[str]:
    """Every secret value configured, for redaction."""
    values: list[str] = []
    for option in OPTIONS:
        if not option.secret:
            continue
        value = getattr(settings, option.field)
        if isinstance(value, str):
            values.append(value)
        elif isinstance(value, tuple):
            values.extend(value)
    return values


class Redactor:
    """A structlog processor that masks secrets in every string value of an event."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = [s for s in secrets if s]

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]
                 ) -> MutableMapping[str, Any]:
        for key, value in event.items():
            if isinstance(value, str):
                event[key] = redact(value, self.secrets)
            elif isinstance(value, BaseException):
                event[key] = redact(repr(value), self.secrets)
        return event


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    log_format = settings.log_format
    if log_format == LogFormat.AUTO:
        log_format = LogFormat.CONSOLE if stream.isatty() else LogFormat.JSON
    renderer: Any
    if log_format == LogFormat.CONSOLE:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    elif log_format == LogFormat.LOGFMT:
        renderer = structlog.processors.LogfmtRenderer(
            key_order=["timestamp", "level", "event"], bool_as_flag=False
        )
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            Redactor(secret_values(settings)),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[settings.log_level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(**initial: Any) -> Any:
    return structlog.get_logger("aegis", **initial)
