"""Acting on decisions: size, gate on fees, route, simulate, batch, send, confirm, verify.

One block, top to bottom (:meth:`RebalanceActor.act`):
1. verify the hedges that were mined since the last block (the fresh decision is the read-back);
2. size a trade for every vault that must rebalance and has nothing in flight;
3. above the fee cap only urgent trades go on; the others wait and are re-decided next block;
4. quote every trade concurrently (aggregator, direct Uniswap fallback, oracle-bounded);
5. simulate the whole batch with eth_call; legs that would revert are dropped with the reason;
6. pack the legs into as few ``RebalanceBatcher`` transactions as the gas limit allows and
   submit each to the transaction lifecycle (``keeper.tx``: journal -> sign -> broadcast).

The lifecycle follows the journal once per block AFTER this block's decisions
(:meth:`RebalanceActor.on_chain_update`), asking :func:`keeper.act.redecide.redecide_from`
whether journaled work is still wanted before anything is re-broadcast or replaced.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from eth_abi.abi import decode
from web3 import AsyncWeb3

from keeper.act.redecide import BatchCheck, redecide_from
from keeper.chain.reader import Snapshot
from keeper.chain.retry import READ_POLICY
from keeper.chain.routing import Routed, Router
from keeper.config import GWEI
from keeper.core import abi
from keeper.core.chaintrack import ChainUpdate
from keeper.core.decide import GOVERNANCE_TRIGGERS
from keeper.core.planner import FeeGate, NoTrade, TradeSpec, pack_batches, size_trade, split_by_fees
from keeper.core.swap import SwapRequest
from keeper.core.types import Action, BlockRef, Decision, VaultState
from keeper.errors import SimulationReverted
from keeper.store import JournalEntry, Store, TxIntent, TxKind
from keeper.tx import Lifecycle, Refused, Verdict

log = logging.getLogger("keeper.act")


@dataclass(frozen=True)
class ActConfig:
    keeper: str
    batcher: str
    weth: str
    usdc: str
    routers: frozenset[str]
    deadline_seconds: int
    dex_fee_bps: int
    batch_gas_limit: int
    gas_per_leg: int
    gas_batch_base: int
    max_fee_cap_wei: int


@dataclass
class RebalanceActor:
    """The :class:`keeper.pipeline.Actor` that sends real transactions."""

    w3: AsyncWeb3[Any]
    config: ActConfig
    store: Store
    router: Router
    lifecycle: Lifecycle
    executes: BatchCheck  # would a journaled batch still execute every leg now
    session: aiohttp.ClientSession | None = None
    # vault -> (the decision it sent, the block its rebalance was mined in)
    to_verify: dict[str, tuple[Decision, int]] = field(default_factory=dict)

    async def start(self) -> None:
        """Before anything else: bring the journal in line with the chain."""
        report = await self.lifecycle.start(_no_decision_yet)
        log.info("journal reconciled", extra={"fields": _report_fields(report)})
        for entry_id in report.mined:  # mined while the keeper was down: verify them too
            await self._inspect_mined(self.store.entry(entry_id))

    # --- the chain moved ---------------------------------------------------------------------

    async def on_chain_update(
        self, update: ChainUpdate, decisions: Sequence[Decision]
    ) -> dict[str, str]:
        """After this block's decisions: the lifecycle follows the journal, re-deciding
        journaled work from ``decisions`` before re-broadcasting, replacing or cancelling."""
        if update.head is None:
            return {}
        report = await self.lifecycle.on_block(
            update.head,
            redecide_from(decisions, self.executes),
            frozenset(d.vault for d in decisions if d.urgent),
        )
        failed: dict[str, str] = {}
        for entry_id in report.mined:
            failed |= await self._inspect_mined(self.store.entry(entry_id))
        return failed

    async def _inspect_mined(self, entry: JournalEntry) -> dict[str, str]:
        """Log each leg's outcome from the receipt; successful legs are verified next block.
        Returns the governance triggers of the legs that failed (vault -> trigger)."""
        failed: dict[str, str] = {}
        if entry.kind != TxKind.REBALANCE or entry.tx_hash is None:
            return failed
        tx_hash = entry.tx_hash
        receipt = await READ_POLICY.call(
            lambda: self.w3.eth.get_transaction_receipt(tx_hash),  # type: ignore[arg-type]
            "receipt",
        )
        decided = {v: _decision_from_json(d) for v, d in entry.payload.get("decisions", {}).items()}
        for item in receipt["logs"]:
            topic = "0x" + bytes(item["topics"][0]).hex()
            if topic not in (abi.LEG_EXECUTED_TOPIC, abi.LEG_FAILED_TOPIC):
                continue
            vault = abi.topic_address(item["topics"][2])
            if topic == abi.LEG_FAILED_TOPIC:
                (reason,) = decode(["bytes"], bytes(item["data"]))
                if vault in decided and decided[vault].trigger in GOVERNANCE_TRIGGERS:
                    failed[vault] = decided[vault].trigger
                log.error(
                    "rebalance leg failed on chain",
                    extra={
                        "fields": {
                            "vault": vault,
                            "tx": entry.tx_hash,
                            "reason": abi.decode_revert(reason),
                        }
                    },
                )
            else:
                (amount_out,) = decode(["uint256"], bytes(item["data"]))
                log.info(
                    "rebalance mined",
                    extra={
                        "fields": {
                            "vault": vault,
                            "tx": entry.tx_hash,
                            "block": receipt["blockNumber"],
                            "amount_out": amount_out,
                            "gas_used": receipt["gasUsed"],
                        }
                    },
                )
                if vault in decided:
                    self.to_verify[vault] = (decided[vault], int(receipt["blockNumber"]))
        return failed

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
        await self.w3.provider.disconnect()

    # --- one block ------------------------------------------------------------------------------

    async def act(
        self, block: BlockRef, snapshot: Snapshot, decisions: Sequence[Decision]
    ) -> set[str]:
        self._verify_hedges(decisions)
        states = {s.address: s for s in snapshot.vaults}
        trades = self._trades(block, decisions, states)
        if not trades:
            return set()
        go, wait = split_by_fees(
            trades, FeeGate(snapshot.base_fee_wei, self.config.max_fee_cap_wei)
        )
        for t in wait:
            log.info(
                "rebalance deferred: fees above the cap",
                extra={
                    "fields": {
                        "vault": t.vault,
                        "base_fee_gwei": snapshot.base_fee_wei / GWEI,
                        "cap_gwei": self.config.max_fee_cap_wei / GWEI,
                    }
                },
            )
        go = await self._affordable(go)
        routed = await self._route(block, go, states)
        legs = await self._simulate(routed, block)
        by_vault = {d.vault: d for d in decisions}
        return await self._send(block, legs, by_vault)

    def _verify_hedges(self, decisions: Sequence[Decision]) -> None:
        """Read-back: the first decision after a mined rebalance must be inside the band."""
        for d in decisions:
            pending = self.to_verify.get(d.vault)
            if pending is None or d.block_number < pending[1]:
                continue  # nothing to verify, or this block's state predates the rebalance
            sent, _ = self.to_verify.pop(d.vault)
            if d.action == Action.SKIP:
                continue
            fields = {
                "vault": d.vault,
                "block": d.block_number,
                "deviation": d.deviation,
                "band": d.band,
                "deviation_before": sent.deviation,
            }
            if abs(d.deviation) <= d.band:
                log.info("hedge verified: back inside the band", extra={"fields": fields})
            else:
                log.error(
                    "hedge missed: still outside the band after the rebalance",
                    extra={"fields": fields},
                )

    def _trades(
        self, block: BlockRef, decisions: Sequence[Decision], states: dict[str, VaultState]
    ) -> list[TradeSpec]:
        # In flight, or mined in a block newer than the one these decisions read.
        in_flight = set(self.lifecycle.in_flight_vaults())
        for entry in self.store.mined_since(block.number + 1):
            in_flight.update(entry.vaults)
        trades = []
        for d in decisions:
            if d.action != Action.REBALANCE:
                continue
            if d.vault in in_flight:
                log.info(
                    "rebalance already in flight: waiting for its receipt",
                    extra={"fields": {"vault": d.vault}},
                )
                continue
            spec = size_trade(d, states[d.vault], block.timestamp, self.config.dex_fee_bps)
            if isinstance(spec, NoTrade):
                log.warning("no trade", extra={"fields": {"vault": d.vault, "reason": spec.reason}})
                continue
            if spec.note:
                log.warning("trade resized", extra={"fields": {"vault": d.vault, "why": spec.note}})
            trades.append(spec)
        return trades

    async def _affordable(self, trades: Sequence[TradeSpec]) -> list[TradeSpec]:
        """Trades whose transaction would fit under its fee cap now; above the (emergency)
        cap nothing is quoted, simulated or journaled, and the vault is re-decided next block."""
        allowed: dict[bool, bool] = {}
        kept = []
        for t in trades:
            if t.urgent not in allowed:
                allowed[t.urgent] = await self.lifecycle.fees_allow(t.urgent)
            if allowed[t.urgent]:
                kept.append(t)
            else:
                log.info(
                    "rebalance deferred: fees above the cap for its urgency",
                    extra={"fields": {"vault": t.vault, "urgent": t.urgent}},
                )
        return kept

    async def _route(
        self, block: BlockRef, trades: Sequence[TradeSpec], states: dict[str, VaultState]
    ) -> list[tuple[TradeSpec, Routed]]:
        requests = [self._request(block, t, states[t.vault]) for t in trades]
        results = await self.router.quote_all(requests)
        routed = []
        for trade, result in zip(trades, results, strict=True):
            if isinstance(result, Routed):
                if result.fell_back:
                    log.warning(
                        "aggregator not used: direct route",
                        extra={
                            "fields": {
                                "vault": trade.vault,
                                "attempts": [a.detail for a in result.attempts],
                            }
                        },
                    )
                routed.append((trade, result))
            else:
                log.error(
                    "no safe route: rebalance skipped",
                    extra={"fields": {"vault": trade.vault, "why": result.reason}},
                )
        return routed

    def _request(self, block: BlockRef, trade: TradeSpec, state: VaultState) -> SwapRequest:
        return SwapRequest(
            vault=trade.vault,
            sell_underlying=trade.sell_underlying,
            amount_in=trade.amount_in,
            underlying=self.config.weth,
            quote_token=self.config.usdc,
            oracle_answer=state.oracle.answer,
            oracle_decimals=state.oracle.decimals,
            max_slippage_bps=state.params.max_slippage_bps,
            allowed_routers=self.config.routers,
            deadline=block.timestamp + self.config.deadline_seconds,
        )

    async def _simulate(
        self, routed: Sequence[tuple[TradeSpec, Routed]], block: BlockRef
    ) -> list[tuple[TradeSpec, Routed]]:
        """eth_call the batch; legs that would fail are dropped with their reason."""
        if not routed:
            return []
        deadline = block.timestamp + self.config.deadline_seconds
        data = abi.encode_batch_execute([r.leg for _, r in routed], deadline)
        call = {"from": self.config.keeper, "to": self.config.batcher, "data": data}
        try:
            raw = await READ_POLICY.call(
                lambda: self.w3.eth.call(call, block_identifier="latest"),  # type: ignore[arg-type]
                "batch simulation",
            )
        except SimulationReverted as exc:
            log.error(
                "batch simulation reverts as a whole: nothing sent",
                extra={"fields": {"reason": exc.reason}},
            )
            return []
        (ok,) = decode(["bool[]"], bytes(raw))
        kept = []
        for (trade, r), good in zip(routed, ok, strict=True):
            if good:
                kept.append((trade, r))
                continue
            reason = await self._leg_reason(r, deadline)
            log.error(
                "leg dropped: simulation reverts",
                extra={"fields": {"vault": trade.vault, "reason": reason}},
            )
        return kept

    async def _leg_reason(self, r: Routed, deadline: int) -> str:
        """Why one leg reverts: the vault's own revert data, called as the batcher would."""
        call = {
            "from": self.config.batcher,
            "to": r.leg.vault,
            "data": abi.encode_vault_rebalance(r.leg, deadline),
        }
        try:
            await self.w3.eth.call(call)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - web3 raises several revert types
            data = getattr(exc, "data", None)
            if isinstance(data, str) and data.startswith("0x"):
                return abi.decode_revert(bytes.fromhex(data[2:]))
            return str(exc)
        return "reverts only inside the batch"

    async def _send(
        self,
        block: BlockRef,
        legs: Sequence[tuple[TradeSpec, Routed]],
        decisions: dict[str, Decision],
    ) -> set[str]:
        if not legs:
            return set()
        deadline = block.timestamp + self.config.deadline_seconds
        batches = pack_batches(
            [r.leg for _, r in legs],
            [self.config.gas_per_leg] * len(legs),
            self.config.gas_batch_base,
            self.config.batch_gas_limit,
        )
        urgent = {t.vault for t, _ in legs if t.urgent}
        sent: set[str] = set()
        for batch in batches:
            vaults = tuple(leg.vault for leg in batch.legs)
            intent = TxIntent(
                kind=TxKind.REBALANCE,
                sender=self.config.keeper,
                to=self.config.batcher,
                data=abi.encode_batch_execute(batch.legs, deadline),
                urgent=bool(urgent & set(vaults)),
                vaults=vaults,
                payload={
                    "block": block.number,
                    "vaults": list(vaults),
                    "decisions": {v: _decision_json(decisions[v]) for v in vaults},
                },
            )
            outcome = await self.lifecycle.submit(intent)
            if isinstance(outcome, Refused):  # logged by the lifecycle; decided afresh next block
                continue
            entry = outcome.entry
            log.info(
                "rebalance batch sent",
                extra={
                    "fields": {
                        "vaults": vaults,
                        "legs": len(batch.legs),
                        "tx": entry.tx_hash,
                        "nonce": entry.nonce,
                        "max_fee_gwei": (entry.max_fee_wei or 0) / GWEI,
                    }
                },
            )
            sent.update(vaults)
        return sent


async def _no_decision_yet(entry: JournalEntry) -> Verdict:
    """At start nothing is decided yet: journaled work waits for the first block's decisions."""
    return Verdict.UNKNOWN


def _decision_json(d: Decision) -> dict[str, Any]:
    return {k: (v.value if isinstance(v, Action) else v) for k, v in vars(d).items()}


def _decision_from_json(d: dict[str, Any]) -> Decision:
    return Decision(**{**d, "action": Action(d["action"])})


def _report_fields(report: Any) -> dict[str, Any]:
    return {k: list(v) for k, v in vars(report).items() if v}
