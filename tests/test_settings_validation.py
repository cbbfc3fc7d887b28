"""Settings are checked when they are stored (type, range, unit: sql/011_setting_rules.sql) by one validator,
reco.check_setting, wherever they are stored: set_setting, scenarios, experiment variants, direct writes. Values
stored before the rules are mended by reco.repair_stored_settings, and serving never fails on a stored value."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.helpers import recommend

# values from issue 24 item 4 (each made every request fail) and a few more of every kind
REFUSED = [
    ("candidates", 1e9), ("candidates", 50.5), ("candidates", 0), ("history_limit", 10**12),
    ("weight_itemcf", 1e308), ("weight_usercf", -1), ("explore_below", 1e300), ("mmr_lambda", 1.5),
    ("hnsw_ef_search", 5000), ("neighbor_model", "svd"), ("max_future", "soon"), ("max_event_age", "-5 days"),
    ("bandit_window", "1 second"), ("segment_attributes", [1]), ("segment_attributes", ["a", "a"]),
    ("kind_weights", {"use": -1}), ("kind_weights", {"use": "1"}), ("decay_tau_days", 0), ("candidates", "20"),
]


def sqlstate_of(conn, query: str, params: tuple) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as info:
        conn.execute(query, params)
    return info.value


def test_every_setting_has_a_rule_its_default_passes(conn):
    rows = conn.execute("SELECT d.key, d.default_value, r.kind,"
                        " reco.check_setting(d.key, d.default_value) AS checked FROM reco.setting_definitions d"
                        " LEFT JOIN reco.setting_rules() r ON r.key = d.key").fetchall()
    assert len(rows) >= 38
    assert [r["key"] for r in rows if r["kind"] is None] == []  # a new setting needs a rule in 011
    assert all(r["checked"] == r["default_value"] for r in rows)
    # no rule for a setting that does not exist
    orphans = conn.execute("SELECT r.key FROM reco.setting_rules() r WHERE NOT EXISTS"
                           " (SELECT 1 FROM reco.setting_definitions d WHERE d.key = r.key)").fetchall()
    assert orphans == []


@pytest.mark.parametrize(("key", "value"), REFUSED)
def test_set_setting_refuses_what_would_break_serving(conn, key, value):
    err = sqlstate_of(conn, "SELECT reco.set_setting(%s, %s)", (key, Jsonb(value)))
    assert err.sqlstate == "22023"
    assert key in err.diag.message_primary and err.diag.message_hint
    assert conn.execute("SELECT count(*) AS n FROM reco.settings WHERE key = %s", (key,)).fetchone()["n"] == 0


def test_integral_numbers_are_normalised_and_limits_are_inclusive(conn):
    assert conn.execute("SELECT reco.set_setting('candidates', '50.0') AS v").fetchone()["v"] == 50
    stored = conn.execute("SELECT value::text AS v FROM reco.settings WHERE key = 'candidates'").fetchone()["v"]
    assert stored == "50"
    for key, value in (("candidates", 1000), ("mmr_lambda", 0), ("max_event_age", "100 years"),
                       ("neighbor_model", "rp3beta"), ("kind_weights", {"use": 1, "view": 0.3})):
        assert conn.execute("SELECT reco.set_setting(%s, %s) AS v", (key, Jsonb(value))).fetchone()["v"] == value


def test_direct_writes_to_the_tables_are_checked_too(conn):
    err = sqlstate_of(conn, "INSERT INTO reco.settings (tenant_id, key, value) VALUES (reco._tenant_id(), %s, %s)",
                      ("history_limit", Jsonb(10**12)))
    assert err.sqlstate == "22023"
    conn.execute("INSERT INTO reco.settings (tenant_id, key, value)"
                 " VALUES (reco._tenant_id(), 'history_limit', '7.0')")
    assert conn.execute("SELECT value::text AS v FROM reco.settings WHERE key = 'history_limit'").fetchone()["v"] == "7"
    err = sqlstate_of(conn, "INSERT INTO reco.scenarios (tenant_id, name, overrides)"
                      " VALUES (reco._tenant_id(), 'x', %s)",
                      (Jsonb({"candidates": 1e9}),))
    assert err.sqlstate == "22023"


def test_scenarios_and_variants_use_the_same_rules(world):  # noqa: F811
    conn = world
    for overrides in ({"candidates": 1e9}, {"history_limit": 1e12}, {"weight_prior": 1e308},
                      {"explore_below": 1e300}, {"seen_factor": "0.5"}):
        err = sqlstate_of(conn, "SELECT reco.upsert_scenario('home', %s)", (Jsonb(overrides),))
        assert err.sqlstate == "22023" and "scenario overrides" in err.diag.message_primary, overrides
        err = sqlstate_of(conn, "SELECT reco.create_experiment('e', %s)",
                          (Jsonb([{"name": "control"}, {"name": "b", "overrides": overrides}]),))
        assert err.sqlstate == "22023" and 'variant "b"' in err.diag.message_primary
    assert conn.execute("SELECT count(*) AS n FROM reco.experiments").fetchone()["n"] == 0
    # the variant of the incident: 50.0 is stored as 50 and every request is served
    assert conn.execute("SELECT reco.upsert_scenario('home', '{\"candidates\": 30.0}') AS o").fetchone()["o"] == {
        "candidates": 30}
    conn.execute("SELECT reco.create_experiment('e', %s, '{\"scenario\": \"home\"}')",
                 (Jsonb([{"name": "control"}, {"name": "b", "overrides": {"candidates": 50.0}}]),))
    conn.execute("SELECT reco.start_experiment('e')")
    stored = conn.execute("SELECT overrides::text AS o FROM reco.experiment_variants WHERE name = 'b'").fetchone()["o"]
    assert stored == '{"candidates": 50}'
    for user in ("U1", "U2", "U3", "U4", "U5", "U6", "new-user"):
        assert recommend(conn, user, 3, {"scenario": "home"}), user


def test_experiment_pre_period_must_be_a_window_before_the_exposure(conn):
    for bad in ("-5 days", "10 years", "soon"):
        err = sqlstate_of(conn, "SELECT reco.create_experiment('e', '[{\"name\": \"a\"}, {\"name\": \"b\"}]', %s)",
                          (Jsonb({"pre_period": bad}),))
        assert err.sqlstate == "22023" and "pre_period" in str(err), bad
    conn.execute("SELECT reco.create_experiment('e', '[{\"name\": \"a\"}, {\"name\": \"b\"}]', %s)",
                 (Jsonb({"pre_period": "30 days"}),))


def _store_unchecked(conn, statements: list[tuple[str, tuple]]) -> None:
    """Write as the code before the rules could: with the checking triggers off."""
    tables = ("reco.settings", "reco.scenarios", "reco.experiment_variants")
    for t in tables:
        conn.execute(f"ALTER TABLE {t} DISABLE TRIGGER USER")
    try:
        for query, params in statements:
            conn.execute(query, params)
    finally:
        for t in tables:
            conn.execute(f"ALTER TABLE {t} ENABLE TRIGGER USER")


def test_serving_never_fails_on_a_stored_value_it_cannot_read(world):  # noqa: F811
    conn = world
    conn.execute("SELECT reco.upsert_scenario('home', '{}')")
    _store_unchecked(conn, [
        ("INSERT INTO reco.settings (tenant_id, key, value) VALUES (reco._tenant_id(), 'candidates', '50.0')", ()),
        ("UPDATE reco.scenarios SET overrides = %s", (Jsonb({"history_limit": 1e12, "weight_prior": 1e308}),))])
    with_bad = recommend(conn, "U1", 3, {"seed": 0.5})  # before: invalid input syntax for type integer: "50.0"
    assert with_bad and recommend(conn, "U2", 3, {"scenario": "home"})
    conn.execute("DELETE FROM reco.settings WHERE key = 'candidates'")  # what serving fell back to: the default
    assert [r["feature_id"] for r in with_bad] == [r["feature_id"] for r in recommend(conn, "U1", 3, {"seed": 0.5})]


def test_repair_mends_values_stored_before_the_rules(world):  # noqa: F811
    conn = world
    conn.execute("SELECT reco.upsert_scenario('home', '{}')")
    conn.execute("SELECT reco.create_experiment('e', '[{\"name\": \"control\"}, {\"name\": \"b\"}]',"
                 " '{\"scenario\": \"home\"}')")
    _store_unchecked(conn, [
        ("INSERT INTO reco.settings (tenant_id, key, value) VALUES (reco._tenant_id(), 'candidates', '50.0')", ()),
        ("INSERT INTO reco.settings (tenant_id, key, value) VALUES (reco._tenant_id(), 'explore_below', '1e300')", ()),
        ("UPDATE reco.scenarios SET overrides = %s", (Jsonb({"candidates": 1e9, "mmr_lambda": 0.5}),)),
        ("UPDATE reco.experiment_variants SET overrides = %s WHERE name = 'b'",
         (Jsonb({"candidates": 40.0, "neighbor_model": "ease"}),)),
        ("UPDATE reco.experiments SET pre_period = '-5 days'", ())])
    assert conn.execute("SELECT reco.repair_stored_settings() AS n").fetchone()["n"] == 6
    settings = {r["key"]: r["value"] for r in conn.execute(
        "SELECT key, value::text AS value FROM reco.settings WHERE key IN ('candidates', 'explore_below')")}
    assert settings == {"candidates": "50"}  # normalised; explore_below dropped: its default applies
    assert conn.execute("SELECT overrides FROM reco.scenarios").fetchone()["overrides"] == {"mmr_lambda": 0.5}
    assert conn.execute("SELECT overrides FROM reco.experiment_variants WHERE name = 'b'").fetchone()[
        "overrides"] == {"candidates": 40}
    assert conn.execute("SELECT pre_period::text AS p FROM reco.experiments").fetchone()["p"] == "14 days"
    log = conn.execute("SELECT place, key, repaired FROM reco.setting_repairs ORDER BY repair_id").fetchall()
    assert [(r["place"], r["key"], r["repaired"]) for r in log] == [
        ("setting", "candidates", 50), ("setting", "explore_below", None), ("scenario home", "candidates", None),
        ("experiment e variant b", "candidates", 40), ("experiment e variant b", "neighbor_model", None),
        ("experiment e", "pre_period", "14 days")]
    assert conn.execute("SELECT reco.repair_stored_settings() AS n").fetchone()["n"] == 0  # idempotent
    conn.execute("SELECT reco.start_experiment('e')")
    assert recommend(conn, "U1", 3, {"scenario": "home"})


def test_catalog_lists_every_setting_with_its_rule(conn):
    rows = conn.execute("SELECT * FROM reco.setting_catalog WHERE key IN ('candidates', 'max_future',"
                        " 'neighbor_model')  ORDER BY key").fetchall()
    assert [(r["key"], r["kind"], r["allowed"], r["per_scenario"]) for r in rows] == [
        ("candidates", "integer", "1 to 1000", True), ("max_future", "interval", "0 to 366 days", False),
        ("neighbor_model", "choice", "cosine, rp3beta, ease", False)]
    assert conn.execute("SELECT allowed FROM reco.setting_catalog WHERE key = 'max_event_age'").fetchone()[
        "allowed"] == "1 day to 100 years"


def test_docs_settings_md_is_what_reco_settings_docs_prints(cli_env, conn):
    """docs/settings.md is generated from the rules: a rule or a setting changed without regenerating fails here
    (`reco settings docs > docs/settings.md`)."""
    from typer.testing import CliRunner

    from app.cli import app as cli

    result = CliRunner().invoke(cli, ["settings", "docs"])
    assert result.exit_code == 0, result.output
    assert result.output == (Path(__file__).resolve().parent.parent / "docs" / "settings.md").read_text()
    assert "| `candidates` | integer | 1 to 1000 | features per list | `20` | yes |" in result.output
    repairs = CliRunner().invoke(cli, ["settings", "repairs"])
    assert repairs.exit_code == 0 and "no stored setting needed a repair" in repairs.output
