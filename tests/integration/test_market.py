"""The demo's market driver (world/market.py) on the forked world: it really moves the oracle
and both Uniswap pools, up and down, and sets the next block's base fee.

The driver talks plain JSON-RPC to the fork (as the demo does to its own anvil); the fork
mines every transaction at once, so ``move_to`` needs no mining of its own here.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from conftest import ForkedWorld
from web3 import Web3

from world.market import GWEI, GasPath, MarketDriver, answer_of, clamped, gbm_path, price_of

WAD = 10**18
TRADER_INDEX = 3  # anvil account 3: not the deployer, governance or keeper
TOLERANCE_BPS = 1.0


@pytest.fixture
def driver(rpc_url: str, fresh_world: ForkedWorld) -> MarketDriver:
    w3 = Web3(Web3.HTTPProvider(rpc_url))
    market = MarketDriver(
        w3, fresh_world.manifest, fresh_world.manifest.deployer, w3.eth.accounts[TRADER_INDEX]
    )
    market.fund_trader(5_000 * WAD, 20_000_000 * 10**6)
    return market


def slot0_price(pool: Any, weth_is_token0: bool) -> float:
    """USD per WETH from the pool's own slot0, read through Ape (not through the driver)."""
    raw = (int(pool.slot0().sqrtPriceX96) / 2**96) ** 2
    return (raw if weth_is_token0 else 1.0 / raw) * 10**12


@pytest.mark.parametrize("ratio", [1.06, 0.93], ids=["up", "down"])
def test_move_puts_oracle_and_both_pools_on_target(
    driver: MarketDriver, fresh_world: ForkedWorld, chain: Any, ratio: float
) -> None:
    start = driver.oracle_answer()
    before = slot0_price(fresh_world.pool500, driver.weth_is_token0)
    assert abs(before / price_of(start) - 1) < 1e-3  # the world starts with pools at the oracle
    target = round(start * ratio)

    move = driver.move_to(target)

    round_data = fresh_world.feed.latestRoundData()
    assert int(round_data[1]) == target
    # A fresh round, stamped by the block that mined the oracle update (the swaps that follow
    # it may be mined a second later under automine).
    assert int(round_data[3]) == chain.blocks[move.oracle_block].timestamp
    assert move.oracle_block <= move.block_number == chain.blocks.head.number
    for pool in (fresh_world.pool500, fresh_world.pool3000):
        landed = slot0_price(pool, driver.weth_is_token0)
        assert abs(landed / price_of(target) - 1) * 1e4 < TOLERANCE_BPS
    assert {p.fee for p in move.pools} == {500, 3000}
    assert all(abs(p.error_bps) < TOLERANCE_BPS and p.tx_hash for p in move.pools)


def test_trader_pays_the_input_the_pools_need_not_its_whole_balance(
    driver: MarketDriver, fresh_world: ForkedWorld
) -> None:
    trader = driver.trader
    weth_before = int(fresh_world.weth.balanceOf(trader))
    usdc_before = int(fresh_world.usdc.balanceOf(trader))
    start = price_of(driver.oracle_answer())
    driver.move_to(answer_of(start * 0.98))  # price down: the trader sells WETH
    weth_spent = weth_before - int(fresh_world.weth.balanceOf(trader))
    usdc_got = int(fresh_world.usdc.balanceOf(trader)) - usdc_before
    assert 0 < weth_spent < weth_before // 10  # amountIn was the whole balance
    # The WETH was sold near the moving price: between the end price and the start price.
    average = usdc_got / 10**6 / (weth_spent / WAD)
    assert 0.98 * start * 0.99 < average < start


def test_consecutive_moves_and_a_move_back(driver: MarketDriver, fresh_world: ForkedWorld) -> None:
    start = driver.oracle_answer()
    for ratio in (1.01, 1.03, 0.97, 1.0):
        move = driver.move_to(round(start * ratio))
        assert all(abs(p.error_bps) < TOLERANCE_BPS for p in move.pools), move
    assert driver.oracle_answer() == start
    assert driver.pool_prices() == pytest.approx((price_of(start),) * 2, rel=1e-4)


def test_move_to_the_current_price_swaps_nothing(driver: MarketDriver) -> None:
    driver.move_to(driver.oracle_answer())
    move = driver.move_to(driver.oracle_answer())
    assert [p.tx_hash for p in move.pools] == ["", ""]


def test_next_block_base_fee(driver: MarketDriver, chain: Any) -> None:
    try:
        driver.mine(321 * GWEI)
        assert chain.provider.web3.eth.get_block("latest")["baseFeePerGas"] == 321 * GWEI
        driver.mine(7 * GWEI)
        assert chain.provider.web3.eth.get_block("latest")["baseFeePerGas"] == 7 * GWEI
    finally:
        driver.mine(0)  # the fork's other tests send at Ape's low fees


def test_liquidity_range_is_the_world_positions_span(driver: MarketDriver) -> None:
    low, high = driver.liquidity_range()
    # The world deploys each pool's position from price / 1.5 to price * 1.5 (ticks rounded).
    assert low == pytest.approx(3000 / 1.5, rel=0.01)
    assert high == pytest.approx(3000 * 1.5, rel=0.01)


def test_paths() -> None:
    rng = random.Random(7)
    path = gbm_path(3000.0, 200, 0.003, rng)
    assert len(path) == 201 and path[0] == 3000.0
    steps = [b / a - 1 for a, b in itertools.pairwise(path)]
    assert 0.002 < (sum(s * s for s in steps) / len(steps)) ** 0.5 < 0.004
    held, moved = clamped([1.0, 5.0, 10.0], 2.0, 8.0)
    assert held == [2.0, 5.0, 8.0] and moved == 2
    assert answer_of(3012.34) == 301_234_000_000

    gas = GasPath(random.Random(1), base_gwei=20, spike_prob=0.2, spike_blocks=(2, 3))
    fees = [gas.next_fee_wei() for _ in range(300)]
    spikes = [f for f in fees if f >= 300 * GWEI]
    calm = [f for f in fees if f < 300 * GWEI]
    assert spikes and all(17 * GWEI <= f <= 23 * GWEI for f in calm)
    assert gas.next_fee_wei(spikes_allowed=False) < 300 * GWEI
