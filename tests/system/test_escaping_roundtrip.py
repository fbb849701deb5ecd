"""Job-supplied values in rendered units are read back by a real systemd exactly as given.

Hostile names, descriptions, environment values, working directories, writable paths, source
paths and command words (`%n`, `%%`, `$HOME`, `${X}`, `$$`, quotes, backslashes, `;`, leading
`-`/`+`/`@`, é, emoji, U+2028) are rendered by pcsystemd, loaded by systemd 252 as PID 1, and
compared with what systemd reports over D-Bus (`busctl --json`: `systemctl show` re-quotes list
properties such as Environment= with shell escapes, so it is not an exact read-back) and with
what a process started from the unit actually receives (argv, environment, working directory,
writable paths). `systemd-analyze verify` stays silent on every unit.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pcsystemd import escape, runspec
from pcsystemd.jobbuild import build_job
from pcsystemd.model import GlobalConfig, Job, Mode
from pcsystemd.render import render_all, unit_settings
from pcsystemd.yamlload import parse_yaml

from .harness import Sandbox

pytestmark = pytest.mark.system

SYSTEM_UNITS = "/etc/systemd/system"
GENERATED_UNITS = "/run/systemd/generator"
JOB_DIRECTORY = "/etc/pcsystemd/jobs"
PROBE_OUTPUT = "/run/escaping-probe.json"
HOSTILE = "%n %% $HOME ${X} $$ \"dq\" 'sq' ; -dash é 😀 \u2028"

# The words of a command line that would change if any rule of ExecStart= leaked through.
ARGUMENTS = [
    "%n",
    "%%",
    "100%",
    "$HOME",
    "${X}",
    "$$",
    "$",
    '"dq"',
    "'sq'",
    "it's",
    "back\\slash",
    "trailing\\",
    "\\",
    ";",
    "; /usr/bin/false",
    "-x",
    "+x",
    "@x",
    ":x",
    "!x",
    "",
    "  spaced  ",
    "é 😀 \u2028 \u2029",
]
ENVIRONMENT = (
    ("X", "set, so an expanded ${X} would show"),
    ("PERCENT", "%n %% 100%"),
    ("DOLLAR", "$HOME ${X} $$ $"),
    ("DOUBLE_QUOTES", 'say "hi" "'),
    ("SINGLE_QUOTES", "it's 'x' '"),
    ("BACKSLASHES", "C:\\temp\\ \\n \\"),
    ("ONLY_BACKSLASH", "\\"),
    ("SEMICOLON", "; /usr/bin/false"),
    ("DASH", "-rf"),
    ("PREFIXES", "+@!:-"),
    ("SPACES", "  padded  "),
    ("EMPTY", ""),
    ("ASSIGNMENT", "A=B C=D"),
    ("UNICODE", "é 😀 \u2028 \u2029 \u00a0"),
)
# Lines of a description that would be directives, if a comment could end early or continue.
DESCRIPTION = "\n".join(
    [
        'First line with %n and $HOME and "quotes".',
        "[Service]",
        "ExecStart=/usr/bin/false",
        "User=root",
        "col1\tcol2",
        "line ending in a backslash\\",
        "Environment=INJECTED=yes",
    ]
)
NAME = f"Tricky {HOSTILE} back\\slash end\\"
WORKING_DIRECTORY = f"/srv/escaping wd {HOSTILE} end"
READ_WRITE_PATHS = (
    f"/srv/escaping rw {HOSTILE}",
    "/srv/escaping rw trailing space ",
    "/srv/-escaping rw dash",
)
# Owned by the job user but not in ReadWritePaths=: must stay read-only under strict hardening.
CONTROL_DIRECTORY = "/srv/escaping control"
SOURCE_PATH = f"/etc/pcsystemd/escaping {HOSTILE}/hostile.yaml"
CONFIG_PATH = f"/etc/pcsystemd/config {HOSTILE}.yaml"
# Strict hardening makes / read-only, so only exact ReadWritePaths= entries are writable.
BENIGN_JOB = """\
command: /usr/bin/true
schedule: "*/15 * * * *"
hardening: strict
"""


def _job_from_yaml(text: str, slug: str) -> Job:
    """A job through the real schema (so every field has its real default)."""
    source = Path(JOB_DIRECTORY) / f"{slug}.yaml"
    job, diagnostics = build_job(
        parse_yaml(text, str(source)), path=source, slug=slug, config=GlobalConfig()
    )
    assert job is not None, [str(d) for d in diagnostics]
    return job


def hostile_job() -> Job:
    """Values the schema refuses in paths (and U+2028 anywhere), so the Job is built directly."""
    return replace(
        _job_from_yaml(BENIGN_JOB, "hostile"),
        source_path=Path(SOURCE_PATH),
        name=NAME,
        description=DESCRIPTION,
        environment=ENVIRONMENT,
        working_directory=WORKING_DIRECTORY,
        read_write_paths=READ_WRITE_PATHS,
    )


def _busctl(sandbox: Sandbox, unit: str, interface: str, name: str) -> Any:
    path = sandbox.exec(
        [
            "busctl",
            "call",
            "--json=short",
            "org.freedesktop.systemd1",
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
            "LoadUnit",
            "s",
            unit,
        ]
    ).stdout
    object_path = json.loads(path)["data"][0]
    result = sandbox.exec(
        [
            "busctl",
            "get-property",
            "--json=short",
            "org.freedesktop.systemd1",
            object_path,
            f"org.freedesktop.systemd1.{interface}",
            name,
        ]
    )
    return json.loads(result.stdout)["data"]


def _show(sandbox: Sandbox, unit: str, name: str) -> str:
    # Not Sandbox.unit_property: its strip() would also eat U+2028 and trailing spaces.
    output = sandbox.systemctl("show", "--value", f"--property={name}", unit).stdout
    assert output.endswith("\n")
    return output[:-1]


def _verify_silently(sandbox: Sandbox, *unit_files: str) -> None:
    result = sandbox.exec(["systemd-analyze", "verify", "--man=no", *unit_files], check=False)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def _make_directories(sandbox: Sandbox, job: Job) -> None:
    assert job.working_directory is not None
    for directory in (job.working_directory, *job.read_write_paths, CONTROL_DIRECTORY):
        sandbox.exec(["install", "-d", "-o", "pcsystemd", "-g", "pcsystemd", directory])


def _assert_unit_reads_back(sandbox: Sandbox, job: Job, config: GlobalConfig) -> None:
    service = job.service_name
    assert sandbox.unit_property(service, "LoadState") == "loaded"
    # Description=: specifiers, `$`, quotes, a trailing backslash, Unicode, all literal.
    expected_description = f"pcsystemd job {job.slug}: {job.name}"
    assert _show(sandbox, service, "Description") == expected_description
    assert _busctl(sandbox, service, "Unit", "Description") == expected_description
    assert _busctl(sandbox, service, "Unit", "SourcePath") == str(job.source_path)
    environment = _busctl(sandbox, service, "Service", "Environment")
    spec_prefix = f"{runspec.SPEC_VARIABLE}="
    specs = [
        entry.removeprefix(spec_prefix) for entry in environment if entry.startswith(spec_prefix)
    ]
    assert [entry for entry in environment if not entry.startswith(spec_prefix)] == [
        f"{name}={value}" for name, value in job.environment
    ]
    # The run spec (JSON in one Environment= word) reads back as the shim will decode it.
    for text in specs:
        spec = runspec.decode(text)
        assert (spec.name, spec.environment, spec.commands) == (
            job.name,
            job.environment,
            job.commands,
        )
        assert (spec.working_directory, spec.job_file) == (
            job.working_directory,
            str(job.source_path),
        )
    # systemd shows the `-` prefix (a missing directory is no error) as `!`.
    unit_file = sandbox.exec(["systemctl", "cat", service]).stdout
    prefix = "!" if "\nWorkingDirectory=-/" in unit_file else ""
    working_directory = f"{prefix}{job.working_directory}"
    assert _show(sandbox, service, "WorkingDirectory") == working_directory
    assert _busctl(sandbox, service, "Service", "WorkingDirectory") == working_directory
    settings = unit_settings(job, config)
    assert job.read_write_paths == settings.extra_writable_paths[: len(job.read_write_paths)]
    assert _busctl(sandbox, service, "Service", "ReadWritePaths") == list(
        settings.extra_writable_paths
    )
    # No description line became a directive, nothing was swallowed by a continuation.
    assert _show(sandbox, service, "User") == "pcsystemd"
    (exec_start,) = _busctl(sandbox, service, "Service", "ExecStart")
    # D-Bus shows the command before `$` expansion, which turns `$$` into `$` when it runs.
    expected_argv = list(settings.exec_start)
    assert [exec_start[1][0], *(word.replace("$$", "$") for word in exec_start[1][1:])] == (
        expected_argv
    )
    assert exec_start[0] == expected_argv[0]


def _run_probe(sandbox: Sandbox, job: Job) -> dict[str, Any]:
    """Start the job's unit with ExecStart= replaced by a probe; what did the process get?"""
    paths = [*job.read_write_paths, CONTROL_DIRECTORY]
    code = (
        "import json, os, sys; print(json.dumps({'argv': sys.argv[1:], 'environ': dict(os.environ),"
        " 'cwd': os.getcwd(), 'writable': [os.access(p, os.W_OK) for p in "
        + json.dumps(paths, ensure_ascii=False)
        + "]}))"
    )
    drop_in = (
        "[Service]\n"
        "ExecStart=\n"
        f"ExecStart={escape.exec_command(['/usr/bin/python3', '-c', code, *ARGUMENTS])}\n"
        f"StandardOutput=truncate:{PROBE_OUTPUT}\n"
    )
    sandbox.write_file(f"{SYSTEM_UNITS}/{job.service_name}.d/probe.conf", drop_in)
    sandbox.systemctl("daemon-reload")
    sandbox.exec(["systemctl", "start", "--wait", job.service_name], timeout=60)
    result: dict[str, Any] = json.loads(sandbox.read_file(PROBE_OUTPUT))
    return result


