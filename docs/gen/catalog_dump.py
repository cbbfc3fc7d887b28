"""Dump the catalog of a database pgreco migrated: every function's definition (pg_get_functiondef), comment,
owner and privileges; views; tables' privileges and row-level security; column comments; policies; triggers;
the setting definitions, the job catalog, the roles and default privileges. Two dumps diffed show what a
change of sql/ did to a database (a move between files shows nothing).

    # a fresh database migrated with this checkout's sql/ (or another folder's, e.g. `git archive main sql`)
    .venv/bin/python docs/gen/catalog_dump.py SERVER_URL --fresh cmp_after after.txt
    .venv/bin/python docs/gen/catalog_dump.py SERVER_URL --fresh cmp_before before.txt --sql-dir /tmp/main/sql
    # an existing database, migrated with this checkout first
    .venv/bin/python docs/gen/catalog_dump.py SERVER_URL --existing cmp_before upgraded.txt
    diff before.txt after.txt

SERVER_URL: a maintenance database of the server (e.g. ``postgresql://postgres@/postgres?host=...``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import app.migrate as migrate  # noqa: E402
from app.db import with_dbname  # noqa: E402

Q = [
    ("function", """SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid)
        || E'\\n-- comment: ' || coalesce(obj_description(p.oid, 'pg_proc'), '<none>')
        || E'\\n-- acl: ' || coalesce(p.proacl::text, '<default>') || ' owner ' || pg_get_userbyid(p.proowner)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname NOT IN ('pg_catalog','information_schema','public', 'pg_toast')
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
        ORDER BY 1"""),
    ("view", """SELECT c.oid::regclass::text, pg_get_viewdef(c.oid)
        || E'\\n-- comment: ' || coalesce(obj_description(c.oid, 'pg_class'), '<none>')
        || E'\\n-- acl: ' || coalesce(c.relacl::text, '<default>')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'reco' AND c.relkind IN ('v','m') ORDER BY 1"""),
    ("table-acl", """SELECT c.oid::regclass::text, coalesce(c.relacl::text,'<default>') || ' rls ' || c.relrowsecurity
        || ' force ' || c.relforcerowsecurity || E'\\n-- comment: '
        || coalesce(obj_description(c.oid, 'pg_class'), '<none>')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'reco' AND c.relkind IN ('r','p','S') ORDER BY 1"""),
    ("column-comment", """SELECT a.attrelid::regclass::text || '.'
        || a.attname, coalesce(col_description(a.attrelid, a.attnum), '')
        || ' ' || format_type(a.atttypid, a.atttypmod) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'reco' AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r','p','v') ORDER BY 1"""),
    ("policy", """SELECT polrelid::regclass::text || ' ' || polname, pg_get_expr(polqual, polrelid) || ' / ' ||
        coalesce(pg_get_expr(polwithcheck, polrelid), '') || ' ' || polroles::regrole[]::text || ' ' || polcmd::text
        FROM pg_policy ORDER BY 1"""),
    ("trigger", """SELECT tgrelid::regclass::text || ' ' || tgname, pg_get_triggerdef(oid) FROM pg_trigger
        WHERE NOT tgisinternal ORDER BY 1"""),
    ("setting", """SELECT key, default_value::text || ' | ' || description FROM reco.setting_definitions ORDER BY 1"""),
    ("job", """SELECT name, row_to_json(j)::text FROM reco.jobs j ORDER BY 1"""),
    ("role", """SELECT rolname, rolcanlogin::text || ' ' || rolinherit || ' ' ||
        coalesce((SELECT string_agg(b.rolname, ',' ORDER BY b.rolname) FROM pg_auth_members am
                  JOIN pg_roles b ON b.oid = am.roleid WHERE am.member = r.oid), '')
        FROM pg_roles r WHERE rolname LIKE 'reco%' ORDER BY 1"""),
    ("schema-acl", """SELECT nspname, coalesce(nspacl::text, '')
        FROM pg_namespace WHERE nspname LIKE 'reco%' ORDER BY 1"""),
    ("default-acl", """SELECT defaclrole::regrole::text || ' ' || defaclobjtype::text, defaclacl::text
        FROM pg_default_acl ORDER BY 1"""),
]


def dump(url: str) -> str:
    out = []
    with psycopg.connect(url) as conn:
        for kind, query in Q:
            for key, value in conn.execute(query).fetchall():
                out.append(f"== {kind} {key}\n{value}\n")
    return "".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("server_url")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--fresh", metavar="DBNAME", help="(re)create this database and migrate it")
    how.add_argument("--existing", metavar="DBNAME", help="migrate this database (as `reco migrate` does)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--sql-dir", type=Path, help="the sql/ files to apply (default: this checkout's)")
    args = parser.parse_args()
    if args.sql_dir:
        sql_dir = args.sql_dir.resolve()
        migrate.sql_dir = lambda: sql_dir
    name = args.fresh or args.existing
    if args.fresh:
        with psycopg.connect(args.server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    url = with_dbname(args.server_url, name)
    print(migrate.migrate(url), file=sys.stderr)
    args.out.write_text(dump(url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
