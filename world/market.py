"""A market for the local world, driven with plain web3 (no Ape): oracle, pools, base fee.

``MarketDriver.move_to`` publishes a new oracle round and swaps both Uniswap V3 pools to the
same price: ``SwapRouter.exactInputSingle`` from a funded trader with a large ``amountIn``
and ``sqrtPriceLimitX96`` = the target's sqrt price, so the pool stops exactly on target and
takes only the input it needs (Uniswap V3 whitepaper, section 6.2: a swap ends when the
input runs out or the price reaches its limit). On a node that does not mine by itself
(``anvil --no-mining``) the driver mines, after setting the next block's base fee.

Also the paths a demo moves along: a GBM random walk, a rescaled replay of a real series,
and a gas path (a base level with occasional spikes).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address
from web3 import Web3

from world import uniswap
from world.manifest import Manifest

GWEI = 10**9
MAX_UINT256 = 2**256 - 1
ORACLE_DECIMALS = 8
ORACLE_UNIT = 100_000_000  # 10**ORACLE_DECIMALS
SWAP_GAS = 1_500_000
CALL_GAS = 200_000
# The driver's transactions bid far above anything the keeper pays, so that in a shared block
# they come first (anvil orders by tip) and are never held back by a base-fee spike.
DRIVER_MAX_FEE = 20_000 * GWEI
DRIVER_TIP = 200 * GWEI

_FEED_ABI: list[dict[str, Any]] = [
    {
        "name": "latestRoundData",
        "type": "function",
        "stateMutability": "view",
        "inputs": [],
        "outputs": [
            {"name": n, "type": t}
            for n, t in (
                ("roundId", "uint80"),
                ("answer", "int256"),
                ("startedAt", "uint256"),
                ("updatedAt", "uint256"),
                ("answeredInRound", "uint80"),
            )
        ],
    },
    {
        "name": "setAnswer",
        "type": "function",
        "stateMutability": "nonpayable",
        "inputs": [{"name": "answer", "type": "int256"}],
        "outputs": [],
    },
]
_TOKEN_ABI: list[dict[str, Any]] = [
    {
        "name": "balanceOf",
        "type": "function",
        "stateMutability": "view",
        "inputs": [{"name": "who", "type": "address"}],
        "outputs": [{"name": "", "type": "uint256"}],
    },
    {
        "name": "approve",
        "type": "function",
        "stateMutability": "nonpayable",
        "inputs": [{"name": "spender", "type": "address"}, {"name": "amount", "type": "uint256"}],
        "outputs": [{"name": "", "type": "bool"}],
    },
    {
        "name": "mint",
        "type": "function",
        "stateMutability": "nonpayable",
        "inputs": [{"name": "to", "type": "address"}, {"name": "amount", "type": "uint256"}],
        "outputs": [],
    },
    {
        "name": "deposit",
        "type": "function",
        "stateMutability": "payable",
        "inputs": [],
        "outputs": [],
    },
]


class MarketError(RuntimeError):
    """A market transaction failed or the pools cannot be moved where asked."""


def answer_of(price: float) -> int:
    """The oracle answer (8 decimals) of a USD price."""
    return round(price * ORACLE_UNIT)


def price_of(answer: int) -> float:
    return answer / ORACLE_UNIT


@dataclass(frozen=True)
class PoolMove:
    """Where one pool was asked to go and where it landed."""

    fee: int
    target: float  # USD per WETH
    landed: float
    tx_hash: str  # "" when the pool was already on target

    @property
    def error_bps(self) -> float:
        return (self.landed / self.target - 1.0) * 1e4


@dataclass(frozen=True)
class MarketMove:
    answer: int
    block_number: int  # the last block of the move
    oracle_block: int  # the block whose timestamp is the new round's updatedAt
    pools: tuple[PoolMove, ...]


@dataclass(frozen=True)
class _Pool:
    address: str
    fee: int
    contract: Any


@dataclass(frozen=True)
class _Pending:
    """Transactions sent for one move, before they are mined."""

    answer: int
    oracle_tx: str
    swaps: tuple[tuple[_Pool, str], ...]


class MarketDriver:
    """Moves the world's oracle and pools; ``owner`` owns the feed and USDC, ``trader`` swaps.

    ``manual_mining``: the node mines only on ``evm_mine`` (``anvil --no-mining``); the driver
    mines one block per move (and ``mine`` for the blocks in between).
    """

    def __init__(
        self, w3: Web3, manifest: Manifest, owner: str, trader: str, manual_mining: bool = False
    ) -> None:
        self.w3 = w3
        self.owner = to_checksum_address(owner)
        self.trader = to_checksum_address(trader)
        self.manual_mining = manual_mining
        c = manifest.contracts
        self.weth = w3.eth.contract(address=_addr(c["WETH"].address), abi=_TOKEN_ABI)
        self.usdc = w3.eth.contract(address=_addr(c["USDC"].address), abi=_TOKEN_ABI)
        self.feed = w3.eth.contract(address=_addr(c["PriceFeed"].address), abi=_FEED_ABI)
        self.router = w3.eth.contract(
            address=_addr(c["SwapRouter"].address), abi=uniswap.artifact("SwapRouter")["abi"]
        )
        self.npm = w3.eth.contract(
            address=_addr(c["NonfungiblePositionManager"].address),
            abi=uniswap.artifact("NonfungiblePositionManager")["abi"],
        )
        pool_abi = uniswap.artifact("UniswapV3Pool")["abi"]
        pools = []
        for name in (k for k in c if k.startswith("PoolFee")):
            contract = w3.eth.contract(address=_addr(c[name].address), abi=pool_abi)
            pools.append(_Pool(contract.address, int(contract.functions.fee().call()), contract))
        if not pools:
            raise MarketError("the manifest names no PoolFee* pools")
        self.pools = tuple(sorted(pools, key=lambda p: p.fee))
        self.weth_is_token0 = int(self.weth.address, 16) < int(self.usdc.address, 16)

    # --- reading ---------------------------------------------------------------------

    def oracle_answer(self) -> int:
        return int(self.feed.functions.latestRoundData().call()[1])

    def pool_prices(self) -> tuple[float, ...]:
        """Each pool's price in USD per WETH, in ``self.pools`` order."""
        return tuple(self._pool_price(p) for p in self.pools)

    def _pool_price(self, pool: _Pool) -> float:
        sqrt_x96 = int(pool.contract.functions.slot0().call()[0])
        return uniswap.price_from_sqrt_x96(sqrt_x96, self.weth_is_token0)

    def liquidity_range(self) -> tuple[float, float]:
        """The USD prices between which every pool has liquidity (the position manager's
        positions; the intersection over pools of each pool's widest span)."""
        spans: dict[int, tuple[int, int]] = {}
        for token_id in range(1, int(self.npm.functions.totalSupply().call()) + 1):
            position = self.npm.functions.positions(token_id).call()
            fee, lower, upper, liquidity = position[4], position[5], position[6], position[7]
            if liquidity == 0:
                continue
            low, high = spans.get(fee, (lower, upper))
            spans[fee] = (min(low, lower), max(high, upper))
        missing = [p.fee for p in self.pools if p.fee not in spans]
        if missing:
            raise MarketError(f"no liquidity position found for pool fee(s) {missing}")
        lower = max(span[0] for span in spans.values())
        upper = min(span[1] for span in spans.values())
        prices = sorted((self._tick_price(lower), self._tick_price(upper)))
        return prices[0], prices[1]

    def _tick_price(self, tick: int) -> float:
        """USD per WETH at a tick: 1.0001**tick is token1 per token0 in base units."""
        raw = float(1.0001**tick)
        if not self.weth_is_token0:
            raw = 1.0 / raw
        return raw * 1e12  # 10 ** (WETH decimals - USDC decimals)

    # --- set-up ----------------------------------------------------------------------

    def fund_trader(self, weth: int, usdc: int) -> None:
        """Give the trader ``weth`` WETH (wrapped ETH) and ``usdc`` USDC (base units), and
        approve the router for both; the trader's ETH is topped up to pay for it all."""
        self.rpc("anvil_setBalance", [self.trader, hex(weth + 1_000_000 * 10**18)])
        hashes = [
            self._send(self.weth.functions.deposit(), self.trader, value=weth),
            self._send(self.usdc.functions.mint(self.trader, usdc), self.owner),
            self._send(self.weth.functions.approve(self.router.address, MAX_UINT256), self.trader),
            self._send(self.usdc.functions.approve(self.router.address, MAX_UINT256), self.trader),
        ]
        self._mine_if_manual()
        for tx in hashes:
            self._require_success(tx, "funding the trader")

    def refresh_oracle(self) -> int:
        """A new round at the current answer (the saved world may be past its heartbeat)."""
        answer = self.oracle_answer()
        tx = self._send(self.feed.functions.setAnswer(answer), self.owner)
        self._mine_if_manual()
        self._require_success(tx, "refreshing the oracle")
        return answer

    # --- moving ----------------------------------------------------------------------

    def move_to(self, answer: int, base_fee_wei: int | None = None) -> MarketMove:
        """Oracle and every pool to ``answer`` (8 decimals) in one block when mining manually.

        ``base_fee_wei``: the base fee of the block mined for the move (manual mining)."""
        pending = self.submit_move(answer)
        if self.manual_mining:
            self.mine(base_fee_wei)
        elif base_fee_wei is not None:
            self.set_next_base_fee(base_fee_wei)
        return self.confirm(pending)

    def submit_move(self, answer: int) -> _Pending:
        if answer <= 0:
            raise MarketError("the oracle answer must be positive")
        oracle_tx = self._send(self.feed.functions.setAnswer(answer), self.owner)
        target_sqrt = uniswap.sqrt_price_x96(answer, ORACLE_DECIMALS, self.weth_is_token0)
        swaps = []
        for pool in self.pools:
            tx = self._submit_swap(pool, target_sqrt)
            swaps.append((pool, tx))
        return _Pending(answer, oracle_tx, tuple(swaps))

    def _submit_swap(self, pool: _Pool, target_sqrt: int) -> str:
        """A swap that stops at ``target_sqrt``; "" when the pool is already there."""
        current = int(pool.contract.functions.slot0().call()[0])
        if current == target_sqrt:
            return ""
        # Raising sqrt(token1/token0) means paying token1 in (zeroForOne = false).
        token0, token1 = (self.weth, self.usdc) if self.weth_is_token0 else (self.usdc, self.weth)
        token_in, token_out = (token1, token0) if target_sqrt > current else (token0, token1)
        amount_in = int(token_in.functions.balanceOf(self.trader).call())
        if amount_in == 0:
            raise MarketError("the trader has no input token left; fund it first")
        deadline = int(self.w3.eth.get_block("latest")["timestamp"]) + 3600
        params = (
            token_in.address,
            token_out.address,
            pool.fee,
            self.trader,
            deadline,
            amount_in,
            0,
            target_sqrt,
        )
        return self._send(self.router.functions.exactInputSingle(params), self.trader, SWAP_GAS)

    def confirm(self, pending: _Pending) -> MarketMove:
        """Wait for the move's transactions; raise if any failed; report where pools landed."""
        oracle_block = self._require_success(pending.oracle_tx, "setting the oracle")
        block = oracle_block
        target = price_of(pending.answer)
        moves = []
        for pool, tx in pending.swaps:
            if tx:
                block = max(block, self._require_success(tx, f"swapping the {pool.fee} pool"))
            moves.append(PoolMove(pool.fee, target, self._pool_price(pool), tx))
        return MarketMove(pending.answer, block, oracle_block, tuple(moves))

    # --- blocks and base fee -------------------------------------------------------------

    def set_next_base_fee(self, wei: int) -> None:
        self.rpc("anvil_setNextBlockBaseFeePerGas", [hex(wei)])

    def mine(self, base_fee_wei: int | None = None) -> None:
        """Mine one block (with ``base_fee_wei`` as its base fee, when given)."""
        if base_fee_wei is not None:
            self.set_next_base_fee(base_fee_wei)
        self.rpc("evm_mine", [])

    def rpc(self, method: str, params: list[Any]) -> Any:
        reply = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        if "error" in reply:
            raise MarketError(f"{method}: {reply['error']}")
        return reply.get("result")

    def _mine_if_manual(self) -> None:
        if self.manual_mining:
            self.mine()

    # --- transactions ----------------------------------------------------------------

    def _send(self, call: Any, sender: str, gas: int = CALL_GAS, value: int = 0) -> str:
        """Send from an unlocked node account; the nonce counts the sender's pending ones."""
        tx = {
            "from": sender,
            "gas": gas,
            "value": value,
            "maxFeePerGas": DRIVER_MAX_FEE,
            "maxPriorityFeePerGas": DRIVER_TIP,
            "nonce": self.w3.eth.get_transaction_count(sender, "pending"),  # type: ignore[arg-type]
        }
        return "0x" + bytes(call.transact(tx)).hex()

    def _require_success(self, tx_hash: str, what: str) -> int:
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)  # type: ignore[arg-type]
        if receipt["status"] != 1:
            raise MarketError(f"{what} reverted (tx {tx_hash})")
        return int(receipt["blockNumber"])


