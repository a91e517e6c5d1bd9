"""The book on the fork of the world: netted settlement, the split, the race, many vaults.

Real OptionsVault v2, BookSettlement, Uniswap V3 pools and QuoterV2; the keeper runs
in-process with its real reader, planner, router and sender.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ForkedWorld
from keeper_support import Running, keeper_settings, sending_keeper_on, start_keeper

from keeper.core import abi
from keeper.core.types import Action
from keeper.store import JournalEntry, JournalState, TxKind

WAD = 10**18


@pytest.fixture
def book_keeper(
    rpc_url: str, fresh_world: ForkedWorld, keeper_key: str, tmp_path: Path
) -> Iterator[Running]:
    with sending_keeper_on(rpc_url, fresh_world.manifest_file, keeper_key, tmp_path) as running:
        yield running


def rebalances(running: Running) -> list[JournalEntry]:
    entries = running.store.entries_in(list(JournalState), None)
    return [e for e in entries if e.kind == TxKind.REBALANCE]


def receipt_logs(entry: JournalEntry) -> list[Any]:
    from ape import chain

    assert entry.tx_hash is not None
    receipt = chain.provider.web3.eth.get_transaction_receipt(entry.tx_hash)
    assert receipt["status"] == 1
    return list(receipt["logs"])


def vault_state(vault: str) -> Any:
    """getState decoded by the keeper's own ABI code (at the latest block)."""
    from ape import chain

    raw = chain.provider.web3.eth.call({"to": vault, "data": abi.GET_STATE})
    return abi.decode_vault_state(vault, bytes(raw))


def topic0(item: Any) -> str:
    return "0x" + bytes(item["topics"][0]).hex()


def shift_hedges(world: ForkedWorld, governance: Any, take: str, give: str, amount: int) -> None:
    """Governance moves ``amount`` WETH from vault ``take`` to vault ``give``: the first must
    buy it back, the second sell it (opposite trades in one block)."""
    a, b = world.vaults[take], world.vaults[give]
    a.withdraw(world.weth, governance, amount, sender=governance)
    world.weth.approve(b, amount, sender=governance)
    b.deposit(world.weth, amount, sender=governance)


def test_opposite_trades_settle_netted_with_one_swap_for_the_net(
    book_keeper: Running, fresh_world: ForkedWorld, governance: Any, chain: Any
) -> None:
    k = book_keeper
    names = list(fresh_world.vaults)
    first = k.tick(chain)
    assert all(d.action == Action.HOLD for d in first.values()), first
    shift_hedges(fresh_world, governance, names[0], names[1], 5 * WAD)
    buyer, seller = (fresh_world.vaults[n].address for n in names[:2])
    nonces = {v: vault_state(v).state_nonce for v in (buyer, seller)}
    decisions = k.tick(chain)
    assert decisions[buyer].trade_wei > 0 > decisions[seller].trade_wei
    (entry,) = rebalances(k)
    assert entry.to == fresh_world.settlement.address and entry.payload["call"] == "settle"
    legs = {leg["vault"]: leg for leg in entry.payload["legs"]}
    assert set(legs) == {buyer, seller}
    for vault, leg in legs.items():  # every trade carries the nonce it was computed from
        assert leg["state_nonce"] == nonces[vault]
        assert leg["min_out"] == leg["payout"]
    after = k.tick(chain)  # mined: the read-back
    assert k.store.entry(entry.id).state == JournalState.MINED
    logs = receipt_logs(entry)
    swaps = [x for x in logs if topic0(x) == abi.SETTLED.topic]
    (settled,) = swaps
    data = abi.SETTLED.decode_data(bytes(settled["data"]))
    assert data["legs"] == 2
    assert 0 < data["net_in"] < legs[seller]["amount_in"]  # only the net went to the pool
    traded = {x["address"] for x in logs if topic0(x) == abi.TRADED_TOPIC}
    assert traded == {buyer, seller}
    for vault in (buyer, seller):
        assert vault_state(vault).state_nonce == nonces[vault] + 1  # one trade each
        d = after[vault]
        assert abs(d.deviation) <= d.band, (vault, d.deviation, d.band)


@pytest.fixture(scope="module")
def stalling_aggregator(world: ForkedWorld, rpc_url: str) -> Iterator[Any]:
    from keeper.aggsvc import config_from_manifest, start_in_background
    from keeper.aggsvc.control import set_mode

    with start_in_background(
        config_from_manifest(world.manifest_file, rpc_url, stall_seconds=30)
    ) as svc:
        set_mode(svc.url, "stall", stall_seconds=30)
        yield svc
        set_mode(svc.url, "ok")


