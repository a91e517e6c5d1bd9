"""Collect ABIs from a build (Ape's manifest) and npm artifacts (Uniswap V3, OpenZeppelin)."""

from __future__ import annotations

import json
from pathlib import Path

from keeper.contracts import Abi
from keeper.errors import FatalError

# What the keeper, the scripts and the demo talk to (mocks: the world's feed and tokens).
# The implementations are shipped for their errors (OpenZeppelin's included), the keeper
# encodes calls from the interfaces.
PROJECT_CONTRACTS = (
    "IOptionsVault",
    "ISettlement",
    "OptionsVault",
    "BookSettlement",
    "VaultRegistry",
    "Multicall3",
    "AggregatorV3Interface",
    "MockV3Aggregator",
    "TestERC20",
    "WETH9",
)
NPM_ARTIFACTS = {
    "QuoterV2": "@uniswap/v3-periphery/artifacts/contracts/lens/QuoterV2.sol/QuoterV2.json",
    "SwapRouter": "@uniswap/v3-periphery/artifacts/contracts/SwapRouter.sol/SwapRouter.json",
    "IERC20Metadata": "@openzeppelin/contracts/build/contracts/IERC20Metadata.json",
}


def collect(build: Path, node_modules: Path) -> dict[str, Abi]:
    """Every exported ABI by contract name."""
    try:
        manifest = json.loads(build.read_text())
    except FileNotFoundError as exc:
        raise FatalError(f"no build at {build}: run `ape compile` first") from exc
    types = manifest.get("contractTypes", {})
    missing = [n for n in PROJECT_CONTRACTS if n not in types]
    if missing:
        raise FatalError(f"{build} has no contract type for {', '.join(missing)}")
    abis: dict[str, Abi] = {n: list(types[n]["abi"]) for n in PROJECT_CONTRACTS}
    for name, rel in NPM_ARTIFACTS.items():
        abis[name] = list(json.loads((node_modules / rel).read_text())["abi"])
    return abis
