"""Client of a DEX aggregator speaking the 0x Swap API v2 (AllowanceHolder flavour).

Request::

    GET {base}/swap/allowance-holder/quote?chainId=&sellToken=&buyToken=&sellAmount=
        &taker=&slippageBps=
    headers: 0x-api-key: <key>, 0x-version: v2

``taker`` is the address that holds the tokens and receives the output: here the VAULT,
which approves ``transaction.to`` for exactly ``sellAmount`` and calls it with
``transaction.data``. Amounts are decimal strings of base units.

A 200 answer is either ``{"liquidityAvailable": false, "zid": ..}`` or a quote whose fields
this client reads: ``liquidityAvailable``, ``buyAmount``, ``minBuyAmount``, ``sellAmount``,
``sellToken``, ``buyToken`` and ``transaction`` {``to``, ``data``, ``gas``, ``gasPrice``,
``value``}; ``route``, ``fees``, ``issues`` and ``zid`` are informational (``zid`` is logged).
Errors are non-2xx with a JSON body ``{"name": .., "message": .., "data": {..}}``, e.g.
400 ``INPUT_INVALID``, 401 ``UNAUTHORIZED``, 429 ``RATE_LIMITED``, 500
``INTERNAL_SERVER_ERROR``.

Failure mapping: a timeout, a dropped connection, 429 or a 5xx raise ``QuoteError``
(retryable; retried here with a short tenacity policy); another 4xx or no liquidity raise
``QuoteRefused``; a 200 body that is not a usable quote raises ``QuoteError``. The API key
travels only in the request header: it is never logged nor put in an error message.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

import aiohttp
from eth_utils.address import is_hex_address, to_checksum_address
from pydantic import SecretStr

from keeper.chain.retry import quote_retry
from keeper.core.swap import SwapQuote
from keeper.errors import QuoteError, QuoteRefused

log = logging.getLogger("keeper.aggregator")

QUOTE_PATH = "/swap/allowance-holder/quote"
API_VERSION = "v2"
_UINT = re.compile(r"^[0-9]{1,78}$")
_HEX = re.compile(r"^0x([0-9a-fA-F]{2})*$")


class ZeroExClient:
    """Fetches 0x v2 AllowanceHolder quotes over a shared ``aiohttp.ClientSession``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        api_key: SecretStr | str | None,
        chain_id: int,
        timeout_seconds: float,
        *,
        attempts: int = 2,
    ) -> None:
        self._session = session
        self._url = base_url.rstrip("/") + QUOTE_PATH
        self._api_key = SecretStr(api_key) if isinstance(api_key, str) else api_key
        self._chain_id = chain_id
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._attempts = attempts

    def __repr__(self) -> str:
        return f"ZeroExClient(url={self._url!r}, chain_id={self._chain_id})"

    async def quote(
        self, sell_token: str, buy_token: str, sell_amount: int, taker: str, slippage_bps: int
    ) -> SwapQuote:
        """A firm quote for selling ``sell_amount`` of ``sell_token`` held by ``taker``."""
        params = {
            "chainId": str(self._chain_id),
            "sellToken": to_checksum_address(sell_token),
            "buyToken": to_checksum_address(buy_token),
            "sellAmount": str(sell_amount),
            "taker": to_checksum_address(taker),
            "slippageBps": str(slippage_bps),
        }
        result: SwapQuote = await quote_retry(self._attempts).retrying()(self._quote_once, params)
        return result

    def _headers(self) -> dict[str, str]:
        headers = {"0x-version": API_VERSION, "accept": "application/json"}
        if self._api_key is not None:
            headers["0x-api-key"] = self._api_key.get_secret_value()
        return headers

    async def _quote_once(self, params: Mapping[str, str]) -> SwapQuote:
        what = f"0x quote {params['sellAmount']} {params['sellToken']}->{params['buyToken']}"
        try:
            async with self._session.get(
                self._url, params=params, headers=self._headers(), timeout=self._timeout
            ) as response:
                status = response.status
                text = await response.text()
        except TimeoutError as exc:
            raise QuoteError(f"{what}: no answer within {self._timeout.total}s") from exc
        except aiohttp.ClientError as exc:
            raise QuoteError(f"{what}: {type(exc).__name__}: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise QuoteError(f"{what}: answer is not text: {exc}") from exc
        body = _json_object(text)
        if status != 200:
            raise _status_error(what, status, body)
        if body is None:
            raise QuoteError(f"{what}: answer is not a JSON object")
        quote = parse_quote(body, what)
        log.debug(
            "0x quote received",
            extra={
                "fields": {
                    "zid": body.get("zid"),
                    "buy_amount": quote.buy_amount,
                    "router": quote.router,
                }
            },
        )
        return quote


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _status_error(what: str, status: int, body: dict[str, Any] | None) -> QuoteError | QuoteRefused:
    name = str(body.get("name", "")) if body else ""
    message = str(body.get("message", "")) if body else ""
    detail = f"{what}: HTTP {status} {name}: {message}".rstrip(": ")
    if status == 429 or status >= 500:
        return QuoteError(detail)
    return QuoteRefused(detail)


def parse_quote(body: Mapping[str, Any], what: str = "0x quote") -> SwapQuote:
    """A ``SwapQuote`` from a 200 quote body; refuses no-liquidity, rejects unusable bodies."""
    if body.get("liquidityAvailable") is False:
        raise QuoteRefused(f"{what}: no liquidity available")
    if body.get("liquidityAvailable") is not True:
        raise QuoteError(f"{what}: liquidityAvailable missing")
    tx = body.get("transaction")
    if not isinstance(tx, Mapping):
        raise QuoteError(f"{what}: no transaction")
    if _uint(tx.get("value", "0"), "transaction.value", what) != 0:
        raise QuoteRefused(f"{what}: transaction sends ETH (value {tx.get('value')})")
    return SwapQuote(
        source="0x",
        router=_address(tx.get("to"), "transaction.to", what),
        call_data=_bytes(tx.get("data"), "transaction.data", what),
        sell_token=_address(body.get("sellToken"), "sellToken", what),
        buy_token=_address(body.get("buyToken"), "buyToken", what),
        sell_amount=_uint(body.get("sellAmount"), "sellAmount", what),
        buy_amount=_uint(body.get("buyAmount"), "buyAmount", what),
        min_buy_amount=_uint(body.get("minBuyAmount"), "minBuyAmount", what),
        gas=_uint(tx.get("gas"), "transaction.gas", what),
    )


def _uint(value: Any, name: str, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _UINT.match(value):
        return int(value)
    raise QuoteError(f"{what}: {name} is not an unsigned integer: {value!r}")


def _address(value: Any, name: str, what: str) -> str:
    if isinstance(value, str) and is_hex_address(value):
        return to_checksum_address(value)
    raise QuoteError(f"{what}: {name} is not an address: {value!r}")


def _bytes(value: Any, name: str, what: str) -> bytes:
    if isinstance(value, str) and _HEX.match(value):
        return bytes.fromhex(value[2:])
    raise QuoteError(f"{what}: {name} is not 0x-hex bytes")
