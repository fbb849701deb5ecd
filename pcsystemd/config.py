"""The global config, /etc/pcsystemd/pcsystemd.yaml → GlobalConfig.

Optional: without the default file every setting has its default (jobs run as the unprivileged
`pcsystemd` user), so a lone job file compiles on a fresh machine. A file named explicitly
(`--config`, `$PCSYSTEMD_CONFIG`) must exist. Every problem is reported at once, GCC style, as a
GlobalConfigError: with a broken global config nothing can be compiled.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

from pcsystemd import fieldparsers, jobbuild, model, schema
from pcsystemd.errors import ConfigError, GlobalConfigError
from pcsystemd.fieldparsers import (
    INVALID,
    Checker,
    Parser,
    choice,
    integer,
    number,
    parse_absolute_path,
    parse_account,
    parse_boolean,
    parse_mail_address,
    string_or_list,
    type_error,
    unknown_key_message,
)
from pcsystemd.model import GlobalConfig, Mode
from pcsystemd.runspec import ABSENT, content_fingerprint
from pcsystemd.yamlload import Mark, MarkedMap, parse_yaml, read_limited

# typing is imported for the type checker only: the runtime shim's start-up (`pcsystemd
# run-job`) reaches this module, and typing alone costs it milliseconds. mypy knows the idiom.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_CONFIG_PATH = Path(model.DEFAULT_CONFIG_PATH)
CONFIG_ENVIRONMENT_VARIABLE = "PCSYSTEMD_CONFIG"
_HOST_PATTERN = re.compile(r"[A-Za-z0-9._:\[\]-]+")

# process-control's global keys, so a copied process-control.yaml gets a useful answer.
_PROCESS_CONTROL_KEYS = {
    "user": "pcsystemd calls it default_user",
    "output_directory": "pcsystemd calls it log_directory",
    "runner_path": "pcsystemd calls it shim_path",
    "run_directory": "pcsystemd keeps its locks in lock_directory",
    "cron_template": "pcsystemd writes systemd units, not a crontab; remove it",
    "output_crontab": "pcsystemd writes systemd units, not a crontab; remove it",
    "logging": "pcsystemd logs to the journal; remove it",
}


@dataclass(frozen=True)
class ConfigField:
    """One key of the global config and the GlobalConfig attribute it sets."""

    key: str
    attribute: str
    parse: Parser
    type_text: str
    help: str
    default_text: str = ""
    alias: str | None = None  # another accepted spelling (process-control's name)


def _path(ck: Checker, value: Any, mark: Mark, label: str) -> Any:
    result = parse_absolute_path(ck, value, mark, label)
    return INVALID if result is INVALID else Path(result)


# Written unquoted into unit files (LogsDirectory=, StateDirectory=, the lock unit's command
# lines), where a space or `;` would split or add words: only plain path characters.
_UNIT_SAFE_PATH = re.compile(r"/[A-Za-z0-9_./-]*")


def _unit_path(ck: Checker, value: Any, mark: Mark, label: str) -> Any:
    result = parse_absolute_path(ck, value, mark, label)
    if result is INVALID:
        return INVALID
    if not _UNIT_SAFE_PATH.fullmatch(result):
        position = next(
            index
            for index, character in enumerate(result)
            if not (character.isascii() and (character.isalnum() or character in "_./-"))
        )
        return ck.error(
            mark.shifted(position),
            f"'{label}' contains {result[position]!r}; this path goes into unit files unquoted, "
            "so it may contain only ASCII letters, digits, '_', '.', '-' and '/'",
        )
    return Path(result)


def _defaults(ck: Checker, value: Any, mark: Mark, label: str) -> Any:
    if not isinstance(value, MarkedMap):
        return type_error(ck, mark, label, "a mapping of job keys", value)
    return value  # checked key by key once the rest of the config is known


def _host(ck: Checker, value: Any, mark: Mark, label: str) -> Any:
    if not isinstance(value, str) or not _HOST_PATTERN.fullmatch(value):
        shown = fieldparsers.show(value) if isinstance(value, str) else fieldparsers.describe(value)
        return ck.error(mark, f"'{label}' must be a host name or address, not {shown}")
    return value


def _text_path(ck: Checker, value: Any, mark: Mark, label: str) -> Any:
    return parse_absolute_path(ck, value, mark, label)


_ACCOUNTS = string_or_list(parse_account, "name", allow_empty=True)
_DEFAULT = GlobalConfig()


def _default(attribute: str) -> str:
    value = getattr(_DEFAULT, attribute)
    if isinstance(value, tuple):
        return "[" + ", ".join(value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


CONFIG_FIELDS: tuple[ConfigField, ...] = (
    ConfigField(
        "mode",
        "mode",
        choice(Mode),
        "generator or apply",
        "How units reach systemd: `generator` (pcsystemd-generator at boot and daemon-reload) "
        "or `apply` (`pcsystemd apply` from config management writes unit_directory).",
    ),
    ConfigField(
        "job_directory", "job_directory", _path, "absolute path", "Where the job files are."
    ),
    ConfigField(
        "log_directory", "log_directory", _unit_path, "absolute path", "Per-run log files, per job."
    ),
    ConfigField(
        "state_directory",
        "state_directory",
        _unit_path,
        "absolute path",
        "Run history, per job.",
    ),
    ConfigField(
        "lock_directory",
        "lock_directory",
        _unit_path,
        "absolute path",
        "Lock files of the lock groups (only root may enter it).",
    ),
    ConfigField(
        "unit_directory",
        "unit_directory",
        _path,
        "absolute path",
        "Where `pcsystemd apply` and `pcsystemd generate` write units.",
    ),
    ConfigField(
        "disabled_directory",
        "disabled_directory",
        _path,
        "absolute path",
        "Flag files of `pcsystemd disable JOB`.",
    ),
    ConfigField(
        "auto_reload",
        "auto_reload",
        parse_boolean,
        "boolean",
        "Generator mode: pcsystemd-reload.path runs `pcsystemd reload` whenever the job "
        "directory or this file changes, so job changes go live by themselves. false: they go "
        "live at `pcsystemd reload` or at boot.",
    ),
    ConfigField(
        "allowed_users",
        "allowed_users",
        _ACCOUNTS,
        "list of user names",
        "Users jobs may run as, besides default_user (always allowed). root needs allow_root.",
        default_text="[] (only default_user)",
    ),
    ConfigField(
        "allowed_groups",
        "allowed_groups",
        _ACCOUNTS,
        "list of group names",
        "Groups a job may name in `group`, besides the names of allowed users.",
    ),
    ConfigField(
        "default_user",
        "default_user",
        parse_account,
        "user name",
        "The user of jobs that name none: an unprivileged system user made by the package.",
    ),
    ConfigField(
        "allow_root",
        "allow_root",
        parse_boolean,
        "boolean",
        "Whether jobs may run as root at all.",
    ),
    ConfigField(
        "trusted_owners",
        "trusted_owners",
        _ACCOUNTS,
        "list of user names",
        "Besides root, who may own the job directory and job files (the deploy user).",
    ),
    ConfigField(
        "defaults",
        "defaults",
        _defaults,
        "mapping of job keys",
        "Job keys merged under every job, mappings merged key by key (deeply); the job's own "
        "value wins. Values are checked here, once.",
        default_text="none",
        alias="default_job_config",
    ),
    ConfigField(
        "templates",
        "templates_directory",
        _path,
        "absolute path",
        "A directory whose unit templates override the shipped ones, file by file.",
        default_text="none (the shipped templates)",
    ),
    ConfigField(
        "log_retention_runs",
        "log_retention_runs",
        integer(1),
        "whole number",
        "Per-run log files kept per job.",
    ),
    ConfigField(
        "log_retention_days",
        "log_retention_days",
        integer(0),
        "whole number",
        "Log files older than this many days are removed (0: no age limit).",
    ),
    ConfigField(
        "history_length",
        "history_length",
        integer(1),
        "whole number",
        "Runs kept in each job's history.",
    ),
    ConfigField(
        "shim_path",
        "shim_path",
        _text_path,
        "absolute path",
        "The `pcsystemd` program the units run (ExecStart=).",
        default_text="the running pcsystemd",
    ),
    ConfigField(
        "mail_from",
        "mail_from",
        parse_mail_address,
        "mail address",
        "Sender of failure mail when a job's failmail names none.",
        default_text="pcsystemd@<host name>",
    ),
    ConfigField(
        "sendmail_path",
        "sendmail_path",
        _text_path,
        "absolute path",
        "The sendmail program used when it exists (else SMTP below).",
    ),
    ConfigField("smtp_host", "smtp_host", _host, "host name", "SMTP server without sendmail."),
    ConfigField("smtp_port", "smtp_port", integer(1, 65535), "port number", "SMTP port."),
    ConfigField(
        "smtp_timeout",
        "smtp_timeout",
        number(0.1, 3600),
        "seconds",
        "How long to wait for the SMTP server.",
    ),
    ConfigField(
        "webhook_timeout",
        "webhook_timeout",
        number(0.1, 3600),
        "seconds",
        "How long to wait for a webhook.",
    ),
)
# The defaults shown in the docs come from GlobalConfig itself, so they cannot drift.
CONFIG_FIELDS = tuple(
    field if field.default_text else replace(field, default_text=_default(field.attribute))
    for field in CONFIG_FIELDS
)
_BY_KEY = {field.key: field for field in CONFIG_FIELDS}
_ALIASES = {field.alias: field for field in CONFIG_FIELDS if field.alias}
# Set by the loader, not by a key of the file.
NOT_CONFIGURABLE = {"source_path", "source_fingerprint"}


def config_path(path: Path | None, environ: Mapping[str, str]) -> tuple[Path, bool]:
    """The config file to read and whether it was named explicitly (then it must exist)."""
    if path is not None:
        return path, True
    from_environment = environ.get(CONFIG_ENVIRONMENT_VARIABLE)
    if from_environment:
        return Path(from_environment), True
    return DEFAULT_CONFIG_PATH, False


def load_global_config(
    path: Path | None = None, environ: Mapping[str, str] = os.environ
) -> GlobalConfig:
    """Read the global config (None: $PCSYSTEMD_CONFIG, else the default file).

    A missing default file means all defaults; anything else wrong raises GlobalConfigError
    with every problem of the file.
    """
    path, explicit = config_path(path, environ)
    path = path.absolute()
    try:
        # O_NONBLOCK: a FIFO put in its place must not hang the generator at boot.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(descriptor, "rb") as stream:
            status = os.fstat(stream.fileno())
            mode = status.st_mode
            if not stat.S_ISREG(mode):
                raise GlobalConfigError.at(path, 0, 0, "the global config is not a regular file")
            data = read_limited(stream.fileno(), status.st_size)
    except FileNotFoundError:
        if not explicit:
            # All defaults; a run spec compiled now records that there was no file.
            return GlobalConfig(source_fingerprint=ABSENT)
        raise GlobalConfigError.at(
            path,
            0,
            0,
            "the global config file does not exist; create it (an empty file means all "
            "defaults) or name another one",
        ) from None
    except IsADirectoryError:
        raise GlobalConfigError.at(
            path, 0, 0, "the global config is a directory, not a file"
        ) from None
    except OSError as error:
        raise GlobalConfigError.at(
            path, 0, 0, f"cannot read the global config: {error.strerror}"
        ) from None
    # The global config decides who jobs may run as (allow_root, allowed_users): only root,
    # or the person running this command on their own file, may be able to change it.
    if mode & (stat.S_IWOTH | stat.S_IWGRP):
        raise GlobalConfigError.at(
            path,
            0,
            0,
            f"the global config is writable by its group or by anyone (mode "
            f"{stat.S_IMODE(mode):04o}), who could then allow root jobs; run chmod go-w {path}",
        )
    if status.st_uid not in (0, os.geteuid()):
        raise GlobalConfigError.at(
            path,
            0,
            0,
            f"the global config is owned by uid {status.st_uid}, not root, who could then allow "
            f"root jobs; run chown root: {path}",
        )
    try:
        data_map = parse_yaml(data, path)
    except ConfigError as error:
        raise GlobalConfigError(error.diagnostics) from None
    config = parse_global_config(data_map, path)
    # The run specs compiled under this config record what it was compiled from.
    return replace(config, source_fingerprint=content_fingerprint(data) or "")


def parse_global_config(data: MarkedMap, path: Path) -> GlobalConfig:
    """Validate a parsed global config; raise GlobalConfigError with every problem."""
    ck = Checker(str(path), _DEFAULT)
    values: dict[str, Any] = {}
    seen: dict[str, str] = {}  # attribute → the key that set it
    for key in data:
        field = _BY_KEY.get(key) or _ALIASES.get(key)
        if field is None:
            _unknown_key(ck, data, key)
            continue
        if field.attribute in seen:
            ck.error(
                data.key_mark(key),
                f"'{key}' and '{seen[field.attribute]}' are the same setting "
                f"('{key}' is process-control's name); keep only one",
            )
            continue
        seen[field.attribute] = key
        if data[key] is None:
            continue
        values[field.attribute] = field.parse(ck, data[key], data.value_mark(key), key)
    valid = {name: value for name, value in values.items() if value is not INVALID}
    default_user = valid.get("default_user", _DEFAULT.default_user)
    allow_root = valid.get("allow_root", _DEFAULT.allow_root)
    configured_users = valid.get("allowed_users", ())
    # The default user is always allowed: jobs that name no user run as it.
    valid["allowed_users"] = tuple(dict.fromkeys((*configured_users, default_user)))
    if not allow_root:
        for key, names in (("default_user", (default_user,)), ("allowed_users", configured_users)):
            if key in data and "root" in names:
                ck.error(
                    data.value_mark(key) if key in data else data.mark,
                    f"'{key}' names root, but allow_root is false; set allow_root: true "
                    "if jobs really must run as root, or name another user",
                )
    templates = valid.get("templates_directory")
    if templates is not None and not templates.is_dir():
        ck.error(
            data.value_mark("templates"),
            f"'templates' {templates} is not a directory; create it or remove the key",
        )
    if ck.failed:
        raise GlobalConfigError(ck.diagnostics)
    config = GlobalConfig(source_path=path, **valid)
    if config.defaults:
        problems = jobbuild.check_defaults(_marked(config.defaults), config)
        if problems:
            raise GlobalConfigError(problems)
    return config


def _marked(defaults: Mapping[str, object]) -> MarkedMap:
    assert isinstance(defaults, MarkedMap)
    return defaults


def _unknown_key(ck: Checker, data: MarkedMap, key: str) -> None:
    hint = _PROCESS_CONTROL_KEYS.get(key)
    if hint is not None:
        ck.error(data.key_mark(key), f"'{key}' is a process-control setting; {hint}")
        return
    if key in schema.FIELDS_BY_KEY:
        ck.error(
            data.key_mark(key),
            f"'{key}' is a job key, not a global setting; to give every job a {key}, "
            "put it under 'defaults:'",
        )
        return
    known = [field.key for field in CONFIG_FIELDS]
    ck.error(data.key_mark(key), unknown_key_message(key, known, " in the global config"))


def configurable_attributes() -> set[str]:
    """GlobalConfig attributes a config key can set (a test keeps the table complete)."""
    return {field.attribute for field in CONFIG_FIELDS}


def all_attributes() -> set[str]:
    return {field.name for field in fields(GlobalConfig)} - NOT_CONFIGURABLE
