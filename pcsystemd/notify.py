"""Failure and recovery notices, sent by `pcsystemd notify JOB` in pcsystemd-notify@JOB.service.

A job that notifies has `OnFailure=pcsystemd-notify@<slug>.service`, and with
`notify.on_recovery` also `OnSuccess=` the same unit (systemd 249+), so this one command runs
after every failed run and, for those jobs, after every successful one. It decides from the
job's history what happened:

- the run failed (a result that counts towards the circuit breaker) and the failure streak has
  reached `failure_threshold_for_mail`: a failure notice (and one for every further failure of
  the streak);
- the run succeeded after a streak long enough to have been notified, and the job asked for
  it: a recovery notice;
- systemd says the run failed but pcsystemd recorded no result for it (the shim could not
  start, or was killed before it could write): a failure notice regardless of the threshold,
  since pcsystemd itself is in trouble;
- anything else (a run refused by the circuit breaker or stopped by a person, a streak below
  the threshold, a plain success): nothing, and the journal says why.

The run is matched to systemd's view of the service through the main PID (the shim's pid,
which the history records): a faster timer may already have started the next run.

Each channel (mail, webhook) is tried at most ATTEMPTS times, only temporary errors are
retried, every network operation has a timeout, and one failing channel never stops the other.
Delivery problems are logged to the journal and make the notify unit fail, visible in
`systemctl --failed`; the job's own unit is never affected.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pcsystemd import __version__, journal
from pcsystemd.errors import PcsystemdError, SystemdError
from pcsystemd.model import GlobalConfig, Job, RunResult
from pcsystemd.runlog import is_log_file_name

# Mail, HTTP and subprocess modules are imported where they are used: a notice is rare, and
# importing them all up front would triple the cost of importing this module.
if TYPE_CHECKING:
    from email.message import EmailMessage

    from pcsystemd.history import History, RunRecord
    from pcsystemd.systemd import UnitState

ATTEMPTS = 3
BACKOFF_SECONDS = (1.0, 3.0)  # pause before the second and third attempt
LOG_TAIL_LINES = 50
LOG_TAIL_BYTES = 32 * 1024
JOURNAL_TIMEOUT_SECONDS = 10
RESPONSE_LIMIT_BYTES = 64 * 1024


class Event(StrEnum):
    FAILURE = "failure"
    RECOVERY = "recovery"


class DeliveryError(PcsystemdError):
    """One attempt to deliver a notice failed; `transient` errors are worth another try."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class Decision:
    """Whether to notify about the job's latest run, and why (logged either way)."""

    event: Event | None
    reason: str
    record: RunRecord | None = None
    consecutive_failures: int = 0
    tripped: str | None = None  # this run tripped the circuit breaker, for this reason


@dataclass(frozen=True)
class Notice:
    """Everything a notice says; mail and webhook are two renderings of it."""

    event: Event
    job: str
    name: str
    host: str
    run_id: str | None
    result: str
    exit_status: int | None
    signal: str | None
    started: str | None
    ended: str | None
    duration_seconds: float | None
    consecutive_failures: int
    log_file: str | None
    log_tail: str
    message: str | None  # the shim's note about the run, or the circuit breaker's reason

    def outcome(self) -> str:
        """`failed (exit status 3)`, `timeout`, `recovered` — for subject lines."""
        if self.event is Event.RECOVERY:
            return "recovered"
        detail = None
        if self.signal:
            detail = f"killed by {self.signal}"
        elif self.exit_status is not None:
            detail = f"exit status {self.exit_status}"
        return f"{self.result} ({detail})" if detail else self.result

    def subject(self) -> str:
        return _one_line(f"pcsystemd: {self.job} {self.outcome()} on {self.host}")

    def body(self) -> str:
        if self.event is Event.RECOVERY:
            opening = (
                f'pcsystemd job {self.job} ("{self.name}") on {self.host} succeeded again '
                f"after {self.consecutive_failures} consecutive failure(s)."
            )
        else:
            opening = f'pcsystemd job {self.job} ("{self.name}") on {self.host}: {self.outcome()}.'
        fields = [
            ("result", self.result),
            ("exit status", None if self.exit_status is None else str(self.exit_status)),
            ("signal", self.signal),
            ("run", self.run_id),
            ("started", self.started),
            ("ended", self.ended),
            ("duration", _duration(self.duration_seconds)),
            ("consecutive failures", str(self.consecutive_failures)),
            ("note", self.message),
            ("log file", self.log_file),
        ]
        width = max(len(label) for label, _ in fields) + 2
        lines = [opening, ""]
        lines += [f"  {label + ':':<{width}}{value}" for label, value in fields if value]
        lines.append("")
        if self.log_tail:
            lines.append(f"The end of the run's output (at most {LOG_TAIL_LINES} lines):")
            lines.append("")
            lines.extend(f"  {line}" for line in self.log_tail.splitlines())
            lines.append("")
        more = f"journalctl -u pcsystemd-{self.job}.service"
        if self.run_id:
            more = f"pcsystemd logs {self.job} --run {self.run_id}; " + more
        lines.append(f"More: {more}")
        return "\n".join(lines) + "\n"

    def payload(self) -> dict[str, Any]:
        """The webhook's JSON object (stable: scripts parse it)."""
        return {
            "event": self.event.value,
            "job": self.job,
            "name": self.name,
            "host": self.host,
            "run_id": self.run_id,
            "result": self.result,
            "exit_status": self.exit_status,
            "signal": self.signal,
            "started": self.started,
            "ended": self.ended,
            "duration_seconds": self.duration_seconds,
            "consecutive_failures": self.consecutive_failures,
            "log_file": self.log_file,
            "log_tail": self.log_tail,
            "message": self.message,
        }


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {rest:02d}s" if hours else f"{minutes}m {rest:02d}s"


