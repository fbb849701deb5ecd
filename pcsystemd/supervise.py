"""Supervising one command of a run: copy its output, end it on timeout or stop, reap it all.

One poll() loop, in the main thread, waits on the command's stdout and stderr pipes and on a
self-pipe that every signal writes to (`signal.set_wakeup_fd`): SIGCHLD says a child exited,
SIGTERM/SIGINT/SIGHUP ask the run to stop. There is no busy loop and no lost wake-up: children
are reaped when SIGCHLD arrives (after draining the self-pipe, so one that exits meanwhile
writes to it again), not on every chunk of output. While the loop runs, the output is written
by a second thread (see runlog.py); signals stay with the main thread.

Ending a command means its whole process tree, not just its main process: each command runs
in a new session (its own process group), and the shim makes itself a child subreaper
(PR_SET_CHILD_SUBREAPER) so that descendants which left the group or the session, or whose
parent died, become the shim's children and are found by walking /proc from the shim's pid.
They get SIGTERM (and SIGCONT, in case they are stopped), then SIGKILL after the grace
period, repeated until nothing is left.

When the main process has exited, output may still come from descendants holding the pipes;
it is collected for at most `drain_seconds`, then they are ended like on a timeout and, after
SIGKILL, whatever is still in the pipes is read for at most `FINAL_DRAIN_SECONDS`. So a run
never hangs on a pipe, and no process of the job outlives the run (and its lock).
"""

from __future__ import annotations

import os
import select
import signal
import time

from pcsystemd.history import proc_stat_fields, process_start_ticks
from pcsystemd.journal import PRIORITY_NOTICE
from pcsystemd.runlog import STDERR, STDOUT, RunOutput
from pcsystemd.vocabulary import RunResult

# The runtime shim reaches this module at every job run: typing, contextlib and functools
# would each cost its start-up time, so they are not used here. mypy knows this spelling.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType
    from typing import Any

# After the final SIGKILL, how long to collect what is still in the pipes.
FINAL_DRAIN_SECONDS = 1.0
# A read takes what the pipe holds, up to all of it: fewer wake-ups than smaller reads (256
# and 512 KiB were slower), and with runlog.reuse_freed_memory their size costs nothing.
CHUNK_SIZE = 1 << 20
_PIPE_SIZE = 1 << 20
# Children are reaped on SIGCHLD; at the latest this long after the last reap, as a backstop.
_REAP_FALLBACK_SECONDS = 1.0
_PR_SET_CHILD_SUBREAPER = 36
if TYPE_CHECKING:
    # A note for the log file, and for the journal at the given priority (None: log only).
    Note = Callable[[str, int | None], None]


def become_subreaper() -> bool:
    """Make orphaned descendants our children, so that a timeout can find and end them all."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", "rb") as children:
                found.extend(int(child) for child in children.read().split())
        except (OSError, ValueError):
            continue
    return found


def _children_by_scan(pid: int) -> list[int]:
    """Fallback for kernels without /proc/PID/task/TID/children: scan every process."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = proc_stat_fields(entry)
        if fields is not None and len(fields) > 1 and fields[1] == str(pid).encode():
            found.append(int(entry))
    return found


_HAVE_CHILDREN_FILE = os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, nearest first."""
    list_children = _children if _HAVE_CHILDREN_FILE else _children_by_scan
    result: list[int] = []
    seen = {pid}
    queue = [pid]
    while queue:
        for child in list_children(queue.pop(0)):
            if child not in seen:
                seen.add(child)
                result.append(child)
                queue.append(child)
    return result


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def process_elapsed() -> float:
    """Seconds since this process was created (systemd's RuntimeMaxSec= clock starts later)."""
    ticks = process_start_ticks(os.getpid())
    if ticks is None:
        return 0.0
    uptime = time.clock_gettime(time.CLOCK_BOOTTIME)
    return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))


