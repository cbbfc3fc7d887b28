"""Alembic environment: raw SQL migrations against RECO_DATABASE_URL or the embedded server."""

from alembic import context
from sqlalchemy import create_engine, pool

from app.db import database_url, sqlalchemy_url

config = context.config
url = config.attributes.get("url") or database_url()


def run_migrations_offline() -> None:
    context.configure(url=sqlalchemy_url(url), literal_binds=True, version_table_schema="public")
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, version_table_schema="public")
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
