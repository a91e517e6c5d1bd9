"""Only governance governs, only keepers rebalance, only operators batch."""

from __future__ import annotations

from typing import Any

import ape
import pytest
from contract_helpers import WAD, World, deadline

LEG = (3000 * 10**8, 2**40, -WAD, True)


def params_of(vault: Any) -> tuple[Any, ...]:
    return tuple(vault.params())


def governance_call(name: str, world: World, vault: Any, who: Any) -> None:
    """Call governance function ``name`` with valid arguments, as ``who``."""
    args: dict[str, tuple[Any, ...]] = {
        "writeOption": (LEG,),
        "removeOption": (0,),
        "setParams": (params_of(vault),),
        "setKeeper": (who, True),
        "setRouter": (who, True),
        "requestRebalance": (),
        "pause": (),
        "unpause": (),
        "transferGovernance": (who,),
        "deposit": (world.usdc, 1),
        "withdraw": (world.usdc, who, 1),
    }
    getattr(vault, name)(*args[name], sender=who)


GOVERNANCE_FUNCTIONS = (
    "writeOption",
    "removeOption",
    "setParams",
    "setKeeper",
    "setRouter",
    "requestRebalance",
    "pause",
    "unpause",
    "transferGovernance",
    "deposit",
    "withdraw",
)


@pytest.mark.parametrize("name", GOVERNANCE_FUNCTIONS)
def test_stranger_cannot_govern_vault(
    name: str, world: World, vault: Any, stranger: Any, keeper: Any
) -> None:
    for who in (stranger, keeper):
        with ape.reverts(vault.NotGovernance, caller=who.address):
            governance_call(name, world, vault, who)


def test_stranger_cannot_rebalance(world: World, vault: Any, stranger: Any) -> None:
    with ape.reverts(vault.NotKeeper, caller=stranger.address):
        vault.rebalance(True, WAD, 0, world.router, b"", deadline(), sender=stranger)


def test_stranger_cannot_use_or_configure_batcher(
    world: World, vault: Any, stranger: Any, deployer: Any
) -> None:
    leg = (vault, True, WAD, 0, world.router, b"")
    with ape.reverts(world.batcher.NotOperator, caller=stranger.address):
        world.batcher.execute([leg], deadline(), sender=stranger)
    with ape.reverts(world.batcher.NotOwner, caller=stranger.address):
        world.batcher.setOperator(stranger, True, sender=stranger)
    with ape.reverts(world.batcher.NotOwner, caller=stranger.address):
        world.batcher.transferOwnership(stranger, sender=stranger)
    # The owner can make the stranger an operator, and then the stranger can batch.
    world.batcher.setOperator(stranger, True, sender=deployer)
    assert world.batcher.isOperator(stranger)


def test_stranger_cannot_change_registry(world: World, stranger: Any, vault: Any) -> None:
    with ape.reverts(world.registry.NotGovernance, caller=stranger.address):
        world.registry.addVault(stranger, sender=stranger)
    with ape.reverts(world.registry.NotGovernance, caller=stranger.address):
        world.registry.removeVault(vault, sender=stranger)
    with ape.reverts(world.registry.NotGovernance, caller=stranger.address):
        world.registry.transferGovernance(stranger, sender=stranger)


def test_stranger_cannot_drive_the_feed(world: World, stranger: Any) -> None:
    with ape.reverts(world.feed.NotOwner, caller=stranger.address):
        world.feed.setAnswer(1, sender=stranger)


def test_transfer_governance_moves_every_power(
    world: World, vault: Any, deployer: Any, stranger: Any
) -> None:
    receipt = vault.transferGovernance(stranger, sender=deployer)
    assert vault.governance() == stranger.address
    events = receipt.decode_logs(vault.GovernanceTransferred)
    assert [(e.previous, e.next) for e in events] == [(deployer.address, stranger.address)]
    with ape.reverts(vault.NotGovernance, caller=deployer.address):
        vault.pause(sender=deployer)
    vault.pause(sender=stranger)
    assert vault.paused()
