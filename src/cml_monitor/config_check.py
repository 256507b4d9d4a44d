"""`cml-monitor check-config`: refuse the mistakes that pass validation but hurt in production.

Pydantic already refuses values of the wrong type or range. This adds what only a person would
notice: the example file's `CHANGE-ME` placeholders left in, API tokens short enough to guess
(< 24 characters), a webhook signing secret under 16, an API open to other hosts with no
authentication (anyone could stop workers), and a misspelled variable with one of our
prefixes (`WORKER_`, `CML_`, `OIDC_`, `API_`), which the settings would otherwise ignore in
silence. The known names come from the `Settings` class itself, so a new setting is known the
moment it is declared. Variables with other prefixes (`TEST_*`, `BENCH_*`, `AWS_*`, ...) are not
ours to judge.

`--connect` then reaches what the service needs at run time: the database, Redis (job store and
event bus), AWS (STS `GetCallerIdentity`, which needs no permission, then EC2 in every region a
worker is registered in) and the OIDC issuer's discovery document and keys, saying which failed
and why.
"""

from __future__ import annotations

import asyncio
import difflib
import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from cml_monitor.settings import Settings

PREFIXES = ("WORKER_", "CML_", "OIDC_", "API_")
PLACEHOLDER = "CHANGE-ME"
MIN_TOKEN = 24
MIN_WEBHOOK_SECRET = 16
CONNECT_TIMEOUT = 5.0


def known_names() -> set[str]:
    """Every environment variable the settings read (their fields, upper case)."""
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(name.upper())
        if isinstance(field.alias, str):
            names.add(field.alias.upper())
    return names


def _text(value: Any) -> Iterable[str]:
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _text(item)


def problems(settings: Settings, variables: Mapping[str, str]) -> list[str]:
    """One line per mistake; `variables` are the names set (environment and `.env`)."""
    found: list[str] = []
    for name in Settings.model_fields:
        if any(PLACEHOLDER.lower() in text.lower() for text in _text(getattr(settings, name))):
            found.append(f"{name.upper()}: still holds the placeholder {PLACEHOLDER}; set the real value")
    for entry in settings.api_tokens:
        role, _, token = entry.partition(":")
        if len(token) < MIN_TOKEN and PLACEHOLDER.lower() not in token.lower():
            found.append(
                f"API_TOKENS: the {role} token has {len(token)} characters, fewer than {MIN_TOKEN} "
                "(make one with: openssl rand -hex 24)"
            )
    secret = settings.worker_notification_webhook_secret
    if secret is not None and 0 < len(secret.get_secret_value()) < MIN_WEBHOOK_SECRET:
        found.append(
            f"WORKER_NOTIFICATION_WEBHOOK_SECRET: {len(secret.get_secret_value())} characters, fewer than "
            f"{MIN_WEBHOOK_SECRET} (make one with: openssl rand -hex 32)"
        )
    unauthenticated = not settings.api_tokens and not settings.oidc_issuer
    if (
        unauthenticated
        and settings.cml_monitor_role != "collector"
        and not _loopback(settings.cml_monitor_host)
    ):
        found.append(
            f"CML_MONITOR_HOST: {settings.cml_monitor_host} is reachable from other hosts while the API "
            "has no authentication (anyone could stop workers): set API_TOKENS or OIDC_ISSUER, or "
            "listen on 127.0.0.1"
        )
    known = known_names()
    for name in sorted(variables):
        upper = name.upper()
        if upper.startswith(PREFIXES) and upper not in known:
            close = difflib.get_close_matches(upper, sorted(known), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            found.append(f"{upper}: not a setting of cml-monitor (it would be ignored){hint}")
    return found


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def dotenv_names(path: Path) -> dict[str, str]:
    """The names a `.env` file sets (as the settings read it)."""
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {name: value or "" for name, value in dotenv_values(path).items()}


# -- --connect -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reached:
    what: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok    ' if self.ok else 'FAILED'} {self.what}: {self.detail}"


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _attempt(what: str, probe: Callable[[], Awaitable[str]]) -> Reached:
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT * 2):
            return Reached(what, True, await probe())
    except TimeoutError:
        return Reached(what, False, f"no answer within {CONNECT_TIMEOUT * 2:g} s")
    except Exception as exc:  # every failure is reported, none stops the other checks
        return Reached(what, False, _why(exc))


