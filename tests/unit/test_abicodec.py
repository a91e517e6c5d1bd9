"""keeper.core.abicodec against eth-abi (the reference): same bytes out, same values back, and
the same refusals of malformed data, on random values of every shape the shipped ABIs use."""

from __future__ import annotations

import random
from typing import Any

import pytest
from eth_abi.abi import decode as ref_decode
from eth_abi.abi import encode as ref_encode
from eth_abi.exceptions import DecodingError
from eth_utils.address import to_checksum_address

from keeper.contracts import load_abi, shipped
from keeper.core import abi
from keeper.core.abicodec import _split, compile_types
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
