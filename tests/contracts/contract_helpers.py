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


World = WorldHandles  # the contract tests' name for it


def deadline(seconds: int = 600) -> int:
    return int(chain.pending_timestamp) + seconds


def refresh_oracle(world: World, deployer: Any, answer: int | None = None) -> None:
    """A new oracle round, updated now (at the current or a new answer)."""
    value = int(world.feed.latestRoundData()[1]) if answer is None else answer
    world.feed.setAnswer(value, sender=deployer)


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


def error_data(signature: str, types: list[str], values: list[Any]) -> bytes:
    """ABI revert data of a custom error: selector + encoded arguments."""
    return keccak(text=signature)[:4] + encode(types, values)


def oracle_bound(amount_weth: int, answer: int = PRICE * ORACLE, bps: int = 100) -> int:
    """USDC the vault must receive for ``amount_weth`` at the oracle, less ``bps``."""
    fair = amount_weth * answer * USDC // (WAD * ORACLE)
    return fair * (10_000 - bps) // 10_000
