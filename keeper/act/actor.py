"""Acting on decisions: size, gate on fees, net the book, quote once, simulate, send, verify.

One block, top to bottom (:meth:`RebalanceActor.act`):
1. (after the sends, off the path from head to broadcast) the trades of what was mined are
   logged from the receipts and those hedges verified (this block's decision is the read-back);
2. size a trade for every vault that must rebalance and has nothing in flight, within its
   guards (:func:`keeper.core.planner.size_trade`);
3. above the fee cap only urgent trades go on; the others wait and are re-decided next block;
4. net the book (:mod:`keeper.core.book`): the aggregator is asked for the net first, the
   direct route's depth for every size the book needs comes in one Multicall3 eth_call, and
   the plan is settlements of at most ``max_legs`` legs (fewer when the simulation gas cap
   says so), the net split over blocks when the pool is too shallow for one swap;
5. every settlement is simulated (``keeper.chain.simulate``: one execution at a limit
   guessed from earlier measurements, else one for the gas it uses and one at the limit it
   is sent with; its gas limit is that plus headroom); an
   aggregator route that fails falls back to the direct route in the same block; a vault
   named by the revert is left out and the rest planned again; a node that answers "out of
   gas" gets the settlement in halves;
6. one vault: ``rebalance(trade, router, swapData)`` on the vault itself; several:
   ``BookSettlement.settle(legs, net)``; in plan order, as many as fit together in
   ``block_gas_share`` of the block's gas limit (always the first; what spills over would be
   mined later on a state it was not planned for, so it is decided afresh next block); each
   handed to the sender (journal -> sign -> broadcast) as soon as it and those planned
   before it have simulated,
   its journal payload carrying ``legs`` (with each vault's ``state_nonce``) and ``decisions``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp

from keeper.act.redecide import BatchCheck, redecide_from
from keeper.chain.eth import Chain
from keeper.chain.reader import Decided, Snapshot
from keeper.chain.routing import AggregatorRace, NetRoute, Router
from keeper.chain.rpc import RpcClient
from keeper.chain.simulate import GasGuess, gas_needed
from keeper.chain.uniswap import DirectDepth
from keeper.config import GWEI
from keeper.core import abi
from keeper.core.abicodec import checksum
from keeper.core.book import (
    MAX_LEGS,
    BookConfig,
    BookPlan,
    Settlement,
    books,
    chunk_nets,
    net_need,
    plan_book,
    sample_sizes,
)
from keeper.core.chaintrack import ChainUpdate
from keeper.core.decide import GOVERNANCE_TRIGGERS
from keeper.core.planner import (
    FeeGate,
    NoTrade,
    TradeSpec,
    size_trade,
    split_by_fees,
    within_block_gas,
)
from keeper.core.swap import SwapRequest, gas_in_token
from keeper.core.types import Action, BlockRef, Decision, NetSwap
from keeper.errors import (
    KeeperError,
    OutOfGas,
    QuoteError,
    SimulationReverted,
)
from keeper.store import JournalEntry, Store, TxIntent, TxKind
from keeper.tx import Lifecycle, Prepared, Receipt, Refused, Verdict

log = logging.getLogger("keeper.act")

# Reverts that say the book was planned on a view the chain has moved past (its block's
# time, its oracle round), the same for every leg of the book: leaving vaults out or
# halving would only simulate the same failure again; the next block decides afresh.
BOOK_STALE_ERRORS = frozenset({"DeadlineExpired", "OracleStale", "OracleFromFuture"})
LEG_GAS = 150_000  # upper estimate of one settlement leg (vault checks, transfers, callback)
SETTLE_BASE_GAS = 250_000  # upper estimate of a settlement without legs (net swap included)


@dataclass(frozen=True)
class ActConfig:
    keeper: str
    settlement: str
    weth: str
    usdc: str
    routers: frozenset[str]
    deadline_seconds: int
    cost_bps: int  # expected DEX fee and slippage (sizing; a buying net is grossed up by it)
    net_slippage_bps: int  # the signed minimum output below the keeper's own direct quote
    max_fee_cap_wei: int
    simulation_gas_cap: int = 25_000_000
    max_legs: int = MAX_LEGS
    gas_headroom_bps: int = 2_000
    block_gas_share: float = 1.0  # of the block's gas limit, for this keeper's transactions

    @property
    def loss_bps(self) -> int:
        """The worst cost the keeper signs, charged to each vault's loss bucket."""
        return self.cost_bps + self.net_slippage_bps

    def legs_per_settlement(self) -> int:
        """At most ``max_legs``, and no more than the simulation gas cap holds."""
        fit = (self.simulation_gas_cap - SETTLE_BASE_GAS) // LEG_GAS
        return max(1, min(self.max_legs, fit))


