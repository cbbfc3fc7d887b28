"""docs/reference/sql.md from the catalog of a migrated database: every public function, procedure,
table and view of schema ``reco`` with its signature and its ``COMMENT ON``, grouped by the sql/
file that defines it. Private ``_`` functions are left out; an object without a comment is listed
as such and returned as a warning, so gaps show instead of hiding."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]

# The catalog's public functions and procedures (one row per overload).
ROUTINES = """
SELECT p.proname AS name, p.prokind AS kind,
       pg_get_function_identity_arguments(p.oid) AS identity,
       pg_get_function_arguments(p.oid) AS arguments,
       pg_get_function_result(p.oid) AS result,
       p.prosecdef AS security_definer, p.provolatile AS volatility,
       obj_description(p.oid, 'pg_proc') AS comment
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'reco' AND p.proname !~ '^_' AND p.prokind IN ('f', 'p')
  AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
ORDER BY p.proname, pg_get_function_identity_arguments(p.oid)
"""

# Tables (partitioned parents, not their partitions) and views, with their columns.
RELATIONS = """
SELECT c.oid, c.relname AS name, c.relkind AS kind, obj_description(c.oid, 'pg_class') AS comment
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'reco' AND c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition
  AND c.relname !~ '^_'
ORDER BY c.relname
"""

COLUMNS = """
SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
       col_description(a.attrelid, a.attnum) AS comment
FROM pg_attribute a
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

# Topic of each sql/ file: its heading in the page (the file's first comment line follows it).
TOPICS = {
    "005_registry.sql": "Named constants: locks, vector size, components",
    "010_tenants_settings.sql": "Tenants and settings",
    "011_setting_rules.sql": "Setting rules",
    "012_settings_guard.sql": "Settings under running experiments",
    "020_ingest.sql": "Ingest",
    "030_import.sql": "CSV import",
    "035_model_helpers.sql": "Model helpers (serving and jobs)",
    "038_job_protocol.sql": "The job protocol (Python steps)",
    "040_job_bodies.sql": "Job bodies",
    "041_sql_factors.sql": "Feature factors in SQL",
    "045_job_runner.sql": "Job catalog, runner and pg_cron",
    "046_cli_queries.sql": "Status queries (what the CLI prints)",
    "047_public_api.sql": "Tenant ids and the pg_cron check",
    "048_experiment_assignment.sql": "Scenarios, experiments and assignment",
    "050_serving.sql": "Serving",
    "060_evaluation.sql": "Offline evaluation",
    "065_tune.sql": "Self-tuning",
    "070_api.sql": "The REST API's functions",
    "072_console_sessions.sql": "Console sessions",
    "072_tenant_budgets.sql": "Tenant budgets",
    "073_stats_distributions.sql": "Statistics: distributions",
    "074_stats_tests.sql": "Statistics: frequentist tests",
    "075_stats_bayes.sql": "Statistics: Bayesian",
    "076_stats_design.sql": "Statistics: SRM, sample size, multiple comparisons",
    "077_stats_sequential.sql": "Statistics: sequential and always-valid",
    "078_stats_simulation.sql": "Statistics: simulation",
    "080_experiment_analysis.sql": "Experiment outcomes and reports",
    "085_console.sql": "Console",
    "090_setting_repair.sql": "Setting repair",
    "094_api_wrappers.sql": "The REST API's generated wrappers",
    "095_security.sql": "Roles and row-level security",
}
UNPLACED = "Defined elsewhere"

KINDS = {"f": "function", "p": "procedure", "r": "table", "p_rel": "table (partitioned)", "v": "view",
         "m": "materialized view"}


def _definitions() -> dict[str, str]:
    """name -> the sql/ file that creates it (the first file, in apply order, naming it)."""
    where: dict[str, str] = {}
    pattern = re.compile(
        r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:FUNCTION|PROCEDURE|VIEW|MATERIALIZED\s+VIEW)\s+reco\.(\w+)", re.I)
    for path in sorted((ROOT / "sql").glob("*.sql")):
        for name in pattern.findall(path.read_text()):
            where.setdefault(name.lower(), path.name)
    return where


def _mentions(name: str) -> str | None:
    """A routine no file creates by name (generated in a DO block): the first file that names it."""
    for path in sorted((ROOT / "sql").glob("*.sql")):
        if re.search(rf"\b{re.escape(name)}\b", path.read_text()):
            return path.name
    return None


def _summary(path: Path) -> str:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("--") or line.strip("- ") == "":
            break
        lines.append(line[2:].strip())
    return " ".join(lines)


_EXAMPLE = re.compile(r"\b(Examples?:)\s*", re.S)


def _text(comment: str) -> str:
    """A comment as Markdown text: one paragraph, characters Markdown would read as markup escaped."""
    parts = " ".join(comment.split()).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: no code spans
        parts = ["'".join(parts)]
    for i in range(0, len(parts), 2):  # outside `code spans`
        text = parts[i].replace("\\", "\\\\").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        for ch in "*_[]|#":
            text = text.replace(ch, "\\" + ch)
        parts[i] = text
    return "`".join(parts)


def _comment_block(comment: str | None) -> list[str]:
    if comment is None:
        return ["!!! warning \"No COMMENT\"", "    This object has no `COMMENT ON` in the database yet.", ""]
    body, _, example = comment.partition("Example:")
    if not example:
        body, _, example = comment.partition("Examples:")
    out = [_text(body), ""]
    if example.strip():
        out += ["```sql", example.strip(), "```", ""]
    return out


