"""Notices really delivered: SMTP to a local sink, a local sendmail, a local webhook server.

The sinks (notify_sinks.py, also used inside the systemd sandbox) listen on 127.0.0.1 and
write what they receive to files.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import job_factory
import pytest
from notify_sinks import HttpSink, Running, SmtpSink, read_records

from pcsystemd import notify
from pcsystemd.history import RunRecord
from pcsystemd.model import (
    GlobalConfig,
    Hardening,
    Job,
    Notify,
    RunResult,
)
from pcsystemd.notify import DeliveryError, Event, Notice

NOTICE = Notice(
    event=Event.FAILURE,
    job="backup",
    name="Nightly backup",
    host="web1",
    run_id="backup-20250131-120200",
    result="failed",
    exit_status=3,
    signal=None,
    started="2025-01-31T12:02:00.000Z",
    ended="2025-01-31T12:02:05.250Z",
    duration_seconds=5.25,
    consecutive_failures=1,
    log_file="/var/log/pcsystemd/backup/backup-20250131-120200.log",
    log_tail="2025-01-31T12:02:05.001Z [stderr] disk full: sorry — ünïcödé",
    message=None,
)


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notify, "BACKOFF_SECONDS", (0.05, 0.05))


@pytest.fixture
def smtp_sink(tmp_path: Path) -> Iterator[SmtpSink]:
    with Running(SmtpSink(0, tmp_path / "smtp")) as server:
        assert isinstance(server, SmtpSink)
        yield server


@pytest.fixture
def http_sink(tmp_path: Path) -> Iterator[HttpSink]:
    with Running(HttpSink(0, tmp_path / "http")) as server:
        assert isinstance(server, HttpSink)
        yield server


def smtp_config(sink: SmtpSink, **changes: Any) -> GlobalConfig:
    # No sendmail here, so the SMTP path is taken even on a host with an MTA.
    return GlobalConfig(
        sendmail_path="/nonexistent/sendmail",
        smtp_host="127.0.0.1",
        smtp_port=sink.port,
        smtp_timeout=5,
        **changes,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_job(**changes: Any) -> Job:
    """A job whose notification settings the tests choose (the rest is irrelevant here)."""
    return job_factory.make_job(
        "backup", name="Nightly backup", hardening=Hardening.STRICT, **changes
    )


# ------------------------------------------------------------------------------ mail


def test_mail_over_smtp(smtp_sink: SmtpSink) -> None:
    message = notify.build_mail(NOTICE, "pcsystemd@web1", ["ops@example.org", "dev@example.org"])
    via = notify.send_mail(
        message, "pcsystemd@web1", ["ops@example.org", "dev@example.org"], smtp_config(smtp_sink)
    )
    assert via == f"SMTP 127.0.0.1:{smtp_sink.port}"
    [mail] = read_records(smtp_sink.mails.directory, "mail")
    assert mail["sender"] == "pcsystemd@web1"
    assert mail["recipients"] == ["ops@example.org", "dev@example.org"]
    parsed = email.message_from_string(mail["data"], policy=email.policy.default)
    assert parsed["Subject"] == "pcsystemd: backup failed (exit status 3) on web1"
    body = parsed.get_content()
    assert "disk full: sorry — ünïcödé" in body
    assert "/var/log/pcsystemd/backup/backup-20250131-120200.log" in body


def test_a_temporary_smtp_error_is_retried(tmp_path: Path) -> None:
    with Running(SmtpSink(0, tmp_path, ["451 4.3.0 try again later"])) as sink:
        assert isinstance(sink, SmtpSink)
        message = notify.build_mail(NOTICE, "a@web1", ["ops@example.org"])
        notify.with_retries(
            lambda: notify.send_mail(message, "a@web1", ["ops@example.org"], smtp_config(sink))
        )
    assert [a["reply"][:3] for a in read_records(tmp_path, "attempt")] == ["451", "250"]
    assert len(read_records(tmp_path, "mail")) == 1


def test_a_permanent_smtp_error_is_not_retried(tmp_path: Path) -> None:
    with Running(SmtpSink(0, tmp_path, ["550 5.7.1 relaying denied"] * 3)) as sink:
        assert isinstance(sink, SmtpSink)
        message = notify.build_mail(NOTICE, "a@web1", ["ops@example.org"])
        with pytest.raises(DeliveryError, match=re.escape("answered 550 5.7.1 relaying denied")):
            notify.with_retries(
                lambda: notify.send_mail(message, "a@web1", ["ops@example.org"], smtp_config(sink))
            )
    assert len(read_records(tmp_path, "attempt")) == 1


def test_no_smtp_server_is_a_bounded_temporary_error() -> None:
    config = GlobalConfig(
        sendmail_path="/nonexistent", smtp_host="127.0.0.1", smtp_port=free_port(), smtp_timeout=2
    )
    message = notify.build_mail(NOTICE, "a@web1", ["ops@example.org"])
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="gave up after 3 attempts"):
        notify.with_retries(lambda: notify.send_mail(message, "a@web1", ["o@e"], config))
    assert time.monotonic() - started < 10


FAKE_SENDMAIL = """#!/bin/sh
# records its arguments and the message; fails with the status in $DIR/status if present
printf '%s\\n' "$@" > "{directory}/argv"
cat > "{directory}/message"
[ -f "{directory}/status" ] && exit "$(cat "{directory}/status")"
exit 0
"""


def fake_sendmail(directory: Path) -> Path:
    path = directory / "sendmail"
    path.write_text(FAKE_SENDMAIL.format(directory=directory))
    path.chmod(0o755)
    return path


def test_mail_through_a_local_sendmail(tmp_path: Path) -> None:
    sendmail = fake_sendmail(tmp_path)
    config = GlobalConfig(sendmail_path=str(sendmail), smtp_port=free_port())
    message = notify.build_mail(NOTICE, "pcsystemd@web1", ["ops@example.org"])
    assert notify.send_mail(message, "pcsystemd@web1", ["ops@example.org"], config) == (
        f"sendmail ({sendmail})"
    )
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv == ["-oi", "-f", "pcsystemd@web1", "--", "ops@example.org"]
    parsed = email.message_from_bytes(
        (tmp_path / "message").read_bytes(), policy=email.policy.default
    )
    assert parsed["To"] == "ops@example.org"
    assert "ünïcödé" in parsed.get_content()


@pytest.mark.parametrize(("status", "transient"), [(1, False), (75, True)])
def test_a_failing_sendmail_is_reported(tmp_path: Path, status: int, transient: bool) -> None:
    config = GlobalConfig(sendmail_path=str(fake_sendmail(tmp_path)))
    (tmp_path / "status").write_text(str(status))
    message = notify.build_mail(NOTICE, "a@web1", ["ops@example.org"])
    with pytest.raises(DeliveryError, match=f"exited with status {status}") as raised:
        notify.send_mail(message, "a@web1", ["ops@example.org"], config)
    assert raised.value.transient is transient


# ------------------------------------------------------------------------------ webhook


def test_webhook_posts_the_payload_as_json(http_sink: HttpSink) -> None:
    url = f"http://127.0.0.1:{http_sink.port}/hooks/pcsystemd"
    assert notify.post_webhook(url, NOTICE.payload(), 5) == "HTTP 200"
    [request] = read_records(http_sink.requests.directory, "request")
    assert request["path"] == "/hooks/pcsystemd"
    assert request["headers"]["content-type"] == "application/json"
    assert request["headers"]["user-agent"].startswith("pcsystemd/")
    assert json.loads(request["body"]) == NOTICE.payload()


def test_webhook_server_errors_are_retried(tmp_path: Path) -> None:
    with Running(HttpSink(0, tmp_path, [500, 503])) as sink:
        assert isinstance(sink, HttpSink)
        url = f"http://127.0.0.1:{sink.port}/"
        assert notify.with_retries(lambda: notify.post_webhook(url, {}, 5)) == "HTTP 200"
    assert [r["status"] for r in read_records(tmp_path, "request")] == [500, 503, 200]


@pytest.mark.parametrize("status", [301, 404])
def test_webhook_client_errors_and_redirects_are_final(tmp_path: Path, status: int) -> None:
    with Running(HttpSink(0, tmp_path, [status] * 3)) as sink:
        assert isinstance(sink, HttpSink)
        url = f"http://127.0.0.1:{sink.port}/"
        with pytest.raises(DeliveryError, match=f"answered HTTP {status}"):
            notify.with_retries(lambda: notify.post_webhook(url, {}, 5))
    assert len(read_records(tmp_path, "request")) == 1


def test_a_hanging_webhook_times_out_and_gives_up(tmp_path: Path) -> None:
    with Running(HttpSink(0, tmp_path, delay=3)) as sink:
        assert isinstance(sink, HttpSink)
        url = f"http://127.0.0.1:{sink.port}/"
        started = time.monotonic()
        with pytest.raises(DeliveryError, match="gave up after 3 attempts"):
            notify.with_retries(lambda: notify.post_webhook(url, {}, 0.5))
        elapsed = time.monotonic() - started
    assert 1.5 <= elapsed < 3  # three 0.5 s timeouts and two short pauses, nothing more
    assert len(read_records(tmp_path, "request")) == 3


# ------------------------------------------------------------------------------ channels


def test_a_dead_webhook_does_not_stop_the_mail(smtp_sink: SmtpSink) -> None:
    dead = f"http://127.0.0.1:{free_port()}/"
    job = make_job(notify=Notify(mail=("ops@example.org",), webhook=dead))
    problems = notify.deliver(NOTICE, job, smtp_config(smtp_sink, webhook_timeout=1))
    assert len(problems) == 1 and problems[0].startswith(f"webhook {dead}: webhook {dead} failed")
    assert "gave up after 3 attempts" in problems[0]
    [mail] = read_records(smtp_sink.mails.directory, "mail")
    assert mail["recipients"] == ["ops@example.org"]


def test_both_channels_deliver(smtp_sink: SmtpSink, http_sink: HttpSink) -> None:
    url = f"http://127.0.0.1:{http_sink.port}/x"
    job = make_job(notify=Notify(mail=("ops@example.org",), webhook=url))
    assert notify.deliver(NOTICE, job, smtp_config(smtp_sink)) == []
    assert len(read_records(smtp_sink.mails.directory, "mail")) == 1
    assert len(read_records(http_sink.requests.directory, "request")) == 1


# ------------------------------------------------------------------------------ log tail


def test_log_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text("".join(f"line {number}\n" for number in range(1, 201)))
    assert notify.read_log_tail(log, lines=3) == "line 198\nline 199\nline 200"


def test_log_tail_reads_a_bounded_amount_and_drops_the_cut_line(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_bytes(b"x" * 100_000 + b"\nshort\n\xff\xfe binary\n")
    tail = notify.read_log_tail(log, lines=50, limit=1000)
    assert tail == "short\n\ufffd\ufffd binary"


def test_log_tail_for_a_missing_file_falls_back_to_the_journal(tmp_path: Path) -> None:
    record = RunRecord(
        run_id="r", result=RunResult.FAILED, start="x", log_file=str(tmp_path / "gone.log")
    )
    # The unit never ran, so the journal has nothing either: an empty tail, no exception.
    assert notify.log_tail_for(record, "pcsystemd-no-such-unit-for-tests.service") == ""


def test_importing_notify_and_the_adapter_stays_cheap() -> None:
    # pystemd, mail and HTTP modules load only when a notice is actually sent.
    code = (
        "import sys, pcsystemd.notify, pcsystemd.systemd; "
        "heavy = {'pystemd', 'smtplib', 'urllib.request', 'email.message'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "[]"


# ------------------------------------------------------------------------------ end to end

JOB_FILE = """\
name: Nightly backup
command: /usr/local/bin/backup
failure_threshold_for_mail: 2
failmail:
  from_address: backup@example.org
