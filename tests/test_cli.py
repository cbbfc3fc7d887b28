"""The `reco` CLI: tenants everywhere, `reco tenants`, `jobs list|run`, hints, names next to ids, `reco demo`."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import stat
import sys

import psycopg
import pytest
import typer.main
from rich.console import Console
from typer.testing import CliRunner

import app.cli as cli
import app.cli.common as cli_common
import app.cli.demo as cli_demo
from app.cli import app
from app.settings import get_settings

runner = CliRunner()

#: commands that touch no tenant's data: the server, the schema, files, the REST server (its keys
#: carry the tenant), the benchmarks (databases of their own) and `tenants` (SLUG argument)
NO_TENANT = {"settings docs", "settings repairs",
             "db start", "db stop", "db status", "db url", "db psql", "migrate", "generate", "convert", "serve",
             "tenants create", "tenants list", "tenants drop", "tenants budget", "analysts list"}


def _commands(group, prefix=""):
    for name, cmd in group.commands.items():
        full = f"{prefix}{name}"
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, f"{full} ")
        else:
            yield full, cmd


def test_every_command_on_tenant_data_takes_tenant_and_reco_tenant():
    missing = []
    for name, cmd in _commands(typer.main.get_command(app)):
        if name in NO_TENANT or name.startswith("bench "):
            continue
        opt = next((p for p in cmd.params if "--tenant" in getattr(p, "opts", ())), None)
        if opt is None or opt.envvar != "RECO_TENANT":
            missing.append(name)
    assert missing == []
    for must in ("jobs list", "jobs schedule", "jobs unschedule", "keys list", "keys revoke", "demo"):
        assert must in dict(_commands(typer.main.get_command(app)))


def _sql(url: str, query: str, params=()):
    with psycopg.connect(url, autocommit=True) as c:
        cur = c.execute(query, params)
        return cur.fetchall() if cur.description else None


def _seed(url: str, tenant: str, users: int = 2) -> None:
    """A tenant with a feature, `users` users and one event each."""
    _sql(url, "SELECT reco.create_tenant(%s)", (tenant,))
    _sql(url, "SELECT reco.upsert_features(%s, %s)",
         (json.dumps([{"feature_id": "bulk-export", "name": "Bulk export"}]), tenant))
    events = [{"user_id": f"{tenant}-{i}", "feature_id": "bulk-export", "occurred_at": "2025-01-01T00:00:00Z"}
              for i in range(users)]
    _sql(url, "SELECT reco.ingest_events(%s, %s)", (json.dumps(events), tenant))


def test_reco_tenant_is_honoured(cli_env, monkeypatch):
    _sql(cli_env, "SELECT reco.create_tenant('acme')")
    assert runner.invoke(app, ["keys", "create", "--name", "d"]).exit_code == 0
    monkeypatch.setenv("RECO_TENANT", "acme")
    res = runner.invoke(app, ["keys", "create", "--name", "a"])
    assert res.exit_code == 0, res.output
    acme_key = res.stdout.strip()
    rows = _sql(cli_env, """SELECT t.slug, k.name FROM reco.api_keys k JOIN reco.tenants t USING (tenant_id)
                            ORDER BY key_id""")
    assert rows == [("default", "d"), ("acme", "a")]
    res = runner.invoke(app, ["keys", "list"])
    assert res.exit_code == 0 and "acme" in res.stdout and "default" not in res.stdout, res.output
    assert "default" in runner.invoke(app, ["keys", "list", "--tenant", "default"]).stdout
    # a key of another tenant is not revoked under RECO_TENANT=default
    res = runner.invoke(app, ["keys", "revoke", acme_key[:12]], env={"RECO_TENANT": "default"})
    assert res.exit_code == 1 and "belongs to tenant acme" in res.stderr
    assert _sql(cli_env, "SELECT count(*) FROM reco.api_keys WHERE revoked_at IS NULL") == [(2,)]
    res = runner.invoke(app, ["keys", "revoke", acme_key[:12]])
    assert res.exit_code == 0 and "revoked 1 key" in res.stdout


def test_keys_revoke_ends_the_keys_console_sessions(cli_env):
    key = runner.invoke(app, ["keys", "create", "--name", "console"]).stdout.strip()
    other = runner.invoke(app, ["keys", "create", "--name", "kept"]).stdout.strip()
    for k in (key, key, other):
        _sql(cli_env, "SELECT reco.api_console_login(%s, '1 hour', '10 minutes')", (k,))
    res = runner.invoke(app, ["keys", "revoke", key[:12]])
    assert res.exit_code == 0 and "revoked 1 key; 2 console session(s) ended" in res.stdout, res.output
    rows = _sql(cli_env, """SELECT k.name, s.ended_why FROM reco.console_sessions s JOIN reco.api_keys k USING (key_id)
                            ORDER BY s.session_id""")
    assert rows == [("console", "revoked"), ("console", "revoked"), ("kept", None)]


def test_tenants_create_list_drop(cli_env):
    res = runner.invoke(app, ["tenants", "create", "acme"])
    assert res.exit_code == 0 and "tenant acme created" in res.stdout, res.output
    assert "exists" in runner.invoke(app, ["tenants", "create", "acme"]).stdout
    _seed(cli_env, "acme", users=3)
    _seed(cli_env, "default", users=1)
    res = runner.invoke(app, ["tenants", "list"])
    assert res.exit_code == 0, res.output
    cells = [[c.strip() for c in ln.strip().strip("│").split("│")] for ln in res.stdout.splitlines()]
    rows = {r[0]: r[2:6] for r in cells if r[0] in ("default", "acme")}  # users, features, events, keys
    assert rows == {"default": ["1", "1", "1", "0"], "acme": ["3", "1", "3", "0"]}, res.stdout

    res = runner.invoke(app, ["tenants", "drop", "acme"], input="n\n")
    assert res.exit_code == 1 and "drop tenant acme" in res.output and "3 users" in res.output
    assert _sql(cli_env, "SELECT count(*) FROM reco.tenants WHERE slug = 'acme'") == [(1,)]
    res = runner.invoke(app, ["tenants", "drop", "acme"], input="y\n")
    assert res.exit_code == 0 and "dropped tenant acme" in res.stdout, res.output
    assert _sql(cli_env, "SELECT count(*) FROM reco.tenants WHERE slug = 'acme'") == [(0,)]
    res = runner.invoke(app, ["tenants", "drop", "default", "--yes"])
    assert isinstance(res.exception, psycopg.Error) and "cannot be dropped" in str(res.exception)


def _insert_run(url: str, job: str, tenant: str, status: str = "succeeded") -> None:
    _sql(url, """INSERT INTO reco.job_runs (job, tenant, status, rows_written, finished_at)
                 VALUES (%s, %s, %s, 7, clock_timestamp())""", (job, tenant, status))


def test_jobs_list_per_tenant_with_full_names(cli_env, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    _sql(cli_env, "SELECT reco.create_tenant('acme')")
    _insert_run(cli_env, "feature_neighbors", "acme", "failed")
    _insert_run(cli_env, "feature_neighbors", "default")
    res = runner.invoke(app, ["jobs", "list"])  # not a terminal: Rich would assume 80 columns
    assert res.exit_code == 0, res.output
    rows = [ln for ln in res.stdout.splitlines() if ln.startswith("feature_neighbors ")]
    assert len(rows) == 2, res.stdout
    assert "default" in rows[0] and "succeeded" in rows[0] and "acme" in rows[1] and "failed" in rows[1]
    assert "…" not in res.stdout
    names = {r[0] for r in _sql(cli_env, "SELECT name FROM reco.jobs")}
    for name in names:
        assert re.search(rf"\b{name}\b", res.stdout), name
    res = runner.invoke(app, ["jobs", "list", "--tenant", "acme"])
    assert "acme" in res.stdout and "default" not in res.stdout and "failed" in res.stdout
    res = runner.invoke(app, ["jobs", "list"], env={"RECO_TENANT": "default"})
    assert "default" in res.stdout and "acme" not in res.stdout and "failed" not in res.stdout

    # on an 80-column terminal too
    buf = io.StringIO()
    monkeypatch.setattr(cli_common, "console", Console(file=buf, width=80, force_terminal=True, color_system=None))
    assert runner.invoke(app, ["jobs", "list"]).exit_code == 0
    out = buf.getvalue()
    assert "…" not in out and max(len(ln) for ln in out.splitlines() if ln.startswith("feature_neighbors")) <= 80
    assert re.search(r"^feature_neighbors +default +\*/30 \* \* \* \* +\d{4}-\d\d-\d\d \d\d:\d\d +succeeded +7 +0\.0$",
                     out, re.M), out


def test_jobs_run_unknown_job_fails_before_any_progress_bar(cli_env):
    res = runner.invoke(app, ["jobs", "run", "nosuchjob"])
    assert res.exit_code == 1, res.output
    assert 'unknown job "nosuchjob"' in res.stderr and "feature_neighbors" in res.stderr
    assert "━" not in res.output and "%" not in res.output
    res = runner.invoke(app, ["jobs", "run", "all", "--tenant", "nosuch"])
    assert isinstance(res.exception, psycopg.Error) and 'unknown tenant "nosuch"' in str(res.exception)
    assert "━" not in res.output
    assert _sql(cli_env, "SELECT count(*) FROM reco.job_runs") == [(0,)]


def test_jobs_schedule_per_tenant_needs_pg_cron(cli_env):
    for args in (["jobs", "schedule", "--tenant", "default"], ["jobs", "unschedule"]):
        res = runner.invoke(app, args)
        assert isinstance(res.exception, psycopg.errors.FeatureNotSupported), res.output
        assert "pg_cron is not installed" in str(res.exception)


def test_jobs_schedule_per_tenant(cron_db, server_url, monkeypatch):
    """A tenant's own pg_cron jobs: pgreco-<job>@<tenant>, running that tenant only (make test-pg-cron)."""
    from app.db import with_dbname

    monkeypatch.setenv("RECO_DATABASE_URL", with_dbname(server_url, cron_db.info.dbname))
    get_settings.cache_clear()
    cron_db.execute("SELECT reco.create_tenant('acme')")
    try:
        res = runner.invoke(app, ["jobs", "schedule", "--tenant", "acme"])
        assert res.exit_code == 0, res.output
        jobs = {r["name"]: r["schedule"] for r in cron_db.execute("SELECT name, schedule FROM reco.jobs")}
        cron = cron_db.execute("SELECT jobname, schedule, command FROM cron.job "
                               "WHERE jobname LIKE 'pgreco-%' ORDER BY jobname").fetchall()
        assert cron == sorted(({"jobname": f"pgreco-{n}@acme", "schedule": sch,
                                "command": f"CALL reco.run_job('{n}', 'acme')"} for n, sch in jobs.items()),
                              key=lambda r: r["jobname"])
        assert runner.invoke(app, ["jobs", "schedule", "--tenant", "acme"]).exit_code == 0  # no duplicates
        assert cron_db.execute("SELECT count(*) AS n FROM cron.job WHERE jobname LIKE 'pgreco-%'").fetchone()["n"] \
            == len(jobs)
        res = runner.invoke(app, ["jobs", "unschedule"], env={"RECO_TENANT": "acme"})
        assert res.exit_code == 0 and f"removed {len(jobs)} pg_cron jobs" in res.stdout, res.output
    finally:
        cron_db.execute("SELECT reco.drop_tenant('acme')")
        get_settings.cache_clear()


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["reco", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_unmigrated_database_says_to_migrate(empty_db, monkeypatch, capsys):
    monkeypatch.setenv("RECO_DATABASE_URL", empty_db)
    get_settings.cache_clear()
    try:
        for args, message in ((["recommend", "U1"], 'schema "reco" does not exist'),
                              (["keys", "list"], 'schema "reco" does not exist'),
                              (["settings", "repairs"], 'relation "reco.setting_repairs" does not exist'),
                              (["jobs", "list"], 'schema "reco" does not exist')):
            code, _out, err = _main(monkeypatch, capsys, *args)
            assert code == 1 and message in err, err
            assert "run `reco migrate`" in err, err
        # an error that is not about the schema gets no such hint
        assert runner.invoke(app, ["migrate"]).exit_code == 0
        code, _out, err = _main(monkeypatch, capsys, "recommend", "U1", "--tenant", "nosuch")
        assert code == 1 and 'unknown tenant "nosuch"' in err and "reco.create_tenant" in err
        assert "migrate" not in err
    finally:
        get_settings.cache_clear()


def test_names_next_to_ids(cli_env):
    _seed(cli_env, "default", users=2)
    _sql(cli_env, "SELECT reco.upsert_features(%s)",
         (json.dumps([{"feature_id": "webhooks", "name": "Webhooks for jobs", "category": "api"}]),))
    _sql(cli_env, "SELECT reco.ingest_events(%s)", (json.dumps(
        [{"user_id": "default-0", "feature_id": "webhooks", "occurred_at": "2025-01-02T00:00:00Z"}]),))
    assert runner.invoke(app, ["jobs", "run", "all"]).exit_code == 0
    res = runner.invoke(app, ["starter", "newcomer", "--k", "2"])
    assert res.exit_code == 0, res.output
    assert "name" in res.stdout.splitlines()[1]
    assert re.search(r"bulk-export\s+│\s+Bulk export", res.stdout), res.stdout
    assert re.search(r"webhooks\s+│\s+Webhooks for jobs", res.stdout), res.stdout
    res = runner.invoke(app, ["recommend", "default-0"])
    assert res.exit_code == 0 and "name" in res.stdout, res.output
    res = runner.invoke(app, ["similar", "bulk-export"])
    assert res.exit_code == 0 and "name" in res.stdout, res.output
    res = runner.invoke(app, ["plan", "default-0"])
    assert res.exit_code == 0 and "name" in res.stdout, res.output


def test_demo_checks_the_port_first(cli_env, tmp_path, monkeypatch):
    monkeypatch.setenv("RECO_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = runner.invoke(app, ["demo", "--users", "50", "--port", str(port)])
    assert res.exit_code == 1 and f"port {port} is in use" in res.stderr, res.output
    assert "database" not in res.stdout and not (tmp_path / "demo").exists()
    assert _sql(cli_env, "SELECT count(*) FROM reco.users") == [(0,)]


def test_demo_one_tenant_its_counts_and_one_key(cli_env, tmp_path, monkeypatch):
    monkeypatch.setenv("RECO_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    served = []
    monkeypatch.setattr(cli_demo, "run_server", lambda host, port, workers: served.append(port))
    _seed(cli_env, "default", users=5)
    _seed(cli_env, "other", users=7)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["demo", "--users", "100", "--days", "14", "--port", str(port)]  # small: the counts are what matter
    res = runner.invoke(app, [*args, "--tenant", "shop"])
    assert res.exit_code == 0, res.output
    assert served == [port]
    # the jobs (and the tune run) for the demo's tenant only
    assert {r[0] for r in _sql(cli_env, "SELECT DISTINCT tenant FROM reco.job_runs")} == {"shop"}
    # its table counts are its own rows
    counts = {k: int(v.replace(",", "")) for k, v in re.findall(r"reco\.(\w+): (\d+(?:,\d{3})*)", res.stdout)}
    shop = _sql(cli_env, """SELECT (SELECT count(*) FROM reco.users WHERE tenant_id = t),
                                   (SELECT count(*) FROM reco.events WHERE tenant_id = t),
                                   (SELECT count(*) FROM reco.features WHERE tenant_id = t)
                            FROM reco._tenant_id('shop') t""")[0]
    assert (counts["users"], counts["events"], counts["features"]) == shop
    assert shop[0] == 100
    # the other tenants are untouched
    assert _sql(cli_env, """SELECT t.slug, count(u.*) FROM reco.tenants t LEFT JOIN reco.users u USING (tenant_id)
                            GROUP BY 1 ORDER BY 1""") == [("default", 5), ("other", 7), ("shop", 100)]
    key = re.search(r"key (pgr_\w+)", res.stdout).group(1)
    key_file = tmp_path / cli_demo.DEMO_KEYS
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert json.loads(key_file.read_text()) == {"shop": key}
    assert "--tenant shop" in res.stdout

    # a second run, loading without serving: the same key, no new one, and it says so
    res = runner.invoke(app, [*args, "--no-serve"], env={"RECO_TENANT": "shop"})
    assert res.exit_code == 0, res.output
    assert served == [port]
    assert re.search(r"key (pgr_\w+)", res.stdout).group(1) == key and "the same as last time" in res.stdout
    assert f"serve --port {port}" in res.stdout
    assert _sql(cli_env, "SELECT count(*) FROM reco.api_keys") == [(1,)]
    # a revoked key is replaced
    assert runner.invoke(app, ["keys", "revoke", key[:12], "--tenant", "shop"]).exit_code == 0
    new, fresh = cli_demo.demo_key(cli_env, "shop", tmp_path)
    assert fresh and new != key and json.loads(key_file.read_text()) == {"shop": new}
    assert cli_demo.demo_key(cli_env, "shop", tmp_path) == (new, False)

    # names next to ids, on the demo's catalog, for the tenant of RECO_TENANT or --tenant
    names = {r[0]: r[1] for r in _sql(cli_env, "SELECT feature_id, name FROM reco.features "
                                               "WHERE tenant_id = reco._tenant_id('shop')")}
    for cmd in (["similar", "background-removal", "--k", "3"], ["recommend", "U1", "--k", "3", "--explain"],
                ["starter", "U-new", "--k", "3"]):
        res = runner.invoke(app, cmd, env={"RECO_TENANT": "shop"})
        assert res.exit_code == 0, res.output
        shown = re.findall(r"│ \d+\s+│ ([a-z0-9-]+)\s+│ ([A-Z][^│]*?)\s+│", res.stdout)
        assert len(shown) == 3 and all(names[f] == n for f, n in shown), res.stdout


def test_make_demo_takes_a_port():
    """`make demo PORT=8010` serves on 8010 (dry run: the command make would run)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    # run from `make test` too: the outer make's level and flags would add "Entering directory" lines
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    make = ["make", "--no-print-directory", "-n", "demo"]
    ran = subprocess.run([*make, "PORT=8010"], cwd=root, capture_output=True, text=True, check=True, env=env)
    assert ran.stdout.splitlines()[-1].endswith("reco demo --port 8010")
    ran = subprocess.run(make, cwd=root, capture_output=True, text=True, check=True, env=env)
    assert ran.stdout.splitlines()[-1].endswith("reco demo")


def test_scenario_set_says_what_it_stored(cli_env):
    res = runner.invoke(app, ["scenario", "set", "home", "--overrides", '{"mmr_lambda": 0.9}'])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == 'scenario home: {"mmr_lambda": 0.9}'
