"""One-call reads of every vault, and the status CLI (head sources: test_head_source.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import ForkedWorld
from keeper_support import keeper_settings, start_keeper

from keeper.cli import main as keeper_cli
from keeper.core.types import Action


def test_a_vault_that_cannot_be_read_is_skipped_alone(
    rpc_url: str, fresh_world: ForkedWorld, governance: Any, chain: Any, tmp_path: Path
) -> None:
    k = start_keeper(
        keeper_settings(
            rpc_url, fresh_world.manifest_file, f"sqlite:///{tmp_path / 'k.sqlite'}", dry_run=True
        )
    )
    try:
        # A registered address whose getState() reverts: here the price feed contract.
        fresh_world.registry.addVault(fresh_world.feed, sender=governance)
        decisions = k.tick(chain)
        chain.mine()
        report_calls = k.tick_head().rpc_calls
    finally:
        k.stop()
    bad = decisions[fresh_world.feed.address]
    assert bad.action == Action.SKIP and bad.reason.startswith("unreadable")
    for vault in fresh_world.vaults.values():
        assert decisions[vault.address].action == Action.HOLD
    assert report_calls == 1  # one aggregate3 eth_call for the whole block


def test_status_prints_every_vault_with_its_last_decision(
    rpc_url: str,
    fresh_world: ForkedWorld,
    chain: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db_url = f"sqlite:///{tmp_path / 'k.sqlite'}"
    k = start_keeper(keeper_settings(rpc_url, fresh_world.manifest_file, db_url, dry_run=True))
    try:
        k.tick(chain)
    finally:
        k.stop()
    monkeypatch.setenv("KEEPER_DB_URL", db_url)
    assert keeper_cli(["status"]) == 0
    out = capsys.readouterr().out
    for vault in fresh_world.vaults.values():
        assert vault.address in out
    assert "inside band" in out
    assert f"last processed block {chain.blocks.head.number}" in out
    assert "no transaction in flight" in out  # a dry run sends nothing


def test_every_block_read_hot_is_what_get_state_says_at_that_block(
    rpc_url: str, fresh_world: ForkedWorld, governance: Any, chain: Any, tmp_path: Path
) -> None:
    """The reader reads each vault in full once, then only its moving part merged into it;
    at every block, and across a governance change (read in full again), the snapshot is
    exactly getState() decoded at the block's hash."""
    from web3 import HTTPProvider, Web3

    from keeper.chain.blocks import block_ref
    from keeper.core import abi

    k = start_keeper(
        keeper_settings(
            rpc_url, fresh_world.manifest_file, f"sqlite:///{tmp_path / 'k.sqlite'}", dry_run=True
        )
    )
    w3 = Web3(HTTPProvider(rpc_url))
    vaults = [v.address for v in fresh_world.vaults.values()]
    changed = next(iter(fresh_world.vaults.values()))
    asked: list[int] = []

    def block() -> None:
        chain.mine()
        head = block_ref(dict(w3.eth.get_block("latest")))
        snapshot = k.loop.run_until_complete(k.keeper.pipeline.reader.read(head, vaults))
        asked.append(snapshot.rpc_calls)
        for state in snapshot.vaults:
            raw = w3.eth.call({"to": state.address, "data": abi.GET_STATE}, head.hash)
            assert state == abi.decode_vault_state(state.address, bytes(raw))

    try:
        block()  # every vault in full
        fresh_world.set_price(fresh_world.feed.latestRoundData()[1] / 1e8 + 40, governance)
        block()  # the oracle moved: every vault hot
        params = list(changed.params())
        params[3] = int(params[3]) * 2  # bandFloorWad
        changed.setParams(tuple(params), sender=governance)
        block()  # one vault's configHash changed: it is read in full again, in this block
        block()
    finally:
        k.stop()
    assert asked == [1, 1, 2, 1]
