"""Starting a job's command: as the job's user, in a new session, with nothing of the shim's.

`spawn` starts one command the way subprocess.Popen would with stdin /dev/null, stdout and
stderr pipes, close_fds, start_new_session and cwd, but with os.posix_spawn: subprocess
costs the shim's start-up several milliseconds of imports. The job's identity comes from
its User=/Group= under systemd; run by hand as root, the shim becomes that user itself
(`job_identity`, `become`), and run by anyone else it refuses to run as the wrong user
(`check_unit_user`).
"""

from __future__ import annotations

import os
import signal

from pcsystemd.errors import RunError

# Only for the type checker: the shim imports this module at every run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import pwd
    from collections.abc import Sequence

    from pcsystemd.runspec import RunSpec


def spawn(
    argv: Sequence[str], environment: dict[str, str], working_directory: str | None
) -> tuple[int, int, int]:
    """Start a command as subprocess.Popen would with stdin=DEVNULL, stdout and stderr
    pipes, close_fds, start_new_session and cwd: (pid, stdout read end, stderr read end).

    posix_spawn, not subprocess: that module costs the shim's start-up several milliseconds
    of imports. The child gets no descriptor of ours beyond its three: every descriptor the
    shim holds is close-on-exec (see `close_on_exec`). posix_spawn cannot change directory
    in the child, so the shim changes its own first: all its own paths are absolute. Raises
    OSError like Popen (FileNotFoundError for a command that is not there).
    """
    # The directory first: like Popen's child, a relative command runs from there.
    if working_directory is not None:
        os.chdir(working_directory)
    executable = _find_executable(argv[0], environment)
    stdout_read, stdout_write = os.pipe()
    stderr_read, stderr_write = os.pipe()
    try:
        pid = os.posix_spawn(
            executable,
            list(argv),
            environment,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, stdout_write, 1),
                (os.POSIX_SPAWN_DUP2, stderr_write, 2),
            ],
            setsid=True,
            # As Popen's restore_signals: Python ignores SIGPIPE and SIGXFSZ, the job must not.
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
            setsigmask=(),
        )
    except BaseException:
        os.close(stdout_read)
        os.close(stderr_read)
        raise
    finally:
        os.close(stdout_write)
        os.close(stderr_write)
    return pid, stdout_read, stderr_read


def _find_executable(name: str, environment: dict[str, str]) -> str:
    """The file to execute for `name`: searched in the job's $PATH unless it has a slash."""
    if "/" in name:
        return name
    denied = None
    for directory in environment.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
            denied = denied or candidate
    if denied is not None:
        raise PermissionError(13, os.strerror(13), denied)
    raise FileNotFoundError(2, os.strerror(2), name)


def close_on_exec() -> None:
    """Mark every descriptor above stderr close-on-exec: a job inherits none of them.

    Python opens its own descriptors so; this catches what a caller leaked to a run by hand.
    (Popen's close_fds did this in the child; posix_spawn has no such action.)
    """
    try:
        descriptors = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in descriptors:
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass  # the listing's own descriptor, closed already


def shell_join(argv: Sequence[str]) -> str:
    """shlex.join without importing shlex (and re) into every run."""
    return " ".join(_shell_quote(argument) for argument in argv)


_SHELL_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./-_")


def _shell_quote(argument: str) -> str:
    """shlex.quote: as is when only safe characters, else in single quotes."""
    if argument and all(character in _SHELL_SAFE for character in argument):
        return argument
    return "'" + argument.replace("'", "'\"'\"'") + "'"


def user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


# The job's identity is a pwd entry and a group id rather than a class of ours: only a run by
# hand as root needs it, and a (data)class would be built at every start-up of the shim.
def job_identity(job: RunSpec) -> tuple[pwd.struct_passwd, int]:
    """The job's user and group id, as systemd's User=/Group= would resolve them."""
    import grp
    import pwd

    try:
        user = pwd.getpwuid(int(job.user)) if job.user.isdigit() else pwd.getpwnam(job.user)
    except KeyError:
        raise RunError(f"the job's user {job.user!r} does not exist") from None
    gid = user.pw_gid
    if job.group is not None:
        try:
            gid = int(job.group) if job.group.isdigit() else grp.getgrnam(job.group).gr_gid
        except KeyError:
            raise RunError(f"the job's group {job.group!r} does not exist") from None
    return user, gid


def become(user: pwd.struct_passwd, gid: int) -> None:
    try:
        os.initgroups(user.pw_name, gid)
        os.setgid(gid)
        os.setuid(user.pw_uid)
    except OSError as error:
        raise RunError(f"cannot switch to user {user.pw_name}: {error.strerror}") from error


def check_unit_user(job: RunSpec) -> None:
    """Refuse to run as someone else than the job says (a unit generated from an old file)."""
    uid = os.geteuid()
    if job.user == str(uid) or job.user == user_name(uid):
        return
    raise RunError(
        f"running as user {user_name(uid)} but the job file says user {job.user}: the unit is "
        "out of date; regenerate the units (systemctl daemon-reload, or pcsystemd apply)"
    )
