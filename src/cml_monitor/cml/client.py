"""The CML controller API client: readiness, health, capacity, labs and licensing of a worker.

One pooled `aiohttp.ClientSession` serves every controller (keep-alive connections are reused
per host); the bearer token of each controller is cached and renewed once when the controller
answers 401. Controllers often use self-signed certificates, so TLS verification is a setting.

aiohttp rather than httpx here: polling 1,000 controllers (about 4,000 requests a cycle) cost
httpx/httpcore ~35 CPU seconds, its pool doing work proportional to the number of connections
for every request; aiohttp (already installed for aiobotocore) does the same in about a second.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp

from cml_monitor.call_tally import count_cml
from cml_monitor.clock import Clock, utcnow
from cml_monitor.domain.cml import ControllerReading, StartedLab
from cml_monitor.domain.text import clean, clean_deep
from cml_monitor.domain.times import FUTURE_SKEW
from cml_monitor.io_loop import IoLoop

from . import shapes
from .guard import BlockedAddress, GuardedResolver, Network, UrlGuard

logger = logging.getLogger(__name__)


class CmlControllerError(RuntimeError):
    """A controller did not answer, or answered something we cannot use."""


class CmlControllerClient:
    """Talks to many CML controllers through one connection pool."""

    def __init__(
        self,
        *,
        username: str,
        password: str,
        verify_tls: bool = True,
        ca_bundle: str | None = None,
        timeout: float = 10.0,
        max_labs: int = 1000,
        max_connections: int = 200,
        per_controller_concurrency: int = 8,
        blocked_networks: Sequence[Network] = (),
        automation_users: Sequence[str] = (),
        clock: Clock = utcnow,
    ) -> None:
        self._username = username
        self._password = password
        self._verify_tls = verify_tls
        self._ca_bundle = ca_bundle or None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._deadline = timeout
        self._max_labs = max_labs
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._tokens: dict[str, str] = {}
        self._auth_locks: dict[str, asyncio.Lock] = {}
        self._per_controller = per_controller_concurrency
        self._io = IoLoop("cml-controllers")
        self._guard = UrlGuard(blocked_networks)
        self._automation = [re.compile(p) for p in automation_users]
        self._clock = clock
        # Per controller: (lab ids, running nodes, total nodes) when its labs were last counted.
        self._lab_counts: dict[str, tuple[tuple[Any, ...], int]] = {}
        self.requests = 0  # HTTP requests sent, for the cost figures

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            tls = _tls_context(self._verify_tls, self._ca_bundle)
            # No per-host cap: per-controller concurrency is bounded above, and simulated
            # controllers share one host and port.
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, ssl=tls, resolver=GuardedResolver(self._guard)
            )
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        await self._io.close(self._close_session())

    async def _close_session(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @staticmethod
    def _base(cml_url: str) -> str:
        return cml_url.rstrip("/")

    async def _authenticate(self, base: str, stale: str | None) -> str:
        lock = self._auth_locks.setdefault(base, asyncio.Lock())
        async with lock:
            token = self._tokens.get(base)
            if token is not None and token != stale:
                return token  # another task renewed it meanwhile
            url = f"{base}/api/v0/authenticate"
            self._guard.check_url_syntax(url)
            self.requests += 1
            count_cml()
            async with self._http().post(
                url, json={"username": self._username, "password": self._password}, allow_redirects=False
            ) as response:
                _refuse_redirect(base, response)
                if response.status != 200:
                    raise CmlControllerError(f"authentication at {base} failed with HTTP {response.status}")
                token = json.loads(await response.read())
            if not isinstance(token, str) or not token:
                raise CmlControllerError(f"authentication at {base} returned no token")
            self._tokens[base] = token
            return token

    async def _get_once(self, url: str, token: str | None, params: dict[str, str]) -> tuple[int, Any]:
        """The status and, for a 200, the JSON body (ValueError when it is not JSON)."""
        self._guard.check_url_syntax(url)
        self.requests += 1
        count_cml()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self._http().get(url, params=params, headers=headers, allow_redirects=False) as response:
            _refuse_redirect(url, response)
            if response.status != 200:
                return response.status, None
            return 200, decode(await response.read())

    async def _get(self, base: str, path: str, **params: str) -> tuple[int, Any]:
        """A GET with the controller's token, renewed once on 401."""
        token = self._tokens.get(base) or await self._authenticate(base, None)
        status, body = await self._get_once(f"{base}{path}", token, params)
        if status == 401:
            token = await self._authenticate(base, token)
            status, body = await self._get_once(f"{base}{path}", token, params)
        return status, body

    async def _get_public(self, base: str, path: str) -> tuple[int, Any]:
        return await self._get_once(f"{base}{path}", None, {})

    async def post_notice(self, cml_url: str, *, level: str, label: str, content: str) -> str:
        """Post a CML system notice to every user of the controller (`POST system/notices`,
        a `SystemNoticeCreate` body); its id. CmlControllerError when it is not taken."""
        return await self._io.run(self._post_notice(self._base(cml_url), level, label, content))

    async def delete_notice(self, cml_url: str, notice_id: str) -> None:
        """Remove a system notice (`DELETE system/notices/{id}`); one already gone is fine."""
        await self._io.run(self._delete_notice(self._base(cml_url), notice_id))

    async def _send(self, method: str, base: str, path: str, body: Any = None) -> tuple[int, Any]:
        """A request with the controller's token, renewed once on 401; the status and JSON body."""
        url = f"{base}{path}"
        self._guard.check_url_syntax(url)
        token = self._tokens.get(base) or await self._authenticate(base, None)
        for attempt in range(2):
            self.requests += 1
            count_cml()
            headers = {"Authorization": f"Bearer {token}"}
            async with self._http().request(
                method, url, json=body, headers=headers, allow_redirects=False
            ) as response:
                _refuse_redirect(url, response)
                status, raw = response.status, await response.read()
            if status == 401 and attempt == 0:
                token = await self._authenticate(base, token)
                continue
            break
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None

    async def _post_notice(self, base: str, level: str, label: str, content: str) -> str:
        body = {"level": level, "label": label, "content": content, "enabled": True}
        try:
            status, answer = await self._send("POST", base, "/api/v0/system/notices", body)
        except (aiohttp.ClientError, OSError, BlockedAddress) as exc:
            raise CmlControllerError(f"notice not posted: {exc!r}") from exc
        if status != 200:
            raise CmlControllerError(f"notice not posted: {http_error('system/notices', status)}")
        notice_id = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(notice_id, str):
            raise CmlControllerError("notice posted, but the controller answered no notice id")
        return notice_id

    async def _delete_notice(self, base: str, notice_id: str) -> None:
        try:
            status, _ = await self._send("DELETE", base, f"/api/v0/system/notices/{notice_id}")
        except (aiohttp.ClientError, OSError, BlockedAddress) as exc:
            raise CmlControllerError(f"notice not removed: {exc!r}") from exc
        if status not in (200, 204, 404):
            raise CmlControllerError(f"notice not removed: {http_error('system/notices', status)}")

    async def read_controller(
        self, cml_url: str, *, licensing: bool = False, activity: bool = False, fresh_labs: bool = False
    ) -> ControllerReading:
        """Everything a cycle reads of one controller, each endpoint on its own.

        `system_information` (no token; a 502 means "not ready yet"), `system_health`,
        `system_stats` and the lab list go out together; lab states are read one by one only
        when the lab list or the node counts changed since the last read (otherwise the
        last count stands: in steady state a cycle costs those four calls); `licensing`
        only when asked, and so is users' activity (`telemetry/events`, the controller's whole
        event history). The whole read has one deadline, so a hung controller costs its own
        worker's figures for one cycle, never the region's cycle; what came back before the
        deadline is kept. `fresh_labs` reads every lab's state whatever the cache says. The
        requests run on the client's own I/O loop.
        """
        base = self._base(cml_url)
        if fresh_labs:  # right before acting on the worker: no count from an earlier cycle
            self._lab_counts.pop(base, None)
        return await self._io.run(self._read(base, licensing, activity))

    async def started_labs(self, cml_url: str) -> list[StartedLab]:
        """The labs the controller reports started right now, with title and owner: what a
        person about to stop or reboot the worker would interrupt.

        Raises `CmlControllerError` when the controller cannot be read (unreachable, refused,
        not the shapes CML answers, or more than `max_labs` labs), within the client's deadline.
        """
        return await self._io.run(self._started_labs(self._base(cml_url)))

    async def _started_labs(self, base: str) -> list[StartedLab]:
        try:
            async with asyncio.timeout(self._deadline):
                status, body = await self._get(base, "/api/v0/labs", show_all="true")
                if status != 200:
                    raise CmlControllerError(f"the lab list answered HTTP {status}")
                ids = shapes.lab_ids(body)
                if len(ids) > self._max_labs:
                    raise CmlControllerError(f"{len(ids)} labs listed, more than {self._max_labs}")
                semaphore = asyncio.Semaphore(self._per_controller)

                async def one(lab_id: str) -> StartedLab | None:
                    async with semaphore:
                        status, body = await self._get(base, f"/api/v0/labs/{lab_id}")
                    if status != 200:
                        raise CmlControllerError(f"lab {lab_id} answered HTTP {status}")
                    state, title, owner = shapes.lab(body, lab_id)
                    return StartedLab(lab_id, title, owner) if state == shapes.RUNNING_LAB_STATE else None

                found = await asyncio.gather(*(one(i) for i in ids))
        except TimeoutError:
            raise CmlControllerError(f"no answer within {self._deadline:g} s") from None
        except BlockedAddress as exc:
            raise CmlControllerError(f"not contacted: {exc}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise CmlControllerError(f"unreachable: {exc!r}") from None
        except (shapes.ShapeError, ValueError) as exc:
            raise CmlControllerError(str(exc)) from None
        return [lab for lab in found if lab is not None]

    async def _read(self, base: str, licensing: bool, activity: bool) -> ControllerReading:
        read = _Read(base)
        try:
            async with asyncio.timeout(self._deadline):
                await self._read_endpoints(read, licensing, activity)
        except TimeoutError:
            read.fail_missing(f"no answer within {self._deadline:g} s")
        return read.reading()

    async def _read_endpoints(self, read: _Read, licensing: bool, activity: bool) -> None:
        base = read.base

        async def information() -> None:
            status, body = await read.fetch(
                "system_information", self._get_public(base, "/api/v0/system_information")
            )
            if status == 502:
                read.values["ready"] = False  # the controller is starting (virl2-client's reading too)
                read.answered.add("system_information")
            elif status is not None:
                read.parse("system_information", shapes.system_information, body, status)

        async def guarded(name: str, parse: Callable[[Any], dict[str, Any]]) -> None:
            status, body = await read.fetch(name, self._get(base, f"/api/v0/{name}"))
            if status is not None:
                read.parse(name, parse, body, status)

        async def labs() -> None:
            status, body = await read.fetch("labs", self._get(base, "/api/v0/labs", show_all="true"))
            if status is None:
                return
            if status != 200:
                read.errors["labs"] = http_error("labs", status)
                return
            try:
                ids = shapes.lab_ids(body)
            except shapes.ShapeError as exc:
                read.errors["labs"] = str(exc)
                return
            if len(ids) > self._max_labs:
                read.errors["labs"] = f"{len(ids)} labs listed, more than the {self._max_labs} read per cycle"
                return
            read.lab_ids = ids

        tasks = [
            information(),
            guarded("system_health", shapes.system_health),
            guarded("system_stats", shapes.system_stats),
            labs(),
        ]
        if licensing:
            tasks.append(guarded("licensing", shapes.licensing))
        if activity:
            tasks.append(
                guarded(
                    "telemetry/events",
                    lambda body: shapes.user_activity(body, self._automation, self._clock() + FUTURE_SKEW),
                )
            )
        await asyncio.gather(*tasks)
        if read.lab_ids is not None:
            await self._count_started_labs(read)

    async def _count_started_labs(self, read: _Read) -> None:
        """Started labs, reusing the last count while nothing that a lab start changes moved."""
        assert read.lab_ids is not None
        signature = read.lab_signature()
        cached = self._lab_counts.get(read.base)
        if signature is not None and cached is not None and cached[0] == signature:
            started = cached[1]
        else:
            semaphore = asyncio.Semaphore(self._per_controller)

            async def state(lab_id: str) -> str | None:
                async with semaphore:
                    status, body = await read.fetch(
                        "labs", self._get(read.base, f"/api/v0/labs/{lab_id}/state")
                    )
                if status is None:
                    raise shapes.ShapeError(read.errors["labs"])
                if status != 200:
                    raise shapes.ShapeError(f"lab {lab_id} state answered HTTP {status}")
                return shapes.lab_state(body, lab_id)

            try:
                states = await asyncio.gather(*(state(i) for i in read.lab_ids))
            except shapes.ShapeError as exc:
                read.errors["labs"] = str(exc)
                return
            started = sum(1 for s in states if s == shapes.RUNNING_LAB_STATE)
            if signature is not None:
                self._lab_counts[read.base] = (signature, started)
        read.values.update(labs_started=started, labs_total=len(read.lab_ids))
        read.answered.add("labs")


class _Read:
    """One controller's read in progress: the values gathered, the endpoints that failed."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.values: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.asked: set[str] = set()
        self.answered: set[str] = set()
        self.lab_ids: list[str] | None = None

    async def fetch(self, name: str, request: Awaitable[tuple[int, Any]]) -> tuple[int | None, Any]:
        """The status and JSON body, or (None, None) with the reason recorded against `name`."""
        self.asked.add(name)
        try:
            return await request
        except CmlControllerError as exc:  # authentication, or a redirect we refuse
            self.errors[name] = str(exc)
        except BlockedAddress as exc:  # before OSError and ValueError: it may be wrapped as either
            self.errors[name] = f"not contacted: {exc}"
        except aiohttp.ClientConnectorCertificateError as exc:  # before ClientError, its base
            self.errors[name] = untrusted_certificate(exc)
        except (aiohttp.ClientError, OSError) as exc:
            self.errors[name] = f"unreachable: {exc!r}"
        except ValueError:
            self.errors[name] = "answered something that is not JSON"
        return None, None

    def parse(self, name: str, parse: Callable[[Any], dict[str, Any]], body: Any, status: int) -> None:
        if status != 200:
            self.errors[name] = http_error(name, status)
            if status == 403:  # refused for good: unknown values, asked again at the next due time
                self.values.update(_REFUSED.get(name, {}))
            return
        try:
            values = parse(body)
        except shapes.ShapeError as exc:
            self.errors[name] = str(exc)
            return
        self.values.update(values)
        self.answered.add(name)

    def fail_missing(self, reason: str) -> None:
        for name in self.asked - self.answered:
            self.errors.setdefault(name, reason)

    def lab_signature(self) -> tuple[Any, ...] | None:
        """What changes when a lab starts or stops: its nodes start or stop (None: unknown).

        Unknown too when the controller gave no node counts (null `dominfo` counts): an
        unchanging null would otherwise hide a lab that starts until the lab list changes.
        """
        if "system_stats" not in self.answered or self.lab_ids is None:
            return None
        running, total = self.values.get("running_nodes"), self.values.get("total_nodes")
        if running is None or total is None:
            return None
        return (tuple(sorted(self.lab_ids)), running, total)

    def reading(self) -> ControllerReading:
        failed = tuple(clean(f"{name}: {self.errors[name]}") for name in sorted(self.errors))
        return ControllerReading(reachable=bool(self.answered), values=dict(self.values), errors=failed)


def decode(raw: bytes) -> Any:
    """A controller's JSON body with NUL and other control characters removed from its strings.

    JSON carries a control character only as an escape (`\\u0000`, `\\b`, `\\f`; a raw one is
    invalid JSON), so bodies without such an escape, nearly all of them, are not walked.
    """
    body = json.loads(raw)
    if b"\\u00" in raw or b"\\b" in raw or b"\\f" in raw:
        return clean_deep(body)
    return body


# What an endpoint CML keeps for administrators leaves unknown when it refuses the account: read
# as such, so the hourly licensing and the activity checks wait their interval, not one cycle.
_REFUSED: dict[str, dict[str, Any]] = {
    "licensing": dict.fromkeys(("license_registration", "license_authorization", "license_expires_at")),
    "telemetry/events": {"last_user_activity_at": None},
}


def http_error(name: str, status: int) -> str:
    """An endpoint's refusal; a 403 says what the account lacks (CML keeps licensing, telemetry
    and system administration for administrators)."""
    if status == 403:
        return f"needs an administrator account for {name} (HTTP 403)"
    return f"HTTP {status}"


def _tls_context(verify: bool, ca_bundle: str | None) -> ssl.SSLContext | bool:
    """The system's CAs, plus the controllers' own CA when a bundle is given; False: no checks."""
    if not verify:
        return False
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context


def untrusted_certificate(exc: aiohttp.ClientConnectorCertificateError) -> str:
    """What an operator reads when a controller's certificate is not trusted, and what to set."""
    reason = getattr(exc.certificate_error, "verify_message", None) or str(exc.certificate_error)
    return (
        f"TLS certificate not trusted ({reason}): set CML_CA_BUNDLE to a PEM file of the "
        "controller's CA (its self-signed certificate will do), or CML_VERIFY_TLS=false"
    )


def _refuse_redirect(url: str, response: aiohttp.ClientResponse) -> None:
    """Redirects are never followed: the credentials go only to the host that was registered."""
    if 300 <= response.status < 400:
        target = response.headers.get("Location", "?")
        raise CmlControllerError(f"{url} redirected (HTTP {response.status}) to {target}; not followed")
