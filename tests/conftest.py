"""One database fixture, three sources (first that applies):

1. ``RECO_TEST_DATABASE_URL``: an existing server (e.g. one with pg_cron) — the tests create
   and drop their own databases on it;
2. testcontainers with a pgvector image, when a Docker engine answers;
3. otherwise the embedded server, in ``.reco/test`` (started for the session, stopped after).

A migrated template database is built once per run (by the xdist controller in a parallel run, see
"parallel runs" below); each test gets a fresh clone (``CREATE DATABASE ... TEMPLATE``), as
procrastinate's test suite does; the common data sets (``world``, ``seeded``) are cloned ready-made
("presets" below).

The fixtures several modules use (``seeded``, ``api``, ``world``, ``tiny``, ``flaky``, ``roles``) are
here too; plain helpers are in tests/helpers.py. A test module never imports another test module
(tests/test_suite_layout.py checks). docs/testing.md describes all of it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import uuid
from collections.abc import Iterator

import psycopg
import psycopg.sql
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from app.db import with_dbname
from app.migrate import migrate
from tests.helpers import DAY, GENEROUS, PATIENT, ROOT, client_for, day, features, ingest, ingest_successes

# Starlette's TestClient sends "Host: testserver": a trusted host in the tests (RECO_TRUSTED_HOSTS)
os.environ.setdefault("RECO_TRUSTED_HOSTS", "localhost,127.0.0.1,::1,0.0.0.0,testserver")
PGVECTOR_IMAGE = "pgvector/pgvector:pg17"


def _docker_engine_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def _server() -> Iterator[str]:
    """The server the tests use (the first source that applies), as the URL of a maintenance database."""
    url = os.environ.get("RECO_TEST_DATABASE_URL")
    if url:
        yield url
        return
    if os.environ.get("RECO_TEST_DOCKER", "1") != "0" and _docker_engine_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer(PGVECTOR_IMAGE, driver=None) as pg:
            yield pg.get_connection_url()
        return
    from app.embedded import EmbeddedServer

    server = EmbeddedServer(ROOT / ".reco" / "test", ephemeral=True)
    was_running = server.status().running
    server.start()
    try:
        yield server.url("postgres")
    finally:
        if not was_running:
            server.stop()


def _may_create_databases(server_url: str) -> bool:
    with psycopg.connect(server_url, autocommit=True) as conn:
        return conn.execute("SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user").fetchone()[0]


@contextlib.contextmanager
def _template(server_url: str) -> Iterator[str]:
    """A migrated template database on the server (dropped after): every test database is a clone of it."""
    if not _may_create_databases(server_url):
        pytest.exit(f"the tests create a database per test, and the role of {server_url} may not "
                    "(ALTER ROLE ... CREATEDB, or use a superuser's URL in RECO_TEST_DATABASE_URL)", returncode=4)
    name = f"reco_tpl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        migrate(with_dbname(server_url, name))
        yield name
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# --- parallel runs (pytest-xdist: make test runs `pytest -n <workers> --dist loadgroup`) --------------
#
# The controller (the process that starts the workers) starts the server and migrates the template once,
# before the first worker starts, and hands both to every worker (workerinput); each worker then clones
# its own databases from that template (named after its pid), as a serial run does. So the cluster-wide
# roles are created by one migration only, and no worker starts or stops the server. Tests that share
# state no per-test database isolates are kept in one xdist group, run by one worker one after another:
# those that use `cron_db` (pg_cron schedules jobs in a single database, cron.database_name), and those
# marked `@pytest.mark.serial("why")` (they run one after another, while the other workers go on).

SERIAL_GROUPS = {"cron_db": "pg_cron"}


class _SharedServer:
    """xdist controller plugin: the server and the template, made at the first worker, ended at unconfigure."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self.url: str | None = None
        self.template: str | None = None

    def pytest_configure_node(self, node) -> None:
        if self.url is None:
            self.url = self._stack.enter_context(_server())
            self.template = self._stack.enter_context(_template(self.url))
        node.workerinput["reco_server_url"] = self.url
        node.workerinput["reco_template_db"] = self.template

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self._stack.close()


