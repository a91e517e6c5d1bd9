"""VaultRegistry bookkeeping and Multicall3 batching."""

from __future__ import annotations

from typing import Any

import ape
from contract_helpers import World
from eth_abi.abi import decode


def test_registry_lists_the_world_vaults(world: World) -> None:
    assert list(world.registry.vaults()) == [v.address for v in world.vaults.values()]
    assert world.registry.version() == 3
    assert all(world.registry.isRegistered(v) for v in world.vaults.values())


def test_add_and_remove_emit_events_and_bump_version(
    world: World, deployer: Any, stranger: Any
) -> None:
    registry = world.registry
    first, middle, last = world.vaults.values()
    receipt = registry.addVault(stranger, sender=deployer)
    assert [e.vault for e in receipt.decode_logs(registry.VaultAdded)] == [stranger.address]
    assert registry.version() == 4
    assert registry.isRegistered(stranger)

    receipt = registry.removeVault(middle, sender=deployer)
    assert [e.vault for e in receipt.decode_logs(registry.VaultRemoved)] == [middle.address]
    assert registry.version() == 5
    assert not registry.isRegistered(middle)
    assert list(registry.vaults()) == [first.address, stranger.address, last.address]

    registry.removeVault(last, sender=deployer)  # removing the tail
    assert list(registry.vaults()) == [first.address, stranger.address]

    with ape.reverts(registry.AlreadyRegistered, vault=first.address):
        registry.addVault(first, sender=deployer)
    with ape.reverts(registry.NotRegistered, vault=middle.address):
        registry.removeVault(middle, sender=deployer)
    assert registry.version() == 6


def test_aggregate3_reads_every_vault_in_one_call(world: World) -> None:
    vaults = list(world.vaults.values())
    get_state = [(v, False, bytes(v.getState.encode_input())) for v in vaults]
    failing = (vaults[0], True, bytes(vaults[0].option.encode_input(99)))
    block_number = (world.multicall, False, bytes(world.multicall.getBlockNumber.encode_input()))
    results = world.multicall.aggregate3.call([*get_state, failing, block_number])
    assert [r.success for r in results] == [True, True, True, False, True]
    for vault, result in zip(vaults, results[:3], strict=True):
        quote_balance, underlying_balance = decode(
            ["uint256", "uint256"], bytes(result.returnData)[32:96]
        )
        assert quote_balance == world.usdc.balanceOf(vault)
        assert underlying_balance == world.weth.balanceOf(vault)
    assert decode(["uint256"], bytes(results[4].returnData))[0] == ape.chain.blocks.head.number
    with ape.reverts(world.multicall.CallFailed):
        world.multicall.aggregate3.call([(failing[0], False, failing[2])])


def test_multicall_helpers(world: World, deployer: Any) -> None:
    head = ape.chain.blocks.head
    m = world.multicall
    assert m.getBlockNumber() == head.number
    assert m.getCurrentBlockTimestamp() >= head.timestamp
    assert m.getEthBalance(deployer) == deployer.balance
    assert bytes(m.getBlockHash(head.number - 1)) == bytes(ape.chain.blocks[head.number - 1].hash)
    assert m.getBasefee() >= 0
    assert m.getChainId() == ape.chain.chain_id
