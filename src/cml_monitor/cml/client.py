"""The CML controller API client: how many labs are running on a worker.

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
import ssl
from collections.abc import Sequence
from typing import Any

import aiohttp

from cml_monitor.io_loop import IoLoop

from .guard import BlockedAddress, GuardedResolver, Network, UrlGuard

logger = logging.getLogger(__name__)

RUNNING_LAB_STATE = "STARTED"


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
        timeout: float = 10.0,
        max_labs: int = 1000,
        max_connections: int = 200,
        per_controller_concurrency: int = 8,
        blocked_networks: Sequence[Network] = (),
    ) -> None:
        self._username = username
        self._password = password
        self._verify_tls = verify_tls
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

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            tls: ssl.SSLContext | bool = ssl.create_default_context() if self._verify_tls else False
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

    async def _get_once(self, url: str, token: str, params: dict[str, str]) -> tuple[int, Any]:
        self._guard.check_url_syntax(url)
        async with self._http().get(
            url, params=params, headers={"Authorization": f"Bearer {token}"}, allow_redirects=False
        ) as response:
            _refuse_redirect(url, response)
            if response.status != 200:
                return response.status, None
            return 200, json.loads(await response.read())

    async def _get(self, base: str, path: str, **params: str) -> Any:
        token = self._tokens.get(base) or await self._authenticate(base, None)
        status, body = await self._get_once(f"{base}{path}", token, params)
        if status == 401:
            token = await self._authenticate(base, token)
            status, body = await self._get_once(f"{base}{path}", token, params)
        if status != 200:
            raise CmlControllerError(f"GET {base}{path} answered HTTP {status}")
        return body

    async def get_active_labs_count(self, cml_url: str) -> int:
        """Labs in state STARTED on the controller at `cml_url`.

        The whole read (token, lab list, each lab) has one deadline, so a hung or huge
        controller costs this worker's lab count for one cycle, never the region's cycle; a lab
        list that is not a list of ids is an error for this controller, not a count of 0. The
        requests run on the client's own I/O loop (`cml_monitor.io_loop`).
        """
        return await self._io.run(self._active_labs_count(cml_url))

    async def _active_labs_count(self, cml_url: str) -> int:
        base = self._base(cml_url)
        try:
            async with asyncio.timeout(self._deadline):
                return await self._count_started_labs(base)
        except TimeoutError as exc:
            raise CmlControllerError(
                f"controller {base} did not finish answering in {self._deadline:g} s"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise CmlControllerError(f"controller {base} unreachable: {exc!r}") from exc
        except BlockedAddress as exc:  # before ValueError, which it is
            raise CmlControllerError(f"controller {base} not contacted: {exc}") from exc
        except ValueError as exc:  # a body that is not JSON
            raise CmlControllerError(f"controller {base} answered malformed JSON") from exc

    async def _count_started_labs(self, base: str) -> int:
        lab_ids = await self._get(base, "/api/v0/labs", show_all="true")
        if not isinstance(lab_ids, list) or not all(isinstance(i, str) and i for i in lab_ids):
            raise CmlControllerError(f"controller {base} listed labs as {_describe(lab_ids)}, not lab ids")
        if len(lab_ids) > self._max_labs:
            raise CmlControllerError(
                f"controller {base} lists {len(lab_ids)} labs, more than the {self._max_labs} read per cycle"
            )
        semaphore = asyncio.Semaphore(self._per_controller)

        async def lab_state(lab_id: str) -> Any:
            async with semaphore:
                lab = await self._get(base, f"/api/v0/labs/{lab_id}")
            if not isinstance(lab, dict):
                raise CmlControllerError(f"controller {base} described lab {lab_id} as {_describe(lab)}")
            return lab.get("state")

        states = await asyncio.gather(*(lab_state(lab_id) for lab_id in lab_ids))
        return sum(1 for state in states if state == RUNNING_LAB_STATE)


def _refuse_redirect(url: str, response: aiohttp.ClientResponse) -> None:
    """Redirects are never followed: the credentials go only to the host that was registered."""
    if 300 <= response.status < 400:
        target = response.headers.get("Location", "?")
        raise CmlControllerError(f"{url} redirected (HTTP {response.status}) to {target}; not followed")


def _describe(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
