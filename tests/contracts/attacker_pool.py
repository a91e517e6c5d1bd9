"""A compromised keeper key's best tool: a 1% WETH/USDC pool the attacker created and is the
only LP of, moved before every vault trade so the vault gets just above its oracle bound.

Because the attacker is the only LP, moving its own pool costs it nothing (it pays its own
fees to itself); every bps the vault gives up below the oracle is the attacker's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contract_helpers import ORACLE, PRICE, USDC, WAD, World, deadline

from world import uniswap
from world.deploy import token_order, uniswap_at

FEE = 10_000  # 1%, enabled on every Uniswap V3 factory
MAX_UINT256 = 2**256 - 1
# Mid price relative to the oracle before a vault sells / buys: 1% fee leaves the vault at
# 0.9903 of the oracle value, 3 bps above its 100 bps bound (room for price impact).
SELL_RATIO = 1.0003
BUY_RATIO = 0.9997


@dataclass(frozen=True)
class AttackerPool:
    world: World
    attacker: Any
    pool: Any
    weth_is_token0: bool

    def place_for(self, vault_sells: bool) -> None:
        """Move the pool's price to just where a vault trade in that direction clears."""
        ratio = SELL_RATIO if vault_sells else BUY_RATIO
        answer = round(PRICE * ratio * ORACLE)
        target = uniswap.sqrt_price_x96(answer, 8, self.weth_is_token0)
        current = int(self.pool.slot0().sqrtPriceX96)
        if current == target:
            return
        w = self.world
        token0, token1 = (w.weth, w.usdc) if self.weth_is_token0 else (w.usdc, w.weth)
        token_in, token_out = (token1, token0) if target > current else (token0, token1)
        amount = int(token_in.balanceOf(self.attacker))
        params = (token_in, token_out, FEE, self.attacker, deadline(), amount, 0, target)
        w.router.exactInputSingle(params, sender=self.attacker)


def create_attacker_pool(world: World, attacker: Any, deployer: Any) -> AttackerPool:
    """The attacker's own 1% pool with 300 WETH and 900k USDC within +-2% of the oracle."""
    weth_amount, usdc_amount = 300 * WAD, 900_000 * USDC
    world.usdc.mint(attacker, 3 * usdc_amount, sender=deployer)
    world.weth.deposit(value=3 * weth_amount, sender=attacker)
    for token in (world.weth, world.usdc):
        token.approve(world.npm, MAX_UINT256, sender=attacker)
        token.approve(world.router, MAX_UINT256, sender=attacker)
    token0, token1, weth_is_token0 = token_order(world.weth.address, world.usdc.address)
    sqrt_price = uniswap.sqrt_price_x96(PRICE * ORACLE, 8, weth_is_token0)
    world.npm.createAndInitializePoolIfNecessary(token0, token1, FEE, sqrt_price, sender=attacker)
    pool = uniswap_at("UniswapV3Pool", world.factory.getPool(token0, token1, FEE))
    lower, upper = uniswap.tick_range(int(pool.slot0().tick), uniswap.ticks_for_ratio(1.02), FEE)
    amount0, amount1 = (weth_amount, usdc_amount) if weth_is_token0 else (usdc_amount, weth_amount)
    world.npm.mint(
        (token0, token1, FEE, lower, upper, amount0, amount1, 0, 0, attacker, deadline()),
        sender=attacker,
    )
    return AttackerPool(world, attacker, pool, weth_is_token0)
