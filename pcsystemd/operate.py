"""The commands for people: list, status, start, stop, logs, history, enable, disable, reset.

Everything systemd knows comes over D-Bus through the adapter (`pcsystemd.systemd`); what the
shim recorded comes from the history (`pcsystemd.history`) and the per-run log files. Jobs are
named by slug (also accepted: the unit name or the job file's path) or selected with `--tag`.
Starting and stopping always go through the job's unit, so a run by hand has the same user,
lock, sandbox and log as a scheduled one. What the commands print (times, tables, a job's
report) is made in `pcsystemd.report`.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pcsystemd import systemd
from pcsystemd.cli import EXIT_OK, load_config, print_diagnostics
from pcsystemd.errors import ConfigError, Diagnostic, SystemdError, UsageError
from pcsystemd.model import UNIT_PREFIX, GlobalConfig, Job, Mode, RunResult, unit_base_name
from pcsystemd.report import (
    history_lines,
    job_report,
    parse_time,
    relative,
    runs_newest_first,
    short_absolute,
    status_lines,
    table,
)

if TYPE_CHECKING:
    from pcsystemd.cli import Handler

    AddCommand = Callable[[str, Handler, str], argparse.ArgumentParser]

# `start --wait`: the run failed (or was refused); `status`: some job is failed or tripped.
EXIT_RUN_FAILED = 1
JSON_FORMAT = 1  # bumped only when a key changes meaning or disappears; new keys may appear


# ------------------------------------------------------------------ selecting jobs


@dataclass(frozen=True)
class Target:
    """A job a command acts on; `job` is None when its file is invalid (units still usable)."""

    slug: str
    job: Job | None

    @property
    def service(self) -> str:
        return f"{unit_base_name(self.slug)}.service"

    @property
    def timer(self) -> str:
        return f"{unit_base_name(self.slug)}.timer"


def require_root(action: str) -> None:
    if os.geteuid() != 0:
        raise UsageError(
            f"{action} needs root: it changes systemd units and root-owned state (try sudo)"
        )


def known_slugs(config: GlobalConfig) -> list[str]:
    """The job names in the job directory, valid or not (editor leftovers are no jobs)."""
    from pcsystemd.jobfile import JOB_SUFFIX, find_job_files

    try:
        paths, _ = find_job_files(config.job_directory)
    except FileNotFoundError:
        return []
    except OSError as error:
        raise UsageError(
            f"cannot read the job directory {config.job_directory}: {error.strerror}"
        ) from error
    return sorted(path.name.removesuffix(JOB_SUFFIX) for path in paths)


def slug_candidates(name: str) -> list[str]:
    """What a person may have meant by `name`: the slug itself, a unit name, a job file."""
    candidates = [name]
    if "/" in name or name.endswith(".yaml"):
        candidates.append(Path(name).name.removesuffix(".yaml"))
    for suffix in (".service", ".timer"):
        name = name.removesuffix(suffix)
    if name.startswith(UNIT_PREFIX):
        candidates.append(name.removeprefix(UNIT_PREFIX))
    return candidates


def resolve_slug(name: str, slugs: Sequence[str], job_directory: Path) -> str:
    """The slug `name` refers to; a UsageError with close matches when there is none."""
    for candidate in slug_candidates(name):
        if candidate in slugs:
            return candidate
    close = difflib.get_close_matches(slug_candidates(name)[-1], slugs, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(slug) for slug in close)}?" if close else ""
    if not slugs:
        hint = f" (there are no job files in {job_directory})"
    raise UsageError(f"unknown job {name!r}: no {job_directory / (name + '.yaml')}{hint}")


def _load_target(config: GlobalConfig, slug: str, need_job: bool) -> Target:
    from pcsystemd.jobfile import load_job

    try:
        return Target(slug, load_job(config, slug))
    except ConfigError as error:
        if need_job:
            raise
        print_diagnostics(error.diagnostics)
        print(f"pcsystemd: warning: {slug}: job file invalid; using its units", file=sys.stderr)
        return Target(slug, None)


def select_targets(
    config: GlobalConfig, names: Sequence[str], tags: Sequence[str], *, need_job: bool
) -> list[Target]:
    """The jobs named on the command line plus every job carrying one of `tags`."""
    if not names and not tags:
        raise UsageError("name at least one job, or select jobs with --tag TAG")
    chosen: dict[str, Target] = {}
    slugs = known_slugs(config)
    for name in names:
        slug = resolve_slug(name, slugs, config.job_directory)
        if slug not in chosen:
            chosen[slug] = _load_target(config, slug, need_job)
    if tags:
        from pcsystemd.jobfile import load_jobs

        jobs, diagnostics = load_jobs(config)
        _warn_invalid(diagnostics)
        for tag in tags:
            tagged = [job for job in jobs if tag in job.tags]
            if not tagged:
                in_use = sorted({t for job in jobs for t in job.tags})
                close = difflib.get_close_matches(tag, in_use, n=3, cutoff=0.6)
                hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
                raise UsageError(f"no valid job is tagged {tag!r}{hint}")
            for job in tagged:
                chosen.setdefault(job.slug, Target(job.slug, job))
    return [chosen[slug] for slug in sorted(chosen)]


def _warn_invalid(diagnostics: Sequence[Diagnostic]) -> None:
    invalid = {d.path for d in diagnostics if d.severity == "error"}
    if invalid:
        print(
            f"pcsystemd: warning: {len(invalid)} invalid job file(s) left out "
            "(`pcsystemd validate` shows why)",
            file=sys.stderr,
        )


# ------------------------------------------------------------------ list and status


def command_list(args: argparse.Namespace) -> int:
    from pcsystemd.jobfile import load_jobs
    from pcsystemd.switches import disabled_at_runtime

    config = load_config(args)
    jobs, diagnostics = load_jobs(config)
    _warn_invalid(diagnostics)
    if args.tag:
        jobs = [job for job in jobs if set(job.tags) & set(args.tag)]
    switched_off = disabled_at_runtime(config)
    reports = [job_report(config, Target(job.slug, job), switched_off) for job in jobs]
    if args.json:
        print(json.dumps({"format": JSON_FORMAT, "jobs": [r.to_json() for r in reports]}, indent=2))
        return EXIT_OK
    if not reports:
        tagged = f" tagged {', '.join(args.tag)}" if args.tag else ""
        print(f"no jobs{tagged} in {config.job_directory}")
        return EXIT_OK
    now = datetime.now(UTC)
    rows = [
        (
            report.target.slug,
            report.next_text(),
            relative(report.next_run, now) if report.next_run else "-",
            short_absolute(report.last_run),
            relative(report.last_run, now) if report.last_run else "-",
            report.result or "-",
            str(report.running_pid or "-"),
            ",".join(report.target.job.tags) if report.target.job else "",
            report.schedule_text(),
            report.target.job.name if report.target.job else "",
        )
        for report in reports
    ]
    headers = ("JOB", "NEXT", "LEFT", "LAST", "PASSED", "RESULT", "PID", "TAGS", "SCHEDULE", "NAME")
    for line in table(headers, rows):
        print(line)
    print(f"\n{len(reports)} job(s) listed.")
    return EXIT_OK


def command_status(args: argparse.Namespace) -> int:
    from pcsystemd.switches import disabled_at_runtime

    config = load_config(args)
    targets = select_targets(config, args.jobs_named, args.tag, need_job=False)
    switched_off = disabled_at_runtime(config)
    reports = [job_report(config, target, switched_off) for target in targets]
    if args.json:
        print(json.dumps({"format": JSON_FORMAT, "jobs": [r.to_json() for r in reports]}, indent=2))
    else:
        for index, report in enumerate(reports):
            if index:
                print()
            for line in status_lines(report, datetime.now(UTC)):
                print(line)
    return EXIT_RUN_FAILED if any(report.failing for report in reports) else EXIT_OK


# ------------------------------------------------------------------ start and stop


def command_start(args: argparse.Namespace) -> int:
    config = load_config(args)
    require_root("pcsystemd start")
    targets = select_targets(config, args.jobs_named, args.tag, need_job=args.slow_start)
    if args.slow_start:
        for target in targets:
            assert target.job is not None
            if not target.job.slow_start_commands:
                raise UsageError(f"{target.slug} has no slow_start_command")
    failed = 0
    for target in targets:
        failed += not start_one(config, target, wait=args.wait, slow_start=args.slow_start)
    return EXIT_RUN_FAILED if failed else EXIT_OK


def start_one(config: GlobalConfig, target: Target, *, wait: bool, slow_start: bool) -> bool:
    """Start a run through the job's unit; with `wait`, report how it ended. False: it failed."""
    from pcsystemd.history import read_history

    before = systemd.unit_state(target.service)
    if not before.known:
        make_live = "pcsystemd apply" if config.mode is Mode.APPLY else "pcsystemd reload"
        raise SystemdError(
            f"{target.slug}: systemd has no unit {target.service} yet; run `{make_live}` first"
        )
    if before.busy:
        print(f"{target.slug}: already running (pid {before.main_pid or '?'})")
        if not wait:
            return True
    elif slow_start:
        from pcsystemd import slowstart

        slowstart.request(config, target.slug)
    # a live run's record is rewritten when it ends: only finished runs are old news
    known_runs = {
        run.run_id
        for run in read_history(config, target.slug).runs
        if run.result is not RunResult.RUNNING
    }
    state = systemd.start(target.service, wait=wait)
    if not wait:
        pid = f", pid {state.main_pid}" if state.main_pid else ""
        print(f"{target.slug}: started{' (slow start)' if slow_start else ''}{pid}")
        return True
    runs = [r for r in read_history(config, target.slug).runs if r.run_id not in known_runs]
    if runs:
        run = runs[-1]
        how = run.signal or (
            f"exit status {run.exit_status}" if run.exit_status is not None else ""
        )
        detail = ", ".join(part for part in (how, run.message or "") if part)
        print(f"{target.slug}: {run.result.value}{f' ({detail})' if detail else ''}")
        if run.log_file:
            print(f"  log: {run.log_file}")
        return not run.result.is_failure()
    # the shim left no record (it could not start): systemd's word is all there is
    print(f"{target.slug}: {state.result or state.active_state} ({state.describe_exit()})")
    return state.result == "success"