# ---------------------------------------------------------------------------- deciding


def threshold(job: Job) -> int:
    """Consecutive failures needed before a failure is notified (at least 1)."""
    return max(job.failure_threshold_for_mail, 1)


def run_of_unit(history: History, unit: UnitState | None) -> RunRecord | None:
    """The recorded run systemd's service state describes (None when none was recorded)."""
    if unit is not None and unit.exec_main_pid:
        for record in reversed(history.runs):
            if record.pid == unit.exec_main_pid:
                return record
        return None
    finished = [record for record in history.runs if record.result is not RunResult.RUNNING]
    return finished[-1] if finished else None


def streak_before(history: History, record: RunRecord) -> int:
    """Failures in a row just before `record`, counted as the circuit breaker counts them."""
    runs = list(history.runs)
    index = next(i for i in range(len(runs) - 1, -1, -1) if runs[i] is record)
    streak = 0
    for earlier in reversed(runs[:index]):
        if earlier.result is RunResult.SUCCESS:
            break
        if earlier.result.counts_towards_breaker():
            streak += 1
    return streak


def decide(job: Job, history: History, unit: UnitState | None) -> Decision:
    """What to send about the job's latest run, given its history and systemd's view."""
    record = run_of_unit(history, unit)
    systemd_failed = unit is not None and unit.result not in (None, "success")
    needed = threshold(job)
    if record is not None and record.result.counts_towards_breaker():
        streak = history.consecutive_failures
        if streak < needed:
            return Decision(
                None,
                f"run {record.run_id} {record.result}: {streak} consecutive failure(s), "
                f"notifying from {needed} (failure_threshold_for_mail)",
                record,
                streak,
            )
        trip = history.tripped
        tripped = trip.reason if trip is not None and trip.run_id == record.run_id else None
        return Decision(
            Event.FAILURE,
            f"run {record.run_id} {record.result}: {streak} consecutive failure(s)"
            + (f"; it tripped the circuit breaker ({tripped})" if tripped else ""),
            record,
            streak,
            tripped,
        )
    if record is not None and record.result.is_failure():
        return Decision(
            None,
            f"run {record.run_id} {record.result}: not a failure of the job itself "
            "(refused by the circuit breaker, or stopped on purpose)",
            record,
            history.consecutive_failures,
        )
    if systemd_failed and (record is None or record.result is not RunResult.SKIPPED):
        assert unit is not None
        return Decision(
            Event.FAILURE,
            f"systemd reports result {unit.result!r} for {unit.name} but pcsystemd recorded "
            "no result for that run",
            None,
            history.consecutive_failures + 1,
        )
    if record is not None and record.result is RunResult.SUCCESS:
        streak = streak_before(history, record)
        if not job.notify.on_recovery or streak == 0:
            return Decision(None, f"run {record.run_id} succeeded", record, streak)
        if streak < needed:
            return Decision(
                None,
                f"run {record.run_id} succeeded after {streak} failure(s), fewer than the "
                f"{needed} a failure notice needs: no recovery notice",
                record,
                streak,
            )
        return Decision(
            Event.RECOVERY,
            f"run {record.run_id} succeeded after {streak} consecutive failure(s)",
            record,
            streak,
        )
    if record is None:
        return Decision(None, "no recorded run to notify about")
    return Decision(None, f"run {record.run_id} {record.result}: nothing to notify", record)


