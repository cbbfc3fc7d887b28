"""Write the generated reference pages of the documentation site:

    docs/reference/sql.md          the catalog of a migrated database (docs/gen/sql_api.py)
    docs/reference/rest.md         the API's OpenAPI document (docs/gen/rest_api.py)
    docs/reference/cli.md          the `reco` command tree (docs/gen/cli_ref.py)
    docs/reference/environment.md  app/settings.py (docs/gen/environment.py)
    docs/assets/screenshots/       a copy of the console's screenshots (app/console/static/screenshots)

They are generated at build time (`make docs`) and git-ignored, so they cannot drift from the code.
The database comes the way the product's does: ``RECO_DATABASE_URL`` when set (read as it is; it
must be migrated), else the embedded server in a throw-away data directory (``.reco/docs``, or
``--data-dir``) that this script starts, migrates, reads and stops again (when it started it).

    .venv/bin/python docs/gen/build.py [--strict]

Objects without a ``COMMENT ON`` are listed on the page and printed here as warnings; ``--strict``
makes them an error.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cli_ref  # noqa: E402
import environment  # noqa: E402
import psycopg  # noqa: E402
import rest_api  # noqa: E402
import sql_api  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

OUT = ROOT / "docs" / "reference"


@contextlib.contextmanager
def database(data_dir: Path) -> Iterator[str]:
    """A migrated database's URL: RECO_DATABASE_URL, or a throw-away embedded server."""
    url = os.environ.get("RECO_DATABASE_URL")
    if url:
        print(f"docs: reading the catalog of RECO_DATABASE_URL ({url.split('@')[-1]})", file=sys.stderr)
        yield url
        return
    from app.embedded import EmbeddedServer
    from app.migrate import migrate

    server = EmbeddedServer(data_dir)
    was_running = server.status().running
    server.start()
    try:
        server.ensure_database("reco")
        url = server.url("reco")
        result = migrate(url)
        print(f"docs: embedded server in {data_dir} migrated ({result.alembic_from or 'empty'} -> {result.alembic_to})",
              file=sys.stderr)
        yield url
    finally:
        if not was_running:
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".reco" / "docs",
                        help="the embedded server's throw-away data directory (default .reco/docs)")
    parser.add_argument("--strict", action="store_true", help="fail when an object has no COMMENT")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    with database(args.data_dir) as url, psycopg.connect(url, row_factory=dict_row) as conn:
        from app.migrate import is_current

        if conn.execute("SELECT to_regnamespace('reco') AS s").fetchone()["s"] is None:
            print("docs: error: the database has no schema reco: run `reco migrate` on it, or unset "
                  "RECO_DATABASE_URL to use a throw-away embedded server", file=sys.stderr)
            return 1
        with psycopg.connect(url) as plain:
            current = is_current(plain)
        if not current:
            print("docs: warning: the database is not migrated to this checkout (run `reco migrate`): "
                  "the SQL reference shows what it holds, not what the code defines", file=sys.stderr)
        page, warnings = sql_api.generate(conn)
    (OUT / "sql.md").write_text(page)

    from app.api.main import create_app

    # the document only: no pool is opened until the app's lifespan starts, and it never does here
    doc = create_app(url="postgresql:///unused").openapi()
    (OUT / "rest.md").write_text(rest_api.generate(doc))
    (OUT / "cli.md").write_text(cli_ref.generate())
    (OUT / "environment.md").write_text(environment.generate())

    # the console's screenshots live in the package (app/console/static/screenshots); the site gets a copy
    shots = ROOT / "docs" / "assets" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    for png in sorted((ROOT / "app" / "console" / "static" / "screenshots").glob("*.png")):
        shutil.copyfile(png, shots / png.name)

    for w in warnings:
        print(f"docs: warning: {w}", file=sys.stderr)
    print(f"docs: wrote {', '.join(p + '.md' for p in ('sql', 'rest', 'cli', 'environment'))} in docs/reference/ "
          f"({len(warnings)} objects without a COMMENT)", file=sys.stderr)
    return 1 if warnings and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