def command_stop(args: argparse.Namespace) -> int:
    config = load_config(args)
    require_root("pcsystemd stop")
    for target in select_targets(config, args.jobs_named, args.tag, need_job=False):
        state = systemd.unit_state(target.service)
        if not state.busy:
            print(f"{target.slug}: not running")
            continue
        after = systemd.stop(target.service, wait=True, timeout=60)
        pid = state.main_pid or "?"
        print(f"{target.slug}: stopped the run (pid {pid}); now {after.active_state}")
    return EXIT_OK


# ------------------------------------------------------------------ logs and history


def find_log(config: GlobalConfig, slug: str, run: str | None) -> tuple[Path | None, Any]:
    """The log file of run `run` (1 = newest, 2 = the one before, or a run id) and its record."""
    from pcsystemd.history import read_history
    from pcsystemd.runlog import list_log_files

    runs = runs_newest_first(read_history(config, slug))
    files = list(reversed(list_log_files(config.log_directory / slug, slug)))
    if run is None or run.isdigit():
        position = int(run or 1)
        if position < 1:
            raise UsageError("--run counts from 1 (the newest run)")
        if runs:
            if position > len(runs):
                raise UsageError(f"{slug} has only {len(runs)} recorded run(s)")
            record = runs[position - 1]
            return (Path(record.log_file) if record.log_file else None), record
        return (files[position - 1] if position <= len(files) else None), None
    for record in runs:
        if record.run_id == run:
            return (Path(record.log_file) if record.log_file else None), record
    raise UsageError(f"{slug} has no run {run!r} (`pcsystemd history {slug}` lists them)")


