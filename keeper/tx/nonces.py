"""The nonce manager: nonces handed out locally from the store, resynced from the chain.

No RPC per transaction: a claim is one store transaction. The chain is asked
(``eth_getTransactionCount(address, "pending")``) only at start, after a ``nonce too low``,
and once per block to notice the key being used outside the keeper (the chain's count above
ours). A nonce is bound to a journal entry when claimed; if that entry fails before its
transaction can reach the chain the nonce is given back and handed out again (see
``keeper.store.nonces``), so no nonce is ever skipped.
"""

from __future__ import annotations

import logging

from eth_utils.address import to_checksum_address

from keeper.chain.ahead import ReadAhead
from keeper.chain.eth import Chain
from keeper.chain.retry import READ_POLICY, RetryPolicy
from keeper.store import Store

log = logging.getLogger("keeper.nonces")


class NonceManager:
    def __init__(
        self, w3: Chain, store: Store, address: str, policy: RetryPolicy = READ_POLICY
    ) -> None:
        self._w3 = w3
        self._store = store
        self.address = to_checksum_address(address)
        self._policy = policy
        self._ahead = ReadAhead()

    def drop_reads_ahead(self) -> None:
        """Cancel what was read ahead and not taken (at shutdown)."""
        self._ahead.begin(None)

    def read_ahead(self, head: int) -> None:
        """Start the read :meth:`detect_external_use` makes at ``head``."""
        self._ahead.begin(head)
        self._ahead.start("pending", self._read_pending)

    async def chain_pending(self) -> int:
        """The chain's transaction count of the address, pending transactions included."""
        return await self._policy.call(self._read_pending, "eth_getTransactionCount")

    async def _read_pending(self) -> int:
        return int(await self._w3.eth.get_transaction_count(self.address, "pending"))

    async def sync(self) -> int:
        """Align the store with the chain and the journal; returns the next fresh nonce."""
        chain = await self.chain_pending()
        before = self._store.next_nonce(self.address)
        after = self._store.resync_nonces(self.address, chain)
        if before != after:
            log.info(
                "nonces resynced",
                extra={
                    "fields": {
                        "address": self.address,
                        "chain": chain,
                        "was": before,
                        "next": after,
                    }
                },
            )
        return after

    async def ensure_synced(self) -> None:
        """Sync with the chain once, before the first nonce is handed out."""
        if self._store.next_nonce(self.address) is None:
            await self.sync()

    async def claim(self, entry_id: int) -> int:
        """The nonce for journal entry ``entry_id`` (syncs first if the store has none)."""
        await self.ensure_synced()
        return self._store.claim_nonce(entry_id)

    async def detect_external_use(self) -> bool:
        """Resync when the chain counts more transactions than the keeper handed out (the
        count read ahead at this head, when it was)."""
        chain = await self._policy.call(
            lambda: self._ahead.take("pending", self._read_pending), "eth_getTransactionCount"
        )
        local = self._store.next_nonce(self.address)
        if local is None:  # never synced: nothing to compare with
            self._store.resync_nonces(self.address, chain)
            return False
        if chain <= local:
            return False
        log.warning(
            "key used outside the keeper: resyncing nonces",
            extra={"fields": {"address": self.address, "chain": chain, "local": local}},
        )
        self._store.resync_nonces(self.address, chain)
        return True
