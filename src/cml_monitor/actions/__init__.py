"""Acting on workers: the audit-trailed executor, auto-pause of idle workers, remediation."""

from .automatic import ActionSettings, AutomaticActions
from .executor import ACTION_LEASE, ActionExecutor, ActionInFlight, ActionNotAllowed

__all__ = [
    "ACTION_LEASE",
    "ActionExecutor",
    "ActionInFlight",
    "ActionNotAllowed",
    "ActionSettings",
    "AutomaticActions",
]