class _GroupIds:
    """xdist worker plugin: the group in the test's id (``<nodeid>@<group>``), which is how loadgroup sees it.
    xdist 3.8 writes ``item._nodeid``, which pytest 9.2 no longer reads (the id is ``item._id``): without
    this, the groups are silently ignored and grouped tests run on several workers at once."""

    @pytest.hookimpl(trylast=True)  # after xdist's own
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        if not config.getvalue("loadgroup"):
            return
        for item in items:
            names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                            for m in item.iter_markers("xdist_group")})
            if names and "@" not in item.nodeid and hasattr(item, "_id"):
                from _pytest.nodeid import coerce_node_id

                item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(names)}")


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        config.pluginmanager.register(_GroupIds(), "reco-group-ids")
    config.addinivalue_line("markers", "serial(reason): in a parallel run, in the xdist group 'serial': run one "
                                       "after another by one worker (state a per-test database does not isolate)")
    distributing = config.pluginmanager.hasplugin("xdist") and config.getoption("dist", "no") != "no" \
        and bool(config.getoption("tx", None))
    if distributing and not hasattr(config, "workerinput"):
        if config.getoption("dist") == "load":  # -n without --dist: keep the groups (loadgroup is load + groups)
            config.option.dist = "loadgroup"
        config.pluginmanager.register(_SharedServer(), "reco-shared-server")


#: the modules whose tests take longest (a serial run's --durations): started first, so that a parallel
#: run does not end with one worker still busy on them while the others are idle
SLOW_FIRST = ["test_tune", "test_fuzz", "test_cli", "test_experiments_arms", "test_tune_decisions", "test_wheel",
              "test_decisions", "test_stats"]


def _module_scoped(item: pytest.Item) -> bool:
    """Whether the test uses a fixture of its own module's scope (built once per module and process)."""
    defs = getattr(item, "_fixtureinfo", None)
    return bool(defs) and any(fd[-1].scope == "module" for fd in defs.name2fixturedefs.values() if fd)


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which names a test after its group
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        groups = {group for fixture, group in SERIAL_GROUPS.items() if fixture in item.fixturenames}
        if item.get_closest_marker("serial"):
            groups.add("serial")
        if _module_scoped(item):  # the module in one worker: its module fixture is built once, not per worker
            groups.add(item.module.__name__.rsplit(".", 1)[-1])
        for group in sorted(groups):
            item.add_marker(pytest.mark.xdist_group(group))
    # the same order in every process (xdist checks): the slow modules first, the rest as collected
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__.rsplit(".", 1)[-1], len(rank)))


def _from_controller(request: pytest.FixtureRequest, key: str) -> str | None:
    return getattr(request.config, "workerinput", {}).get(key)


