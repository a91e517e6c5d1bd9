"""`ape run deploy`: deploy the world and write its manifest.

On a local network the deployer and governance are test account 0, the keeper is test
account 1 and the guardian (who may only pause) test account 3 (anvil's default mnemonic).
Elsewhere the deployer is the Ape account alias in $OPTKEEPER_DEPLOYER (also governance,
keeper and guardian). $OPTKEEPER_MANIFEST overrides where the
manifest goes; $OPTKEEPER_WORLD_DUMP=path also writes anvil's state there, for
`anvil --load-state path`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ape import accounts, chain, networks

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from world.deploy import deploy_world
from world.dump import dump_anvil_state
from world.manifest import manifest_path

DEPLOYER_ENV = "OPTKEEPER_DEPLOYER"
DUMP_ENV = "OPTKEEPER_WORLD_DUMP"


def _accounts() -> tuple[Any, Any, Any, Any]:
    """(deployer, governance, keeper, guardian) for the connected network."""
    if networks.provider.network.is_local:
        test_accounts = accounts.test_accounts
        return test_accounts[0], test_accounts[0], test_accounts[1], test_accounts[3]
    alias = os.environ.get(DEPLOYER_ENV)
    if not alias:
        raise SystemExit(f"not a local network: set {DEPLOYER_ENV} to an Ape account alias")
    deployer = accounts.load(alias)
    return deployer, deployer, deployer, deployer


def main() -> None:
    deployer, governance, keeper, guardian = _accounts()
    manifest = deploy_world(deployer, governance, keeper, guardian=guardian)
    print(f"world deployed on chain {manifest.chain_id} at block {manifest.block_number}")
    for name, deployed in manifest.contracts.items():
        print(f"  {name:28s} {deployed.address}")
    for vault in manifest.vaults:
        print(f"  vault {vault.name:22s} {vault.address}")
    print(f"manifest: {manifest_path()}")
    dump = os.environ.get(DUMP_ENV)
    if dump:
        written = dump_anvil_state(chain.provider, Path(dump))
        print(f"anvil state: {written} (block {chain.blocks.head.number})")
