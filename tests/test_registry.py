"""The named constants of sql/005_registry.sql and their Python copies agree: advisory-lock keys
(jobs/locks.py), the size of the user vectors (jobs/svd.py and the vector(N) columns of the migrations), and
the scoring components (jobs/components.py, the settings and the console's legend)."""

from __future__ import annotations

import re

import psycopg
import pytest

from jobs.components import COMPONENTS, TUNED, WEIGHT_SETTINGS
from jobs.locks import LOCK_KEYS
from jobs.svd import DIM
from tests.helpers import ROOT


def test_lock_keys_equal_the_python_table(conn):
    rows = conn.execute("SELECT name, key FROM reco.lock_keys()").fetchall()
    assert {r["name"]: r["key"] for r in rows} == LOCK_KEYS
    assert len(set(LOCK_KEYS.values())) == len(LOCK_KEYS), "two locks share a key"
    assert conn.execute("SELECT reco.lock_key('job')").fetchone()["lock_key"] == LOCK_KEYS["job"]


def test_unknown_lock_is_refused(conn):
    with pytest.raises(psycopg.Error) as info:
        conn.execute("SELECT reco.lock_key('jobs_typo')")
    assert info.value.sqlstate == "22023"
    assert "jobs_typo" in info.value.diag.message_primary
    assert "reco.lock_keys()" in info.value.diag.message_hint


def test_no_bare_lock_key_outside_the_registry():
    """Every advisory lock is taken by name: no 7281xxx literal outside the two registries."""
    pattern = re.compile(r"\b7_?281_?\d{3}\b")
    registries = {ROOT / "sql" / "005_registry.sql", ROOT / "jobs" / "locks.py"}
    found = [f"{p.relative_to(ROOT)}:{i}"
             for folder in ("sql", "app", "jobs", "tests")
             for p in sorted((ROOT / folder).rglob("*"))
             if p.suffix in (".sql", ".py") and p not in registries
             for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, found


def test_vector_dims_agree(conn):
    dims = conn.execute("SELECT reco.vector_dims() AS d").fetchone()["d"]
    assert dims == DIM
    # every vector column with a declared size (reco.features.embedding, the client's vector, has none)
    cols = conn.execute("""
        SELECT c.relname || '.' || a.attname AS col, a.atttypmod AS dims
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        WHERE c.relnamespace = 'reco'::regnamespace AND a.atttypid = 'vector'::regtype AND a.attnum > 0
          AND NOT a.attisdropped AND c.relkind IN ('r', 'p') AND NOT c.relispartition""").fetchall()
    sized = {r["col"]: r["dims"] for r in cols if r["dims"] > 0}
    assert {"feature_factors.factor", "user_vectors.embedding"} <= set(sized), sized
    assert set(sized.values()) == {dims}, sized
    # the vectors SQL makes have that size too
    assert conn.execute("SELECT vector_dims(reco._hash_embedding('{a,b}', '{1,2}')) AS d").fetchone()["d"] == dims


def test_components_agree(conn):
    rows = conn.execute('SELECT name, tuned FROM reco.components() ORDER BY "position"').fetchall()
    assert tuple(r["name"] for r in rows) == COMPONENTS
    assert tuple(r["name"] for r in rows if r["tuned"]) == TUNED
    # each has its weight setting, read when serving
    defined = {r["key"] for r in conn.execute("SELECT key FROM reco.setting_definitions").fetchall()}
    assert set(WEIGHT_SETTINGS) <= defined
    serving = conn.execute("SELECT reco.serving_settings() AS s").fetchone()["s"]
    assert set(WEIGHT_SETTINGS) <= set(serving)
    # an options.weights key that is not a component is refused, and the hint lists them
    with pytest.raises(psycopg.Error) as info:
        conn.execute("""SELECT reco.recommend_features('u1', 5, '{"weights": {"itemkf": 1}}')""")
    assert info.value.sqlstate == "22023"
    assert info.value.diag.message_hint == f"Components: {', '.join(COMPONENTS)}."


def test_console_legend_names_every_component():
    from app.console.views import COMPONENTS as LEGEND

    assert tuple(LEGEND) == COMPONENTS