@pytest.fixture(scope="session")
def server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a maintenance database on the server the tests use."""
    shared = _from_controller(request, "reco_server_url")
    if shared:
        yield shared
        return
    with _server() as url:
        yield url


@pytest.fixture(scope="session")
def template_db(request: pytest.FixtureRequest, server_url: str) -> Iterator[str]:
    """The migrated template database (made once per run: by the xdist controller, else by this session)."""
    shared = _from_controller(request, "reco_template_db")
    if shared:
        yield shared
        return
    with _template(server_url) as name:
        yield name


_counter = itertools.count()


# --- presets: the data sets many tests start from, seeded once per session and cloned -----------------
#
# A test that takes `world` or `seeded` (or a fixture built on one: `api`, `flaky`) gets a clone of a
# template that already holds that data set, instead of a clone of the bare template seeded anew: the same
# rows, settings, job runs and key, in a database of its own, without running the jobs again for each test.
# Only conftest's own fixture counts (a module's fixture of the same name is seeded as it says).

_PRESET = pytest.StashKey[tuple[str, object]]()


def _preset_of(request: pytest.FixtureRequest) -> str | None:
    defs = request.node._fixtureinfo.name2fixturedefs
    for name in PRESETS:
        fixturedefs = defs.get(name)
        if fixturedefs and getattr(fixturedefs[-1].func, "__module__", None) == __name__:
            return name
    return None


def _preset_data(request: pytest.FixtureRequest, name: str) -> object:
    """What the preset's seeding returned, when this test's database is a clone of preset ``name``."""
    preset = request.node.stash.get(_PRESET, None)
    return preset[1] if preset and preset[0] == name else None


def _clone(server_url: str, name: str, template: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))


def _drop(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def _presets(server_url: str, template_db: str) -> Iterator[dict]:
    """name -> (template database, what its seeding returned); each made at its first use (this process's)."""
    made: dict[str, tuple[str, object]] = {}
    yield made
    for template, _ in made.values():
        _drop(server_url, template)


def _preset_template(made: dict, server_url: str, template_db: str, name: str) -> tuple[str, object]:
    if name not in made:
        template = f"reco_pre_{name}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        _clone(server_url, template, template_db)
        url = with_dbname(server_url, template)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            data = PRESETS[name](conn)
            pid = conn.info.backend_pid
        with psycopg.connect(server_url, autocommit=True) as conn:  # a template has no sessions when cloned
            conn.execute("SELECT pg_terminate_backend(%s, %s)", (pid, int(PATIENT * 1000)))
        made[name] = (template, True if data is None else data)
    return made[name]


@pytest.fixture
def db_url(request: pytest.FixtureRequest, server_url: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for one test (holding the preset data set the test asks for, if any)."""
    name = f"reco_t{os.getpid()}_{next(_counter)}"
    template = template_db
    preset = _preset_of(request)
    if preset:
        template, data = _preset_template(request.getfixturevalue("_presets"), server_url, template_db, preset)
        request.node.stash[_PRESET] = (preset, data)
    _clone(server_url, name, template)
    yield with_dbname(server_url, name)
    _drop(server_url, name)


@pytest.fixture
def empty_db(server_url: str) -> Iterator[str]:
    """A database with nothing in it (for migration tests)."""
    name = f"reco_e{os.getpid()}_{next(_counter)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield with_dbname(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as c:
        yield c


@pytest.fixture
def cli_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the `reco` CLI (in-process) at the test database."""
    from app.settings import get_settings

    monkeypatch.setenv("RECO_DATABASE_URL", db_url)
    get_settings.cache_clear()
    yield db_url
    get_settings.cache_clear()


@pytest.fixture
def cron_db(server_url: str):
    """The database pg_cron lives in (cron.database_name) on a server that has pg_cron, migrated.

    pg_cron can only be created in that one database, so these tests cannot use a clone. It is
    created when missing and left in place (dropping it stops pg_cron's scheduler until the
    server restarts); the job schedules the tests change are restored. `make test-pg-cron`
    gives such a server."""
    with psycopg.connect(server_url, autocommit=True) as c:
        name = c.execute("SELECT current_setting('cron.database_name', true)").fetchone()[0]
        if not name:
            pytest.skip("no pg_cron on this server (it is not in shared_preload_libraries)")
        if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            c.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    url = with_dbname(server_url, name)
    migrate(url)
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        c.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE 'pgreco-%'")
        schedules = c.execute("SELECT name, schedule FROM reco.jobs").fetchall()
        yield c
        c.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE 'pgreco-%'")
        for row in schedules:
            c.execute("UPDATE reco.jobs SET schedule = %(schedule)s WHERE name = %(name)s", row)


@pytest.fixture
def patient_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """The console's own waits (a pooled connection, a page's statement) as generous as the API's
    under test (tests.helpers.GENEROUS): a busy machine makes a page slow, not an error page."""
    from app.console import data

    monkeypatch.setattr(data, "POOL_WAIT", PATIENT)
    monkeypatch.setattr(data, "TIMEOUT_MS", GENEROUS["api_timeout_ms"])


# --- data the API and engine tests share -----------------------------------------------------------

def _seed_seeded(conn) -> str:
    """a, b, c (category x), d (y), p paid-only; a few users with events; jobs run; a key."""
    conn.execute("SELECT reco.upsert_features(%s)", (Jsonb([
        {"feature_id": "a", "category": "x"}, {"feature_id": "b", "category": "x"},
        {"feature_id": "c", "category": "x"}, {"feature_id": "d", "category": "y"},
        {"feature_id": "p", "category": "z", "requires_paid": True}]),))
    conn.execute("SELECT reco.ingest_events(%s)", (Jsonb(
        [{"user_id": f"U{u}", "feature_id": f, "occurred_at": DAY}
         for u, fs in enumerate(["ab", "abc", "a", "d", "ad", "bc", "ab"]) for f in fs]),))
    conn.execute("SELECT reco.upsert_plans(%s)", (Jsonb([
        {"plan_id": "free", "price": 0, "quota": 100}, {"plan_id": "pro", "price": 20}]),))
    conn.execute("CALL reco.run_job('all')")
    return conn.execute("SELECT reco.create_api_key('default', 'tests') AS k").fetchone()["k"]


@pytest.fixture
def seeded(request, conn):
    """a, b, c (category x), d (y), p paid-only; a few users with events; jobs run; a key
    (in ``seeded.key``)."""
    conn.key = _preset_data(request, "seeded") or _seed_seeded(conn)
    return conn


@pytest.fixture
def api(seeded, db_url):
    """The API (tests.helpers.client_for: generous timeouts) on the seeded database, with its key."""
    with client_for(db_url) as client:
        client.headers["Authorization"] = f"Bearer {seeded.key}"
        yield client


@pytest.fixture
def flaky(seeded):
    """reco.users refuses its next inserts with a serialization failure, then a deadlock (as
    many as the sequence says), the way concurrent batches fail."""
    seeded.execute("""
        CREATE SEQUENCE public.flaky_calls;
        CREATE TABLE public.flaky_plan (n int);
        CREATE FUNCTION public.flaky() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE n bigint := nextval('public.flaky_calls');
        BEGIN
            IF n <= (SELECT coalesce(max(p.n), 0) FROM public.flaky_plan p) THEN
                IF n % 2 = 1 THEN
                    RAISE EXCEPTION 'could not serialize access' USING ERRCODE = 'serialization_failure';
                END IF;
                RAISE EXCEPTION 'deadlock detected' USING ERRCODE = 'deadlock_detected';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER flaky BEFORE INSERT ON reco.users FOR EACH ROW EXECUTE FUNCTION public.flaky();""")

    def fail_next(n: int) -> None:
        seeded.execute("SELECT setval('public.flaky_calls', 1, false)")
        seeded.execute("DELETE FROM public.flaky_plan")
        seeded.execute("INSERT INTO public.flaky_plan VALUES (%s)", (n,))

    return fail_next


def _seed_world(conn) -> None:
    """a, b, c in category x; d in y; p paid-only in z; e inactive.
    U1 (retail): a b; U2 (retail): a b c; U3 (media): a; U4 (media): d; U5 (media, paid): p d."""
    conn.execute("""SELECT reco.upsert_features(%s)""", (Jsonb([
        {"feature_id": "a", "category": "x", "tags": ["alpha"]},
        {"feature_id": "b", "category": "x", "tags": ["alpha"]},
        {"feature_id": "c", "category": "x", "tags": ["alpha"]},
        {"feature_id": "d", "category": "y", "tags": ["delta"]},
        {"feature_id": "p", "category": "z", "requires_paid": True},
        {"feature_id": "e", "category": "x", "active": False},
    ]),))
    conn.execute("SELECT reco.upsert_users(%s)", (Jsonb([
        {"user_id": "U1", "attributes": {"industry": "retail"}},
        {"user_id": "U2", "attributes": {"industry": "retail"}},
        {"user_id": "U3", "attributes": {"industry": "media"}},
        {"user_id": "U4", "attributes": {"industry": "media"}},
        {"user_id": "U5", "paid": True, "attributes": {"industry": "media"}},
        {"user_id": "U6", "attributes": {"industry": "retail"}},  # attributes, no events
    ]),))
    ingest(conn, [("U1", "a"), ("U1", "b"), ("U2", "a"), ("U2", "b"), ("U2", "c"), ("U3", "a"),
                  ("U4", "d"), ("U5", "p"), ("U5", "d")])
    conn.execute("SELECT reco.set_setting('neighbor_shrinkage', '0')")
    conn.execute("SELECT reco.set_setting('min_segment_users', '1')")
    conn.execute("SELECT reco.set_setting('segment_attributes', '[\"industry\"]')")
    conn.execute("CALL reco.run_job('all')")


@pytest.fixture
def world(request, conn):
    """a, b, c in category x; d in y; p paid-only in z; e inactive.
    U1 (retail): a b; U2 (retail): a b c; U3 (media): a; U4 (media): d; U5 (media, paid): p d."""
    if not _preset_data(request, "world"):
        _seed_world(conn)
    return conn


@pytest.fixture
def tiny(conn):
    """Fillers (one feature each, never held out) make popularity p1 > p2 > p3; E1 adopts p1 then
    x (held out); E2 adopts p2 then p1 (held out). In the evaluation scope the popularity of the
    remaining data is p1 7, p2 5, p3 2, x 0."""
    features(conn, ["p1", "p2", "p3", "x"])
    events = [(f"F{i}", "p1", day(1)) for i in range(6)] + [(f"G{i}", "p2", day(1)) for i in range(4)]
    events += [(f"H{i}", "p3", day(1)) for i in range(2)]
    events += [("E1", "p1", day(2)), ("E1", "x", day(4)), ("E2", "p2", day(2)), ("E2", "p1", day(4))]
    ingest_successes(conn, events)
    conn.execute("CALL reco.run_job('all')")
    return conn


@pytest.fixture
def roles(server_url) -> Iterator:
    """make(kind) -> a new role name (LOGIN unless kind says otherwise); dropped at the end."""
    made: list[str] = []

    def make(options: str = "LOGIN") -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(server_url, autocommit=True) as c:
            c.execute(sql.SQL("CREATE ROLE {} " + options).format(sql.Identifier(name)))
        made.append(name)
        return name

    yield make
    with psycopg.connect(server_url, autocommit=True) as c:
        for name in reversed(made):
            c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


#: the data sets db_url can start from (see "presets" above): fixture name -> seeding function
PRESETS = {"world": _seed_world, "seeded": _seed_seeded}
