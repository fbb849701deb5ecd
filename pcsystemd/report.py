"""What the people's commands show: times, tables, one job's report, its status and history lines.

`JobReport` brings together what is known of a job: its job file, systemd's view of its units
(over D-Bus, through `pcsystemd.systemd`) and what the shim recorded (`pcsystemd.history`);
`status_lines` and `history_lines` turn it and a history into the lines people read, with the
precision `systemctl` uses. It is apart from `operate` so that the commands read as commands
and the formatting can be tested without them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pcsystemd import systemd
from pcsystemd.model import GlobalConfig

if TYPE_CHECKING:
    from pcsystemd.history import History, JobStatus
    from pcsystemd.operate import Target


# ------------------------------------------------------------------ time and tables


def parse_time(text: str | None) -> datetime | None:
    """A history timestamp (`2025-01-31T12:34:56.789Z`) as an aware datetime."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


_MINUTE, _HOUR, _DAY = 60, 3600, 86400
_WEEK, _MONTH, _YEAR = 7 * _DAY, 2_629_800, 31_557_600  # systemd's month and year


def _count(number: int, unit: str) -> str:
    return f"{number} {unit}{'' if number == 1 else 's'}"


def format_span(seconds: float) -> str:
    """`17h`, `1 day 2h`, `5min 29s`: the precision `systemctl list-timers` uses."""
    d = int(abs(seconds))
    if d >= _YEAR:
        return f"{_count(d // _YEAR, 'year')} {_count(d % _YEAR // _MONTH, 'month')}"
    if d >= _MONTH:
        return f"{_count(d // _MONTH, 'month')} {_count(d % _MONTH // _DAY, 'day')}"
    if d >= _WEEK:
        return f"{_count(d // _WEEK, 'week')} {_count(d % _WEEK // _DAY, 'day')}"
    if d >= 2 * _DAY:
        return _count(d // _DAY, "day")
    if d >= 25 * _HOUR:
        return f"1 day {(d - _DAY) // _HOUR}h"
    if d >= 6 * _HOUR:
        return f"{d // _HOUR}h"
    if d >= _HOUR:
        return f"{d // _HOUR}h {d % _HOUR // _MINUTE}min"
    if d >= 5 * _MINUTE:
        return f"{d // _MINUTE}min"
    if d >= _MINUTE:
        return f"{d // _MINUTE}min {d % _MINUTE}s"
    return f"{d}s"


def format_duration(seconds: float) -> str:
    """How long a run took: `0.25s`, `42.10s`, then as format_span."""
    return f"{seconds:.2f}s" if seconds < _MINUTE else format_span(seconds)


def relative(when: datetime | None, now: datetime) -> str:
    """`17h left` or `5min ago`, like `systemctl list-timers`."""
    if when is None:
        return "-"
    delta = (when - now).total_seconds()
    if abs(delta) < 1:
        return "now"
    return f"{format_span(delta)} left" if delta > 0 else f"{format_span(delta)} ago"


def absolute(when: datetime | None) -> str:
    return "-" if when is None else when.astimezone().strftime("%a %Y-%m-%d %H:%M:%S %Z")


def short_absolute(when: datetime | None) -> str:
    return "-" if when is None else when.astimezone().strftime("%a %Y-%m-%d %H:%M")


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Aligned columns, two spaces apart, without trailing blanks."""
    rows = [list(row) for row in rows]
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    return [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (list(headers), *rows)
    ]


# ------------------------------------------------------------------ what we know of a job


@dataclass(frozen=True)
class JobReport:
    """One job as `list` and `status` show it: job file, systemd's units, the shim's records."""

    target: Target
    disabled: str | None  # "job file" (disabled: true), "runtime" (pcsystemd disable), None
    timer: systemd.TimerState | None  # None for a job without a schedule
    service: systemd.UnitState
    status: JobStatus

    @property
    def next_run(self) -> datetime | None:
        if self.timer is None or self.timer.active_state != "active":
            return None
        return self.timer.next_elapse

    @property
    def running_pid(self) -> int | None:
        if self.status.status == "running" and self.status.pid is not None:
            return self.status.pid
        return self.service.main_pid if self.service.busy else None

    @property
    def last_run(self) -> datetime | None:
        if self.running_pid is not None:
            return self.service.exec_main_started or self.service.active_entered
        if self.status.last_run is not None:
            return parse_time(self.status.last_run.start)
        # the shim left no record (it never started, or its history is unreadable)
        if self.timer is not None and self.timer.last_trigger is not None:
            return self.timer.last_trigger
        return self.service.exec_main_started or (
            self.service.state_changed if self.service.failed else None
        )

    @property
    def result(self) -> str | None:
        """The shim's word for the last run (`success`, `timeout`, `skipped`...), or systemd's."""
        if self.running_pid is not None:
            return "running"
        if self.status.status != "never run":
            return self.status.status
        # the shim left no record: systemd's word is all there is
        if self.service.failed or (self.service.exec_main_started and self.service.result):
            return f"{self.service.result or 'failed'} (systemd)"
        return None

    @property
    def failing(self) -> bool:
        """A failure streak, a tripped breaker, or a failure only systemd saw; `reset` clears it."""
        status = self.status
        if status.tripped is not None or status.consecutive_failures:
            return True
        return (self.result or "").endswith("(systemd)") and self.service.failed

    def schedule_text(self) -> str:
        job = self.target.job
        if job is None:
            return "?"
        if not job.schedules:
            return "manual"
        return ", ".join(schedule.expression for schedule in job.schedules)

    def next_text(self) -> str:
        job = self.target.job
        if self.disabled == "runtime":
            return "disabled (runtime)"
        if self.disabled:
            return "disabled (job file)"
        if job is not None and not job.schedules:
            return "manual"
        if self.timer is None or not self.timer.known:
            return "not loaded"
        if self.timer.active_state != "active":
            return f"timer {self.timer.active_state}"
        return short_absolute(self.next_run)

    def to_json(self) -> dict[str, Any]:
        job = self.target.job
        last = self.status.last_run
        return {
            "slug": self.target.slug,
            "name": job.name if job else None,
            "valid": job is not None,
            "tags": list(job.tags) if job else [],
            "schedule": [s.expression for s in job.schedules] if job else [],
            "disabled": self.disabled,
            "timer": self.target.timer if self.timer is not None else None,
            "service": self.target.service,
            "timer_active": bool(self.timer and self.timer.active_state == "active"),
            "next_run": _iso(self.next_run),
            "last_run": _iso(self.last_run),
            "result": self.result,
            "running_pid": self.running_pid,
            "exit_status": last.exit_status if last else None,
            "signal": last.signal if last else None,
            "log_file": last.log_file if last else None,
            "consecutive_failures": self.status.consecutive_failures,
            "tripped": None if self.status.tripped is None else self.status.tripped.reason,
            "service_state": self.service.active_state,
        }


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def job_report(config: GlobalConfig, target: Target, switched_off: frozenset[str]) -> JobReport:
    from pcsystemd.history import job_status

    job = target.job
    disabled = None
    if job is not None and job.disabled:
        disabled = "job file"
    elif target.slug in switched_off:
        disabled = "runtime"
    has_timer = job is None or bool(job.schedules)
    return JobReport(
        target=target,
        disabled=disabled,
        timer=systemd.timer_state(target.timer) if has_timer else None,
        service=systemd.unit_state(target.service),
        status=job_status(config, target.slug),
    )


# ------------------------------------------------------------------ lines for people


def status_lines(report: JobReport, now: datetime) -> list[str]:
    """`systemctl status`-like lines for one job."""
    job = report.target.job
    service = report.service
    status = report.status
    lines = [f"{report.target.slug} - {job.name if job else '(job file invalid)'}"]
    fields: list[tuple[str, str]] = []
    if job is not None:
        fields.append(("Job file", str(job.source_path)))
        if job.tags:
            fields.append(("Tags", ", ".join(job.tags)))
        zone = f" ({job.timezone})" if job.timezone else ""
        fields.append(("Schedule", report.schedule_text() + zone))
        fields.append(("User", job.user))
    if report.timer is not None:
        timer = report.timer
        enabled = f", {timer.unit_file_state}" if timer.unit_file_state else ""
        text = f"{report.target.timer}: {timer.active_state}{enabled}"
        if report.disabled:
            text += f"; disabled ({report.disabled})"
        elif report.next_run is not None:
            text += f"; next {absolute(report.next_run)} ({relative(report.next_run, now)})"
        fields.append(("Timer", text))
    fields.append(
        ("Service", f"{report.target.service}: {service.active_state} ({service.sub_state})")
    )
    fields.append(("Status", str(status)))
    if report.running_pid is not None:
        since = report.last_run
        fields.append(
            (
                "Running",
                f"pid {report.running_pid}, since {absolute(since)} ({relative(since, now)})",
            )
        )
    last = status.last_run
    if last is not None:
        started = parse_time(last.start)
        how = last.result.value
        if last.signal:
            how += f", {last.signal}"
        elif last.exit_status is not None:
            how += f", exit status {last.exit_status}"
        took = ""
        if last.duration_seconds is not None:
            took = f", took {format_duration(last.duration_seconds)}"
        fields.append(("Last run", f"{how}, {absolute(started)} ({relative(started, now)}){took}"))
        if last.message:
            fields.append(("Message", last.message))
        if last.log_file:
            fields.append(("Log", last.log_file))
    elif report.result and report.running_pid is None:
        hint = f"the shim left no record; `pcsystemd logs {report.target.slug}` shows the journal"
        fields.append(("Last run", f"{report.result}, {absolute(report.last_run)} ({hint})"))
    failures = f"{status.consecutive_failures} in a row"
    if status.tripped is not None:
        failures += (
            f"; circuit breaker tripped {status.tripped.at}: {status.tripped.reason}"
            f" (`pcsystemd reset {report.target.slug}` lets it run again)"
        )
    fields.append(("Failures", failures))
    if status.problem:
        fields.append(("History", status.problem))
    width = max(len(label) for label, _ in fields)
    lines += [f"  {label.rjust(width)}: {value}" for label, value in fields]
    return lines


def runs_newest_first(history: History) -> list[Any]:
    """A job's recorded runs, the newest first (as `history` lists them and `logs --run` counts)."""
    return list(reversed(history.runs))


def history_lines(history: History, now: datetime, count: int) -> list[str]:
    header = f"{history.slug}: {len(history.runs)} recorded run(s), "
    header += f"{history.consecutive_failures} consecutive failure(s)"
    if history.tripped is not None:
        header += f"; circuit breaker tripped: {history.tripped.reason}"
    lines = [header]
    if history.problem:
        lines.append(f"  warning: {history.problem}")
    runs = runs_newest_first(history)[: count if count > 0 else None]
    if not runs:
        return lines
    rows = []
    for number, run in enumerate(runs, 1):
        started = parse_time(run.start)
        exit_text = run.signal or ("" if run.exit_status is None else str(run.exit_status))
        took = "" if run.duration_seconds is None else format_duration(run.duration_seconds)
        rows.append(
            (
                str(number),
                run.run_id,
                short_absolute(started),
                relative(started, now),
                took or "-",
                run.result.value + (" (slow start)" if run.slow_start else ""),
                exit_text or "-",
                Path(run.log_file).name if run.log_file else "-",
            )
        )
    headers = ("#", "RUN", "STARTED", "PASSED", "TOOK", "RESULT", "EXIT", "LOG")
    return lines + table(headers, rows)
