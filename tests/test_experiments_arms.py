"""Experiments protect their arms: a settings change that a running experiment's variants would serve is
refused (SQLSTATE 55000, naming the experiment) unless forced with a reason; every change of a tenant's
settings is kept in reco.settings_history and shown by the experiment's report and console page; the tune
does not apply its result under a running experiment and says why."""

from __future__ import annotations

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from tests.helpers import crafted as _crafted
from tests.helpers import recommend


def _experiment(conn, name: str = "boost", overrides: dict | None = None, scenario: str = "default",
                start: bool = True) -> None:
    conn.execute("SELECT reco.create_experiment(%s, %s, %s)",
                 (name, Jsonb([{"name": "control"},
                               {"name": "treatment", "overrides": overrides or {"weight_usercf": 0.5}}]),
                  Jsonb({"scenario": scenario})))
    if start:
        conn.execute("SELECT reco.start_experiment(%s)", (name,))


def _history(conn) -> list[dict]:
    return conn.execute("SELECT key, old_value, new_value, changed_by, forced, reason, experiments"
                        " FROM reco.settings_history ORDER BY change_id").fetchall()


def test_a_change_the_control_serves_is_refused_naming_the_experiment(world):
    before = world.execute("SELECT reco.setting('weight_itemcf', 1) AS v").fetchone()["v"]
    n_history = len(_history(world))
    _experiment(world)
    with pytest.raises(psycopg.Error) as exc:
        world.execute("SELECT reco.set_setting('weight_itemcf', '0.05')")
    assert exc.value.sqlstate == "55000"
    assert '"boost"' in exc.value.diag.message_primary and "weight_itemcf" in exc.value.diag.message_primary
    assert "force_settings_change" in exc.value.diag.message_hint
    # a reset (to a different default) and a direct UPDATE are refused the same way (a trigger guards the table)
    with pytest.raises(psycopg.Error) as exc:
        world.execute("SELECT reco.reset_setting('min_segment_users')")  # fixture: 1, default 30
    assert exc.value.sqlstate == "55000"
    with pytest.raises(psycopg.Error) as exc:
        world.execute("UPDATE reco.settings SET value = '5' WHERE key = 'min_segment_users'")
    assert exc.value.sqlstate == "55000"
    # nothing changed, nothing logged
    assert world.execute("SELECT reco.setting('weight_itemcf', 1) AS v").fetchone()["v"] == before
    assert world.execute("SELECT reco.setting('min_segment_users', 1) AS v").fetchone()["v"] == 1
    assert len(_history(world)) == n_history


def test_what_no_arm_reads_may_change(world):
    _experiment(world, overrides={"weight_usercf": 0.5, "mmr_lambda": 0.7})
    world.execute("UPDATE reco.experiment_variants SET overrides = '{\"weight_usercf\": 0.1}' WHERE position = 0")
    # every variant overrides weight_usercf; evaluation_users is no arm's setting; setting a value to
    # the value in force is no change
    world.execute("SELECT reco.set_setting('weight_usercf', '0.9')")
    world.execute("SELECT reco.set_setting('evaluation_users', '500')")
    world.execute("SELECT reco.set_setting('min_segment_users', '1')")
    # mmr_lambda: the control serves the tenant's value
    with pytest.raises(psycopg.Error) as exc:
        world.execute("SELECT reco.set_setting('mmr_lambda', '0.5')")
    assert exc.value.sqlstate == "55000"
    # another tenant, a draft and a stopped experiment do not hold anything
    world.execute("SELECT reco.create_tenant('acme')")
    world.execute("SELECT reco.set_setting('mmr_lambda', '0.5', 'acme')")
    world.execute("SELECT reco.stop_experiment('boost')")
    _experiment(world, name="draft", start=False)
    world.execute("SELECT reco.set_setting('mmr_lambda', '0.5')")
    assert [(h["key"], h["new_value"]) for h in _history(world)][-4:] == [
        ("weight_usercf", 0.9), ("evaluation_users", 500), ("mmr_lambda", 0.5), ("mmr_lambda", 0.5)]


