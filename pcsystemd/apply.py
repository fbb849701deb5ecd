"""Make the compiled units live in the running systemd: `pcsystemd apply` and `pcsystemd reload`.

Exactly one mode owns a host's pcsystemd units (`mode:` in the global config, `model.Mode`):

- **generator**: pcsystemd-generator compiles the jobs into /run/systemd/generator at boot and at
  every daemon-reload. A daemon-reload alone leaves a new timer inactive until the next boot, and
  turns an active timer whose job is gone into a *failed* unit without a file (systemd keeps
  what was running). `pcsystemd reload` therefore wraps the daemon-reload: it stops what is
  about to go away first, and afterwards starts what is new and resets what is left failed.
- **apply**: `pcsystemd apply` (config management) writes the units into `unit_directory`
  (/etc/systemd/system) itself, then does the same dance and also enables the timers there.

Each command refuses to run in the other mode, and the generator produces nothing in apply mode,
so the two never install competing copies. Units the *other* mode left behind (the mode was just
switched) are taken over: apply mode checks that the generator's copies vanish at its
daemon-reload (and refuses if they do not: the generator reads a config that says otherwise);
generator mode removes apply's files from /etc, which would shadow the generator's.

Every run is planned first, read-only (unit files compared, systemd asked for unit states), and
then executed; `--check` stops after planning. The plan is what a second run finds to do,
so an applied state plans nothing: that is what makes apply idempotent and `--check` honest.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pcsystemd import systemd
from pcsystemd.errors import ConfigError, Diagnostic, SystemdError, UsageError
from pcsystemd.install import Changes, is_generated_by_us, sync_directory
from pcsystemd.model import (
    DEFAULT_CONFIG_PATH,
    LOCK_UNIT_PREFIX,
    RELOAD_PATH_UNIT,
    UNIT_PREFIX,
    GlobalConfig,
    Mode,
    unit_base_name,
)

# `pcsystemd apply --check` / `reload --check`: something would change. Distinct from 1 (invalid
# job files) and 2 (usage or global config error), for Ansible's changed_when and Puppet's unless.
EXIT_WOULD_CHANGE = 3
GENERATOR_DIRECTORY = Path("/run/systemd/generator")
# Where systemd looks for system generators (systemd.generator(7)).
GENERATOR_SEARCH_PATH = (
    Path("/run/systemd/system-generators"),
    Path("/etc/systemd/system-generators"),
    Path("/usr/local/lib/systemd/system-generators"),
    Path("/usr/lib/systemd/system-generators"),
)
GENERATOR_NAME = "pcsystemd-generator"
CONFIG_VARIABLE = "PCSYSTEMD_CONFIG"
# A job's service gets TimeoutStopSec= (20 s) to record its result; wait a little longer.
STOP_TIMEOUT_SECONDS = 60.0
# `reload --auto`: changes that arrive during a reload do not start pcsystemd-reload.service
# again (systemd merges them into its running start job), so it looks itself, this often.
AUTO_RELOAD_ATTEMPTS = 10


class ModeError(UsageError):
    """The command belongs to the other mode, or the two modes would both install units."""


class Action(StrEnum):
    """One kind of step, in the order a run executes them."""

    STOP = "stop"  # before the file goes: systemd would keep a running unit as a failed orphan
    DISABLE = "disable"
    ADD = "add"
    CHANGE = "change"
    REMOVE = "remove"
    ENABLE = "enable"
    RELOAD = "reload"
    START = "start"
    RESTART = "restart"
    # Stop a lock unit no job uses any more. After the daemon-reload: before it, a running
    # job whose lock group was renamed still Requires= the old one, and would be stopped too.
    RELEASE = "release"
    RESET_FAILED = "reset-failed"

    def touches_files(self) -> bool:
        return self in (Action.ADD, Action.CHANGE, Action.REMOVE)


@dataclass(frozen=True)
class Step:
    """One thing a run does (or, under --check, would do)."""

    action: Action
    target: str  # a unit name, a file path, or "systemd" for the daemon-reload
    note: str = ""

    def describe(self) -> str:
        text = f"{self.action.value:<12} {self.target}"
        return f"{text}  ({self.note})" if self.note else text


@dataclass(frozen=True)
class Desired:
    """What the job directory asks for: unit files, and the triggers that must be running."""

    files: Mapping[str, str]
    triggers: frozenset[str]  # the jobs' timers, and generator mode's pcsystemd-reload.path
    keep: frozenset[str]  # unit bases of invalid jobs whose last good units stay
    lock_units: frozenset[str]  # the pcsystemd-lock@<group>.service instances jobs use
    job_count: int
    diagnostics: tuple[Diagnostic, ...]

    @property
    def invalid_count(self) -> int:
        return sum(1 for diagnostic in self.diagnostics if diagnostic.severity == "error")


@dataclass(frozen=True)
class Observed:
    """What systemd says about the units a plan looks at."""

    units: Mapping[str, systemd.UnitState]
    loaded: tuple[systemd.UnitSummary, ...]  # every unit named pcsystemd-* systemd has loaded
    # The unit running this command (pcsystemd-reload.service runs `reload --auto`): a plan
    # never stops it, as that would stop the plan; it ends by itself.
    own_unit: str | None = None


@dataclass(frozen=True)
class Plan:
    """The steps that bring systemd to the desired state, and what they were derived from."""

    mode: Mode
    directory: Path  # where the units live: unit_directory, or the generator's directory
    other_directory: Path  # where the other mode's units would live
    steps: tuple[Step, ...]
    warnings: tuple[str, ...]
    diff: tuple[str, ...]
    desired: Desired
    own_unit: str | None = None  # Observed.own_unit: never stopped by the plan

    @property
    def changes_anything(self) -> bool:
        return bool(self.steps)

    def of(self, action: Action) -> list[Step]:
        return [step for step in self.steps if step.action is action]


def invalid_unit_bases(diagnostics: Iterable[Diagnostic]) -> frozenset[str]:
    """Unit bases of the job files with errors: their last good units must survive."""
    return frozenset(
        unit_base_name(Path(diagnostic.path).name.removesuffix(".yaml"))
        for diagnostic in diagnostics
        if diagnostic.severity == "error"
    )


def desired_state(config: GlobalConfig, mode: Mode) -> Desired:
    """Load, switch and render every job (the same as the generator does)."""
    from pcsystemd.jobfile import load_jobs
    from pcsystemd.render import lock_unit_name, render_all
    from pcsystemd.switches import honour_runtime_switches

    if not config.job_directory.is_dir():
        # most likely a typo in job_directory or a failed deployment; an empty directory is
        # the deliberate way to remove every job
        raise ConfigError.at(
            config.job_directory,
            0,
            0,
            "the job directory does not exist; refusing to remove the units of every job "
            "(create it, empty, to do that)",
        )
    jobs, diagnostics = load_jobs(config)
    jobs = honour_runtime_switches(jobs, config)
    files = render_all(jobs, config, diagnostics)
    # The generator skips an invalid job (its directory is emptied at every run); apply keeps
    # the job's last good units so that a typo does not silently stop a job.
    keep = invalid_unit_bases(diagnostics) if mode is Mode.APPLY else frozenset()
    triggers = {job.timer_name for job in jobs if job.timer_name in files}
    if RELOAD_PATH_UNIT in files:
        triggers.add(RELOAD_PATH_UNIT)
    return Desired(
        files=files,
        triggers=frozenset(triggers),
        keep=keep,
        lock_units=frozenset(
            lock_unit_name(job.lock_group) for job in jobs if job.service_name in files
        ),
        job_count=len(jobs),
        diagnostics=tuple(diagnostics),
    )


def generated_files(directory: Path) -> list[str]:
    """Names of the unit files pcsystemd wrote into `directory` (marker checked)."""
    if not directory.is_dir():
        return []
    return sorted(path.name for path in directory.iterdir() if is_generated_by_us(path))


def _is_template(name: str) -> bool:
    return "@." in name


def observe(names: Iterable[str]) -> Observed:
    """Ask systemd about the named units and list every loaded pcsystemd-* unit."""
    units = {
        name: systemd.unit_state(name) for name in sorted(set(names)) if not _is_template(name)
    }
    return Observed(
        units=units,
        loaded=tuple(systemd.list_units(f"{UNIT_PREFIX}*")),
        own_unit=systemd.own_unit(),
    )


def _stop_order(name: str) -> tuple[int, str]:
    # A timer first, so it cannot start the service that is being stopped.
    return (0 if name.endswith(".timer") else 1, name)


def decide(
    *,
    mode: Mode,
    directory: Path,
    other_directory: Path,
    changes: Changes,
    leftovers: Sequence[str],
    desired: Desired,
    observed: Observed,
) -> tuple[list[Step], list[str]]:
    """The steps (in execution order) and warnings that take systemd from `observed` to `desired`.

    Pure: `changes` is the dry-run comparison of `directory` with the desired files, `leftovers`
    the names of pcsystemd units the other mode left in `other_directory`.
    """
    steps: list[Step] = []
    warnings: list[str] = []
    state = observed.units.get
    produced = set(desired.files)
    going = set(changes.removed) | {name for name in leftovers if name not in produced}

    # A tag target is never stopped: loaded jobs still PartOf= it would be stopped with it.
    for name in sorted(going, key=_stop_order):
        unit = state(name)
        if (
            unit is not None
            and unit.busy
            and name != observed.own_unit
            and not name.endswith(".target")
        ):
            steps.append(Step(Action.STOP, name, "its job is gone or disabled"))

    # Enablement links live in /etc next to apply mode's files (the generator makes its own).
    if mode is Mode.APPLY:
        unlink = [name for name in changes.removed if name.endswith(".timer")]
    else:
        unlink = [name for name in leftovers if name.endswith(".timer")]
    for name in sorted(unlink):
        unit = state(name)
        if unit is not None and unit.unit_file_state in ("enabled", "enabled-runtime"):
            steps.append(Step(Action.DISABLE, name))

    for action, names in (
        (Action.ADD, changes.added),
        (Action.CHANGE, changes.changed),
        (Action.REMOVE, changes.removed),
    ):
        steps += [Step(action, str(directory / name)) for name in sorted(names)]
    if mode is Mode.GENERATOR:
        # apply mode's copies in /etc would shadow the generator's units of the same name
        steps += [
            Step(Action.REMOVE, str(other_directory / name), "left by apply mode")
            for name in leftovers
        ]

    masked = set()
    for timer in sorted(desired.triggers):
        unit = state(timer)
        if unit is not None and unit.load_state == "masked":
            masked.add(timer)
            warnings.append(f"{timer} is masked: left alone (unmask it, or disable the job)")
        elif mode is Mode.APPLY and (unit is None or unit.unit_file_state != "enabled"):
            steps.append(Step(Action.ENABLE, timer))

    if any(step.action is not Action.STOP for step in steps) or leftovers:
        steps.append(Step(Action.RELOAD, "systemd"))
    else:
        stale = sorted(
            name
            for name in produced
            if (unit := state(name)) is not None and (unit.need_daemon_reload or not unit.known)
        )
        if stale:
            note = f"{stale[0]} and {len(stale) - 1} more" if len(stale) > 1 else stale[0]
            steps.append(Step(Action.RELOAD, "systemd", f"systemd has old versions of {note}"))

    changed = set(changes.changed)
    for timer in sorted(desired.triggers - masked):
        unit = state(timer)
        active = unit is not None and unit.known and unit.active_state == "active"
        if not active:
            steps.append(Step(Action.START, timer))
        elif timer in changed:
            steps.append(Step(Action.RESTART, timer))

    for name in sorted(going):
        unit = state(name)
        if unit is not None and unit.failed:
            steps.append(Step(Action.RESET_FAILED, name))
    for name in _unused_lock_units(desired, observed):
        steps.append(Step(Action.RELEASE, name, "no job uses its lock group any more"))
    for loaded in observed.loaded:
        if loaded.load_state != "not-found" or loaded.name in produced or loaded.name in going:
            continue
        # an orphan: systemd still holds a unit whose file is gone
        if loaded.active_state in systemd.BUSY_STATES and loaded.name != observed.own_unit:
            steps.append(Step(Action.STOP, loaded.name, "orphan: its file is gone"))
        elif loaded.active_state == "failed":
            steps.append(Step(Action.RESET_FAILED, loaded.name, "orphan: its file is gone"))

    order = list(Action)
    steps.sort(key=lambda step: order.index(step.action))  # stable within an action
    return steps, warnings


def lock_unit_required(directory: Path, lock_unit: str) -> bool:
    """Whether a service in `directory` names `lock_unit`, as systemd loaded it at the reload.

    The plan read the job directory before the daemon-reload, and the generator reads it
    again: a job file changed in between may use the lock group now, and stopping the lock
    unit would stop that job's run with it (Requires=).
    """
    for name in generated_files(directory):
        if name.endswith(".service") and not _is_template(name):
            try:
                if lock_unit in (directory / name).read_text(encoding="utf-8"):
                    return True
            except OSError:
                return True  # unreadable: keep the lock unit, it costs nothing
    return False


def _unused_lock_units(desired: Desired, observed: Observed) -> list[str]:
    """Active lock units of groups no job uses any more (the job was removed or renamed).

    They would stay active (exited) until the next boot. Not while apply mode keeps the last
    good units of an invalid job: which lock group those name is not known.
    """
    if desired.keep:
        return []
    return sorted(
        loaded.name
        for loaded in observed.loaded
        if loaded.name.startswith(LOCK_UNIT_PREFIX)
        and loaded.active_state in systemd.BUSY_STATES
        and loaded.name not in desired.lock_units
        and not _is_template(loaded.name)
    )


def make_plan(
    config: GlobalConfig, mode: Mode, *, generator_directory: Path = GENERATOR_DIRECTORY
) -> Plan:
    """Compare the job directory with the unit files and with systemd; change nothing."""
    desired = desired_state(config, mode)
    if mode is Mode.APPLY:
        directory, other = config.unit_directory, generator_directory
    else:
        directory, other = generator_directory, config.unit_directory
    changes = sync_directory(directory, desired.files, dry_run=True, keep=desired.keep)
    for message in changes.conflict_messages(directory):
        print(f"pcsystemd: warning: {message}", file=sys.stderr)
    leftovers = generated_files(other)
    observed = observe([*desired.files, *changes.removed, *leftovers])
    steps, warnings = decide(
        mode=mode,
        directory=directory,
        other_directory=other,
        changes=changes,
        leftovers=leftovers,
        desired=desired,
        observed=observed,
    )
    return Plan(
        mode=mode,
        directory=directory,
        other_directory=other,
        steps=tuple(steps),
        warnings=tuple(warnings),
        diff=tuple(changes.diff),
        desired=desired,
        own_unit=observed.own_unit,
    )


def execute(plan: Plan, report: Callable[[Step], None]) -> None:
    """Carry out a plan, reporting every step as it is done."""
    for step in plan.of(Action.STOP):
        if not step.target.endswith(".target"):
            systemd.stop(step.target, wait=True, timeout=STOP_TIMEOUT_SECONDS)
            report(step)
    disable = [step.target for step in plan.of(Action.DISABLE)]
    if disable:
        systemd.disable(disable, reload=False)
        for step in plan.of(Action.DISABLE):
            report(step)

    reload = bool(plan.of(Action.RELOAD))
    if plan.mode is Mode.APPLY:
        # Written afresh rather than replayed, so that what is reported is what happened.
        changes = sync_directory(plan.directory, plan.desired.files, keep=plan.desired.keep)
        for action, names in (
            (Action.ADD, changes.added),
            (Action.CHANGE, changes.changed),
            (Action.REMOVE, changes.removed),
        ):
            for name in names:
                report(Step(action, str(plan.directory / name)))
        reload = reload or changes.any
    else:
        for step in plan.of(Action.REMOVE):
            path = Path(step.target)
            if path.parent == plan.other_directory:
                path.unlink(missing_ok=True)
                report(step)

    enable = [step.target for step in plan.of(Action.ENABLE)]
    if enable:
        systemd.enable(enable, reload=False)
        for step in plan.of(Action.ENABLE):
            report(step)

    if reload:
        systemd.daemon_reload()
        report(Step(Action.RELOAD, "systemd"))
        if plan.mode is Mode.GENERATOR:
            # the generator did the file work during the reload
            for step in plan.steps:
                if step.action.touches_files() and Path(step.target).parent == plan.directory:
                    report(Step(step.action, step.target, "by the generator"))
        else:
            _refuse_generator_copies(plan)

    for step in plan.of(Action.START):
        systemd.start(step.target)
        report(step)
    for step in plan.of(Action.RESTART):
        systemd.restart(step.target)
        report(step)
    for step in plan.of(Action.RELEASE):
        if not lock_unit_required(plan.directory, step.target):
            systemd.stop(step.target, wait=True, timeout=STOP_TIMEOUT_SECONDS)
            report(step)
    _sweep(set(plan.desired.files), report, plan.own_unit)


def _refuse_generator_copies(plan: Plan) -> None:
    survivors = generated_files(plan.other_directory)
    if survivors:
        raise ModeError(
            f"pcsystemd-generator still produces units after the daemon-reload ({survivors[0]} "
            f"and {len(survivors) - 1} more in {plan.other_directory}): the global config it "
            "reads (/etc/pcsystemd/pcsystemd.yaml) does not say `mode: apply`, so both modes "
            "would install the jobs. Set `mode: apply` there, then run `pcsystemd apply` again."
        )


def _sweep(produced: set[str], report: Callable[[Step], None], own_unit: str | None) -> None:
    """Stop or reset every pcsystemd unit systemd still holds without a file (not our own)."""
    for loaded in systemd.list_units(f"{UNIT_PREFIX}*"):
        if loaded.load_state != "not-found" or loaded.name in produced:
            continue
        if loaded.active_state in systemd.BUSY_STATES and loaded.name != own_unit:
            systemd.stop(loaded.name, wait=True, timeout=STOP_TIMEOUT_SECONDS)
            report(Step(Action.STOP, loaded.name, "orphan: its file is gone"))
        if systemd.unit_state(loaded.name).failed:
            systemd.reset_failed(loaded.name)
            report(Step(Action.RESET_FAILED, loaded.name))


def refuse_other_mode(config: GlobalConfig, wanted: Mode) -> None:
    """Raise ModeError unless the global config puts `wanted` in charge of the units."""
    if config.mode is wanted:
        return
    where = config.config_file
    if wanted is Mode.APPLY:
        raise ModeError(
            f"refusing to apply: {where} says `mode: {config.mode}`, so pcsystemd-generator "
            "owns the units (it compiles the jobs into /run/systemd/generator at every "
            f"daemon-reload) and a second copy in {config.unit_directory} would shadow them. "
            "In generator mode, `pcsystemd reload` makes job changes live. To let config "
            f"management own the units instead, set `mode: apply` in {where}: the generator "
            f"then produces nothing, and `pcsystemd apply` installs the units in "
            f"{config.unit_directory} and takes over the running timers."
        )
    raise ModeError(
        f"refusing to reload: {where} says `mode: {config.mode}`, so `pcsystemd apply` owns "
        f"the units in {config.unit_directory} and the generator produces nothing; run "
        "`pcsystemd apply` instead. To let the generator own the units, set `mode: generator` "
        f"in {where} and run `pcsystemd reload`: it removes apply's units from "
        f"{config.unit_directory} and starts the generator's."
    )


# ------------------------------------------------------------------------------ the commands


def add_commands(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add `apply` and `reload` to `pcsystemd`'s parser (called by cli.build_parser)."""
    for name, handler, help_text in (
        (
            "apply",
            command_apply,
            "apply mode (config management): install the units and make systemd run them",
        ),
        (
            "reload",
            command_reload,
            "generator mode: daemon-reload, stopping what goes away and starting what is new",
        ),
    ):
        parser = add(name, handler, help_text)
        parser.add_argument(
            "--check",
            action="store_true",
            help=f"change nothing; print what would change; exit {EXIT_WOULD_CHANGE} if "
            "anything would, 0 if not (1: invalid job files)",
        )
        parser.add_argument(
            "--diff", action="store_true", help="also print the unit file changes as a diff"
        )
        if name == "reload":
            parser.add_argument(
                "--auto",
                action="store_true",
                help="what pcsystemd-reload.service runs (auto_reload): reload again while "
                "the job directory or the global config keeps changing; change nothing while a "
                "job file is invalid (exit 1), or in apply mode (exit 0)",
            )


