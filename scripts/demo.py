"""``make demo``: the keeper at work on the local world, start to finish, in a minute or two.

Starts an anvil that loads the saved world (``.world/state.json``), the local 0x-style
aggregator (``python -m keeper.aggsvc``) and the keeper (``keeper run``); then moves the
oracle and both Uniswap pools along a price path (a GBM random walk, or ``--prices FILE``
replayed) while the base fee follows a gas path with occasional spikes. Blocks are mined by
this script, one per ``--block-seconds``, so every block's base fee is the gas path's. The
keeper's decisions and transactions are printed as they happen; at the end (or on Ctrl-C)
everything is stopped and a summary is printed from the chain and the keeper's store.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from requests.exceptions import RequestException  # noqa: E402
from web3 import Web3  # noqa: E402
from web3.exceptions import Web3Exception  # noqa: E402

from keeper.core import abi  # noqa: E402
from keeper.errors import KeeperError  # noqa: E402
from world.manifest import Manifest, ManifestFormatError, load_manifest  # noqa: E402
from world.market import (  # noqa: E402
    GWEI,
    GasPath,
    MarketDriver,
    MarketError,
    answer_of,
    clamped,
    gbm_path,
    price_of,
    rescaled,
)
from world.node import AnvilStartError, free_port, start_anvil  # noqa: E402

STATE = ROOT / ".world" / "state.json"
MANIFEST = ROOT / "deployments" / "world.json"
DEMO_DIR = ROOT / ".demo"
WAD = 10**18
# anvil's default mnemonic, account 1: the world's keeper. A public local test key only.
KEEPER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
OWNER_INDEX, TRADER_INDEX = 0, 3
TRADER_WETH = 20_000 * WAD
TRADER_USDC = 60_000_000 * 10**6
RANGE_MARGIN = 0.97  # keep the path this far inside the pools' liquidity range
SETTLE_BLOCKS = 6  # blocks mined after the last move so in-flight rebalances can land
RUN_ERRORS = (MarketError, KeeperError, Web3Exception, RequestException, OSError, ValueError)


class DemoError(RuntimeError):
    """The demo cannot go on (a service did not start or died); the message says why."""


# --- console -------------------------------------------------------------------------------


class Console:
    """Thread-safe lines, each stamped with the seconds since the demo started."""

    COLOURS: ClassVar[dict[str, str]] = {
        "demo": "1;36",
        "market": "36",
        "gas": "33",
        "keeper": "32",
        "aggsvc": "35",
        "anvil": "34",
        "warn": "1;33",
        "error": "1;31",
        "summary": "1",
    }

    def __init__(self, on_closed: Callable[[], None]) -> None:
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ
        self.on_closed = on_closed  # called once if the terminal or pipe goes away
        self.closed = False

    def say(self, tag: str, text: str) -> None:
        label = f"{tag:<7}"
        if self.colour:
            label = f"\033[{self.COLOURS.get(tag, '0')}m{label}\033[0m"
        self.plain(f"{time.monotonic() - self.started:6.1f}s {label}| {text}")

    def plain(self, text: str = "") -> None:
        with self.lock:
            if self.closed:
                return
            try:
                print(text, flush=True)
            except OSError:  # e.g. `make demo | head`: the reader left; stop, quietly
                self.closed = True
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                self.on_closed()


# --- child processes -------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[Any]
    reader: threading.Thread | None  # pumps its output; None when the output is not captured

    def alive(self) -> bool:
        return self.popen.poll() is None


def spawn(
    name: str,
    cmd: list[str],
    env: dict[str, str],
    on_line: Callable[[str], None],
    cwd: Path = ROOT,
) -> Child:
    """Start ``cmd`` in its own session (so the terminal's Ctrl-C reaches only this script,
    which then stops the children in order) and pump its output to ``on_line``."""
    popen = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,
    )
    assert popen.stdout is not None
    reader = threading.Thread(target=_pump, args=(popen.stdout, on_line), daemon=True)
    reader.start()
    return Child(name, popen, reader)


def _pump(stream: IO[str], on_line: Callable[[str], None]) -> None:
    for line in stream:
        if line.strip():
            on_line(line.rstrip("\n"))


def stop(child: Child, sig: int, timeout: float) -> int:
    """Signal ``child``'s process group, wait, then kill it if it is still there."""
    if child.alive():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.popen.pid, sig)
        try:
            child.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.popen.pid, signal.SIGKILL)
            child.popen.wait(5)
    if child.reader is not None:
        child.reader.join(2)
    return int(child.popen.returncode)


