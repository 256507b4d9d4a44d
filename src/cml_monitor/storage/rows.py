"""Batch writes that one refused row cannot sink.

A cycle writes every worker of a region in a few statements. When the database refuses one row
(text it cannot store, a value too long for its column, a constraint), the whole statement
fails, and with it every other worker's update, history, alerts and notifications, cycle after
cycle. So a batch the database refused is written again group by group (a group is one worker's
rows), each in its own transaction: the refused groups are dropped, each logged once and counted
in `cml_monitor_rejected_rows_total{table}` under the table that refused it; the others are
written. A unique key taken by a concurrent writer (two evaluations of one worker at once) is a
lost race, not a bad value: that group is dropped with a warning and not counted. A database
that is down or unreachable is not a refusal: that error goes up as before, and nothing is
retried row by row.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError, StatementError

logger = logging.getLogger(__name__)

# The tables batch writes go to (the counter's label values, exported at 0 from the start).
REJECTABLE_TABLES = ("workers", "worker_metrics", "alerts", "notifications")
# SQLSTATE classes of refused values: 22 data exception (a NUL, a value too long), 23 integrity.
_REFUSED_CLASSES = ("22", "23")
_UNIQUE_VIOLATION = "23505"
_TABLE = re.compile(r"\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?(\w+)", re.IGNORECASE)

Group = TypeVar("Group")
Result = TypeVar("Result")
RejectListener = Callable[[str], None]


def refused(exc: BaseException) -> bool:
    """Whether the database (or our binding of a value, before sending) refused the values,
    rather than being unreachable, down or out of resources."""
    if isinstance(exc, DataError | IntegrityError):
        return True
    if isinstance(exc, DBAPIError):
        code = _sqlstate(exc.orig)
        return code is not None and code[:2] in _REFUSED_CLASSES
    return isinstance(exc, StatementError)  # a bind processor refused a value


def conflict(exc: BaseException) -> bool:
    """A unique key another writer took first (two evaluations of one worker at once): the row
    is not bad, it lost a race, and what won is already stored."""
    orig = getattr(exc, "orig", None)
    if _sqlstate(orig) == _UNIQUE_VIOLATION:
        return True
    return "UNIQUE constraint failed" in str(orig or "")  # SQLite's words


def _sqlstate(orig: BaseException | None) -> str | None:
    for candidate in (orig, getattr(orig, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def table_of(exc: BaseException, default: str) -> str:
    """The table whose write failed, read from the statement the error carries."""
    found = _TABLE.match(getattr(exc, "statement", None) or "")
    return found.group(1) if found and found.group(1) in REJECTABLE_TABLES else default


def reason(exc: BaseException) -> str:
    """The database's own words, first line only (never the parameters, which hold the value)."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return (text[0] if text else type(orig).__name__)[:300]


async def write_each(
    groups: Iterable[Group],
    write: Callable[[Group], Awaitable[Result]],
    *,
    what: Callable[[Group], str],
    table: str,
    on_rejected: RejectListener | None,
) -> list[Result]:
    """Write each group in its own transaction; a refused group is dropped, logged and counted.

    Any other database error stops the loop and goes up (the database is down: the next cycle
    tries again, as for a batch).
    """
    results: list[Result] = []
    for group in groups:
        try:
            results.append(await write(group))
        except SQLAlchemyError as exc:
            if not refused(exc):
                raise
            refused_by = table_of(exc, table)
            if conflict(exc):
                logger.warning(
                    "The %s row of %s was written meanwhile by another writer: %s",
                    refused_by,
                    what(group),
                    reason(exc),
                )
                continue
            logger.error(
                "The database refused the %s row of %s; dropped: %s", refused_by, what(group), reason(exc)
            )
            if on_rejected is not None:
                on_rejected(refused_by)
    return results
