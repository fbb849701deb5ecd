"""The shortcuts taken for speed, on real files and processes: nothing they skip is missed.

The shim ends its process without the interpreter's teardown, reads files in pieces, and
install compares unchanged units with one read; each is checked here against what the long
way would have done.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from shim_helpers import write_root_job_setup

from pcsystemd.config import load_global_config
from pcsystemd.errors import ConfigError
from pcsystemd.install import sync_directory
from pcsystemd.jobfile import load_job
from pcsystemd.model import GENERATED_MARKER, GlobalConfig
from pcsystemd.yamlload import MAX_FILE_BYTES

OURS = f"# {GENERATED_MARKER} from /etc/pcsystemd/jobs/a.yaml\n[Unit]\n"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the jobs run as root")


def run_as_console_script(config_file: Path) -> subprocess.CompletedProcess[str]:
    """`pcsystemd run-job quick` as the console script runs it: main() reads sys.argv."""
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('atexit ran', flush=False))\n"
        f"sys.argv = ['pcsystemd', 'run-job', '--config', {str(config_file)!r}, 'quick']\n"
        "from pcsystemd.cli import main\n"
        "sys.exit(main())\n"
    )
    # Run by hand, not under systemd; nothing that would make the shim start itself again.
    left_out = ("INVOCATION_ID", "JOURNAL_STREAM", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")
    environment = {name: value for name, value in os.environ.items() if name not in left_out}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment
    )


@needs_root
def test_the_shim_ends_its_process_with_everything_written(tmp_path: Path) -> None:
    config_file = write_root_job_setup(
        tmp_path, "/bin/sh -c 'echo to stdout; echo to stderr >&2; exit 3'"
    )
    result = run_as_console_script(config_file)
    assert result.returncode == 3, result
    # Piped, stdout is block-buffered: the lines arrive only if it was flushed before the end,
    # and the atexit functions ran.
    assert "to stdout\n" in result.stdout
    assert result.stdout.endswith("atexit ran\n"), result
    assert "failed (exit status 3)" in result.stderr
    history = json.loads((tmp_path / "state" / "quick" / "history.json").read_text())
    assert history["runs"][-1]["result"] == "failed"
    [log] = (tmp_path / "log" / "quick").glob("quick-*.log")
    assert "# result: failed\n" in log.read_text()


@needs_root
def test_the_shim_exits_zero_after_a_good_run(tmp_path: Path) -> None:
    result = run_as_console_script(write_root_job_setup(tmp_path, "/bin/true"))
    assert result.returncode == 0, result
    assert result.stdout == "atexit ran\n"


def test_a_job_file_over_the_limit_is_still_refused(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "big.yaml").write_bytes(b"name: x\n" + b"# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    with pytest.raises(ConfigError, match="larger than 1024 KiB"):
        load_job(GlobalConfig(job_directory=jobs), "big", audit=False)
    (jobs / "fits.yaml").write_bytes(b"command: /bin/true\n" + b"#" * (MAX_FILE_BYTES - 100))
    assert load_job(GlobalConfig(job_directory=jobs), "fits", audit=False).name == "fits"


def test_a_global_config_over_the_limit_is_still_refused(tmp_path: Path) -> None:
    config_file = tmp_path / "config.yaml"
    config_file.write_bytes(b"history_length: 5\n" + b"#" * MAX_FILE_BYTES)
    with pytest.raises(ConfigError, match="larger than 1024 KiB"):
        load_global_config(config_file)
    config_file.write_bytes(b"history_length: 5\n" + b"#" * (MAX_FILE_BYTES - 100))
    assert load_global_config(config_file).history_length == 5


def test_a_symlink_to_the_same_text_is_still_someone_elses(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.service"
    elsewhere.write_text(OURS)
    out = tmp_path / "out"
    out.mkdir()
    (out / "pcsystemd-a.service").symlink_to(elsewhere)
    changes = sync_directory(out, {"pcsystemd-a.service": OURS})
    assert changes.conflicts == ["pcsystemd-a.service"]
    assert (out / "pcsystemd-a.service").is_symlink()


def test_a_directory_in_place_of_a_unit_is_someone_elses(tmp_path: Path) -> None:
    (tmp_path / "pcsystemd-a.service").mkdir()
    changes = sync_directory(tmp_path, {"pcsystemd-a.service": OURS})
    assert changes.conflicts == ["pcsystemd-a.service"]


def test_a_unit_with_other_line_ends_counts_as_before(tmp_path: Path) -> None:
    # Read as text, CRLF lines equal the rendered LF lines: unchanged, as it always was.
    (tmp_path / "pcsystemd-a.service").write_bytes(OURS.replace("\n", "\r\n").encode())
    changes = sync_directory(tmp_path, {"pcsystemd-a.service": OURS})
    assert changes.unchanged == ["pcsystemd-a.service"]
    (tmp_path / "pcsystemd-b.service").write_bytes(OURS.encode() + b"X")
    changes = sync_directory(tmp_path, {"pcsystemd-b.service": OURS})
    assert changes.changed == ["pcsystemd-b.service"]
    assert (tmp_path / "pcsystemd-b.service").read_text() == OURS
