"""Persistence: the database engine, migrations and the worker repository."""

from .database import StorageError, create_engine, drop_all, migrate
from .leases import LeaseStore
from .repository import CMLWorkerRepository, DuplicateWorkerError, MetricSample

__all__ = [
    "CMLWorkerRepository",
    "DuplicateWorkerError",
    "LeaseStore",
    "MetricSample",
    "StorageError",
    "create_engine",
    "drop_all",
    "migrate",
]
