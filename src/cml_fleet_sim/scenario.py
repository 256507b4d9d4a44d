"""The demo's scenario: within two minutes a worker crosses 95 % CPU, one is stopped, one goes
impaired, a controller drops out, and labs come and go; then everything recovers and the story
repeats with other workers, so a demo left running keeps moving."""

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
        for at in range(8, int(CYCLE_SECONDS), 8):
            steps.append((float(at), "labs come and go", self._shuffle_labs))
        return sorted(steps, key=lambda step: step[0])

    def _shuffle_labs(self) -> None:
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
