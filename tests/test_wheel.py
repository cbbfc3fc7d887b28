"""The wheel migrates and recommends outside the checkout.

The checkout's sources are copied to a temporary directory and built there into a wheel (``pip
wheel --no-deps --no-build-isolation``: offline, and no build/ left in the checkout whose stale
files a later build would ship). The wheel goes (``--no-deps``) into a new virtual environment
outside the checkout, made with this interpreter; a ``.pth`` file lends it this environment's
site-packages for the dependencies (no network). Its ``reco`` then runs from a working directory
outside the checkout against a fresh database.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import psycopg
import pytest

from app.migrate import alembic_head
from tests.helpers import ROOT

#: what a build needs: the project file, the readme it names, the packages' folders
SOURCES = ["pyproject.toml", "README.md", "app", "jobs", "sql", "migrations"]


def _run(args: list, *, cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        pytest.fail(f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _build_wheel(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
          "--wheel-dir", dist, src], cwd=tmp_path)
    (wheel,) = dist.glob("pgreco-*.whl")
    return wheel


def _venv_with(wheel: Path, tmp_path: Path) -> Path:
    """A new venv with the wheel installed; returns its bin/ directory."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    # this environment's pip installs into the new one; before the .pth below, so that it sees no
    # other pgreco (this environment's editable install) there
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index",
          wheel], cwd=tmp_path)
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                   cwd=tmp_path).stdout.strip()
    # a path line of a .pth is only appended to sys.path: this environment's own .pth files (the
    # editable install's finder, which maps `app` to the checkout) are not run in the new one
    (Path(purelib) / "pgreco-test-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv / "bin"


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RECO_") and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def test_the_wheel_migrates_and_recommends_outside_the_checkout(empty_db, tmp_path):
    wheel = _build_wheel(tmp_path)
    bin_ = _venv_with(wheel, tmp_path)
    work = tmp_path / "work"  # the working directory: neither the checkout nor the venv
    work.mkdir()

    # the package and its SQL come from the new venv, not from the checkout
    where = json.loads(_run([bin_ / "python", "-c", (
        "import json, app, app.resources as r; "
        "print(json.dumps([app.__file__, str(r.sql_dir()), str(r.migrations_dir())]))")],
        cwd=work, env=_env()).stdout)
    for path in where:
        assert Path(path).is_relative_to(tmp_path / "venv"), where
    sql_dir, migrations_dir = Path(where[1]), Path(where[2])
    # every sql/ file and every revision shipped (globs in pyproject.toml: new files need no edit there)
    assert sorted(p.name for p in sql_dir.glob("*.sql")) == sorted(p.name for p in (ROOT / "sql").glob("*.sql"))
    assert sorted(p.name for p in (migrations_dir / "versions").glob("*.py")) == sorted(
        p.name for p in (ROOT / "migrations" / "versions").glob("*.py"))
    assert (migrations_dir / "env.py").is_file()
    package = Path(where[0]).parent
    for name in ("observability/grafana-dashboard.json", "observability/alerts.yml", "console/templates/base.html"):
        assert (package / name).is_file(), name

    # the embedded server's data directory defaults to .reco in the working directory
    status = _run([bin_ / "reco", "db", "status"], cwd=work, env=_env(), check=False)
    assert status.returncode == 3 and f"data {work / '.reco' / 'pgdata'}" in " ".join(status.stdout.split()), \
        status.stdout + status.stderr

    env = _env(RECO_DATABASE_URL=empty_db, COLUMNS="200")
    out = _run([bin_ / "reco", "migrate"], cwd=work, env=env).stdout
    head = alembic_head()
    assert f"schema: empty -> {head}" in out, out
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert conn.execute("SELECT version_num FROM public.alembic_version").fetchall() == [(head,)]
        applied = {name for (name,) in conn.execute("SELECT filename FROM reco.sql_files")}
        assert applied == {p.name for p in (ROOT / "sql").glob("*.sql")}
        # and the sql/ files ran
        assert conn.execute("SELECT to_regproc('reco.recommend_features') IS NOT NULL").fetchone()[0]
    # again: nothing to do
    out = _run([bin_ / "reco", "migrate"], cwd=work, env=env).stdout
    assert f"schema: at {head}" in out and "sql/: up to date" in out, out

    # data through the installed CLI, then a recommendation from it
    (work / "features.csv").write_text(
        "feature_id,name,category\nreports,Reports,analytics\nexports,Bulk export,data\nalerts,Alerts,ops\n")
    (work / "events.csv").write_text("user_id,feature_id,occurred_at\n" + "".join(
        f"u{u},{f},2026-01-0{d}T00:00:00Z\n"
        for u in range(1, 6) for d, f in enumerate(("reports", "exports", "alerts")[: 1 + u % 3], start=1)))
    _run([bin_ / "reco", "import", "features", "features.csv"], cwd=work, env=env)
    _run([bin_ / "reco", "import", "events", "events.csv"], cwd=work, env=env)
    _run([bin_ / "reco", "jobs", "run", "all"], cwd=work, env=env)
    out = _run([bin_ / "reco", "recommend", "newcomer", "--k", "2"], cwd=work, env=env).stdout
    shown = {f for f in ("reports", "exports", "alerts") if f in out}
    assert len(shown) == 2, out
