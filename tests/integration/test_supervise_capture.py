"""The capture loop itself: children reaped on SIGCHLD, not per chunk; the writer thread ends.

Each test runs one Supervisor.supervise() in a process of its own (it installs signal
handlers and reaps every child of its process), with os.waitpid counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[2]

_DRIVER = """
import json, os, subprocess, sys, threading, time
from pcsystemd import supervise
from pcsystemd.model import RunResult
from pcsystemd.runlog import RunOutput

argv, log_path, report_path = json.loads(sys.argv[1])
# Only SIGCHLD can make the loop reap in time: the fallback comes after a minute here.
supervise._REAP_FALLBACK_SECONDS = 60.0
waitpid_calls = 0
real_waitpid = os.waitpid
def counting_waitpid(pid, options):
    global waitpid_calls
    waitpid_calls += 1
    return real_waitpid(pid, options)
os.waitpid = counting_waitpid

signals = supervise.Signals()
output = RunOutput(False, time.time())
output.log_path = log_path
output.log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
notes = []
supervisor = supervise.Supervisor(
    signals, output, lambda message, priority: notes.append(message),
    kill_grace_seconds=1.0, drain_seconds=1.0,
)
process = subprocess.Popen(
    argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    start_new_session=True,
)
waitpid_calls = 0
started = time.monotonic()
status, reason = supervisor.supervise(
    process.pid, process.stdout.fileno(), process.stderr.fileno(),
    timeout_at=None, stop_result=lambda: RunResult.STOPPED,
)
elapsed = time.monotonic() - started
output.close_log()
with open(report_path, "w") as report:
    json.dump({
        "exit_status": os.waitstatus_to_exitcode(status),
        "reason": reason,
        "seconds": elapsed,
        "waitpid_calls": waitpid_calls,
        "threads": threading.active_count(),
        "notes": notes,
    }, report)
"""


def supervise(tmp_path: Path, argv: list[str]) -> tuple[dict[str, Any], Path]:
    """Supervise `argv` in a fresh process; its report, and the log file."""
    log, report = tmp_path / "run.log", tmp_path / "report.json"
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps([argv, str(log), str(report)])],
        env=environment,
        stdout=subprocess.DEVNULL,
        check=True,
        timeout=120,
    )
    return json.loads(report.read_text()), log


def test_a_flood_of_output_is_not_reaped_chunk_by_chunk(tmp_path: Path) -> None:
    size = 64 << 20  # at least 64 reads of the 1 MiB chunk size
    report, log = supervise(tmp_path, ["/bin/sh", "-c", f"yes 0123456789 | head -c {size}"])
    assert report["exit_status"] == 0 and report["reason"] is None, report
    # The first pass, the SIGCHLD, the leftovers check: a handful, however many chunks and
    # however slow the machine (the driver puts the once-a-second fallback at 60 s).
    assert report["waitpid_calls"] < 16, report
    assert report["threads"] == 1, "the writer thread ended with the command"
    lines = log.read_bytes().split(b"\n")
    assert sum(line.endswith(b" [stdout] 0123456789") for line in lines) == size // 11


def test_an_exit_is_noticed_by_its_sigchld_not_by_the_fallback_poll(tmp_path: Path) -> None:
    # The pipes close at once, so only the exit itself can end the loop: SIGCHLD right away,
    # or the fallback wake-up.
    report, _ = supervise(tmp_path, ["/bin/sh", "-c", "exec >&- 2>&-; sleep 0.1; exit 3"])
    assert report["exit_status"] == 3, report
    # (the driver puts the fallback at 60 s; the rest is slack for a loaded machine)
    assert report["seconds"] < 30, report