@contextmanager
def exclusive(config: GlobalConfig) -> Iterator[None]:
    """One apply, reload, enable or disable at a time: two plans executed at once would race."""
    path = config.lock_directory.parent / "apply.lock"
    try:
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise UsageError(f"cannot open {path}: {error.strerror}") from error
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(
                "pcsystemd: waiting for another apply, reload, enable or disable", file=sys.stderr
            )
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def check_generator_view(args: argparse.Namespace, command: str) -> None:
    """Generator mode: refuse a config the generator would not see, or a missing generator."""
    if args.config or args.jobs or os.environ.get(CONFIG_VARIABLE):
        raise UsageError(
            f"`{command}` must see what the generator sees, and the generator reads only "
            f"{DEFAULT_CONFIG_PATH} and its job_directory: drop --config, --jobs and "
            f"${CONFIG_VARIABLE}"
        )
    if not any((directory / GENERATOR_NAME).exists() for directory in GENERATOR_SEARCH_PATH):
        raise UsageError(
            f"the global config says `mode: generator`, but {GENERATOR_NAME} is not installed "
            f"in any of {', '.join(str(d) for d in GENERATOR_SEARCH_PATH)}: install it "
            "(the Debian package does), or set `mode: apply` and use `pcsystemd apply`"
        )


