"""The README's public-dataset path, on files in the MovieLens 100K format: convert, import,
jobs (80 movies: SVD factors), evaluate."""

from __future__ import annotations

import json
import random

from typer.testing import CliRunner

from app.movielens import age_band

runner = CliRunner()


def write_ml100k(folder, users: int = 60, movies: int = 80, seed: int = 3) -> None:
    rnd = random.Random(seed)
    with (folder / "u.item").open("w", encoding="latin-1") as fh:
        for m in range(1, movies + 1):
            flags = ["0"] * 19
            flags[1 + m % 18] = "1"
            flags[1 + (m * 7) % 18] = "1"
            fh.write(f"{m}|Movie {m} (1995)|01-Jan-1995||http://example.invalid/{m}|{'|'.join(flags)}\n")
    with (folder / "u.user").open("w", encoding="latin-1") as fh:
        for u in range(1, users + 1):
            fh.write(f"{u}|{15 + u % 50}|{'MF'[u % 2]}|{['student', 'engineer', 'artist'][u % 3]}|0000{u}\n")
    with (folder / "u.data").open("w", encoding="latin-1") as fh:
        for u in range(1, users + 1):
            taste = u % 4  # four groups of users who like the same block of movies
            seen = rnd.sample(range(taste * 20 + 1, taste * 20 + 21), 12)
            for j, m in enumerate(seen):
                fh.write(f"{u}\t{m}\t{rnd.randint(1, 5)}\t{874965758 + j * 86400 + u}\n")


def test_age_bands():
    assert [age_band(a) for a in (7, 18, 24, 25, 40, 55, 56, 73)] == [
        "under-18", "18-24", "18-24", "25-34", "35-44", "45-55", "56+", "56+"]


def test_convert_import_evaluate(tmp_path, cli_env, conn):
    from app.cli import app

    src, out = tmp_path / "ml-100k", tmp_path / "csv"
    src.mkdir()
    write_ml100k(src)
    result = runner.invoke(app, ["convert", "movielens", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "80 features" in result.stdout and "720 events" in result.stdout
    for kind in ("features", "users", "events"):
        result = runner.invoke(app, ["import", kind, str(out / f"{kind}.csv")])
        assert result.exit_code == 0, result.output
        assert "0 rejected" in result.stdout
    movie = conn.execute("SELECT category, tags FROM reco.features WHERE feature_id = '1'").fetchone()
    assert movie == {"category": "adventure", "tags": ["adventure", "drama"]}
    user = conn.execute("SELECT attributes FROM reco.users WHERE user_id = '3'").fetchone()["attributes"]
    assert user == {"occupation": "student", "gender": "F", "age_band": "18-24"}
    successes = conn.execute("SELECT count(*) FILTER (WHERE success) AS s, count(*) AS n FROM reco.events").fetchone()
    assert 0 < successes["s"] < successes["n"]  # ratings 4 and 5 are successes

    conn.execute("""SELECT reco.set_setting('segment_attributes', '["occupation", "gender", "age_band"]')""")
    assert runner.invoke(app, ["jobs", "run", "all"]).exit_code == 0
    assert conn.execute("SELECT DISTINCT method FROM reco.feature_factors").fetchone()["method"] == "svd"
    result = runner.invoke(app, ["evaluate", "--users", "0", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["users"] == 60
    # the users' tastes are blocks of 20 movies: collaborative filtering finds the last one far
    # more often than popularity does
    assert out["results"]["itemcf"]["hit_rate"] > 2 * out["results"]["baseline"]["hit_rate"]
