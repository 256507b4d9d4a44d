"""Fails when our imports form a ring, or point the wrong way.

Reads every module under `src/` with `ast` (nothing is imported or run) and checks:
- no ring between modules, and none between the packages of `cml_monitor` (`alerts`,
  `storage`, `monitoring`, ...): a ring means two parts can only be understood together;
- `cml_monitor.domain` imports nothing of ours: it is the vocabulary every other part shares;
- `cml_fleet_sim` imports nothing of `cml_monitor`, and only `cml_monitor.demo` imports the
  simulator, so a production install runs without it;
- `cml_monitor.monitoring` imports nothing of `cml_monitor.alerts`: monitoring publishes events
  to observers, and alerting is one of them (wired in `runtime.py`), not something it calls.

Imports under `if TYPE_CHECKING:` count too: a ring that only type checkers see is still a
ring a reader has to untangle. Usage: `python tools/check_imports.py [src]`; exit 1 on a finding.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

OURS = ("cml_monitor", "cml_fleet_sim")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(root: Path, path: Path, known: set[str]) -> set[str]:
    module = module_name(root, path)
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = resolve(module, path.name == "__init__.py", node)
            targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in known and target != module:
                found.add(target)
    return found


def rings(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "cml_monitor" else parts[0]


def check(root: Path) -> list[str]:
    paths = {module_name(root, p): p for p in root.rglob("*.py") if p.parts[-2] != "versions"}
    paths = {name: p for name, p in paths.items() if name.split(".")[0] in OURS}
    known = set(paths)
    graph = {name: imports_of(root, path, known) for name, path in paths.items()}
    problems = [f"module ring: {' -> '.join(ring)}" for ring in rings(graph)]
    packages: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph.items():
        packages[package_of(module)] |= {package_of(t) for t in targets} - {package_of(module)}
    problems += [f"package ring: {' -> '.join(ring)}" for ring in rings(dict(packages))]
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if module.startswith("cml_monitor.domain") and not target.startswith("cml_monitor.domain"):
                problems.append(f"{module} imports {target}: the domain imports nothing of ours")
            if package_of(module) == "cml_monitor.monitoring" and package_of(target) == "cml_monitor.alerts":
                problems.append(f"{module} imports {target}: monitoring publishes, alerting observes")
            if module.startswith("cml_fleet_sim") and target.startswith("cml_monitor"):
                problems.append(f"{module} imports {target}: the simulator stands apart")
            if (
                target.startswith("cml_fleet_sim")
                and module.startswith("cml_monitor")
                and module != "cml_monitor.demo"
            ):
                problems.append(f"{module} imports {target}: only the demo loads the simulator")
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else "src")
    problems = check(root)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} import problem(s)", file=sys.stderr)
        return 1
    print("imports: no ring, domain and simulator stand apart, monitoring does not import alerts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