Group = tuple[list[TradeSpec], int]  # trades planned together, at most this many legs each


@dataclass(frozen=True)
class PlannedTx:
    """One transaction of the book: a settlement (or a single vault's rebalance), routed."""

    settlement: Settlement
    route: NetRoute | None  # None: the legs match exactly, nothing is swapped
    plan: BookPlan
    gas_limit: int | None = None  # from the simulation, with headroom
    call: tuple[str, bytes] | None = None  # (to, calldata) as simulated: encoded once

    @property
    def single(self) -> bool:
        return len(self.settlement.legs) == 1


@dataclass(frozen=True)
class Stages:
    """Where one block's act time went (seconds), for logs and the latency benchmark."""

    size: float = 0.0
    quote: float = 0.0  # the direct route's multicall (and the nets' exact sizes)
    race: float = 0.0  # waiting for the aggregator after the direct quote (its budget)
    plan: float = 0.0
    simulate: float = 0.0  # waiting for simulations (signing ahead excluded)
    sign_ahead: float = 0.0  # journaling and signing a settlement while it simulates
    send: float = 0.0


@dataclass
class RebalanceActor:
    """The :class:`keeper.pipeline.Actor` that sends real transactions."""

    w3: Chain
    config: ActConfig
    store: Store
    router: Router
    lifecycle: Lifecycle
    executes: BatchCheck  # would a journaled transaction still execute now
    session: aiohttp.ClientSession | None = None
    owned: tuple[RpcClient, ...] = ()  # clients only the actor uses (a private relay)
    # a scope whose requests go to the node as one JSON-RPC batch (``RpcClient.batching``)
    batching: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext
    # vault -> (the decision it sent, the block its rebalance was mined in)
    to_verify: dict[str, tuple[Decision, int]] = field(default_factory=dict)
    stages: Stages = field(default_factory=Stages)  # this block's time by stage
    gas_guess: GasGuess = field(default_factory=GasGuess)  # measured limits, to guess from
    # this block's mined rebalances and their receipts, inspected after its sends
    _mined_now: list[tuple[JournalEntry, Receipt | None]] = field(default_factory=list)

    async def start(self) -> None:
        """Before anything else: bring the journal in line with the chain."""
        report = await self.lifecycle.start(_no_decision_yet)
        log.info("journal reconciled", extra={"fields": _report_fields(report)})
        for entry_id in report.mined:  # mined while the keeper was down: verify them too
            entry, receipt = await self._mined(entry_id, report.receipt_of(entry_id))
            self._failed_triggers(entry, receipt)
            self._log_trades(entry, receipt)

    # --- the chain moved ---------------------------------------------------------------------

    def read_ahead(self, head: BlockRef) -> None:
        """A new head arrived: the journal's chain reads start now, alongside the block's read,
        as one JSON-RPC batch (receipts, counts, fee history, balance, block hashes)."""
        with self.batching():
            self.lifecycle.read_ahead(head)

    async def on_chain_update(
        self, update: ChainUpdate, decided: Awaitable[Decided]
    ) -> dict[str, str]:
        """The lifecycle follows the journal (receipts, reorgs) while the block is read and
        decided; journaled work is re-decided from this block's state (each vault's
        ``stateNonce`` and deviation), once ``decided`` answers, before re-broadcasting,
        replacing or cancelling. The trades of what was mined are read from its receipts
        after this block's transactions are sent (:meth:`act`)."""
        if update.head is None:
            return {}

        async def redecide(entry: JournalEntry) -> Verdict:
            snapshot, decisions = await decided
            return await redecide_from(decisions, snapshot.vaults, self.executes)(entry)

        async def urgent() -> frozenset[str]:
            _, decisions = await decided
            return frozenset(d.vault for d in decisions if d.urgent)

        report = await self.lifecycle.on_block(update.head, redecide, urgent, update)
        failed: dict[str, str] = {}
        for entry_id in report.mined:
            entry, receipt = await self._mined(entry_id, report.receipt_of(entry_id))
            failed |= self._failed_triggers(entry, receipt)
            self._mined_now.append((entry, receipt))
        return failed

    async def _mined(
        self, entry_id: int, receipt: Receipt | None
    ) -> tuple[JournalEntry, Receipt | None]:
        """A mined rebalance and its receipt (the one the lifecycle read, else read here)."""
        entry = self.store.entry(entry_id)
        if entry.kind != TxKind.REBALANCE or entry.tx_hash is None:
            return entry, None
        if receipt is None:
            receipt = await self.lifecycle.receipt(entry.tx_hash)
        return entry, receipt

    def _failed_triggers(self, entry: JournalEntry, receipt: Receipt | None) -> dict[str, str]:
        """A reverted transaction traded none of its vaults (v2 settles as a whole): the
        governance triggers of its vaults (vault -> trigger), which fire again."""
        if receipt is None or receipt.status == 1:
            return {}
        decided = {v: _decision_from_json(d) for v, d in entry.payload.get("decisions", {}).items()}
        log.error(
            "rebalance reverted on chain: no vault traded",
            extra={"fields": {"tx": entry.tx_hash, "vaults": list(entry.vaults)}},
        )
        return {v: d.trigger for v, d in decided.items() if d.trigger in GOVERNANCE_TRIGGERS}

    def _log_trades(self, entry: JournalEntry, receipt: Receipt | None) -> None:
        """Log each vault's trade from the receipt (``Traded``); traded vaults are verified
        by the first decision at or after the block it was mined in."""
        if receipt is None or receipt.status != 1:
            return
        decided = entry.payload.get("decisions", {})
        for item in receipt.logs:
            if "0x" + bytes(item["topics"][0]).hex() != abi.TRADED_TOPIC:
                continue
            vault = checksum(item["address"])
            traded = abi.TRADED.decode_data(bytes(item["data"]))
            log.info(
                "rebalance mined",
                extra={
                    "fields": {
                        "vault": vault,
                        "tx": entry.tx_hash,
                        "block": receipt.block_number,
                        "state_nonce": abi.topic_uint(item["topics"][3]),
                        "amount_in": traded["amount_in"],
                        "amount_out": traded["amount_out"],
                        "loss": traded["loss"],
                        "gas_used": receipt.gas_used,
                    }
                },
            )
            if vault in decided:
                self.to_verify[vault] = (_decision_from_json(decided[vault]), receipt.block_number)

    async def close(self) -> None:
        self.lifecycle.drop_reads_ahead()
        await self.router.close()  # aggregator requests still timing, before their session
        if self.session is not None:
            await self.session.close()
        for client in self.owned:
            await client.close()

    # --- one block ------------------------------------------------------------------------------

    async def act(
        self, block: BlockRef, snapshot: Snapshot, decisions: Sequence[Decision]
    ) -> set[str]:
        """Size, net, quote, simulate and send this block's rebalances; then (off the path
        from head to broadcast) log the trades of what was mined and verify those hedges
        against this block's decisions."""
        try:
            return await self._act(block, snapshot, decisions)
        finally:
            for entry, receipt in self._mined_now:
                self._log_trades(entry, receipt)
            self._mined_now.clear()
            self._verify_hedges(decisions)

    async def _act(
        self, block: BlockRef, snapshot: Snapshot, decisions: Sequence[Decision]
    ) -> set[str]:
        t0 = time.perf_counter()
        states = {s.address: s for s in snapshot.vaults}
        trades = self._trades(block, decisions, states)
        self.stages = Stages(size=time.perf_counter() - t0)
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
        sends = _BlockSends(block, {d.vault: d for d in decisions})
        swapping: set[bool] = set()  # directions swapped this block, across books: one pool
        for book in books(go):
            await self._book(sends, book, snapshot.base_fee_wei, swapping)
        return sends.sent

    def _fitting(
        self, block: BlockRef, sent: Sequence[int], txs: list[PlannedTx], limits: Sequence[int]
    ) -> list[PlannedTx]:
        """The first of ``txs`` (with these gas ``limits``) that fit in the block's share of
        gas after the limits already ``sent`` (or ready to be); the rest is logged deferred."""
        fit = within_block_gas([*sent, *limits], block.gas_limit, self.config.block_gas_share)
        keep = max(fit - len(sent), 0)
        if keep < len(txs):
            log.info(
                "rebalance deferred: the block's gas is spent",
                extra={
                    "fields": {
                        "transactions": len(txs) - keep,
                        "vaults": sum(len(tx.settlement.vaults) for tx in txs[keep:]),
                        "sent_gas": sum(sent),
                        "block_gas_limit": block.gas_limit,
                        "share": self.config.block_gas_share,
                    }
                },
            )
        return txs[:keep]

    def _expected_limit(self, tx: PlannedTx) -> int:
        """The gas limit ``tx`` will be sent with, before it is simulated: the guess from
        measured ones, else the per-leg estimate, with headroom."""
        legs = len(tx.settlement.legs)
        guess = self.gas_guess.limit_for(self._call_kind(tx), legs)
        limit = guess if guess is not None else SETTLE_BASE_GAS + legs * LEG_GAS
        return self._with_headroom(limit)

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

    def _stage(self, name: str, since: float) -> None:
        spent = getattr(self.stages, name) + time.perf_counter() - since
        self.stages = replace(self.stages, **{name: spent})

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
        self, block: BlockRef, decisions: Sequence[Decision], states: dict[str, Any]
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
            spec = size_trade(d, states[d.vault], self.config.cost_bps, self.config.loss_bps)
            if isinstance(spec, NoTrade):
                log.warning("no trade", extra={"fields": {"vault": d.vault, "reason": spec.reason}})
                continue
            if spec.note:
                log.warning("trade resized", extra={"fields": {"vault": d.vault, "why": spec.note}})
            trades.append(spec)
        return trades

    # --- the book --------------------------------------------------------------------------

    async def _book(
        self,
        sends: _BlockSends,
        trades: Sequence[TradeSpec],
        gas_price_wei: int,
        swapping: set[bool],
    ) -> None:
        """Simulate and send the transactions of one book, in rounds of one quote each:
        the book; then every vault the plan left out, each alone (all quoted in one
        multicall); then settlements the node could not fit, in halves, and settlements
        without the vault a simulation named. A round's simulations run together and each
        transaction is sent as soon as it and those planned before it have simulated (plan
        order; the first does not wait for the others); while the node simulates the next
        one to send, it is journaled and signed at the gas limit its simulation is expected
        to give (:meth:`_sign_ahead`). ``swapping``: the directions this block already swaps
        (updated: every book of the block trades on the same pool). Settlements whose
        expected gas limit would not fit in the block's share after ``sends.limits`` are
        not simulated (decided afresh next block)."""
        block = sends.block
        rounds: list[Group] = [(list(trades), self.config.legs_per_settlement())]
        for _ in range(4 * len(trades) + 4):  # every retry removes a vault or halves a cap
            if not rounds:
                break
            planned = await self._plan(block, rounds, gas_price_wei)
            rounds = []
            for (group, max_legs), (plan, txs) in planned:
                sides = {tx.settlement.net.sell_underlying for tx in txs if tx.route}
                if sides & swapping:  # a second swap the same way on a quote of the same pool
                    log.info(
                        "rebalance deferred: one swap per direction per block",
                        extra={"fields": {"vaults": [t.vault for t in group]}},
                    )
                    continue
                if len(group) > 1:
                    solo = _one_swap_per_side(plan, swapping | sides)
                    rounds += [([t], max_legs) for t in solo]
                for vault, why in plan.excluded.items() if len(group) == 1 else ():
                    log.error(
                        "no safe route: rebalance skipped",
                        extra={"fields": {"vault": vault, "why": why}},
                    )
                expected = [self._expected_limit(tx) for tx in txs]
                txs = self._fitting(block, sends.limits, txs, expected)
                simulations: list[asyncio.Future[PlannedTx | KeeperError]] = []
                try:
                    for i, tx in enumerate(txs):  # encoded once: simulated, signed, sent
                        txs[i] = replace(tx, call=self._tx(tx))
                        simulations.append(asyncio.ensure_future(self._simulate(txs[i])))
                        await asyncio.sleep(0)  # its request leaves before the next is encoded
                    for tx, simulation in zip(txs, simulations, strict=True):
                        early = await self._sign_ahead(sends, tx, simulation)
                        t1 = time.perf_counter()
                        try:
                            outcome = await simulation
                        except BaseException:  # a bug, or shutdown: nothing signed stays behind
                            if isinstance(early, Prepared):
                                self.lifecycle.withdraw(early, "the block's work stopped first")
                            raise
                        self._stage("simulate", t1)
                        if isinstance(outcome, PlannedTx):
                            if outcome.route is not None:  # only a sent swap moves the pool
                                swapping.add(outcome.settlement.net.sell_underlying)
                            await self._send_fitting(sends, outcome, early)
                            continue
                        if isinstance(early, Prepared):
                            self.lifecycle.withdraw(early, f"its simulation failed: {outcome}")
                        inside = set(tx.settlement.vaults)
                        members = [t for t in group if t.vault in inside]
                        rounds += _retry_after(outcome, members, max_legs)
                finally:
                    for simulation in simulations:  # only when a send raised or on shutdown
                        simulation.cancel()

    async def _plan(
        self, block: BlockRef, groups: list[Group], gas_price_wei: int
    ) -> list[tuple[Group, tuple[BookPlan, list[PlannedTx]]]]:
        """Quote once for every group (one multicall of direct quotes; the aggregator races
        it when there is one group: the block's net) and plan each group's book."""
        deadline = block.timestamp + self.config.deadline_seconds
        t0 = time.perf_counter()
        needs = [net_need(g, self.config.cost_bps) for g, _ in groups]
        race = None
        if len(groups) == 1:
            (group, _), need = groups[0], needs[0]
            taker = group[0].vault if len(group) == 1 else self.config.settlement
            request = self._request(group, need.sell_underlying, need.amount_in, taker, deadline)
            race = self.router.start_aggregator(request)
        sizes: dict[bool, set[int]] = {True: set(), False: set()}
        for (group, max_legs), need in zip(groups, needs, strict=True):
            for side, amounts in sample_sizes(group, need).items():
                sizes[side] |= set(amounts)
            for net in chunk_nets(group, max_legs, self.config.cost_bps):
                sizes[net.sell_underlying].add(net.amount_in)
        try:
            depth = await self.router.depth(
                self.config.weth, self.config.usdc, {k: sorted(v) for k, v in sizes.items()}
            )
        except QuoteError as exc:
            if race is not None:
                race.task.cancel()
            log.warning("no direct quote: book waits a block", extra={"fields": {"why": str(exc)}})
            return []
        self._stage("quote", t0)
        plans = []
        for group, max_legs in groups:
            cfg = BookConfig(
                cost_bps=self.config.cost_bps,
                net_slippage_bps=self.config.net_slippage_bps,
                deadline=deadline,
                max_legs=max_legs,
            )
            t1 = time.perf_counter()
            plans.append(plan_book(group, depth.depth, cfg))
            self._stage("plan", t1)
            _log_plan(plans[-1])
        depth = await self._with_exact_nets(depth, plans)
        out = []
        for (group, max_legs), plan in zip(groups, plans, strict=True):
            txs = []
            for i, settlement in enumerate(plan.settlements):
                route = await self._route(
                    settlement, group, depth, race if i == 0 else None, deadline, gas_price_wei
                )
                txs.append(PlannedTx(settlement, route, plan))
            out.append(((group, max_legs), (plan, txs)))
        # an aggregator request not waited for runs on (to the client's timeout): the router
        # measures how long it takes
        return out

    async def _with_exact_nets(self, depth: DirectDepth, plans: list[BookPlan]) -> DirectDepth:
        """The depth with every planned net quoted at its exact size (a settlement of a split
        book nets an amount that was not sampled): one more multicall when any is missing."""
        missing: dict[bool, list[int]] = {True: [], False: []}
        for plan in plans:
            for s in plan.settlements:
                key = (s.net.sell_underlying, s.net.amount_in)
                if s.net.amount_in and key not in depth.best:
                    missing[key[0]].append(key[1])
        if not any(missing.values()):
            return depth
        t0 = time.perf_counter()
        try:
            extra = await self.router.depth(self.config.weth, self.config.usdc, missing)
        except QuoteError as exc:
            log.warning("no quote for the settlements' nets", extra={"fields": {"why": str(exc)}})
            return depth
        self._stage("quote", t0)
        return replace(depth, best={**depth.best, **extra.best})

    async def _route(
        self,
        settlement: Settlement,
        group: list[TradeSpec],
        depth: DirectDepth,
        race: AggregatorRace | None,
        deadline: int,
        gas_price_wei: int,
    ) -> NetRoute | None:
        net = settlement.net
        if net.amount_in == 0:
            return None
        taker = settlement.legs[0].vault if len(settlement.legs) == 1 else self.config.settlement
        tier = depth.best.get((net.sell_underlying, net.amount_in))
        if tier is None:
            log.warning("no pool fills the net", extra={"fields": {"vaults": settlement.vaults}})
            return None
        inside = set(settlement.vaults)
        members = [t for t in group if t.vault in inside]
        request = self._request(members, net.sell_underlying, net.amount_in, taker, deadline)
        ref = members[0].state

        def gas_cost(gas: int) -> int:
            return gas_in_token(gas, gas_price_wei, not net.sell_underlying, ref)

        t0 = time.perf_counter()
        route = await self.router.route_net(request, tier, settlement.net_min_out, race, gas_cost)
        self._stage("race", t0)
        return route

    def _request(
        self, group: Sequence[TradeSpec], sell: bool, amount: int, taker: str, deadline: int
    ) -> SwapRequest:
        ref = group[0].state
        return SwapRequest(
            taker=taker,
            sell_underlying=sell,
            amount_in=amount,
            underlying=self.config.weth,
            quote_token=self.config.usdc,
            oracle_answer=ref.oracle.answer,
            oracle_decimals=ref.oracle.decimals,
            max_slippage_bps=min(t.state.guards.max_slippage_bps for t in group),
            allowed_routers=self.config.routers,
            deadline=deadline,
            underlying_decimals=ref.underlying_decimals,
            quote_decimals=ref.quote_decimals,
            slippage_bps=self.config.net_slippage_bps,
        )

    # --- simulate and send -----------------------------------------------------------------

    def _tx(self, tx: PlannedTx) -> tuple[str, bytes]:
        """(to, calldata): the vault's own rebalance for one leg, the settlement for more."""
        if tx.call is not None:
            return tx.call
        s = tx.settlement
        router = tx.route.quote.router if tx.route else self.config.settlement
        swap_data = tx.route.quote.call_data if tx.route else b""
        if tx.single and tx.route is not None:
            leg = s.legs[0]
            return leg.vault, abi.encode_vault_rebalance(leg.trade, router, swap_data)
        net = NetSwap(router, s.net.sell_underlying, s.net.amount_in, s.net_min_out, swap_data)
        return self.config.settlement, abi.encode_settle(s.legs, net)

    async def _simulate(self, tx: PlannedTx) -> PlannedTx | KeeperError:
        """The transaction with its gas limit from the simulation (``gas_needed``), or why it
        cannot go. An aggregator route that fails is replaced by the direct route here."""
        for attempt in (tx, _direct_instead(tx)):
            if attempt is None:
                break
            to, data = self._tx(attempt)
            call = {"from": self.config.keeper, "to": to, "data": data}
            kind, legs = self._call_kind(attempt), len(attempt.settlement.legs)
            try:
                found = await gas_needed(
                    self.w3.eth,
                    call,
                    self.config.simulation_gas_cap,
                    guess=self.gas_guess.limit_for(kind, legs),
                )
            except (SimulationReverted, OutOfGas) as exc:
                if attempt.route is not None and attempt.route.uses_aggregator:
                    log.warning(
                        "aggregator route fails simulation: direct route instead",
                        extra={"fields": {"vaults": attempt.settlement.vaults, "why": str(exc)}},
                    )
                    continue
                log.error(
                    "settlement simulation fails: not sent",
                    extra={"fields": {"vaults": attempt.settlement.vaults, "why": str(exc)}},
                )
                return exc
            except KeeperError as exc:
                log.warning("simulation unavailable", extra={"fields": {"why": str(exc)}})
                return exc
            gas = found.limit
            if gas > self.config.simulation_gas_cap:
                return OutOfGas(f"settlement needs {gas} gas, cap {self.config.simulation_gas_cap}")
            self.gas_guess.learn(kind, legs, found)
            return replace(attempt, gas_limit=self._with_headroom(gas), call=(to, data))
        return SimulationReverted("no route simulates")

    def _call_kind(self, tx: PlannedTx) -> str:
        """What a gas guess is keyed by: the vault's own rebalance or a settlement."""
        return "rebalance" if tx.single and tx.route is not None else "settle"

    def _limit_at_guess(self, tx: PlannedTx) -> int | None:
        """The gas limit ``tx`` is sent with when its simulation succeeds at the gas guess
        (``gas_needed``'s first try), with headroom; None when there is no usable guess."""
        guess = self.gas_guess.limit_for(self._call_kind(tx), len(tx.settlement.legs))
        if guess is None or guess > self.config.simulation_gas_cap:
            return None
        return self._with_headroom(guess)

    def _with_headroom(self, gas: int) -> int:
        """The gas limit sent for a call that needs ``gas``."""
        return gas * (10_000 + self.config.gas_headroom_bps) // 10_000

    async def _sign_ahead(
        self, sends: _BlockSends, tx: PlannedTx, simulation: asyncio.Future[Any]
    ) -> Prepared | Refused | None:
        """Journal and sign ``tx`` while the node simulates it, at the gas limit the guess
        gives: the commit and the signature then do not wait for the simulation's answer.
        Only the next transaction to be sent is signed ahead (the ones before it are sent
        or dropped), so a withdrawn one gives back the nonce the next one takes. None when
        the simulation has answered already or the limit is not known before its answer."""
        if simulation.done():
            return None
        limit = self._limit_at_guess(tx)
        if limit is None:
            return None
        block = sends.block
        share = self.config.block_gas_share
        if within_block_gas([*sends.limits, limit], block.gas_limit, share) <= len(sends.limits):
            return None  # it would not fit: the send after the simulation says so
        t0 = time.perf_counter()
        prepared = await self.lifecycle.prepare(self._intent(sends, replace(tx, gas_limit=limit)))
        self._stage("sign_ahead", t0)
        return prepared

    async def _send_fitting(
        self, sends: _BlockSends, tx: PlannedTx, early: Prepared | Refused | None
    ) -> None:
        """Send ``tx`` (simulated) if it fits in the block's share of gas after what was sent
        (``early``: what :meth:`_sign_ahead` made of it)."""
        if isinstance(early, Refused):  # logged by the lifecycle; decided afresh next block
            return
        if not self._fitting(sends.block, sends.limits, [tx], _limits([tx])):
            if early is not None:
                self.lifecycle.withdraw(early, "the block's gas is spent")
            return
        t1 = time.perf_counter()
        vaults = await self._send(sends, tx, early)
        self._stage("send", t1)
        if vaults:
            sends.limits.append(tx.gas_limit or 0)
        sends.sent.update(vaults)

    async def _send(self, sends: _BlockSends, tx: PlannedTx, early: Prepared | None) -> set[str]:
        """Broadcast ``tx``: the bytes signed ahead when they are the ones simulated (same
        call, same gas limit), else (the ahead ones withdrawn) freshly journaled and signed.
        Returns the vaults sent for (none when the lifecycle refused)."""
        if early is not None:
            signed = early.intent
            if (signed.to, signed.data) != tx.call:
                self.lifecycle.withdraw(early, "another route was simulated")
                early = None
            elif signed.gas_limit != tx.gas_limit:
                self.lifecycle.withdraw(early, "its simulation gave another gas limit")
                early = None
        if early is not None:
            outcome = await self.lifecycle.send_prepared(early)
        else:
            outcome = await self.lifecycle.submit(self._intent(sends, tx))
        if isinstance(outcome, Refused):  # logged by the lifecycle; decided afresh next block
            return set()
        self._log_sent(tx, outcome.entry)
        return set(tx.settlement.vaults)

    def _intent(self, sends: _BlockSends, tx: PlannedTx) -> TxIntent:
        s = tx.settlement
        to, data = self._tx(tx)
        vaults = s.vaults
        decisions = sends.decisions
        return TxIntent(
            kind=TxKind.REBALANCE,
            sender=self.config.keeper,
            to=to,
            data=data,
            gas_limit=tx.gas_limit,
            urgent=any(decisions[v].urgent for v in vaults if v in decisions),
            vaults=vaults,
            payload={
                "block": sends.block.number,
                "vaults": list(vaults),
                "call": "rebalance" if to != self.config.settlement else "settle",
                "legs": s.journal_legs(),
                "net": {
                    "sell_underlying": s.net.sell_underlying,
                    "amount_in": s.net.amount_in,
                    "min_out": s.net_min_out,
                    "route": tx.route.quote.source if tx.route else "matched",
                },
                "split": tx.plan.split.as_json() if tx.plan.split else None,
                "decisions": {v: _decision_json(decisions[v]) for v in vaults if v in decisions},
            },
        )

    def _log_sent(self, tx: PlannedTx, entry: JournalEntry) -> None:
        s = tx.settlement
        log.info(
            "rebalance sent",
            extra={
                "fields": {
                    "vaults": s.vaults,
                    "legs": len(s.legs),
                    "call": entry.payload.get("call"),
                    "net_in": s.net.amount_in,
                    "tx": entry.tx_hash,
                    "nonce": entry.nonce,
                    "max_fee_gwei": (entry.max_fee_wei or 0) / GWEI,
                }
            },
        )


