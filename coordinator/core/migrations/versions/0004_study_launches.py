"""The launches of studies' runs, so that a restarted service knows what it had launched and resumes it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "study_launches",
        sa.Column("study_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("run_config", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(20), nullable=True),
        sa.Column("status", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("resumed_from", sa.String(20), nullable=True),
        sa.Column("resumed_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("study_id", name=op.f("pk_study_launches")),
    )
    op.create_index("ix_study_launches_state", "study_launches", ["state"])


def downgrade() -> None:
    op.drop_table("study_launches")
