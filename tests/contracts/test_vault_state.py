"""getState, the book, params, requests, buckets and their version counters."""

from __future__ import annotations

from typing import Any

import ape
from contract_helpers import (
    ORACLE,
    USDC,
    WAD,
    World,
    refresh_oracle,
    set_deviation,
    set_guards,
    swap_on_pool,
)
from eth_abi.abi import encode
from eth_utils.crypto import keccak

from keeper.core import abi


def leg_tuple(leg: Any) -> tuple[int, int, int, bool]:
    return (int(leg.strike), int(leg.expiry), int(leg.size), bool(leg.isCall))


def test_get_state_returns_everything_the_keeper_reads(world: World, vault: Any) -> None:
    state = vault.getState()
    assert state.quoteBalance == world.usdc.balanceOf(vault) > 0
    assert state.underlyingBalance == world.weth.balanceOf(vault) > 0
    assert (state.quoteDecimals, state.underlyingDecimals, state.oracleDecimals) == (6, 18, 8)
    assert tuple(state.params) == tuple(vault.params())
    assert tuple(state.guards) == tuple(vault.guards())
    assert state.params.impliedVolWad == 8 * WAD // 10
    assert len(state.book) == vault.bookLength() == 2
    assert [leg_tuple(leg) for leg in state.book] == [leg_tuple(leg) for leg in vault.book()]
    assert all(leg.size < 0 and leg.isCall for leg in state.book)
    round_id, answer, _, updated_at, _ = world.feed.latestRoundData()
    assert (state.oracle.roundId, state.oracle.answer, state.oracle.updatedAt) == (
        round_id,
        answer,
        updated_at,
    )
    assert state.oracle.ok is True
    assert state.paused is False
    assert state.requestNonce == 0
    assert state.paramsVersion == 3  # constructor (params + guards) and two legs
    assert state.stateNonce == vault.stateNonce() == 3
    assert state.lastRebalanceAt == 0
    # Buckets start full.
    assert (state.notionalAvailable, state.lossAvailable) == (
        state.guards.notionalCap,
        state.guards.lossBudget,
    )
    assert (vault.quote(), vault.underlying(), vault.feed()) == (
        world.usdc.address,
        world.weth.address,
        world.feed.address,
    )


def test_buckets_are_reported_at_their_level_now(
    world: World, vault: Any, keeper: Any, deployer: Any
) -> None:
    set_deviation(vault, deployer, 3 * WAD)
    refresh_oracle(world, deployer)
    receipt = swap_on_pool(world, vault, keeper, True, 2 * WAD)
    (traded,) = receipt.decode_logs(vault.Traded)
    guards = vault.guards()
    state = vault.getState()
    assert state.lastRebalanceAt == receipt.timestamp
    assert state.notionalAvailable == guards.notionalCap - 6000 * USDC
    assert state.lossAvailable == guards.lossBudget - traded.loss
    # A quarter of the window later a quarter of the capacity has come back (capped at full).
    ape.chain.mine(timestamp=receipt.timestamp + 900)
    state = vault.getState()
    assert state.notionalAvailable == guards.notionalCap
    assert state.lossAvailable == guards.lossBudget


def test_write_and_remove_options_keep_order_and_bump_versions(
    world: World, vault: Any, deployer: Any
) -> None:
    version, nonce = vault.paramsVersion(), vault.stateNonce()
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
    assert state.stateNonce == nonce + 2

    with ape.reverts(vault.IndexOutOfRange, index=2, length=2):
        vault.removeOption(2, sender=deployer)