def test_a_slow_aggregator_loses_the_race_and_the_direct_route_settles(
    stalling_aggregator: Any,
    rpc_url: str,
    fresh_world: ForkedWorld,
    keeper_key: str,
    governance: Any,
    chain: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from keeper.aggsvc.control import stats

    k = start_keeper(
        keeper_settings(
            rpc_url,
            fresh_world.manifest_file,
            f"sqlite:///{tmp_path / 'k.sqlite'}",
            private_key=keeper_key,
            aggregator_url=stalling_aggregator.url,
            quote_race_seconds=0.2,  # the aggregator stalls for 30 s
        )
    )
    try:
        names = list(fresh_world.vaults)
        k.tick(chain)
        shift_hedges(fresh_world, governance, names[0], names[2], 4 * WAD)
        with caplog.at_level("INFO"):
            k.tick(chain)
        assert stats(stalling_aggregator.url)["requests"] >= 1  # it was asked, first
        lost = [r for r in caplog.records if r.getMessage() == "net routed direct"]
        assert any("race budget" in str(r.fields) for r in lost)  # type: ignore[attr-defined]
        (entry,) = rebalances(k)
        assert entry.payload["net"]["route"] == "uniswap-direct"
        after = k.tick(chain)
        assert k.store.entry(entry.id).state == JournalState.MINED
        for name in (names[0], names[2]):
            d = after[fresh_world.vaults[name].address]
            assert abs(d.deviation) <= d.band
    finally:
        k.stop()


def test_a_net_larger_than_the_pool_takes_inside_the_bound_is_split(
    book_keeper: Running,
    fresh_world: ForkedWorld,
    governance: Any,
    accounts: Any,
    chain: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from world.market import MarketDriver

    k = book_keeper
    names = list(fresh_world.vaults)
    k.tick(chain)
    answer = int(fresh_world.feed.latestRoundData()[1])
    driver = MarketDriver(
        chain.provider.web3, fresh_world.manifest, governance.address, accounts[3].address
    )
    driver.fund_trader(500 * WAD, 2_000_000 * 10**6)
    driver.move_to(answer * 9938 // 10_000)  # the pools 0.62% below the oracle ...
    fresh_world.set_price(answer / 1e8, governance)  # ... the oracle where it was
    # a vault over-hedged by 8 WETH must sell, into pools with little room under its bound
    a = fresh_world.vaults[names[0]]
    fresh_world.weth.deposit(value=8 * WAD, sender=governance)
    fresh_world.weth.approve(a, 8 * WAD, sender=governance)
    a.deposit(fresh_world.weth, 8 * WAD, sender=governance)
    with caplog.at_level("INFO"):
        decisions = k.tick(chain)
    assert decisions[a.address].trade_wei < 0
    assert "net split over blocks: pool too shallow" in caplog.text, caplog.text
    (entry,) = rebalances(k)
    split = entry.payload["split"]
    assert split is not None and 0 < split["net_now"] < split["net_wanted"]
    assert entry.payload["net"]["amount_in"] == split["net_now"]
    (leg,) = entry.payload["legs"]
    assert leg["amount_in"] == split["net_now"] < -decisions[a.address].trade_wei
    after = k.tick(chain)
    assert k.store.entry(entry.id).state == JournalState.MINED
    assert after[a.address].action == Action.REBALANCE  # the rest follows in later blocks


MANY = 70  # extra vaults: 73 in all, more than one settlement holds (MAX_LEGS 64)


def test_many_vaults_out_of_band_settle_in_several_settlements_and_end_inside(
    book_keeper: Running, fresh_world: ForkedWorld, chain: Any
) -> None:
    """As many vaults as a test can deploy in reasonable time (the benchmark goes to 1000):
    every one pushed out of its band, half up and half down."""
    import json

    from bench_world import deploy_vaults, shift_hedges

    k = book_keeper
    node = chain.provider.web3
    manifest = json.loads(fresh_world.manifest_file.read_text())
    extra = deploy_vaults(node, manifest, MANY)
    vaults = [v.address for v in fresh_world.vaults.values()] + extra
    k.tick(chain)
    moved = shift_hedges(node, vaults, 3 * WAD, 1.0)
    assert len(moved) == 72
    decisions = k.tick(chain)
    assert all(decisions[v].action == Action.REBALANCE for v in moved)
    sent = rebalances(k)
    assert len(sent) >= 2  # more legs than one settlement takes
    assert all(len(e.payload["legs"]) <= 64 for e in sent)
    assert {v for e in sent for v in e.vaults} == set(moved)
    after = k.tick(chain)
    for e in sent:
        assert k.store.entry(e.id).state == JournalState.MINED
    outside = [v for v in moved if abs(after[v].deviation) > after[v].band]
    assert outside == []
