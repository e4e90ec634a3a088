"""Alembic environment: runs on the connection `leadbridge.core.store.migrate` hands it."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from leadbridge.core.store.tables import metadata


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:  # `alembic` CLI use by developers: -x url=sqlite:///dev.db
        url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///dev.db")
        with create_engine(url).connect() as conn:
            _run(conn)
            conn.commit()
        return
    _run(connection)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTER needs batch mode
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
