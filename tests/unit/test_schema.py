"""The field table: every job key's parsing, defaults and validation, with exact messages."""

from __future__ import annotations

import os
import shlex
from dataclasses import fields as dataclass_fields
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcsystemd import fieldparsers, schema
from pcsystemd.fieldparsers import split_command_line
from pcsystemd.jobbuild import build_job, check_defaults
from pcsystemd.model import GlobalConfig, Hardening, Job, Overlap, Retries
from pcsystemd.schema import FIELDS
from pcsystemd.yamlload import parse_yaml

DOCS = Path(__file__).resolve().parents[2] / "docs" / "job-format.md"
CONFIG_PATH = "/etc/pcsystemd/pcsystemd.yaml"


def load(text: str, config: GlobalConfig | None = None) -> tuple[Job | None, list[str]]:
    data = parse_yaml(text, "job.yaml")
    job, diagnostics = build_job(
        data, path=Path("job.yaml"), slug="job", config=config or GlobalConfig()
    )
    return job, [str(diagnostic) for diagnostic in diagnostics]


def errors(text: str, config: GlobalConfig | None = None) -> list[str]:
    job, diagnostics = load(text, config)
    assert job is None
    return diagnostics


def valid(text: str, config: GlobalConfig | None = None) -> Job:
    job, diagnostics = load(text, config)
    assert diagnostics == []
    assert job is not None
    return job


def with_defaults(config_text: str, **settings: object) -> GlobalConfig:
    """A GlobalConfig whose `defaults` come from YAML at CONFIG_PATH (positions included)."""
    defaults = parse_yaml(config_text, CONFIG_PATH)
    return GlobalConfig(source_path=Path(CONFIG_PATH), defaults=defaults, **settings)  # type: ignore[arg-type]


