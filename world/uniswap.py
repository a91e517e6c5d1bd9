"""The real Uniswap V3 contracts, loaded from the npm artifacts, and the pool arithmetic.

The artifacts are the ones published in @uniswap/v3-core 1.0.1 and @uniswap/v3-periphery
1.4.4 (see package.json); their pool init code hash matches the periphery's PoolAddress.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

from ethpm_types import ContractType

NODE_MODULES = Path(__file__).resolve().parent.parent / "node_modules" / "@uniswap"
ARTIFACTS = {
    "UniswapV3Factory": "v3-core/artifacts/contracts/UniswapV3Factory.sol/UniswapV3Factory.json",
    "UniswapV3Pool": "v3-core/artifacts/contracts/UniswapV3Pool.sol/UniswapV3Pool.json",
    "SwapRouter": "v3-periphery/artifacts/contracts/SwapRouter.sol/SwapRouter.json",
    "QuoterV2": "v3-periphery/artifacts/contracts/lens/QuoterV2.sol/QuoterV2.json",
    "NonfungiblePositionManager": (
        "v3-periphery/artifacts/contracts/NonfungiblePositionManager.sol/"
        "NonfungiblePositionManager.json"
    ),
}
# The hash the periphery hard-codes in PoolAddress.POOL_INIT_CODE_HASH.
POOL_INIT_CODE_HASH = "0xe34f199b19b2b4f47f68442619d555527d244f78a3297ea89325f843f87b8b54"
TICK_SPACING = {100: 1, 500: 10, 3000: 60, 10000: 200}
MIN_TICK = -887272
MAX_TICK = 887272
Q96 = 2**96


class ArtifactError(RuntimeError):
    """A Uniswap artifact is missing or unusable (run `make setup`)."""


@cache
def artifact(name: str) -> dict[str, Any]:
    """The Hardhat artifact JSON of one Uniswap contract."""
    path = NODE_MODULES / ARTIFACTS[name]
    if not path.is_file():
        raise ArtifactError(f"missing Uniswap artifact {path}; run `make setup`")
    data: dict[str, Any] = json.loads(path.read_text())
    if data.get("linkReferences"):
        raise ArtifactError(f"{name} needs linked libraries, which the world does not deploy")
    return data


@cache
def contract_type(name: str) -> ContractType:
    """An ethpm ContractType built from the artifact, for Ape's ContractContainer."""
    data = artifact(name)
    return ContractType.model_validate(
        {
            "contractName": data["contractName"],
            "sourceId": data["sourceName"],
            "abi": data["abi"],
            "deploymentBytecode": {"bytecode": data["bytecode"]},
            "runtimeBytecode": {"bytecode": data["deployedBytecode"]},
        }
    )


def sqrt_price_x96(
    answer: int,
    oracle_decimals: int,
    underlying_is_token0: bool,
    underlying_decimals: int = 18,
    quote_decimals: int = 6,
) -> int:
    """sqrt(token1/token0 in base units) * 2**96 at an oracle price (quote per underlying).

    Uniswap V3 whitepaper, section 6.1: price = token1 base units per token0 base unit.
    With the underlying as token0 that is answer * 10**qd / (10**od * 10**ud); else its inverse.
    """
    if answer <= 0:
        raise ValueError("oracle answer must be positive")
    num = answer * 10**quote_decimals
    den = 10 ** (oracle_decimals + underlying_decimals)
    if not underlying_is_token0:
        num, den = den, num
    return math.isqrt(num * Q96 * Q96 // den)


def price_from_sqrt_x96(
    sqrt_x96: int,
    underlying_is_token0: bool,
    underlying_decimals: int = 18,
    quote_decimals: int = 6,
) -> float:
    """The pool price as quote per one whole underlying (the inverse of ``sqrt_price_x96``)."""
    raw = (sqrt_x96 / Q96) ** 2
    if not underlying_is_token0:
        raw = 1.0 / raw
    return float(raw * 10 ** (underlying_decimals - quote_decimals))


def tick_range(current_tick: int, width: int, fee: int) -> tuple[int, int]:
    """Ticks [lower, upper], ``width`` either side of ``current_tick``, on the fee's spacing."""
    spacing = TICK_SPACING[fee]
    lower = math.floor((current_tick - width) / spacing) * spacing
    upper = math.ceil((current_tick + width) / spacing) * spacing
    min_usable = math.ceil(MIN_TICK / spacing) * spacing
    max_usable = math.floor(MAX_TICK / spacing) * spacing
    return max(lower, min_usable), min(upper, max_usable)


def ticks_for_ratio(ratio: float) -> int:
    """How many ticks a price ratio spans: log base 1.0001 (whitepaper, section 6.1)."""
    return round(math.log(ratio) / math.log(1.0001))
