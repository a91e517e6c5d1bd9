"""Swap routing on the forked world: the local 0x-style service, the direct route's one-call
depth, and the vault's oracle bound, all against the real Uniswap V3 contracts and vault v2.

The aggregator service runs in-process (a background thread) over the fork's JSON-RPC; the
keeper side (ZeroExClient, UniswapDirect) talks to it and to the fork as in production, and
the keeper account executes trades with ``vault.rebalance(trade, router, swapData)``. The
race between the two routes is tested in tests/unit/test_aggregator_client.py and, with the
whole keeper, in tests/integration/test_book.py.
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
from eth_abi.abi import decode
from web3 import AsyncHTTPProvider, AsyncWeb3, HTTPProvider, Web3

from keeper.aggsvc import BackgroundService, config_from_manifest, start_in_background
from keeper.aggsvc.control import set_mode
from keeper.chain.aggregator import ZeroExClient
from keeper.chain.uniswap import DirectDepth, UniswapDirect
from keeper.core import abi
from keeper.core.abi import abi_type
from keeper.core.swap import SwapQuote, SwapRequest, check_quote, oracle_bound_min_out
from keeper.core.types import Trade, VaultState
from world.node import free_port

WAD = 10**18
USDC = 10**6
API_KEY = "local-test-key-7c1e"
SLIPPAGE_BPS = 30
_EXACT_INPUT_SINGLE = abi.function("SwapRouter", "exactInputSingle")
_ROUTER_MULTICALL = abi.function("SwapRouter", "multicall")


# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(
    world: ForkedWorld, rpc_url: str, keeper_account: Any, governance: Any
) -> Iterator[BackgroundService]:
    """The aggregator service over the fork."""
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


def state_of(rpc_url: str, vault: str) -> VaultState:
    w3 = Web3(HTTPProvider(rpc_url))
    return abi.decode_vault_state(vault, bytes(w3.eth.call({"to": vault, "data": abi.GET_STATE})))


def make_request(
    world: ForkedWorld, rpc_url: str, vault_name: str, sell_underlying: bool, amount: int
) -> SwapRequest:
    """What the keeper knows when it routes a vault's swap: read from the chain."""
    s = state_of(rpc_url, world.vaults[vault_name].address)
    return SwapRequest(
        taker=s.address,
        sell_underlying=sell_underlying,
        amount_in=amount,
        underlying=world.weth.address,
        quote_token=world.usdc.address,
        oracle_answer=s.oracle.answer,
        oracle_decimals=s.oracle.decimals,
        max_slippage_bps=s.guards.max_slippage_bps,
        allowed_routers=frozenset({world.router.address}),
        deadline=deadline(),
        underlying_decimals=s.underlying_decimals,
        quote_decimals=s.quote_decimals,
        slippage_bps=SLIPPAGE_BPS,
    )


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
                request.taker,
                request.slippage_bps,
            )

    return asyncio.run(main())


def quoter_out(world: ForkedWorld, token_in: Any, token_out: Any, amount: int, fee: int) -> int:
    return int(world.quoter.quoteExactInputSingle.call((token_in, token_out, amount, fee, 0))[0])


def swap_parts(call_data: bytes) -> list[dict[str, Any]]:
    """The exactInputSingle params inside SwapRouter calldata (one call or a multicall)."""
    if call_data[:4] == _ROUTER_MULTICALL.selector:
        (calls,) = decode([abi_type(p) for p in _ROUTER_MULTICALL.inputs], call_data[4:])
    else:
        calls = [call_data]
    parts = []
    for call in calls:
        assert call[:4] == _EXACT_INPUT_SINGLE.selector
        (param,) = _EXACT_INPUT_SINGLE.inputs
        (raw,) = decode([abi_type(param)], call[4:])
        parts.append(abi.from_abi(param, raw))
    return parts


def balances(world: ForkedWorld, vault: Any) -> tuple[int, int]:
    return int(world.weth.balanceOf(vault)), int(world.usdc.balanceOf(vault))


def send_rebalance(
    rpc_url: str, keeper: str, vault: str, trade: Trade, router: str, data: bytes
) -> dict[str, Any]:
    """``vault.rebalance`` from the keeper account (unlocked on the fork); its receipt."""
    w3 = Web3(HTTPProvider(rpc_url))
    call = {"from": keeper, "to": vault, "data": abi.encode_vault_rebalance(trade, router, data)}
    tx = w3.eth.send_transaction(call)  # type: ignore[arg-type]
    return dict(w3.eth.wait_for_transaction_receipt(tx))


