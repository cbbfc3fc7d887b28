"""Where the database is: ``RECO_DATABASE_URL`` or the embedded server; connections to it."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row

from app.embedded import EmbeddedServer
from app.settings import Settings, get_settings


def embedded_server(settings: Settings | None = None) -> EmbeddedServer:
    settings = settings or get_settings()
    return EmbeddedServer(settings.data_dir)


def database_url(settings: Settings | None = None, *, start: bool = True, notice: bool = True) -> str:
    """The libpq URI every command uses.

    With ``RECO_DATABASE_URL`` set, that URL. Otherwise the embedded server's, starting it
    (and creating its database) when ``start`` is true. A server this call starts is announced
    on stderr (``notice``), so that a command after `reco db stop` does not bring it back silently.
    """
    settings = settings or get_settings()
    if settings.database_url:
        return settings.database_url
    server = embedded_server(settings)
    if start:
        was_running = server.status().running
        server.start()
        server.ensure_database(settings.database_name)
        if notice and not was_running:
            sys.stderr.write(started_notice(server) + "\n")
            sys.stderr.flush()
    return server.url(settings.database_name)


def started_notice(server: EmbeddedServer) -> str:
    """What a command says when it started the embedded server."""
    where = server.pgdata
    with contextlib.suppress(ValueError):
        where = where.relative_to(Path.cwd())
    return f"started the embedded PostgreSQL ({where}); `reco db stop` stops it"


#: The role the REST API connects as (sql/095_security.sql): EXECUTE on the reco.api_* functions
#: that take a key, no table access.
API_ROLE = "reco_api"


def as_role(url: str, role: str) -> str:
    """The same server and database, as another role (libpq URI or key=value conninfo): the
    user is replaced and a password dropped (it was the other role's). With the embedded server,
    peer authentication lets its OS users connect as any role."""
    if "://" not in url:
        info = psycopg.conninfo.conninfo_to_dict(url)
        info.pop("password", None)
        info["user"] = role
        return psycopg.conninfo.make_conninfo(**info)
    p = urlsplit(url)
    host = p.netloc.rpartition("@")[2]
    pairs = parse_qsl(p.query, keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if k not in ("user", "password")]
    query = p.query if len(kept) == len(pairs) else urlencode(kept)
    return urlunsplit((p.scheme, f"{quote(role, safe='')}@{host}", p.path, query, p.fragment))


def api_database_url(settings: Settings | None = None, *, start: bool = True) -> str:
    """The libpq URI the REST API connects with: ``RECO_API_DATABASE_URL`` when set (a server
    that asks reco_api for a password), else the database's (``database_url``) as role reco_api."""
    settings = settings or get_settings()
    explicit = getattr(settings, "api_database_url", None) or os.environ.get("RECO_API_DATABASE_URL")
    if explicit:
        return explicit
    return as_role(database_url(settings, start=start), API_ROLE)


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