def command_apply(args: argparse.Namespace) -> int:
    return _command(args, Mode.APPLY)


def command_reload(args: argparse.Namespace) -> int:
    return _command(args, Mode.GENERATOR)


def _command(args: argparse.Namespace, mode: Mode) -> int:
    from pcsystemd.cli import load_config
    from pcsystemd.operate import require_root

    name = "apply" if mode is Mode.APPLY else "reload"
    auto = getattr(args, "auto", False)
    if auto and args.check:
        raise UsageError("--auto changes things; it cannot be combined with --check")
    config = load_config(args)
    if not _mode_allows(config, mode, auto=auto):
        return 0
    if mode is Mode.GENERATOR:
        check_generator_view(args, "pcsystemd reload")
    if not args.check:
        require_root(f"pcsystemd {name}")
    if not systemd.is_systemd_running():
        raise SystemdError(
            f"systemd is not running on this system: `pcsystemd {name}` needs it as init"
        )
    with ExitStack() as stack:
        if not args.check:
            stack.enter_context(exclusive(config))
            # Read again under the lock: the run we waited for may have switched the mode.
            config = load_config(args)
            if not _mode_allows(config, mode, auto=auto):
                return 0
        if auto:
            return _reload_until_settled(args, config)
        return _plan_and_execute(args, config, mode)


