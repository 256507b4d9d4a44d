"""An action on a customer's instance (stop, start, reboot), as the audit trail keeps it.

Written `pending` before it is attempted and finished with its result, so a crash in between
leaves a trace that the next start reconciles with what EC2 shows. A pending action belongs to
the replica that wrote it (`owner`) for as long as that replica renews its lease (`lease_until`):
another replica that starts meanwhile must leave it alone, or it would release the
one-pending-action guard while the owner still acts.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from .times import to_iso


class ActionKind(StrEnum):
    STOP = "stop"
    START = "start"
    REBOOT = "reboot"


class ActionReason(StrEnum):
    IDLE = "idle"
    STATUS_CHECK_IMPAIRED = "status_check_impaired"
    MANUAL = "manual"


class ActionResult(StrEnum):
    PENDING = "pending"
    OK = "ok"
    FAILED = "failed"
    DRY_RUN = "dry_run"
    SKIPPED = "skipped"


AUTO = "auto"  # the actor of automatic actions
LOCAL = "local"  # the actor of manual actions when the API has no authentication
DETAIL_LENGTH = 1024  # the audit trail's column
REASON_LENGTH = 300


@dataclass(frozen=True, slots=True)
class Action:
    id: str
    worker_id: str
    kind: ActionKind
    reason: ActionReason
    actor: str
    dry_run: bool
    requested_at: datetime
    finished_at: datetime | None = None
    result: ActionResult = ActionResult.PENDING
    detail: str | None = None
    owner: str | None = None  # the replica acting on it; None on rows written before owners
    lease_until: datetime | None = None  # the owner renews this while it acts

    @classmethod
    def request(
        cls,
        worker_id: str,
        kind: ActionKind,
        reason: ActionReason,
        actor: str,
        *,
        dry_run: bool,
        now: datetime,
        owner: str | None = None,
        lease_until: datetime | None = None,
        comment: str | None = None,
    ) -> Action:
        """A pending action; a person's `comment` (why they act) is kept at the head of `detail`,
        ahead of the outcome, so the audit trail says why as well as what happened."""
        detail = f"reason: {comment.strip()[:REASON_LENGTH]}" if comment and comment.strip() else None
        return cls(
            str(uuid.uuid4()),
            worker_id,
            kind,
            reason,
            actor,
            dry_run,
            now,
            detail=detail,
            owner=owner,
            lease_until=lease_until,
        )

    def orphaned(self, now: datetime) -> bool:
        """Pending with nobody acting on it any more: its owner's lease ran out (or it has none)."""
        return self.lease_until is None or self.lease_until <= now

    @property
    def automatic(self) -> bool:
        return self.actor == AUTO

    def finish(self, result: ActionResult, detail: str | None, now: datetime) -> Action:
        if self.result is ActionResult.PENDING and self.detail:  # the person's reason stays first
            detail = f"{self.detail} — {detail}" if detail else self.detail
        return replace(
            self, result=result, detail=detail[:DETAIL_LENGTH] if detail else detail, finished_at=now
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "worker_id": self.worker_id,
            "kind": self.kind.value,
            "reason": self.reason.value,
            "actor": self.actor,
            "dry_run": self.dry_run,
            "requested_at": to_iso(self.requested_at),
            "finished_at": to_iso(self.finished_at),
            "result": self.result.value,
            "detail": self.detail,
        }
