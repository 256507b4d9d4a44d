"""Debian's Prometheus, promtool and Alertmanager on loopback, for the tests of what we ship them.

Each runs on a free loopback port with its own storage directory and no clustering, and is
stopped (SIGTERM, then SIGKILL) when the test ends. A missing binary skips the test with the
package to install; `.ci/run` installs both packages.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from cml_fleet_sim.serving import free_port

PACKAGES = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
}


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package `{PACKAGES[name]}`; .ci/run installs it)")
    return path


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args[0]} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer before the deadline")


@contextmanager
def running(args: list[str], ready_url: str, log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_ready(ready_url, process)
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def alertmanager(workdir: Path) -> Iterator[str]:
    """An Alertmanager with a do-nothing receiver; yields its base URL."""
    exe = binary("prometheus-alertmanager")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "alertmanager.yml"
    config.write_text("route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [
        exe,
        f"--config.file={config}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    with running(args, f"{url}/-/ready", workdir / "alertmanager.log"):
        yield url


@contextmanager
def prometheus(
    workdir: Path, targets: list[str], rules: Sequence[Path] = (), interval: str = "1s"
) -> Iterator[str]:
    """A Prometheus scraping `targets` (host:port) as job `cml-monitor`; yields its base URL."""
    exe = binary("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    lines = [
        "global:",
        f"  scrape_interval: {interval}",
        f"  evaluation_interval: {interval}",
    ]
    if rules:
        lines.append("rule_files:")
        lines += [f"  - {rule}" for rule in rules]
    lines += [
        "scrape_configs:",
        "  - job_name: cml-monitor",
        "    static_configs:",
        f"      - targets: [{', '.join(repr(t) for t in targets)}]",
    ]
    config.write_text("\n".join(lines) + "\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [
        exe,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with running(args, f"{url}/-/ready", workdir / "prometheus.log"):
        yield url
