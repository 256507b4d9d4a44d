"""FastAPI dependencies: each route asks for the one use case (or part) it needs."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from cml_monitor.runtime import MonitorRuntime
from cml_monitor.usecases import ActionOperations, AlertOperations, WorkerOperations


def get_runtime(request: Request) -> MonitorRuntime:
    return request.app.state.runtime


def get_workers(request: Request) -> WorkerOperations:
    return get_runtime(request).workers


def get_alerting(request: Request) -> AlertOperations:
    return get_runtime(request).alert_operations


def get_actions(request: Request) -> ActionOperations:
    return get_runtime(request).action_operations


RuntimeDep = Annotated[MonitorRuntime, Depends(get_runtime)]
WorkersDep = Annotated[WorkerOperations, Depends(get_workers)]
AlertingDep = Annotated[AlertOperations, Depends(get_alerting)]
ActionsDep = Annotated[ActionOperations, Depends(get_actions)]
