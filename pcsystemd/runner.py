"""One run of a job, as the runtime shim `pcsystemd run-job JOB` (shim.py) makes it.

One run: take the lock group's flock (see locking.py) under the job's overlap policy,
create the run's log file, record the run as `running` unless the circuit breaker
has tripped, run the commands in sequence (each in its own process group, stdin /dev/null,
no inherited descriptors), copy their output line by line to the log file and to the
journal, enforce the timeout, retry with backoff, write the footer and the history, prune
old logs, and exit non-zero when the run failed so that systemd marks the unit failed and
`OnFailure=` fires.

Order of lock, breaker and history, and why. In order: create the log and state directories
(by hand as root, become the job's user); take the lock; create the log file; write the
`running` record. Every history update reads the file once, under the history lock, and a
run's first update is where the circuit breaker is decided, from what that update read:
there is no separate look at the breaker. Normally that is the `running` update, made while
the lock is held, so the decision sees what the last run of the lock group left: a run that
waited for the lock while the run holding it tripped the breaker is refused, where a check
before the lock would have let it run. When the breaker has tripped, the update records the
run as `tripped` instead (no command runs, the new log file is removed again) and the shim
exits `EXIT_TRIPPED`, saying how to reset. A run that ends before its `running` record (the
lock held under `overlap: skip` or `fail`, a wait that ran out, a stop while waiting, a
setup error) records only that refusal, and that update decides the breaker the same way:
a tripped job is recorded as `tripped` and exits non-zero whatever else stopped it, never
`skipped` with exit 0, so every start of a tripped job shows up as refused. What checking
after the lock costs: a tripped job under `overlap: wait` waits for a busy lock like any
other run before it is refused (within `overlap_wait` and the timeout); a tripped job holds
its lock group for the one history update of its refusal, so a run of another job of the
group starting in that very moment finds the lock held; and a pending slow-start request is
dropped when the breaker refuses the run, as when the lock does. In exchange a run reads
the history twice, not three times.

Timeout. Under systemd (`$INVOCATION_ID` set) the unit's `RuntimeMaxSec=` equals the job's
timeout and fires first: systemd sends the shim SIGTERM (KillMode=mixed), the shim sees that
the run's time is up and records `timeout`. The shim's own clock is set a little later as a
backstop. Run by hand, the shim enforces the timeout itself. Either way the job's whole
process tree gets SIGTERM, then SIGKILL after `KILL_GRACE_SECONDS`; the shim is a child
subreaper, so descendants that leave the process group or the session are still found. A
SIGTERM while the run's time is not up (`systemctl stop`) ends the job the same way, is
recorded as `stopped`, and the shim then dies of that signal, which systemd counts as a
clean stop rather than a failure.

Output. The shim reads the job's stdout and stderr pipes a chunk at a time (see runlog.py).
Under `StandardOutput=journal` it writes every line to its own stdout, stderr lines with a
`<3>` priority prefix so that `journalctl -p err` shows exactly them (runlog.JournalFramer);
run by hand it passes stdout and stderr through to its own. When a command's main process
has exited, output from descendants still holding the pipes is collected for at most
`DRAIN_SECONDS`; whatever is left of the command's processes is then ended like on a
timeout, so no run outlives its lock.

Exit status of the shim: 0 for success and for a run skipped under `overlap: skip`; the
job's own exit status when it failed with one; 128+N when it died of signal N;
`EXIT_FAILURE` when it failed otherwise (stderr under `stderr_is_failure`),
`EXIT_TIMEOUT`, `EXIT_LOCKED`, `EXIT_TRIPPED`, `EXIT_NOT_FOUND` / `EXIT_NOT_EXECUTABLE` for
a command that cannot be run, and `EXIT_ERROR` for the shim's own problems (log directory,
history, job file).

This module is the start-up path of every job run, with shim.py, spawn.py and slowstart.py:
they must not import jinja2, croniter or pystemd (a test checks `sys.modules`), and keep
their other imports few.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from pcsystemd import journal, locking, runlog, runspec, slowstart, spawn
from pcsystemd.errors import RunError
from pcsystemd.history import (
    History,
    RunRecord,
    Trip,
    finish_run,
    process_start_ticks,
    update_history,
)
from pcsystemd.record import record
from pcsystemd.runlog import RunOutput
from pcsystemd.runspec import RunSpec
from pcsystemd.supervise import (
    Signals,
    Supervisor,
    become_subreaper,
    process_elapsed,
    signal_name,
)
from pcsystemd.vocabulary import (
    KILL_GRACE_SECONDS,
    RECORD_MARGIN_SECONDS,
    RunResult,
)

# Only for the type checker: this module is the start-up path of every job run, and typing,
# pathlib, subprocess, shlex and the compiled model (dataclasses) would each cost it
# milliseconds (see runspec.py for how the job reaches the shim without them).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


__all__ = [
    "DRAIN_SECONDS",
    "KILL_GRACE_SECONDS",
    "run_spec",
    "stop_timeout_seconds",
]

EXIT_SUCCESS = 0
EXIT_FAILURE = 1
EXIT_ERROR = 70  # EX_SOFTWARE: the shim could not do its own work
EXIT_LOCKED = 75  # EX_TEMPFAIL: the lock group was busy (overlap: fail, or wait ran out)
EXIT_TRIPPED = 78  # EX_CONFIG: refused by the circuit breaker until `pcsystemd reset`
EXIT_TIMEOUT = 124  # as timeout(1)
EXIT_NOT_EXECUTABLE = 126  # as the shell
EXIT_NOT_FOUND = 127  # as the shell

# After a command's main process exits, how long descendants may keep its output pipes open.
DRAIN_SECONDS = 2.0
# Under systemd, RuntimeMaxSec= fires first; the shim's own clock is this much later.
SYSTEMD_BACKSTOP_SECONDS = 1.0
# A SIGTERM this close to the deadline counts as the timeout (clock granularity).
_DEADLINE_TOLERANCE = 0.25
# How much of the shim's own start-up may count towards the timeout (systemd's clock starts
# when the process is executed, ours when run_spec() is called).
_STARTUP_ALLOWANCE = 10.0
# Where the run's view of the job came from (the log header says it).
SPEC_FROM_UNIT = "as compiled into the unit"
SPEC_STALE = "read again: it or the global config changed since the unit was generated"
SPEC_READ = "read"


def stop_timeout_seconds() -> int:
    """The unit's TimeoutStopSec=: the kill grace period plus time to write the records."""
    return KILL_GRACE_SECONDS + RECORD_MARGIN_SECONDS


