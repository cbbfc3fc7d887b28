"""`reco db ...` and the database URL resolution."""

from __future__ import annotations

import psycopg
import pytest
from typer.testing import CliRunner

from app.cli import app
from app.embedded import EmbeddedServer
from app.settings import get_settings

runner = CliRunner()


def test_external_url_is_used_and_not_managed(cli_env):
    res = runner.invoke(app, ["db", "url"])
    assert res.exit_code == 0 and res.output.strip() == cli_env
    res = runner.invoke(app, ["db", "stop"])
    assert res.exit_code == 0 and "does not manage it" in res.output
    res = runner.invoke(app, ["migrate"])
    assert res.exit_code == 0 and "sql/: up to date" in res.output


def test_embedded_server_lifecycle(server_url, monkeypatch):
    """The embedded server the tests run on: status, url, start is idempotent."""
    if "host=/" not in server_url:
        pytest.skip("tests are not running on the embedded server")
    from tests.helpers import ROOT

    data_dir = ROOT / ".reco" / "test"
    server = EmbeddedServer(data_dir, ephemeral=True)
    assert server.status().running
    assert server.start().pid == server.status().pid  # reused, not restarted
    monkeypatch.delenv("RECO_DATABASE_URL", raising=False)
    monkeypatch.setenv("RECO_DATA_DIR", str(data_dir))
    monkeypatch.setenv("RECO_DATABASE_NAME", "postgres")
    get_settings.cache_clear()
    try:
        res = runner.invoke(app, ["db", "status"])
        assert res.exit_code == 0 and "running" in res.output
        url = runner.invoke(app, ["db", "url"]).output.strip()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_setting('server_version_num')::int").fetchone()[0] >= 150000
    finally:
        get_settings.cache_clear()


def test_a_command_that_starts_the_server_says_so(monkeypatch):
    """After `reco db stop`, the next command starts the embedded server again: it says so (stderr)."""
    import shutil
    import tempfile
    from pathlib import Path

    data_dir = Path(tempfile.mkdtemp(prefix="reco-cli-", dir="/tmp"))
    monkeypatch.delenv("RECO_DATABASE_URL", raising=False)
    monkeypatch.setenv("RECO_DATA_DIR", str(data_dir))
    get_settings.cache_clear()
    server = EmbeddedServer(data_dir)
    try:
        res = runner.invoke(app, ["db", "start"])
        assert res.exit_code == 0 and "embedded PostgreSQL running" in res.stdout, res.output
        assert "started the embedded PostgreSQL" not in res.stderr  # it says so in its own words
        assert runner.invoke(app, ["db", "stop"]).stdout.strip() == "stopped"
        assert not server.status().running
        res = runner.invoke(app, ["db", "url"])
        assert res.exit_code == 0 and res.stdout.startswith("postgresql://"), res.output
        assert f"started the embedded PostgreSQL ({data_dir / 'pgdata'}); `reco db stop` stops it" in res.stderr
        assert "started" not in res.stdout  # the URL alone on stdout, for $(reco db url)
        assert server.status().running
        res = runner.invoke(app, ["db", "url"])  # already running: nothing to say
        assert res.exit_code == 0 and res.stderr == ""
    finally:
        server.stop()
        get_settings.cache_clear()
        shutil.rmtree(data_dir, ignore_errors=True)
