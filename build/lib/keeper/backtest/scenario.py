"""A backtest study in one TOML file: the book, the price and gas models, the step and
horizon, the cost model, the vault's band settings, and the policies with their sweeps.

Every field is checked on load; a bad or unknown field raises ``ConfigError`` naming it
(``scenario.toml: field 'policies[1].threshold': must be positive, got -1``). The shipped
files in ``keeper/backtest/scenarios/`` document each field.
"""

from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass
from pathlib import Path

from keeper.backtest.fields import Fields
from keeper.backtest.gas import ConstantGas, GasModel, StochasticGas
from keeper.backtest.paths import GbmModel, MertonModel
from keeper.errors import ConfigError

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
_STEP_TOLERANCE = 1e-9


class PolicyFamily(enum.StrEnum):
    """The live keeper's three policies and the two references."""

    GAS_ADJUSTED_BAND = "gas_adjusted_band"
    FIXED_THRESHOLD = "fixed_threshold"
    TIME_BASED = "time_based"
    NO_HEDGE = "no_hedge"
    EVERY_STEP = "every_step"


# The field that holds each family's parameter (None: the family has no parameter).
PARAM_FIELD: dict[PolicyFamily, str | None] = {
    PolicyFamily.GAS_ADJUSTED_BAND: "risk_aversion",
    PolicyFamily.FIXED_THRESHOLD: "threshold",
    PolicyFamily.TIME_BASED: "interval_steps",
    PolicyFamily.NO_HEDGE: None,
    PolicyFamily.EVERY_STEP: None,
}


@dataclass(frozen=True)
class Leg:
    strike: float  # quote per underlying
    size: float  # underlying units, negative = written
    is_call: bool


@dataclass(frozen=True)
class Book:
    """The vault's options, all expiring at the end of the horizon."""

    spot: float  # price at the start (real windows are rescaled to it)
    vol: float  # implied volatility the greeks use (VaultParams.implied_vol)
    rate: float  # risk-free rate, continuous, per year (financing and discounting)
    target_delta: float  # target net delta, underlying units
    legs: tuple[Leg, ...]


@dataclass(frozen=True)
class HistoryModel:
    """Rolling windows over a real price file."""

    file: Path
    window_stride_seconds: float


PathModel = GbmModel | MertonModel | HistoryModel


@dataclass(frozen=True)
class CostSettings:
    gas_per_rebalance: int  # gas units of one vault's rebalance transaction
    gas_per_extra_vault: int  # extra gas units per additional vault in a batch
    batch_vaults: int  # vaults sharing one batched transaction (the gas is split evenly)
    priority_fee_gwei: float
    dex_fee_bps: float
    slippage_bps_per_unit: float  # price impact, bps per underlying unit traded


@dataclass(frozen=True)
class VaultSettings:
    band_floor: float  # underlying units
    hard_limit: float  # underlying units


@dataclass(frozen=True)
class PolicySpec:
    name: str
    family: PolicyFamily
    param: float | None  # the headline setting; None: the best point of the sweep
    sweep: tuple[float, ...]  # settings traced on the cost/risk frontier


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    seed: int
    n_paths: int | None  # None for a real-data study: one path per window
    horizon_seconds: float
    step_seconds: float
    n_steps: int
    risk_aversion: float  # per quote unit; the evaluation's, and the band's default
    book: Book
    paths: PathModel
    gas: GasModel
    costs: CostSettings
    vault: VaultSettings
    policies: tuple[PolicySpec, ...]
    example_path: int


def shipped_scenarios() -> list[str]:
    return sorted(path.stem for path in SCENARIO_DIR.glob("*.toml"))


