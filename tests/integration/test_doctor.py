"""`keeper doctor` against the world and against each broken set-up, by its message; and
`keeper run` refusing to start on the fatal ones."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import ForkedWorld

from keeper.cli import main as keeper_cli
from keeper.store import Store

OTHER_KEY = "0x" + "42" * 32  # an account with no role anywhere (local test key)


def doctor(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], **env: str
) -> tuple[int, str]:
    for key in [k for k in os.environ if k.startswith("KEEPER_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(f"KEEPER_{key.upper()}", value)
    code = keeper_cli(["doctor"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture
def base(rpc_url: str, fresh_world: ForkedWorld, keeper_key: str, tmp_path: Path) -> dict[str, str]:
    db_url = f"sqlite:///{tmp_path / 'k.sqlite'}"
    Store(db_url).close()  # doctor never creates a database; keeper run would
    return {
        "rpc_url": rpc_url,
        "manifest": str(fresh_world.manifest_file),
        "db_url": db_url,
        "private_key": keeper_key,
    }


def edited_manifest(world: ForkedWorld, tmp_path: Path, edit: Any) -> str:
    data = json.loads(world.manifest_file.read_text())
    edit(data)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    return str(path)


def line(output: str, check: str) -> str:
    found = [row for row in output.splitlines() if row[5:].startswith(check)]
    assert found, f"no {check!r} line in:\n{output}"
    return found[0]


def test_the_world_passes(
    base: dict[str, str],
    fresh_world: ForkedWorld,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = doctor(monkeypatch, capsys, **base)
    assert code == 0, out
    assert line(out, "chain id").startswith("ok") and "from the manifest" in line(out, "chain id")
    assert "contracts match the manifest" in line(out, "code")
    for vault in fresh_world.manifest.vaults:
        assert line(out, f"keeper of vault {vault.name}").startswith("ok")
    assert "covers an urgent rebalance at the emergency cap" in line(out, "balance")
    assert "reachable and writable, revision 0002" in line(out, "database")
    assert out.rstrip().endswith("all checks passed")


def test_a_manifest_address_without_code(
    base: dict[str, str],
    fresh_world: ForkedWorld,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    empty = "0x" + "de" * 20

    def edit(data: dict[str, Any]) -> None:
        data["contracts"]["VaultRegistry"]["address"] = empty

    code, out = doctor(
        monkeypatch, capsys, **(base | {"manifest": edited_manifest(fresh_world, tmp_path, edit)})
    )
    assert code == 1
    assert line(out, "code VaultRegistry").startswith("FAIL")
    assert f"no code at {empty}: a stale manifest (redeploy?)" in out


def test_code_that_is_not_the_manifests(
    base: dict[str, str],
    fresh_world: ForkedWorld,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["contracts"]["USDC"]["codehash"] = "0x" + "00" * 32

    code, out = doctor(
        monkeypatch, capsys, **(base | {"manifest": edited_manifest(fresh_world, tmp_path, edit)})
    )
    assert code == 1
    assert line(out, "code USDC").startswith("FAIL")
    assert "is not the manifest's" in line(out, "code USDC")


def test_a_key_that_is_not_a_keeper_of_the_vaults(
    base: dict[str, str],
    fresh_world: ForkedWorld,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The world's key is a keeper of every vault; another key is not, and every transaction
    it sent would revert (NotKeeper, directly or through the settlement)."""
    code, out = doctor(monkeypatch, capsys, **(base | {"private_key": OTHER_KEY}))
    assert code == 1
    for vault in fresh_world.manifest.vaults:
        row = line(out, f"keeper of vault {vault.name}")
        assert row.startswith("FAIL") and "isKeeper(address) is false" in row
        assert "every transaction would revert" in row
