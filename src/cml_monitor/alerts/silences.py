"""Silences: an operator's "I know, don't tell me" for a worker, a kind, or both, until a time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    worker_id: str | None
    kind: str | None
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_at: datetime

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, worker_id: str, kind: str) -> bool:
        return (self.worker_id is None or self.worker_id == worker_id) and (
            self.kind is None or self.kind == kind
        )


def is_silenced(silences: list[Silence], worker_id: str, kind: str, now: datetime) -> bool:
    return any(s.active(now) and s.matches(worker_id, kind) for s in silences)
