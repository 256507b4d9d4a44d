"""Where a running service's CPU goes, by part of the product, from py-spy samples.

    python -m bench.cpu_split SAMPLES.txt     # a file `py-spy record --format raw --threads` wrote

`bench.load --cpu-split` records one while it measures: py-spy samples the `serve` process and
its collector child 100 times a second from outside (nothing in the service changes, and idle
threads are not sampled, so a sample is CPU spent). Each sample is given to the part of the
product that was running: the innermost frame of our own code decides (so time in botocore
under `aws/` counts as AWS, time in SQLAlchemy under `storage/` as the database, and time the
alert engine spends in `storage/` as the database too). A sample with no frame of ours goes by
the innermost library frame (uvicorn and h11: HTTP serving; SQLAlchemy: the database;
botocore: AWS), else by its thread: the CML controllers' I/O loop (`cml-controllers`), the job
store's thread, or the event loop and its I/O (socket reads, TLS, selector wake-ups).

The last line printed is one JSON object: per process, each part's share of the samples.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

# The innermost frame under one of these decides the part (first match wins, most specific first).
PARTS: tuple[tuple[str, str], ...] = (
    ("cml_monitor/cml/", "CML reads"),
    ("cml_monitor/aws/", "AWS calls and parsing"),
    ("cml_monitor/storage/", "database"),
    ("cml_monitor/alerts/", "alert engine and notifications"),
    ("cml_monitor/live_events.py", "SSE fan-out"),
    ("cml_monitor/api/routes/events.py", "SSE fan-out"),
    ("sse_starlette/", "SSE fan-out"),
    ("cml_monitor/local_bus.py", "local channel between the processes"),
    ("cml_monitor/collector_process.py", "local channel between the processes"),
    ("cml_monitor/supervisor.py", "local channel between the processes"),
    ("cml_monitor/api/", "API requests"),
    ("cml_monitor/actions/", "actions and idle policy"),
    ("cml_monitor/monitoring/", "collection (monitor, observers, scheduler)"),
    ("cml_monitor/", "other product code"),
)
# Frames that serve every part (the domain's shapes, the HTTP plumbing every response passes
# through, an SSE stream's included): the frame around or under them decides.
TRANSPARENT = (
    "cml_monitor/domain/",
    "cml_monitor/api/security.py",
    "cml_monitor/api/limits.py",
    "cml_monitor/api/http_limits.py",
    "cml_monitor/api/server.py",
    "cml_monitor/cli.py",  # the process's entry: the event loop runs under it
    "main (",  # the collector child's entry, likewise
    "<module> (",
)
# With no frame of ours, the innermost library frame decides.
LIBRARIES: tuple[tuple[str, str], ...] = (
    ("/uvicorn/", "HTTP serving (uvicorn, FastAPI)"),
    ("/h11/", "HTTP serving (uvicorn, FastAPI)"),
    ("/httptools/", "HTTP serving (uvicorn, FastAPI)"),
    ("/starlette/", "HTTP serving (uvicorn, FastAPI)"),
    ("/fastapi/", "HTTP serving (uvicorn, FastAPI)"),
    ("/sqlalchemy/", "database"),
    ("/aiosqlite/", "database"),
    ("/asyncpg/", "database"),
    ("/botocore/", "AWS calls and parsing"),
    ("/aiobotocore/", "AWS calls and parsing"),
    ("/redis/", "job store"),
    ("/apscheduler/", "job store"),
)
THREADS: tuple[tuple[str, str], ...] = (
    ("cml-controllers", "CML reads"),
    ("job-store", "job store"),
)
IDLE_PART = "event loop and I/O"
_FRAME = re.compile(r"^.* \((?P<file>[^()]*):\d+\)$")
_PROCESS = re.compile(r'^process (?P<pid>\d+):"(?P<command>.*)"$')
_THREAD = re.compile(r"^thread \(\w+\): (?P<name>.*)$")


def process_label(command: str) -> str:
    if "cml_monitor.collector_process" in command:
        return "collector"
    return "api" if " serve" in command else command.split()[-1]


def part_of(frames: list[str], thread: str) -> str:
    paths = [
        path
        for frame in reversed(frames)
        if (found := _FRAME.match(frame))
        and not any(part in frame.replace("\\", "/") for part in TRANSPARENT)
        for path in [found["file"].replace("\\", "/")]
    ]
    for markers in (PARTS, LIBRARIES):
        for path in paths:
            for marker, part in markers:
                if marker in path:
                    return part
    for prefix, part in THREADS:
        if thread.startswith(prefix):
            return part
    return IDLE_PART


def split(raw: str) -> dict[str, dict[str, float]]:
    """Per process label, each part's share (percent) of that process's samples."""
    samples: dict[str, Counter[str]] = {}
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        label, thread = "service", ""
        rest: list[str] = []
        for frame in frames:
            if (process := _PROCESS.match(frame)) is not None:
                label = process_label(process["command"])
            elif (named := _THREAD.match(frame)) is not None:
                thread = named["name"]
            else:
                rest.append(frame)
        samples.setdefault(label, Counter())[part_of(rest, thread)] += int(count)
    return {
        label: {
            "samples": sum(parts.values()),
            **{part: round(100 * n / sum(parts.values()), 1) for part, n in parts.most_common()},
        }
        for label, parts in samples.items()
    }


def report(shares: dict[str, dict[str, float]]) -> str:
    lines = []
    for label, parts in shares.items():
        lines.append(f"  {label} process ({parts['samples']:.0f} samples at 100 Hz):")
        lines += [f"    {share:5.1f} %  {part}" for part, share in parts.items() if part != "samples"]
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bench.cpu_split SAMPLES.txt")
    shares = split(Path(sys.argv[1]).read_text())
    print(report(shares))
    print(json.dumps(shares))


if __name__ == "__main__":
    main()
