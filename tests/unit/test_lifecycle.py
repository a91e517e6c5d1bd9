"""Every transition of the transaction lifecycle (the table in ``keeper.tx.lifecycle``) on the
fake chain, through the ``Lifecycle`` interface: submit, on_block, start, in_flight_vaults."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from fake_chain import (
    GWEI,
    FakeW3,
    bhash,
    intent,
    lifecycle,
    run,
    stale,
    unknown,
    wanted,
)
from prometheus_client.parser import text_string_to_metric_families

from keeper.core.types import BlockRef
from keeper.errors import FatalError, RpcTimeout, SimulationReverted, Underpriced
from keeper.metrics import Metrics
from keeper.store import JournalEntry, JournalState, Store, TxKind
from keeper.tx import Lifecycle, Prepared, Refusal, Refused, Submitted, Verdict
from keeper.tx.sender import GuardedRelay
from keeper.tx.stuck import Step, Why, plan

S = JournalState
VAULT = "0x" + "aa" * 20
OTHER = "0x" + "bb" * 20


def started(tmp_path: Path, **kw: Any) -> tuple[Store, FakeW3, Any, Lifecycle]:
    store, w3, acct, life = lifecycle(tmp_path, **kw)
    run(life.start(unknown))
    return store, w3, acct, life


def submitted(life: Lifecycle, acct: Any, *vaults: str) -> JournalEntry:
    outcome = run(life.submit(intent(acct.address, *vaults or (VAULT,))))
    assert isinstance(outcome, Submitted), outcome
    return outcome.entry


def block(life: Lifecycle, w3: FakeW3, redecide: Any = wanted, **kw: Any) -> Any:
    return run(life.on_block(w3.eth.ref(w3.eth.head), redecide, **kw))


# --- the pure table --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("why", "verdict", "known", "step"),
    [
        (Why.UNSENT, Verdict.STILL_WANTED, False, Step.REBROADCAST),
        (Why.UNSENT, Verdict.STALE, False, Step.CANCEL),
        (Why.UNSENT, Verdict.UNKNOWN, False, Step.WAIT),
        (Why.RECHECK, Verdict.STILL_WANTED, True, Step.KEEP),
        (Why.RECHECK, Verdict.STILL_WANTED, False, Step.REBROADCAST),
        (Why.RECHECK, Verdict.STALE, True, Step.CANCEL),
        (Why.RECHECK, Verdict.UNKNOWN, False, Step.WAIT),
        (Why.STUCK, Verdict.STILL_WANTED, True, Step.REPLACE),
        (Why.STUCK, Verdict.STALE, True, Step.CANCEL),
        (Why.STUCK, Verdict.UNKNOWN, True, Step.WAIT),
    ],
)
def test_plan_never_sends_without_still_wanted(
    why: Why, verdict: Verdict, known: bool, step: Step
) -> None:
    assert plan(why, verdict, known) is step


# --- new work -----------------------------------------------------------------------------------


def test_submit_before_start_is_refused_not_raised(tmp_path: Path) -> None:
    store, _, acct, life = lifecycle(tmp_path)
    outcome = run(life.submit(intent(acct.address, VAULT)))
    assert isinstance(outcome, Refused) and outcome.reason is Refusal.NOT_STARTED
    assert store.entries_in(list(S)) == []


def test_submit_intent_signed_sent_then_mined(tmp_path: Path) -> None:
    store, w3, acct, life = started(tmp_path)
    entry = submitted(life, acct)
    assert entry.state is S.SENT and life.in_flight_vaults() == {VAULT}
    w3.eth.mine()
    assert block(life, w3).mined == (entry.id,)
    assert store.entry(entry.id).state is S.MINED and life.in_flight_vaults() == frozenset()


def test_prepared_work_is_sent_as_signed_or_withdrawn_with_its_nonce_given_back(
    tmp_path: Path,
) -> None:
    """Signing ahead (``prepare``) journals and signs without sending; ``send_prepared``
    broadcasts those very bytes; ``withdraw`` fails the entry before any broadcast, gives its
    nonce to the next transaction and frees its vaults."""
    store, w3, acct, life = started(tmp_path)
    ahead = run(life.prepare(intent(acct.address, VAULT)))
    assert isinstance(ahead, Prepared) and ahead.entry.state is S.SIGNED
    assert w3.eth.sent == [] and life.in_flight_vaults() == {VAULT}
    life.withdraw(ahead, "its simulation failed")
    withdrawn = store.entry(ahead.entry.id)
    assert withdrawn.state is S.FAILED and "its simulation failed" in str(withdrawn.error)
    assert w3.eth.sent == [] and life.in_flight_vaults() == frozenset()

    again = run(life.prepare(intent(acct.address, VAULT)))
    assert isinstance(again, Prepared) and again.entry.nonce == ahead.entry.nonce
    outcome = run(life.send_prepared(again))
    assert isinstance(outcome, Submitted) and outcome.entry.state is S.SENT
    assert w3.eth.sent == [again.entry.tx_hash]  # the bytes signed ahead, nothing re-signed
    assert outcome.entry.raw_tx == again.entry.raw_tx


def test_preparing_work_for_a_vault_in_flight_is_refused(tmp_path: Path) -> None:
    store, _, acct, life = started(tmp_path)
    submitted(life, acct)
    outcome = run(life.prepare(intent(acct.address, VAULT)))
    assert isinstance(outcome, Refused) and outcome.reason is Refusal.IN_FLIGHT
    assert len(store.entries_in(list(S))) == 1


def test_above_the_cap_nothing_is_journaled(tmp_path: Path) -> None:
    """Item 15: above the (emergency) cap no failed journal row is written every block."""
    store, w3, acct, life = started(tmp_path)
    w3.eth.base_fee = 600 * GWEI  # above the 500 gwei emergency cap too
    for _ in range(3):
        outcome = run(life.submit(intent(acct.address, VAULT)))
        assert isinstance(outcome, Refused) and outcome.reason is Refusal.FEES
        assert not run(life.fees_allow(urgent=True))
        w3.eth.mine()
    assert store.entries_in(list(S)) == []


def test_work_in_flight_for_a_vault_is_refused_at_info(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Item 9: the other instance's in-flight work (same database) is INFO, not ERROR."""
    _store, w3, acct, first = started(tmp_path)
    _, _, _, second = started(tmp_path, w3=w3, acct=acct)
    submitted(first, acct)
    with caplog.at_level(logging.INFO):
        outcome = run(second.submit(intent(acct.address, VAULT)))
        block(second, w3)
        block(first, w3)
    assert isinstance(outcome, Refused) and outcome.reason is Refusal.IN_FLIGHT
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_call_that_reverts_in_estimation_is_refused_before_anything_is_journaled(
    tmp_path: Path,
) -> None:
    store, w3, acct, life = started(tmp_path)

    def reverts(call: Any) -> Any:
        raise SimulationReverted("DeadlineExpired()")

    w3.eth.estimate_gas = reverts  # type: ignore[method-assign]
    outcome = run(life.submit(intent(acct.address, VAULT)))
    assert isinstance(outcome, Refused) and outcome.reason is Refusal.INVALID
    assert "DeadlineExpired" in outcome.detail
    assert store.entries_in(list(S)) == []  # no entry, no nonce taken, no vault claimed
    assert store.next_nonce(acct.address) == 0 and not life.in_flight_vaults()