@record
class Outcome:
    """How a command, an attempt or the whole run ended."""

    result: RunResult
    exit_status: int | None = None
    signal: str | None = None
    message: str | None = None
    shim_exit: int | None = None  # the shim's exit status when not derived from the above

    def describe(self) -> str:
        text = self.result.value
        if self.signal:
            text += f" (killed by {self.signal})"
        elif self.exit_status is not None and self.result is not RunResult.SUCCESS:
            text += f" (exit status {self.exit_status})"
        if self.message:
            text += f": {self.message}"
        return text

    def exit_code(self) -> int:
        if self.shim_exit is not None:
            return self.shim_exit
        if self.result in (RunResult.SUCCESS, RunResult.SKIPPED):
            return EXIT_SUCCESS
        if self.result is RunResult.TIMEOUT:
            return EXIT_TIMEOUT
        if self.result is RunResult.LOCKED:
            return EXIT_LOCKED
        if self.result is RunResult.TRIPPED:
            return EXIT_TRIPPED
        if self.result is RunResult.ERROR:
            return EXIT_ERROR
        if self.signal:
            return 128 + int(getattr(signal, self.signal, 0))
        if self.exit_status:
            return self.exit_status
        return EXIT_FAILURE


class _Run:
    def __init__(
        self,
        spec: RunSpec,
        signals: Signals,
        *,
        kill_grace_seconds: float,
        drain_seconds: float,
        output_stall_seconds: float,
        origin: str,
    ) -> None:
        self.spec = spec
        self.origin_of_spec = origin
        self.signals = signals
        self.kill_grace_seconds = kill_grace_seconds
        self.drain_seconds = drain_seconds
        self.under_systemd = bool(os.environ.get("INVOCATION_ID"))
        now = time.monotonic()
        self.origin = (
            now - min(process_elapsed(), _STARTUP_ALLOWANCE) if self.under_systemd else now
        )
        self.started = time.time()
        self.run_id = new_run_id(self.started)
        self.log_directory = spec.job_log_directory()
        self.state_directory = spec.job_state_directory()
        self.output = RunOutput(
            journal.attached_to_journal(1),
            self.started,
            stall_seconds=output_stall_seconds,
            must_end=self._must_end,
        )
        self.journald_hung = False  # a datagram timed out: send no more
        self.attempts = 0
        self.slow_start = False
        self.environment = self._child_environment()
        self.supervisor = Supervisor(
            signals,
            self.output,
            self.note,
            kill_grace_seconds=kill_grace_seconds,
            drain_seconds=drain_seconds,
        )
        self.history: History | None = None  # as this run's last update left it
        self.pid = os.getpid()
        self.pid_start = process_start_ticks(self.pid)

    # messages

    def emit(self, priority: int, message: str, **fields: str | int) -> None:
        """A message of the shim's own: journal (with our fields) and, by hand, the terminal."""
        entry: dict[str, str | int] = {
            "MESSAGE": f"{self.spec.slug}: {message}",
            "PRIORITY": priority,
            "SYSLOG_IDENTIFIER": self.spec.unit_base,
            "PCSYSTEMD_JOB": self.spec.slug,
            "PCSYSTEMD_RUN": self.run_id,
        }
        entry.update({f"PCSYSTEMD_{name.upper()}": value for name, value in fields.items()})
        # One datagram that journald left waiting is enough: the rest of the run's messages
        # would each wait as long, eating into the time systemd allows for a stop.
        delivery = journal.Delivery.TIMED_OUT if self.journald_hung else journal.send(entry)
        self.journald_hung = delivery is journal.Delivery.TIMED_OUT
        if self.output.attached:
            if not delivery.sent():
                self.output.journal_line(priority, str(entry["MESSAGE"]))
        else:
            self.output.terminal_line(f"pcsystemd: {entry['MESSAGE']}")

    def note(self, message: str, priority: int | None = None) -> None:
        """A timestamped line in the log file, and in the journal when `priority` is given."""
        self.output.log_lines([message], timestamped=True)
        if priority is not None:
            self.emit(priority, message)

    # records

    def record(self, outcome: Outcome, *, finished: bool = True) -> tuple[Outcome, str | None]:
        """Write this run's record into the history: what was recorded, and any problem.

        The run's first record decides the circuit breaker, from the history this same update
        reads: when the breaker has tripped, the run is recorded as refused (`tripped`)
        instead of `outcome`, and that refusal is returned. On a problem nothing is recorded.
        """
        decides_breaker = self.history is None  # nothing recorded for this run yet
        now = time.time()
        record = self._run_record(outcome, now, finished=finished)
        keep = self.spec.history_length
        refusal: Outcome | None = None

        def change(history: History) -> History:
            nonlocal refusal
            if decides_breaker and history.tripped is not None:
                refusal = _breaker_refusal(history.tripped, self.spec.slug)
                refused = self._run_record(refusal, now, finished=True, ran=False)
                return finish_run(history, refused, self.spec, keep)
            if finished:
                return finish_run(history, record, self.spec, keep)
            return history.with_run(record, keep)

        try:
            updated, problem = update_history(self.state_directory, self.spec.slug, change)
        except RunError as error:
            return outcome, str(error)
        if problem:
            self.emit(journal.PRIORITY_WARNING, f"history: {problem}")
        self.history = updated
        return refusal or outcome, None

    def _run_record(
        self, outcome: Outcome, now: float, *, finished: bool, ran: bool = True
    ) -> RunRecord:
        return RunRecord(
            run_id=self.run_id,
            result=outcome.result,
            start=runlog.utc_timestamp(self.started),
            end=runlog.utc_timestamp(now) if finished else None,
            duration_seconds=round(now - self.started, 3) if finished else None,
            exit_status=outcome.exit_status,
            signal=outcome.signal,
            pid=self.pid,
            pid_start=self.pid_start,
            # A run the breaker refused has no log file and was no slow start.
            log_file=self.output.log_path if ran else None,
            attempts=self.attempts,
            slow_start=self.slow_start and ran,
            message=outcome.message,
        )

    # the run

    def run(self, *, slow_start: bool, lock_fd: int | None) -> Outcome:
        """The whole run; a lock descriptor the shim opened itself is closed at the end."""
        if self.origin_of_spec == SPEC_STALE:
            self.emit(
                journal.PRIORITY_NOTICE,
                "the job file or the global config changed since this unit was generated: "
                "running the job as the file says now; regenerate the units (pcsystemd reload)",
            )
        lock_path = locking.lock_file_in(self.spec.lock_directory, self.spec.lock_group)
        try:
            fd = locking.open_lock(lock_path) if lock_fd is None else lock_fd
        except RunError as refused:
            error = refused
            if self.under_systemd:
                error = RunError(
                    f"standard input is not the lock file {lock_path}: the unit was generated "
                    "for another configuration; regenerate the units (systemctl daemon-reload, "
                    "or pcsystemd apply)"
                )
            self.emit(journal.PRIORITY_ERR, str(error))
            return Outcome(RunResult.ERROR, message=str(error))
        try:
            return self._run_locked(fd, slow_start=slow_start)
        finally:
            if lock_fd is None and fd != 0:
                os.close(fd)

    def _run_locked(self, fd: int, *, slow_start: bool) -> Outcome:
        job = self.spec
        try:
            self._prepare_directories()
        except RunError as error:
            return self._refuse(Outcome(RunResult.ERROR, message=str(error)), journal.PRIORITY_ERR)

        requested_slow_start = (
            None if slow_start else slowstart.pending(job.lock_directory, job.slug)
        )
        if not self._lock(fd):
            if requested_slow_start is not None:
                # The run the request was for does not happen: drop the request, so that a
                # later scheduled run does not inherit it.
                self._consume_slow_start(requested_slow_start)
            return self._lock_refusal()
        if self.signals.stop_signal is not None:
            stopped = Outcome(self._stop_result(), message="stopped before the job started")
            return self._refuse(stopped, journal.PRIORITY_NOTICE)
        if requested_slow_start is not None:
            slow_start = self._consume_slow_start(requested_slow_start)
        self.slow_start = slow_start
        commands = job.slow_start_commands if slow_start else job.commands
        if slow_start and not commands:
            message = "--slow-start was requested but the job has no slow_start_command"
            return self._refuse(Outcome(RunResult.ERROR, message=message), journal.PRIORITY_ERR)

        try:
            self.output.log_path, self.output.log_fd = runlog.create_log_file(
                self.log_directory, job.slug, self.started
            )
        except RunError as error:
            return self._refuse(Outcome(RunResult.ERROR, message=str(error)), journal.PRIORITY_ERR)
        recorded, problem = self.record(Outcome(RunResult.RUNNING), finished=False)
        if recorded.result is RunResult.TRIPPED:
            self._discard_log()
            return self._announce_refusal(recorded, journal.PRIORITY_ERR)
        self._write_header(commands)
        if problem is not None:
            self.note(problem)
            self.emit(journal.PRIORITY_ERR, problem)
            outcome = Outcome(RunResult.ERROR, message=problem)
            self._write_footer(outcome)
            return outcome
        self.emit(
            journal.PRIORITY_INFO,
            f"started{' (slow start)' if slow_start else ''}, log {self.output.log_path}",
            log_file=str(self.output.log_path),
        )

        outcome = self._attempts(commands)
        if self.output.mirror_error is not None and self.output.log_error is None:
            # The journal (or the terminal) missed the rest of the output: say where it is.
            self.emit(
                journal.PRIORITY_WARNING,
                f"{self.output.mirror_error}; the run's output is complete only in"
                f" {self.output.log_path}",
            )
        if self.output.log_error is not None:
            self.emit(journal.PRIORITY_ERR, self.output.log_error)
            if outcome.result is RunResult.SUCCESS:
                outcome = Outcome(
                    RunResult.ERROR, message=f"log incomplete: {self.output.log_error}"
                )
        return self._finish(outcome)

    def _refuse(self, outcome: Outcome, priority: int) -> Outcome:
        """A run that ends before any command started: history and message, no log file.

        This is the run's first record, so a tripped breaker overrides `outcome` here.
        """
        recorded, problem = self.record(outcome)
        if recorded is not outcome:
            priority = journal.PRIORITY_ERR
        return self._announce_refusal(recorded, priority, problem)

    def _announce_refusal(
        self, outcome: Outcome, priority: int, problem: str | None = None
    ) -> Outcome:
        """Say why the run did not start; a problem writing its record makes it an error."""
        assert outcome.message is not None
        self.emit(priority, outcome.message, result=outcome.result.value)
        if problem is not None:
            self.emit(journal.PRIORITY_ERR, problem)
            if not outcome.result.is_failure():
                return Outcome(RunResult.ERROR, message=problem)
        return outcome

    def _discard_log(self) -> None:
        """Remove this run's (still empty) log file: a run the breaker refused leaves none."""
        path = self.output.log_path
        self.output.close_log()
        self.output.log_path = None
        if path is not None:
            try:
                os.unlink(path)
            except OSError as error:
                self.emit(journal.PRIORITY_WARNING, f"cannot remove {path}: {error.strerror}")

    def _lock(self, fd: int) -> bool:
        job = self.spec
        if locking.try_lock(fd):
            return True
        if not job.overlap.waits():
            return False
        self.emit(
            journal.PRIORITY_NOTICE,
            f"lock group {job.lock_group!r} is busy; waiting up to {job.overlap_wait_seconds} s",
        )
        return locking.acquire(
            fd,
            job.overlap,
            min(job.overlap_wait_seconds, self._time_left()),
            should_stop=lambda: self.signals.stop_signal is not None,
            sleep=self.signals.wait,
        )

    def _lock_refusal(self) -> Outcome:
        job = self.spec
        held = f"lock group {job.lock_group!r} is held by another run"
        if self.signals.stop_signal is not None or self._time_left() <= _DEADLINE_TOLERANCE:
            result = self._stop_result() if self.signals.stop_signal else RunResult.TIMEOUT
            message = f"{result.value} while waiting for the lock ({held})"
            return self._refuse(Outcome(result, message=message), journal.PRIORITY_WARNING)
        if not job.overlap.is_failure():
            message = f"skipped: {held} (overlap: skip)"
            return self._refuse(
                Outcome(RunResult.SKIPPED, message=message), journal.PRIORITY_NOTICE
            )
        if job.overlap.waits():
            message = f"{held} still after {job.overlap_wait_seconds} s (overlap: wait)"
        else:
            message = f"{held} (overlap: fail)"
        return self._refuse(Outcome(RunResult.LOCKED, message=message), journal.PRIORITY_WARNING)

    def _consume_slow_start(self, request_id: str) -> bool:
        try:
            return slowstart.consume(self.state_directory, request_id)
        except RunError as error:
            # Without remembering it, the request would be honoured again: ignore it instead.
            self.emit(journal.PRIORITY_WARNING, f"slow start request ignored: {error}")
            return False

    def _prepare_directories(self) -> None:
        """Create the log and state directories; as root (by hand), become the job's user."""
        running_as_root = os.geteuid() == 0
        job_is_root = self.spec.user in ("root", "0")
        identity = spawn.job_identity(self.spec) if running_as_root and not job_is_root else None
        problems = []
        # The state directory first and regardless of the log directory: the history is
        # where a failure to create the log directory gets recorded.
        for directory in (self.state_directory, self.log_directory):
            try:
                os.makedirs(directory, mode=0o755, exist_ok=True)
                if identity is not None:
                    user, gid = identity
                    os.chown(directory, user.pw_uid, gid)
            except OSError as error:
                problems.append(f"cannot create {directory}: {error.strerror}")
        if problems:
            raise RunError("; ".join(problems))
        if identity is not None:
            user, gid = identity
            spawn.become(user, gid)
            self.environment.update(
                USER=user.pw_name, LOGNAME=user.pw_name, HOME=user.pw_dir, SHELL=user.pw_shell
            )
        elif not running_as_root:
            spawn.check_unit_user(self.spec)
        for directory in (self.log_directory, self.state_directory):
            if not os.access(directory, os.W_OK | os.X_OK):
                raise RunError(
                    f"{directory} is not writable by user {spawn.user_name(os.geteuid())}"
                )

    def _write_header(self, commands: Sequence[Sequence[str]]) -> None:
        job = self.spec
        lines = [f"# pcsystemd run {self.run_id} of job {job.slug} ({job.name})"]
        for index, argv in enumerate(commands, 1):
            label = "command" if len(commands) == 1 else f"command {index}/{len(commands)}"
            lines.append(f"# {label}: {spawn.shell_join(argv)}")
        lines.append(f"# job file: {job.job_file} ({self.origin_of_spec})")
        if self.slow_start:
            lines.append("# slow start: yes")
        lines.append(f"# pid: {os.getpid()}")
        lines.append(f"# user: {spawn.user_name(os.geteuid())}")
        lines.append(f"# start: {runlog.utc_timestamp(self.started)}")
        lines.append(runlog.LEGEND)
        self.output.log_lines(lines)

    def _write_footer(self, outcome: Outcome) -> None:
        end = time.time()
        lines = [
            f"# end: {runlog.utc_timestamp(end)}",
            f"# duration: {end - self.started:.3f} s",
            f"# result: {outcome.result.value}",
        ]
        if outcome.signal:
            lines.append(f"# signal: {outcome.signal}")
        elif outcome.exit_status is not None:
            lines.append(f"# exit status: {outcome.exit_status}")
        if self.attempts > 1:
            lines.append(f"# attempts: {self.attempts}")
        if outcome.message:
            lines.append(f"# message: {outcome.message}")
        self.output.log_lines(lines)

    def _finish(self, outcome: Outcome) -> Outcome:
        self._write_footer(outcome)
        log_file = str(self.output.log_path)
        self.output.close_log()
        priority = (
            journal.PRIORITY_WARNING if outcome.result.is_failure() else journal.PRIORITY_INFO
        )
        fields: dict[str, str | int] = {"result": outcome.result.value, "log_file": log_file}
        if outcome.exit_status is not None:
            fields["exit_status"] = outcome.exit_status
        if outcome.signal:
            fields["signal"] = outcome.signal
        duration = time.time() - self.started
        # Recorded first: if journald keeps the messages waiting, systemd's stop timeout may
        # end the shim, and the history must have the run by then.
        _, problem = self.record(outcome)
        self.emit(
            priority, f"{outcome.describe()} after {duration:.1f} s, log {log_file}", **fields
        )
        if problem is not None:
            self.emit(journal.PRIORITY_ERR, problem)
            if not outcome.result.is_failure():
                outcome = Outcome(RunResult.ERROR, message=problem)
        elif (
            self.history is not None
            and self.history.tripped is not None
            and self.history.tripped.run_id == self.run_id
        ):
            self.emit(
                journal.PRIORITY_WARNING,
                f"circuit breaker tripped ({self.history.tripped.reason}): later runs are "
                f"refused until `pcsystemd reset {self.spec.slug}`",
            )
        try:
            runlog.prune_logs(
                self.log_directory,
                self.spec.slug,
                keep_runs=self.spec.log_retention_runs,
                keep_days=self.spec.log_retention_days,
                keep=self.output.log_path,
            )
        except OSError as error:
            self.emit(journal.PRIORITY_WARNING, f"pruning old logs failed: {error.strerror}")
        return outcome

    # attempts and commands

    def _time_left(self) -> float:
        if not self.spec.timeout_seconds:
            return float("inf")
        return self.origin + self.spec.timeout_seconds - time.monotonic()

    def _attempts(self, commands: Sequence[Sequence[str]]) -> Outcome:
        total = self.spec.retry_count + 1
        while True:
            self.attempts += 1
            if total > 1:
                self.note(f"attempt {self.attempts} of {total}")
            outcome = self._commands(commands)
            if outcome.result is RunResult.SUCCESS or self.attempts >= total:
                return outcome
            if outcome.result not in (RunResult.FAILED, RunResult.ERROR):
                return outcome
            if outcome.exit_status in self.spec.unrecoverable_exit_codes:
                self.note(f"exit status {outcome.exit_status} is unrecoverable: no retry")
                return outcome
            delay = self.spec.retry_delay_before(self.attempts)
            if delay >= self._time_left():
                self.note(f"no time left for attempt {self.attempts + 1} within the timeout")
                return outcome
            self.note(
                f"attempt {self.attempts} of {total} {outcome.describe()}; retrying in {delay:g} s",
                journal.PRIORITY_NOTICE,
            )
            deadline = time.monotonic() + delay
            while self.signals.stop_signal is None and time.monotonic() < deadline:
                self.signals.wait(deadline - time.monotonic())
            if self.signals.stop_signal is not None:
                stopped = self._stop_result()
                self.note(f"{stopped.value} while waiting to retry")
                return Outcome(stopped, message=f"{stopped.value} while waiting to retry")

    def _own_deadline(self) -> float | None:
        """When the shim itself ends the run; under systemd, after RuntimeMaxSec= has fired."""
        if not self.spec.timeout_seconds:
            return None
        deadline = self.origin + self.spec.timeout_seconds
        return deadline + SYSTEMD_BACKSTOP_SECONDS if self.under_systemd else deadline

    def _must_end(self) -> bool:
        """Whether the run must end now (stopped, or its time is up): output must not wait.

        Asked from the output's writer thread as well; it only reads.
        """
        if self.signals.stop_signal is not None:
            return True
        deadline = self._own_deadline()
        return deadline is not None and time.monotonic() >= deadline

    def _stop_result(self) -> RunResult:
        """What a stop signal means: the run's time is up (timeout) or a deliberate stop."""
        if self.spec.timeout_seconds and self._time_left() <= _DEADLINE_TOLERANCE:
            return RunResult.TIMEOUT
        return RunResult.STOPPED

    def _commands(self, commands: Sequence[Sequence[str]]) -> Outcome:
        outcome = Outcome(RunResult.SUCCESS)
        for index, argv in enumerate(commands, 1):
            label = "command" if len(commands) == 1 else f"command {index}/{len(commands)}"
            if self.signals.stop_signal is not None or self._time_left() <= 0:
                result = self._stop_result() if self.signals.stop_signal else RunResult.TIMEOUT
                outcome = Outcome(result, message=f"{result.value} before {label} started")
            else:
                outcome = self._command(argv, label)
            self.note(f"{label} ended: {outcome.describe()}")
            if outcome.result is not RunResult.SUCCESS:
                if index < len(commands):
                    self.note(f"not running the remaining {len(commands) - index} command(s)")
                return outcome
        return outcome

    def _command(self, argv: Sequence[str], label: str) -> Outcome:
        working_directory = self.spec.working_directory
        if working_directory is not None and not os.path.isdir(working_directory):
            message = f"working directory {working_directory} does not exist"
            return Outcome(RunResult.ERROR, message=message, shim_exit=EXIT_ERROR)
        try:
            pid, stdout, stderr = spawn.spawn(argv, self.environment, working_directory)
        except OSError as error:
            return _spawn_failure(argv, error, working_directory)
        self.note(f"{label} started, pid {pid}: {spawn.shell_join(argv)}")
        self.output.stderr_bytes = 0
        try:
            status, stop_reason = self.supervisor.supervise(
                pid,
                stdout,
                stderr,
                timeout_at=self._own_deadline(),
                stop_result=self._stop_result,
            )
        finally:
            os.close(stdout)
            os.close(stderr)
        if stop_reason is not None:
            return Outcome(stop_reason, **_status_fields(status))
        if os.WIFSIGNALED(status):
            return Outcome(RunResult.FAILED, **_status_fields(status))
        code = os.WEXITSTATUS(status)
        if code != 0 and code not in self.spec.success_exit_codes:
            return Outcome(RunResult.FAILED, exit_status=code)
        if self.spec.stderr_is_failure and self.output.stderr_bytes:
            message = f"wrote {self.output.stderr_bytes} bytes to stderr (stderr_is_failure)"
            return Outcome(RunResult.FAILED, exit_status=code, message=message)
        return Outcome(RunResult.SUCCESS, exit_status=code)

    def _child_environment(self) -> dict[str, str]:
        environment = dict(os.environ)
        # The journal stream is ours, not the job's: its stdout is a pipe.
        environment.pop("JOURNAL_STREAM", None)
        environment.pop(runspec.SPEC_VARIABLE, None)
        environment.update(self.spec.environment)
        environment["PCSYSTEMD_JOB"] = self.spec.slug
        return environment