# (name, job file, expected diagnostics without the leading "job.yaml:")
RULES = [
    (
        "unknown-key",
        'command: /bin/true\nschedul: "* * * * *"\n',
        [
            "2:1: error: unknown key 'schedul'; did you mean 'schedule'?",
        ],
    ),
    (
        "unknown-key-no-match",
        "command: /bin/true\nfrobnicate: 1\n",
        [
            "2:1: error: unknown key 'frobnicate'; remove it or check the spelling "
            "(`pcsystemd schema` lists every key)",
        ],
    ),
    (
        "unknown-nested-key",
        "command: /bin/true\nnotify:\n  email: ops@example.org\n",
        [
            "3:3: error: unknown key 'email' in 'notify'; did you mean 'mail'?",
        ],
    ),
    (
        "missing-command",
        "name: No command\n",
        [
            "1:1: error: missing required key 'command'; add the command line to run, e.g. "
            "command: /usr/local/bin/backup --full",
        ],
    ),
    (
        "misspelt-command",
        "comand: /bin/true\n",
        [
            "1:1: error: unknown key 'comand'; did you mean 'command'?",
        ],
    ),
    (
        "name-not-text",
        "command: /bin/true\nname: 42\n",
        [
            "2:7: error: 'name' must be text, not a number (42); put it in quotes",
        ],
    ),
    (
        "name-newline",
        'command: /bin/true\nname: "two\\nlines"\n',
        [
            "2:11: error: 'name' contains a line break (U+000A); remove it: this value must "
            "fit on one line",
        ],
    ),
    (
        "description-control",
        'command: /bin/true\ndescription: "bell\\a"\n',
        [
            "2:19: error: 'description' contains a control character (U+0007); remove it",
        ],
    ),
    (
        "command-type",
        "command: {run: x}\n",
        [
            "1:10: error: 'command' must be a command line or a list of command lines, not a "
            "mapping",
        ],
    ),
    (
        "command-item-type",
        "command:\n  - /bin/true\n  - [nested]\n",
        [
            "3:5: error: 'command' must be a command line (text), not a list",
        ],
    ),
    (
        "command-quote",
        'command: /bin/echo "unclosed\n',
        [
            "1:10: error: 'command' cannot be split into words: no closing quotation; close "
            "the quote (or escape a lone quote with a backslash)",
        ],
    ),
    (
        "command-empty",
        'command: "   "\n',
        [
            "1:10: error: 'command' is empty; write the command line to run",
        ],
    ),
    (
        "command-nul",
        'command: "/bin/echo a\\0b"\n',
        [
            "1:22: error: 'command' contains NUL (U+0000); remove it",
        ],
    ),
    (
        "command-newline-in-word",
        "command: \"/bin/echo 'a\\nb'\"\n",
        [
            "1:10: error: 'command' has a line break inside the quoted word 'a\\nb'; commands "
            "run without a shell, so write a script file for multi-line programs",
        ],
    ),
    (
        "schedule-type",
        "command: /bin/true\nschedule: 5\n",
        [
            "2:11: error: 'schedule' must be a cron expression in quotes, not a number (5)",
        ],
    ),
    (
        "schedule-empty",
        'command: /bin/true\nschedule: ""\n',
        [
            "2:11: error: 'schedule' is empty; remove the key for a job that only runs by hand",
        ],
    ),
    (
        "schedule-bad-field",
        'command: /bin/true\nschedule: "0 25 * * *"\n',
        [
            "2:14: error: 'schedule' '0 25 * * *': hour 25 is out of range; use 0-23",
        ],
    ),
    (
        "schedule-plain-bad-field",
        "command: /bin/true\nschedule: 0 0 * * 8\n",
        [
            "2:19: error: 'schedule' '0 0 * * 8': day-of-week 8 is out of range; use 0-7 (0 "
            "and 7 are Sunday) or sun..sat",
        ],
    ),
    (
        "schedule-list-item",
        'command: /bin/true\nschedule:\n  - "0 0 * * *"\n  - "@hourly"\n',
        [
            "4:6: error: 'schedule' '@hourly': '@hourly' aliases are not allowed; write the "
            "five fields, e.g. '0 * * * *'",
        ],
    ),
    (
        "disabled-type",
        'command: /bin/true\ndisabled: "no"\n',
        [
            "2:11: error: 'disabled' must be true or false, not a string ('no')",
        ],
    ),
    (
        "timeout-list",
        "command: /bin/true\ntimeout: [1]\n",
        [
            "2:10: error: 'timeout' must be a duration such as '90s', '15m', '2h', '1d' or "
            "'1h30m', not a list",
        ],
    ),
    (
        "timeout-quoted-number",
        'command: /bin/true\ntimeout: "30"\n',
        [
            "2:10: error: 'timeout' '30' has no unit; write 30 without quotes (minutes) or "
            "add a unit: '30s', '30m'",
        ],
    ),
    (
        "timeout-negative",
        "command: /bin/true\ntimeout: -5\n",
        [
            "2:10: error: 'timeout' -5 is negative; write a duration of 0 or more",
        ],
    ),
    (
        "timeout-fraction",
        "command: /bin/true\ntimeout: 0.001\n",
        [
            "2:10: error: 'timeout' 0.001 is not a whole number of seconds; write it with a "
            "unit, e.g. '1s'",
        ],
    ),
    (
        "timeout-garbage",
        "command: /bin/true\ntimeout: soon\n",
        [
            "2:10: error: 'timeout' 'soon' is not a duration; write '90s', '15m', '2h', '1d' "
            "or '1h30m'",
        ],
    ),
    (
        "timeout-too-long",
        "command: /bin/true\ntimeout: 400d\n",
        [
            "2:10: error: 'timeout' is longer than 366 days; write a shorter duration (at "
            "most '366d')",
        ],
    ),
    (
        "timeout-bool",
        "command: /bin/true\ntimeout: true\n",
        [
            "2:10: error: 'timeout' must be a duration such as '90s', '15m', '2h', '1d' or "
            "'1h30m', not a boolean (true)",
        ],
    ),
    (
        "jitter-bare",
        "command: /bin/true\njitter: 30\n",
        [
            "2:9: error: 'jitter' 30 has no unit; write '30s' or '30m'",
        ],
    ),
    (
        "env-type",
        "command: /bin/true\nenvironment: [A=1]\n",
        [
            "2:14: error: 'environment' must be a mapping of variable names to values, not a list",
        ],
    ),
    (
        "env-name",
        "command: /bin/true\nenvironment:\n  MY-VAR: x\n",
        [
            "3:3: error: environment variable name 'MY-VAR' is not valid; use letters, digits "
            "and '_', not starting with a digit",
        ],
    ),
    (
        "env-bool",
        "command: /bin/true\nenvironment:\n  DEBUG: on\n",
        [
            "3:10: error: environment variable DEBUG is a boolean (true); quote it to pass "
            'the text: DEBUG: "on"',
        ],
    ),
    (
        "env-null",
        "command: /bin/true\nenvironment:\n  EMPTY:\n",
        [
            '3:9: error: environment variable EMPTY has no value; write EMPTY: "" for an empty one',
        ],
    ),
    (
        "env-list",
        "command: /bin/true\nenvironment:\n  LIST: [a]\n",
        [
            "3:9: error: environment variable LIST must be text, not a list",
        ],
    ),
    (
        "env-newline",
        'command: /bin/true\nenvironment:\n  MULTI: "a\\nb"\n',
        [
            "3:12: error: 'environment.MULTI' contains a line break (U+000A); remove it: this "
            "value must fit on one line",
        ],
    ),
    (
        "tag-pattern",
        'command: /bin/true\ntag: Payments\ntags: [ok, "a b", "%x"]\n',
        [
            "2:6: error: 'tag' 'Payments' is not a valid tag; use lowercase letters, digits, "
            "'-' and '_', starting with a letter or digit, at most 64 characters",
            "3:12: error: 'tags' 'a b' is not a valid tag; use lowercase letters, digits, '-' "
            "and '_', starting with a letter or digit, at most 64 characters",
            "3:19: error: 'tags' '%x' is not a valid tag; use lowercase letters, digits, '-' "
            "and '_', starting with a letter or digit, at most 64 characters",
        ],
    ),
    (
        "allow-overtime-type",
        "command: /bin/true\nallow_overtime: maybe\n",
        [
            "2:17: error: 'allow_overtime' must be true or false, not a string ('maybe')",
        ],
    ),
    (
        "overlap-conflict",
        "command: /bin/true\nallow_overtime: true\noverlap: fail\n",
        [
            "2:17: error: allow_overtime: true means overlap: skip, but overlap: fail is set "
            "on line 3; remove allow_overtime (overlap says it all)",
        ],
    ),
    (
        "overlap-conflict-false",
        "command: /bin/true\nallow_overtime: false\noverlap: skip\n",
        [
            "2:17: error: allow_overtime: false means overlap: fail, but overlap: skip is set "
            "on line 3; remove allow_overtime (overlap says it all)",
        ],
    ),
    (
        "overlap-wait-without-wait",
        "command: /bin/true\noverlap: skip\noverlap_wait: 5m\n",
        [
            "3:15: error: 'overlap_wait' only applies with overlap: wait (this job has "
            "overlap: skip); remove it or set overlap: wait",
        ],
    ),
    (
        "overlap-choice",
        "command: /bin/true\noverlap: skipp\n",
        [
            "2:10: error: 'overlap' must be one of skip, wait, fail, not 'skipp'; did you "
            "mean 'skip'?",
        ],
    ),
    (
        "threshold",
        "command: /bin/true\nfailure_threshold_for_mail: 0\n",
        [
            "2:29: error: 'failure_threshold_for_mail' must be at least 1, not 0",
        ],
    ),
    (
        "failmail-type",
        "command: /bin/true\nfailmail: ops@example.org\n",
        [
            "2:11: error: 'failmail' must be a mapping with the keys from_address, "
            "to_address, not a string ('ops@example.org')",
        ],
    ),
    (
        "failmail-address",
        "command: /bin/true\nfailmail:\n  from_address: nobody\n  to_address: "
        '[ops@example.org, "not an address"]\n',
        [
            "3:17: error: 'failmail.from_address' 'nobody' is not a mail address; write "
            "user@example.org or 'Name <user@example.org>'",
            "4:33: error: 'failmail.to_address' 'not an address' is not a mail address; write "
            "user@example.org or 'Name <user@example.org>'",
        ],
    ),
    (
        "user-pattern",
        'command: /bin/true\nuser: "$USER"\n',
        [
            "2:7: error: 'user' '$USER' is not a valid user or group name; use lowercase "
            "letters, digits, '_' and '-', starting with a letter or '_', at most 32 "
            "characters",
        ],
    ),
    (
        "user-root",
        "command: /bin/true\nuser: root\n",
        [
            "2:7: error: 'user' root is not allowed: jobs run as root only when "
            "/etc/pcsystemd/pcsystemd.yaml says allow_root: true",
        ],
    ),
    (
        "user-not-allowed",
        "command: /bin/true\nuser: alice\n",
        [
            "2:7: error: user 'alice' is not allowed to run jobs; add it to allowed_users in "
            "/etc/pcsystemd/pcsystemd.yaml (allowed now: pcsystemd)",
        ],
    ),
    (
        "user-newline",
        'command: /bin/true\nuser: "alice\\nExecStart=/bin/sh"\n',
        [
            "2:13: error: 'user' contains a line break (U+000A); remove it: this value must "
            "fit on one line",
        ],
    ),
    (
        "group-not-allowed",
        "command: /bin/true\ngroup: wheel\n",
        [
            "2:8: error: group 'wheel' is not allowed; add it to allowed_groups in "
            "/etc/pcsystemd/pcsystemd.yaml (allowed now: none, or the name of an allowed "
            "user)",
        ],
    ),
    (
        "group-root",
        "command: /bin/true\ngroup: root\n",
        [
            "2:8: error: 'group' root is not allowed: jobs run as root only when "
            "/etc/pcsystemd/pcsystemd.yaml says allow_root: true",
        ],
    ),
    (
        "workdir-relative",
        "command: /bin/true\nworking_directory: srv/app\n",
        [
            "2:20: error: 'working_directory' must be an absolute path (starting with '/'), "
            "not 'srv/app'",
        ],
    ),
    (
        "workdir-percent",
        "command: /bin/true\nworking_directory: /srv/100%\n",
        [
            "2:28: error: 'working_directory' contains '%', which pcsystemd does not allow in "
            "paths (% $ quotes and backslashes are unit-file syntax); use a path without it",
        ],
    ),
    (
        "workdir-dollar",
        "command: /bin/true\nworking_directory: /srv/$HOME\n",
        [
            "2:25: error: 'working_directory' contains '$', which pcsystemd does not allow in "
            "paths (% $ quotes and backslashes are unit-file syntax); use a path without it",
        ],
    ),
    (
        "workdir-dotdot",
        "command: /bin/true\nworking_directory: /srv/app/../../etc\n",
        [
            "2:20: error: 'working_directory' '/srv/app/../../etc' contains '//', '.' or "
            "'..'; write the plain path, e.g. '/etc'",
        ],
    ),
    (
        "workdir-tab",
        'command: /bin/true\nworking_directory: "/srv/a\\tb"\n',
        [
            "2:27: error: 'working_directory' contains a tab (U+0009); remove it",
        ],
    ),
    (
        "lock-pattern",
        "command: /bin/true\nlock: ../other\n",
        [
            "2:7: error: 'lock' '../other' is not a valid name; use lowercase letters, "
            "digits, '-' and '_', starting with a letter or digit, at most 64 characters",
        ],
    ),
    (
        "catch-up-type",
        "command: /bin/true\ncatch_up: 1\n",
        [
            "2:11: error: 'catch_up' must be true or false, not a number (1)",
        ],
    ),
    (
        "timezone-unknown",
        'command: /bin/true\nschedule: "0 6 * * *"\ntimezone: Europe/Atlantis\n',
        [
            "3:11: error: 'timezone': unknown time zone 'Europe/Atlantis'; use a name from "
            "tzdata such as 'Europe/Berlin' or 'UTC' (see timedatectl list-timezones)",
        ],
    ),
    (
        "timezone-pattern",
        'command: /bin/true\ntimezone: "../../etc/passwd"\n',
        [
            "2:11: error: 'timezone': '../../etc/passwd' is not a time zone name; use a name "
            "from tzdata such as 'Europe/Berlin' or 'UTC' (see timedatectl list-timezones)",
        ],
    ),
    (
        "exit-code-range",
        "command: /bin/true\nsuccess_exit_codes: [0, 256]\n",
        [
            "2:25: error: 'success_exit_codes' must be 0 to 255, not 256",
        ],
    ),
    (
        "exit-code-type",
        'command: /bin/true\nsuccess_exit_codes: ["0"]\n',
        [
            "2:22: error: 'success_exit_codes' must be a whole number, not a string ('0')",
        ],
    ),
    (
        "exit-code-overlap",
        "command: /bin/true\nsuccess_exit_codes: [0, 3]\nunrecoverable_exit_codes: [3, 4]\n",
        [
            "3:27: error: exit code 3 is both a success and unrecoverable; remove it from one "
            "of the two lists",
        ],
    ),
    (
        "exit-codes-empty",
        "command: /bin/true\nsuccess_exit_codes: []\n",
        [
            "2:21: error: 'success_exit_codes' is an empty list; list at least one exit code "
            "or remove the key",
        ],
    ),
    (
        "retries-type",
        'command: /bin/true\nretries: "3"\n',
        [
            "2:10: error: 'retries' must be a number of retries or a mapping, not a string ('3')",
        ],
    ),
    (
        "retries-count",
        "command: /bin/true\nretries: 101\n",
        [
            "2:10: error: 'retries' must be 0 to 100, not 101",
        ],
    ),
    (
        "retries-map",
        "command: /bin/true\nretries:\n  count: 2\n  delay: 1m\n  max_delay: 30s\n  backof: 2\n",
        [
            "5:14: error: 'retries.max_delay' is shorter than 'retries.delay'; make it at "
            "least as long",
            "6:3: error: unknown key 'backof' in 'retries'; did you mean 'backoff'?",
        ],
    ),
    (
        "retries-backoff",
        "command: /bin/true\nretries:\n  backoff: 0.5\n",
        [
            "3:12: error: 'retries.backoff' must be between 1 and 10",
        ],
    ),
    (
        "max-failures",
        "command: /bin/true\nmax_consecutive_failures: -1\n",
        [
            "2:27: error: 'max_consecutive_failures' must be at least 0, not -1",
        ],
    ),
    (
        "notify-type",
        "command: /bin/true\nnotify: [ops@example.org]\n",
        [
            "2:9: error: 'notify' must be a mapping with the keys mail, webhook, on_recovery, "
            "not a list",
        ],
    ),
    (
        "notify-webhook",
        'command: /bin/true\nnotify:\n  webhook: "ftp://hooks.example.org/x"\n  on_recovery: '
        "yes please\n",
        [
            "3:12: error: 'notify.webhook' must be an http:// or https:// URL with a host "
            "name, not 'ftp://hooks.example.org/x'",
            "4:16: error: 'notify.on_recovery' must be true or false, not a string ('yes please')",
        ],
    ),
    (
        "webhook-no-host",
        'command: /bin/true\nnotify:\n  webhook: "https:///path"\n',
        [
            "3:12: error: 'notify.webhook' must be an http:// or https:// URL with a host "
            "name, not 'https:///path'",
        ],
    ),
    (
        "hardening",
        "command: /bin/true\nhardening: paranoid\n",
        [
            "2:12: error: 'hardening' must be one of none, basic, strict, not 'paranoid'",
        ],
    ),
    (
        "read-write-paths",
        "command: /bin/true\nread_write_paths: [/srv/out, relative, \"/srv/'q'\"]\n",
        [
            "2:30: error: 'read_write_paths' must be an absolute path (starting with '/'), "
            "not 'relative'",
            "2:46: error: 'read_write_paths' contains \"'\", which pcsystemd does not allow in "
            "paths (% $ quotes and backslashes are unit-file syntax); use a path without it",
        ],
    ),
    (
        "read-write-paths-type",
        "command: /bin/true\nread_write_paths: {a: b}\n",
        [
            "2:19: error: 'read_write_paths' must be an absolute path or a list of them, "
            "not a mapping",
        ],
    ),
    (
        "name-too-long",
        "command: /bin/true\nname: " + "x" * 201 + "\n",
        ["2:7: error: 'name' is longer than 200 characters; put the details in 'description'"],
    ),
    (
        "tag-too-long",
        "command: /bin/true\ntag: " + "a" * 65 + "\n",
        [
            "2:6: error: 'tag' '" + "a" * 57 + "...' is not a valid tag; use lowercase letters, "
            "digits, '-' and '_', starting with a letter or digit, at most 64 characters"
        ],
    ),
]


