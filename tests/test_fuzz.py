"""A property-based fuzzer of the REST API, driven by its OpenAPI document (issue 13).

schemathesis reads /openapi.json and generates requests for every operation: valid ones
(positive: every parameter and body as the schema says) and invalid ones (negative: a parameter
or the body off the schema), with hypothesis. Each request goes, in-process, to the app on a real
test database (seeded: features, users, events, plans, a scenario, a metric, experiments) with a
valid API key; about a third of the valid ones use ids that exist, so that the success paths run
too. Every answer must be:

- below 500;
- when not 2xx: the documented error shape ``{"error": {"status", "code", "message", "hint"?,
  "fields"?, "sqlstate"?}}``, with ``status`` the HTTP status;
- when 2xx: valid against the operation's response schema, where one is declared.

Bounded: FUZZ_EXAMPLES examples per operation and mode (about 2,900 requests in all, about half a
minute here), in SHARDS tests of every SHARDS-th operation each (run in parallel under xdist).
RECO_FUZZ_SEED=<int> explores other inputs (the default is derandomized, so that a run is
reproducible); RECO_FUZZ_EXAMPLES=<n> runs more. A failure is reported with the request
that caused it (curl form) and the answer."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from psycopg.types.json import Jsonb
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.helpers import DAY, PATIENT, client_for, error, wait_for

FUZZ_EXAMPLES = int(os.environ.get("RECO_FUZZ_EXAMPLES", "80"))
SEED = os.environ.get("RECO_FUZZ_SEED")
#: requests all shards send together at least (each its share, by its number of operations)
MIN_REQUESTS = 2000
#: the operations are fuzzed in this many tests (every SHARDS-th operation each), so that xdist runs them
#: side by side: one test of all ~2,900 requests was the suite's longest by far (issue 25)
SHARDS = 4

#: path parameters that exist in the seeded database (the valid requests use them a third of the time)
KNOWN = {"user_id": ["U1", "U2", "U4"], "feature_id": ["a", "b", "d"], "plan_id": ["free", "pro"],
         "name": ["draft-exp", "live-exp", "home", "clicked"]}

ERROR_KEYS = {"status", "code", "message", "hint", "fields", "sqlstate"}


def error_shape_problem(status: int, body) -> str | None:
    """Why a non-2xx body is not the documented error shape (None: it is)."""
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(body["error"], dict):
        return 'not {"error": {...}}'
    err = body["error"]
    if not set(err) <= ERROR_KEYS:
        return f"unexpected keys {sorted(set(err) - ERROR_KEYS)}"
    if err.get("status") != status:
        return f"error.status {err.get('status')!r} is not the HTTP status {status}"
    for name in ("code", "message"):
        if not isinstance(err.get(name), str) or not err[name]:
            return f"error.{name} is missing or empty"
    if err.get("hint") is not None and not isinstance(err["hint"], str):
        return "error.hint is not a string"
    if err.get("sqlstate") is not None and not isinstance(err["sqlstate"], str):
        return "error.sqlstate is not a string"
    fields = err.get("fields")
    if fields is not None and not (isinstance(fields, list) and all(
            isinstance(f, dict) and isinstance(f.get("field"), str) and isinstance(f.get("reason"), str)
            for f in fields)):
        return "error.fields is not a list of {field, reason}"
    return None


@dataclass
class Tally:
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    by_operation: Counter = field(default_factory=Counter)
    #: 2xx answers per operation/mode
    succeeded: Counter = field(default_factory=Counter)


class Bad(AssertionError):
    pass


def send(client, case):
    """The case's request through the test client (in-process, the app's lifespan running)."""
    kw = case.as_transport_kwargs(base_url="http://testserver")
    headers = {k: v for k, v in kw.get("headers", {}).items() if k.lower() != "x-schemathesis-testcaseid"}
    extra: dict = {}
    if "json" in kw:
        extra["content"] = json.dumps(kw["json"], allow_nan=True).encode()
        headers.setdefault("Content-Type", "application/json")
    elif kw.get("data") is not None:
        data = kw["data"]
        extra["content"] = data if isinstance(data, bytes | str) else json.dumps(data).encode()
    return client.request(kw["method"], kw["url"], headers=headers, params=kw.get("params") or None, **extra)


def check(case, response) -> None:
    status = response.status_code
    if status >= 500:
        raise Bad(f"{status}: a server error")
    if not 200 <= status < 300:
        try:
            body = response.json()
        except ValueError:
            raise Bad(f"{status}: the body is not JSON: {response.text[:200]!r}") from None
        problem = error_shape_problem(status, body)
        if problem:
            raise Bad(f"{status}: not the documented error shape ({problem})")
        return
    try:
        case.validate_response(response, checks=[response_schema_conformance])
    except Exception as exc:  # schemathesis raises a group of check failures
        raise Bad(f"{status}: the body does not match the response schema: {str(exc)[:600]}") from None


def seed_world(conn) -> None:
    """test_api's seed, plus a scenario, a metric and two experiments (a draft, a running one)."""
    conn.execute("SELECT reco.upsert_scenario('home', '{\"mmr_lambda\": 0.9}')")
    conn.execute("SELECT reco.create_metric('clicked2', 'click', 'any')")
    for name in ("draft-exp", "live-exp"):
        conn.execute("SELECT reco.create_experiment(%s, %s, %s)",
                     (name, Jsonb([{"name": "control"}, {"name": "b", "overrides": {"mmr_lambda": 0.5}}]),
                      Jsonb({"scenario": "home"})))
    conn.execute("SELECT reco.start_experiment('live-exp')")


