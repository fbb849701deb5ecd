"""What `list` and `status` make of systemd's unit states and the shim's history."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import job_factory

from pcsystemd.history import JobStatus, RunRecord, Trip
from pcsystemd.model import (
    Hardening,
    Job,
    RunResult,
    Schedule,
)
from pcsystemd.operate import Target
from pcsystemd.report import JobReport, status_lines
from pcsystemd.systemd import TimerState, UnitState

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
DOCUMENTED_KEYS = {
    "slug", "name", "valid", "tags", "schedule", "disabled", "timer", "service",
    "timer_active", "next_run", "last_run", "result", "running_pid", "exit_status", "signal",
    "log_file", "consecutive_failures", "tripped", "service_state",
}  # fmt: skip


def job(slug: str = "yak", schedules: tuple[Schedule, ...] | None = None) -> Job:
    if schedules is None:
        schedules = (Schedule("30 12 * * *", ("*-*-* 12:30:00",)),)
    return job_factory.make_job(
        slug,
        name="Shave the yak",
        schedules=schedules,
        tags=("farm",),
        hardening=Hardening.STRICT,
    )


def service(active: str = "inactive", **values: Any) -> UnitState:
    filled: dict[str, Any] = {field.name: None for field in fields(UnitState)}
    filled.update(
        name="pcsystemd-yak.service",
        load_state="loaded",
        active_state=active,
        sub_state="dead",
        unit_file_state="generated",
        description="",
        fragment_path="",
        need_daemon_reload=False,
        invocation_id="",
    )
    filled.update(values)
    return UnitState(**filled)


def timer(active: str = "active", **values: Any) -> TimerState:
    filled: dict[str, Any] = {field.name: None for field in fields(TimerState)}
    filled.update(
        name="pcsystemd-yak.timer",
        load_state="loaded",
        active_state=active,
        unit_file_state="generated",
        unit="pcsystemd-yak.service",
        next_elapse=NOW + timedelta(hours=17),
        result="success",
        persistent=False,
        calendar=(),
    )
    filled.update(values)
    return TimerState(**filled)


def report(
    status: JobStatus, unit: UnitState, *, timer_state: TimerState | None = None
) -> JobReport:
    return JobReport(
        target=Target("yak", job()),
        disabled=None,
        timer=timer_state or timer(),
        service=unit,
        status=status,
    )


def test_a_live_run_shows_its_pid_and_start() -> None:
    started = NOW - timedelta(minutes=2)
    live = report(
        JobStatus("yak", "running", pid=4711),
        service("active", main_pid=4711, exec_main_started=started),
    )
    assert (live.result, live.running_pid, live.last_run) == ("running", 4711, started)
    assert not live.failing
    lines = status_lines(live, NOW)
    assert "   Running: pid 4711, since" in "\n".join(lines)
    assert any(line.strip().startswith("Status: {pid: 4711, status: running}") for line in lines)


def test_the_shims_last_result_wins_over_systemds() -> None:
    last = RunRecord(
        run_id="r1",
        result=RunResult.TIMEOUT,
        start="2025-03-01T11:00:00.000Z",
        end="2025-03-01T11:04:00.000Z",
        duration_seconds=240.0,
        signal="SIGTERM",
        log_file="/var/log/pcsystemd/yak/yak-20250301-110000.log",
    )
    done = report(
        JobStatus("yak", "timeout", last_run=last, consecutive_failures=2),
        service("failed", result="timeout"),
    )
    assert done.result == "timeout" and done.failing
    assert done.last_run == NOW - timedelta(hours=1)
    text = "\n".join(status_lines(done, NOW))
    assert "Last run: timeout, SIGTERM, " in text and "took 4min 0s" in text
    assert "Log: /var/log/pcsystemd/yak/yak-20250301-110000.log" in text
    assert "Failures: 2 in a row" in text


def test_a_failure_only_systemd_saw_is_reported_as_systemds() -> None:
    # the unit failed before the shim ran (e.g. ExecStartPre=): there is no history record
    never = report(
        JobStatus("yak", "never run"),
        service("failed", result="exit-code"),
        timer_state=timer(last_trigger=NOW - timedelta(minutes=5)),
    )
    assert never.result == "exit-code (systemd)" and never.failing
    assert never.last_run == NOW - timedelta(minutes=5)
    assert "the shim left no record" in "\n".join(status_lines(never, NOW))


def test_a_tripped_breaker_says_how_to_reset() -> None:
    trip = Trip(at="2025-03-01T11:00:00.000Z", reason="3 consecutive failures")
    tripped = report(JobStatus("yak", "tripped", tripped=trip), service())
    assert tripped.failing
    assert "`pcsystemd reset yak` lets it run again" in "\n".join(status_lines(tripped, NOW))
    assert tripped.to_json()["tripped"] == "3 consecutive failures"


def test_json_has_exactly_the_documented_keys() -> None:
    idle = report(JobStatus("yak", "never run"), service())
    data = idle.to_json()
    assert set(data) == DOCUMENTED_KEYS
    assert data["next_run"] == "2025-03-02T05:00:00Z"
    assert (data["result"], data["last_run"], data["running_pid"]) == (None, None, None)
    documented = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    for key in DOCUMENTED_KEYS:
        assert f"`{key}`" in documented, key


def test_next_column_says_why_there_is_no_next_run() -> None:
    assert " 2025-03-0" in report(JobStatus("yak", "never run"), service()).next_text()
    stopped = report(JobStatus("yak", "never run"), service(), timer_state=timer("inactive"))
    assert (stopped.next_text(), stopped.next_run) == ("timer inactive", None)
    runtime = JobReport(Target("yak", job()), "runtime", None, service(), JobStatus("yak", "x"))
    assert runtime.next_text() == "disabled (runtime)"
    manual = JobReport(Target("yak", job(schedules=())), None, None, service(), JobStatus("y", "x"))
    assert (manual.next_text(), manual.schedule_text()) == ("manual", "manual")
