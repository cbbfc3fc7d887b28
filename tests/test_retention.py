"""The budgeted retention list (sql/087_retention.sql) and its holdout loop (sql/088_retention_loop.sql), on a
real database: the budget arithmetic on a hand-made set, free actions outside the budget, E > 0 only, caps,
cooldowns and the do-not-contact list, the holdout's randomisation, and a measured win-back rate replacing the
assumed one only when it is significant. Churn scores are inserted here (the churn model is another module's)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.types.json import Jsonb

T0 = "2026-10-01T00:00:00Z"

# user: (churn probability, tier, value)
HAND = {"A": (0.9, "high", 100), "B": (0.8, "high", 50), "C": (0.5, "medium", 20), "D": (0.9, "high", 30),
        "E": (0.1, "low", 1), "F": (0.2, "low", 0)}


def _users(conn, users: dict[str, tuple[float, str, float]], as_of: str = "2026-09-30") -> None:
    """Users with a value attribute and a churn score each (the value attribute is the list's V)."""
    conn.execute("SELECT reco.upsert_users(%s)", (Jsonb(
        [{"user_id": u, "attributes": {"value": v}} for u, (_, _, v) in users.items()]),))
    conn.execute("""
        INSERT INTO reco.churn_scores (tenant_id, as_of, user_key, model_id, probability, tier)
        SELECT u.tenant_id, %s::date, u.user_key, 1, (s.value ->> 0)::float8, s.value ->> 1
        FROM jsonb_each(%s) AS s JOIN reco.users u ON u.user_id = s.key""",
                 (as_of, Jsonb({u: [p, t] for u, (p, t, _) in users.items()})))
    conn.execute("SELECT reco.set_setting('retention_value_attribute', '\"value\"')")


def _list(conn, budget: float, at: str = T0, actions: dict | None = None, salt: str | None = None) -> int:
    return conn.execute("SELECT reco._retention_list(reco._tenant_id(), %s::numeric, %s::jsonb, %s::timestamptz,"
                        " %s::text) AS id",
                        (str(budget), Jsonb(actions) if actions is not None else None, at, salt)).fetchone()["id"]


def _picks(conn, list_id: int) -> list[tuple]:
    return [(r["user_id"], r["action"], float(r["expected_profit"]))
            for r in conn.execute("SELECT * FROM reco.retention_list_contacts(%s)", (list_id,))]


@pytest.fixture
def hand(conn):
    _users(conn, HAND)
    conn.execute("SELECT reco.set_setting('retention_holdout', '0')")
    return conn


def test_budget_arithmetic_on_a_hand_made_set(hand):
    # E = p × r × V − cost, defaults coupon 5 / 0.30, sms 0.05 / 0.10, push 0 / 0.03:
    # A coupon 22 (E/cost 4.4), B coupon 7 (1.4), C sms 0.95 (19), D coupon 3.1 (0.62), E push 0.003, F nothing > 0.
    # By E/cost within 10.05: C (0.05), A (5.05), B (10.05); D's coupon does not fit: its free push (0.81) outside.
    lid = _list(hand, 10.05)
    assert _picks(hand, lid) == [("C", "sms", 0.95), ("A", "coupon", 22.0), ("B", "coupon", 7.0),
                                 ("D", "push", 0.81), ("E", "push", 0.003)]
    row = hand.execute("SELECT * FROM reco.retention_lists WHERE list_id = %s", (lid,)).fetchone()
    assert (float(row["spent"]), row["users"], row["treated"], row["held_out"]) == (10.05, 5, 5, 0)
    assert float(row["expected_profit"]) == pytest.approx(22 + 7 + 0.95 + 0.81 + 0.003)
    # one cent less: B's coupon no longer fits, and the list does not skip ahead; B gets its push (1.2)
    lid = _list(hand, 10.04, at="2026-11-15T00:00:00Z")
    assert _picks(hand, lid) == [("C", "sms", 0.95), ("A", "coupon", 22.0), ("B", "push", 1.2),
                                 ("D", "push", 0.81), ("E", "push", 0.003)]


def test_free_actions_are_outside_the_budget_and_only_positive_profit_counts(hand):
    lid = _list(hand, 0)
    assert _picks(hand, lid) == [("A", "push", 2.7), ("B", "push", 1.2), ("D", "push", 0.81),
                                 ("C", "push", 0.3), ("E", "push", 0.003)]
    # no free action, a budget for everyone: F (value 0) and E (every E < 0) are still not on the list
    lid = _list(hand, 1000, at="2026-11-15T00:00:00Z",
                actions={"coupon": {"cost": 5, "win_back_rate": 0.3}, "sms": {"cost": 0.05, "win_back_rate": 0.1}})
    assert {u for u, _, e in _picks(hand, lid)} == {"A", "B", "C", "D"}
    assert all(e > 0 for _, _, e in _picks(hand, lid))


def test_the_tenants_actions_are_stored_and_checked(hand):
    hand.execute("SELECT reco.set_retention_action('coupon', 1, 0.5)")
    actions = hand.execute("SELECT reco.retention_actions() AS a").fetchone()["a"]
    assert set(actions) == {"coupon", "sms", "push"} and actions["coupon"] == {"cost": 1, "win_back_rate": 0.5}
    hand.execute("SELECT reco.remove_retention_action('push')")
    lid = _list(hand, 0)
    assert _picks(hand, lid) == []  # no free action left, no budget
    for bad in ({"coupon": {"cost": -1, "win_back_rate": 0.3}}, {"coupon": {"cost": 1, "win_back_rate": 1.5}},
                {"Coupon!": {"cost": 1, "win_back_rate": 0.3}}, {"coupon": {"cost": 1}}, {}):
        with pytest.raises(psycopg.errors.InvalidParameterValue) as e:
            _list(hand, 10, actions=bad)
        assert e.value.diag.message_hint
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        _list(hand, -1)
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        hand.execute("SELECT reco.set_setting('retention_holdout', '0.9')")
    with pytest.raises(psycopg.errors.NoDataFound):
        hand.execute("SELECT reco.remove_retention_action('fax')")


def test_no_scores_is_a_clear_error(conn):
    with pytest.raises(psycopg.errors.NoDataFound) as e:
        conn.execute("SELECT * FROM reco.retention_list(100)")
    assert "churn_score" in e.value.diag.message_hint


def test_do_not_contact_cooldown_and_contact_cap(hand):
    assert hand.execute("SELECT reco.add_do_not_contact('A', 'asked') AS x").fetchone()["x"] is True
    assert hand.execute("SELECT reco.add_do_not_contact('A') AS x").fetchone()["x"] is False
    with pytest.raises(psycopg.errors.NoDataFound):
        hand.execute("SELECT reco.add_do_not_contact('nobody')")
    assert "A" not in {u for u, _, _ in _picks(hand, _list(hand, 0))}
    assert hand.execute("SELECT reco.remove_do_not_contact('A') AS x").fetchone()["x"] is True
    # everyone was contacted at T0 (A was not: on the list then); the default cooldown is 7 days
    assert {u for u, _, _ in _picks(hand, _list(hand, 0, at="2026-10-02T00:00:00Z"))} == {"A"}
    # 7 days after T0: B-E may have a second contact (the cap is 2 in 30 days); A, contacted a day later, not yet
    assert {u for u, _, _ in _picks(hand, _list(hand, 0, at="2026-10-08T00:00:00Z"))} == {"B", "C", "D", "E"}
    hand.execute("SELECT reco.set_setting('retention_cooldown', '\"1 day\"')")
    # a short cooldown: B-E are at their cap, A is not
    assert {u for u, _, _ in _picks(hand, _list(hand, 0, at="2026-10-11T00:00:00Z"))} == {"A"}
    hand.execute("SELECT reco.set_setting('retention_max_contacts', '3')")
    assert {u for u, _, _ in _picks(hand, _list(hand, 0, at="2026-10-11T12:00:00Z"))} == {"B", "C", "D", "E"}


def _many(conn, n: int, p: float = 0.8, tier: str = "high", value: float = 100, as_of: str = "2026-09-30") -> None:
    _users(conn, {f"U{i}": (p, tier, value) for i in range(n)}, as_of)


def test_the_holdout_is_the_lists_experiment(conn):
    _many(conn, 2000)
    lid = _list(conn, 0)
    rows = conn.execute("""SELECT c.held_out, reco.bucket(l.salt, u.user_id) < 0.1 AS expected
                           FROM reco.retention_contacts c JOIN reco.retention_lists l USING (list_id)
                           JOIN reco.users u ON u.user_key = c.user_key WHERE c.list_id = %s""", (lid,)).fetchall()
    assert len(rows) == 2000 and all(r["held_out"] == r["expected"] for r in rows)
    share = sum(r["held_out"] for r in rows) / len(rows)
    assert 0.08 <= share <= 0.12  # 10 %: 3 standard errors is ±2 points at n = 2000
    exp = conn.execute("""SELECT e.name, e.salt, e.status, array_agg(v.name ORDER BY v.position) AS variants,
                                 array_agg(v.weight ORDER BY v.position) AS weights
                          FROM reco.retention_lists l JOIN reco.experiments e USING (experiment_id)
                          JOIN reco.experiment_variants v USING (experiment_id)
                          WHERE l.list_id = %s GROUP BY e.name, e.salt, e.status""", (lid,)).fetchone()
    assert exp["name"] == f"retention-list-{lid}" and exp["salt"] == f"retention-list-{lid}"
    assert exp["variants"] == ["holdout", "treated"] and exp["weights"] == [0.1, 0.9]
    assert exp["status"] == "stopped"  # it records the split; it never serves
    # deterministic by salt: the same salt holds out the same users, another salt others
    held = {r["user_id"] for r in conn.execute("SELECT user_id FROM reco.retention_list_contacts(%s) WHERE held_out",
                                               (lid,))}
    conn.execute("SELECT reco.set_setting('retention_cooldown', '\"0 days\"')")
    conn.execute("SELECT reco.set_setting('retention_max_contacts', '100')")
    again = _list(conn, 0, at="2026-10-02T00:00:00Z", salt=f"retention-list-{lid}")
    assert held == {r["user_id"] for r in conn.execute(
        "SELECT user_id FROM reco.retention_list_contacts(%s) WHERE held_out", (again,))}
    other = _list(conn, 0, at="2026-10-03T00:00:00Z")
    other_held = {r["user_id"] for r in conn.execute(
        "SELECT user_id FROM reco.retention_list_contacts(%s) WHERE held_out", (other,))}
    assert other_held != held and len(other_held & held) < len(held) / 2


def _outcomes(conn, list_id: int, churn_held: float, churn_treated: float, at: str = "2026-10-05T00:00:00Z") -> None:
    """Users come back (an event) in a fixed pattern: the first share of each arm, in rank order, leaves."""
    rows = conn.execute("SELECT user_id, held_out FROM reco.retention_list_contacts(%s)", (list_id,)).fetchall()
    back = []
    for arm, churn in ((True, churn_held), (False, churn_treated)):
        users = [r["user_id"] for r in rows if r["held_out"] is arm]
        back += users[round(churn * len(users)):]
    conn.execute("SELECT reco.upsert_features(%s)", (Jsonb([{"feature_id": "f"}]),))
    conn.execute("SELECT reco.ingest_events(%s)", (Jsonb(
        [{"user_id": u, "feature_id": "f", "occurred_at": at} for u in back]),))


def test_a_measured_rate_replaces_the_assumed_one_only_when_significant(conn):
    _many(conn, 3000)
    conn.execute("SELECT reco.set_setting('retention_holdout', '0.2')")
    push = {"push": {"cost": 0, "win_back_rate": 0.03}}
    first = _list(conn, 0, actions=push)
    _outcomes(conn, first, churn_held=0.5, churn_treated=0.25)  # the push wins back half the churners
    # not matured yet (14 days): the next list still assumes 3 %
    early = _list(conn, 0, at="2026-10-10T00:00:00Z", actions=push)
    assert conn.execute("SELECT actions -> 'push' -> 'tiers' -> 'high' ->> 'source' AS s FROM reco.retention_lists"
                        " WHERE list_id = %s", (early,)).fetchone()["s"] == "assumed"
    later = _list(conn, 0, at="2026-10-20T00:00:00Z", actions=push)
    used = conn.execute("SELECT actions -> 'push' -> 'tiers' AS t FROM reco.retention_lists WHERE list_id = %s",
                        (later,)).fetchone()["t"]
    assert used["high"]["source"] == "measured"
    assert used["high"]["rate"] == pytest.approx(0.5, abs=0.02)
    assert used["high"]["ci_low"] < 0.5 < used["high"]["ci_high"]
    assert used["medium"] == {"rate": 0.03, "source": "assumed"}  # nothing measured in that tier
    contact = conn.execute("SELECT win_back_rate, rate_source, expected_profit FROM reco.retention_contacts"
                           " WHERE list_id = %s LIMIT 1", (later,)).fetchone()
    assert contact["rate_source"] == "measured"
    assert float(contact["expected_profit"]) == pytest.approx(0.8 * contact["win_back_rate"] * 100, abs=1e-3)


def test_an_insignificant_measurement_keeps_the_assumed_rate(conn):
    _many(conn, 300)
    conn.execute("SELECT reco.set_setting('retention_holdout', '0.2')")
    push = {"push": {"cost": 0, "win_back_rate": 0.03}}
    first = _list(conn, 0, actions=push)
    _outcomes(conn, first, churn_held=0.5, churn_treated=0.45)
    later = _list(conn, 0, at="2026-10-20T00:00:00Z", actions=push)
    high = conn.execute("SELECT actions -> 'push' -> 'tiers' -> 'high' AS h FROM reco.retention_lists"
                        " WHERE list_id = %s", (later,)).fetchone()["h"]
    assert high == {"rate": 0.03, "source": "assumed"}
    eff = conn.execute("SELECT * FROM reco._retention_effects(reco._tenant_id(), '2026-10-20T00:00:00Z')"
                       " WHERE action = 'push' AND tier = 'high'").fetchone()
    assert eff["significant"] is False and eff["p_value"] > 0.05
    assert eff["held_out"] + eff["treated"] == 300 and eff["win_back_rate"] == pytest.approx(0.1, abs=0.05)


def test_rest_makes_and_reads_the_list(api, seeded):
    seeded.execute("""INSERT INTO reco.churn_scores (tenant_id, as_of, user_key, model_id, probability, tier)
                      SELECT tenant_id, current_date, user_key, 1, 0.9, 'high' FROM reco.users""")
    seeded.execute("SELECT reco.set_setting('retention_holdout', '0')")
    # no value per user yet (no payments, no value attribute): an empty list that says why
    empty = api.post("/v1/retention/list", json={"budget": 5})
    assert empty.status_code == 201 and empty.json()["users"] == 0, empty.text
    assert "retention_value_attribute" in empty.json()["note"] and "churn_payment_kind" in empty.json()["note"]
    seeded.execute("SELECT reco.set_setting('retention_value_attribute', '\"value\"')")
    seeded.execute("UPDATE reco.users SET attributes = attributes || '{\"value\": 100}' WHERE user_id IN ('U1', 'U2')")
    res = api.post("/v1/retention/list", json={"budget": 5, "actions": {"coupon": {"cost": 5, "win_back_rate": 0.3},
                                                                         "push": {"cost": 0, "win_back_rate": 0.03}}})
    assert res.status_code == 201, res.text
    body = res.json()
    assert body["budget"] == 5 and body["users"] == 2 == len(body["contacts"])
    assert {c["user_id"] for c in body["contacts"]} == {"U1", "U2"} and "note" not in body
    # one coupon fits the budget (E 22 each: the lower key first); the other user gets a push (2.7)
    assert [(c["user_id"], c["action"], c["expected_profit"]) for c in body["contacts"]] == [
        ("U1", "coupon", 22), ("U2", "push", 2.7)]
    got = api.get("/v1/retention/list", params={"limit": 1})
    assert got.status_code == 200 and got.json()["list_id"] == body["list_id"]
    assert len(got.json()["contacts"]) == 1 and got.json()["truncated"] is True
    for bad, field in (({"budget": -1}, "budget"), ({"budget": 1, "actions": {"coupon": {"cost": 1}}}, "win_back_rate"),
                       ({"budget": 1, "actions": {"Bad!": {"cost": 1, "win_back_rate": 0.1}}}, "actions")):
        res = api.post("/v1/retention/list", json=bad)
        assert res.status_code == 422 and field in res.text, res.text
    assert api.get("/v1/retention/list", params={"list_id": 999999}).status_code == 404
    assert api.get("/v1/retention/list", params={"limit": 0}).status_code == 422
    res = api.post("/v1/retention/list", json={"budget": 1}, headers={"Authorization": "Bearer nope"})
    assert res.status_code == 401


def test_cli_prints_the_list_as_csv_and_keeps_the_do_not_contact_list(cli_env, conn):
    from typer.testing import CliRunner

    from app.cli import app

    _users(conn, HAND)
    conn.execute("SELECT reco.set_setting('retention_holdout', '0')")
    runner = CliRunner()
    assert runner.invoke(app, ["retention", "dnc", "add", "A", "--reason", "asked"]).exit_code == 0
    res = runner.invoke(app, ["retention", "list", "--budget", "10.05"])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert lines[0].startswith("list_id,rank,user_id,action")
    assert [line.split(",")[2:4] for line in lines[1:]] == [["C", "sms"], ["B", "coupon"], ["D", "coupon"],
                                                          ["E", "push"]]
    res = runner.invoke(app, ["retention", "actions", "set", "email", "--cost", "0.01", "--win-back-rate", "0.05"])
    assert res.exit_code == 0 and "email" in res.output
    res = runner.invoke(app, ["retention", "report"])
    assert res.exit_code == 0 and "win-back rates" in res.output


def test_uplift_waits_for_enough_matured_lists_then_reports_qini(conn):
    _many(conn, 600, as_of="2026-08-31")
    conn.execute("SELECT reco.set_setting('retention_holdout', '0.3')")
    conn.execute("SELECT reco.set_setting('retention_cooldown', '\"0 days\"')")
    conn.execute("SELECT reco.set_setting('retention_max_contacts', '100')")
    push = {"push": {"cost": 0, "win_back_rate": 0.03}}
    for day in ("2026-09-01", "2026-09-16", "2026-10-01"):
        lid = _list(conn, 0, at=f"{day}T00:00:00Z", actions=push)
        _outcomes(conn, lid, churn_held=0.6, churn_treated=0.3, at=f"{day}T12:00:00Z")
        with pytest.raises(psycopg.errors.NoDataFound) as e:
            conn.execute("SELECT * FROM reco.retention_uplift()")  # matures 14 days later: not yet
        assert "retention_qini_min_lists" in e.value.diag.message_hint
    conn.execute("SELECT reco._measure_retention_lists(reco._tenant_id(), '2026-10-20T00:00:00Z')")
    rows = conn.execute("SELECT * FROM reco.retention_uplift()").fetchall()
    assert [r["top_share"] for r in rows] == pytest.approx([0.1 * k for k in range(1, 11)])
    whole = rows[-1]
    assert whole["users"] == 1800 and whole["lists"] == 3
    assert whole["uplift"] == pytest.approx(0.3, abs=0.02)  # retention 0.7 treated vs 0.4 held out
    assert whole["uplift"] == pytest.approx(whole["retention_treated"] - whole["retention_held_out"])


def test_erasing_a_user_erases_their_contacts_and_concurrent_lists_wait(hand, db_url):
    lid = _list(hand, 10.05)
    hand.execute("SELECT reco.add_do_not_contact('E')")
    hand.execute("SELECT reco.erase_user('A')")
    assert "A" not in {u for u, _, _ in _picks(hand, lid)}
    assert hand.execute("SELECT count(*) AS n FROM reco.retention_contacts c WHERE NOT EXISTS (SELECT 1 FROM"
                        " reco.users u WHERE u.user_key = c.user_key)").fetchone()["n"] == 0
    hand.execute("SELECT reco.erase_user('E')")
    assert hand.execute("SELECT count(*) AS n FROM reco.retention_do_not_contact").fetchone()["n"] == 0
    # a list in an open transaction holds the tenant's list lock: a second one waits (two connections)
    with psycopg.connect(db_url) as other:
        other.execute("SELECT reco._retention_list(reco._tenant_id(), 0, NULL, '2026-11-20T00:00:00Z')")
        waiting = hand.execute("SELECT pg_try_advisory_xact_lock(reco.lock_key('retention_list'), reco._tenant_id())"
                               " AS got").fetchone()["got"]
        assert waiting is False
        other.rollback()
