"""EC2 scheduled events: a retirement, reboot or maintenance AWS has planned for an instance.

They come with the status call the monitor already makes (`Events` of `DescribeInstanceStatus`),
so knowing them costs nothing. AWS keeps an event in the list for a while after it is done or
cancelled, with its description prefixed "[Completed]" or "[Canceled]": those are not pending.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .times import from_iso, to_iso

_FINISHED_PREFIXES = ("[Completed]", "[Canceled]", "[Cancelled]")


@dataclass(frozen=True, slots=True)
class ScheduledEvent:
    code: str
    description: str | None
    not_before: datetime | None
    not_after: datetime | None

    @property
    def pending(self) -> bool:
        return not (self.description or "").startswith(_FINISHED_PREFIXES)

    def summary(self) -> str:
        """ "instance-retirement from 2026-12-01 10:00 UTC", for alerts and logs."""
        when = self.not_before.astimezone(UTC).strftime(" from %Y-%m-%d %H:%M UTC") if self.not_before else ""
        return f"{self.code}{when}"

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "description": self.description,
            "not_before": to_iso(self.not_before),
            "not_after": to_iso(self.not_after),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScheduledEvent:
        return cls(
            code=data["code"],
            description=data.get("description"),
            not_before=from_iso(data.get("not_before")),
            not_after=from_iso(data.get("not_after")),
        )
