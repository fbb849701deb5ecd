"""Helpers shared by the test_live_* system tests (pcsystemd driven inside the sandbox)."""

from __future__ import annotations

import subprocess

from .harness import Sandbox

JOBS = "/etc/pcsystemd/jobs"
CONFIG = "/etc/pcsystemd/pcsystemd.yaml"


def write_job(box: Sandbox, slug: str, text: str) -> None:
    box.write_file(f"{JOBS}/{slug}.yaml", text)


def pcsystemd(box: Sandbox, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return box.exec(["pcsystemd", *args], check=check, timeout=120)


def next_elapse(box: Sandbox, timer: str) -> str:
    """The timer's next elapse as systemctl prints it (local time of the container)."""
    return box.unit_property(timer, "NextElapseUSecRealtime")


def expected_next(box: Sandbox, expression: str, zone: str) -> str:
    """croniter's next fire time of a cron expression, printed as systemctl prints times."""
    code = (
        "import sys, datetime, zoneinfo, croniter\n"
        "now = datetime.datetime.now(zoneinfo.ZoneInfo(sys.argv[2]))\n"
        "when = croniter.croniter(sys.argv[1], now).get_next(datetime.datetime)\n"
        "print(when.astimezone().strftime('%a %Y-%m-%d %H:%M:%S %Z'))"
    )
    return box.python(code, expression, zone).stdout.strip()


def steps(output: str) -> list[tuple[str, str]]:
    """The (action, target) pairs `apply`/`reload` print, with or without `would `."""
    pairs = []
    for line in output.splitlines():
        words = line.removeprefix("would ").split()
        if len(words) >= 2:
            pairs.append((words[0], words[1]))
    return pairs


def loaded_units(box: Sandbox, pattern: str = "pcsystemd-*") -> list[str]:
    output = box.systemctl("list-units", "--all", "--plain", "--no-legend", pattern).stdout
    return [line.split()[0] for line in output.splitlines() if line.strip()]


def failed_units(box: Sandbox) -> list[str]:
    output = box.systemctl("list-units", "--failed", "--plain", "--no-legend").stdout
    return [line.split()[0] for line in output.splitlines() if line.strip()]
