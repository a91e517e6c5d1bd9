"""Fixtures for the contract tests: the whole world is deployed once per session.

Ape's isolation reverts the chain to a snapshot after every test, so tests may mutate the
world freely. Run: ape test tests/contracts --network ethereum:local:foundry

Unless APE_FOUNDRY_HOST is set, the session starts its own anvil on a random port: with the
default host (127.0.0.1:8545) Ape would silently reuse an anvil someone else is running there.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("APE_FOUNDRY_HOST", "auto")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from contract_helpers import World

from world.deploy import deploy_world
from world.handles import attach_world


@pytest.fixture(scope="session")
def deployer(accounts: Any) -> Any:
    return accounts[0]


@pytest.fixture(scope="session")
def keeper(accounts: Any) -> Any:
    return accounts[1]


@pytest.fixture(scope="session")
def stranger(accounts: Any) -> Any:
    return accounts[2]


@pytest.fixture(scope="session")
def guardian(accounts: Any) -> Any:
    return accounts[3]


@pytest.fixture(scope="session")
def attacker(accounts: Any) -> Any:
    """Holds a compromised keeper key in the attack tests (and funds of its own)."""
    return accounts[4]


@pytest.fixture(scope="session")
def world(
    deployer: Any,
    keeper: Any,
    guardian: Any,
    project: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> World:
    manifest_file = tmp_path_factory.mktemp("world") / "world.json"
    manifest = deploy_world(deployer, deployer, keeper, guardian=guardian, path=manifest_file)
    return attach_world(project, manifest, manifest_file)


@pytest.fixture
def vault(world: World) -> Any:
    """The short-calls vault (state is reverted after each test)."""
    return world.vaults["short-calls"]
