"""Ape handles on the world's contracts, for tests: the manifest's addresses made callable.

Needs Ape (a connected provider and the compiled project), unlike ``world.manifest``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from world.deploy import uniswap_at
from world.manifest import Manifest

ORACLE_DECIMALS = 8  # the world's MockV3Aggregator


@dataclass(frozen=True)
class WorldHandles:
    """One Ape contract instance per contract of a deployed world (``vaults`` by name)."""

    manifest: Manifest
    manifest_file: Path
    weth: Any
    usdc: Any
    feed: Any
    factory: Any
    router: Any
    quoter: Any
    npm: Any
    pool500: Any
    pool3000: Any
    registry: Any
    settlement: Any
    multicall: Any
    vaults: dict[str, Any]

    def set_price(self, usd: float, sender: Any) -> int:
        """A fresh oracle round at ``usd`` (``ORACLE_DECIMALS`` decimals); returns the answer."""
        answer: int = round(usd * 10**ORACLE_DECIMALS)
        self.feed.setAnswer(answer, sender=sender)
        return answer


def attach_world(project: Any, manifest: Manifest, manifest_file: Path) -> WorldHandles:
    """Handles on the contracts ``manifest`` lists; ``project`` is Ape's compiled project."""
    c = manifest.contracts
    return WorldHandles(
        manifest=manifest,
        manifest_file=manifest_file,
        weth=project.WETH9.at(c["WETH"].address),
        usdc=project.TestERC20.at(c["USDC"].address),
        feed=project.MockV3Aggregator.at(c["PriceFeed"].address),
        factory=uniswap_at("UniswapV3Factory", c["UniswapV3Factory"].address),
        router=uniswap_at("SwapRouter", c["SwapRouter"].address),
        quoter=uniswap_at("QuoterV2", c["QuoterV2"].address),
        npm=uniswap_at("NonfungiblePositionManager", c["NonfungiblePositionManager"].address),
        pool500=uniswap_at("UniswapV3Pool", c["PoolFee500"].address),
        pool3000=uniswap_at("UniswapV3Pool", c["PoolFee3000"].address),
        registry=project.VaultRegistry.at(c["VaultRegistry"].address),
        settlement=project.BookSettlement.at(c["BookSettlement"].address),
        multicall=project.Multicall3.at(c["Multicall3"].address),
        vaults={v.name: project.OptionsVault.at(v.address) for v in manifest.vaults},
    )
