"""Helpers shared by the contract tests (imported by conftest and the test modules)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ape import chain
from eth_abi.abi import encode
from eth_utils.crypto import keccak

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from world.handles import WorldHandles  # noqa: E402

WAD = 10**18
USDC = 10**6
ORACLE = 10**8
PRICE = 3000
BPS = 10_000


World = WorldHandles  # the contract tests' name for it


def deadline(seconds: int = 600) -> int:
    return int(chain.pending_timestamp) + seconds


def refresh_oracle(world: World, deployer: Any, answer: int | None = None) -> None:
    """A new oracle round, updated now (at the current or a new answer)."""
    value = int(world.feed.latestRoundData()[1]) if answer is None else answer
    world.feed.setAnswer(value, sender=deployer)


def trade(
    vault: Any,
    sell: bool,
    amount_in: int,
    min_out: int = 0,
    nonce: int | None = None,
    until: int | None = None,
) -> tuple[bool, int, int, int, int]:
    """An IOptionsVault.Trade computed from the vault's current state (its stateNonce)."""
    expected = int(vault.stateNonce()) if nonce is None else nonce
    return (sell, amount_in, min_out, expected, deadline() if until is None else until)


def exact_input_single(
    world: World,
    token_in: Any,
    token_out: Any,
    fee: int,
    recipient: Any,
    amount_in: int,
    min_out: int = 0,
) -> bytes:
    """SwapRouter.exactInputSingle calldata."""
    params = (token_in, token_out, fee, recipient, deadline(), amount_in, min_out, 0)
    return bytes(world.router.exactInputSingle.encode_input(params))


def swap_on_pool(
    world: World, vault: Any, keeper: Any, sell: bool, amount_in: int, fee: int = 500
) -> Any:
    """A keeper's rebalance through the world's SwapRouter and the pool of ``fee``."""
    token_in, token_out = (world.weth, world.usdc) if sell else (world.usdc, world.weth)
    data = exact_input_single(world, token_in, token_out, fee, vault, amount_in)
    return vault.rebalance(trade(vault, sell, amount_in), world.router, data, sender=keeper)


def set_deviation(vault: Any, governance: Any, deviation: int) -> None:
    """Move the vault's target so that deviationWad() becomes ``deviation`` (wad): a vault
    that must sell (positive) or buy (negative) that much underlying."""
    params = list(vault.params())
    params[2] = int(params[2]) + int(vault.deviationWad()) - deviation  # targetDeltaWad
    vault.setParams(tuple(params), sender=governance)


def set_guards(vault: Any, governance: Any, **changes: int) -> None:
    """Apply guards changed by ``changes`` (field names of the struct), waiting out the delay
    when they loosen."""
    fields = (
        "maxSlippageBps",
        "notionalCap",
        "lossBudget",
        "windowSeconds",
        "maxTradeNotional",
        "correctiveReserveBps",
        "maxOvershootWad",
        "oracleHeartbeat",
    )
    current = dict(zip(fields, (int(v) for v in vault.guards()), strict=True))
    current.update(changes)
    receipt = vault.proposeGuards(tuple(current[f] for f in fields), sender=governance)
    (proposed,) = receipt.decode_logs(vault.GuardsProposed)
    if proposed.loosens:
        chain.pending_timestamp = int(proposed.eta)
        vault.applyGuards(sender=governance)


def error_data(signature: str, types: list[str], values: list[Any]) -> bytes:
    """ABI revert data of a custom error: selector + encoded arguments."""
    return keccak(text=signature)[:4] + encode(types, values)


def oracle_value(amount_weth: int, answer: int = PRICE * ORACLE) -> int:
    """USDC value of ``amount_weth`` at the oracle (rounded down, as the vault)."""
    return amount_weth * answer * USDC // (WAD * ORACLE)


def oracle_bound(amount_weth: int, answer: int = PRICE * ORACLE, bps: int = 100) -> int:
    """USDC the vault must receive for ``amount_weth`` at the oracle, less ``bps``."""
    return oracle_value(amount_weth, answer) * (BPS - bps) // BPS


def vault_value(world: World, vault: Any, answer: int = PRICE * ORACLE) -> int:
    """Quote held plus underlying held at the oracle, USDC units."""
    return int(world.usdc.balanceOf(vault)) + oracle_value(int(world.weth.balanceOf(vault)), answer)
