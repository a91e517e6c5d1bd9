"""The keeper's settings: read once at start (``KEEPER_*`` env and ``.env``), then passed down.

Every field is listed, with a comment, in ``.env.example``. A bad value stops the keeper
at start with one message that names the setting (``load_settings``). Secrets are
``SecretStr``: they never appear in ``repr``, logs or error messages.
"""

from __future__ import annotations

import difflib
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Literal

from dotenv import dotenv_values
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from keeper.errors import ConfigError, ManifestError

GWEI = 10**9
FEE_CEILING_GWEI = 10_000  # no fee cap may go above this


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KEEPER_",
        env_ignore_empty=True,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",  # unknown KEEPER_ keys are refused by load_settings, by name
        frozen=True,
        allow_inf_nan=False,  # "inf" / "nan" are not a fee cap or a timeout
    )

    # --- node ------------------------------------------------------------------
    rpc_url: str = "http://127.0.0.1:8545"
    rpc_urls: str | None = None  # comma-separated; replaces rpc_url
    ws_url: str | None = None
    ws_urls: str | None = None  # comma-separated; replaces ws_url
    rpc_max_lag_blocks: int = Field(3, ge=0, le=1000)
    private_rpc_url: str | None = None
    rpc_timeout_seconds: float = Field(10.0, gt=0, le=300)
    poll_interval_seconds: float = Field(1.0, gt=0, le=60)
    head_silence_seconds: float = Field(60.0, gt=0, le=3600)
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
    lease_ttl_seconds: float = Field(20.0, ge=2, le=600)

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
    vol_half_life_seconds: float = Field(259_200.0, ge=0)  # EWMA of the oracle's rounds; 0: off
    realized_vol_vaults: str = ""  # comma-separated vaults hedged at the realised vol
    gas_half_life_seconds: float = Field(0.0, ge=0)  # gas timing: fee half-life; 0: off
    usual_fee_half_life_seconds: float = Field(86_400.0, gt=0)  # EWMA: the usual base fee

    @property
    def realized_vol_vault_set(self) -> frozenset[str]:
        """``realized_vol_vaults`` as lower-case addresses."""
        return frozenset(
            a.strip().lower() for a in self.realized_vol_vaults.split(",") if a.strip()
        )

    # --- sending -------------------------------------------------------------------
    dry_run: bool = False
    max_fee_gwei: float = Field(100.0, gt=0)
    emergency_max_fee_gwei: float = Field(500.0, gt=0)
    priority_fee_gwei: float = Field(1.0, ge=0)
    max_priority_fee_gwei: float = Field(5.0, ge=0)
    stuck_after_blocks: int = Field(3, gt=0)
    simulation_gas_cap: int = Field(25_000_000, gt=21_000)
    block_gas_share: float = Field(1.0, gt=0, le=1)
    net_slippage_bps: int = Field(30, ge=0, le=500)
    deadline_seconds: int = Field(600, gt=0)
    low_balance_eth: Decimal = Field(Decimal("0.05"), ge=0)

    # --- DEX aggregator (0x Swap API v2 format) ---------------------------------------
    aggregator_url: str | None = None
    aggregator_api_key: SecretStr | None = None
    aggregator_timeout_seconds: float = Field(3.0, gt=0)
    quote_race_seconds: float = Field(0.03, gt=0)

    # --- monitoring --------------------------------------------------------------------
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(None, ge=1, le=65535)
    health_max_age_seconds: float = Field(120.0, gt=0)

    # --- logging ---------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False

    # --- transaction lifecycle (keeper.tx) ----------------------------------------------
    private_rpc_timeout_seconds: float = Field(1.5, gt=0)
    private_rpc_cooldown_seconds: float = Field(60.0, ge=0)
    revert_backoff_blocks: int = Field(2, gt=0)

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

    @field_validator("rpc_urls", "ws_urls")
    @classmethod
    def _url_list(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        schemes = ("http://", "https://") if info.field_name == "rpc_urls" else ("ws://", "wss://")
        urls = _split(value)
        if not urls:
            raise ValueError("must list at least one URL")
        for url in urls:
            if not url.startswith(schemes):
                raise ValueError(f"{url.split('://')[0]}:// is not {' or '.join(schemes)}")
        if len(set(urls)) != len(urls):
            raise ValueError("lists an endpoint twice")
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
    def _one_way_to_name_endpoints(self) -> Settings:
        for one, many in (("rpc_url", "rpc_urls"), ("ws_url", "ws_urls")):
            if {one, many} <= self.model_fields_set:
                raise ValueError(f"set KEEPER_{many.upper()} or KEEPER_{one.upper()}, not both")
        return self

    @model_validator(mode="after")
    def _caps_ordered(self) -> Settings:
        if self.emergency_max_fee_gwei < self.max_fee_gwei:
            raise ValueError("KEEPER_EMERGENCY_MAX_FEE_GWEI must be >= KEEPER_MAX_FEE_GWEI")
        if self.emergency_max_fee_gwei > FEE_CEILING_GWEI:
            raise ValueError(
                f"KEEPER_EMERGENCY_MAX_FEE_GWEI above {FEE_CEILING_GWEI} gwei is not a cap "
                "(a 6M-gas batch at that price costs 60 ETH)"
            )
        if self.max_priority_fee_gwei < self.priority_fee_gwei:
            raise ValueError("KEEPER_MAX_PRIORITY_FEE_GWEI must be >= KEEPER_PRIORITY_FEE_GWEI")
        if self.max_priority_fee_gwei > self.emergency_max_fee_gwei:
            raise ValueError(
                "KEEPER_MAX_PRIORITY_FEE_GWEI must be <= KEEPER_EMERGENCY_MAX_FEE_GWEI"
            )
        return self

    @model_validator(mode="after")
    def _history_covers_the_backfill(self) -> Settings:
        if self.reorg_history_blocks <= self.max_backfill_blocks:
            raise ValueError(
                "KEEPER_REORG_HISTORY_BLOCKS must be above KEEPER_MAX_BACKFILL_BLOCKS (a "
                "backfilled gap must still link to a kept block)"
            )
        return self

    @property
    def rpc_endpoints(self) -> tuple[str, ...]:
        """Every HTTP JSON-RPC endpoint (``KEEPER_RPC_URLS``, else ``KEEPER_RPC_URL``)."""
        return _split(self.rpc_urls) if self.rpc_urls else (self.rpc_url,)

    @property
    def ws_endpoints(self) -> tuple[str, ...]:
        """Every websocket endpoint for ``newHeads`` (none: poll only)."""
        if self.ws_urls:
            return _split(self.ws_urls)
        return (self.ws_url,) if self.ws_url else ()

    @property
    def rpc_setting(self) -> str:
        """The setting that named the endpoints, for messages."""
        return "KEEPER_RPC_URLS" if self.rpc_urls else "KEEPER_RPC_URL"

    @property
    def low_balance_wei(self) -> int:
        return int(self.low_balance_eth * 10**18)

    @property
    def max_fee_wei(self) -> int:
        return int(self.max_fee_gwei * GWEI)

    @property
    def emergency_max_fee_wei(self) -> int:
        return int(self.emergency_max_fee_gwei * GWEI)


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def load_settings(env_file: Path | None = None, **overrides: Any) -> Settings:
    """Read the settings (the environment, then ``env_file`` or ``./.env``), turning
    pydantic's report into one ``ConfigError`` naming the setting. A ``KEEPER_`` key that is
    not a setting is refused with the closest known name (a typo must not silently run with
    the default)."""
    if env_file is not None and not env_file.is_file():
        raise ConfigError(f"--env-file: no such file: {env_file}")
    source = env_file or Path(".env")
    unknown_keys(dict(os.environ), source)
    try:
        if env_file is not None:
            return Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"])
            env = f"KEEPER_{name.upper()}: " if err["loc"] else ""
            problems.append(f"{env}{err['msg'].removeprefix('Value error, ')}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


def known_keys() -> set[str]:
    return {f"KEEPER_{name.upper()}" for name in Settings.model_fields}


def unknown_keys(environ: dict[str, str], env_file: Path) -> None:
    """``ConfigError`` for every ``KEEPER_`` key of ``environ`` or ``env_file`` that is not
    a setting, each with the closest known name."""
    keys = {k: "the environment" for k in environ if k.upper().startswith("KEEPER_")}
    if env_file.is_file():
        keys |= {
            k: str(env_file) for k in dotenv_values(env_file) if k.upper().startswith("KEEPER_")
        }
    known = known_keys()
    problems = []
    for key, where in sorted(keys.items()):
        if key.upper() in known:
            continue
        close = difflib.get_close_matches(key.upper(), sorted(known), n=1, cutoff=0.6)
        hint = f": did you mean {close[0]}?" if close else ""
        problems.append(f"{key} (in {where}) is not a setting{hint}")
    if problems:
        raise ConfigError("unknown settings: " + "; ".join(problems))


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
        manifest = read_manifest(settings.manifest) if settings.manifest else {}
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


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"KEEPER_MANIFEST: file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"KEEPER_MANIFEST: {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or "contracts" not in data:
        raise ManifestError(f"KEEPER_MANIFEST: {path} has no 'contracts' section")
    return data
