"""The monitoring loop: jobs, their scheduler, the batch collector and the notification handler."""

from .collector import CollectionResult, FleetCollector, build_metrics_event
from .job import WorkerMetricsCollectionJob, run_region_collection, run_worker_metrics_collection
from .jobstores import build_job_store
from .notifications import WorkerNotificationHandler
from .scheduler import JOB_ID_PREFIX, WorkerMonitoringScheduler, job_id_for_region

__all__ = [
    "JOB_ID_PREFIX",
    "CollectionResult",
    "FleetCollector",
    "WorkerMetricsCollectionJob",
    "WorkerMonitoringScheduler",
    "WorkerNotificationHandler",
    "build_job_store",
    "build_metrics_event",
    "job_id_for_region",
    "run_region_collection",
    "run_worker_metrics_collection",
]
