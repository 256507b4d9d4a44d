"""The FastAPI app factory: the one place that wires every part together."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from opentelemetry import trace
from sqlalchemy.exc import SQLAlchemyError

from cml_monitor import __version__
from cml_monitor.aws import AwsEc2Client
from cml_monitor.clock import Clock, utcnow
from cml_monitor.cml import CmlControllerClient
from cml_monitor.settings import Settings, load_settings
from cml_monitor.storage import StorageError

from .auth import TokenAuthenticator
from .limits import BodySizeLimitMiddleware
from .routes import alerts, events, health, monitoring, workers
from .services import Services, build_services

logger = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"


def create_app(
    settings: Settings | None = None,
    *,
    aws_client: AwsEc2Client | None = None,
    cml_client: CmlControllerClient | None = None,
    clock: Clock = utcnow,
    tracer: trace.Tracer | None = None,
) -> FastAPI:
    """Build the app; services are created here and started/stopped by the lifespan."""
    settings = settings or load_settings()
    services = build_services(
        settings, aws_client=aws_client, cml_client=cml_client, clock=clock, tracer=tracer
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await services.start()
        logger.info("CML Worker Monitor %s ready", __version__)
        try:
            yield
        finally:
            logger.info("Shutting down")
            await services.close()

    app = FastAPI(
        title="CML Worker Monitor",
        version=__version__,
        description="Monitors Cisco Modeling Labs workers on AWS EC2.",
        lifespan=lifespan,
    )
    app.state.services = services
    authenticate = Depends(TokenAuthenticator(settings.api_token_roles))
    for router in (workers.router, monitoring.router, alerts.router, events.router):
        app.include_router(router, dependencies=[authenticate])
    app.include_router(health.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        """The dashboard: static files shipped with the package, no CDN, no build step."""
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.exception_handler(StorageError)
    @app.exception_handler(SQLAlchemyError)
    async def storage_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        logger.error("Database error: %s", exc)
        return JSONResponse({"detail": "the database is unavailable; try again"}, status_code=503)

    app.add_middleware(BodySizeLimitMiddleware)
    return app


def services_of(app: FastAPI) -> Services:
    return app.state.services