def journal_argv(target: Target, record: Any = None, *, follow: bool = False) -> list[str]:
    """journalctl for the job's unit, narrowed to one run's time span when it is known."""
    argv = ["journalctl", "--no-pager", "-o", "short-iso", "-u", target.service]
    if follow:
        return [*argv, "--follow", "--lines=20"]
    if record is not None:
        start = parse_time(record.start)
        end = parse_time(record.end)
        if start is not None:
            argv.append(f"--since=@{int(start.timestamp())}")
        if end is not None:
            argv.append(f"--until=@{int(end.timestamp()) + 1}")
    return argv


def command_logs(args: argparse.Namespace) -> int:
    from pcsystemd.history import job_status

    config = load_config(args)
    [target] = select_targets(config, [args.job], (), need_job=False)
    if args.follow:
        status = job_status(config, target.slug)
        path, _record = find_log(config, target.slug, None)
        if status.status == "running" and status.pid and path is not None:
            # tail ends by itself when the run does (--pid)
            return _run_viewer(["tail", "-n", "+1", f"--pid={status.pid}", "-F", str(path)])
        print(f"pcsystemd: {target.slug} is not running; following its journal", file=sys.stderr)
        return _run_viewer(journal_argv(target, follow=True))
    path, record = find_log(config, target.slug, args.run)
    if path is None or not path.exists():
        where = f"no log file of {target.slug}" + (f" (run {args.run})" if args.run else "")
        print(f"pcsystemd: {where}; showing the journal instead", file=sys.stderr)
        return _run_viewer(journal_argv(target, record))
    try:
        with path.open("rb") as log:
            while chunk := log.read(1 << 16):
                sys.stdout.buffer.write(chunk)
    except PermissionError as error:
        raise UsageError(f"cannot read {path}: permission denied (run as root)") from error
    sys.stdout.flush()
    return EXIT_OK