@dataclass
class _BlockSends:
    """One block's sends: its decisions (journaled with each transaction), the gas limits
    sent (they fill the block's gas share) and the vaults sent for."""

    block: BlockRef
    decisions: dict[str, Decision]
    limits: list[int] = field(default_factory=list)
    sent: set[str] = field(default_factory=set)


def _limits(txs: Sequence[PlannedTx]) -> list[int]:
    return [tx.gas_limit or 0 for tx in txs]


def _one_swap_per_side(plan: BookPlan, swapping: set[bool]) -> list[TradeSpec]:
    """The vaults left out of the book that trade alone this block: at most one per
    direction, and none in a direction the book's own net already swaps. Each swap moves the
    pool, so a second one quoted on the same state would get less than it was quoted (and its
    vault a worse price than alone); the others are re-decided next block."""
    chosen: list[TradeSpec] = []
    sides = set(swapping)
    for t in sorted(plan.solo, key=lambda t: (not t.urgent, -abs(t.deviation_wad))):
        if t.sell_underlying in sides:
            log.info(
                "rebalance deferred: one swap per direction per block",
                extra={"fields": {"vault": t.vault, "why": plan.excluded.get(t.vault, "")}},
            )
            continue
        sides.add(t.sell_underlying)
        chosen.append(t)
    return chosen


