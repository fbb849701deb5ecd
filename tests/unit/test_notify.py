"""What pcsystemd notify decides to send, and what the notice says (pure functions)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import job_factory
import pytest

from pcsystemd import notify
from pcsystemd.history import History, RunRecord, Trip
from pcsystemd.model import (
    Failmail,
    GlobalConfig,
    Hardening,
    Job,
    Notify,
    RunResult,
)
from pcsystemd.notify import DeliveryError, Event
from pcsystemd.record import replace as replace_record
from pcsystemd.systemd import UnitState


def make_job(**changes: Any) -> Job:
    defaults: dict[str, Any] = {
        "name": "Nightly backup",
        "commands": (("/usr/local/bin/backup",),),
        "notify": Notify(mail=("ops@example.org",)),
        "hardening": Hardening.STRICT,
    }
    return job_factory.make_job("backup", **{**defaults, **changes})


def run(number: int, result: RunResult, **changes: Any) -> RunRecord:
    entry = RunRecord(
        run_id=f"run-{number}",
        result=result,
        start=f"2025-01-31T12:0{number}:00.000Z",
        end=f"2025-01-31T12:0{number}:05.250Z",
        duration_seconds=5.25,
        exit_status=None if result is RunResult.SUCCESS else 3,
        pid=1000 + number,
        log_file=f"/var/log/pcsystemd/backup/backup-2025013112{number:02d}00.log",
    )
    if result is RunResult.SUCCESS:
        entry = replace_record(entry, exit_status=0)
    return replace_record(entry, **changes)


def history(*runs: RunRecord, tripped: Trip | None = None) -> History:
    """The history the shim would have written: the streak as the breaker counts it."""
    streak = 0
    for record in runs:
        if record.result is RunResult.SUCCESS:
            streak = 0
        elif record.result.counts_towards_breaker():
            streak += 1
    return History("backup", runs=runs, consecutive_failures=streak, tripped=tripped)


def unit(result: str, exec_main_pid: int | None, **changes: Any) -> UnitState:
    state = UnitState(
        name="pcsystemd-backup.service",
        load_state="loaded",
        active_state="failed" if result != "success" else "inactive",
        sub_state="failed" if result != "success" else "dead",
        unit_file_state="generated",
        description="",
        fragment_path="/run/systemd/generator/pcsystemd-backup.service",
        need_daemon_reload=False,
        state_changed=None,
        active_entered=None,
        inactive_entered=None,
        invocation_id="ab" * 16,
        result=result,
        main_pid=None,
        exec_main_pid=exec_main_pid,
        exec_main_code=1,
        exec_main_status=3 if result != "success" else 0,
        exec_main_started=None,
        exec_main_exited=None,
    )
    return replace(state, **changes)


# ------------------------------------------------------------------------- failures


def test_a_failure_is_notified_at_the_default_threshold_of_one() -> None:
    past = history(run(1, RunResult.SUCCESS), run(2, RunResult.FAILED))
    decision = notify.decide(make_job(), past, unit("exit-code", 1002))
    assert decision.event is Event.FAILURE
    assert decision.record is not None and decision.record.run_id == "run-2"
    assert decision.consecutive_failures == 1


@pytest.mark.parametrize(("failures", "expected"), [(1, None), (2, None), (3, Event.FAILURE)])
def test_failures_below_the_threshold_stay_quiet(failures: int, expected: Event | None) -> None:
    runs = [run(number, RunResult.FAILED) for number in range(1, failures + 1)]
    job = make_job(failure_threshold_for_mail=3)
    decision = notify.decide(job, history(*runs), unit("exit-code", 1000 + failures))
    assert decision.event is expected
    assert decision.consecutive_failures == failures
    if expected is None:
        assert "notifying from 3 (failure_threshold_for_mail)" in decision.reason


def test_every_failure_after_the_threshold_is_notified() -> None:
    runs = [run(number, RunResult.TIMEOUT) for number in range(1, 6)]
    decision = notify.decide(
        make_job(failure_threshold_for_mail=3), history(*runs), unit("timeout", 1005)
    )
    assert (decision.event, decision.consecutive_failures) == (Event.FAILURE, 5)


@pytest.mark.parametrize("result", [RunResult.TRIPPED, RunResult.STOPPED])
def test_refused_and_stopped_runs_are_not_failures_of_the_job(result: RunResult) -> None:
    past = history(run(1, RunResult.FAILED), run(2, result))
    decision = notify.decide(make_job(), past, unit("exit-code", 1002))
    assert decision.event is None
    assert "not a failure of the job itself" in decision.reason


def test_the_run_that_trips_the_breaker_says_so() -> None:
    runs = (run(1, RunResult.FAILED), run(2, RunResult.FAILED))
    trip = Trip(at="2025-01-31T12:02:05.250Z", reason="2 consecutive failures", run_id="run-2")
    decision = notify.decide(make_job(), history(*runs, tripped=trip), unit("exit-code", 1002))
    assert decision.tripped == "2 consecutive failures"
    notice = notify.compose(make_job(), decision, None, "web1", "")
    assert notice.message is not None
    assert "circuit breaker tripped (2 consecutive failures)" in notice.message
    assert "`pcsystemd reset backup`" in notice.message


def test_an_older_trip_is_not_repeated() -> None:
    runs = (run(1, RunResult.FAILED), run(2, RunResult.FAILED))
    trip = Trip(at="2025-01-31T12:01:05.250Z", reason="exit status 3", run_id="run-1")
    decision = notify.decide(make_job(), history(*runs, tripped=trip), unit("exit-code", 1002))
    assert decision.event is Event.FAILURE and decision.tripped is None


def test_a_failure_pcsystemd_did_not_record_is_always_notified() -> None:
    # The shim was killed before it could write (its record still says running), or never
    # started: systemd knows the run failed even though the history does not.
    killed = run(2, RunResult.RUNNING, end=None, exit_status=None, duration_seconds=None)
    state = unit(
        "signal",
        1002,
        exec_main_code=2,
        exec_main_status=9,
        exec_main_started=datetime(2025, 1, 31, 12, 2, tzinfo=UTC),
        exec_main_exited=datetime(2025, 1, 31, 12, 2, 30, tzinfo=UTC),
    )
    job = make_job(failure_threshold_for_mail=5)
    decision = notify.decide(job, history(run(1, RunResult.SUCCESS), killed), state)
    assert decision.event is Event.FAILURE
    assert "pcsystemd recorded no result" in decision.reason
    notice = notify.compose(job, decision, state, "web1", "")
    assert (notice.result, notice.signal, notice.exit_status) == ("signal", "SIGKILL", None)
    assert notice.duration_seconds == 30.0
    assert notice.started == "2025-01-31T12:02:00+00:00"
    assert notice.subject() == "pcsystemd: backup signal (killed by SIGKILL) on web1"


def test_the_unit_main_pid_picks_the_run_even_when_a_newer_one_started() -> None:
    past = history(
        run(1, RunResult.FAILED),
        run(2, RunResult.RUNNING, end=None, exit_status=None),
    )
    decision = notify.decide(make_job(), past, unit("exit-code", 1001))
    assert decision.record is not None and decision.record.run_id == "run-1"
    assert decision.event is Event.FAILURE


def test_without_systemd_the_last_finished_run_counts() -> None:
    past = history(run(1, RunResult.FAILED), run(2, RunResult.RUNNING, end=None))
    decision = notify.decide(make_job(), past, None)
    assert decision.record is not None and decision.record.run_id == "run-1"
    assert decision.event is Event.FAILURE


def test_nothing_recorded_and_nothing_failed_sends_nothing() -> None:
    decision = notify.decide(make_job(), history(), None)
    assert (decision.event, decision.reason) == (None, "no recorded run to notify about")


# ------------------------------------------------------------------------- recovery


def test_recovery_after_a_notified_streak() -> None:
    runs = [run(1, RunResult.FAILED), run(2, RunResult.FAILED), run(3, RunResult.SUCCESS)]
    job = make_job(notify=Notify(webhook="http://hooks/x", on_recovery=True))
    job = replace(job, failure_threshold_for_mail=2)
    decision = notify.decide(job, history(*runs), unit("success", 1003))
    assert (decision.event, decision.consecutive_failures) == (Event.RECOVERY, 2)
    notice = notify.compose(job, decision, None, "web1", "")
    assert notice.subject() == "pcsystemd: backup recovered on web1"
    assert notice.body().startswith(
        'pcsystemd job backup ("Nightly backup") on web1 succeeded again after 2 consecutive'
    )


def test_no_recovery_notice_unless_asked_for() -> None:
    runs = [run(1, RunResult.FAILED), run(2, RunResult.SUCCESS)]
    decision = notify.decide(make_job(), history(*runs), unit("success", 1002))
    assert (decision.event, decision.reason) == (None, "run run-2 succeeded")


def test_no_recovery_notice_when_the_failures_were_never_notified() -> None:
    runs = [run(1, RunResult.FAILED), run(2, RunResult.SUCCESS)]
    job = make_job(notify=Notify(mail=("a@b",), on_recovery=True), failure_threshold_for_mail=2)
    decision = notify.decide(job, history(*runs), unit("success", 1002))
    assert decision.event is None and "no recovery notice" in decision.reason


def test_a_success_after_a_success_is_no_recovery() -> None:
    runs = [run(1, RunResult.FAILED), run(2, RunResult.SUCCESS), run(3, RunResult.SUCCESS)]
    job = make_job(notify=Notify(mail=("a@b",), on_recovery=True))
    decision = notify.decide(job, history(*runs), unit("success", 1003))
    assert decision.event is None


def test_skipped_runs_do_not_break_the_streak_before_a_recovery() -> None:
    runs = [
        run(1, RunResult.FAILED),
        run(2, RunResult.SKIPPED, exit_status=None),
        run(3, RunResult.FAILED),
        run(4, RunResult.SUCCESS),
    ]
    job = make_job(notify=Notify(mail=("a@b",), on_recovery=True), failure_threshold_for_mail=2)
    decision = notify.decide(job, history(*runs), unit("success", 1004))
    assert (decision.event, decision.consecutive_failures) == (Event.RECOVERY, 2)


# ------------------------------------------------------------------------- the notice


def failure_notice(log_tail: str = "line one\nline two") -> notify.Notice:
    past = history(run(1, RunResult.FAILED), run(2, RunResult.FAILED))
    job = make_job()
    decision = notify.decide(job, past, unit("exit-code", 1002))
    return notify.compose(job, decision, None, "web1.example.org", log_tail)


def test_subject_names_job_result_and_host() -> None:
    assert failure_notice().subject() == (
        "pcsystemd: backup failed (exit status 3) on web1.example.org"
    )


def test_subject_is_one_line_even_for_hostile_names() -> None:
    notice = replace(failure_notice(), job="a\nBcc: evil@example.org")
    assert "\n" not in notice.subject()


def test_body_has_status_duration_log_path_and_tail() -> None:
    body = failure_notice().body()
    assert body.startswith(
        'pcsystemd job backup ("Nightly backup") on web1.example.org: failed (exit status 3).\n'
    )
    assert "  exit status:          3\n" in body
    assert "  duration:             5.2 s\n" in body
    assert "  consecutive failures: 2\n" in body
    assert "  log file:             /var/log/pcsystemd/backup/backup-20250131120200.log\n" in body
    assert "  started:              2025-01-31T12:02:00.000Z\n" in body
    assert "\n  line one\n  line two\n" in body
    assert body.rstrip().endswith(
        "More: pcsystemd logs backup --run run-2; journalctl -u pcsystemd-backup.service"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "0.2 s"), (119.9, "119.9 s"), (185, "3m 05s"), (7322, "2h 02m 02s")],
)
def test_durations_read_well(seconds: float, text: str) -> None:
    body = replace(failure_notice(), duration_seconds=seconds).body()
    assert f"  duration:             {text}\n" in body


def test_webhook_payload_is_stable_json() -> None:
    payload = failure_notice().payload()
    assert json.loads(json.dumps(payload)) == {
        "event": "failure",
        "job": "backup",
        "name": "Nightly backup",
        "host": "web1.example.org",
        "run_id": "run-2",
        "result": "failed",
        "exit_status": 3,
        "signal": None,
        "started": "2025-01-31T12:02:00.000Z",
        "ended": "2025-01-31T12:02:05.250Z",
        "duration_seconds": 5.25,
        "consecutive_failures": 2,
        "log_file": "/var/log/pcsystemd/backup/backup-20250131120200.log",
        "log_tail": "line one\nline two",
        "message": None,
    }


def test_mail_headers() -> None:
    message = notify.build_mail(failure_notice(), "cron@web1", ["ops@example.org", "b@c"])
    assert message["From"] == "cron@web1"
    assert message["To"] == "ops@example.org, b@c"
    assert message["Subject"] == "pcsystemd: backup failed (exit status 3) on web1.example.org"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Pcsystemd-Run"] == "run-2"
    assert message["Message-ID"].endswith("@web1.example.org>")
    assert "line two" in message.get_content()


def test_sender_prefers_failmail_then_config_then_host() -> None:
    job = make_job()
    assert notify.mail_sender(job, GlobalConfig(), "web1") == "pcsystemd@web1"
    config = GlobalConfig(mail_from="cron@example.org")
    assert notify.mail_sender(job, config, "web1") == "cron@example.org"
    job = make_job(failmail=Failmail(from_address="backup@example.org"))
    assert notify.mail_sender(job, config, "web1") == "backup@example.org"


# ------------------------------------------------------------------------- retries


class Flaky:
    """A delivery that fails with the given errors first, then succeeds."""

    def __init__(self, *errors: DeliveryError) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "delivered"


def test_temporary_errors_are_retried_with_backoff() -> None:
    pauses: list[float] = []
    action = Flaky(DeliveryError("451", transient=True), DeliveryError("451", transient=True))
    assert notify.with_retries(action, sleep=pauses.append) == "delivered"
    assert (action.calls, pauses) == (3, [1.0, 3.0])


def test_permanent_errors_are_not_retried() -> None:
    pauses: list[float] = []
    action = Flaky(DeliveryError("550 no such user", transient=False))
    with pytest.raises(DeliveryError, match=r"^550 no such user$"):
        notify.with_retries(action, sleep=pauses.append)
    assert (action.calls, pauses) == (1, [])


def test_retries_are_bounded() -> None:
    pauses: list[float] = []
    action = Flaky(*[DeliveryError("timed out", transient=True) for _ in range(10)])
    with pytest.raises(DeliveryError, match=r"^timed out \(gave up after 3 attempts\)$"):
        notify.with_retries(action, sleep=pauses.append)
    assert (action.calls, pauses) == (3, [1.0, 3.0])


def test_a_broken_channel_does_not_stop_the_next() -> None:
    job = make_job(notify=Notify(mail=("bad address@example.org",), webhook="ftp://example.org"))
    problems = notify.deliver(failure_notice(), job, GlobalConfig())
    assert problems == [
        "mail to bad address@example.org: invalid mail address 'bad address@example.org'",
        "webhook ftp://example.org: webhook 'ftp://example.org' is not an http(s) URL",
    ]
