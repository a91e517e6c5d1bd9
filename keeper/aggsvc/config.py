"""What the local aggregator service serves: chain, tokens, Uniswap contracts, knobs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils.address import is_hex_address, to_checksum_address

from keeper.errors import ConfigError, ManifestError

# Where the bad_price fault sends the output it keeps (a burn address).
SINK = "0x000000000000000000000000000000000000dEaD"
# transaction.to under the bad_router fault: an address no vault allowlists.
BAD_ROUTER = "0x00000000000000000000000000000000bAD0bAd0"


@dataclass(frozen=True)
class ServiceConfig:
    """Addresses come from the deployment manifest; the rest are service knobs.

    ``split_steps_bps``: the shares of an order tried on the first tier of each pair of
    tiers (the rest goes to the second). ``bad_price_share_bps``: under the bad_price fault,
    the share of the order whose output really reaches the taker.
    """

    rpc_url: str
    chain_id: int
    weth: str
    usdc: str
    quoter: str
    swap_router: str
    multicall: str | None = None  # Multicall3: every quote of an order in one eth_call
    api_key: str | None = None
    fee_tiers: tuple[int, ...] = (500, 3000)
    split_steps_bps: tuple[int, ...] = (0, 2500, 5000, 7500, 10000)
    deadline_seconds: int = 600
    stall_seconds: float = 120.0
    bad_price_share_bps: int = 5000
    default_slippage_bps: int = 100
    rpc_timeout_seconds: float = 10.0

    def __repr__(self) -> str:  # the API key stays out of logs and tracebacks
        return (
            f"ServiceConfig(rpc_url={self.rpc_url!r}, chain_id={self.chain_id}, "
            f"api_key={'***' if self.api_key else None})"
        )

    @property
    def symbols(self) -> dict[str, str]:
        return {self.weth.lower(): "WETH", self.usdc.lower(): "USDC"}


def config_from_manifest(
    manifest: str | Path, rpc_url: str, api_key: str | None = None, **knobs: Any
) -> ServiceConfig:
    """A ``ServiceConfig`` with the addresses of a deployment manifest (docs/interfaces.md)."""
    path = Path(manifest)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"manifest not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path} is not valid JSON: {exc}") from None
    try:
        contracts = data["contracts"]
        addresses = {
            k: _address(contracts[k]["address"], k)
            for k in ("WETH", "USDC", "QuoterV2", "SwapRouter")
        }
        chain_id = int(data["chain_id"])
        listed = contracts.get("Multicall3")
        multicall = None if listed is None else _address(listed["address"], "Multicall3")
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"{path}: missing or bad entry {exc}") from None
    return ServiceConfig(
        rpc_url=rpc_url,
        chain_id=chain_id,
        weth=addresses["WETH"],
        usdc=addresses["USDC"],
        quoter=addresses["QuoterV2"],
        swap_router=addresses["SwapRouter"],
        multicall=multicall,
        api_key=api_key,
        **knobs,
    )


def _address(value: Any, name: str) -> str:
    if not isinstance(value, str) or not is_hex_address(value):
        raise ManifestError(f"{name} address is not a hex address: {value!r}")
    return to_checksum_address(value)
