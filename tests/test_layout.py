"""The layout the code keeps (issue 25): the top-level packages import each other in one direction
only (app → jobs: the job runner and its numpy steps, evaluation and tune included, need nothing of
the CLI, the API or the console), and Python calls only the documented SQL functions, never the
private helpers ``reco._*``. Static checks: the sources are parsed with ast, nothing is imported."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the product's top-level packages
PACKAGES = ("app", "jobs")
#: a private SQL helper named in a query: reco._tenant_id(...), FROM reco._evaluation_scores(...)
PRIVATE_SQL = re.compile(r"\breco\._[a-z0-9_]+", re.IGNORECASE)


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imported_packages(path: Path) -> set[str]:
    """The top-level packages a module imports (absolute imports; relative ones stay in its package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def import_graph() -> dict[str, dict[str, list[str]]]:
    """package -> the other product packages it imports -> the modules that do."""
    graph: dict[str, dict[str, list[str]]] = {p: {} for p in PACKAGES}
    for package in PACKAGES:
        for path in _sources(package):
            for other in _imported_packages(path) & set(PACKAGES) - {package}:
                graph[package].setdefault(other, []).append(str(path.relative_to(ROOT)))
    return graph


def private_sql_calls(path: Path, root: Path = ROOT) -> list[str]:
    """``line: reco._name`` for each private SQL helper a string of the module names (docstrings and
    comments, which explain what the database does, are not queries and are skipped)."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant) and isinstance(node.body[0].value.value, str)}
    strings = sorted((node.lineno, node.col_offset, node.value) for node in ast.walk(tree)
                     if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings)
    return [f"{path.relative_to(root)}:{line}: {name}" for line, _, text in strings
            for name in PRIVATE_SQL.findall(text)]


def test_no_two_packages_import_each_other() -> None:
    graph = import_graph()
    cycles = [f"{a} ⇄ {b}: {graph[a][b]} and {graph[b][a]}"
              for a in PACKAGES for b in graph[a] if a < b and a in graph[b]]
    assert cycles == []
    assert graph["jobs"] == {}, "jobs/ imports app/: " + repr(graph["jobs"])


def test_the_import_check_sees_an_import_of_app_from_jobs(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom app.db import connect\nimport app.settings as s\nfrom . import sibling\n")
    assert _imported_packages(module) == {"os", "app"}


def test_python_calls_no_private_sql_function() -> None:
    calls = [c for package in PACKAGES for path in _sources(package) for c in private_sql_calls(path)]
    assert calls == [], "use (or add) a public, commented SQL function instead: " + "; ".join(calls)


def test_the_private_sql_check_sees_a_call_but_not_a_docstring(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('"""Wraps reco._api_key."""\n\n'
                      'def f(conn):\n    """As reco._tenant_id does."""\n'
                      '    return conn.execute("SELECT reco._tenant_id(%s)", ("t",))  # reco._x\n'
                      'Q = f"SELECT * FROM RECO._evaluation_scores({1})"\n')
    found = [c.rsplit(": ", 1)[1] for c in private_sql_calls(module, tmp_path)]
    assert found == ["reco._tenant_id", "RECO._evaluation_scores"]


#: the most lines a product module has (a newcomer reads one topic per module)
MAX_LINES = 400
#: modules still over the limit, to split (none)
PENDING: set[str] = set()


def test_product_modules_are_at_most_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for package in PACKAGES for p in _sources(package)
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    product = {p: n for p, n in long.items() if p not in PENDING}
    assert product == {}, f"split these modules (at most {MAX_LINES} lines each)"