def _assert_process_got_exact_values(sandbox: Sandbox, job: Job) -> None:
    probe = _run_probe(sandbox, job)
    assert probe["argv"] == ARGUMENTS
    assert {name: probe["environ"].get(name) for name, _ in job.environment} == dict(
        job.environment
    )
    assert probe["cwd"] == job.working_directory
    # Every ReadWritePaths= entry writable, the control directory not: the paths were exact.
    assert probe["writable"] == [True] * len(job.read_write_paths) + [False]


def test_hostile_values_round_trip_through_systemd(clean_sandbox: Sandbox) -> None:
    sandbox = clean_sandbox
    config = GlobalConfig(
        shim_path="/usr/bin/pcsystemd", source_path=Path(CONFIG_PATH), mode=Mode.APPLY
    )
    job = hostile_job()
    files = render_all([job], config)
    assert {job.service_name, job.timer_name} <= set(files)
    sandbox.set_generator(False)  # apply mode: units in /etc/systemd/system only
    for name, text in files.items():
        sandbox.write_file(f"{SYSTEM_UNITS}/{name}", text)
    sandbox.write_file(SOURCE_PATH, BENIGN_JOB)
    sandbox.write_file(CONFIG_PATH, "mode: apply\n")
    _make_directories(sandbox, job)
    sandbox.systemctl("daemon-reload")

    _verify_silently(
        sandbox, f"{SYSTEM_UNITS}/{job.service_name}", f"{SYSTEM_UNITS}/{job.timer_name}"
    )
    _assert_unit_reads_back(sandbox, job, config)
    _assert_process_got_exact_values(sandbox, job)


