"""Render the model into unit files with jinja2: `{filename: text}`, same input → same bytes."""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

import jinja2

from pcsystemd import escape, runspec
from pcsystemd.errors import Diagnostic, PcsystemdError
from pcsystemd.model import (
    DEFAULT_CONFIG_PATH,
    GENERATED_MARKER,
    KILL_GRACE_SECONDS,
    LOCK_UNIT_PREFIX,
    RECORD_MARGIN_SECONDS,
    RELOAD_PATH_UNIT,
    RELOAD_SERVICE_UNIT,
    UNIT_PREFIX,
    GlobalConfig,
    Job,
    Mode,
)

NOTIFY_TEMPLATE_UNIT = f"{UNIT_PREFIX}notify@.service"
LOCK_TEMPLATE_UNIT = f"{LOCK_UNIT_PREFIX}.service"
_SHIPPED_TEMPLATE_NAMES = ("job.service.j2", "job.timer.j2", "tag.target.j2", "header.j2")
_DEBIAN_TEMPLATES = Path("/usr/share/pcsystemd/templates")
_DEFAULT_JOB_DIRECTORY = GlobalConfig().job_directory
# Directories written unquoted into units (LogsDirectory=, the lock unit's command lines); the
# config refuses anything else with a position, this is the last line of defence.
_UNIT_SAFE_PATH = re.compile(r"/[A-Za-z0-9_./-]*")


class RenderError(PcsystemdError):
    """A template is missing or broken, or a value cannot be written safely into a unit."""


@dataclass(frozen=True)
class UnitSettings:
    """What the templates need beyond the job itself, derived here so templates stay simple."""

    exec_start: tuple[str, ...]
    lock_file: str
    lock_unit: str
    logs_directory: str | None  # relative to /var/log, for LogsDirectory=
    state_directory: str | None  # relative to /var/lib, for StateDirectory=
    extra_writable_paths: tuple[str, ...]
    kill_grace_seconds: int
    stop_timeout_seconds: int
    tag_targets: tuple[str, ...]
    notify_unit: str
    run_spec: str | None  # the shim's compiled view of the job (runspec.py); None: too large


def tag_target_name(tag: str) -> str:
    return f"{UNIT_PREFIX}tag-{tag}.target"


def lock_unit_name(group: str) -> str:
    """The instance of pcsystemd-lock@.service that creates the lock file of `group`."""
    return f"{LOCK_UNIT_PREFIX}{group}.service"