class Signals:
    """SIGTERM/SIGINT/SIGHUP become a stop request; every signal also wakes poll() via a pipe."""

    STOP = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.stop_signal: int | None = None
        self._previous: dict[int, Any] = {}
        self._previous_wakeup = signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        for number in self.STOP:
            self._previous[number] = signal.signal(number, self._on_stop)
        # A handler (even one doing nothing) makes SIGCHLD reach the wakeup pipe.
        self._previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, self._on_child)

    def _on_stop(self, number: int, frame: FrameType | None) -> None:
        if self.stop_signal is None:
            self.stop_signal = number

    def _on_child(self, number: int, frame: FrameType | None) -> None:
        pass

    def drain(self) -> None:
        try:
            while os.read(self.read_fd, 4096):
                pass
        except BlockingIOError:
            pass  # empty

    def wait(self, seconds: float) -> None:
        """Sleep up to `seconds`, waking early for any signal."""
        poller = select.poll()
        poller.register(self.read_fd, select.POLLIN)
        poller.poll(max(0, int(seconds * 1000)))
        self.drain()

    def restore(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        signal.set_wakeup_fd(self._previous_wakeup)
        os.close(self.read_fd)
        os.close(self.write_fd)


class Supervisor:
    """Runs the poll loop for one command at a time; owns reaping and process-tree killing."""

    def __init__(
        self,
        signals: Signals,
        output: RunOutput,
        note: Note,
        *,
        kill_grace_seconds: float,
        drain_seconds: float,
    ) -> None:
        self.signals = signals
        self.output = output
        self.note = note
        self.kill_grace_seconds = kill_grace_seconds
        self.drain_seconds = drain_seconds
        self.main_pid: int | None = None
        self.main_status: int | None = None

    def supervise(
        self,
        pid: int,
        stdout: int,
        stderr: int,
        *,
        timeout_at: float | None,
        stop_result: Callable[[], RunResult],
    ) -> tuple[int, RunResult | None]:
        """Copy output until the command and its pipes are done; end it on timeout or stop.

        `stdout` and `stderr` are the read ends of the command's pipes (the caller closes
        them). Returns the main process's wait status and, when the shim ended the command,
        why (`stop_result()` decides between timeout and stopped for a stop signal).
        """
        self.main_pid, self.main_status = pid, None
        self.output.start_writer()
        try:
            stop_reason = self._copy_until_done(
                {stdout: STDOUT, stderr: STDERR}, timeout_at, stop_result
            )
        finally:
            self.output.stop_writer()
        assert self.main_status is not None
        return self.main_status, stop_reason

    def _copy_until_done(
        self,
        streams: dict[int, int],
        timeout_at: float | None,
        stop_result: Callable[[], RunResult],
    ) -> RunResult | None:
        """The loop of `supervise` (`streams`: pipe read end → STDOUT or STDERR); returns why
        the shim ended the command, if it did."""
        poller = select.poll()
        for fd in streams:
            _enlarge_pipe(fd)
            os.set_blocking(fd, False)
            poller.register(fd, select.POLLIN)
        poller.register(self.signals.read_fd, select.POLLIN)
        # Reap on the first pass (the command may have exited already) and after every SIGCHLD,
        # not on every chunk of output: a waitpid() per chunk was a syscall for nothing.
        signalled = False
        reaped_at = float("-inf")
        stop_reason: RunResult | None = None
        term_sent_at: float | None = None
        killed_at: float | None = None
        exited_at: float | None = None
        while True:
            deadlines = []
            if term_sent_at is None:
                if timeout_at is not None:
                    deadlines.append(timeout_at)
                if exited_at is not None:
                    deadlines.append(exited_at + self.drain_seconds)
            elif killed_at is None:
                deadlines.append(term_sent_at + self.kill_grace_seconds)
            elif exited_at is not None:
                deadlines.append(max(killed_at, exited_at) + FINAL_DRAIN_SECONDS)
            wait = min(deadlines) - time.monotonic() if deadlines else None
            if exited_at is None:
                # Reap now and then whatever happened to SIGCHLD: nothing can hang on it.
                wait = _REAP_FALLBACK_SECONDS if wait is None else min(wait, _REAP_FALLBACK_SECONDS)
            events = poller.poll(None if wait is None else max(0, int(wait * 1000) + 1))
            for fd, _ in events:
                if fd == self.signals.read_fd:
                    # Drained before reaping: a child exiting after this writes to it again.
                    self.signals.drain()
                    signalled = True
                elif fd in streams and not self._read(fd, streams[fd]):
                    poller.unregister(fd)
                    del streams[fd]
            now = time.monotonic()
            if exited_at is None and (signalled or now >= reaped_at + _REAP_FALLBACK_SECONDS):
                signalled = False
                reaped_at = now
                self.reap()
                if self.main_status is not None:
                    exited_at = now
            if term_sent_at is None:
                if self.signals.stop_signal is not None:
                    stop_reason = stop_result()
                elif timeout_at is not None and now >= timeout_at:
                    stop_reason = RunResult.TIMEOUT
                elif exited_at is not None and streams and now >= exited_at + self.drain_seconds:
                    self.note(
                        "the command exited but processes it started still hold its output "
                        f"open after {self.drain_seconds:g} s: ending them",
                        PRIORITY_NOTICE,
                    )
                    term_sent_at = now
                    self.signal_tree(signal.SIGTERM)
                if stop_reason is not None:
                    why = "time is up" if stop_reason is RunResult.TIMEOUT else "stop requested"
                    self.note(f"{why}: sending SIGTERM to the job's processes", PRIORITY_NOTICE)
                    term_sent_at = now
                    self.signal_tree(signal.SIGTERM)
            elif killed_at is None and now >= term_sent_at + self.kill_grace_seconds:
                self.note(
                    f"processes still running {self.kill_grace_seconds:g} s after SIGTERM: "
                    "sending SIGKILL",
                    PRIORITY_NOTICE,
                )
                killed_at = now
                self.kill_tree()
            if exited_at is not None:
                if not streams:
                    break
                if killed_at is not None and now >= max(killed_at, exited_at) + FINAL_DRAIN_SECONDS:
                    self.note("output pipes still open after SIGKILL: closing them", None)
                    break
        self._end_leftovers(already_signalled=term_sent_at is not None)
        return stop_reason

    def _read(self, fd: int, stream: int) -> bool:
        """Copy what the pipe has; False at end of file."""
        try:
            data = os.read(fd, CHUNK_SIZE)
        except BlockingIOError:
            return True
        except OSError as error:
            name = "stdout" if stream == STDOUT else "stderr"
            self.note(f"reading the job's {name} failed: {error.strerror}", None)
            return False
        if not data:
            return False
        self.output.job_output(stream, data)
        return True

    def reap(self) -> None:
        """Collect every exited child: the command, and orphans adopted as subreaper."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.main_pid:
                self.main_status = status

    def signal_tree(self, number: int) -> None:
        if self.main_status is None and self.main_pid is not None:
            # Its process group id is its pid (start_new_session); while it is unreaped the
            # id cannot have been reused.
            try:
                os.killpg(self.main_pid, number)
            except OSError:
                pass  # the group is gone already
        for pid in descendants(os.getpid()):
            try:
                os.kill(pid, number)
                if number == signal.SIGTERM:
                    os.kill(pid, signal.SIGCONT)  # a stopped process must wake up to die
            except OSError:
                pass  # exited meanwhile

    def kill_tree(self) -> None:
        """SIGKILL everything below us until nothing is left (processes may still be forking)."""
        for _ in range(100):
            self.signal_tree(signal.SIGKILL)
            self.reap()
            if not descendants(os.getpid()):
                return
            time.sleep(0.01)

    def _end_leftovers(self, *, already_signalled: bool) -> None:
        """End whatever the command left running, as systemd would when the unit stops."""
        self.reap()
        if not descendants(os.getpid()):
            return
        if not already_signalled:
            self.note("the command left processes running: ending them", PRIORITY_NOTICE)
            self.signal_tree(signal.SIGTERM)
            deadline = time.monotonic() + self.kill_grace_seconds
            while time.monotonic() < deadline:
                self.reap()
                if not descendants(os.getpid()):
                    return
                self.signals.wait(min(0.2, deadline - time.monotonic()))
        self.kill_tree()


def _enlarge_pipe(fd: int) -> None:
    # Fewer, larger reads: the pipe's default 64 KiB would cost a wake-up per 64 KiB.
    import fcntl

    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    except OSError:
        pass  # over /proc/sys/fs/pipe-max-size for this user: the default size works too
