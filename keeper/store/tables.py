"""The keeper's tables (SQLAlchemy Core), portable between SQLite and PostgreSQL.

Amounts that can exceed 64 bits (wei, token base units) are stored as decimal text
(``BigAmount``) so that neither backend rounds them. Tables are defined without a schema;
``Store(schema=...)`` maps them into one with ``schema_translate_map``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)


class BigAmount(TypeDecorator[int]):
    """An arbitrary-size signed int, stored as decimal text."""

    impl = String(80)
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Dialect) -> str | None:
        return None if value is None else str(int(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


metadata = MetaData()

# What the database was made by and for: the schema version and the chain it journals.
meta = Table(
    "keeper_meta",
    metadata,
    Column("key", String(32), primary_key=True),
    Column("value", String(80), nullable=False),
)

blocks = Table(
    "keeper_blocks",
    metadata,
    Column("number", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", String(66), nullable=False),
    Column("parent_hash", String(66), nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("base_fee_wei", BigAmount, nullable=False),
)

decisions = Table(
    "keeper_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("vault", String(42), nullable=False),
    Column("block_number", BigInteger, nullable=False),
    Column("block_hash", String(66), nullable=False),
    Column("action", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("delta", Float, nullable=False),
    Column("gamma", Float, nullable=False),
    Column("band", Float, nullable=False),
    Column("deviation", Float, nullable=False),
    Column("urgent", Boolean, nullable=False),
    Column("trade_wei", BigAmount, nullable=False),
    Column("spot_answer", BigAmount, nullable=False),
    Index("ix_keeper_decisions_vault_block", "vault", "block_number"),
    Index("ix_keeper_decisions_block", "block_number"),
)

markers = Table(
    "keeper_markers",
    metadata,
    Column("vault", String(42), primary_key=True),
    Column("request_nonce", BigInteger, nullable=False),
    Column("params_version", BigInteger, nullable=False),
    Column("updated_at", Float, nullable=False),
)

journal = Table(
    "keeper_journal",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("root_id", Integer, nullable=True),  # the first entry of a same-nonce group
    Column("kind", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("payload", Text, nullable=False),  # JSON
    Column("urgent", Boolean, nullable=False),
    Column("sender", String(42), nullable=False),
    Column("to_address", String(42), nullable=False),
    Column("value_wei", BigAmount, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("gas_limit", BigInteger, nullable=True),
    Column("nonce", BigInteger, nullable=True),
    Column("chain_id", BigInteger, nullable=True),
    Column("max_fee_wei", BigAmount, nullable=True),
    Column("priority_fee_wei", BigAmount, nullable=True),
    Column("tx_hash", String(66), nullable=True, unique=True),
    Column("raw_tx", LargeBinary, nullable=True),
    Column("sent_at_block", BigInteger, nullable=True),
    Column("mined_block_number", BigInteger, nullable=True),
    Column("mined_block_hash", String(66), nullable=True),
    Column("receipt_status", Integer, nullable=True),
    Column("replaces_id", Integer, nullable=True),
    Column("replaced_by_id", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_keeper_journal_state", "state"),
    Index("ix_keeper_journal_sender_nonce", "sender", "nonce"),
    Index("ix_keeper_journal_root", "root_id"),
)

# One row per vault a rebalance is in flight for: the primary key is what stops two
# keeper instances from sending for the same vault at once.
vault_claims = Table(
    "keeper_vault_claims",
    metadata,
    Column("vault", String(42), primary_key=True),
    Column("root_id", Integer, nullable=False),
    Index("ix_keeper_vault_claims_root", "root_id"),
)

nonces = Table(
    "keeper_nonces",
    metadata,
    Column("sender", String(42), primary_key=True),
    Column("next_nonce", BigInteger, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Nonces below next_nonce that were handed out and given back (a transaction that could
# not be signed or was refused before it reached the chain): handed out again first.
free_nonces = Table(
    "keeper_free_nonces",
    metadata,
    Column("sender", String(42), primary_key=True),
    Column("nonce", BigInteger, primary_key=True, autoincrement=False),
)

# The leader lease (keeper.store.lease): one row per keeper identity; ``epoch`` grows on every
# change of holder and fences every write of the leader.
lease = Table(
    "keeper_lease",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("expires_at", Float, nullable=False),  # unix seconds, database clock
)
