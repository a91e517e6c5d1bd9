"""The error map and retry policies of keeper.chain.retry (no node needed)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from eth_abi.abi import encode
from eth_utils.crypto import keccak
from web3.exceptions import ContractLogicError, TimeExhausted, Web3RPCError

from keeper.chain.retry import RetryPolicy, classify, classify_message, decode_revert
from keeper.errors import (
    AlreadyKnown,
    FatalError,
    InsufficientFunds,
    NonceTooLow,
    RetryableError,
    RpcError,
    RpcTimeout,
    SimulationReverted,
    Underpriced,
)

ERROR_STRING = bytes.fromhex("08c379a0") + encode(["string"], ["slippage too high"])
PANIC_OVERFLOW = bytes.fromhex("4e487b71") + (0x11).to_bytes(32, "big")
CUSTOM = bytes.fromhex("deadbeef") + (7).to_bytes(32, "big")


def test_decode_revert_reasons() -> None:
    assert decode_revert(ERROR_STRING) == "slippage too high"
    assert decode_revert(PANIC_OVERFLOW) == "Panic(0x11)"
    assert decode_revert(CUSTOM) == "custom error 0xdeadbeef with data 0x" + "00" * 31 + "07"
    stale = keccak(text="OracleStale(uint256,uint64,uint256)")[:4] + bytes(96)
    named = decode_revert(stale)
    assert named == "OracleStale(0, 0, 0)"
    assert decode_revert(b"") == "execution reverted without data"
    assert decode_revert(bytes.fromhex("08c379a0") + b"\x01\x02").startswith("undecodable revert")


@pytest.mark.parametrize(
    ("message", "code", "expected"),
    [
        ("nonce too low", -32000, NonceTooLow),
        ("nonce too low: next nonce 5, tx nonce 3", -32000, NonceTooLow),
        ("already known", -32000, AlreadyKnown),
        ("known transaction: 0xabc", -32010, AlreadyKnown),
        ("transaction already imported", -32003, AlreadyKnown),
        ("replacement transaction underpriced", -32000, Underpriced),
        ("transaction underpriced", -32000, Underpriced),
        ("max fee per gas less than block base fee", -32000, Underpriced),
        ("request timed out", None, RpcTimeout),
        ("header not found", -32000, RpcError),
        ("daily request count exceeded, request rate limited", -32005, RpcError),
        ("something odd", -32005, RpcError),
        ("Insufficient funds for gas * price + value", -32003, InsufficientFunds),
        ("invalid sender", -32000, FatalError),
    ],
)
def test_node_messages_map_to_the_error_tree(
    message: str, code: int | None, expected: type[Exception]
) -> None:
    error = classify_message(message, code)
    assert type(error) is expected
    assert message in str(error)


def test_transport_failures_are_retryable_and_node_verdicts_are_not() -> None:
    assert isinstance(classify_message("header not found"), RetryableError)
    assert not isinstance(classify_message("insufficient funds"), RetryableError)


def test_a_revert_message_carries_the_decoded_reason() -> None:
    error = classify_message("execution reverted", 3, ERROR_STRING)
    assert isinstance(error, SimulationReverted)
    assert error.reason == "slippage too high" and error.data == ERROR_STRING
    bare = classify_message("execution reverted: not keeper", 3, b"")
    assert isinstance(bare, SimulationReverted) and bare.reason == "execution reverted: not keeper"


def test_classify_web3_and_transport_exceptions() -> None:
    rpc = Web3RPCError(
        "{'code': -32003, 'message': 'nonce too low'}",
        rpc_response={
            "jsonrpc": "2.0",
            "id": 1,
            "error": {"code": -32003, "message": "nonce too low"},
        },
    )
    assert isinstance(classify(rpc), NonceTooLow)
    custom = classify(ContractLogicError("execution reverted", data="0x" + CUSTOM.hex()))
    assert isinstance(custom, SimulationReverted) and custom.data == CUSTOM
    wrapped = {"data": "0x" + ERROR_STRING.hex()}
    nested = classify(ContractLogicError("execution reverted", data=wrapped))
    assert isinstance(nested, SimulationReverted) and nested.reason == "slippage too high"
    assert isinstance(classify(TimeExhausted("no receipt")), RpcTimeout)
    assert isinstance(classify(TimeoutError()), RpcTimeout)
    assert isinstance(classify(aiohttp.ServerTimeoutError("slow")), RpcTimeout)
    assert isinstance(classify(ConnectionRefusedError(111, "refused")), RpcError)
    assert isinstance(classify(aiohttp.ClientPayloadError("cut")), RpcError)


def test_policy_retries_retryable_errors_until_success() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionResetError("reset by peer")  # mapped to RpcError, retried
        return "ok"

    policy = RetryPolicy(attempts=5, initial_wait=0.001, max_wait=0.002)
    assert asyncio.run(policy.call(flaky)) == "ok"
    assert calls == 3


def test_policy_gives_up_after_its_attempts() -> None:
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise RpcTimeout("no answer")

    with pytest.raises(RpcTimeout):
        asyncio.run(RetryPolicy(attempts=4, initial_wait=0.001, max_wait=0.002).call(down))
    assert calls == 4


@pytest.mark.parametrize(
    ("error", "retry_on"),
    [
        (FatalError("insufficient funds"), (RetryableError,)),
        (SimulationReverted("paused"), (RetryableError,)),
        (NonceTooLow("nonce too low"), (RpcError,)),  # the broadcast policy's choice
    ],
)
def test_policy_does_not_retry_what_it_must_not(
    error: Exception, retry_on: tuple[type[RetryableError], ...]
) -> None:
    calls = 0

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise error

    policy = RetryPolicy(attempts=5, initial_wait=0.001, max_wait=0.002, retry_on=retry_on)
    with pytest.raises(type(error)):
        asyncio.run(policy.call(refused))
    assert calls == 1


def test_policy_is_bounded_in_time() -> None:
    calls = 0

    async def slow_failure() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        raise RpcError("down")

    policy = RetryPolicy(attempts=1000, max_seconds=0.1, initial_wait=0.001, max_wait=0.002)
    with pytest.raises(RpcError):
        asyncio.run(policy.call(slow_failure))
    assert 2 <= calls < 20
