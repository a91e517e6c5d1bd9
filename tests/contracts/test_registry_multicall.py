"""VaultRegistry bookkeeping and Multicall3 batching."""

from __future__ import annotations

from typing import Any

import ape
from contract_helpers import World
from eth_abi.abi import decode


def test_registry_lists_the_world_vaults(world: World) -> None:
    assert list(world.registry.vaults()) == [v.address for v in world.vaults.values()]
    assert world.registry.version() == 3
    assert world.registry.owner() == world.manifest.governance
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
    failing = (vaults[0], True, bytes.fromhex("deadbeef"))  # no such function
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
    with ape.reverts("Multicall3: call failed"):  # the canonical deployment's revert string
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
    assert m.getCurrentBlockGasLimit() > 0
    assert m.getCurrentBlockCoinbase().startswith("0x")
    assert m.getCurrentBlockDifficulty() >= 0


# The canonical Multicall3 ABI (github.com/mds1/multicall, Multicall3.sol): every function the
# keeper may call on the canonical deployment exists here with the same selector.
CANONICAL = (
    "aggregate((address,bytes)[])",
    "aggregate3((address,bool,bytes)[])",
    "aggregate3Value((address,bool,uint256,bytes)[])",
    "blockAndAggregate((address,bytes)[])",
    "getBasefee()",
    "getBlockHash(uint256)",
    "getBlockNumber()",
    "getChainId()",
    "getCurrentBlockCoinbase()",
    "getCurrentBlockDifficulty()",
    "getCurrentBlockGasLimit()",
    "getCurrentBlockTimestamp()",
    "getEthBalance(address)",
    "getLastBlockHash()",
    "tryAggregate(bool,(address,bytes)[])",
    "tryBlockAndAggregate(bool,(address,bytes)[])",
)


def test_multicall_has_the_canonical_abi(world: World) -> None:
    ours = {
        f"{a.name}({','.join(_type(i) for i in a.inputs)})"
        for a in world.multicall.contract_type.abi
        if a.type == "function"
    }
    assert ours == set(CANONICAL)


def _type(param: Any) -> str:
    if param.type.startswith("tuple"):
        inner = ",".join(_type(c) for c in param.components)
        return f"({inner}){param.type[len('tuple') :]}"
    return str(param.type)


def test_aggregate_variants(world: World) -> None:
    m = world.multicall
    vault = next(iter(world.vaults.values()))
    ok = (vault, bytes(vault.bookLength.encode_input()))
    bad = (vault, bytes(vault.book.encode_input())[:2])  # no such selector
    block_number, data = m.aggregate.call([ok])
    assert block_number == ape.chain.blocks.head.number and len(data) == 1
    results = m.tryAggregate.call(False, [ok, bad])
    assert [r.success for r in results] == [True, False]
    with ape.reverts("Multicall3: call failed"):
        m.tryAggregate.call(True, [ok, bad])
    number, _, results = m.tryBlockAndAggregate.call(False, [ok])
    assert number == ape.chain.blocks.head.number and results[0][0]
    results = m.aggregate3Value.call([(vault, True, 0, ok[1])])
    assert results[0][0]
    with ape.reverts("Multicall3: value mismatch"):
        m.aggregate3Value.call([(vault, True, 0, ok[1])], value=1)
