"""The one clock aegis reads. Decision functions take ``now`` instead of calling this."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
