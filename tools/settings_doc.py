"""Writes `docs/configuration.md` from the `Settings` class: every setting, its default, its
bounds and what it means, grouped as the class groups them.

The page is generated so that it cannot drift: a test regenerates it and fails when the file
differs or a setting is missing. Usage: `python -m tools.settings_doc` (writes the page) or
`python -m tools.settings_doc --check` (exit 1 when the page is out of date).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from cml_monitor.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "configuration.md"
SOURCE = ROOT / "src" / "cml_monitor" / "settings.py"

# What each setting means, for settings that carry no `Field(description=...)` of their own.
MEANINGS: dict[str, str] = {
    "cml_monitor_collector_process": (
        "role `all`: `serve` collects in a supervised child process so the API never waits behind "
        "a cycle; `false` keeps one process"
    ),
    "worker_auto_pause_notice": (
        "post a CML system notice when the idle grace starts (when, why, how to keep the worker)"
    ),
    "worker_metrics_source": (
        "`auto`: CPU and memory from the controller's `system_stats` when it answered this cycle, "
        "else CloudWatch; `cloudwatch`; `controller`"
    ),
    "worker_notification_alertmanager_urls": (
        "Alertmanager base URLs (comma list, every member of a cluster); alerts go to `/api/v2/alerts`"
    ),
    "worker_notification_alertmanager_refresh": (
        "seconds between re-posts of the firing alerts to Alertmanager (they expire unless re-posted)"
    ),
    "worker_notification_group_wait": "seconds a Slack message waits to carry the alerts that fire together",
    "cml_monitor_public_url": "the dashboard's public address; notifications link to `<url>/#/workers/<id>`",
    "worker_runbook_base_url": "where runbooks live; links are `<base>/<kind>.md`",
    "cml_monitor_heartbeat_url": (
        "dead-man's switch: `GET <url>` at most once per poll interval while every region's last "
        "run succeeded, `GET <url>/fail` when one failed"
    ),
    "cml_monitor_http_header_timeout": (
        "seconds a client has to send a request's headers before the connection is closed"
    ),
    "cml_monitor_http_body_timeout": "seconds a client has to send a request's body after its headers",
    "cml_monitor_http_max_connections": "open connections at most; one more is answered 503 and closed",
    "cml_monitor_managed_tag": (
        "`KEY=VALUE`: the tag the IAM policy requires on instances the monitor may stop, start or reboot"
    ),
    "cml_ca_bundle": (
        "PEM file of the CAs trusted for controllers (a stock controller's self-signed certificate will do)"
    ),
    "worker_monitoring_enabled": "start monitoring with the service",
    "worker_metrics_poll_interval": "seconds between two collections of a worker",
    "worker_cpu_threshold": "percent; CPU above it is a `cpu` violation (a worker may have its own)",
    "worker_memory_threshold": "percent; memory above it is a `memory` violation (a worker may have its own)",
    "worker_disk_threshold": "percent of the controller's disk used; above it is a `disk` alert",
    "worker_observer_timeout": "seconds an observer (alert engine, live events, gauges) may take on a"
    " region's"
    " events before it is left behind, logged and counted",
    "worker_metrics_raw_retention_hours": "hours raw samples are kept",
    "worker_metrics_retention_days": "days hourly averages are kept",
    "worker_idle_timeout": "seconds without user activity and without a started lab before a running worker"
    " is idle",
    "worker_idle_cpu_threshold": "percent; a worker above it is not idle",
    "worker_idle_check_interval": "seconds between reads of a controller's user activity",
    "cml_automation_users": "comma list of regular expressions; activity by matching user ids or names is not"
    " user activity",
    "worker_auto_pause_enabled": "stop idle workers (each worker can opt out with its `auto_pause` switch)",
    "worker_auto_pause_dry_run": "record the stop an idle worker would get, never call AWS",
    "worker_auto_pause_grace": "seconds an `idle` alert fires before the worker is stopped",
    "worker_auto_pause_snooze": "seconds a worker started by hand is not auto-paused",
    "worker_remediation_enabled": "reboot a worker whose EC2 status check stays impaired",
    "worker_remediation_after_samples": "impaired collections in a row before a reboot",
    "worker_remediation_cooldown": "seconds before the same worker is acted on again",
    "worker_actions_max_per_hour": "fleet-wide cap on automatic stops and reboots per hour",
    "worker_alert_for_samples": "violating collections in a row before an alert fires",
    "worker_alert_hysteresis": "points below the threshold a value must fall before the alert resolves",
    "worker_alert_repeat_interval": "seconds between reminders of a firing, unacknowledged alert",
    "worker_notification_webhooks": "comma list of http(s) URLs that receive every alert and action as JSON",
    "worker_notification_webhook_secret": "HMAC-SHA256 key: `X-CML-Monitor-Signature: sha256=<hex>` on each"
    " POST",
    "worker_notification_max_age": "seconds a message is retried before it is given up",
    "worker_notification_timeout": "seconds one delivery may take",
    "worker_notification_retry_base": "seconds before the first retry (doubled each time)",
    "worker_notification_retry_max": "longest wait between two retries, seconds (bounds `Retry-After` too)",
    "slack_webhook_url": "Slack incoming webhook (alerts only)",
    "pagerduty_routing_key": "PagerDuty Events API v2 routing key (alerts only)",
    "pagerduty_events_url": "PagerDuty Events API endpoint",
    "opsgenie_api_key": "Opsgenie API key (alerts only)",
    "opsgenie_api_url": "Opsgenie API endpoint (EU: `https://api.eu.opsgenie.com`)",
    "database_url": "`sqlite+aiosqlite:///path` or `postgresql+asyncpg://user:password@host/db`",
    "database_timeout": "seconds a database statement may take: a hung database costs a 503, not a hung"
    " request",
    "background_job_store_url": "empty: the jobs live in the database; `redis://host:6379/1`: in Redis",
    "background_job_store_timeout": (
        "seconds a Redis job-store command may take: a hung Redis costs this, and `/ready` says so"
    ),
    "event_bus_url": "empty: events stay in the process; `redis://…`: every replica's live stream sees every"
    " collection",
    "cml_monitor_role": "`all`; `api` (HTTP only); `collector` (monitoring, alerting and actions; HTTP only"
    " `/health`, `/ready`, `/metrics`)",
    "cml_monitor_host": "address `serve` listens on",
    "cml_monitor_port": "port `serve` listens on",
    "api_tokens": "comma list of `role:token` (roles `admin`, `viewer`); empty and no OIDC: no"
    " authentication",
    "oidc_issuer": "accept `Authorization: Bearer <JWT>` from this issuer (keys from its discovery document)",
    "oidc_audience": "the audience the JWTs must carry",
    "oidc_client_id": "the dashboard's public client id at the identity provider (default: the audience)",
    "oidc_roles_claim": "claim holding the roles (a dotted path such as `realm_access.roles`)",
    "oidc_admin_roles": "comma list of role values that grant `admin`",
    "oidc_viewer_roles": "comma list of role values that grant `viewer`",
    "oidc_jwks_refresh_floor": "least seconds between two reads of the identity provider's keys",
    "aws_region": "the default region (discovery looks there too)",
    "aws_endpoint_url": "send every AWS call here (a simulator or moto)",
    "aws_max_attempts": "attempts per AWS call (throttling and 5xx are retried with backoff)",
    "aws_retry_mode": "botocore's retry mode",
    "worker_events_queue_url": "SQS queue fed by EventBridge with EC2 state changes: applied within seconds",
    "worker_discovery_tags": "comma list of `Key=Value`; every non-terminated instance carrying all of them"
    " is"
    " registered (empty: no discovery)",
    "worker_discovery_regions": "comma list of regions to discover in (default: the regions of registered"
    " workers and `AWS_REGION`)",
    "worker_discovery_interval": "seconds between two discoveries",
    "worker_discovery_cml_url": "template of a discovered worker's controller URL: `{private_ip}`,"
    " `{public_ip}`,"
    " `{private_dns}`, `{public_dns}`, `{instance_id}`, `{tag:KEY}` (empty: no controller)",
    "worker_discovery_forget_after": "seconds after which a discovered worker whose instance is terminated is"
    " removed with its history",
    "cml_username": "the controllers' API account",
    "cml_password": "its password",
    "cml_verify_tls": "verify the controllers' certificates (`false` for self-signed ones)",
    "cml_url_blocked_networks": "a controller URL whose host is, or resolves into, these networks is refused"
    " and"
    " never contacted",
    "cml_timeout": "seconds a controller's whole read may take",
    "cml_max_labs": "a controller listing more labs than this is an error for that worker",
    "cml_concurrency": "controllers read at once",
    "cml_licensing_check_interval": "seconds between reads of a controller's licensing",
    "cml_license_expiry_warning_days": "`license` alert this many days before expiry",
    "log_level": "`DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`",
    "log_file": "also write the logs to this file",
    "log_format": "`text`, or `json` (one object per line, for log shippers)",
}

HEADER = """# Configuration

