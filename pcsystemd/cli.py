"""The `pcsystemd` command: the one place where errors become messages and exit codes.

Sub-command modules are imported lazily: `run-job` is the unit's ExecStart= and must not pay
for jinja2, croniter or pystemd.
"""

from __future__ import annotations

import gc
import os
import sys

from pcsystemd import __version__
from pcsystemd.errors import ConfigError, Diagnostic, PcsystemdError, UsageError

# Not `from typing import TYPE_CHECKING`: typing (and argparse, imported where a parser is
# built) would cost every `run-job` start several milliseconds; mypy knows this spelling too.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from pcsystemd.model import GlobalConfig, Job

EXIT_OK = 0
EXIT_INVALID_JOBS = 1
EXIT_USAGE = 2

if TYPE_CHECKING:
    Handler = Callable[[argparse.Namespace], int]


def load_config(args: argparse.Namespace) -> GlobalConfig:
    """The global config, with --jobs applied on top."""
    from dataclasses import replace
    from pathlib import Path

    from pcsystemd.config import load_global_config

    config = load_global_config(Path(args.config) if args.config else None)
    if args.jobs:
        config = replace(config, job_directory=Path(args.jobs).absolute())
    return config


def print_diagnostics(diagnostics: Sequence[Diagnostic]) -> None:
    for diagnostic in diagnostics:
        print(diagnostic, file=sys.stderr)


def _error_count(diagnostics: Sequence[Diagnostic]) -> int:
    return sum(1 for diagnostic in diagnostics if diagnostic.severity == "error")


def _load_all(config: GlobalConfig, paths: Sequence[Path] | None = None) -> tuple[list[Job], int]:
    from pcsystemd.jobfile import load_jobs

    jobs, diagnostics = load_jobs(config, paths)
    print_diagnostics(diagnostics)
    return jobs, _error_count(diagnostics)


def command_generate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pcsystemd.apply import invalid_unit_bases
    from pcsystemd.install import sync_directory
    from pcsystemd.jobfile import load_jobs
    from pcsystemd.model import Mode
    from pcsystemd.render import render_all
    from pcsystemd.switches import honour_runtime_switches

    config = load_config(args)
    dry_run = args.dry_run or args.diff
    if not args.output and not dry_run and config.mode is not Mode.APPLY:
        # Copies in unit_directory (/etc) would shadow the generator's units and make later
        # job changes silently ineffective: the two modes would fight.
        raise UsageError(
            f"in generator mode (the config's `mode`), writing units into "
            f"{config.unit_directory} would shadow the generator's; give --output DIR to "
            "compile elsewhere, run `pcsystemd reload` to make job changes live, or set "
            "`mode: apply` and use `pcsystemd apply`"
        )
    output = Path(args.output) if args.output else config.unit_directory
    jobs, diagnostics = load_jobs(config)
    jobs = honour_runtime_switches(jobs, config)
    files = render_all(jobs, config, diagnostics)
    print_diagnostics(diagnostics)
    invalid = _error_count(diagnostics)
    changes = sync_directory(output, files, dry_run=dry_run, keep=invalid_unit_bases(diagnostics))
    for message in changes.conflict_messages(output):
        print(f"pcsystemd: error: {message}", file=sys.stderr)
    invalid += len(changes.conflicts)
    if args.diff:
        sys.stdout.writelines(changes.diff)
    elif dry_run:
        for label, names in (
            ("add", changes.added),
            ("change", changes.changed),
            ("remove", changes.removed),
        ):
            for name in names:
                print(f"would {label} {output / name}")
    outcome = "dry run, nothing written" if dry_run else "written"
    print(
        f"pcsystemd: {len(jobs)} job(s) compiled, {invalid} invalid; "
        f"in {output}: {changes.summary()} ({outcome})",
        file=sys.stderr,
    )
    return EXIT_INVALID_JOBS if invalid else EXIT_OK


def command_diff(args: argparse.Namespace) -> int:
    args.diff, args.dry_run = True, True
    return command_generate(args)


def command_validate(args: argparse.Namespace) -> int:
    from pathlib import Path

    config = load_config(args)
    paths = [Path(path) for path in args.paths] if args.paths else None
    jobs, invalid = _load_all(config, paths)
    print(f"pcsystemd: {len(jobs)} job(s) valid, {invalid} error(s)", file=sys.stderr)
    return EXIT_INVALID_JOBS if invalid else EXIT_OK


def _find_job(config: GlobalConfig, name: str) -> Job:
    from pathlib import Path

    from pcsystemd.jobfile import load_job

    target: str | Path = Path(name) if ("/" in name or name.endswith(".yaml")) else name
    return load_job(config, target)