def compose(
    job: Job, decision: Decision, unit: UnitState | None, host: str, log_tail: str
) -> Notice:
    """The notice for a decision that has an event."""
    assert decision.event is not None
    record = decision.record
    if record is not None:
        result, exit_status, signal_name = record.result.value, record.exit_status, record.signal
        started: str | None = record.start
        ended, duration = record.end, record.duration_seconds
        message: str | None = record.message
        if decision.tripped:
            trip = (
                f"the circuit breaker tripped ({decision.tripped}): no further runs until "
                f"`pcsystemd reset {job.slug}`"
            )
            message = f"{message}; {trip}" if message else trip
    else:
        assert unit is not None
        result = unit.result or "failed"
        exit_status = unit.exec_main_status if unit.exit_signal is None else None
        signal_name = unit.exit_signal
        started_at, ended_at = (
            unit.exec_main_started,
            unit.exec_main_exited or unit.inactive_entered,
        )
        started = started_at.isoformat() if started_at else None
        ended = ended_at.isoformat() if ended_at else None
        duration = (ended_at - started_at).total_seconds() if started_at and ended_at else None
        message = "pcsystemd recorded no result for this run; see the journal"
    return Notice(
        event=decision.event,
        job=job.slug,
        name=job.name,
        host=host,
        run_id=None if record is None else record.run_id,
        result=result,
        exit_status=exit_status,
        signal=signal_name,
        started=started,
        ended=ended,
        duration_seconds=duration,
        consecutive_failures=decision.consecutive_failures,
        log_file=None if record is None else record.log_file,
        log_tail=log_tail,
        message=message,
    )


# ---------------------------------------------------------------------------- log tail


def read_log_tail(
    path: str | Path, lines: int = LOG_TAIL_LINES, limit: int = LOG_TAIL_BYTES
) -> str:
    """The last `lines` lines of a run's log file (reading at most `limit` bytes).

    We run as root and the path may come from a history file the job user can write: no
    symlinks, no FIFOs or devices (which could hang us), regular files only.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(descriptor, "rb") as log:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        size = log.seek(0, os.SEEK_END)
        log.seek(max(0, size - limit))
        data = log.read(limit)
    if size > limit:
        data = data.partition(b"\n")[2]  # the first line was cut
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def journal_tail(unit: str, lines: int = LOG_TAIL_LINES) -> str:
    """The unit's last journal lines: when the run left no log file to quote."""
    import subprocess

    argv = ["journalctl", "--no-pager", "--quiet", "-o", "short-iso", "-n", str(lines), "-u", unit]
    try:
        result = subprocess.run(
            argv, capture_output=True, timeout=JOURNAL_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.decode("utf-8", errors="replace").rstrip("\n")


def log_tail_for(record: RunRecord | None, service: str, log_directory: Path | None = None) -> str:
    """The run's log file tail, else the service's journal.

    Only a log file of this job's own log directory, named as the shim names them, is read:
    the history that names it is writable by the job user, and we run as root.
    """
    if record is not None and record.log_file:
        path = Path(record.log_file)
        slug = service.removeprefix("pcsystemd-").removesuffix(".service")
        trusted = log_directory is None or (
            path.parent == log_directory / slug and is_log_file_name(slug, path.name)
        )
        if not trusted:
            log(journal.PRIORITY_WARNING, f"history names {path}, not a log file of {slug}")
            return journal_tail(service)
        try:
            return read_log_tail(path)
        except OSError as error:
            log(journal.PRIORITY_WARNING, f"cannot read {record.log_file}: {error.strerror}")
    return journal_tail(service)


# ---------------------------------------------------------------------------- delivery


def build_mail(notice: Notice, sender: str, recipients: Sequence[str]) -> EmailMessage:
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = notice.subject()
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=notice.host or "localhost")
    # RFC 3834: tells autoresponders and vacation scripts not to answer.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Pcsystemd-Job"] = notice.job
    message["X-Pcsystemd-Event"] = notice.event.value
    if notice.run_id:
        message["X-Pcsystemd-Run"] = notice.run_id
    message.set_content(notice.body())
    return message


