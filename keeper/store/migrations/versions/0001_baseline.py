"""Baseline: the schema of release 0.1 (keeper_meta schema_version 1).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

AMOUNT = sa.String(80)  # keeper.store.tables.BigAmount: an int stored as decimal text


def upgrade() -> None:
    op.create_table(
        "keeper_meta",
        sa.Column("key", sa.String(32), primary_key=True),
        sa.Column("value", sa.String(80), nullable=False),
    )
    op.create_table(
        "keeper_blocks",
        sa.Column("number", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.String(66), nullable=False),
        sa.Column("parent_hash", sa.String(66), nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.Column("base_fee_wei", AMOUNT, nullable=False),
    )
    op.create_table(
        "keeper_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("vault", sa.String(42), nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.Column("block_hash", sa.String(66), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("delta", sa.Float, nullable=False),
        sa.Column("gamma", sa.Float, nullable=False),
        sa.Column("band", sa.Float, nullable=False),
        sa.Column("deviation", sa.Float, nullable=False),
        sa.Column("urgent", sa.Boolean, nullable=False),
        sa.Column("trade_wei", AMOUNT, nullable=False),
        sa.Column("spot_answer", AMOUNT, nullable=False),
    )
    op.create_index(
        "ix_keeper_decisions_vault_block", "keeper_decisions", ["vault", "block_number"]
    )
    op.create_index("ix_keeper_decisions_block", "keeper_decisions", ["block_number"])
    op.create_table(
        "keeper_markers",
        sa.Column("vault", sa.String(42), primary_key=True),
        sa.Column("request_nonce", sa.BigInteger, nullable=False),
        sa.Column("params_version", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "keeper_journal",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("root_id", sa.Integer, nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("urgent", sa.Boolean, nullable=False),
        sa.Column("sender", sa.String(42), nullable=False),
        sa.Column("to_address", sa.String(42), nullable=False),
        sa.Column("value_wei", AMOUNT, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("gas_limit", sa.BigInteger, nullable=True),
        sa.Column("nonce", sa.BigInteger, nullable=True),
        sa.Column("chain_id", sa.BigInteger, nullable=True),
        sa.Column("max_fee_wei", AMOUNT, nullable=True),
        sa.Column("priority_fee_wei", AMOUNT, nullable=True),
        sa.Column("tx_hash", sa.String(66), nullable=True, unique=True),
        sa.Column("raw_tx", sa.LargeBinary, nullable=True),
        sa.Column("sent_at_block", sa.BigInteger, nullable=True),
        sa.Column("mined_block_number", sa.BigInteger, nullable=True),
        sa.Column("mined_block_hash", sa.String(66), nullable=True),
        sa.Column("receipt_status", sa.Integer, nullable=True),
        sa.Column("replaces_id", sa.Integer, nullable=True),
        sa.Column("replaced_by_id", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_keeper_journal_state", "keeper_journal", ["state"])
    op.create_index("ix_keeper_journal_sender_nonce", "keeper_journal", ["sender", "nonce"])
    op.create_index("ix_keeper_journal_root", "keeper_journal", ["root_id"])
    op.create_table(
        "keeper_vault_claims",
        sa.Column("vault", sa.String(42), primary_key=True),
        sa.Column("root_id", sa.Integer, nullable=False),
    )
    op.create_index("ix_keeper_vault_claims_root", "keeper_vault_claims", ["root_id"])
    op.create_table(
        "keeper_nonces",
        sa.Column("sender", sa.String(42), primary_key=True),
        sa.Column("next_nonce", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "keeper_free_nonces",
        sa.Column("sender", sa.String(42), primary_key=True),
        sa.Column("nonce", sa.BigInteger, primary_key=True, autoincrement=False),
    )
    op.bulk_insert(
        sa.table("keeper_meta", sa.column("key", sa.String), sa.column("value", sa.String)),
        [{"key": "schema_version", "value": "1"}],
    )


def downgrade() -> None:
    for table in (
        "keeper_free_nonces",
        "keeper_nonces",
        "keeper_vault_claims",
        "keeper_journal",
        "keeper_markers",
        "keeper_decisions",
        "keeper_blocks",
        "keeper_meta",
    ):
        op.drop_table(table)