def command_explain(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from pcsystemd.render import render_job
    from pcsystemd.schedule import next_fire_times

    config = load_config(args)
    job = _find_job(config, args.job)
    for name, text in render_job(job, config).items():
        print(f"### {name}")
        print(text)
    if not job.schedules:
        print("# not scheduled: runs only when started by hand")
        return EXIT_OK
    if job.disabled:
        print("# disabled: no timer is generated; these times apply once it is enabled")
    zone = ZoneInfo(job.timezone) if job.timezone else None
    # A naive local "now" (not a fixed-offset one) so times across a DST change stay right.
    now = datetime.now(zone) if zone else datetime.now()
    expressions = [schedule.expression for schedule in job.schedules]
    print(f"# next {args.count} run(s) of {', '.join(repr(e) for e in expressions)}:")
    for when in next_fire_times(expressions, now, args.count):
        local = when.astimezone()
        print(f"{local:%a %Y-%m-%d %H:%M:%S %Z}    {when.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC")
    return EXIT_OK


def command_schema(args: argparse.Namespace) -> int:
    from pcsystemd import schema

    print(schema.sample_job_yaml() if args.sample else schema.reference_markdown(), end="")
    return EXIT_OK


def _common_options(*, top_level: bool) -> argparse.ArgumentParser:
    """--config/--jobs/--debug, accepted before and after the sub-command.

    The sub-commands' copies default to SUPPRESS: a default of None there would overwrite a
    value given before the sub-command (`pcsystemd --jobs DIR explain yak`).
    """
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    default = None if top_level else argparse.SUPPRESS
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=default,
        help="global config (default: $PCSYSTEMD_CONFIG or /etc/pcsystemd/pcsystemd.yaml)",
    )
    parser.add_argument(
        "--jobs", metavar="DIR", default=default, help="job directory (overrides the config)"
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=False if top_level else argparse.SUPPRESS,
        help="show tracebacks",
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; also the source of the shell completion."""
    import argparse

    from pcsystemd import apply, operate

    sub_common = _common_options(top_level=False)
    parser = argparse.ArgumentParser(
        prog="pcsystemd",
        description="Compile audited YAML job files into systemd units and run them.",
        parents=[_common_options(top_level=True)],
    )
    parser.add_argument("--version", action="version", version=f"pcsystemd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[sub_common], help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    generate = add("generate", command_generate, "compile the job directory into unit files")
    generate.add_argument(
        "--output", metavar="DIR", help="where to write (default: unit_directory)"
    )
    mode = generate.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="only say what would change")
    mode.add_argument("--diff", action="store_true", help="print a unified diff; write nothing")
    diff = add("diff", command_diff, "show what `generate` would change, as a unified diff")
    diff.add_argument("--output", metavar="DIR", help="where units live (default: unit_directory)")
    validate = add("validate", command_validate, "check job files without writing anything")
    validate.add_argument("paths", nargs="*", metavar="PATH", help="job files (default: all)")
    explain = add("explain", command_explain, "show a job's units and its next run times")
    explain.add_argument("job", metavar="JOB|FILE")
    explain.add_argument("--count", type=int, default=5, metavar="N", help="how many run times")
    schema_parser = add("schema", command_schema, "print the job file reference (markdown)")
    schema_parser.add_argument("--sample", action="store_true", help="print a sample job instead")
    apply.add_commands(add)
    operate.add_commands(add)
    for name, help_text in (
        ("run-job", "run a job now, in this process (the units' ExecStart=)"),
        ("notify", "send the failure/recovery notice of a job's last run (the notify unit)"),
    ):
        sub = commands.add_parser(name, help=help_text, add_help=False)
        sub.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _run(argv: list[str]) -> int:
    if argv[:1] == ["run-job"]:
        # The shim parses its own arguments so its start-up path stays minimal. Its start-up
        # makes only objects that live as long as the process (modules, classes, the config
        # and the job): the garbage collector would walk them again and again for nothing.
        # shim.main freezes them and turns the collector back on before the job runs.
        gc.disable()
        try:
            from pcsystemd import shim

            return shim.main(argv[1:])
        finally:
            gc.unfreeze()
            gc.enable()
    if argv[:1] == ["notify"]:
        from pcsystemd import notify

        return notify.main(argv[1:])
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


# A job's environment (the unit's Environment=) reaches the shim's own interpreter too; these
# would change what pcsystemd itself imports. They are meant for the job, not for us.
_PYTHON_STARTUP_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE")


def _reexecute_isolated_if_needed(arguments: list[str]) -> None:
    """Run the shim again under `python -I` when the job's environment would steer it.

    The Debian package's entry point already runs with -I; a virtualenv's does not. The
    variables stay in os.environ, so the job itself still gets them.
    """
    if sys.flags.isolated or not any(os.environ.get(name) for name in _PYTHON_STARTUP_VARIABLES):
        return
    os.execv(sys.executable, [sys.executable, "-I", "-m", "pcsystemd.cli", *arguments])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `pcsystemd` console script."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if argv is None and arguments[:1] == ["run-job"]:
        _reexecute_isolated_if_needed(arguments)
    status = _main(arguments)
    if argv is None and arguments[:1] == ["run-job"]:
        _end_shim_process(status)
    return status


def _end_shim_process(status: int) -> None:
    """End the shim's process now, without the interpreter's teardown.

    Freeing every module and object at exit costs each job run several milliseconds, for
    nothing: the shim writes its log, history and journal with unbuffered system calls. What
    the teardown would still do is done here (atexit functions, flushing stdout and stderr);
    should that fail, or a thread still run, this returns and the usual teardown takes over.
    """
    import atexit

    # threading is imported only if a thread was started (runlog's writer): checking costs
    # nothing then, and importing it here would cost every run.
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return
    atexit._run_exitfuncs()
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        return
    os._exit(status)


def _main(arguments: list[str]) -> int:
    debug = "--debug" in arguments or os.environ.get("PCSYSTEMD_DEBUG") == "1"
    try:
        return _run(arguments)
    except ConfigError as error:
        print_diagnostics(error.diagnostics)
        return error.exit_code
    except UsageError as error:
        print(f"pcsystemd: error: {error}", file=sys.stderr)
        return error.exit_code
    except PcsystemdError as error:
        if debug:
            raise
        print(f"pcsystemd: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `pcsystemd list | head`: the reader left; that is not an error.
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
