"""The load generator of `reco bench api` against a small HTTP/1.1 server: it counts answers,
statuses and errors, sends bodies intact, and counts a connection the server drops as an error."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.tools import loadgen
from tests.helpers import PATIENT


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the API server
    bodies: list[bytes] = []

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        if self.path == "/drop":
            self.close_connection = True
            return
        assert self.headers["Authorization"] == "Bearer k"
        # ~90 kB: the answer arrives in several reads
        self._answer(200 if self.path.startswith("/ok") else 500, b'{"items": [' + b"1, " * 30000 + b"1]}")

    def do_POST(self) -> None:  # noqa: N802
        Handler.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self._answer(200, b"{}")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()


def test_counts_answers_and_errors(server):
    ok = loadgen.run("127.0.0.1", server, loadgen.get(lambda r: f"/ok/{r.randint(1, 9)}", "k"),
                     connections=3, seconds=PATIENT, limit=60)
    assert 60 <= ok.requests < 63  # each connection stops once the limit is reached
    assert ok.statuses == {200: ok.requests} and ok.errors == 0
    assert len(ok.latencies_ms) == ok.requests and 0 < ok.pct(0.5) <= ok.pct(0.99)
    bad = loadgen.run("127.0.0.1", server, loadgen.get(lambda r: "/bad", "k"), connections=2, seconds=PATIENT, limit=10)
    assert bad.errors == bad.requests >= 10 and set(bad.statuses) == {500}


def test_posts_bodies_intact(server):
    Handler.bodies = []
    sent = [b'{"n": %d, "pad": "%s"}' % (i, b"x" * 5000) for i in range(20)]
    it = iter(sent)
    res = loadgen.run("127.0.0.1", server, loadgen.post("/events", lambda r: next(it), "k"),
                      connections=1, seconds=PATIENT, limit=20)
    assert res.requests == 20 and res.errors == 0
    assert Handler.bodies == sent


def test_a_dropped_connection_is_an_error(server):
    # each connection ends at the drop
    res = loadgen.run("127.0.0.1", server, loadgen.get(lambda r: "/drop", "k"), connections=2, seconds=PATIENT)
    assert res.requests == 0 and res.errors == 2 and res.statuses == {0: 2}
