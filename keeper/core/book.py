"""The book of one block: net every vault's trade, route only the net (pure, integers).

From the block's sized trades (:func:`keeper.core.planner.size_trade`):

1. :func:`net_need`: the vaults selling the underlying and those buying it are matched at the
   oracle price; only the difference (the *net*) goes to the DEX, as one swap;
2. the chain side quotes the net's direction at the sizes :func:`sample_sizes` asks for (and a
   small size the other way) in one Multicall3 call: a :class:`Depth`;
3. :func:`plan_book`: the settlements to send. If one swap of the whole net would price past
   the tightest oracle bound of the vaults on the net side, the net side is scaled to the
   largest sampled size that stays inside (the rest waits for later blocks: :class:`Split`).
   Payouts: matched buyers receive exactly the underlying they asked for, paying its oracle
   value (rounded up); the net side shares the quote (or underlying) of the matched side and
   the net swap's minimum output pro rata. Every leg is checked as its vault will check it
   (oracle bound, loss bucket, notional, direction) and against its own DEX trade: a vault
   whose netted price would be worse than the best its own swap could get
   (:meth:`DexCurve.upper_bound`) is left out of the book and trades on its own. The first
   buyer of the underlying also takes the net swap's positive slippage on chain, so it is the
   largest buyer whose direction rule admits that (:func:`first_buyer_problem`). More than
   ``max_legs`` legs go in several settlements.

Why the bound holds: along a Uniswap V3 swap the price only moves against the trader
(whitepaper, section 6.2), so the average price of a swap falls with its size; the average at
a sampled size no larger than a vault's own trade is therefore at least that trade's average.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from keeper.core.planner import (
    BPS,
    TradeSpec,
    direction_ok,
    notional_usable,
    quote_to_underlying,
    underlying_to_quote,
)
from keeper.core.swap import oracle_bound_min_out
from keeper.core.types import SettleLeg, Trade, VaultState

MAX_LEGS = 64  # ISettlement.MAX_LEGS (nesting depth under the 63/64 gas rule)
SAMPLES = 5  # the net quoted at net, net/2, net/4, net/8, net/16 (and small sizes)


@dataclass(frozen=True)
class NetNeed:
    """What the book must swap on the DEX: ``amount_in`` of the underlying
    (``sell_underlying``) or of the quote token. ``amount_in == 0``: the book matches."""

    sell_underlying: bool
    amount_in: int
    matched_underlying: int  # underlying traded vault to vault at the oracle price


@dataclass(frozen=True)
class DexCurve:
    """The best direct route's output at sampled input sizes, one direction."""

    sell_underlying: bool
    points: tuple[tuple[int, int], ...]  # (amount_in, amount_out), amount_in ascending

    def out_at(self, amount_in: int) -> int | None:
        """The quoted output at exactly ``amount_in``, if that size was sampled."""
        return next((o for a, o in self.points if a == amount_in), None)

    def upper_bound(self, amount_in: int) -> int:
        """At least what a swap of ``amount_in`` alone would return: its size times the
        average price of the largest sample not above it (the smallest sample if none is)."""
        below = [(a, o) for a, o in self.points if 0 < a <= amount_in]
        a, o = below[-1] if below else self.points[0]
        return amount_in * o // a

    def lower_bound(self, amount_in: int) -> int:
        """At most what a swap of ``amount_in`` returns: the average price of the smallest
        sample not below it (0 if the size was never sampled that large)."""
        above = [(a, o) for a, o in self.points if a >= amount_in]
        if not above:
            return 0
        a, o = above[0]
        return amount_in * o // a


@dataclass(frozen=True)
class Depth:
    """Both directions' curves from one multicall quote."""

    sell: DexCurve  # selling the underlying for the quote
    buy: DexCurve  # selling the quote for the underlying

    def curve(self, sell_underlying: bool) -> DexCurve:
        return self.sell if sell_underlying else self.buy


@dataclass(frozen=True)
class Split:
    """The net is larger than one swap can take inside the bound: this block swaps part."""

    net_wanted: int
    net_now: int  # 0: no net fits inside the bound this block, only the matched part trades
    blocks: int  # blocks it takes at this size (0 with net_now 0)
    bound_bps: int  # the tightest max slippage on the net side

    def as_json(self) -> dict[str, int]:
        return {
            "net_wanted": self.net_wanted,
            "net_now": self.net_now,
            "blocks": self.blocks,
            "bound_bps": self.bound_bps,
        }


