"""Hedging policies as the backtester runs them.

The live keeper's three policies are built with ``keeper.core.bands.policy_for``, the very
function the keeper uses, and evaluated through their ``evaluate(BandInputs)`` on arrays of
all paths at once. Two references have no live counterpart: never hedging, and rebalancing
to target at every step.
"""

from __future__ import annotations

from dataclasses import dataclass

from keeper.backtest.scenario import PolicyFamily, VaultSettings
from keeper.core.bands import BandPolicy, policy_for
from keeper.core.types import PolicyKind

_LIVE_KIND = {
    PolicyFamily.GAS_ADJUSTED_BAND: PolicyKind.GAS_ADJUSTED_BAND,
    PolicyFamily.FIXED_THRESHOLD: PolicyKind.FIXED_THRESHOLD,
    PolicyFamily.TIME_BASED: PolicyKind.TIME_BASED,
}


@dataclass(frozen=True)
class LivePolicy:
    """One setting of a live policy: ``band`` is the keeper's own policy object."""

    name: str
    family: PolicyFamily
    param: float  # risk aversion, threshold (underlying units) or interval (steps)
    band: BandPolicy
    band_risk_aversion: float  # the BandInputs.risk_aversion this setting runs with


@dataclass(frozen=True)
class ReferencePolicy:
    """``hedges`` False: never trade; True: trade back to target at every step."""

    name: str
    family: PolicyFamily
    hedges: bool


HedgePolicy = LivePolicy | ReferencePolicy


def build_policy(
    name: str,
    family: PolicyFamily,
    param: float | None,
    vault: VaultSettings,
    step_seconds: float,
    risk_aversion: float,
) -> HedgePolicy:
    """The policy for one setting; ``risk_aversion`` is the vault's (the band's default)."""
    if family is PolicyFamily.NO_HEDGE:
        return ReferencePolicy(name, family, hedges=False)
    if family is PolicyFamily.EVERY_STEP:
        return ReferencePolicy(name, family, hedges=True)
    if param is None:
        raise ValueError(f"policy {name!r} ({family}) needs a parameter")
    kind = _LIVE_KIND[family]
    live_param = param * step_seconds if family is PolicyFamily.TIME_BASED else param
    band = policy_for(kind, live_param, vault.band_floor, vault.hard_limit)
    band_risk_aversion = param if family is PolicyFamily.GAS_ADJUSTED_BAND else risk_aversion
    return LivePolicy(name, family, param, band, band_risk_aversion)