def _mode_allows(config: GlobalConfig, mode: Mode, *, auto: bool) -> bool:
    """Whether the command may go on; ModeError when it belongs to the other mode."""
    if auto and config.mode is not Mode.GENERATOR:
        # The watcher saw the config switch to apply mode: `pcsystemd apply` takes over (and
        # removes the watcher); failing here would only leave a failed unit behind.
        print(f"pcsystemd reload --auto: mode is {config.mode}, nothing to do", file=sys.stderr)
        return False
    refuse_other_mode(config, mode)
    return True


def watched_state(config: GlobalConfig) -> list[tuple[object, ...]]:
    """What pcsystemd-reload.path watches, as comparable rows: equal rows, nothing changed.

    ctime as well as mtime: `cp -p` and rsync keep a file's mtime, never its ctime.
    """

    def row(name: str, status: os.stat_result | None) -> tuple[object, ...]:
        if status is None:
            return (name,)
        return (name, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)

    def stat_or_none(stat: Callable[[], os.stat_result]) -> os.stat_result | None:
        try:
            return stat()
        except OSError:
            return None

    rows = [
        row(str(path), stat_or_none(path.stat))
        for path in (Path(DEFAULT_CONFIG_PATH), config.job_directory)
    ]
    try:
        with os.scandir(config.job_directory) as entries:
            rows += [row(entry.name, stat_or_none(entry.stat)) for entry in entries]
    except OSError:
        pass  # the directory itself is gone: its row above says so
    return sorted(rows, key=repr)


