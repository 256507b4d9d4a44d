"""Text from outside (controllers, AWS, requests) made fit to store, show and log.

PostgreSQL refuses a NUL byte in any text column, so one NUL in a controller's answer used to
fail the whole region's batched write; the other C0 control characters (ESC, BEL, backspace …)
are never meaningful in a hostname or a status and rewrite terminals that show logs. What comes
from controllers and AWS has them removed (`clean`); what comes in a request is refused with a
422 naming the field (`control_character` says which character). Tab, line feed and carriage
return are kept: free text (an event's description, a multi-line comment typed in a textarea)
uses them, every store accepts them, and our JSON logs escape them.
"""

from __future__ import annotations

import re
from typing import Any

# C0 control characters except tab (09), line feed (0A) and carriage return (0D).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def clean(value: str) -> str:
    """The text without its control characters."""
    return _CONTROL.sub("", value) if _CONTROL.search(value) else value


def clean_optional(value: str | None) -> str | None:
    return None if value is None else clean(value)


def clean_deep(value: Any) -> Any:
    """A decoded JSON document with every string (keys too) cleaned; other values as they were."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {clean_deep(key): clean_deep(item) for key, item in value.items()}
    if isinstance(value, list):
        return [clean_deep(item) for item in value]
    return value


def control_character(value: str) -> str | None:
    """The first control character of the text as `U+0000`, or None when it has none."""
    found = _CONTROL.search(value)
    return None if found is None else f"U+{ord(found.group()):04X}"