def test_a_scenario_override_shields_the_arms(world):
    world.execute("SELECT reco.upsert_scenario('home', '{\"seen_factor\": 0.5}')")
    _experiment(world, scenario="home")
    world.execute("SELECT reco.set_setting('seen_factor', '0.2')")  # home overrides it: its arms never read it
    with pytest.raises(psycopg.Error):
        world.execute("SELECT reco.set_setting('candidates', '50')")


def test_a_forced_change_goes_through_and_is_recorded_with_its_reason(world, db_url):
    _experiment(world)
    with psycopg.connect(db_url) as tx:  # one transaction: the force lasts until its end
        with pytest.raises(psycopg.Error) as exc:
            tx.execute("SELECT reco.force_settings_change('  ')")
        assert exc.value.sqlstate == "22023"
    with psycopg.connect(db_url) as tx:
        tx.execute("SET application_name = 'ops-script'")
        tx.execute("SELECT reco.force_settings_change('weights bug, agreed with the owner')")
        tx.execute("SELECT reco.set_setting('weight_itemcf', '0.05')")
    last = _history(world)[-1]
    assert last["key"] == "weight_itemcf" and last["new_value"] == 0.05 and last["forced"]
    assert last["reason"] == "weights bug, agreed with the owner" and last["experiments"] == ["boost"]
    assert last["changed_by"].startswith("ops-script (")
    # the force ended with its transaction
    with pytest.raises(psycopg.Error):
        world.execute("SELECT reco.set_setting('weight_itemcf', '0.06')")


def test_history_keeps_every_change_with_the_values_in_force(world):
    world.execute("SELECT reco.set_setting('mmr_lambda', '0.8')")
    world.execute("SELECT reco.set_setting('mmr_lambda', '0.8')")  # the same value: no change
    world.execute("SELECT reco.reset_setting('mmr_lambda')")
    default = world.execute("SELECT default_value AS v FROM reco.setting_definitions WHERE key = 'mmr_lambda'"
                            ).fetchone()["v"]
    rows = [h for h in _history(world) if h["key"] == "mmr_lambda"]
    assert [(h["old_value"], h["new_value"]) for h in rows] == [(default, 0.8), (0.8, default)]
    assert not any(h["forced"] for h in rows)


def test_the_report_and_the_console_show_changes_made_while_it_ran(world, db_url, cli_env):
    world.execute("SELECT reco.set_setting('mmr_lambda', '0.8')")  # before: not the experiment's
    _experiment(world)
    world.execute("SELECT reco.set_setting('evaluation_users', '300')")
    with psycopg.connect(db_url) as tx:
        tx.execute("SELECT reco.force_settings_change('hotfix')")
        tx.execute("SELECT reco.set_setting('weight_prior', '0.02')")
    changes = world.execute("SELECT * FROM reco.experiment_settings_changes('boost')").fetchall()
    assert [(c["key"], c["arms_read"], c["forced"]) for c in changes] == [
        ("evaluation_users", False, False), ("weight_prior", True, True)]
    report = world.execute("SELECT * FROM reco.experiment_report('boost')").fetchall()
    settings = [r for r in report if r["section"] == "settings"]
    assert [r["metric"] for r in settings] == ["evaluation_users", "weight_prior"]
    assert "forced: hotfix" in settings[1]["note"] and "served the new value" in settings[1]["note"]
    from typer.testing import CliRunner

    from app.cli import app
    res = CliRunner().invoke(app, ["experiment", "report", "boost"])
    assert res.exit_code == 0, res.output
    first = res.stdout.splitlines()[:2]
    assert first[0].startswith("settings changed while it ran:") and "evaluation_users" in first[0]
    assert "weight_prior" in first[1] and "forced: hotfix" in first[1]
    # after the stop, a change is no longer the experiment's
    world.execute("SELECT reco.stop_experiment('boost')")
    world.execute("SELECT reco.set_setting('weight_prior', '0.03')")
    assert len(world.execute("SELECT * FROM reco.experiment_settings_changes('boost')").fetchall()) == 2

    from tests.helpers import console_app, login
    key = world.execute("SELECT reco.create_api_key('default', 'console') AS k").fetchone()["k"]
    with TestClient(console_app(db_url), follow_redirects=False) as client:
        login(client, key)
        html = client.get("/console/experiment?name=boost").text
    assert 'id="settings-changes"' in html and "forced: hotfix" in html and "weight_prior" in html