def _reload_until_settled(args: argparse.Namespace, config: GlobalConfig) -> int:
    """`reload --auto`: reload, and again if the watched files changed meanwhile (bounded)."""
    from pcsystemd.cli import load_config

    status = 0
    for attempt in range(AUTO_RELOAD_ATTEMPTS):
        if attempt:
            config = load_config(args)
            if config.mode is not Mode.GENERATOR:
                return status
        before = watched_state(config)
        status = _plan_and_execute(args, config, Mode.GENERATOR, hold_if_invalid=True)
        if watched_state(config) == before:
            return status
        print(
            "pcsystemd reload --auto: the job directory or the global config changed during "
            "the reload; reloading again",
            file=sys.stderr,
        )
    print(
        f"pcsystemd reload --auto: still changing after {AUTO_RELOAD_ATTEMPTS} reloads; the "
        "next change starts another run",
        file=sys.stderr,
    )
    return status


def _plan_and_execute(
    args: argparse.Namespace, config: GlobalConfig, mode: Mode, *, hold_if_invalid: bool = False
) -> int:
    """Plan, print, and (without --check) execute; `hold_if_invalid`: not with invalid jobs."""
    from pcsystemd.cli import EXIT_INVALID_JOBS, EXIT_OK, print_diagnostics

    name = "apply" if mode is Mode.APPLY else "reload"
    plan = make_plan(config, mode)
    print_diagnostics(plan.desired.diagnostics)
    for warning in plan.warnings:
        print(f"pcsystemd: warning: {warning}", file=sys.stderr)
    if args.diff:
        sys.stdout.writelines(plan.diff)
    invalid = plan.desired.invalid_count
    summary = f"pcsystemd {name}: {plan.desired.job_count} job(s), {invalid} invalid; "
    if args.check:
        for step in plan.steps:
            print(f"would {step.describe()}")
        count = len(plan.steps)
        sys.stdout.flush()
        print(
            summary + (f"{count} change(s) would be made" if count else "nothing would change"),
            file=sys.stderr,
        )
        if invalid:
            return EXIT_INVALID_JOBS
        return EXIT_WOULD_CHANGE if plan.changes_anything else EXIT_OK
    if invalid and hold_if_invalid:
        # The watcher saw a file it cannot read: a typo being saved, or a copy that closed
        # before it was complete. Dropping that job's units would stop its running run for
        # it; nothing changes until the file is fixed (its fix starts the watcher again).
        print(
            summary + "nothing changed while a job file is invalid: fix it (the fix goes live "
            "by itself), or run `pcsystemd reload` to drop the invalid job's units",
            file=sys.stderr,
        )
        return EXIT_INVALID_JOBS
    done: list[Step] = []

    def report(step: Step) -> None:
        done.append(step)
        print(step.describe(), flush=True)

    execute(plan, report)
    print(
        summary + (f"{len(done)} change(s) made" if done else "nothing to change"), file=sys.stderr
    )
    return EXIT_INVALID_JOBS if invalid else EXIT_OK
