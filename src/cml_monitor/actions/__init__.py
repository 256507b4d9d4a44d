"""Acting on workers: the audit-trailed executor, auto-pause of idle workers, remediation."""

from .automatic import ActionSettings, AutomaticActions
from .executor import ActionExecutor, ActionInFlight, ActionNotAllowed

__all__ = ["ActionExecutor", "ActionInFlight", "ActionNotAllowed", "ActionSettings", "AutomaticActions"]
