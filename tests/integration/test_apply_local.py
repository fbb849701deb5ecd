"""apply, reload and the runtime switches on real files and the real command line (no systemd
needed: what needs a running systemd is proven in tests/system/test_live_*.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pcsystemd.apply import (
    EXIT_WOULD_CHANGE,
    GENERATOR_NAME,
    GENERATOR_SEARCH_PATH,
    desired_state,
    generated_files,
)
from pcsystemd.cli import build_parser
from pcsystemd.config import load_global_config
from pcsystemd.install import sync_directory
from pcsystemd.model import DEFAULT_CONFIG_PATH, GENERATED_MARKER, GlobalConfig, Mode
from pcsystemd.operate import known_slugs, select_targets
from pcsystemd.switches import disabled_at_runtime, honour_runtime_switches, set_disabled

REPOSITORY = Path(__file__).resolve().parents[2]
YAK = 'name: Shave the yak\ncommand: /bin/true\nschedule: "30 12 * * *"\ntags: [farm]\n'


@pytest.fixture
def config(tmp_path: Path) -> GlobalConfig:
    (tmp_path / "jobs").mkdir()
    return GlobalConfig(
        job_directory=tmp_path / "jobs",
        unit_directory=tmp_path / "units",
        disabled_directory=tmp_path / "disabled",
        shim_path="/usr/bin/pcsystemd",
        mode=Mode.APPLY,
    )


def write_job(config: GlobalConfig, slug: str, text: str) -> Path:
    path = config.job_directory / f"{slug}.yaml"
    path.write_text(text)
    path.chmod(0o644)
    return path


def run_cli(*args: str, config_file: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pcsystemd.cli"]
    if config_file is not None:
        argv += ["--config", str(config_file)]
    environment = {key: value for key, value in os.environ.items() if key != "PCSYSTEMD_CONFIG"}
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, cwd=REPOSITORY, env=environment
    )


def test_flag_files_switch_jobs_off_and_on(config: GlobalConfig) -> None:
    assert disabled_at_runtime(config) == frozenset()
    assert set_disabled(config, "yak", True) is True
    assert set_disabled(config, "yak", True) is False  # already
    flag = config.disabled_directory / "yak"
    assert flag.is_file() and "pcsystemd enable yak" in flag.read_text()
    assert oct(config.disabled_directory.stat().st_mode & 0o777) == "0o755"
    (config.disabled_directory / ".yak.tmp").write_text("")  # a crashed write is no flag
    assert disabled_at_runtime(config) == {"yak"}
    assert set_disabled(config, "yak", False) is True
    assert set_disabled(config, "yak", False) is False
    assert disabled_at_runtime(config) == frozenset()
    with pytest.raises(Exception, match="not a job name"):
        set_disabled(config, "../etc", True)


def test_a_runtime_disabled_job_loses_its_timer_but_keeps_its_service(
    config: GlobalConfig,
) -> None:
    write_job(config, "yak", YAK)
    write_job(config, "cow", YAK.replace("yak", "cow"))
    set_disabled(config, "yak", True)
    wanted = desired_state(config, Mode.APPLY)
    assert wanted.triggers == {"pcsystemd-cow.timer"}
    assert "pcsystemd-yak.service" in wanted.files and "pcsystemd-yak.timer" not in wanted.files
    assert "Wants=pcsystemd-yak.timer" not in wanted.files["pcsystemd-tag-farm.target"]
    assert "Wants=pcsystemd-cow.timer" in wanted.files["pcsystemd-tag-farm.target"]


def test_generate_and_the_generator_honour_the_flag(config: GlobalConfig, tmp_path: Path) -> None:
    from pcsystemd.generator import generate_into

    write_job(config, "yak", YAK)
    set_disabled(config, "yak", True)
    generated = tmp_path / "generator"
    generated.mkdir()
    generate_into(generated, config)
    assert (generated / "pcsystemd-yak.service").is_file()
    assert not (generated / "pcsystemd-yak.timer").exists()
    assert not (generated / "timers.target.wants" / "pcsystemd-yak.timer").exists()


def test_switches_mark_only_flagged_jobs_disabled(config: GlobalConfig) -> None:
    from pcsystemd.jobfile import load_jobs

    write_job(config, "yak", YAK)
    write_job(config, "cow", YAK)
    set_disabled(config, "cow", True)
    jobs = honour_runtime_switches(load_jobs(config)[0], config)
    assert {job.slug: job.disabled for job in jobs} == {"cow": True, "yak": False}


def test_apply_mode_keeps_the_units_of_an_invalid_job_generator_mode_does_not(
    config: GlobalConfig,
) -> None:
    write_job(config, "yak", YAK)
    sync_directory(config.unit_directory, desired_state(config, Mode.APPLY).files)
    write_job(config, "yak", YAK + "shedule: typo\n")

    kept = desired_state(config, Mode.APPLY)
    assert kept.invalid_count >= 1 and kept.keep == {"pcsystemd-yak"}
    changes = sync_directory(config.unit_directory, kept.files, dry_run=True, keep=kept.keep)
    assert "pcsystemd-yak.timer" not in changes.removed
    dropped = desired_state(config, Mode.GENERATOR)
    assert dropped.keep == frozenset()
    changes = sync_directory(config.unit_directory, dropped.files, dry_run=True)
    assert "pcsystemd-yak.timer" in changes.removed


def test_only_marked_files_count_as_another_modes_leftovers(tmp_path: Path) -> None:
    (tmp_path / "pcsystemd-yak.timer").write_text(f"# {GENERATED_MARKER} from x\n")
    (tmp_path / "pcsystemd-mine.timer").write_text("[Timer]\n")
    (tmp_path / "cron.service").write_text(f"# {GENERATED_MARKER} from x\n")
    assert generated_files(tmp_path) == ["pcsystemd-yak.timer"]
    assert generated_files(tmp_path / "missing") == []


def test_jobs_are_selected_by_name_and_tag(config: GlobalConfig) -> None:
    write_job(config, "yak", YAK)
    write_job(config, "cow", YAK.replace("tags: [farm]", "tags: [farm, milk]"))
    write_job(config, "owl", YAK.replace("tags: [farm]", "tags: [night]"))
    assert known_slugs(config) == ["cow", "owl", "yak"]
    chosen = select_targets(config, ["pcsystemd-owl.timer"], ["milk"], need_job=True)
    assert [(target.slug, target.job is not None) for target in chosen] == [
        ("cow", True),
        ("owl", True),
    ]
    assert [t.slug for t in select_targets(config, [], ["farm"], need_job=True)] == ["cow", "yak"]


def test_an_invalid_job_is_still_a_target_when_its_units_suffice(config: GlobalConfig) -> None:
    write_job(config, "yak", YAK + "shedule: typo\n")
    [target] = select_targets(config, ["yak"], [], need_job=False)
    assert (target.slug, target.job, target.service) == ("yak", None, "pcsystemd-yak.service")
    from pcsystemd.errors import ConfigError

    with pytest.raises(ConfigError):
        select_targets(config, ["yak"], [], need_job=True)


def test_apply_refuses_generator_mode_and_writes_nothing(tmp_path: Path) -> None:
    units = tmp_path / "units"
    config_file = tmp_path / "pcsystemd.yaml"
    config_file.write_text(f"unit_directory: {units}\njob_directory: {tmp_path}\n")
    for args in (["apply"], ["apply", "--check"]):
        refused = run_cli(*args, config_file=config_file)
        assert refused.returncode == 2, refused.stderr
        assert "refusing to apply" in refused.stderr
        assert f"set `mode: apply` in {config_file}" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert not units.exists()


def test_reload_refuses_apply_mode_and_foreign_configs(tmp_path: Path) -> None:
    config_file = tmp_path / "pcsystemd.yaml"
    config_file.write_text(f"mode: apply\njob_directory: {tmp_path}\n")
    refused = run_cli("reload", config_file=config_file)
    assert refused.returncode == 2 and "run `pcsystemd apply` instead" in refused.stderr
    config_file.write_text(f"mode: generator\njob_directory: {tmp_path}\n")
    refused = run_cli("reload", "--check", config_file=config_file)
    assert refused.returncode == 2 and "must see what the generator sees" in refused.stderr


def test_the_watcher_does_nothing_in_apply_mode_and_never_with_check(tmp_path: Path) -> None:
    # the watcher saw the config switch to apply mode: not an error, `apply` takes over
    config_file = tmp_path / "pcsystemd.yaml"
    config_file.write_text(f"mode: apply\njob_directory: {tmp_path}\n")
    quiet = run_cli("reload", "--auto", config_file=config_file)
    assert (quiet.returncode, quiet.stdout) == (0, ""), quiet.stderr
    assert "mode is apply, nothing to do" in quiet.stderr
    refused = run_cli("reload", "--auto", "--check", config_file=config_file)
    assert refused.returncode == 2 and "cannot be combined with --check" in refused.stderr


@pytest.mark.skipif(
    any((d / GENERATOR_NAME).exists() for d in GENERATOR_SEARCH_PATH)
    or Path(DEFAULT_CONFIG_PATH).exists(),
    reason="pcsystemd is installed or configured on this host",
)
def test_reload_without_a_generator_says_so() -> None:
    # the default config (absent here: all defaults) means generator mode
    refused = run_cli("reload", "--check")
    assert refused.returncode == 2
    assert "pcsystemd-generator is not installed" in refused.stderr


@pytest.mark.skipif(os.path.isdir("/run/systemd/system"), reason="systemd runs on this host")
def test_without_systemd_apply_says_so(tmp_path: Path) -> None:
    config_file = tmp_path / "pcsystemd.yaml"
    config_file.write_text(f"mode: apply\njob_directory: {tmp_path}\n")
    failed = run_cli("apply", "--check", config_file=config_file)
    assert failed.returncode == 1
    assert "systemd is not running on this system" in failed.stderr


def test_the_ansible_example_uses_real_commands_and_exit_codes(tmp_path: Path) -> None:
    [play] = yaml.safe_load((REPOSITORY / "examples/ansible/playbook.yml").read_text())
    tasks = {task["name"]: task for task in play["tasks"]}
    commands = [
        task["ansible.builtin.command"]
        for task in tasks.values()
        if "ansible.builtin.command" in task
    ]
    assert commands == ["pcsystemd validate", "pcsystemd apply --check", "pcsystemd apply"]
    parser = build_parser()
    for command in commands:
        parser.parse_args(command.split()[1:])  # exits (fails the test) on an unknown option
    check = tasks["See whether systemd is behind the job files"]
    assert check["changed_when"] == f"pcsystemd_check.rc == {EXIT_WOULD_CHANGE}"
    assert check["failed_when"] == f"pcsystemd_check.rc not in [0, {EXIT_WOULD_CHANGE}]"
    assert (
        tasks["Apply (compile, reload, enable, start, stop and remove what is gone)"]["when"]
        == f"pcsystemd_check.rc == {EXIT_WOULD_CHANGE}"
    )
    deployed = tmp_path / "pcsystemd.yaml"
    deployed.write_text(
        tasks["Global config (apply mode, so the generator leaves the units to us)"][
            "ansible.builtin.copy"
        ]["content"]
    )
    deployed.chmod(0o644)
    assert load_global_config(deployed).mode is Mode.APPLY


def test_only_one_apply_at_a_time(config: GlobalConfig, tmp_path: Path) -> None:
    from dataclasses import replace

    from pcsystemd.apply import exclusive

    config = replace(config, lock_directory=tmp_path / "run" / "locks")
    second = (
        "import sys; from pathlib import Path; from pcsystemd.apply import exclusive;"
        "from pcsystemd.model import GlobalConfig;"
        "config = GlobalConfig(lock_directory=Path(sys.argv[1]))\n"
        "with exclusive(config): print('got it')"
    )
    with exclusive(config):
        waiting = subprocess.Popen(
            [sys.executable, "-c", second, str(config.lock_directory)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.wait(timeout=1.5)
    stdout, stderr = waiting.communicate(timeout=10)
    assert stdout == "got it\n"
    assert "waiting for another apply, reload, enable or disable" in stderr
    assert oct((tmp_path / "run" / "apply.lock").stat().st_mode & 0o777) == "0o600"


def test_a_missing_job_directory_is_not_taken_for_no_jobs(config: GlobalConfig) -> None:
    from dataclasses import replace

    from pcsystemd.errors import ConfigError

    with pytest.raises(ConfigError, match="refusing to remove the units of every job"):
        desired_state(replace(config, job_directory=config.job_directory / "typo"), Mode.APPLY)
    assert desired_state(config, Mode.APPLY).triggers == frozenset()  # empty: deliberate