def _direct_instead(tx: PlannedTx) -> PlannedTx | None:
    """The same settlement on the keeper's own direct route (None if it already is)."""
    if tx.route is None or not tx.route.uses_aggregator:
        return None
    return replace(tx, route=replace(tx.route, quote=tx.route.direct), call=None)


def _retry_after(outcome: KeeperError, members: list[TradeSpec], max_legs: int) -> list[Group]:
    """What to plan again after a failed simulation: in halves when the node ran out of gas;
    without the vault the revert names (an address among the error's arguments); when a
    multi-vault settlement reverts without naming one (the vault's own error bubbles up
    through the nesting), its vaults in two interleaved halves, so the refusing vault is
    found in a few rounds and the others still settle; nothing when the revert says the
    book's view is stale (``BOOK_STALE_ERRORS``)."""
    if len(members) < 2:
        return []
    if isinstance(outcome, OutOfGas):
        return [(members, max(1, min(max_legs, len(members)) // 2))]
    if not isinstance(outcome, SimulationReverted):
        return []  # node trouble: the next block
    if abi.error_name(outcome.data) in BOOK_STALE_ERRORS:
        log.warning(
            "the chain moved past the book's block: decided afresh next block",
            extra={"fields": {"vaults": len(members), "why": outcome.reason}},
        )
        return []
    addresses = {a.lower() for a in abi.error_addresses(outcome.data)}
    named = [t for t in members if t.vault.lower() in addresses]
    if named:
        log.warning(
            "vault refuses its leg: planned again without it",
            extra={"fields": {"vault": named[0].vault, "why": outcome.reason}},
        )
        return [([t for t in members if t is not named[0]], max_legs)]
    log.warning(
        "settlement refused: planned again in halves to find the vault",
        extra={"fields": {"vaults": len(members), "why": outcome.reason}},
    )
    return [(members[0::2], max_legs), (members[1::2], max_legs)]


def _log_plan(plan: BookPlan) -> None:
    for vault, why in plan.excluded.items():
        log.info("vault trades alone, not netted", extra={"fields": {"vault": vault, "why": why}})
    if plan.split is not None:
        log.warning(
            "net split over blocks: pool too shallow", extra={"fields": plan.split.as_json()}
        )
    if plan.settlements:
        log.info(
            "book planned",
            extra={
                "fields": {
                    "settlements": len(plan.settlements),
                    "legs": sum(len(s.legs) for s in plan.settlements),
                    "matched_underlying": plan.matched_underlying,
                    "net_in": [s.net.amount_in for s in plan.settlements],
                }
            },
        )


async def _no_decision_yet(entry: JournalEntry) -> Verdict:
    """At start nothing is decided yet: journaled work waits for the first block's decisions."""
    return Verdict.UNKNOWN


def _decision_json(d: Decision) -> dict[str, Any]:
    return {k: (v.value if isinstance(v, Action) else v) for k, v in vars(d).items()}


def _decision_from_json(d: dict[str, Any]) -> Decision:
    return Decision(**{**d, "action": Action(d["action"])})


def _report_fields(report: Any) -> dict[str, Any]:
    return {k: list(v) for k, v in vars(report).items() if v}