def test_a_refused_send_signed_again_makes_new_bytes(tmp_path: Path) -> None:
    """Item 3: the same work re-signed on a given-back nonce never hits UNIQUE tx_hash."""
    store, w3, acct, life = started(tmp_path)
    eth = w3.eth
    refuse = [True]

    def node(raw: bytes) -> None:
        if refuse.pop(0) if refuse else False:
            raise FatalError("node refused: transaction would cause overdraft")
        eth.accept(raw)

    eth.send_hook = node
    first = run(life.submit(intent(acct.address, VAULT)))
    assert isinstance(first, Refused) and first.reason is Refusal.INVALID
    second = submitted(life, acct)
    [failed] = store.entries_in([S.FAILED])
    assert second.nonce == failed.nonce == 0 and second.tx_hash != failed.tx_hash


# --- a broadcast that did not get through -----------------------------------------------------


def lost_broadcast(tmp_path: Path) -> tuple[Store, FakeW3, Any, Lifecycle, int]:
    store, w3, acct, life = started(tmp_path)
    eth = w3.eth

    def times_out(raw: bytes) -> None:
        raise RpcTimeout("eth_sendRawTransaction: timed out")

    eth.send_hook = times_out
    outcome = run(life.submit(intent(acct.address, VAULT)))
    assert isinstance(outcome, Refused) and outcome.reason is Refusal.NODE
    assert outcome.entry_id is not None
    assert store.entry(outcome.entry_id).state is S.SIGNED
    eth.send_hook = None
    return store, w3, acct, life, outcome.entry_id


