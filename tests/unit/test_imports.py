"""The import checker: our own tree is clean, and a ring or a wrong-way import is caught."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("check_imports", ROOT / "tools" / "check_imports.py")
assert _spec is not None and _spec.loader is not None
check_imports = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_imports)


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_our_source_has_no_ring_and_no_wrong_way_import() -> None:
    assert check_imports.check(ROOT / "src") == []


def test_a_module_ring_a_package_ring_and_wrong_way_imports_are_found(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "cml_monitor/__init__.py": "",
            "cml_monitor/domain/__init__.py": "from cml_monitor.storage import x\n",
            "cml_monitor/alerts/__init__.py": "",
            "cml_monitor/alerts/engine.py": "from cml_monitor.storage.alerts import AlertRepository\n",
            "cml_monitor/storage/__init__.py": "x = 1\n",
            "cml_monitor/storage/alerts.py": "from ..alerts.engine import thing\n",
            "cml_monitor/monitoring/__init__.py": "",
            "cml_monitor/monitoring/job.py": "from . import scheduler\n",
            "cml_monitor/monitoring/scheduler.py": "if TYPE_CHECKING:\n    from .job import run\n",
            "cml_monitor/api.py": "import cml_fleet_sim.fleet\n",
            "cml_fleet_sim/__init__.py": "",
            "cml_fleet_sim/fleet.py": "from cml_monitor.domain import Worker\n",
        },
    )
    problems = "\n".join(check_imports.check(root))
    assert "module ring: cml_monitor.alerts.engine -> cml_monitor.storage.alerts" in problems
    assert "module ring: cml_monitor.monitoring.job -> cml_monitor.monitoring.scheduler" in problems
    assert "package ring" in problems and "cml_monitor.alerts" in problems
    assert "cml_monitor.domain imports cml_monitor.storage" in problems
    assert "cml_fleet_sim.fleet imports cml_monitor.domain: the simulator stands apart" in problems
    assert "cml_monitor.api imports cml_fleet_sim.fleet: only the demo loads the simulator" in problems


def test_monitoring_importing_alerts_is_found(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "cml_monitor/__init__.py": "",
            "cml_monitor/alerts/__init__.py": "",
            "cml_monitor/alerts/engine.py": "AlertEngine = object\n",
            "cml_monitor/monitoring/__init__.py": "",
            "cml_monitor/monitoring/handler.py": "from cml_monitor.alerts.engine import AlertEngine\n",
        },
    )
    (problem,) = check_imports.check(root)
    assert problem.startswith("cml_monitor.monitoring.handler imports cml_monitor.alerts.engine: monitoring")
