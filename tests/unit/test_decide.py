"""Per-vault decisions from typed states (pure): guards, triggers, expired legs, memory."""

from __future__ import annotations

from dataclasses import replace

import pytest
from vaults import GUARDS

from keeper.core.decide import CostConfig, VaultMemory, decide_block, remember, reopen
from keeper.core.types import (
    WAD,
    Action,
    BlockRef,
    OptionLeg,
    OracleRound,
    PolicyKind,
    VaultParams,
    VaultState,
)

NOW = 1_800_000_000
DAY = 86_400
COSTS = CostConfig(190_000, 10**9, 5.0, 0.5, 2000)
BLOCK = BlockRef(100, "0xb100", "0xb099", NOW)


def params(**kw: int) -> VaultParams:
    base = dict(
        implied_vol_wad=8 * 10**17,
        risk_free_rate_wad=5 * 10**16,
        target_delta_wad=0,
        band_floor_wad=10**17,
        hard_limit_wad=3 * WAD,
        risk_aversion_wad=10**14,
        policy=PolicyKind.GAS_ADJUSTED_BAND,
        policy_param=0,
    )
    return VaultParams(**(base | kw))  # type: ignore[arg-type]


def short_call_vault(hedge_wei: int, **kw: int) -> VaultState:
    leg = OptionLeg(strike=3000 * 10**8, expiry=NOW + 30 * DAY, size=-10 * WAD, is_call=True)
    return VaultState(
        address="0xV1",
        quote_balance=10**12,
        underlying_balance=hedge_wei,
        params=params(**kw),
        book=(leg,),
        oracle=OracleRound(7, 3000 * 10**8, NOW - 60, 8),
        paused=False,
        request_nonce=0,
        params_version=0,
        last_rebalance_at=NOW - 3600,
        quote_decimals=6,
        underlying_decimals=18,
        guards=GUARDS,
        state_nonce=0,
        notional_available=GUARDS.notional_cap,
        loss_available=GUARDS.loss_budget,
    )


def test_hedged_vault_holds_and_unhedged_is_urgent() -> None:
    bare = short_call_vault(0)
    (d,) = decide_block(BLOCK, 0, [bare], {}, COSTS)
    assert d.action == Action.REBALANCE and d.urgent and d.trigger == "urgent"
    assert d.trade_wei > 0  # short calls: buy underlying
    # the trade goes to the band's inner target h, not to the target itself
    assert 0.0 < d.inner < d.band and d.trade_to_deviation == pytest.approx(-d.inner)
    assert d.trade_wei == -round((d.deviation - d.trade_to_deviation) * WAD)
    (again,) = decide_block(BLOCK, 0, [replace(bare, underlying_balance=d.trade_wei)], {}, COSTS)
    assert again.action == Action.HOLD
    assert again.deviation == pytest.approx(d.trade_to_deviation, abs=1e-9)


