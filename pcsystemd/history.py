"""Per-job run history and circuit-breaker state: `<state_directory>/<slug>/history.json`.

The file holds the last `history_length` runs (start, end, duration, result, exit status or
signal, pid, log file) and the number of consecutive failures, plus whether the circuit
breaker has tripped. It is only ever replaced whole: written to a temporary sibling, fsynced,
then `os.replace`d over the old one, so a crash or a full disk leaves either the old or the
new file, never a torn one. (The directory is not fsynced: that would only make the rename
itself durable, at a cost on every run, and an older history after a power loss is
acceptable; a corrupt one never happens.) Read-modify-write cycles hold a
`flock` on `.history.lock` next to it, because a run refused for overlap records itself
while the run holding the job's lock is still writing. A file that cannot be parsed is
reported, moved aside to `history.json.corrupt`, and replaced by a fresh history: losing the
record is better than refusing to run the job.

A run reads the file once per update, under that lock: twice in all (its `running` record,
then its result), once when it is refused before it starts. The circuit breaker is decided
from what the run's first update read (see runner.py), so there is no separate look at it.

While a run is live its record says `running` with the shim's pid and that process's start
time, so `status` can say `{pid: …, status: running}` and tell a live run from one whose shim
was killed (PID reuse cannot fool the start-time comparison).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat

from pcsystemd import leanjson
from pcsystemd.errors import RunError
from pcsystemd.record import field, record, replace
from pcsystemd.vocabulary import RunResult

# The runtime shim (`pcsystemd run-job`, every job run) reaches this module: typing,
# dataclasses, json, pathlib and contextlib would cost its start-up milliseconds each, so
# they are not used here (see record.py, leanjson.py). mypy knows this spelling.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

    from pcsystemd.model import GlobalConfig, Job
    from pcsystemd.runspec import RunSpec

    StrPath = str | os.PathLike[str]

HISTORY_FILE = "history.json"
_LOCK_FILE = ".history.lock"
_FORMAT = 1


@record
class RunRecord:
    """One run of a job, as the shim recorded it."""

    run_id: str
    result: RunResult
    start: str  # UTC, runlog.utc_timestamp()
    end: str | None = None
    duration_seconds: float | None = None
    exit_status: int | None = None
    signal: str | None = None  # e.g. "SIGKILL" when the job died of a signal
    pid: int | None = None  # the shim's pid (the unit's main PID)
    pid_start: int | None = None  # that process's start time (clock ticks since boot)
    log_file: str | None = None
    attempts: int = 0
    slow_start: bool = False
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "result": self.result.value,
            "start": self.start,
            "end": self.end,
            "duration_seconds": self.duration_seconds,
            "exit_status": self.exit_status,
            "signal": self.signal,
            "pid": self.pid,
            "pid_start": self.pid_start,
            "log_file": self.log_file,
            "attempts": self.attempts,
            "slow_start": self.slow_start,
            "message": self.message,
        }

    @classmethod
    def from_json(cls, data: Any) -> RunRecord:
        """A stored run; ValueError names the field that is missing or of the wrong type."""
        if not isinstance(data, dict):
            raise ValueError("a run is not an object")
        duration = _optional(data, "duration_seconds", (int, float))
        return cls(
            run_id=_required(data, "run_id", str),
            result=RunResult(_required(data, "result", str)),
            start=_required(data, "start", str),
            end=_optional(data, "end", str),
            duration_seconds=None if duration is None else float(duration),
            exit_status=_optional(data, "exit_status", int),
            signal=_optional(data, "signal", str),
            pid=_optional(data, "pid", int),
            pid_start=_optional(data, "pid_start", int),
            log_file=_optional(data, "log_file", str),
            attempts=_optional(data, "attempts", int) or 0,
            slow_start=bool(_optional(data, "slow_start", bool)),
            message=_optional(data, "message", str),
        )


@record
class Trip:
    """Why the circuit breaker refuses further runs, until `pcsystemd reset JOB`."""

    at: str
    reason: str
    run_id: str | None = None


@record
class History:
    """A job's recorded runs (oldest first) and its breaker state."""

    slug: str
    runs: tuple[RunRecord, ...] = ()
    consecutive_failures: int = 0
    tripped: Trip | None = None
    problem: str | None = field(default=None, compare=False)  # why the file could not be read

    def to_json(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "job": self.slug,
            "consecutive_failures": self.consecutive_failures,
            "tripped": None if self.tripped is None else vars(self.tripped),
            "runs": [run.to_json() for run in self.runs],
        }

    @classmethod
    def from_json(cls, slug: str, data: Any) -> History:
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(f"not a pcsystemd history (format {_FORMAT})")
        runs = data.get("runs")
        if not isinstance(runs, list):
            raise ValueError("`runs` is not a list")
        tripped = data.get("tripped")
        trip = None
        if tripped is not None:
            if not isinstance(tripped, dict):
                raise ValueError("`tripped` is not an object")
            trip = Trip(
                at=_required(tripped, "at", str),
                reason=_required(tripped, "reason", str),
                run_id=_optional(tripped, "run_id", str),
            )
        failures = _required(data, "consecutive_failures", int)
        if failures < 0:
            raise ValueError("`consecutive_failures` is negative")
        return cls(
            slug=slug,
            runs=tuple(RunRecord.from_json(run) for run in runs),
            consecutive_failures=failures,
            tripped=trip,
        )

    def run(self, run_id: str) -> RunRecord | None:
        for run in reversed(self.runs):
            if run.run_id == run_id:
                return run
        return None

    def with_run(self, record: RunRecord, keep: int) -> History:
        """This history with `record` added (or replacing the record of the same run)."""
        runs = [run for run in self.runs if run.run_id != record.run_id]
        runs.append(record)
        keep = max(keep, 1)
        dropped, kept = runs[:-keep], runs[-keep:]
        # A live run's record stays until its own shim rewrites it (many skipped runs of a
        # shared lock group must not make `status` forget the running pid).
        live = [run for run in dropped if run.result is RunResult.RUNNING and run_is_live(run)]
        return replace(self, runs=tuple(live + kept))


