"""`pcsystemd-generator`: systemd runs it at boot and on every daemon-reload (systemd.generator(7)).

It compiles the job directory into the generator's normal output directory and links every
enabled timer into `timers.target.wants/` (and, with `auto_reload`, the watcher
pcsystemd-reload.path into `paths.target.wants/`). It must never fail the boot: a bad job is
skipped and reported (to the kernel log, which the journal picks up, as generators have no
journal of their own this early), and even a broken global config only means "no jobs". It
uses no D-Bus and writes nothing outside the directory systemd hands it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pcsystemd.errors import Diagnostic, PcsystemdError
from pcsystemd.model import RELOAD_PATH_UNIT, GlobalConfig, Mode

_KMSG = Path("/dev/kmsg")
_ERROR, _WARNING, _INFO = 3, 4, 6


def report(priority: int, message: str) -> None:
    """One line to the kernel log when systemd runs us, else (a person or a test) to stderr."""
    text = f"pcsystemd-generator: {message}\n"
    # systemd (251+) sets SYSTEMD_SCOPE for generators; nobody else should write to kmsg.
    if "SYSTEMD_SCOPE" not in os.environ:
        sys.stderr.write(text)
        return
    try:
        with _KMSG.open("w", encoding="utf-8", errors="replace") as kmsg:
            kmsg.write(f"<{priority}>{text}")
            return
    except OSError:
        pass
    sys.stderr.write(text)


def generate_into(directory: Path, config: GlobalConfig) -> tuple[int, list[Diagnostic]]:
    """Write every valid job's units and wants-links into `directory`; return the job count."""
    from pcsystemd.jobfile import load_jobs
    from pcsystemd.render import render_all
    from pcsystemd.switches import honour_runtime_switches

    jobs, diagnostics = load_jobs(config)
    jobs = honour_runtime_switches(jobs, config)
    files = render_all(jobs, config, diagnostics)
    _write(directory, files)
    timers = [job.timer_name for job in jobs if job.timer_name in files]
    _link(directory, "timers.target.wants", timers)
    return sum(1 for job in jobs if job.service_name in files), diagnostics


def keep_watching(directory: Path) -> None:
    """With an unreadable global config: still watch (the default paths) for its fix.

    Without this, the next daemon-reload would take the watcher away, and the fixed config
    would not go live by itself. Its run fails, on the same config error, until then.
    """
    from pcsystemd.render import render_reload_units

    try:
        _write(directory, render_reload_units(GlobalConfig()))
    except (PcsystemdError, OSError) as error:
        report(_ERROR, f"no watcher either: {error}")


def _write(directory: Path, files: dict[str, str]) -> None:
    """Write the unit files; the watcher (auto_reload), when among them, is enabled too."""
    # systemd hands us a fresh, empty directory on a tmpfs that nobody reads until we exit:
    # plain writes suffice (no temporary files, no fsync; at boot every millisecond counts).
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    # The watcher starts with the other path units at boot.
    _link(directory, "paths.target.wants", [RELOAD_PATH_UNIT] if RELOAD_PATH_UNIT in files else [])


def _link(directory: Path, wants_directory: str, units: list[str]) -> None:
    """`<directory>/<wants_directory>/<unit>` → the unit: what `systemctl enable` would make."""
    if not units:
        return
    wants = directory / wants_directory
    wants.mkdir(exist_ok=True)
    for unit in units:
        link = wants / unit
        if not link.is_symlink():
            link.symlink_to(directory / unit)


def run(argv: Sequence[str]) -> int:
    if len(argv) not in (1, 3):
        report(_ERROR, f"expected 1 or 3 directory arguments, got {len(argv)}")
        return 0
    normal_directory = Path(argv[0])
    from pcsystemd.config import load_global_config

    try:
        config = load_global_config(None)
    except PcsystemdError as error:
        report(_ERROR, f"no jobs generated: {error}")
        keep_watching(normal_directory)
        return 0
    try:
        if config.mode is not Mode.GENERATOR:
            report(
                _INFO, f"mode is {config.mode}: units come from `pcsystemd apply`; nothing to do"
            )
            return 0
        count, diagnostics = generate_into(normal_directory, config)
    except PcsystemdError as error:
        report(_ERROR, f"no jobs generated: {error}")
        return 0
    for diagnostic in diagnostics:
        priority = _ERROR if diagnostic.severity == "error" else _WARNING
        report(priority, f"{diagnostic} (job skipped)" if priority == _ERROR else str(diagnostic))
    errors = sum(1 for diagnostic in diagnostics if diagnostic.severity == "error")
    if errors or os.environ.get("PCSYSTEMD_GENERATOR_VERBOSE") == "1":
        report(_INFO, f"{count} job(s) generated, {errors} problem(s) in job files")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `pcsystemd-generator`; always exits 0 so the boot goes on."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        return run(arguments)
    except Exception as error:  # a generator must never fail the boot, whatever happened
        report(_ERROR, f"internal error, no jobs generated: {type(error).__name__}: {error}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