def find_scenario(name_or_path: str) -> Path:
    """A file path, or the name of a shipped scenario (with or without ``.toml``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = SCENARIO_DIR / f"{path.stem}.toml"
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    raise ConfigError(
        f"scenario {name_or_path!r} not found: not a file, and not one of the shipped "
        f"scenarios ({', '.join(shipped_scenarios())})"
    )


def load_scenario(name_or_path: str, data_dir: Path | None = None) -> Scenario:
    """Read and check a scenario; real-data files resolve against ``data_dir``
    (default: ``../shared/data`` next to the repository)."""
    path = find_scenario(name_or_path)
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name}: not valid TOML: {exc}") from exc
    return parse_scenario(document, path.name, data_dir or DEFAULT_DATA_DIR)


def parse_scenario(document: dict[str, object], source: str, data_dir: Path) -> Scenario:
    root = Fields(document, "", source)
    name = root.text("name", Path(source).stem)
    description = root.text("description", "")
    seed = root.integer("seed", 0, minimum=0)
    horizon = root.duration("horizon")
    step, n_steps = _step(root, horizon)
    risk_aversion = root.number("risk_aversion", minimum=0.0)
    book = _book(root.table("book"))
    paths = _paths(root.table("paths"), data_dir)
    n_paths = _n_paths(root, paths)
    scenario = Scenario(
        name=name,
        description=description,
        seed=seed,
        n_paths=n_paths,
        horizon_seconds=horizon,
        step_seconds=step,
        n_steps=n_steps,
        risk_aversion=risk_aversion,
        book=book,
        paths=paths,
        gas=_gas(root.table("gas")),
        costs=_costs(root.table("costs")),
        vault=_vault(root.table("vault")),
        policies=_policies(root),
        example_path=root.integer("example_path", 0, minimum=0),
    )
    root.finish()
    return scenario


def _step(root: Fields, horizon: float) -> tuple[float, int]:
    """Exactly one of ``step`` (a duration) and ``n_steps``; the horizon must be whole steps."""
    if root.has("step") == root.has("n_steps"):
        raise root.error("step", "give exactly one of 'step' and 'n_steps'")
    if root.has("n_steps"):
        n_steps = root.integer("n_steps", minimum=1)
        return horizon / n_steps, n_steps
    step = root.duration("step")
    ratio = horizon / step
    if round(ratio) < 1 or abs(ratio - round(ratio)) > _STEP_TOLERANCE * ratio:
        raise root.error("step", f"the horizon ({horizon:g} s) is not a whole number of steps")
    return step, round(ratio)


def _n_paths(root: Fields, paths: PathModel) -> int | None:
    if isinstance(paths, HistoryModel):
        return root.integer("n_paths", minimum=1) if root.has("n_paths") else None
    return root.integer("n_paths", minimum=2)


def _book(table: Fields) -> Book:
    spot = table.number("spot", positive=True)
    legs = tuple(_leg(leg, spot) for leg in table.tables("legs"))
    book = Book(
        spot=spot,
        vol=table.number("vol", positive=True),
        rate=table.number("rate", 0.0),
        target_delta=table.number("target_delta", 0.0),
        legs=legs,
    )
    table.finish()
    return book


def _leg(table: Fields, spot: float) -> Leg:
    if table.has("strike") == table.has("moneyness"):
        raise table.error("strike", "give exactly one of 'strike' and 'moneyness' (strike / spot)")
    if table.has("strike"):
        strike = table.number("strike", positive=True)
    else:
        strike = spot * table.number("moneyness", positive=True)
    size = table.number("size")
    if size == 0.0:
        raise table.error("size", "must be non-zero (negative = written)")
    kind = table.text("type", choices=("call", "put"))
    table.finish()
    return Leg(strike=strike, size=size, is_call=kind == "call")


def _paths(table: Fields, data_dir: Path) -> PathModel:
    model = table.text("model", choices=("gbm", "merton", "history"))
    result: PathModel
    if model == "history":
        file = Path(table.text("file"))
        resolved = file if file.is_absolute() else data_dir / file
        if not resolved.is_file():
            raise table.error("file", f"price data file not found: {resolved}")
        result = HistoryModel(resolved, table.duration("window_stride"))
    elif model == "gbm":
        result = GbmModel(drift=table.number("drift", 0.0), vol=table.number("vol", positive=True))
    else:
        result = MertonModel(
            drift=table.number("drift", 0.0),
            vol=table.number("vol", positive=True),
            jump_intensity=table.number("jump_intensity", minimum=0.0),
            jump_mean=table.number("jump_mean"),
            jump_std=table.number("jump_std", minimum=0.0),
        )
    table.finish()
    return result


def _gas(table: Fields) -> GasModel:
    model = table.text("model", choices=("constant", "stochastic"))
    base_fee = table.number("base_fee_gwei", minimum=0.0)
    result: GasModel
    if model == "constant":
        result = ConstantGas(base_fee)
    else:
        if base_fee <= 0.0:
            raise table.error("base_fee_gwei", "must be positive for the stochastic model")
        result = StochasticGas(
            base_fee_gwei=base_fee,
            half_life_seconds=table.duration("half_life"),
            vol_per_sqrt_day=table.number("vol_per_sqrt_day", minimum=0.0),
            spikes_per_day=table.number("spikes_per_day", 0.0, minimum=0.0),
            spike_multiplier=table.number("spike_multiplier", 1.0, positive=True),
        )
    table.finish()
    return result


def _costs(table: Fields) -> CostSettings:
    costs = CostSettings(
        gas_per_rebalance=table.integer("gas_per_rebalance", minimum=0),
        gas_per_extra_vault=table.integer("gas_per_extra_vault", 0, minimum=0),
        batch_vaults=table.integer("batch_vaults", 1, minimum=1),
        priority_fee_gwei=table.number("priority_fee_gwei", 0.0, minimum=0.0),
        dex_fee_bps=table.number("dex_fee_bps", minimum=0.0),
        slippage_bps_per_unit=table.number("slippage_bps_per_unit", 0.0, minimum=0.0),
    )
    table.finish()
    return costs


def _vault(table: Fields) -> VaultSettings:
    vault = VaultSettings(
        band_floor=table.number("band_floor", minimum=0.0),
        hard_limit=table.number("hard_limit", positive=True),
    )
    table.finish()
    return vault


def _policies(root: Fields) -> tuple[PolicySpec, ...]:
    specs = tuple(_policy(table) for table in root.tables("policies"))
    names = [spec.name for spec in specs]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise root.error(f"policies[{index}].name", f"duplicate policy name {name!r}")
    return specs


def _policy(table: Fields) -> PolicySpec:
    family = PolicyFamily(table.text("kind", choices=tuple(PolicyFamily)))
    name = table.text("name", family.value)
    field = PARAM_FIELD[family]
    param: float | None = None
    sweep: tuple[float, ...] = ()
    if field is not None:
        if table.has(field):
            param = table.number(field, positive=True)
        if table.has("sweep"):
            sweep = table.numbers("sweep", positive=True)
        if param is None and not sweep:
            raise table.error(field, "is required (or give a 'sweep' to pick the best from)")
        if family is PolicyFamily.TIME_BASED:
            _whole_steps(table, field, param, sweep)
    table.finish()
    return PolicySpec(name=name, family=family, param=param, sweep=sweep)


def _whole_steps(table: Fields, field: str, param: float | None, sweep: tuple[float, ...]) -> None:
    for value in (param, *sweep):
        if value is not None and value != int(value):
            key = field if value == param else "sweep"
            raise table.error(key, f"intervals are whole numbers of steps, got {value!r}")
