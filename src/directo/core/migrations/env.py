"""Alembic environment: the tables every feature declares on ``directo.core.db.metadata``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import directo.accounts.store
import directo.brands.store
import directo.conversations.store
import directo.events.store  # noqa: F401  (each registers its tables)
from directo.core.db import metadata

url = context.config.get_main_option("sqlalchemy.url")
assert url is not None
engine = create_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
