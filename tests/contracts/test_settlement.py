"""BookSettlement on the world's three vaults and the real Uniswap V3 pools: netting, the net
swap, whole-settlement refusal, and the attacks that go through a settlement."""

from __future__ import annotations

from typing import Any

import ape
import pytest
from contract_helpers import (
    WAD,
    World,
    deadline,
    error_data,
    exact_input_single,
    oracle_bound,
    oracle_value,
    refresh_oracle,
    set_deviation,
    trade,
)
from web3.exceptions import ContractCustomError

NO_NET = (ape.utils.ZERO_ADDRESS, False, 0, 0, b"")
TX_GAS = 8_000_000


@pytest.fixture
def vaults(world: World, deployer: Any) -> tuple[Any, Any, Any]:
    """calls must sell 3 WETH, puts buy 3 WETH, straddle sell 2 WETH (deviations set by
    moving their targets), with a fresh oracle round."""
    calls, puts, straddle = (
        world.vaults[n] for n in ("short-calls", "short-puts", "short-straddle")
    )
    set_deviation(calls, deployer, 3 * WAD)
    set_deviation(puts, deployer, -3 * WAD)
    set_deviation(straddle, deployer, 2 * WAD)
    refresh_oracle(world, deployer)
    return calls, puts, straddle


def quote_sell(world: World, amount: int, fee: int = 500) -> int:
    return int(world.quoter.quoteExactInputSingle.call((world.weth, world.usdc, amount, fee, 0))[0])


def net_sell(world: World, amount: int, min_out: int, fee: int = 500) -> tuple[Any, ...]:
    data = exact_input_single(world, world.weth, world.usdc, fee, world.settlement, amount)
    return (world.router, True, amount, min_out, data)


def balances(world: World, *holders: Any) -> list[tuple[int, int]]:
    return [(int(world.weth.balanceOf(h)), int(world.usdc.balanceOf(h))) for h in holders]


def opposite_plan(world: World, calls: Any, puts: Any, straddle: Any) -> tuple[list[Any], Any, int]:
    """calls sells 2 WETH and puts buys 2 WETH for 6000 USDC (matched at the oracle price);
    straddle sells 1 WETH, the net, through the 0.05% pool. The straddle's payout is one unit
    below the quote, so the settlement has a leftover for the first leg paid in USDC."""
    quoted = quote_sell(world, WAD)
    legs = [
        (calls, trade(calls, True, 2 * WAD), oracle_value(2 * WAD)),
        (puts, trade(puts, False, oracle_value(2 * WAD)), 2 * WAD),
        (straddle, trade(straddle, True, WAD), quoted - 1),
    ]
    return legs, net_sell(world, WAD, quoted), quoted


def test_netted_settlement_swaps_only_the_net_and_pays_every_vault_its_bound_or_better(
    world: World, vaults: tuple[Any, Any, Any], keeper: Any
) -> None:
    calls, puts, straddle = vaults
    legs, net, quoted = opposite_plan(world, calls, puts, straddle)
    before = balances(world, calls, puts, straddle, world.pool500, world.pool3000)

    receipt = world.settlement.settle(legs, net, sender=keeper)

    after = balances(world, calls, puts, straddle, world.pool500, world.pool3000)
    delta = [(a[0] - b[0], a[1] - b[1]) for a, b in zip(after, before, strict=True)]
    six_k = oracle_value(2 * WAD)
    assert delta[0] == (-2 * WAD, six_k + 1)  # matched at the oracle, plus the leftover unit
    assert delta[1] == (2 * WAD, -six_k)  # matched at the oracle: no fee, no slippage
    assert delta[2] == (-WAD, quoted - 1)  # the net side: the pool's price
    assert delta[3] == (WAD, -quoted)  # the pool saw only the net
    assert delta[4] == (0, 0)
    assert balances(world, world.settlement) == [(0, 0)]  # holds nothing afterwards
    assert six_k + 1 >= oracle_bound(2 * WAD) and quoted - 1 >= oracle_bound(WAD)
    traded = {e.contract_address: e for e in receipt.decode_logs(calls.Traded)}
    assert {(e.keeper, e.via) for e in traded.values()} == {
        (keeper.address, world.settlement.address)
    }
    assert int(traded[calls.address].loss) == int(traded[puts.address].loss) == 0
    assert int(traded[straddle.address].loss) == oracle_value(WAD) - (quoted - 1)
    (settled,) = receipt.decode_logs(world.settlement.Settled)
    assert (settled.legs, settled.netIn, settled.netOut) == (3, WAD, quoted)
    paid = [(e.index, e.vault, e.payout) for e in receipt.decode_logs(world.settlement.LegSettled)]
    assert sorted(paid) == [
        (0, calls.address, six_k + 1),
        (1, puts.address, 2 * WAD),
        (2, straddle.address, quoted - 1),
    ]
    print(f"\ngas: 3-vault netted settlement (one net swap) = {receipt.gas_used}")


