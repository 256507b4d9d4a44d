"""Whether an open silence mutes a notification (the silence itself is a domain value)."""

from __future__ import annotations

from datetime import datetime

from cml_monitor.domain import Silence


def is_silenced(silences: list[Silence], worker_id: str | None, kind: str, now: datetime) -> bool:
    return any(s.active(now) and s.matches(worker_id, kind) for s in silences)