@dataclass(frozen=True)
class Settlement:
    """One ``ISettlement.settle(legs, net)`` (or, with one leg, one direct ``rebalance``)."""

    legs: tuple[SettleLeg, ...]
    net: NetNeed
    net_min_out: int  # the net swap's minimum output (from the keeper's own direct quote)
    state_nonces: dict[str, int] = field(default_factory=dict)
    oracle_rounds: dict[str, int] = field(default_factory=dict)

    @property
    def vaults(self) -> tuple[str, ...]:
        return tuple(leg.vault for leg in self.legs)

    def journal_legs(self) -> list[dict[str, object]]:
        """``payload["legs"]`` as docs/interfaces.md specifies it."""
        return [
            {
                "vault": leg.vault,
                "sell_underlying": leg.trade.sell_underlying,
                "amount_in": leg.trade.amount_in,
                "min_out": leg.trade.min_out,
                "payout": leg.payout,
                "state_nonce": leg.trade.expected_state_nonce,
                "oracle_round": self.oracle_rounds[leg.vault],
            }
            for leg in self.legs
        ]


@dataclass(frozen=True)
class BookPlan:
    settlements: tuple[Settlement, ...]
    solo: tuple[TradeSpec, ...]  # left out of the book: each trades on its own
    excluded: dict[str, str]  # vault -> why it is not in the book
    split: Split | None
    matched_underlying: int


# --- the net --------------------------------------------------------------------------------


def net_need(trades: Sequence[TradeSpec], cost_bps: int) -> NetNeed:
    """The net of the book: sellers' underlying minus buyers' (sold as underlying), or the
    quote that buys the buyers' excess (at the oracle price, grossed up by ``cost_bps``)."""
    sold = sum(t.underlying for t in trades if t.sell_underlying)
    bought = sum(t.underlying for t in trades if not t.sell_underlying)
    matched = min(sold, bought)
    if sold >= bought:
        return NetNeed(True, sold - bought, matched)
    ref = _reference(trades)
    gross = underlying_to_quote(bought - sold, ref) * BPS // (BPS - cost_bps)
    return NetNeed(False, gross, matched)


