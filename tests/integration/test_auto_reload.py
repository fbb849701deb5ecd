"""Generator mode's watcher (`auto_reload`): its units, the generator's link, the reserved job
name, and `reload --auto` reloading again while the job directory changes. That systemd really
starts it and makes job changes live is proven in tests/system/test_live_auto_reload.py."""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import pytest

from pcsystemd import apply
from pcsystemd.apply import AUTO_RELOAD_ATTEMPTS, desired_state, watched_state
from pcsystemd.generator import generate_into
from pcsystemd.jobfile import load_jobs
from pcsystemd.model import RELOAD_PATH_UNIT, RELOAD_SERVICE_UNIT, GlobalConfig, Mode
from pcsystemd.render import render_all

YAK = 'name: Shave the yak\ncommand: /bin/true\nschedule: "30 12 * * *"\n'


@pytest.fixture
def config(tmp_path: Path) -> GlobalConfig:
    (tmp_path / "jobs").mkdir()
    return GlobalConfig(
        job_directory=tmp_path / "jobs",
        disabled_directory=tmp_path / "disabled",
        shim_path="/usr/bin/pcsystemd",
        mode=Mode.GENERATOR,
    )


def write_job(config: GlobalConfig, slug: str, text: str = YAK) -> Path:
    path = config.job_directory / f"{slug}.yaml"
    path.write_text(text)
    path.chmod(0o644)
    return path


def test_generator_mode_watches_the_configured_job_directory_and_the_config(
    config: GlobalConfig,
) -> None:
    files = render_all([], config)
    path_unit = files[RELOAD_PATH_UNIT].splitlines()
    assert f"PathChanged={config.job_directory}" in path_unit
    assert "PathChanged=/etc/pcsystemd/pcsystemd.yaml" in path_unit
    assert f"Unit={RELOAD_SERVICE_UNIT}" in path_unit
    service = files[RELOAD_SERVICE_UNIT].splitlines()
    assert "ExecStart=/usr/bin/pcsystemd reload --auto" in service
    assert "StartLimitIntervalSec=0" in service  # a busy deployment must not kill the watcher


@pytest.mark.parametrize(
    "change", [{"mode": Mode.APPLY}, {"auto_reload": False}], ids=["apply-mode", "switched-off"]
)
def test_no_watcher_in_apply_mode_or_when_switched_off(
    config: GlobalConfig, change: dict[str, object]
) -> None:
    files = render_all([], replace(config, **change))  # type: ignore[arg-type]
    assert RELOAD_PATH_UNIT not in files and RELOAD_SERVICE_UNIT not in files


def test_the_generator_links_the_watcher_into_paths_target(
    config: GlobalConfig, tmp_path: Path
) -> None:
    write_job(config, "yak")
    output = tmp_path / "generator"
    output.mkdir()
    generate_into(output, config)
    link = output / "paths.target.wants" / RELOAD_PATH_UNIT
    assert link.is_symlink() and link.resolve() == output / RELOAD_PATH_UNIT
    assert (output / "timers.target.wants" / "pcsystemd-yak.timer").is_symlink()
    # and `pcsystemd reload` treats the path unit like a timer: started when inactive
    wanted = desired_state(config, Mode.GENERATOR)
    assert wanted.triggers == {RELOAD_PATH_UNIT, "pcsystemd-yak.timer"}
    assert wanted.lock_units == {"pcsystemd-lock@yak.service"}  # the others may be stopped


def test_without_auto_reload_the_generator_links_no_watcher(
    config: GlobalConfig, tmp_path: Path
) -> None:
    output = tmp_path / "generator"
    output.mkdir()
    generate_into(output, replace(config, auto_reload=False))
    assert not (output / "paths.target.wants").exists()
    assert not (output / RELOAD_PATH_UNIT).exists()


def test_reload_is_no_job_name(config: GlobalConfig) -> None:
    write_job(config, "reload")
    write_job(config, "yak")
    jobs, diagnostics = load_jobs(config)
    assert [job.slug for job in jobs] == ["yak"]
    (problem,) = diagnostics
    assert problem.path.endswith("reload.yaml")
    assert "'reload' is reserved" in problem.message and "reload-job.yaml" in problem.message


def test_watched_state_sees_every_kind_of_change(config: GlobalConfig) -> None:
    states = [watched_state(config)]
    yak = write_job(config, "yak")
    states.append(watched_state(config))
    # rewritten, with the old mtime put back (`cp -p`, rsync -t): the ctime still moves
    # (after a clock tick: kernels before 6.13 stamp files once per tick, 1 to 4 ms)
    before = yak.stat()
    time.sleep(0.02)
    yak.write_text(YAK.replace("12", "13"))
    os.utime(yak, ns=(before.st_atime_ns, before.st_mtime_ns))
    states.append(watched_state(config))
    yak.unlink()
    states.append(watched_state(config))
    assert all(a != b for a, b in pairwise(states))
    assert watched_state(config) == states[-1]  # and nothing changed: equal


def _auto_reload(
    config: GlobalConfig, monkeypatch: pytest.MonkeyPatch, change: int
) -> tuple[int, int]:
    """Run `reload --auto`'s loop with a reload that changes the job directory `change` times."""
    calls = []

    def reload(
        args: argparse.Namespace, seen: GlobalConfig, mode: Mode, *, hold_if_invalid: bool
    ) -> int:
        assert hold_if_invalid, "the watcher never drops an invalid job's units"
        calls.append(seen)
        if len(calls) <= change:
            write_job(config, f"job-{len(calls)}")
        return 0

    monkeypatch.setattr(apply, "_plan_and_execute", reload)
    monkeypatch.setattr("pcsystemd.cli.load_config", lambda args: config)
    status = apply._reload_until_settled(argparse.Namespace(), config)
    return status, len(calls)


def test_auto_reload_reloads_again_when_jobs_change_meanwhile(
    config: GlobalConfig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _auto_reload(config, monkeypatch, change=0) == (0, 1)
    assert _auto_reload(config, monkeypatch, change=2) == (0, 3)
    assert "changed during the reload; reloading again" in capsys.readouterr().err


def test_auto_reload_gives_up_on_a_directory_that_never_holds_still(
    config: GlobalConfig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status, calls = _auto_reload(config, monkeypatch, change=AUTO_RELOAD_ATTEMPTS + 5)
    assert (status, calls) == (0, AUTO_RELOAD_ATTEMPTS)
    assert "the next change starts another run" in capsys.readouterr().err


def test_a_lock_unit_a_unit_names_again_after_the_reload_is_not_released(
    config: GlobalConfig, tmp_path: Path
) -> None:
    # The plan saw no job of group "night"; by the daemon-reload a job file named it again.
    from pcsystemd.apply import lock_unit_required

    write_job(config, "yak", YAK + "lock: night\n")
    output = tmp_path / "generator"
    output.mkdir()
    generate_into(output, config)
    assert lock_unit_required(output, "pcsystemd-lock@night.service")
    assert not lock_unit_required(output, "pcsystemd-lock@yak.service")