def test_signed_and_still_wanted_is_broadcast_as_the_same_bytes(tmp_path: Path) -> None:
    store, w3, _, life, entry_id = lost_broadcast(tmp_path)
    assert block(life, w3).rebroadcast == (entry_id,)
    entry = store.entry(entry_id)
    assert entry.state is S.SENT and w3.eth.sent == [entry.tx_hash]


def test_signed_and_unknown_waits(tmp_path: Path) -> None:
    store, w3, _, life, entry_id = lost_broadcast(tmp_path)
    assert block(life, w3, unknown).waiting_for_decision == (entry_id,)
    assert store.entry(entry_id).state is S.SIGNED and w3.eth.sent == []


def test_signed_and_stale_is_cancelled_on_its_nonce(tmp_path: Path) -> None:
    store, w3, acct, life, entry_id = lost_broadcast(tmp_path)
    [cancel_id] = block(life, w3, stale).cancelled_by
    cancel, old = store.entry(cancel_id), store.entry(entry_id)
    assert old.state is S.CANCELLED and cancel.kind is TxKind.CANCEL
    assert cancel.nonce == old.nonce and cancel.to == acct.address and cancel.value_wei == 0
    assert w3.eth.sent == [cancel.tx_hash]  # the stale bytes never reached the node
    w3.eth.mine()
    assert block(life, w3).mined == (cancel_id,)
    assert not life.in_flight_vaults()


def test_signed_and_refused_for_good_fails(tmp_path: Path) -> None:
    store, w3, _, life, entry_id = lost_broadcast(tmp_path)

    def refuses(raw: bytes) -> None:
        raise FatalError("node refused: invalid sender")

    w3.eth.send_hook = refuses
    block(life, w3)
    assert store.entry(entry_id).state is S.FAILED and not life.in_flight_vaults()


# --- stuck --------------------------------------------------------------------------------------


def stuck(tmp_path: Path) -> tuple[Store, FakeW3, Any, Lifecycle, JournalEntry]:
    store, w3, acct, life = started(tmp_path)
    entry = submitted(life, acct)
    w3.eth.pool.clear()  # never mined (outbid)
    w3.eth.head += 3
    return store, w3, acct, life, entry


def test_stuck_and_still_wanted_is_replaced(tmp_path: Path) -> None:
    store, w3, _, life, entry = stuck(tmp_path)
    [new_id] = block(life, w3).replaced_by
    new = store.entry(new_id)
    assert store.entry(entry.id).state is S.REPLACED and new.state is S.SENT
    assert new.nonce == entry.nonce and new.kind is TxKind.REBALANCE


def test_stuck_and_stale_is_cancelled(tmp_path: Path) -> None:
    store, w3, _, life, entry = stuck(tmp_path)
    [cancel_id] = block(life, w3, stale).cancelled_by
    assert store.entry(entry.id).state is S.CANCELLED
    assert store.entry(cancel_id).kind is TxKind.CANCEL


