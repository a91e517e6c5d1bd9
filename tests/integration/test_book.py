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
from keeper_support import Running, keeper_settings, start_keeper

from keeper.core import abi
from keeper.core.types import Action
from keeper.store import JournalEntry, JournalState, TxKind

WAD = 10**18


@pytest.fixture
def book_keeper(
    rpc_url: str, fresh_world: ForkedWorld, keeper_key: str, tmp_path: Path
) -> Iterator[Running]:
    running = start_keeper(
        keeper_settings(
            rpc_url,
            fresh_world.manifest_file,
            f"sqlite:///{tmp_path / 'keeper.sqlite'}",
            private_key=keeper_key,
        )
    )
    yield running
    running.stop()


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
