"""The world's vaults: their option books and parameters, as data.

Each vault holds WETH = targetDelta - (Black-Scholes delta of its book at the oracle price)
so it starts hedged. targetDelta is chosen so that this amount is positive:

* short calls: option delta is negative, target 0, the vault holds WETH to cover it;
* short puts and the short straddle: option delta is positive or about zero, so the target is
  the total short size (+sum |size|): the vault is a covered seller, long that much underlying
  once hedged, and holds target - delta WETH.
"""

from __future__ import annotations

from dataclasses import dataclass

from world.blackscholes import Leg, book_delta, book_gamma

WAD = 10**18
DAY = 24 * 3600


@dataclass(frozen=True)
class LegSpec:
    """An option relative to the world's start: strike as a ratio of spot, expiry in days."""

    strike_ratio: float
    days: int
    size_weth: float  # negative = the vault wrote it
    is_call: bool


@dataclass(frozen=True)
class VaultSpec:
    name: str
    legs: tuple[LegSpec, ...]
    target_delta_weth: float
    quote_buffer_usd: int = 250_000  # USDC held beyond any put collateral


@dataclass(frozen=True)
class ParamsSpec:
    """Vault parameters and guards shared by the world's vaults (VaultParams and Guards on
    chain, in wad/base units). Caps and budgets are fractions of the vault's value at the start
    (quote held + underlying held at the oracle), per ``window_seconds``."""

    implied_vol: float = 0.8
    risk_free_rate: float = 0.05
    band_floor_weth: float = 0.1
    hard_limit_weth: float = 3.0
    target_band_weth: float = 0.3  # band half-width the risk aversion is sized for ...
    band_proportional_cost: float = 0.001  # ... with this lambda (pool fee plus slippage)
    band_fixed_cost_usd: float = 5.0  # ... and this gas cost K of one rebalance
    policy: int = 0
    policy_param: int = 0
    max_slippage_bps: int = 100
    notional_cap_fraction: float = 0.25  # traded notional per window
    trade_cap_fraction: float = 0.10  # one trade's notional
    # Below (cap - corrective reserve) x slippage = 20% x 1% = 0.2%, so the loss budget, not
    # the cap, is what stops a key that trades at the oracle bound every time. An honest keeper
    # paying 30 bps on a full non-urgent cap per hour uses 0.06%.
    loss_budget_fraction: float = 0.0015
    window_seconds: int = 3600
    corrective_reserve_bps: int = 2000
    # Far above the keeper's band floor, so trading to target with float greeks (and a
    # realized vol that is not the implied one) never trips the on-chain direction check.
    max_overshoot_weth: float = 0.5
    oracle_heartbeat: int = 3600
    ceiling_multiple: int = 4  # immutable ceilings of cap, trade cap and loss budget
    guard_delay: int = 3600


DEFAULT_VAULTS: tuple[VaultSpec, ...] = (
    VaultSpec(
        name="short-calls",
        legs=(
            LegSpec(strike_ratio=1.05, days=14, size_weth=-20.0, is_call=True),
            LegSpec(strike_ratio=1.10, days=45, size_weth=-15.0, is_call=True),
        ),
        target_delta_weth=0.0,
    ),
    VaultSpec(
        name="short-puts",
        legs=(
            LegSpec(strike_ratio=0.95, days=21, size_weth=-25.0, is_call=False),
            LegSpec(strike_ratio=0.90, days=60, size_weth=-15.0, is_call=False),
        ),
        target_delta_weth=40.0,
    ),
    VaultSpec(
        name="short-straddle",
        legs=(
            LegSpec(strike_ratio=1.0, days=30, size_weth=-20.0, is_call=True),
            LegSpec(strike_ratio=1.0, days=30, size_weth=-20.0, is_call=False),
            LegSpec(strike_ratio=1.0, days=7, size_weth=-10.0, is_call=True),
            LegSpec(strike_ratio=1.0, days=7, size_weth=-10.0, is_call=False),
        ),
        target_delta_weth=30.0,
    ),
)


