"""The run spec: the unit passes the compiled job to the shim, which trusts it only while the
job file and the global config are what it was compiled from (pcsystemd/runspec.py).

Every test runs `pcsystemd run-job` through cli.main in a process of its own, as the Debian
entry point does (python -IS), with $PCSYSTEMD_RUN_SPEC set the way the job's unit sets it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from shim_helpers import write_root_job_setup

from pcsystemd import locking, runner, runspec
from pcsystemd.config import load_global_config
from pcsystemd.jobfile import load_job
from pcsystemd.record import replace
from pcsystemd.vocabulary import DEFAULT_CONFIG_PATH

REPOSITORY = Path(__file__).resolve().parents[2]
# The modules the spec spares every run (what the slow way, reading the job file, imports).
HEAVY = (
    "yaml",
    "dataclasses",
    "pathlib",
    "json",
    "subprocess",
    "typing",
    "inspect",
    "jinja2",
    "croniter",
    "pystemd",
    "pcsystemd.model",
    "pcsystemd.fieldparsers",
    "pcsystemd.schema",
    "pcsystemd.jobbuild",
)


ECHO = "/bin/echo compiled"  # the job most tests run


def unit_spec(config_file: Path) -> str:
    """$PCSYSTEMD_RUN_SPEC as the renderer puts it into the job's unit."""
    config = load_global_config(config_file)
    text = runspec.encode(runspec.compile_spec(load_job(config, "quick"), config))
    assert text is not None
    return text