def test_governance_request_and_parameter_change_act_regardless_of_the_band() -> None:
    (d,) = decide_block(BLOCK, 0, [short_call_vault(0)], {}, COSTS)
    state = short_call_vault(-round(d.deviation * WAD) + WAD // 100)  # 0.01 over: in the band
    mem = {state.address: VaultMemory(request_nonce=0, params_version=0)}
    (hold,) = decide_block(BLOCK, 0, [state], mem, COSTS)
    assert hold.action == Action.HOLD
    (req,) = decide_block(BLOCK, 0, [replace(state, request_nonce=1)], mem, COSTS)
    assert req.action == Action.REBALANCE and req.trigger == "request"
    (par,) = decide_block(BLOCK, 0, [replace(state, params_version=3)], mem, COSTS)
    assert par.action == Action.REBALANCE and par.trigger == "params"
    # Once acted on, the counters are remembered and the trigger does not fire again.
    acted = remember([replace(state, request_nonce=1)], mem, {state.address}, NOW, COSTS)
    (after,) = decide_block(BLOCK, 0, [replace(state, request_nonce=1)], acted, COSTS)
    assert after.action == Action.HOLD


def test_first_sight_of_a_vault_does_not_replay_old_requests() -> None:
    (d,) = decide_block(BLOCK, 0, [short_call_vault(0)], {}, COSTS)
    state = replace(short_call_vault(d.trade_wei), request_nonce=5)
    (first,) = decide_block(BLOCK, 0, [state], {}, COSTS)
    assert first.action == Action.HOLD


def test_expired_options_are_ignored_and_named() -> None:
    state = short_call_vault(0)
    expired = replace(state, book=(replace(state.book[0], expiry=NOW - 1),))
    (d,) = decide_block(BLOCK, 0, [expired], {}, COSTS)
    assert d.action == Action.HOLD and d.delta == 0.0
    assert "1 expired option(s) ignored" in d.reason


def test_guards_skip_with_the_reason() -> None:
    state = short_call_vault(0)
    paused = replace(state, paused=True)
    stale = replace(state, oracle=OracleRound(7, 3000 * 10**8, NOW - 7200, 8))
    broken = replace(state, oracle=OracleRound(0, 0, 0, 8, ok=False))
    decisions = decide_block(BLOCK, 0, [paused, stale, broken], {}, COSTS)
    assert [d.action for d in decisions] == [Action.SKIP] * 3
    assert decisions[0].reason == "paused by governance"
    assert decisions[1].reason.startswith("oracle stale")
    assert decisions[2].reason.startswith("oracle feed call failed")


def test_jump_guard_compares_round_over_round_so_a_real_move_blocks_one_round() -> None:
    state = short_call_vault(0)
    mem = remember([state], {}, set(), NOW, COSTS)
    jumped = replace(state, oracle=OracleRound(8, 4500 * 10**8, NOW - 10, 8))
    (d,) = decide_block(BLOCK, 0, [jumped], mem, COSTS)
    assert d.reason.startswith("oracle jump")
    mem = remember([jumped], mem, set(), NOW, COSTS)
    steady = replace(state, oracle=OracleRound(9, 4510 * 10**8, NOW - 5, 8))
    (d,) = decide_block(BLOCK, 0, [steady], mem, COSTS)
    assert d.action != Action.SKIP


def test_a_feed_back_from_a_glitch_is_accepted_at_once() -> None:
    state = short_call_vault(0)
    mem = remember([state], {}, set(), NOW, COSTS)  # round 7 at 3000: accepted
    glitch = replace(state, oracle=OracleRound(8, 4500 * 10**8, NOW - 10, 8))
    (d,) = decide_block(BLOCK, 0, [glitch], mem, COSTS)
    assert d.reason.startswith("oracle jump")
    mem = remember([glitch], mem, set(), NOW, COSTS)
    back = replace(state, oracle=OracleRound(9, 3001 * 10**8, NOW - 5, 8))
    (d,) = decide_block(BLOCK, 0, [back], mem, COSTS)
    assert d.action != Action.SKIP  # near the last accepted 3000, though far from the glitch


def test_a_governance_request_at_target_holds_and_is_satisfied() -> None:
    (d,) = decide_block(BLOCK, 0, [short_call_vault(0)], {}, COSTS)
    hedged = short_call_vault(-round(d.deviation * WAD))  # exactly at target
    mem = {hedged.address: VaultMemory(request_nonce=0, params_version=0)}
    requested = replace(hedged, request_nonce=1)
    (hold,) = decide_block(BLOCK, 0, [requested], mem, COSTS)
    assert hold.action == Action.HOLD and hold.trade_wei == 0
    assert hold.trigger == "request" and "already at target" in hold.reason
    # the caller counts it as handled: a later drift far inside the band does not fire it
    after = remember([requested], mem, {hedged.address}, NOW, COSTS)
    drifted = replace(requested, underlying_balance=requested.underlying_balance + 10**12)
    (later,) = decide_block(BLOCK, 0, [drifted], after, COSTS)
    assert later.action == Action.HOLD and later.trigger == ""


def test_gas_widens_the_band() -> None:
    state = short_call_vault(0)
    cheap = decide_block(BLOCK, 1 * 10**9, [state], {}, COSTS)[0].band
    dear = decide_block(BLOCK, 300 * 10**9, [state], {}, COSTS)[0].band
    assert dear > cheap


def test_a_governance_trigger_whose_rebalance_failed_on_chain_fires_again() -> None:
    (d,) = decide_block(BLOCK, 0, [short_call_vault(0)], {}, COSTS)
    state = replace(short_call_vault(d.trade_wei + WAD // 100), request_nonce=1)  # in band
    handled = {state.address: VaultMemory(request_nonce=1, params_version=0)}
    (quiet,) = decide_block(BLOCK, 0, [state], handled, COSTS)
    assert quiet.action == Action.HOLD
    again = reopen(handled, {state.address: "request", "0xunknown": "request"})
    (retry,) = decide_block(BLOCK, 0, [state], again, COSTS)
    assert retry.action == Action.REBALANCE and retry.trigger == "request"
    assert reopen(handled, {state.address: "band"}) == handled  # only governance triggers


def test_a_vault_that_opted_in_is_hedged_at_the_ewma_realised_vol() -> None:
    costs = replace(COSTS, vol_half_life_seconds=3600.0, realized_vol_vaults=frozenset({"0xv1"}))
    state = short_call_vault(0)
    mem = remember([state], {}, set(), NOW, costs)
    assert mem[state.address].ewma_var == pytest.approx(0.8**2)  # starts at the implied vol
    # a calm hour: the next round moves 0.01%, far below 80% vol, and the estimate falls
    later = replace(state, oracle=OracleRound(8, 3000_30000000, NOW + 3540, 8))
    mem = remember([later], mem, set(), NOW + 3600, costs)
    var = mem[state.address].ewma_var
    assert 0.0 < var < 0.8**2 * 0.6
    block = BlockRef(101, "0xb101", "0xb100", NOW + 3600)
    (opted,) = decide_block(block, 0, [later], mem, costs)
    assert opted.vol == pytest.approx(var**0.5)
    other = replace(later, address="0xV2")
    (implied,) = decide_block(block, 0, [other], {"0xV2": mem[state.address]}, costs)
    assert implied.vol == pytest.approx(0.8)  # not opted in: governance's implied vol
    assert opted.gamma != implied.gamma


def test_with_a_usual_base_fee_the_band_waits_out_a_gas_spike() -> None:
    costs = replace(COSTS, gas_half_life_seconds=7200.0)
    spike, usual = 400 * 10**9, 20 * 10**9
    wide = 20 * WAD  # a hard limit beyond the band at the spike
    (probe,) = decide_block(BLOCK, spike, [short_call_vault(0, hard_limit_wad=wide)], {}, costs)
    target_hedge = -round(probe.deviation * WAD)  # the hedge that puts the vault at target
    just_out = short_call_vault(target_hedge + round(1.05 * probe.band * WAD), hard_limit_wad=wide)
    (plain,) = decide_block(BLOCK, spike, [just_out], {}, costs)
    assert plain.action == Action.REBALANCE and plain.trigger == "band"
    (timed,) = decide_block(BLOCK, spike, [just_out], {}, costs, usual_base_fee_wei=usual)
    assert timed.action == Action.HOLD  # the spike's excess gas outweighs 2 h of risk
    (calm,) = decide_block(BLOCK, usual, [just_out], {}, costs, usual_base_fee_wei=usual)
    assert calm.action == Action.REBALANCE  # at the usual fee the rule never waits


def test_an_8_decimal_underlying_is_decided_like_the_same_vault_in_18_decimals() -> None:
    """Sizes, the hedge and ``trade_wei`` are underlying base units (docs/interfaces.md,
    "Units"; the vault scales them by 10**(18 - underlyingDecimals)): a WBTC-like vault holding
    the same whole tokens must have the same deviation and a trade of the same whole size."""
    (wad,) = decide_block(BLOCK, 0, [short_call_vault(0)], {}, COSTS)
    unit = 10**10  # 18 - 8 decimals
    base = short_call_vault(0)
    leg = replace(base.book[0], size=base.book[0].size // unit)
    btc = replace(base, underlying_decimals=8, book=(leg,))
    (d,) = decide_block(BLOCK, 0, [btc], {}, COSTS)
    assert d.deviation == pytest.approx(wad.deviation)
    assert d.action == wad.action == Action.REBALANCE
    assert d.trade_wei == pytest.approx(wad.trade_wei / unit, abs=1)