def _required(data: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ValueError(f"`{key}` is missing or not a {getattr(kind, '__name__', kind)}")
    return value


def _optional(data: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if data.get(key) is None:
        return None
    return _required(data, key, kind)


def finish_run(history: History, record: RunRecord, job: Job | RunSpec, keep: int) -> History:
    """Record a finished run and move the failure streak and circuit breaker accordingly."""
    failures = history.consecutive_failures
    tripped = history.tripped
    if record.result is RunResult.SUCCESS:
        failures = 0
    elif record.result.counts_towards_breaker():
        failures += 1
    if tripped is None and record.result.counts_towards_breaker():
        reason = None
        if record.exit_status is not None and record.exit_status in job.unrecoverable_exit_codes:
            reason = f"exit status {record.exit_status} is listed as unrecoverable"
        elif job.max_consecutive_failures and failures >= job.max_consecutive_failures:
            reason = f"{failures} consecutive failures (max_consecutive_failures is "
            reason += f"{job.max_consecutive_failures})"
        if reason is not None:
            tripped = Trip(at=record.end or record.start, reason=reason, run_id=record.run_id)
    updated = replace(history, consecutive_failures=failures, tripped=tripped)
    return updated.with_run(record, keep)


# For the CLI, which has a GlobalConfig (and its Paths); the shim has RunSpec's strings.
def history_directory(config: GlobalConfig, slug: str) -> Path:
    return config.state_directory / slug


def history_path(config: GlobalConfig, slug: str) -> Path:
    return history_directory(config, slug) / HISTORY_FILE


# The history directory belongs to the job user while root reads it (list, status, notify):
# a symlink, a FIFO or an endless file there must not make root follow, hang or fill memory.
_MAX_HISTORY_BYTES = 8 * 1024 * 1024
_SAFE_OPEN = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def _read_bounded(path: StrPath) -> bytes:
    fd = os.open(path, os.O_RDONLY | _SAFE_OPEN)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        data = os.read(fd, _MAX_HISTORY_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > _MAX_HISTORY_BYTES:
        raise OSError(errno.EFBIG, f"larger than {_MAX_HISTORY_BYTES} bytes")
    return data


def _load(path: StrPath, slug: str) -> History:
    """The history in `path`: empty when missing, `problem` set when unreadable or corrupt."""
    try:
        text = _read_bounded(path)
    except FileNotFoundError:
        return History(slug)
    except OSError as error:
        return History(slug, problem=f"cannot read {path}: {error.strerror}")
    try:
        return History.from_json(slug, leanjson.loads(text))
    except (ValueError, UnicodeDecodeError) as error:
        return History(slug, problem=f"{path} is corrupt ({error})")


def read_history(config: GlobalConfig, slug: str) -> History:
    """A job's history for display; never changes anything (`problem` says what is wrong)."""
    return _load(history_path(config, slug), slug)


def _lock(directory: StrPath) -> int:
    """The history lock of `directory`, held until the returned descriptor is closed."""
    try:
        # Read-only is enough for flock, and lets the job user lock a file root created.
        # No symlinks: root (`pcsystemd reset`) must not create a file wherever the job
        # user's directory points.
        path = os.path.join(directory, _LOCK_FILE)
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | _SAFE_OPEN, 0o644)
    except OSError as error:
        raise RunError(f"cannot write the history in {directory}: {error.strerror}") from error
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def update_history(
    directory: StrPath, slug: str, change: Callable[[History], History]
) -> tuple[History, str | None]:
    """Apply `change` to the stored history under the history lock and store the result.

    Returns the new history and, if the old file was corrupt (and was moved aside), a
    message saying so. Raises RunError when the new file cannot be written.
    """
    path = os.path.join(directory, HISTORY_FILE)
    lock = _lock(directory)
    try:
        current = _load(path, slug)
        problem = current.problem
        if problem is not None and os.path.lexists(path):
            try:
                os.replace(path, path + ".corrupt")
                problem += f"; moved it to {HISTORY_FILE}.corrupt and started a new history"
            except OSError as error:
                problem += f"; could not move it aside ({error.strerror}), replacing it"
        updated = change(_settle_dead_runs(replace(current, problem=None)))
        atomic_write(path, encode(updated))
    finally:
        os.close(lock)
    return updated, problem


def encode(history: History) -> bytes:
    """The file's bytes: one run per line, readable with less and diffable, and fast to write
    (an indented dump would take json's pure-Python encoder)."""
    data = history.to_json()
    runs = data.pop("runs")
    head = leanjson.dumps(data)[:-1]
    lines = [leanjson.dumps(run) for run in runs]
    body = "[\n" + ",\n".join(lines) + "\n]" if lines else "[]"
    return f'{head}, "runs": {body}}}\n'.encode()


def _settle_dead_runs(history: History) -> History:
    """Mark `running` records whose shim is gone (killed with SIGKILL, power loss) as errors."""
    runs = []
    for run in history.runs:
        if run.result is RunResult.RUNNING and not run_is_live(run):
            run = replace(
                run,
                result=RunResult.ERROR,
                message="the shim ended without recording a result (killed, or the machine "
                "went down)",
            )
        runs.append(run)
    return replace(history, runs=tuple(runs))


def reset(config: GlobalConfig, slug: str) -> History:
    """Clear the failure streak and the circuit breaker (`pcsystemd reset JOB`)."""
    directory = history_directory(config, slug)
    if not os.path.isdir(directory):
        return History(slug)
    updated, _ = update_history(
        directory, slug, lambda history: replace(history, consecutive_failures=0, tripped=None)
    )
    return updated


def atomic_write(path: StrPath, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` so that readers see the old or the new file, never a mix."""
    directory, name = os.path.split(os.fspath(path))
    temporary = os.path.join(directory, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except OSError as error:
        raise RunError(f"cannot write {path}: {error.strerror}") from error
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)  # not subject to the umask
            if os.geteuid() == 0:
                # Root (`pcsystemd reset`) keeps the file owned like its directory, the job user.
                owner = os.stat(directory or ".")
                os.fchown(fd, owner.st_uid, owner.st_gid)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError as error:
        try:
            os.unlink(temporary)
        except OSError:
            pass  # the write error is what matters
        raise RunError(f"cannot write {path}: {error.strerror}") from error


def proc_stat_fields(pid: int | str) -> list[bytes] | None:
    """/proc/PID/stat from field 3 (state) on; None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            text = stat_file.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: count from its end.
    return text[text.rfind(b")") + 2 :].split()


def process_start_ticks(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot (None if there is no such pid)."""
    fields = proc_stat_fields(pid)
    try:
        return None if fields is None else int(fields[19])
    except (IndexError, ValueError):
        return None


def run_is_live(record: RunRecord) -> bool:
    """Whether the shim that wrote this `running` record is still that same process."""
    if record.pid is None:
        return False
    started = process_start_ticks(record.pid)
    return started is not None and (record.pid_start is None or started == record.pid_start)


@record
class JobStatus:
    """What `pcsystemd status JOB` says about a job's runs."""

    slug: str
    status: str  # "running", "never run", "tripped", "reset", or the last run's result
    pid: int | None = None
    last_run: RunRecord | None = None
    consecutive_failures: int = 0
    tripped: Trip | None = None
    problem: str | None = None

    def __str__(self) -> str:
        """process-control's form: `{pid: 5647, status: running}`."""
        parts = [f"pid: {self.pid}"] if self.pid is not None else []
        parts.append(f"status: {self.status}")
        if self.status != "running" and self.last_run is not None:
            parts.append(f"last_run: {self.last_run.start}")
            if self.last_run.signal:
                parts.append(f"signal: {self.last_run.signal}")
            elif self.last_run.exit_status is not None:
                parts.append(f"exit_status: {self.last_run.exit_status}")
        if self.consecutive_failures:
            parts.append(f"consecutive_failures: {self.consecutive_failures}")
        return "{" + ", ".join(parts) + "}"


def job_status(config: GlobalConfig, slug: str) -> JobStatus:
    """The job's live run if there is one, else its last result (and the breaker's state)."""
    history = read_history(config, slug)
    finished = [run for run in history.runs if run.result is not RunResult.RUNNING]
    last = finished[-1] if finished else None
    common = {
        "last_run": last,
        "consecutive_failures": history.consecutive_failures,
        "tripped": history.tripped,
        "problem": history.problem,
    }
    for run in reversed(history.runs):
        if run.result is RunResult.RUNNING and run_is_live(run):
            return JobStatus(slug, "running", pid=run.pid, **common)  # type: ignore[arg-type]
    if history.tripped is not None:
        status = "tripped"
    elif last is not None and last.result is RunResult.TRIPPED:
        # The breaker refused the last run, then `pcsystemd reset` closed it again.
        status = "reset"
    elif last is not None:
        status = last.result.value
    else:
        status = "never run"
    return JobStatus(slug, status, **common)  # type: ignore[arg-type]
