"""Settings are strict: typos, non-finite and absurd values and every kind of bad database URL
stop the keeper with one message naming the setting."""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path

import pytest

from keeper.cli import main as keeper_cli
from keeper.config import load_settings
from keeper.errors import ConfigError
from keeper.store import Store


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("KEEPER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_a_typo_is_refused_with_the_closest_known_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPER_MAX_FEE_GEWI", "5")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert str(refused.value) == (
        "unknown settings: KEEPER_MAX_FEE_GEWI (in the environment) is not a setting: "
        "did you mean KEEPER_MAX_FEE_GWEI?"
    )


def test_typos_in_env_files_are_refused_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("KEEPER_RPC_ULR=http://x\n")
    with pytest.raises(ConfigError, match=r"KEEPER_RPC_ULR \(in \.env\).*KEEPER_RPC_URL\?"):
        load_settings()
    other = tmp_path / "prod.env"
    other.write_text("KEEPER_DB_SCEMA=k1\nKEEPER_ZZZ=1\n")
    with pytest.raises(ConfigError) as refused:
        load_settings(other)
    assert "KEEPER_DB_SCEMA" in str(refused.value) and "KEEPER_DB_SCHEMA?" in str(refused.value)
    assert "KEEPER_ZZZ (in " in str(refused.value)  # no close name: just refused


def test_an_env_file_given_is_read_and_must_exist(tmp_path: Path) -> None:
    chosen = tmp_path / "k.env"
    chosen.write_text("KEEPER_MAX_FEE_GWEI=42\n")
    assert load_settings(chosen).max_fee_gwei == 42
    with pytest.raises(ConfigError, match="--env-file: no such file"):
        load_settings(tmp_path / "missing.env")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("KEEPER_MAX_FEE_GWEI", "inf"),
        ("KEEPER_MAX_FEE_GWEI", "nan"),
        ("KEEPER_RPC_TIMEOUT_SECONDS", "inf"),
        ("KEEPER_DEX_FEE_BPS", "nan"),
        ("KEEPER_LOW_BALANCE_ETH", "Infinity"),
        ("KEEPER_LEASE_TTL_SECONDS", "inf"),
    ],
)
def test_non_finite_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str
) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=f"{key}: Input should be a finite number"):
        load_settings()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"KEEPER_EMERGENCY_MAX_FEE_GWEI": "50000"}, "above 10000 gwei is not a cap"),
        ({"KEEPER_REORG_HISTORY_BLOCKS": "32"}, "REORG_HISTORY_BLOCKS must be above KEEPER_MAX"),
        ({"KEEPER_RPC_TIMEOUT_SECONDS": "3600"}, "KEEPER_RPC_TIMEOUT_SECONDS"),
        (
            {"KEEPER_RPC_URL": "http://a", "KEEPER_RPC_URLS": "http://b"},
            "set KEEPER_RPC_URLS or KEEPER_RPC_URL, not both",
        ),
        ({"KEEPER_RPC_URLS": "http://a,ws://b"}, "KEEPER_RPC_URLS"),
        ({"KEEPER_RPC_URLS": "http://a,http://a"}, "lists an endpoint twice"),
    ],
)
def test_absurd_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], message: str
) -> None:
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_several_endpoints_are_listed_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPER_RPC_URLS", "http://a:1, https://b/key ,http://c")
    monkeypatch.setenv("KEEPER_WS_URLS", "ws://a:1,wss://b")
    settings = load_settings()
    assert settings.rpc_endpoints == ("http://a:1", "https://b/key", "http://c")
    assert settings.ws_endpoints == ("ws://a:1", "wss://b")
    assert load_settings.__name__ and settings.rpc_setting == "KEEPER_RPC_URLS"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("notaurl", "KEEPER_DB_URL: 'notaurl' is not a database URL; use sqlite:///"),
        ("postgres://keeper@127.0.0.1/k", "KEEPER_DB_URL: postgres:// is not a SQLAlchemy URL"),
        ("mysql://keeper@127.0.0.1/k", "KEEPER_DB_URL: mysql is not supported"),
        ("sqlite:////no/such/dir/keeper.sqlite", "the folder /no/such/dir does not exist"),
    ],
)
def test_bad_database_urls_are_one_message_naming_the_setting(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Store(url)


def test_a_closed_port_names_the_setting_and_hides_the_password() -> None:
    url = f"postgresql+psycopg://keeper:hunter2@127.0.0.1:{closed_port()}/k"
    with pytest.raises(ConfigError) as refused:
        Store(url)
    text = str(refused.value)
    assert text.startswith(
        "KEEPER_DB_URL: cannot use the database postgresql+psycopg://keeper:***@"
    )
    assert "hunter2" not in text and ("refused" in text or "failed" in text)


def test_a_locked_sqlite_file_names_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "keeper.sqlite"
    Store(f"sqlite:///{path}").close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(
            ConfigError, match=r"KEEPER_DB_URL: .*database is locked.*keeper running"
        ):
            Store(f"sqlite:///{path}?timeout=0.2")
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_status_in_a_folder_without_env_creates_no_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert keeper_cli(["status"]) == 2
    assert "KEEPER_DB_URL: no keeper database at" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        keeper_cli(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("optkeeper 0.")


def test_a_bad_setting_on_the_command_line_is_a_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KEEPER_DB_URL", "notaurl")
    assert keeper_cli(["run", "--dry-run", "--max-blocks", "1"]) == 2
    assert capsys.readouterr().err.startswith("keeper: KEEPER_DB_URL: 'notaurl'")
