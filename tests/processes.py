"""Running `cml-monitor` as users do: a subprocess, polled with a deadline, stopped by a signal."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx


def spawn_cli(
    args: list[str], env: dict[str, str], cwd: Path, *, quiet: bool = False
) -> subprocess.Popen[str]:
    output = subprocess.DEVNULL if quiet else subprocess.PIPE
    return subprocess.Popen(
        [sys.executable, "-m", "cml_monitor.cli", *args],
        env=env,
        cwd=cwd,
        stdout=output,
        stderr=subprocess.STDOUT if not quiet else subprocess.DEVNULL,
        text=True,
    )


def wait_until(check: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("condition not met before the deadline")


def stop(process: subprocess.Popen[str], sig: int, timeout: float = 30.0) -> str:
    """Send `sig`, wait for the exit (kill after `timeout`), and return what it printed."""
    process.send_signal(sig)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output or ""
