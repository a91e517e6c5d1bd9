"""Issue 10 on the forked world, through the whole tick: the stuck check runs after this
block's decisions (items 8 and 12), and nothing is quoted, simulated or journaled above the
emergency cap while skip decisions warn once (item 15)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from conftest import ForkedWorld
from keeper_support import Running

from keeper.chain.routing import Router
from keeper.core.types import Action
from keeper.store import JournalState, TxKind

GWEI = 10**9


def entries(running: Running) -> list[Any]:
    return running.store.entries_in(list(JournalState), None)


def test_a_stuck_batch_is_cancelled_in_the_block_where_the_price_reverses(
    sending_keeper: Running, fresh_world: ForkedWorld, governance: Any, chain: Any
) -> None:
    """Items 8 and 12: the batch becomes stuck in the very block whose state says it is no
    longer needed; judged on this block's decisions it is cancelled, never replaced."""
    k = sending_keeper
    straddle = fresh_world.vaults["short-straddle"]
    moves = {v: d.spot_move for v, d in k.tick(chain).items()}
    original = fresh_world.feed.latestRoundData()[1]
    weth_before = fresh_world.weth.balanceOf(straddle)
    fresh_world.set_price(original / 1e8 + moves[straddle.address] * 1.5, governance)
    spike = 60 * GWEI  # above the batch's max fee: it stays out of blocks
    chain.provider.auto_mine = False
    try:
        chain.mine()  # the round; the keeper sends the batch
        k.tick_head()
        (batch,) = entries(k)
        assert batch.state == JournalState.SENT
        chain.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(spike)])
        chain.mine()  # one block waited: not stuck yet
        k.tick_head()
        # The price reverses in the block where the batch becomes stuck.
        fresh_world.feed.setAnswer(
            original, sender=governance, max_fee=500 * GWEI, max_priority_fee=100 * GWEI
        )
        chain.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(spike)])
        chain.mine()
        report = k.tick_head()
        assert report.decisions and all(d.action != Action.REBALANCE for d in report.decisions)
        group = k.store.entries_for_nonce(batch.sender, batch.nonce or 0)
        assert [e.kind for e in group if e.id != batch.id] == [TxKind.CANCEL]
        chain.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(GWEI)])
        chain.mine()
        k.tick_head()
    finally:
        chain.provider.auto_mine = True
    group = k.store.entries_for_nonce(batch.sender, batch.nonce or 0)
    (mined,) = [e for e in group if e.state == JournalState.MINED]
    assert mined.kind == TxKind.CANCEL
    assert fresh_world.weth.balanceOf(straddle) == weth_before  # the stale trade never ran


def test_above_the_emergency_cap_nothing_is_quoted_simulated_or_journaled(
    sending_keeper: Running,
    fresh_world: ForkedWorld,
    governance: Any,
    chain: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Item 15: an urgent vault above even the emergency cap waits without quoting,
    simulating or writing a failed journal row every block; a skipped vault warns once."""
    k = sending_keeper
    k.tick(chain)
    calls = fresh_world.vaults["short-calls"]
    fresh_world.set_price(fresh_world.feed.latestRoundData()[1] / 1e8 + 30, governance)
    params = list(calls.params())
    params[4] = 10**17  # hardLimitWad = 0.1 WETH: urgent
    calls.setParams(params, sender=governance)
    fresh_world.vaults["short-puts"].pause(sender=governance)  # skipped every block
    quoted: list[str] = []  # every quote the keeper asks for: direct depth or the aggregator
    real_depth, real_race = Router.depth, Router.start_aggregator

    async def depth(self: Router, *args: Any, **kwargs: Any) -> Any:
        quoted.append("direct")
        return await real_depth(self, *args, **kwargs)

    def race(self: Router, *args: Any, **kwargs: Any) -> Any:
        quoted.append("aggregator")
        return real_race(self, *args, **kwargs)

    monkeypatch.setattr(Router, "depth", depth)
    monkeypatch.setattr(Router, "start_aggregator", race)
    with caplog.at_level(logging.DEBUG, logger="keeper"):
        for _ in range(4):
            chain.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(600 * GWEI)])
            d = k.tick(chain)[calls.address]
            assert d.urgent and d.action == Action.REBALANCE
    assert quoted == [] and entries(k) == []  # no request quoted, nothing journaled
    skips = [
        r
        for r in caplog.records
        if r.getMessage() == "decision"
        and r.fields["vault"] == fresh_world.vaults["short-puts"].address  # type: ignore[attr-defined]
    ]
    assert [r.levelno for r in skips] == [logging.WARNING] + [logging.DEBUG] * 3
    chain.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(GWEI)])
    k.tick(chain)  # fees fall: the urgent vault is quoted and sent at once
    assert "direct" in quoted and [e for e in entries(k) if calls.address in e.vaults]