def _arguments(arguments: str) -> str:
    """The argument list, one per line when it is long (split at top-level commas only)."""
    if len(arguments) <= 80:
        return arguments
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(arguments):
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch in "([":
            depth += 1
        elif not quoted and ch in ")]":
            depth -= 1
        elif not quoted and depth == 0 and ch == ",":
            parts.append(arguments[start:i].strip())
            start = i + 1
    parts.append(arguments[start:].strip())
    return "\n    " + ",\n    ".join(parts) + "\n"


def _anchor(name: str, identity: str, seen: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    anchor, n = base, 1
    while anchor in seen:
        n += 1
        anchor = f"{base}-{n}"
    seen.add(anchor)
    return anchor


def generate(conn: psycopg.Connection) -> tuple[str, list[str]]:
    """The page's Markdown and the warnings (objects without a comment)."""
    where = _definitions()
    routines = conn.execute(ROUTINES).fetchall()
    relations = conn.execute(RELATIONS).fetchall()
    warnings: list[str] = []
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in routines:
        r = dict(r) if not isinstance(r, dict) else r
        file = where.get(r["name"]) or _mentions(r["name"]) or UNPLACED
        groups[file].append(r)
        if r["comment"] is None:
            warnings.append(f"reco.{r['name']}({r['identity']}) has no COMMENT")
    views_by_file: dict[str, list[dict]] = defaultdict(list)
    tables = []
    for rel in relations:
        if rel["kind"] in ("v", "m"):
            views_by_file[where.get(rel["name"], UNPLACED)].append(rel)
        else:
            tables.append(rel)
        if rel["comment"] is None:
            warnings.append(f"reco.{rel['name']} ({KINDS[rel['kind']]}) has no COMMENT")

    n_f = sum(r["kind"] == "f" for r in routines)
    n_p = sum(r["kind"] == "p" for r in routines)
    n_v = sum(len(v) for v in views_by_file.values())
    lines = [
        "# SQL reference",
        "",
        "<!-- GENERATED by docs/gen/build.py from the database's catalog: do not edit; edit the COMMENT ON. -->",
        "",
        f"Every public object of schema `reco` in a freshly migrated database: {n_f} functions, {n_p} "
        f"procedure{'s' if n_p != 1 else ''}, "
        f"{len(tables)} tables and {n_v} views, each with the `COMMENT ON` the database carries (`\\df+ reco.*` and "
        "`\\d+ reco.*` in psql show the same text). Functions are grouped by the `sql/` file that defines "
        "them; private helpers (names starting with `_`) are left out. For worked examples with their "
        "output, see the [SQL guide](sql-guide.md).",
        "",
        f"Objects without a comment: {len(warnings) or 'none'}.",
        "",
    ]
    seen: set[str] = set()
    order = [f for f in TOPICS if f in groups or f in views_by_file]
    order += sorted(f for f in set(groups) | set(views_by_file) if f not in order)
    for file in order:
        title = TOPICS.get(file) or (UNPLACED if file == UNPLACED else file)
        lines += [f"## {title}", ""]
        if file != UNPLACED:
            lines += [f"`sql/{file}`: {_text(_summary(ROOT / 'sql' / file))}", ""]
        for r in groups.get(file, []):
            anchor = _anchor(r["name"], r["identity"], seen)
            kind = KINDS[r["kind"]]
            lines += [f"### reco.{r['name']} {{#{anchor}}}", ""]
            sig = f"reco.{r['name']}({_arguments(r['arguments'])})"
            if r["kind"] == "f":
                sig += f"\n    RETURNS {r['result']}"
            lines += [f"```sql\n{'CALL ' if r['kind'] == 'p' else ''}{sig}\n```", ""]
            traits = [kind, {"i": "immutable", "s": "stable", "v": "volatile"}[r["volatility"]]]
            if r["security_definer"]:
                traits.append("security definer")
            lines += [f"*{', '.join(traits)}*", ""]
            lines += _comment_block(r["comment"])
        for v in views_by_file.get(file, []):
            lines += _relation(conn, v, seen)
    lines += ["## Tables", "",
              "Created by the versioned migrations (`migrations/versions/`); the comments are in "
              "`sql/900_comments.sql`.", ""]
    for t in tables:
        lines += _relation(conn, t, seen)
    return "\n".join(lines).rstrip() + "\n", warnings


def _relation(conn: psycopg.Connection, rel: dict, seen: set[str]) -> list[str]:
    kind = KINDS["p_rel" if rel["kind"] == "p" else rel["kind"]]
    anchor = _anchor(rel["name"], "", seen)
    out = [f"### reco.{rel['name']} {{#{anchor}}}", "", f"*{kind}*", ""]
    out += _comment_block(rel["comment"])
    out += ["| column | type | description |", "|---|---|---|"]
    for c in conn.execute(COLUMNS, (rel["oid"],)).fetchall():
        note = _text(c["comment"]) if c["comment"] else ""
        typ = c["type"] + (" not null" if c["not_null"] and rel["kind"] in ("r", "p") else "")
        out.append(f"| `{c['name']}` | `{typ}` | {note} |")
    out.append("")
    return out
