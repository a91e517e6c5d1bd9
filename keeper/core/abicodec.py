"""The contract ABI codec, compiled: each ABI parameter is walked once into a pair of closures
(decode, encode) that then run straight over the bytes.

The encoding is the Solidity ABI's ("Contract ABI Specification", docs.soliditylang.org,
"Formal Specification of the Encoding"): 32-byte words; a tuple is the heads of its components
followed by the tails of its dynamic ones, a dynamic component's head being the offset of its
tail from the start of the tuple; ``T[]`` is a length word then the elements as a tuple;
``bytes`` and ``string`` are a length word then the bytes, right-padded to a word.

Why not eth-abi per call: it resolves a codec per type string and builds a stream object per
value, about 0.7 ms for one vault's ``getState`` (68 ms for 100 vaults, seven times the node's
execution of the same calls). The closures here do what eth-abi's strict mode checks (bounds,
offsets, value ranges, zero padding, UTF-8) in a tenth of the time; the unit tests hold the
two to the same bytes and values.

Reading in one go: every static value, and the head of a dynamic tuple with four static parts
or more (fewer are faster walked), is also compiled into ``Words`` (one converter and one
zero-mask per 32-byte word, and how the converted words build the value). A head is then one
bounds check, one big-int AND for every upper-bit and padding rule, two ``struct`` unpacks
(small uints and bools come out of the unpack as they are, the other words are converted); the
tails of its dynamic parts follow their offsets. Arrays of static elements read all their rows
the same way. When any of those checks fails, the value is decoded again by the component
walk, which raises the same error (message included) as it always did.

Values: structs whose components are all named decode into ``dict`` keyed by snake_case name
and encode from a dataclass or a mapping (snake_case or ABI name); unnamed tuples are Python
tuples both ways; arrays decode into lists; addresses decode checksummed. Decoding errors are
``DecodeError``, values that cannot be encoded ``FatalError``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, is_dataclass
from functools import lru_cache
from itertools import accumulate, repeat
from operator import call, itemgetter
from struct import Struct
from typing import Any

from eth_utils.address import to_checksum_address

from keeper.errors import DecodeError, FatalError

AbiParam = Mapping[str, Any]
Decode = Callable[[bytes, int], Any]  # (data, where this value's encoding starts) -> value
Encode = Callable[[Any], bytes]  # value -> encoding (static: its head; dynamic: its tail)
Convert = Callable[[bytes], Any]  # one 32-byte word -> its value (raises _Dirty if malformed)
Build = Callable[[list[Any]], Any]  # the converted words of a head -> one value in it
Pick = Callable[[list[Any]], Iterable[Any]]  # the converted words of a head -> a tuple's values

WORD = 32
_ZERO = bytes(WORD)
_MAX_OFFSET = 2**32  # no real return data is 4 GiB: a larger offset or length is garbage
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@lru_cache(maxsize=4096)
def snake(name: str) -> str:
    """``impliedVolWad`` -> ``implied_vol_wad`` (ABI component name -> dataclass field)."""
    return _CAMEL.sub("_", name.strip("_")).lower()


@lru_cache(maxsize=65_536)
def checksum(address: str) -> str:
    """``to_checksum_address``, remembered: the same few thousand addresses come back every
    block, and each checksum is a keccak."""
    return to_checksum_address(address)


@dataclass(frozen=True)
class Word:
    """One word of a static value: ``conv`` makes its value out of its 32 bytes (raising
    ``_Dirty`` if malformed), ``mask`` has the bits that must be zero, ``code`` is how the
    ``struct`` unpack of a head reads it: ``"32s"`` (then ``conv``) or, for a small uint or a
    bool, a code that reads the value itself."""

    conv: Convert
    mask: bytes
    code: str = "32s"


@dataclass(frozen=True)
class Words:
    """A static value (or a tuple's head) word by word. ``build_at(idx)``: the function that
    makes the value out of a head's values as read, ``idx`` saying where its words' values
    are; ``from_row``: the value out of its own words' converted values, in order."""

    words: tuple[Word, ...]
    build_at: Callable[[Sequence[int]], Build]
    from_row: Callable[[Iterable[Any]], Any]
    leaf: bool = False  # one elementary word: the value is the word's value


@dataclass(frozen=True)
class Codec:
    """One ABI type, compiled."""

    type: str  # canonical type, e.g. ``(uint256,bool)[]``
    dynamic: bool
    head_size: int  # bytes this value takes in its parent's head (32 for a dynamic one)
    decode: Decode
    encode: Encode
    words: Words | None = None  # every static type: how to read it in one go

    def decode_all(self, data: bytes, what: str) -> Any:
        """Decode ``data`` as one value of this type (return data of a call)."""
        try:
            return self.decode(data, 0)
        except DecodeError as exc:
            raise DecodeError(f"cannot decode {what}: {exc}") from exc


def compile_params(params: Sequence[AbiParam]) -> Codec:
    """The codec of a function's inputs or outputs: an unnamed tuple of ``params``."""
    return _tuple({"type": "tuple", "components": list(params)}, named=False)


@lru_cache(maxsize=1024)
def compile_types(types: tuple[str, ...]) -> Codec:
    """The codec of canonical type strings (``("uint256", "(address,bool)[]")``): tuples
    unnamed, so structs decode into tuples."""
    return compile_params([_param_of(t) for t in types])


def compile_param(param: AbiParam) -> Codec:
    kind = str(param["type"])
    if kind.endswith("]"):
        inner = kind[: kind.rindex("[")]
        dim = kind[kind.rindex("[") + 1 : -1]
        element = compile_param({**param, "type": inner})
        return _array(element, int(dim)) if dim else _dynamic_array(element)
    if kind == "tuple":
        named = all(str(c.get("name") or "") for c in param["components"])
        return _tuple(param, named=named)
    return _elementary(kind)


# --- reading words --------------------------------------------------------------------------


def _word(data: bytes, pos: int) -> int:
    end = pos + WORD
    if end > len(data):
        raise DecodeError(f"a word at byte {pos}: the data is {len(data)} bytes")
    return int.from_bytes(data[pos:end], "big")


def _chunk(data: bytes, pos: int) -> bytes:
    end = pos + WORD
    if end > len(data):
        raise DecodeError(f"a word at byte {pos}: the data is {len(data)} bytes")
    return data[pos:end]


def _at_offset(data: bytes, pos: int, base: int) -> int:
    offset = _word(data, pos)
    if offset >= _MAX_OFFSET or base + offset > len(data):
        raise _past_the_data(data, offset, pos)
    return base + offset


def _tail(data: bytes, offset: int, pos: int, base: int) -> int:
    """Where a tail starts: ``offset`` (read at ``pos``) from ``base``, checked."""
    if offset >= _MAX_OFFSET or base + offset > len(data):
        raise _past_the_data(data, offset, pos)
    return base + offset


def _past_the_data(data: bytes, offset: int, pos: int) -> DecodeError:
    return DecodeError(f"offset {offset} at byte {pos} points past the data ({len(data)} bytes)")


# --- reading words in one go ----------------------------------------------------------------


class _Dirty(Exception):
    """A converter's word is out of range: the slow walk says where and why."""


_ONES = b"\xff" * WORD
_TRUE = (1).to_bytes(WORD, "big")
_from_bytes: Convert = int.from_bytes
_first = itemgetter(0)
_ONE_GO_PARTS = 4  # a dynamic tuple with fewer static parts is faster walked (Multicall's results)
_NARROW = {8: "31xB", 16: "30xH", 32: "28xI", 64: "24xQ"}  # uintN the unpack reads itself


def _leaf(word: Word) -> Words:
    """The words of one elementary value."""
    return Words((word,), lambda idx: itemgetter(idx[0]), lambda row: next(iter(row)), True)


def _high(size: int) -> bytes:
    """The mask of a word whose high ``size`` bytes must be zero."""
    return _ONES[:size] + _ZERO[size:]


_OFFSET = _leaf(Word(_from_bytes, _ZERO))  # a dynamic part's head word (checked on use)


def _starts(parts: Sequence[Words]) -> list[int]:
    """The index of each part's first word in their concatenation."""
    return list(accumulate((len(w.words) for w in parts[:-1]), initial=0)) if parts else []


@dataclass(frozen=True)
class Shape:
    """What the component values of a tuple become: a dict by ``keys`` (a struct), else
    ``kind`` of them (``tuple``, or ``list`` for an array)."""

    keys: tuple[str, ...] | None = None
    kind: Callable[[Iterable[Any]], Any] = tuple

    def __call__(self, values: Iterable[Any]) -> Any:
        if self.keys is None:
            return self.kind(values)
        return dict(zip(self.keys, values, strict=True))

    # The fast paths below zip without strict: the layout gives as many values as keys.

    def maker(self) -> Callable[[Iterable[Any]], Any]:
        """``self`` as a plain function (a call the less per value)."""
        keys, kind = self.keys, self.kind
        return kind if keys is None else lambda values: dict(zip(keys, values, strict=False))

    def build(self, pick: Pick) -> Build:
        """The value out of a head's values, ``pick`` taking this tuple's component values."""
        keys, kind = self.keys, self.kind
        if keys is None:
            return lambda vals: kind(pick(vals))
        return lambda vals: dict(zip(keys, pick(vals), strict=False))


def _gather(idx: Sequence[int]) -> Pick:
    """The values at ``idx``, as a tuple."""
    if len(idx) == 1:
        only = idx[0]
        return lambda vals: (vals[only],)
    return itemgetter(*idx) if idx else lambda vals: ()


def _composite(parts: Sequence[Words], shape: Shape) -> Words:
    """The words of a tuple (or fixed array) whose parts' words are ``parts``."""
    starts = _starts(parts)
    words = tuple(w for part in parts for w in part.words)

    def build_at(idx: Sequence[int]) -> Build:
        if all(w.leaf for w in parts):
            return shape.build(_gather(idx))
        spans = zip(parts, starts, strict=True)
        subs = [w.build_at(idx[s : s + len(w.words)]) for w, s in spans]
        return shape.build(lambda vals: map(call, subs, repeat(vals)))

    if all(w.leaf for w in parts):
        return Words(words, build_at, shape.maker())
    build = build_at(range(len(words)))
    return Words(words, build_at, lambda row: build(list(row)))


class _Layout:
    """A head as two ``struct`` layouts over the same bytes: the ``"32s"`` words, converted,
    then the others, read as they are; ``order[i]``: where word ``i``'s value lands."""

    def __init__(self, words: Words) -> None:
        ws = words.words
        wide = [w.code == "32s" for w in ws]
        self.size = WORD * len(ws)
        self.mask = int.from_bytes(b"".join(w.mask for w in ws), "big")
        self.convs = tuple(w.conv for w, x in zip(ws, wide, strict=True) if x)
        self.wide = Struct(">" + "".join("32s" if x else "32x" for x in wide))
        narrow = ">" + "".join("32x" if x else w.code for w, x in zip(ws, wide, strict=True))
        self.narrow = None if all(wide) else Struct(narrow)
        wide_at, narrow_at = iter(range(len(ws))), iter(range(len(self.convs), len(ws)))
        self.order = [next(wide_at if x else narrow_at) for x in wide]
        self.build = words.build_at(self.order)


def _reader(layout: _Layout) -> Callable[[bytes, int], list[Any] | None]:
    """Read a head at ``pos``: one bounds check, one AND with the mask, the unpacks; ``None`` if
    the data is too short or any word malformed."""
    size, mask, convs, wide = layout.size, layout.mask, layout.convs, layout.wide.unpack
    narrow = None if layout.narrow is None else layout.narrow.unpack

    def read(data: bytes, pos: int) -> list[Any] | None:
        end = pos + size
        if end > len(data):
            return None
        region = data[pos:end]
        if mask and mask & int.from_bytes(region, "big"):
            return None
        try:
            vals = list(map(call, convs, wide(region)))
        except _Dirty:
            return None
        if narrow is not None:
            vals += narrow(region)
        return vals

    return read


def _rows_reader(words: Words) -> Callable[[bytes, int, int], list[Any] | None]:
    """Read ``length`` consecutive values of ``words`` at ``base`` (the caller has checked the
    bounds): one AND with the mask repeated, then each row converted; ``None`` if malformed."""
    size, convert = WORD * len(words.words), _rows_converter(words)
    row_mask = b"".join(w.mask for w in words.words)
    checked = any(row_mask)

    @lru_cache(maxsize=8)
    def mask(length: int) -> int:
        return int.from_bytes(row_mask * length, "big")

    def read(data: bytes, base: int, length: int) -> list[Any] | None:
        region = data[base : base + size * length]
        if checked and mask(length) & int.from_bytes(region, "big"):
            return None
        try:
            return convert(region)
        except _Dirty:
            return None

    return read


def _rows_converter(words: Words) -> Callable[[bytes], list[Any]]:
    """The values of the rows of ``words`` that fill a region (masks checked)."""
    convs = tuple(w.conv for w in words.words)
    rows, make = Struct("32s" * len(convs)).iter_unpack, words.from_row
    if words.leaf:
        (conv,) = convs
        return lambda region: list(map(conv, map(_first, rows(region))))
    return lambda region: [make(map(call, convs, row)) for row in rows(region)]


# --- elementary types -----------------------------------------------------------------------


def _elementary(kind: str) -> Codec:
    if kind == "address":
        words = _leaf(Word(_address_of, _high(12)))
        return Codec(kind, False, WORD, _decode_address, _encode_address, words)
    if kind == "bool":
        words = _leaf(Word(_TRUE.__eq__, _ONES[:31] + b"\xfe", "31x?"))
        return Codec(kind, False, WORD, _decode_bool, _encode_bool, words)
    if kind in ("bytes", "string"):
        text = kind == "string"
        return Codec(
            kind,
            True,
            WORD,
            _decode_string if text else _decode_bytes,
            _encode_string if text else _encode_bytes,
        )
    m = re.fullmatch(r"(u?int)(\d*)", kind)
    if m:
        bits = int(m.group(2) or 256)
        if not (8 <= bits <= 256 and bits % 8 == 0):
            raise FatalError(f"ABI type {kind}: not a valid integer size")
        canonical = f"{m.group(1)}{bits}"
        if m.group(1) == "uint":
            words = _uint_words(bits)
            return Codec(canonical, False, WORD, _uint_decoder(bits), _uint_encoder(bits), words)
        words = _leaf(Word(_int_converter(bits), _ZERO))
        return Codec(canonical, False, WORD, _int_decoder(bits), _int_encoder(bits), words)
    m = re.fullmatch(r"bytes(\d+)", kind)
    if m and 1 <= int(m.group(1)) <= WORD:
        size = int(m.group(1))
        words = _leaf(Word(itemgetter(slice(0, size)), _ZERO[:size] + _ONES[size:]))
        decode, encode = _fixed_bytes_decoder(size), _fixed_bytes_encoder(size)
        return Codec(kind, False, WORD, decode, encode, words)
    raise FatalError(f"ABI type {kind!r} is not supported by the keeper's codec")


def _uint_decoder(bits: int) -> Decode:
    if bits == 256:
        return _word

    def decode(data: bytes, pos: int) -> int:
        value = _word(data, pos)
        if value >> bits:
            raise DecodeError(f"uint{bits} at byte {pos} out of range: {value}")
        return value

    return decode


def _int_decoder(bits: int) -> Decode:
    low, high = -(1 << (bits - 1)), 1 << (bits - 1)

    def decode(data: bytes, pos: int) -> int:
        value = _word(data, pos)
        if value >> 255:
            value -= 1 << 256
        if not low <= value < high:
            raise DecodeError(f"int{bits} at byte {pos} out of range: {value}")
        return value

    return decode


def _uint_words(bits: int) -> Words:
    """uintN: its high bytes zero; a uint8/16/32/64 is read by the unpack itself."""
    return _leaf(Word(_from_bytes, _high(WORD - bits // 8), _NARROW.get(bits, "32s")))


def _int256(chunk: bytes) -> int:
    return int.from_bytes(chunk, "big", signed=True)


def _int_converter(bits: int) -> Convert:
    """intN from its word: sign-extended from bit N-1, else ``_Dirty``."""
    if bits == 256:
        return _int256
    low, high = -(1 << (bits - 1)), 1 << (bits - 1)

    def convert(chunk: bytes) -> int:
        value = int.from_bytes(chunk, "big", signed=True)
        if not low <= value < high:
            raise _Dirty
        return value

    return convert


def _decode_bool(data: bytes, pos: int) -> bool:
    value = _word(data, pos)
    if value > 1:
        raise DecodeError(f"bool at byte {pos} is {value}")
    return value == 1


def _decode_address(data: bytes, pos: int) -> str:
    chunk = _chunk(data, pos)
    if chunk[:12] != _ZERO[:12]:
        raise DecodeError(f"address at byte {pos} has non-zero high bytes")
    return checksum("0x" + chunk[12:].hex())


def _address_of(chunk: bytes) -> str:
    """The checksummed address in the low 20 bytes of a word."""
    return checksum("0x" + chunk[12:].hex())


def _fixed_bytes_decoder(size: int) -> Decode:
    def decode(data: bytes, pos: int) -> bytes:
        chunk = _chunk(data, pos)
        if chunk[size:] != _ZERO[size:]:
            raise DecodeError(f"bytes{size} at byte {pos} has non-zero padding")
        return chunk[:size]

    return decode


def _decode_bytes(data: bytes, pos: int) -> bytes:
    length = _word(data, pos)
    start = pos + WORD
    end = start + length
    if length >= _MAX_OFFSET or end > len(data):
        raise DecodeError(f"bytes of length {length} at byte {pos} run past the data")
    padding = data[end : start + -(-length // WORD) * WORD]
    if padding.count(0) != len(padding):
        raise DecodeError(f"bytes at byte {pos} have non-zero padding")
    return data[start:end]


def _decode_string(data: bytes, pos: int) -> str:
    try:
        return _decode_bytes(data, pos).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"string at byte {pos} is not UTF-8: {exc}") from exc


def _uint_encoder(bits: int) -> Encode:
    def encode(value: Any) -> bytes:
        if not isinstance(value, int) or isinstance(value, bool):
            raise FatalError(f"uint{bits} takes an int, not {type(value).__name__}")
        if value < 0 or value >> bits:
            raise FatalError(f"uint{bits} out of range: {value}")
        return value.to_bytes(WORD, "big")

    return encode


def _int_encoder(bits: int) -> Encode:
    low, high = -(1 << (bits - 1)), 1 << (bits - 1)

    def encode(value: Any) -> bytes:
        if not isinstance(value, int) or isinstance(value, bool):
            raise FatalError(f"int{bits} takes an int, not {type(value).__name__}")
        if not low <= value < high:
            raise FatalError(f"int{bits} out of range: {value}")
        return (value % (1 << 256)).to_bytes(WORD, "big")

    return encode


def _encode_bool(value: Any) -> bytes:
    if not isinstance(value, bool):
        raise FatalError(f"bool takes a bool, not {type(value).__name__}")
    return (1 if value else 0).to_bytes(WORD, "big")


_HEX40 = re.compile(r"0x[0-9a-fA-F]{40}")


@lru_cache(maxsize=65_536)
def _address_word(address: str) -> bytes:
    if not _HEX40.fullmatch(address):
        raise FatalError(f"not an address: {address!r}")
    body = address[2:]
    if body != body.lower() and body != body.upper() and checksum(address) != address:
        raise FatalError(f"address {address} has a wrong checksum (EIP-55)")
    return _ZERO[:12] + bytes.fromhex(body)


def _encode_address(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray) and len(value) == 20:
        return _ZERO[:12] + bytes(value)
    if not isinstance(value, str):
        raise FatalError(f"address takes a 0x-hex string, not {type(value).__name__}")
    return _address_word(value)


def _fixed_bytes_encoder(size: int) -> Encode:
    def encode(value: Any) -> bytes:
        if not isinstance(value, bytes | bytearray) or len(value) > size:
            raise FatalError(f"bytes{size} takes at most {size} bytes, not {value!r}")
        return bytes(value).ljust(WORD, b"\0")

    return encode


def _encode_bytes(value: Any) -> bytes:
    if not isinstance(value, bytes | bytearray):
        raise FatalError(f"bytes takes bytes, not {type(value).__name__}")
    padded = -(-len(value) // WORD) * WORD
    return len(value).to_bytes(WORD, "big") + bytes(value).ljust(padded, b"\0")


def _encode_string(value: Any) -> bytes:
    if not isinstance(value, str):
        raise FatalError(f"string takes a str, not {type(value).__name__}")
    return _encode_bytes(value.encode("utf-8"))


# --- tuples and arrays ----------------------------------------------------------------------


def _decode_sequence(data: bytes, base: int, parts: Sequence[Codec]) -> list[Any]:
    """The components of one tuple (or array) whose encoding starts at ``base``."""
    out = []
    head = base
    for part in parts:
        if part.dynamic:
            out.append(part.decode(data, _at_offset(data, head, base)))
        else:
            out.append(part.decode(data, head))
        head += part.head_size
    return out


def _decode_elements(data: bytes, base: int, element: Codec, length: int) -> list[Any]:
    """``length`` static elements one by one (the slow walk of an array's rows)."""
    return [element.decode(data, base + element.head_size * i) for i in range(length)]


def _encode_sequence(values: Sequence[Any], parts: Sequence[Codec], head_size: int) -> bytes:
    heads: list[bytes] = []
    tails: list[bytes] = []
    offset = head_size
    for part, value in zip(parts, values, strict=True):
        encoded = part.encode(value)
        if part.dynamic:
            heads.append(offset.to_bytes(WORD, "big"))
            tails.append(encoded)
            offset += len(encoded)
        else:
            heads.append(encoded)
    return b"".join(heads) + b"".join(tails)


def _tuple(param: AbiParam, named: bool) -> Codec:
    components = list(param["components"])
    parts = [compile_param(c) for c in components]
    dynamic = any(p.dynamic for p in parts)
    head_size = sum(p.head_size for p in parts)
    kind = "(" + ",".join(p.type for p in parts) + ")"
    names = [str(c.get("name") or "") for c in components]
    keys = [snake(n) for n in names]
    decode, words = _sequence_decoder(parts, Shape(tuple(keys)) if named else Shape())

    if named:

        def values_of(value: Any) -> list[Any]:
            if isinstance(value, Mapping):
                return [
                    value[k] if k in value else value[n] for k, n in zip(keys, names, strict=True)
                ]
            if is_dataclass(value):
                return [getattr(value, k) for k in keys]
            if isinstance(value, tuple | list):
                return list(value)
            raise FatalError(f"struct {kind} from a {type(value).__name__}")
    else:

        def values_of(value: Any) -> list[Any]:
            if not isinstance(value, tuple | list):
                raise FatalError(f"tuple {kind} from a {type(value).__name__}")
            return list(value)

    def encode(value: Any) -> bytes:
        try:
            values = values_of(value)
        except (KeyError, AttributeError) as exc:
            raise FatalError(f"struct {kind}: missing field {exc}") from exc
        if len(values) != len(parts):
            raise FatalError(f"tuple {kind} takes {len(parts)} values, got {len(values)}")
        return _encode_sequence(values, parts, head_size)

    return Codec(kind, dynamic, WORD if dynamic else head_size, decode, encode, words)


def _sequence_decoder(parts: Sequence[Codec], shape: Shape) -> tuple[Decode, Words | None]:
    """The decoder of a tuple (or fixed array) of ``parts``, and its words if it is static."""
    heads = [_OFFSET if p.words is None else p.words for p in parts]
    head = _composite(heads, shape)
    layout = _Layout(head)
    read, build, make = _reader(layout), layout.build, shape.maker()

    def slow(data: bytes, pos: int) -> Any:
        return make(_decode_sequence(data, pos, parts))

    if all(p.words is not None for p in parts):
        return _static_decoder(read, build, slow), head
    if sum(p.words is not None for p in parts) < _ONE_GO_PARTS:
        return slow, None
    starts = zip(_starts(heads), parts, strict=True)
    tails = [(layout.order[i], WORD * i, p.decode) for i, p in starts if p.words is None]
    return _dynamic_decoder(read, build, slow, tails), None


def _static_decoder(
    read: Callable[[bytes, int], list[Any] | None], build: Build, slow: Decode
) -> Decode:
    def decode(data: bytes, pos: int) -> Any:
        vals = read(data, pos)
        return slow(data, pos) if vals is None else build(vals)

    return decode


def _dynamic_decoder(
    read: Callable[[bytes, int], list[Any] | None],
    build: Build,
    slow: Decode,
    tails: Sequence[tuple[int, int, Decode]],
) -> Decode:
    """A head read in one go, then each dynamic part decoded at its offset (in order);
    ``tails``: where each one's offset is in the values read, where in the head, its decoder."""

    def decode(data: bytes, pos: int) -> Any:
        vals = read(data, pos)
        if vals is None:
            return slow(data, pos)
        for i, at, tail in tails:
            vals[i] = tail(data, _tail(data, vals[i], pos + at, pos))
        return build(vals)

    return decode


def _array(element: Codec, length: int) -> Codec:
    parts = [element] * length
    head_size = element.head_size * length
    decode, words = _sequence_decoder(parts, Shape(kind=list))

    def encode(value: Any) -> bytes:
        if not isinstance(value, tuple | list) or len(value) != length:
            raise FatalError(f"{element.type}[{length}] takes {length} values")
        return _encode_sequence(value, parts, head_size)

    dynamic = element.dynamic
    kind = f"{element.type}[{length}]"
    return Codec(kind, dynamic, WORD if dynamic else head_size, decode, encode, words)


def _dynamic_array(element: Codec) -> Codec:
    size = element.head_size
    decode_element = element.decode
    dynamic_elements = element.dynamic
    words = element.words
    rows = _rows_reader(words) if words is not None and words.words else None

    def decode(data: bytes, pos: int) -> list[Any]:
        length = _word(data, pos)
        base = pos + WORD
        if length >= _MAX_OFFSET or base + length * size > len(data):
            raise DecodeError(f"array of {length} at byte {pos} runs past the data")
        if not length:
            return []
        if dynamic_elements:
            heads = range(base, base + WORD * length, WORD)
            return [decode_element(data, _at_offset(data, h, base)) for h in heads]
        values = None if rows is None else rows(data, base, length)
        return _decode_elements(data, base, element, length) if values is None else values

    def encode(value: Any) -> bytes:
        if not isinstance(value, tuple | list):
            raise FatalError(f"{element.type}[] takes a list, not {type(value).__name__}")
        body = _encode_sequence(value, [element] * len(value), size * len(value))
        return len(value).to_bytes(WORD, "big") + body

    return Codec(f"{element.type}[]", True, WORD, decode, encode)


# --- canonical type strings -----------------------------------------------------------------


def _param_of(kind: str) -> dict[str, Any]:
    """``"(uint256,bool)[]"`` -> ``{"type": "tuple[]", "components": [...]}`` (unnamed)."""
    if not kind.startswith("("):
        return {"type": kind}
    depth = 0
    for i, ch in enumerate(kind):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:
            inner, suffix = kind[1:i], kind[i + 1 :]
            break
    else:
        raise FatalError(f"ABI type {kind!r}: unbalanced parentheses")
    return {"type": "tuple" + suffix, "components": [_param_of(t) for t in _split(inner)]}


def _split(inner: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
    if inner:
        parts.append(inner[start:])
    return parts
