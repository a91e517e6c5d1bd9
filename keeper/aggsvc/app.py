"""The aiohttp application: 0x Swap API v2 (AllowanceHolder) endpoints over Uniswap V3.

``GET /swap/allowance-holder/quote`` answers a firm quote (with ``transaction``),
``GET /swap/allowance-holder/price`` the same price without calldata. Both take ``chainId``,
``sellToken``, ``buyToken``, ``sellAmount``, ``taker`` (required for quotes) and
``slippageBps`` (default 100), and require the header ``0x-version: v2`` and, when the
service has a key, ``0x-api-key``. ``transaction.to`` is the SwapRouter; the taker (the
vault) approves it and calls it with ``transaction.data``; the output goes to the taker.
``minBuyAmount = buyAmount * (10000 - slippageBps) / 10000``.

Test hooks (local use only): ``POST /_control {"mode": "ok"|"fail"|"stall"|"bad_price"|
"bad_router"|"skim", "latency_seconds": 0, "stall_seconds": ..}`` sets the fault mode
(``skim``: the quote of the whole order with the calldata of ``bad_price``, a promise it does
not keep), releases
requests still stalled (they answer 503) and starts fresh counters for ``GET /_stats``
(requests, in flight, most in flight at once, answers by status), which count only the
requests that arrived after it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from aiohttp import web
from eth_abi.abi import decode
from eth_utils.address import is_hex_address, to_checksum_address

from keeper.aggsvc.config import BAD_ROUTER, SINK, ServiceConfig
from keeper.aggsvc.plans import best_plan, plan_calldata, short_changing_plan
from keeper.chain.eth import RpcChain
from keeper.chain.rpc import RpcClient, RpcConfig
from keeper.chain.uniswap import (
    ROUTER_OVERHEAD_GAS,
    UniswapDirect,
    min_out_after_slippage,
)
from keeper.core import abi
from keeper.core.swap import BPS
from keeper.errors import KeeperError, QuoteRefused

log = logging.getLogger("keeper.aggsvc")

Mode = Literal["ok", "fail", "stall", "bad_price", "bad_router", "skim"]
MODES: tuple[str, ...] = get_args(Mode)
SOURCE_NAME = "Uniswap_V3"
BALANCE_OF = abi.function("IERC20Metadata", "balanceOf")
ALLOWANCE = abi.function("IERC20Metadata", "allowance")


@dataclass
class Faults:
    mode: Mode = "ok"
    latency_seconds: float = 0.0
    stall_seconds: float | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Stats:
    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


@dataclass
class StatsBox:
    """The counters of the current control epoch (a request keeps the one it started in)."""

    current: Stats = field(default_factory=Stats)


CONFIG = web.AppKey("config", ServiceConfig)
FAULTS = web.AppKey("faults", Faults)
STATS = web.AppKey("stats", StatsBox)
W3 = web.AppKey("w3", RpcChain)
DIRECT = web.AppKey("direct", UniswapDirect)


@dataclass(frozen=True)
class Order:
    sell: str
    buy: str
    amount: int
    taker: str | None
    slippage_bps: int


@dataclass(frozen=True)
class Execution:
    """What the taker gets and the call that delivers it."""

    buy_amount: int
    min_buy_amount: int
    to: str
    data: bytes
    gas: int
    fills: tuple[tuple[int, int], ...]  # (fee, share in bps) per part


def create_app(config: ServiceConfig) -> web.Application:
    """The service; the node connection opens on startup and closes on cleanup."""
    app = web.Application(middlewares=[_count_requests])
    app[CONFIG] = config
    app[FAULTS] = Faults()
    app[STATS] = StatsBox()
    app.router.add_get("/swap/allowance-holder/quote", _handle_quote)
    app.router.add_get("/swap/allowance-holder/price", _handle_price)
    app.router.add_post("/_control", _handle_control)
    app.router.add_get("/_stats", _handle_stats)
    app.on_startup.append(_connect)
    app.on_cleanup.append(_disconnect)
    return app


async def _connect(app: web.Application) -> None:
    cfg = app[CONFIG]
    # the keeper's own JSON-RPC client: one keep-alive session, no per-request middleware
    rpc = RpcClient(RpcConfig(urls=(cfg.rpc_url,), timeout_seconds=cfg.rpc_timeout_seconds))
    w3 = RpcChain(rpc)
    app[W3] = w3
    app[DIRECT] = UniswapDirect(
        w3, cfg.quoter, cfg.swap_router, cfg.fee_tiers, multicall=cfg.multicall
    )


async def _disconnect(app: web.Application) -> None:
    await app[W3].rpc.close()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/swap/"):
        return await handler(request)
    stats = request.app[STATS].current
    stats.requests += 1
    stats.in_flight += 1
    stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
    try:
        response = await handler(request)
        key = str(response.status)
        stats.by_status[key] = stats.by_status.get(key, 0) + 1
        return response
    finally:
        stats.in_flight -= 1


# --- 0x endpoints ---------------------------------------------------------------------------


async def _handle_quote(request: web.Request) -> web.StreamResponse:
    return await _serve(request, firm=True)


async def _handle_price(request: web.Request) -> web.StreamResponse:
    return await _serve(request, firm=False)


async def _serve(request: web.Request, firm: bool) -> web.StreamResponse:
    cfg, faults = request.app[CONFIG], request.app[FAULTS]
    zid = "0x" + os.urandom(12).hex()
    refusal = _check_headers(request, cfg, zid)
    if refusal is not None:
        return refusal
    order = parse_order(request.query, cfg, taker_required=firm)
    if isinstance(order, list):
        return _error(400, "INPUT_INVALID", "Validation Failed", zid, details=order)
    if faults.latency_seconds > 0:
        await asyncio.sleep(faults.latency_seconds)
    if faults.mode == "fail":
        return _error(500, "INTERNAL_SERVER_ERROR", "An internal server error occurred", zid)
    if faults.mode == "stall" and await _stalled(faults, cfg.stall_seconds):
        return _error(503, "SERVICE_UNAVAILABLE", "Stalled request released", zid)
    cfg, w3 = request.app[CONFIG], request.app[W3]
    spender = BAD_ROUTER if faults.mode == "bad_router" else cfg.swap_router
    try:
        # the order's quotes, the gas price and the taker's balance and allowance at once
        (execution, block), gas_price, issues = await asyncio.gather(
            _execution(request.app, order, faults.mode),
            w3.eth.gas_price,
            _issues(w3, order, spender),
        )
        body = _body(cfg, order, execution, block, zid, firm, int(gas_price), issues)
    except QuoteRefused as exc:
        log.info("no liquidity: %s", exc)
        return web.json_response({"liquidityAvailable": False, "zid": zid})
    except KeeperError as exc:
        log.warning("quote failed: %s", exc)
        return _error(500, "INTERNAL_SERVER_ERROR", "An internal server error occurred", zid)
    return web.json_response(body)


async def _stalled(faults: Faults, default_seconds: float) -> bool:
    """Sleep like a hung backend; True if a mode change released the request first."""
    release = faults.release
    try:
        await asyncio.wait_for(release.wait(), faults.stall_seconds or default_seconds)
    except TimeoutError:
        return False
    return True


def _check_headers(request: web.Request, cfg: ServiceConfig, zid: str) -> web.Response | None:
    if cfg.api_key is not None:
        given = request.headers.get("0x-api-key", "")
        if not hmac.compare_digest(given.encode(), cfg.api_key.encode()):
            return _error(401, "UNAUTHORIZED", "Invalid or missing 0x-api-key header", zid)
    if request.headers.get("0x-version") != "v2":
        return _error(
            400,
            "INPUT_INVALID",
            "Header 0x-version must be v2",
            zid,
            details=[{"field": "0x-version", "reason": "must be v2"}],
        )
    return None


def _error(
    status: int, name: str, message: str, zid: str, details: list[dict[str, str]] | None = None
) -> web.Response:
    data: dict[str, Any] = {"zid": zid}
    if details is not None:
        data["details"] = details
    return web.json_response({"name": name, "message": message, "data": data}, status=status)


def parse_order(
    query: Mapping[str, str], cfg: ServiceConfig, taker_required: bool
) -> Order | list[dict[str, str]]:
    """The order in a query string, or the 0x-style list of what is wrong with it."""
    problems: list[dict[str, str]] = []

    def bad(name: str, reason: str) -> None:
        problems.append({"field": name, "reason": reason})

    if query.get("chainId") != str(cfg.chain_id):
        bad("chainId", f"must be {cfg.chain_id}")
    tokens = {}
    for name in ("sellToken", "buyToken"):
        value = query.get(name, "")
        if not is_hex_address(value) or value.lower() not in cfg.symbols:
            bad(name, "unsupported token")
        else:
            tokens[name] = to_checksum_address(value)
    if len(tokens) == 2 and tokens["sellToken"] == tokens["buyToken"]:
        bad("buyToken", "must differ from sellToken")
    amount = _positive_int(query.get("sellAmount"))
    if amount is None:
        bad("sellAmount", "must be a positive integer")
    taker = query.get("taker")
    if taker is not None and not is_hex_address(taker):
        bad("taker", "must be an address")
    elif taker is None and taker_required:
        bad("taker", "required")
    slippage = _positive_int(query.get("slippageBps", str(cfg.default_slippage_bps)), zero_ok=True)
    if slippage is None or slippage > BPS:
        bad("slippageBps", f"must be an integer in [0, {BPS}]")
    if problems or amount is None or slippage is None:
        return problems
    return Order(
        tokens["sellToken"],
        tokens["buyToken"],
        amount,
        to_checksum_address(taker) if taker else None,
        slippage,
    )


def _positive_int(text: str | None, zero_ok: bool = False) -> int | None:
    if text is None or not text.isdigit() or len(text) > 78:
        return None
    value = int(text)
    return value if value > 0 or (zero_ok and value == 0) else None


async def _execution(app: web.Application, order: Order, mode: Mode) -> tuple[Execution, int]:
    """The execution the service offers for ``order`` under the fault ``mode``, and its block."""
    cfg, direct, w3 = app[CONFIG], app[DIRECT], app[W3]
    taker = order.taker or SINK
    if mode not in ("bad_price", "skim"):  # the block and the quotes at once
        block, plan = await asyncio.gather(
            w3.eth.get_block("latest"),
            best_plan(direct, order.sell, order.buy, order.amount, cfg.split_steps_bps),
        )
        deadline = int(block["timestamp"]) + cfg.deadline_seconds
        data = plan_calldata(plan, order.sell, order.buy, taker, deadline, order.slippage_bps)
        to = BAD_ROUTER if mode == "bad_router" else cfg.swap_router
        fills = tuple((f.fee, plan.share_bps(f)) for f in plan.fills)
        min_buy = min_out_after_slippage(plan.amount_out, order.slippage_bps)
        execution = Execution(plan.amount_out, min_buy, to, data, plan.gas, fills)
        return execution, int(block["number"])
    # the bad_price and skim faults
    block = await w3.eth.get_block("latest")
    deadline = int(block["timestamp"]) + cfg.deadline_seconds
    kept, data = await short_changing_plan(
        direct,
        order.sell,
        order.buy,
        order.amount,
        cfg.bad_price_share_bps,
        taker,
        SINK,
        deadline,
    )
    gas = 2 * kept.gas_estimate + ROUTER_OVERHEAD_GAS
    out = kept.amount_out
    if mode == "skim":  # what the whole order would get, a little better than direct
        whole = await best_plan(direct, order.sell, order.buy, order.amount, (BPS,))
        out = whole.amount_out * (BPS + 20) // BPS
    return Execution(
        out,
        min_out_after_slippage(out, order.slippage_bps),
        cfg.swap_router,
        data,
        gas,
        ((kept.fee, BPS),),
    ), int(block["number"])


def _body(
    cfg: ServiceConfig,
    order: Order,
    ex: Execution,
    block: int,
    zid: str,
    firm: bool,
    gas_price: int,
    issues: dict[str, Any],
) -> dict[str, Any]:
    symbols = cfg.symbols
    body: dict[str, Any] = {
        "blockNumber": str(block),
        "buyAmount": str(ex.buy_amount),
        "buyToken": order.buy,
        "fees": {"integratorFee": None, "zeroExFee": None, "gasFee": None},
        "issues": issues,
        "liquidityAvailable": True,
        "minBuyAmount": str(ex.min_buy_amount),
        "route": {
            "fills": [
                {
                    "from": order.sell,
                    "to": order.buy,
                    "source": SOURCE_NAME,
                    "proportionBps": str(share),
                    "fee": str(fee),
                }
                for fee, share in ex.fills
            ],
            "tokens": [
                {"address": t, "symbol": symbols[t.lower()]} for t in (order.sell, order.buy)
            ],
        },
        "sellAmount": str(order.amount),
        "sellToken": order.sell,
        "tokenMetadata": {
            "buyToken": {"buyTaxBps": "0", "sellTaxBps": "0"},
            "sellToken": {"buyTaxBps": "0", "sellTaxBps": "0"},
        },
        "totalNetworkFee": str(ex.gas * gas_price),
        "zid": zid,
    }
    if firm:
        body["transaction"] = {
            "to": ex.to,
            "data": "0x" + ex.data.hex(),
            "gas": str(ex.gas),
            "gasPrice": str(gas_price),
            "value": "0",
        }
    else:
        body.update({"gas": str(ex.gas), "gasPrice": str(gas_price)})
    return body


async def _issues(w3: RpcChain, order: Order, spender: str) -> dict[str, Any]:
    """0x's ``issues``: the taker's allowance to the spender and balance, when short."""
    issues: dict[str, Any] = {
        "allowance": None,
        "balance": None,
        "simulationIncomplete": False,
        "invalidSourcesPassed": [],
    }
    if order.taker is None:
        return issues
    balance, allowance = await asyncio.gather(
        _read_uint(w3, order.sell, BALANCE_OF.encode(order.taker)),
        _read_uint(w3, order.sell, ALLOWANCE.encode(order.taker, spender)),
    )
    if allowance < order.amount:
        issues["allowance"] = {"actual": str(allowance), "spender": spender}
    if balance < order.amount:
        issues["balance"] = {
            "token": order.sell,
            "actual": str(balance),
            "expected": str(order.amount),
        }
    return issues


async def _read_uint(w3: RpcChain, to: str, data: bytes) -> int:
    raw = await w3.eth.call({"to": to, "data": data})  # type: ignore[typeddict-item]
    (value,) = decode(["uint256"], bytes(raw))
    return int(value)


# --- test hooks -------------------------------------------------------------------------------


async def _handle_control(request: web.Request) -> web.Response:
    try:
        payload = await request.json()
    except ValueError:
        return web.json_response({"error": "body must be JSON"}, status=400)
    mode = payload.get("mode") if isinstance(payload, dict) else None
    if mode not in MODES:
        return web.json_response({"error": f"mode must be one of {list(MODES)}"}, status=400)
    latency = payload.get("latency_seconds", 0)
    stall = payload.get("stall_seconds")
    if not _number(latency) or (stall is not None and not _number(stall)):
        return web.json_response(
            {"error": "latency_seconds/stall_seconds must be numbers"}, status=400
        )
    faults = request.app[FAULTS]
    faults.release.set()  # wake requests stalled under the previous mode
    faults.release = asyncio.Event()
    faults.mode, faults.latency_seconds = mode, float(latency)
    faults.stall_seconds = float(stall) if stall is not None else None
    request.app[STATS].current = Stats()
    log.info("fault mode %s (latency %ss)", mode, latency)
    return web.json_response({"mode": mode, "latency_seconds": faults.latency_seconds})


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


async def _handle_stats(request: web.Request) -> web.Response:
    stats = request.app[STATS].current
    return web.json_response(
        {
            "requests": stats.requests,
            "in_flight": stats.in_flight,
            "max_in_flight": stats.max_in_flight,
            "by_status": stats.by_status,
            "mode": request.app[FAULTS].mode,
        }
    )
