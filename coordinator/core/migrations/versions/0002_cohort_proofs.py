"""Cohort proofs hospitals publish for their patients, and which rounds each hospital published.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "published_rounds",
        sa.Column("study_id", sa.BigInteger(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("hospital", sa.String(42), nullable=False),
        sa.Column("cohort_root", sa.String(66), nullable=False),
        sa.Column("cohort_count", sa.Integer(), nullable=False),
        sa.Column("published", sa.Integer(), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("block", sa.BigInteger(), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("study_id", "round", "hospital", name=op.f("pk_published_rounds")),
    )
    op.create_table(
        "cohort_proofs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("patient", sa.String(42), nullable=False),
        sa.Column("study_id", sa.BigInteger(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("hospital", sa.String(42), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.Integer(), nullable=False),
        sa.Column("proof", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cohort_proofs")),
        sa.UniqueConstraint("study_id", "round", "hospital", "record_id",
                            name=op.f("uq_cohort_proofs_study_id_round_hospital_record_id")),
    )
    op.create_index("ix_cohort_proofs_patient_study_id", "cohort_proofs", ["patient", "study_id"])


def downgrade() -> None:
    op.drop_table("cohort_proofs")
    op.drop_table("published_rounds")