@dataclass(frozen=True)
class VaultPlan:
    """Everything to deploy one vault: on-chain legs and params, and its funding."""

    name: str
    legs: tuple[tuple[int, int, int, bool], ...]  # OptionLeg tuples (strike, expiry, size, isCall)
    params: tuple[int, ...]  # VaultParams tuple, field order of the struct
    guards: tuple[int, ...]  # Guards tuple, field order of the struct
    # OptionsVault.Ceilings: (notionalCap, maxTradeNotional, lossBudget)
    ceilings: tuple[int, int, int]
    weth: int  # hedge, base units
    usdc: int  # collateral, base units
    option_delta: float  # WETH, at the start


def strike_usd(spot: float, ratio: float, step: float = 50.0) -> float:
    """A strike near ``spot * ratio``, rounded to ``step`` USD."""
    return max(step, round(spot * ratio / step) * step)


def plan_vault(
    spec: VaultSpec, spot: float, now: int, oracle_decimals: int, params: ParamsSpec
) -> VaultPlan:
    """Strikes, expiries, hedge and parameters for ``spec`` at price ``spot`` and time ``now``."""
    legs = tuple(
        Leg(
            strike=strike_usd(spot, ls.strike_ratio),
            expiry=now + ls.days * DAY,
            size=ls.size_weth,
            is_call=ls.is_call,
        )
        for ls in spec.legs
    )
    vol, rate = params.implied_vol, params.risk_free_rate
    delta = book_delta(legs, spot, now, vol, rate)
    hedge = spec.target_delta_weth - delta
    if hedge <= 0:
        raise ValueError(f"{spec.name}: target {spec.target_delta_weth} needs a short hedge")
    gamma = abs(book_gamma(legs, spot, now, vol, rate))
    aversion = risk_aversion_for_band(
        params.target_band_weth,
        gamma,
        spot,
        params.band_proportional_cost,
        params.band_fixed_cost_usd,
    )
    put_collateral = sum(-leg.size * leg.strike for leg in legs if not leg.is_call and leg.size < 0)
    onchain_legs = tuple(
        (round(leg.strike * 10**oracle_decimals), leg.expiry, round(leg.size * WAD), leg.is_call)
        for leg in legs
    )
    weth = round(hedge * WAD)
    usdc = round((put_collateral + spec.quote_buffer_usd) * 10**6)
    value_usdc = usdc + weth * round(spot * 10**6) // WAD
    guards = guards_tuple(params, value_usdc)
    return VaultPlan(
        name=spec.name,
        legs=onchain_legs,
        params=params_tuple(params, spec.target_delta_weth, aversion),
        guards=guards,
        ceilings=(
            guards[1] * params.ceiling_multiple,
            guards[4] * params.ceiling_multiple,
            guards[2] * params.ceiling_multiple,
        ),
        weth=weth,
        usdc=usdc,
        option_delta=delta,
    )


def risk_aversion_for_band(
    band: float, gamma: float, spot: float, proportional_cost: float, fixed_cost: float
) -> float:
    """Risk aversion (per USD) for which the keeper's cost-optimal band half-width is ``band``.

    The keeper's band (keeper/core/bands.py, after Whalley & Wilmott 1997, trading back to the
    target) solves (gamma_ra / 6) H^4 - lambda S Gamma^2 H - 2 K Gamma^2 = 0; solved here for
    gamma_ra = 6 Gamma^2 (lambda S H + 2 K) / H^4.
    """
    return 6.0 * gamma * gamma * (proportional_cost * spot * band + 2.0 * fixed_cost) / band**4


def params_tuple(
    params: ParamsSpec, target_delta_weth: float, risk_aversion: float
) -> tuple[int, ...]:
    """VaultParams in struct order (docs/interfaces.md)."""
    return (
        round(params.implied_vol * WAD),
        round(params.risk_free_rate * WAD),
        round(target_delta_weth * WAD),
        round(params.band_floor_weth * WAD),
        round(params.hard_limit_weth * WAD),
        round(risk_aversion * WAD),
        params.policy,
        params.policy_param,
    )


def guards_tuple(params: ParamsSpec, value_usdc: int) -> tuple[int, ...]:
    """Guards in struct order (docs/interfaces.md), sized from the vault's value (USDC units)."""
    return (
        params.max_slippage_bps,
        int(value_usdc * params.notional_cap_fraction),
        int(value_usdc * params.loss_budget_fraction),
        params.window_seconds,
        int(value_usdc * params.trade_cap_fraction),
        params.corrective_reserve_bps,
        round(params.max_overshoot_weth * WAD),
        params.oracle_heartbeat,
    )
