"""The embedded server opens no door: private socket directory, peer authentication only.

Each test runs its own throw-away embedded server in a temporary directory whose data path is
long enough (>= 90 characters) to move the socket out of the data directory, under /tmp: the
case that used to be a world-writable directory with ``trust`` for every local user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from app.embedded import POSTGRES_BIN_PATH, SOCKET_PARENT, SYSTEM_USER, EmbeddedServer
from tests.helpers import OTHER_USER, PATIENT
from tests.helpers import need_other_user as _need_other_user


def _as_other(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", OTHER_USER, "--", *cmd], capture_output=True, text=True,
                          timeout=PATIENT, cwd="/")


def _psql_as_other(url: str) -> subprocess.CompletedProcess:
    return _as_other(str(POSTGRES_BIN_PATH / "psql"), url, "-Atc", "SELECT current_user")


@pytest.fixture
def long_data_dir() -> Iterator[tuple[Path, list[EmbeddedServer]]]:
    base = Path(tempfile.mkdtemp(prefix="reco-sec-", dir="/tmp"))
    data_dir = base / ("d" * max(1, 100 - len(str(base))))
    servers: list[EmbeddedServer] = []
    yield data_dir, servers
    for server in servers:
        with contextlib.suppress(Exception):  # best effort; the directory goes anyway
            server.stop()
    shutil.rmtree(base, ignore_errors=True)


def _server_uid() -> int:
    return pwd.getpwnam(SYSTEM_USER).pw_uid if os.geteuid() == 0 else os.geteuid()


def _world_writable(paths: list[Path]) -> list[str]:
    found = []
    for top in paths:
        for dirpath, dirnames, filenames in os.walk(top):
            for name in [".", *dirnames, *filenames]:
                p = Path(dirpath) / name
                st = os.lstat(p)
                if not stat.S_ISLNK(st.st_mode) and st.st_mode & stat.S_IWOTH:
                    found.append(f"{p} {stat.filemode(st.st_mode)}")
    return found


def test_long_path_socket_directory_is_private_and_peer_only(long_data_dir):
    data_dir, servers = long_data_dir
    server = EmbeddedServer(data_dir, ephemeral=True)
    servers.append(server)
    assert len(str(server.pgdata)) >= 90
    old_umask = os.umask(0)  # whatever the caller's umask, nothing may come out world-writable
    try:
        st = server.start()
    finally:
        os.umask(old_umask)

    socket_dir = st.socket_dir
    assert socket_dir is not None and socket_dir != server.pgdata and socket_dir.parent == SOCKET_PARENT
    info = os.lstat(socket_dir)
    assert stat.S_ISDIR(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o700
    assert info.st_uid == _server_uid()
    assert _world_writable([data_dir, socket_dir]) == []

    hba = (server.pgdata / "pg_hba.conf").read_text()
    rules = [line.split() for line in hba.splitlines() if line.strip() and not line.startswith("#")]
    assert rules == [["local", "all", "all", "peer", "map=pgreco"]]

    with psycopg.connect(server.url("postgres")) as conn:  # the owner (or root) gets in
        assert conn.execute("SELECT current_user").fetchone()[0] == "postgres"

    _need_other_user()
    url = server.url("postgres")
    res = _psql_as_other(url)
    assert res.returncode != 0 and "Permission denied" in res.stderr, res
    res = _as_other("ls", str(socket_dir))
    assert res.returncode != 0 and "Permission denied" in res.stderr, res

    # second line of defence: even with the directory and socket opened up, peer
    # authentication turns away an OS user who is not mapped
    os.chmod(socket_dir, 0o711)
    os.chmod(socket_dir / ".s.PGSQL.5432", 0o777)
    try:
        res = _psql_as_other(url)
        assert res.returncode != 0 and "Peer authentication failed" in res.stderr, res
    finally:
        os.chmod(socket_dir / ".s.PGSQL.5432", 0o700)
        os.chmod(socket_dir, 0o700)

    # a server started by an earlier version left its directory open: start() closes it
    os.chmod(socket_dir, 0o777)
    assert server.start().pid == st.pid
    assert stat.S_IMODE(os.lstat(socket_dir).st_mode) == 0o700

    assert server.stop()
    assert not socket_dir.exists()  # removed with the server; made afresh, private, at start


def test_older_data_directory_is_upgraded_at_start(long_data_dir):
    """A data directory from before: trust in pg_hba.conf, a world-writable socket directory
    left in /tmp (or one squatted by another user). The next start closes both."""
    data_dir, servers = long_data_dir
    server = EmbeddedServer(data_dir, ephemeral=True)
    servers.append(server)
    server.start()
    server.stop()
    (server.pgdata / "pg_hba.conf").write_text("local all all trust\n")
    preferred = server._socket_dir()
    assert preferred != server.pgdata
    preferred.mkdir(mode=0o777)
    os.chmod(preferred, 0o777)
    try:
        st = server.start()
        assert st.socket_dir == preferred  # ours: removed and made again, private
        assert stat.S_IMODE(os.lstat(preferred).st_mode) == 0o700
        assert os.lstat(preferred).st_uid == _server_uid()
        assert "trust" not in (server.pgdata / "pg_hba.conf").read_text()
        with psycopg.connect(server.url("postgres")) as conn:
            assert conn.execute("SELECT 1").fetchone()[0] == 1
        server.stop()

        _need_other_user()
        # another user squats the preferred path: the server goes elsewhere, privately
        preferred.mkdir(mode=0o777)
        os.chown(preferred, pwd.getpwnam(OTHER_USER).pw_uid, -1)
        os.chmod(preferred, 0o777)
        st = server.start()
        assert st.socket_dir != preferred and st.socket_dir.parent == SOCKET_PARENT
        assert stat.S_IMODE(os.lstat(st.socket_dir).st_mode) == 0o700
        assert os.lstat(st.socket_dir).st_uid == _server_uid()
        assert os.lstat(preferred).st_uid == pwd.getpwnam(OTHER_USER).pw_uid  # not touched
        res = _psql_as_other(server.url("postgres"))
        assert res.returncode != 0, res
        with psycopg.connect(server.url("postgres")) as conn:
            assert conn.execute("SELECT 1").fetchone()[0] == 1
        server.stop()
    finally:
        shutil.rmtree(preferred, ignore_errors=True)
