"""The APScheduler job store named by `BACKGROUND_JOB_STORE_URL` (Redis) or the database."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from apscheduler.jobstores.base import BaseJobStore
from apscheduler.jobstores.redis import RedisJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry
from sqlalchemy.engine import make_url

JOBS_KEY = "cml_monitor.jobs"
RUN_TIMES_KEY = "cml_monitor.run_times"


def redis_job_store(url: str, timeout: float = 5.0) -> RedisJobStore:
    """APScheduler's Redis job store; a command fails after `timeout` seconds without an answer.

    A command whose connection failed is tried once more at once, on a fresh connection (a
    pooled one dies when Redis restarts), and no more; one that timed out is not retried. Every
    job-store call has its own deadline and a caller that tries again later, while redis-py's
    own default (8.x: 10 retries with backoff, timeouts included) made a dead Redis cost
    seconds and a frozen one 11 timeouts per command, held on the one thread the job store has.
    """
    parts = urlsplit(url)
    db = int(parts.path.strip("/") or 0)
    connect_args: dict[str, object] = {"host": parts.hostname or "127.0.0.1", "port": parts.port or 6379}
    if parts.password:
        connect_args["password"] = unquote(parts.password)
    if parts.username:
        connect_args["username"] = unquote(parts.username)
    if parts.scheme == "rediss":
        connect_args["ssl"] = True
    return RedisJobStore(
        db=db,
        jobs_key=JOBS_KEY,
        run_times_key=RUN_TIMES_KEY,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        **connect_args,
    )


def database_job_store_url(database_url: str) -> str:
    """The synchronous URL APScheduler 3 needs for the same database.

    SQLite gets a sibling file: APScheduler writes jobs synchronously from the event loop,
    and sharing one SQLite file with the async engine could make those writes wait on a
    transaction that itself waits on the loop.
    """
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            return "sqlite://"
        path = Path(url.database)
        return f"sqlite:///{path.with_name(path.stem + '-jobs' + (path.suffix or '.db'))}"
    return url.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


def build_job_store(job_store_url: str, database_url: str, *, timeout: float = 5.0) -> BaseJobStore:
    """Redis when `job_store_url` names one (`timeout`: seconds a command may take), else the
    database."""
    if job_store_url:
        return redis_job_store(job_store_url, timeout)
    return SQLAlchemyJobStore(url=database_job_store_url(database_url), tablename="apscheduler_jobs")
