"""Helpers for the shim's integration tests: model objects and a real shim process.

The shim is started as its own Python process running `runner.run_spec()` on the spec of a
pickled `Job` and `GlobalConfig`, so every test exercises real processes, pipes, signals,
flock and files, independently of the YAML loader.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import job_factory

from pcsystemd.model import (
    GlobalConfig,
    Hardening,
    Job,
    Overlap,
)
from pcsystemd.runlog import list_log_files

PYTHON = sys.executable
REPOSITORY = Path(__file__).resolve().parents[2]
# Debian's interpreter, the one the venv was made from: the shim needs only the standard
# library, and an unprivileged user may not be able to enter the venv's directory.
SYSTEM_PYTHON = "/usr/bin/python3"


@functools.cache
def readable_package_root() -> str:
    """A copy of the pcsystemd package that any user can import (a PYTHONPATH entry).

    The checkout may lie in a directory only root can enter (CI clones into one), and the
    tests that run the shim as an unprivileged user must not depend on where it lies.
    """
    root = Path(tempfile.mkdtemp(prefix="pcsystemd-readable-"))
    root.chmod(0o755)
    shutil.copytree(
        REPOSITORY / "pcsystemd",
        root / "pcsystemd",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return str(root)


# Runs run_spec() in a fresh process; the shim's peak RSS (KiB) goes to a file. VmHWM, not
# getrusage(): ru_maxrss keeps the high-water mark of the address space before exec, which
# for a child forked from pytest is pytest's own. Every read of a history file can be
# logged to another file, one line per read.
_DRIVER = """
import pickle, sys
from pcsystemd import history, runner, runspec
with open(sys.argv[1], "rb") as handle:
    job, config, options, usage_file, reads_file = pickle.load(handle)
if reads_file:
    read_bounded = history._read_bounded
    def logged_read(path):
        with open(reads_file, "a") as reads:
            reads.write(f"{path}\\n")
        return read_bounded(path)
    history._read_bounded = logged_read
try:
    spec = runspec.compile_spec(job, config)
    status = runner.run_spec(spec, die_by_signal=True, **options)
finally:
    if usage_file:
        with open("/proc/self/status") as status_file:
            peak = next(line.split()[1] for line in status_file if line.startswith("VmHWM:"))
        with open(usage_file, "w") as usage:
            usage.write(peak)
sys.exit(status)
"""


def make_config(root: Path, **overrides: Any) -> GlobalConfig:
    """A global config whose directories all live under `root`."""
    config = GlobalConfig(
        job_directory=root / "jobs",
        log_directory=root / "log",
        state_directory=root / "state",
        lock_directory=root / "run" / "locks",
    )
    return replace(config, **overrides)


def make_job(
    commands: Sequence[Sequence[str]] = (("true",),), *, slug: str = "demo", **overrides: Any
) -> Job:
    """A valid job as the loader would produce it (root user: tests run as root)."""
    job = job_factory.make_job(
        slug,
        name=f"Job {slug}",
        commands=tuple(tuple(command) for command in commands),
        user="root",
        overlap=Overlap.SKIP,
        overlap_wait_seconds=0,
        success_exit_codes=(),
        hardening=Hardening.STRICT,
    )
    if "slow_start_commands" in overrides:
        overrides["slow_start_commands"] = tuple(map(tuple, overrides["slow_start_commands"]))
    return replace(job, **overrides)


def shell(script: str) -> tuple[str, ...]:
    return ("/bin/sh", "-c", script)


def start_shim(
    job: Job,
    config: GlobalConfig,
    *,
    work: Path,
    stdin: int | IO[Any] | None = subprocess.DEVNULL,
    stdout: int | IO[Any] | None = subprocess.PIPE,
    stderr: int | IO[Any] | None = subprocess.PIPE,
    environment: Mapping[str, str] | None = None,
    user: str | None = None,
    usage_file: Path | None = None,
    history_reads_file: Path | None = None,
    preexec_fn: Callable[[], None] | None = None,
    **options: Any,
) -> subprocess.Popen[bytes]:
    """Start the shim on `job` in its own process; `options` go to run_spec()."""
    options.setdefault("kill_grace_seconds", 1.0)
    options.setdefault("drain_seconds", 1.0)
    work.mkdir(parents=True, exist_ok=True)
    spec = work / f"shim-{time.monotonic_ns()}.pickle"
    files = (str(usage_file or ""), str(history_reads_file or ""))
    spec.write_bytes(pickle.dumps((job, config, options, *files)))
    spec.chmod(0o644)
    env = {key: value for key, value in os.environ.items() if key not in _SYSTEMD_VARIABLES}
    env["PYTHONPATH"] = str(REPOSITORY) if user is None else readable_package_root()
    env.update(environment or {})
    return subprocess.Popen(
        [PYTHON if user is None else SYSTEM_PYTHON, "-c", _DRIVER, str(spec)],
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        env=env,
        user=user,
        preexec_fn=preexec_fn,
    )


_SYSTEMD_VARIABLES = ("INVOCATION_ID", "JOURNAL_STREAM")


class Finished:
    """A finished shim process: exit status and what it printed."""

    def __init__(self, process: subprocess.Popen[bytes], stdout: bytes, stderr: bytes) -> None:
        self.returncode = process.returncode
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self) -> str:
        return f"Finished(returncode={self.returncode}, stderr={self.stderr[-2000:]!r})"


def run_shim(
    job: Job, config: GlobalConfig, *, work: Path, timeout: float = 60, **kwargs: Any
) -> Finished:
    """Run the shim to completion."""
    process = start_shim(job, config, work=work, **kwargs)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        raise AssertionError(
            f"the shim did not finish within {timeout} s: {stderr[-2000:]!r}"
        ) from None
    return Finished(process, stdout or b"", stderr or b"")


def log_files(config: GlobalConfig, slug: str = "demo") -> list[Path]:
    """The job's run logs, oldest first."""
    return list_log_files(config.log_directory / slug, slug)


def only_log(config: GlobalConfig, slug: str = "demo") -> str:
    logs = log_files(config, slug)
    assert len(logs) == 1, logs
    return logs[0].read_text(errors="replace")


def history_data(config: GlobalConfig, slug: str = "demo") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((config.state_directory / slug / "history.json").read_text())
    return data


def last_run(config: GlobalConfig, slug: str = "demo") -> dict[str, Any]:
    run: dict[str, Any] = history_data(config, slug)["runs"][-1]
    return run


def wait_for(predicate: Callable[[], Any], timeout: float, message: str) -> Any:
    """Poll `predicate` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(0.02)


def process_alive(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            state = stat_file.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def terminate(process: subprocess.Popen[bytes], number: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(number)


def write_yaml_setup(tmp_path: Path, job_text: str | None) -> Path:
    """A global config and (unless None) a job file `quick.yaml`; returns the config path."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    if job_text is not None:
        (jobs / "quick.yaml").write_text(job_text)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        f"job_directory: {jobs}\nlog_directory: {tmp_path / 'log'}\n"
        f"state_directory: {tmp_path / 'state'}\nlock_directory: {tmp_path / 'locks'}\n"
        "allowed_users: [root]\nallow_root: true\n"
    )
    return config_file


def write_root_job_setup(tmp_path: Path, command: str) -> Path:
    """write_yaml_setup with a job `quick` that runs `command` as root."""
    return write_yaml_setup(tmp_path, f"name: Quick\ncommand: {command}\nuser: root\n")
