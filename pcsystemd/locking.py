"""Lock groups: one run at a time per group, with `flock(2)` on a file only root can reach.

Design. Each lock group has a file `<lock_directory>/<group>.lock` in a directory of mode 0700
owned by root (`/run/pcsystemd/locks`). No job user can open such a file, so no job can hold
a lock to block another user's jobs, nor release or steal one, even when jobs of different
users share a group. `pcsystemd-lock@<group>.service` (root, before any job of the group)
creates the directory and the file (mode 0600, so not even a reopen through /proc/<pid>/fd
works for the job user), and `StandardInput=file:<lock file>` makes systemd, still root while
it sets up the process, open the file as the shim's standard input. The shim, already running
as the job user, takes `flock()` on that inherited descriptor. The job's own processes get
/dev/null as standard input and no other descriptors, so they never see it.

Why flock and not a PID file: a flock lock belongs to the open file description. When the
shim dies, even by SIGKILL, the kernel closes its descriptors and the lock is gone at once;
there is no stale lock to detect and PID reuse cannot fool anything.

A person running `pcsystemd run-job` by hand must be root: the shim then opens the same file
itself, so manual runs and systemd's runs exclude each other. Anyone else is told to start
the job through systemd instead.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time

from pcsystemd.errors import RunError
from pcsystemd.vocabulary import Overlap

# The runtime shim imports this module at every job run: no pathlib, no typing at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from pcsystemd.model import GlobalConfig

# While waiting under `overlap: wait`, re-try the lock this often (seconds, growing).
_POLL_FIRST = 0.05
_POLL_MAX = 0.5


def lock_file_path(config: GlobalConfig, lock_group: str) -> str:
    """The lock file of a lock group."""
    return lock_file_in(config.lock_directory, lock_group)


def lock_file_in(lock_directory: str | os.PathLike[str], lock_group: str) -> str:
    """The lock file of a lock group in a lock directory (the shim has no GlobalConfig)."""
    return os.path.join(lock_directory, f"{lock_group}.lock")


def open_lock(path: str | os.PathLike[str], *, inherited_fd: int = 0) -> int:
    """The descriptor to flock: the one systemd opened for us, or (as root) our own."""
    if inherited_is_lock(path, inherited_fd):
        return inherited_fd
    if os.geteuid() != 0:
        raise RunError(
            f"the lock file {path} is only accessible to root: start the job through systemd "
            "(`pcsystemd start JOB` or `systemctl start pcsystemd-JOB.service`), or run "
            "`pcsystemd run-job` as root"
        )
    parent = os.path.dirname(os.fspath(path))
    try:
        os.makedirs(os.path.dirname(parent), mode=0o755, exist_ok=True)
        os.makedirs(parent, mode=0o700, exist_ok=True)
        directory = os.lstat(parent)
        if not stat.S_ISDIR(directory.st_mode) or directory.st_uid != 0:
            raise RunError(f"the lock directory {parent} must be a directory owned by root")
        if directory.st_mode & 0o077:
            # Someone loosened it: job users could then hold or break other users' locks.
            os.chmod(parent, 0o700)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as error:
        raise RunError(f"cannot open the lock file {path}: {error.strerror}") from error


def inherited_is_lock(path: str | os.PathLike[str], fd: int) -> bool:
    """Whether descriptor `fd` is the lock file at `path` (as systemd's StandardInput=file:)."""
    try:
        inherited = os.fstat(fd)
    except OSError:
        return False
    if not stat.S_ISREG(inherited.st_mode):
        return False
    try:
        expected = os.stat(path)
    except PermissionError:
        # The job user cannot look into the root-only directory; the kernel still tells us
        # which file our own descriptor refers to.
        try:
            return os.readlink(f"/proc/self/fd/{fd}") == os.path.realpath(path)
        except OSError:
            return False
    except OSError:
        return False
    return (inherited.st_dev, inherited.st_ino) == (expected.st_dev, expected.st_ino)


def try_lock(fd: int) -> bool:
    """Take the exclusive lock if it is free; never blocks."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise RunError(f"cannot lock: {error.strerror}") from error
    return True


def acquire(
    fd: int,
    overlap: Overlap,
    wait_seconds: float,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], object] = time.sleep,
) -> bool:
    """Take the lock per the overlap policy: at once, or (wait) within `wait_seconds`.

    Returns False when the lock stays held by another run. `should_stop` is polled while
    waiting so that a SIGTERM ends the wait promptly.
    """
    if try_lock(fd):
        return True
    if not overlap.waits():
        return False
    deadline = time.monotonic() + max(wait_seconds, 0.0)
    interval = _POLL_FIRST
    while not should_stop():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        sleep(min(interval, remaining))
        if try_lock(fd):
            return True
        interval = min(interval * 2, _POLL_MAX)
    return False
