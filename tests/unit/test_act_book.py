"""The actor's pure decisions around the book: retries after a simulation, one swap per side."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from eth_abi.abi import encode
from vaults import vault_state

from keeper.act.actor import (
    ActConfig,
    PlannedTx,
    RebalanceActor,
    _BlockSends,
    _one_swap_per_side,
    _retry_after,
)
from keeper.chain.simulate import GasFound
from keeper.core import abi
from keeper.core.book import BookPlan, NetNeed, Settlement
from keeper.core.fees import FeeQuote
from keeper.core.planner import TradeSpec, size_trade
from keeper.core.types import (
    WAD,
    Action,
    BlockRef,
    Decision,
    NetSwap,
    OracleRound,
    SettleLeg,
    Trade,
)
from keeper.errors import KeeperError, OutOfGas, SimulationReverted
from keeper.store import TxIntent
from keeper.tx import Prepared, Refusal, Refused, Submitted

CALL = ("0x" + "02" * 20, b"\x01")  # a planned transaction's calldata, as encoded


async def not_ahead(*_: Any) -> None:
    """The actor's sign-ahead, off (these tests look at what is simulated and sent)."""
    return None


def trade(i: int, wei: int, urgent: bool = False) -> TradeSpec:
    d = Decision(
        f"0x{i:040x}", 1, "0xb", Action.REBALANCE, "band", deviation=-wei / WAD, trade_wei=wei
    )
    spec = size_trade(replace(d, urgent=urgent), vault_state(address=d.vault), 30, 60)
    assert isinstance(spec, TradeSpec)
    return spec


def config(**kw: int) -> ActConfig:
    return ActConfig(
        keeper="0x" + "01" * 20,
        settlement="0x" + "02" * 20,
        weth="0x" + "03" * 20,
        usdc="0x" + "04" * 20,
        routers=frozenset(),
        deadline_seconds=600,
        cost_bps=5,
        net_slippage_bps=30,
        max_fee_cap_wei=10**11,
        **kw,
    )


def one_leg(t: TradeSpec, sell: bool = True) -> Settlement:
    """A settlement of ``t`` alone, netting its whole trade."""
    leg = SettleLeg(t.vault, Trade(True, t.amount_in, 1, t.state.state_nonce, 0), 1)
    return Settlement((leg,), NetNeed(sell, t.underlying, 0), 1, {}, {})


def actor_of_two_books(a: TradeSpec, b: TradeSpec) -> tuple[RebalanceActor, list[Decision]]:
    """An actor with nothing in flight and fees allowed, planning one book (one one-leg
    settlement, netted in its own direction) per trade, sending what simulates; and the
    decisions that rebalance ``a`` and ``b``."""

    class Lifecycle:
        def in_flight_vaults(self) -> frozenset[str]:
            return frozenset()

        async def fees_allow(self, urgent: bool) -> bool:
            return True

    store = SimpleNamespace(mined_since=lambda n: [])
    actor = RebalanceActor(None, config(), store, None, Lifecycle(), None)  # type: ignore[arg-type]

    async def plan(block: Any, groups: Any, gas: int) -> Any:
        out = []
        for group, max_legs in groups:
            s = one_leg(group[0], group[0].sell_underlying)
            p = BookPlan((s,), (), {}, None, 0)
            out.append(((group, max_legs), (p, [PlannedTx(s, object(), p, call=CALL)])))  # type: ignore[arg-type]
        return out

    async def send(sends: Any, tx: PlannedTx, early: Any) -> set[str]:
        return set(tx.settlement.vaults)

    actor._plan = plan  # type: ignore[method-assign]
    actor._send = send  # type: ignore[method-assign]
    actor._sign_ahead = not_ahead  # type: ignore[method-assign]
    trades_by_vault = {a.vault: a, b.vault: b}
    actor._trades = lambda block, ds, states: [trades_by_vault[d.vault] for d in ds]  # type: ignore[method-assign]
    decisions = [
        Decision(t.vault, 1, "0xb", Action.REBALANCE, "band", deviation=1.0, trade_wei=-WAD)
        for t in (a, b)
    ]
    return actor, decisions


