"""`keeper doctor` against the world and against each broken set-up, by its message; and
`keeper run` refusing to start on the fatal ones."""

from __future__ import annotations

import json
import os
import socket
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
    base: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = doctor(monkeypatch, capsys, **base)
    assert code == 0, out
    assert line(out, "chain id").startswith("ok") and "from the manifest" in line(out, "chain id")
    assert "contracts match the manifest" in line(out, "code")
    assert "is RebalanceBatcher operator" in line(out, "RebalanceBatcher operator")
    assert "covers a worst-case send" in line(out, "balance")
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


def test_a_key_that_is_not_the_batchers_operator(
    base: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = doctor(monkeypatch, capsys, **(base | {"private_key": OTHER_KEY}))
    assert code == 1
    row = line(out, "RebalanceBatcher operator")
    assert row.startswith("FAIL") and "isOperator(address) is false" in row
    assert "every transaction would revert" in row


def test_without_a_batcher_the_key_must_be_each_vaults_keeper(
    base: dict[str, str],
    fresh_world: ForkedWorld,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A v2-shaped manifest (no RebalanceBatcher): the role is read as each vault's
    ``isKeeper`` (the world's key is a keeper of every vault; another key is not)."""

    def edit(data: dict[str, Any]) -> None:
        del data["contracts"]["RebalanceBatcher"]

    v2 = base | {"manifest": edited_manifest(fresh_world, tmp_path, edit)}
    v2["batcher_address"] = "0x" + "11" * 20  # the v1 settings still want one
    code, out = doctor(monkeypatch, capsys, **v2)
    assert code == 0, out
    assert "RebalanceBatcher operator" not in out
    for vault in fresh_world.manifest.vaults:
        assert line(out, f"keeper of vault {vault.name}").startswith("ok")
    code, out = doctor(monkeypatch, capsys, **(v2 | {"private_key": OTHER_KEY}))
    assert code == 1
    for vault in fresh_world.manifest.vaults:
        row = line(out, f"keeper of vault {vault.name}")
        assert row.startswith("FAIL") and "isKeeper(address) is false" in row


def test_a_low_balance_warns(
    base: dict[str, str],
    chain: Any,
    keeper_account: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    chain.provider.make_request("anvil_setBalance", [keeper_account.address, hex(10**15)])
    code, out = doctor(monkeypatch, capsys, **base)
    assert code == 0  # a warning: it can be funded while the keeper runs
    row = line(out, "balance")
    assert row.startswith("warn") and "0.0010 ETH is below a worst-case send (3.0000 ETH" in row
    assert f"fund {keeper_account.address}" in row


def test_another_chain_says_where_the_expected_id_came_from(
    base: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = doctor(monkeypatch, capsys, **(base | {"chain_id": "1"}))
    assert code == 1
    assert "FAIL chain id" in out and "node is on chain 31337, expected 1 (KEEPER_CHAIN_ID)" in out


def test_an_unreachable_node(
    base: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out = doctor(monkeypatch, capsys, **(base | {"rpc_url": f"http://127.0.0.1:{port}"}))
    assert code == 1
    assert "FAIL node" in out and "KEEPER_RPC_URL: no RPC endpoint answered eth_chainId" in out


def test_a_bad_database_url_is_reported_and_the_node_still_checked(
    base: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = doctor(monkeypatch, capsys, **(base | {"db_url": "postgres://k@127.0.0.1/k"}))
    assert code == 1
    assert line(out, "database").startswith("FAIL database")
    assert "KEEPER_DB_URL: postgres:// is not a SQLAlchemy URL scheme" in out
    assert line(out, "chain id").startswith("ok")


def test_a_database_not_made_yet_is_not_created(
    base: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    missing = tmp_path / "new" / "k.sqlite"
    missing.parent.mkdir()
    code, out = doctor(monkeypatch, capsys, **(base | {"db_url": f"sqlite:///{missing}"}))
    assert code == 0, out
    assert f"no database yet at {missing}: keeper run creates it" in line(out, "database")
    assert not missing.exists()


def test_keeper_run_refuses_to_start_on_a_stale_manifest(
    base: dict[str, str],
    fresh_world: ForkedWorld,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["vaults"][0]["address"] = "0x" + "de" * 20

    for key in [k for k in os.environ if k.startswith("KEEPER_")]:
        monkeypatch.delenv(key)
    for key, value in (base | {"manifest": edited_manifest(fresh_world, tmp_path, edit)}).items():
        monkeypatch.setenv(f"KEEPER_{key.upper()}", value)
    assert keeper_cli(["run", "--max-blocks", "1"]) == 2
    err = capsys.readouterr().err
    assert "keeper: preflight failed: code vault" in err and "a stale manifest" in err