def _yaml_string(value: str) -> str:
    # A JSON string is a YAML double-quoted scalar; raw UTF-8, as YAML's \u escapes cannot
    # write an emoji (two surrogate escapes are refused).
    return json.dumps(value, ensure_ascii=False)


# What the schema accepts: no `%$"'\` in paths, no U+2028 anywhere.
FILE_NAME = f"From a file {HOSTILE.replace(chr(0x2028), '')} back\\slash end\\"
FILE_ENVIRONMENT = tuple(
    (name, value.replace("\u2028", "").replace("\u2029", "")) for name, value in ENVIRONMENT
)
FILE_WORKING_DIRECTORY = "/srv/escaping file; -dash é 😀 end"
FILE_READ_WRITE_PATHS = ("/srv/escaping file rw ;é😀", "/srv/-escaping file rw")


def _job_file_text() -> str:
    lines = [
        f"name: {_yaml_string(FILE_NAME)}",
        f"description: {_yaml_string(DESCRIPTION)}",
        "command: /usr/bin/true",
        'schedule: "*/15 * * * *"',
        "hardening: strict",
        f"working_directory: {_yaml_string(FILE_WORKING_DIRECTORY)}",
        "read_write_paths: [" + ", ".join(map(_yaml_string, FILE_READ_WRITE_PATHS)) + "]",
        "environment:",
        *(f"  {name}: {_yaml_string(value)}" for name, value in FILE_ENVIRONMENT),
    ]
    return "\n".join(lines) + "\n"


