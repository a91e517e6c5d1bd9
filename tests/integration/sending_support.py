"""Helpers for the sending tests: a private anvil per test, funded keys, store backends.

Each test starts its own ``anvil`` (about 0.15 s) because the tests change mining modes,
base fees and block gas limits, and revert snapshots.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy import create_engine, text
from web3 import AsyncWeb3
from web3.providers import AsyncHTTPProvider

from world.node import free_port, running_anvil

ROOT = Path(__file__).resolve().parents[2]
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

# anvil's default mnemonic ("test test ... junk"), accounts 1-3: well-known test keys.
KEEPER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
OTHER_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
RECIPIENT_KEY = "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"
GWEI = 10**9


def account(key: str) -> LocalAccount:
    acct: LocalAccount = Account.from_key(key)
    return acct


@dataclass
class Anvil:
    url: str
    process: subprocess.Popen[bytes]


@contextmanager
def anvil(*extra: str) -> Iterator[Anvil]:
    """A fresh anvil on a free port, stopped afterwards."""
    port = free_port()
    with running_anvil(None, port, *extra) as process:
        yield Anvil(f"http://127.0.0.1:{port}", process)


def web3(url: str, timeout: float = 10.0) -> AsyncWeb3[Any]:
    """A client without web3's own retries: ``keeper.chain.retry`` is the one retry place."""
    provider = AsyncHTTPProvider(
        url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None
    )
    return AsyncWeb3(provider)


@asynccontextmanager
async def connected(url: str, timeout: float = 10.0) -> AsyncIterator[AsyncWeb3[Any]]:
    """A ``web3`` client, disconnected afterwards (also when the test fails)."""
    w3 = web3(url, timeout)
    try:
        yield w3
    finally:
        await w3.provider.disconnect()  # type: ignore[attr-defined]


async def rpc(w3: AsyncWeb3[Any], method: str, *params: Any) -> Any:
    """A raw JSON-RPC call (anvil's test methods); raises on an error answer."""
    response = await w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    if "error" in response:
        raise RuntimeError(f"{method}: {response['error']}")
    return response.get("result")


async def mine(w3: AsyncWeb3[Any], blocks: int = 1) -> None:
    for _ in range(blocks):
        await rpc(w3, "evm_mine")


async def send_direct(
    w3: AsyncWeb3[Any],
    key: str,
    nonce: int,
    to: str,
    value: int,
    max_fee: int,
    tip: int,
    gas: int = 21_000,
) -> str:
    """Sign and send a plain transfer outside the keeper; returns its hash."""
    signer = account(key)
    signed = signer.sign_transaction(
        {
            "type": 2,
            "chainId": await w3.eth.chain_id,
            "nonce": nonce,
            "to": to,
            "value": value,
            "gas": gas,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": tip,
        }
    )
    return "0x" + bytes(await w3.eth.send_raw_transaction(signed.raw_transaction)).hex()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --- store backends ---------------------------------------------------------------------------


def postgres_unreachable() -> str | None:
    """None when the PostgreSQL test server answers, else the reason to skip."""
    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 2})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means: skip, with the reason
        return f"PostgreSQL at {PG_URL} unreachable: {exc}"
    return None


@dataclass
class StoreBackend:
    """Where the tests' stores live: a SQLite file, or a PostgreSQL schema of their own."""

    kind: str
    url: str
    schema: str | None

    @classmethod
    def make(cls, kind: str, tmp_path: Path) -> StoreBackend:
        if kind == "postgres":
            return cls(kind, PG_URL, f"t_{uuid.uuid4().hex[:16]}")
        return cls(kind, f"sqlite:///{tmp_path / 'keeper.sqlite'}", None)

    def drop(self) -> None:
        if self.schema is None:
            return
        engine = create_engine(PG_URL)
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        engine.dispose()
