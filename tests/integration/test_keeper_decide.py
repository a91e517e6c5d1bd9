"""Issue 3 on the forked world: the keeper reads, guards and decides as prices move.

The keeper runs in-process against the fork's JSON-RPC endpoint with a SQLite store;
blocks are mined by the test, so every tick is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ForkedWorld
from keeper_support import Running, as_tuple, keeper_settings, read_state, start_keeper

from keeper.core.types import Action, Decision

HOUR = 3600


def start_dry_keeper(rpc_url: str, manifest_file: Path, db: Path) -> Running:
    return start_keeper(keeper_settings(rpc_url, manifest_file, f"sqlite:///{db}", dry_run=True))


def by_name(world: ForkedWorld, decisions: dict[str, Decision]) -> dict[str, Decision]:
    return {name: decisions[v.address] for name, v in world.vaults.items()}


@pytest.fixture
def keeper(rpc_url: str, fresh_world: ForkedWorld, tmp_path: Path) -> Iterator[Running]:
    running = start_dry_keeper(rpc_url, fresh_world.manifest_file, tmp_path / "keeper.sqlite")
    yield running
    running.stop()


def test_world_starts_hedged(keeper: Running, fresh_world: ForkedWorld, chain: Any) -> None:
    decisions = by_name(fresh_world, keeper.tick(chain))
    assert {d.action for d in decisions.values()} == {Action.HOLD}
    for d in decisions.values():
        assert abs(d.deviation) < 0.05
        assert d.band > 0 and d.gamma < 0  # short options: negative gamma


def test_only_the_vault_that_leaves_its_band_rebalances(
    keeper: Running, fresh_world: ForkedWorld, governance: Any, chain: Any
) -> None:
    k, store = keeper, keeper.store
    before = by_name(fresh_world, k.tick(chain))
    # The straddle has the largest gamma: the smallest spot move takes it out of its band.
    moves = {name: d.spot_move for name, d in before.items()}
    first = min(moves, key=moves.__getitem__)
    assert first == "short-straddle"
    second_move = sorted(moves.values())[1]
    move = (moves[first] + second_move) / 2  # beyond the first vault's band only
    price = fresh_world.feed.latestRoundData()[1] / 1e8
    fresh_world.set_price(price + move, governance)
    after = by_name(fresh_world, k.tick(chain))
    assert after[first].action == Action.REBALANCE, after[first].reason
    assert after[first].trigger == "band"
    assert abs(after[first].deviation) > after[first].band
    for name, d in after.items():
        if name != first:
            assert d.action == Action.HOLD, (name, d.reason)
    # The decision is stored with its block.
    stored = {d.vault: d for d in store.latest_decisions()}
    assert stored[fresh_world.vaults[first].address].action == Action.REBALANCE
    # short straddle is short gamma: spot up -> delta down -> buy underlying
    assert after[first].trade_wei > 0


def test_governance_request_yields_a_rebalance(
    keeper: Running, fresh_world: ForkedWorld, governance: Any, chain: Any
) -> None:
    k = keeper
    k.tick(chain)
    vault = fresh_world.vaults["short-calls"]
    # Nudge the hedge a little (inside the band) so that a rebalance has something to do.
    fresh_world.set_price(fresh_world.feed.latestRoundData()[1] / 1e8 + 2, governance)
    vault.requestRebalance(sender=governance)
    decisions = by_name(fresh_world, k.tick(chain))
    assert decisions["short-calls"].action == Action.REBALANCE
    assert decisions["short-calls"].trigger == "request"
    assert decisions["short-puts"].action == Action.HOLD
    # Acted on once: the next block holds again (dry run marks the request handled).
    again = by_name(fresh_world, k.tick(chain))
    assert again["short-calls"].action == Action.HOLD


def test_a_request_made_while_the_keeper_is_down_fires_and_a_dry_run_leaves_it_pending(
    rpc_url: str, fresh_world: ForkedWorld, governance: Any, chain: Any, tmp_path: Path
) -> None:
    db = tmp_path / "keeper.sqlite"

    def one_tick() -> Decision:
        k = start_dry_keeper(rpc_url, fresh_world.manifest_file, db)
        try:
            return by_name(fresh_world, k.tick(chain))["short-calls"]
        finally:
            k.stop()

    assert one_tick().action == Action.HOLD  # first sight: the vault's counters are stored
    fresh_world.set_price(fresh_world.feed.latestRoundData()[1] / 1e8 + 2, governance)
    fresh_world.vaults["short-calls"].requestRebalance(sender=governance)  # keeper is down
    after_restart = one_tick()
    assert after_restart.action == Action.REBALANCE and after_restart.trigger == "request"
    # A dry run decided it but sent nothing: the database does not call it handled.
    again = one_tick()
    assert again.action == Action.REBALANCE and again.trigger == "request"


def test_stale_oracle_is_skipped_with_the_reason(
    keeper: Running, fresh_world: ForkedWorld, chain: Any
) -> None:
    k = keeper
    chain.pending_timestamp += 2 * HOUR  # the world's heartbeat is one hour
    decisions = by_name(fresh_world, k.tick(chain))
    for d in decisions.values():
        assert d.action == Action.SKIP
        assert d.reason.startswith("oracle stale"), d.reason


def test_non_positive_and_jumping_oracle_rounds_are_skipped(
    keeper: Running, fresh_world: ForkedWorld, governance: Any, chain: Any
) -> None:
    k = keeper
    k.tick(chain)
    fresh_world.feed.setAnswer(0, sender=governance)
    assert all("non-positive" in d.reason for d in k.tick(chain).values())
    fresh_world.set_price(3000 * 1.5, governance)  # +50% in one round (limit 20%)
    assert all(d.reason.startswith("oracle jump") for d in k.tick(chain).values())


def test_vault_registered_mid_run_is_decided_in_the_next_block(
    keeper: Running,
    fresh_world: ForkedWorld,
    governance: Any,
    project: Any,
    chain: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    k = keeper
    first = k.tick(chain)
    template = read_state(fresh_world.vaults["short-calls"].address)
    g = template.guards
    vault = project.OptionsVault.deploy(
        governance,
        fresh_world.usdc,
        fresh_world.weth,
        fresh_world.feed,
        as_tuple(template.params),
        as_tuple(g),
        (g.notional_cap, g.max_trade_notional, g.loss_budget),
        3600,
        sender=governance,
    )
    vault.writeOption(as_tuple(template.book[0]), sender=governance)
    fresh_world.registry.addVault(vault, sender=governance)
    assert vault.address not in first
    with caplog.at_level("INFO"):
        decisions = k.tick(chain)
    (added,) = [r for r in caplog.records if r.getMessage() == "registry VaultAdded"]
    assert added.fields["vault"] == vault.address  # type: ignore[attr-defined]
    assert vault.address in decisions
    # Unhedged: it holds no underlying against a short call book.
    assert decisions[vault.address].action == Action.REBALANCE
    assert decisions[vault.address].trigger == "urgent"
    fresh_world.registry.removeVault(vault, sender=governance)
    with caplog.at_level("INFO"):
        assert vault.address not in k.tick(chain)
    assert any(r.getMessage() == "registry VaultRemoved" for r in caplog.records)


def test_paused_vault_is_skipped(
    keeper: Running, fresh_world: ForkedWorld, governance: Any, chain: Any
) -> None:
    k = keeper
    fresh_world.vaults["short-puts"].pause(sender=governance)
    decisions = by_name(fresh_world, k.tick(chain))
    assert decisions["short-puts"].action == Action.SKIP
    assert decisions["short-puts"].reason == "paused by governance"
    assert decisions["short-calls"].action == Action.HOLD


def test_reorg_is_detected_and_decisions_of_dropped_blocks_are_replaced(
    keeper: Running, fresh_world: ForkedWorld, governance: Any, chain: Any
) -> None:
    k, store = keeper, keeper.store
    k.tick(chain)
    snapshot = chain.snapshot()
    fresh_world.set_price(fresh_world.feed.latestRoundData()[1] / 1e8 + 1, governance)
    old = k.tick(chain)
    old_block = next(iter(old.values())).block_number
    assert store.decisions_for_block(old_block)
    chain.restore(snapshot)  # the blocks after the snapshot are gone ...
    chain.pending_timestamp += 7  # ... and a different chain grows in their place
    chain.mine(2)

    report = k.tick_head()
    assert report.chain.reorg
    assert old_block in {b.number for b in report.chain.dropped}
    # The dropped block's decisions were replaced by decisions on the new chain.
    replaced = store.decisions_for_block(old_block)
    assert all(d.block_hash != next(iter(old.values())).block_hash for d in replaced)
    assert {d.block_hash for d in report.decisions} == {report.block.hash}
