"""The soak in the test suite (issue 10): a few hundred blocks of the live keeper on the
forked world with random faults (kills and restarts, crashes inside a send, reorgs, node
refusals, dropped transactions, fee spikes), then the chain and the database are checked:
no nonce used twice, no journal row lost, no trade applied to a state it was not computed
from, every vault back in band within a few blocks of the last fault. ``scripts/soak.py``
runs the long one (5,000+ blocks) and prints the same figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import ForkedWorld

from world.soak import FAULTS, Soak, SoakConfig


def test_soak_with_random_faults(
    rpc_url: str,
    fresh_world: ForkedWorld,
    keeper_key: str,
    governance: Any,
    accounts: Any,
    tmp_path: Path,
) -> None:
    config = SoakConfig(
        rpc_url=rpc_url,
        manifest_file=fresh_world.manifest_file,
        db_url=f"sqlite:///{tmp_path / 'keeper.sqlite'}",
        keeper_key=keeper_key,
        owner=governance.address,
        trader=accounts[3].address,
        blocks=300,
        seed=10,
        fault_rate=0.1,
    )
    report = Soak(config, fresh_world.manifest, log=lambda line: None).run()
    print("\n".join(report.lines()))
    assert report.violations == []
    assert report.blocks >= config.blocks
    assert report.legs_executed > 0 and report.moves > 0
    assert set(report.faults) == set(FAULTS), report.faults  # every kind injected at least once
    assert report.recovered_after is not None