@pytest.mark.parametrize(("name", "text", "expected"), RULES, ids=[rule[0] for rule in RULES])
def test_each_rule_reports_its_exact_message(name: str, text: str, expected: list[str]) -> None:
    assert errors(text) == [f"job.yaml:{message}" for message in expected]


def test_every_error_of_a_file_is_reported_at_once() -> None:
    assert errors(
        'name: ""\ncommand: /bin/true\nschedule: "0 0 32 * *"\ntimeout: soon\nuser: root\n'
        "tags: [Bad]\nfrobnicate: 1\n"
    ) == [
        "job.yaml:1:7: error: 'name' is empty; write some text or remove the key",
        "job.yaml:3:16: error: 'schedule' '0 0 32 * *': day-of-month 32 is out of range; use 1-31",
        "job.yaml:4:10: error: 'timeout' 'soon' is not a duration; write '90s', '15m', '2h', "
        "'1d' or '1h30m'",
        "job.yaml:5:7: error: 'user' root is not allowed: jobs run as root only when "
        "/etc/pcsystemd/pcsystemd.yaml says allow_root: true",
        "job.yaml:6:8: error: 'tags' 'Bad' is not a valid tag; use lowercase letters, digits, "
        "'-' and '_', starting with a letter or digit, at most 64 characters",
        "job.yaml:7:1: error: unknown key 'frobnicate'; remove it or check the spelling "
        "(`pcsystemd schema` lists every key)",
    ]


