"""Requests a piece of work made to AWS and to CML controllers, counted where they are sent.

A collection cycle logs how many calls it cost, but regions are collected concurrently and the
request counters are process-wide, so a difference of totals would mix regions. Instead the
cycle opens a tally in its own context (`counting()`); every request made on its behalf, in
its task or in tasks and threads started from it (asyncio copies the context into both), adds
to that tally and to no other.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class CallTally:
    aws: int = 0
    cml: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, *, aws: int = 0, cml: int = 0) -> None:
        with self._lock:  # CML requests run on their own thread's loop
            self.aws += aws
            self.cml += cml


_current: ContextVar[CallTally | None] = ContextVar("call_tally", default=None)


@contextmanager
def counting() -> Iterator[CallTally]:
    """A fresh tally for the requests made inside the block."""
    tally = CallTally()
    token = _current.set(tally)
    try:
        yield tally
    finally:
        _current.reset(token)


def count_aws() -> None:
    tally = _current.get()
    if tally is not None:
        tally.add(aws=1)


def count_cml() -> None:
    tally = _current.get()
    if tally is not None:
        tally.add(cml=1)
