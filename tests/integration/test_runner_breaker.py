"""Retries with backoff within one run, and the circuit breaker across runs."""

from __future__ import annotations

import re
import time
from pathlib import Path

from shim_helpers import (
    history_data,
    last_run,
    log_files,
    make_config,
    make_job,
    only_log,
    run_shim,
    shell,
)

from pcsystemd import history, runner
from pcsystemd.model import Retries


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
    assert time.monotonic() - started < 1.5
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
