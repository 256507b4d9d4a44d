"""Run the fleet simulator on its own: `python -m cml_fleet_sim --workers 1000`.

Prints (or writes to `--out`) a JSON description: the URL and every instance with its region
and controller URL. Runs until SIGTERM or Ctrl-C. Benchmarks use it to keep the simulator's
CPU out of the monitor's process.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path

from .simulator import FleetSimulator


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m cml_fleet_sim", description=__doc__)
    parser.add_argument("--workers", type=int, default=25)
    parser.add_argument("--regions", type=int, default=1, help="spread the workers over this many regions")
    parser.add_argument(
        "--controllers", type=int, default=None, help="workers with a CML controller (default all)"
    )
    parser.add_argument("--controller-latency", type=float, default=0.0, help="seconds per controller answer")
    parser.add_argument("--throttling", action="store_true", help="AWS's default rate limits on")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the description here instead of stdout")
    args = parser.parse_args()

    regions = ["us-east-1", "eu-west-1", "us-west-2", "ap-southeast-2", "eu-central-1", "us-east-2"][
        : max(1, args.regions)
    ]
    simulator = FleetSimulator(controller_latency=args.controller_latency, seed=42)
    url = simulator.start(port=args.port)
    controllers = args.workers if args.controllers is None else args.controllers
    instances = []
    for index, region in enumerate(regions):
        count = args.workers // len(regions) + (1 if index < args.workers % len(regions) else 0)
        with_controllers = min(count, max(0, controllers - len(instances)))
        made = simulator.add_workers(with_controllers, region=region) if with_controllers else []
        made += simulator.add_workers(count - with_controllers, region=region, with_controllers=False)
        instances += [
            {
                "instance_id": i.instance_id,
                "region": i.region,
                "cml_url": simulator.controller_url(i.instance_id) if n < with_controllers else None,
            }
            for n, i in enumerate(made)
        ]
    if args.throttling:
        simulator.set_faults(throttling=True)
    description = json.dumps({"url": url, "instances": instances})
    if args.out:
        args.out.write_text(description)
    else:
        print(description, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    simulator.stop()


if __name__ == "__main__":
    main()
