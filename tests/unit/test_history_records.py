"""History records and the circuit breaker's arithmetic (pure: no files)."""

from __future__ import annotations

import dataclasses

import job_factory
import pytest

from pcsystemd.history import History, JobStatus, RunRecord, Trip, finish_run
from pcsystemd.model import Hardening, Job, Overlap, RunResult


def job(**overrides: object) -> Job:
    defaults: dict[str, object] = {
        "name": "Demo",
        "commands": (("true",),),
        "overlap": Overlap.SKIP,
        "success_exit_codes": (),
        "hardening": Hardening.STRICT,
    }
    return job_factory.make_job("demo", **{**defaults, **overrides})


def record(number: int, result: RunResult, exit_status: int | None = None) -> RunRecord:
    return RunRecord(
        run_id=f"r{number}",
        result=result,
        start=f"2025-01-01T00:00:{number:02d}.000Z",
        end=f"2025-01-01T00:00:{number:02d}.500Z",
        duration_seconds=0.5,
        exit_status=exit_status,
    )


def play(results: list[RunResult], **job_options: object) -> History:
    history = History("demo")
    for number, result in enumerate(results):
        exit_status = 1 if result is RunResult.FAILED else None
        history = finish_run(history, record(number, result, exit_status), job(**job_options), 100)
    return history


def test_failures_count_and_success_resets() -> None:
    failed, success = RunResult.FAILED, RunResult.SUCCESS
    assert play([failed, failed]).consecutive_failures == 2
    assert play([failed, failed, success]).consecutive_failures == 0
    assert (
        play([failed, RunResult.TIMEOUT, RunResult.LOCKED, RunResult.ERROR]).consecutive_failures
        == 4
    )


@pytest.mark.parametrize("neutral", [RunResult.SKIPPED, RunResult.STOPPED, RunResult.TRIPPED])
def test_skips_stops_and_refusals_leave_the_streak_alone(neutral: RunResult) -> None:
    assert play([RunResult.FAILED, neutral, RunResult.FAILED]).consecutive_failures == 2


def test_breaker_trips_at_the_limit_only_when_enabled() -> None:
    failed = RunResult.FAILED
    assert play([failed] * 5).tripped is None
    assert play([failed] * 2, max_consecutive_failures=3).tripped is None
    tripped = play([failed] * 3, max_consecutive_failures=3).tripped
    assert tripped is not None
    assert tripped.run_id == "r2"
    assert tripped.reason == "3 consecutive failures (max_consecutive_failures is 3)"


def test_unrecoverable_exit_status_trips_at_once() -> None:
    history = finish_run(
        History("demo"),
        record(1, RunResult.FAILED, exit_status=42),
        job(unrecoverable_exit_codes=(42,)),
        100,
    )
    assert history.tripped == Trip(
        at="2025-01-01T00:00:01.500Z",
        reason="exit status 42 is listed as unrecoverable",
        run_id="r1",
    )


def test_a_trip_is_kept_until_reset() -> None:
    history = play([RunResult.FAILED] * 2, max_consecutive_failures=2)
    first = history.tripped
    history = finish_run(
        history, record(9, RunResult.TRIPPED), job(max_consecutive_failures=2), 100
    )
    assert history.tripped == first


def test_with_run_replaces_the_same_run_and_trims() -> None:
    history = History("demo")
    for number in range(5):
        history = history.with_run(record(number, RunResult.SUCCESS), keep=3)
    assert [run.run_id for run in history.runs] == ["r2", "r3", "r4"]
    running = dataclasses.replace(record(4, RunResult.RUNNING), end=None)
    history = history.with_run(running, keep=3)
    assert [run.run_id for run in history.runs] == ["r2", "r3", "r4"]
    assert history.run("r4") == running
    assert history.with_run(record(7, RunResult.SUCCESS), keep=0).runs == (
        record(7, RunResult.SUCCESS),
    )


def test_json_round_trip() -> None:
    history = History(
        "demo",
        runs=(
            dataclasses.replace(record(1, RunResult.FAILED, 3), log_file="/x.log", attempts=2),
            dataclasses.replace(record(2, RunResult.FAILED), signal="SIGKILL", pid=5, pid_start=9),
        ),
        consecutive_failures=2,
        tripped=Trip(at="t", reason="why", run_id="r2"),
    )
    assert History.from_json("demo", history.to_json()) == history


@pytest.mark.parametrize(
    "data",
    [
        None,
        {
            "format": 1,
            "consecutive_failures": 0,
            "runs": [{"run_id": "a", "result": "bogus", "start": "t"}],
        },
        {"format": 1, "consecutive_failures": True, "runs": []},
        {"format": 1, "consecutive_failures": 0, "runs": [{"run_id": "a", "result": "success"}]},
        {"format": 1, "consecutive_failures": 0, "runs": [], "tripped": {"at": 1, "reason": "x"}},
    ],
)
def test_malformed_json_is_rejected(data: object) -> None:
    with pytest.raises(ValueError):
        History.from_json("demo", data)


def test_status_reads_like_process_control() -> None:
    assert str(JobStatus("demo", "running", pid=5647)) == "{pid: 5647, status: running}"
    last = record(1, RunResult.FAILED, exit_status=3)
    text = str(JobStatus("demo", "failed", last_run=last, consecutive_failures=2))
    assert text == (
        "{status: failed, last_run: 2025-01-01T00:00:01.000Z, exit_status: 3, "
        "consecutive_failures: 2}"
    )


def test_file_encoding_is_json_with_one_run_per_line() -> None:
    import json

    from pcsystemd.history import encode

    empty = History("demo")
    assert History.from_json("demo", json.loads(encode(empty))) == empty
    history = History("demo", runs=(record(1, RunResult.SUCCESS), record(2, RunResult.FAILED, 1)))
    text = encode(history).decode()
    assert History.from_json("demo", json.loads(text)) == history
    assert text.endswith("\n")
    assert [line.startswith('{"run_id": "r') for line in text.splitlines()[1:3]] == [True, True]


def test_trimming_keeps_the_record_of_a_live_run() -> None:
    import os

    from pcsystemd.history import process_start_ticks

    live = RunRecord(
        run_id="live",
        result=RunResult.RUNNING,
        start="2026-11-23T00:00:00Z",
        pid=os.getpid(),
        pid_start=process_start_ticks(os.getpid()),
    )
    history = History("demo", runs=(live,))
    for number in range(5):
        history = history.with_run(record(number, RunResult.SKIPPED), keep=3)
    assert [run.run_id for run in history.runs] == ["live", "r2", "r3", "r4"]