def shipped_templates_directory() -> Path:
    """The templates that come with pcsystemd: inside the package, the checkout, or Debian's."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates", _DEBIAN_TEMPLATES):
        if (candidate / "job.service.j2").is_file():
            return candidate
    raise RenderError(
        f"the shipped unit templates are missing (looked for {_SHIPPED_TEMPLATE_NAMES[0]} in "
        f"{here / 'templates'}, {here.parent / 'templates'} and {_DEBIAN_TEMPLATES}); "
        "reinstall pcsystemd"
    )


def resolve_shim_path(config: GlobalConfig) -> str:
    """The absolute path of the `pcsystemd` entry point that units run as ExecStart=."""
    if config.shim_path:
        return config.shim_path
    running = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    if running and running.name in ("pcsystemd", "pcsystemd-generator"):
        sibling = running.with_name("pcsystemd")
        if sibling.is_file():
            return str(sibling)
    found = shutil.which("pcsystemd")
    return str(Path(found).resolve()) if found else "/usr/bin/pcsystemd"


def shim_command(config: GlobalConfig, subcommand: str) -> tuple[str, ...]:
    """`pcsystemd SUBCOMMAND` with the config and job directory it must use when not default.

    The options follow the sub-command: `run-job` and `notify` parse their own arguments.
    """
    argv = [resolve_shim_path(config), subcommand]
    if config.source_path is not None and str(config.source_path) != DEFAULT_CONFIG_PATH:
        argv += ["--config", str(config.source_path)]
    if config.job_directory != _DEFAULT_JOB_DIRECTORY:
        argv += ["--jobs", str(config.job_directory)]
    return tuple(argv)


@lru_cache(maxsize=32)
def _directory_text(directory: Path) -> str:
    return str(PurePosixPath(directory))


def _child(directory: Path, name: str) -> str:
    """`str(PurePosixPath(directory) / name)` for a plain name, without pathlib at every job."""
    text = _directory_text(directory)
    if text == ".":
        return name
    return f"{text}{name}" if text.endswith("/") else f"{text}/{name}"


def _managed_directory(directory: Path, base: str, slug: str) -> str | None:
    """`LogsDirectory=`/`StateDirectory=` take paths relative to /var/log or /var/lib."""
    path = _child(directory, slug)  # what PurePosixPath(path).relative_to(base) would compare
    if path == base:
        return "."
    if path.startswith(base + "/"):
        return path[len(base) + 1 :]
    return None


def unit_settings(job: Job, config: GlobalConfig) -> UnitSettings:
    return _unit_settings(job, config, shim_command(config, "run-job"))


def _unit_settings(job: Job, config: GlobalConfig, run_job: tuple[str, ...]) -> UnitSettings:
    logs = _managed_directory(config.log_directory, "/var/log", job.slug)
    state = _managed_directory(config.state_directory, "/var/lib", job.slug)
    writable = list(job.read_write_paths)
    # Directories outside /var/log and /var/lib are not created by systemd: the shim creates
    # them, and strict hardening must leave them writable.
    if logs is None:
        writable.append(str(config.log_directory))
    if state is None:
        writable.append(str(config.state_directory))
    return UnitSettings(
        exec_start=(*run_job, job.slug),
        lock_file=_child(config.lock_directory, f"{job.lock_group}.lock"),
        lock_unit=lock_unit_name(job.lock_group),
        logs_directory=logs,
        state_directory=state,
        extra_writable_paths=tuple(dict.fromkeys(writable)),
        kill_grace_seconds=KILL_GRACE_SECONDS,
        stop_timeout_seconds=KILL_GRACE_SECONDS + RECORD_MARGIN_SECONDS,
        tag_targets=tuple(tag_target_name(tag) for tag in job.tags),
        notify_unit=f"{UNIT_PREFIX}notify@{job.slug}.service",
        run_spec=runspec.encode(runspec.compile_spec(job, config)),
    )


@lru_cache(maxsize=8)
def _environment(override_directory: Path | None) -> jinja2.Environment:
    directories = [str(shipped_templates_directory())]
    if override_directory is not None:
        directories.insert(0, str(override_directory))
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directories),
        # Read each template once per process, not stat it at every unit (and every include).
        auto_reload=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    environment.filters.update(
        unit_text=escape.unit_text,
        comment=escape.comment,
        specifiers=escape.specifiers,
        quoted=escape.quoted,
        path=escape.path,
        path_list=escape.path_list,
        exec_command=escape.exec_command,
    )
    environment.globals.update(
        environment_assignment=escape.environment_assignment,
        marker=GENERATED_MARKER,
        run_spec_variable=runspec.SPEC_VARIABLE,
    )
    return environment


def _render(config: GlobalConfig, template_name: str, **context: object) -> str:
    environment = _environment(config.templates_directory)
    try:
        text = environment.get_template(template_name).render(**context)
    except jinja2.TemplateNotFound as error:
        raise RenderError(f"unit template {error.name!r} not found") from error
    except jinja2.TemplateError as error:
        where = getattr(error, "filename", None) or template_name
        line = getattr(error, "lineno", None)
        raise RenderError(f"{where}:{line or 0}: template error: {error}") from error
    except escape.UnsafeValueError as error:
        raise RenderError(f"{context.get('source', template_name)}: {error}") from error
    return text


def render_job(job: Job, config: GlobalConfig) -> dict[str, str]:
    """The job's service unit and, when it is scheduled and enabled, its timer."""
    return _render_job(job, config, shim_command(config, "run-job"))