async def _database(settings: Settings) -> tuple[Reached, list[str]]:
    """Reach the database; and the regions of the registered workers, which AWS is tried in."""
    from sqlalchemy import text

    from cml_monitor.storage import CMLWorkerRepository, create_engine

    regions: list[str] = []

    async def probe() -> str:
        engine = create_engine(settings.database_url, timeout=CONNECT_TIMEOUT)
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            try:
                found = await CMLWorkerRepository(engine).list_monitorable_async()
            except Exception as exc:  # reachable, but no schema yet
                return f"reachable; no workers read ({_why(exc)}; run cml-monitor migrate)"
            regions.extend(sorted({region for _, region in found}))
            return f"reachable; {len(found)} worker(s) in {len(regions)} region(s)"
        finally:
            await engine.dispose()

    scheme = settings.database_url.split("://", 1)[0]
    return await _attempt(f"database ({scheme})", probe), regions


async def _redis(name: str, url: str) -> Reached:
    from redis.asyncio import Redis

    async def probe() -> str:
        client = Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT)
        try:
            await client.ping()
        finally:
            await client.aclose()
        return "PING answered"

    return await _attempt(f"redis ({name})", probe)


async def _aws(settings: Settings, regions: list[str]) -> list[Reached]:
    from cml_monitor.aws.pool import ClientPool

    pool = ClientPool(endpoint_url=settings.aws_endpoint_url, max_attempts=2, read_timeout=CONNECT_TIMEOUT)
    try:

        async def identity() -> str:
            answer = await pool.call("sts", settings.aws_region, "get_caller_identity")
            return f"credentials of {answer.get('Arn', '?')} (account {answer.get('Account', '?')})"

        results = [await _attempt("aws (STS GetCallerIdentity)", identity)]
        if not results[0].ok:
            return results
        for region in regions or [settings.aws_region]:

            async def ec2(region: str = region) -> str:
                await pool.call("ec2", region, "describe_instance_status", MaxResults=5)
                return "DescribeInstanceStatus allowed"

            results.append(await _attempt(f"aws ec2 in {region}", ec2))
        return results
    finally:
        await pool.close()


async def _oidc(issuer: str) -> Reached:
    async def probe() -> str:
        async with httpx.AsyncClient(timeout=CONNECT_TIMEOUT, follow_redirects=False) as client:
            response = await client.get(f"{issuer}/.well-known/openid-configuration")
            response.raise_for_status()
            discovery = response.json()
            if discovery.get("issuer", "").rstrip("/") != issuer:
                raise ValueError(f"the discovery document names issuer {discovery.get('issuer')!r}")
            keys = await client.get(str(discovery["jwks_uri"]))
            keys.raise_for_status()
            count = len(keys.json().get("keys", []))
        return f"discovery and {count} signing key(s) read"

    return await _attempt(f"oidc issuer {issuer}", probe)


async def connect(settings: Settings) -> list[Reached]:
    """Reach everything the service needs; each result says what was tried and how it went."""
    database, regions = await _database(settings)
    results = [database]
    for name, url in (
        ("BACKGROUND_JOB_STORE_URL", settings.background_job_store_url),
        ("EVENT_BUS_URL", settings.event_bus_url),
    ):
        if url:
            results.append(await _redis(name, url))
    results.extend(await _aws(settings, regions))
    if settings.oidc_issuer:
        results.append(await _oidc(settings.oidc_issuer))
    return results