def test_legs_per_settlement_fit_the_simulation_gas_cap_and_max_legs() -> None:
    assert config().legs_per_settlement() == 64
    assert config(simulation_gas_cap=3_000_000).legs_per_settlement() == 18
    assert config(simulation_gas_cap=100_000).legs_per_settlement() == 1
    assert config().loss_bps == 35


def test_out_of_gas_plans_the_same_vaults_again_in_halves() -> None:
    members = [trade(i, -WAD) for i in range(1, 41)]
    assert _retry_after(OutOfGas("gas required exceeds allowance"), members, 64) == [(members, 20)]
    assert _retry_after(OutOfGas("x"), members[:1], 64) == []  # one vault: nothing to halve


def test_a_revert_naming_a_vault_plans_the_rest_without_it_else_halves() -> None:
    members = [trade(i, -WAD) for i in range(1, 4)]
    data = abi.error_selector("NotRegistered") + encode(["address"], [members[1].vault])
    retry = _retry_after(SimulationReverted("NotRegistered", data), members, 64)
    assert retry == [([members[0], members[2]], 64)]
    stale = abi.error_selector("StaleState") + encode(["uint64", "uint64"], [1, 2])
    halves = _retry_after(SimulationReverted("StaleState(1, 2)", stale), members, 64)
    assert halves == [([members[0], members[2]], 64), ([members[1]], 64)]


@pytest.mark.parametrize(
    ("error", "types", "args"),
    [
        ("DeadlineExpired", ["uint256", "uint256"], [100, 400]),
        ("OracleStale", ["uint256", "uint64", "uint256"], [1, 3600, 9000]),
        ("OracleFromFuture", ["uint256", "uint256"], [900, 0]),
    ],
)
def test_a_book_whose_block_the_chain_moved_past_waits_for_the_next_block(
    error: str, types: list[str], args: list[int]
) -> None:
    """Every leg would fail the same way: no halving storm, decided afresh next block."""
    members = [trade(i, -WAD) for i in range(1, 41)]
    data = abi.error_selector(error) + encode(types, args)
    assert _retry_after(SimulationReverted(error, data), members, 64) == []


def test_one_swap_per_direction_per_block_urgent_first() -> None:
    small, big, urgent = trade(1, WAD), trade(2, 5 * WAD), trade(3, 2 * WAD, urgent=True)
    seller = trade(4, -WAD)
    plan = BookPlan((), (small, big, urgent, seller), {}, None, 0)
    assert _one_swap_per_side(plan, set()) == [urgent, seller]
    assert _one_swap_per_side(plan, {True}) == [urgent]  # the book's net already sells
    assert _one_swap_per_side(plan, {True, False}) == []


def test_two_books_never_swap_the_same_way_in_one_block() -> None:
    """Vaults on two oracle rounds (two books) share the one pool: a second swap the same way
    quoted on the same pool state gets less than quoted (it reverts on chain, or its vaults
    get a worse price), so the second book's swap waits a block, as inside one book."""
    a, b = trade(1, -WAD), trade(2, -WAD)
    b = replace(b, state=replace(b.state, oracle=OracleRound(8, 3001 * 10**8, 0, 8)))
    actor, decisions = actor_of_two_books(a, b)

    async def simulate(tx: PlannedTx) -> PlannedTx:
        return tx

    actor._simulate = simulate  # type: ignore[method-assign]
    snapshot = SimpleNamespace(vaults=[a.state, b.state], base_fee_wei=0)
    sent = asyncio.run(actor.act(BlockRef(1, "0xb", "0xa", 0), snapshot, decisions))  # type: ignore[arg-type]
    assert a.sell_underlying == b.sell_underlying
    assert sent == {a.vault}


