"""What counts as a valid instance id, region, name and URL: shared by the API and the CLI."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import botocore.session

from cml_monitor.domain.text import control_character

INSTANCE_ID = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
MAX_NAME = 128
MAX_URL = 2048


@lru_cache(maxsize=1)
def known_regions() -> frozenset[str]:
    """Every EC2 region botocore's endpoint data knows, in every partition."""
    session = botocore.session.get_session()
    regions: set[str] = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions("ec2", partition_name=partition))
    return frozenset(regions)


def check_instance_id(value: str) -> str:
    if not INSTANCE_ID.match(value):
        raise ValueError("must look like an EC2 instance id: 'i-' and 8 or 17 hex digits")
    return value


def check_region(value: str) -> str:
    if value not in known_regions():
        raise ValueError("is not an AWS region name (e.g. us-east-1)")
    return value


def check_name(value: str) -> str:
    if not 1 <= len(value) <= MAX_NAME:
        raise ValueError(f"must be 1 to {MAX_NAME} characters")
    if not value.isprintable() or not value.strip():
        raise ValueError("must be printable characters, not only spaces")
    return value


def check_url(value: str) -> str:
    if len(value) > MAX_URL:
        raise ValueError(f"must be at most {MAX_URL} characters")
    if not value.isprintable() or any(ch.isspace() for ch in value):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


def reject_lone_surrogates(value: Any) -> Any:
    """Strings must be encodable UTF-8: a lone surrogate (JSON `"\\ud800"`) cannot be stored or sent.

    Nor may they hold a control character other than tab and line breaks: PostgreSQL refuses
    a NUL in text (a 503 for a bad request, before), and the others have no place in our data.
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("contains a lone surrogate, which is not valid Unicode text") from None
        reject_control_characters(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            reject_lone_surrogates(key)
            reject_lone_surrogates(item)
    elif isinstance(value, list | tuple):
        for item in value:
            reject_lone_surrogates(item)
    return value


def check_timestamp(value: datetime) -> datetime:
    """An aware timestamp that exists in UTC (years 1970–9998 once converted)."""
    if value.tzinfo is None:
        raise ValueError("needs a UTC offset (Z or +00:00)")
    try:
        in_utc = value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("is out of range once converted to UTC") from None
    if not 1970 <= in_utc.year <= 9998:
        raise ValueError("must fall between 1970 and 9998 (UTC)")
    return in_utc


def reject_control_characters(value: str) -> str:
    found = control_character(value)
    if found is not None:
        raise ValueError(f"contains the control character {found}; only tab and line breaks are allowed")
    return value