def test_the_yak_job_gets_safe_defaults_without_any_global_config() -> None:
    job = valid('name: Shave the yak\ncommand: /bin/true\nschedule: "30 12 * * *"\n')
    assert job.name == "Shave the yak"
    assert job.user == "pcsystemd"
    assert job.group is None
    assert job.commands == (("/bin/true",),)
    assert [schedule.expression for schedule in job.schedules] == ["30 12 * * *"]
    assert job.all_on_calendar == ("*-*-* 12:30:00",)
    assert job.timeout_seconds == 86400
    assert job.overlap is Overlap.FAIL
    assert job.overlap_wait_seconds == 600
    assert job.lock_group == "job"
    assert job.hardening is Hardening.BASIC
    assert job.success_exit_codes == (0,)
    assert job.retries == Retries()
    assert job.failure_threshold_for_mail == 1
    assert (job.disabled, job.catch_up, job.stderr_is_failure) == (False, False, False)
    assert (job.jitter_seconds, job.max_consecutive_failures) == (0, 0)
    assert job.scheduled


def test_the_name_defaults_to_the_slug() -> None:
    assert valid("command: /bin/true\n").name == "job"


def test_process_control_keys_keep_their_meaning() -> None:
    job = valid(
        "name: Take This Job\n"
        "description: >\n"
        "    Create TPS report in the basement, execute in triplicate and shoot it down\n"
        "    the pneumatic tube.\n"
        "command:\n"
        "    - /usr/bin/puppet apply\n"
        "    - /usr/bin/run-job prepare_meal\n"
        "slow_start_command: /usr/bin/timecard --all\n"
        'schedule: "*/5 * * * *"\n'
        "disabled: true\n"
        "timeout: 30\n"
        "environment:\n"
        "    PYTHONPATH: /usr/share/invisible/pie\n"
        "    RETRIES: 3\n"
        "tag: payments\n"
        "tags: [nightly, payments]\n"
        "allow_overtime: true\n"
        "failure_threshold_for_mail: 3\n"
        "failmail:\n"
        '    from_address: "Fail Mail <fr-tech@example.org>"\n'
        "    to_address: fr-tech@example.org\n"
    )
    assert job.name == "Take This Job"
    assert job.description == (
        "Create TPS report in the basement, execute in triplicate and shoot it down "
        "the pneumatic tube."
    )
    assert job.commands == (("/usr/bin/puppet", "apply"), ("/usr/bin/run-job", "prepare_meal"))
    assert job.slow_start_commands == (("/usr/bin/timecard", "--all"),)
    assert job.disabled and not job.scheduled
    assert job.timeout_seconds == 30 * 60  # minutes, as in process-control
    assert job.environment == (("PYTHONPATH", "/usr/share/invisible/pie"), ("RETRIES", "3"))
    assert job.tags == ("payments", "nightly")
    assert job.overlap is Overlap.SKIP
    assert job.failure_threshold_for_mail == 3
    assert job.failmail.from_address == "Fail Mail <fr-tech@example.org>"
    assert job.failmail.to_address == ("fr-tech@example.org",)
    assert job.mail_recipients == ("fr-tech@example.org",)


