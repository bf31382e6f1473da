"""Sealed cohort proofs: envelopes under tags, and which rounds each hospital published sealed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sealed_rounds",
        sa.Column("study_id", sa.BigInteger(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("hospital", sa.String(42), nullable=False),
        sa.Column("hospital_public_key", sa.String(130), nullable=False),
        sa.Column("cohort_root", sa.String(66), nullable=False),
        sa.Column("cohort_count", sa.Integer(), nullable=False),
        sa.Column("published", sa.Integer(), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("block", sa.BigInteger(), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("study_id", "round", "hospital", name=op.f("pk_sealed_rounds")),
    )
    op.create_table(
        "sealed_proofs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tag", sa.String(66), nullable=False),
        sa.Column("study_id", sa.BigInteger(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("hospital", sa.String(42), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sealed_proofs")),
        sa.UniqueConstraint("study_id", "round", "hospital", "tag",
                            name=op.f("uq_sealed_proofs_study_id_round_hospital_tag")),
    )
    op.create_index("ix_sealed_proofs_tag", "sealed_proofs", ["tag"])


def downgrade() -> None:
    op.drop_table("sealed_proofs")
    op.drop_table("sealed_rounds")