def revert_of(
    rpc_url: str, keeper: str, vault: str, trade: Trade, router: str, data: bytes
) -> bytes:
    w3 = Web3(HTTPProvider(rpc_url))
    call = {
        "from": keeper,
        "to": vault,
        "data": "0x" + abi.encode_vault_rebalance(trade, router, data).hex(),
    }
    response = w3.provider.make_request("eth_call", [call, "latest"])  # type: ignore[arg-type]
    error = response.get("error")
    assert error is not None, response
    return bytes.fromhex(str(error["data"])[2:])


# --- the service's quotes ----------------------------------------------------------------------


def test_service_quotes_match_quoter_v2(
    fresh_world: ForkedWorld, service: BackgroundService, rpc_url: str
) -> None:
    w = fresh_world
    cases = [
        ("short-calls", True, WAD),  # a small sell: one tier
        ("short-puts", False, 6000 * USDC),  # a small buy: one tier
        ("short-straddle", True, 30 * WAD),  # a large sell: split across the tiers
    ]
    for name, sell, amount in cases:
        request = make_request(w, rpc_url, name, sell, amount)
        quote = zero_ex_quote(service, w, request)
        parts = swap_parts(quote.call_data)
        assert sum(p["amount_in"] for p in parts) == amount
        outs = [
            quoter_out(w, p["token_in"], p["token_out"], p["amount_in"], p["fee"]) for p in parts
        ]
        assert quote.buy_amount == sum(outs)
        for p in parts:
            assert p["recipient"] == request.taker  # the output goes to the taker
        best_single = max(
            quoter_out(w, request.sell_token, request.buy_token, amount, fee) for fee in (500, 3000)
        )
        assert quote.buy_amount >= best_single


def test_a_service_quote_executes_through_the_vault_with_its_state_nonce(
    fresh_world: ForkedWorld,
    service: BackgroundService,
    keeper_account: Any,
    governance: Any,
    rpc_url: str,
) -> None:
    w = fresh_world
    request = make_request(w, rpc_url, "short-calls", True, 2 * WAD)
    bound = request.bound_min_out()
    quote = check_quote(zero_ex_quote(service, w, request), request, bound, request.allowed_routers)
    vault = w.vaults["short-calls"]
    w.weth.deposit(value=2 * WAD, sender=governance)  # over-hedged by 2 WETH: selling them is
    w.weth.approve(vault, 2 * WAD, sender=governance)  # the right direction
    vault.deposit(w.weth, 2 * WAD, sender=governance)
    nonce = state_of(rpc_url, vault.address).state_nonce
    trade = Trade(True, 2 * WAD, max(quote.min_buy_amount, bound), nonce, deadline())
    weth_before, usdc_before = balances(w, vault)
    receipt = send_rebalance(
        rpc_url, keeper_account.address, vault.address, trade, quote.router, quote.call_data
    )
    assert receipt["status"] == 1
    weth_after, usdc_after = balances(w, vault)
    assert weth_before - weth_after == 2 * WAD
    assert usdc_after - usdc_before == quote.buy_amount
    assert state_of(rpc_url, vault.address).state_nonce == nonce + 1
    # the same trade again: computed from a state that has moved, it reverts harmlessly
    stale = revert_of(
        rpc_url, keeper_account.address, vault.address, trade, quote.router, quote.call_data
    )
    assert abi.decode_revert(stale) == f"StaleState({nonce}, {nonce + 1})"