# --- keeper log lines ----------------------------------------------------------------------

HEX_RE = re.compile(r"0x[0-9a-fA-F]{40,64}")
# Routine steps of sending, shown only with --verbose (the decision, "sent" and "mined" lines
# already tell the story).
QUIET = frozenset(
    {"transaction signed", "transaction sent", "transaction mined", "swap routed", "journal block"}
)


@dataclass
class KeeperLog:
    """Turns the keeper's JSON log lines into short readable ones, and counts decisions."""

    console: Console
    names: dict[str, str]  # lower-case address -> vault name
    verbose: bool = False
    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)
    started: threading.Event = field(default_factory=threading.Event)
    last_shown: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    buying: dict[str, bool] = field(default_factory=dict)  # vault -> last trade buys WETH
    deferred: set[str] = field(default_factory=set)  # vaults deferred and not sent since

    def line(self, raw: str) -> None:
        try:
            record = json.loads(raw)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            self.console.say("keeper", self._names_in(raw))
            return
        msg = str(record.pop("msg", ""))
        level = str(record.pop("level", "info"))
        for key in ("ts", "logger"):
            record.pop(key, None)
        if msg == "keeper started":
            self.started.set()
        text = self._format(msg, record)
        if text is None:
            if msg in QUIET and level == "info" and not self.verbose:
                return
            extra = " ".join(f"{k}={self._value(v)}" for k, v in record.items() if k != "exc")
            text = f"{self._names_in(msg)} {extra}".rstrip()
        if text:
            prefix = "" if level == "info" else f"{level.upper()}: "
            self.console.say("keeper", prefix + text)
        if "exc" in record:
            self.console.say("keeper", str(record["exc"]).splitlines()[-1])

    def _format(self, msg: str, f: dict[str, Any]) -> str | None:
        """The few lines worth a custom layout; None for the generic ``msg k=v`` one."""
        vault = self.name(str(f.get("vault", "?")))
        if msg == "decision":
            return self._decision(f)
        if msg == "rebalance sent":
            names = [self.name(str(v)) for v in f.get("vaults", [])]
            self.deferred.difference_update(names)
            vaults = ", ".join(names)
            tx = self._short(str(f.get("tx")))
            return (
                f"SENT {f.get('call')} of {f.get('legs')} leg(s) [{vaults}]  tx {tx}"
                f"  nonce {f.get('nonce')}  max fee {float(f.get('max_fee_gwei', 0)):.1f} gwei"
            )
        if msg == "book planned":
            matched = int(f.get("matched_underlying", 0)) / WAD
            return (
                f"BOOK   {f.get('legs')} leg(s) in {f.get('settlements')} transaction(s), "
                f"{matched:.3f} WETH matched vault to vault, net to the DEX {f.get('net_in')}"
            )
        if msg == "rebalance mined":
            bought = self.buying.get(vault, True)
            out = int(f.get("amount_out", 0)) / (WAD if bought else 10**6)
            what = f"bought {out:,.4f} WETH" if bought else f"received {out:,.2f} USDC"
            return (
                f"MINED  {vault:<15} block {f.get('block')}: {what}  "
                f"(transaction gas {int(f.get('gas_used', 0)):,})"
            )
        if msg == "hedge verified: back inside the band":
            before = float(f.get("deviation_before", 0))
            return (
                f"verified {vault}: back inside its band, deviation "
                f"{float(f.get('deviation', 0)):+.3f} (was {before:+.3f}), "
                f"band {float(f.get('band', 0)):.3f}"
            )
        if msg == "rebalance deferred: fees above the cap":
            if vault in self.deferred:
                return ""  # said once; it stays deferred until it is sent
            self.deferred.add(vault)
            return (
                f"DEFERRED {vault}: base fee {float(f.get('base_fee_gwei', 0)):.0f} gwei is above "
                f"the cap of {float(f.get('cap_gwei', 0)):.0f} gwei; waits, re-decided every block"
            )
        return None

    def _decision(self, f: dict[str, Any]) -> str:
        """One readable line; "" when it repeats the vault's previous line (same action,
        deviation and sending state: a dry run decides the same again every block)."""
        vault = self.name(str(f.get("vault", "?")))
        action = str(f.get("action", "?"))
        self.decisions[(vault, action)] += 1
        key: tuple[Any, ...] = (action, f.get("reason"))
        if action == "rebalance":
            key = (action, round(float(f.get("deviation", 0)), 3), bool(f.get("sent")))
        if self.last_shown.get(vault) == key:
            return ""
        self.last_shown[vault] = key
        head = f"block {f.get('block', '?')}  {vault:<15} {action.upper():<9}"
        if action != "rebalance":
            return f"{head} {f.get('reason', '')}"
        trade = float(f.get("trade_wei", 0)) / WAD
        self.buying[vault] = trade > 0
        side = f"buy {trade:.3f} WETH" if trade > 0 else f"sell {-trade:.3f} WETH"
        sent = "sent" if f.get("sent") else "not sent"
        urgent = " URGENT" if f.get("urgent") else ""
        reason = str(f.get("reason", ""))
        why = "" if reason.startswith("outside band") else f"  [{reason}]"
        return (
            f"{head} deviation {float(f.get('deviation', 0)):+.3f} vs band "
            f"{float(f.get('band', 0)):.3f} -> {side} ({sent}){urgent}{why}"
        )

    def name(self, address: str) -> str:
        return self.names.get(address.lower(), address)

    def _names_in(self, text: str) -> str:
        return HEX_RE.sub(lambda m: self._short(m.group(0)), text)

    def _short(self, hex_text: str) -> str:
        if hex_text.lower() in self.names:
            return self.names[hex_text.lower()]
        return hex_text[:10] + ".." if len(hex_text) > 12 else hex_text

    def _value(self, value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        text = self._names_in(str(value))
        return json.dumps(text) if " " in text else text


# --- price path ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PricePath:
    prices: list[float]  # prices[0] is the start
    description: str
    clamped_at: frozenset[int] = frozenset()  # steps held inside the pools' liquidity range


def price_path(args: argparse.Namespace, start: float, low: float, high: float) -> PricePath:
    """The path the market follows: ``--prices`` replayed and rescaled, else a GBM walk."""
    if args.prices:
        from keeper.backtest.prices import load_price_csv

        series = load_price_csv(Path(args.prices))
        close = [float(x) for x in series.close[args.offset : args.offset + args.steps + 1]]
        if len(close) < 2:
            raise DemoError(f"{args.prices}: fewer than 2 prices from offset {args.offset}")
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(int(series.timestamps[args.offset])))
        raw = rescaled(close, start)
        what = (
            f"replaying {len(raw) - 1} steps of {Path(args.prices).name} from {when} UTC "
            f"({series.interval_seconds // 60} min per step), rescaled x{start / close[0]:.4g} "
            f"to start at ${start:,.2f}"
        )
    else:
        raw = gbm_path(start, args.steps, args.vol, random.Random(args.seed))
        what = f"random walk (GBM, {args.vol:.2%} per step, seed {args.seed}) from ${start:,.2f}"
    floor, cap = low / RANGE_MARGIN, high * RANGE_MARGIN
    prices, moved = clamped(raw, floor, cap)
    if moved:
        what += (
            f"; {moved} point(s) clamped to ${floor:,.0f}..${cap:,.0f}, inside the pools' "
            f"liquidity range ${low:,.0f}..${high:,.0f}"
        )
    held = frozenset(i for i, (a, b) in enumerate(zip(raw, prices, strict=True)) if a != b)
    return PricePath(prices, what, held)