def test_the_lifecycle_counts_its_outcomes_in_the_metrics(tmp_path: Path) -> None:
    """What an operator alerts on: sent, mined with its gas and fees, replaced, cancelled."""
    m = Metrics(started_at=0.0).install()
    store, w3, acct, life = started(tmp_path)
    mined = submitted(life, acct)
    w3.eth.mine()
    block(life, w3)
    submitted(life, acct, OTHER)
    w3.eth.pool.clear()  # never mined (outbid): stuck, then replaced
    w3.eth.head += 3
    [replacement] = block(life, w3).replaced_by
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(m.render().decode())
        for s in family.samples
    }

    def tx(kind: str, outcome: str) -> float:
        return got[("keeper_transactions_total", (("kind", kind), ("outcome", outcome)))]

    assert tx("rebalance", "sent") == 2 and tx("rebalance", "mined") == 1
    assert tx("rebalance", "replaced") == 1 and store.entry(replacement).nonce == 1
    assert got[("keeper_gas_used_total", (("kind", "rebalance"),))] == 100_000
    assert got[("keeper_fees_spent_eth_total", (("kind", "rebalance"),))] == pytest.approx(0.002)
    assert store.entry(mined.id).state is S.MINED


def test_stuck_and_unknown_waits(tmp_path: Path) -> None:
    store, w3, _, life, entry = stuck(tmp_path)
    report = block(life, w3, unknown)
    assert report.waiting_for_decision == (entry.id,) and report.replaced_by == ()
    assert store.entry(entry.id).state is S.SENT


def test_a_refused_replacement_is_bumped_again_with_new_bytes(tmp_path: Path) -> None:
    """Item 3: the node refuses one replacement; the next attempt signs new bytes (above the
    refused one), the journal takes it, and nothing raises."""
    store, w3, acct, life, entry = stuck(tmp_path)
    eth = w3.eth
    refused: list[str] = []

    def refuse_first_replacement(raw: bytes) -> None:
        h, _ = eth.decode(raw)
        if not refused:
            refused.append(h)
            raise Underpriced("replacement transaction underpriced")
        eth.accept(raw)

    eth.send_hook = refuse_first_replacement
    block(life, w3)  # the replacement is refused: journaled as failed, the original stays
    [failed] = store.entries_in([S.FAILED])
    assert failed.tx_hash == refused[0] and store.entry(entry.id).state is S.SENT
    [new_id] = block(life, w3).replaced_by
    group = store.entries_for_nonce(acct.address, entry.nonce or 0)
    assert len({e.tx_hash for e in group}) == len(group) == 3
    new = store.entry(new_id)
    assert new.max_fee_wei is not None and failed.max_fee_wei is not None
    assert new.max_fee_wei > failed.max_fee_wei and new.state is S.SENT


# --- restart ------------------------------------------------------------------------------------


def restarted(tmp_path: Path, w3: FakeW3, acct: Any) -> tuple[Store, Lifecycle, Any]:
    store, _, _, life = lifecycle(tmp_path, w3=w3, acct=acct)
    report = run(life.start(unknown))  # nothing decided yet: nothing is sent
    return store, life, report


def test_restart_with_a_forgotten_transaction_and_the_price_back_cancels_it(
    tmp_path: Path,
) -> None:
    """Item 1: killed with a batch pending, the node forgets it, the price comes back: at
    restart the stale bytes are NOT re-broadcast; the nonce is cancelled."""
    _, w3, acct, life = started(tmp_path)
    entry = submitted(life, acct)
    w3.eth.forget(entry.tx_hash)
    store, life, report = restarted(tmp_path, w3, acct)
    assert report.rebroadcast == () and report.waiting_for_decision == (entry.id,)
    assert w3.eth.sent == [entry.tx_hash]
    [cancel_id] = block(life, w3, stale).cancelled_by
    assert w3.eth.sent == [entry.tx_hash, store.entry(cancel_id).tx_hash]
    assert store.entry(entry.id).state is S.CANCELLED


