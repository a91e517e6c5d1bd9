"""keeper.core.abicodec against eth-abi (the reference): same bytes out, same values back, and
the same refusals of malformed data, on random values of every shape the shipped ABIs use."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from eth_abi.abi import decode as ref_decode
from eth_abi.abi import encode as ref_encode
from eth_abi.exceptions import DecodingError
from eth_utils.address import to_checksum_address

from keeper.contracts import load_abi, shipped
from keeper.core import abi, abicodec
from keeper.core.abicodec import _param_of, _split, compile_param, compile_types
from keeper.core.types import NetSwap, SettleLeg, Trade
from keeper.errors import DecodeError, FatalError

TYPES = [
    "uint256",
    "uint8",
    "int256",
    "int24",
    "bool",
    "address",
    "bytes32",
    "bytes4",
    "bytes",
    "string",
    "uint256[]",
    "address[]",
    "bytes[]",
    "(uint256,bool)",
    "(uint256,bytes)",
    "(address,bool,bytes)[]",
    "(uint256,int256,(uint256,uint256,int256,bool)[],bool)",
    "uint16[3]",
    "bytes[2]",
    "(bool,string)[2]",
    "((uint256,bytes)[],address)",
    # static tuples (read in one go), nested, in fixed and dynamic arrays, in a dynamic head
    "(uint8,uint16,uint24,uint32,uint64,uint80,uint128,uint256,int8,int16,int24,int64,int128,"
    "int256,bool,address,bytes1,bytes4,bytes20,bytes32)",
    "((uint256,bool),(address,(int16,bytes4)),uint8)",
    "(uint64,bool)[3]",
    "(uint256,uint64,int256,bool)[]",
    "((uint8,int256)[2],address)[]",
    "(uint256,uint8,(uint64,bool),bytes,int16,address,(uint8,uint256)[])",
    "int64[]",
    "bool[]",
    "bytes4[2]",
]


def _value(kind: str, rng: random.Random) -> Any:
    """A random value of ``kind`` in the shape eth-abi takes (tuples, lists)."""
    if kind.endswith("]"):
        inner, dim = kind[: kind.rindex("[")], kind[kind.rindex("[") + 1 : -1]
        n = int(dim) if dim else rng.choice([0, 1, 3, 7])
        return [_value(inner, rng) for _ in range(n)]
    if kind.startswith("("):
        return tuple(_value(t, rng) for t in _split(kind[1:-1]))
    if kind.startswith("uint"):
        bits = int(kind[4:])
        return rng.choice([0, 1, (1 << bits) - 1, rng.getrandbits(bits)])
    if kind.startswith("int"):
        bits = int(kind[3:])
        return rng.choice(
            [0, -1, -(1 << (bits - 1)), (1 << (bits - 1)) - 1, rng.getrandbits(bits - 1)]
        )
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "address":
        return to_checksum_address(rng.randbytes(20))
    if kind == "bytes":
        return rng.randbytes(rng.choice([0, 1, 31, 32, 33, 100]))
    if kind == "string":
        return rng.choice(["", "a", "délta ✓", "x" * 70])
    return rng.randbytes(int(kind[5:]))  # bytesN


def _lower(value: Any) -> Any:
    """eth-abi decodes addresses lowercase and arrays as tuples; ours: checksummed, lists."""
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        return value.lower()
    if isinstance(value, list | tuple):
        return tuple(_lower(v) for v in value)
    return value


@pytest.mark.parametrize("kind", TYPES)
def test_encodes_the_same_bytes_and_decodes_the_same_values_as_eth_abi(kind: str) -> None:
    rng = random.Random(kind)
    codec = compile_types((kind, "uint8"))
    for _ in range(25):
        value = (_value(kind, rng), rng.getrandbits(8))
        expected = ref_encode([kind, "uint8"], list(value))
        assert codec.encode(value) == expected
        back = codec.decode_all(expected, kind)
        assert _lower(back) == _lower(ref_decode([kind, "uint8"], expected))


def test_every_shipped_function_round_trips_its_outputs() -> None:
    """Every output layout of every shipped ABI: random values through eth-abi, back through
    the compiled decoder, to the same values."""
    rng = random.Random(7)
    seen = 0
    for contract in shipped():
        for entry in load_abi(contract):
            if entry.get("type") != "function" or not entry.get("outputs"):
                continue
            fn = abi.function(contract, str(entry["name"]), len(entry["inputs"]))
            kinds = [abi.abi_type(p) for p in fn.outputs]
            value = [_value(k, rng) for k in kinds]
            data = ref_encode(kinds, value)
            got = compile_types(tuple(kinds)).decode_all(data, fn.signature)
            assert _lower(got) == _lower(ref_decode(kinds, data)), fn.signature
            seen += 1
    assert seen > 50


def _refused_by_both(kinds: list[str], data: bytes) -> None:
    with pytest.raises(DecodingError):
        ref_decode(kinds, data)
    with pytest.raises(DecodeError):
        compile_types(tuple(kinds)).decode_all(data, "malformed")


def test_refuses_what_eth_abi_refuses() -> None:
    good = ref_encode(["bytes", "uint8[]"], [b"abc", [1, 2]])
    _refused_by_both(["bytes", "uint8[]"], good[:-1])  # truncated
    _refused_by_both(["uint8"], (256).to_bytes(32, "big"))  # out of range
    _refused_by_both(["bool"], (2).to_bytes(32, "big"))
    _refused_by_both(["address"], b"\x01" + bytes(31))  # high bytes set
    _refused_by_both(["int8"], (128).to_bytes(32, "big"))  # not sign-extended
    _refused_by_both(["bytes"], (0x10_0000).to_bytes(32, "big") + (1).to_bytes(32, "big"))
    _refused_by_both(["uint256[]"], (32).to_bytes(32, "big") + (2**40).to_bytes(32, "big"))
    padded = bytearray(ref_encode(["bytes"], [b"abc"]))
    padded[-1] = 1  # non-zero padding after the three bytes
    _refused_by_both(["bytes"], bytes(padded))
    bad_text = ref_encode(["bytes"], [b"\xff\xfe"])
    with pytest.raises(DecodeError):
        compile_types(("string",)).decode_all(bad_text, "string")


def test_structs_decode_by_name_and_encode_from_dataclasses() -> None:
    state_fn = abi.function("IOptionsVault", "getState")
    (out,) = state_fn.outputs
    assert all(c.get("name") for c in out["components"])
    fn = abi.function("ISettlement", "settle")
    vault = to_checksum_address("0x" + "12" * 20)
    leg = SettleLeg(vault, Trade(True, 5, 4, 3, 2), 9)
    net = NetSwap(vault, False, 0, 0, b"")
    data = fn.encode([leg], net)
    kinds = [abi.abi_type(p) for p in fn.inputs]
    assert data[4:] == ref_encode(
        kinds, [[(vault, (True, 5, 4, 3, 2), 9)], (vault, False, 0, 0, b"")]
    )


def test_refuses_values_it_cannot_encode() -> None:
    codec = compile_types(("uint8", "address", "bool"))
    good = "0x" + "ab" * 20
    for bad in [
        (256, good, True),
        (-1, good, True),
        (1, "0x1234", True),
        (1, good, 1),
        (True, good, True),
    ]:
        with pytest.raises(FatalError):
            codec.encode(bad)
    mixed = "0x" + "aB" * 20  # mixed case with a wrong EIP-55 checksum
    with pytest.raises(FatalError):
        codec.encode((1, mixed, True))


# --- the one-go path: same values, same refusals, no walk on valid data ----------------------

S = "(uint256,uint8,int16,address,bool,bytes4)"
SENTINEL = 0x5E171E1_5E171E1  # S's first word: finds S in an encoding
OWNER = to_checksum_address("0x" + "ab" * 20)
GOOD = (SENTINEL, 7, -3, OWNER, True, b"abcd")
OTHER = (1, 255, 32767, OWNER, False, b"\x00\x00\x00\x01")
CONTEXTS = {  # where S sits: the type, and the value around S
    "struct": (S, lambda s: s),
    "nested": (f"(uint8,({S},bool))", lambda s: (1, (s, False))),
    "fixed array": (f"{S}[2]", lambda s: [OTHER, s]),
    "dynamic array": (f"{S}[]", lambda s: [OTHER, s, OTHER]),
    "dynamic head": (
        f"(bytes,uint256,uint8,bool,int16,{S}[])",
        lambda s: (b"xy", 1, 2, True, -4, [s]),
    ),
}
FIELD = {"uint8": 1, "int16": 2, "address": 3, "bool": 4, "bytes4": 5}
DIRTY = [  # (field, the word written over it, our message with {} for the word's byte)
    ("uint8", 256, "uint8 at byte {} out of range: 256"),
    ("uint8", 1 << 255 | 7, f"uint8 at byte {{}} out of range: {1 << 255 | 7}"),
    ("int16", 1 << 15, "int16 at byte {} out of range: 32768"),
    ("int16", 2**256 - 2**15 - 1, "int16 at byte {} out of range: -32769"),
    ("int16", 1 << 200 | 5, f"int16 at byte {{}} out of range: {1 << 200 | 5}"),
    ("address", 1 << 160 | 0x11, "address at byte {} has non-zero high bytes"),
    ("address", 1 << 255, "address at byte {} has non-zero high bytes"),
    ("bool", 2, "bool at byte {} is 2"),
    ("bool", 1 << 255 | 1, f"bool at byte {{}} is {1 << 255 | 1}"),
    (
        "bytes4",
        int.from_bytes(b"abcd\x01" + bytes(27), "big"),
        "bytes4 at byte {} has non-zero padding",
    ),
    (
        "bytes4",
        int.from_bytes(b"abcd" + bytes(27) + b"\x01", "big"),
        "bytes4 at byte {} has non-zero padding",
    ),
]


def _encoded(context: str) -> tuple[str, bytes, int]:
    """The type of ``context``, its eth-abi encoding around ``GOOD`` and where GOOD starts."""
    kind, around = CONTEXTS[context]
    data = ref_encode([kind], [around(GOOD)])
    return kind, data, data.index(SENTINEL.to_bytes(32, "big"))


@pytest.mark.parametrize("context", CONTEXTS)
def test_static_values_decode_to_eth_abi_values_in_every_context(context: str) -> None:
    kind, data, _ = _encoded(context)
    got = compile_types((kind,)).decode_all(data, kind)
    assert _lower(got) == _lower(ref_decode([kind], data))
    assert str(got).count("-3, '" + OWNER + "', True, b'abcd'") == 1  # GOOD, checksummed


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize(("field", "word", "message"), DIRTY)
def test_dirty_words_are_refused_like_eth_abi_with_the_walks_message(
    context: str, field: str, word: int, message: str
) -> None:
    kind, data, start = _encoded(context)
    at = start + 32 * FIELD[field]
    dirty = data[:at] + word.to_bytes(32, "big") + data[at + 32 :]
    with pytest.raises(DecodingError):
        ref_decode([kind], dirty)
    with pytest.raises(DecodeError, match=re.escape(message.format(at))):
        compile_types((kind,)).decode_all(dirty, "dirty")


@pytest.mark.parametrize("context", CONTEXTS)
def test_truncated_static_data_is_refused_like_eth_abi(context: str) -> None:
    kind, data, _ = _encoded(context)
    for cut in (1, 31, 32, 33):
        _refused_by_both([kind], data[:-cut])


def test_a_truncated_struct_names_the_first_missing_word() -> None:
    data = ref_encode([S], [GOOD])[:-1]
    with pytest.raises(DecodeError, match=re.escape("a word at byte 160: the data is 191 bytes")):
        compile_types((S,)).decode_all(data, "short")


def _struct(*components: tuple[str, str]) -> dict[str, Any]:
    return {"type": "tuple", "components": [{"name": n, "type": t} for n, t in components]}


LEG = _struct(("strike", "uint256"), ("expiry", "uint64"), ("size", "int256"), ("isCall", "bool"))
EVERY = _struct(
    ("quoteBalance", "uint256"),
    ("decimals", "uint8"),
    ("heartbeat", "uint64"),
    ("roundId", "uint80"),
    ("tick", "int24"),
    ("answer", "int256"),
    ("ok", "bool"),
    ("owner", "address"),
    ("tag", "bytes4"),
    ("salt", "bytes32"),
)
NAMED = {
    "every kind": EVERY,
    "nested": {
        **_struct(("id", "uint16")),
        "components": [{"name": "id", "type": "uint16"}, {**LEG, "name": "optionLeg"}],
    },
    "legs": {**LEG, "type": "tuple[]"},
    "fixed legs": {**LEG, "type": "tuple[2]"},
}


@pytest.mark.parametrize("name", NAMED)
def test_named_static_structs_decode_to_dicts_by_snake_case_name(name: str) -> None:
    param = NAMED[name]
    kind = abi.abi_type(param)
    rng = random.Random(name)
    for _ in range(10):
        data = ref_encode([kind], [_value(kind, rng)])
        (raw,) = ref_decode([kind], data)
        pos = 32 if param["type"] == "tuple[]" else 0
        assert compile_param(param).decode(data, pos) == abi.from_abi(param, raw)


def test_a_named_struct_keeps_every_value_and_name() -> None:
    owner = to_checksum_address("0x" + "c0" * 20)
    value = (
        2**256 - 1,
        255,
        2**64 - 1,
        2**80 - 1,
        -(2**23),
        -(2**255),
        True,
        owner,
        b"\x01\x02\x03\x04",
    )
    value += (b"\xff" * 32,)
    data = ref_encode([abi.abi_type(EVERY)], [value])
    assert compile_param(EVERY).decode(data, 0) == {
        "quote_balance": 2**256 - 1,
        "decimals": 255,
        "heartbeat": 2**64 - 1,
        "round_id": 2**80 - 1,
        "tick": -(2**23),
        "answer": -(2**255),
        "ok": True,
        "owner": owner,
        "tag": b"\x01\x02\x03\x04",
        "salt": b"\xff" * 32,
    }


def test_valid_data_never_takes_the_slow_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Static values, rows of static elements and a big dynamic head (getState's) are read in
    one go: the component walk only runs to name what is wrong with malformed data."""
    (state,) = abi.function("IOptionsVault", "getState").outputs
    params = [state, *NAMED.values(), *(_param_of(t) for t, _ in CONTEXTS.values())]
    rng = random.Random(3)
    cases = []  # (codec, data, where the value starts, eth-abi's value, named)
    for param in params:
        codec, kind = compile_param(param), abi.abi_type(param)
        named = all(c.get("name") for c in param["components"])
        for _ in range(5):
            data = ref_encode([kind], [_value(kind, rng)])
            (raw,) = ref_decode([kind], data)
            expected = abi.from_abi(param, raw) if named else _lower(raw)
            cases.append((codec, data, 32 if codec.dynamic else 0, expected, named))

    def walk(*args: Any) -> Any:
        raise AssertionError("the slow walk ran on valid data")

    monkeypatch.setattr(abicodec, "_decode_sequence", walk)
    monkeypatch.setattr(abicodec, "_decode_elements", walk)
    for codec, data, pos, expected, named in cases:
        got = codec.decode(data, pos)
        assert (got if named else _lower(got)) == expected
