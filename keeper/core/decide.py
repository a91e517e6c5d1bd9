"""Per block, per vault: hold, rebalance or skip, and why (pure; time is passed in).

Flow for one block: guards (paused, oracle) -> portfolio greeks of every healthy vault in
one vectorized pass (:mod:`keeper.core.portfolio`) -> costs of one rebalance at this
block's base fee -> each vault's own policy (:mod:`keeper.core.bands`, vectorized per
policy kind) -> governance triggers, which act regardless of the band.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from keeper.core import bands
from keeper.core.greeks import SECONDS_PER_YEAR, ewma_variance_one
from keeper.core.oracle_guard import GuardVerdict, check_round
from keeper.core.portfolio import portfolio_greeks_for_states
from keeper.core.types import (
    WAD,
    Action,
    BlockRef,
    Decision,
    OracleRound,
    PolicyKind,
    VaultState,
)

DUST = 1e-6  # whole underlying: a trade smaller than this is not worth a transaction


@dataclass(frozen=True)
class CostConfig:
    """What one rebalance costs besides the trade itself."""

    gas_units_per_rebalance: int
    priority_fee_wei: int
    dex_fee_bps: float
    slippage_bps_per_unit: float
    oracle_max_jump_bps: int
    oracle_stale_margin_seconds: int = 0  # a round this close to its heartbeat is stale
    vol_half_life_seconds: float = 0.0  # EWMA half-life of the realised vol; 0: not tracked
    realized_vol_vaults: frozenset[str] = frozenset()  # lower-case addresses hedged at it
    gas_half_life_seconds: float = 0.0  # base fee's half-life after a spike; 0: no gas timing
    usual_fee_half_life_seconds: float = 86_400.0  # EWMA of the base fee: its usual level


@dataclass(frozen=True)
class VaultMemory:
    """What the keeper carries from block to block about a vault."""

    request_nonce: int  # last governance request handled
    params_version: int  # last parameter version handled
    round_id: int = 0  # newest oracle round seen
    answer: int = 0  # its answer
    previous_answer: int | None = None  # the answer of the round before it
    accepted_answer: int = 0  # the answer of the newest round the guards accepted
    ewma_var: float = 0.0  # annualised EWMA variance of the accepted rounds (0: none yet)
    vol_time: int = 0  # updated_at of the round that last fed ewma_var

    def jump_references(self, round_id: int) -> tuple[int, ...]:
        """The answers round ``round_id`` may not jump away from all at once: the round before
        it (a genuine move blocks one round, not forever) and the last accepted answer (a feed
        back from a glitch is accepted at once)."""
        previous = self.previous_answer if round_id == self.round_id else self.answer
        return tuple(a for a in (previous or 0, self.accepted_answer) if a > 0)


def decide_block(
    block: BlockRef,
    base_fee_wei: int,
    states: Sequence[VaultState],
    memory: Mapping[str, VaultMemory],
    costs: CostConfig,
    usual_base_fee_wei: int | None = None,
) -> tuple[Decision, ...]:
    """One decision per vault in ``states``, in the same order; ``block.timestamp`` is "now".

    ``usual_base_fee_wei`` (e.g. a slow EWMA of recent base fees) turns on the band's
    gas-timing rule when ``costs.gas_half_life_seconds`` is set too (``bands.gas_wait``)."""
    now = block.timestamp
    skips: dict[int, Decision] = {}
    for i, state in enumerate(states):
        reason = _guard(state, memory.get(state.address), now, costs)
        if reason:
            skips[i] = _decision(state, block, Action.SKIP, reason)
    live = [i for i in range(len(states)) if i not in skips]
    evaluated = _evaluate(
        block, base_fee_wei, [states[i] for i in live], memory, costs, usual_base_fee_wei
    )
    decided = dict(zip(live, evaluated, strict=True)) | skips
    return tuple(decided[i] for i in range(len(states)))


def _guard(state: VaultState, mem: VaultMemory | None, now: int, costs: CostConfig) -> str:
    if state.paused:
        return "paused by governance"
    verdict = _oracle_verdict(state, mem, now, costs)
    return "" if verdict.ok else f"oracle {verdict.reason}"


def _oracle_verdict(
    state: VaultState, mem: VaultMemory | None, now: int, costs: CostConfig
) -> GuardVerdict:
    references = mem.jump_references(state.oracle.round_id) if mem else ()
    return check_round(
        state.oracle,
        now,
        state.guards.oracle_heartbeat,
        references,
        costs.oracle_max_jump_bps,
        stale_margin=costs.oracle_stale_margin_seconds,
    )


def _evaluate(
    block: BlockRef,
    base_fee_wei: int,
    states: Sequence[VaultState],
    memory: Mapping[str, VaultMemory],
    costs: CostConfig,
    usual_base_fee_wei: int | None = None,
) -> list[Decision]:
    if not states:
        return []
    now = block.timestamp
    # An expired option is settled off the book's hedging: it has no delta left to hedge.
    # It stays in the book until governance removes it; the decision says so.
    vol = np.array([_vol(s, memory.get(s.address), costs) for s in states])
    greeks = portfolio_greeks_for_states([_live(s, now) for s in states], now, vol)
    spot = np.array([s.oracle.price for s in states])
    target = np.array([s.params.target_delta_wad / WAD for s in states])
    deviation = greeks.net_delta - target
    inputs = bands.BandInputs(
        deviation=deviation,
        gamma=greeks.gamma,
        spot=spot,
        vol=vol,
        t_years=greeks.t_years,
        risk_aversion=np.array([s.params.risk_aversion_wad / WAD for s in states]),
        fixed_cost=bands.gas_cost_quote(
            costs.gas_units_per_rebalance, base_fee_wei, costs.priority_fee_wei, spot
        ),
        proportional_cost=bands.proportional_cost(costs.dex_fee_bps, 0.0, 0.0),
        seconds_since_rebalance=np.array([now - s.last_rebalance_at for s in states], dtype=float),
        impact_per_unit=bands.proportional_cost(0.0, costs.slippage_bps_per_unit, 1.0),
        **_gas_timing(costs, usual_base_fee_wei, spot),
    )
    result = _evaluate_policies(states, inputs)
    return [
        _vault_decision(
            state,
            block,
            memory.get(state.address),
            _Risk(
                float(greeks.net_delta[i]),
                float(deviation[i]),
                float(greeks.gamma[i]),
                float(result.half_width[i]),
                bool(result.act[i]),
                bool(result.urgent[i]),
                float(result.spot_move[i]),
                float(result.inner[i]),
                float(result.trade_to[i]),
                float(np.asarray(inputs.vol)[i]),
            ),
        )
        for i, state in enumerate(states)
    ]


def _gas_timing(
    costs: CostConfig, usual_base_fee_wei: int | None, spot: npt.NDArray[np.float64]
) -> dict[str, npt.NDArray[np.float64]]:
    """The gas-timing inputs of ``BandInputs`` when both the usual fee and its half-life are
    known; otherwise nothing (the rule stays off)."""
    if usual_base_fee_wei is None or not costs.gas_half_life_seconds:
        return {}
    usual = bands.gas_cost_quote(
        costs.gas_units_per_rebalance, usual_base_fee_wei, costs.priority_fee_wei, spot
    )
    return {
        "reference_fixed_cost": np.asarray(usual, dtype=np.float64),
        "gas_half_life_years": np.asarray(costs.gas_half_life_seconds / SECONDS_PER_YEAR),
    }


def _vol(state: VaultState, mem: VaultMemory | None, costs: CostConfig) -> float:
    """The vault's realised EWMA vol when it opted in and an estimate exists, else its implied
    vol (governance's, the default)."""
    implied = state.params.implied_vol_wad / WAD
    if mem is None or mem.ewma_var <= 0.0 or not costs.vol_half_life_seconds:
        return implied
    if state.address.lower() not in costs.realized_vol_vaults:
        return implied
    return math.sqrt(mem.ewma_var)


def _ewma(
    state: VaultState, old: VaultMemory | None, accepted: bool, costs: CostConfig
) -> tuple[float, int]:
    """(ewma_var, vol_time) after this block: an accepted round newer than the last one used
    adds its log return (:func:`keeper.core.greeks.ewma_variance`); the first estimate starts
    at the implied vol."""
    rnd = state.oracle
    implied_var = (state.params.implied_vol_wad / WAD) ** 2
    if not costs.vol_half_life_seconds:
        return 0.0, 0
    if old is None or old.vol_time == 0 or old.accepted_answer <= 0:
        return implied_var, rnd.updated_at if accepted else 0
    if not accepted or rnd.updated_at <= old.vol_time:
        return old.ewma_var, old.vol_time
    ret = math.log(rnd.answer / old.accepted_answer)
    var = ewma_variance_one(
        old.ewma_var, ret, rnd.updated_at - old.vol_time, costs.vol_half_life_seconds
    )
    return var, rnd.updated_at


@dataclass(frozen=True)
class _Risk:
    """One vault's numbers from the vectorized pass."""

    delta: float
    deviation: float
    gamma: float
    half_width: float
    act: bool
    urgent: bool
    spot_move: float
    inner: float  # the band's inner target h
    trade_to: float  # the deviation a band or urgent trade leaves
    vol: float


def _live(state: VaultState, now: int) -> VaultState:
    live = tuple(leg for leg in state.book if leg.expiry > now)
    return state if len(live) == len(state.book) else replace(state, book=live)


def _evaluate_policies(states: Sequence[VaultState], inputs: bands.BandInputs) -> bands.BandResult:
    """Evaluate each vault under its own policy, one vectorized call per policy kind."""
    n = len(states)
    half, move, inner, trade_to = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    act, urgent = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    kinds = np.array([int(s.params.policy) for s in states])
    for kind in np.unique(kinds):
        idx = np.flatnonzero(kinds == kind)
        group = [states[i] for i in idx]
        policy = bands.policy_for(
            PolicyKind(int(kind)),
            _policy_params(group),
            np.array([s.params.band_floor_wad / WAD for s in group]),
            np.array([s.params.hard_limit_wad / WAD for s in group]),
        )
        result = policy.evaluate(bands.subset_inputs(inputs, idx))
        half[idx], act[idx] = result.half_width, result.act
        urgent[idx], move[idx] = result.urgent, result.spot_move
        inner[idx], trade_to[idx] = result.inner, result.trade_to
    return bands.BandResult(half, act, urgent, move, inner, trade_to)


def _policy_params(group: Sequence[VaultState]) -> npt.NDArray[np.float64]:
    return np.array(
        [
            s.params.policy_param
            if s.params.policy == PolicyKind.TIME_BASED
            else s.params.policy_param / WAD
            for s in group
        ],
        dtype=float,
    )


def _vault_decision(
    state: VaultState, block: BlockRef, mem: VaultMemory | None, risk: _Risk
) -> Decision:
    trigger, reason = _trigger(state, mem, risk)
    # the band and the hard limit trade to the inner target; governance asks for the target
    leave = risk.trade_to if trigger in ("band", "urgent") else 0.0
    trade = -(risk.deviation - leave)  # whole underlying; trade_wei is in its base units
    trade_wei = round(trade * state.underlying_unit)
    expired = sum(1 for leg in state.book if leg.expiry <= block.timestamp)
    if expired:
        reason += f" ({expired} expired option(s) ignored: governance should remove them)"
    at_target = bool(trigger) and abs(trade) < DUST
    if at_target:  # the trigger is satisfied without a trade (a request is then handled)
        reason = f"{reason}, but already at target ({risk.deviation:.2e})"
    act = bool(trigger) and not at_target
    return Decision(
        vault=state.address,
        block_number=block.number,
        block_hash=block.hash,
        action=Action.REBALANCE if act else Action.HOLD,
        reason=reason,
        delta=risk.delta,
        gamma=risk.gamma,
        band=risk.half_width,
        deviation=risk.deviation,
        urgent=risk.urgent,
        trade_wei=trade_wei if act else 0,
        spot_answer=state.oracle.answer,
        trigger=trigger,
        spot_move=risk.spot_move,
        inner=risk.inner,
        trade_to_deviation=leave if act else risk.deviation,
        vol=risk.vol,
    )


def _trigger(state: VaultState, mem: VaultMemory | None, risk: _Risk) -> tuple[str, str]:
    dev, half = abs(risk.deviation), risk.half_width
    if risk.urgent:
        limit = state.params.hard_limit_wad / WAD
        return "urgent", f"urgent: |deviation| {dev:.4f} > hard limit {limit:.4f}"
    if mem is not None and state.request_nonce > mem.request_nonce:
        return "request", f"governance request #{state.request_nonce}"
    if mem is not None and state.params_version > mem.params_version:
        return "params", f"parameters changed (version {state.params_version})"
    if risk.act:
        return "band", (
            f"outside band: |deviation| {dev:.4f} > half-width {half:.4f}, "
            f"trading to inner target {risk.inner:.4f}"
        )
    if dev > half:
        return "", (
            f"outside band (|deviation| {dev:.4f} > half-width {half:.4f}) but the risk left "
            "before expiry is not worth a trade (last-trade test)"
        )
    return "", (
        f"inside band: |deviation| {dev:.4f} <= half-width {half:.4f}"
        f" (trigger move {risk.spot_move:.2f})"
    )


def _decision(state: VaultState, block: BlockRef, action: Action, reason: str) -> Decision:
    return Decision(
        vault=state.address,
        block_number=block.number,
        block_hash=block.hash,
        action=action,
        reason=reason,
        spot_answer=state.oracle.answer,
    )


def remember(
    states: Sequence[VaultState],
    memory: Mapping[str, VaultMemory],
    handled: set[str],
    now: int,
    costs: CostConfig,
) -> dict[str, VaultMemory]:
    """The memory after a block: the newest oracle rounds (and the newest the guards accepted,
    judged exactly as ``decide_block`` did), and the governance counters of the vaults in
    ``handled`` (a rebalance was sent, decided in a dry run, or not needed). A vault seen for
    the first time starts from its current counters: requests made before the keeper knew it
    are not replayed."""
    out = dict(memory)
    for state in states:
        old = memory.get(state.address)
        keep_counters = old is not None and state.address not in handled
        accepted = _oracle_verdict(state, old, now, costs).ok
        last_accepted = state.oracle.answer if accepted else (old.accepted_answer if old else 0)
        rnd = state.oracle
        if not rnd.ok or rnd.answer <= 0:  # never a reference for the jump guard
            rnd = OracleRound(old.round_id, old.answer, 0, rnd.decimals) if old else rnd
        same_round = old is not None and rnd.round_id == old.round_id
        ewma_var, vol_time = _ewma(state, old, accepted and rnd.answer > 0, costs)
        out[state.address] = VaultMemory(
            request_nonce=old.request_nonce if old and keep_counters else state.request_nonce,
            params_version=old.params_version if old and keep_counters else state.params_version,
            round_id=rnd.round_id,
            answer=old.answer if old and same_round else rnd.answer,
            previous_answer=(old.previous_answer if same_round else old.answer) if old else None,
            accepted_answer=last_accepted,
            ewma_var=ewma_var,
            vol_time=vol_time,
        )
    return out


GOVERNANCE_TRIGGERS = ("request", "params")


def reopen(memory: Mapping[str, VaultMemory], failed: Mapping[str, str]) -> dict[str, VaultMemory]:
    """Undo "handled" for the governance triggers whose rebalance failed on chain (``failed``:
    vault -> trigger), so that the next block fires them again."""
    out = dict(memory)
    for vault, trigger in failed.items():
        mem = out.get(vault)
        if mem is None or trigger not in GOVERNANCE_TRIGGERS:
            continue
        if trigger == "request":
            out[vault] = replace(mem, request_nonce=mem.request_nonce - 1)
        else:
            out[vault] = replace(mem, params_version=mem.params_version - 1)
    return out
