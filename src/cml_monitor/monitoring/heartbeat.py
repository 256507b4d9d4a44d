"""The dead-man's switch: pings an outside checker while collection works, and says when not.

A monitor that dies cannot say so itself. With `CML_MONITOR_HEARTBEAT_URL` set, a collecting
replica sends `GET <url>` at most once per poll interval while the last run of every region it
collects succeeded, and `GET <url>/fail` when a region's run failed — the convention of
healthchecks.io, Cronitor and Dead Man's Snitch. When every collector is dead, the pings stop and
the operator's checker raises the alarm. A ping that fails is logged once (until one works
again), never retried in a loop and never fatal.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import httpx

from cml_monitor.clock import Clock, utcnow
from cml_monitor.domain.collections import RegionOutcome

logger = logging.getLogger(__name__)


class Heartbeat:
    def __init__(
        self, http: httpx.AsyncClient, url: str, *, interval_seconds: int, clock: Clock = utcnow
    ) -> None:
        self._http = http
        self._url = url.rstrip("/")
        self._interval = timedelta(seconds=interval_seconds)
        self._clock = clock
        self._failed: dict[str, str] = {}  # region → why its last run failed
        self._last_ping: dict[str, datetime] = {}  # "" (success) or "/fail" → when sent
        self._broken = False  # the last ping could not be sent (logged once)
        self._last_suffix: str | None = None  # what the checker heard last

    async def note(self, outcome: RegionOutcome) -> None:
        """Take one region run's outcome; ping when it is time to."""
        if outcome.succeeded:
            self._failed.pop(outcome.region, None)
        else:
            self._failed[outcome.region] = outcome.error or "failed"
        suffix = "/fail" if self._failed else ""
        last = self._last_ping.get(suffix)
        recovered = suffix == "" and self._last_suffix == "/fail"  # say so at once, not next interval
        if last is not None and outcome.at - last < self._interval and not recovered:
            return
        self._last_ping[suffix] = outcome.at
        self._last_suffix = suffix
        await self._ping(suffix)

    async def _ping(self, suffix: str) -> None:
        url = self._url + suffix
        try:
            response = await self._http.get(url)
            response.raise_for_status()
        except Exception as exc:
            if not self._broken:
                logger.error("Heartbeat to %s failed (logged once until it works): %s", url, exc)
            self._broken = True
            return
        if self._broken:
            logger.info("Heartbeat reaches %s again", url)
        self._broken = False
        if suffix:
            logger.warning(
                "Heartbeat: told %s that collection fails (%s)", url, "; ".join(self._failed.values())
            )