def test_job_file_values_round_trip_through_the_generator(clean_sandbox: Sandbox) -> None:
    sandbox = clean_sandbox
    slug = "escaping-file"
    text = _job_file_text()
    expected = _job_from_yaml(text, slug)  # the host's schema reads the same values
    assert expected.name == FILE_NAME and expected.environment == FILE_ENVIRONMENT
    sandbox.write_file(f"{JOB_DIRECTORY}/{slug}.yaml", text)
    validate = sandbox.exec(["pcsystemd", "validate"], check=False)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    _make_directories(sandbox, expected)
    sandbox.systemctl("daemon-reload")  # the container's generator renders the job

    _verify_silently(
        sandbox,
        f"{GENERATED_UNITS}/{expected.service_name}",
        f"{GENERATED_UNITS}/{expected.timer_name}",
    )
    # The container's default config: no --config, the shim at /usr/bin/pcsystemd.
    _assert_unit_reads_back(sandbox, expected, GlobalConfig(shim_path="/usr/bin/pcsystemd"))
    _assert_process_got_exact_values(sandbox, expected)


@pytest.mark.parametrize(
    ("field", "escaped", "label"),
    [
        ("name", '"red \\e[31m name"', "'name' contains a control character (U+001B)"),
        ("name", '"two\\nExecStart=/usr/bin/false"', "'name' contains a line break (U+000A)"),
        ("name", '"line\\Lseparator"', "'name' contains a control character (U+2028)"),
        (
            "environment",
            '{X: "nel \\N here"}',
            "'environment.X' contains a control character (U+0085)",
        ),
        (
            "environment",
            '{X: "cr \\r here"}',
            "'environment.X' contains a carriage return (U+000D)",
        ),
        (
            "working_directory",
            '"/srv/csi \\x9b"',
            "'working_directory' contains a control character (U+009B)",
        ),
    ],
)
def test_control_characters_are_refused_before_any_unit(
    clean_sandbox: Sandbox, field: str, escaped: str, label: str
) -> None:
    sandbox = clean_sandbox
    path = f"{JOB_DIRECTORY}/refused.yaml"
    sandbox.write_file(path, f"command: /usr/bin/true\n{field}: {escaped}\n")
    sandbox.write_file(f"{JOB_DIRECTORY}/good.yaml", BENIGN_JOB)
    validate = sandbox.exec(["pcsystemd", "validate"], check=False)
    assert validate.returncode != 0
    assert f"{path}:2:" in validate.stderr and label in validate.stderr, validate.stderr
    sandbox.systemctl("daemon-reload")
    # The generator skips the job (one bad job never stops the good ones) and writes nothing
    # for it: the unit does not exist at all.
    assert sandbox.unit_property("pcsystemd-refused.service", "LoadState") == "not-found"
    assert sandbox.unit_property("pcsystemd-good.service", "LoadState") == "loaded"
