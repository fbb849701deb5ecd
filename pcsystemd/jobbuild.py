"""A parsed job file → `model.Job`: the defaults merged in, the table applied, keys cross-checked.

`build_job` parses a job file (merged over the global `defaults`) by `schema.FIELDS`, then checks
what no single key can: allowed users and groups, `overlap` against process-control's
`allow_overtime`, the schedules compiled in the job's time zone, exit codes in two lists;
`check_defaults` checks the global config's `defaults` by the same table. This is apart from the
table so that `schema` stays the list of keys. Nothing here does I/O beyond what
`schedule.compile_schedule` needs for time zones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pcsystemd.errors import Diagnostic
from pcsystemd.fieldparsers import (
    INVALID,
    Checker,
    as_marked,
    closest_key,
    parse_fields,
    show,
    unknown_key_message,
)
from pcsystemd.model import (
    DEFAULT_CONFIG_PATH,
    Failmail,
    GlobalConfig,
    Job,
    Notify,
    Overlap,
    Schedule,
)
from pcsystemd.schedule import ScheduleError, compile_schedule
from pcsystemd.schema import FIELDS, FIELDS_BY_KEY
from pcsystemd.yamlload import Mark, MarkedMap

# typing is imported for the type checker only: the runtime shim (`pcsystemd run-job`)
# reaches this module when it reads a job file itself, and typing alone costs it
# milliseconds. mypy knows the idiom.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def merge_defaults(defaults: Mapping[str, Any], job: MarkedMap) -> MarkedMap:
    """The job over the global defaults, mappings merged recursively; the job's value wins.

    Lists are replaced, not appended. A null in the job removes an inherited value. Positions
    stay where each value was written, so an error in a default points into the global config.
    """
    base = as_marked(defaults, DEFAULT_CONFIG_PATH)
    result = MarkedMap(job.mark)
    for key in base:
        if key not in job:
            result.copy_entry(base, key)
            continue
        inherited, own = base[key], job[key]
        if own is None:
            continue
        if isinstance(inherited, MarkedMap) and isinstance(own, MarkedMap):
            merged = merge_defaults(inherited, own)
            result.set(key, merged, job.key_mark(key), job.value_mark(key), None)
        else:
            result.copy_entry(job, key)
    for key in job:
        if key not in base:
            result.copy_entry(job, key)
    return result


def check_defaults(defaults: MarkedMap, config: GlobalConfig) -> list[Diagnostic]:
    """Validate the global config's `defaults` key by key, so a typo there is found once."""
    ck = Checker(config.config_file, config)
    for key in defaults:
        field = FIELDS_BY_KEY.get(key)
        if field is None:
            ck.error(
                defaults.key_mark(key),
                unknown_key_message(key, list(FIELDS_BY_KEY), " in 'defaults'"),
            )
        elif defaults[key] is not None:
            field.parse(ck, defaults[key], defaults.value_mark(key), f"defaults.{key}")
    if "timezone" in defaults and isinstance(defaults["timezone"], str):
        _check_timezone(
            ck, defaults["timezone"], defaults.value_mark("timezone"), "defaults.timezone"
        )
    return ck.diagnostics


def _check_timezone(ck: Checker, timezone: str, mark: Mark, label: str) -> bool:
    # The schedule module owns the time zone rule (tzdata files, as systemd reads them).
    try:
        compile_schedule("0 0 * * *", timezone)
    except ScheduleError as error:
        ck.error(mark, f"'{label}': {error.message}")
        return False
    return True


def _from_job(ck: Checker, data: MarkedMap, key: str) -> bool:
    """Whether the job file itself set `key` (rather than the global defaults)."""
    return key in data and data.value_mark(key).path == ck.path


