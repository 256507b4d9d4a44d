"""Leases in the shared database: one replica at a time does a piece of work.

Replicas sharing a job store each run every APScheduler job (APScheduler 3 has no distributed
lock). Before collecting a region, a replica takes the region's lease for most of an interval;
the others see it held and skip that run. A replica that dies simply lets its lease expire.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import insert, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from .tables import leases


class LeaseStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def acquire(self, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
        """Take (or renew) the lease; False while another holder has it."""
        until = now + ttl
        async with self._engine.begin() as conn:
            taken = await conn.execute(
                update(leases)
                .where(leases.c.name == name, or_(leases.c.until <= now, leases.c.holder == holder))
                .values(holder=holder, until=until)
            )
            if taken.rowcount:
                return True
            try:
                async with conn.begin_nested():
                    await conn.execute(insert(leases).values(name=name, holder=holder, until=until))
            except IntegrityError:
                return False
            return True
