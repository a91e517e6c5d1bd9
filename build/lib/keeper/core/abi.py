"""ABI encoding and decoding of every contract call the keeper makes (pure, eth-abi only).

The struct layouts mirror ``contracts/OptionsVault.sol`` and ``docs/interfaces.md``; a
change there is a change here. Nothing in this module talks to a node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode, encode
from eth_abi.exceptions import DecodingError
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from keeper.core.types import OptionLeg, OracleRound, PolicyKind, VaultParams, VaultState
from keeper.errors import DecodeError


def selector(signature: str) -> bytes:
    """The 4-byte function selector of a canonical signature."""
    return keccak(text=signature)[:4]


def event_topic(signature: str) -> str:
    """The topic-0 hash of a canonical event signature, 0x-hex."""
    return "0x" + keccak(text=signature).hex()


def _decode(types: Sequence[str], data: bytes, what: str) -> tuple[Any, ...]:
    try:
        return tuple(decode(list(types), data))
    except (DecodingError, OverflowError, ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"cannot decode {what}: {exc}") from exc


# --- OptionsVault.getState -----------------------------------------------------

_PARAMS = (
    "(uint256,int256,int256,uint256,uint256,uint256,uint8,uint256,uint16,uint256,uint64,uint64)"
)
_LEG = "(uint256,uint64,int256,bool)"
_ROUND = "(uint80,int256,uint256,bool)"
VAULT_STATE_TYPE = (
    f"(uint256,uint256,{_PARAMS},{_LEG}[],{_ROUND},uint8,bool,uint64,uint64,uint64,uint256,uint64)"
)
GET_STATE = selector("getState()")


def decode_vault_state(vault: str, data: bytes) -> VaultState:
    """Decode ``OptionsVault.getState()`` return data."""
    (raw,) = _decode([VAULT_STATE_TYPE], data, f"getState of {vault}")
    (quote_bal, underlying_bal, p, book, rnd, decimals, paused, req, ver, last, used, wstart) = raw  # type: ignore[misc]
    try:
        policy = PolicyKind(p[6])
    except ValueError as exc:
        raise DecodeError(f"vault {vault} has unknown policy id {p[6]}") from exc
    params = VaultParams(
        implied_vol_wad=p[0],
        risk_free_rate_wad=p[1],
        target_delta_wad=p[2],
        band_floor_wad=p[3],
        hard_limit_wad=p[4],
        risk_aversion_wad=p[5],
        policy=policy,
        policy_param=p[7],
        max_slippage_bps=p[8],
        notional_cap_per_window=p[9],
        window_seconds=p[10],
        oracle_heartbeat=p[11],
    )
    legs = tuple(OptionLeg(strike=s, expiry=e, size=z, is_call=c) for (s, e, z, c) in book)
    oracle = OracleRound(
        round_id=rnd[0], answer=rnd[1], updated_at=rnd[2], decimals=decimals, ok=rnd[3]
    )
    return VaultState(
        address=to_checksum_address(vault),
        quote_balance=quote_bal,
        underlying_balance=underlying_bal,
        params=params,
        book=legs,
        oracle=oracle,
        paused=paused,
        request_nonce=req,
        params_version=ver,
        last_rebalance_at=last,
        window_notional_used=used,
        window_start=wstart,
    )


def vault_params_tuple(p: VaultParams) -> tuple[int, ...]:
    """``VaultParams`` as the on-chain struct's fields, in order (the inverse of the params
    part of ``decode_vault_state``)."""
    return (
        p.implied_vol_wad,
        p.risk_free_rate_wad,
        p.target_delta_wad,
        p.band_floor_wad,
        p.hard_limit_wad,
        p.risk_aversion_wad,
        int(p.policy),
        p.policy_param,
        p.max_slippage_bps,
        p.notional_cap_per_window,
        p.window_seconds,
        p.oracle_heartbeat,
    )


def encode_vault_constructor(
    governance: str, quote: str, underlying: str, feed: str, params: VaultParams
) -> bytes:
    """ABI-encoded arguments of ``OptionsVault``'s constructor (to append to its bytecode)."""
    return encode(
        ["address", "address", "address", "address", _PARAMS],
        [
            to_checksum_address(governance),
            to_checksum_address(quote),
            to_checksum_address(underlying),
            to_checksum_address(feed),
            vault_params_tuple(params),
        ],
    )


