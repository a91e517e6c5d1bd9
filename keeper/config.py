"""The keeper's settings: read once at start (``KEEPER_*`` env and ``.env``), then passed down.

Every field is listed, with a comment, in ``.env.example``. A bad value stops the keeper
at start with one message that names the setting (``load_settings``). Secrets are
``SecretStr``: they never appear in ``repr``, logs or error messages.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from keeper.errors import ConfigError, ManifestError

GWEI = 10**9


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KEEPER_",
        env_ignore_empty=True,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    # --- node ------------------------------------------------------------------
    rpc_url: str = "http://127.0.0.1:8545"
    ws_url: str | None = None
    private_rpc_url: str | None = None
    rpc_timeout_seconds: float = Field(10.0, gt=0)
    poll_interval_seconds: float = Field(1.0, gt=0)
    head_silence_seconds: float = Field(60.0, gt=0)
    chain_id: int | None = Field(None, gt=0)

    # --- where the contracts are -------------------------------------------------
    manifest: Path | None = None
    registry_address: str | None = None
    multicall_address: str | None = None
    settlement_address: str | None = None
    swap_router_address: str | None = None
    quoter_address: str | None = None
    weth_address: str | None = None
    usdc_address: str | None = None

    # --- persistence -------------------------------------------------------------
    db_url: str = "sqlite:///keeper.sqlite"
    db_schema: str | None = None

    # --- signing key (one of the three) ---------------------------------------------
    keystore_path: Path | None = None
    keystore_password: SecretStr | None = None
    keystore_password_file: Path | None = None
    private_key: SecretStr | None = None

    # --- reading and deciding ------------------------------------------------------
    multicall_chunk_size: int = Field(200, gt=0, le=5000)
    multicall_gas_budget: int = Field(20_000_000, ge=1_000_000)
    max_backfill_blocks: int = Field(64, ge=0)
    reorg_history_blocks: int = Field(128, gt=1)
    oracle_max_jump_bps: int = Field(2000, gt=0)
    oracle_stale_margin_seconds: int = Field(24, ge=0)
    gas_units_per_rebalance: int = Field(190_000, gt=0)
    gas_units_per_extra_vault: int = Field(110_000, gt=0)
    dex_fee_bps: float = Field(5.0, ge=0)
    slippage_bps_per_unit: float = Field(0.5, ge=0)

    # --- sending -------------------------------------------------------------------
    dry_run: bool = False
    max_fee_gwei: float = Field(100.0, gt=0)
    emergency_max_fee_gwei: float = Field(500.0, gt=0)
    priority_fee_gwei: float = Field(1.0, ge=0)
    max_priority_fee_gwei: float = Field(5.0, ge=0)
    stuck_after_blocks: int = Field(3, gt=0)
    simulation_gas_cap: int = Field(25_000_000, gt=21_000)
    net_slippage_bps: int = Field(30, ge=0, le=500)
    deadline_seconds: int = Field(600, gt=0)
    low_balance_eth: Decimal = Field(Decimal("0.05"), ge=0)

    # --- DEX aggregator (0x Swap API v2 format) ---------------------------------------
    aggregator_url: str | None = None
    aggregator_api_key: SecretStr | None = None
    aggregator_timeout_seconds: float = Field(3.0, gt=0)
    quote_race_seconds: float = Field(0.15, gt=0)

    # --- monitoring --------------------------------------------------------------------
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(None, ge=1, le=65535)
    health_max_age_seconds: float = Field(120.0, gt=0)

    # --- logging ---------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False

    @field_validator("rpc_url", "private_rpc_url", "aggregator_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s):// URL")
        return value

    @field_validator("ws_url")
    @classmethod
    def _ws_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("ws://", "wss://")):
            raise ValueError("must be a ws(s):// URL")
        return value

    @field_validator(
        "registry_address",
        "multicall_address",
        "settlement_address",
        "swap_router_address",
        "quoter_address",
        "weth_address",
        "usdc_address",
    )
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        body = value[2:] if value.startswith("0x") else ""
        if len(body) != 40 or any(c not in "0123456789abcdefABCDEF" for c in body):
            raise ValueError("must be a 0x-prefixed 20-byte hex address")
        return value

    @model_validator(mode="after")
    def _caps_ordered(self) -> Settings:
        if self.emergency_max_fee_gwei < self.max_fee_gwei:
            raise ValueError("emergency_max_fee_gwei must be >= max_fee_gwei")
        if self.max_priority_fee_gwei < self.priority_fee_gwei:
            raise ValueError("max_priority_fee_gwei must be >= priority_fee_gwei")
        return self

    @property
    def low_balance_wei(self) -> int:
        return int(self.low_balance_eth * 10**18)

    @property
    def max_fee_wei(self) -> int:
        return int(self.max_fee_gwei * GWEI)

    @property
    def emergency_max_fee_wei(self) -> int:
        return int(self.emergency_max_fee_gwei * GWEI)


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning pydantic's report into one ``ConfigError`` naming the setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            env = f"KEEPER_{name.upper()}" if err["loc"] else name
            problems.append(f"{env}: {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


# --- addresses -------------------------------------------------------------------------


class Addresses:
    """The contract addresses the keeper needs, from explicit settings or the manifest."""

    FIELDS: ClassVar[dict[str, tuple[str, str]]] = {
        "registry": ("registry_address", "VaultRegistry"),
        "multicall": ("multicall_address", "Multicall3"),
        "settlement": ("settlement_address", "BookSettlement"),
        "swap_router": ("swap_router_address", "SwapRouter"),
        "quoter": ("quoter_address", "QuoterV2"),
        "weth": ("weth_address", "WETH"),
        "usdc": ("usdc_address", "USDC"),
    }

    def __init__(self, values: dict[str, str], chain_id: int | None) -> None:
        self.values = values
        self.chain_id = chain_id

    def __getattr__(self, name: str) -> str:
        values = self.__dict__.get("values", {})
        if name in values:
            return str(values[name])
        raise AttributeError(name)

    @classmethod
    def resolve(cls, settings: Settings) -> Addresses:
        manifest = _read_manifest(settings.manifest) if settings.manifest else {}
        contracts = manifest.get("contracts", {})
        values: dict[str, str] = {}
        missing = []
        for key, (setting, manifest_name) in cls.FIELDS.items():
            explicit = getattr(settings, setting)
            from_manifest = contracts.get(manifest_name, {}).get("address")
            value = explicit or from_manifest
            if value is None:
                missing.append(f"KEEPER_{setting.upper()}")
            else:
                values[key] = value
        if missing:
            raise ConfigError(
                "contract addresses missing: set " + ", ".join(missing) + " or KEEPER_MANIFEST"
            )
        return cls(values, manifest.get("chain_id"))


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"KEEPER_MANIFEST: file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"KEEPER_MANIFEST: {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or "contracts" not in data:
        raise ManifestError(f"KEEPER_MANIFEST: {path} has no 'contracts' section")
    return data