def _addr(address: str) -> Any:
    return to_checksum_address(address)


# --- paths -------------------------------------------------------------------------------


def gbm_path(start: float, steps: int, vol: float, rng: random.Random) -> list[float]:
    """``steps + 1`` prices of a driftless geometric Brownian motion, ``vol`` per step:
    S_{k+1} = S_k exp(sigma Z - sigma^2 / 2), Z ~ N(0, 1) (a martingale; Hull, ch. 15)."""
    prices = [start]
    for _ in range(steps):
        prices.append(prices[-1] * math.exp(vol * rng.gauss(0.0, 1.0) - vol * vol / 2.0))
    return prices


def rescaled(series: Sequence[float], start: float) -> list[float]:
    """``series`` scaled so that it starts at ``start`` (same returns, new level)."""
    if not series or series[0] <= 0:
        raise ValueError("a price series must start with a positive price")
    scale = start / series[0]
    return [p * scale for p in series]


def clamped(prices: Sequence[float], low: float, high: float) -> tuple[list[float], int]:
    """Prices held within [low, high], and how many had to be moved."""
    out = [min(max(p, low), high) for p in prices]
    return out, sum(1 for a, b in zip(prices, out, strict=True) if a != b)


@dataclass
class GasPath:
    """Base fee per block: ``base_gwei`` with +-``jitter`` noise, and now and then (probability
    ``spike_prob`` per block) a spike to ``spike_gwei`` for ``spike_blocks`` blocks."""

    rng: random.Random
    base_gwei: float = 20.0
    jitter: float = 0.15
    spike_prob: float = 0.03
    spike_gwei: tuple[float, float] = (300.0, 450.0)
    spike_blocks: tuple[int, int] = (3, 6)
    spike_left: int = 0  # blocks of the current spike still to come
    spike_level: float = 0.0
    in_spike: bool = False  # the last fee handed out was a spike

    def next_fee_wei(self, spikes_allowed: bool = True) -> int:
        """The next block's base fee; ``spikes_allowed=False`` ends any spike and starts none."""
        if not spikes_allowed:
            self.spike_left = 0
        elif self.spike_left == 0 and self.rng.random() < self.spike_prob:
            self.spike_left = self.rng.randint(*self.spike_blocks)
            self.spike_level = self.rng.uniform(*self.spike_gwei)
        self.in_spike = self.spike_left > 0
        if self.in_spike:
            self.spike_left -= 1
            return int(self.spike_level * GWEI)
        noise = 1.0 + self.jitter * (2.0 * self.rng.random() - 1.0)
        return int(self.base_gwei * noise * GWEI)
