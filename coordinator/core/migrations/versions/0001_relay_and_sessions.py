"""Sign-in nonces, sessions, and the consent relay's outbox (batches and items).

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sign_in_nonces",
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("issued_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("nonce", name=op.f("pk_sign_in_nonces")),
    )
    op.create_index(op.f("ix_sign_in_nonces_expires_at"), "sign_in_nonces", ["expires_at"])

    op.create_table(
        "sessions",
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("csrf_sha256", sa.String(64), nullable=False),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_sessions")),
    )
    op.create_index(op.f("ix_sessions_address"), "sessions", ["address"])
    op.create_index(op.f("ix_sessions_expires_at"), "sessions", ["expires_at"])

    op.create_table(
        "relay_batches",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("relayer", sa.String(42), nullable=False),
        sa.Column("account_nonce", sa.BigInteger(), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("raw_tx", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_relay_batches")),
        sa.UniqueConstraint("tx_hash", name=op.f("uq_relay_batches_tx_hash")),
    )
    op.create_index(op.f("ix_relay_batches_state"), "relay_batches", ["state"])

    op.create_table(
        "relay_items",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("patient", sa.String(42), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("hospital", sa.String(42), nullable=False),
        sa.Column("purpose", sa.Integer(), nullable=False),
        sa.Column("disease", sa.BigInteger(), nullable=False),
        sa.Column("study_id", sa.BigInteger(), nullable=False),
        sa.Column("kinds", sa.Integer(), nullable=True),
        sa.Column("expires_at", sa.String(20), nullable=True),
        sa.Column("nonce", sa.BigInteger(), nullable=False),
        sa.Column("deadline", sa.BigInteger(), nullable=False),
        sa.Column("signature", sa.String(132), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=True),
        sa.Column("batch_index", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("consent_id", sa.String(66), nullable=True),
        sa.Column("event", sa.String(32), nullable=True),
        sa.Column("error", sa.String(96), nullable=True),
        sa.Column("error_detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["batch_id"], ["relay_batches.id"], name=op.f("fk_relay_items_batch_id_relay_batches")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_relay_items")),
        sa.UniqueConstraint("signature", name=op.f("uq_relay_items_signature")),
    )
    op.create_index(op.f("ix_relay_items_batch_id"), "relay_items", ["batch_id"])
    op.create_index("ix_relay_items_patient_created_at", "relay_items", ["patient", "created_at"])
    op.create_index("ix_relay_items_state_created_at", "relay_items", ["state", "created_at"])


def downgrade() -> None:
    op.drop_table("relay_items")
    op.drop_table("relay_batches")
    op.drop_table("sessions")
    op.drop_table("sign_in_nonces")
