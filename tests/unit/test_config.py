"""The global config: defaults without a file, every key, and every problem reported at once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pcsystemd import config as config_module
from pcsystemd.config import (
    CONFIG_FIELDS,
    all_attributes,
    configurable_attributes,
    load_global_config,
    parse_global_config,
)
from pcsystemd.errors import GlobalConfigError
from pcsystemd.model import GlobalConfig, Mode
from pcsystemd.yamlload import MarkedMap, parse_yaml

CONFIG = Path("/etc/pcsystemd/pcsystemd.yaml")


def parse(text: str) -> GlobalConfig:
    return parse_global_config(parse_yaml(text, CONFIG), CONFIG)


def problems(text: str) -> list[str]:
    with pytest.raises(GlobalConfigError) as caught:
        parse(text)
    return [str(diagnostic) for diagnostic in caught.value.diagnostics]


@pytest.fixture
def no_default_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the default config path at a file that does not exist."""
    missing = tmp_path / "absent" / "pcsystemd.yaml"
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", missing)
    return missing


def test_a_missing_default_file_means_all_defaults(no_default_file: Path) -> None:
    assert load_global_config(None, environ={}) == GlobalConfig()


def test_the_default_user_is_unprivileged_and_allowed() -> None:
    config = GlobalConfig()
    assert config.default_user == "pcsystemd"
    assert config.user_allowed("pcsystemd")
    assert not config.user_allowed("root") and not config.allow_root


def test_a_missing_explicit_file_is_an_error(tmp_path: Path, no_default_file: Path) -> None:
    missing = tmp_path / "nope.yaml"
    for path, environ in ((missing, {}), (None, {"PCSYSTEMD_CONFIG": str(missing)})):
        with pytest.raises(GlobalConfigError) as caught:
            load_global_config(path, environ=environ)
        assert str(caught.value) == (
            f"{missing}: error: the global config file does not exist; create it (an empty "
            "file means all defaults) or name another one"
        )
        assert caught.value.exit_code == 2


def test_the_environment_variable_names_the_file(tmp_path: Path, no_default_file: Path) -> None:
    path = tmp_path / "pcsystemd.yaml"
    path.write_text("default_user: batch\n")
    config = load_global_config(None, environ={"PCSYSTEMD_CONFIG": str(path)})
    assert (config.default_user, config.source_path) == ("batch", path)
    # An empty variable is no variable.
    assert load_global_config(None, environ={"PCSYSTEMD_CONFIG": ""}) == GlobalConfig()


def test_an_empty_file_means_all_defaults(tmp_path: Path) -> None:
    path = tmp_path / "pcsystemd.yaml"
    path.write_text("# nothing configured yet\n")
    config = load_global_config(path, environ={})
    assert config == GlobalConfig(source_path=path)


def test_a_relative_path_is_remembered_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dev.yaml").write_text("")
    monkeypatch.chdir(tmp_path)
    assert load_global_config(Path("dev.yaml"), environ={}).source_path == tmp_path / "dev.yaml"


def test_every_key_is_read() -> None:
    config = parse(
        "mode: apply\n"
        "job_directory: /srv/jobs\n"
        "log_directory: /srv/log\n"
        "state_directory: /srv/state\n"
        "lock_directory: /run/locks\n"
        "unit_directory: /run/units\n"
        "disabled_directory: /srv/disabled\n"
        "allowed_users: [batch, reports]\n"
        "allowed_groups: reporting\n"
        "default_user: batch\n"
        "allow_root: true\n"
        "trusted_owners: [deploy]\n"
        "defaults: {timeout: 10}\n"
        "templates: /\n"
        "log_retention_runs: 5\n"
        "log_retention_days: 0\n"
        "history_length: 7\n"
        "shim_path: /usr/local/bin/pcsystemd\n"
        "mail_from: jobs@example.org\n"
        "sendmail_path: /usr/lib/sendmail\n"
        "smtp_host: mail.example.org\n"
        "smtp_port: 587\n"
        "smtp_timeout: 5\n"
        "webhook_timeout: 2.5\n"
    )
    assert config.mode is Mode.APPLY
    assert (config.job_directory, config.log_directory) == (Path("/srv/jobs"), Path("/srv/log"))
    assert (config.state_directory, config.lock_directory) == (
        Path("/srv/state"),
        Path("/run/locks"),
    )
    assert config.unit_directory == Path("/run/units")
    assert config.disabled_directory == Path("/srv/disabled")
    assert config.allowed_users == ("batch", "reports")
    assert config.allowed_groups == ("reporting",)
    assert (config.default_user, config.allow_root) == ("batch", True)
    assert config.trusted_owners == ("deploy",)
    assert config.defaults == {"timeout": 10}
    assert isinstance(config.defaults, MarkedMap)
    assert config.templates_directory == Path("/")
    assert (config.log_retention_runs, config.log_retention_days) == (5, 0)
    assert config.history_length == 7
    assert config.shim_path == "/usr/local/bin/pcsystemd"
    assert (config.mail_from, config.sendmail_path) == ("jobs@example.org", "/usr/lib/sendmail")
    assert (config.smtp_host, config.smtp_port) == ("mail.example.org", 587)
    assert (config.smtp_timeout, config.webhook_timeout) == (5.0, 2.5)
    assert config.source_path == CONFIG


def test_every_global_config_attribute_has_a_key() -> None:
    assert configurable_attributes() == all_attributes()
    assert len({field.key for field in CONFIG_FIELDS}) == len(CONFIG_FIELDS)


