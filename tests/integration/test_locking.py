"""Lock groups with real flock, real processes and SIGKILL."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from shim_helpers import (
    SYSTEM_PYTHON,
    history_data,
    last_run,
    log_files,
    make_config,
    make_job,
    only_log,
    readable_package_root,
    run_shim,
    shell,
    start_shim,
    wait_for,
)

from pcsystemd import locking, runner
from pcsystemd.model import Overlap

NOBODY = 65534


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary directory that an unprivileged user can enter (pytest's is root-only)."""
    directory = Path(tempfile.mkdtemp(prefix="pcsystemd-locking-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def blocker_job(release: Path, started: Path, **options: object) -> object:
    """A job that says it started, then runs until `release` exists."""
    script = f"touch {started}; while [ ! -e {release} ]; do sleep 0.02; done; echo released"
    return make_job([shell(script)], **options)


def test_root_creates_a_private_lock_directory(tmp_path: Path) -> None:
    path = tmp_path / "run" / "locks" / "group.lock"
    fd = locking.open_lock(path, inherited_fd=-1)
    try:
        assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        assert locking.try_lock(fd)
    finally:
        os.close(fd)


def test_a_loosened_lock_directory_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "group.lock"
    path.parent.mkdir()
    path.parent.chmod(0o777)
    os.close(locking.open_lock(path, inherited_fd=-1))
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"


def test_inherited_descriptor_is_used_only_when_it_is_the_lock_file(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "group.lock"
    os.close(locking.open_lock(path, inherited_fd=-1))
    with open(path, "rb") as lock, open(tmp_path / "other", "w") as other:
        assert locking.inherited_is_lock(path, lock.fileno())
        assert not locking.inherited_is_lock(path, other.fileno())
        assert locking.open_lock(path, inherited_fd=lock.fileno()) == lock.fileno()


def test_flock_excludes_a_second_holder(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "group.lock"
    first = locking.open_lock(path, inherited_fd=-1)
    second = locking.open_lock(path, inherited_fd=-1)
    try:
        assert locking.try_lock(first)
        assert not locking.try_lock(second)
        started = time.monotonic()
        assert not locking.acquire(second, Overlap.WAIT, 0.3)
        assert 0.3 <= time.monotonic() - started < 2
        assert not locking.acquire(second, Overlap.SKIP, 10)
        os.close(first)
        assert locking.acquire(second, Overlap.WAIT, 1)
    finally:
        os.close(second)


def test_fifty_parallel_starts_under_skip_run_the_job_once(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    count_file = tmp_path / "count"
    release = tmp_path / "release"
    script = (
        f"echo ran >> {count_file}; while [ ! -e {release} ]; do sleep 0.02; done; echo finished"
    )
    job = make_job([shell(script)], overlap=Overlap.SKIP)
    shims = [
        start_shim(job, config, work=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(50)
    ]
    try:
        # 49 are refused while the one that got the lock waits for the release.
        wait_for(lambda: sum(s.poll() is not None for s in shims) == 49, 90, "49 skipped runs")
        assert [s.returncode for s in shims if s.poll() is not None] == [0] * 49
    finally:
        release.touch()
        for shim in shims:
            shim.wait(timeout=60)
    assert [s.returncode for s in shims] == [0] * 50
    assert count_file.read_text() == "ran\n"
    results = [run["result"] for run in history_data(config)["runs"]]
    assert sorted(results) == ["skipped"] * 49 + ["success"]
    assert len(log_files(config)) == 1, "skipped runs leave no log file"


def test_kill_9_of_the_shim_never_leaves_a_stale_lock(tmp_path: Path) -> None:
    """As under systemd: the lock file is the shim's stdin, and the shim flocks it."""
    config = make_config(tmp_path)
    lock_path = locking.lock_file_path(config, "demo")
    os.close(locking.open_lock(lock_path, inherited_fd=-1))
    started = tmp_path / "started"
    orphans = tmp_path / "orphans"
    job = make_job(
        [shell(f"echo $$ >> {orphans}; touch {started}; exec sleep 300")],
        overlap=Overlap.FAIL,
        timeout_seconds=60,
    )
    with open(lock_path, "rb") as lock:
        first = start_shim(job, config, work=tmp_path, stdin=lock)
    wait_for(started.exists, 10, "the first run to start")
    with open(lock_path, "rb") as lock:
        # While the first run lives, a second one finds the lock held.
        clash = run_shim(job, config, work=tmp_path, stdin=lock)
    assert clash.returncode == runner.EXIT_LOCKED, clash
    assert last_run(config)["result"] == "locked"

    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    started.unlink()
    with open(lock_path, "rb") as lock:
        second = start_shim(job, config, work=tmp_path, stdin=lock)
    try:
        wait_for(started.exists, 10, "the run after kill -9 to get the lock and start")
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=30)
    # The killed shim's record is settled as an error by a later run, not left `running`.
    results = [run["result"] for run in history_data(config)["runs"]]
    assert results == ["error", "locked", "stopped"]
    # The killed shim could not end its job (systemd would have, through the cgroup).
    for pid in map(int, orphans.read_text().split()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_overlap_fail_records_a_failure(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    release, started = tmp_path / "release", tmp_path / "started"
    holder = start_shim(blocker_job(release, started), config, work=tmp_path)
    try:
        wait_for(started.exists, 10, "the holder to start")
        job = make_job([["echo", "never"]], overlap=Overlap.FAIL)
        finished = run_shim(job, config, work=tmp_path)
        assert finished.returncode == runner.EXIT_LOCKED
        assert b"held by another run (overlap: fail)" in finished.stderr
        run = last_run(config)
        assert run["result"] == "locked" and run["log_file"] is None
    finally:
        release.touch()
        holder.communicate(timeout=30)
    assert history_data(config)["consecutive_failures"] == 0, "the holder's success reset it"


def test_overlap_wait_gets_the_lock_when_it_is_released_in_time(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    release, started = tmp_path / "release", tmp_path / "started"
    holder = start_shim(blocker_job(release, started), config, work=tmp_path)
    wait_for(started.exists, 10, "the holder to start")
    job = make_job([["echo", "waited"]], overlap=Overlap.WAIT, overlap_wait_seconds=30)
    waiter = start_shim(job, config, work=tmp_path)
    time.sleep(0.5)
    assert waiter.poll() is None, "it waits"
    release.touch()
    holder.communicate(timeout=30)
    _, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, err
    assert b"waiting up to 30 s" in err
    assert [run["result"] for run in history_data(config)["runs"]] == ["success", "success"]


def test_overlap_wait_is_bounded(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    release, started = tmp_path / "release", tmp_path / "started"
    holder = start_shim(blocker_job(release, started), config, work=tmp_path)
    try:
        wait_for(started.exists, 10, "the holder to start")
        job = make_job([["echo", "never"]], overlap=Overlap.WAIT, overlap_wait_seconds=1)
        began = time.monotonic()
        finished = run_shim(job, config, work=tmp_path)
        assert 1 <= time.monotonic() - began < 5
        assert finished.returncode == runner.EXIT_LOCKED
        assert "still after 1 s (overlap: wait)" in last_run(config)["message"]
    finally:
        release.touch()
        holder.communicate(timeout=30)


def test_jobs_sharing_a_lock_group_exclude_each_other(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    release, started = tmp_path / "release", tmp_path / "started"
    first = blocker_job(release, started, lock_group="shared")
    holder = start_shim(first, config, work=tmp_path)  # type: ignore[arg-type]
    try:
        wait_for(started.exists, 10, "the first job to start")
        other = make_job([["echo", "other"]], slug="other", lock_group="shared")
        assert run_shim(other, config, work=tmp_path).returncode == 0
        assert last_run(config, "other")["result"] == "skipped"
        unrelated = make_job([["echo", "free"]], slug="unrelated", lock_group="unrelated")
        assert run_shim(unrelated, config, work=tmp_path).returncode == 0
        assert last_run(config, "unrelated")["result"] == "success"
    finally:
        release.touch()
        holder.communicate(timeout=30)


def test_by_hand_as_non_root_is_refused_with_directions(open_tmp: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from pcsystemd import locking\n"
        "from pcsystemd.errors import RunError\n"
        "try:\n"
        "    locking.open_lock(Path(sys.argv[1]))\n"
        "except RunError as error:\n"
        "    print(error)\n"
    )
    lock_path = open_tmp / "locks" / "demo.lock"
    os.close(locking.open_lock(lock_path, inherited_fd=-1))
    result = subprocess.run(
        [SYSTEM_PYTHON, "-c", code, str(lock_path)],
        capture_output=True,
        text=True,
        user=NOBODY,
        env={"PYTHONPATH": readable_package_root()},
        stdin=subprocess.DEVNULL,
        check=True,
    )
    assert "only accessible to root" in result.stdout
    assert "pcsystemd start JOB" in result.stdout


def test_job_user_flocks_the_descriptor_systemd_opened(open_tmp: Path) -> None:
    """The job user cannot open the lock file, but can use the one it was given as stdin."""
    config = make_config(open_tmp)
    lock_path = locking.lock_file_path(config, "demo")
    os.close(locking.open_lock(lock_path, inherited_fd=-1))
    for directory in (config.log_directory / "demo", config.state_directory / "demo"):
        directory.mkdir(parents=True)
        os.chown(directory, NOBODY, NOBODY)
    job = make_job([["id", "-u"]], user="nobody", overlap=Overlap.FAIL)
    with open(lock_path, "rb") as lock:
        finished = run_shim(job, config, work=open_tmp / "work", stdin=lock, user=NOBODY)
    assert finished.returncode == 0, finished
    assert last_run(config)["result"] == "success"
    assert f" [stdout] {NOBODY}\n" in only_log(config)
    # The holder's flock really excludes others: root holds it now, so nobody's run is locked.
    holder = locking.open_lock(lock_path, inherited_fd=-1)
    try:
        assert locking.try_lock(holder)
        with open(lock_path, "rb") as lock:
            clash = run_shim(job, config, work=open_tmp / "work", stdin=lock, user=NOBODY)
        assert clash.returncode == runner.EXIT_LOCKED, clash
    finally:
        os.close(holder)


def test_unit_for_another_user_is_refused(open_tmp: Path) -> None:
    """A unit generated before the job file changed its user must not run the new job."""
    config = make_config(open_tmp)
    lock_path = locking.lock_file_path(config, "demo")
    os.close(locking.open_lock(lock_path, inherited_fd=-1))
    for directory in (config.log_directory / "demo", config.state_directory / "demo"):
        directory.mkdir(parents=True)
        os.chown(directory, NOBODY, NOBODY)
    marker = open_tmp / "ran"
    job = make_job([["touch", str(marker)]], user="daemon")
    with open(lock_path, "rb") as lock:
        finished = run_shim(job, config, work=open_tmp / "work", stdin=lock, user=NOBODY)
    assert finished.returncode == runner.EXIT_ERROR
    assert b"the unit is out of date" in finished.stderr
    assert not marker.exists()


def test_wrong_stdin_under_systemd_names_a_stale_unit(open_tmp: Path) -> None:
    config = make_config(open_tmp)
    lock_path = locking.lock_file_path(config, "demo")
    os.close(locking.open_lock(lock_path, inherited_fd=-1))
    other = locking.lock_file_path(config, "old-group")
    os.close(locking.open_lock(other, inherited_fd=-1))
    job = make_job([["true"]], user="nobody")
    with open(other, "rb") as wrong:
        finished = run_shim(
            job,
            config,
            work=open_tmp / "work",
            stdin=wrong,
            user=NOBODY,
            environment={"INVOCATION_ID": "3" * 32},
        )
    assert finished.returncode == runner.EXIT_ERROR
    assert b"standard input is not the lock file" in finished.stderr
    assert b"regenerate the units" in finished.stderr


def test_root_by_hand_runs_the_job_as_its_user(open_tmp: Path) -> None:
    """`pcsystemd run-job` by root must not run a job as root: it becomes the job's user."""
    config = make_config(open_tmp)
    job = make_job([shell('id -u; id -g; echo "$HOME $USER"')], user="nobody")
    finished = run_shim(job, config, work=open_tmp / "work")
    assert finished.returncode == 0, finished
    [log] = log_files(config)
    assert log.stat().st_uid == NOBODY
    text = log.read_text()
    assert f" [stdout] {NOBODY}\n" in text and " [stdout] /nonexistent nobody\n" in text
    assert (config.state_directory / "demo").stat().st_uid == NOBODY
    assert (config.state_directory / "demo" / "history.json").stat().st_uid == NOBODY
    assert "# user: nobody\n" in text
