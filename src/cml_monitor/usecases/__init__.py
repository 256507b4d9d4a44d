"""What an operator can do, as small functions over injected parts: the API calls these.

Business rules (register and start monitoring, stop bookkeeping, import by tags, silence
checks) live here rather than in HTTP routes, so the CLI, tests and the web app share them.
Errors are our own types (`errors`), which the API maps to HTTP status codes.
"""

from .actions import ActionOperations, FleetSummary
from .alerts import AlertOperations
from .errors import Conflict, InvalidInput, NotFound, UpstreamFailed
from .workers import WorkerOperations

__all__ = [
    "ActionOperations",
    "AlertOperations",
    "Conflict",
    "FleetSummary",
    "InvalidInput",
    "NotFound",
    "UpstreamFailed",
    "WorkerOperations",
]
