"""`reco migrate`: Alembic's versioned DDL, then the repeatable sql/ files.

The sql/ and migrations/ folders are found through ``importlib.resources`` (app/resources.py), so
an installed wheel migrates as the checkout does; Alembic's settings are made here, in code (the
checkout's alembic.ini serves ``alembic`` run by hand).

The sql/ files hold the current definition of every function, procedure and view. They are
applied in file-name order, all in one transaction, whenever any of them changed since the
last run (checksums in ``reco.sql_files``), so a file may rely on the ones before it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config

from app.resources import migrations_dir, sql_dir
from jobs.locks import lock_key

MIGRATE_LOCK = lock_key("migrate")  # one migration at a time (before the SQL registry exists)


@dataclass
class MigrateResult:
    alembic_from: str | None
    alembic_to: str | None
    sql_applied: list[str]


def alembic_config(url: str) -> Config:
    """Alembic's configuration, without an ini file (what alembic.ini says that matters here)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()).replace("%", "%%"))  # configparser
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["url"] = url
    return cfg


def sql_files() -> list[Path]:
    return sorted(sql_dir().glob("*.sql"))


def _checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def alembic_revision(conn: psycopg.Connection) -> str | None:
    if not conn.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL").fetchone()[0]:
        return None
    row = conn.execute("SELECT version_num FROM public.alembic_version").fetchone()
    return row[0] if row else None


def pending_sql(conn: psycopg.Connection) -> list[str]:
    """The sql/ files whose checksum differs from the applied one (or that are new)."""
    if not conn.execute("SELECT to_regclass('reco.sql_files') IS NOT NULL").fetchone()[0]:
        return [p.name for p in sql_files()]
    return pending_given(dict(conn.execute("SELECT filename, checksum FROM reco.sql_files").fetchall()))


def pending_given(applied: dict[str, str]) -> list[str]:
    """The sql/ files that differ from ``applied`` (file name -> checksum)."""
    return [name for name, checksum in sql_checksums().items() if applied.get(name) != checksum]


@lru_cache
def sql_checksums() -> dict[str, str]:
    return {p.name: _checksum(p) for p in sql_files()}


@lru_cache
def alembic_head() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


def migrate(url: str) -> MigrateResult:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
        try:
            before = alembic_revision(conn)
            command.upgrade(alembic_config(url), "head")
            after = alembic_revision(conn)
            # a new table from a migration alone gets its grants and row-level security from
            # sql/095_security.sql: re-apply the files whenever the revision moved
            applied = apply_sql(conn, force=before != after)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK,))
    return MigrateResult(before, after, applied)


def apply_sql(conn: psycopg.Connection, force: bool = False) -> list[str]:
    """Re-apply every sql/ file when any changed (or ``force``); returns the changed file names."""
    changed = pending_sql(conn)
    if not changed and not force:
        return []
    with conn.transaction():
        for path in sql_files():
            conn.execute(path.read_text())
        conn.execute("DELETE FROM reco.sql_files")
        for path in sql_files():
            conn.execute(
                "INSERT INTO reco.sql_files (filename, checksum) VALUES (%s, %s)",
                (path.name, _checksum(path)),
            )
    return changed


def is_current(conn: psycopg.Connection) -> bool:
    """True when the versioned head is applied and no sql/ file changed."""
    return alembic_revision(conn) == alembic_head() and not pending_sql(conn)

