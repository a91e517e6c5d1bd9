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

HOT, FULL, FULL_ONLY = "hot", "full", "full_only"
"""How a vault is read: ``getHotState`` merged into the state read in full under the same
configHash (HOT); ``getState`` and ``getHotState`` (FULL: first read, or its config changed);
``getState`` alone (FULL_ONLY: a vault without ``getHotState``)."""
_CALLS = {HOT: 1, FULL: 2, FULL_ONLY: 1}


class StateReader:
    """Reads the registry version, the block's base fee and timestamp, and every vault's state.

    A vault's params, guards and book change only by governance, so they are read in full
    (``getState``) once per configHash and the block's multicall asks most vaults only for
    what moves (``getHotState``: balances, oracle round, nonces, buckets, and configHash). A
    vault whose configHash changed is read in full again in a second multicall at the same
    block. The hash is the vault's own over those fields, so a reorg that replaces a
    governance change cannot leave a stale copy in use."""

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
        # vault -> (configHash, the state read in full under it)
        self._full: dict[str, tuple[bytes, VaultState]] = {}
        self._full_only: set[str] = set()  # vaults whose getHotState fails
        # vault -> (its last return bytes, their state): the same bytes make the same state
        self._decoded: dict[str, tuple[bytes, VaultState]] = {}
        # (vaults, how each is read, their gas), each chunk's (call count, calldata): the
        # last block's requests
        self._requests: tuple[tuple[Any, ...], list[tuple[int, str]]] | None = None

    async def read(self, block: BlockRef, vaults: Sequence[str]) -> Snapshot:
        kinds = [self._kind(v) for v in vaults]
        requests = self._chunk_requests(vaults, kinds, True)
        calls = len(requests)
        results = await self._read_chunks(block, requests)
        base_fee, timestamp, version = (
            abi.decode_uint(r.return_data, what) for r, what in zip(results, _HEADER, strict=False)
        )
        found, unreadable, again = self._decode_vaults(vaults, kinds, results[len(_HEADER) :])
        if again:  # configHash changed (or getHotState failed): read in full at this block
            kinds_again = [self._kind(v, changed=True) for v in again]
            requests = self._chunk_requests(again, kinds_again, False)
            calls += len(requests)
            more, more_unreadable, _ = self._decode_vaults(
                again, kinds_again, await self._read_chunks(block, requests)
            )
            found |= more
            unreadable += more_unreadable
        states = [found[v] for v in vaults if v in found]
        self._legs = {s.address: len(s.book) for s in states}
        live = set(vaults)
        self._full = {v: f for v, f in self._full.items() if v in live}
        self._decoded = {v: d for v, d in self._decoded.items() if v in live}
        return Snapshot(
            block, base_fee, timestamp, version, tuple(states), tuple(unreadable), rpc_calls=calls
        )

    def _kind(self, vault: str, changed: bool = False) -> str:
        if vault in self._full_only:
            return FULL_ONLY
        return FULL if changed or vault not in self._full else HOT

    async def _read_chunks(
        self, block: BlockRef, chunks: list[tuple[int, str]]
    ) -> list[abi.CallResult]:
        # the first chunk's request is sent now, the others' at the loop's next turn
        rest = [asyncio.ensure_future(self._aggregate(block, *c)) for c in chunks[1:]]
        try:
            results = await self._aggregate(block, *chunks[0])
            for chunk in await asyncio.gather(*rest):
                results += chunk
        finally:
            for task in rest:  # when a chunk failed or the read was cancelled
                task.cancel()
        return results

    def _chunk_requests(
        self, vaults: Sequence[str], kinds: Sequence[str], header: bool
    ) -> list[tuple[int, str]]:
        """The header's calls (``header``) and each vault's calls (by its kind) in chunks by
        count and gas: each chunk's call count and its ``aggregate3`` calldata as 0x-hex. A
        vault's calls stay in one chunk. The block's same request as the last block's (same
        vaults, kinds and book sizes) reuses its calldata."""
        gas = [self._gas(v, kind) for v, kind in zip(vaults, kinds, strict=True)]
        key = (tuple(vaults), tuple(kinds), tuple(gas))
        if header and self._requests is not None and self._requests[0] == key:
            return self._requests[1]
        groups: list[list[abi.Call3]] = []
        if header:
            groups += [
                [abi.Call3(self._multicall, abi.GET_BASEFEE, allow_failure=False)],
                [abi.Call3(self._multicall, abi.GET_BLOCK_TIMESTAMP, allow_failure=False)],
                [abi.Call3(self._registry, abi.REGISTRY_VERSION, allow_failure=False)],
            ]
            gas = [30_000] * len(_HEADER) + gas
        for vault, kind in zip(vaults, kinds, strict=True):
            groups.append([abi.Call3(vault, selector) for selector in _SELECTORS[kind]])
        plan = abi.plan_chunks(gas, self._chunk_size, self._gas_budget)
        requests = []
        for r in plan:
            calls = [call for group in groups[r.start : r.stop] for call in group]
            requests.append((len(calls), "0x" + abi.encode_aggregate3(calls).hex()))
        if header:
            self._requests = (key, requests)
        return requests

    def _gas(self, vault: str, kind: str) -> int:
        """The gas a vault's calls are expected to take (the chunks are sized by it)."""
        if kind == HOT:
            return abi.GET_HOT_STATE_GAS
        full = abi.get_state_gas(self._legs.get(vault, 4))
        return full + abi.GET_HOT_STATE_GAS if kind == FULL else full

    def _decode_vaults(
        self, vaults: Sequence[str], kinds: Sequence[str], results: Sequence[abi.CallResult]
    ) -> tuple[dict[str, VaultState], list[Unreadable], list[str]]:
        """Each vault's state from its calls' results; the vaults to read in full again."""
        found: dict[str, VaultState] = {}
        unreadable: list[Unreadable] = []
        again: list[str] = []
        at = 0
        for vault, kind in zip(vaults, kinds, strict=True):
            mine = results[at : at + _CALLS[kind]]
            at += _CALLS[kind]
            try:
                state = self._hot(vault, mine[0]) if kind == HOT else self._whole(vault, mine)
            except DecodeError as exc:
                unreadable.append(Unreadable(vault, str(exc)))
                continue
            if state is None:
                again.append(vault)
            else:
                found[vault] = state
        if at != len(results):
            raise DecodeError(f"aggregate3 returned {len(results)} vault results, {at} expected")
        return found, unreadable, again

    def _hot(self, vault: str, result: abi.CallResult) -> VaultState | None:
        """The vault's state from its getHotState; None when it must be read in full."""
        if not result.success:
            return None  # new code, or a failure: the full read says which
        last = self._decoded.get(vault)
        if last is not None and last[0] == result.return_data:
            return last[1]
        try:
            hot = abi.decode_hot_state(vault, result.return_data)
        except DecodeError:
            return None  # not the layout this keeper knows: the full read says what it is
        config_hash, cold = self._full[vault]
        if hot.config_hash != config_hash:
            return None
        state = hot.onto(cold)
        self._decoded[vault] = (result.return_data, state)
        return state

    def _whole(self, vault: str, results: Sequence[abi.CallResult]) -> VaultState:
        """The vault's state from getState (and, for a FULL read, its configHash from
        getHotState: kept to read the vault hot from the next block)."""
        full = results[0]
        if not full.success:
            reason = abi.decode_revert(full.return_data)
            raise DecodeError(f"getState reverted: {reason}")
        last = self._decoded.get(vault)
        if last is not None and last[0] == full.return_data:
            state = last[1]
        else:
            state = abi.decode_vault_state(vault, full.return_data)
        self._decoded[vault] = (full.return_data, state)
        if len(results) < 2:
            return state
        try:
            if not results[1].success:
                raise DecodeError("getHotState reverted")
            config_hash = abi.decode_hot_state(vault, results[1].return_data).config_hash
        except DecodeError as exc:
            log.warning(
                "vault without getHotState: read in full every block",
                extra={"fields": {"vault": vault, "why": str(exc)}},
            )
            self._full_only.add(vault)
            self._full.pop(vault, None)
            return state
        self._full[vault] = (config_hash, state)
        return state

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


_SELECTORS = {
    HOT: (abi.GET_HOT_STATE,),
    FULL: (abi.GET_STATE, abi.GET_HOT_STATE),
    FULL_ONLY: (abi.GET_STATE,),
}


def _registry_event(item: dict[str, Any]) -> RegistryEvent:
    topics = item["topics"]
    return RegistryEvent(
        added=str(topics[0]).lower() == abi.VAULT_ADDED_TOPIC.lower(),
        vault=abi.topic_address(bytes.fromhex(str(topics[1])[2:])),
        block_number=int(item["blockNumber"], 16),
        tx_hash=str(item["transactionHash"]),
    )
