"""`pcsystemd generate|diff|validate|explain` as a person or config management runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PCSYSTEMD = str(Path(sys.executable).with_name("pcsystemd"))
GENERATOR = str(Path(sys.executable).with_name("pcsystemd-generator"))

YAK = 'name: Shave the yak\ncommand: /bin/true\nschedule: "30 12 * * *"\n'


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A job directory with two good jobs and an empty global config."""
    jobs = tmp_path / "jobs"
    jobs.mkdir(mode=0o755)
    (jobs / "yak.yaml").write_text(YAK)
    (jobs / "manual.yaml").write_text("command: /bin/echo hello\n")
    (tmp_path / "pcsystemd.yaml").write_text(f"job_directory: {jobs}\nshim_path: {PCSYSTEMD}\n")
    return tmp_path


def pcsystemd(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PCSYSTEMD, *args, "--config", str(site / "pcsystemd.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )


def test_generate_writes_units_and_summarises(site: Path) -> None:
    result = pcsystemd(site, "generate", "--output", str(site / "out"))
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (site / "out").iterdir())
    assert names == [
        "pcsystemd-lock@.service",
        "pcsystemd-manual.service",
        "pcsystemd-notify@.service",
        # generator mode (the default) with auto_reload: the watcher comes along
        "pcsystemd-reload.path",
        "pcsystemd-reload.service",
        "pcsystemd-yak.service",
        "pcsystemd-yak.timer",
    ]
    assert "2 job(s) compiled, 0 invalid" in result.stderr
    assert "7 added" in result.stderr


def test_second_generate_changes_nothing_and_keeps_mtimes(site: Path) -> None:
    pcsystemd(site, "generate", "--output", str(site / "out"))
    before = {p.name: p.stat().st_mtime_ns for p in (site / "out").iterdir()}
    result = pcsystemd(site, "generate", "--output", str(site / "out"))
    assert result.returncode == 0
    assert "0 added, 0 changed, 0 removed, 7 unchanged" in result.stderr
    assert {p.name: p.stat().st_mtime_ns for p in (site / "out").iterdir()} == before


def test_invalid_job_exits_1_but_valid_jobs_are_written(site: Path) -> None:
    (site / "jobs" / "broken.yaml").write_text("command: /bin/true\nschedul: '* * * * *'\n")
    result = pcsystemd(site, "generate", "--output", str(site / "out"))
    assert result.returncode == 1
    assert f"{site}/jobs/broken.yaml:2:1: error:" in result.stderr
    assert "did you mean 'schedule'" in result.stderr
    assert (site / "out" / "pcsystemd-yak.timer").exists()
    assert not (site / "out" / "pcsystemd-broken.service").exists()


def test_a_job_that_turns_invalid_keeps_its_last_good_units(site: Path) -> None:
    pcsystemd(site, "generate", "--output", str(site / "out"))
    (site / "jobs" / "yak.yaml").write_text(YAK + "timeout: forever\n")
    result = pcsystemd(site, "generate", "--output", str(site / "out"))
    assert result.returncode == 1
    assert (site / "out" / "pcsystemd-yak.timer").exists()


def test_removed_job_is_pruned(site: Path) -> None:
    pcsystemd(site, "generate", "--output", str(site / "out"))
    (site / "jobs" / "yak.yaml").unlink()
    (site / "out" / "someone-elses.service").write_text("[Service]\nExecStart=/bin/true\n")
    result = pcsystemd(site, "generate", "--output", str(site / "out"))
    assert result.returncode == 0
    assert "2 removed" in result.stderr
    assert not (site / "out" / "pcsystemd-yak.timer").exists()
    assert (site / "out" / "someone-elses.service").exists()


def test_diff_and_dry_run_write_nothing(site: Path) -> None:
    result = pcsystemd(site, "diff", "--output", str(site / "out"))
    assert result.returncode == 0
    assert "+++ b/pcsystemd-yak.timer" in result.stdout
    assert "+OnCalendar=*-*-* 12:30:00" in result.stdout
    result = pcsystemd(site, "generate", "--dry-run", "--output", str(site / "out"))
    assert f"would add {site}/out/pcsystemd-yak.service" in result.stdout
    assert not (site / "out").exists()


def test_global_config_error_exits_2(site: Path) -> None:
    (site / "pcsystemd.yaml").write_text("job_directroy: /x\n")
    result = pcsystemd(site, "generate", "--output", str(site / "out"))
    assert result.returncode == 2
    assert "pcsystemd.yaml:1:1: error:" in result.stderr
    assert not (site / "out").exists()


def test_validate_reports_every_error_of_every_job(site: Path) -> None:
    (site / "jobs" / "a.yaml").write_text("command: /bin/true\ntimeout: soon\n")
    (site / "jobs" / "b.yaml").write_text("command: /bin/true\nschedule: '61 * * * *'\n")
    result = pcsystemd(site, "validate")
    assert result.returncode == 1
    assert f"{site}/jobs/a.yaml:2:10: error:" in result.stderr
    assert f"{site}/jobs/b.yaml:2:" in result.stderr
    assert "2 job(s) valid, 2 error(s)" in result.stderr


def test_validate_good_jobs(site: Path) -> None:
    result = pcsystemd(site, "validate")
    assert result.returncode == 0, result.stderr
    assert "2 job(s) valid, 0 error(s)" in result.stderr


def test_explain_shows_units_and_next_runs(site: Path) -> None:
    result = pcsystemd(site, "explain", "yak", "--count", "3")
    assert result.returncode == 0, result.stderr
    assert "### pcsystemd-yak.timer" in result.stdout
    run_lines = [line for line in result.stdout.splitlines() if line.endswith(" UTC")]
    assert len(run_lines) == 3
    assert all("12:30:00" in line for line in run_lines)


def test_explain_unknown_job(site: Path) -> None:
    result = pcsystemd(site, "explain", "yack")
    assert result.returncode != 0
    assert "yack" in result.stderr


def test_generator_writes_units_and_wants_links(site: Path, tmp_path: Path) -> None:
    normal, early, late = (tmp_path / name for name in ("normal", "early", "late"))
    for directory in (normal, early, late):
        directory.mkdir()
    (site / "jobs" / "broken.yaml").write_text("command: [\n")
    result = subprocess.run(
        [GENERATOR, str(normal), str(early), str(late)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PCSYSTEMD_CONFIG": str(site / "pcsystemd.yaml")},
    )
    assert result.returncode == 0
    assert "broken.yaml" in result.stderr
    link = normal / "timers.target.wants" / "pcsystemd-yak.timer"
    assert link.is_symlink()
    assert link.resolve() == normal / "pcsystemd-yak.timer"
    assert (normal / "pcsystemd-manual.service").exists()
    assert not list(early.iterdir())
    assert not list(late.iterdir())


def test_generator_survives_a_broken_global_config(site: Path, tmp_path: Path) -> None:
    (site / "pcsystemd.yaml").write_text("job_directory: [\n")
    output = tmp_path / "generator"
    output.mkdir()
    result = subprocess.run(
        [GENERATOR, str(output), str(output), str(output)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PCSYSTEMD_CONFIG": str(site / "pcsystemd.yaml")},
    )
    assert result.returncode == 0
    assert "no jobs generated" in result.stderr
    # no jobs, but the watcher stays, so that the fixed config goes live by itself
    assert sorted(path.name for path in output.iterdir()) == [
        "paths.target.wants",
        "pcsystemd-reload.path",
        "pcsystemd-reload.service",
    ]
    assert (output / "paths.target.wants" / "pcsystemd-reload.path").is_symlink()


def test_generate_refuses_to_shadow_the_generator_without_output(site: Path) -> None:
    unit_directory = site / "etc-systemd-system"
    with (site / "pcsystemd.yaml").open("a") as config:
        config.write(f"unit_directory: {unit_directory}\n")
    result = pcsystemd(site, "generate")
    assert result.returncode == 2
    assert "would shadow the generator's" in result.stderr
    assert not unit_directory.exists()
    assert pcsystemd(site, "generate", "--diff").returncode == 0  # looking is fine
