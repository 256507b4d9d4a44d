"""Timestamps in our JSON contracts: ISO 8601 in UTC with a `Z` suffix; dates from elsewhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# How far ahead of our clock a date from a controller or AWS may be and still be believed: the
# clocks differ by seconds. A later one (an event dated 9999, a controller whose clock jumped)
# would make a worker look busy, or seen, for ever.
FUTURE_SKEW = timedelta(minutes=5)


def to_iso(value: datetime | None) -> str | None:
    """ISO 8601 with a `Z` suffix: the format of every timestamp in our JSON contracts."""
    if value is None:
        return None
    if value.tzinfo is UTC:  # ours nearly always are: a fifth cheaper than converting
        return value.isoformat()[:-6] + "Z"
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def from_iso(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def believable(value: datetime | None, now: datetime) -> datetime | None:
    """The date, or None when it lies further in the future than clocks can differ."""
    return None if value is None or value > now + FUTURE_SKEW else value