notify:
  mail: ops@example.org
  webhook: {webhook}
  on_recovery: true
"""


def record_run(config: GlobalConfig, number: int, result: RunResult, log_text: str) -> None:
    """What the shim leaves behind after a run: its log file and its history record."""
    from pcsystemd.history import finish_run, history_directory, update_history
    from pcsystemd.jobfile import load_job

    job = load_job(config, "backup")
    log_file = config.log_directory / "backup" / f"backup-20250131-12000{number}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text(log_text)
    record = RunRecord(
        run_id=f"backup-20250131-12000{number}",
        result=result,
        start=f"2025-01-31T12:00:0{number}.000Z",
        end=f"2025-01-31T12:00:0{number}.500Z",
        duration_seconds=0.5,
        exit_status=0 if result is RunResult.SUCCESS else 3,
        pid=4000 + number,
        log_file=str(log_file),
    )
    directory = history_directory(config, "backup")
    directory.mkdir(parents=True, exist_ok=True)
    update_history(directory, "backup", lambda history: finish_run(history, record, job, 100))


def test_notify_job_end_to_end(tmp_path: Path, smtp_sink: SmtpSink, http_sink: HttpSink) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir(mode=0o755)
    url = f"http://127.0.0.1:{http_sink.port}/hook"
    (jobs / "backup.yaml").write_text(JOB_FILE.format(webhook=url))
    config = smtp_config(
        smtp_sink,
        job_directory=jobs,
        state_directory=tmp_path / "state",
        log_directory=tmp_path / "log",
    )

    record_run(config, 1, RunResult.FAILED, "first failure\n")
    assert notify.notify_job(config, "backup", host="web1") == 0
    assert read_records(smtp_sink.mails.directory, "mail") == []  # 1 < threshold 2

    record_run(config, 2, RunResult.FAILED, "line a\nsecond failure\n")
    assert notify.notify_job(config, "backup", host="web1") == 0
    [mail] = read_records(smtp_sink.mails.directory, "mail")
    assert mail["sender"] == "backup@example.org"
    parsed = email.message_from_string(mail["data"], policy=email.policy.default)
    assert parsed["Subject"] == "pcsystemd: backup failed (exit status 3) on web1"
    assert "second failure" in parsed.get_content()
    [request] = read_records(http_sink.requests.directory, "request")
    payload = json.loads(request["body"])
    assert (payload["run_id"], payload["consecutive_failures"]) == ("backup-20250131-120002", 2)
    assert payload["log_tail"] == "line a\nsecond failure"

    record_run(config, 3, RunResult.SUCCESS, "fine\n")
    assert notify.notify_job(config, "backup", host="web1") == 0
    mails = read_records(smtp_sink.mails.directory, "mail")
    assert len(mails) == 2 and "Subject: pcsystemd: backup recovered on web1" in mails[1]["data"]
    recovery = json.loads(read_records(http_sink.requests.directory, "request")[1]["body"])
    assert (recovery["event"], recovery["consecutive_failures"]) == ("recovery", 2)


def test_notify_job_reports_a_failed_channel(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir(mode=0o755)
    (jobs / "backup.yaml").write_text(JOB_FILE.format(webhook=f"http://127.0.0.1:{free_port()}/"))
    config = smtp_config(
        smtp_sink,
        job_directory=jobs,
        state_directory=tmp_path / "state",
        log_directory=tmp_path / "log",
        webhook_timeout=1,
    )
    record_run(config, 1, RunResult.FAILED, "x\n")
    record_run(config, 2, RunResult.FAILED, "y\n")
    assert notify.notify_job(config, "backup", host="web1") == 1
    assert len(read_records(smtp_sink.mails.directory, "mail")) == 1


def test_log_tail_reads_only_a_log_file_of_the_jobs_own_directory(tmp_path: Path) -> None:
    # The history is the job user's to write; the notifier runs as root.
    secret = tmp_path / "secret"
    secret.write_text("root's secret\n")
    logs = tmp_path / "logs"
    (logs / "backup").mkdir(parents=True)
    own = logs / "backup" / "backup-20261123-120000.log"
    own.write_text("the run's own line\n")
    service = "pcsystemd-no-such-unit-for-tests.service"
    for path in (secret, logs / "backup" / "notes.txt"):
        record = RunRecord(run_id="r", result=RunResult.FAILED, start="x", log_file=str(path))
        assert "secret" not in notify.log_tail_for(record, service, logs)
    record = RunRecord(run_id="r", result=RunResult.FAILED, start="x", log_file=str(own))
    assert notify.log_tail_for(record, "pcsystemd-backup.service", logs) == "the run's own line"


def test_log_tail_refuses_symlinks_and_fifos_without_hanging(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("followed\n")
    link = tmp_path / "backup-20261123-120000.log"
    link.symlink_to(target)
    fifo = tmp_path / "backup-20261123-120001.log"
    os.mkfifo(fifo)
    for path in (link, fifo):
        with pytest.raises(OSError):
            notify.read_log_tail(path)
