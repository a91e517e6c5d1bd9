"""``keeper``: run the service, show the vaults' status, backtest policies."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence

from keeper import logs
from keeper.config import Settings, load_settings
from keeper.errors import KeeperError
from keeper.store import Store

log = logging.getLogger("keeper")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keeper", description="Delta-hedging keeper for options vaults"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="follow new blocks, decide and (unless --dry-run) rebalance")
    run.add_argument("--dry-run", action="store_true", help="decide and log, never send")
    run.add_argument("--max-blocks", type=int, default=None, help="stop after N heads")
    sub.add_parser("status", help="the latest decision for every vault")
    from keeper.backtest import cli as backtest_cli

    backtest_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "backtest":
        from keeper.backtest import cli as backtest_cli

        return int(backtest_cli.run(args) or 0)
    try:
        settings = load_settings(**({"dry_run": True} if getattr(args, "dry_run", False) else {}))
        logs.configure(settings.log_level, settings.log_json)
        if args.command == "status":
            return _status(settings)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_run_until_signalled(settings, args.max_blocks))
        return 0
    except KeeperError as exc:
        print(f"keeper: {exc}", file=sys.stderr)
        return 2


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
        from keeper.chain.signer import signer_address

        sending, account = build_actor, signer_address(settings)
    log.info(
        "keeper starting",
        extra={"fields": {"dry_run": settings.dry_run, "db": _redact_url(settings.db_url)}},
    )
    try:
        await Service(settings, store, sending, account).run(max_blocks)
    finally:
        store.close()


def _redact_url(url: str) -> str:
    """A database URL without its password."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url


def _status(settings: Settings) -> int:
    from keeper import status

    store = Store(settings.db_url, schema=settings.db_schema)
    try:
        print(status.render(store))
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
