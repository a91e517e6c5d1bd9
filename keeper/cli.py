"""``keeper``: run the service, check a set-up, show the vaults' status, migrate the database,
backtest policies."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from keeper import logs
from keeper.config import Settings, load_settings
from keeper.errors import ConfigError, FatalError, KeeperError
from keeper.metrics import package_version
from keeper.store import Store

log = logging.getLogger("keeper")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keeper", description="Delta-hedging keeper for options vaults"
    )
    parser.add_argument("--version", action="version", version=f"optkeeper {package_version()}")
    parser.add_argument(
        "--env-file",
        type=Path,
        default=None,
        help="read KEEPER_* settings from this file instead of ./.env (the environment wins)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="follow new blocks, decide and (unless --dry-run) rebalance")
    run.add_argument("--dry-run", action="store_true", help="decide and log, never send")
    run.add_argument("--max-blocks", type=int, default=None, help="stop after N heads")
    sub.add_parser("status", help="the latest decision for every vault")
    sub.add_parser("doctor", help="check the settings, database, node, contracts, key and balance")
    db = sub.add_parser("db", help="the keeper's database")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="migrate the database to this keeper's schema")
    from keeper.backtest import cli as backtest_cli

    backtest_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "backtest":
        from keeper.backtest import cli as backtest_cli

        return int(backtest_cli.run(args) or 0)
    try:
        overrides = {"dry_run": True} if getattr(args, "dry_run", False) else {}
        settings = load_settings(args.env_file, **overrides)
        logs.configure(settings.log_level, settings.log_json)
        if args.command == "status":
            return _status(settings)
        if args.command == "doctor":
            from keeper import doctor

            return asyncio.run(doctor.main(settings))
        if args.command == "db":
            return _db_upgrade(settings)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_run_until_signalled(settings, args.max_blocks))
        return 0
    except FatalError as exc:  # a setting or set-up to fix: restarting will not help (exit 2)
        print(f"keeper: {exc}", file=sys.stderr)
        return 2
    except KeeperError as exc:  # transient: a supervisor may restart it (exit 1)
        print(f"keeper: {exc}", file=sys.stderr)
        return 1


async def _run_until_signalled(settings: Settings, max_blocks: int | None) -> None:
    """Run the keeper; SIGTERM and SIGINT cancel it so every ``finally`` runs (clean stop)."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await _run(settings, max_blocks)
    log.info("keeper stopped")


async def _run(settings: Settings, max_blocks: int | None) -> None:
    from keeper.runner import BuildActor, Service

    store = Store(settings.db_url, schema=settings.db_schema)
    sending: BuildActor | None = None
    account = None
    if not settings.dry_run:
        from keeper.act import build_actor
        from keeper.tx.signer import signer_address

        sending, account = build_actor, signer_address(settings)
    log.info(
        "keeper starting",
        extra={"fields": {"dry_run": settings.dry_run, "db": redact_url(settings.db_url)}},
    )
    try:
        await Service(settings, store, sending, account).run(max_blocks)
    finally:
        store.close()


def redact_url(url: str) -> str:
    """A database URL without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _status(settings: Settings) -> int:
    from keeper import status

    _require_existing_sqlite(settings.db_url)
    store = Store(settings.db_url, schema=settings.db_schema)
    try:
        print(status.render(store))
    finally:
        store.close()
    return 0


def _require_existing_sqlite(url: str) -> None:
    """``keeper status`` reads: it must not create an empty SQLite file where none was."""
    with contextlib.suppress(ArgumentError):
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            path = Path(parsed.database)
            if not path.exists():
                raise ConfigError(
                    f"KEEPER_DB_URL: no keeper database at {path.resolve()} (nothing has run "
                    "with these settings here; is .env or --env-file missing?)"
                )


def _db_upgrade(settings: Settings) -> int:
    from keeper.store.store import upgrade_database

    before, after = upgrade_database(settings.db_url, settings.db_schema)
    if before == after:
        print(f"database {redact_url(settings.db_url)} is at revision {after}: nothing to do")
    else:
        print(
            f"database {redact_url(settings.db_url)} migrated: {before or 'release 0.1'} -> {after}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
