"""Reads started at the head (``keeper.chain.ahead``): each answer is used once, what was
not read ahead is read then, the mined count is read before the receipts, and the
lifecycle's block follows the journal on the answers read ahead."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from fake_chain import FakeEth, FakeW3, intent, lifecycle, unknown, wanted
from web3.exceptions import TransactionNotFound

from keeper.chain.ahead import ReadAhead
from keeper.errors import RpcError
from keeper.store import JournalState
from keeper.tx import Prepared, Refusal, Refused, Submitted

VAULT = "0x" + "aa" * 20


def test_an_answer_read_ahead_is_taken_once_then_read_afresh() -> None:
    reads: list[int] = []

    async def read() -> int:
        reads.append(len(reads))
        return len(reads)

    async def go() -> tuple[int, int, int]:
        ahead = ReadAhead()
        ahead.begin(7)
        ahead.start("x", read)
        first = await ahead.take("x", read)
        second = await ahead.take("x", read)
        other = await ahead.take("y", read)
        return first, second, other

    assert asyncio.run(go()) == (1, 2, 3)


def test_a_new_head_drops_what_the_last_one_read_and_nobody_took() -> None:
    async def go() -> tuple[bool, int]:
        ahead = ReadAhead()
        ahead.begin(1)
        slow = ahead.start("x", lambda: asyncio.sleep(10, result=1))
        ahead.begin(2)
        await asyncio.sleep(0)
        return slow.cancelled(), await ahead.take("x", lambda: asyncio.sleep(0, result=2))

    assert asyncio.run(go()) == (True, 2)


def test_a_read_that_failed_ahead_raises_where_it_is_taken_and_is_not_kept() -> None:
    async def failing() -> int:
        raise RpcError("node down")

    async def go() -> int:
        ahead = ReadAhead()
        ahead.begin(1)
        ahead.start("x", failing)
        await asyncio.sleep(0)
        with pytest.raises(RpcError):
            await ahead.take("x", failing)
        return await ahead.take("x", lambda: asyncio.sleep(0, result=5))

    assert asyncio.run(go()) == 5


class RecordingEth(FakeEth):
    """The fake chain, each read logged when it starts and when it answers."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, str]] = []

    def get_transaction_count(self, addr: str, tag: str) -> Any:
        answer = super().get_transaction_count(addr, tag)

        async def slow() -> Any:
            self.log.append(("start", f"count:{tag}"))
            await asyncio.sleep(0.01)  # the count answers late: receipts do not wait for it
            self.log.append(("done", f"count:{tag}"))
            return await answer

        return slow()

    async def get_transaction_receipt(self, h: Any) -> Any:
        self.log.append(("start", "receipt"))
        return await super().get_transaction_receipt(h)

    def get_balance(self, addr: str, tag: Any) -> Any:
        self.log.append(("start", "balance"))
        return super().get_balance(addr, tag)

    def fee_history(self, n: int, newest: Any, pct: list[float]) -> Any:
        self.log.append(("start", f"fees:{newest}"))
        return super().fee_history(n, newest, pct)


def test_the_lifecycle_follows_a_block_on_the_reads_started_at_its_head(
    tmp_path: Path,
) -> None:
    w3 = FakeW3()
    w3.eth = RecordingEth()
    store, w3, acct, life = lifecycle(tmp_path, w3=w3)
    eth: RecordingEth = w3.eth  # type: ignore[assignment]

    async def go() -> Any:
        await life.start(unknown)
        outcome = await life.submit(intent(acct.address, VAULT))
        assert isinstance(outcome, Submitted)
        eth.mine()
        head = eth.ref(eth.head)
        eth.log.clear()
        life.read_ahead(head)
        await asyncio.sleep(0.05)  # the block's multicall would run here
        ahead = list(eth.log)
        eth.log.clear()
        report = await life.on_block(head, wanted)
        allowed = await life.fees_allow(False)
        second = await life.submit(intent(acct.address, "0x" + "bb" * 20))
        third = await life.submit(intent(acct.address, "0x" + "cc" * 20))
        return outcome.entry, ahead, list(eth.log), report, allowed, (second, third)

    entry, ahead, during, report, allowed, sent = asyncio.run(go())
    assert report.mined == (entry.id,)
    assert store.entry(entry.id).state is JournalState.MINED
    assert allowed and all(isinstance(s, Submitted) for s in sent)
    starts = [what for kind, what in ahead if kind == "start"]
    assert sorted(starts) == sorted(
        ["count:latest", "count:pending", "receipt", "balance", f"fees:{head_number(eth)}"]
    )
    # the receipt was asked for alongside the mined count, not after its answer
    assert ahead.index(("start", "receipt")) < ahead.index(("done", "count:latest"))
    # following the block read nothing again; the fee gate took the fee history read ahead
    # and the block's first transaction the balance: the later ones are checked against
    # what it leaves, without reading it again (the fake chain does not remember fee
    # histories, as RpcEth does)
    fees = f"fees:{head_number(eth)}"
    assert [w for k, w in during if k == "start"] == [fees, fees]


