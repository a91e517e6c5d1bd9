"""What a rebalance costs, through the live keeper's own cost functions
(``keeper.core.bands.gas_cost_quote`` and ``proportional_cost``), so that the costs the band
expects and the costs the backtest charges come from the same formulas.

* Gas: ``gas_units x (base fee + tip) x ETH price`` with ETH price = the path's price (the
  underlying is ETH). A batch of ``n`` vaults costs ``gas_per_rebalance + (n - 1) x
  gas_per_extra_vault`` units, split evenly, so each vault pays ``1/n`` of it.
* DEX fee: ``dex_fee_bps`` of the traded value.
* Slippage: linear price impact, ``slippage_bps_per_unit x |size|`` bps of the traded value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from keeper.backtest.scenario import CostSettings
from keeper.core.bands import gas_cost_quote, proportional_cost

FloatArray = npt.NDArray[np.float64]
GWEI = 1e9


@dataclass(frozen=True)
class TradeCosts:
    """Quote-unit costs of one trade per path."""

    fees: FloatArray
    slippage: FloatArray


@dataclass(frozen=True)
class CostModel:
    settings: CostSettings

    @property
    def gas_units_per_vault(self) -> float:
        s = self.settings
        batch = s.gas_per_rebalance + (s.batch_vaults - 1) * s.gas_per_extra_vault
        return batch / s.batch_vaults

    def gas_quote(self, base_fee_gwei: npt.ArrayLike, eth_price: npt.ArrayLike) -> FloatArray:
        """K, one rebalance's gas in quote units for this vault."""
        cost = gas_cost_quote(
            self.gas_units_per_vault,
            np.asarray(base_fee_gwei) * GWEI,
            self.settings.priority_fee_gwei * GWEI,
            eth_price,
        )
        return np.asarray(cost, dtype=np.float64)

    @property
    def band_lambda(self) -> float:
        """The lambda given to the band: the fee only. Under trade-to-target a linear impact
        adds a band-independent cost (``keeper.core.bands`` docstring), so it is left out."""
        return float(proportional_cost(self.settings.dex_fee_bps, 0.0, 0.0))

    def trade(self, size: FloatArray, spot: FloatArray) -> TradeCosts:
        """Fees and slippage of trading ``size`` underlying units (sign ignored) at ``spot``."""
        value = np.abs(size) * spot
        fee_fraction = proportional_cost(self.settings.dex_fee_bps, 0.0, size)
        impact_fraction = proportional_cost(0.0, self.settings.slippage_bps_per_unit, size)
        return TradeCosts(
            fees=np.asarray(fee_fraction) * value,
            slippage=np.asarray(impact_fraction) * value,
        )