def mail_sender(job: Job, config: GlobalConfig, host: str) -> str:
    return job.failmail.from_address or config.mail_from or f"pcsystemd@{host}"


def send_mail(
    message: EmailMessage, sender: str, recipients: Sequence[str], config: GlobalConfig
) -> str:
    """Hand the mail to the local sendmail if there is one, else to the SMTP server."""
    for address in (sender, *recipients):
        if not address or any(character.isspace() for character in address):
            raise DeliveryError(f"invalid mail address {address!r}", transient=False)
    if os.access(config.sendmail_path, os.X_OK):
        return _sendmail(message, sender, recipients, config)
    return _smtp(message, sender, recipients, config)


def _sendmail(
    message: EmailMessage, sender: str, recipients: Sequence[str], config: GlobalConfig
) -> str:
    import shlex
    import subprocess

    argv = [config.sendmail_path, "-oi", "-f", sender, "--", *recipients]
    try:
        result = subprocess.run(
            argv,
            input=message.as_bytes(),
            capture_output=True,
            timeout=config.smtp_timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise DeliveryError(
            f"{shlex.join(argv)} did not finish within {config.smtp_timeout:g}s", transient=True
        ) from error
    except OSError as error:
        raise DeliveryError(f"cannot run {argv[0]}: {error.strerror}", transient=False) from error
    if result.returncode != 0:
        output = (result.stderr or result.stdout).decode("utf-8", "replace").strip()
        # sysexits(3) EX_TEMPFAIL: the MTA itself says "try again later"
        raise DeliveryError(
            f"{shlex.join(argv)} exited with status {result.returncode}: {output[-500:]}",
            transient=result.returncode == 75,
        )
    return f"sendmail ({config.sendmail_path})"


def _smtp(
    message: EmailMessage, sender: str, recipients: Sequence[str], config: GlobalConfig
) -> str:
    import smtplib

    where = f"{config.smtp_host}:{config.smtp_port}"
    try:
        with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=config.smtp_timeout) as smtp:
            refused = smtp.send_message(message, from_addr=sender, to_addrs=list(recipients))
    except smtplib.SMTPRecipientsRefused as error:
        codes = [code for code, _ in error.recipients.values()]
        raise DeliveryError(
            f"SMTP server {where} refused every recipient: {_smtp_replies(error.recipients)}",
            transient=all(400 <= code < 500 for code in codes),
        ) from error
    except smtplib.SMTPResponseException as error:
        text = (
            error.smtp_error.decode("utf-8", "replace")
            if isinstance(error.smtp_error, bytes)
            else str(error.smtp_error)
        )
        raise DeliveryError(
            f"SMTP server {where} answered {error.smtp_code} {text}",
            transient=400 <= error.smtp_code < 500,
        ) from error
    except (smtplib.SMTPException, OSError) as error:
        raise DeliveryError(f"SMTP to {where} failed: {error}", transient=True) from error
    if refused:
        # Some recipients got it: retrying would send duplicates to them.
        log(journal.PRIORITY_ERR, f"SMTP server {where} refused {_smtp_replies(refused)}")
    return f"SMTP {where}"


def _smtp_replies(replies: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(
        f"{address} ({code} {reply.decode('utf-8', 'replace')})"
        for address, (code, reply) in replies.items()
    )


def post_webhook(url: str, payload: dict[str, Any], timeout: float) -> str:
    """POST the payload as JSON; any 2xx answer is success."""
    import json
    import urllib.error
    import urllib.request

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        # A webhook that redirects is misconfigured; following would turn the POST into a GET.
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    if not url.startswith(("http://", "https://")):
        raise DeliveryError(f"webhook {url!r} is not an http(s) URL", transient=False)
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": f"pcsystemd/{__version__}",
        },
    )
    opener = urllib.request.build_opener(NoRedirects)
    try:
        with opener.open(request, timeout=timeout) as response:
            response.read(RESPONSE_LIMIT_BYTES)
            status = response.status
    except urllib.error.HTTPError as error:
        raise DeliveryError(
            f"webhook {url} answered HTTP {error.code} {error.reason}",
            transient=error.code >= 500 or error.code in (408, 429),
        ) from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DeliveryError(f"webhook {url} failed: {reason}", transient=True) from error
    return f"HTTP {status}"


