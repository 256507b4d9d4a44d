"""Inhibition: which alerts a worker's bigger trouble mutes.

While a worker is stopped, terminated or unreachable, CPU and memory say nothing useful
(there is no load, or we cannot see it), so those alerts do not fire.
"""

from __future__ import annotations


def usage_alerts_inhibited(status: str | None, *, unreachable: bool) -> bool:
    return unreachable or status != "running"
