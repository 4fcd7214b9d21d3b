"""Alembic environment: the engine comes from `migrate.alembic_config`, never from a file."""

from __future__ import annotations

from alembic import context

from gradesync.adapters.db.schema import metadata

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
