"""The sending side's edge cases on a fake chain: lost answers, lagging receipt indexes,
receipts ahead of the processed head, two instances racing on one journal entry."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fake_chain import GWEI, bhash, build, intent, run, wanted

from keeper.core.chaintrack import ChainUpdate
from keeper.core.types import BlockRef
from keeper.errors import FatalError, RpcTimeout
from keeper.store import JournalState
from keeper.tx.sender import Unsent

S = JournalState
VAULT = "0x" + "aa" * 20


def test_a_lost_answer_then_nonce_too_low_for_our_own_bytes_is_sent_once(
    tmp_path: Path,
) -> None:
    _, w3, account, sender, _ = build(tmp_path)
    eth = w3.eth
    tries: list[bytes] = []

    def reaches_then_times_out(raw: bytes) -> None:
        tries.append(raw)
        eth.accept(raw)
        if len(tries) == 1:
            eth.mine()  # mined before the retry: the retry hears "nonce too low"
            raise RpcTimeout("eth_sendRawTransaction: timed out")

    eth.send_hook = reaches_then_times_out
    entry = run(sender.submit(intent(account.address, VAULT)))
    assert entry.state is S.SENT and entry.id == 1
    assert set(eth.sent) == {entry.tx_hash}  # one signed transaction, never a second


def test_a_lagging_receipt_index_does_not_drop_our_mined_transaction(tmp_path: Path) -> None:
    store, w3, account, sender, confirmer = build(tmp_path)
    eth = w3.eth
    entry = run(sender.submit(intent(account.address, VAULT)))
    eth.mine()
    eth.hide_receipts = True  # the nonce is used, the receipt is not served yet
    run(confirmer.on_block(eth.ref(eth.head), wanted))
    assert store.entry(entry.id).state is S.SENT and store.vault_in_flight(VAULT)
    eth.hide_receipts = False
    eth.mine()
    assert run(confirmer.on_block(eth.ref(eth.head), wanted)).mined == (entry.id,)


def test_a_receipt_from_a_block_ahead_of_the_head_is_checked_when_that_block_is_reorged(
    tmp_path: Path,
) -> None:
    store, w3, account, sender, confirmer = build(tmp_path)
    eth = w3.eth
    entry = run(sender.submit(intent(account.address, VAULT)))
    processed = eth.ref(eth.head)  # the keeper processes head 10 ...
    eth.mine()  # ... while the node is at 11 already, our transaction in it
    run(confirmer.on_block(processed, wanted))
    assert store.entry(entry.id).mined_block_number == 11
    # 11 is replaced by 11' without it; the transaction is pending again
    tx_hash = entry.tx_hash
    assert tx_hash is not None and entry.nonce is not None and entry.raw_tx is not None
    del eth.mined[tx_hash]
    eth.mined_nonces.discard(entry.nonce)
    eth.pool[tx_hash] = (entry.nonce, entry.raw_tx)
    eth.fork[11] = "b"
    eth.head = 11
    report = run(confirmer.on_block(BlockRef(11, bhash(11, "b"), bhash(10, "a"), 0), wanted))
    assert report.reorged == (entry.id,)
    assert store.entry(entry.id).state is S.SENT and store.vault_in_flight(VAULT)


def counting_block_reads(eth: Any) -> list[int]:
    """The block numbers the confirmer asks the node about, in order."""
    asked: list[int] = []
    read = eth.get_block

    async def get_block(n: int) -> Any:
        asked.append(n)
        return await read(n)

    eth.get_block = get_block
    return asked


def test_a_head_linked_over_a_gap_rechecks_nothing_already_processed(tmp_path: Path) -> None:
    """The follower linked the new head to the last one through the blocks between (each
    by its parent hash): an entry mined below them is not re-checked, nor is a block of
    the linked segment asked about."""
    store, w3, account, sender, confirmer = build(tmp_path)
    eth = w3.eth
    entry = run(sender.submit(intent(account.address, VAULT)))
    eth.mine()  # 11, with our transaction
    head = eth.ref(11)
    assert run(confirmer.on_block(head, wanted, chain=ChainUpdate((head,)))).mined == (entry.id,)
    asked = counting_block_reads(eth)
    for _ in range(3):
        eth.mine()
    linked = ChainUpdate((eth.ref(12), eth.ref(13), eth.ref(14)))
    report = run(confirmer.on_block(eth.ref(14), wanted, chain=linked))
    assert report.reorged == () and asked == []
    assert store.entry(entry.id).state is S.MINED


def test_a_receipt_ahead_whose_block_the_linked_segment_replaced_is_reorged_unasked(
    tmp_path: Path,
) -> None:
    """A receipt found ahead of the processed head names block 11; the follower then links
    11' and 12 to the last head: the entry is reorged from the segment's own hashes."""
    store, w3, account, sender, confirmer = build(tmp_path)
    eth = w3.eth
    entry = run(sender.submit(intent(account.address, VAULT)))
    processed = eth.ref(eth.head)  # head 10 is processed while the node mines 11
    eth.mine()
    run(confirmer.on_block(processed, wanted, chain=ChainUpdate((processed,))))
    assert store.entry(entry.id).mined_block_number == 11
    tx_hash = entry.tx_hash
    assert tx_hash is not None and entry.nonce is not None and entry.raw_tx is not None
    del eth.mined[tx_hash]  # 11 is replaced by 11' without it; pending again
    eth.mined_nonces.discard(entry.nonce)
    eth.pool[tx_hash] = (entry.nonce, entry.raw_tx)
    eth.fork[11] = "b"
    eth.head = 12
    asked = counting_block_reads(eth)
    linked = ChainUpdate((eth.ref(11), eth.ref(12)))
    report = run(confirmer.on_block(eth.ref(12), wanted, chain=linked))
    assert report.reorged == (entry.id,) and asked == []
    assert store.entry(entry.id).state is S.SENT and store.vault_in_flight(VAULT)


def test_after_a_reorg_the_whole_window_is_checked_against_the_node(tmp_path: Path) -> None:
    store, w3, account, sender, confirmer = build(tmp_path)
    eth = w3.eth
    entry = run(sender.submit(intent(account.address, VAULT)))
    eth.mine()  # 11, with our transaction
    head = eth.ref(11)
    run(confirmer.on_block(head, wanted, chain=ChainUpdate((head,))))
    eth.fork[12] = "z"
    eth.mine()
    dropped = eth.ref(12)
    run(confirmer.on_block(dropped, wanted, chain=ChainUpdate((dropped,))))
    eth.fork[12] = "a"  # 12 is replaced, 13 is built on the new one
    eth.mine()
    asked = counting_block_reads(eth)
    reorg = ChainUpdate((eth.ref(12), eth.ref(13)), dropped=(dropped,))
    report = run(confirmer.on_block(eth.ref(13), wanted, chain=reorg))
    assert asked == [11] and report.reorged == ()  # block 11 is still canonical
    assert store.entry(entry.id).state is S.MINED


def test_an_intent_another_instance_failed_first_does_not_abort_the_block(
    tmp_path: Path,
) -> None:
    later = time.time() + 10_000
    store, w3, account, _, confirmer = build(tmp_path, clock=lambda: later)
    store.create_intent(intent(account.address, VAULT))
    seen = store.entries_in([S.INTENT], account.address)  # this instance read it ...
    store.mark_failed(seen[0].id, "failed by the other instance")  # ... the other failed it
    real = store.entries_in

    def stale_view(states: Any, sender: str | None = None) -> Any:
        return seen if list(states) == [S.INTENT] else real(states, sender)

    store.entries_in = stale_view  # type: ignore[method-assign]
    report = run(confirmer.on_block(w3.eth.ref(w3.eth.head), wanted))
    assert report.failed == ()  # not counted twice, and the block went on


def test_a_nonce_given_back_below_a_sent_one_is_filled_so_the_later_one_can_land(
    tmp_path: Path,
) -> None:
    store, w3, account, sender, confirmer = build(tmp_path)
    eth = w3.eth
    phase = ["no answer"]  # for X's nonce 0: first no answer at all, then refused for good

    def node(raw: bytes) -> None:
        _, nonce = eth.decode(raw)
        if nonce == 0 and phase[0] == "no answer":
            raise RpcTimeout("eth_sendRawTransaction: timed out")
        if nonce == 0 and phase[0] == "refused":
            raise FatalError("node refused: transaction would cause overdraft")
        eth.accept(raw)

    eth.send_hook = node
    with pytest.raises(Unsent):
        run(sender.submit(intent(account.address, VAULT)))  # X, nonce 0: stays signed
    x_raw = store.entry(1).raw_tx
    other = "0x" + "bb" * 20
    y = run(sender.submit(intent(account.address, other)))  # Y, nonce 1: sent
    assert y.nonce == 1
    phase[0] = "refused"
    eth.send_hook = lambda raw: eth.accept(raw) if raw != x_raw else node(raw)
    report = run(confirmer.on_block(eth.ref(eth.head), wanted))
    assert store.entry(1).state is S.FAILED  # X refused: nonce 0 given back, below Y's
    (filler_id,) = report.gap_filled_by
    filler = store.entry(filler_id)
    assert filler.nonce == 0 and filler.to == account.address and filler.value_wei == 0
    eth.mine()
    eth.mine()
    mined = run(confirmer.on_block(eth.ref(eth.head), wanted)).mined
    assert set(mined) == {filler_id, y.id}
    assert store.free_nonces(account.address) == [] and not store.vault_in_flight(other)


@pytest.mark.parametrize("urgent_now", [False, True])
def test_a_stuck_rebalance_whose_vault_became_urgent_is_replaced_above_the_cap(
    tmp_path: Path, urgent_now: bool
) -> None:
    store, w3, account, sender, confirmer = build(tmp_path)
    eth = w3.eth
    entry = run(sender.submit(intent(account.address, VAULT)))  # non-urgent, at 10 gwei
    eth.pool.clear()  # never mined ...
    eth.base_fee = 150 * GWEI  # ... and a spike above the 100 gwei cap
    eth.head += 3
    urgent = frozenset({VAULT}) if urgent_now else frozenset()
    report = run(confirmer.on_block(eth.ref(eth.head), wanted, urgent))
    if not urgent_now:  # non-urgent work waits for fees, the vault stays claimed
        assert report.waiting_for_fees == (entry.id,) and report.replaced_by == ()
        return
    (new_id,) = report.replaced_by
    new = store.entry(new_id)
    assert new.nonce == entry.nonce
    assert new.max_fee_wei is not None and new.max_fee_wei > 150 * GWEI  # above the cap
