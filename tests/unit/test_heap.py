"""`freeze_startup_heap`: what start-up built is frozen, what comes later is still collected.

In a child interpreter: a freeze in the test process would keep every test's objects for ever.
"""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import gc, weakref
from cml_monitor.heap import freeze_startup_heap

class Node:
    pass

assert gc.get_freeze_count() == 0
freeze_startup_heap()
assert gc.get_freeze_count() > 0
later = Node()
later.me = later  # a cycle made after start-up: only the collector frees it
gone = weakref.ref(later)
del later
gc.collect()
assert gone() is None
print("ok")
"""


def test_start_up_is_frozen_and_later_cycles_are_still_collected() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
