"""The monitoring loop: the scheduler, its region jobs, the monitor that owns runs, the collector
and the observers a region's events are published to."""

from .collector import CollectionReport, FleetCollector
from .job import WorkerMetricsCollectionJob, run_region_collection
from .jobstores import build_job_store
from .monitor import FleetMonitor, MonitoredWorkers
from .observers import EventObserver, ObserverPublisher
from .region_jobs import JOB_ID_PREFIX, RegionJobs, job_id_for_region
from .scheduler import WorkerMonitoringScheduler

__all__ = [
    "JOB_ID_PREFIX",
    "CollectionReport",
    "EventObserver",
    "FleetCollector",
    "FleetMonitor",
    "MonitoredWorkers",
    "ObserverPublisher",
    "RegionJobs",
    "WorkerMetricsCollectionJob",
    "WorkerMonitoringScheduler",
    "build_job_store",
    "job_id_for_region",
    "run_region_collection",
]