def _breaker_refusal(trip: Trip, slug: str) -> Outcome:
    message = (
        f"refused: the circuit breaker tripped at {trip.at} ({trip.reason}); "
        f"fix the cause, then run `pcsystemd reset {slug}`"
    )
    return Outcome(RunResult.TRIPPED, message=message)


def _status_fields(status: int) -> dict[str, Any]:
    if os.WIFSIGNALED(status):
        return {"signal": signal_name(os.WTERMSIG(status))}
    return {"exit_status": os.WEXITSTATUS(status)}


def _spawn_failure(argv: Sequence[str], error: OSError, working_directory: str | None) -> Outcome:
    if working_directory is not None and error.filename == working_directory:
        message = f"cannot enter working directory {working_directory}: {error.strerror}"
        return Outcome(RunResult.ERROR, message=message, shim_exit=EXIT_ERROR)
    if isinstance(error, FileNotFoundError):
        return Outcome(
            RunResult.ERROR, message=f"command not found: {argv[0]}", shim_exit=EXIT_NOT_FOUND
        )
    message = f"cannot execute {argv[0]}: {error.strerror}"
    return Outcome(RunResult.ERROR, message=message, shim_exit=EXIT_NOT_EXECUTABLE)


def run_spec(
    spec: RunSpec,
    *,
    slow_start: bool = False,
    lock_fd: int | None = None,
    kill_grace_seconds: float = KILL_GRACE_SECONDS,
    drain_seconds: float = DRAIN_SECONDS,
    output_stall_seconds: float = journal.STALL_SECONDS,
    die_by_signal: bool = False,
    origin: str = SPEC_READ,
) -> int:
    """Run a job once, as the shim does, and return the shim's exit status.

    This takes over the process: it installs signal handlers, becomes a child subreaper and
    reaps every child. With `die_by_signal`, a run stopped by SIGTERM/SIGINT/SIGHUP ends the
    process with that signal after recording (what systemd expects of a stopped service).
    """
    spawn.close_on_exec()
    signals = Signals()
    become_subreaper()
    run = None
    try:
        run = _Run(
            spec,
            signals,
            kill_grace_seconds=kill_grace_seconds,
            drain_seconds=drain_seconds,
            output_stall_seconds=output_stall_seconds,
            origin=origin,
        )
        outcome = run.run(slow_start=slow_start, lock_fd=lock_fd)
        status = outcome.exit_code()
        stop_signal = signals.stop_signal
    except BaseException:
        # A bug or an interrupt in the shim itself: leave no job process behind.
        if run is not None:
            run.supervisor.kill_tree()
        raise
    finally:
        signals.restore()
    if outcome.result is RunResult.STOPPED and stop_signal is not None:
        if die_by_signal:
            _die_by(stop_signal)
        return 128 + stop_signal
    return status


def _die_by(number: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(number, signal.SIG_DFL)
    os.kill(os.getpid(), number)


def new_run_id(started: float) -> str:
    """A run's id: its UTC start second and the shim's pid (unique on one host)."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(started)) + f"-{os.getpid()}"