def _render_job(job: Job, config: GlobalConfig, run_job: tuple[str, ...]) -> dict[str, str]:
    unit = _unit_settings(job, config, run_job)
    context = {"job": job, "unit": unit, "source": str(job.source_path)}
    files = {job.service_name: _render(config, "job.service.j2", **context)}
    if job.scheduled:
        files[job.timer_name] = _render(config, "job.timer.j2", **context)
    return files


def _check_directories(config: GlobalConfig) -> None:
    for label in ("log_directory", "state_directory", "lock_directory"):
        value = str(getattr(config, label))
        if not _UNIT_SAFE_PATH.fullmatch(value):
            raise RenderError(f"{label} {value!r} cannot be written into a unit file unquoted")


def render_all(
    jobs: Iterable[Job], config: GlobalConfig, problems: list[Diagnostic] | None = None
) -> dict[str, str]:
    """Every job's units plus the shared ones: a target per tag, the notify and lock units.

    With `problems`, a job whose units cannot be rendered is reported there and left out, so
    one bad job never stops the others; without it, the first such job raises RenderError.
    """
    _check_directories(config)
    jobs = sorted(jobs, key=lambda job: job.slug)
    files: dict[str, str] = {}
    timers_by_tag: dict[str, list[str]] = {}
    run_job = shim_command(config, "run-job")  # the same for every job: looked up once
    for job in jobs:
        try:
            files.update(_render_job(job, config, run_job))
        except RenderError as error:
            if problems is None:
                raise
            problems.append(Diagnostic(str(job.source_path), 0, 0, f"units not written: {error}"))
            continue
        for tag in job.tags:
            timers = timers_by_tag.setdefault(tag, [])
            if job.scheduled:
                timers.append(job.timer_name)
    for tag in sorted(timers_by_tag):
        files[tag_target_name(tag)] = _render(
            config,
            "tag.target.j2",
            tag=tag,
            timers=timers_by_tag[tag],
            source=f"the jobs tagged {tag} in {config.job_directory}",
        )
    files[NOTIFY_TEMPLATE_UNIT] = render_notify_unit(config)
    files[LOCK_TEMPLATE_UNIT] = _render(
        config,
        LOCK_TEMPLATE_UNIT,
        lock_directory=str(config.lock_directory),
        source="pcsystemd's lock template",
    )
    files.update(render_reload_units(config))
    return dict(sorted(files.items()))


def render_reload_units(config: GlobalConfig) -> dict[str, str]:
    """Generator mode's watcher, pcsystemd-reload.path and .service (none without auto_reload).

    Apply mode has none: there config management decides when changes go live.
    """
    if config.mode is not Mode.GENERATOR or not config.auto_reload:
        return {}
    source = "the global config's auto_reload"
    # Exactly what the generator reads: the default config file (never --config) and the
    # job_directory it names; `reload` refuses other views (apply.check_generator_view).
    reload_command = escape.exec_command((resolve_shim_path(config), "reload", "--auto"))
    return {
        RELOAD_PATH_UNIT: _render(
            config,
            RELOAD_PATH_UNIT,
            job_directory=str(config.job_directory),
            config_file=DEFAULT_CONFIG_PATH,
            service=RELOAD_SERVICE_UNIT,
            source=source,
        ),
        RELOAD_SERVICE_UNIT: _render(
            config, RELOAD_SERVICE_UNIT, reload_command=reload_command, source=source
        ),
    }


def render_notify_unit(config: GlobalConfig) -> str:
    """`pcsystemd-notify@.service`: OnFailure= target of every job that notifies."""
    return _render(
        config,
        NOTIFY_TEMPLATE_UNIT,
        notify_command=escape.exec_command(shim_command(config, "notify")),
        source="pcsystemd's notify template",
    )
