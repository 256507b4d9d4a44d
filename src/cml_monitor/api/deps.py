"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from fastapi import HTTPException, Request

from cml_monitor.domain import Worker

from .services import Services
from .validation import looks_like_worker_id


def get_services(request: Request) -> Services:
    return request.app.state.services


async def load_worker(services: Services, worker_id: str) -> Worker:
    """The worker, or 404. Ids that cannot be ours never reach the database."""
    worker = await services.repository.get_by_id_async(worker_id) if looks_like_worker_id(worker_id) else None
    if worker is None:
        raise HTTPException(404, detail=f"worker {worker_id!r} not found")
    return worker