CML Worker Monitor is configured by environment variables (a `.env` file in the working
directory is read too). A bad value stops the start with one line naming the variable and the
reason, and a non-zero exit; `cml-monitor check-config` checks the settings and exits. AWS
credentials come from the standard SDK chain (`AWS_ACCESS_KEY_ID`, profiles, the instance role);
OpenTelemetry honours the standard `OTEL_*` variables.

This page is generated from the settings class by `python -m tools.settings_doc`; do not edit
it by hand.
"""


def _after(line: str) -> str:
    """The line that follows `line` in `settings.py` (first occurrence)."""
    lines = SOURCE.read_text().splitlines()
    return lines[lines.index(line) + 1] if line in lines and lines.index(line) + 1 < len(lines) else ""


def _groups() -> dict[str, str]:
    """Setting → the `# Heading` comment above it in `settings.py`."""
    groups: dict[str, str] = {}
    current = "General"
    in_class = False
    previous = ""
    for line in SOURCE.read_text().splitlines():
        if line.startswith("class Settings("):
            in_class = True
            continue
        if not in_class:
            continue
        if line.startswith("    @") or line.startswith("    def "):
            break
        heading = re.match(r"^    # (.+)$", line)
        # A heading opens a block (after a blank line, one line long); other comments explain
        # the field below them.
        if heading and not previous.strip() and not re.match(r"^    # ", _after(line)):
            current = heading.group(1).split(":")[0].split("(")[0].strip()
        previous = line
        if heading:
            continue
        field = re.match(r"^    ([a-z_][a-z0-9_]*)\s*:", line)
        if field:
            groups[field.group(1)] = current
    return groups


def _default(name: str, info: FieldInfo) -> str:
    value: Any = info.default
    if value is None or value == "" or value == [] or isinstance(value, SecretStr):
        return "empty"
    if isinstance(value, list):
        return f"`{','.join(str(v) for v in value)}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _bounds(info: FieldInfo) -> str:
    low = high = None
    for item in info.metadata:
        for attr in ("ge", "gt"):
            if getattr(item, attr, None) is not None:
                low = f"{'≥' if attr == 'ge' else '>'} {getattr(item, attr)}"
        if getattr(item, "le", None) is not None:
            high = f"≤ {item.le}"
    return ", ".join(b for b in (low, high) if b)


def render() -> str:
    groups = _groups()
    by_group: dict[str, list[str]] = {}
    for name, info in Settings.model_fields.items():
        meaning = info.description or MEANINGS.get(name, "(not described yet)")
        bounds = _bounds(info)
        row = f"| `{name.upper()}` | {_default(name, info)} | {meaning}{f' ({bounds})' if bounds else ''} |"
        by_group.setdefault(groups.get(name, "Other"), []).append(row)
    parts = [HEADER]
    for group, rows in by_group.items():
        parts.append(
            f"## {group}\n\n| variable | default | meaning |\n|---|---|---|\n" + "\n".join(rows) + "\n"
        )
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not PAGE.exists() or PAGE.read_text() != text:
            print(
                f"{PAGE.relative_to(ROOT)} is out of date: run python -m tools.settings_doc", file=sys.stderr
            )
            return 1
        return 0
    PAGE.write_text(text)
    print(f"wrote {PAGE.relative_to(ROOT)} ({len(Settings.model_fields)} settings)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