def build_job(
    data: MarkedMap,
    *,
    path: Path,
    slug: str,
    config: GlobalConfig,
    fingerprint: str | None = None,
) -> tuple[Job | None, list[Diagnostic]]:
    """Validate one parsed job file (merged over the defaults) and build its Job.

    `fingerprint`: of the file's bytes it was parsed from (Job.source_fingerprint)."""
    if config.defaults:
        data = merge_defaults(config.defaults, data)
    ck = Checker(str(path), config, context=f"inherited from 'defaults' by job {slug}")
    values = parse_fields(ck, data, FIELDS)
    misspelt = {closest_key(key, list(FIELDS_BY_KEY)) for key in data if key not in FIELDS_BY_KEY}
    if data.get("command") is None and "command" not in misspelt:
        ck.error(
            data.mark if data.mark.line else Mark(str(path), 1, 1),
            "missing required key 'command'; add the command line to run, e.g. "
            "command: /usr/local/bin/backup --full",
        )

    def valid(*keys: str) -> bool:
        return all(values[key] is not INVALID for key in keys)

    # Checks across keys, each run when the keys it needs are valid on their own.
    user = values["user"] or config.default_user
    if valid("user"):
        _check_account(ck, data, "user", user, allowed=config.user_allowed(user), is_user=True)
    group = values["group"]
    if valid("group") and group is not None:
        _check_account(ck, data, "group", group, allowed=config.group_allowed(group), is_user=False)
    overlap = _overlap(ck, data, values) if valid("overlap", "allow_overtime") else Overlap.FAIL
    timezone = values["timezone"]
    schedules: list[Schedule] = []
    if valid("timezone") and timezone is not None:
        timezone_mark = data.value_mark("timezone")
        if not _check_timezone(ck, timezone, timezone_mark, "timezone"):
            timezone = None  # still check the expressions themselves
    if valid("schedule"):
        schedules = _compile_schedules(ck, values["schedule"], timezone)
    if valid("success_exit_codes", "unrecoverable_exit_codes"):
        _check_exit_codes(ck, data, values)
    if ck.failed:
        return None, sorted(ck.diagnostics)
    failmail, notify = values["failmail"], values["notify"]
    job = Job(
        slug=slug,
        source_path=path,
        source_fingerprint=fingerprint,
        name=values["name"] or slug,
        description=values["description"],
        commands=values["command"],
        slow_start_commands=values["slow_start_command"],
        schedules=tuple(schedules),
        disabled=values["disabled"],
        timeout_seconds=values["timeout"],
        environment=values["environment"],
        tags=tuple(dict.fromkeys(values["tag"] + values["tags"])),
        user=user,
        group=values["group"],
        working_directory=values["working_directory"],
        lock_group=values["lock"] or slug,
        overlap=overlap,
        overlap_wait_seconds=values["overlap_wait"],
        jitter_seconds=values["jitter"],
        catch_up=values["catch_up"],
        timezone=timezone,
        stderr_is_failure=values["stderr_is_failure"],
        success_exit_codes=values["success_exit_codes"],
        unrecoverable_exit_codes=values["unrecoverable_exit_codes"],
        retries=values["retries"],
        max_consecutive_failures=values["max_consecutive_failures"],
        failure_threshold_for_mail=values["failure_threshold_for_mail"],
        failmail=Failmail(failmail["from_address"], failmail["to_address"]),
        notify=Notify(notify["mail"], notify["webhook"], notify["on_recovery"]),
        hardening=values["hardening"],
        read_write_paths=values["read_write_paths"],
    )
    return job, sorted(ck.diagnostics)


def _check_account(
    ck: Checker, data: MarkedMap, key: str, name: str, *, allowed: bool, is_user: bool
) -> None:
    if allowed:
        return
    mark = data.value_mark(key) if key in data else data.mark
    where = ck.config.config_file
    if name in ("root", "0"):
        ck.error(
            mark,
            f"'{key}' root is not allowed: jobs run as root only when {where} says "
            "allow_root: true",
        )
    elif is_user:
        allowed_users = ", ".join(ck.config.allowed_users) or "none"
        ck.error(
            mark,
            f"user {name!r} is not allowed to run jobs; add it to allowed_users in {where} "
            f"(allowed now: {allowed_users})",
        )
    else:
        allowed_groups = ", ".join(ck.config.allowed_groups) or "none"
        ck.error(
            mark,
            f"group {name!r} is not allowed; add it to allowed_groups in {where} "
            f"(allowed now: {allowed_groups}, or the name of an allowed user)",
        )


def _overlap(ck: Checker, data: MarkedMap, values: Mapping[str, Any]) -> Overlap:
    """`overlap`, or what process-control's `allow_overtime` means when it is given."""
    overlap: Overlap = values["overlap"]
    allow_overtime = values["allow_overtime"]
    if allow_overtime is not None:
        implied = Overlap.SKIP if allow_overtime else Overlap.FAIL
        if "overlap" not in data:
            overlap = implied
        elif overlap is not implied:
            job_sets_overtime = _from_job(ck, data, "allow_overtime")
            if job_sets_overtime == _from_job(ck, data, "overlap"):
                written = "true" if allow_overtime else "false"
                ck.error(
                    data.value_mark("allow_overtime"),
                    f"allow_overtime: {written} means overlap: {implied}, but overlap: "
                    f"{overlap} is set on line {data.value_mark('overlap').line}; "
                    "remove allow_overtime (overlap says it all)",
                )
            elif job_sets_overtime:
                overlap = implied  # the job's own key beats the inherited one
    if overlap is not Overlap.WAIT and _from_job(ck, data, "overlap_wait"):
        ck.error(
            data.value_mark("overlap_wait"),
            f"'overlap_wait' only applies with overlap: wait (this job has overlap: {overlap}); "
            "remove it or set overlap: wait",
        )
    return overlap


def _compile_schedules(
    ck: Checker, expressions: Sequence[tuple[str, Mark]], timezone: str | None
) -> list[Schedule]:
    schedules: list[Schedule] = []
    seen: set[str] = set()
    for expression, mark in expressions:
        if expression in seen:
            continue
        seen.add(expression)
        try:
            schedules.append(compile_schedule(expression, timezone))
        except ScheduleError as error:
            ck.error(mark.shifted(error.column), f"'schedule' {show(expression)}: {error.message}")
    return schedules


def _check_exit_codes(ck: Checker, data: MarkedMap, values: Mapping[str, Any]) -> None:
    both = sorted(set(values["success_exit_codes"]) & set(values["unrecoverable_exit_codes"]))
    if both:
        codes = ", ".join(str(code) for code in both)
        ck.error(
            data.value_mark("unrecoverable_exit_codes"),
            f"exit code {codes} is both a success and unrecoverable; "
            "remove it from one of the two lists",
        )
