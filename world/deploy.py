"""Deploy the world onto whatever network Ape is connected to.

Tokens and a price feed, the real Uniswap V3 factory/router/quoter/position manager with two
deep WETH/USDC pools at the oracle price, the registry, the netted settlement (BookSettlement),
Multicall3 and the vaults of ``world.books``, each funded so that it starts hedged, with the
keeper, the settlement, the SwapRouter and a guardian set, and guards sized from its value.
Ends with a check that the quoter and the router really trade against the pools, then writes
the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from ape import chain, project
from ape.contracts import ContractContainer
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from world import uniswap
from world.books import DEFAULT_VAULTS, ParamsSpec, VaultPlan, VaultSpec, plan_vault
from world.manifest import (
    CONTRACT_NAMES,
    Deployed,
    DeployedVault,
    Manifest,
    manifest_path,
    write_manifest,
)

WAD = 10**18
USDC_UNIT = 10**6
MAX_UINT256 = 2**256 - 1
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


class WorldCheckError(RuntimeError):
    """The deployed world failed its own post-deployment check."""


@dataclass(frozen=True)
class WorldConfig:
    """Knobs of the world; the defaults are what `ape run deploy` deploys."""

    eth_price_usd: Decimal = Decimal(3000)
    oracle_decimals: int = 8
    pool_fees: tuple[int, ...] = (500, 3000)
    liquidity_weth_per_pool: int = 1500  # whole WETH; USDC is added to match at the price
    liquidity_range_ratio: float = 1.5  # position spans price / ratio .. price * ratio
    vaults: tuple[VaultSpec, ...] = DEFAULT_VAULTS
    params: ParamsSpec = field(default_factory=ParamsSpec)

    @property
    def answer(self) -> int:
        """The initial oracle answer, in oracle decimals."""
        return int(self.eth_price_usd * 10**self.oracle_decimals)


def address_of(who: Any) -> str:
    """Checksummed address of an Ape account, contract or plain address string."""
    return to_checksum_address(getattr(who, "address", who))


def codehash(address: str) -> str:
    """keccak256 of the runtime code at ``address`` (0x-prefixed hex)."""
    code = chain.provider.get_code(address)
    if len(code) == 0:
        raise WorldCheckError(f"no code at {address}")
    return "0x" + keccak(bytes(code)).hex()


def uniswap_contract(name: str) -> ContractContainer:
    return ContractContainer(uniswap.contract_type(name))


def uniswap_at(name: str, address: str) -> Any:
    """An Ape contract instance of a Uniswap contract at ``address``."""
    return uniswap_contract(name).at(address)


def _deadline() -> int:
    return int(chain.blocks.head.timestamp) + 3600


@dataclass
class _Deployment:
    """Contracts as they are deployed, in manifest order."""

    contracts: dict[str, Any] = field(default_factory=dict)
    vaults: list[tuple[str, Any]] = field(default_factory=list)


def deploy_world(
    deployer: Any,
    governance: Any = None,
    keeper: Any = None,
    *,
    guardian: Any = None,
    config: WorldConfig | None = None,
    name: str = "world",
    path: Path | None = None,
) -> Manifest:
    """Deploy everything, check it, write the manifest (to ``path`` or ``manifest_path(name)``).

    The deployer configures everything, then starts the two-step hand-over of the vaults, the
    registry and the settlement to ``governance`` (default: the deployer), which accepts it when
    it is a local account. The price feed stays owned by the deployer. ``keeper`` (default: the
    deployer) is a keeper of every vault; ``guardian`` (default: governance) may pause them.
    """
    config = config or WorldConfig()
    governance_address = address_of(governance if governance is not None else deployer)
    keeper_address = address_of(keeper if keeper is not None else deployer)
    guardian_address = address_of(guardian) if guardian is not None else governance_address
    d = _Deployment()

    _deploy_tokens_and_feed(d, deployer, config)
    _deploy_uniswap(d, deployer)
    _create_pools(d, deployer, config)
    _deploy_infrastructure(d, deployer)
    _deploy_vaults(d, deployer, keeper_address, guardian_address, config)
    _hand_over(d, deployer, governance)
    _check_uniswap(d, deployer)

    head = chain.blocks.head
    manifest = Manifest(
        chain_id=int(chain.chain_id),
        block_number=int(head.number),
        block_hash=_hex(head.hash),
        deployer=address_of(deployer),
        governance=governance_address,
        keeper=keeper_address,
        contracts={
            key: Deployed(address=address_of(c), codehash=codehash(address_of(c)))
            for key, c in sorted(d.contracts.items(), key=lambda kv: _manifest_rank(kv[0]))
        },
        vaults=tuple(
            DeployedVault(name=vname, address=address_of(v), codehash=codehash(address_of(v)))
            for vname, v in d.vaults
        ),
    )
    write_manifest(manifest, path if path is not None else manifest_path(name))
    return manifest


def _manifest_rank(key: str) -> int:
    """Manifest order of docs/interfaces.md; anything extra goes last."""
    return CONTRACT_NAMES.index(key) if key in CONTRACT_NAMES else len(CONTRACT_NAMES)


def _hex(value: Any) -> str:
    raw = bytes(value)
    return "0x" + raw.hex()


def _deploy_tokens_and_feed(d: _Deployment, deployer: Any, config: WorldConfig) -> None:
    d.contracts["WETH"] = deployer.deploy(project.WETH9)
    d.contracts["USDC"] = deployer.deploy(project.TestERC20, "USD Coin", "USDC", 6)
    d.contracts["PriceFeed"] = deployer.deploy(
        project.MockV3Aggregator, config.oracle_decimals, config.answer, "ETH / USD"
    )


def _deploy_uniswap(d: _Deployment, deployer: Any) -> None:
    weth = address_of(d.contracts["WETH"])
    factory = deployer.deploy(uniswap_contract("UniswapV3Factory"))
    d.contracts["UniswapV3Factory"] = factory
    d.contracts["SwapRouter"] = deployer.deploy(uniswap_contract("SwapRouter"), factory, weth)
    d.contracts["QuoterV2"] = deployer.deploy(uniswap_contract("QuoterV2"), factory, weth)
    # The token descriptor is only used by tokenURI, which the world never calls.
    d.contracts["NonfungiblePositionManager"] = deployer.deploy(
        uniswap_contract("NonfungiblePositionManager"), factory, weth, ZERO_ADDRESS
    )


def token_order(weth: str, usdc: str) -> tuple[str, str, bool]:
    """(token0, token1, weth_is_token0): Uniswap sorts pool tokens by address."""
    weth_first = int(weth, 16) < int(usdc, 16)
    return (weth, usdc, True) if weth_first else (usdc, weth, False)


def _create_pools(d: _Deployment, deployer: Any, config: WorldConfig) -> None:
    """Create and initialize one pool per fee at the oracle price; add deep liquidity."""
    weth, usdc = d.contracts["WETH"], d.contracts["USDC"]
    npm = d.contracts["NonfungiblePositionManager"]
    factory = d.contracts["UniswapV3Factory"]
    token0, token1, weth_is_token0 = token_order(address_of(weth), address_of(usdc))
    sqrt_price = uniswap.sqrt_price_x96(config.answer, config.oracle_decimals, weth_is_token0)

    weth_per_pool = config.liquidity_weth_per_pool * WAD
    # USDC for a position centred on the price is about its WETH value; mint twice that.
    usdc_per_pool = int(config.liquidity_weth_per_pool * config.eth_price_usd) * USDC_UNIT * 2
    weth.deposit(value=weth_per_pool * len(config.pool_fees), sender=deployer)
    usdc.mint(deployer, usdc_per_pool * len(config.pool_fees), sender=deployer)
    weth.approve(npm, MAX_UINT256, sender=deployer)
    usdc.approve(npm, MAX_UINT256, sender=deployer)

    width = uniswap.ticks_for_ratio(config.liquidity_range_ratio)
    for fee in config.pool_fees:
        npm.createAndInitializePoolIfNecessary(token0, token1, fee, sqrt_price, sender=deployer)
        pool = uniswap_at("UniswapV3Pool", factory.getPool(token0, token1, fee))
        lower, upper = uniswap.tick_range(int(pool.slot0().tick), width, fee)
        amount0, amount1 = (
            (weth_per_pool, usdc_per_pool) if weth_is_token0 else (usdc_per_pool, weth_per_pool)
        )
        npm.mint(
            (token0, token1, fee, lower, upper, amount0, amount1, 0, 0, deployer, _deadline()),
            sender=deployer,
        )
        d.contracts[f"PoolFee{fee}"] = pool
    weth.approve(npm, 0, sender=deployer)
    usdc.approve(npm, 0, sender=deployer)


def _deploy_infrastructure(d: _Deployment, deployer: Any) -> None:
    d.contracts["Multicall3"] = deployer.deploy(project.Multicall3)
    d.contracts["VaultRegistry"] = deployer.deploy(project.VaultRegistry, deployer)
    settlement = deployer.deploy(project.BookSettlement, deployer, d.contracts["VaultRegistry"])
    settlement.setRouter(d.contracts["SwapRouter"], True, sender=deployer)
    d.contracts["BookSettlement"] = settlement


def plan_vaults(config: WorldConfig, now: int) -> list[VaultPlan]:
    """The vault plans at the configured oracle price and time ``now``."""
    spot = float(config.eth_price_usd)
    return [
        plan_vault(spec, spot, now, config.oracle_decimals, config.params) for spec in config.vaults
    ]


def _deploy_vaults(
    d: _Deployment, deployer: Any, keeper: str, guardian: str, config: WorldConfig
) -> None:
    weth, usdc = d.contracts["WETH"], d.contracts["USDC"]
    registry, settlement = d.contracts["VaultRegistry"], d.contracts["BookSettlement"]
    router = d.contracts["SwapRouter"]
    plans = plan_vaults(config, int(chain.blocks.head.timestamp))
    weth.deposit(value=sum(p.weth for p in plans), sender=deployer)
    usdc.mint(deployer, sum(p.usdc for p in plans), sender=deployer)
    for plan in plans:
        vault = deployer.deploy(
            project.OptionsVault,
            deployer,
            usdc,
            weth,
            d.contracts["PriceFeed"],
            plan.params,
            plan.guards,
            plan.ceilings,
            config.params.guard_delay,
        )
        for leg in plan.legs:
            vault.writeOption(leg, sender=deployer)
        vault.setKeeper(keeper, True, sender=deployer)
        vault.setRouter(router, True, sender=deployer)
        vault.setSettlement(settlement, True, sender=deployer)
        vault.setGuardian(guardian, sender=deployer)
        weth.transfer(vault, plan.weth, sender=deployer)
        usdc.transfer(vault, plan.usdc, sender=deployer)
        registry.addVault(vault, sender=deployer)
        d.vaults.append((plan.name, vault))


def _hand_over(d: _Deployment, deployer: Any, governance: Any) -> None:
    """Two-step ownership (Ownable2Step): the deployer proposes, governance accepts when it is
    an account this session can sign for; otherwise it accepts later, on its own."""
    if governance is None or address_of(governance) == address_of(deployer):
        return
    owned = [vault for _, vault in d.vaults]
    owned += [d.contracts["VaultRegistry"], d.contracts["BookSettlement"]]
    for contract in owned:
        contract.transferOwnership(governance, sender=deployer)
    if hasattr(governance, "call"):  # an Ape account
        for contract in owned:
            contract.acceptOwnership(sender=governance)


def _check_uniswap(d: _Deployment, deployer: Any) -> None:
    """Quote and simulate a 1 WETH sell on every pool; both must pay out USDC.

    A pool the periphery cannot find (init code hash mismatch) makes both revert.
    """
    weth, usdc = d.contracts["WETH"], d.contracts["USDC"]
    quoter, router = d.contracts["QuoterV2"], d.contracts["SwapRouter"]
    one = WAD
    weth.deposit(value=one, sender=deployer)
    weth.approve(router, one, sender=deployer)
    for key, pool in d.contracts.items():
        if not key.startswith("PoolFee"):
            continue
        fee = int(pool.fee())
        quoted = quoter.quoteExactInputSingle.call((weth, usdc, one, fee, 0))
        amount_out = int(quoted[0])
        params = (weth, usdc, fee, deployer, _deadline(), one, 0, 0)
        simulated = int(router.exactInputSingle.call(params, sender=deployer))
        if amount_out <= 0 or simulated != amount_out:
            raise WorldCheckError(f"{key}: quoter says {amount_out}, router simulates {simulated}")
    weth.approve(router, 0, sender=deployer)