def test_a_book_refused_in_simulation_is_planned_again_without_the_refusing_vault() -> None:
    """A settlement whose simulation reverts never swapped: its retry (without the vault the
    revert names, or in halves) must not be deferred as a "second swap the same way"; else
    one refusing vault holds every vault of the book back, block after block."""
    import asyncio
    from types import SimpleNamespace

    from keeper.act.actor import PlannedTx, RebalanceActor
    from keeper.core.book import NetNeed, Settlement
    from keeper.core.types import BlockRef, SettleLeg, Trade

    good, bad, other = trade(1, -WAD), trade(2, -WAD), trade(3, -WAD)
    actor = RebalanceActor(None, config(), SimpleNamespace(), None, None, None)  # type: ignore[arg-type]

    async def plan(block: Any, groups: Any, gas: int) -> Any:
        out = []
        for group, max_legs in groups:
            legs = tuple(
                SettleLeg(t.vault, Trade(True, t.amount_in, 1, t.state.state_nonce, 0), 1)
                for t in group
            )
            s = Settlement(legs, NetNeed(True, sum(t.underlying for t in group), 0), 1, {}, {})
            p = BookPlan((s,), (), {}, None, 0)
            out.append(((group, max_legs), (p, [PlannedTx(s, object(), p, call=CALL)])))  # type: ignore[arg-type]
        return out

    async def simulate(tx: PlannedTx) -> PlannedTx | SimulationReverted:
        if bad.vault not in tx.settlement.vaults:
            return tx
        data = abi.error_selector("NotRegistered") + encode(["address"], [bad.vault])
        return SimulationReverted("NotRegistered", data)

    actor._plan = plan  # type: ignore[method-assign]
    actor._simulate = simulate  # type: ignore[method-assign]
    ready: list[PlannedTx] = []

    async def send(sends: Any, tx: PlannedTx, early: Any) -> set[str]:
        ready.append(tx)
        return set(tx.settlement.vaults)

    actor._send = send  # type: ignore[method-assign]
    actor._sign_ahead = not_ahead  # type: ignore[method-assign]
    sends = _BlockSends(BlockRef(1, "0xb", "0xa", 0), {})
    asyncio.run(actor._book(sends, [good, bad, other], 0, set()))
    assert [tx.settlement.vaults for tx in ready] == [(good.vault, other.vault)]


def test_what_would_pass_the_blocks_gas_share_is_neither_simulated_nor_sent() -> None:
    """Two books of one vault each, trading opposite ways (so the one-swap-per-direction
    rule holds neither back): the first (a 22M limit expected from a measured 17M
    rebalance, +10% guess margin, +20% headroom) goes into the 30M block; the second would
    pass the block's gas and is left for the next block without being simulated."""
    a, b = trade(1, -WAD), trade(2, WAD)
    b = replace(b, state=replace(b.state, oracle=OracleRound(8, 3001 * 10**8, 0, 8)))
    actor, decisions = actor_of_two_books(a, b)
    actor.gas_guess.learn("rebalance", 1, GasFound(17_000_000, "measured"))
    simulated: list[str] = []

    async def simulate(tx: PlannedTx) -> PlannedTx:
        simulated.extend(tx.settlement.vaults)
        return replace(tx, gas_limit=22_000_000)

    actor._simulate = simulate  # type: ignore[method-assign]
    snapshot = SimpleNamespace(vaults=[a.state, b.state], base_fee_wei=0)
    head = BlockRef(1, "0xb", "0xa", 0, gas_limit=30_000_000)
    sent = asyncio.run(actor.act(head, snapshot, decisions))  # type: ignore[arg-type]
    assert a.sell_underlying != b.sell_underlying
    assert sent == {a.vault} and simulated == [a.vault]
    # the block's gas limit unknown (0): both go
    simulated.clear()
    both = asyncio.run(actor.act(BlockRef(1, "0xb", "0xa", 0), snapshot, decisions))  # type: ignore[arg-type]
    assert both == {a.vault, b.vault} and simulated == [a.vault, b.vault]


