"""The schema, as SQLAlchemy Core tables: the same definitions serve SQLite and PostgreSQL.

Core rather than ORM because the hot path is bulk: a collection cycle writes thousands of rows
in a few statements, and Core's executemany maps straight onto the drivers' batch calls.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
    true,
)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on SQLite (which keeps no zone) too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if getattr(dialect, "name", "") == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

workers = Table(
    "workers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("aws_region", String(32), nullable=False),
    Column("aws_instance_id", String(19), nullable=False, unique=True),
    Column("cml_url", String(2048), nullable=True),
    Column("status", String(16), nullable=False),
    Column("ec2_instance_state", String(16), nullable=True),
    Column("ec2_system_status_check", String(24), nullable=True),
    Column("ec2_instance_status_check", String(24), nullable=True),
    Column("cpu_utilization", Float, nullable=True),
    Column("memory_utilization", Float, nullable=True),
    Column("active_labs_count", Integer, nullable=False, default=0),
    Column("last_activity_at", UTCDateTime, nullable=True),
    Column("last_collected_at", UTCDateTime, nullable=True),
    Column("status_changed_at", UTCDateTime, nullable=True),
    Column("cpu_threshold", Float, nullable=True),
    Column("memory_threshold", Float, nullable=True),
    Column("stop_requested_at", UTCDateTime, nullable=True),
    Column("cml", JSON, nullable=True),
    Column("ec2_scheduled_events", JSON, nullable=True),
    Column("auto_pause", Boolean, nullable=False, server_default=true()),
    Column("idle", JSON, nullable=True),
    Column("impaired_samples", Integer, nullable=False, server_default="0"),
    Column("metrics_source", String(16), nullable=True),
    Column("discovered_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_workers_status", "status"),
    Index("ix_workers_aws_region", "aws_region"),
)

# On PostgreSQL the database's table differs from this description (migration 0008): it is
# partitioned by day on `timestamp`, has no primary key (a partitioned table's would have to
# include the timestamp; nothing looks a sample up by id) and its (worker, time) index carries the
# charted columns. Reads and writes through this Table are the same on both.
worker_metrics = Table(
    "worker_metrics",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("worker_id", String(36), nullable=False),
    Column("timestamp", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False),
    Column("cpu_utilization", Float, nullable=True),
    Column("memory_utilization", Float, nullable=True),
    Column("active_labs_count", Integer, nullable=True),
    Column("running_nodes", Integer, nullable=True),
    Column("disk_used_percent", Float, nullable=True),
    Index("ix_worker_metrics_worker_ts", "worker_id", "timestamp"),
)

worker_metrics_hourly = Table(
    "worker_metrics_hourly",
    metadata,
    Column("worker_id", String(36), primary_key=True),
    Column("hour", UTCDateTime, primary_key=True),
    Column("samples", Integer, nullable=False),
    Column("cpu_avg", Float, nullable=True),
    Column("cpu_max", Float, nullable=True),
    Column("memory_avg", Float, nullable=True),
    Column("memory_max", Float, nullable=True),
    Column("labs_avg", Float, nullable=True),
    Column("labs_max", Integer, nullable=True),
    Index("ix_worker_metrics_hourly_hour", "hour"),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("holder", String(64), nullable=False),
    Column("until", UTCDateTime, nullable=False),
)

# Each region's last collection, written by the replica that collected it, read by all.
region_collections = Table(
    "region_collections",
    metadata,
    Column("region", String(32), primary_key=True),
    Column("interval_seconds", Integer, nullable=False),
    Column("last_attempt_at", UTCDateTime, nullable=False),
    Column("last_success_at", UTCDateTime, nullable=True),
    Column("consecutive_failures", Integer, nullable=False, server_default="0"),
    Column("last_error", String(1024), nullable=True),
    Column("holder", String(64), nullable=False),
)

ACTIVE_ALERT = "state != 'resolved'"

alerts = Table(
    "alerts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("worker_id", String(36), nullable=True),  # null: a fleet-level alert (a region's)
    Column("region", String(32), nullable=True),
    Column("kind", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("value", Float, nullable=True),
    Column("threshold", Float, nullable=True),
    Column("violations", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("fired_at", UTCDateTime, nullable=True),
    Column("resolved_at", UTCDateTime, nullable=True),
    Column("last_notified_at", UTCDateTime, nullable=True),
    Column("acknowledged_at", UTCDateTime, nullable=True),
    Column("acknowledged_comment", String(1024), nullable=True),
    Column("acknowledged_by", String(256), nullable=True),
    Column("detail", String(1024), nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_alerts_state", "state"),
    Index("ix_alerts_worker", "worker_id"),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("alert_id", String(36), nullable=True),
    Column("worker_id", String(36), nullable=True),
    Column("event_type", String(32), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("target", String(2048), nullable=False),
    Column("payload", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("lease_until", UTCDateTime, nullable=True),
    Column("last_error", String(2048), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    Column("ordinal", Integer, nullable=False, server_default="0"),
    Index("ix_notifications_due", "state", "next_attempt_at"),
    Index("ix_notifications_queue", "channel", "target", "worker_id", "state", "created_at"),
)

silences = Table(
    "silences",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("worker_id", String(36), nullable=True),
    Column("kind", String(32), nullable=True),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=False),
    Column("comment", String(1024), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

PENDING_ACTION = "result = 'pending'"

# Every stop, start and reboot, by hand or automatic: written before it is attempted.
actions = Table(
    "actions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("worker_id", String(36), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("requested_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("result", String(16), nullable=False),
    Column("detail", String(1024), nullable=True),
    # The replica acting on a pending action and until when (renewed while it acts): another
    # replica's reconcile settles the action only once this has passed.
    Column("owner", String(128), nullable=True),
    Column("lease_until", UTCDateTime, nullable=True),
    Index("ix_actions_worker", "worker_id", "requested_at"),
    Index("ix_actions_requested", "requested_at"),
    # One action in flight per worker, whatever the number of replicas.
    Index(
        "ux_actions_pending",
        "worker_id",
        unique=True,
        sqlite_where=text(PENDING_ACTION),
        postgresql_where=text(PENDING_ACTION),
    ),
)