def run_job(
    config_file: Path, spec: str | None, *, command: str = "run-job"
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """The shim as the unit runs it; returns the process and the modules it had imported."""
    code = (
        "import atexit, sys\n"
        f"sys.path.insert(0, {str(REPOSITORY)!r})\n"
        # The slow way needs PyYAML: wherever this interpreter has it.
        f"sys.path.extend({[p for p in sys.path if 'packages' in p]!r})\n"
        "atexit.register(lambda: print(' '.join(sorted(sys.modules))))\n"
        "from pcsystemd.cli import main\n"
        "sys.exit(main())\n"
    )
    environment = {"PATH": "/usr/bin:/bin"}
    if spec is not None:
        environment[runspec.SPEC_VARIABLE] = spec
    result = subprocess.run(
        [sys.executable, "-IS", "-c", code, command, "--config", str(config_file), "quick"],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    modules = result.stdout.strip().splitlines()[-1].split() if result.stdout.strip() else []
    # The module report is the last line: without it, no check of `modules` could fail.
    assert "pcsystemd.cli" in modules, result
    return result, modules


def only_log(tmp_path: Path) -> str:
    [log] = (tmp_path / "log" / "quick").glob("quick-*.log")
    return log.read_text()


def test_a_current_spec_runs_the_job_without_reading_it_the_slow_way(tmp_path: Path) -> None:
    config_file = write_root_job_setup(tmp_path, "/usr/bin/env")
    result, modules = run_job(config_file, unit_spec(config_file))
    assert result.returncode == 0, result
    log = only_log(tmp_path)
    assert f"# job file: {tmp_path / 'jobs' / 'quick.yaml'} ({runner.SPEC_FROM_UNIT})" in log
    loaded = [name for name in modules if name in HEAVY or name.split(".")[0] in HEAVY]
    assert loaded == [], loaded
    # The spec is the shim's, not the job's: env printed the job's environment.
    assert " [stdout] PCSYSTEMD_JOB=quick\n" in log
    assert runspec.SPEC_VARIABLE not in log


def test_an_edited_job_file_is_read_again(tmp_path: Path) -> None:
    config_file = write_root_job_setup(tmp_path, ECHO)
    spec = unit_spec(config_file)
    job_file = tmp_path / "jobs" / "quick.yaml"
    job_file.write_text("name: Quick\ncommand: /bin/echo edited\nuser: root\n")
    result, modules = run_job(config_file, spec)
    assert result.returncode == 0, result
    log = only_log(tmp_path)
    assert " [stdout] edited\n" in log
    assert f"# job file: {job_file} ({runner.SPEC_STALE})" in log
    assert "yaml" in modules
    assert "changed since this unit was generated" in result.stderr


def test_an_edit_that_keeps_the_size_is_noticed(tmp_path: Path) -> None:
    config_file = write_root_job_setup(tmp_path, "/bin/echo aaaa")
    spec = unit_spec(config_file)
    (tmp_path / "jobs" / "quick.yaml").write_text(
        "name: Quick\ncommand: /bin/echo bbbb\nuser: root\n"
    )
    assert run_job(config_file, spec)[0].returncode == 0
    assert " [stdout] bbbb\n" in only_log(tmp_path)


def test_a_changed_global_config_is_read_again(tmp_path: Path) -> None:
    config_file = write_root_job_setup(tmp_path, ECHO)
    spec = unit_spec(config_file)
    with config_file.open("a") as config:
        config.write("history_length: 3\n")
    result, _ = run_job(config_file, spec)
    assert result.returncode == 0, result
    assert f"({runner.SPEC_STALE})" in only_log(tmp_path)


def test_a_removed_job_file_fails_the_run_clearly(tmp_path: Path) -> None:
    config_file = write_root_job_setup(tmp_path, ECHO)
    spec = unit_spec(config_file)
    (tmp_path / "jobs" / "quick.yaml").unlink()
    result, _ = run_job(config_file, spec)
    assert result.returncode == runner.EXIT_ERROR, result
    assert "cannot load the job file" in result.stderr
    assert not (tmp_path / "log" / "quick").exists()


def test_a_job_file_made_invalid_fails_the_run_with_its_position(tmp_path: Path) -> None:
    config_file = write_root_job_setup(tmp_path, ECHO)
    spec = unit_spec(config_file)
    (tmp_path / "jobs" / "quick.yaml").write_text("name: Quick\ncommand: /bin/true\nschedul: x\n")
    result, _ = run_job(config_file, spec)
    assert result.returncode == runner.EXIT_ERROR, result
    assert "quick.yaml:3:1" in result.stderr


@pytest.mark.parametrize(
    "mangle",
    [
        lambda data: {**data, "format": 999},  # another version's spec
        lambda data: {key: value for key, value in data.items() if key != "user"},
        lambda data: {**data, "surprise": 1},
        lambda data: [data],
    ],
)
def test_a_spec_of_another_format_is_not_used(tmp_path: Path, mangle: object) -> None:
    config_file = write_root_job_setup(tmp_path, ECHO)
    data = json.loads(unit_spec(config_file))
    assert callable(mangle)
    result, _ = run_job(config_file, json.dumps(mangle(data)))
    assert result.returncode == 0, result
    assert f"({runner.SPEC_STALE})" in only_log(tmp_path)


def test_a_spec_round_trips_and_says_what_it_was_compiled_from(tmp_path: Path) -> None:
    config_file = write_root_job_setup(tmp_path, ECHO)
    config = load_global_config(config_file)
    job = load_job(config, "quick")
    spec = runspec.compile_spec(job, config)
    text = runspec.encode(spec)
    assert text is not None
    assert runspec.decode(text) == spec
    assert spec.job_file == str(tmp_path / "jobs" / "quick.yaml")
    assert spec.config_file == str(config_file)
    assert runspec.is_current(spec)
    assert locking.lock_file_in(spec.lock_directory, spec.lock_group) == str(
        tmp_path / "locks" / "quick.lock"
    )
    assert [spec.retry_delay_before(n) for n in (1, 2, 3)] == [
        job.retries.delay_before(n) for n in (1, 2, 3)
    ]


def test_no_config_file_is_a_fingerprint_too(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    assert runspec.fingerprint(str(missing)) == runspec.ABSENT
    missing.write_text("")
    assert runspec.fingerprint(str(missing)) not in (None, runspec.ABSENT)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert runspec.fingerprint(str(fifo)) is None  # never matches, never hangs


def test_no_spec_when_the_job_file_cannot_be_fingerprinted_or_it_is_too_large(
    tmp_path: Path,
) -> None:
    config_file = write_root_job_setup(tmp_path, ECHO)
    config = load_global_config(config_file)
    spec = runspec.compile_spec(load_job(config, "quick"), config)
    assert runspec.encode(replace(spec, job_fingerprint="")) is None
    assert runspec.encode(replace(spec, job_fingerprint=runspec.ABSENT)) is None
    huge = (("X", "y" * runspec.MAX_SPEC_BYTES),)
    assert runspec.encode(replace(spec, environment=huge)) is None


def test_the_spec_records_what_was_compiled_not_what_is_there_later(tmp_path: Path) -> None:
    # An edit that lands between the compiler reading the job file (or the config) and writing
    # the unit must not be taken as compiled: the spec fingerprints the bytes it was built from.
    config_file = write_root_job_setup(tmp_path, ECHO)
    config = load_global_config(config_file)
    job = load_job(config, "quick")
    assert job.source_fingerprint == runspec.fingerprint(str(job.source_path))
    job.source_path.write_text("name: Quick\ncommand: /bin/echo edited meanwhile\nuser: root\n")
    config_file.write_text(config_file.read_text() + "# edited meanwhile\n")
    spec = runspec.compile_spec(job, config)
    assert spec.commands == (("/bin/echo", "compiled"),)
    assert not runspec.is_current(spec)
    finished, _ = run_job(config_file, runspec.encode(spec))
    assert finished.returncode == 0, finished.stderr
    assert f"({runner.SPEC_STALE})" in only_log(tmp_path)
    assert "edited meanwhile" in only_log(tmp_path)


def test_a_missing_default_config_is_recorded_as_absent_when_loaded() -> None:
    if os.path.exists(DEFAULT_CONFIG_PATH):
        pytest.skip("this machine has a global config")
    config = load_global_config(None, {})
    assert config.source_fingerprint == runspec.ABSENT
    assert runspec.config_fingerprint_of(config) == runspec.ABSENT
