"""Private Redis and PostgreSQL servers that a fault test may kill, stop, freeze and restart.

Never the shared ones on 6379/5432: those serve every other test. Each server listens on a
free loopback port in a temporary directory and runs in its own process group, so a test can
freeze the whole server (SIGSTOP), as a hung host would look from the monitor.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from cml_fleet_sim.serving import free_port

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), Path("/usr/bin"))


def _wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing answered on port {port}")


class PrivateRedis:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        """Start, empty (nothing is kept on disk)."""
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_for_port(self.port)
        return self

    def kill(self) -> None:
        if self.process is not None:
            self.thaw()  # a stopped process cannot be reaped
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def freeze(self) -> None:
        """As a hung host looks from the client: connections open, nothing answers."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)


class PrivatePostgres:
    """A throwaway cluster run as the `postgres` user (PostgreSQL refuses to run as root)."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: its parents are private to root, and `postgres` must reach it.
        self.root = Path(tempfile.mkdtemp(prefix="cml-monitor-pg-"))
        self.root.chmod(0o755)
        self.directory = self.root / "pgdata"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._as_postgres: dict[str, str] = (
            {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}
        )

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> PrivatePostgres:
        self.directory.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        subprocess.run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(self.directory),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **self._as_postgres,  # type: ignore[arg-type]
        )
        return self

    def start(self) -> PrivatePostgres:
        self.process = subprocess.Popen(
            [
                str(PG_BIN / "postgres"),
                "-D",
                str(self.directory),
                "-p",
                str(self.port),
                "-k",
                str(self.directory),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            **self._as_postgres,  # type: ignore[arg-type]
        )
        deadline = time.monotonic() + 30
        ready = [str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        while subprocess.run(ready, check=False).returncode != 0:  # accepting connections, not just the port
            if time.monotonic() > deadline:
                raise AssertionError("the private PostgreSQL did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.thaw()
            os.kill(self.process.pid, signal.SIGINT)  # fast shutdown
            self.process.wait(30)
            self.process = None

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def _processes(self) -> list[int]:
        """The postmaster and its children (each backend makes itself a session of its own)."""
        assert self.process is not None
        found = [self.process.pid]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                found.append(int(stat.parent.name))
        return found

    def freeze(self) -> None:
        """As a hung host looks from the client: connections open, nothing answers."""
        for pid in self._processes():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._processes():
            os.kill(pid, signal.SIGCONT)
