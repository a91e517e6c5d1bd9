"""The keeper's signing key: an encrypted keystore (password from the environment or a file),
or a raw key for local use. The key never leaves this module in a loggable form."""

from __future__ import annotations

import json
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from keeper.config import Settings
from keeper.errors import ConfigError


def load_signer(settings: Settings) -> LocalAccount:
    """The account that signs; ``ConfigError`` naming the setting when it cannot be loaded."""
    if settings.keystore_path is not None:
        return _from_keystore(settings)
    if settings.private_key is not None:
        try:
            account: LocalAccount = Account.from_key(settings.private_key.get_secret_value())
            return account
        except (ValueError, TypeError):
            raise ConfigError("KEEPER_PRIVATE_KEY: not a valid private key") from None
    raise ConfigError(
        "no signing key: set KEEPER_KEYSTORE_PATH (with KEEPER_KEYSTORE_PASSWORD or "
        "KEEPER_KEYSTORE_PASSWORD_FILE), or KEEPER_PRIVATE_KEY for local use, or run --dry-run"
    )


def signer_address(settings: Settings) -> str | None:
    """The sending address without decrypting the key (a keystore names its address); None
    when no key is configured or the keystore does not say."""
    if settings.private_key is not None and settings.keystore_path is None:
        return str(load_signer(settings).address)
    if settings.keystore_path is None:
        return None
    try:
        address = json.loads(Path(settings.keystore_path).read_text()).get("address")
    except (OSError, ValueError, AttributeError):
        return None
    return (
        None
        if not isinstance(address, str)
        else to_checksum_address("0x" + address.removeprefix("0x"))
    )


def _from_keystore(settings: Settings) -> LocalAccount:
    path = settings.keystore_path
    assert path is not None
    try:
        keystore = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"KEEPER_KEYSTORE_PATH: no such file: {path}") from None
    except json.JSONDecodeError:
        raise ConfigError(f"KEEPER_KEYSTORE_PATH: {path} is not a JSON keystore") from None
    password = _password(settings)
    try:
        key = Account.decrypt(keystore, password)
    except ValueError:
        raise ConfigError("KEEPER_KEYSTORE_PASSWORD: wrong password for the keystore") from None
    account: LocalAccount = Account.from_key(key)
    return account


def _password(settings: Settings) -> str:
    if settings.keystore_password is not None:
        return settings.keystore_password.get_secret_value()
    if settings.keystore_password_file is not None:
        try:
            return Path(settings.keystore_password_file).read_text().rstrip("\n")
        except FileNotFoundError:
            raise ConfigError(
                f"KEEPER_KEYSTORE_PASSWORD_FILE: no such file: {settings.keystore_password_file}"
            ) from None
    raise ConfigError(
        "KEEPER_KEYSTORE_PASSWORD or KEEPER_KEYSTORE_PASSWORD_FILE is needed with a keystore"
    )
