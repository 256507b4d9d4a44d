"""What acting on workers needs of the outside world; `storage`, `aws` and `cml` implement it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from cml_monitor.domain import ControllerReading, Silence, Worker
from cml_monitor.domain.actions import Action, ActionKind


class ActionStore(Protocol):
    async def record(self, action: Action) -> bool: ...

    async def finish(self, action: Action) -> None: ...

    async def pending(self) -> list[Action]: ...

    async def renew(self, action_id: str, owner: str, until: datetime) -> bool: ...

    async def settle(self, action: Action, now: datetime) -> bool: ...

    async def latest(self, worker_ids: Sequence[str], kind: ActionKind) -> dict[str, Action]: ...

    async def count_automatic_since(self, since: datetime) -> int: ...


class Workers(Protocol):
    async def get_by_id_async(self, worker_id: str) -> Worker | None: ...

    async def update_async(self, worker: Worker) -> None: ...


class Instances(Protocol):
    async def change_instance_state(self, aws_region: str, instance_id: str, action: str) -> str: ...

    async def describe_instance_statuses(
        self, aws_region: str, instance_ids: Sequence[str]
    ) -> dict[str, Any]: ...


class Controllers(Protocol):
    async def read_controller(
        self, cml_url: str, *, licensing: bool = False, activity: bool = False, fresh_labs: bool = False
    ) -> ControllerReading: ...


class Notices(Protocol):
    """CML system notices: a banner every user of the controller sees."""

    async def post_notice(self, cml_url: str, *, level: str, label: str, content: str) -> str: ...

    async def delete_notice(self, cml_url: str, notice_id: str) -> None: ...


class Silences(Protocol):
    async def list_silences(self, *, active_at: datetime | None = None) -> list[Silence]: ...