# --- Multicall3 ------------------------------------------------------------------


@dataclass(frozen=True)
class Call3:
    target: str
    call_data: bytes
    allow_failure: bool = True


@dataclass(frozen=True)
class CallResult:
    success: bool
    return_data: bytes


AGGREGATE3 = selector("aggregate3((address,bool,bytes)[])")
GET_BASEFEE = selector("getBasefee()")
GET_BLOCK_TIMESTAMP = selector("getCurrentBlockTimestamp()")


def encode_aggregate3(calls: Sequence[Call3]) -> bytes:
    """Calldata of ``Multicall3.aggregate3``."""
    items = [(to_checksum_address(c.target), c.allow_failure, c.call_data) for c in calls]
    return AGGREGATE3 + encode(["(address,bool,bytes)[]"], [items])


GET_STATE_GAS_BASE = 60_000  # measured: getState() of a vault with no legs, no intrinsic gas
GET_STATE_GAS_PER_LEG = 9_000  # measured: each leg of the book


def get_state_gas(legs: int) -> int:
    """Expected gas of one vault's getState() sub-call (eth_estimateGas on the world's vaults)."""
    return GET_STATE_GAS_BASE + GET_STATE_GAS_PER_LEG * legs


def plan_chunks(gas: Sequence[int], max_calls: int, gas_budget: int) -> list[range]:
    """Consecutive index ranges of at most ``max_calls`` calls and ``gas_budget`` gas each
    (a single call above the budget still gets a chunk of its own)."""
    chunks: list[range] = []
    start, used = 0, 0
    for i, g in enumerate(gas):
        if i > start and (i - start >= max_calls or used + g > gas_budget):
            chunks.append(range(start, i))
            start, used = i, 0
        used += g
    if start < len(gas):
        chunks.append(range(start, len(gas)))
    return chunks


def decode_aggregate3(data: bytes) -> list[CallResult]:
    (results,) = _decode(["(bool,bytes)[]"], data, "aggregate3 results")
    return [CallResult(success=ok, return_data=ret) for ok, ret in results]  # type: ignore[attr-defined]


def decode_uint(data: bytes, what: str) -> int:
    (value,) = _decode(["uint256"], data, what)
    assert isinstance(value, int)
    return value


# --- VaultRegistry -----------------------------------------------------------------

REGISTRY_VAULTS = selector("vaults()")
REGISTRY_VERSION = selector("version()")
VAULT_ADDED_TOPIC = event_topic("VaultAdded(address)")
VAULT_REMOVED_TOPIC = event_topic("VaultRemoved(address)")
REBALANCE_REQUESTED_TOPIC = event_topic("RebalanceRequested(uint64,address)")
PARAMS_UPDATED_TOPIC = event_topic("ParamsUpdated(uint64)")


def decode_address_list(data: bytes) -> tuple[str, ...]:
    (addrs,) = _decode(["address[]"], data, "address list")
    return tuple(to_checksum_address(a) for a in addrs)  # type: ignore[attr-defined]


def topic_address(topic: bytes | str) -> str:
    """The address held in an indexed event topic."""
    raw = bytes.fromhex(topic[2:]) if isinstance(topic, str) else bytes(topic)
    return to_checksum_address(raw[-20:])


# --- rebalancing -------------------------------------------------------------------


@dataclass(frozen=True)
class RebalanceLeg:
    """One vault's swap in a batch: what the vault sells, how much, and through which router."""

    vault: str
    sell_underlying: bool
    amount_in: int
    min_out: int
    router: str
    swap_data: bytes


BATCH_EXECUTE = selector("execute((address,bool,uint256,uint256,address,bytes)[],uint256)")
VAULT_REBALANCE = selector("rebalance(bool,uint256,uint256,address,bytes,uint256)")