def strategies(operation, mode: GenerationMode, headers: dict):
    strategy = operation.as_strategy(mode, headers=headers)
    names = [p.name for p in operation.path_parameters] if mode.is_positive else []
    if names and all(n in KNOWN for n in names):
        known = st.fixed_dictionaries({n: st.sampled_from(KNOWN[n]) for n in names}).flatmap(
            lambda values: operation.as_strategy(mode, headers=headers, path_parameters=values))
        strategy = st.one_of(strategy, strategy, known)
    return strategy


def fuzz(client, schema, tally: Tally, headers: dict, shard: int = 0, shards: int = 1) -> int:
    """Fuzz the operations of one shard (every ``shards``-th, from ``shard``); returns how many operations
    the whole document has."""
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations[shard::shards]:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz_operation(client, operation, mode, headers, tally)
            except Unsatisfiable:
                continue  # nothing to negate (no parameters, no body)
            except Bad as exc:
                tally.failures.append(str(exc))
    return len(operations)


def fuzz_operation(client, operation, mode: GenerationMode, headers: dict, tally: Tally) -> None:
    """FUZZ_EXAMPLES requests of one operation in one mode; raises Bad at the first wrong answer."""
    label = f"{operation.method.upper()} {operation.path} ({mode.value})"
    options = dict(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
                   phases=[Phase.explicit, Phase.generate],  # no shrinking: bounded time, the failure as found
                   suppress_health_check=list(HealthCheck))
    if SEED is None:
        options["derandomize"] = True

    @settings(**options)
    @given(case=strategies(operation, mode, headers))
    def run(case):
        response = send(client, case)
        tally.requests += 1
        tally.by_operation[label] += 1
        tally.statuses[response.status_code] += 1
        tally.succeeded[label] += 200 <= response.status_code < 300
        try:
            check(case, response)
        except Bad as exc:
            raise Bad(f"{label}: {exc}\n  request: {case.as_curl_command()}\n"
                      f"  answer: {response.text[:500]}") from None

    if SEED is not None:
        run = hypothesis.seed(int(SEED))(run)
    run()


@pytest.mark.parametrize("shard", range(SHARDS))
def test_fuzz_the_api_from_its_openapi_document(seeded, db_url, shard):
    """One shard of the operations (every SHARDS-th), on a database of its own: the shards run in parallel
    under xdist, and together send every operation its FUZZ_EXAMPLES examples per mode, as one test did."""
    seed_world(seeded)
    started = time.monotonic()
    # no rate limit here: one key sends thousands of requests (tests/test_rate_limit.py has its own)
    with client_for(db_url, api_rate_limit=0) as client:
        schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
        tally = Tally()
        operations = fuzz(client, schema, tally, {"authorization": f"Bearer {seeded.key}"}, shard, SHARDS)
    seconds = time.monotonic() - started
    print(f"\nfuzz shard {shard}/{SHARDS}: {tally.requests:,} requests in {seconds:.0f} s over "
          f"{len(tally.by_operation)} operation/modes; statuses {dict(sorted(tally.statuses.items()))}; "
          f"{len(tally.failures)} failing operation/modes")
    assert not tally.failures, "\n\n".join(tally.failures)
    mine = len(range(shard, operations, SHARDS))
    assert tally.requests >= MIN_REQUESTS * mine // operations, (tally.requests, dict(tally.by_operation))
    # the success paths ran: 2xx answers on most operations (most of the shard's, given valid requests)
    positive = [label for label in tally.by_operation if label.endswith("(positive)")]
    assert sum(tally.succeeded[label] > 0 for label in positive) * 2 > len(positive), tally.succeeded


