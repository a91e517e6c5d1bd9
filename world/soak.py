"""A soak of the live keeper on the local world: many blocks with random faults, then the
chain and the database are checked (issue 10).

The keeper runs in-process (its real pipeline, actor, lifecycle and store) against a node
that mines only when told to (``evm_setAutomine false``); the market moves with
:class:`world.market.MarketDriver`. Faults, drawn at random per block:

* ``restart``: the keeper objects are dropped and built again on the same database;
* ``kill_drop_price_back``: killed with a transaction pending, the node forgets it, the price
  goes back to where it was, then the keeper restarts (the stale-batch case);
* ``crash_after_signing`` / ``crash_before_signing``: the process dies inside a send;
* ``reorg``: the chain is reverted to a snapshot (``evm_snapshot`` / ``evm_revert``) taken a
  few blocks back, and a longer chain without those blocks is mined (only while no keeper
  transaction could be included: on the v1 contracts one re-mined on the new branch before
  the keeper sees the reorg cannot be stopped by the keeper; v2's ``stateNonce`` does);
* ``refusals``: for a few blocks every broadcast is refused (timeouts, underpriced, full pool);
* ``drop``: the node drops the keeper's pending transactions (``anvil_dropTransaction``);
* ``spike``: the base fee jumps above the keeper's cap for a few blocks (stuck transactions).

The market moves only when no keeper transaction that could be included is pending, so a
trade's pre-state is the end of the block before its inclusion. Checked at the end:

* no nonce used twice: at most one journal entry mined per nonce, each on the canonical
  chain with that nonce, and the keeper's nonces on chain contiguous;
* no journal row lost: every keeper transaction on chain is journaled, and no entry seen
  during the run disappeared;
* no trade applied to a state it was not computed from: for every executed leg, the vault's
  deviation before inclusion has the sign of the one the trade was computed from and at
  least a quarter of its size (the lifecycle re-decides at half: a margin for the greeks'
  linear estimate when the keeper did not decide that block);
* every vault back in band, nothing in flight, within ``recover_blocks`` of the last fault.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from web3 import Web3

from keeper.act import build_actor
from keeper.chain.blocks import block_ref
from keeper.chain.rpc import RpcBroadcaster
from keeper.config import load_settings
from keeper.core import abi
from keeper.core.types import Action, Decision
from keeper.errors import FatalError, RpcTimeout, Underpriced
from keeper.runner import Keeper, make_rpc
from keeper.store import JournalState, Store, TxKind
from keeper.tx.nonces import NonceManager
from keeper.tx.sender import Sender
from world.market import MarketDriver, answer_of, price_of

GWEI = 10**9
FAULTS = (
    "restart",
    "kill_drop_price_back",
    "crash_after_signing",
    "crash_before_signing",
    "reorg",
    "refusals",
    "drop",
    "spike",
)

PENDING_FAULTS = ("kill_drop_price_back", "drop", "spike", "restart", "refusals", "reorg")


class Crash(BaseException):
    """The keeper process dies here (nothing in the keeper catches a BaseException)."""


@dataclass(frozen=True)
class SoakConfig:
    rpc_url: str
    manifest_file: Path
    db_url: str
    keeper_key: str
    owner: str  # owns the feed and the tokens (governance)
    trader: str  # swaps the pools
    blocks: int = 300
    seed: int = 1
    fault_rate: float = 0.08  # chance of a fault per block
    move_rate: float = 0.35  # chance of a market move per block (when allowed)
    move_usd: float = 9.0  # largest price step
    recover_blocks: int = 12  # quiet blocks at the end; every vault back in band by then


@dataclass
class SoakReport:
    blocks: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    moves: int = 0
    legs_executed: int = 0
    legs_checked_by_estimate: int = 0
    mined: Counter[str] = field(default_factory=Counter)  # journal entries mined, by kind
    journal_entries: int = 0
    recovered_after: int | None = None  # quiet blocks until every vault was back in band
    timeline: list[str] = field(default_factory=list)  # faults and moves, by block

    def lines(self) -> list[str]:
        faults = ", ".join(f"{k}={self.faults[k]}" for k in FAULTS)
        return [
            f"blocks: {self.blocks}",
            f"faults: {sum(self.faults.values())} ({faults})",
            f"market moves: {self.moves}",
            f"journal entries: {self.journal_entries}; mined: {dict(self.mined)}",
            f"legs executed: {self.legs_executed} "
            f"({self.legs_checked_by_estimate} checked by the greeks estimate)",
            f"back in band after the last fault: {self.recovered_after} blocks",
            f"violations: {len(self.violations)}",
            *(f"  - {v}" for v in self.violations),
        ]


class _Keeper:
    """One keeper process: its own event loop, store and objects (a restart = a new one)."""

    def __init__(self, cfg: SoakConfig) -> None:
        self.settings = load_settings(
            rpc_url=cfg.rpc_url,
            manifest=cfg.manifest_file,
            db_url=cfg.db_url,
            private_key=cfg.keeper_key,
            stuck_after_blocks=2,
            max_fee_gwei=50,
            emergency_max_fee_gwei=400,
            poll_interval_seconds=0.1,
        )
        self.store = Store(self.settings.db_url)
        self.loop = asyncio.new_event_loop()

        async def build() -> Keeper:
            rpc = make_rpc(self.settings)
            actor = await build_actor(self.settings, self.store, rpc)
            return await Keeper.build(self.settings, self.store, actor, rpc)

        self.keeper = self.loop.run_until_complete(build())

    def tick(self) -> list[Decision]:
        async def go() -> list[Decision]:
            head = block_ref(await self.keeper.rpc.call("eth_getBlockByNumber", ["latest", False]))
            report = await self.keeper.pipeline.tick(head)
            return [] if report is None else list(report.decisions)

        return self.loop.run_until_complete(go())

    def stop(self) -> None:
        try:
            self.loop.run_until_complete(self.keeper.close())
        finally:
            self.loop.close()
            self.store.close()


class _Faults:
    """Switches the soak flips to make the node or the process misbehave."""

    def __init__(self) -> None:
        self.refuse_blocks = 0
        self.crash_at: str | None = None  # "after_signing" | "before_signing"
        self.rng = random.Random(0)

    @contextmanager
    def installed(self) -> Iterator[None]:
        real_send = RpcBroadcaster.send_raw
        real_broadcast = Sender.broadcast
        real_claim = NonceManager.claim
        faults = self

        async def send_raw(self: RpcBroadcaster, raw: bytes) -> None:
            if faults.refuse_blocks > 0:
                kind = faults.rng.choice(("timeout", "underpriced", "full"))
                if kind == "timeout":
                    raise RpcTimeout("eth_sendRawTransaction: timed out (injected)")
                if kind == "underpriced":
                    raise Underpriced("transaction underpriced (injected)")
                raise FatalError("txpool is full (injected)")
            await real_send(self, raw)

        async def broadcast(self: Sender, entry: Any) -> Any:
            if faults.crash_at == "after_signing":
                faults.crash_at = None
                raise Crash
            return await real_broadcast(self, entry)

        async def claim(self: NonceManager, entry_id: int) -> int:
            if faults.crash_at == "before_signing":
                faults.crash_at = None
                raise Crash
            return await real_claim(self, entry_id)

        RpcBroadcaster.send_raw = send_raw  # type: ignore[method-assign]
        Sender.broadcast = broadcast  # type: ignore[method-assign]
        NonceManager.claim = claim  # type: ignore[method-assign]
        try:
            yield
        finally:
            RpcBroadcaster.send_raw = real_send  # type: ignore[method-assign]
            Sender.broadcast = real_broadcast  # type: ignore[method-assign]
            NonceManager.claim = real_claim  # type: ignore[method-assign]


class Soak:
    def __init__(self, cfg: SoakConfig, manifest: Any, log: Callable[[str], None] = print):
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.w3 = Web3(Web3.HTTPProvider(cfg.rpc_url, request_kwargs={"timeout": 30}))
        self.driver = MarketDriver(self.w3, manifest, cfg.owner, cfg.trader, manual_mining=True)
        self.keeper_address = Web3.to_checksum_address(
            self.w3.eth.account.from_key(cfg.keeper_key).address
        )
        self.vaults = [Web3.to_checksum_address(v.address) for v in manifest.vaults]
        self.report = SoakReport()
        self.faults = _Faults()
        self.log = log
        self.spike_blocks = 0
        self.owed: set[str] = set()  # faults drawn when they could not apply (nothing pending)
        self.snapshot: tuple[str, int] | None = None
        self.seen_ids: set[int] = set()
        self.decisions: dict[int, dict[str, Decision]] = {}  # block -> vault -> decision
        self.start_block = 0
        self.start_nonce = 0
        self.keeper: _Keeper | None = None

    # --- the run ---------------------------------------------------------------------------

    def run(self) -> SoakReport:
        self.rpc("evm_setAutomine", [False])
        try:
            self.driver.fund_trader(2_000 * 10**18, 8_000_000 * 10**6)
            self.driver.move_to(self.driver.oracle_answer())  # a fresh round, pools on it
            self.start_block = self.w3.eth.block_number
            self.start_nonce = self.w3.eth.get_transaction_count(self.keeper_address, "latest")
            with self.faults.installed():
                self.keeper = _Keeper(self.cfg)
                self._loop()
                self._recover()
                self.keeper.stop()
                self.keeper = None
            self._check()
        finally:
            if self.keeper is not None:
                self.keeper.stop()
            self.rpc("evm_setAutomine", [True])
        return self.report

    def _loop(self) -> None:
        for i in range(self.cfg.blocks):
            if i % 50 == 0:
                self.log(f"block {i}/{self.cfg.blocks}: faults {dict(self.report.faults)}")
            pending = bool(self._pool_txs())
            # A transaction in flight is when faults hurt most: they come twice as often then.
            if self.rng.random() < self.cfg.fault_rate * (2 if pending else 1):
                kind = self.rng.choice(PENDING_FAULTS if pending else FAULTS)
                if not self._injected(kind):
                    self.owed.add(kind)  # it needs something pending: at the next chance
            elif self.owed and pending:
                kind = sorted(self.owed)[0]
                if self._injected(kind):
                    self.owed.discard(kind)
            self._step()

    def _injected(self, kind: str) -> bool:
        if not self._fault(kind):
            return False
        self.report.faults[kind] += 1
        self.report.timeline.append(f"{self.w3.eth.block_number}: {kind}")
        return True

    def _recover(self) -> None:
        """Quiet blocks (no fault, no move): every vault must settle back in band."""
        self.faults.refuse_blocks, self.spike_blocks = 0, 0
        for quiet in range(1, self.cfg.recover_blocks + 1):
            if quiet % 4 == 0:  # keep the oracle round fresh without moving the price
                self.driver.move_to(self.driver.oracle_answer())
            else:
                self._mine()
            decisions = self._tick()
            if self._settled(decisions):
                self.report.recovered_after = quiet
                return
        self.report.violations.append(
            f"vaults not back in band {self.cfg.recover_blocks} blocks after the last fault"
        )

    def _settled(self, decisions: list[Decision]) -> bool:
        if not decisions or self._store().in_flight(self.keeper_address):
            return False
        return all(d.action == Action.HOLD and abs(d.deviation) <= d.band for d in decisions)

    def _step(self) -> None:
        """One block: a market move when allowed (mined by the driver), else a plain block;
        then the keeper follows it."""
        if self.snapshot is None or self.w3.eth.block_number - self.snapshot[1] >= 4:
            self.snapshot = (self.rpc("evm_snapshot", []), self.w3.eth.block_number)
        base_fee = self._base_fee()
        if self.rng.random() < self.cfg.move_rate and self._may_move(base_fee):
            answer = self.driver.oracle_answer()
            step = self.rng.uniform(-self.cfg.move_usd, self.cfg.move_usd)
            move = self.driver.move_to(answer_of(price_of(answer) + step), base_fee)
            self.report.moves += 1
            self.report.timeline.append(f"{move.block_number}: move to {move.answer}")
        else:
            self._mine(base_fee)
        self._tick()

    # --- faults ----------------------------------------------------------------------------

    def _fault(self, kind: str) -> bool:
        """Apply one fault; False when it does not apply now (nothing pending to drop...)."""
        if kind == "restart":
            self._restart()
        elif kind == "kill_drop_price_back":
            pending = self._pending_hashes()
            if not pending:
                return False
            assert self.keeper is not None
            self.keeper.stop()
            self.keeper = None
            for h in pending:
                self.rpc("anvil_dropTransaction", [h])
            back = self._previous_answer()
            self.driver.move_to(back)
            self.report.moves += 1
            self.keeper = _Keeper(self.cfg)
        elif kind in ("crash_after_signing", "crash_before_signing"):
            self.faults.crash_at = kind.removeprefix("crash_")
        elif kind == "reorg":
            return self._reorg()
        elif kind == "refusals":
            self.faults.refuse_blocks = self.rng.randint(1, 3)
        elif kind == "drop":
            pending = self._pending_hashes()
            for h in pending:
                self.rpc("anvil_dropTransaction", [h])
            return bool(pending)
        elif kind == "spike":
            self.spike_blocks = self.rng.randint(2, 4)
        return True

    def _reorg(self) -> bool:
        if self.snapshot is None:
            return False
        snap, at = self.snapshot
        # On the v1 contracts a pending trade mined on the new branch before the keeper sees
        # the reorg cannot be stopped by the keeper (v2's stateNonce makes it revert): the
        # soak reorgs only while none could be included.
        if self.w3.eth.block_number <= at or not self._may_move(GWEI):
            return False
        self.rpc("evm_revert", [snap])
        self.snapshot = None
        self.driver.rpc("evm_mine", [])  # a longer chain without the reverted blocks
        self.driver.rpc("evm_mine", [])
        return True

    def _restart(self) -> None:
        assert self.keeper is not None
        self.keeper.stop()
        self.keeper = _Keeper(self.cfg)

    # --- blocks ----------------------------------------------------------------------------

    def _base_fee(self) -> int | None:
        if self.spike_blocks > 0:
            self.spike_blocks -= 1
            return self.rng.randint(60, 90) * GWEI
        return GWEI

    def _mine(self, base_fee: int | None = GWEI) -> None:
        self.driver.mine(base_fee)

    def _may_move(self, base_fee: int | None) -> bool:
        """No keeper transaction that this block could include is pending (the state a
        pending trade was computed from is then the state it is applied to)."""
        fee = base_fee or GWEI
        return all(int(tx["maxFeePerGas"], 16) < fee for tx in self._pool_txs())

    def _pool_txs(self) -> list[dict[str, Any]]:
        """The keeper's transactions in the node's pool."""
        pool = self.rpc("txpool_content", [])
        found: list[dict[str, Any]] = []
        for group in (pool.get("pending", {}), pool.get("queued", {})):
            for sender, txs in group.items():
                if sender.lower() == self.keeper_address.lower():
                    found += list(txs.values())
        return found

    def _pending_hashes(self) -> list[str]:
        return [str(tx["hash"]) for tx in self._pool_txs()]

    def _previous_answer(self) -> int:
        """The oracle answer before the last move (the price "comes back")."""
        latest = self.w3.eth.block_number
        now = self.driver.oracle_answer()
        for number in range(latest - 1, max(self.start_block, latest - 40), -1):
            answer = int(
                self.driver.feed.functions.latestRoundData().call(block_identifier=number)[1]
            )
            if answer != now:
                return answer
        return now

    def _tick(self) -> list[Decision]:
        assert self.keeper is not None
        try:
            decisions = self.keeper.tick()
        except Crash:  # the process died: what it held is released, the database stays
            self.keeper.stop()
            self.keeper = _Keeper(self.cfg)
            decisions = self.keeper.tick()
        if self.faults.refuse_blocks > 0:
            self.faults.refuse_blocks -= 1
        self.report.blocks += 1
        if decisions:
            self.decisions[decisions[0].block_number] = {d.vault: d for d in decisions}
        self._check_rows()
        return decisions

    def _store(self) -> Store:
        assert self.keeper is not None
        return self.keeper.store

    def _check_rows(self) -> None:
        ids = {e.id for e in self._store().entries_in(list(JournalState), None)}
        lost = self.seen_ids - ids
        if lost:
            self.report.violations.append(f"journal rows lost: {sorted(lost)}")
        self.seen_ids |= ids

    def rpc(self, method: str, params: list[Any]) -> Any:
        return self.driver.rpc(method, params)

    # --- the checks --------------------------------------------------------------------------

    def _check(self) -> None:
        store = Store(self.cfg.db_url)
        try:
            entries = store.entries_in(list(JournalState), None)
            self.report.journal_entries = len(entries)
            on_chain = self._keeper_txs()
            self._check_nonces(entries, on_chain)
            self._check_trades(entries)
        finally:
            store.close()

    def _keeper_txs(self) -> dict[str, tuple[int, int]]:
        """hash -> (nonce, block) of every keeper transaction on the canonical chain."""
        found: dict[str, tuple[int, int]] = {}
        for number in range(self.start_block + 1, self.w3.eth.block_number + 1):
            block = self.w3.eth.get_block(number, full_transactions=True)
            for tx in block["transactions"]:
                if tx["from"] == self.keeper_address:  # type: ignore[index]
                    h = "0x" + bytes(tx["hash"]).hex()  # type: ignore[index]
                    found[h] = (int(tx["nonce"]), number)  # type: ignore[index]
        return found

    def _check_nonces(self, entries: list[Any], on_chain: dict[str, tuple[int, int]]) -> None:
        v = self.report.violations
        nonces = sorted(n for n, _ in on_chain.values())
        if nonces != list(range(self.start_nonce, self.start_nonce + len(nonces))):
            v.append(f"keeper nonces on chain not contiguous: {nonces}")
        journaled = {e.tx_hash for e in entries}
        for h in on_chain:
            if h not in journaled:
                v.append(f"transaction {h} on chain is not journaled")
        mined_per_nonce: Counter[int] = Counter()
        for e in entries:
            if e.state is not JournalState.MINED:
                continue
            self.report.mined[e.kind.value] += 1
            mined_per_nonce[e.nonce] += 1
            where = on_chain.get(e.tx_hash or "")
            if where != (e.nonce, e.mined_block_number):
                v.append(f"entry {e.id} recorded mined at nonce {e.nonce}, chain says {where}")
        for nonce, count in mined_per_nonce.items():
            if count > 1:
                v.append(f"nonce {nonce}: {count} journal entries mined")

    def _check_trades(self, entries: list[Any]) -> None:
        for e in entries:
            if e.state is not JournalState.MINED or e.kind is not TxKind.REBALANCE:
                continue
            receipt = self.w3.eth.get_transaction_receipt(e.tx_hash)
            for item in receipt["logs"]:
                topic = "0x" + bytes(item["topics"][0]).hex()
                if topic != abi.TRADED_TOPIC:
                    continue
                vault = Web3.to_checksum_address(item["address"])
                self.report.legs_executed += 1
                self._check_state_nonce(e, vault, abi.topic_uint(item["topics"][3]))
                self._check_leg(e, vault, int(receipt["blockNumber"]))

    def _check_state_nonce(self, entry: Any, vault: str, nonce_after: int) -> None:
        """Compare-and-swap on chain: the trade moved the vault from exactly the state the
        journaled leg was computed from (``state_nonce``) to the next one."""
        legs = {leg["vault"]: leg for leg in entry.payload.get("legs", [])}
        leg = legs.get(vault)
        if leg is None:
            self.report.violations.append(f"entry {entry.id}: trade of {vault} not journaled")
        elif int(leg["state_nonce"]) + 1 != nonce_after:
            self.report.violations.append(
                f"entry {entry.id}: {vault} traded from state {nonce_after - 1}, computed at "
                f"state {leg['state_nonce']}"
            )

    def _check_leg(self, entry: Any, vault: str, block: int) -> None:
        sent = entry.payload.get("decisions", {}).get(vault)
        if sent is None:
            self.report.violations.append(f"entry {entry.id}: leg for {vault} not journaled")
            return
        before = float(sent["deviation"])
        decided = self.decisions.get(block - 1, {}).get(vault)
        if decided is not None and decided.block_hash == self._hash(block - 1):
            pre = decided.deviation
        else:  # the keeper did not decide that block: the greeks' linear estimate
            self.report.legs_checked_by_estimate += 1
            answer = self.driver.feed.functions.latestRoundData().call(block_identifier=block - 1)
            move = (int(answer[1]) - int(sent["spot_answer"])) / 10**8
            pre = before + float(sent["gamma"]) * move
        if before * pre <= 0 or abs(pre) < abs(before) / 4:
            self.report.violations.append(
                f"entry {entry.id} (mined in block {block}, computed at block "
                f"{entry.payload.get('block')}, sent at {entry.sent_at_block}): leg for "
                f"{vault} computed at deviation {before:.4f} applied at {pre:.4f}"
            )

    def _hash(self, number: int) -> str:
        return "0x" + bytes(self.w3.eth.get_block(number)["hash"]).hex()
