"""Settings: .env.example loads as it is, bad values name the key, secrets stay hidden."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from keeper.config import Addresses, Settings, load_settings
from keeper.errors import ConfigError, ManifestError

ROOT = Path(__file__).resolve().parents[2]
KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("KEEPER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_env_example_lists_every_setting_and_loads(tmp_path: Path) -> None:
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    settings = load_settings()
    assert settings.rpc_url == "http://127.0.0.1:8545"
    assert settings.ws_url is None  # empty means unset
    listed = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line.startswith("KEEPER_")
    }
    assert listed == {f"KEEPER_{name.upper()}" for name in Settings.model_fields}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("KEEPER_RPC_URL", "localhost:8545"),
        ("KEEPER_WS_URL", "http://x"),
        ("KEEPER_MAX_FEE_GWEI", "-1"),
        ("KEEPER_SETTLEMENT_ADDRESS", "0x1234"),
        ("KEEPER_LOG_LEVEL", "LOUD"),
        ("KEEPER_MULTICALL_CHUNK_SIZE", "many"),
    ],
)
def test_a_bad_value_stops_with_one_message_naming_it(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str
) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=key):
        load_settings()


def test_inconsistent_fee_caps_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPER_MAX_FEE_GWEI", "200")
    monkeypatch.setenv("KEEPER_EMERGENCY_MAX_FEE_GWEI", "100")
    with pytest.raises(ConfigError, match="KEEPER_EMERGENCY_MAX_FEE_GWEI must be >="):
        load_settings()


def test_private_key_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPER_PRIVATE_KEY", KEY)
    settings = load_settings()
    assert KEY not in repr(settings) and KEY not in str(settings.model_dump())
    assert settings.private_key is not None
    assert settings.private_key.get_secret_value() == KEY


def test_addresses_come_from_the_manifest_or_are_named_when_missing(tmp_path: Path) -> None:
    names = [
        "VaultRegistry",
        "Multicall3",
        "BookSettlement",
        "SwapRouter",
        "QuoterV2",
        "WETH",
        "USDC",
    ]
    contracts = {
        n: {"address": "0x" + f"{i + 1:040x}", "codehash": "0x"} for i, n in enumerate(names)
    }
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"chain_id": 31337, "contracts": contracts}))
    addresses = Addresses.resolve(load_settings(manifest=manifest))
    assert addresses.registry == "0x" + f"{1:040x}" and addresses.chain_id == 31337
    override = "0x" + "ab" * 20
    assert (
        Addresses.resolve(load_settings(manifest=manifest, usdc_address=override)).usdc == override
    )
    with pytest.raises(ConfigError, match="KEEPER_REGISTRY_ADDRESS"):
        Addresses.resolve(load_settings())
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ManifestError, match="KEEPER_MANIFEST"):
        Addresses.resolve(load_settings(manifest=tmp_path / "bad.json"))


def test_signer_from_keystore_raw_key_or_a_clear_error(tmp_path: Path) -> None:
    from eth_account import Account

    from keeper.tx.signer import load_signer

    keystore = tmp_path / "key.json"
    keystore.write_text(json.dumps(Account.encrypt(KEY, "s3cret", iterations=2)))
    (tmp_path / "pw").write_text("s3cret\n")
    expected = Account.from_key(KEY).address
    assert (
        load_signer(
            load_signer_settings(keystore_path=keystore, keystore_password="s3cret")
        ).address
        == expected
    )
    assert (
        load_signer(
            load_signer_settings(keystore_path=keystore, keystore_password_file=tmp_path / "pw")
        ).address
        == expected
    )
    assert load_signer(load_signer_settings(private_key=KEY)).address == expected
    with pytest.raises(ConfigError, match="KEEPER_KEYSTORE_PASSWORD"):
        load_signer(load_signer_settings(keystore_path=keystore, keystore_password="wrong"))
    with pytest.raises(ConfigError, match="KEEPER_KEYSTORE_PASSWORD"):
        load_signer(load_signer_settings(keystore_path=keystore))
    with pytest.raises(ConfigError, match="KEEPER_PRIVATE_KEY"):
        load_signer(load_signer_settings(private_key="0x1234"))
    with pytest.raises(ConfigError, match="no signing key"):
        load_signer(load_signer_settings())


def load_signer_settings(**values: object) -> Settings:
    return load_settings(**values)
