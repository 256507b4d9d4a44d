"""`cml-monitor`: the command line (serve, demo, migrate, check-config)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from cml_monitor import __version__
from cml_monitor.settings import Settings, SettingsError, load_settings

DEMO_PORT = 8080


def utcnow_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        if os.environ.get("LOG_FORMAT", "").strip().lower() == "json":  # a shipper parses even this line
            line = {"time": utcnow_iso(), "level": "ERROR", "logger": "cml_monitor.cli", "message": str(exc)}
            print(json.dumps(line, ensure_ascii=False), file=sys.stderr)
        else:
            print(f"cml-monitor: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _cmd_check_config(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cml_monitor.config_check import connect, dotenv_names, problems

    settings = _settings_or_exit()
    found = problems(settings, {**dotenv_names(Path(".env")), **os.environ})
    for problem in found:
        print(f"cml-monitor: {problem}", file=sys.stderr)
    if found:
        return 2
    print(
        f"settings are valid (database {settings.database_url.split('://', 1)[0]}, "
        f"poll every {settings.worker_metrics_poll_interval} s)"
    )
    if not args.connect:
        return 0
    results = asyncio.run(connect(settings))
    for result in results:
        print(result.line())
    return 0 if all(result.ok for result in results) else 1


def _cmd_aws_setup(args: argparse.Namespace) -> int:
    from cml_monitor.aws_setup import render
    from cml_monitor.settings import parse_managed_tag

    regions = args.region or [
        os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    ]
    for region in regions:
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
            print(
                f"cml-monitor: --region {region!r} is not an AWS region name (like eu-west-1)",
                file=sys.stderr,
            )
            return 2
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,80}", args.queue_name):
        print("cml-monitor: --queue-name must be 1-80 letters, digits, '-' or '_'", file=sys.stderr)
        return 2
    try:
        managed_tag = parse_managed_tag(
            args.managed_tag or os.environ.get("CML_MONITOR_MANAGED_TAG") or "cml-monitor:managed=true"
        )
    except ValueError as exc:
        print(f"cml-monitor: --managed-tag {exc}", file=sys.stderr)
        return 2
    print(render(regions, args.queue_name, managed_tag=managed_tag))
    return 0


def _cmd_migrate(_args: argparse.Namespace) -> int:
    from cml_monitor.storage import create_engine, migrate

    settings = _settings_or_exit()

    async def run() -> None:
        engine = create_engine(settings.database_url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())
    print("database schema is up to date")
    return 0


def _port_is_free(host: str, port: int) -> bool:
    """Whether the server could listen there (as uvicorn binds: with SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _cmd_serve(args: argparse.Namespace) -> int:
    from cml_monitor.api.app import create_app
    from cml_monitor.api.http_limits import HttpLimits
    from cml_monitor.api.server import run_server
    from cml_monitor.supervisor import serve_runtime
    from cml_monitor.telemetry import configure_logging, configure_tracing

    settings = _settings_or_exit()
    host = args.host or settings.cml_monitor_host
    port = args.port or settings.cml_monitor_port
    if not _port_is_free(host, port):
        print(
            f"cml-monitor: {host}:{port} is already in use; choose another with --port (or CML_MONITOR_PORT)",
            file=sys.stderr,
        )
        return 2
    configure_logging(settings.log_level, settings.log_file, settings.log_format)
    configure_tracing()
    app = create_app(settings, runtime=serve_runtime(settings), freeze_heap=True)
    limits = HttpLimits(
        header_timeout=settings.cml_monitor_http_header_timeout,
        body_timeout=settings.cml_monitor_http_body_timeout,
        max_connections=settings.cml_monitor_http_max_connections,
    )
    return run_server(app, host, port, settings.log_level, limits)


def _cmd_demo(args: argparse.Namespace) -> int:
    try:
        from cml_monitor.demo import run_demo
    except ImportError as exc:  # the simulator is an extra: a production install has no need of it
        print(
            f"cml-monitor: the demo needs the fleet simulator ({exc.name} is missing); "
            "install it with: pip install 'cml-monitor[sim]'",
            file=sys.stderr,
        )
        return 2
    if args.workers < 1 or args.workers > 5000:
        print("cml-monitor: --workers must be between 1 and 5000", file=sys.stderr)
        return 2
    if args.speed <= 0:
        print("cml-monitor: --speed must be positive", file=sys.stderr)
        return 2
    port = args.port or DEMO_PORT
    if not _port_is_free("127.0.0.1", port):
        if args.port:  # asked for by name: say so rather than pick another
            print(f"cml-monitor: port {port} is already in use; choose another with --port", file=sys.stderr)
            return 2
        port = _free_port("127.0.0.1")
        print(f"Port {DEMO_PORT} is busy; the demo uses port {port} instead.", flush=True)
    args.port = port
    return run_demo(workers=args.workers, port=args.port, speed=args.speed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cml-monitor",
        description="Monitor Cisco Modeling Labs workers on AWS EC2. Configured by environment "
        "variables (see README): DATABASE_URL, WORKER_METRICS_POLL_INTERVAL, API_TOKENS, ...",
    )
    parser.add_argument("--version", action="version", version=f"cml-monitor {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the service: REST API, dashboard, metrics and the monitoring scheduler",
        description="Run the service until SIGTERM or Ctrl-C (then stop gracefully, exit 0).",
    )
    serve.add_argument("--host", help="listen address (default CML_MONITOR_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default CML_MONITOR_PORT, 8080)")
    serve.set_defaults(handler=_cmd_serve)
    demo = commands.add_parser(
        "demo",
        help="run the monitor on a simulated fleet (no AWS needed), with a scenario",
        description="Start the fleet simulator and the full service (SQLite under ./data/demo/, "
        "poll every 15 s), register the fleet and play a scenario. Ctrl-C stops everything.",
    )
    demo.add_argument("--workers", type=int, default=25, help="simulated workers (default 25)")
    demo.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"port of the monitor (default {DEMO_PORT}, or a free one if it is busy)",
    )
    demo.add_argument(
        "--speed", type=float, default=1.0, help="scenario and EC2 transition speed-up (default 1)"
    )
    demo.set_defaults(handler=_cmd_demo)
    check = commands.add_parser(
        "check-config",
        help="validate the settings and exit (2: a setting is wrong; 1: --connect failed somewhere)",
        description="Refuse invalid values, CHANGE-ME placeholders, short API tokens (< 24) and webhook "
        "secrets (< 16), and unknown WORKER_/CML_/OIDC_/API_ variables, one line each (exit 2).",
    )
    check.add_argument(
        "--connect",
        action="store_true",
        help="also reach the database, Redis, AWS (STS, then each region with workers) and the OIDC issuer",
    )
    check.set_defaults(handler=_cmd_check_config)
    migrate = commands.add_parser("migrate", help="create or upgrade the database schema and exit")
    migrate.set_defaults(handler=_cmd_migrate)
    setup = commands.add_parser(
        "aws-setup",
        help="print the AWS side to create: EventBridge rule, SQS queue and policy, IAM policy",
        description="Print (never apply) what to create so EC2 state changes reach the monitor in seconds.",
    )
    setup.add_argument(
        "--region",
        action="append",
        help="AWS region; repeat for several, each gets its rule and queue (default AWS_REGION, us-east-1)",
    )
    setup.add_argument(
        "--managed-tag",
        metavar="KEY=VALUE",
        help="the tag an instance must carry for the monitor to stop, start or reboot it "
        "(default CML_MONITOR_MANAGED_TAG, cml-monitor:managed=true)",
    )
    setup.add_argument(
        "--queue-name", default="cml-monitor-events", help="SQS queue name (default cml-monitor-events)"
    )
    setup.set_defaults(handler=_cmd_aws_setup)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
