"""One naming rule for coroutines: `_async` marks the seed's seams and nothing else.

The seed named the repository's methods and the scheduler's start/stop/monitor methods with an
`_async` suffix, and scripts call them by those names; everywhere else a coroutine is the norm
and the suffix would say nothing. This keeps the two from drifting apart again.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "cml_monitor"
# The repository and the ports that mirror it: every public coroutine carries the suffix.
REPOSITORY_SEAMS = {"CMLWorkerRepository", "WorkerStore", "StateChangeStore", "Workers"}
# The scheduler's seed methods, on the scheduler and on serve's stand-in for it.
SCHEDULER_SEAMS = {"WorkerMonitoringScheduler", "RemoteScheduler"}
SCHEDULER_METHODS = {
    "start_async",
    "stop_async",
    "start_monitoring_worker_async",
    "stop_monitoring_worker_async",
}


def _coroutines() -> list[tuple[str, str, str]]:
    """(file, class or "", name) of every `async def` in the product."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            owner = node.name if isinstance(node, ast.ClassDef) else ""
            body = node.body if isinstance(node, ast.ClassDef | ast.Module) else []
            for item in body:
                if isinstance(item, ast.AsyncFunctionDef):
                    found.append((str(path.relative_to(SRC)), owner, item.name))
    return found


def test_async_suffix_marks_the_seeds_seams_and_nothing_else() -> None:
    wrong = []
    for path, owner, name in _coroutines():
        public = not name.startswith("_")
        if owner in REPOSITORY_SEAMS and public and not name.endswith("_async"):
            wrong.append(f"{path}: {owner}.{name} lacks the seed's _async")
        elif owner in SCHEDULER_SEAMS and name.endswith("_async") and name not in SCHEDULER_METHODS:
            wrong.append(f"{path}: {owner}.{name} is not one of the seed's scheduler methods")
        elif owner not in REPOSITORY_SEAMS | SCHEDULER_SEAMS and name.endswith("_async"):
            wrong.append(f"{path}: {owner or '<module>'}.{name} carries _async outside the seed's seams")
    assert wrong == []
    names = {(owner, name) for _, owner, name in _coroutines()}
    assert {("WorkerMonitoringScheduler", method) for method in SCHEDULER_METHODS} <= names