def _run_viewer(argv: list[str]) -> int:
    try:
        return subprocess.run(argv, check=False).returncode
    except FileNotFoundError as error:
        raise UsageError(f"{argv[0]} is not installed") from error


def command_history(args: argparse.Namespace) -> int:
    from pcsystemd.history import read_history

    config = load_config(args)
    targets = select_targets(config, args.jobs_named, args.tag, need_job=False)
    histories = [read_history(config, target.slug) for target in targets]
    if args.json:
        data = [history.to_json() for history in histories]
        print(json.dumps({"format": JSON_FORMAT, "histories": data}, indent=2))
        return EXIT_OK
    now = datetime.now(UTC)
    for index, history in enumerate(histories):
        if index:
            print()
        for line in history_lines(history, now, args.count):
            print(line)
    return EXIT_OK


# ------------------------------------------------------------------ enable, disable, reset


def command_enable(args: argparse.Namespace) -> int:
    return _switch(args, disabled=False)


def command_disable(args: argparse.Namespace) -> int:
    return _switch(args, disabled=True)


def _switch(args: argparse.Namespace, *, disabled: bool) -> int:
    from pcsystemd.apply import check_generator_view
    from pcsystemd.switches import set_disabled

    config = load_config(args)
    verb = "disable" if disabled else "enable"
    require_root(f"pcsystemd {verb}")
    if config.mode is Mode.GENERATOR:
        check_generator_view(args, f"pcsystemd {verb}")
    targets = select_targets(config, args.jobs_named, args.tag, need_job=False)
    for target in targets:
        changed = set_disabled(config, target.slug, disabled)
        already = "" if changed else " already"
        print(f"{target.slug}:{already} {verb}d at runtime")
        job = target.job
        if job is not None and job.disabled and not disabled:
            print(
                f"pcsystemd: warning: {target.slug} stays disabled: its job file says "
                "`disabled: true` (`pcsystemd enable` only undoes `pcsystemd disable`)",
                file=sys.stderr,
            )
        elif job is not None and not job.schedules:
            print(f"pcsystemd: note: {target.slug} has no schedule; only its timer is switched")
    return make_live(config)


