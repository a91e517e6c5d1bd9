"""getState, the book, params, requests and their version counters."""

from __future__ import annotations

from typing import Any

import ape
import pytest
from contract_helpers import ORACLE, WAD, World, error_data
from eth_abi.abi import encode
from web3.exceptions import ContractCustomError


def leg_tuple(leg: Any) -> tuple[int, int, int, bool]:
    return (int(leg.strike), int(leg.expiry), int(leg.size), bool(leg.isCall))


def test_get_state_returns_book_balances_params_and_oracle(world: World, vault: Any) -> None:
    state = vault.getState()
    assert state.quoteBalance == world.usdc.balanceOf(vault) > 0
    assert state.underlyingBalance == world.weth.balanceOf(vault) > 0
    assert tuple(state.params) == tuple(vault.params())
    assert state.params.maxSlippageBps == 100
    assert state.params.impliedVolWad == 8 * WAD // 10
    assert len(state.book) == vault.bookLength() == 2
    assert [leg_tuple(leg) for leg in state.book] == [leg_tuple(vault.option(i)) for i in range(2)]
    assert all(leg.size < 0 and leg.isCall for leg in state.book)
    round_id, answer, _, updated_at, _ = world.feed.latestRoundData()
    assert (state.oracle.roundId, state.oracle.answer, state.oracle.updatedAt) == (
        round_id,
        answer,
        updated_at,
    )
    assert state.oracle.ok is True
    assert state.oracleDecimals == 8
    assert state.paused is False
    assert state.requestNonce == 0
    assert state.paramsVersion == 3  # constructor params + two legs
    assert state.lastRebalanceAt == 0
    assert (state.windowNotionalUsed, state.windowStart) == (0, 0)
    assert (vault.quote(), vault.underlying(), vault.feed()) == (
        world.usdc.address,
        world.weth.address,
        world.feed.address,
    )
    assert vault.isKeeper(world.batcher) and vault.isRouter(world.router)


def test_write_and_remove_options_keep_order_and_bump_version(
    world: World, vault: Any, deployer: Any
) -> None:
    version = vault.paramsVersion()
    expiry = int(ape.chain.blocks.head.timestamp) + 7 * 86400
    new_leg = (2900 * ORACLE, expiry, 5 * WAD, False)
    receipt = vault.writeOption(new_leg, sender=deployer)
    (written,) = receipt.decode_logs(vault.OptionWritten)
    assert (written.index, written.strike, written.expiry, written.size, written.isCall) == (
        2,
        *new_leg,
    )
    assert [e.version for e in receipt.decode_logs(vault.ParamsUpdated)] == [version + 1]

    before = [leg_tuple(leg) for leg in vault.getState().book]
    receipt = vault.removeOption(0, sender=deployer)
    assert [e.index for e in receipt.decode_logs(vault.OptionRemoved)] == [0]
    state = vault.getState()
    assert [leg_tuple(leg) for leg in state.book] == before[1:]
    assert state.paramsVersion == version + 2

    with ape.reverts(vault.IndexOutOfRange, index=2, length=2):
        vault.removeOption(2, sender=deployer)


def test_invalid_options_are_refused(vault: Any, deployer: Any) -> None:
    now = int(ape.chain.blocks.head.timestamp)
    for leg in (
        (0, now + 86400, -WAD, True),  # no strike
        (3000 * ORACLE, now + 86400, 0, True),  # no size
        (3000 * ORACLE, now - 1, -WAD, True),  # expired
    ):
        with ape.reverts(vault.InvalidOption):
            vault.writeOption(leg, sender=deployer)


def test_set_params_bumps_version_and_validates(vault: Any, deployer: Any) -> None:
    params = list(vault.params())
    params[3] = WAD // 5  # bandFloorWad
    version = vault.paramsVersion()
    receipt = vault.setParams(tuple(params), sender=deployer)
    assert [e.version for e in receipt.decode_logs(vault.ParamsUpdated)] == [version + 1]
    assert vault.getState().params.bandFloorWad == WAD // 5
    for index, bad, field in (
        (0, 0, "impliedVolWad"),
        (6, 3, "policy"),
        (8, 10_000, "maxSlippageBps"),
        (10, 0, "windowSeconds"),
        (11, 0, "oracleHeartbeat"),
    ):
        broken = list(params)
        broken[index] = bad
        with ape.reverts(vault.InvalidParams, field=field):
            vault.setParams(tuple(broken), sender=deployer)


def test_request_rebalance_increments_nonce(vault: Any, deployer: Any) -> None:
    for expected in (1, 2):
        receipt = vault.requestRebalance(sender=deployer)
        events = receipt.decode_logs(vault.RebalanceRequested)
        assert [(e.nonce, e.by) for e in events] == [(expected, deployer.address)]
    assert vault.getState().requestNonce == 2


def test_bad_constructor_arguments(world: World, deployer: Any, project: Any) -> None:
    """A zero address is refused (simulated with eth_call: Ape's deploy error decoding gets
    confused by contracts cached from earlier, reverted tests at the same address)."""
    params = tuple(world.vaults["short-calls"].params())
    zero = "0x0000000000000000000000000000000000000000"
    web3 = ape.chain.provider.web3
    for quote, feed in ((zero, world.feed.address), (world.usdc.address, zero)):
        init_code = bytes(
            project.OptionsVault.contract_type.deployment_bytecode.to_bytes()
        ) + encode(
            ["address", "address", "address", "address", TUPLE_PARAMS],
            [deployer.address, quote, world.weth.address, feed, params],
        )
        with pytest.raises(ContractCustomError) as excinfo:
            web3.eth.call({"from": deployer.address, "data": init_code})
        assert excinfo.value.data == "0x" + error_data("ZeroAddress()", [], []).hex()


TUPLE_PARAMS = (
    "(uint256,int256,int256,uint256,uint256,uint256,uint8,uint256,uint16,uint256,uint64,uint64)"
)