@pytest.mark.parametrize(
    ("allow_overtime", "overlap"), [("true", Overlap.SKIP), ("false", Overlap.FAIL)]
)
def test_allow_overtime_is_overlap_in_process_control_words(
    allow_overtime: str, overlap: Overlap
) -> None:
    assert valid(f"command: x\nallow_overtime: {allow_overtime}\n").overlap is overlap
    # Saying the same thing twice is fine.
    both = f"command: x\nallow_overtime: {allow_overtime}\noverlap: {overlap}\n"
    assert valid(both).overlap is overlap


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30", 1800),
        ("1.5", 90),
        ("0", 0),
        ("90s", 90),
        ("15m", 900),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("'1h 30m'", 5400),
        ("366d", 366 * 86400),
    ],
)
def test_timeout_forms(value: str, seconds: int) -> None:
    assert valid(f"command: x\ntimeout: {value}\n").timeout_seconds == seconds


def test_own_durations_need_a_unit_except_zero() -> None:
    job = valid("command: x\noverlap: wait\noverlap_wait: 90s\njitter: 0\n")
    assert (job.overlap_wait_seconds, job.jitter_seconds) == (90, 0)


def test_commands_split_like_a_shell_but_keep_every_word() -> None:
    job = valid(
        "command:\n"
        "  - /bin/echo \"two words\" 'single $HOME' back\\ slash\n"
        "  - /bin/true\n"
        "  - /bin/true\n"
        "slow_start_command: >\n"
        "  /usr/bin/long\n"
        "  --option\n"
    )
    assert job.commands == (
        ("/bin/echo", "two words", "single $HOME", "back slash"),
        ("/bin/true",),
        ("/bin/true",),  # running a command twice can be meant
    )
    assert job.slow_start_commands == (("/usr/bin/long", "--option"),)


