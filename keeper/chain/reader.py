"""One block's state in one Multicall3 ``aggregate3`` eth_call, pinned to the block.

Chunked (and the chunks sent concurrently) when there are many vaults. Calls go through
``RpcClient`` (failover across endpoints, errors as ``KeeperError``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address

from keeper.chain.rpc import RpcClient
from keeper.core import abi
from keeper.core.types import BlockRef, Decision, VaultState
from keeper.errors import DecodeError

log = logging.getLogger("keeper.reader")


@dataclass(frozen=True)
class Unreadable:
    vault: str
    reason: str


@dataclass(frozen=True)
class RegistryEvent:
    added: bool  # VaultAdded, else VaultRemoved
    vault: str
    block_number: int
    tx_hash: str


@dataclass(frozen=True)
class Snapshot:
    """Everything read at one block."""

    block: BlockRef
    base_fee_wei: int
    timestamp: int
    registry_version: int
    vaults: tuple[VaultState, ...]
    unreadable: tuple[Unreadable, ...]
    rpc_calls: int


Decided = tuple[Snapshot, Sequence[Decision]]
"""A block's snapshot and the decisions made from it."""


_HEADER = ("getBasefee", "getCurrentBlockTimestamp", "registry version")  # the first 3 results


class StateReader:
    """Reads the registry version, the block's base fee and timestamp, and every vault's state."""

    def __init__(
        self,
        rpc: RpcClient,
        multicall: str,
        registry: str,
        chunk_size: int,
        gas_budget: int = 20_000_000,
    ) -> None:
        self._rpc = rpc
        self._multicall = to_checksum_address(multicall)
        self._registry = to_checksum_address(registry)
        self._chunk_size = chunk_size
        self._gas_budget = gas_budget
        self._legs: dict[str, int] = {}  # book sizes seen, to size the chunks by gas
        # vault -> (its last getState bytes, their decoding): most vaults' state does not
        # change from one block to the next, and the same bytes decode to the same state
        self._decoded: dict[str, tuple[bytes, VaultState]] = {}
        # (vaults, their gas), each chunk's (call count, calldata): the last block's requests
        self._requests: tuple[tuple[Any, ...], list[tuple[int, str]]] | None = None

    async def read(self, block: BlockRef, vaults: Sequence[str]) -> Snapshot:
        chunks = self._chunk_requests(vaults)
        # the first chunk's request is sent now, the others' at the loop's next turn
        rest = [asyncio.ensure_future(self._aggregate(block, *c)) for c in chunks[1:]]
        try:
            results = await self._aggregate(block, *chunks[0])
            for chunk in await asyncio.gather(*rest):
                results += chunk
        finally:
            for task in rest:  # when a chunk failed or the read was cancelled
                task.cancel()
        base_fee, timestamp, version = (
            abi.decode_uint(r.return_data, what) for r, what in zip(results, _HEADER, strict=False)
        )
        states, unreadable = self._decode_vaults(vaults, results[len(_HEADER) :])
        self._legs.update({s.address: len(s.book) for s in states})
        return Snapshot(
            block,
            base_fee,
            timestamp,
            version,
            tuple(states),
            tuple(unreadable),
            rpc_calls=len(chunks),
        )

    def _chunk_requests(self, vaults: Sequence[str]) -> list[tuple[int, str]]:
        """The header's calls and every vault's ``getState`` in chunks (by count and gas):
        each chunk's call count and its ``aggregate3`` calldata as 0x-hex. The same vaults
        with the same book sizes make the same requests: the last block's are reused."""
        gas = [abi.get_state_gas(self._legs.get(v, 4)) for v in vaults]
        key = (tuple(vaults), tuple(gas))
        if self._requests is not None and self._requests[0] == key:
            return self._requests[1]
        calls = [
            abi.Call3(self._multicall, abi.GET_BASEFEE, allow_failure=False),
            abi.Call3(self._multicall, abi.GET_BLOCK_TIMESTAMP, allow_failure=False),
            abi.Call3(self._registry, abi.REGISTRY_VERSION, allow_failure=False),
        ] + [abi.Call3(v, abi.GET_STATE) for v in vaults]
        plan = abi.plan_chunks([30_000] * len(_HEADER) + gas, self._chunk_size, self._gas_budget)
        requests = [
            (len(r), "0x" + abi.encode_aggregate3(calls[r.start : r.stop]).hex()) for r in plan
        ]
        self._requests = (key, requests)
        return requests

    def _decode_vaults(
        self, vaults: Sequence[str], results: Sequence[abi.CallResult]
    ) -> tuple[list[VaultState], list[Unreadable]]:
        states: list[VaultState] = []
        unreadable: list[Unreadable] = []
        decoded: dict[str, tuple[bytes, VaultState]] = {}
        for vault, result in zip(vaults, results, strict=True):
            if not result.success:
                reason = abi.decode_revert(result.return_data)
                unreadable.append(Unreadable(vault, f"getState reverted: {reason}"))
                continue
            last = self._decoded.get(vault)
            if last is not None and last[0] == result.return_data:
                state = last[1]
            else:
                try:
                    state = abi.decode_vault_state(vault, result.return_data)
                except DecodeError as exc:
                    unreadable.append(Unreadable(vault, str(exc)))
                    continue
            decoded[vault] = (result.return_data, state)
            states.append(state)
        self._decoded = decoded  # vaults no longer read are forgotten
        return states, unreadable

    async def registry_vaults(self, block: BlockRef) -> tuple[str, ...]:
        data = await self._call(self._registry, abi.REGISTRY_VAULTS, block)
        return abi.decode_address_list(data)

    async def registry_events(self, first: int, last: int) -> list[RegistryEvent]:
        """The registry's VaultAdded / VaultRemoved events in blocks ``first..last``, in order."""
        query = {
            "address": self._registry,
            "fromBlock": hex(first),
            "toBlock": hex(last),
            "topics": [[abi.VAULT_ADDED_TOPIC, abi.VAULT_REMOVED_TOPIC]],
        }
        logs = await self._rpc.call("eth_getLogs", [query])
        try:
            return [_registry_event(item) for item in logs]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise DecodeError(f"registry events {first}..{last}: malformed log: {exc}") from exc

    async def _aggregate(self, block: BlockRef, count: int, data: str) -> list[abi.CallResult]:
        results = abi.decode_aggregate3(await self._call(self._multicall, data, block))
        if len(results) != count:
            raise DecodeError(f"aggregate3 returned {len(results)} results for {count} calls")
        return results

    async def _call(self, to: str, data: bytes | str, block: BlockRef) -> bytes:
        """eth_call (``data``: bytes or 0x-hex) pinned to ``block``'s hash; failures come out
        as ``KeeperError`` (a node behind or rate-limiting is retried by the policy, then the
        block is retried on the next head; a revert is ``SimulationReverted``)."""
        call = {"to": to, "data": data if isinstance(data, str) else "0x" + data.hex()}
        raw = await self._rpc.call("eth_call", [call, block.hash])
        if not isinstance(raw, str) or not raw.startswith("0x"):
            raise DecodeError(f"eth_call to {to} at block {block.number}: not hex: {raw!r}")
        try:
            return bytes.fromhex(raw[2:])
        except ValueError as exc:
            raise DecodeError(f"eth_call to {to} at block {block.number}: {exc}") from exc


def _registry_event(item: dict[str, Any]) -> RegistryEvent:
    topics = item["topics"]
    return RegistryEvent(
        added=str(topics[0]).lower() == abi.VAULT_ADDED_TOPIC.lower(),
        vault=abi.topic_address(bytes.fromhex(str(topics[1])[2:])),
        block_number=int(item["blockNumber"], 16),
        tx_hash=str(item["transactionHash"]),
    )