def encode_batch_execute(legs: Sequence[RebalanceLeg], deadline: int) -> bytes:
    """Calldata of ``RebalanceBatcher.execute(legs, deadline)``."""
    items = [
        (
            to_checksum_address(x.vault),
            x.sell_underlying,
            x.amount_in,
            x.min_out,
            to_checksum_address(x.router),
            x.swap_data,
        )
        for x in legs
    ]
    return BATCH_EXECUTE + encode(
        ["(address,bool,uint256,uint256,address,bytes)[]", "uint256"], [items, deadline]
    )


def encode_vault_rebalance(leg: RebalanceLeg, deadline: int) -> bytes:
    """Calldata of ``OptionsVault.rebalance`` for a direct (unbatched) call."""
    return VAULT_REBALANCE + encode(
        ["bool", "uint256", "uint256", "address", "bytes", "uint256"],
        [
            leg.sell_underlying,
            leg.amount_in,
            leg.min_out,
            to_checksum_address(leg.router),
            leg.swap_data,
            deadline,
        ],
    )


LEG_EXECUTED_TOPIC = event_topic("LegExecuted(uint256,address,uint256)")
LEG_FAILED_TOPIC = event_topic("LegFailed(uint256,address,bytes)")
REBALANCED_TOPIC = event_topic("Rebalanced(address,bool,uint256,uint256,address)")


# --- revert data -------------------------------------------------------------------

ERROR_STRING = selector("Error(string)")
PANIC = selector("Panic(uint256)")

CONTRACT_ERRORS = (  # the custom errors of OptionsVault, RebalanceBatcher and VaultRegistry
    "AmountTooLarge(uint256,uint256)",
    "DeadlineExpired(uint256,uint256)",
    "IndexOutOfRange(uint256,uint256)",
    "InsufficientOutput(uint256,uint256)",
    "InvalidDecimals(uint8)",
    "InvalidOption()",
    "InvalidParams(string)",
    "NotGovernance(address)",
    "NotKeeper(address)",
    "NotionalCapExceeded(uint256,uint256,uint256)",
    "OracleAnswerTooLarge(int256)",
    "OracleCallFailed(address)",
    "OracleNonPositive(int256)",
    "OracleStale(uint256,uint64,uint256)",
    "Overspent(uint256,uint256)",
    "Reentrancy()",
    "RouterNotAllowed(address)",
    "SwapFailed(bytes)",
    "TokenCallFailed(address,bytes4)",
    "VaultNotPaused()",
    "VaultPaused()",
    "ZeroAddress()",
    "ZeroAmount()",
    "BadVaultResponse(address)",
    "NotOperator(address)",
    "NotOwner(address)",
    "AlreadyRegistered(address)",
    "NotRegistered(address)",
)
_ERRORS_BY_SELECTOR = {selector(sig): sig for sig in CONTRACT_ERRORS}


def decode_revert(data: bytes) -> str:
    """A readable reason for revert data: Error(string), Panic(uint256) or one of our custom
    errors with its arguments (``SwapFailed`` shows the router's own reason)."""
    if not data:
        return "execution reverted without data"
    try:
        return _revert_reason(data)
    except DecodeError:
        return f"undecodable revert data 0x{data.hex()}"


def _revert_reason(data: bytes) -> str:
    head, body = data[:4], data[4:]
    if head == ERROR_STRING:
        (msg,) = _decode(["string"], body, "Error(string)")
        return str(msg)
    if head == PANIC:
        (code,) = _decode(["uint256"], body, "Panic(uint256)")
        return f"Panic(0x{code:02x})"
    signature = _ERRORS_BY_SELECTOR.get(head)
    if signature is None:
        return f"custom error 0x{head.hex()}" + (f" with data 0x{body.hex()}" if body else "")
    name, types = signature[:-1].split("(", 1)
    args = _decode([t for t in types.split(",") if t], body, signature) if types else ()
    if name == "SwapFailed":
        return f"SwapFailed({decode_revert(bytes(args[0]))})"
    shown = ", ".join("0x" + a.hex() if isinstance(a, bytes) else str(a) for a in args)
    return f"{name}({shown})"
