"""Only the owner governs, the guardian only pauses, only keepers trade, ownership moves in two
steps (a typo never loses governance)."""

from __future__ import annotations

from typing import Any

import ape
import pytest
from contract_helpers import WAD, World, trade

LEG = (3000 * 10**8, 2**39, -WAD, True)


def governance_call(name: str, world: World, vault: Any, who: Any) -> None:
    """Call owner-only function ``name`` with valid arguments, as ``who``."""
    args: dict[str, tuple[Any, ...]] = {
        "writeOption": (LEG,),
        "removeOption": (0,),
        "setParams": (tuple(vault.params()),),
        "proposeGuards": (tuple(vault.guards()),),
        "applyGuards": (),
        "cancelGuards": (),
        "setKeeper": (who, True),
        "setRouter": (who, True),
        "setSettlement": (who, True),
        "setGuardian": (who,),
        "requestRebalance": (),
        "unpause": (),
        "transferOwnership": (who,),
        "deposit": (world.usdc, 1),
        "withdraw": (world.usdc, who, 1),
    }
    getattr(vault, name)(*args[name], sender=who)


OWNER_FUNCTIONS = (
    "writeOption",
    "removeOption",
    "setParams",
    "proposeGuards",
    "applyGuards",
    "cancelGuards",
    "setKeeper",
    "setRouter",
    "setSettlement",
    "setGuardian",
    "requestRebalance",
    "unpause",
    "transferOwnership",
    "deposit",
    "withdraw",
)


@pytest.mark.parametrize("name", OWNER_FUNCTIONS)
def test_only_the_owner_governs(
    name: str, world: World, vault: Any, stranger: Any, keeper: Any, guardian: Any
) -> None:
    for who in (stranger, keeper, guardian):
        with ape.reverts(vault.OwnableUnauthorizedAccount, account=who.address):
            governance_call(name, world, vault, who)


def test_guardian_can_pause_and_nothing_else(
    world: World, vault: Any, guardian: Any, stranger: Any, deployer: Any, keeper: Any
) -> None:
    with ape.reverts(vault.NotGuardian, caller=stranger.address):
        vault.pause(sender=stranger)
    with ape.reverts(vault.NotGuardian, caller=keeper.address):
        vault.pause(sender=keeper)
    receipt = vault.pause(sender=guardian)
    assert [(e.by, e.paused) for e in receipt.decode_logs(vault.PauseChanged)] == [
        (guardian.address, True)
    ]
    assert vault.paused() and vault.getState().paused
    with ape.reverts(vault.EnforcedPause):
        vault.rebalance(trade(vault, True, WAD), world.router, b"", sender=keeper)
    with ape.reverts(vault.OwnableUnauthorizedAccount, account=guardian.address):
        vault.unpause(sender=guardian)
    vault.unpause(sender=deployer)
    assert not vault.paused()


def test_stranger_cannot_trade(world: World, vault: Any, stranger: Any) -> None:
    with ape.reverts(vault.NotKeeper, caller=stranger.address):
        vault.rebalance(trade(vault, True, WAD), world.router, b"", sender=stranger)
    with ape.reverts(vault.NotSettlement, caller=stranger.address):
        vault.settle(trade(vault, True, WAD), stranger, b"", sender=stranger)


def test_removed_keeper_cannot_rebalance(
    world: World, vault: Any, keeper: Any, deployer: Any
) -> None:
    receipt = vault.setKeeper(keeper, False, sender=deployer)
    assert [(e.who, e.allowed) for e in receipt.decode_logs(vault.KeeperSet)] == [
        (keeper.address, False)
    ]
    with ape.reverts(vault.NotKeeper, caller=keeper.address):
        vault.rebalance(trade(vault, True, WAD), world.router, b"", sender=keeper)


def test_one_step_ownership_typo_keeps_the_owner(
    world: World, vault: Any, deployer: Any, stranger: Any
) -> None:
    """Attack: governance mistypes the new owner's address. With Ownable2Step the typo only
    becomes the pending owner; the old owner keeps every power and can correct it."""
    typo = "0x000000000000000000000000000000000000dEaD"
    receipt = vault.transferOwnership(typo, sender=deployer)
    started = receipt.decode_logs(vault.OwnershipTransferStarted)
    assert [(e.previousOwner, e.newOwner) for e in started] == [(deployer.address, typo)]
    assert vault.owner() == deployer.address
    assert vault.pendingOwner() == typo
    vault.pause(sender=deployer)  # still governs
    vault.unpause(sender=deployer)
    with ape.reverts(vault.OwnableUnauthorizedAccount, account=stranger.address):
        vault.acceptOwnership(sender=stranger)
    # Corrected: the right address accepts and only then owns the vault.
    vault.transferOwnership(stranger, sender=deployer)
    vault.acceptOwnership(sender=stranger)
    assert vault.owner() == stranger.address
    with ape.reverts(vault.OwnableUnauthorizedAccount, account=deployer.address):
        vault.unpause(sender=deployer)


def test_registry_and_settlement_are_owned_in_two_steps(
    world: World, stranger: Any, deployer: Any, vault: Any
) -> None:
    for contract in (world.registry, world.settlement):
        contract.transferOwnership(stranger, sender=deployer)
        assert contract.owner() == deployer.address
    with ape.reverts(world.registry.OwnableUnauthorizedAccount, account=stranger.address):
        world.registry.addVault(stranger, sender=stranger)
    with ape.reverts(world.registry.OwnableUnauthorizedAccount, account=stranger.address):
        world.registry.removeVault(vault, sender=stranger)
    with ape.reverts(world.settlement.OwnableUnauthorizedAccount, account=stranger.address):
        world.settlement.setRouter(stranger, True, sender=stranger)


def test_stranger_cannot_drive_the_feed(world: World, stranger: Any) -> None:
    with ape.reverts(world.feed.NotOwner, caller=stranger.address):
        world.feed.setAnswer(1, sender=stranger)


def test_every_governance_event_has_indexed_fields(vault: Any) -> None:
    """Issue #8: every change emits an event with indexed fields."""
    events = {e.name: e for e in vault.contract_type.events}
    for name in (
        "ParamsUpdated",
        "GuardsProposed",
        "GuardsApplied",
        "GuardsCancelled",
        "OptionWritten",
        "OptionRemoved",
        "KeeperSet",
        "RouterSet",
        "SettlementSet",
        "GuardianSet",
        "Deposited",
        "Withdrawn",
        "RebalanceRequested",
        "PauseChanged",
        "OwnershipTransferStarted",
        "OwnershipTransferred",
        "Traded",
    ):
        assert any(i.indexed for i in events[name].inputs), name


def test_renouncing_ownership_cannot_strand_the_vault(
    world: World, vault: Any, deployer: Any
) -> None:
    """Careless governance: OZ Ownable's renounceOwnership() would set the owner to zero in one
    call, and with it every withdrawal, unpause and guard change (the funds and a paused vault
    stranded for ever). The vault refuses it; governance keeps every power."""
    with ape.reverts(vault.InvalidParams, field="renounceOwnership"):
        vault.renounceOwnership(sender=deployer)
    assert vault.owner() == deployer.address
    vault.withdraw(world.usdc, deployer, 1, sender=deployer)