# --- the run -------------------------------------------------------------------------------


@dataclass
class RunStats:
    start_block: int = 0
    steps: int = 0
    spikes: int = 0
    prices: list[float] = field(default_factory=list)
    interrupted: bool = False
    monitor: str = ""  # what the keeper's /health and /metrics said before it stopped


class Demo:
    def __init__(self, args: argparse.Namespace, console: Console, halt: threading.Event) -> None:
        self.args = args
        self.console = console
        self.halt = halt
        self.manifest: Manifest = load_manifest(MANIFEST)
        self.names = {v.address.lower(): v.name for v in self.manifest.vaults}
        self.children: list[Child] = []
        self.stats = RunStats()
        DEMO_DIR.mkdir(exist_ok=True)
        _prune_databases(keep=4)
        self.db_url = f"sqlite:///{DEMO_DIR / time.strftime('keeper-%Y%m%d-%H%M%S.sqlite')}"
        self.port = free_port()
        self.agg_port = free_port()
        self.metrics_port = free_port()
        self.rpc_url = f"http://127.0.0.1:{self.port}"
        self.w3 = Web3(Web3.HTTPProvider(self.rpc_url, request_kwargs={"timeout": 30}))
        self.keeper_log = KeeperLog(console, self.names, verbose=args.verbose)
        self.driver: MarketDriver | None = None

    # --- start ---------------------------------------------------------------------------

    def start_chain(self) -> MarketDriver:
        say = self.console.say
        say("demo", f"starting anvil on {self.rpc_url} with the saved world ({STATE.name})")
        try:  # in its own session, like the other children: Ctrl-C reaches only this script
            anvil = start_anvil(STATE, self.port, "--no-mining")
        except AnvilStartError as exc:
            raise DemoError(str(exc)) from exc
        self.children.append(Child("anvil", anvil, None))
        accounts = self.w3.eth.accounts
        driver = MarketDriver(
            self.w3,
            self.manifest,
            accounts[OWNER_INDEX],
            accounts[TRADER_INDEX],
            manual_mining=True,
        )
        driver.set_next_base_fee(int(self.args.base_gwei * GWEI))
        answer = driver.refresh_oracle()
        driver.fund_trader(TRADER_WETH, TRADER_USDC)
        self.stats.start_block = int(self.w3.eth.block_number)
        say(
            "demo",
            f"oracle refreshed at ${price_of(answer):,.2f}; trader {driver.trader[:10]}.. funded "
            f"with {TRADER_WETH // WAD:,} WETH and {TRADER_USDC // 10**6:,} USDC",
        )
        self.driver = driver
        return driver

    def start_services(self) -> None:
        python = sys.executable
        agg_url = f"http://127.0.0.1:{self.agg_port}"
        self.console.say("demo", f"starting the local aggregator on {agg_url}")
        cmd = [
            python,
            "-m",
            "keeper.aggsvc",
            "--rpc-url",
            self.rpc_url,
            "--manifest",
            str(MANIFEST),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.agg_port),
            "--log-level",
            "WARNING",
        ]
        self.children.append(spawn("aggsvc", cmd, _child_env({}), self._tagged("aggsvc")))
        self._wait_for("aggsvc", lambda: _http_ok(agg_url + "/_stats"), 30)
        mode = "--dry-run (decides and logs, never sends)" if self.args.dry_run else "live"
        self.console.say(
            "demo",
            f"starting the keeper ({mode}); max fee {self.args.max_fee_gwei:g} gwei, "
            f"database {self.db_url.removeprefix('sqlite:///')}",
        )
        cmd = [*_keeper_cmd(), "run", *(["--dry-run"] if self.args.dry_run else [])]
        # Run from .demo/ so that a .env of the checkout (a real node, a private RPC) is not read.
        env = self.keeper_env(agg_url)
        self.children.append(spawn("keeper", cmd, env, self.keeper_log.line, cwd=DEMO_DIR))
        self.console.say(
            "demo",
            f"keeper metrics and health: http://127.0.0.1:{self.metrics_port}/metrics, /health",
        )

    def read_monitor(self) -> None:
        """Keep what the running keeper's /health and /metrics say, for the summary."""
        base = f"http://127.0.0.1:{self.metrics_port}"
        try:
            health = json.loads(_http_text(base + "/health"))
            metrics = _prometheus_values(_http_text(base + "/metrics"))
        except RUN_ERRORS as exc:
            self.stats.monitor = f"keeper monitor not read: {type(exc).__name__}: {exc}"
            return
        ticks = metrics.get("keeper_ticks_total", 0.0)
        mean_ms = 1e3 * metrics.get("keeper_tick_seconds_sum", 0.0) / max(ticks, 1.0)
        failed = sum(v for k, v in metrics.items() if k.startswith("keeper_tick_failures_total"))
        self.stats.monitor = (
            f"keeper /health: {'healthy' if health.get('healthy') else 'UNHEALTHY'} at block "
            f"{health.get('last_block')}; /metrics: {ticks:.0f} blocks processed, "
            f"{mean_ms:.0f} ms each on average, {failed:.0f} failed, "
            f"{metrics.get('keeper_reorgs_total', 0.0):.0f} reorgs"
        )

    def keeper_env(self, agg_url: str) -> dict[str, str]:
        return _child_env(
            {
                "KEEPER_RPC_URL": self.rpc_url,
                "KEEPER_WS_URL": self.rpc_url.replace("http://", "ws://"),
                "KEEPER_MANIFEST": str(MANIFEST),
                "KEEPER_DB_URL": self.db_url,
                "KEEPER_PRIVATE_KEY": KEEPER_KEY,
                "KEEPER_AGGREGATOR_URL": agg_url,
                "KEEPER_MAX_FEE_GWEI": f"{self.args.max_fee_gwei:g}",
                "KEEPER_EMERGENCY_MAX_FEE_GWEI": f"{max(500.0, self.args.max_fee_gwei):g}",
                "KEEPER_LOG_JSON": "true",
                "KEEPER_LOG_LEVEL": "INFO",
                "KEEPER_METRICS_PORT": str(self.metrics_port),
            }
        )

    def _tagged(self, tag: str) -> Callable[[str], None]:
        return lambda line: self.console.say(tag, line)

    def _wait_for(self, name: str, ready: Callable[[], bool], seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until and not self.halt.is_set():
            self._require_alive()
            with contextlib.suppress(*RUN_ERRORS):
                if ready():
                    return
            time.sleep(0.2)
        if not self.halt.is_set():
            raise DemoError(f"{name} did not become ready within {seconds:.0f}s")

    def _require_alive(self) -> None:
        for child in self.children:
            if not child.alive():
                raise DemoError(f"{child.name} exited (code {child.popen.returncode})")

    # --- drive -------------------------------------------------------------------------

    def drive(self, driver: MarketDriver) -> None:
        args = self.args
        low, high = driver.liquidity_range()
        path = price_path(args, price_of(driver.oracle_answer()), low, high)
        self.console.say("market", path.description)
        blocks_per_step = max(1, round(args.step_seconds / args.block_seconds))
        gas = GasPath(
            random.Random(f"gas-{args.seed}"),
            base_gwei=args.base_gwei,
            spike_prob=args.spike_prob / blocks_per_step,
            spike_gwei=(3.0 * args.max_fee_gwei, 4.5 * args.max_fee_gwei),
            spike_blocks=(2 * blocks_per_step, 3 * blocks_per_step),
        )
        self.stats.prices = [path.prices[0]]
        ticks = self._ticks()
        self._wait_for_keeper(driver, gas, ticks)
        steps = len(path.prices) - 1
        for step in range(1, steps + 1):
            for block in range(blocks_per_step):
                if self.halt.is_set():
                    return
                fee = self._next_fee(gas, True)
                if block == 0 and step == max(1, steps // 2):
                    self._move_capital(CAPITAL_MOVE_WETH)
                    driver.mine(fee)  # in a block of its own
                    next(ticks)
                if block == 0:
                    note = "  CLAMPED to the pools' range" if step in path.clamped_at else ""
                    self._move(driver, step, steps, path.prices[step], fee, note)
                else:
                    driver.mine(fee)
                next(ticks)
        self.console.say("demo", f"path done; mining {SETTLE_BLOCKS} more blocks to settle")
        for _ in range(SETTLE_BLOCKS):
            if self.halt.is_set():
                return
            driver.mine(self._next_fee(gas, False))
            next(ticks)

    def _move_capital(self, amount: int) -> None:
        """Governance moves hedge WETH from the first vault to the second (the caller mines
        it): one must buy it back, the other sell it, in the same block: the keeper nets them
        vault to vault at the oracle price and sends only the difference to the DEX."""
        vaults = self.manifest.vaults
        taker, giver = vaults[0], vaults[1]
        owner = self.w3.eth.accounts[OWNER_INDEX]
        weth = self.manifest.contracts["WETH"].address
        calls = [
            (taker.address, abi.function("IOptionsVault", "withdraw").encode(weth, owner, amount)),
            (weth, abi.function("IERC20Metadata", "approve").encode(giver.address, amount)),
            (giver.address, abi.function("IOptionsVault", "deposit").encode(weth, amount)),
        ]
        fees = {"maxFeePerGas": 2_000 * GWEI, "maxPriorityFeePerGas": GWEI}  # above any spike
        nonce = self.w3.eth.get_transaction_count(owner, "pending")
        for i, (to, data) in enumerate(calls):
            tx = {"from": owner, "to": to, "data": data, "gas": 300_000, "nonce": nonce + i}
            self.w3.eth.send_transaction({**tx, **fees})  # type: ignore[arg-type]
        self.console.say(
            "demo",
            f"governance moves {amount / WAD:g} WETH of hedge from {taker.name} to {giver.name}: "
            "opposite trades in one block, settled netted",
        )

    def _ticks(self) -> Iterator[None]:
        """Waits out the rest of each block interval (woken early by Ctrl-C)."""
        due = time.monotonic()
        while True:
            self._require_alive()
            due += self.args.block_seconds
            self.halt.wait(max(0.0, due - time.monotonic()))
            yield

    def _wait_for_keeper(self, driver: MarketDriver, gas: GasPath, ticks: Iterator[None]) -> None:
        """Mine quiet blocks until the keeper says it has started (it needs heads to follow)."""
        until = time.monotonic() + 60
        quiet_fee = int(gas.base_gwei * GWEI)  # not drawn from the gas path: same path every run
        while not self.keeper_log.started.is_set() and not self.halt.is_set():
            if time.monotonic() > until:
                raise DemoError("the keeper did not start within 60s")
            driver.mine(quiet_fee)
            next(ticks)
        # Two more quiet blocks: the keeper sees the world hedged before the market moves.
        for _ in range(2):
            if not self.halt.is_set():
                driver.mine(quiet_fee)
                next(ticks)

    def _next_fee(self, gas: GasPath, spikes_allowed: bool) -> int:
        was_spiking = gas.in_spike
        fee = gas.next_fee_wei(spikes_allowed)
        if gas.in_spike and not was_spiking:
            self.stats.spikes += 1
            self.console.say(
                "gas",
                f"GAS SPIKE: base fee {fee / GWEI:.0f} gwei for {gas.spike_left + 1} blocks "
                f"(keeper's max fee {self.args.max_fee_gwei:g} gwei)",
            )
        elif was_spiking and not gas.in_spike:
            self.console.say("gas", f"spike over: base fee back to {fee / GWEI:.0f} gwei")
        return fee

    def _move(
        self, driver: MarketDriver, step: int, steps: int, price: float, fee: int, note: str
    ) -> None:
        before = self.stats.prices[-1]
        move = driver.move_to(answer_of(price), fee)
        self.stats.prices.append(price)
        self.stats.steps = step
        pools = " / ".join(f"{p.landed:,.2f}" for p in move.pools)
        self.console.say(
            "market",
            f"step {step:>2}/{steps}  ETH ${price:,.2f} ({price / before - 1:+.2%})  "
            f"pools {pools}  base fee {fee / GWEI:.0f} gwei  (block {move.block_number}){note}",
        )

    # --- stop ----------------------------------------------------------------------------

    def stop_services(self) -> None:
        """Keeper first (it may be sending), then the aggregator; anvil stays for the summary."""
        for name, sig, timeout in (
            ("keeper", signal.SIGINT, 15.0),
            ("aggsvc", signal.SIGINT, 10.0),
        ):
            for child in self.children:
                if child.name == name:
                    code = stop(child, sig, timeout)
                    if code not in (0, -sig, 128 + sig):
                        self.console.say("warn", f"{name} exited with code {code}")

    def stop_chain(self) -> None:
        for child in self.children:
            if child.name == "anvil":
                stop(child, signal.SIGTERM, 10.0)


def _prune_databases(keep: int) -> None:
    """Each run writes a fresh keeper database under .demo/; keep only the newest few."""
    runs = sorted(DEMO_DIR.glob("keeper-*.sqlite"))
    for old in runs[: max(0, len(runs) - keep)]:
        for path in DEMO_DIR.glob(old.name + "*"):  # the database and its -wal/-shm files
            path.unlink(missing_ok=True)


def _keeper_cmd() -> list[str]:
    script = Path(sys.executable).parent / "keeper"
    return [str(script)] if script.exists() else [sys.executable, "-m", "keeper.cli"]


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as reply:
        return int(reply.status) == 200


def _http_text(url: str) -> str:
    """The body of a GET, also for an error status (``/health`` answers 503 when stale)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return str(reply.read().decode())
    except urllib.error.HTTPError as error:
        return str(error.read().decode())


def _prometheus_values(text: str) -> dict[str, float]:
    """``name{labels}`` -> value of a Prometheus text page (comments skipped)."""
    pairs = (line.rsplit(" ", 1) for line in text.splitlines() if line and line[0] != "#")
    return {name: float(value) for name, value in pairs}


# --- summary -------------------------------------------------------------------------------

TRADED = abi.TRADED_TOPIC
CAPITAL_MOVE_WETH = 2 * WAD  # the demo's governance move halfway: opposite trades, netted


@dataclass
class VaultTally:
    rebalances: int = 0
    netted: int = 0  # trades settled through BookSettlement
    weth_bought: int = 0
    weth_sold: int = 0


@dataclass(frozen=True)
class GasSpent:
    transactions: int
    settlements: int  # sent to BookSettlement
    cancels: int  # 0-value transactions to itself, displacing a stuck one
    reverted: int
    gas_used: int
    wei: int


def tally_rebalances(w3: Web3, manifest: Manifest, first: int, last: int) -> dict[str, VaultTally]:
    """Per vault address (lower case): its ``Traded`` events, netted ones counted apart."""
    tallies: dict[str, VaultTally] = defaultdict(VaultTally)
    settlement = manifest.contracts["BookSettlement"].address.lower()
    vaults = [Web3.to_checksum_address(v.address) for v in manifest.vaults]
    span = {"fromBlock": first, "toBlock": last}
    for log in w3.eth.get_logs({**span, "address": vaults, "topics": [TRADED]}):  # type: ignore[typeddict-item]
        tally = tallies[str(log["address"]).lower()]
        traded = abi.TRADED.decode_data(bytes(log["data"]))
        tally.rebalances += 1
        if abi.topic_address(log["topics"][2]).lower() == settlement:
            tally.netted += 1
        if traded["sell_underlying"]:
            tally.weth_sold += int(traded["amount_in"])
        else:
            tally.weth_bought += int(traded["amount_out"])
    return tallies


def keeper_gas(w3: Web3, keeper: str, settlement: str, first: int, last: int) -> GasSpent:
    """Sum of gasUsed x effectiveGasPrice over the keeper's transactions in [first, last]."""
    count = settles = cancels = reverted = gas_used = wei = 0
    for number in range(first, last + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            if isinstance(tx, bytes | str) or str(tx["from"]).lower() != keeper.lower():
                continue
            receipt = w3.eth.get_transaction_receipt(tx["hash"])
            to = str(tx.get("to") or "").lower()
            count += 1
            settles += int(to == settlement.lower())
            cancels += int(to == keeper.lower())
            reverted += int(receipt["status"] != 1)
            gas_used += int(receipt["gasUsed"])
            wei += int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
    return GasSpent(count, settles, cancels, reverted, gas_used, wei)


def print_summary(demo: Demo) -> None:
    console, stats, manifest = demo.console, demo.stats, demo.manifest
    w3 = demo.w3
    last = int(w3.eth.block_number)
    first = stats.start_block + 1
    prices = stats.prices or [0.0]
    end_price = price_of(demo.driver.oracle_answer()) if demo.driver else prices[-1]
    console.plain()
    console.plain("=" * 78)
    how = "interrupted" if stats.interrupted else "finished"
    console.plain(
        f"Demo {how}: {_count(stats.steps, 'price step')}, {_count(last - first + 1, 'block')} "
        f"({first}..{last}), {_count(stats.spikes, 'gas spike')}; "
        f"keeper {'dry run' if demo.args.dry_run else 'live'}"
    )
    console.plain(
        f"ETH ${prices[0]:,.2f} -> ${end_price:,.2f}  (low ${min(prices):,.2f}, "
        f"high ${max(prices):,.2f})"
    )
    tallies = tally_rebalances(w3, manifest, first, last)
    decided = demo.keeper_log.decisions
    console.plain()
    console.plain(
        f"{'vault':<16}{'rebalances':>11}{'netted':>10}"
        f"{'WETH bought':>12}{'WETH sold':>10}   decisions logged"
    )
    for vault in manifest.vaults:
        t = tallies.get(vault.address.lower(), VaultTally())
        logged = ", ".join(
            f"{decided[(vault.name, a)]} {a}"
            for a in ("rebalance", "skip")
            if decided[(vault.name, a)]
        )
        console.plain(
            f"{vault.name:<16}{t.rebalances:>11}{t.netted:>10}"
            f"{t.weth_bought / WAD:>12.3f}{t.weth_sold / WAD:>10.3f}   {logged or '-'}"
        )
    gas = keeper_gas(w3, manifest.keeper, manifest.contracts["BookSettlement"].address, first, last)
    console.plain()
    console.plain(
        f"keeper gas: {_count(gas.transactions, 'transaction')} ({gas.settlements} netted "
        f"settlement(s), {_count(gas.cancels, 'cancel')}), {gas.reverted} reverted, "
        f"{gas.gas_used:,} gas, {gas.wei / WAD:.5f} ETH (~${gas.wei / WAD * end_price:,.2f})"
        + (f", {gas.wei / max(gas.gas_used, 1) / GWEI:.1f} gwei on average" if gas.gas_used else "")
    )
    if demo.stats.monitor:
        console.plain(demo.stats.monitor)
    print_final_state(demo)
    console.plain("=" * 78)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def print_final_state(demo: Demo) -> None:
    """Each vault's latest stored decision: delta, deviation from target, band."""
    from keeper.store import Store

    console = demo.console
    store = Store(demo.db_url)
    try:
        latest = {d.vault.lower(): d for d in store.latest_decisions()}
    finally:
        store.close()
    console.plain()
    if not latest:
        console.plain("final state: the keeper stored no decisions")
        return
    block = max(d.block_number for d in latest.values())
    console.plain(f"final state (the keeper's latest decision per vault, up to block {block}):")
    console.plain(
        f"{'vault':<16}{'delta':>9}{'target':>8}{'deviation':>11}{'band':>8}  {'':<13}last decision"
    )
    for vault in demo.manifest.vaults:
        d = latest.get(vault.address.lower())
        if d is None:
            console.plain(f"{vault.name:<16}  (no decision stored)")
            continue
        where = "inside band" if abs(d.deviation) <= d.band else "OUTSIDE"
        console.plain(
            f"{vault.name:<16}{d.delta:>9.3f}{d.delta - d.deviation:>8.2f}{d.deviation:>+11.3f}"
            f"{d.band:>8.3f}  {where:<13}"
            f"{d.action.value} @ {d.block_number}: {d.reason}"
        )


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="scripts/demo.py", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument("--steps", type=int, default=30, help="price steps (default 30)")
    p.add_argument("--step-seconds", type=float, default=3.0, help="seconds per step (3)")
    p.add_argument("--block-seconds", type=float, default=1.0, help="seconds per block (1)")
    p.add_argument("--prices", metavar="FILE", help="replay a price CSV (../shared/data/*.csv)")
    p.add_argument("--offset", type=int, default=0, help="first row of --prices to replay (0)")
    p.add_argument(
        "--vol",
        type=float,
        default=0.0025,
        help="random walk: volatility per step, as a fraction (0.0025 = 0.25%%)",
    )
    p.add_argument(
        "--seed", type=int, default=31, help="random seed of the price and gas paths (31)"
    )
    p.add_argument(
        "--spike-prob",
        type=float,
        default=0.08,
        help="chance per step that a gas spike starts (0.08)",
    )
    p.add_argument("--base-gwei", type=float, default=20.0, help="base fee level in gwei (20)")
    p.add_argument(
        "--max-fee-gwei",
        type=float,
        default=100.0,
        help="the keeper's KEEPER_MAX_FEE_GWEI; spikes go to 3-4.5x this (100)",
    )
    p.add_argument("--dry-run", action="store_true", help="the keeper decides but never sends")
    p.add_argument("--verbose", action="store_true", help="every keeper log line, unabridged")
    args = p.parse_args(argv)
    if args.steps < 1 or args.step_seconds <= 0 or args.block_seconds <= 0:
        p.error("--steps, --step-seconds and --block-seconds must be positive")
    if not (0 < args.vol < 0.2) or not (0 <= args.spike_prob <= 1) or args.offset < 0:
        p.error("--vol must be in (0, 0.2), --spike-prob in [0, 1], --offset >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    halt = threading.Event()
    console = Console(halt.set)
    for needed in (STATE, MANIFEST):
        if not needed.is_file():
            console.say("error", f"{needed} is missing: run `make world` (or `make demo`) first")
            return 2

    def on_signal(signum: int, _frame: Any) -> None:
        if not halt.is_set():
            console.say("demo", f"{signal.Signals(signum).name}: stopping the demo")
        halt.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        demo = Demo(args, console, halt)
    except (ManifestFormatError, OSError) as exc:
        console.say("error", str(exc))
        return 2
    code = 0
    try:
        driver = demo.start_chain()
        if not halt.is_set():
            demo.start_services()
        if not halt.is_set():
            demo.drive(driver)
    except (DemoError, *RUN_ERRORS) as exc:
        console.say("error", f"{type(exc).__name__}: {exc}")
        code = 1
    finally:
        demo.stats.interrupted = halt.is_set()
        demo.read_monitor()
        console.say("demo", "stopping the keeper and the aggregator")
        demo.stop_services()
        try:
            if demo.driver is not None:
                print_summary(demo)
        except (*RUN_ERRORS,) as exc:
            console.say("error", f"summary incomplete: {type(exc).__name__}: {exc}")
            code = code or 1
        console.say("demo", "stopping anvil")
        demo.stop_chain()
    return code


if __name__ == "__main__":
    sys.exit(main())
