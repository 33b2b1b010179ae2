"""Alembic environment: run on the connection the store hands over (``config.attributes``),
or on ``sqlalchemy.url`` when run by the ``alembic`` command."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from plugin.worklist.tables import metadata

config = context.config


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # two processes opening a fresh database at once migrate one after the other
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(7402117)"))
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url")
    engine = sa.create_engine(url or config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        _run(conn)
        conn.commit()