def test_the_default_user_is_always_allowed() -> None:
    assert parse("default_user: batch\n").allowed_users == ("batch",)
    assert parse("allowed_users: [alice]\n").allowed_users == ("alice", "pcsystemd")
    assert parse("allowed_users: []\n").allowed_users == ("pcsystemd",)


def test_default_job_config_is_process_controls_name_for_defaults() -> None:
    config = parse("default_job_config:\n  failmail:\n    to_address: ops@example.org\n")
    assert config.defaults == {"failmail": {"to_address": "ops@example.org"}}


def test_defaults_and_default_job_config_together_are_an_error() -> None:
    assert problems("defaults: {timeout: 5}\ndefault_job_config: {timeout: 6}\n") == [
        f"{CONFIG}:2:1: error: 'default_job_config' and 'defaults' are the same setting "
        "('default_job_config' is process-control's name); keep only one"
    ]


def test_every_problem_is_reported_at_once() -> None:
    assert problems(
        "job_directroy: /srv/jobs\n"
        "log_directory: var/log\n"
        "default_user: root\n"
        "allowed_users: [Bad]\n"
        "smtp_port: 70000\n"
        "user: jenkins\n"
        "timeout: 10\n"
        "cron_template: x\n"
    ) == [
        f"{CONFIG}:1:1: error: unknown key 'job_directroy' in the global config; "
        "did you mean 'job_directory'?",
        f"{CONFIG}:2:16: error: 'log_directory' must be an absolute path (starting with '/'), "
        "not 'var/log'",
        f"{CONFIG}:3:15: error: 'default_user' names root, but allow_root is false; set "
        "allow_root: true if jobs really must run as root, or name another user",
        f"{CONFIG}:4:17: error: 'allowed_users' 'Bad' is not a valid user or group name; use "
        "lowercase letters, digits, '_' and '-', starting with a letter or '_', at most 32 "
        "characters",
        f"{CONFIG}:5:12: error: 'smtp_port' must be 1 to 65535, not 70000",
        f"{CONFIG}:6:1: error: 'user' is a process-control setting; pcsystemd calls it "
        "default_user",
        f"{CONFIG}:7:1: error: 'timeout' is a job key, not a global setting; to give every job "
        "a timeout, put it under 'defaults:'",
        f"{CONFIG}:8:1: error: 'cron_template' is a process-control setting; pcsystemd writes "
        "systemd units, not a crontab; remove it",
    ]


def test_root_needs_allow_root() -> None:
    assert problems("allowed_users: [root]\n") == [
        f"{CONFIG}:1:16: error: 'allowed_users' names root, but allow_root is false; set "
        "allow_root: true if jobs really must run as root, or name another user"
    ]
    assert parse("allowed_users: [root]\nallow_root: true\n").user_allowed("root")


def test_defaults_are_checked_against_the_job_keys_at_load_time() -> None:
    assert problems("defaults:\n  timout: 5\n  hardening: loose\n  user: alice\n") == [
        f"{CONFIG}:2:3: error: unknown key 'timout' in 'defaults'; did you mean 'timeout'?",
        f"{CONFIG}:3:14: error: 'defaults.hardening' must be one of none, basic, strict, not "
        "'loose'",
    ]
    assert problems("defaults: [timeout]\n") == [
        f"{CONFIG}:1:11: error: 'defaults' must be a mapping of job keys, not a list"
    ]


def test_the_templates_directory_must_exist(tmp_path: Path) -> None:
    assert problems(f"templates: {tmp_path}/missing\n") == [
        f"{CONFIG}:1:12: error: 'templates' {tmp_path}/missing is not a directory; create it "
        "or remove the key"
    ]


def test_yaml_errors_in_the_config_are_global_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "pcsystemd.yaml"
    path.write_text("job_directory: /a\njob_directory: /b\n")
    with pytest.raises(GlobalConfigError) as caught:
        load_global_config(path, environ={})
    assert str(caught.value) == (
        f"{path}:2:1: error: duplicate key 'job_directory' (first defined on line 1); "
        "remove one of the two"
    )


@pytest.mark.parametrize("mode", [0o666, 0o664, 0o646])
def test_a_group_or_world_writable_config_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "pcsystemd.yaml"
    path.write_text("allow_root: true\n")
    os.chmod(path, mode)
    with pytest.raises(GlobalConfigError) as caught:
        load_global_config(path, environ={})
    assert str(caught.value) == (
        f"{path}: error: the global config is writable by its group or by anyone (mode "
        f"{mode:04o}), who could then allow root jobs; run chmod go-w {path}"
    )


def test_a_config_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pcsystemd.yaml"
    path.write_text("allow_root: true\n")
    os.chown(path, 65534, 65534)  # nobody: neither root nor the caller (tests run as root)
    with pytest.raises(GlobalConfigError, match="owned by uid 65534, not root"):
        load_global_config(path, environ={})


def test_a_fifo_in_place_of_the_config_does_not_hang(tmp_path: Path) -> None:
    path = tmp_path / "pcsystemd.yaml"
    os.mkfifo(path)
    with pytest.raises(GlobalConfigError, match="not a regular file"):
        load_global_config(path, environ={})


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(GlobalConfigError) as caught:
        load_global_config(tmp_path, environ={})
    assert str(caught.value) == f"{tmp_path}: error: the global config is a directory, not a file"
