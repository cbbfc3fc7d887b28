"""Where the database is: ``RECO_DATABASE_URL`` or the embedded server; connections to it."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row

from app.embedded import EmbeddedServer
from app.settings import Settings, get_settings


def embedded_server(settings: Settings | None = None) -> EmbeddedServer:
    settings = settings or get_settings()
    return EmbeddedServer(settings.data_dir)


def database_url(settings: Settings | None = None, *, start: bool = True) -> str:
    """The libpq URI every command uses.

    With ``RECO_DATABASE_URL`` set, that URL. Otherwise the embedded server's, starting it
    (and creating its database) when ``start`` is true.
    """
    settings = settings or get_settings()
    if settings.database_url:
        return settings.database_url
    server = embedded_server(settings)
    if start:
        server.start()
        server.ensure_database(settings.database_name)
    return server.url(settings.database_name)


def sqlalchemy_url(url: str) -> str:
    """The same URI for SQLAlchemy (Alembic), on the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def connect(url: str | None = None, **kwargs) -> psycopg.Connection:
    return psycopg.connect(url or database_url(), row_factory=dict_row, **kwargs)


def with_dbname(url: str, dbname: str) -> str:
    """The same server, another database (libpq URI or key=value conninfo)."""
    if "://" not in url:
        return psycopg.conninfo.make_conninfo(url, dbname=dbname)
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + dbname, p.query, p.fragment))