@given(st.text(alphabet=st.sampled_from(list("ab \t\n'\"\\$#")), max_size=30))
def test_split_command_line_agrees_with_shlex(line: str) -> None:
    try:
        expected: list[str] | str = shlex.split(line)
    except ValueError as error:
        expected = str(error).lower()
    try:
        actual: list[str] | str = split_command_line(line)
    except ValueError as error:
        actual = str(error)
    assert actual == expected


def test_free_text_may_hold_unit_syntax_the_renderer_escapes() -> None:
    job = valid(
        "name: 'Tricky 100% \"quoted\" $HOME \\ name'\n"
        "description: |\n"
        "  First line with %n.\n"
        "  [Service]\n"
        "command: /bin/true\n"
        "environment:\n"
        '  PERCENT: "50% of %i"\n'
        '  DOLLAR: "$HOME ${PATH}"\n'
        '  QUOTES: "say \\"hi\\" and \'bye\'"\n'
        "  BACKSLASH: 'C:\\temp\\'\n"
        '  SPACES: "  padded  "\n'
        "  OCTAL: 0755\n"
        "  FLOAT: 1.10\n"
        '  EMPTY: ""\n'
    )
    assert job.name == 'Tricky 100% "quoted" $HOME \\ name'
    assert job.description == "First line with %n.\n[Service]"
    assert dict(job.environment) == {
        "PERCENT": "50% of %i",
        "DOLLAR": "$HOME ${PATH}",
        "QUOTES": "say \"hi\" and 'bye'",
        "BACKSLASH": "C:\\temp\\",
        "SPACES": "  padded  ",
        "OCTAL": "0755",
        "FLOAT": "1.10",
        "EMPTY": "",
    }


def test_names_and_paths_refuse_unit_syntax() -> None:
    found = errors(
        "command: x\n"
        'user: "a\'b"\n'
        "group: 'g\\'\n"
        'lock: "100%"\n'
        "tag: $x\n"
        'read_write_paths: ["/srv/a\\\\b"]\n'
    )
    assert [line.split(": error: ")[1].split(" ")[0] for line in found] == [
        "'user'",
        "'group'",
        "'lock'",
        "'tag'",
        "'read_write_paths'",
    ]


