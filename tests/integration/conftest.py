"""Fixtures for the keeper's integration tests: the world the upstream node holds, on a fork.

``make test`` serves the deployed world from an anvil (``tools/world.sh serve``) and runs
these tests with ``--network ethereum:optworld-fork:foundry``: Ape starts an anvil forked
from it, and every test's changes are reverted (Ape's isolation). The keeper under test
talks to that fork over plain JSON-RPC (``rpc_url``), as it would to a mainnet fork.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(ROOT / "scripts") not in sys.path:  # bench_world: extra vaults for the book tests
    sys.path.insert(0, str(ROOT / "scripts"))

from keeper_support import Running, sending_keeper_on  # noqa: E402

from world.handles import WorldHandles, attach_world  # noqa: E402
from world.manifest import Manifest, load_manifest  # noqa: E402

ForkedWorld = WorldHandles  # the integration tests' name for it


@pytest.fixture(scope="session")
def manifest_file() -> Path:
    from world.manifest import manifest_path

    path = manifest_path()
    if not path.exists():
        pytest.fail(f"no world manifest at {path}: run the tests with `make test`")
    return path


@pytest.fixture(scope="session")
def manifest(manifest_file: Path) -> Manifest:
    return load_manifest(manifest_file)


@pytest.fixture(scope="session")
def rpc_url(chain: Any) -> str:
    uri = str(chain.provider.uri)
    if not uri.startswith("http"):
        pytest.fail(f"integration tests need an HTTP provider, got {uri}")
    return uri


@pytest.fixture(scope="session")
def governance(accounts: Any, manifest: Manifest) -> Any:
    return _account(accounts, manifest.governance)


@pytest.fixture(scope="session")
def keeper_account(accounts: Any, manifest: Manifest) -> Any:
    return _account(accounts, manifest.keeper)


# anvil's default mnemonic, account 1 (the world's keeper). Local test key only.
KEEPER_TEST_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


@pytest.fixture(scope="session")
def keeper_key(keeper_account: Any) -> str:
    from eth_account import Account

    assert Account.from_key(KEEPER_TEST_KEY).address == keeper_account.address
    return KEEPER_TEST_KEY


def _account(accounts: Any, address: str) -> Any:
    for account in accounts:
        if account.address.lower() == address.lower():
            return account
    pytest.fail(f"{address} is not one of the test accounts")


@pytest.fixture(scope="session")
def world(project: Any, manifest: Manifest, manifest_file: Path) -> ForkedWorld:
    return attach_world(project, manifest, manifest_file)


@pytest.fixture
def fresh_world(world: ForkedWorld, governance: Any, chain: Any) -> Iterator[ForkedWorld]:
    """The world with an oracle round updated now (the upstream state may be minutes old).

    A fee spike an earlier test set is not part of the snapshot Ape reverts to: reset it."""
    chain.provider.make_request("anvil_setNextBlockBaseFeePerGas", ["0x0"])
    chain.mine()
    answer = int(world.feed.latestRoundData()[1])
    world.feed.setAnswer(answer, sender=governance)
    yield world


@pytest.fixture
def sending_keeper(
    rpc_url: str, fresh_world: ForkedWorld, keeper_key: str, tmp_path: Path
) -> Iterator[Running]:
    """The keeper sending on the fork, with a low fee cap and stuck after 2 blocks (so that
    spikes, stuck transactions and the emergency cap can be driven in a few blocks)."""
    with sending_keeper_on(
        rpc_url,
        fresh_world.manifest_file,
        keeper_key,
        tmp_path,
        stuck_after_blocks=2,
        max_fee_gwei=50,
        emergency_max_fee_gwei=400,
    ) as running:
        yield running