def make_live(config: GlobalConfig) -> int:
    """Bring systemd up to date with the jobs as the mode does it (apply, or reload)."""
    from pcsystemd.apply import exclusive, execute, make_plan

    with exclusive(config):
        plan = make_plan(config, config.mode)
        print_diagnostics(plan.desired.diagnostics)
        for warning in plan.warnings:
            print(f"pcsystemd: warning: {warning}", file=sys.stderr)
        execute(plan, lambda step: print(f"  {step.describe()}", flush=True))
    if config.mode is Mode.GENERATOR and plan.desired.invalid_count:
        print("pcsystemd: note: the generator leaves out invalid jobs", file=sys.stderr)
    return EXIT_OK


def command_reset(args: argparse.Namespace) -> int:
    from pcsystemd.history import read_history, reset

    config = load_config(args)
    require_root("pcsystemd reset")
    for target in select_targets(config, args.jobs_named, args.tag, need_job=False):
        before = read_history(config, target.slug)
        reset(config, target.slug)
        if systemd.unit_state(target.service).failed:
            systemd.reset_failed(target.service)
        was = f"{before.consecutive_failures} consecutive failure(s)"
        if before.tripped is not None:
            was += ", circuit breaker tripped"
        print(f"{target.slug}: reset (was: {was})")
    return EXIT_OK


# ------------------------------------------------------------------ argparse


def add_commands(add: AddCommand) -> None:
    """Add the people's commands to `pcsystemd`'s parser (called by cli.build_parser)."""

    def jobs_and_tags(parser: argparse.ArgumentParser, what: str) -> None:
        parser.add_argument(
            "jobs_named", nargs="*", metavar="JOB", help=f"job(s) to {what} (slug or unit name)"
        )
        _tag_option(parser, f"{what} every job with tag TAG (repeatable)")

    listing = add("list", command_list, "list the jobs: schedule, next and last run, result")
    _tag_option(listing, "only jobs with tag TAG (repeatable)")
    listing.add_argument("--json", action="store_true", help="stable JSON for scripts")

    status = add("status", command_status, "show a job's timer, service, last run and failures")
    jobs_and_tags(status, "show")
    status.add_argument("--json", action="store_true", help="stable JSON for scripts")

    start = add("start", command_start, "run a job now, through its unit (same user, lock, log)")
    jobs_and_tags(start, "start")
    start.add_argument(
        "--wait", action="store_true", help="wait for the run to end; exit 1 if it failed"
    )
    start.add_argument(
        "--slow-start", action="store_true", help="run the job's slow_start_command this time"
    )

    stop = add("stop", command_stop, "stop a job's running run (its timer stays)")
    jobs_and_tags(stop, "stop")

    logs = add("logs", command_logs, "print a run's log file (the newest by default)")
    logs.add_argument("job", metavar="JOB")
    which = logs.add_mutually_exclusive_group()
    which.add_argument(
        "--run", metavar="N", help="1 = newest run, 2 = the one before...; or a run id"
    )
    which.add_argument(
        "--follow", "-f", action="store_true", help="follow the live run, or the journal"
    )

    history = add("history", command_history, "list a job's recorded runs, newest first")
    jobs_and_tags(history, "show")
    history.add_argument("--count", type=int, default=20, metavar="N", help="runs to show (0: all)")
    history.add_argument("--json", action="store_true", help="the history as stored (JSON)")

    for name, handler, help_text in (
        ("enable", command_enable, "undo `pcsystemd disable`: the job's timer runs again"),
        ("disable", command_disable, "stop scheduling a job, without editing its job file"),
    ):
        jobs_and_tags(add(name, handler, help_text), name)

    reset = add("reset", command_reset, "clear a job's failure count and circuit breaker")
    jobs_and_tags(reset, "reset")


def _tag_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--tag", action="append", default=[], metavar="TAG", help=help_text)