def test_restart_with_a_forgotten_transaction_still_wanted_resends_the_same_bytes(
    tmp_path: Path,
) -> None:
    _, w3, acct, life = started(tmp_path)
    entry = submitted(life, acct)
    w3.eth.forget(entry.tx_hash)
    _store, life, _ = restarted(tmp_path, w3, acct)
    assert block(life, w3).rebroadcast == (entry.id,)
    assert w3.eth.sent == [entry.tx_hash, entry.tx_hash]
    assert block(life, w3).rebroadcast == ()  # once, not every block


def test_restart_with_a_pending_transaction_now_stale_cancels_it(tmp_path: Path) -> None:
    _, w3, acct, life = started(tmp_path)
    entry = submitted(life, acct)
    store, life, _ = restarted(tmp_path, w3, acct)
    [cancel_id] = block(life, w3, stale).cancelled_by
    assert store.entry(cancel_id).nonce == entry.nonce


def test_a_kill_between_intent_and_signing_frees_the_vault_at_restart(tmp_path: Path) -> None:
    """Item 13: the intent of a killed keeper fails at once at restart (no 30 s wait)."""
    store, w3, acct, _life = started(tmp_path)
    store.create_intent(intent(acct.address, VAULT))  # killed right after this
    _store2, life2, report = restarted(tmp_path, w3, acct)
    assert len(report.failed) == 1 and life2.in_flight_vaults() == frozenset()
    assert submitted(life2, acct).nonce == 0  # the vault is free and no nonce was skipped


def test_an_instance_starting_while_one_prepares_finds_no_unsigned_intent(
    tmp_path: Path,
) -> None:
    """The intent, its nonce and its signed bytes are journaled in one transaction, after
    the checks that read the chain: an instance that starts meanwhile (and, as its
    reconcile does, fails the intents it finds) finds nothing half done, and the work is
    sent once."""
    store, w3, acct, life = started(tmp_path)
    eth = w3.eth
    original = eth.estimate_gas
    seen: list[list[JournalEntry]] = []

    def restart_meanwhile(call: Any) -> Any:
        other = Store(store.url)
        seen.append(other.entries_in(list(S)))
        other.close()
        return original(call)

    eth.estimate_gas = restart_meanwhile  # type: ignore[method-assign]
    outcome = run(life.submit(intent(acct.address, VAULT)))
    assert seen == [[]]
    assert isinstance(outcome, Submitted) and len(eth.sent) == 1
    [entry] = store.entries_in(list(S))
    assert entry.state is S.SENT and entry.nonce == 0


# --- reorgs -------------------------------------------------------------------------------------


def reorged(tmp_path: Path) -> tuple[Store, FakeW3, Lifecycle, JournalEntry]:
    store, w3, acct, life = started(tmp_path)
    eth = w3.eth
    entry = submitted(life, acct)
    eth.mine()
    assert block(life, w3).mined == (entry.id,)
    assert entry.tx_hash is not None and entry.nonce is not None and entry.raw_tx is not None
    del eth.mined[entry.tx_hash]  # block 11 replaced by 11' without it; the node re-pools it
    eth.mined_nonces.discard(entry.nonce)
    eth.pool[entry.tx_hash] = (entry.nonce, entry.raw_tx)
    eth.fork[11] = "b"
    return store, w3, life, entry


def test_a_reorged_rebalance_whose_move_the_reorg_removed_is_cancelled(tmp_path: Path) -> None:
    """Item 2: the orphaned batch is not left to be re-mined on the new chain."""
    store, w3, life, entry = reorged(tmp_path)
    head = BlockRef(11, bhash(11, "b"), bhash(10, "a"), 0)
    report = run(life.on_block(head, stale))
    assert report.reorged == (entry.id,) and len(report.cancelled_by) == 1
    w3.eth.mine(store.entry(report.cancelled_by[0]).tx_hash)
    assert block(life, w3).mined == report.cancelled_by
    assert store.entry(entry.id).state is S.CANCELLED


