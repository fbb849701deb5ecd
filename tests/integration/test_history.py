"""The history file on disk: atomic under SIGKILL, corruption handled, status of a live run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from shim_helpers import (
    REPOSITORY,
    history_data,
    make_config,
    make_job,
    run_shim,
    shell,
    start_shim,
    wait_for,
)

from pcsystemd import history
from pcsystemd.errors import RunError
from pcsystemd.history import History, RunRecord, atomic_write, update_history
from pcsystemd.model import GlobalConfig, RunResult

WRITER = """
import os, sys, time
from pathlib import Path
from pcsystemd.history import RunRecord, update_history
from pcsystemd.model import RunResult
directory = Path(sys.argv[1])
number = 0
while True:
    number += 1
    record = RunRecord(
        run_id=f"run-{os.getpid()}-{number}", result=RunResult.SUCCESS, start="x" * 500
    )
    update_history(directory, "demo", lambda h: h.with_run(record, 200))
"""


def test_sigkill_during_writes_never_leaves_a_torn_file(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    directory = config.state_directory / "demo"
    directory.mkdir(parents=True)
    path = directory / history.HISTORY_FILE
    reads = 0
    for round_number in range(8):
        before = newest_run(config)
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(directory)],
            env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
        )
        wait_for(
            lambda before=before: newest_run(config) != before,  # type: ignore[misc]
            30,
            "the writer to make progress",
        )
        # Kill it at a different moment of its write cycle each round.
        deadline = time.monotonic() + 0.05 + round_number * 0.013
        while time.monotonic() < deadline:
            json.loads(path.read_bytes())  # raises on a torn or partial file
            reads += 1
            time.sleep(0.001)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        loaded = history.read_history(config, "demo")
        assert loaded.problem is None
        assert newest_run(config) != before
    assert reads > 10


def newest_run(config: GlobalConfig) -> str | None:
    runs = history.read_history(config, "demo").runs
    return runs[-1].run_id if runs else None


def test_corrupt_history_is_reported_moved_aside_and_replaced(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    directory = config.state_directory / "demo"
    directory.mkdir(parents=True)
    (directory / "history.json").write_bytes(b'{"format": 1, "runs": [trunc')
    loaded = history.read_history(config, "demo")
    assert loaded.problem is not None and "corrupt" in loaded.problem
    assert loaded.runs == ()
    assert (directory / "history.json").read_bytes().endswith(b"trunc"), "reading changes nothing"

    finished = run_shim(make_job([["true"]]), config, work=tmp_path)
    assert finished.returncode == 0, finished
    assert b"is corrupt" in finished.stderr and b"history.json.corrupt" in finished.stderr
    assert (directory / "history.json.corrupt").read_bytes() == b'{"format": 1, "runs": [trunc'
    runs = history_data(config)["runs"]
    assert [run["result"] for run in runs] == ["success"]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"[]",
        b'{"format": 2, "runs": []}',
        b'{"format": 1, "consecutive_failures": -1, "runs": []}',
        b'{"format": 1, "consecutive_failures": 0, "runs": [{"run_id": 1}]}',
        b'{"format": 1, "consecutive_failures": 0, "runs": [], "tripped": "yes"}',
        b"\xff\xfe",
    ],
)
def test_malformed_histories_are_problems_not_crashes(tmp_path: Path, content: bytes) -> None:
    config = make_config(tmp_path)
    directory = config.state_directory / "demo"
    directory.mkdir(parents=True)
    (directory / "history.json").write_bytes(content)
    assert history.read_history(config, "demo").problem is not None


def test_full_disk_keeps_the_old_history(tmp_path: Path) -> None:
    """A write that fails (here: a file size limit) raises and leaves the old file intact."""
    directory = tmp_path / "state"
    directory.mkdir()
    path = directory / "history.json"
    path.write_text('{"old": true}\n')
    code = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from pcsystemd.history import atomic_write\n"
        "from pcsystemd.errors import RunError\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))\n"
        "try:\n"
        "    atomic_write(Path(sys.argv[1]), b'x' * 100000)\n"
        "except RunError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
        check=True,
    )
    assert "cannot write" in result.stdout and "File too large" in result.stdout
    assert path.read_text() == '{"old": true}\n'
    assert [entry.name for entry in directory.iterdir()] == ["history.json"], "no temporary left"


def test_atomic_write_mode_and_unwritable_directory(tmp_path: Path) -> None:
    path = tmp_path / "file"
    atomic_write(path, b"data", mode=0o644)
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    with pytest.raises(RunError, match="cannot write"):
        atomic_write(tmp_path / "missing" / "file", b"data")


def test_status_is_running_while_a_run_is_live(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    started = tmp_path / "started"
    job = make_job([shell(f"touch {started}; exec sleep 300")])
    assert str(history.job_status(config, "demo")) == "{status: never run}"
    shim = start_shim(job, config, work=tmp_path)
    try:
        wait_for(started.exists, 10, "the job to start")
        status = history.job_status(config, "demo")
        assert status.status == "running"
        assert status.pid == shim.pid
        assert str(status) == f"{{pid: {shim.pid}, status: running}}"
    finally:
        shim.send_signal(signal.SIGTERM)
        shim.communicate(timeout=30)
    status = history.job_status(config, "demo")
    assert status.status == "stopped" and status.pid is None
    assert status.last_run is not None and status.last_run.result is RunResult.STOPPED


def test_a_killed_shims_record_is_not_reported_as_running(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    started = tmp_path / "started"
    pid_file = tmp_path / "job.pid"
    job = make_job([shell(f"echo $$ > {pid_file}; touch {started}; exec sleep 300")])
    shim = start_shim(job, config, work=tmp_path)
    wait_for(started.exists, 10, "the job to start")
    shim.send_signal(signal.SIGKILL)
    shim.wait()
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert history_data(config)["runs"][-1]["result"] == "running"
    assert history.job_status(config, "demo").status != "running"


def test_history_keeps_the_last_n_runs(tmp_path: Path) -> None:
    config = make_config(tmp_path, history_length=3)
    for _ in range(5):
        assert run_shim(make_job([["true"]]), config, work=tmp_path).returncode == 0
    assert len(history_data(config)["runs"]) == 3


def test_update_history_serialises_writers(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir()
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from pcsystemd.history import RunRecord, update_history\n"
        "from pcsystemd.model import RunResult\n"
        "for number in range(20):\n"
        "    record = RunRecord(run_id=f'{sys.argv[2]}-{number}', result=RunResult.SUCCESS,"
        " start='t')\n"
        "    update_history(Path(sys.argv[1]), 'demo', lambda h: h.with_run(record, 1000))\n"
    )
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(directory), f"w{index}"],
            env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
        )
        for index in range(4)
    ]
    for writer in writers:
        assert writer.wait(timeout=60) == 0
    data = json.loads((directory / "history.json").read_text())
    assert len(data["runs"]) == 80, "no update was lost"


def test_reset_without_history_is_harmless(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert history.reset(config, "never-ran") == History("never-ran")


def test_reset_by_root_keeps_the_files_owned_by_the_job_user(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    directory = config.state_directory / "demo"
    directory.mkdir(parents=True)
    os.chown(directory, 65534, 65534)
    record = RunRecord(run_id="r", result=RunResult.FAILED, start="t")
    update_history(directory, "demo", lambda h: h.with_run(record, 10))
    history.reset(config, "demo")
    assert (directory / "history.json").stat().st_uid == 65534


def test_reading_a_history_never_follows_hangs_or_fills_memory(tmp_path: Path) -> None:
    # The directory is the job user's; root reads it for `list`, `status` and the notifier.
    config = make_config(tmp_path)
    for slug, plant in (
        ("link", lambda path: path.symlink_to("/dev/zero")),
        ("fifo", lambda path: os.mkfifo(path)),
        ("huge", lambda path: path.write_bytes(b" " * (8 * 1024 * 1024 + 1))),
    ):
        directory = history.history_directory(config, slug)
        directory.mkdir(parents=True)
        plant(directory / history.HISTORY_FILE)
        loaded = history.read_history(config, slug)
        assert loaded.runs == () or not loaded.runs
        assert loaded.problem is not None and "cannot read" in loaded.problem


def test_reset_does_not_create_files_where_a_symlink_points(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    directory = history.history_directory(config, "demo")
    directory.mkdir(parents=True)
    target = tmp_path / "created-by-root"
    (directory / ".history.lock").symlink_to(target)
    with pytest.raises(Exception, match="cannot write the history"):
        history.reset(config, "demo")
    assert not target.exists()
