"""Retries with backoff within one run, and the circuit breaker across runs.

The breaker is decided by a run's first history update, under the history lock: normally
its `running` record, written once the job's lock is held (see runner.py for the order).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from shim_helpers import (
    history_data,
    last_run,
    log_files,
    make_config,
    make_job,
    only_log,
    run_shim,
    shell,
    start_shim,
    wait_for,
)

from pcsystemd import history, locking, runner
from pcsystemd.model import Job, Overlap, Retries


def flaky(counter: Path, failures: int) -> tuple[str, ...]:
    """A command that fails `failures` times, then succeeds (counting in a file)."""
    return shell(
        f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; "
        f'echo "attempt $n"; [ $n -gt {failures} ] || {{ echo "failing $n" >&2; exit 7; }}'
    )


def test_retries_with_backoff_until_success(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    retries = Retries(count=3, delay_seconds=0.2, backoff=2, max_delay_seconds=10)
    job = make_job([flaky(tmp_path / "counter", 2)], retries=retries)
    started = time.monotonic()
    finished = run_shim(job, config, work=tmp_path)
    assert finished.returncode == 0, finished
    assert time.monotonic() - started >= 0.2 + 0.4
    text = only_log(config)
    for attempt in (1, 2, 3):
        assert f" [pcsystemd] attempt {attempt} of 4\n" in text
        assert f" [stdout] attempt {attempt}\n" in text
    assert "attempt 1 of 4 failed (exit status 7); retrying in 0.2 s" in text
    assert "attempt 2 of 4 failed (exit status 7); retrying in 0.4 s" in text
    assert " [pcsystemd] attempt 4 of 4\n" not in text
    assert "# attempts: 3\n" in text
    run = last_run(config)
    assert (run["result"], run["attempts"]) == ("success", 3)
    assert history_data(config)["consecutive_failures"] == 0


def test_retries_exhausted_fail_the_run_once(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    job = make_job([shell("exit 2")], retries=Retries(count=2, delay_seconds=0.05))
    finished = run_shim(job, config, work=tmp_path)
    assert finished.returncode == 2
    run = last_run(config)
    assert (run["result"], run["attempts"]) == ("failed", 3)
    assert len(history_data(config)["runs"]) == 1
    assert history_data(config)["consecutive_failures"] == 1
    assert len(log_files(config)) == 1, "all attempts share one log file"


def test_retries_stay_within_the_timeout(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    job = make_job(
        [shell("exit 1")],
        timeout_seconds=1,
        retries=Retries(count=10, delay_seconds=0.4, backoff=1),
    )
    started = time.monotonic()
    finished = run_shim(job, config, work=tmp_path)
    # Unbounded, the ten retries alone would take 4 s; the shim's start-up and its fsyncs
    # on a loaded machine can take a second or more, so the margin is wide on purpose.
    assert time.monotonic() - started < 3.5
    assert finished.returncode == 1
    text = only_log(config)
    assert re.search(r"no time left for attempt \d within the timeout", text)
    assert last_run(config)["attempts"] < 4


def test_unrecoverable_exit_code_is_not_retried_and_trips_the_breaker(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    marker = tmp_path / "runs"
    job = make_job(
        [shell(f"echo x >> {marker}; exit 9")],
        retries=Retries(count=5, delay_seconds=0.05),
        unrecoverable_exit_codes=(9,),
    )
    finished = run_shim(job, config, work=tmp_path)
    assert finished.returncode == 9
    assert marker.read_text() == "x\n"
    assert "exit status 9 is unrecoverable: no retry" in only_log(config)
    data = history_data(config)
    assert data["tripped"]["reason"] == "exit status 9 is listed as unrecoverable"
    assert b"pcsystemd reset demo" in finished.stderr

    refused = run_shim(job, config, work=tmp_path)
    assert refused.returncode == runner.EXIT_TRIPPED
    assert marker.read_text() == "x\n", "a tripped job does not run"
    assert b"pcsystemd reset demo" in refused.stderr
    run = last_run(config)
    assert run["result"] == "tripped" and "pcsystemd reset demo" in run["message"]
    assert run["log_file"] is None


def test_breaker_trips_after_consecutive_failures_and_reset_rearms_it(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    marker = tmp_path / "runs"
    should_fail = tmp_path / "fail"
    should_fail.touch()
    job = make_job(
        [shell(f"echo x >> {marker}; [ ! -e {should_fail} ]")], max_consecutive_failures=3
    )
    statuses = [run_shim(job, config, work=tmp_path).returncode for _ in range(4)]
    assert statuses == [1, 1, 1, runner.EXIT_TRIPPED]
    assert marker.read_text() == "x\n" * 3
    data = history_data(config)
    assert data["consecutive_failures"] == 3
    assert "3 consecutive failures" in data["tripped"]["reason"]
    assert [run["result"] for run in data["runs"]] == ["failed"] * 3 + ["tripped"]

    status = history.job_status(config, "demo")
    assert status.status == "tripped"
    assert "consecutive_failures: 3" in str(status)

    should_fail.unlink()
    history.reset(config, "demo")
    assert history.job_status(config, "demo").status == "reset"
    assert run_shim(job, config, work=tmp_path).returncode == 0
    data = history_data(config)
    assert data["tripped"] is None and data["consecutive_failures"] == 0
    assert history.job_status(config, "demo").status == "success"


def test_success_resets_the_streak(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    should_fail = tmp_path / "fail"
    job = make_job([shell(f"[ ! -e {should_fail} ]")], max_consecutive_failures=2)
    should_fail.touch()
    assert run_shim(job, config, work=tmp_path).returncode == 1
    should_fail.unlink()
    assert run_shim(job, config, work=tmp_path).returncode == 0
    should_fail.touch()
    assert run_shim(job, config, work=tmp_path).returncode == 1
    data = history_data(config)
    assert data["consecutive_failures"] == 1 and data["tripped"] is None


def test_a_run_waiting_for_the_lock_is_refused_when_the_holder_trips_the_breaker(
    tmp_path: Path,
) -> None:
    """The breaker is decided once the lock is held, from what the run before left."""
    config = make_config(tmp_path)
    release, started, marker = tmp_path / "release", tmp_path / "started", tmp_path / "ran"
    holder_job = make_job(
        [shell(f"touch {started}; while [ ! -e {release} ]; do sleep 0.02; done; exit 9")],
        unrecoverable_exit_codes=(9,),
    )
    holder = start_shim(holder_job, config, work=tmp_path)
    waiter_output = tmp_path / "waiter.stderr"
    try:
        wait_for(started.exists, 10, "the holder to start")
        waiter_job = make_job(
            [shell(f"touch {marker}")], overlap=Overlap.WAIT, overlap_wait_seconds=60
        )
        with open(waiter_output, "wb") as stderr:
            waiter = start_shim(waiter_job, config, work=tmp_path, stderr=stderr)
        wait_for(lambda: b"waiting up to 60 s" in waiter_output.read_bytes(), 10, "the wait")
        assert history_data(config)["tripped"] is None, "not tripped while the waiter waits"
    finally:
        release.touch()
        holder.communicate(timeout=30)
    assert holder.returncode == 9
    waiter.communicate(timeout=30)
    assert waiter.returncode == runner.EXIT_TRIPPED
    assert not marker.exists(), "the waiter did not run its command"
    assert b"pcsystemd reset demo" in waiter_output.read_bytes()
    data = history_data(config)
    assert [run["result"] for run in data["runs"]] == ["failed", "tripped"]
    assert data["runs"][-1]["log_file"] is None
    assert len(log_files(config)) == 1, "the refused run left no log file"


@pytest.mark.parametrize("overlap", [Overlap.SKIP, Overlap.FAIL])
def test_a_tripped_job_that_finds_its_lock_held_is_refused_as_tripped(
    tmp_path: Path, overlap: Overlap
) -> None:
    """A run refused for the lock records only that refusal, and the breaker decides it."""
    config = make_config(tmp_path)
    job = make_job([shell("exit 9")], overlap=overlap, unrecoverable_exit_codes=(9,))
    assert run_shim(job, config, work=tmp_path).returncode == 9
    holder = locking.open_lock(locking.lock_file_path(config, "demo"), inherited_fd=-1)
    try:
        assert locking.try_lock(holder)
        refused = run_shim(job, config, work=tmp_path)
    finally:
        os.close(holder)
    assert refused.returncode == runner.EXIT_TRIPPED, refused
    assert b"pcsystemd reset demo" in refused.stderr
    run = last_run(config)
    assert run["result"] == "tripped" and "pcsystemd reset demo" in run["message"]
    assert history_data(config)["consecutive_failures"] == 1


def test_a_run_reads_its_history_once_per_update(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    history_file = config.state_directory / "demo" / history.HISTORY_FILE

    def reads(job: Job, name: str) -> list[str]:
        log = tmp_path / name
        process = start_shim(job, config, work=tmp_path, history_reads_file=log)
        process.communicate(timeout=60)
        return log.read_text().splitlines()

    good = make_job([["true"]], max_consecutive_failures=1)
    assert reads(good, "success") == [str(history_file)] * 2, "running, then the result"
    bad = make_job([shell("exit 3")], max_consecutive_failures=1)
    assert reads(bad, "failure") == [str(history_file)] * 2
    assert history_data(config)["tripped"] is not None
    assert reads(bad, "refused") == [str(history_file)], "the refusal only"
    assert last_run(config)["result"] == "tripped"


def test_a_slow_start_the_breaker_refused_is_not_recorded_as_one(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    job = make_job(
        [shell("exit 9")],
        slow_start_commands=[shell("exit 9")],
        unrecoverable_exit_codes=(9,),
    )
    assert run_shim(job, config, work=tmp_path, slow_start=True).returncode == 9
    assert last_run(config)["slow_start"] is True  # it ran, slowly, and tripped the breaker
    refused = run_shim(job, config, work=tmp_path, slow_start=True)
    assert refused.returncode == runner.EXIT_TRIPPED
    run = last_run(config)
    assert run["result"] == "tripped" and run["slow_start"] is False and run["log_file"] is None
