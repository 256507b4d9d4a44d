"""The FastAPI app factory: HTTP on top of a `MonitorRuntime` (which the lifespan enters)."""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from fastapi import Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPBearer, OpenIdConnect
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from cml_monitor import __version__
from cml_monitor.heap import freeze_startup_heap
from cml_monitor.runtime import MonitorRuntime, build_runtime
from cml_monitor.settings import Settings, load_settings
from cml_monitor.storage import StorageError
from cml_monitor.usecases import Conflict, InvalidInput, NotFound, UpstreamFailed

from .auth import Authenticator
from .limits import BodySizeLimitMiddleware
from .oidc import OidcVerifier
from .request_text import RequestTextMiddleware
from .routes import actions, alerts, events, health, me, monitoring, workers
from .security import SecurityHeadersMiddleware, dashboard_policy, origin_of

logger = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"
# The dashboard is ES modules, which browsers run only when served as JavaScript; the platform's
# table of types, which `StaticFiles` reads, may say otherwise (a Windows registry's `text/plain`).
mimetypes.add_type("text/javascript", ".js")


def create_app(
    settings: Settings | None = None, *, runtime: MonitorRuntime | None = None, freeze_heap: bool = False
) -> FastAPI:
    """Build the app around a runtime: the one given (`serve` and the demo pass the supervised
    one, whose collection runs in a child process), else one built from the settings (read from
    the environment if none). `freeze_heap`: once started, exempt what start-up built from
    garbage collection (`heap.freeze_startup_heap`; for a service process, never in tests)."""
    settings = settings or (runtime.settings if runtime else load_settings())
    runtime = runtime or build_runtime(settings)

    oidc = (
        OidcVerifier(
            settings.oidc_issuer,
            settings.oidc_audience,
            roles_claim=settings.oidc_roles_claim,
            refresh_floor=settings.oidc_jwks_refresh_floor,
        )
        if settings.oidc_issuer
        else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await runtime.__aenter__()
        except Exception as exc:
            # One line, not a traceback (unless at DEBUG): the cause is what an operator needs.
            debug = logger.isEnabledFor(logging.DEBUG)
            logger.error(
                "Cannot start: %s", exc if str(exc) else type(exc).__name__, exc_info=exc if debug else None
            )
            raise
        if freeze_heap:
            freeze_startup_heap()
        try:
            logger.info("CML Worker Monitor %s ready", __version__)
            try:
                yield
            finally:
                logger.info("Shutting down")
                if oidc is not None:
                    await oidc.close()
        finally:
            await runtime.__aexit__(None, None, None)

    # FastAPIOffline: /docs with Swagger UI served from the package, not a CDN. No /redoc: its
    # bundle still loads a logo from the internet.
    app = FastAPIOffline(
        redoc_url=None,
        title="CML Worker Monitor",
        version=__version__,
        description="Monitors Cisco Modeling Labs workers on AWS EC2.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.include_router(health.router)
    if settings.cml_monitor_role != "collector":  # a collector answers /health, /ready, /metrics only
        authenticator = Authenticator(
            settings.api_token_roles,
            oidc,
            admin_roles=settings.oidc_admin_roles,
            viewer_roles=settings.oidc_viewer_roles,
        )
        authenticate = Depends(authenticator)
        dependencies = [*_declared_schemes(settings, enabled=authenticator.enabled), authenticate]
        for router in (
            workers.router,
            monitoring.router,
            alerts.router,
            actions.router,
            me.router,
            events.router,
        ):
            app.include_router(router, dependencies=dependencies)
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

        @app.get("/", include_in_schema=False)
        async def dashboard() -> FileResponse:
            """The dashboard: static files shipped with the package, no CDN, no build step."""
            return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

        @app.get("/auth/config", include_in_schema=False)
        async def auth_config() -> JSONResponse:
            """How the dashboard signs in: nothing, a token, or the IdP (authorization code + PKCE)."""
            if oidc is None:
                return JSONResponse({"mode": "token" if authenticator.enabled else "none", "oidc": None})
            endpoints = await oidc.endpoints() or {}
            return JSONResponse(
                {
                    "mode": "oidc",
                    "oidc": {
                        "issuer": oidc.issuer,
                        "client_id": settings.oidc_client_id or settings.oidc_audience,
                        "authorization_endpoint": endpoints.get("authorization_endpoint"),
                        "token_endpoint": endpoints.get("token_endpoint"),
                        "scope": "openid profile",
                    },
                    "tokens": bool(settings.api_tokens),
                }
            )

    _map_errors(app)
    app.add_middleware(BodySizeLimitMiddleware)
    app.add_middleware(RequestTextMiddleware)
    app.add_middleware(SecurityHeadersMiddleware, policy=dashboard_policy([origin_of(settings.oidc_issuer)]))
    return app


def _declared_schemes(settings: Settings, *, enabled: bool) -> list[Any]:
    """How `/api` authenticates, as OpenAPI says it, so `/docs` shows "Authorize" and "Try it
    out" sends the token. They only declare: `auto_error=False` makes them accept anything, and
    the `Authenticator` decides. Either scheme is enough (one bearer header either way)."""
    if not enabled:
        return []
    schemes = [
        Security(
            HTTPBearer(
                auto_error=False,
                scheme_name="bearer",
                description="A token of API_TOKENS, or an access token from the OIDC issuer "
                "(paste it without the word Bearer).",
            )
        )
    ]
    if settings.oidc_issuer:
        schemes.append(
            Security(
                OpenIdConnect(
                    openIdConnectUrl=f"{settings.oidc_issuer}/.well-known/openid-configuration",
                    scheme_name="oidc",
                    description="Sign in at the OIDC issuer (authorization code with PKCE).",
                    auto_error=False,
                )
            )
        )
    return schemes


def _safe(value: object) -> object:
    """A location part that JSON can carry (a lone surrogate in a dict key is escaped)."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _map_errors(app: FastAPI) -> None:
    """Our error types to HTTP: the use cases never speak HTTP themselves."""

    @app.exception_handler(RequestValidationError)
    async def unprocessable(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # Field and reason only: echoing the input back would fail for exactly the inputs
        # refused here (NaN, a lone surrogate) and turn a 422 into a 500.
        detail = [
            {"loc": [_safe(part) for part in error["loc"]], "msg": error["msg"], "type": error["type"]}
            for error in exc.errors()
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(NotFound)
    async def not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Conflict)
    async def conflict(_request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(InvalidInput)
    async def invalid(request: Request, exc: InvalidInput) -> JSONResponse:
        # The use case names the field; where it came from (query string or body) is HTTP's.
        where = "query" if exc.field in request.query_params else "body"
        detail = [{"loc": [where, exc.field], "msg": str(exc), "type": "value_error"}]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(UpstreamFailed)
    async def upstream(_request: Request, exc: UpstreamFailed) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=502)

    @app.exception_handler(StorageError)
    @app.exception_handler(SQLAlchemyError)
    @app.exception_handler(asyncpg.PostgresError)
    @app.exception_handler(asyncpg.InterfaceError)
    async def storage_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        logger.error("Database error: %s", exc)
        return JSONResponse({"detail": "the database is unavailable; try again"}, status_code=503)

    @app.exception_handler(RedisError)
    @app.exception_handler(OSError)
    @app.exception_handler(TimeoutError)
    async def dependency_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        # Connection refused or reset, a name that does not resolve, a store that hangs: the
        # monitor's own stores (database, job store) are down, which is worth a retry, not a 500.
        logger.error("A store the monitor depends on did not answer: %s: %s", type(exc).__name__, exc)
        return JSONResponse(
            {"detail": f"a store the monitor depends on is unavailable ({type(exc).__name__}); try again"},
            status_code=503,
        )
