"""The sandbox itself: real systemd 252 as PID 1, Debian's modules and our package importable."""

from __future__ import annotations

import pytest

from .harness import GENERATOR, NOTIFY_TEMPLATE, SHIM, Sandbox, wait_until

pytestmark = pytest.mark.system


def test_systemd_is_pid_1_and_running(sandbox: Sandbox) -> None:
    assert sandbox.exec(["cat", "/proc/1/comm"]).stdout.strip() == "systemd"
    state = sandbox.exec(["systemctl", "is-system-running"], check=False).stdout.strip()
    assert state in ("running", "degraded"), state


def test_systemd_is_debian_12s_version(sandbox: Sandbox) -> None:
    first_line = sandbox.exec(["systemd-analyze", "--version"]).stdout.splitlines()[0]
    assert first_line.split()[:2] == ["systemd", "252"], first_line


def test_debian_modules_and_working_tree_package_import(sandbox: Sandbox) -> None:
    output = sandbox.python(
        "import pcsystemd, yaml, jinja2, croniter, pystemd;"
        "print(pcsystemd.__file__); print(pystemd.__version__)"
    ).stdout.split()
    assert output[0] == "/usr/lib/python3/dist-packages/pcsystemd/__init__.py"
    assert output[1] == "0.11.0"  # Debian 12's pystemd, not the venv's


def test_entry_points_and_job_user_are_installed(sandbox: Sandbox) -> None:
    # /usr/bin/pcsystemd is the package's own entry point (packaging/pcsystemd-entry-point)
    for path, first_line in (
        (SHIM, "#!/usr/bin/python3 -IS\n"),
        (GENERATOR, "#!/usr/bin/python3\n"),
    ):
        sandbox.exec(["test", "-x", path])
        assert sandbox.read_file(path).startswith(first_line)
    passwd = sandbox.exec(["getent", "passwd", "pcsystemd"]).stdout.split(":")
    assert passwd[0] == "pcsystemd" and int(passwd[2]) < 1000  # a system user
    assert sandbox.exec(["id", "-un"], user="pcsystemd").stdout.strip() == "pcsystemd"
    # the notify template unit the package ships, rendered from the working tree's template
    # (the generator's copy in /run/systemd/generator, if any, takes precedence)
    assert "ExecStart=/usr/bin/pcsystemd notify %i\n" in sandbox.read_file(NOTIFY_TEMPLATE)
    assert sandbox.unit_property("pcsystemd-notify@smoke.service", "LoadState") == "loaded"


def test_exec_passes_input_status_and_user(sandbox: Sandbox) -> None:
    echoed = sandbox.exec(["cat"], input="hello\nworld\n")
    assert echoed.stdout == "hello\nworld\n"
    failed = sandbox.exec(["sh", "-c", "echo oops >&2; exit 3"], check=False)
    assert (failed.returncode, failed.stderr) == (3, "oops\n")
    with pytest.raises(Exception, match="exited with status 3"):
        sandbox.exec(["sh", "-c", "exit 3"])


def test_exec_timeout_ends_the_command_inside(sandbox: Sandbox) -> None:
    import subprocess

    with pytest.raises(subprocess.TimeoutExpired):
        sandbox.exec(["sleep", "30"], timeout=1)
    # the container's own timeout killed it: no sleep is left behind
    assert sandbox.exec(["pgrep", "-x", "sleep"], check=False).returncode == 1


def test_write_file_sets_content_mode_and_owner(sandbox: Sandbox) -> None:
    sandbox.write_file("/tmp/harness/deep/file.txt", "contents\n", mode=0o640, owner="pcsystemd")
    assert sandbox.read_file("/tmp/harness/deep/file.txt") == "contents\n"
    stat = sandbox.exec(["stat", "-c", "%a %U", "/tmp/harness/deep/file.txt"]).stdout.split()
    assert stat == ["640", "pcsystemd"]


def test_reset_removes_jobs_units_logs_and_failed_state(clean_sandbox: Sandbox) -> None:
    box = clean_sandbox
    box.write_file("/etc/pcsystemd/jobs/leftover.yaml", "name: leftover\n")
    box.write_file("/var/log/pcsystemd/leftover/run.log", "log\n")
    box.write_file(
        "/etc/systemd/system/pcsystemd-leftover.service",
        "[Service]\nType=oneshot\nExecStart=/bin/false\n",
    )
    box.systemctl("daemon-reload")
    box.systemctl("start", "pcsystemd-leftover.service", check=False)
    wait_until(
        lambda: box.unit_property("pcsystemd-leftover.service", "ActiveState") == "failed",
        10,
        message="the leftover unit to fail",
    )

    box.reset()

    for path in (
        "/etc/pcsystemd/jobs/leftover.yaml",
        "/var/log/pcsystemd/leftover",
        "/etc/systemd/system/pcsystemd-leftover.service",
    ):
        assert not box.exists(path), path
    # the package's directories are back, as tmpfiles.d makes them
    modes = box.exec(
        [
            "stat",
            "-c",
            "%n %a %U",
            "/etc/pcsystemd/jobs",
            "/var/log/pcsystemd",
            "/run/pcsystemd/locks",
        ]
    ).stdout.splitlines()
    assert modes == [
        "/etc/pcsystemd/jobs 755 root",
        "/var/log/pcsystemd 755 root",
        "/run/pcsystemd/locks 700 root",
    ]
    failed = box.systemctl("list-units", "--failed", "--plain", "--no-legend", "pcsystemd-*")
    assert failed.stdout.strip() == ""
    assert box.unit_property("pcsystemd-leftover.service", "LoadState") == "not-found"


def test_generator_can_be_parked_and_is_restored_by_reset(clean_sandbox: Sandbox) -> None:
    clean_sandbox.set_generator(False)
    assert not clean_sandbox.exists(GENERATOR)
    clean_sandbox.reset()
    assert clean_sandbox.exists(GENERATOR)