def test_timezone_is_applied_to_every_calendar_line() -> None:
    job = valid('command: x\nschedule: "0 6 1 * mon"\ntimezone: Europe/Berlin\n')
    assert job.timezone == "Europe/Berlin"
    assert job.all_on_calendar == (
        "*-*-01 06:00:00 Europe/Berlin",
        "Mon *-*-* 06:00:00 Europe/Berlin",
    )


def test_an_unknown_timezone_does_not_hide_errors_in_the_schedule() -> None:
    assert errors('command: x\nschedule: "99 * * * *"\ntimezone: Nowhere/Land\n') == [
        "job.yaml:2:12: error: 'schedule' '99 * * * *': minute 99 is out of range; use 0-59",
        "job.yaml:3:11: error: 'timezone': unknown time zone 'Nowhere/Land'; use a name from "
        "tzdata such as 'Europe/Berlin' or 'UTC' (see timedatectl list-timezones)",
    ]


def test_schedule_list_is_a_union_without_duplicates() -> None:
    job = valid('command: x\nschedule: ["0 1 * * *", "0 2 * * *", "0 1 * * *"]\n')
    assert [schedule.expression for schedule in job.schedules] == ["0 1 * * *", "0 2 * * *"]


def test_accounts_follow_the_global_config() -> None:
    config = GlobalConfig(allowed_users=("pcsystemd", "batch"), allowed_groups=("reporting",))
    assert valid("command: x\nuser: batch\ngroup: reporting\n", config).user == "batch"
    assert valid("command: x\ngroup: batch\n", config).group == "batch"  # a user's own group
    rooted = GlobalConfig(allow_root=True)
    assert valid("command: x\nuser: root\ngroup: root\n", rooted).user == "root"
    config_file = GlobalConfig(source_path=Path("/srv/pcsystemd.yaml"))
    assert errors("command: x\nuser: batch\n", config_file) == [
        "job.yaml:2:7: error: user 'batch' is not allowed to run jobs; add it to allowed_users "
        "in /srv/pcsystemd.yaml (allowed now: pcsystemd)"
    ]


def test_retries_as_count_or_mapping() -> None:
    assert valid("command: x\nretries: 3\n").retries == Retries(count=3)
    assert valid(
        "command: x\nretries:\n  count: 2\n  delay: 30s\n  backoff: 1.5\n  max_delay: 2m\n"
    ).retries == Retries(count=2, delay_seconds=30, backoff=1.5, max_delay_seconds=120)


def test_notify_and_failmail_combine() -> None:
    job = valid(
        "command: x\nfailmail: {to_address: [a@example.org, b@example.org]}\n"
        "notify:\n  mail: [b@example.org, c@example.org]\n"
        "  webhook: https://hooks.example.org/x?token=1%202\n  on_recovery: true\n"
    )
    assert job.mail_recipients == ("b@example.org", "c@example.org", "a@example.org")
    assert job.notify.webhook == "https://hooks.example.org/x?token=1%202"
    assert job.notify.on_recovery and job.notifies


def test_null_means_not_set() -> None:
    job = valid("command: x\nname:\ntimeout: ~\nschedule:\n")
    assert (job.name, job.timeout_seconds, job.schedules) == ("job", 86400, ())


# ---------------------------------------------------------------------------------------------
# The global defaults, merged deeply under every job


DEFAULTS = """\
timeout: 45m
environment:
  LANG: C.UTF-8
  TZ: UTC
notify:
  mail: ops@example.org
  on_recovery: true
tags: [fleet]
overlap: wait
overlap_wait: 5m
"""


def test_defaults_are_merged_deeply_and_the_job_wins() -> None:
    config = with_defaults(DEFAULTS)
    job = valid(
        "command: x\nenvironment:\n  TZ: Europe/Paris\n  APP: 1\n"
        "notify:\n  webhook: https://hooks.example.org/x\ntags: [own]\n",
        config,
    )
    assert job.timeout_seconds == 45 * 60
    # Maps merge key by key (process-control's shallow update lost LANG here).
    assert job.environment == (("LANG", "C.UTF-8"), ("TZ", "Europe/Paris"), ("APP", "1"))
    assert job.notify.mail == ("ops@example.org",)
    assert job.notify.webhook == "https://hooks.example.org/x"
    assert job.notify.on_recovery
    assert job.tags == ("own",)  # lists are replaced, not appended
    assert (job.overlap, job.overlap_wait_seconds) == (Overlap.WAIT, 300)


def test_null_in_a_job_removes_an_inherited_value() -> None:
    job = valid("command: x\ntimeout:\nenvironment:\n  TZ:\nnotify:\n", with_defaults(DEFAULTS))
    assert job.timeout_seconds == 86400
    assert job.environment == (("LANG", "C.UTF-8"),)
    assert job.notify.mail == ()


