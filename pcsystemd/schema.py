"""The one field table of job keys: it drives parsing, defaults, validation and the reference docs.

`FIELDS` lists every key of a job file with its parser (from `fieldparsers`), default, help text
and example; `jobbuild` validates a parsed job file by it and builds the `model.Job`;
`reference_markdown` and `sample_job_yaml` render the same table for people. The table is kept
in this one module, apart from the parsing machinery and the building, so that the list of job
keys reads as one list. No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from pcsystemd.fieldparsers import (
    INVALID,
    SLUG_PATTERN,
    SLUG_RULE,
    Checker,
    Field,
    choice,
    duration,
    identifier,
    integer,
    mapping,
    number,
    parse_absolute_path,
    parse_account,
    parse_boolean,
    parse_commands,
    parse_environment,
    parse_exit_code,
    parse_fields,
    parse_mail_address,
    parse_schedule_expression,
    parse_slug_name,
    parse_webhook,
    string_or_list,
    text,
    type_error,
)
from pcsystemd.model import Hardening, Overlap, Retries
from pcsystemd.yamlload import Mark, MarkedMap

# typing is imported for the type checker only: the runtime shim (`pcsystemd run-job`)
# reaches this module when it reads a job file itself, and typing alone costs it
# milliseconds. mypy knows the idiom.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


# ---------------------------------------------------------------------------------------------
# The one parser that needs a table: `retries` takes a count or a mapping of RETRIES_FIELDS


def parse_retries(ck: Checker, value: Any, mark: Mark, label: str) -> Any:
    """A count, or a mapping {count, delay, backoff, max_delay}."""
    if isinstance(value, int) and not isinstance(value, bool):
        count = integer(0, 100)(ck, value, mark, label)
        return INVALID if count is INVALID else Retries(count=count)
    if not isinstance(value, Mapping):
        return type_error(ck, mark, label, "a number of retries or a mapping", value)
    parsed = parse_fields(ck, value, RETRIES_FIELDS, prefix=f"{label}.")
    if INVALID in parsed.values():
        return INVALID
    retries = Retries(
        count=parsed["count"],
        delay_seconds=float(parsed["delay"]),
        backoff=parsed["backoff"],
        max_delay_seconds=float(parsed["max_delay"]),
    )
    if retries.max_delay_seconds < retries.delay_seconds:
        where = value.value_mark("max_delay") if isinstance(value, MarkedMap) else mark
        return ck.error(
            where, f"'{label}.max_delay' is shorter than '{label}.delay'; make it at least as long"
        )
    return retries


# ---------------------------------------------------------------------------------------------
# The tables


_ADDRESSES = string_or_list(parse_mail_address, "mail address")
_TAGS = string_or_list(identifier(SLUG_PATTERN, "tag", SLUG_RULE), "tag")
_EXIT_CODES = string_or_list(parse_exit_code, "exit code")

FAILMAIL_FIELDS: tuple[Field, ...] = (
    Field(
        "from_address",
        parse_mail_address,
        "mail address",
        "Sender of the failure mail.",
        'from_address: "Fail Mail <jobs@example.org>"',
        default_text="pcsystemd@<host name>, or the global config's mail_from",
        origin="process-control",
    ),
    Field(
        "to_address",
        _ADDRESSES,
        "mail address or list of them",
        "Recipients of the failure mail.",
        "to_address: [ops@example.org, team@example.org]",
        default=(),
        default_text="nobody",
        origin="process-control",
    ),
)

NOTIFY_FIELDS: tuple[Field, ...] = (
    Field(
        "mail",
        _ADDRESSES,
        "mail address or list of them",
        "Where failure notices are mailed (added to failmail's recipients).",
        "mail: ops@example.org",
        default=(),
        default_text="nobody",
    ),
    Field(
        "webhook",
        parse_webhook,
        "http:// or https:// URL",
        "A URL that receives a JSON POST for each failure notice.",
        "webhook: https://hooks.example.org/pcsystemd",
    ),
    Field(
        "on_recovery",
        parse_boolean,
        "boolean",
        "Also send a notice when the job succeeds again after failing.",
        "on_recovery: true",
        default=False,
        default_text="false",
    ),
)

RETRIES_FIELDS: tuple[Field, ...] = (
    Field(
        "count",
        integer(0, 100),
        "whole number, 0 to 100",
        "How many times a failed run is retried within the same activation.",
        "count: 3",
        default=Retries.count,
        default_text=str(Retries.count),
    ),
    Field(
        "delay",
        duration(bare_unit=None),
        "duration",
        "Wait before the first retry.",
        "delay: 30s",
        default=int(Retries.delay_seconds),
        default_text=f"{Retries.delay_seconds:g}s",
    ),
    Field(
        "backoff",
        number(1, 10),
        "number, 1 to 10",
        "Each further retry waits this many times longer than the one before.",
        "backoff: 2",
        default=Retries.backoff,
        default_text=f"{Retries.backoff:g}",
    ),
    Field(
        "max_delay",
        duration(bare_unit=None),
        "duration",
        "The longest wait between two attempts.",
        "max_delay: 5m",
        default=int(Retries.max_delay_seconds),
        default_text=f"{Retries.max_delay_seconds:g}s",
    ),
)

FIELDS: tuple[Field, ...] = (
    Field(
        "name",
        text(),
        "text",
        "A human name for the job, shown in the unit's Description= and in messages. The job's "
        "machine name (its slug) is the file name without .yaml.",
        "name: Nightly PayPal audit",
        default_text="the slug",
        origin="process-control",
    ),
    Field(
        "description",
        text(multiline=True, max_length=4000),
        "text",
        "What the job does and whom to ask about it; several lines are fine.",
        "description: >\n  Downloads the PayPal audit files and loads them into the warehouse.",
        origin="process-control",
    ),
    Field(
        "command",
        parse_commands,
        "command line, or list of command lines",
        "What to run. The line is split into words like a shell would (quotes and backslashes "
        "work) but runs WITHOUT a shell: no globbing, pipes, redirection or $VARIABLES. A list "
        "runs its commands in sequence and stops at the first failure. Give full paths.",
        'command: /usr/local/bin/audit --fetch "/srv/audit files"',
        required=True,
        origin="process-control",
    ),
    Field(
        "slow_start_command",
        parse_commands,
        "command line, or list of command lines",
        "An alternative command for a first or catch-up run (`pcsystemd run-job --slow-start`).",
        "slow_start_command: /usr/local/bin/audit --fetch --all-history",
        default=(),
        origin="process-control",
    ),
    Field(
        "schedule",
        string_or_list(parse_schedule_expression, "cron expression"),
        "cron expression, or list of them",
        "When to run, as five-field Vixie cron (minute hour day-of-month month day-of-week; "
        "names like mon or jan work; when both day fields are restricted either one matching is "
        "enough). A list runs at the union of its expressions. Quote it: a leading '*' means "
        "something else in YAML. @daily and other aliases are not accepted. Without a schedule "
        "the job only runs by hand.",
        'schedule: "30 12 * * *"',
        default=(),
        default_text="none (runs only by hand)",
        origin="process-control",
    ),
    Field(
        "disabled",
        parse_boolean,
        "boolean",
        "Keep the job's service (it can still be started by hand) but generate no timer.",
        "disabled: true",
        default=False,
        default_text="false",
        origin="process-control",
    ),
    Field(
        "timeout",
        duration(bare_unit="m"),
        "duration (a bare number means minutes)",
        "How long a run may take before it is stopped and counted as failed. A bare number means "
        "minutes, as in process-control; text takes a unit: '90s', '15m', '2h', '1d'. 0 means no "
        "limit. The default is one day because a run that hangs forever holds its lock and "
        "silently stops every later run: a day is longer than any sane scheduled job, yet a hung "
        "one is noticed within a day. Set 0 explicitly for a job that must never be stopped.",
        "timeout: 30",
        default=86400,
        default_text="1d",
        origin="process-control",
    ),
    Field(
        "environment",
        parse_environment,
        "mapping of names to text",
        "Environment variables for the command. Numbers are passed as written; true/false must "
        "be quoted. Values may contain any printable character; names are letters, digits and "
        "'_'. Merged key by key with the global defaults.",
        "environment:\n  PYTHONPATH: /srv/audit/lib\n  LANG: C.UTF-8",
        default=(),
        default_text="none",
        origin="process-control",
    ),
    Field(
        "tag",
        _TAGS,
        "tag, or list of tags",
        "A group tag (same as `tags`; both may be given and are merged). Each tag becomes a "
        "pcsystemd-<tag>.target that starts and stops its jobs together.",
        "tag: payments",
        default=(),
        origin="process-control",
    ),
    Field(
        "tags",
        _TAGS,
        "tag, or list of tags",
        f"Group tags; each is {SLUG_RULE}.",
        "tags: [payments, nightly]",
        default=(),
        origin="process-control",
    ),
    Field(
        "allow_overtime",
        parse_boolean,
        "boolean",
        "process-control's overlap switch: true = a run that finds the previous one still going "
        "is skipped (overlap: skip); false = it fails (overlap: fail). Giving it together with a "
        "different `overlap` in the same file is an error.",
        "allow_overtime: true",
        default_text="false (overlap: fail)",
        origin="process-control",
    ),
    Field(
        "failure_threshold_for_mail",
        integer(1),
        "whole number, at least 1",
        "Send failure mail only after this many failed runs in a row.",
        "failure_threshold_for_mail: 3",
        default=1,
        default_text="1",
        origin="process-control",
    ),
    Field(
        "failmail",
        mapping(FAILMAIL_FIELDS),
        "mapping",
        "process-control's failure mail: from_address and to_address.",
        "failmail:\n  from_address: jobs@example.org\n  to_address: ops@example.org",
        default={"from_address": None, "to_address": ()},
        origin="process-control",
        subfields=FAILMAIL_FIELDS,
    ),
    Field(
        "user",
        parse_account,
        "user name",
        "The account the command runs as. It must be in the global config's allowed_users "
        "(the default user always is); root only with allow_root: true.",
        "user: batch",
        default_text="the global config's default_user (pcsystemd)",
    ),
    Field(
        "group",
        parse_account,
        "group name",
        "The group the command runs as; it must be in allowed_groups or be the name of an "
        "allowed user; root only with allow_root: true.",
        "group: batch",
        default_text="the user's primary group",
    ),
    Field(
        "working_directory",
        parse_absolute_path,
        "absolute path",
        "The directory the command starts in.",
        "working_directory: /srv/audit",
        default_text="/ (systemd's default)",
    ),
    Field(
        "lock",
        parse_slug_name,
        "lock group name",
        "Jobs with the same lock group never run at the same time (a run that finds the lock "
        f"held acts as `overlap` says). Same rules as a job's slug: {SLUG_RULE}.",
        "lock: payments-queue",
        default_text="the slug (the job never overlaps itself)",
    ),
    Field(
        "overlap",
        choice(Overlap),
        "skip, wait or fail",
        "What a run does when its lock is held: skip (log it and succeed), wait (up to "
        "overlap_wait, then fail), fail (count a failure: process-control's behaviour).",
        "overlap: wait",
        default=Overlap.FAIL,
        default_text="fail",
    ),
    Field(
        "overlap_wait",
        duration(bare_unit=None),
        "duration",
        "With overlap: wait, how long to wait for the lock.",
        "overlap_wait: 5m",
        default=600,
        default_text="10m",
    ),
    Field(
        "jitter",
        duration(bare_unit=None),
        "duration",
        "Start each run up to this much later, at random (RandomizedDelaySec=), so that many "
        "jobs on one schedule do not all start in the same second.",
        "jitter: 5m",
        default=0,
        default_text="0 (start on the minute)",
    ),
    Field(
        "catch_up",
        parse_boolean,
        "boolean",
        "Run once at boot if the machine was off when a run was due (Persistent=).",
        "catch_up: true",
        default=False,
        default_text="false",
    ),
    Field(
        "timezone",
        text(),
        "time zone name",
        "The time zone the schedule is read in, like Europe/Berlin or UTC.",
        "timezone: Europe/Berlin",
        default_text="the machine's time zone",
    ),
    Field(
        "stderr_is_failure",
        parse_boolean,
        "boolean",
        "Count a run that writes anything to standard error as failed, even if it exits 0 "
        "(early process-control's rule).",
        "stderr_is_failure: true",
        default=False,
        default_text="false",
    ),
    Field(
        "success_exit_codes",
        _EXIT_CODES,
        "exit code, or list of them (0 to 255)",
        "Exit codes that count as success.",
        "success_exit_codes: [0, 3]",
        default=(0,),
        default_text="[0]",
    ),
    Field(
        "unrecoverable_exit_codes",
        _EXIT_CODES,
        "exit code, or list of them (0 to 255)",
        "Exit codes after which retrying is pointless: no retry, and the circuit breaker trips at "
        "once.",
        "unrecoverable_exit_codes: [78]",
        default=(),
        default_text="none",
    ),
    Field(
        "retries",
        parse_retries,
        "number, or mapping",
        "Retry a failed run within the same activation (all attempts share the timeout). A "
        "number is the count; a mapping may also set delay, backoff and max_delay.",
        "retries:\n  count: 2\n  delay: 30s",
        default=Retries(),
        default_text="0 (no retries)",
        subfields=RETRIES_FIELDS,
    ),
    Field(
        "max_consecutive_failures",
        integer(0),
        "whole number",
        "After this many failed runs in a row the job stops being run until someone resets it "
        "(the circuit breaker). 0 turns the breaker off.",
        "max_consecutive_failures: 5",
        default=0,
        default_text="0 (off)",
    ),
    Field(
        "notify",
        mapping(NOTIFY_FIELDS),
        "mapping",
        "Failure notices: mail, webhook, on_recovery.",
        "notify:\n  mail: ops@example.org\n  on_recovery: true",
        default={"mail": (), "webhook": None, "on_recovery": False},
        subfields=NOTIFY_FIELDS,
    ),
    Field(
        "hardening",
        choice(Hardening),
        "none, basic or strict",
        "How strictly systemd sandboxes the job. basic: no new privileges, a private /tmp, "
        "/usr /boot /etc read-only, home directories read-only. strict: the whole file system "
        "read-only except read_write_paths, no home directories, no devices. none: only "
        "User=/Group=.",
        "hardening: strict",
        default=Hardening.BASIC,
        default_text="basic",
    ),
    Field(
        "read_write_paths",
        string_or_list(parse_absolute_path, "absolute path"),
        "absolute path, or list of them",
        "Paths the job may write even where hardening makes the file system read-only.",
        "read_write_paths: [/srv/audit/out]",
        default=(),
        default_text="none",
    ),
)

FIELDS_BY_KEY: dict[str, Field] = {field.key: field for field in FIELDS}


# ---------------------------------------------------------------------------------------------
# Documentation from the same table


def iter_fields(fields: Sequence[Field] = FIELDS, prefix: str = "") -> Iterator[tuple[str, Field]]:
    """Every field with its dotted key (`retries.delay`), nested ones after their parent."""
    for field in fields:
        yield prefix + field.key, field
        yield from iter_fields(field.subfields, f"{prefix}{field.key}.")


def _origin_text(field: Field) -> str:
    return "process-control" if field.origin == "process-control" else "pcsystemd"


def reference_markdown() -> str:
    """docs/job-format.md: the job file reference, generated from FIELDS."""
    from pcsystemd.config import CONFIG_FIELDS  # config imports this module

    lines = [
        "# Job file reference",
        "",
        "<!-- Generated from the field tables in pcsystemd/schema.py and pcsystemd/config.py"
        " by `pcsystemd schema`; do not edit. Regenerate with"
        " `PCSYSTEMD_REGENERATE=1 .venv/bin/pytest tests/unit/test_schema.py`. -->",
        "",
        "One job per file: `<job_directory>/<slug>.yaml` (default job directory "
        "`/etc/pcsystemd/jobs`). The slug, the job's machine name, is the file name without "
        f"`.yaml`: {SLUG_RULE}. It names the units (`pcsystemd-<slug>.service`, "
        "`pcsystemd-<slug>.timer`). Files ending in `.yml` are reported, not read; hidden files "
        "and editor or dpkg leftovers (`*~`, `.*.swp`, `*.dpkg-*`) are ignored.",
        "",
        "Every key of process-control's job files is accepted with the same meaning, so an "
        'existing job directory compiles unchanged. Unknown keys are errors (with a "did you '
        'mean"). A key set to null (`key:` with nothing after it, or `~`) counts as not set: in '
        "a job it removes a value inherited from the global `defaults`.",
        "",
        "Errors read `path:line:col: error: what is wrong; how to fix it`. Every error of every "
        "file is reported, and an invalid job never stops the others from compiling.",
        "",
        "## Audit",
        "",
        "Jobs are only read from the job directory: a symlink in it must not lead out of it, and "
        "the directory, the directories above it and every job file must be owned by root (or a "
        "user in `trusted_owners`) and not be writable by group or others; otherwise the error "
        "names the path, its owner and mode and the `chown`/`chmod` that fixes it. A problem "
        "with the job directory itself stops every job (none of them can be trusted). Files "
        "named explicitly (`pcsystemd validate PATH`) outside the job directory are validated "
        "without the ownership audit, so a developer can check a checkout before review; "
        "pcsystemd only ever runs jobs from the job directory.",
        "",
        "The YAML is read safely (plain data only) and within bounds: 1 MiB per file, "
        "20 levels of nesting, 100000 values after aliases are expanded. Duplicate keys are "
        "errors.",
        "",
        "## Keys",
        "",
        "| key | type | default | meaning from |",
        "|---|---|---|---|",
    ]
    for key, field in iter_fields():
        required = " (required)" if field.required else ""
        lines.append(
            f"| [`{key}`](#{key.replace('.', '')}) | {_markdown(field.type_text)}{required} | "
            f"{_markdown(field.default_text)} | {_origin_text(field)} |"
        )
    lines.append("")
    for key, field in iter_fields():
        level = "###" if "." not in key else "####"
        lines += [f"{level} {key}", "", _markdown(field.help), ""]
        default = _markdown(field.default_text)
        lines.append(f"Type: {_markdown(field.type_text)}. Default: {default}.")
        if field.required:
            lines[-1] += " Required."
        lines += ["", "```yaml", field.example, "```", ""]
    lines += [
        "## Global config",
        "",
        "`/etc/pcsystemd/pcsystemd.yaml`, or the file named by `--config` or "
        "`$PCSYSTEMD_CONFIG`. Every key is optional and an empty or missing default file means "
        "all defaults; a file named explicitly must exist. Unknown keys are errors.",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for config_field in CONFIG_FIELDS:
        lines.append(
            f"| `{config_field.key}` | {_markdown(config_field.type_text)} | "
            f"{_markdown(config_field.default_text)} | {_markdown(config_field.help)} |"
        )
    lines.append("")
    return "\n".join(lines)


def _markdown(text: str) -> str:
    """Text for Markdown: `<slug>` outside code spans would be read as an HTML tag."""
    parts = text.split("`")
    for index in range(0, len(parts), 2):
        parts[index] = parts[index].replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
    return "`".join(parts)


def _comment(paragraph: str, width: int = 88) -> list[str]:
    import textwrap  # documentation only

    return textwrap.wrap(paragraph, width - 2, initial_indent="# ", subsequent_indent="# ")


SAMPLE_ACTIVE = ("name", "command", "schedule")


def sample_job_yaml() -> str:
    """A commented sample job file: the required keys set, every other key commented out."""
    lines = _comment(
        "A pcsystemd job. Save it as /etc/pcsystemd/jobs/<slug>.yaml; the slug (the file name "
        f"without .yaml) is {SLUG_RULE}. Only `command` is required. The keys after the first "
        "three are commented out with an example value; remove the leading '#' to use one."
    )
    for field in FIELDS:
        lines.append("")
        lines += _comment(f"{field.key}: {field.help} Default: {field.default_text}.")
        for example_line in field.example.splitlines():
            lines.append(example_line if field.key in SAMPLE_ACTIVE else f"#{example_line}")
    return "\n".join(lines) + "\n"
