"""Retry policies (tenacity) and the one map from web3 / aiohttp / JSON-RPC failures to the
keeper's error tree.

Only ``RetryableError`` subclasses are retried (exponential backoff with full jitter,
bounded by attempts and by elapsed time). Everything that leaves ``RetryPolicy.call`` is a
``KeeperError``: ``classify`` turns node messages into ``NonceTooLow``, ``AlreadyKnown``,
``Underpriced``, ``SimulationReverted`` (with the decoded revert reason), ``RpcTimeout`` /
``RpcError`` for transport trouble, and ``FatalError`` for any other answer of the node.

Revert data layouts: ``Error(string)`` is selector ``0x08c379a0`` + ABI-encoded string,
``Panic(uint256)`` is ``0x4e487b71`` + code (Solidity docs, "Error handling: Assert,
Require, Revert and Exceptions"); anything else is a custom error named by its selector.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)
from web3.exceptions import (
    BadResponseFormat,
    ContractLogicError,
    ProviderConnectionError,
    RequestTimedOut,
    TimeExhausted,
    TooManyRequests,
    Web3Exception,
    Web3RPCError,
)

from keeper.core.abi import decode_revert
from keeper.errors import (
    AlreadyKnown,
    FatalError,
    InsufficientFunds,
    KeeperError,
    NonceTooLow,
    OutOfGas,
    RetryableError,
    RpcError,
    RpcTimeout,
    SimulationReverted,
    Underpriced,
)

T = TypeVar("T")


# Exceptions the map understands; anything else is a bug and propagates unchanged.
MAPPED_EXCEPTIONS: tuple[type[BaseException], ...] = (
    Web3Exception,
    aiohttp.ClientError,
    asyncio.TimeoutError,
    OSError,
)

# (fragment of a lower-cased node message, error class), first match wins.
_MESSAGE_MAP: tuple[tuple[str, type[KeeperError]], ...] = (
    ("nonce too low", NonceTooLow),
    ("nonce is too low", NonceTooLow),
    ("already known", AlreadyKnown),
    ("known transaction", AlreadyKnown),
    ("already imported", AlreadyKnown),  # anvil
    ("insufficient funds", InsufficientFunds),  # gas * price + value exceeds the balance
    ("underpriced", Underpriced),  # replacement / transaction underpriced
    ("less than block base fee", Underpriced),  # geth: max fee per gas < base fee
    ("timeout", RpcTimeout),
    ("timed out", RpcTimeout),
    ("header not found", RpcError),  # node behind the block asked for
    ("indexing", RpcError),  # transaction indexing is in progress
    ("rate limit", RpcError),
    ("too many requests", RpcError),
    ("try again", RpcError),
    ("temporarily unavailable", RpcError),
)
_OUT_OF_GAS = ("out of gas", "gas required exceeds", "exceeds block gas limit")
_TRANSIENT_CODES = frozenset({-32005, 429, 502, 503, 504})  # limit exceeded, HTTP-ish


@dataclass(frozen=True)
class RetryPolicy:
    """A bounded retry policy: at most ``attempts`` tries within ``max_seconds``."""

    attempts: int = 5
    max_seconds: float = 20.0
    initial_wait: float = 0.1
    max_wait: float = 2.0
    retry_on: tuple[type[RetryableError], ...] = (RetryableError,)

    def retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            retry=retry_if_exception_type(self.retry_on),
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.max_seconds),
            wait=wait_random_exponential(multiplier=self.initial_wait, max=self.max_wait),
            reraise=True,
        )

    async def call(self, op: Callable[[], Awaitable[T]], what: str = "") -> T:
        """Await ``op()``, mapping failures with ``classify`` and retrying retryable ones."""
        result: T = await self.retrying()(guarded, op, what)
        return result


READ_POLICY = RetryPolicy()
# Broadcasting the same signed bytes again is safe, but only a transport failure is worth
# it: the node's verdict on the transaction (nonce too low, underpriced) will not change.
BROADCAST_POLICY = RetryPolicy(attempts=3, max_seconds=10.0, retry_on=(RpcError,))


def quote_retry(attempts: int) -> RetryPolicy:
    """Quotes are fetched every block: a few quick tries, then the next source or block."""
    return RetryPolicy(attempts=attempts, max_seconds=5.0, initial_wait=0.05, max_wait=0.5)


async def guarded(op: Callable[[], Awaitable[T]], what: str = "") -> T:
    """Await ``op()``; a web3/aiohttp/socket failure comes out as a ``KeeperError``."""
    try:
        return await op()
    except KeeperError:
        raise
    except MAPPED_EXCEPTIONS as exc:
        raise classify(exc, what) from exc


def classify(exc: BaseException, what: str = "") -> KeeperError:
    """The keeper error for a web3 / aiohttp / JSON-RPC failure (see the module docstring)."""
    prefix = f"{what}: " if what else ""
    if isinstance(exc, KeeperError):
        return exc
    if isinstance(exc, ContractLogicError):
        return reverted(_data_bytes(exc.data), str(exc.message or ""))
    if isinstance(exc, RequestTimedOut | TimeExhausted | asyncio.TimeoutError):
        return RpcTimeout(f"{prefix}{type(exc).__name__}: {exc}")
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return RpcTimeout(f"{prefix}{exc}")
    if isinstance(exc, Web3RPCError):
        return _classify_rpc_error(exc, prefix)
    if isinstance(exc, ProviderConnectionError | TooManyRequests | BadResponseFormat):
        return RpcError(f"{prefix}{type(exc).__name__}: {exc}")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return RpcError(f"{prefix}{type(exc).__name__}: {exc}")
    return FatalError(f"{prefix}{type(exc).__name__}: {exc}")


def classify_message(
    message: str,
    code: int | None = None,
    data: bytes = b"",
    prefix: str = "",
) -> KeeperError:
    """The keeper error for a JSON-RPC ``error`` object (message, code, data)."""
    lowered = message.lower()
    if any(f in lowered for f in _OUT_OF_GAS):
        return OutOfGas(f"{prefix}{message}")
    if "revert" in lowered:
        return reverted(data, message)
    for fragment, error_class in _MESSAGE_MAP:
        if fragment in lowered:
            return error_class(f"{prefix}{message}")
    if code in _TRANSIENT_CODES:
        return RpcError(f"{prefix}{message} (code {code})")
    return FatalError(f"{prefix}node refused: {message}" + (f" (code {code})" if code else ""))


def _classify_rpc_error(exc: Web3RPCError, prefix: str) -> KeeperError:
    error: Any = (exc.rpc_response or {}).get("error")
    if isinstance(error, Mapping):
        message = str(error.get("message", exc.message))
        code = error.get("code")
        return classify_message(
            message,
            code if isinstance(code, int) else None,
            _data_bytes(error.get("data")),
            prefix,
        )
    return classify_message(str(exc.message), None, b"", prefix)


def _data_bytes(data: Any) -> bytes:
    """Revert data from the shapes nodes use: hex string, ``{"data": hex}``, bytes, None."""
    if isinstance(data, Mapping):
        data = data.get("data") or data.get("result")
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if isinstance(data, str):
        text = data.removeprefix("Reverted ").strip()
        if text.startswith("0x"):
            try:
                return bytes.fromhex(text[2:])
            except ValueError:
                return b""
    return b""


def reverted(data: bytes, message: str = "") -> SimulationReverted:
    """``SimulationReverted`` for revert ``data``; the node's message is used when there is none."""
    reason = decode_revert(data) if data else (message or decode_revert(data))
    return SimulationReverted(reason, data)
