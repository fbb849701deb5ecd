"""History records and the circuit breaker's arithmetic (pure: no files)."""

from __future__ import annotations

import job_factory
import pytest

from pcsystemd.history import History, JobStatus, RunRecord, Trip, finish_run
from pcsystemd.model import Hardening, Job, Overlap, RunResult
from pcsystemd.record import replace


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
    running = replace(record(4, RunResult.RUNNING), end=None)
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
            replace(record(1, RunResult.FAILED, 3), log_file="/x.log", attempts=2),
            replace(record(2, RunResult.FAILED), signal="SIGKILL", pid=5, pid_start=9),
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


# --- reading stored runs ---------------------------------------------------------------------

STORED_RUN: dict[str, object] = {
    "run_id": "20250101-000000-1", "result": "failed", "start": "2025-01-01T00:00:00.000Z",
    "end": "2025-01-01T00:00:01.000Z", "duration_seconds": 1.0, "exit_status": 3,
    "signal": None, "pid": 42, "pid_start": 7, "log_file": "/var/log/a.log", "attempts": 1,
    "slow_start": False, "message": None,
}  # fmt: skip


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("run_id", None),
        ("run_id", 5),
        ("result", "bogus"),
        ("start", None),
        ("end", 1),
        ("duration_seconds", "1"),
        ("exit_status", 2.0),
        ("exit_status", True),  # a boolean is no number of ours
        ("attempts", True),
        ("pid", "42"),
        ("pid_start", 7.0),
        ("signal", 9),
        ("log_file", ["/x.log"]),
        ("slow_start", 1),
        ("message", False),
    ],
)
def test_a_stored_run_with_a_wrong_field_is_refused_by_name(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=key if key != "result" else "bogus"):
        RunRecord.from_json({**STORED_RUN, key: value})


def test_a_stored_runs_optional_fields_may_be_missing_or_null() -> None:
    required = {key: STORED_RUN[key] for key in ("run_id", "result", "start")}
    assert RunRecord.from_json(required) == RunRecord(
        run_id="20250101-000000-1", result=RunResult.FAILED, start="2025-01-01T00:00:00.000Z"
    )
    nulls = {**required, **{key: None for key in STORED_RUN if key not in required}}
    assert RunRecord.from_json(nulls) == RunRecord.from_json(required)
    assert RunRecord.from_json({**STORED_RUN, "duration_seconds": 2}).duration_seconds == 2.0
    with pytest.raises(ValueError, match="not an object"):
        RunRecord.from_json([STORED_RUN])


def test_a_record_survives_the_round_trip() -> None:
    full = RunRecord(
        run_id="20250101-000000-1",
        result=RunResult.FAILED,
        start="2025-01-01T00:00:00.000Z",
        end="2025-01-01T00:00:01.500Z",
        duration_seconds=1.5,
        exit_status=3,
        pid=42,
        pid_start=1234,
        log_file="/var/log/pcsystemd/a/a.log",
        attempts=2,
        slow_start=True,
        message="wrote 3 bytes to stderr",
    )
    assert RunRecord.from_json(full.to_json()) == full


# A history file as earlier versions of the shim wrote it: it must keep reading the same, and
# be written back byte for byte.
EARLIER_FILE = (
    b'{"format": 1, "job": "demo", "consecutive_failures": 2, "tripped": {"at": '
    b'"2025-01-01T00:01:00.100Z", "reason": "exit status 9 is listed as unrecoverable", '
    b'"run_id": "20250101-000100-12"}, "runs": [\n'
    b'{"run_id": "20250101-000000-11", "result": "failed", "start": "2025-01-01T00:00:00.000Z",'
    b' "end": "2025-01-01T00:00:00.500Z", "duration_seconds": 0.5, "exit_status": 1, "signal":'
    b' null, "pid": 11, "pid_start": 100, "log_file": "/var/log/pcsystemd/demo/demo-20250101-'
    b'000000.log", "attempts": 1, "slow_start": false, "message": null},\n'
    b'{"run_id": "20250101-000100-12", "result": "failed", "start": "2025-01-01T00:01:00.000Z",'
    b' "end": "2025-01-01T00:01:00.100Z", "duration_seconds": 0.1, "exit_status": 9, "signal":'
    b' null, "pid": 12, "pid_start": 200, "log_file": "/var/log/pcsystemd/demo/demo-20250101-'
    b'000100.log", "attempts": 1, "slow_start": false, "message": null},\n'
    b'{"run_id": "20250101-000200-13", "result": "tripped", "start": "2025-01-01T00:02:00.000Z",'
    b' "end": "2025-01-01T00:02:00.001Z", "duration_seconds": 0.001, "exit_status": null, '
    b'"signal": null, "pid": 13, "pid_start": 300, "log_file": null, "attempts": 0, '
    b'"slow_start": false, "message": "refused: the circuit breaker tripped at '
    b"2025-01-01T00:01:00.100Z (exit status 9 is listed as unrecoverable); fix the cause, then "
    b'run `pcsystemd reset demo`"}\n'
    b"]}\n"
)


def test_a_history_written_by_earlier_versions_still_reads() -> None:
    import json

    from pcsystemd.history import encode

    history = History.from_json("demo", json.loads(EARLIER_FILE))
    assert history.consecutive_failures == 2
    assert history.tripped == Trip(
        at="2025-01-01T00:01:00.100Z",
        reason="exit status 9 is listed as unrecoverable",
        run_id="20250101-000100-12",
    )
    assert [(run.result, run.exit_status) for run in history.runs] == [
        (RunResult.FAILED, 1),
        (RunResult.FAILED, 9),
        (RunResult.TRIPPED, None),
    ]
    assert history.runs[1].log_file == "/var/log/pcsystemd/demo/demo-20250101-000100.log"
    assert encode(history) == EARLIER_FILE