def test_exactly_matched_trades_touch_no_pool(
    world: World, vaults: tuple[Any, Any, Any], keeper: Any
) -> None:
    calls, puts, _ = vaults
    legs = [
        (calls, trade(calls, True, 2 * WAD), oracle_value(2 * WAD)),
        (puts, trade(puts, False, oracle_value(2 * WAD)), 2 * WAD),
    ]
    pools = balances(world, world.pool500, world.pool3000)
    receipt = world.settlement.settle(legs, NO_NET, sender=keeper)
    assert balances(world, world.pool500, world.pool3000) == pools
    assert balances(world, world.settlement) == [(0, 0)]
    print(f"\ngas: 2-vault exactly matched settlement (no swap) = {receipt.gas_used}")


def test_same_direction_trades_share_one_swap(
    world: World, vaults: tuple[Any, Any, Any], keeper: Any
) -> None:
    calls, _, straddle = vaults
    quoted = quote_sell(world, 3 * WAD)
    # Pro rata (2 : 1) of the quote; the rounding unit is the leftover for leg 0.
    legs = [
        (calls, trade(calls, True, 2 * WAD), quoted * 2 // 3),
        (straddle, trade(straddle, True, WAD), quoted // 3),
    ]
    before = balances(world, calls, straddle)
    world.settlement.settle(legs, net_sell(world, 3 * WAD, quoted), sender=keeper)
    after = balances(world, calls, straddle)
    assert after[0][1] - before[0][1] == quoted - quoted // 3
    assert after[1][1] - before[1][1] == quoted // 3
    assert balances(world, world.settlement) == [(0, 0)]


def test_one_refusing_vault_reverts_the_whole_settlement_and_moves_no_funds(
    world: World, vaults: tuple[Any, Any, Any], keeper: Any
) -> None:
    """The puts vault asks (minOut) for more WETH than the plan gives it: it refuses, in its
    own code, and the whole settlement reverts (the other legs' payouts were planned with its
    USDC in them). Nobody's funds or nonces move."""
    calls, puts, straddle = vaults
    legs, net, _ = opposite_plan(world, calls, puts, straddle)
    legs[1] = (puts, trade(puts, False, oracle_value(2 * WAD), 2 * WAD + 1), 2 * WAD)
    holders = (calls, puts, straddle, world.pool500, world.settlement)
    before = balances(world, *holders)
    nonces = [int(v.stateNonce()) for v in vaults]
    with ape.reverts(puts.InsufficientOutput, received=2 * WAD, required=2 * WAD + 1):
        world.settlement.settle(legs, net, sender=keeper)
    assert balances(world, *holders) == before
    assert [int(v.stateNonce()) for v in vaults] == nonces


def test_revoked_keeper_cannot_trade_through_the_settlement(
    world: World, vaults: tuple[Any, Any, Any], keeper: Any, deployer: Any, stranger: Any
) -> None:
    """Attack (v1): a key revoked on every vault still traded them through the batcher. Each
    vault refuses, in its own settle, a settlement caller that is not its keeper."""
    calls, puts, straddle = vaults
    legs, net, _ = opposite_plan(world, calls, puts, straddle)
    puts.setKeeper(keeper, False, sender=deployer)  # revoked on one vault only
    legs[1] = (puts, trade(puts, False, oracle_value(2 * WAD)), 2 * WAD)
    with ape.reverts(puts.NotKeeper, caller=keeper.address):
        world.settlement.settle(legs, net, sender=keeper)
    for vault in (calls, straddle):
        vault.setKeeper(keeper, False, sender=deployer)
    with ape.reverts(calls.NotKeeper, caller=keeper.address):
        world.settlement.settle(legs, net, sender=keeper)
    # Around the settlement: a vault takes part only through a settlement its governance
    # allowlisted, on behalf of one of its own keepers.
    with ape.reverts(calls.NotSettlement, caller=stranger.address):
        calls.settle(trade(calls, True, WAD), keeper, b"", sender=stranger)


def test_settlement_the_vault_did_not_allowlist_is_refused(
    world: World, vaults: tuple[Any, Any, Any], keeper: Any, stranger: Any, project: Any
) -> None:
    calls, puts, straddle = vaults
    rogue = stranger.deploy(project.BookSettlement, stranger, world.registry)
    legs, _, _ = opposite_plan(world, calls, puts, straddle)
    with ape.reverts(calls.NotSettlement, caller=rogue.address):
        rogue.settle(legs[:2], NO_NET, sender=keeper)


def test_stale_batch_after_the_state_moved_reverts(
    world: World, vaults: tuple[Any, Any, Any], keeper: Any
) -> None:
    """Attack: a settlement signed before a crash is broadcast after one of its vaults traded
    on its own. Its nonce moved, so the whole settlement reverts (v1: vaults ended 0.7 / 0.64 /
    1.4 WETH off target)."""
    calls, puts, straddle = vaults
    legs, net, _ = opposite_plan(world, calls, puts, straddle)
    data = exact_input_single(world, world.weth, world.usdc, 500, straddle, WAD)
    straddle.rebalance(trade(straddle, True, WAD), world.router, data, sender=keeper)
    nonce = int(straddle.stateNonce())
    with ape.reverts(straddle.StaleState, expected=nonce - 1, actual=nonce):
        world.settlement.settle(legs, net, sender=keeper)
    # ... and a settlement that mined is refused when broadcast again.
    legs, net, _ = opposite_plan(world, calls, puts, straddle)
    world.settlement.settle(legs, net, sender=keeper)
    with ape.reverts(calls.StaleState):
        world.settlement.settle(legs, net, sender=keeper)


def test_fake_vault_cannot_take_what_others_gave(
    world: World, vaults: tuple[Any, Any, Any], keeper: Any, deployer: Any, project: Any
) -> None:
    """Attack: a contract posing as a vault (anyone is its keeper) joins a settlement to be
    paid without paying. Only the registry's vaults take part; and even one that governance
    registered by mistake cannot be paid what it did not give, nor call back out of turn."""
    calls = vaults[0]
    fake = deployer.deploy(project.FakeVault, world.usdc, world.weth, False)
    legs = [
        (calls, trade(calls, True, 2 * WAD), oracle_value(2 * WAD)),
        (fake, (False, oracle_value(2 * WAD), 0, 0, deadline()), 2 * WAD),
    ]
    with ape.reverts(world.settlement.NotRegistered, vault=fake.address):
        world.settlement.settle(legs, NO_NET, sender=keeper)
    world.registry.addVault(fake, sender=deployer)  # governance's mistake
    with ape.reverts(
        world.settlement.Unbalanced, token=world.usdc.address, owed=oracle_value(2 * WAD), held=0
    ):
        world.settlement.settle(legs, NO_NET, sender=keeper)
    twice = deployer.deploy(project.FakeVault, world.usdc, world.weth, True)
    world.registry.addVault(twice, sender=deployer)
    legs[1] = (twice, legs[1][1], 0)
    with ape.reverts(world.settlement.UnexpectedCallback, caller=twice.address):
        world.settlement.settle(legs, NO_NET, sender=keeper)
    with ape.reverts(world.settlement.UnexpectedCallback, caller=keeper.address):
        world.settlement.onSettle(b"", sender=keeper)


def test_malformed_settlements_are_refused(
    world: World, vaults: tuple[Any, Any, Any], keeper: Any, deployer: Any, project: Any
) -> None:
    calls = vaults[0]
    with ape.reverts(world.settlement.NoLegs):
        world.settlement.settle([], NO_NET, sender=keeper)
    leg = (calls, trade(calls, True, WAD), oracle_value(WAD))
    with ape.reverts(world.settlement.TooManyLegs, legs=65, max=64):
        world.settlement.settle([leg] * 65, NO_NET, sender=keeper)
    unlisted = (world.quoter, True, WAD, 0, b"")
    with ape.reverts(world.settlement.RouterNotAllowed, router=world.quoter.address):
        world.settlement.settle([leg], unlisted, sender=keeper)
    other_quote = deployer.deploy(project.TestERC20, "Other USD", "OUSD", 6)
    other = deployer.deploy(
        project.OptionsVault,
        deployer,
        other_quote,
        world.weth,
        world.feed,
        tuple(calls.params()),
        tuple(calls.guards()),
        (calls.notionalCapCeiling(), calls.maxTradeNotionalCeiling(), calls.lossBudgetCeiling()),
        3600,
    )
    other.setKeeper(keeper, True, sender=deployer)
    with ape.reverts(world.settlement.NotRegistered, vault=other.address):
        world.settlement.settle([leg, (other, trade(other, True, WAD), 0)], NO_NET, sender=keeper)
    world.registry.addVault(other, sender=deployer)
    with ape.reverts(world.settlement.MixedTokens, vault=other.address):
        world.settlement.settle([leg, (other, trade(other, True, WAD), 0)], NO_NET, sender=keeper)


def test_gas_burning_and_revert_bomb_net_swaps_cost_at_most_the_cap(
    world: World, vaults: tuple[Any, Any, Any], keeper: Any, deployer: Any, project: Any
) -> None:
    """Attack: the net swap's route burns all gas or reverts with 300 kB. The settlement
    reverts as a whole (NetSwapFailed, reason cut to 256 bytes) at a bounded cost."""
    calls, _, straddle = vaults
    hostile = deployer.deploy(project.HostileRouter)
    world.settlement.setRouter(hostile, True, sender=deployer)
    legs = [
        (calls, trade(calls, True, 2 * WAD), oracle_bound(2 * WAD)),
        (straddle, trade(straddle, True, WAD), oracle_bound(WAD)),
    ]
    cap = int(world.settlement.SWAP_GAS_LIMIT())
    for data, reason in (
        (bytes(hostile.burn.encode_input()), b""),
        (bytes(hostile.bomb.encode_input(300_000)), b"\x00" * 256),
    ):
        net = (hostile, True, 3 * WAD, 0, data)
        with ape.reverts(world.settlement.NetSwapFailed, reason=reason):
            world.settlement.settle(legs, net, sender=keeper, gas=TX_GAS)
        calldata = bytes(world.settlement.settle.encode_input(legs, net))
        w3 = ape.chain.provider.web3
        tx = w3.eth.send_transaction(
            {
                "from": keeper.address,
                "to": world.settlement.address,
                "data": calldata,
                "gas": TX_GAS,
            }
        )
        mined = w3.eth.wait_for_transaction_receipt(tx)
        assert mined["status"] == 0
        print(f"\ngas: settlement with a hostile net route = {mined['gasUsed']} (cap {cap})")
        assert mined["gasUsed"] < cap + 400_000


def test_reverted_vault_error_reaches_the_keeper(
    world: World, vaults: tuple[Any, Any, Any], keeper: Any
) -> None:
    """The keeper simulates first: the refusing vault's own custom error comes back whole, so
    it knows which vault to re-plan without."""
    calls, puts, straddle = vaults
    legs, net, _ = opposite_plan(world, calls, puts, straddle)
    legs[1] = (puts, trade(puts, False, oracle_value(2 * WAD), 2 * WAD + 1), 2 * WAD)
    expected = error_data(
        "InsufficientOutput(uint256,uint256)", ["uint256", "uint256"], [2 * WAD, 2 * WAD + 1]
    )
    calldata = bytes(world.settlement.settle.encode_input(legs, net))
    with pytest.raises(ContractCustomError) as info:
        ape.chain.provider.web3.eth.call(
            {"from": keeper.address, "to": world.settlement.address, "data": calldata}
        )
    assert info.value.data == "0x" + expected.hex()


def test_a_fake_leg_cannot_collect_the_leftover_a_real_vault_gave_up(
    world: World, vaults: tuple[Any, Any, Any], keeper: Any, deployer: Any, project: Any
) -> None:
    """Audit finding: a compromised keeper lists a FakeVault as leg 0 "selling" 1 wei, so that
    it is the first leg paid in USDC and takes everything left after the real vault is paid its
    oracle bound (up to the vault's loss budget per window, straight to the keeper: no pool, no
    market risk). The settlement takes only the registry's vaults, so the plan is refused."""
    calls = vaults[0]
    fake = deployer.deploy(project.FakeVault, world.usdc, world.weth, False)
    amount = 2 * WAD
    quoted = quote_sell(world, amount)
    legs = [
        (fake, (True, 1, 0, 0, deadline()), 0),
        (calls, trade(calls, True, amount), oracle_bound(amount)),
    ]
    before = int(world.usdc.balanceOf(fake))
    with ape.reverts(world.settlement.NotRegistered, vault=fake.address):
        world.settlement.settle(legs, net_sell(world, amount, quoted), sender=keeper)
    assert int(world.usdc.balanceOf(fake)) == before