def test_python_bound_equals_the_bound_the_vault_enforces(
    fresh_world: ForkedWorld, governance: Any, keeper_account: Any, rpc_url: str
) -> None:
    """A MockRouter that pays nothing: the vault reverts InsufficientOutput(0, required), and
    with minOut 0 the required amount is its own oracle bound."""
    w = fresh_world
    router = governance.deploy(ape.project.MockRouter)
    vault = w.vaults["short-calls"]
    vault.setRouter(router, True, sender=governance)
    rng = random.Random(4)
    checked = 0
    for answer in (3000 * 10**8, 312_345_678_901, 299_999_999_999):
        w.feed.setAnswer(answer, sender=governance)
        s = state_of(rpc_url, vault.address)
        for sell in (True, False):
            token_in, token_out = (w.weth, w.usdc) if sell else (w.usdc, w.weth)
            for _ in range(3):
                amount = rng.randint(WAD // 100, WAD) if sell else rng.randint(USDC, 3000 * USDC)
                expected = oracle_bound_min_out(
                    sell, amount, answer, 8, s.guards.max_slippage_bps, 18, 6
                )
                data = bytes(router.swap.encode_input(token_in, token_out, 0, 0, vault))
                trade = Trade(sell, amount, 0, s.state_nonce, deadline())
                revert = revert_of(
                    rpc_url, keeper_account.address, vault.address, trade, router.address, data
                )
                assert abi.error_name(revert) == "InsufficientOutput", abi.decode_revert(revert)
                assert abi.decode_revert(revert) == f"InsufficientOutput(0, {expected})"
                checked += 1
    assert checked == 18


# --- the direct route --------------------------------------------------------------------------


def depth(
    rpc_url: str, world: ForkedWorld, sizes: dict[bool, list[int]]
) -> tuple[DirectDepth, int]:
    async def main() -> tuple[DirectDepth, int]:
        w3 = AsyncWeb3(AsyncHTTPProvider(rpc_url))
        direct = UniswapDirect(
            w3, world.quoter.address, world.router.address, multicall=world.multicall.address
        )
        result = await direct.quote_depth(world.weth.address, world.usdc.address, sizes)
        await w3.provider.disconnect()
        return result, direct.calls

    return asyncio.run(main())


def test_the_depth_of_a_book_is_one_multicall_equal_to_quoter_v2(
    fresh_world: ForkedWorld, rpc_url: str
) -> None:
    w = fresh_world
    sizes = {True: [WAD // 10, WAD, 8 * WAD, 64 * WAD], False: [3000 * USDC, 90_000 * USDC]}
    result, calls = depth(rpc_url, w, sizes)
    assert calls == 1  # every size, both directions, both tiers: one eth_call
    for side, amounts in sizes.items():
        token_in, token_out = (w.weth, w.usdc) if side else (w.usdc, w.weth)
        curve = result.depth.curve(side)
        for amount in amounts:
            outs = {fee: quoter_out(w, token_in, token_out, amount, fee) for fee in (500, 3000)}
            best = result.best[(side, amount)]
            assert best.amount_out == max(outs.values()) and outs[best.fee] == best.amount_out
            assert curve.out_at(amount) == best.amount_out
    sells = [o / a for a, o in result.depth.sell.points]
    assert sells == sorted(sells, reverse=True)  # the average price falls with the size


def test_an_orders_quotes_are_one_multicall_equal_to_one_call_each(
    fresh_world: ForkedWorld, rpc_url: str
) -> None:
    """What the service prices an order with (every tier, every split part): one eth_call,
    the same quotes as one QuoterV2 call per pair, and a part no pool can fill left out."""
    w = fresh_world
    no_pool = 10_000  # a tier the world has no pool for: the quoter reverts
    wanted = [(500, WAD), (3000, WAD), (500, 7 * WAD), (3000, 23 * WAD), (no_pool, WAD)]

    async def main() -> tuple[dict[Any, Any], dict[Any, Any], int, int]:
        w3 = AsyncWeb3(AsyncHTTPProvider(rpc_url))
        batched = UniswapDirect(
            w3, w.quoter.address, w.router.address, multicall=w.multicall.address
        )
        alone = UniswapDirect(w3, w.quoter.address, w.router.address)
        one = await batched.quote_each(w.weth.address, w.usdc.address, wanted)
        each = await alone.quote_each(w.weth.address, w.usdc.address, wanted)
        await w3.provider.disconnect()
        return one, each, batched.calls, alone.calls

    one, each, multicalls, _ = asyncio.run(main())
    # the service is given the manifest's Multicall3, so it prices every order this way
    assert config_from_manifest(w.manifest_file, rpc_url).multicall == w.multicall.address
    assert multicalls == 1
    assert set(one) == set(each) == set(wanted[:-1])  # the part no pool fills is left out
    for (fee, amount), quote in one.items():
        # (QuoterV2's gas estimate differs: a pool quoted earlier in the multicall is warm)
        assert (quote.fee, quote.amount_in) == (fee, amount)
        assert quote.amount_out == each[(fee, amount)].amount_out
        assert quote.amount_out == quoter_out(w, w.weth, w.usdc, amount, fee)


def test_the_direct_swap_is_the_quoted_tier_with_the_signed_minimum(
    fresh_world: ForkedWorld, rpc_url: str
) -> None:
    w = fresh_world
    result, _ = depth(rpc_url, w, {False: [9000 * USDC]})
    tier = result.best[(False, 9000 * USDC)]
    direct = UniswapDirect(None, w.quoter.address, w.router.address)  # type: ignore[arg-type]
    quote = direct.swap(tier, w.usdc.address, w.weth.address, w.settlement.address, 1234, 77)
    (part,) = swap_parts(quote.call_data)
    assert part == {
        "token_in": w.usdc.address,
        "token_out": w.weth.address,
        "fee": tier.fee,
        "recipient": w.settlement.address,
        "deadline": 1234,
        "amount_in": 9000 * USDC,
        "amount_out_minimum": 77,
        "sqrt_price_limit_x96": 0,
    }


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
