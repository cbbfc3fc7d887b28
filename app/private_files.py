"""Files and directories that only their owner may touch, for the embedded server (app/embedded.py):
its start/stop lock file, its data directory's parents, its socket directory under /tmp. Nothing here
follows a symlink another user could have planted."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from pathlib import Path


def private_lock_file(path: Path) -> int:
    """An fd of the lock file, 0600 and ours. An older one (0644, or not ours) is replaced by a new file:
    another user may hold a lock on the old one's inode, never on the new one's."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:
        fd = None
    except OSError:  # a symlink or something else we cannot open: not ours to use
        fd = -1
    if fd is not None and fd >= 0:
        st = os.fstat(fd)
        if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o600 and stat.S_ISREG(st.st_mode):
            return fd
        os.close(fd)
    if fd is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)


def mkdirs(path: Path, mode: int) -> None:
    """``mkdir -p`` whose new directories get ``mode`` exactly, whatever the umask."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, mode)
        except FileExistsError:
            continue
        os.chmod(d, mode)


def is_private_dir(path: Path, uid: int) -> bool:
    """A real directory (not a symlink), owned by ``uid``, closed to group and others."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid and stat.S_IMODE(st.st_mode) & 0o077 == 0


def remove_if_ours(path: Path, uids: set[int]) -> None:
    """Remove what is at ``path`` if one of ``uids`` owns it (never follows symlinks)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if st.st_uid not in uids:
        return
    with contextlib.suppress(OSError):
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path)
        else:
            path.unlink()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
