"""Daily range partitions of the raw metric samples on PostgreSQL.

At 10,000 workers polled every five minutes the raw table grows by 2.9 million rows a day.
Pruning that with `DELETE` rewrites nothing but leaves millions of dead rows for vacuum to chase
and holds locks for seconds; dropping yesterday's partition is a catalogue change that takes
milliseconds. So `worker_metrics` is partitioned by `timestamp`, one partition per UTC day
(`worker_metrics_pYYYYMMDD`), created a few days ahead by the history maintenance.

A DEFAULT partition catches any sample whose day has no partition yet (a clock far off, or
maintenance that has not run since a long outage), so a write never fails for want of a
partition. When that day's partition is created later, its rows are moved out of the default
partition in the same transaction, so nothing is lost or counted twice.

These functions take a synchronous connection so the migration (which runs synchronously) and
the maintenance loop (through `AsyncConnection.run_sync`) share them. SQLite keeps a plain table:
none of this is called there.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import text
from sqlalchemy.engine import Connection

PARENT = "worker_metrics"
DEFAULT = "worker_metrics_default"
_NAME = re.compile(r"^worker_metrics_p(\d{8})$")
# Replicas maintaining history at the same moment take turns (any constant will do).
_LOCK_ID = 0x434D4C50


def partition_name(day: date) -> str:
    return f"{PARENT}_p{day:%Y%m%d}"


def _bound(day: date) -> str:
    return datetime.combine(day, time(), UTC).isoformat()


LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE when lock_timeout expires


def lock(conn: Connection, lock_timeout: float) -> None:
    """Hold the maintenance lock until the transaction ends, and wait at most `lock_timeout`
    seconds for any lock in it.

    Attaching and dropping partitions lock the whole table for an instant; behind a long query
    they would wait, and every insert and chart would queue behind them. Better to give up and
    try again at the next maintenance run.
    """
    conn.execute(text(f"SET LOCAL lock_timeout = '{int(lock_timeout * 1000)}ms'"))
    conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})


def partitioned(conn: Connection) -> bool:
    """Whether the raw samples table is partitioned (it is after migration 0008 on PostgreSQL)."""
    return bool(
        conn.execute(
            text("SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(:t))"),
            {"t": PARENT},
        ).scalar_one()
    )


def existing_days(conn: Connection) -> list[date]:
    """The days that have a partition, oldest first."""
    names = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": PARENT},
    ).scalars()
    days = []
    for name in names:
        match = _NAME.match(name)
        if match:
            days.append(datetime.strptime(match.group(1), "%Y%m%d").date())
    return sorted(days)


def ensure(conn: Connection, first: date, last: date) -> int:
    """Create the missing partitions for `first` … `last` (inclusive); returns how many.

    Each is built beside the table, filled with its day's rows from the default partition, then
    attached: PostgreSQL refuses to attach a range while the default partition still holds rows
    of it, so the move and the attach commit together or not at all.
    """
    have = set(existing_days(conn))
    created = 0
    day = first
    while day <= last:
        if day not in have:
            name, low, high = partition_name(day), _bound(day), _bound(day + timedelta(days=1))
            conn.execute(text(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS)"))
            conn.execute(
                text(
                    f"WITH moved AS (DELETE FROM {DEFAULT} WHERE timestamp >= :low AND timestamp < :high "
                    f"RETURNING *) INSERT INTO {name} SELECT * FROM moved"
                ),
                {"low": datetime.fromisoformat(low), "high": datetime.fromisoformat(high)},
            )
            conn.execute(
                text(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES FROM ('{low}') TO ('{high}')")
            )
            created += 1
        day += timedelta(days=1)
    return created


def drop_before(conn: Connection, cutoff: datetime) -> tuple[int, int]:
    """Drop every partition whose whole day ends at or before `cutoff`.

    Returns (partitions dropped, rows deleted): samples older than `cutoff` that sit in the
    default partition are deleted one by one, and there are few (only days that never had a
    partition). A partition holding both older and newer samples waits until its day has
    passed: raw samples are kept at least the retention, and at most a day longer.
    """
    dropped = 0
    for day in existing_days(conn):
        if datetime.combine(day + timedelta(days=1), time(), UTC) <= cutoff:
            conn.execute(text(f"DROP TABLE {partition_name(day)}"))
            dropped += 1
    deleted = conn.execute(text(f"DELETE FROM {DEFAULT} WHERE timestamp < :cutoff"), {"cutoff": cutoff})
    return dropped, deleted.rowcount or 0