# --- what the fuzzer found (each a regression test) ------------------------------------------

@pytest.fixture
def api(seeded, db_url):
    seed_world(seeded)
    with client_for(db_url, api_rate_limit=0) as client:
        client.headers["Authorization"] = f"Bearer {seeded.key}"
        yield client


def test_starting_an_experiment_that_cannot_start_is_a_409_not_a_503(api):
    """object_not_in_prerequisite_state (55000: a second experiment in a scenario, a stopped one)
    was answered 503 database_unavailable, 'unexpected database error'."""
    r = api.post("/v1/experiments/draft-exp/start")  # live-exp runs in the same scenario with all its traffic
    error(r, 409, "conflict")
    assert r.json()["error"]["sqlstate"] == "55000" and "overlap" in r.json()["error"]["hint"]
    assert api.post("/v1/experiments/live-exp/stop").status_code == 200
    r = api.post("/v1/experiments/live-exp/start")  # stopped: cannot start again
    assert error(r, 409, "conflict")["message"] == 'experiment "live-exp" is stopped'


def test_nul_nan_in_experiment_bodies_is_a_422_not_a_500(api):
    """A NUL in a metric's, scenario's or experiment's text reached the driver, which refused it:
    500 database_error. Now the models refuse it (422, where and why), like the catalog's."""
    r = api.put("/v1/metrics/m1", json={"event_kind": "click", "agg": "mean", "prop": "a\x00b"})
    assert "prop: contains a NUL" in error(r, 422, "validation_error")["message"]
    r = api.put("/v1/scenarios/s1", json={"overrides": {"mmr\x00": 0.5}, "description": "x"})
    assert "NUL" in error(r, 422, "validation_error")["message"]
    r = api.post("/v1/experiments", json={"name": "n\x00", "variants": [{"name": "a"}, {"name": "b"}]})
    assert "name: contains a NUL" in error(r, 422, "validation_error")["message"]
    r = api.post("/v1/experiments", content=b'{"name": "e1", "variants": [{"name": "a"}, {"name": "b"}], '
                                            b'"oec": {"clicked": NaN}}', headers={"Content-Type": "application/json"})
    assert "oec.clicked: NaN" in error(r, 422, "validation_error")["message"]
    # and nothing was stored
    assert api.get("/v1/experiments").json() == [e for e in api.get("/v1/experiments").json() if e["name"] != "e1"]


