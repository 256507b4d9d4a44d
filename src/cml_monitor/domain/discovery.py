"""What discovery knows without I/O: the tagged instances EC2 listed, and the `cml_url` template.

A discovered worker's controller address is not known in advance, so the operator gives a
template filled in from the instance EC2 describes (`https://{private_ip}`,
`https://{tag:CmlHost}:8443`, …). The template is checked when the settings load, so a typo
stops the service at start rather than registering a fleet of unusable URLs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
TEMPLATE_FIELDS = ("private_ip", "public_ip", "private_dns", "public_dns", "instance_id")


@dataclass(frozen=True, slots=True)
class TaggedInstance:
    """One instance as `DescribeInstances` lists it (an address or name EC2 omits is None)."""

    instance_id: str
    state: str | None
    name: str | None = None
    private_ip: str | None = None
    public_ip: str | None = None
    private_dns: str | None = None
    public_dns: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def terminated(self) -> bool:
        return self.state in ("shutting-down", "terminated")


def template_problem(template: str) -> str | None:
    """What is wrong with a `cml_url` template, or None when it is usable."""
    for name in PLACEHOLDER.findall(template):
        if name not in TEMPLATE_FIELDS and not (name.startswith("tag:") and len(name) > 4):
            allowed = ", ".join(f"{{{n}}}" for n in TEMPLATE_FIELDS)
            return f"unknown placeholder {{{name}}} (allowed: {allowed}, {{tag:KEY}})"
    filled = PLACEHOLDER.sub("host.example", template)
    if "{" in filled or "}" in filled:
        return f"{template!r} has an unbalanced brace"
    parts = urlsplit(filled)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{template!r} does not make an http(s) URL"
    return None


def render_cml_url(template: str, instance: TaggedInstance) -> str | None:
    """The template filled in from the instance; None when a value it needs is missing
    (a stopped instance has no public address, a tag may be absent)."""
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group(1)
        found = instance.tags.get(name[4:]) if name.startswith("tag:") else getattr(instance, name)
        if not found:
            missing = True
            return ""
        return str(found)

    url = PLACEHOLDER.sub(value, template)
    return None if missing else url
