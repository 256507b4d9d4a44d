"""The long-lived heap of a service process, out of the garbage collector's way.

A full (generation 2) collection walks every container object the process holds, and stops the
event loop while it does. Most of those objects are made once at start-up and live as long as
the process: the imported modules, pydantic's and SQLAlchemy's models, botocore's service
models behind every AWS client. In `serve`'s API process such a collection took 120-160 ms, a few
times a minute, and every request that arrived meanwhile waited for it (`bench.load`, measured
with `gc.callbacks`). Frozen once start-up is done (`gc.freeze`, CPython's own tool for this),
they are never walked again: the collections that remain walk what was made since, and took
10-95 ms (most 20-50 ms) in the same benchmark.

Only the service's entry points call this: tests build hundreds of apps in one process, and what
a freeze holds is never freed.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Collect what start-up left behind, then exempt everything still alive from collection."""
    gc.collect()
    gc.freeze()
