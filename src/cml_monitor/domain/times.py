"""Timestamps in our JSON contracts: ISO 8601 in UTC with a `Z` suffix."""

from __future__ import annotations

from datetime import UTC, datetime


def to_iso(value: datetime | None) -> str | None:
    """ISO 8601 with a `Z` suffix: the format of every timestamp in our JSON contracts."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def from_iso(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)
