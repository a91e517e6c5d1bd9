"""Swap routing on the forked world: the local 0x-style service, the direct Uniswap route, the
Router's fallbacks, and the vault's oracle bound, all against the real Uniswap V3 contracts.

The aggregator service runs in-process (a background thread) over the fork's JSON-RPC; the
keeper side (ZeroExClient, UniswapDirect, Router) talks to it and to the fork as it would in
production, and the keeper account executes the resulting legs with ``vault.rebalance``.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import ape
import pytest
from conftest import ForkedWorld
from eth_abi.abi import decode, encode
from eth_utils.address import to_checksum_address
from web3 import AsyncHTTPProvider, AsyncWeb3, HTTPProvider, Web3

from keeper.aggsvc import BackgroundService, config_from_manifest, start_in_background
from keeper.aggsvc.config import BAD_ROUTER, SINK
from keeper.aggsvc.control import set_mode, stats
from keeper.chain.aggregator import ZeroExClient
from keeper.chain.routing import Routed, Router, RouteResult, Unroutable
from keeper.chain.uniswap import EXACT_INPUT_SINGLE, MULTICALL, UniswapDirect
from keeper.core.abi import RebalanceLeg, encode_vault_rebalance, selector
from keeper.core.swap import SwapQuote, SwapRequest, check_quote, oracle_bound_min_out, to_leg
from world.node import free_port

WAD = 10**18
USDC = 10**6
API_KEY = "local-test-key-7c1e"
SLIPPAGE_BPS = 30
INSUFFICIENT_OUTPUT = selector("InsufficientOutput(uint256,uint256)")
EXACT_INPUT_SINGLE_TYPE = "(address,address,uint24,address,uint256,uint256,uint256,uint160)"


# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(
    world: ForkedWorld, rpc_url: str, keeper_account: Any, governance: Any
) -> Iterator[BackgroundService]:
    """The aggregator service over the fork (the accounts are set up here, before any test,
    so that Ape's per-test isolation never has to rebase session fixtures)."""
    config = config_from_manifest(world.manifest_file, rpc_url, api_key=API_KEY, stall_seconds=30)
    with start_in_background(config) as svc:
        yield svc


@pytest.fixture(autouse=True)
def healthy_service(service: BackgroundService) -> Iterator[None]:
    set_mode(service.url, "ok")
    yield
    set_mode(service.url, "ok")


def deadline(seconds: int = 600) -> int:
    return int(ape.chain.pending_timestamp) + seconds


def make_request(
    world: ForkedWorld,
    vault_name: str,
    sell_underlying: bool,
    amount: int,
    slippage_bps: int = SLIPPAGE_BPS,
) -> SwapRequest:
    """What the keeper knows when it routes a vault's swap: read from the chain."""
    vault = world.vaults[vault_name]
    return SwapRequest(
        vault=vault.address,
        sell_underlying=sell_underlying,
        amount_in=amount,
        underlying=world.weth.address,
        quote_token=world.usdc.address,
        oracle_answer=int(world.feed.latestRoundData()[1]),
        oracle_decimals=int(world.feed.decimals()),
        max_slippage_bps=int(vault.params().maxSlippageBps),
        allowed_routers=frozenset(r for r in (world.router.address,) if vault.isRouter(r)),
        deadline=deadline(),
        slippage_bps=slippage_bps,
    )


def route_all(
    service: BackgroundService,
    rpc_url: str,
    world: ForkedWorld,
    requests: list[SwapRequest],
    *,
    client_timeout: float = 5.0,
    aggregator_timeout: float = 8.0,
    with_aggregator: bool = True,
) -> list[RouteResult]:
    """The keeper's routing stack, for real: ZeroExClient + UniswapDirect + Router."""

    async def main() -> list[RouteResult]:
        w3 = AsyncWeb3(AsyncHTTPProvider(rpc_url))
        async with aiohttp.ClientSession() as session:
            client = ZeroExClient(
                session, service.url, API_KEY, world.manifest.chain_id, client_timeout, attempts=1
            )
            direct = UniswapDirect(w3, world.quoter.address, world.router.address)
            router = Router(
                direct,
                client if with_aggregator else None,
                aggregator_timeout_seconds=aggregator_timeout,
                direct_timeout_seconds=10.0,
            )
            results = await router.quote_all(requests)
        await w3.provider.disconnect()
        return results

    return asyncio.run(main())


def zero_ex_quote(
    service: BackgroundService, world: ForkedWorld, request: SwapRequest
) -> SwapQuote:
    async def main() -> SwapQuote:
        async with aiohttp.ClientSession() as session:
            client = ZeroExClient(session, service.url, API_KEY, world.manifest.chain_id, 5.0)
            return await client.quote(
                request.sell_token,
                request.buy_token,
                request.amount_in,
                request.vault,
                request.slippage_bps,
            )

    return asyncio.run(main())


def quoter_out(world: ForkedWorld, token_in: Any, token_out: Any, amount: int, fee: int) -> int:
    return int(world.quoter.quoteExactInputSingle.call((token_in, token_out, amount, fee, 0))[0])


def swap_parts(call_data: bytes) -> list[tuple[Any, ...]]:
    """The exactInputSingle params inside SwapRouter calldata (one call or a multicall)."""
    if call_data[:4] == MULTICALL:
        (calls,) = decode(["bytes[]"], call_data[4:])
    else:
        calls = [call_data]
    parts = []
    for call in calls:
        assert call[:4] == EXACT_INPUT_SINGLE
        (params,) = decode([EXACT_INPUT_SINGLE_TYPE], call[4:])
        parts.append(tuple(to_checksum_address(v) if isinstance(v, str) else v for v in params))
    return parts


def balances(world: ForkedWorld, vault: Any) -> tuple[int, int]:
    return int(world.weth.balanceOf(vault)), int(world.usdc.balanceOf(vault))


def execute(world: ForkedWorld, leg: RebalanceLeg, keeper: Any) -> Any:
    vault = ape.project.OptionsVault.at(leg.vault)
    return vault.rebalance(
        leg.sell_underlying,
        leg.amount_in,
        leg.min_out,
        leg.router,
        leg.swap_data,
        deadline(),
        sender=keeper,
    )


def routed(result: RouteResult) -> Routed:
    assert isinstance(result, Routed), getattr(result, "reason", result)
    return result


# --- the service's quotes ----------------------------------------------------------------------


def test_service_quotes_match_quoter_v2(
    fresh_world: ForkedWorld, service: BackgroundService
) -> None:
    w = fresh_world
    cases = [
        ("short-calls", True, WAD),  # a small sell: one tier
        ("short-puts", False, 6000 * USDC),  # a small buy: one tier
        ("short-straddle", True, 30 * WAD),  # a large sell: split across the tiers
    ]
    for name, sell, amount in cases:
        request = make_request(w, name, sell, amount)
        quote = zero_ex_quote(service, w, request)
        parts = swap_parts(quote.call_data)
        assert sum(p[5] for p in parts) == amount
        # each part is quoted on its own pool: the quote is exactly QuoterV2's sum of parts
        outs = [quoter_out(w, p[0], p[1], p[5], p[2]) for p in parts]
        assert quote.buy_amount == sum(outs)
        assert quote.min_buy_amount == quote.buy_amount * (10_000 - SLIPPAGE_BPS) // 10_000
        for p, out in zip(parts, outs, strict=True):
            assert p[3] == request.vault  # the output goes to the taker
            assert p[6] == out * (10_000 - SLIPPAGE_BPS) // 10_000  # per-part minimum
        best_single = max(
            quoter_out(w, request.sell_token, request.buy_token, amount, fee) for fee in (500, 3000)
        )
        assert quote.buy_amount >= best_single
        if amount < 10 * WAD:
            assert len(parts) == 1 and quote.buy_amount == best_single


def test_a_service_quote_executes_through_the_vault(
    fresh_world: ForkedWorld, service: BackgroundService, keeper_account: Any
) -> None:
    w = fresh_world
    request = make_request(w, "short-calls", True, 2 * WAD)
    bound = request.bound_min_out()
    quote = check_quote(zero_ex_quote(service, w, request), request, bound, request.allowed_routers)
    leg = to_leg(request.vault, quote, True, bound)
    vault = w.vaults["short-calls"]
    weth_before, usdc_before = balances(w, vault)

    receipt = execute(w, leg, keeper_account)

    weth_after, usdc_after = balances(w, vault)
    assert weth_before - weth_after == 2 * WAD
    assert usdc_after - usdc_before == quote.buy_amount >= quote.min_buy_amount
    (event,) = receipt.decode_logs(vault.Rebalanced)
    assert event.amountOut == quote.buy_amount and event.router == w.router.address
    assert w.weth.allowance(vault, w.router) == 0


def test_a_split_quote_beats_the_best_tier_and_executes(
    fresh_world: ForkedWorld, service: BackgroundService, rpc_url: str, keeper_account: Any
) -> None:
    w = fresh_world
    vault = w.vaults["short-straddle"]
    amount = 30 * WAD
    request = make_request(w, "short-straddle", True, amount)
    split = routed(route_all(service, rpc_url, w, [request])[0])
    direct = routed(route_all(service, rpc_url, w, [request], with_aggregator=False)[0])
    assert split.quote.source == "0x" and direct.quote.source == "uniswap-direct"
    assert len(swap_parts(split.quote.call_data)) == 2
    assert len(swap_parts(direct.quote.call_data)) == 1
    assert split.quote.buy_amount > direct.quote.buy_amount

    results = {}
    for label, r in (("direct", direct), ("split", split)):
        snapshot = ape.chain.snapshot()
        _, usdc_before = balances(w, vault)
        receipt = execute(w, r.leg, keeper_account)
        received = balances(w, vault)[1] - usdc_before
        assert received == r.quote.buy_amount >= r.leg.min_out
        results[label] = (int(receipt.gas_used), received, r.quote.gas)
        ape.chain.restore(snapshot)
    gain = results["split"][1] - results["direct"][1]
    for label, (gas, out, quoted_gas) in results.items():
        print(
            f"\nsell 30 WETH via {label}: rebalance gas {gas}, out {out / USDC:.2f} USDC, "
            f"quoted swap gas {quoted_gas}"
        )
    print(f"split gains {gain / USDC:.2f} USDC")


# --- the oracle bound --------------------------------------------------------------------------


def required_on_chain(rpc_url: str, keeper: str, leg: RebalanceLeg) -> int:
    """The vault's required output for ``leg``, read from its InsufficientOutput revert.

    The leg's router (a MockRouter) pays nothing, so the vault always reverts with
    ``InsufficientOutput(0, max(minOut, boundMin))``; with minOut 0 that is boundMin.
    """
    w3 = Web3(HTTPProvider(rpc_url))
    data = encode_vault_rebalance(leg, deadline())
    response = w3.provider.make_request(  # type: ignore[arg-type]
        "eth_call", [{"from": keeper, "to": leg.vault, "data": "0x" + data.hex()}, "latest"]
    )
    error = response.get("error")
    assert error is not None, response
    revert = bytes.fromhex(str(error["data"])[2:])
    assert revert[:4] == INSUFFICIENT_OUTPUT, error
    received, required = decode(["uint256", "uint256"], revert[4:])
    assert received == 0
    return int(required)


@pytest.fixture
def mock_router(fresh_world: ForkedWorld, governance: Any) -> Any:
    router = governance.deploy(ape.project.MockRouter)
    for vault in fresh_world.vaults.values():
        vault.setRouter(router, True, sender=governance)
    return router


def mock_swap(router: Any, token_in: Any, token_out: Any, amount_out: int, vault: Any) -> bytes:
    return bytes(router.swap.encode_input(token_in, token_out, 0, amount_out, vault))


def test_python_bound_equals_the_bound_the_vault_enforces(
    fresh_world: ForkedWorld,
    mock_router: Any,
    governance: Any,
    keeper_account: Any,
    rpc_url: str,
) -> None:
    w = fresh_world
    vault = w.vaults["short-calls"]
    rng = random.Random(4)
    checked = 0
    for answer in (3000 * 10**8, 312_345_678_901, 99_999_999_999, 421_700_000_003):
        w.feed.setAnswer(answer, sender=governance)
        for sell in (True, False):
            token_in, token_out = (w.weth, w.usdc) if sell else (w.usdc, w.weth)
            for _ in range(4):
                amount = rng.randint(1, 50 * WAD) if sell else rng.randint(1, 150_000 * USDC)
                python_bound = oracle_bound_min_out(sell, amount, answer, 8, 100)
                leg = RebalanceLeg(
                    vault.address,
                    sell,
                    amount,
                    0,
                    mock_router.address,
                    mock_swap(mock_router, token_in, token_out, 0, vault),
                )
                assert required_on_chain(rpc_url, keeper_account.address, leg) == python_bound
                checked += 1
    assert checked == 32


def test_a_router_one_wei_short_of_the_bound_reverts_and_a_min_out_under_it_passes(
    fresh_world: ForkedWorld, mock_router: Any, governance: Any, keeper_account: Any
) -> None:
    w = fresh_world
    vault = w.vaults["short-puts"]
    answer = w.set_price(3123.45678901, governance)
    w.usdc.mint(mock_router, 10**6 * USDC, sender=governance)
    w.weth.deposit(value=100 * WAD, sender=governance)
    w.weth.transfer(mock_router, 100 * WAD, sender=governance)
    for sell, token_in, token_out, amount in (
        (True, w.weth, w.usdc, 3 * WAD + 12345),
        (False, w.usdc, w.weth, 7_777_777_777),
    ):
        bound = oracle_bound_min_out(sell, amount, answer, 8, 100)

        short = mock_swap(mock_router, token_in, token_out, bound - 1, vault)
        with ape.reverts(vault.InsufficientOutput, received=bound - 1, required=bound):
            vault.rebalance(
                sell, amount, bound - 1, mock_router, short, deadline(), sender=keeper_account
            )

        exact = mock_swap(mock_router, token_in, token_out, bound, vault)
        out_before = int(token_out.balanceOf(vault))
        vault.rebalance(
            sell, amount, bound - 1, mock_router, exact, deadline(), sender=keeper_account
        )
        assert int(token_out.balanceOf(vault)) - out_before == bound


# --- fallbacks and refusals --------------------------------------------------------------------


def test_aggregator_down_falls_back_to_the_direct_route(
    fresh_world: ForkedWorld, service: BackgroundService, rpc_url: str, keeper_account: Any
) -> None:
    w = fresh_world
    set_mode(service.url, "fail")
    request = make_request(w, "short-calls", True, 2 * WAD)
    result = routed(route_all(service, rpc_url, w, [request])[0])
    assert result.quote.source == "uniswap-direct"
    assert result.quote.router == w.router.address
    assert [(a.source, a.outcome) for a in result.attempts] == [
        ("0x", "error"),
        ("uniswap-direct", "ok"),
    ]
    assert "HTTP 500 INTERNAL_SERVER_ERROR" in result.attempts[0].detail
    assert stats(service.url)["by_status"] == {"500": 1}
    vault = w.vaults["short-calls"]
    usdc_before = balances(w, vault)[1]
    execute(w, result.leg, keeper_account)
    assert balances(w, vault)[1] - usdc_before == result.quote.buy_amount


def test_a_stalled_aggregator_times_out_and_falls_back(
    fresh_world: ForkedWorld, service: BackgroundService, rpc_url: str
) -> None:
    set_mode(service.url, "stall")
    request = make_request(fresh_world, "short-calls", True, WAD)
    result = routed(
        route_all(
            service, rpc_url, fresh_world, [request], client_timeout=0.5, aggregator_timeout=5.0
        )[0]
    )
    assert result.quote.source == "uniswap-direct"
    # the client's own timeout (0.5 s), not the stage's (5 s) nor the stall (30 s), ended it
    assert result.attempts[0].outcome == "error"
    assert "no answer within 0.5s" in result.attempts[0].detail
    assert stats(service.url)["in_flight"] == 1  # the service is still stalled on it


def test_a_bad_price_is_refused_and_would_have_reverted_on_chain(
    fresh_world: ForkedWorld, service: BackgroundService, rpc_url: str, keeper_account: Any
) -> None:
    w = fresh_world
    set_mode(service.url, "bad_price")
    request = make_request(w, "short-calls", True, 2 * WAD)
    bad = zero_ex_quote(service, w, request)
    bound = request.bound_min_out()
    assert bad.buy_amount < bound // 2 + bound // 50  # about half the market
    assert {p[3] for p in swap_parts(bad.call_data)} == {request.vault, SINK}

    result = routed(route_all(service, rpc_url, w, [request])[0])
    assert result.quote.source == "uniswap-direct"
    assert result.attempts[0].outcome == "refused"
    assert "below the oracle bound" in result.attempts[0].detail

    # Sent anyway with the aggregator's own minimum, the vault's oracle bound stops it.
    vault = w.vaults["short-calls"]
    unsafe = RebalanceLeg(
        vault.address, True, 2 * WAD, bad.min_buy_amount, bad.router, bad.call_data
    )
    with ape.reverts(vault.InsufficientOutput, received=bad.buy_amount, required=bound):
        execute(w, unsafe, keeper_account)


def test_a_non_allowlisted_router_is_refused(
    fresh_world: ForkedWorld, service: BackgroundService, rpc_url: str
) -> None:
    set_mode(service.url, "bad_router")
    request = make_request(fresh_world, "short-puts", False, 6000 * USDC)
    result = routed(route_all(service, rpc_url, fresh_world, [request])[0])
    assert result.quote.source == "uniswap-direct"
    assert result.attempts[0].outcome == "refused"
    assert f"router {BAD_ROUTER} is not allowlisted" in result.attempts[0].detail
    assert result.leg.router == fresh_world.router.address


def test_when_no_route_clears_the_oracle_bound_nothing_is_returned_to_execute(
    fresh_world: ForkedWorld, service: BackgroundService, rpc_url: str, governance: Any
) -> None:
    # The oracle jumps 5% above the pools: every route now pays less than the 1% bound.
    w = fresh_world
    w.set_price(3150, governance)
    for mode in ("ok", "bad_price"):
        set_mode(service.url, mode)
        (result,) = route_all(service, rpc_url, w, [make_request(w, "short-calls", True, WAD)])
        assert isinstance(result, Unroutable)
        assert [(a.source, a.outcome) for a in result.attempts] == [
            ("0x", "refused"),
            ("uniswap-direct", "refused"),
        ]
        assert "below the oracle bound" in result.reason


# --- concurrency ---------------------------------------------------------------------------------


def test_one_blocks_quotes_are_fetched_concurrently(
    fresh_world: ForkedWorld, service: BackgroundService, rpc_url: str
) -> None:
    w = fresh_world
    requests = [
        make_request(w, name, sell, amount)
        for name in ("short-calls", "short-puts", "short-straddle")
        for sell, amount in ((True, WAD), (False, 3000 * USDC))
    ]
    set_mode(service.url, "ok", latency_seconds=0.4)
    started = time.monotonic()
    results = route_all(service, rpc_url, w, requests)
    concurrent = time.monotonic() - started
    seen = stats(service.url)
    assert seen["requests"] == len(requests)
    assert seen["max_in_flight"] == len(requests)  # all of them were in the service at once
    assert [r.request for r in results] == requests
    assert all(routed(r).quote.source == "0x" for r in results)

    set_mode(service.url, "ok", latency_seconds=0.4)
    started = time.monotonic()
    for request in requests:
        route_all(service, rpc_url, w, [request])
    sequential = time.monotonic() - started
    assert stats(service.url)["max_in_flight"] == 1
    print(
        f"\n{len(requests)} quotes (0.4 s service latency each): concurrent "
        f"{concurrent:.2f}s, sequential {sequential:.2f}s"
    )


def test_the_direct_route_quotes_the_best_tier_and_builds_its_calldata(
    fresh_world: ForkedWorld, service: BackgroundService, rpc_url: str
) -> None:
    w = fresh_world
    request = make_request(w, "short-puts", False, 9000 * USDC)
    result = routed(route_all(service, rpc_url, w, [request], with_aggregator=False)[0])
    outs = {fee: quoter_out(w, w.usdc, w.weth, 9000 * USDC, fee) for fee in (500, 3000)}
    best_fee = max(outs, key=lambda f: outs[f])
    (part,) = swap_parts(result.quote.call_data)
    assert (part[0], part[1], part[2], part[3]) == (
        w.usdc.address,
        w.weth.address,
        best_fee,
        request.vault,
    )
    assert part[4] == request.deadline and part[5] == 9000 * USDC
    assert result.quote.buy_amount == outs[best_fee]
    assert part[6] == result.quote.min_buy_amount == outs[best_fee] * 9970 // 10_000
    assert encode([EXACT_INPUT_SINGLE_TYPE], [part]) == result.quote.call_data[4:]


# --- the service as a process --------------------------------------------------------------------


def _get_json(url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


def test_the_service_runs_as_a_subprocess_and_quotes_like_in_process(
    fresh_world: ForkedWorld, service: BackgroundService, rpc_url: str
) -> None:
    w = fresh_world
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "keeper.aggsvc",
            "--rpc-url",
            rpc_url,
            "--manifest",
            str(w.manifest_file),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--api-key",
            API_KEY,
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    query = (
        f"/swap/allowance-holder/price?chainId={w.manifest.chain_id}"
        f"&sellToken={w.weth.address}&buyToken={w.usdc.address}&sellAmount={5 * WAD}"
    )
    headers = {"0x-api-key": API_KEY, "0x-version": "v2"}
    try:
        for _ in range(100):
            try:
                status, body = _get_json(f"http://127.0.0.1:{port}{query}", headers)
                break
            except urllib.error.URLError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                time.sleep(0.2)
        else:
            pytest.fail("the aggregator subprocess never answered")
        assert status == 200
        in_process = _get_json(service.url + query, headers)[1]
        assert body["buyAmount"] == in_process["buyAmount"]
        assert body["minBuyAmount"] == str(int(body["buyAmount"]) * 9_900 // 10_000)  # default 1%
        assert "transaction" not in body and int(body["gas"]) > 0
        status, error = _get_json(f"http://127.0.0.1:{port}{query}", {"0x-version": "v2"})
        assert (status, error["name"]) == (401, "UNAUTHORIZED")
    finally:
        process.terminate()
        process.wait(timeout=10)
