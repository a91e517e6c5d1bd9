"""The deployed world matches its manifest, starts hedged, and can be dumped for anvil."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import ape
import pytest
from contract_helpers import ORACLE, PRICE, USDC, WAD, World, vault_value
from eth_utils.crypto import keccak
from web3 import Web3

from world import uniswap
from world.blackscholes import Leg, book_delta
from world.books import DEFAULT_VAULTS
from world.deploy import WorldConfig, deploy_world, token_order
from world.dump import dump_anvil_state
from world.manifest import CONTRACT_NAMES, load_manifest
from world.node import free_port, running_anvil


def test_manifest_file_round_trips(world: World) -> None:
    assert load_manifest(world.manifest_file) == world.manifest
    data = json.loads(world.manifest_file.read_text())
    assert list(data["contracts"]) == list(CONTRACT_NAMES)
    assert "BookSettlement" in data["contracts"] and "RebalanceBatcher" not in data["contracts"]
    assert [v["name"] for v in data["vaults"]] == ["short-calls", "short-puts", "short-straddle"]


def test_manifest_matches_the_chain(world: World, deployer: Any, keeper: Any) -> None:
    m = world.manifest
    assert m.chain_id == ape.chain.chain_id
    assert "0x" + bytes(ape.chain.blocks[m.block_number].hash).hex() == m.block_hash
    assert (m.deployer, m.governance, m.keeper) == (
        deployer.address,
        deployer.address,
        keeper.address,
    )
    deployed = [*m.contracts.values(), *m.vaults]
    for item in deployed:
        code = bytes(ape.chain.provider.get_code(item.address))
        assert code, item
        assert "0x" + keccak(code).hex() == item.codehash
    assert len({item.address for item in deployed}) == len(deployed)
    assert list(world.registry.vaults()) == [v.address for v in m.vaults]


def test_permissions_are_wired(world: World, keeper: Any, deployer: Any, guardian: Any) -> None:
    assert world.settlement.owner() == deployer.address
    assert world.settlement.isRouter(world.router)
    for vault in world.vaults.values():
        assert vault.owner() == world.manifest.governance
        assert vault.guardian() == guardian.address
        assert vault.isKeeper(keeper) and not vault.isKeeper(world.settlement)
        assert vault.isSettlement(world.settlement)
        assert vault.isRouter(world.router)
        assert not vault.isRouter(world.quoter)
        assert vault.guardDelay() == 3600


def test_guards_are_fractions_of_vault_value(world: World) -> None:
    for name, vault in world.vaults.items():
        value = vault_value(world, vault)
        g = vault.guards()
        assert g.notionalCap == pytest.approx(value * 0.25, rel=1e-6), name
        assert g.maxTradeNotional == pytest.approx(value * 0.10, rel=1e-6), name
        assert g.lossBudget == pytest.approx(value * 0.0015, rel=1e-6), name
        assert (g.maxSlippageBps, g.windowSeconds, g.oracleHeartbeat) == (100, 3600, 3600)
        assert (g.correctiveReserveBps, g.maxOvershootWad) == (2000, WAD // 2)
        assert vault.notionalCapCeiling() == 4 * g.notionalCap
        print(f"\n{name}: value {value / USDC:,.0f} USDC, cap {g.notionalCap / USDC:,.0f}/h")


def test_pools_are_at_the_oracle_price_and_quote(world: World) -> None:
    _, _, weth_is_token0 = token_order(world.weth.address, world.usdc.address)
    for pool, fee in ((world.pool500, 500), (world.pool3000, 3000)):
        assert pool.fee() == fee
        assert world.factory.getPool(world.weth, world.usdc, fee) == pool.address
        price = uniswap.price_from_sqrt_x96(int(pool.slot0().sqrtPriceX96), weth_is_token0)
        assert price == pytest.approx(PRICE, rel=1e-9)
        assert pool.liquidity() > 0
        out = world.quoter.quoteExactInputSingle.call((world.weth, world.usdc, 10 * WAD, fee, 0))
        # 10 WETH moves a deep pool by far less than the 1% the vaults allow, fee included.
        assert 10 * PRICE * 10**6 * 0.99 < out[0] < 10 * PRICE * 10**6
    init_code = uniswap.artifact("UniswapV3Pool")["bytecode"]
    assert "0x" + keccak(hexstr=init_code).hex() == uniswap.POOL_INIT_CODE_HASH


def test_every_vault_starts_hedged(world: World) -> None:
    now = int(ape.chain.blocks[world.manifest.block_number].timestamp)
    for vault in world.vaults.values():
        state = vault.getState()
        assert state.oracle.answer == PRICE * ORACLE
        book = [
            Leg(leg.strike / ORACLE, int(leg.expiry), leg.size / WAD, bool(leg.isCall))
            for leg in state.book
        ]
        option_delta = book_delta(book, PRICE, now, 0.8, 0.05)
        net = option_delta + state.underlyingBalance / WAD
        target = state.params.targetDeltaWad / WAD
        # Hedged within a hundredth of the floor of the band (the clock moved a few seconds).
        assert abs(net - target) < 0.001, vault.address
        assert abs(vault.deviationWad()) < WAD // 1000  # and so says the vault itself
        assert state.underlyingBalance > 0


def test_dump_loads_into_a_fresh_anvil(world: World, tmp_path: Path) -> None:
    path = dump_anvil_state(ape.chain.provider, tmp_path / "state.json")
    assert path.stat().st_size < 20_000_000
    port = free_port()
    with running_anvil(path, port):
        w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{port}"))
        vault = world.vaults["short-straddle"]
        assert (
            "0x" + keccak(w3.eth.get_code(vault.address)).hex()
            == world.manifest.vault("short-straddle").codehash
        )
        block = w3.eth.get_block(world.manifest.block_number)
        assert "0x" + bytes(block["hash"]).hex() == world.manifest.block_hash
        contract = w3.eth.contract(
            address=vault.address,
            abi=[a.model_dump(mode="json", by_alias=True) for a in vault.contract_type.abi],
        )
        assert contract.functions.getState().call()[1] == world.weth.balanceOf(vault)


def test_world_with_separate_governance_hands_everything_over(
    deployer: Any, keeper: Any, stranger: Any, project: Any, tmp_path: Path
) -> None:
    config = WorldConfig(
        eth_price_usd=Decimal(2500),
        liquidity_weth_per_pool=20,
        vaults=(DEFAULT_VAULTS[0],),
    )
    manifest = deploy_world(deployer, stranger, keeper, config=config, path=tmp_path / "w.json")
    assert load_manifest(tmp_path / "w.json") == manifest
    assert manifest.governance == stranger.address
    vault = project.OptionsVault.at(manifest.vault("short-calls").address)
    registry = project.VaultRegistry.at(manifest.contracts["VaultRegistry"].address)
    settlement = project.BookSettlement.at(manifest.contracts["BookSettlement"].address)
    assert vault.owner() == registry.owner() == settlement.owner() == stranger.address
    assert vault.guardian() == stranger.address  # the default guardian is governance
    assert vault.getState().oracle.answer == 2500 * ORACLE
    strike = vault.getState().book[0].strike
    assert strike % (50 * ORACLE) == 0 and abs(strike - 2625 * ORACLE) <= 25 * ORACLE
    with ape.reverts(vault.OwnableUnauthorizedAccount, account=deployer.address):
        vault.unpause(sender=deployer)
    vault.pause(sender=stranger)