def test_a_value_the_driver_refuses_is_a_422():
    """The net under the models: psycopg's own DataError (no SQLSTATE: it never reached the server)
    is about the request's data, so 422, not 500."""
    import psycopg

    from app.api.errors import from_db

    error = from_db(psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"))
    assert (error.status, error.code) == (422, "invalid_data") and "NUL" in error.message


# --- the soak's parts (reco bench soak runs the whole; see app/tools/soak.py) ---------------------

def test_pools_retry_within_half_a_second_while_the_database_is_away(monkeypatch):
    """psycopg_pool retries a failed connection after 1 s, then 2 s: the API came back up to 2 s
    after the database did. app.api.state.Pool retries after 0.1 s, then at most every 0.5 s: the
    delays its attempts schedule are checked (not the wall-clock gaps, which a busy machine widens)."""
    import asyncio

    import psycopg

    from app.api import state
    from app.api.state import Pool, _Retry

    attempt = _Retry(timeout=5)
    delays = []
    for t in range(8):
        attempt.update_delay(float(t))
        delays.append(attempt.delay)
    assert 0.08 <= delays[0] <= 0.12 and max(delays) <= 0.5

    scheduled: list[float] = []  # the delay before each next attempt, as the pool's attempts chose it

    class Recorded(_Retry):
        def update_delay(self, now: float) -> None:
            super().update_delay(now)
            scheduled.append(self.delay)

    class Refused(Pool):
        async def _connect(self, timeout=None):
            raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(state, "_Retry", Recorded)

    async def main():
        pool = Refused("postgresql:///nowhere", min_size=1, max_size=1, open=False, reconnect_timeout=PATIENT)
        await pool.open(wait=False)
        try:
            async with asyncio.timeout(PATIENT):
                while len(scheduled) < 6:
                    await asyncio.sleep(0.05)
        finally:
            await pool.close()

    asyncio.run(main())
    # the default would be 1 s, then 2 s, 4 s ...
    assert 0.08 <= scheduled[0] <= 0.12 and max(scheduled) <= 0.5 and scheduled[-1] >= 0.3, scheduled


def test_soak_figures_count_by_event_id():
    from app.tools.soak_figures import Answer, Outage, Soak, figures

    s = Soak()
    s.batches = [["a1", "a2"], ["b1", "b2"], ["c1", "c2"], ["d1", "d2"], ["e1"], ["f1"]]
    s.outages = [Outage("crash", down_at=10.0, stopped_at=10.1, back_at=15.0)]
    s.answers = [
        Answer("write", 1.0, 1.1, 200, accepted=2, batch=0),
        Answer("write", 11.0, 11.5, 503, batch=1, nothing_stored=True),  # refused while away
        Answer("write", 11.0, 11.5, 503, batch=2, nothing_stored=True),  # "nothing stored", but it was
        Answer("write", 16.0, 16.2, 200, accepted=2, batch=3),
        Answer("write", 9.9, 10.1, 503, batch=4),  # "may or may not have been done": it was
        Answer("write", 9.9, 10.1, 0, batch=5),  # no answer
        Answer("read", 9.0, 9.01, 200),
        Answer("read", 11.0, 11.5, 200, degraded=True),
        Answer("read", 14.9, 15.4, 200, degraded=True),  # sent while away, answered after
        Answer("read", 15.1, 15.3, 200),
        Answer("read", 15.2, 15.25, 200),
    ]
    f = figures(s, stored={"a1", "a2", "c1", "c2", "d1", "e1", "f1"}, seconds=60)
    assert (f.events_sent, f.events_accepted, f.events_stored) == (10, 4, 7)
    assert f.accepted_lost == 1  # d2
    assert f.refused_but_stored == 2  # c1, c2
    assert (f.unsure_batches, f.unsure_stored, f.unanswered_stored) == (1, 1, 1)
    assert (f.read_5xx, f.write_503, f.write_5xx_not_503) == (0, 3, 0)
    (r,) = f.recoveries
    assert r.first_ok_read == pytest.approx(0.25) and r.last_bad_read is None
    assert r.first_ok_write == pytest.approx(1.2)
    assert r.down_reads == {"degraded": 2}
    assert not f.ok()  # a lost event, and 503s for stored events


def test_a_write_whose_connection_dies_mid_statement_does_not_claim_nothing_was_stored(api, seeded, db_url):
    """A 503 said "Nothing was stored" for any failure, also when the connection died after the
    statement was sent (it may have committed before the answer was lost: `reco bench soak` counts
    such answers). Now only failures before the statement was sent say so."""
    import threading

    import psycopg

    answers = []
    with psycopg.connect(db_url) as locker:
        locker.execute("LOCK TABLE reco.event_ids IN ACCESS EXCLUSIVE MODE")  # the ingest waits for it
        thread = threading.Thread(target=lambda: answers.append(api.post("/v1/events", json={
            "event_id": "cut-1", "user_id": "U1", "feature_id": "a", "occurred_at": DAY})))
        thread.start()
        pids = wait_for(lambda: [r["pid"] for r in seeded.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'pgreco-api' AND wait_event_type = 'Lock'")],
            what="the ingest to wait for the lock")
        seeded.execute("SELECT pg_terminate_backend(%s)", (pids[0],))
        thread.join(PATIENT)
        locker.rollback()
    assert not thread.is_alive()
    err = error(answers[0], 503, "database_unavailable")
    assert "may or may not" in err["message"] and "nothing was stored" not in err["hint"].lower()
    assert "a retry is safe" in err["hint"]
    # the same write again, the database up: stored once
    r = api.post("/v1/events", json={"event_id": "cut-1", "user_id": "U1", "feature_id": "a",
                                     "occurred_at": DAY})
    assert r.status_code == 200 and r.json()["accepted"] + r.json()["duplicates"] == 1
