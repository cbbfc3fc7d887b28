"""The README's public-dataset path, on files in the MovieLens 100K format: convert, import,
jobs (80 movies: SVD factors), evaluate."""

from __future__ import annotations

import json
import random

from typer.testing import CliRunner

from app.tools.movielens import age_band

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


def write_atomic(folder, src) -> None:
    """The same data as RecBole's atomic files (ml-100k.inter/.item/.user), from GroupLens' files in ``src``."""
    from app.tools.movielens import GENRES

    with (folder / "ml-100k.item").open("w") as fh:
        fh.write("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n")
        for line in (src / "u.item").read_text(encoding="latin-1").splitlines():
            row = line.split("|")
            genres = [g for g, flag in zip(GENRES, row[5:24], strict=True) if flag == "1"]
            fh.write(f"{row[0]}\t{row[1].removesuffix(' (1995)')}\t1995\t{' '.join(genres)}\n")
    with (folder / "ml-100k.user").open("w") as fh:
        fh.write("user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n")
        for line in (src / "u.user").read_text(encoding="latin-1").splitlines():
            u, age, gender, occupation, zip_code = line.split("|")
            fh.write(f"{u}\t{age}\t{gender}\t{occupation}\t{zip_code}\n")
    with (folder / "ml-100k.inter").open("w") as fh:
        fh.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        for line in (src / "u.data").read_text(encoding="latin-1").splitlines():
            fh.write(line + "\n")


def test_convert_recbole_atomic_files(tmp_path):
    """RecBole's layout (what the README's quality benchmark obtains) converts to the same CSVs."""
    from app.cli import app

    src, atomic = tmp_path / "ml-100k", tmp_path / "recbole"
    src.mkdir()
    atomic.mkdir()
    write_ml100k(src)
    write_atomic(atomic, src)
    assert runner.invoke(app, ["convert", "movielens", str(src), "--out", str(tmp_path / "a")]).exit_code == 0
    result = runner.invoke(app, ["convert", "movielens", str(atomic), "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert "80 features" in result.stdout and "60 users" in result.stdout and "720 events" in result.stdout
    for name in ("users.csv", "events.csv"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    a = [r.split(",")[:4] for r in (tmp_path / "a" / "features.csv").read_text().splitlines()]
    b = [r.split(",")[:4] for r in (tmp_path / "b" / "features.csv").read_text().splitlines()]
    assert [r[0] + r[2] + r[3] for r in a] == [r[0] + r[2] + r[3] for r in b]  # id, category, tags

    result = runner.invoke(app, ["convert", "movielens", str(tmp_path), "--out", str(tmp_path / "c")])
    assert result.exit_code == 2
    assert "RecBole" in result.stderr and "u.data" in result.stderr


def test_import_recbole_users_by_hand(tmp_path, cli_env, conn):
    """ml-100k.user imported as it is: the type suffixes go, and a warning says that no attribute
    is a segment attribute (the default ones are industry, paid, usage_band)."""
    from app.cli import app

    src, atomic = tmp_path / "ml-100k", tmp_path / "recbole"
    src.mkdir()
    atomic.mkdir()
    write_ml100k(src, users=5)
    write_atomic(atomic, src)
    result = runner.invoke(app, ["import", "users", str(atomic / "ml-100k.user"), "--delimiter", "tab"])
    assert result.exit_code == 0, result.output
    assert "5 accepted" in result.stdout
    user = conn.execute("SELECT attributes FROM reco.users WHERE user_id = '3'").fetchone()["attributes"]
    assert user == {"age": "18", "gender": "F", "occupation": "student", "zip_code": "00003"}
    assert "warning:" in result.stderr and "segment_attributes" in result.stderr
    assert "one segment" in result.stderr

    conn.execute("""SELECT reco.set_setting('segment_attributes', '["occupation"]')""")
    result = runner.invoke(app, ["import", "users", str(atomic / "ml-100k.user"), "--delimiter", "tab"])
    assert result.exit_code == 0, result.output
    assert "warning:" not in result.stderr
