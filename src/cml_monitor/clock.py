"""One injectable clock, so that tests make time pass without sleeping."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from cml_monitor.domain.times import to_iso

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The current time, always timezone-aware UTC."""
    return datetime.now(UTC)


def isoformat(value: datetime | None) -> str | None:
    """ISO 8601 with a `Z` suffix: the format of every timestamp in our JSON contracts."""
    return to_iso(value)
