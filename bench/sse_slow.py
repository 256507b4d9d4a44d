"""Memory held for live-stream clients that never read.

    python -m bench.sse_slow [--workers 300] [--interval 10] [--clients 50] [--seconds 90]

The simulator (its own process) serves `--workers` workers with CML controllers; the real
service (`cml-monitor serve`, SQLite) collects them every `--interval` seconds. Once it has
collected twice (warm), this process opens `--clients` event streams on raw sockets with a tiny
receive buffer that send their request and never read, then samples the service's resident
memory and open descriptors every second for `--seconds`. A client the service holds costs
memory (its backlog, its write buffer) and a connection until the service drops it. `--waves`
waves of clients follow one another: a bound holds if a later wave costs no more than the first.

Figures, per wave: the service's RSS at its peak and at the end, the peak growth per client,
the connections it held and when it had dropped them all; and how many drops it logged.
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import tempfile
import time
from pathlib import Path

import httpx

from bench.cycle import prepare_database, start_simulator
from bench.load import start_service, wait_ready
from bench.process_stats import established_to, rss_mb
from cml_fleet_sim.serving import free_port


def never_reading(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # before connect: a tiny window
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: monitor\r\nAccept: text/event-stream\r\n\r\n")
    return sock


def collections(base: str) -> float:
    """Collections the service has completed, from its own metrics."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    found = re.search(r"^cml_monitor_collection_seconds_count (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def wait_for_collections(base: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while collections(base) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the service did not complete {count} collections")
        time.sleep(0.5)


def wave(pid: int, port: int, args: argparse.Namespace, baseline: float) -> dict[str, object]:
    """`--clients` never-reading streams for `--seconds`: the service's memory and connections."""
    sockets = [never_reading(port) for _ in range(args.clients)]
    started = time.monotonic()
    peak, held, dropped_after = baseline, 0, None
    samples = []
    while time.monotonic() - started < args.seconds:
        time.sleep(1)
        rss, connections = rss_mb(pid), established_to(port)
        samples.append((round(time.monotonic() - started), round(rss, 1), connections))
        peak, held = max(peak, rss), max(held, connections)
        if dropped_after is None and held >= args.clients and connections == 0:
            dropped_after = round(time.monotonic() - started)
    for sock in sockets:
        sock.close()
    return {
        "rss_peak_mb": round(peak, 1),
        "rss_end_mb": round(rss_mb(pid), 1),
        "peak_growth_kb_per_client": round((peak - baseline) * 1024 / args.clients, 1),
        "connections_held_max": held,
        "all_dropped_after_s": dropped_after,
        "samples": samples,
    }


def measure(pid: int, base: str, port: int, args: argparse.Namespace, log: Path) -> dict[str, object]:
    wait_for_collections(base, 2, timeout=20 * args.interval + 120)
    before = []
    for _ in range(3):
        before.append(rss_mb(pid))
        time.sleep(1)
    baseline = sorted(before)[1]
    cycles_before = collections(base)
    waves = [wave(pid, port, args, baseline) for _ in range(args.waves)]
    text = log.read_text(encoding="utf-8") if log.exists() else ""
    return {
        "workers": args.workers,
        "interval_s": args.interval,
        "clients": args.clients,
        "seconds_per_wave": args.seconds,
        "cycles": collections(base) - cycles_before,
        "rss_before_mb": round(baseline, 1),
        "waves": waves,
        "peak_growth_kb_per_client": max(w["peak_growth_kb_per_client"] for w in waves),  # type: ignore[type-var]
        "all_dropped_after_s": [w["all_dropped_after_s"] for w in waves],
        "dropped_by_hub": text.count("Disconnected an event stream client"),
        "aborted_by_server": text.count("took no data for"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=300)
    parser.add_argument("--interval", type=int, default=10)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=75.0, help="per wave")
    parser.add_argument("--waves", type=int, default=2, help="waves of clients, one after the other")
    args = parser.parse_args()
    args.regions, args.controllers = 1, args.workers
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        simulator, fleet = start_simulator(args, workdir)
        asyncio.run(prepare_database(f"sqlite+aiosqlite:///{workdir / 'monitor.db'}", fleet))
        port = free_port()
        log = workdir / "monitor.log"
        service = start_service(fleet, workdir, port, args.interval, {"LOG_FILE": str(log)})
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base)
            figures = measure(service.pid, base, port, args, log)
        finally:
            service.terminate()
            simulator.terminate()
            service.wait(30)
            simulator.wait(30)
    print(
        f"{args.clients} never-reading clients, {args.workers} workers every {args.interval} s; "
        f"RSS before {figures['rss_before_mb']} MB"
    )
    for number, one in enumerate(figures["waves"], start=1):  # type: ignore[arg-type]
        print(
            f"  wave {number}: RSS peak {one['rss_peak_mb']} MB, end {one['rss_end_mb']} MB "
            f"({one['peak_growth_kb_per_client']} KB per client at the peak); {one['connections_held_max']} "
            f"connections held, all dropped after {one['all_dropped_after_s']} s"
        )
        for at, rss, connections in one["samples"][:: max(1, len(one["samples"]) // 8)]:
            print(f"    t={at:>4} s  RSS {rss:7.1f} MB  connections {connections}")
        one["samples"] = one["samples"][:: max(1, len(one["samples"]) // 8)]
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
