"""``keeper doctor`` and the same checks at start: is this set-up able to keep the vaults?

Each check is a ``Finding``. At start (``preflight``) the chain-side ones are fatal where
running cannot help: a manifest address without the code it names (a stale manifest after a
redeploy decodes garbage every block), a key that lacks the role it needs (every
transaction would revert). A balance below an urgent rebalance at the emergency fee cap
only warns (it can be topped up while the keeper runs; ``keeper_balance_eth`` alerts on it).

The role check is read from the manifest: the key must be a keeper of every vault it names
(``isKeeper``), both for direct rebalances and for netted settlements (BookSettlement checks
each vault's own keeper list, docs/interfaces.md).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from keeper.chain.retry import RetryPolicy
from keeper.chain.rpc import RpcClient, RpcConfig
from keeper.config import GWEI, Settings, read_manifest
from keeper.core import abi
from keeper.errors import ConfigError, KeeperError

log = logging.getLogger("keeper.doctor")

WEI_PER_ETH = 10**18


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str
    fatal: bool = True  # at start: refuse to run on it (else: a warning)


# --- the chain side (also run at start) --------------------------------------------------------


@dataclass(frozen=True)
class RoleCheck:
    label: str
    contract: str
    view: abi.Function  # (address) -> bool, from the shipped ABI

    @property
    def signature(self) -> str:
        return self.view.signature


def role_checks(manifest: dict[str, Any]) -> list[RoleCheck]:
    """Which role the key needs where, from the manifest (see the module docstring)."""
    return [
        RoleCheck(f"keeper of vault {v['name']}", v["address"], abi.function(abi.VAULT, "isKeeper"))
        for v in manifest.get("vaults", [])
    ]


def deployed(manifest: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(name, address, code hash) of every contract and vault the manifest names."""
    items = [(n, c["address"], c["codehash"]) for n, c in manifest.get("contracts", {}).items()]
    items += [
        (f"vault {v['name']}", v["address"], v["codehash"]) for v in manifest.get("vaults", [])
    ]
    return items


async def check_code(rpc: RpcClient, manifest: dict[str, Any]) -> list[Finding]:
    findings = []
    for name, address, codehash in deployed(manifest):
        code = await rpc.call("eth_getCode", [address, "latest"])
        raw = bytes.fromhex(str(code)[2:])
        if not raw:
            findings.append(
                Finding(
                    f"code {name}", False, f"no code at {address}: a stale manifest (redeploy?)"
                )
            )
        elif (found := "0x" + keccak(raw).hex()) != codehash.lower():
            findings.append(
                Finding(
                    f"code {name}",
                    False,
                    f"the code at {address} is not the manifest's (hash {found}, "
                    f"manifest {codehash})",
                )
            )
    if not findings:
        findings.append(
            Finding("code", True, f"{len(deployed(manifest))} contracts match the manifest")
        )
    return findings


async def check_roles(rpc: RpcClient, manifest: dict[str, Any], key: str) -> list[Finding]:
    findings = []
    for check in role_checks(manifest):
        data = "0x" + (check.view.selector + bytes(12) + bytes.fromhex(key[2:])).hex()
        try:
            answer = await rpc.call("eth_call", [{"to": check.contract, "data": data}, "latest"])
        except KeeperError as exc:
            findings.append(
                Finding(check.label, False, f"{check.contract} has no {check.signature}: {exc}")
            )
            continue
        has_role = int(str(answer), 16) == 1 if answer not in (None, "0x") else False
        detail = (
            f"{key} is {check.label}"
            if has_role
            else f"{key} is not {check.label} ({check.signature} is false at {check.contract}): "
            "every transaction would revert"
        )
        findings.append(Finding(check.label, has_role, detail))
    return findings


async def check_balance(rpc: RpcClient, settings: Settings, key: str) -> Finding:
    balance = int(await rpc.call("eth_getBalance", [key, "latest"]), 16)
    worst = settings.gas_units_per_rebalance * settings.emergency_max_fee_wei
    shown = f"{Decimal(balance) / WEI_PER_ETH:.4f} ETH"
    if balance >= worst:
        return Finding(
            "balance", True, f"{shown} covers an urgent rebalance at the emergency cap", fatal=False
        )
    return Finding(
        "balance",
        False,
        f"{shown} is below an urgent rebalance at the emergency cap "
        f"({Decimal(worst) / WEI_PER_ETH:.4f} ETH = "
        f"KEEPER_GAS_UNITS_PER_REBALANCE {settings.gas_units_per_rebalance} x "
        f"KEEPER_EMERGENCY_MAX_FEE_GWEI "
        f"{settings.emergency_max_fee_wei / GWEI:g}): fund {key}",
        fatal=False,
    )


async def preflight(settings: Settings, rpc: RpcClient, key: str | None) -> list[Finding]:
    """The chain-side checks: code, roles (with a key), balance (with a key)."""
    if settings.manifest is None:
        return [Finding("manifest", True, "no KEEPER_MANIFEST: code and roles not checked", False)]
    manifest = read_manifest(settings.manifest)
    findings = await check_code(rpc, manifest)
    if key is None:
        findings.append(Finding("key", True, "no key (dry run): roles and balance not checked"))
        return findings
    findings += await check_roles(rpc, manifest, to_checksum_address(key))
    findings.append(await check_balance(rpc, settings, to_checksum_address(key)))
    return findings


