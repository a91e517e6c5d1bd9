"""The ``eth`` namespace the keeper's sending side uses, over :class:`keeper.chain.rpc.RpcClient`.

The sender, confirmer, nonce manager, quoter and simulation speak to the node through this
small surface (the shape of web3's ``w3.eth`` that they use, so tests hand them a fake with
the same methods). :class:`RpcChain` is the real one: every request is one JSON-RPC request
on the keeper's own keep-alive sessions (several endpoints, failover), with no web3 request
machinery in the way (no process-wide session lock, no ``eth_chainId`` around every call:
the chain id is asked once). Results come back in the shapes web3 formats them to
(quantities as ``int``, hashes and data as ``HexBytes``), a missing receipt, transaction or
block as web3's ``TransactionNotFound`` / ``BlockNotFound``, node errors as ``KeeperError``
(``keeper.chain.retry.classify_message``).

Retrying is the caller's: each call here is one round over the endpoints (failing over at
once), so the one retry policy at the call site is not multiplied by a second one here.

``fee_history`` answers for an explicit block number are remembered (the answer for a mined
block does not change; the cache holds a few blocks), so the fee gate and every transaction
of one block share one ``eth_feeHistory``.

JSON-RPC methods: https://ethereum.org/en/developers/docs/apis/json-rpc/
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Protocol, overload

from hexbytes import HexBytes
from web3.exceptions import BlockNotFound, TransactionNotFound

from keeper.chain.rpc import RpcClient

BlockId = int | str

_QUANTITY_FIELDS = frozenset(
    {
        "blockNumber",
        "status",
        "gasUsed",
        "cumulativeGasUsed",
        "effectiveGasPrice",
        "transactionIndex",
        "logIndex",
        "number",
        "timestamp",
        "baseFeePerGas",
        "gasLimit",
        "nonce",
        "value",
        "gas",
        "gasPrice",
        "maxFeePerGas",
        "maxPriorityFeePerGas",
        "type",
        "chainId",
        "oldestBlock",
    }
)
_BYTES_FIELDS = frozenset(
    {"blockHash", "transactionHash", "hash", "parentHash", "data", "input", "logsBloom"}
)


class Eth(Protocol):
    """What the keeper asks the node (web3's ``w3.eth`` names and result shapes)."""

    @property
    def chain_id(self) -> Awaitable[int]: ...

    @property
    def block_number(self) -> Awaitable[int]: ...

    async def call(self, call: Mapping[str, Any], block_identifier: BlockId = "latest") -> Any: ...

    async def estimate_gas(
        self, call: Mapping[str, Any], block_identifier: BlockId | None = None
    ) -> Any: ...

    async def fee_history(
        self, blocks: int, newest: BlockId, percentiles: Sequence[float]
    ) -> Mapping[str, Any]: ...

    async def get_balance(self, address: str, block_identifier: BlockId = "latest") -> Any: ...

    async def get_transaction_count(
        self, address: str, block_identifier: BlockId = "latest"
    ) -> Any: ...

    async def send_raw_transaction(self, raw: bytes) -> Any: ...

    async def get_transaction(self, tx_hash: Any) -> Mapping[str, Any]: ...

    async def get_transaction_receipt(self, tx_hash: Any) -> Mapping[str, Any]: ...

    async def get_block(self, block_identifier: BlockId) -> Mapping[str, Any]: ...

    async def create_access_list(
        self, call: Mapping[str, Any], block_identifier: BlockId = "latest"
    ) -> Mapping[str, Any]: ...


class Chain(Protocol):
    """Something with an ``eth`` namespace (:class:`RpcChain`; a test's fake)."""

    @property
    def eth(self) -> Eth: ...


class RpcEth:
    """:class:`Eth` over an :class:`RpcClient`."""

    FEE_HISTORY_CACHE = 8  # answers (distinct block numbers and shapes) kept

    def __init__(self, rpc: RpcClient) -> None:
        self._rpc = rpc
        self._fee_history: OrderedDict[tuple[int, int, tuple[float, ...]], Mapping[str, Any]] = (
            OrderedDict()
        )

    @property
    def chain_id(self) -> Awaitable[int]:
        return self._rpc.chain_id()

    @property
    def block_number(self) -> Awaitable[int]:
        return self._quantity("eth_blockNumber", [])

    @property
    def gas_price(self) -> Awaitable[int]:
        """``eth_gasPrice`` (the aggregator service quotes network fees with it)."""
        return self._quantity("eth_gasPrice", [])

    async def call(self, call: Mapping[str, Any], block_identifier: BlockId = "latest") -> HexBytes:
        result = await self._rpc.request("eth_call", [tx_params(call), block_id(block_identifier)])
        return HexBytes(result)

    async def estimate_gas(
        self, call: Mapping[str, Any], block_identifier: BlockId | None = None
    ) -> int:
        params: list[Any] = [tx_params(call)]
        if block_identifier is not None:
            params.append(block_id(block_identifier))
        return await self._quantity("eth_estimateGas", params)

    async def fee_history(
        self, blocks: int, newest: BlockId, percentiles: Sequence[float]
    ) -> Mapping[str, Any]:
        key = (newest, blocks, tuple(percentiles)) if isinstance(newest, int) else None
        if key is not None and key in self._fee_history:
            return self._fee_history[key]  # type: ignore[index]
        raw = await self._rpc.request(
            "eth_feeHistory", [hex(blocks), block_id(newest), list(percentiles)]
        )
        answer = {
            "oldestBlock": int(raw["oldestBlock"], 16),
            "baseFeePerGas": [int(b, 16) for b in raw.get("baseFeePerGas", [])],
            "reward": [[int(r, 16) for r in row] for row in raw.get("reward") or []],
            "gasUsedRatio": [float(g) for g in raw.get("gasUsedRatio", [])],
        }
        if key is not None:
            self._fee_history[key] = answer  # type: ignore[index]
            while len(self._fee_history) > self.FEE_HISTORY_CACHE:
                self._fee_history.popitem(last=False)
        return answer

    async def get_balance(self, address: str, block_identifier: BlockId = "latest") -> int:
        return await self._quantity("eth_getBalance", [address, block_id(block_identifier)])

    async def get_transaction_count(
        self, address: str, block_identifier: BlockId = "latest"
    ) -> int:
        return await self._quantity(
            "eth_getTransactionCount", [address, block_id(block_identifier)]
        )

    async def send_raw_transaction(self, raw: bytes) -> HexBytes:
        return HexBytes(await self._rpc.broadcast(bytes(raw)))

    async def get_transaction(self, tx_hash: Any) -> Mapping[str, Any]:
        found = await self._rpc.request("eth_getTransactionByHash", [hash_hex(tx_hash)])
        if found is None:
            raise TransactionNotFound(f"transaction {hash_hex(tx_hash)} not found")
        return formatted(found)

    async def get_transaction_receipt(self, tx_hash: Any) -> Mapping[str, Any]:
        """The receipt with web3's value types; its ``logs`` are formatted when first read (a
        settlement's hundreds of logs are read after the block's transactions are sent)."""
        found = await self._rpc.request("eth_getTransactionReceipt", [hash_hex(tx_hash)])
        if found is None:
            raise TransactionNotFound(f"no receipt for {hash_hex(tx_hash)}")
        logs = found.get("logs")
        receipt = formatted({k: v for k, v in found.items() if k != "logs"})
        if logs is not None:
            receipt["logs"] = Logs(logs)
        return receipt

    async def get_block(self, block_identifier: BlockId) -> Mapping[str, Any]:
        found = await self._rpc.request("eth_getBlockByNumber", [block_id(block_identifier), False])
        if found is None:
            raise BlockNotFound(f"no block {block_identifier}")
        return formatted(found)

    async def create_access_list(
        self, call: Mapping[str, Any], block_identifier: BlockId = "latest"
    ) -> Mapping[str, Any]:
        """``eth_createAccessList``: one execution of ``call``; ``gasUsed`` as an int, and
        ``error`` when the call failed (EIP-2930's companion method, geth / erigon / anvil)."""
        found = await self._rpc.request(
            "eth_createAccessList", [tx_params(call), block_id(block_identifier)]
        )
        return {**found, "gasUsed": int(found["gasUsed"], 16)}

    async def _quantity(self, method: str, params: list[Any]) -> int:
        return int(await self._rpc.request(method, params), 16)


class RpcChain:
    """:class:`Chain` over an :class:`RpcClient` (its sessions are the client's to close)."""

    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc
        self._eth = RpcEth(rpc)

    @property
    def eth(self) -> RpcEth:
        return self._eth


def tx_params(call: Mapping[str, Any]) -> dict[str, Any]:
    """A call or transaction object in JSON-RPC form (bytes and ints as 0x-hex)."""
    out: dict[str, Any] = {}
    for key, value in call.items():
        if value is None:
            continue
        if isinstance(value, bytes | bytearray):
            out[key] = "0x" + bytes(value).hex()
        elif isinstance(value, int) and not isinstance(value, bool):
            out[key] = hex(value)
        else:
            out[key] = value
    return out


def block_id(block: BlockId) -> str:
    """``latest`` / ``pending`` / a number as 0x-hex."""
    return hex(block) if isinstance(block, int) else str(block)


def hash_hex(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    text = str(value)
    return text if text.startswith("0x") else "0x" + text


@lru_cache(maxsize=16_384)
def _hexbytes(value: str) -> HexBytes:
    """0x-hex as ``HexBytes``, remembered: a settlement's receipt repeats the same block hash,
    transaction hash and topics in each of its hundreds of logs (``HexBytes`` is immutable)."""
    return HexBytes(bytes.fromhex(value[2:] if value[:2] in ("0x", "0X") else value))


class Logs(Sequence[Mapping[str, Any]]):
    """A receipt's logs as the node sent them, each formatted (:func:`formatted`) on first
    access and kept."""

    def __init__(self, raw: Sequence[Mapping[str, Any]]) -> None:
        self._raw = raw
        self._done: list[Mapping[str, Any]] | None = None

    def _items(self) -> list[Mapping[str, Any]]:
        if self._done is None:
            self._done = [formatted(item) for item in self._raw]
        return self._done

    @overload
    def __getitem__(self, index: int) -> Mapping[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Mapping[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> Mapping[str, Any] | Sequence[Mapping[str, Any]]:
        return self._items()[index]

    def __len__(self) -> int:
        return len(self._raw)


def formatted(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-RPC block / transaction / receipt with web3's value types."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if value is None:
            out[key] = None
        elif key in _QUANTITY_FIELDS and isinstance(value, str):
            out[key] = int(value, 16)
        elif key in _BYTES_FIELDS and isinstance(value, str):
            out[key] = _hexbytes(value)
        elif key == "topics":
            out[key] = [_hexbytes(t) for t in value]
        elif key == "logs":
            out[key] = [formatted(item) for item in value]
        else:
            out[key] = value
    return out
