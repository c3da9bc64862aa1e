"""Alembic migrations, shipped inside the package and run programmatically by `reviewbot migrate`.

There is no alembic.ini: `bot.storage.migrate.alembic_config()` builds the configuration. To add a
revision during development: `python -m bot.storage.migrate revision -m "what changed"`.
"""