def test_dropping_a_tenant_with_a_running_experiment_still_works(world):
    world.execute("SELECT reco.create_tenant('acme')")
    world.execute("SELECT reco.set_setting('mmr_lambda', '0.5', 'acme')")
    world.execute("SELECT reco.create_experiment('x', %s, '{}', 'acme')",
                  (Jsonb([{"name": "control"}, {"name": "b", "overrides": {"weight_usercf": 0.5}}]),))
    world.execute("SELECT reco.start_experiment('x', 'acme')")
    world.execute("SELECT reco.drop_tenant('acme')")
    assert world.execute("SELECT count(*) AS n FROM reco.tenants WHERE slug = 'acme'").fetchone()["n"] == 0


def test_a_tune_under_a_running_experiment_leaves_the_control_alone_and_says_why(conn):
    _crafted(conn)  # the tenant's τ (365 days) loses to a short one: an unguarded tune applies it
    _experiment(conn, name="usercf-test")
    control = [u for u in (f"S{i}" for i in range(150))
               if conn.execute("SELECT variant FROM reco.assignment(%s)", (u,)).fetchone()["variant"] == "control"][:20]
    served = {u: [r["feature_id"] for r in recommend(conn, u)] for u in control}
    logged = len(_history(conn))
    conn.execute("CALL reco.run_job('tune')")
    run = conn.execute("SELECT message FROM reco.job_runs WHERE job = 'tune'").fetchone()
    assert "not applied" in run["message"] and '"usercf-test"' in run["message"]
    assert "decay_tau_days" in run["message"]
    chosen = conn.execute("SELECT applied FROM reco.tune_trials WHERE chosen").fetchone()
    assert chosen["applied"] is False
    assert conn.execute("SELECT reco.setting('decay_tau_days', 1) AS v").fetchone()["v"] == 365
    assert {u: [r["feature_id"] for r in recommend(conn, u)] for u in control} == served
    assert len(_history(conn)) == logged
    # stopped, the next tune applies
    conn.execute("SELECT reco.stop_experiment('usercf-test')")
    conn.execute("CALL reco.run_job('tune')")
    assert conn.execute("SELECT reco.setting('decay_tau_days', 1) AS v").fetchone()["v"] in (3, 14)
    assert any(h["key"] == "decay_tau_days" and h["changed_by"].startswith("tune ") for h in _history(conn))


def test_a_scenario_change_under_its_running_experiment_is_refused(world, db_url):
    world.execute("SELECT reco.upsert_scenario('home', '{\"mmr_lambda\": 0.9}')")
    _experiment(world, scenario="home")
    with pytest.raises(psycopg.Error) as exc:
        world.execute("SELECT reco.upsert_scenario('home', '{\"mmr_lambda\": 0.5}')")
    assert exc.value.sqlstate == "55000" and '"boost"' in exc.value.diag.message_primary
    assert "mmr_lambda" in exc.value.diag.message_primary
    # the same overrides with a new description, another scenario: allowed
    world.execute("SELECT reco.upsert_scenario('home', '{\"mmr_lambda\": 0.9}', 'new text')")
    world.execute("SELECT reco.upsert_scenario('email', '{\"mmr_lambda\": 0.5}')")
    with psycopg.connect(db_url) as tx:
        tx.execute("SELECT reco.force_settings_change('agreed')")
        tx.execute("SELECT reco.upsert_scenario('home', '{\"mmr_lambda\": 0.5}')")
    assert world.execute("SELECT overrides FROM reco.scenarios WHERE name = 'home'").fetchone()["overrides"] == {
        "mmr_lambda": 0.5}
