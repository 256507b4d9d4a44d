"""The demo's scenario: within two minutes a worker crosses 95 % CPU, one is stopped, one goes
impaired, a controller drops out, another is not ready, loses a compute, fills its disk or
its licence, AWS schedules a retirement, and labs come and go; then everything recovers and
the story repeats with other workers, so a demo left running keeps moving. It touches only the
instances it is given: the demo keeps two workers out of it (one idle, one started by hand)."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

from .simulator import FleetSimulator

logger = logging.getLogger(__name__)

CYCLE_SECONDS = 120.0


class DemoScenario:
    def __init__(
        self, simulator: FleetSimulator, instance_ids: list[str], *, speed: float = 1.0, seed: int = 11
    ) -> None:
        self.simulator = simulator
        self.instance_ids = instance_ids
        self.speed = speed
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-scenario", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _pick(self, round_number: int, slot: int) -> str | None:
        if len(self.instance_ids) <= slot:
            return None
        return self.instance_ids[(slot + 4 * round_number) % len(self.instance_ids)]

    def _timeline(self, round_number: int) -> list[tuple[float, str, Callable[[], None]]]:
        fleet = self.simulator.fleet
        hot, stopped, impaired, silent = (self._pick(round_number, slot) for slot in (1, 2, 3, 4))
        steps: list[tuple[float, str, Callable[[], None]]] = []
        if hot:
            steps += [
                (10, f"{hot}: CPU to 97 %", lambda: fleet.set_metrics(hot, cpu=97.0)),
                (75, f"{hot}: CPU back to normal", lambda: fleet.set_metrics(hot, cpu=None)),
            ]
        if stopped:
            steps += [
                (25, f"{stopped}: stopped (not by us)", lambda: fleet.stop(stopped, requested=False)),
                (90, f"{stopped}: started again", lambda: fleet.start(stopped)),
            ]
        if impaired:
            steps += [
                (
                    40,
                    f"{impaired}: system status check impaired",
                    lambda: fleet.set_status_checks(impaired, system="impaired"),
                ),
                (
                    100,
                    f"{impaired}: system status check ok",
                    lambda: fleet.set_status_checks(impaired, system="ok"),
                ),
            ]
        if silent:
            steps += [
                (
                    55,
                    f"{silent}: CML controller unreachable",
                    lambda: self.simulator.set_controller(silent, unreachable=True),
                ),
                (
                    105,
                    f"{silent}: CML controller back",
                    lambda: self.simulator.set_controller(silent, unreachable=False),
                ),
            ]
        steps += self._controller_steps(round_number)
        for at in range(8, int(CYCLE_SECONDS), 8):
            steps.append((float(at), "labs come and go", self._shuffle_labs))
        return sorted(steps, key=lambda step: step[0])

    def _controller_steps(self, round_number: int) -> list[tuple[float, str, Callable[[], None]]]:
        """One CML fault per worker, each undone a minute later, and an EC2 scheduled event."""
        sim = self.simulator
        faults: list[tuple[str, dict[str, object], dict[str, object]]] = [
            ("controller not ready", {"ready": False}, {"ready": True}),
            ("a compute not admitted", {"compute_admitted": False}, {"compute_admitted": True}),
            ("licence expiring in 5 days", {"license_expires_in_days": 5}, {"license_expires_in_days": 300}),
            ("controller disk 96 % full", {"disk_used_percent": 96.0}, {"disk_used_percent": 35.0}),
        ]
        steps: list[tuple[float, str, Callable[[], None]]] = []
        for slot, (what, on, off) in enumerate(faults, start=5):
            target = self._pick(round_number, slot)
            if target is None:
                continue
            at = 15.0 + 8 * slot
            steps += [
                (at, f"{target}: {what}", lambda t=target, v=on: sim.set_controller(t, **v)),  # type: ignore[misc]
                (at + 60, f"{target}: {what} — fixed", lambda t=target, v=off: sim.set_controller(t, **v)),  # type: ignore[misc]
            ]
        retiring = self._pick(round_number, 9)
        if retiring is not None:
            steps += [
                (20.0, f"{retiring}: AWS schedules its retirement", lambda: sim.schedule_event(retiring)),
                (95.0, f"{retiring}: scheduled event completed", lambda: sim.complete_events(retiring)),
            ]
        return steps

    def _shuffle_labs(self) -> None:
        if not self.instance_ids:
            return
        instance_id = self._random.choice(self.instance_ids)
        try:
            running = self.simulator.controllers.get(instance_id).running_labs()
        except KeyError:
            return
        change = self._random.choice((-1, 1)) if running else 1
        self.simulator.set_labs(instance_id, max(0, min(8, running + change)))

    def _run(self) -> None:
        round_number = 0
        while not self._stop.is_set():
            elapsed = 0.0
            for at, description, action in self._timeline(round_number):
                if self._stop.wait((at - elapsed) / self.speed):
                    return
                elapsed = at
                try:
                    action()
                except Exception:
                    logger.exception("Scenario step failed: %s", description)
                    continue
                if description != "labs come and go":
                    logger.info("🎬 Scenario: %s", description)
            if self._stop.wait((CYCLE_SECONDS - elapsed) / self.speed):
                return
            round_number += 1
