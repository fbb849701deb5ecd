"""The Debian package in a real systemd: install, a job's timer and run, upgrade, remove, purge.

Each test boots a container of its own (not the session's `sandbox`, which has the working
tree copied in): a clean Debian 12 with only pcsystemd's Debian dependencies, into which the
built .deb is installed with dpkg, exactly as on a user's host.
"""

from __future__ import annotations

import atexit
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import debian_build
import pytest

import pcsystemd

from .harness import Sandbox, skip_or_fail_without_sandbox, unique_name, wait_until

pytestmark = [pytest.mark.system, pytest.mark.slow]

EXAMPLE_JOB = "/usr/share/doc/pcsystemd/examples/jobs/yak.yaml"
HELLO_JOB = """\
name: Say hello on both streams
command: /bin/sh -c 'echo hello-stdout; echo hello-stderr >&2'
"""
FAILING_JOB = "name: Always fails\ncommand: /bin/false\n"
SLEEPING_JOB = "name: Still running at removal\ncommand: /bin/sleep 600\n"
LATE_JOB = 'name: Dropped before the upgrade\ncommand: /bin/true\nschedule: "0 3 * * *"\n'
STATE_PATHS = (
    "/var/lib/pcsystemd",
    "/var/log/pcsystemd",
    "/run/pcsystemd",
    "/etc/pcsystemd/disabled",
)


def build_package() -> Path:
    return debian_build.build_package()


@pytest.fixture(scope="module")
def deb() -> Path:
    return build_package()