def with_retries(
    action: Callable[[], str],
    attempts: int = ATTEMPTS,
    pauses: Sequence[float] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Run a delivery, retrying temporary errors a bounded number of times."""
    pauses = BACKOFF_SECONDS if pauses is None else pauses
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except DeliveryError as error:
            if not error.transient or attempt == attempts:
                if attempt > 1:
                    raise DeliveryError(
                        f"{error} (gave up after {attempt} attempts)", transient=False
                    ) from error
                raise
            pause = pauses[min(attempt - 1, len(pauses) - 1)] if pauses else 0.0
            log(journal.PRIORITY_WARNING, f"{error}; trying again in {pause:g}s")
            sleep(pause)
    raise AssertionError("unreachable")


def deliver(notice: Notice, job: Job, config: GlobalConfig) -> list[str]:
    """Send the notice over every configured channel; returns the problems (empty: all sent)."""
    problems: list[str] = []
    channels: list[tuple[str, Callable[[], str]]] = []
    recipients = job.mail_recipients
    if recipients:
        sender = mail_sender(job, config, notice.host)
        message = build_mail(notice, sender, recipients)
        channels.append(
            (
                f"mail to {', '.join(recipients)}",
                lambda: send_mail(message, sender, recipients, config),
            )
        )
    if job.notify.webhook:
        url = job.notify.webhook
        payload = notice.payload()
        channels.append(
            (f"webhook {url}", lambda: post_webhook(url, payload, config.webhook_timeout))
        )
    for label, action in channels:
        try:
            via = with_retries(action)
        except DeliveryError as error:
            problems.append(f"{label}: {error}")
            log(journal.PRIORITY_ERR, f"{notice.event} notice for {job.slug} not sent: {error}")
        except Exception as error:  # a bug in one channel must not cost the other its notice
            problems.append(f"{label}: {error!r}")
            log(journal.PRIORITY_ERR, f"{notice.event} notice for {job.slug} failed: {error!r}")
        else:
            log(
                journal.PRIORITY_INFO,
                f"{notice.event} notice for {job.slug} sent: {label} ({via})",
            )
    return problems


# ---------------------------------------------------------------------------- entry


def log(priority: int, message: str) -> None:
    """One line to stderr; under systemd its `<N>` prefix sets the journal priority."""
    prefix = f"<{priority}>" if journal.attached_to_journal(2) else "pcsystemd notify: "
    print(prefix + message, file=sys.stderr, flush=True)


def host_name() -> str:
    import socket

    return socket.gethostname() or "localhost"


def service_state(service: str) -> UnitState | None:
    """systemd's view of the job's service, or None when systemd cannot be asked."""
    from pcsystemd import systemd

    if not systemd.is_systemd_running():
        return None
    try:
        return systemd.unit_state(service)
    except SystemdError as error:
        log(journal.PRIORITY_WARNING, f"cannot ask systemd about {service}: {error}")
        return None


def notify_job(config: GlobalConfig, slug: str, *, host: str | None = None) -> int:
    """Decide about and send the notice for the job's latest run; 1 when a channel failed."""
    from pcsystemd.history import read_history
    from pcsystemd.jobfile import load_job

    job = load_job(config, slug)
    if not job.notifies:
        log(journal.PRIORITY_INFO, f"job {slug} has no mail recipients and no webhook")
        return 0
    history = read_history(config, slug)
    if history.problem:
        log(journal.PRIORITY_WARNING, f"history of {slug}: {history.problem}")
    unit = service_state(job.service_name)
    decision = decide(job, history, unit)
    log(journal.PRIORITY_INFO, f"{slug}: {decision.reason}")
    if decision.event is None:
        return 0
    host = host or host_name()
    tail = log_tail_for(decision.record, job.service_name, config.log_directory)
    notice = compose(job, decision, unit, host, tail)
    return 1 if deliver(notice, job, config) else 0


def main(argv: Sequence[str]) -> int:
    """`pcsystemd notify [--config FILE] [--jobs DIR] JOB` (the notify unit's ExecStart=)."""
    import argparse

    from pcsystemd.config import load_global_config

    parser = argparse.ArgumentParser(
        prog="pcsystemd notify",
        description="Send the failure or recovery notice for a job's latest run.",
    )
    parser.add_argument("--config", metavar="FILE", default=None)
    parser.add_argument("--jobs", metavar="DIR", default=None)
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("job", metavar="JOB")
    args = parser.parse_args(list(argv))
    config = load_global_config(Path(args.config) if args.config else None)
    if args.jobs:
        config = replace(config, job_directory=Path(args.jobs).absolute())
    return notify_job(config, args.job)
