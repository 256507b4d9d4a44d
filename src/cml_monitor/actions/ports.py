"""What acting on workers needs of the outside world; `storage`, `aws` and `cml` implement it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from cml_monitor.domain import ControllerReading, Silence, Worker
from cml_monitor.domain.actions import Action, ActionKind


class ActionStore(Protocol):
    """The audit trail of actions. Every method raises what the database raises."""

    async def record(self, action: Action) -> bool:
        """Write a pending action before it is taken; False (nothing written) when the worker
        already has an action in flight, so two actions on one worker never overlap."""
        ...

    async def finish(self, action: Action) -> None:
        """Write the action's result, detail and finish time."""
        ...

    async def pending(self) -> list[Action]:
        """Every action recorded but not finished (a crash came between), in no particular order."""
        ...

    async def renew(self, action_id: str, owner: str, until: datetime) -> bool:
        """Extend the owner's lease on its pending action to `until`; False (nothing written)
        once the action is no longer pending or no longer this owner's."""
        ...

    async def settle(self, action: Action, now: datetime) -> bool:
        """Finish a pending action of an owner gone silent, only if its lease has expired at
        `now` (checked in the same statement as the write); False when its owner kept it."""
        ...

    async def latest(self, worker_ids: Sequence[str], kind: ActionKind) -> dict[str, Action]:
        """Each worker's most recent action of this kind, by worker id; absent when it has none."""
        ...

    async def count_automatic_since(self, since: datetime) -> int:
        """Automatic actions (not dry runs, not skipped) requested since then: the hourly cap."""
        ...


class Workers(Protocol):
    async def get_by_id_async(self, worker_id: str) -> Worker | None:
        """The worker, or None when it was removed; raises what the database raises."""
        ...

    async def update_async(self, worker: Worker) -> None:
        """Write the worker's row as it is now; raises what the database raises."""
        ...


class Instances(Protocol):
    async def change_instance_state(self, aws_region: str, instance_id: str, action: str) -> str:
        """`start`, `stop` or `reboot` the instance; returns the state EC2 reports right after.
        Raises `AwsError` when AWS refuses or fails after its retries."""
        ...

    async def describe_instance_statuses(
        self, aws_region: str, instance_ids: Sequence[str]
    ) -> dict[str, Any]:
        """Each instance's state and checks by id (`found=False` for one EC2 does not know);
        raises `AwsError` when AWS fails after its retries."""
        ...


class Controllers(Protocol):
    async def read_controller(
        self, cml_url: str, *, licensing: bool = False, activity: bool = False, fresh_labs: bool = False
    ) -> ControllerReading:
        """What the controller says now (`fresh_labs`: every lab's state re-read, no cached
        count); never raises for the controller's sake: failures come back as `reachable=False`."""
        ...


class Notices(Protocol):
    """CML system notices: a banner every user of the controller sees."""

    async def post_notice(self, cml_url: str, *, level: str, label: str, content: str) -> str:
        """Post a notice to every user of the controller; returns its id. Raises
        `CmlControllerError` when the controller does not take it."""
        ...

    async def delete_notice(self, cml_url: str, notice_id: str) -> None:
        """Remove the notice; one already gone is fine. Raises `CmlControllerError` otherwise."""
        ...


class Silences(Protocol):
    async def list_silences(self, *, active_at: datetime | None = None) -> list[Silence]:
        """Silences, newest first; only those in force at `active_at` when given."""
        ...
