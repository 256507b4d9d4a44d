"""Every knob of CML Worker Monitor, read from the environment (and a `.env` file).

Configuration lives here only: other modules receive plain values, never the environment, so
tests and the simulator can build any component without touching `os.environ`.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cml_monitor.domain.discovery import template_problem

API_ROLES = ("admin", "viewer")
_SECRET_NAMES = {
    "API_TOKENS",
    "CML_PASSWORD",
    "WORKER_NOTIFICATION_WEBHOOK_SECRET",
    "SLACK_WEBHOOK_URL",
    "PAGERDUTY_ROUTING_KEY",
    "OPSGENIE_API_KEY",
}


# Where runbook links point unless WORKER_RUNBOOK_BASE_URL says otherwise: the runbooks' path in
# this repository. Point it at the folder as your Git host or wiki serves it to make it a link.
DEFAULT_RUNBOOK_BASE_URL = "docs/runbooks"


class SettingsError(ValueError):
    """A setting has a value the service cannot start with; the message names the variable."""


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# A list setting written as one comma-separated variable (`A,B, C`); blanks are dropped. The one
# parser of every list setting: declare the field `CommaList` and add only its own checks.
CommaList = Annotated[list[str], NoDecode, BeforeValidator(_split_csv)]


def parse_managed_tag(text: str) -> tuple[str, str]:
    """`KEY=VALUE` → (key, value): the tag the IAM policy requires on instances the monitor may
    stop, start or reboot. EC2 tag keys are 1-128 characters, values 0-256, `aws:` is reserved."""
    key, sep, value = text.strip().partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"{text!r} is not KEY=VALUE (like cml-monitor:managed=true)")
    if len(key) > 128 or len(value) > 256 or key.lower().startswith("aws:"):
        raise ValueError(
            f"{text!r}: the key must be 1-128 characters not starting with aws:, the value 0-256"
        )
    return key, value.strip()


_REGION = re.compile(r"^[a-z0-9-]{1,32}$")


def _check_http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL")
    return url


class Settings(BaseSettings):
    """The service's settings; environment names are the upper-case field names."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # Monitoring
    worker_monitoring_enabled: bool = True
    worker_metrics_poll_interval: int = Field(300, ge=1, le=86_400)
    worker_cpu_threshold: float = Field(90.0, ge=0, le=100)
    worker_memory_threshold: float = Field(90.0, ge=0, le=100)
    worker_disk_threshold: float = Field(90.0, ge=0, le=100)
    worker_observer_timeout: float = Field(60.0, gt=0, le=3600)
    worker_metrics_raw_retention_hours: int = Field(48, ge=1, le=24 * 90)
    worker_metrics_retention_days: int = Field(30, ge=1, le=3650)

    # Idle workers and actions
    worker_idle_timeout: int = Field(3600, ge=0, le=30 * 86_400)
    worker_idle_cpu_threshold: float = Field(10.0, ge=0, le=100)
    worker_idle_check_interval: int = Field(600, ge=1, le=86_400)
    cml_automation_users: CommaList = ["^00000000-0000-"]
    worker_auto_pause_enabled: bool = False
    worker_auto_pause_dry_run: bool = False
    worker_auto_pause_grace: int = Field(600, ge=0, le=7 * 86_400)
    worker_auto_pause_snooze: int = Field(3600, ge=0, le=30 * 86_400)
    # Post a CML system notice when the idle grace starts (when and why the pause, how to keep it).
    worker_auto_pause_notice: bool = True
    # CPU and memory: from the controller's system_stats when it answered this cycle (auto),
    # always from CloudWatch, or only from the controller.
    worker_metrics_source: Literal["auto", "cloudwatch", "controller"] = "auto"
    worker_remediation_enabled: bool = False
    worker_remediation_after_samples: int = Field(3, ge=1, le=1000)
    worker_remediation_cooldown: int = Field(3600, ge=0, le=30 * 86_400)
    worker_actions_max_per_hour: int = Field(20, ge=0, le=10_000)

    # Alerts
    worker_alert_for_samples: int = Field(1, ge=1, le=100)
    worker_alert_hysteresis: float = Field(5.0, ge=0, le=100)
    worker_alert_repeat_interval: int = Field(14_400, ge=60, le=7 * 86_400)

    # Notifications
    worker_notification_webhooks: CommaList = []
    worker_notification_webhook_secret: SecretStr | None = None
    worker_notification_max_age: float = Field(86_400, ge=1, le=30 * 86_400)
    worker_notification_timeout: float = Field(10.0, gt=0, le=300)
    worker_notification_retry_base: float = Field(1.0, gt=0, le=3600)
    worker_notification_retry_max: float = Field(300.0, gt=0, le=86_400)
    slack_webhook_url: SecretStr | None = None
    pagerduty_routing_key: SecretStr | None = None
    pagerduty_events_url: str = "https://events.pagerduty.com/v2/enqueue"
    opsgenie_api_key: SecretStr | None = None
    opsgenie_api_url: str = "https://api.opsgenie.com"
    # The operator's stack: Alertmanager, links to the dashboard and the runbooks, grouped chat
    worker_notification_alertmanager_urls: CommaList = []
    worker_notification_alertmanager_refresh: float = Field(60.0, ge=5, le=3600)
    worker_notification_group_wait: float = Field(10.0, ge=0, le=600)
    cml_monitor_public_url: str = ""
    worker_runbook_base_url: str = DEFAULT_RUNBOOK_BASE_URL

    # Storage and jobs
    database_url: str = "sqlite+aiosqlite:///./data/cml-monitor.db"
    database_timeout: float = Field(30.0, gt=0, le=600)
    background_job_store_url: str = ""
    background_job_store_timeout: float = Field(5.0, gt=0, le=60)
    event_bus_url: str = ""
    cml_monitor_role: Literal["all", "api", "collector"] = "all"
    # Never silent: a dead-man's switch pinged while collection works (empty = off).
    cml_monitor_heartbeat_url: str = ""
    # Role `all`: `serve` collects in a child process of its own, so the API never waits behind
    # a cycle; false keeps everything in one process.
    cml_monitor_collector_process: bool = True

    # HTTP service
    cml_monitor_host: str = "127.0.0.1"
    cml_monitor_port: int = Field(8080, ge=1, le=65_535)
    # What a client may take to send a request's headers, then its body (seconds), and the
    # connections open at once: half-open connections are dropped, not piled up.
    cml_monitor_http_header_timeout: float = Field(10.0, gt=0, le=300)
    cml_monitor_http_body_timeout: float = Field(30.0, gt=0, le=3600)
    cml_monitor_http_max_connections: int = Field(1000, ge=1, le=100_000)
    api_tokens: CommaList = []
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_client_id: str = ""
    oidc_roles_claim: str = Field("roles", min_length=1, max_length=200)
    oidc_admin_roles: CommaList = ["cml-monitor-admin"]
    oidc_viewer_roles: CommaList = ["cml-monitor-viewer"]
    oidc_jwks_refresh_floor: float = Field(30.0, ge=0, le=3600)

    # AWS (the standard SDK variables; credentials are read by botocore itself)
    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = None
    aws_max_attempts: int = Field(5, ge=1, le=20)
    aws_retry_mode: Literal["standard", "adaptive", "legacy"] = "standard"
    worker_events_queue_url: str = ""
    cml_monitor_managed_tag: str = "cml-monitor:managed=true"

    # Discovery: register the instances that carry these tags, on a schedule
    worker_discovery_tags: CommaList = []
    worker_discovery_regions: CommaList = []
    worker_discovery_interval: int = Field(600, ge=10, le=7 * 86_400)
    worker_discovery_cml_url: str = ""
    worker_discovery_forget_after: int = Field(604_800, ge=0, le=365 * 86_400)

    # CML controllers
    cml_username: str = "admin"
    cml_password: SecretStr = SecretStr("")
    cml_verify_tls: bool = True
    # PEM file of CAs trusted for controllers, beside the system's (a stock CML's self-signed
    # certificate is its own CA).
    cml_ca_bundle: str = ""
    cml_url_blocked_networks: CommaList = [
        "127.0.0.0/8",
        "::1/128",
        "169.254.0.0/16",
        "fd00:ec2::/32",
        "0.0.0.0/8",
        "::/128",
        "100.100.100.200/32",  # Alibaba Cloud's metadata service
    ]
    cml_timeout: float = Field(10.0, gt=0, le=300)
    cml_max_labs: int = Field(1000, ge=1, le=100_000)
    cml_concurrency: int = Field(100, ge=1, le=10_000)
    cml_licensing_check_interval: int = Field(3600, ge=1, le=7 * 86_400)
    cml_license_expiry_warning_days: int = Field(14, ge=0, le=3650)

    # Logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_file: Path | None = None
    log_format: Literal["text", "json"] = "text"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("worker_notification_webhooks")
    @classmethod
    def _check_webhooks(cls, value: list[str]) -> list[str]:
        return [_check_http_url(url) for url in value]

    @field_validator("worker_notification_alertmanager_urls")
    @classmethod
    def _check_alertmanagers(cls, value: list[str]) -> list[str]:
        return [_check_http_url(url).rstrip("/") for url in value]

    @field_validator("cml_monitor_public_url")
    @classmethod
    def _check_public_url(cls, value: str) -> str:
        return _check_http_url(value.strip()).rstrip("/") if value.strip() else ""

    @field_validator("worker_runbook_base_url")
    @classmethod
    def _check_runbook_base(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value:
            raise ValueError("must not be empty (the default is the repository's docs/runbooks)")
        return value

    @field_validator("cml_automation_users")
    @classmethod
    def _check_automation_users(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
        return value

    @field_validator("oidc_issuer")
    @classmethod
    def _check_issuer(cls, value: str) -> str:
        return _check_http_url(value).rstrip("/") if value else ""

    @field_validator("api_tokens")
    @classmethod
    def _check_tokens(cls, value: list[str]) -> list[str]:
        for entry in value:
            role, sep, token = entry.partition(":")
            if not sep or role not in API_ROLES or not token:
                raise ValueError("each entry must be 'role:token' with role admin or viewer")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("background_job_store_url", "event_bus_url")
    @classmethod
    def _check_job_store_url(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in ("redis", "rediss"):
            raise ValueError("must be empty or a redis:// URL")
        return value

    @field_validator("cml_ca_bundle")
    @classmethod
    def _check_ca_bundle(cls, value: str) -> str:
        if value and not Path(value).is_file():
            raise ValueError(f"{value} is not a readable file (a PEM file of CA certificates)")
        if value:
            try:
                ssl.create_default_context().load_verify_locations(cafile=value)
            except (ssl.SSLError, OSError) as exc:
                raise ValueError(f"{value} holds no PEM certificate: {exc}") from exc
        return value

    @field_validator("cml_url_blocked_networks")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not a network (like 10.0.0.0/8 or fd00::/8)") from None
        return value

    @field_validator("pagerduty_events_url", "opsgenie_api_url")
    @classmethod
    def _check_receiver_url(cls, value: str) -> str:
        return _check_http_url(value)

    @field_validator("slack_webhook_url")
    @classmethod
    def _check_slack(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value():
            _check_http_url(value.get_secret_value())
            return value
        return None

    @field_validator("cml_monitor_heartbeat_url")
    @classmethod
    def _check_heartbeat_url(cls, value: str) -> str:
        return _check_http_url(value).rstrip("/") if value else ""

    @field_validator("worker_events_queue_url")
    @classmethod
    def _check_queue_url(cls, value: str) -> str:
        """One queue URL, or a comma list of them (one queue per region)."""
        return ",".join(_check_http_url(url.strip()) for url in value.split(",") if url.strip())

    @field_validator("cml_monitor_managed_tag")
    @classmethod
    def _check_managed_tag(cls, value: str) -> str:
        key, tag_value = parse_managed_tag(value)
        return f"{key}={tag_value}"

    @field_validator("worker_discovery_tags")
    @classmethod
    def _check_discovery_tags(cls, value: list[str]) -> list[str]:
        for entry in value:
            key, sep, _ = entry.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"{entry!r} is not Key=Value")
        return value

    @field_validator("worker_discovery_regions")
    @classmethod
    def _check_discovery_regions(cls, value: list[str]) -> list[str]:
        for region in value:
            if not _REGION.match(region):
                raise ValueError(f"{region!r} is not an AWS region name (like eu-west-1)")
        return value

    @field_validator("worker_discovery_cml_url")
    @classmethod
    def _check_discovery_template(cls, value: str) -> str:
        if not value:
            return ""
        problem = template_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("aws_endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        return _check_http_url(value) if value else None

    @property
    def blocked_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(item, strict=False) for item in self.cml_url_blocked_networks)

    @property
    def events_queue_urls(self) -> list[str]:
        return [url for url in self.worker_events_queue_url.split(",") if url]

    @property
    def managed_tag(self) -> tuple[str, str]:
        """(key, value) of the tag that IAM requires before the monitor may change an instance."""
        return parse_managed_tag(self.cml_monitor_managed_tag)

    @property
    def discovery_tags(self) -> dict[str, str]:
        """`WORKER_DISCOVERY_TAGS` as tag key → value (every one must match)."""
        return {k.strip(): v.strip() for k, _, v in (e.partition("=") for e in self.worker_discovery_tags)}

    @property
    def api_token_roles(self) -> dict[str, str]:
        """Token → role, for the API's bearer authentication."""
        return {token: role for role, _, token in (e.partition(":") for e in self.api_tokens)}


def load_settings(**overrides: object) -> Settings:
    """Build the settings, turning pydantic's report into one line per bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]).upper() if error["loc"] else "SETTINGS"
            shown = "<hidden>" if name in _SECRET_NAMES else repr(error.get("input"))
            problems.append(f"{name}: {error['msg']} (got {shown})")
        raise SettingsError("invalid setting " + "; ".join(problems)) from None