def test_a_settlement_is_sent_as_soon_as_it_and_those_before_it_have_simulated() -> None:
    """Two settlements of one book simulate together; the first is sent while the second's
    simulation is still running (here the second answers only once the first was sent: an
    actor that waited for every simulation before sending would never send either)."""
    first, second = trade(1, -WAD), trade(2, -WAD)
    actor = RebalanceActor(None, config(), SimpleNamespace(), None, None, None)  # type: ignore[arg-type]

    async def plan(block: Any, groups: Any, gas: int) -> Any:
        ((group, max_legs),) = groups
        s = tuple(one_leg(t) for t in group)
        p = BookPlan(s, (), {}, None, 0)
        return [((group, max_legs), (p, [PlannedTx(x, None, p, call=CALL) for x in s]))]

    sent: list[tuple[str, ...]] = []
    first_sent = asyncio.Event()

    async def simulate(tx: PlannedTx) -> PlannedTx:
        if second.vault in tx.settlement.vaults:
            await first_sent.wait()
        return replace(tx, gas_limit=100_000)

    async def send(sends: Any, tx: PlannedTx, early: Any) -> set[str]:
        sent.append(tx.settlement.vaults)
        first_sent.set()
        return set(tx.settlement.vaults)

    actor._plan = plan  # type: ignore[method-assign]
    actor._simulate = simulate  # type: ignore[method-assign]
    actor._send = send  # type: ignore[method-assign]
    actor._sign_ahead = not_ahead  # type: ignore[method-assign]
    book = actor._book(_BlockSends(BlockRef(1, "0xb", "0xa", 0), {}), [first, second], 0, set())
    asyncio.run(asyncio.wait_for(book, timeout=5))
    assert sent == [(first.vault,), (second.vault,)]


def test_the_calldata_sent_is_the_calldata_simulated_encoded_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A settlement is encoded for its simulation; what is sent reuses those bytes."""
    a, b = trade(1, -WAD), trade(2, WAD)
    legs = tuple(
        SettleLeg(t.vault, Trade(True, t.amount_in, 1, t.state.state_nonce, 0), 1) for t in (a, b)
    )
    s = Settlement(legs, NetNeed(True, 0, 0), 0, {}, {})
    calls: list[dict[str, Any]] = []

    class Eth:
        async def call(self, call: dict[str, Any], block: Any = "latest") -> bytes:
            calls.append(call)
            return b""

    actor = RebalanceActor(SimpleNamespace(eth=Eth()), config(), None, None, None, None)  # type: ignore[arg-type]
    actor.gas_guess.learn("settle", 2, GasFound(300_000, "measured"))
    encoded: list[int] = []
    real = abi.encode_settle
    monkeypatch.setattr(abi, "encode_settle", lambda *args: encoded.append(1) or real(*args))
    planned = asyncio.run(actor._simulate(PlannedTx(s, None, BookPlan((s,), (), {}, None, 0))))
    assert isinstance(planned, PlannedTx) and planned.gas_limit is not None
    ((to, data),) = [(c["to"], c["data"]) for c in calls]
    assert actor._tx(planned) == (to, data) == planned.call
    assert data[:4] == real(legs, NetSwap(actor.config.settlement, True, 0, 0, b""))[:4]
    assert encoded == [1]  # the send took the simulated bytes


# --- signing ahead of the simulation -------------------------------------------------------------


class RecordingLifecycle:
    """The lifecycle's side of a send, recorded: what was prepared, sent, withdrawn."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.calls: list[tuple[str, Any]] = []

    def in_flight_vaults(self) -> frozenset[str]:
        return frozenset()

    async def fees_allow(self, urgent: bool) -> bool:
        return True

    async def prepare(self, intent: TxIntent) -> Prepared | Refused:
        self.calls.append(("prepare", intent.gas_limit))
        if self.refuse:
            return Refused(Refusal.FUNDS, "the account cannot pay")
        return Prepared(intent, FeeQuote(2, 1), entry(intent))

    async def send_prepared(self, prepared: Prepared) -> Submitted:
        self.calls.append(("send_prepared", prepared.intent.gas_limit))
        return Submitted(prepared.entry)

    async def submit(self, intent: TxIntent) -> Submitted:
        self.calls.append(("submit", intent.gas_limit))
        return Submitted(entry(intent))

    def withdraw(self, prepared: Prepared, why: str) -> None:
        self.calls.append(("withdraw", why))


def entry(intent: TxIntent) -> Any:
    return SimpleNamespace(tx_hash="0x" + "ab" * 32, nonce=7, max_fee_wei=2, payload={})