class MinedMeanwhileEth(RecordingEth):
    """The receipt read ahead answers "none"; the transaction is mined before the count
    answers (a block lands between the two reads)."""

    def __init__(self) -> None:
        super().__init__()
        self.mine_before_count = False

    def get_transaction_count(self, addr: str, tag: str) -> Any:
        async def answered_late() -> Any:  # the count as the chain is when it answers
            self.log.append(("start", f"count:{tag}"))
            await asyncio.sleep(0.01)
            self.log.append(("done", f"count:{tag}"))
            return await FakeEth.get_transaction_count(self, addr, tag)

        return answered_late()

    async def get_transaction_receipt(self, h: Any) -> Any:
        receipt = super().get_transaction_receipt(h)
        if self.mine_before_count:
            self.mine_before_count = False
            with pytest.raises(TransactionNotFound):
                await receipt
            self.mine()  # mined after the receipt was read, before the count
            raise TransactionNotFound("none yet")
        return await receipt


def test_a_receipt_read_ahead_before_its_transaction_was_mined_is_read_again(
    tmp_path: Path,
) -> None:
    """The count says the nonce is used and the receipt read alongside it says "none": it is
    read again after the count, so the transaction is mined, never dropped or waited for."""
    w3 = FakeW3()
    w3.eth = MinedMeanwhileEth()
    store, w3, acct, life = lifecycle(tmp_path, w3=w3)
    eth: MinedMeanwhileEth = w3.eth  # type: ignore[assignment]

    async def go() -> Any:
        await life.start(unknown)
        outcome = await life.submit(intent(acct.address, VAULT))
        assert isinstance(outcome, Submitted)
        eth.mine_before_count = True
        head = eth.ref(eth.head + 1)
        life.read_ahead(head)
        await asyncio.sleep(0.05)
        return outcome.entry, await life.on_block(head, wanted)

    entry, report = asyncio.run(go())
    assert report.mined == (entry.id,) and not report.dropped
    assert store.entry(entry.id).state is JournalState.MINED
    assert [w for k, w in eth.log if k == "start"].count("receipt") == 2


class ScarceEth(RecordingEth):
    """A chain whose account balance the test sets."""

    balance = 10**21

    def get_balance(self, addr: str, tag: Any) -> Any:
        self.log.append(("start", "balance"))
        return asyncio.sleep(0, result=self.balance)


def test_a_blocks_later_transaction_is_checked_against_what_the_earlier_ones_may_cost(
    tmp_path: Path,
) -> None:
    """One balance read per head: the second transaction of a block is refused when the
    balance read at the head cannot pay both worst cases, and the next head reads afresh."""
    w3 = FakeW3()
    w3.eth = ScarceEth()
    _store, w3, acct, life = lifecycle(tmp_path, w3=w3)
    eth: ScarceEth = w3.eth  # type: ignore[assignment]

    async def at_new_head() -> None:
        eth.mine()
        head = eth.ref(eth.head)
        life.read_ahead(head)
        await life.on_block(head, wanted)

    async def go() -> tuple[Any, ...]:
        await life.start(unknown)
        probe = await life.submit(intent(acct.address, VAULT))
        assert isinstance(probe, Submitted)
        signed = probe.entry.signed()
        worst = signed.gas_limit * signed.max_fee_wei
        eth.balance = worst * 3 // 2  # pays for one more, not two
        eth.log.clear()
        await at_new_head()
        first = await life.submit(intent(acct.address, "0x" + "bb" * 20))
        second = await life.submit(intent(acct.address, "0x" + "cc" * 20))
        reads = [w for k, w in eth.log if w == "balance"]
        eth.balance = worst * 5
        await at_new_head()
        third = await life.submit(intent(acct.address, "0x" + "cc" * 20))
        return first, second, reads, third

    first, second, reads, third = asyncio.run(go())
    assert isinstance(first, Submitted)
    assert isinstance(second, Refused) and second.reason is Refusal.FUNDS
    assert "fund the account" in second.detail
    assert reads == ["balance"]  # the head's one read (read ahead), not one per transaction
    assert isinstance(third, Submitted)


def head_number(eth: FakeEth) -> int:
    return eth.head


def test_a_withdrawn_transaction_no_longer_holds_its_cost_of_the_heads_balance(
    tmp_path: Path,
) -> None:
    """Signed ahead and withdrawn (its simulation failed): the block's next transaction may
    use what the withdrawn one reserved of the balance read at the head."""
    w3 = FakeW3()
    w3.eth = ScarceEth()
    _store, w3, acct, life = lifecycle(tmp_path, w3=w3)
    eth: ScarceEth = w3.eth  # type: ignore[assignment]

    async def go() -> tuple[Any, ...]:
        await life.start(unknown)
        probe = await life.submit(intent(acct.address, VAULT))
        assert isinstance(probe, Submitted)
        signed = probe.entry.signed()
        eth.balance = signed.gas_limit * signed.max_fee_wei * 3 // 2  # pays for one
        eth.mine()
        head = eth.ref(eth.head)
        life.read_ahead(head)
        await life.on_block(head, wanted)
        ahead = await life.prepare(intent(acct.address, "0x" + "bb" * 20))
        assert isinstance(ahead, Prepared)
        life.withdraw(ahead, "its simulation failed")
        return await life.submit(intent(acct.address, "0x" + "cc" * 20))

    assert isinstance(asyncio.run(go()), Submitted)
