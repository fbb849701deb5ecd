"""The people's commands, pure parts: job names, relative times, tables, history lines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pcsystemd.errors import UsageError
from pcsystemd.history import History, RunRecord, Trip
from pcsystemd.model import RunResult
from pcsystemd.operate import resolve_slug
from pcsystemd.report import (
    format_duration,
    format_span,
    history_lines,
    parse_time,
    relative,
    table,
)

JOBS = Path("/etc/pcsystemd/jobs")
NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (42, "42s"),
        (61, "1min 1s"),
        (299, "4min 59s"),
        (300, "5min"),
        (3600 + 5 * 60 + 9, "1h 5min"),
        (17 * 3600 + 59 * 60, "17h"),
        (25 * 3600, "1 day 1h"),
        (3 * 86400 + 3600, "3 days"),
        (8 * 86400, "1 week 1 day"),
        (40 * 86400, "1 month 9 days"),
        (800 * 86400, "2 years 2 months"),
        (-90, "1min 30s"),
    ],
)
def test_spans_have_list_timers_precision(seconds: int, text: str) -> None:
    assert format_span(seconds) == text


def test_relative_times_say_left_or_ago() -> None:
    assert relative(NOW + timedelta(hours=17, minutes=3), NOW) == "17h left"
    assert relative(NOW - timedelta(minutes=5, seconds=3), NOW) == "5min ago"
    assert relative(NOW, NOW) == "now"
    assert relative(None, NOW) == "-"


def test_durations_below_a_minute_keep_hundredths() -> None:
    assert format_duration(0.25) == "0.25s"
    assert format_duration(125) == "2min 5s"


def test_history_timestamps_parse_as_utc() -> None:
    assert parse_time("2025-03-01T11:59:00.250Z") == NOW - timedelta(seconds=59.75)
    assert parse_time(None) is None
    assert parse_time("garbage") is None


@pytest.mark.parametrize(
    "name",
    ["yak", "pcsystemd-yak", "pcsystemd-yak.service", "pcsystemd-yak.timer", f"{JOBS}/yak.yaml"],
)
def test_a_job_can_be_named_by_slug_unit_or_file(name: str) -> None:
    assert resolve_slug(name, ["month-end", "yak"], JOBS) == "yak"


def test_an_unknown_job_gets_a_did_you_mean() -> None:
    with pytest.raises(UsageError, match=r"unknown job 'yk'.*did you mean 'yak'\?"):
        resolve_slug("yk", ["month-end", "yak"], JOBS)
    with pytest.raises(UsageError) as raised:
        resolve_slug("zzz", ["month-end", "yak"], JOBS)
    assert "did you mean" not in str(raised.value)
    with pytest.raises(UsageError, match="there are no job files"):
        resolve_slug("yak", [], JOBS)


def test_tables_align_columns_without_trailing_blanks() -> None:
    lines = table(("JOB", "NEXT", "NAME"), [("yak", "-", ""), ("month-end", "Mon 12:30", "x")])
    assert lines == [
        "JOB        NEXT       NAME",
        "yak        -",
        "month-end  Mon 12:30  x",
    ]


def test_history_lists_runs_newest_first_numbered_for_logs_run() -> None:
    runs = (
        RunRecord(
            run_id="20250301-100000-41",
            result=RunResult.SUCCESS,
            start="2025-03-01T10:00:00.000Z",
            end="2025-03-01T10:00:00.500Z",
            duration_seconds=0.5,
            exit_status=0,
            log_file="/var/log/pcsystemd/yak/yak-20250301-100000.log",
        ),
        RunRecord(
            run_id="20250301-110000-42",
            result=RunResult.FAILED,
            start="2025-03-01T11:00:00.000Z",
            end="2025-03-01T11:02:05.000Z",
            duration_seconds=125.0,
            signal="SIGKILL",
        ),
    )
    history = History(
        "yak",
        runs=runs,
        consecutive_failures=1,
        tripped=Trip(at="2025-03-01T11:02:05.000Z", reason="exit status 3 is unrecoverable"),
    )
    lines = history_lines(history, NOW, count=20)
    assert lines[0] == (
        "yak: 2 recorded run(s), 1 consecutive failure(s); "
        "circuit breaker tripped: exit status 3 is unrecoverable"
    )
    assert lines[1].split() == ["#", "RUN", "STARTED", "PASSED", "TOOK", "RESULT", "EXIT", "LOG"]
    newest, older = lines[2], lines[3]
    assert newest.startswith("1  20250301-110000-42")
    assert "1h 0min ago" in newest and "2min 5s" in newest and "failed" in newest
    assert "SIGKILL" in newest
    assert older.startswith("2  20250301-100000-41")
    assert "0.50s" in older and "yak-20250301-100000.log" in older
    only_newest = history_lines(history, NOW, count=1)[2:]
    assert [line.split() for line in only_newest] == [newest.split()]
