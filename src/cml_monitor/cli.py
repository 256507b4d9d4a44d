"""`cml-monitor`: the command line (serve, demo, migrate, check-config)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from cml_monitor import __version__
from cml_monitor.settings import Settings, SettingsError, load_settings


def _settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        print(f"cml-monitor: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _cmd_check_config(_args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    print(
        f"settings are valid (database {settings.database_url.split('://', 1)[0]}, "
        f"poll every {settings.worker_metrics_poll_interval} s)"
    )
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cml-monitor",
        description="Monitor Cisco Modeling Labs workers on AWS EC2. Configured by environment "
        "variables (see README): DATABASE_URL, WORKER_METRICS_POLL_INTERVAL, API_TOKENS, ...",
    )
    parser.add_argument("--version", action="version", version=f"cml-monitor {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser("check-config", help="validate the settings and exit")
    check.set_defaults(handler=_cmd_check_config)
    migrate = commands.add_parser("migrate", help="create or upgrade the database schema and exit")
    migrate.set_defaults(handler=_cmd_migrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
