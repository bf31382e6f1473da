"""Alembic's entry point: run the migrations on the engine :func:`coordinator.core.db.upgrade` passes in."""

from __future__ import annotations

from alembic import context

from coordinator.models.tables import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    context.run_migrations()