def enforce(findings: list[Finding]) -> None:
    """At start: ``ConfigError`` listing the fatal failures; warnings are logged."""
    for f in findings:
        if not f.ok and not f.fatal:
            log.warning("preflight: %s: %s", f.check, f.detail)
    fatal = [f for f in findings if not f.ok and f.fatal]
    if fatal:
        raise ConfigError("preflight failed: " + "; ".join(f"{f.check}: {f.detail}" for f in fatal))


# --- keeper doctor ------------------------------------------------------------------------------


async def diagnose(settings: Settings) -> list[Finding]:
    """Every check, going on past failures where the next check does not depend on them."""
    findings = [Finding("settings", True, "every KEEPER_ key is known and valid")]
    bound_chain = _check_database(settings, findings)
    rpc = RpcClient(
        RpcConfig(
            urls=settings.rpc_endpoints,
            timeout_seconds=min(settings.rpc_timeout_seconds, 5.0),
            policy=RetryPolicy(attempts=2, max_seconds=10),
        )
    )
    try:
        chain_id = await _check_nodes(settings, rpc, findings, bound_chain)
        if chain_id is None:
            return findings
        key = _key(settings, findings)
        findings += await preflight(settings, rpc, key)
    except KeeperError as exc:
        findings.append(Finding("node", False, str(exc)))
    finally:
        await rpc.close()
    return findings


def _check_database(settings: Settings, findings: list[Finding]) -> int | None:
    """Reachable, writable, migrated, which chain; a SQLite file that does not exist yet is
    not created (``keeper run`` creates it)."""
    from keeper.store import Store, migrations
    from keeper.store.store import check_url

    try:
        parsed = check_url(settings.db_url)
    except ConfigError as exc:
        findings.append(Finding("database", False, str(exc)))
        return None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(str(parsed.database)).expanduser().resolve()
        if not path.exists():
            writable = os.access(path.parent, os.W_OK)
            detail = f"no database yet at {path}: keeper run creates it" + (
                "" if writable else f", but {path.parent} is not writable"
            )
            findings.append(Finding("database", writable, detail))
            return None
    try:
        store = Store(settings.db_url, schema=settings.db_schema)
    except ConfigError as exc:
        findings.append(Finding("database", False, str(exc)))
        return None
    try:
        with store._tx() as conn:
            revision, _ = migrations.state(conn)
        chain = store.bound_chain()
        store.probe_write()
        leader = store.lease_holder()
    except KeeperError as exc:
        findings.append(Finding("database", False, str(exc)))
        return None
    finally:
        store.close()
    where = f" (schema {settings.db_schema})" if settings.db_schema else ""
    lease = f"; leader lease: {leader}" if leader else "; no leader yet"
    findings.append(
        Finding("database", True, f"reachable and writable{where}, revision {revision}{lease}")
    )
    return chain


async def _check_nodes(
    settings: Settings, rpc: RpcClient, findings: list[Finding], bound: int | None
) -> int | None:
    from keeper.runner import expected_chain

    try:
        chain_id = await rpc.check_endpoints()
    except KeeperError as exc:
        findings.append(Finding("node", False, f"{settings.rpc_setting}: {exc}"))
        return None
    await rpc.latest_block()
    for endpoint in rpc.endpoints:
        state = rpc.state(endpoint)
        findings.append(
            Finding(
                f"node {endpoint.name}",
                state != "down",
                f"{state}, head {endpoint.head}" if endpoint.head is not None else state,
                fatal=False,
            )
        )
    expected, source = expected_chain(settings)
    if expected is not None and expected != chain_id:
        findings.append(
            Finding(
                "chain id", False, f"node is on chain {chain_id}, expected {expected} ({source})"
            )
        )
        return None
    if bound is not None and bound != chain_id:
        findings.append(
            Finding(
                "chain id", False, f"KEEPER_DB_URL journals chain {bound}, node is on {chain_id}"
            )
        )
        return None
    findings.append(Finding("chain id", True, f"{chain_id} (expected from {source})"))
    return chain_id


def _key(settings: Settings, findings: list[Finding]) -> str | None:
    from keeper.tx.signer import load_signer

    if settings.keystore_path is None and settings.private_key is None:
        return None
    try:
        return str(load_signer(settings).address)
    except ConfigError as exc:
        findings.append(Finding("key", False, str(exc)))
        return None


async def main(settings: Settings) -> int:
    findings = await diagnose(settings)
    width = max(len(f.check) for f in findings)
    for f in findings:
        mark = "ok  " if f.ok else ("FAIL" if f.fatal else "warn")
        print(f"{mark} {f.check:<{width}}  {f.detail}")
    failed = [f for f in findings if not f.ok and f.fatal]
    print(f"\n{len(failed)} problem(s)" if failed else "\nall checks passed")
    return 1 if failed else 0