def test_a_jobs_own_allow_overtime_beats_an_inherited_overlap() -> None:
    job = valid("command: x\nallow_overtime: true\n", with_defaults(DEFAULTS))
    assert job.overlap is Overlap.SKIP


def test_an_inherited_overlap_wait_is_no_error_for_a_job_that_does_not_wait() -> None:
    assert valid("command: x\noverlap: skip\n", with_defaults(DEFAULTS)).overlap is Overlap.SKIP


def test_errors_in_inherited_values_point_into_the_global_config() -> None:
    config = with_defaults("user: batch\nenvironment:\n  OK: 1\n  DEBUG: yes\n")
    assert errors("command: x\n", config) == [
        f"{CONFIG_PATH}:1:7: error: user 'batch' is not allowed to run jobs; add it to "
        f"allowed_users in {CONFIG_PATH} (allowed now: pcsystemd) (inherited from 'defaults' "
        "by job job)",
        f"{CONFIG_PATH}:4:10: error: environment variable DEBUG is a boolean (true); quote it to "
        "pass the text: DEBUG: \"yes\" (inherited from 'defaults' by job job)",
    ]


def test_defaults_given_as_plain_python_data_work_too() -> None:
    config = GlobalConfig(defaults={"timeout": 5, "environment": {"A": "1"}})
    job = valid("command: x\nenvironment:\n  B: 2\n", config)
    assert (job.timeout_seconds, job.environment) == (300, (("A", "1"), ("B", "2")))


def test_check_defaults_finds_typos_and_bad_values_once() -> None:
    defaults = parse_yaml("timout: 5\nhardening: loose\ncommand: /bin/true\n", CONFIG_PATH)
    assert [str(d) for d in check_defaults(defaults, GlobalConfig())] == [
        f"{CONFIG_PATH}:1:1: error: unknown key 'timout' in 'defaults'; did you mean 'timeout'?",
        f"{CONFIG_PATH}:2:12: error: 'defaults.hardening' must be one of none, basic, strict, "
        "not 'loose'",
    ]


# ---------------------------------------------------------------------------------------------
# The table itself and what is generated from it


def test_the_table_has_one_entry_per_key_with_help_and_example() -> None:
    keys = [key for key, _ in schema.iter_fields()]
    assert len(keys) == len(set(keys))
    for key, field in schema.iter_fields():
        assert field.help and field.example and field.type_text and field.default_text, key
        assert field.example.split(":")[0] == field.key, key


def test_every_process_control_key_is_in_the_table() -> None:
    process_control = {
        "name", "description", "command", "slow_start_command", "schedule", "disabled",
        "timeout", "environment", "tag", "tags", "allow_overtime",
        "failure_threshold_for_mail", "failmail",
    }  # fmt: skip
    assert {f.key for f in FIELDS if f.origin == "process-control"} == process_control


@pytest.mark.parametrize("field", FIELDS, ids=[field.key for field in FIELDS])
def test_every_example_is_valid_on_its_own(field: fieldparsers.Field) -> None:
    context = "" if field.key == "command" else "command: /bin/true\n"
    if field.key == "overlap_wait":
        context += "overlap: wait\n"
    job = valid(f"{context}{field.example}\n", GlobalConfig(allowed_users=("pcsystemd", "batch")))
    assert job.slug == "job"


def test_the_sample_job_loads_and_so_does_every_commented_key() -> None:
    sample = schema.sample_job_yaml()
    config = GlobalConfig(allowed_users=("pcsystemd", "batch"))
    job = valid(sample, config)
    assert job.name == "Nightly PayPal audit"
    # Uncomment every example: `#key: value` and its indented `#  continuation` lines.
    lines, in_example = [], False
    for line in sample.splitlines():
        starts = line.startswith("#") and not line.startswith("# ")
        continues = in_example and line.startswith("#  ")
        in_example = starts or continues
        lines.append(line[1:] if in_example else line)
    # allow_overtime: true would contradict the example's overlap: wait.
    everything = "\n".join(line for line in lines if line != "allow_overtime: true")
    full = valid(everything, config)
    assert full.overlap is Overlap.WAIT
    assert full.description == (
        "Downloads the PayPal audit files and loads them into the warehouse."
    )
    assert full.hardening is Hardening.STRICT
    assert full.user == "batch"


def test_the_model_is_filled_from_the_table() -> None:
    job = valid("command: x\n")
    assert {f.name for f in dataclass_fields(Job)} <= set(vars(job))


def test_the_reference_documentation_is_generated_from_the_table() -> None:
    text = schema.reference_markdown()
    if os.environ.get("PCSYSTEMD_REGENERATE") == "1":
        DOCS.write_text(text)
    assert DOCS.read_text() == text, "docs/job-format.md is stale: run with PCSYSTEMD_REGENERATE=1"
    for key, _ in schema.iter_fields():
        assert f"[`{key}`]" in text
