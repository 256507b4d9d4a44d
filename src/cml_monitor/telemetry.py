"""Logging and tracing set-up: stdout (and `LOG_FILE`), and OpenTelemetry with OTLP export.

OTLP export is switched on by the standard `OTEL_EXPORTER_OTLP_ENDPOINT` variable, which the
exporter reads itself; without it spans are created (cheaply) and dropped.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from cml_monitor import __version__

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# What every LogRecord has; anything else on a record came from `extra=` and is a field to index.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
# Requests a load balancer, an orchestrator or Prometheus make all day long: DEBUG, not INFO.
QUIET_PATHS = ("/health", "/ready", "/metrics")
# What uvicorn logs around a failed start-up, which our own one line already says.
_STARTUP_NOISE = (
    "Exception in 'lifespan' protocol",
    "Traceback (most recent call last)",
    "Application startup failed",
)


def structured_fields(record: logging.LogRecord) -> dict[str, object]:
    """The `extra=` fields of a record (`worker_id`, `worker_name`, `region`, `kind`, …)."""
    return {key: value for key, value in record.__dict__.items() if key not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers: time (UTC, ISO 8601), level, logger, message,
    and the structured fields the line was logged with (worker, region, alert kind, cycle…)."""

    def __init__(self, process: str | None = None) -> None:
        super().__init__()
        self.process = process  # `collector` in serve's child process, so one stream tells them apart

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in structured_fields(record).items():
            entry.setdefault(key, value)
        if self.process:
            entry["process"] = self.process
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class QuietProbes(logging.Filter):
    """uvicorn access lines for `/health`, `/ready` and `/metrics` become DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        path = str(args[2]).split("?", 1)[0] if len(args) >= 3 else ""
        if path in QUIET_PATHS:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


class QuietStartupFailure(logging.Filter):
    """Unless at DEBUG, drop uvicorn's traceback and "startup failed" lines around a failed start:
    the app has logged the cause as one line already."""

    def filter(self, record: logging.LogRecord) -> bool:
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            return True
        return not str(record.msg).startswith(_STARTUP_NOISE)


def configure_logging(
    level: str = "INFO", log_file: Path | None = None, log_format: str = "text", *, process: str | None = None
) -> None:
    """Log to stdout (and the file); `process` tags every line of a child of `serve`."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    text_format = f"[{process}] {LOG_FORMAT}" if process else LOG_FORMAT
    formatter = JsonFormatter(process) if log_format == "json" else logging.Formatter(text_format)
    for handler in handlers:
        handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=handlers, force=True)
    # Third-party chatter that drowns our own lines at INFO.
    for noisy in ("apscheduler.executors", "apscheduler.scheduler", "botocore", "aiobotocore", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    install_log_filters()


def install_log_filters() -> None:
    """The filters on uvicorn's loggers (once each, however often logging is configured)."""
    for name, kind in (("uvicorn.access", QuietProbes), ("uvicorn.error", QuietStartupFailure)):
        target = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in target.filters):
            target.addFilter(kind())


def build_tracer_provider(service_name: str = "cml-monitor") -> TracerProvider | None:
    """A provider exporting over OTLP/HTTP when an endpoint is configured, else None."""
    if not (
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name, "service.version": __version__})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def configure_tracing(service_name: str = "cml-monitor") -> TracerProvider | None:
    """Install the OTLP provider globally (once, at start-up of `serve`)."""
    provider = build_tracer_provider(service_name)
    if provider is not None:
        trace.set_tracer_provider(provider)
    return provider
