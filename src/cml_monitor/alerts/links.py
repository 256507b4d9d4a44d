"""Links every notification carries: the worker's dashboard page and the alert kind's runbook.

Added when a message is sent, not when it is queued, so a message that waited in the outbox
through a restart links to where the dashboard and the runbooks are now. The webhook body gains
them as one additive `links` object; the chat and incident formats show them their own way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cml_monitor.settings import DEFAULT_RUNBOOK_BASE_URL


@dataclass(frozen=True, slots=True)
class Links:
    public_url: str = ""  # the dashboard's public address; empty: no dashboard links
    runbook_base: str = DEFAULT_RUNBOOK_BASE_URL

    def worker_url(self, worker_id: str | None) -> str | None:
        if not self.public_url or not worker_id:
            return None
        return f"{self.public_url}/#/workers/{worker_id}"

    def alerts_url(self) -> str | None:
        return f"{self.public_url}/#/alerts" if self.public_url else None

    def runbook_url(self, kind: str) -> str:
        return f"{self.runbook_base}/{kind}.md"

    def for_payload(self, payload: dict[str, Any]) -> dict[str, str | None]:
        """`dashboard` (the worker's page, or the alerts page for fleet-level alerts) and `runbook`."""
        worker = payload.get("worker") or {}
        alert = payload.get("alert")
        dashboard = self.worker_url(worker.get("id")) or (self.alerts_url() if alert else None)
        links: dict[str, str | None] = {"dashboard": dashboard}
        if alert:
            links["runbook"] = self.runbook_url(alert["kind"])
        return links

    def decorate(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The payload with its `links` object (an additive field of the webhook contract)."""
        return {**payload, "links": self.for_payload(payload)}