def test_a_reorged_rebalance_still_wanted_and_known_is_kept(tmp_path: Path) -> None:
    _store, w3, life, entry = reorged(tmp_path)
    head = BlockRef(11, bhash(11, "b"), bhash(10, "a"), 0)
    report = run(life.on_block(head, wanted))
    assert report.reorged == (entry.id,) and report.cancelled_by == report.rebroadcast == ()
    w3.eth.mine()
    assert block(life, w3).mined == (entry.id,)


# --- whole-transaction reverts ------------------------------------------------------------------


def test_a_whole_transaction_revert_is_an_error_with_its_reason_and_backs_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Item 10: ERROR with the decoded reason, a counter, and a per-vault backoff that
    doubles; the same work is not resent every block."""
    store, w3, acct, life = started(tmp_path)
    eth = w3.eth

    def replayed() -> Any:
        raise SimulationReverted("DeadlineExpired()")

    eth.call_hook = replayed
    for streak, blocks in ((1, 2), (2, 4)):
        entry = submitted(life, acct)
        assert entry.tx_hash is not None
        eth.reverting.add(entry.tx_hash)
        eth.mine()
        with caplog.at_level(logging.ERROR):
            report = block(life, w3)
        assert report.reverted == ((entry.id, "DeadlineExpired()"),)
        assert life.reverts_total == streak
        assert [r for r in caplog.records if "DeadlineExpired()" in str(r.__dict__)]
        for _ in range(blocks - 1):
            assert VAULT in life.in_flight_vaults()
            outcome = run(life.submit(intent(acct.address, VAULT)))
            assert isinstance(outcome, Refused) and outcome.reason is Refusal.BACKOFF
            eth.mine()
            block(life, w3)
        eth.mine()
        block(life, w3)
        assert VAULT not in life.in_flight_vaults()
    entry = submitted(life, acct)  # a success ends the streak
    eth.mine()
    block(life, w3)
    assert life.backing_off() == frozenset() and store.entry(entry.id).receipt_status == 1


# --- the private relay --------------------------------------------------------------------------


class SlowRelay:
    name = "private"

    def __init__(self) -> None:
        self.calls = 0

    async def send_raw(self, raw: bytes) -> None:
        self.calls += 1
        await asyncio.sleep(5)


def test_a_dead_private_relay_is_skipped_after_one_short_timeout(tmp_path: Path) -> None:
    """Item 11: one short timeout, then the breaker is open (no more waiting per send)
    until its cool-down passes; the transaction still goes out through the public node."""
    now = [0.0]
    inner = SlowRelay()
    relay = GuardedRelay(inner, timeout_seconds=0.05, cooldown_seconds=60, clock=lambda: now[0])
    _store, w3, acct, life = started(tmp_path)
    life._sender._routes = (relay, *life._sender._routes)
    submitted(life, acct, VAULT)
    submitted(life, acct, OTHER)
    assert inner.calls == 1 and relay.trips == 1 and relay.is_open()
    now[0] = 61.0
    assert not relay.is_open()
    submitted(life, acct, "0x" + "cc" * 20)
    assert inner.calls == 2 and len(w3.eth.sent) == 3


def test_blocks_waited_count_from_the_broadcast_not_the_attempt(tmp_path: Path) -> None:
    """Item 11: heads passing during a slow broadcast do not make the transaction stuck."""
    store, w3, acct, life = started(tmp_path)
    eth = w3.eth

    def slow(raw: bytes) -> None:
        eth.head += 3  # three heads pass while the send is in progress
        eth.accept(raw)

    eth.send_hook = slow
    entry = submitted(life, acct)
    assert entry.sent_at_block == eth.head
    eth.pool.clear()
    report = block(life, w3)
    assert report.replaced_by == () and store.entry(entry.id).state is S.SENT