@pytest.fixture(scope="module")
def upgrade_deb(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same package with a higher version, so that dpkg runs the real upgrade path."""
    work = tmp_path_factory.mktemp("upgrade")
    tree = work / "tree"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True)
    control = tree / "DEBIAN" / "control"
    version = f"{pcsystemd.__version__}+upgrade1"
    text = re.sub(r"^Version: .*$", f"Version: {version}", control.read_text(), flags=re.M)
    control.write_text(text)
    output = work / f"pcsystemd_{version}_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zxz", "-b", str(tree), str(output)],
        check=True,
        capture_output=True,
    )
    return output


@pytest.fixture
def box() -> Iterator[Sandbox]:
    """A freshly booted container of its own, with nothing of pcsystemd in it."""
    skip_or_fail_without_sandbox()
    container = Sandbox(unique_name("pcsy-deb"))
    atexit.register(container.stop)
    try:
        container.boot()
        yield container
    finally:
        try:
            container.stop()
        finally:
            atexit.unregister(container.stop)


def dpkg(box: Sandbox, *arguments: str) -> str:
    result = box.exec(["dpkg", *arguments], check=False, timeout=300)
    assert result.returncode == 0, f"dpkg {' '.join(arguments)}:\n{result.stdout}{result.stderr}"
    return result.stdout + result.stderr


def install(box: Sandbox, package: Path) -> str:
    box.cp(package, "/root/")
    return dpkg(box, "-i", f"/root/{package.name}")


def pcsystemd_units(box: Sandbox, *options: str) -> list[str]:
    """Loaded pcsystemd units (any state unless options narrow it), one line each."""
    output = box.systemctl(
        "list-units", "--all", "--plain", "--no-legend", *options, "pcsystemd*"
    ).stdout
    return [line for line in output.splitlines() if line.strip()]


def failed_units(box: Sandbox) -> list[str]:
    output = box.systemctl("list-units", "--failed", "--plain", "--no-legend").stdout
    return [line for line in output.splitlines() if "pcsystemd" in line]


def run_to_completion(box: Sandbox, unit: str) -> str:
    """Start a job's service, wait until its run has ended, return systemd's Result."""
    box.systemctl("start", unit, check=False)
    wait_until(
        lambda: box.unit_property(unit, "ActiveState") in ("inactive", "failed"),
        60,
        message=f"{unit} to finish",
    )
    return box.unit_property(unit, "Result")


def run_logs(box: Sandbox, slug: str) -> list[str]:
    listing = box.exec(["find", f"/var/log/pcsystemd/{slug}", "-name", "*.log"], check=False)
    return sorted(listing.stdout.split())


def wait_for_live_timer(box: Sandbox, slug: str) -> None:
    """The job file was dropped and nothing else: the package's watcher makes it live.

    pcsystemd-reload.path (generated, started by postinst's `pcsystemd reload`) sees the job
    directory change and runs `pcsystemd reload --auto`; the timer is then in list-timers.
    """
    wait_until(
        lambda: f"pcsystemd-{slug}.timer" in box.systemctl("list-timers").stdout,
        30,
        message=f"pcsystemd-{slug}.timer in systemctl list-timers",
    )
    fragment = box.unit_property(f"pcsystemd-{slug}.timer", "FragmentPath")
    assert fragment == f"/run/systemd/generator/pcsystemd-{slug}.timer"


def job_report(box: Sandbox, slug: str) -> dict[str, Any]:
    """`pcsystemd list --json` (pystemd over D-Bus, history, croniter-free) for one job."""
    listing = json.loads(box.exec(["pcsystemd", "list", "--json"]).stdout)
    (report,) = [job for job in listing["jobs"] if job["slug"] == slug]
    return dict(report)


def test_install_run_upgrade_remove_purge(box: Sandbox, deb: Path, upgrade_deb: Path) -> None:
    install(box, deb)

    # What the maintainer scripts set up: the user, the directories, the notify unit.
    assert box.exec(["getent", "passwd", "pcsystemd"]).stdout.startswith("pcsystemd:")
    modes = box.exec(
        [
            "stat",
            "-c",
            "%n %a %U",
            "/run/pcsystemd/locks",
            "/etc/pcsystemd/jobs",
            "/var/log/pcsystemd",
            "/var/lib/pcsystemd",
        ]
    ).stdout.splitlines()
    assert modes == [
        "/run/pcsystemd/locks 700 root",
        "/etc/pcsystemd/jobs 755 root",
        "/var/log/pcsystemd 755 root",
        "/var/lib/pcsystemd 755 root",
    ]
    assert box.unit_property("pcsystemd-notify@yak.service", "LoadState") == "loaded"
    verify = box.exec(["systemd-analyze", "verify", "pcsystemd-notify@yak.service"], check=False)
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
    version = box.exec(["pcsystemd", "--version"]).stdout.strip()
    assert version == f"pcsystemd {pcsystemd.__version__}"

    # An example job from the package's own docs becomes a live timer.
    box.exec(["cp", EXAMPLE_JOB, "/etc/pcsystemd/jobs/yak.yaml"])
    box.write_file("/etc/pcsystemd/jobs/hello.yaml", HELLO_JOB)
    assert box.unit_property("pcsystemd-reload.path", "ActiveState") == "active"
    wait_for_live_timer(box, "yak")
    assert box.unit_property("pcsystemd-yak.timer", "ActiveState") == "active"

    # A started run writes its log file and its journal lines.
    assert run_to_completion(box, "pcsystemd-yak.service") == "success"
    assert len(run_logs(box, "yak")) == 1
    assert run_to_completion(box, "pcsystemd-hello.service") == "success"
    (hello_log,) = run_logs(box, "hello")
    log_text = box.read_file(hello_log)
    assert "hello-stdout" in log_text and "hello-stderr" in log_text
    journal = box.journal("pcsystemd-hello.service")
    assert "hello-stdout" in journal and "hello-stderr" in journal
    errors = box.exec(
        ["journalctl", "--no-pager", "-o", "cat", "-p", "err", "-u", "pcsystemd-hello.service"]
    ).stdout
    assert "hello-stderr" in errors and "hello-stdout" not in errors
    report = job_report(box, "yak")
    assert report["timer_active"] and report["next_run"] and report["result"] == "success"
    history = box.read_file("/var/lib/pcsystemd/yak/history.json")

    # An upgrade keeps state, history and logs, keeps the timers running, and (postinst)
    # makes a job dropped in meanwhile live without any further command.
    box.write_file("/etc/pcsystemd/jobs/late.yaml", LATE_JOB)
    install(box, upgrade_deb)
    installed = box.exec(["dpkg-query", "-W", "-f", "${Version}", "pcsystemd"]).stdout
    assert installed == f"{pcsystemd.__version__}+upgrade1"
    assert box.read_file("/var/lib/pcsystemd/yak/history.json") == history
    assert len(run_logs(box, "yak")) == 1
    assert box.unit_property("pcsystemd-yak.timer", "ActiveState") == "active"
    assert box.unit_property("pcsystemd-late.timer", "ActiveState") == "active"
    assert run_to_completion(box, "pcsystemd-yak.service") == "success"
    assert len(run_logs(box, "yak")) == 2
    box.exec(["pcsystemd", "disable", "late"], timeout=120)  # a runtime switch, under /etc
    assert box.exists("/etc/pcsystemd/disabled/late")

    # Removal with a failed unit and a running job leaves nothing loaded, running or failed.
    box.write_file("/etc/pcsystemd/jobs/broken.yaml", FAILING_JOB)
    box.write_file("/etc/pcsystemd/jobs/sleeper.yaml", SLEEPING_JOB)
    box.systemctl("daemon-reload")
    assert run_to_completion(box, "pcsystemd-broken.service") != "success"
    assert failed_units(box), "the failing job should have left a failed unit"
    box.systemctl("start", "--no-block", "pcsystemd-sleeper.service")
    wait_until(
        lambda: box.unit_property("pcsystemd-sleeper.service", "ActiveState") == "active",
        30,
        message="the sleeping job to run",
    )
    dpkg(box, "--remove", "pcsystemd")
    assert_no_pcsystemd_units(box)
    assert box.exec(["pgrep", "-x", "sleep"], check=False).returncode == 1, "the job outlived it"
    # Remove keeps state, history, logs and the operator's job files.
    assert box.read_file("/var/lib/pcsystemd/yak/history.json") != ""
    assert len(run_logs(box, "yak")) == 2
    assert box.exists("/etc/pcsystemd/jobs/yak.yaml")

    # Purge deletes state, history, logs, locks and switches (packaging/README.md), keeps jobs.
    dpkg(box, "--purge", "pcsystemd")
    for path in STATE_PATHS:
        assert not box.exists(path), f"{path} survived the purge"
    assert box.exists("/etc/pcsystemd/jobs/yak.yaml"), "job files are the operator's"
    status = box.exec(["dpkg-query", "-W", "-f", "${db:Status-Status}", "pcsystemd"], check=False)
    assert status.returncode != 0 or status.stdout in ("", "not-installed")
    assert_no_pcsystemd_units(box)


def assert_no_pcsystemd_units(box: Sandbox) -> None:
    assert pcsystemd_units(box) == []
    assert failed_units(box) == []
    # (exit status 1 when nothing matches)
    unit_files = box.systemctl("list-unit-files", "--no-legend", "pcsystemd*", check=False)
    assert unit_files.stdout.strip() == ""
    assert "pcsystemd" not in box.systemctl("list-timers", "--all").stdout
    leftovers = box.exec(
        ["find", "/etc/systemd/system", "/run/systemd/system", "-name", "pcsystemd*"]
    ).stdout
    assert leftovers == ""


def test_removal_in_apply_mode_removes_the_applied_units(box: Sandbox, deb: Path) -> None:
    """Units `pcsystemd apply` wrote to /etc/systemd/system do not outlive the package."""
    install(box, deb)
    box.write_file("/etc/pcsystemd/pcsystemd.yaml", "mode: apply\n")
    box.exec(["cp", EXAMPLE_JOB, "/etc/pcsystemd/jobs/yak.yaml"])
    box.exec(["pcsystemd", "apply"], timeout=120)
    assert box.unit_property("pcsystemd-yak.timer", "ActiveState") == "active"
    fragment = box.unit_property("pcsystemd-yak.timer", "FragmentPath")
    assert fragment == "/etc/systemd/system/pcsystemd-yak.timer"
    dpkg(box, "--remove", "pcsystemd")
    assert_no_pcsystemd_units(box)
    assert box.exists("/etc/pcsystemd/jobs/yak.yaml")


def test_packaged_code_uses_debians_libraries(box: Sandbox, deb: Path) -> None:
    """Debian 12's pystemd 0.11 and croniter 1.3.5 are what the installed pcsystemd runs on."""
    install(box, deb)
    versions = dict(
        line.split()
        for line in box.exec(
            [
                "dpkg-query",
                "-W",
                "-f",
                "${Package} ${Version}\n",
                "python3-pystemd",
                "python3-croniter",
            ]
        ).stdout.splitlines()
    )
    assert versions["python3-pystemd"].startswith("0.11"), versions
    assert versions["python3-croniter"].startswith("1.3.5"), versions
    imported = box.python(
        "import importlib, pkgutil, croniter, pystemd, pcsystemd\n"
        "for module in pkgutil.iter_modules(pcsystemd.__path__):\n"
        "    importlib.import_module('pcsystemd.' + module.name)\n"
        "print(pcsystemd.__file__, croniter.__file__, pystemd.__file__)\n"
    ).stdout.split()
    assert imported == [
        "/usr/lib/python3/dist-packages/pcsystemd/__init__.py",
        "/usr/lib/python3/dist-packages/croniter/__init__.py",
        "/usr/lib/python3/dist-packages/pystemd/__init__.py",
    ]
    box.exec(["cp", EXAMPLE_JOB, "/etc/pcsystemd/jobs/yak.yaml"])
    # croniter: the next run times
    explained = box.exec(["pcsystemd", "explain", "yak", "--count", "2"]).stdout
    assert len(re.findall(r"12:30:00", explained)) >= 2, explained
    # the issue's own words: drop a job file, `systemctl daemon-reload`, and it is listed
    box.systemctl("daemon-reload")
    wait_for_live_timer(box, "yak")
    # pystemd: the live state over D-Bus
    assert run_to_completion(box, "pcsystemd-yak.service") == "success"
    report = job_report(box, "yak")
    assert report["timer_active"] is True
    assert report["result"] == "success"
    status = box.exec(["pcsystemd", "status", "yak"]).stdout
    assert "yak" in status
