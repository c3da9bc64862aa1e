"""Alembic environment: runs on the connection that `bot.storage.migrate` hands over.

Why no URL handling here: migrations run inside the async engine's connection (`run_sync`), the
pattern alembic documents for asyncio applications, so this file never opens a database itself.
"""
from __future__ import annotations

from alembic import context

from bot.storage.tables import metadata

config = context.config


def run_on(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through `reviewbot migrate` (bot.storage.migrate.migrate), not alembic")
    run_on(connection)