def sign_ahead_run(
    simulated: Callable[[PlannedTx, int], PlannedTx | KeeperError],
    lifecycle: RecordingLifecycle,
    guess: bool = True,
) -> set[str]:
    """One vault's book through ``_book`` with the real sign-ahead: the simulation answers
    after a pause with ``simulated(tx, the limit the guess gives)``."""
    t = trade(1, -WAD)
    actor = RebalanceActor(None, config(), None, None, lifecycle, None)  # type: ignore[arg-type]
    if guess:
        actor.gas_guess.learn("settle", 1, GasFound(200_000, "measured"))
    leg = SettleLeg(t.vault, Trade(True, t.amount_in, 1, t.state.state_nonce, 0), 1)
    s = Settlement((leg,), NetNeed(True, 0, 0), 0, {t.vault: 1}, {t.vault: 5})
    plan = BookPlan((s,), (), {}, None, 0)
    planned_once: list[int] = []

    async def plan_(block: Any, groups: Any, gas: int) -> Any:
        if planned_once:  # a retry after a failed simulation: nothing left to plan
            return []
        planned_once.append(1)
        return [(groups[0], (plan, [PlannedTx(s, None, plan)]))]

    async def simulate(tx: PlannedTx) -> PlannedTx | KeeperError:
        await asyncio.sleep(0.01)  # on the node
        return simulated(tx, actor._limit_at_guess(tx) or 0)

    actor._plan = plan_  # type: ignore[method-assign]
    actor._simulate = simulate  # type: ignore[method-assign]
    sends = _BlockSends(BlockRef(1, "0xb", "0xa", 0), {})
    asyncio.run(actor._book(sends, [t], 0, set()))
    return sends.sent


def test_a_settlement_signed_while_it_simulates_is_sent_as_signed() -> None:
    life = RecordingLifecycle()
    sent = sign_ahead_run(lambda tx, limit: replace(tx, gas_limit=limit), life)
    limit = 200_000 * 11_000 // 10_000 * 12_000 // 10_000  # the guess's margin, the headroom
    assert life.calls == [("prepare", limit), ("send_prepared", limit)]
    assert sent == {trade(1, -WAD).vault}


def test_a_settlement_signed_ahead_is_withdrawn_when_its_simulation_fails() -> None:
    life = RecordingLifecycle()
    sent = sign_ahead_run(lambda tx, limit: SimulationReverted("DeadlineExpired()"), life)
    assert [c[0] for c in life.calls] == ["prepare", "withdraw"]
    assert "its simulation failed" in life.calls[1][1] and sent == set()


def test_a_settlement_simulated_at_another_limit_is_signed_again_at_it() -> None:
    life = RecordingLifecycle()
    sent = sign_ahead_run(lambda tx, limit: replace(tx, gas_limit=limit + 1), life)
    (_, ahead), withdrawn, again = life.calls
    assert withdrawn == ("withdraw", "its simulation gave another gas limit")
    assert again == ("submit", ahead + 1) and len(sent) == 1


def test_without_a_gas_guess_nothing_is_signed_before_the_simulation_answers() -> None:
    life = RecordingLifecycle()
    sent = sign_ahead_run(lambda tx, limit: replace(tx, gas_limit=90_000), life, guess=False)
    assert life.calls == [("submit", 90_000)] and len(sent) == 1


def test_a_settlement_refused_when_signed_ahead_is_not_sent_after_its_simulation() -> None:
    life = RecordingLifecycle(refuse=True)
    sent = sign_ahead_run(lambda tx, limit: replace(tx, gas_limit=limit), life)
    assert [c[0] for c in life.calls] == ["prepare"] and sent == set()


def test_a_settlement_signed_ahead_is_withdrawn_when_its_simulation_raises() -> None:
    """A simulation that raises (a bug, or shutdown) leaves nothing signed behind."""
    life = RecordingLifecycle()

    def broken(tx: PlannedTx, limit: int) -> PlannedTx:
        raise RuntimeError("a bug in the simulation")

    with pytest.raises(RuntimeError):
        sign_ahead_run(broken, life)
    assert life.calls[0][0] == "prepare"
    assert life.calls[1] == ("withdraw", "the block's work stopped first")
