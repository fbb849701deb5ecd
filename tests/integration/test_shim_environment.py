"""A job's environment reaches the shim's own interpreter (the unit's Environment=): it must
shape the job, never what pcsystemd itself imports or which config it trusts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PCSYSTEMD = str(Path(sys.executable).with_name("pcsystemd"))


def test_a_jobs_pythonpath_reaches_the_job_but_not_the_shim(tmp_path: Path) -> None:
    poison = tmp_path / "job-lib"
    poison.mkdir()
    # A job's own library directory that happens to shadow a module pcsystemd imports.
    (poison / "yaml.py").write_text(
        "raise SystemExit('the job library was imported by the shim')\n"
    )
    jobs = tmp_path / "jobs"
    jobs.mkdir(mode=0o755)
    (jobs / "envjob.yaml").write_text(
        "command: /bin/sh -c 'echo \"job sees PYTHONPATH=$PYTHONPATH\"'\n"
        "user: root\n"
        f"environment:\n  PYTHONPATH: {poison}\n"
    )
    config = tmp_path / "pcsystemd.yaml"
    config.write_text(
        f"job_directory: {jobs}\nallow_root: true\n"
        f"log_directory: {tmp_path}/log\nstate_directory: {tmp_path}/state\n"
        f"lock_directory: {tmp_path}/run/locks\n"
    )
    result = subprocess.run(
        [PCSYSTEMD, "run-job", "--config", str(config), "envjob"],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(poison)},  # as systemd sets it from the unit
    )
    assert result.returncode == 0, result.stderr
    logs = list((tmp_path / "log" / "envjob").iterdir())
    assert len(logs) == 1
    assert f"job sees PYTHONPATH={poison}" in logs[0].read_text()


def test_pcsystemd_variables_are_reserved(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir(mode=0o755)
    (jobs / "sneaky.yaml").write_text(
        "command: /bin/true\nenvironment:\n  PCSYSTEMD_CONFIG: /tmp/other.yaml\n"
    )
    result = subprocess.run(
        [PCSYSTEMD, "validate", "--jobs", str(jobs)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "sneaky.yaml:3:3: error: environment variable name PCSYSTEMD_CONFIG is reserved" in (
        result.stderr
    )