def sample_sizes(trades: Sequence[TradeSpec], need: NetNeed) -> dict[bool, list[int]]:
    """The sizes to quote, by direction (``True``: selling the underlying). The net's side:
    the net and its halvings, and half the smallest trade on that side; the other side: its
    largest trade and halvings, and half its smallest (so every vault's own trade is at least
    as large as some sample: the bound in :meth:`DexCurve.upper_bound` is then exact)."""
    sizes: dict[bool, set[int]] = {True: set(), False: set()}
    ref = _reference(trades)
    for side in (True, False):
        amounts = [
            t.underlying if side else underlying_to_quote(t.underlying, ref)
            for t in trades
            if t.sell_underlying == side
        ]
        if not amounts:
            continue
        top = need.amount_in if side == need.sell_underlying else max(amounts)
        sizes[side] |= {top >> k for k in range(SAMPLES)} | {min(amounts) // 2}
    return {side: sorted(a for a in s if a > 0) for side, s in sizes.items()}


def chunk_nets(trades: Sequence[TradeSpec], max_legs: int, cost_bps: int) -> list[NetNeed]:
    """The nets the settlements of a book of more than ``max_legs`` trades swap when the pool
    takes the whole book (its chunks as :func:`plan_book` makes them). Quoted with the
    samples, each settlement's swap has its exact quote without a second round."""
    if len(trades) <= max_legs:
        return []
    nets = (net_need(chunk, cost_bps) for chunk in _chunks(list(trades), max_legs))
    return [n for n in nets if n.amount_in]


def _reference(trades: Sequence[TradeSpec]) -> VaultState:
    return trades[0].state


def same_book(a: VaultState, b: VaultState) -> bool:
    """Vaults that can be netted together: the same oracle round and the same decimals."""
    return (a.oracle.answer, a.oracle.decimals, a.quote_decimals, a.underlying_decimals) == (
        b.oracle.answer,
        b.oracle.decimals,
        b.quote_decimals,
        b.underlying_decimals,
    )


def books(trades: Sequence[TradeSpec]) -> list[list[TradeSpec]]:
    """The trades grouped into books that can be netted together."""
    groups: list[list[TradeSpec]] = []
    for t in trades:
        home = next((g for g in groups if same_book(g[0].state, t.state)), None)
        if home is None:
            groups.append([t])
        else:
            home.append(t)
    return groups


# --- the plan -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BookConfig:
    cost_bps: int  # expected DEX fee and slippage (sizing of a buying net)
    net_slippage_bps: int  # the net's minimum output below the keeper's own direct quote
    deadline: int
    max_legs: int = MAX_LEGS


def plan_book(trades: Sequence[TradeSpec], depth: Depth, cfg: BookConfig) -> BookPlan:
    """The settlements of one book (trades of one pair, one oracle round), given the depth
    quoted for it (:func:`sample_sizes`). A vault whose leg would fail a check is left out
    (``excluded``, with why) and the rest is planned again; the caller plans each excluded
    vault as a book of its own, with its own quote."""
    excluded: dict[str, str] = {}
    current = list(trades)
    while current:
        planned = _plan_once(current, depth, cfg)
        if isinstance(planned, dict):
            excluded |= planned
            current = [t for t in current if t.vault not in planned]
            continue
        settlements, split, matched = planned
        solo = tuple(t for t in trades if t.vault in excluded)
        return BookPlan(settlements, solo, excluded, split, matched)
    return BookPlan((), tuple(trades), excluded, None, 0)


def _plan_once(
    trades: list[TradeSpec], depth: Depth, cfg: BookConfig
) -> tuple[tuple[Settlement, ...], Split | None, int] | dict[str, str]:
    need = net_need(trades, cfg.cost_bps)
    fitted, split = _fit_to_depth(trades, need, depth, cfg)
    if not fitted:
        return {t.vault: "no part of its trade fits inside the oracle bound" for t in trades}
    trades = fitted
    need = net_need(trades, cfg.cost_bps)
    chunks = _chunks(trades, cfg.max_legs)
    settlements: list[Settlement] = []
    refused: dict[str, str] = {}
    done = 0
    for chunk in chunks:
        chunk_need = net_need(chunk, cfg.cost_bps)
        same_way = chunk_need.sell_underlying == need.sell_underlying
        quoted = _net_quoted(chunk_need, depth, done if same_way else 0)
        min_out = quoted * (BPS - cfg.net_slippage_bps) // BPS
        if same_way:
            done += chunk_need.amount_in
        if chunk_need.amount_in and min_out <= 0:
            refused |= {t.vault: "no quote covers this settlement's net" for t in chunk}
            continue
        legs = _legs(chunk, chunk_need, min_out, cfg.deadline)
        refused |= _check_legs(chunk, legs, depth, cfg.net_slippage_bps)
        leftover = 0 if chunk_need.sell_underlying else quoted - min_out
        chunk, legs = _first_buyer_with_room(chunk, legs, leftover)
        why = first_buyer_problem(chunk[0], legs[0], leftover)
        if why and chunk[0].vault not in refused:
            refused[chunk[0].vault] = why
        settlements.append(
            Settlement(
                tuple(legs),
                chunk_need,
                min_out,
                {t.vault: t.state.state_nonce for t in chunk},
                {t.vault: t.state.oracle.round_id for t in chunk},
            )
        )
    if refused:
        return refused
    return tuple(settlements), split, need.matched_underlying


def _net_quoted(need: NetNeed, depth: Depth, before: int) -> int:
    """The net swap's quoted output: at its exact size or, for a later settlement in the same
    direction, a lower bound of its segment of the curve. Its minimum output is this less the
    net slippage tolerance."""
    if need.amount_in == 0:
        return 0
    curve = depth.curve(need.sell_underlying)
    if before == 0:
        return curve.out_at(need.amount_in) or curve.lower_bound(need.amount_in)
    return max(curve.lower_bound(before + need.amount_in) - curve.upper_bound(before), 0)


def _first_buyer_with_room(
    chunk: list[TradeSpec], legs: list[SettleLeg], leftover: int
) -> tuple[list[TradeSpec], list[SettleLeg]]:
    """The chunk with the buyer best placed to take the net swap's leftover first.

    ``BookSettlement._pay`` gives the first leg buying the underlying everything left of it:
    its payout plus the net output above ``net_min_out`` (``leftover`` with the pool as
    quoted). That vault still checks its direction rule on what it received, so a small buyer
    there would overshoot and revert the whole settlement. The largest buyer whose rule admits
    the leftover goes first (the largest buyer if none does). ``leftover`` 0: unchanged."""
    if leftover == 0:
        return chunk, legs
    pairs = list(zip(chunk, legs, strict=True))
    buyers = sorted((p for p in pairs if not p[0].sell_underlying), key=lambda p: -p[1].payout)
    if not buyers:
        return chunk, legs
    fits = [p for p in buyers if not first_buyer_problem(p[0], p[1], leftover)]
    first = fits[0] if fits else buyers[0]
    ordered = [first] + [p for p in pairs if p is not first]
    return [t for t, _ in ordered], [leg for _, leg in ordered]


def first_buyer_problem(t: TradeSpec, leg: SettleLeg, leftover: int) -> str:
    """Why the first buyer's vault would refuse its payout plus ``leftover`` ('' if not)."""
    if leftover == 0 or leg.trade.sell_underlying:
        return ""
    if not direction_ok(t.deviation_wad, leg.payout + leftover, t.state):
        return f"as first buyer it would receive {leftover} past its payout: overshoot rule"
    return ""


def _fit_to_depth(
    trades: list[TradeSpec], need: NetNeed, depth: Depth, cfg: BookConfig
) -> tuple[list[TradeSpec], Split | None]:
    """Scale the net side down to the largest sampled net the tightest bound admits."""
    if need.amount_in == 0:
        return trades, None
    net_side = [t for t in trades if t.sell_underlying == need.sell_underlying]
    bps = min(t.state.guards.max_slippage_bps for t in net_side)
    ref = _reference(trades)
    curve = depth.curve(need.sell_underlying)

    def inside(amount: int, out: int) -> bool:
        min_out = out * (BPS - cfg.net_slippage_bps) // BPS
        bound = oracle_bound_min_out(
            need.sell_underlying,
            amount,
            ref.oracle.answer,
            ref.oracle.decimals,
            bps,
            ref.underlying_decimals,
            ref.quote_decimals,
        )
        return min_out >= bound

    full = curve.out_at(need.amount_in) or curve.lower_bound(need.amount_in)
    if full > 0 and inside(need.amount_in, full):
        return trades, None
    fits = [a for a, o in curve.points if a < need.amount_in and inside(a, o)]
    now = fits[-1] if fits else 0
    split = Split(need.amount_in, now, -(-need.amount_in // now) if now else 0, bps)
    total = sum(t.underlying for t in net_side)
    keep = need.matched_underlying + (total - need.matched_underlying) * now // need.amount_in
    scaled = []
    for t in trades:
        if t.sell_underlying != need.sell_underlying:
            scaled.append(t)
            continue
        underlying = t.underlying * keep // total
        if underlying > 0:
            amount_in = underlying if t.sell_underlying else t.amount_in * keep // total
            note = f"net split over {split.blocks} blocks"
            scaled.append(replace(t, underlying=underlying, amount_in=amount_in, note=note))
    return scaled, split


def _chunks(trades: list[TradeSpec], max_legs: int) -> list[list[TradeSpec]]:
    """At most ``max_legs`` trades each, sellers and buyers interleaved by size so that each
    settlement nets as much as it can on its own (a vault appears once: one state nonce)."""
    if len(trades) <= max_legs:
        return [trades]
    sells = sorted((t for t in trades if t.sell_underlying), key=lambda t: -t.underlying)
    buys = sorted((t for t in trades if not t.sell_underlying), key=lambda t: -t.underlying)
    count = -(-len(trades) // max_legs)
    chunks: list[list[TradeSpec]] = [[] for _ in range(count)]
    flows = [0] * count  # each chunk's underlying sold - bought so far
    for side in (sells, buys):
        for t in side:  # largest first, each to the open chunk furthest from matching its way
            way = 1 if t.sell_underlying else -1
            # how much the chunk already leans t's way (a chunk short of t's side first)
            j = min(range(count), key=lambda k: (len(chunks[k]) >= max_legs, way * flows[k]))
            chunks[j].append(t)
            flows[j] += way * t.underlying
    return [c for c in chunks if c]


def _legs(
    chunk: list[TradeSpec], need: NetNeed, net_min_out: int, deadline: int
) -> list[SettleLeg]:
    """Each vault's trade and payout (see the module docstring for the rules)."""
    ref = _reference(chunk)
    sells = [t for t in chunk if t.sell_underlying]
    buys = [t for t in chunk if not t.sell_underlying]
    given: dict[str, int] = {}
    payout: dict[str, int] = {}
    if need.sell_underlying:  # buyers matched in full at the oracle, sellers share the rest
        for t in buys:
            given[t.vault] = _quote_for(t.underlying, ref)
            payout[t.vault] = t.underlying
        pot = sum(given[t.vault] for t in buys) + net_min_out
        total = sum(t.underlying for t in sells)
        for t in sells:
            given[t.vault] = t.underlying
            payout[t.vault] = pot * t.underlying // total
    else:  # sellers matched in full at the oracle, buyers share the rest
        for t in sells:
            given[t.vault] = t.underlying
            payout[t.vault] = underlying_to_quote(t.underlying, ref)
        pay = sum(payout[t.vault] for t in sells) + need.amount_in
        pot = sum(t.underlying for t in sells) + net_min_out
        total = sum(t.underlying for t in buys)
        for t in buys:
            given[t.vault] = -(-pay * t.underlying // total)
            payout[t.vault] = pot * t.underlying // total
    return [
        SettleLeg(
            t.vault,
            Trade(
                sell_underlying=t.sell_underlying,
                amount_in=given[t.vault],
                min_out=payout[t.vault],
                expected_state_nonce=t.state.state_nonce,
                deadline=deadline,
            ),
            payout[t.vault],
        )
        for t in chunk
    ]


def _quote_for(underlying: int, state: VaultState) -> int:
    """Quote worth ``underlying`` at the oracle, rounded up (the buyer pays the rounding)."""
    q = underlying_to_quote(underlying, state)
    return q if quote_to_underlying(q, state) >= underlying else q + 1


def _check_legs(
    chunk: list[TradeSpec], legs: list[SettleLeg], depth: Depth, tolerance_bps: int
) -> dict[str, str]:
    """vault -> why its leg would fail (on chain, or against its own DEX trade)."""
    refused = {}
    for t, leg in zip(chunk, legs, strict=True):
        why = leg_problem(t, leg, depth, tolerance_bps)
        if why:
            refused[t.vault] = why
    return refused


def leg_problem(t: TradeSpec, leg: SettleLeg, depth: Depth, tolerance_bps: int) -> str:
    """Why the vault would refuse ``leg`` or be worse off than alone ('' if neither). Alone,
    it would sign its own quote less the same ``tolerance_bps``."""
    s, tr = t.state, leg.trade
    if tr.amount_in <= 0 or leg.payout <= 0:
        return "nothing to trade"
    given_value = underlying_to_quote(tr.amount_in, s) if tr.sell_underlying else tr.amount_in
    got_value = leg.payout if tr.sell_underlying else underlying_to_quote(leg.payout, s)
    bound = oracle_bound_min_out(
        tr.sell_underlying,
        tr.amount_in,
        s.oracle.answer,
        s.oracle.decimals,
        s.guards.max_slippage_bps,
        s.underlying_decimals,
        s.quote_decimals,
    )
    balance = s.underlying_balance if tr.sell_underlying else s.quote_balance
    moved = -tr.amount_in if tr.sell_underlying else leg.payout
    alone = depth.curve(tr.sell_underlying).upper_bound(tr.amount_in)
    checks = (
        (tr.amount_in > balance, f"gives {tr.amount_in}, holds {balance}"),
        (leg.payout < bound, f"payout {leg.payout} below its oracle bound {bound}"),
        (given_value > s.guards.max_trade_notional, "above maxTradeNotional"),
        (given_value > notional_usable(s, t.corrective), "above the notional bucket"),
        (given_value - got_value > s.loss_available, "loss above the loss bucket"),
        (not direction_ok(t.deviation_wad, moved, s), "direction or overshoot rule"),
        (
            leg.payout < alone * (BPS - tolerance_bps) // BPS,
            "its own DEX trade could be better",
        ),
    )
    return next((why for bad, why in checks if bad), "")
