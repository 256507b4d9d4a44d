"""`cml-monitor check-config` refuses what passes validation but hurts in production, and with
`--connect` reaches what the service needs (all on loopback: moto, Redis, a loopback IdP)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from cml_monitor.config_check import known_names
from cml_monitor.domain import Worker
from cml_monitor.storage import CMLWorkerRepository, create_engine, migrate

from .conftest import REDIS_URL, Moto
from .idp import LoopbackIdp

CLI = str(Path(sys.executable).with_name("cml-monitor"))
GOOD_TOKEN = "admin:" + "a" * 24


def run(tmp_path: Path, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """The command with only these variables (plus what any process needs and the CI's own)."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    env |= {
        "TEST_POSTGRES_URL": "postgresql+asyncpg://x@127.0.0.1/x",
        "BENCH_REDIS_URL": "redis://127.0.0.1/0",
    }
    env |= {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    env |= {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'check.db'}"} | variables
    return subprocess.run(
        [CLI, "check-config", *args], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )


def test_every_setting_is_a_known_name() -> None:
    names = known_names()
    assert {"WORKER_METRICS_POLL_INTERVAL", "CML_MONITOR_MANAGED_TAG", "API_TOKENS", "OIDC_ISSUER"} <= names


def test_placeholders_short_secrets_and_misspelled_names_fail_one_line_each(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        API_TOKENS="admin:short-token,viewer:" + "v" * 30,
        CML_PASSWORD="CHANGE-ME",
        WORKER_NOTIFICATION_WEBHOOK_SECRET="fifteen-chars--",
        WORKER_METRICS_POL_INTERVAL="60",
        OIDC_ISUER="https://idp.example.com",
        API_TOKEN="admin:x",
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 6, lines
    assert any(line.startswith("cml-monitor: CML_PASSWORD:") and "CHANGE-ME" in line for line in lines)
    assert any("API_TOKENS: the admin token has 11 characters, fewer than 24" in line for line in lines)
    assert not any("short-token" in line for line in lines)  # a secret is never printed
    assert any("WORKER_NOTIFICATION_WEBHOOK_SECRET: 15 characters, fewer than 16" in line for line in lines)
    assert any("did you mean WORKER_METRICS_POLL_INTERVAL?" in line for line in lines)
    assert any(line.startswith("cml-monitor: OIDC_ISUER:") and "OIDC_ISSUER?" in line for line in lines)
    assert any(line.startswith("cml-monitor: API_TOKEN:") and "API_TOKENS?" in line for line in lines)


def test_a_dotenv_file_is_checked_too_and_other_prefixes_are_not_ours(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CML_VERIFY_TSL=false\nAPI_TOKENS=admin:CHANGE-ME\n")
    result = run(tmp_path)
    assert result.returncode == 2
    assert "CML_VERIFY_TSL" in result.stderr and "did you mean CML_VERIFY_TLS?" in result.stderr
    assert "API_TOKENS: still holds the placeholder CHANGE-ME" in result.stderr
    (tmp_path / ".env").unlink()
    open_to_all = run(tmp_path, CML_MONITOR_HOST="0.0.0.0")
    assert open_to_all.returncode == 2
    assert "CML_MONITOR_HOST: 0.0.0.0 is reachable from other hosts while the API has no authentication" in (
        open_to_all.stderr
    )
    good = run(tmp_path, API_TOKENS=GOOD_TOKEN, BENCH_WORKERS="10", TEST_REDIS_URL="redis://127.0.0.1/4")
    assert good.returncode == 0, good.stderr
    assert good.stderr == "" and "settings are valid" in good.stdout


async def test_connect_reaches_database_redis_aws_regions_and_issuer(tmp_path: Path, moto: Moto) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'check.db'}"
    engine = create_engine(database_url)
    await migrate(engine)
    repository = CMLWorkerRepository(engine)
    for region, instance in (("us-east-1", "i-0123456789abcdef0"), ("eu-west-1", "i-0123456789abcdef1")):
        await repository.add_async(
            Worker.register(name=region, aws_region=region, aws_instance_id=instance, now=datetime.now(UTC))
        )
    await engine.dispose()
    idp = LoopbackIdp().start()
    try:
        result = run(
            tmp_path,
            "--connect",
            DATABASE_URL=database_url,
            BACKGROUND_JOB_STORE_URL=REDIS_URL,
            EVENT_BUS_URL="redis://127.0.0.1:1/0",  # nothing listens there
            AWS_ENDPOINT_URL=moto.url,
            OIDC_ISSUER=idp.issuer,
            OIDC_AUDIENCE="cml-monitor",
        )
    finally:
        idp.stop()
    assert result.returncode == 1, result.stdout + result.stderr
    lines = {line.split(":", 1)[0]: line for line in result.stdout.splitlines()[1:]}
    assert lines["ok     database (sqlite+aiosqlite)"].endswith("2 worker(s) in 2 region(s)")
    assert "ok     redis (BACKGROUND_JOB_STORE_URL)" in lines
    assert "FAILED redis (EVENT_BUS_URL)" in lines and "Error" in lines["FAILED redis (EVENT_BUS_URL)"]
    assert "ok     aws (STS GetCallerIdentity)" in lines
    assert "ok     aws ec2 in eu-west-1" in lines and "ok     aws ec2 in us-east-1" in lines
    assert any(line.startswith(f"ok     oidc issuer {idp.issuer}: discovery and") for line in lines.values())


def test_connect_says_which_failed_and_why(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        "--connect",
        DATABASE_URL="postgresql+asyncpg://nobody@127.0.0.1:1/none",
        AWS_ENDPOINT_URL="http://127.0.0.1:1",
        OIDC_ISSUER="http://127.0.0.1:1/realms/x",
    )
    assert result.returncode == 1
    out = result.stdout
    assert "FAILED database (postgresql+asyncpg):" in out
    assert "FAILED aws (STS GetCallerIdentity): AwsError" in out and "127.0.0.1:1" in out
    assert "FAILED oidc issuer http://127.0.0.1:1/realms/x: ConnectError" in out
