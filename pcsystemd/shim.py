"""`pcsystemd run-job [--config FILE] [--jobs DIR] [--slow-start] JOB`: the units' ExecStart=.

Reads its arguments (without argparse for the unit's own forms), takes the job from the
run spec its unit passes in the environment while that is current, and reads the job file
otherwise (runspec.py), then runs it once (runner.py). What goes wrong before a run exists
(an invalid global config, a job file gone or broken since the units were made) is
reported here: to the journal at error priority, and into the job's history when it has one.

The start-up path of every job run, like runner.py: it must not import jinja2, croniter or
pystemd, and imports the compiler's modules only when the job file has to be read again.
"""

from __future__ import annotations

import gc
import os
import sys
import time

from pcsystemd import journal, runlog, runspec
from pcsystemd.errors import ConfigError, PcsystemdError, RunError
from pcsystemd.history import RunRecord, update_history
from pcsystemd.runner import EXIT_ERROR, SPEC_FROM_UNIT, SPEC_READ, SPEC_STALE, new_run_id, run_spec
from pcsystemd.vocabulary import RunResult, unit_base_name

# Only for the type checker (see runner.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from pcsystemd.model import GlobalConfig
    from pcsystemd.runspec import RunSpec


def _report(slug: str, message: str, result: RunResult = RunResult.ERROR) -> None:
    """A shim error before a run exists: journal (error priority) or the terminal."""
    fields: dict[str, str | int] = {
        "MESSAGE": f"{slug}: {message}",
        "PRIORITY": journal.PRIORITY_ERR,
        "SYSLOG_IDENTIFIER": unit_base_name(slug),
        "PCSYSTEMD_JOB": slug,
        "PCSYSTEMD_RESULT": result.value,
    }
    sent = journal.send(fields).sent()
    if journal.attached_to_journal(2):
        if not sent:
            text = "".join(f"<{journal.PRIORITY_ERR}>{line}\n" for line in message.splitlines())
            sys.stderr.write(text)
    else:
        sys.stderr.write(f"pcsystemd run-job: {slug}: {message}\n")
    sys.stderr.flush()


def _record_unloadable(config: GlobalConfig, slug: str, message: str) -> None:
    """Put a job file that vanished or broke since the units were made into its history."""
    from pcsystemd.fieldparsers import SLUG_PATTERN  # loaded already: the job load just failed
    from pcsystemd.history import history_directory

    directory = history_directory(config, slug)
    if not SLUG_PATTERN.fullmatch(slug) or not os.path.isdir(directory):
        return
    started = time.time()
    entry = RunRecord(
        run_id=new_run_id(started),
        result=RunResult.ERROR,
        start=runlog.utc_timestamp(started),
        end=runlog.utc_timestamp(started),
        duration_seconds=0.0,
        pid=os.getpid(),
        message=message,
    )
    try:
        update_history(
            directory, slug, lambda history: history.with_run(entry, config.history_length)
        )
    except RunError as error:
        _report(slug, str(error))


# The job, --config, --jobs and --slow-start.
_Arguments = tuple[str, "str | None", "str | None", bool]


def _parse_plain_arguments(argv: Sequence[str]) -> _Arguments | None:
    """The unit's own argument forms, read without argparse (which costs every run time).

    None for anything else (help, a mistake, an abbreviation, a value starting with '-'):
    argparse then reads it, with its usual messages.
    """
    values: dict[str, str] = {}
    slow_start = False
    job = None
    position = 0
    while position < len(argv):
        argument = argv[position]
        position += 1
        name, equals, value = argument.partition("=")
        if name in ("--config", "--jobs"):
            if not equals:
                if position == len(argv):
                    return None
                value = argv[position]
                position += 1
            if value.startswith("-"):
                return None
            values[name] = value
        elif argument == "--slow-start":
            slow_start = True
        elif argument == "--debug":
            continue  # read by cli.main, which shows tracebacks then
        elif argument.startswith("-") or job is not None:
            return None
        else:
            job = argument
    if job is None:
        return None
    return job, values.get("--config"), values.get("--jobs"), slow_start


def _parse_arguments(argv: Sequence[str]) -> _Arguments:
    plain = _parse_plain_arguments(argv)
    if plain is not None:
        return plain
    import argparse

    parser = argparse.ArgumentParser(
        prog="pcsystemd run-job",
        description="Run a job once, as its unit does: lock, log, timeout, history.",
    )
    parser.add_argument("--config", metavar="FILE", help="global config file")
    parser.add_argument("--jobs", metavar="DIR", help="job directory")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument(
        "--slow-start", action="store_true", help="run the job's slow_start_command instead"
    )
    parser.add_argument("job", metavar="JOB", help="the job's name (its file's basename)")
    args = parser.parse_args(list(argv))
    return args.job, args.config, args.jobs, args.slow_start


def main(argv: Sequence[str]) -> int:
    """`pcsystemd run-job [--config FILE] [--jobs DIR] [--slow-start] JOB` (argv after run-job)."""
    slug, config_path, job_directory, slow_start = _parse_arguments(argv)
    spec = runspec.from_environment()
    origin = SPEC_FROM_UNIT
    if spec is None or spec.slug != slug:
        # No spec from the unit (a run by hand), or the job file or the global config changed
        # since the unit was made (or another version made it): read them the compiler's way.
        origin = SPEC_STALE if os.environ.get(runspec.SPEC_VARIABLE) else SPEC_READ
        loaded = _load_spec(slug, config_path, job_directory)
        if isinstance(loaded, int):
            return loaded
        spec = loaded
    # Start-up is over: what it made lives until the process ends. Keep the collector (which
    # `pcsystemd run-job` pauses for start-up, in cli) from walking those objects in the run.
    gc.freeze()
    gc.enable()
    return run_spec(spec, slow_start=slow_start, die_by_signal=True, origin=origin)


def _load_spec(slug: str, config_path: str | None, job_directory: str | None) -> RunSpec | int:
    """The spec from the job file and the global config, or the exit status of a failure."""
    from dataclasses import replace
    from pathlib import Path

    from pcsystemd.config import load_global_config
    from pcsystemd.jobfile import load_job

    try:
        config = load_global_config(None if config_path is None else Path(config_path))
    except ConfigError as error:
        _report(slug, f"the global configuration is invalid:\n{error}")
        return error.exit_code
    if job_directory is not None:
        config = replace(config, job_directory=Path(job_directory).absolute())
    try:
        job = load_job(config, slug)
    except PcsystemdError as error:
        message = (
            f"cannot load the job file (changed or removed since the units were made?):\n{error}"
        )
        _report(slug, message)
        _record_unloadable(config, slug, message)
        return EXIT_ERROR
    return runspec.compile_spec(job, config)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