def test_invalid_options_are_refused(vault: Any, deployer: Any) -> None:
    now = int(ape.chain.blocks.head.timestamp)
    for leg in (
        (0, now + 86400, -WAD, True),  # no strike
        (3000 * ORACLE, now + 86400, 0, True),  # no size
        (3000 * ORACLE, now - 1, -WAD, True),  # expired
        (2**96, now + 86400, -WAD, True),  # strike beyond its packed width
        (3000 * ORACLE, now + 86400, -(2**95) - 1, True),  # size beyond its packed width
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
        (0, 2**64, "impliedVolWad"),
        (1, 2 * WAD, "riskFreeRateWad"),
        (2, 2**127, "targetDeltaWad"),
        (6, 3, "policy"),
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


def test_deposit_and_withdraw_bump_the_state_nonce(world: World, vault: Any, deployer: Any) -> None:
    nonce = vault.stateNonce()
    world.usdc.mint(deployer, 10 * USDC, sender=deployer)
    world.usdc.approve(vault, 10 * USDC, sender=deployer)
    receipt = vault.deposit(world.usdc, 10 * USDC, sender=deployer)
    assert [(e.token, e.amount) for e in receipt.decode_logs(vault.Deposited)] == [
        (world.usdc.address, 10 * USDC)
    ]
    receipt = vault.withdraw(world.usdc, deployer, 4 * USDC, sender=deployer)
    assert [(e.to, e.amount) for e in receipt.decode_logs(vault.Withdrawn)] == [
        (deployer.address, 4 * USDC)
    ]
    assert vault.stateNonce() == nonce + 2
    with ape.reverts(vault.ZeroAmount):
        vault.withdraw(world.usdc, deployer, 0, sender=deployer)


def test_the_hot_state_shares_one_slot_with_pause(world: World, vault: Any) -> None:
    """Gas layout: the book's length packs into the slot of Ownable2Step's pending owner and
    Pausable's flag (slot 1), so a trade reads both with one SLOAD; the nonce shares the
    buckets' slot (slot 2), so a trade writes one slot."""
    raw = int.from_bytes(bytes(ape.chain.provider.get_storage(vault.address, 1)), "big")
    assert raw >> (21 * 8) == vault.bookLength() == 2
    raw = int.from_bytes(bytes(ape.chain.provider.get_storage(vault.address, 2)), "big")
    assert raw >> 224 == vault.stateNonce()


def config_hash_of(vault: Any) -> bytes:
    """keccak256(abi.encode(params(), guards(), book())), computed here from the ABI."""
    types = [abi.abi_type(abi.function("OptionsVault", n).outputs[0]) for n in CONFIG_VIEWS]
    values = [vault.params(), vault.guards(), [tuple(leg) for leg in vault.book()]]
    return keccak(encode(types, [tuple(values[0]), tuple(values[1]), values[2]]))


CONFIG_VIEWS = ("params", "guards", "book")


def assert_hot_is_get_state(vault: Any) -> Any:
    """getHotState's fields equal getState's at the same block; its configHash is the hash of
    the rest. Returns the hot state."""
    state, hot = vault.getState(), vault.getHotState()
    for name in (
        "quoteBalance",
        "underlyingBalance",
        "paused",
        "stateNonce",
        "requestNonce",
        "paramsVersion",
        "lastRebalanceAt",
        "notionalAvailable",
        "lossAvailable",
    ):
        assert getattr(hot, name) == getattr(state, name), name
    assert tuple(hot.oracle) == tuple(state.oracle)
    assert bytes(hot.configHash) == config_hash_of(vault)
    return hot


def test_the_hot_state_is_get_states_moving_part_and_its_hash_names_the_rest(
    world: World, vault: Any, keeper: Any, deployer: Any
) -> None:
    """A trade moves the hot fields and keeps configHash; every governance change of params,
    guards or book gives a new configHash (the keeper reads such a vault in full again)."""
    hashes = [bytes(assert_hot_is_get_state(vault).configHash)]
    set_deviation(vault, deployer, 3 * WAD)  # setParams
    hashes.append(bytes(assert_hot_is_get_state(vault).configHash))
    refresh_oracle(world, deployer)
    before = vault.getHotState()
    swap_on_pool(world, vault, keeper, True, 2 * WAD)
    hot = assert_hot_is_get_state(vault)
    assert hot.stateNonce == before.stateNonce + 1 and hot.configHash == before.configHash
    expiry = int(ape.chain.blocks.head.timestamp) + 7 * 86400
    vault.writeOption((2900 * ORACLE, expiry, 5 * WAD, False), sender=deployer)
    hashes.append(bytes(assert_hot_is_get_state(vault).configHash))
    vault.removeOption(0, sender=deployer)
    hashes.append(bytes(assert_hot_is_get_state(vault).configHash))
    slippage = int(vault.guards().maxSlippageBps)
    set_guards(vault, deployer, maxSlippageBps=slippage - 10)  # tighter: at once
    hashes.append(bytes(assert_hot_is_get_state(vault).configHash))
    assert len(set(hashes)) == len(hashes)
    set_guards(vault, deployer, maxSlippageBps=slippage)  # looser: queued, then applied
    # the hash is of the content: the same guards as before give the same hash
    assert bytes(assert_hot_is_get_state(vault).configHash) == hashes[-2]


def test_the_hot_state_costs_less_than_the_readers_budget_for_it(vault: Any) -> None:
    """The reader sizes its multicall chunks by ``GET_HOT_STATE_GAS`` per hot read."""
    eth = ape.chain.provider.web3.eth
    base = 21_000 + 4 * 16  # a transaction's own cost and the selector's calldata
    hot = eth.estimate_gas({"to": vault.address, "data": "0x" + abi.GET_HOT_STATE.hex()}) - base
    full = eth.estimate_gas({"to": vault.address, "data": "0x" + abi.GET_STATE.hex()}) - base
    assert hot <= abi.GET_HOT_STATE_GAS
    assert full <= abi.get_state_gas(int(vault.bookLength()))
    print(f"getHotState {hot} gas, getState {full} gas")
