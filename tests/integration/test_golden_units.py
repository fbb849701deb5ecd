"""Golden files for rendered units, and `systemd-analyze verify` over every one of them.

Each tests/cases/<name>/ (other than invalid/) holds job.yaml, optionally config.yaml, and
expected/ with the exact unit files. Regenerate with PCSYSTEMD_REGENERATE=1 and review the diff.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from pcsystemd import runspec
from pcsystemd.config import load_global_config
from pcsystemd.jobfile import load_jobs
from pcsystemd.model import GlobalConfig
from pcsystemd.render import render_all

CASES = Path(__file__).resolve().parent.parent / "cases"
GOLDEN_CASES = sorted(
    path.name
    for path in CASES.iterdir()
    if (path / "job.yaml").is_file() and path.name != "invalid"
)
REGENERATE = os.environ.get("PCSYSTEMD_REGENERATE") == "1"
# Where the golden files say the job lives, so they do not depend on the checkout's path.
CANONICAL_JOBS = Path("/etc/pcsystemd/jobs")
CANONICAL_CONFIG = Path("/etc/pcsystemd/pcsystemd.yaml")


def render_case(name: str, tmp_path: Path, shim_path: str) -> dict[str, str]:
    case = CASES / name
    jobs_directory = tmp_path / "jobs"
    jobs_directory.mkdir(mode=0o755, parents=True)
    shutil.copyfile(case / "job.yaml", jobs_directory / f"{name}.yaml")
    config_file = case / "config.yaml"
    config = load_global_config(config_file) if config_file.exists() else GlobalConfig()
    config = replace(config, job_directory=jobs_directory, shim_path=shim_path)
    jobs, diagnostics = load_jobs(config)
    assert [str(d) for d in diagnostics if d.severity == "error"] == []
    assert len(jobs) == 1
    canonical = replace(
        config,
        job_directory=CANONICAL_JOBS,
        source_path=CANONICAL_CONFIG if config_file.exists() else None,
    )
    job = replace(jobs[0], source_path=CANONICAL_JOBS / f"{name}.yaml")
    # The run spec fingerprints the files at the canonical paths: read them from where they are.
    sources = {
        str(job.source_path): str(jobs_directory / f"{name}.yaml"),
        str(CANONICAL_CONFIG): str(config_file if config_file.exists() else tmp_path / "none"),
    }
    real_fingerprint = runspec.fingerprint
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runspec, "fingerprint", lambda path: real_fingerprint(sources[path]))
        return render_all([job], canonical)


@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_rendered_units_match_golden_files(name: str, tmp_path: Path) -> None:
    rendered = render_case(name, tmp_path, "/usr/bin/pcsystemd")
    expected_directory = CASES / name / "expected"
    if REGENERATE:
        shutil.rmtree(expected_directory, ignore_errors=True)
        expected_directory.mkdir()
        for file_name, text in rendered.items():
            (expected_directory / file_name).write_text(text)
    expected = {path.name: path.read_text() for path in sorted(expected_directory.iterdir())}
    assert sorted(rendered) == sorted(expected)
    for file_name, text in rendered.items():
        assert text == expected[file_name], f"{name}/{file_name} differs from its golden file"


def test_rendering_is_deterministic(tmp_path: Path) -> None:
    first = render_case("tags-and-lists", tmp_path / "a", "/usr/bin/pcsystemd")
    second = render_case("tags-and-lists", tmp_path / "b", "/usr/bin/pcsystemd")
    assert first == second


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_systemd_analyze_verify_accepts_every_unit_silently(name: str, tmp_path: Path) -> None:
    # verify checks that ExecStart='s binary exists, so point it at this checkout's entry point.
    shim = Path(sys.executable).with_name("pcsystemd")
    assert shim.exists(), "the pcsystemd console script is installed in the test venv"
    rendered = render_case(name, tmp_path, str(shim))
    output_directory = tmp_path / "units"
    output_directory.mkdir()
    for file_name, text in rendered.items():
        (output_directory / file_name).write_text(text)
    units = sorted(name for name in rendered if not name.endswith("@.service"))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(f"./{unit}" for unit in units)],
        cwd=output_directory,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout + result.stderr == ""
    assert result.returncode == 0
