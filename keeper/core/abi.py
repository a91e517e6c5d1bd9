"""ABI encoding and decoding of every contract call the keeper makes (pure, eth-abi only).

Nothing here spells a signature: selectors, topics, custom errors and struct layouts are
derived from the compiled ABIs shipped in :mod:`keeper.contracts` (``ape compile`` of
``contracts/interfaces/*.sol`` and the Uniswap V3 npm artifacts). Structs are encoded from
and decoded into the keeper's dataclasses by field name: the ABI's ``camelCase`` component
names map to the dataclasses' ``snake_case`` fields, so a layout change in Solidity is a
decoding error in a unit test, never a silent misread. Nothing in this module talks to a node.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from functools import cache, cached_property
from typing import Any

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from keeper.contracts import load_abi
from keeper.core.abicodec import Codec, checksum, compile_params, compile_types, snake
from keeper.core.types import (
    Guards,
    HotState,
    NetSwap,
    OptionLeg,
    OracleRound,
    PolicyKind,
    SettleLeg,
    Trade,
    VaultParams,
    VaultState,
)
from keeper.errors import DecodeError, FatalError

AbiParam = Mapping[str, Any]

# --- types and names from the ABI ----------------------------------------------------------


def abi_type(param: AbiParam) -> str:
    """The canonical type of an ABI parameter (tuples spelled out from their components)."""
    kind = str(param["type"])
    if not kind.startswith("tuple"):
        return kind
    inner = ",".join(abi_type(c) for c in param["components"])
    return f"({inner}){kind[len('tuple') :]}"


def _decode(types: Sequence[str], data: bytes, what: str) -> tuple[Any, ...]:
    value = compile_types(tuple(types)).decode_all(bytes(data), what)
    assert isinstance(value, tuple)
    return value


Convert = Callable[[Any], Any]


def to_abi(param: AbiParam, value: Any) -> Any:
    """A Python value in the shape eth-abi encodes for ``param``: structs from dataclasses or
    mappings by component name, arrays element-wise, addresses checksummed."""
    return _to_abi_converter(param)(value)


def _to_abi_converter(param: AbiParam) -> Convert:
    """:func:`to_abi` for ``param``, with the ABI walked once (the result is reused for every
    value: encoding a 64-leg settlement walks no ABI)."""
    kind = str(param["type"])
    if kind.endswith("]"):
        each = _to_abi_converter({**param, "type": kind[: kind.rindex("[")]})
        return lambda value: [each(v) for v in value]
    if kind == "tuple":
        parts = [
            (snake(str(c["name"])), str(c["name"]), _to_abi_converter(c))
            for c in param["components"]
        ]
        return lambda value: tuple(conv(_field(value, key, name)) for key, name, conv in parts)
    if kind == "address":
        return checksum
    return _same


def _same(value: Any) -> Any:
    return value


def _field(value: Any, key: str, name: str) -> Any:
    if isinstance(value, Mapping):
        return value[key] if key in value else value[name]
    if is_dataclass(value):
        return getattr(value, key)
    raise FatalError(f"cannot take struct field {name!r} from {type(value).__name__}")


def from_abi(param: AbiParam, value: Any) -> Any:
    """A decoded value with every struct as a ``dict`` keyed by snake_case field name."""
    return _from_abi_converter(param)(value)


def _from_abi_converter(param: AbiParam) -> Convert:
    kind = str(param["type"])
    if kind.endswith("]"):
        each = _from_abi_converter({**param, "type": kind[: kind.rindex("[")]})
        return lambda value: [each(v) for v in value]
    if kind == "tuple":
        parts = [(snake(str(c["name"])), _from_abi_converter(c)) for c in param["components"]]
        return lambda value: {key: conv(v) for (key, conv), v in zip(parts, value, strict=True)}
    if kind == "address":
        return checksum
    return _same


class _Signed:
    """A named ABI entry with inputs: its canonical signature and its 4-byte selector
    (computed once per entry)."""

    name: str
    inputs: tuple[AbiParam, ...]

    @cached_property
    def input_types(self) -> list[str]:
        return [abi_type(p) for p in self.inputs]

    @cached_property
    def signature(self) -> str:
        return f"{self.name}({','.join(self.input_types)})"

    @cached_property
    def selector(self) -> bytes:
        return keccak(text=self.signature)[:4]


@dataclass(frozen=True)
class Function(_Signed):
    """One function of a shipped ABI."""

    contract: str
    name: str
    inputs: tuple[AbiParam, ...]
    outputs: tuple[AbiParam, ...]

    def encode(self, *args: Any) -> bytes:
        """Calldata: selector + arguments (structs from dataclasses by field name)."""
        if len(args) != len(self.inputs):
            raise FatalError(f"{self.signature} takes {len(self.inputs)} arguments")
        try:
            return self.selector + self._inputs_codec.encode(args)
        except FatalError as exc:
            raise FatalError(f"cannot encode {self.signature}: {exc}") from exc

    def decode(self, data: bytes) -> tuple[Any, ...]:
        """Return data, structs as snake_case dicts."""
        value = self._outputs_codec.decode_all(bytes(data), f"{self.contract}.{self.name}")
        assert isinstance(value, tuple)
        return value

    @cached_property
    def _inputs_codec(self) -> Codec:
        return compile_params(self.inputs)

    @cached_property
    def _outputs_codec(self) -> Codec:
        return compile_params(self.outputs)


@dataclass(frozen=True)
class Event:
    contract: str
    name: str
    inputs: tuple[AbiParam, ...]

    @property
    def topic(self) -> str:
        """topic 0, 0x-hex."""
        sig = f"{self.name}({','.join(abi_type(p) for p in self.inputs)})"
        return "0x" + keccak(text=sig).hex()

    def decode_data(self, data: bytes) -> dict[str, Any]:
        """The non-indexed fields, by snake_case name."""
        values = self._data_codec.decode_all(bytes(data), f"{self.contract}.{self.name} data")
        return {snake(str(p["name"])): v for p, v in zip(self._plain, values, strict=True)}

    @cached_property
    def _plain(self) -> list[AbiParam]:
        return [p for p in self.inputs if not p.get("indexed")]

    @cached_property
    def _data_codec(self) -> Codec:
        return compile_params(self._plain)


def _entries(contract: str, kind: str, name: str) -> list[Mapping[str, Any]]:
    return [e for e in load_abi(contract) if e.get("type") == kind and e.get("name") == name]


@cache
def function(contract: str, name: str, arity: int | None = None) -> Function:
    """The function ``name`` of ``contract`` (``arity`` picks among overloads)."""
    found = [
        e
        for e in _entries(contract, "function", name)
        if arity is None or len(e["inputs"]) == arity
    ]
    if len(found) != 1:
        raise FatalError(f"{contract} has {len(found)} functions {name!r} (arity {arity})")
    e = found[0]
    return Function(contract, name, tuple(e["inputs"]), tuple(e.get("outputs", ())))


@cache
def event(contract: str, name: str) -> Event:
    found = _entries(contract, "event", name)
    if len(found) != 1:
        raise FatalError(f"{contract} has {len(found)} events {name!r}")
    return Event(contract, name, tuple(found[0]["inputs"]))


def topic_address(topic: bytes | str) -> str:
    """The address held in an indexed event topic."""
    raw = bytes.fromhex(topic[2:]) if isinstance(topic, str) else bytes(topic)
    return to_checksum_address(raw[-20:])


def topic_uint(topic: bytes | str) -> int:
    raw = bytes.fromhex(topic[2:]) if isinstance(topic, str) else bytes(topic)
    return int.from_bytes(raw, "big")


def decode_uint(data: bytes, what: str) -> int:
    (value,) = _decode(["uint256"], data, what)
    assert isinstance(value, int)
    return value


# --- OptionsVault.getState ---------------------------------------------------------------

VAULT = "IOptionsVault"
GET_STATE = function(VAULT, "getState").selector


def decode_vault_state(vault: str, data: bytes) -> VaultState:
    """Decode ``IOptionsVault.getState()`` return data (layout from the ABI)."""
    (raw,) = function(VAULT, "getState").decode(data)
    try:
        return _vault_state(vault, raw)
    except (KeyError, TypeError) as exc:
        raise DecodeError(f"getState of {vault} does not match VaultState: {exc}") from exc


def _vault_state(vault: str, s: dict[str, Any]) -> VaultState:
    p = dict(s["params"])
    try:
        p["policy"] = PolicyKind(p["policy"])
    except ValueError as exc:
        raise DecodeError(f"vault {vault} has unknown policy id {p['policy']}") from exc
    rnd = s["oracle"]
    return VaultState(
        address=checksum(vault),
        params=VaultParams(**p),
        guards=Guards(**s["guards"]),
        book=tuple(OptionLeg(**leg) for leg in s["book"]),
        oracle=OracleRound(decimals=s["oracle_decimals"], **rnd),
        **{k: s[k] for k in _PLAIN_STATE_FIELDS},
    )


GET_HOT_STATE = function(VAULT, "getHotState").selector


def decode_hot_state(vault: str, data: bytes) -> HotState:
    """Decode ``IOptionsVault.getHotState()`` return data (layout from the ABI)."""
    (raw,) = function(VAULT, "getHotState").decode(data)
    try:
        rnd = raw["oracle"]
        return HotState(
            oracle_round_id=rnd["round_id"],
            oracle_answer=rnd["answer"],
            oracle_updated_at=rnd["updated_at"],
            oracle_ok=rnd["ok"],
            **{k: raw[k] for k in _PLAIN_HOT_FIELDS},
        )
    except (KeyError, TypeError) as exc:
        raise DecodeError(f"getHotState of {vault} does not match HotState: {exc}") from exc


_PLAIN_HOT_FIELDS = tuple(f.name for f in fields(HotState) if not f.name.startswith("oracle_"))
_PLAIN_STATE_FIELDS = tuple(
    f.name
    for f in fields(VaultState)
    if f.name not in ("address", "params", "guards", "book", "oracle")
)


# --- Multicall3 -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Call3:
    target: str
    call_data: bytes
    allow_failure: bool = True


@dataclass(frozen=True)
class CallResult:
    success: bool
    return_data: bytes


MULTICALL = "Multicall3"
_AGGREGATE3 = function(MULTICALL, "aggregate3")
GET_BASEFEE = function(MULTICALL, "getBasefee").selector
GET_BLOCK_TIMESTAMP = function(MULTICALL, "getCurrentBlockTimestamp").selector


def encode_aggregate3(calls: Sequence[Call3]) -> bytes:
    """Calldata of ``Multicall3.aggregate3``."""
    items = [
        {"target": c.target, "allowFailure": c.allow_failure, "callData": c.call_data}
        for c in calls
    ]
    return _AGGREGATE3.encode(items)


def decode_aggregate3(data: bytes) -> list[CallResult]:
    (results,) = _AGGREGATE3.decode(data)
    return [CallResult(success=r["success"], return_data=r["return_data"]) for r in results]


GET_STATE_GAS_BASE = 60_000  # measured on v1: getState() of a vault with no legs
GET_STATE_GAS_PER_LEG = 9_000  # measured on v1: each leg of the book
GET_HOT_STATE_GAS = 50_000  # getHotState() of a world vault, every account cold (measured: 41k)


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


# --- VaultRegistry and vault events -------------------------------------------------------

REGISTRY = "VaultRegistry"
REGISTRY_VAULTS = function(REGISTRY, "vaults").selector
REGISTRY_VERSION = function(REGISTRY, "version").selector
VAULT_ADDED_TOPIC = event(REGISTRY, "VaultAdded").topic
VAULT_REMOVED_TOPIC = event(REGISTRY, "VaultRemoved").topic
REBALANCE_REQUESTED_TOPIC = event(VAULT, "RebalanceRequested").topic
PARAMS_UPDATED_TOPIC = event(VAULT, "ParamsUpdated").topic
TRADED = event(VAULT, "Traded")
TRADED_TOPIC = TRADED.topic


def decode_address_list(data: bytes) -> tuple[str, ...]:
    (addrs,) = _decode(["address[]"], data, "address list")
    return tuple(to_checksum_address(a) for a in addrs)  # type: ignore[attr-defined]


# --- trades ---------------------------------------------------------------------------------

SETTLEMENT = "ISettlement"
_REBALANCE = function(VAULT, "rebalance")
_SETTLE = function(SETTLEMENT, "settle")
SETTLED = event(SETTLEMENT, "Settled")
LEG_SETTLED = event(SETTLEMENT, "LegSettled")


def encode_vault_rebalance(trade: Trade, router: str, swap_data: bytes) -> bytes:
    """Calldata of ``IOptionsVault.rebalance(trade, router, swapData)`` (one vault, direct)."""
    return _REBALANCE.encode(trade, router, swap_data)


def encode_settle(legs: Sequence[SettleLeg], net: NetSwap) -> bytes:
    """Calldata of ``ISettlement.settle(legs, net)``."""
    return _SETTLE.encode(list(legs), net)


# --- revert data ----------------------------------------------------------------------------

# The two errors the Solidity language itself defines (not part of any contract's ABI).
_BUILTIN_ERRORS: tuple[Mapping[str, Any], ...] = (
    {"type": "error", "name": "Error", "inputs": [{"name": "message", "type": "string"}]},
    {"type": "error", "name": "Panic", "inputs": [{"name": "code", "type": "uint256"}]},
)
ERROR_CONTRACTS = ("OptionsVault", "BookSettlement", VAULT, SETTLEMENT, REGISTRY)


@dataclass(frozen=True)
class ContractError(_Signed):
    name: str
    inputs: tuple[AbiParam, ...]


@cache
def errors_by_selector() -> dict[bytes, ContractError]:
    """Every custom error of the vault, the settlement and the registry (OpenZeppelin's they
    inherit included), plus Error/Panic."""
    entries = [*_BUILTIN_ERRORS]
    for contract in ERROR_CONTRACTS:
        entries += [e for e in load_abi(contract) if e.get("type") == "error"]
    errs = (ContractError(str(e["name"]), tuple(e["inputs"])) for e in entries)
    return {e.selector: e for e in errs}


def error_selector(name: str) -> bytes:
    """The selector of the error ``name`` (``FatalError`` if no shipped ABI defines it)."""
    for sel, err in errors_by_selector().items():
        if err.name == name:
            return sel
    raise FatalError(f"no shipped ABI defines the error {name}")


def error_name(data: bytes) -> str | None:
    """The name of the error in revert data, if it is one of ours."""
    err = errors_by_selector().get(bytes(data[:4]))
    return None if err is None else err.name


def error_addresses(data: bytes) -> tuple[str, ...]:
    """The address arguments of one of our custom errors (e.g. the vault ``NotRegistered``
    names); empty for anything else or undecodable data."""
    err = errors_by_selector().get(bytes(data[:4]))
    if err is None:
        return ()
    try:
        args = _decode([abi_type(p) for p in err.inputs], bytes(data[4:]), err.signature)
    except DecodeError:
        return ()
    return tuple(
        to_checksum_address(a)
        for p, a in zip(err.inputs, args, strict=True)
        if p["type"] == "address"
    )


def decode_revert(data: bytes) -> str:
    """A readable reason for revert data: Error(string), Panic(uint256) or one of our custom
    errors with its arguments (``SwapFailed`` / ``NetSwapFailed`` show the router's reason)."""
    if not data:
        return "execution reverted without data"
    try:
        return _revert_reason(bytes(data))
    except DecodeError:
        return f"undecodable revert data 0x{bytes(data).hex()}"


def _revert_reason(data: bytes) -> str:
    err = errors_by_selector().get(data[:4])
    body = data[4:]
    if err is None:
        return f"custom error 0x{data[:4].hex()}" + (f" with data 0x{body.hex()}" if body else "")
    args = _decode([abi_type(p) for p in err.inputs], body, err.signature)
    if err.name == "Error":
        return str(args[0])
    if err.name == "Panic":
        return f"Panic(0x{args[0]:02x})"
    if err.name in ("SwapFailed", "NetSwapFailed"):
        return f"{err.name}({decode_revert(bytes(args[0]))})"
    shown = ", ".join("0x" + a.hex() if isinstance(a, bytes) else str(a) for a in args)
    return f"{err.name}({shown})"
