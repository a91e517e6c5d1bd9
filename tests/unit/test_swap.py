"""The oracle bound (mirrors OptionsVault._boundMin), quote checks and legs (keeper.core.swap)."""

from __future__ import annotations

import random
from dataclasses import replace
from fractions import Fraction
from math import floor

import pytest

from keeper.core.swap import (
    MAX_AMOUNT,
    SwapQuote,
    SwapRequest,
    check_quote,
    oracle_bound_min_out,
)
from keeper.errors import OracleRejected, QuoteRefused

WETH = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
USDC = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
ROUTER = "0xDc64a140Aa3E981100a9becA4E685f962f0cF6C9"
OTHER = "0x00000000000000000000000000000000bAD0bAd0"
VAULT = "0x322813Fd9A801c5507c9de605d63CEA4f2CE6c44"
ANSWER = 3000 * 10**8
WAD = 10**18


def test_bound_for_selling_one_weth_at_3000_with_1pct() -> None:
    # fair = 1e18 * 3000e8 * 1e6 / 1e26 = 3000e6; bound = fair * 9900 / 10000
    assert oracle_bound_min_out(True, WAD, ANSWER, 8, 100, 18, 6) == 2_970_000_000


def test_bound_for_buying_with_6000_usdc_at_3000_with_1pct() -> None:
    # fair = 6000e6 * 1e26 / (3000e8 * 1e6) = 2e18; bound = 1.98e18
    assert oracle_bound_min_out(False, 6000 * 10**6, ANSWER, 8, 100, 18, 6) == 198 * 10**16


def test_bound_rounds_down_twice_as_solidity_does() -> None:
    # buying with 1 base unit of USDC: fair = 1e26 / 3e17 = 333333333.3 -> 333333333,
    # then 333333333 * 9900 / 10000 = 329999999.67 -> 329999999
    assert oracle_bound_min_out(False, 1, ANSWER, 8, 100, 18, 6) == 329_999_999
    # selling 1 wei of WETH is worth 3e-9 USDC: the bound is 0
    assert oracle_bound_min_out(True, 1, ANSWER, 8, 100, 18, 6) == 0


def _reference(sell: bool, amount: int, answer: int, od: int, bps: int, ud: int, qd: int) -> int:
    """The same bound with exact rationals and an explicit floor at each Solidity division."""
    if sell:
        fair = floor(Fraction(amount * answer * 10**qd, 10 ** (ud + od)))
    else:
        fair = floor(Fraction(amount * 10 ** (ud + od), answer * 10**qd))
    return floor(Fraction(fair * (10_000 - bps), 10_000))


def test_bound_matches_an_exact_rational_reference_on_random_inputs() -> None:
    rng = random.Random(20240611)
    for _ in range(2000):
        sell = rng.random() < 0.5
        ud, qd, od = rng.choice([(18, 6, 8), (18, 18, 8), (8, 6, 18), (6, 18, 0)])
        amount = rng.randint(1, MAX_AMOUNT)
        answer = rng.randint(1, 10**14)
        bps = rng.randint(0, 9_999)
        got = oracle_bound_min_out(sell, amount, answer, od, bps, ud, qd)
        assert got == _reference(sell, amount, answer, od, bps, ud, qd)


def test_bound_rejects_what_the_vault_reverts_on() -> None:
    with pytest.raises(QuoteRefused, match="positive"):
        oracle_bound_min_out(True, 0, ANSWER, 8, 100, 18, 6)
    with pytest.raises(QuoteRefused, match="maximum"):
        oracle_bound_min_out(True, MAX_AMOUNT + 1, ANSWER, 8, 100, 18, 6)
    with pytest.raises(OracleRejected):
        oracle_bound_min_out(True, WAD, 0, 8, 100, 18, 6)
    with pytest.raises(OracleRejected):
        oracle_bound_min_out(True, WAD, -5, 8, 100, 18, 6)
    with pytest.raises(OracleRejected):
        oracle_bound_min_out(True, WAD, 2**96, 8, 100, 18, 6)
    with pytest.raises(QuoteRefused, match="max_slippage_bps"):
        oracle_bound_min_out(True, WAD, ANSWER, 8, 10_000, 18, 6)
    with pytest.raises(QuoteRefused, match="decimals"):
        oracle_bound_min_out(True, WAD, ANSWER, 19, 100, 18, 6)


# --- requests, quotes and checks ----------------------------------------------------------


def _request(sell_underlying: bool = True, amount: int = 2 * WAD) -> SwapRequest:
    return SwapRequest(
        taker=VAULT,
        sell_underlying=sell_underlying,
        amount_in=amount,
        underlying=WETH,
        quote_token=USDC,
        oracle_answer=ANSWER,
        oracle_decimals=8,
        max_slippage_bps=100,
        allowed_routers=frozenset({ROUTER}),
        deadline=1_700_000_600,
        underlying_decimals=18,
        quote_decimals=6,
    )


def _quote(**changes: object) -> SwapQuote:
    base = SwapQuote(
        source="0x",
        router=ROUTER,
        call_data=b"\x01\x02",
        sell_token=WETH,
        buy_token=USDC,
        sell_amount=2 * WAD,
        buy_amount=5_995_000_000,
        min_buy_amount=5_977_000_000,
        gas=150_000,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


BOUND = 5_940_000_000  # 2 WETH at 3000, less 1%


def test_request_knows_its_tokens_and_bound() -> None:
    sell, buy = _request(True), _request(False, 6000 * 10**6)
    assert (sell.sell_token, sell.buy_token) == (WETH, USDC)
    assert (buy.sell_token, buy.buy_token) == (USDC, WETH)
    assert sell.bound_min_out() == BOUND
    assert buy.bound_min_out() == 198 * 10**16


def test_a_good_quote_passes_unchanged() -> None:
    quote = _quote()
    assert check_quote(quote, _request(), BOUND, {ROUTER}) is quote


def test_router_and_token_addresses_compare_without_checksum_case() -> None:
    shouting = "0x" + USDC[2:].upper()
    quote = _quote(router=ROUTER.lower(), sell_token=WETH.lower(), buy_token=shouting)
    assert check_quote(quote, _request(), BOUND, {ROUTER}) is quote


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"router": OTHER}, "not allowlisted"),
        ({"sell_token": USDC}, "sells"),
        ({"buy_token": WETH}, "buys"),
        ({"sell_amount": 2 * WAD - 1}, "sells 1999999999999999999"),
        ({"call_data": b""}, "no calldata"),
        ({"min_buy_amount": 5_995_000_001}, "above buy_amount"),
        ({"buy_amount": BOUND - 1, "min_buy_amount": BOUND - 100}, "buy_amount 5939999999 below"),
        ({"min_buy_amount": BOUND - 1}, "min_buy_amount 5939999999 below"),
    ],
)
def test_unsafe_or_mismatched_quotes_are_refused(changes: dict[str, object], reason: str) -> None:
    with pytest.raises(QuoteRefused, match=reason):
        check_quote(_quote(**changes), _request(), BOUND, {ROUTER})


def test_a_quote_exactly_at_the_bound_passes() -> None:
    quote = _quote(buy_amount=BOUND, min_buy_amount=BOUND)
    assert check_quote(quote, _request(), BOUND, {ROUTER}) is quote
