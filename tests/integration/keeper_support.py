"""Running the keeper in-process against the fork: its own event loop, real store, real sender."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keeper.act import RebalanceActor, build_actor
from keeper.chain.blocks import block_ref
from keeper.config import Settings, load_settings
from keeper.core.types import Decision
from keeper.pipeline import TickReport
from keeper.runner import Keeper, make_rpc
from keeper.store import Store


@dataclass
class Running:
    """A keeper built on its own event loop (the web3 HTTP session lives on one loop)."""

    keeper: Keeper
    store: Store
    loop: asyncio.AbstractEventLoop

    @property
    def actor(self) -> RebalanceActor:
        actor = self.keeper.pipeline.actor
        assert isinstance(actor, RebalanceActor)
        return actor

    def tick(self, chain: Any) -> dict[str, Decision]:
        """Mine a block and let the keeper process it; decisions by vault address."""
        chain.mine()
        return {d.vault: d for d in self.tick_head().decisions}

    def tick_head(self) -> TickReport:
        async def go() -> TickReport | None:
            head = block_ref(await self.keeper.rpc.call("eth_getBlockByNumber", ["latest", False]))
            return await self.keeper.pipeline.tick(head)

        report = self.loop.run_until_complete(go())
        assert report is not None
        return report

    def stop(self) -> None:
        self.loop.run_until_complete(self.keeper.close())
        self.loop.close()


def keeper_settings(rpc_url: str, manifest_file: Path, db_url: str, **extra: Any) -> Settings:
    return load_settings(rpc_url=rpc_url, manifest=manifest_file, db_url=db_url, **extra)


@contextmanager
def sending_keeper_on(
    rpc_url: str, manifest_file: Path, key: str, folder: Path, **extra: Any
) -> Iterator[Running]:
    """A keeper that sends with ``key``, on a SQLite database in ``folder``; stopped after."""
    db_url = f"sqlite:///{folder / 'keeper.sqlite'}"
    running = start_keeper(
        keeper_settings(rpc_url, manifest_file, db_url, private_key=key, **extra)
    )
    try:
        yield running
    finally:
        running.stop()


def start_keeper(settings: Settings) -> Running:
    """A keeper that sends (``private_key`` set) or only decides (``dry_run``)."""
    store = Store(settings.db_url)
    loop = asyncio.new_event_loop()

    async def build() -> Keeper:
        rpc = make_rpc(settings)
        actor = None if settings.dry_run else await build_actor(settings, store, rpc)
        return await Keeper.build(settings, store, actor, rpc)

    return Running(loop.run_until_complete(build()), store, loop)


# --- the keeper as a process (kill/restart tests) ------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def spawn_keeper(
    rpc_url: str, manifest_file: Path, db_url: str, log: Path, *args: str, **settings: str
) -> subprocess.Popen[bytes]:
    """``keeper run ARGS`` with only these ``KEEPER_*`` settings; its output goes to ``log``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")}
    env |= {
        "KEEPER_RPC_URL": rpc_url,
        "KEEPER_MANIFEST": str(manifest_file),
        "KEEPER_DB_URL": db_url,
        "KEEPER_POLL_INTERVAL_SECONDS": "0.1",
        "KEEPER_LOG_JSON": "true",
    }
    env |= {f"KEEPER_{k.upper()}": v for k, v in settings.items()}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "keeper.cli", "run", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_until(
    what: str,
    check: Callable[[], bool],
    proc: subprocess.Popen[bytes] | None,
    log: Path,
    seconds: float = 30,
) -> None:
    """Poll ``check`` until it holds; fail with the keeper's log if it exits or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        assert proc is None or proc.poll() is None, f"keeper exited:\n{log.read_text()}"
        time.sleep(0.1)
    raise AssertionError(
        f"timed out waiting for {what}:\n{log.read_text() if log.exists() else ''}"
    )


def reached(store: Store, number: int) -> Callable[[], bool]:
    """The store has processed block ``number``."""

    def check() -> bool:
        last = store.last_block()
        return last is not None and last.number >= number

    return check


# --- v2 vault state and governance calls through the keeper's own ABI code ----------------------


def read_state(vault: str) -> Any:
    """``getState`` decoded by keeper.core.abi (Ape may hold an older ABI for a world address)."""
    from ape import chain

    from keeper.core import abi

    raw = chain.provider.web3.eth.call({"to": vault, "data": abi.GET_STATE})
    return abi.decode_vault_state(vault, bytes(raw))


def as_tuple(value: Any) -> tuple[Any, ...]:
    """A dataclass as the struct tuple (field order is the struct's: see tests/unit/test_abi)."""
    from dataclasses import astuple

    return tuple(
        v if isinstance(v, bool) or not isinstance(v, int) else int(v) for v in astuple(value)
    )


def governance_call(sender: Any, vault: str, function: str, *args: Any) -> None:
    """``vault.function(args)`` from ``sender`` (an unlocked account), encoded from the ABI."""
    from ape import chain

    from keeper.core import abi

    w3 = chain.provider.web3
    data = abi.function("IOptionsVault", function).encode(*args)
    tx = w3.eth.send_transaction({"from": sender.address, "to": vault, "data": data})
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    assert receipt["status"] == 1, f"{function} reverted"
