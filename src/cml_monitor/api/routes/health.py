"""`/health` (the process answers), `/ready` (database and job store answer), `/metrics`."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cml_monitor.readiness import all_healthy

from ..deps import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "a dependency does not answer"}})
async def ready(runtime: RuntimeDep) -> JSONResponse:
    checks = await runtime.readiness()
    healthy = all_healthy(checks)  # a degraded check is said, not fatal: the service still does its job
    return JSONResponse(
        {
            "status": "ready" if healthy else "not ready",
            "checks": {check.name: check.text for check in checks},
        },
        status_code=200 if healthy else 503,
    )


@router.get("/metrics", response_class=Response)
async def metrics(runtime: RuntimeDep) -> Response:
    runtime.metrics.asyncio_tasks.set(len(asyncio.all_tasks()))
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)
