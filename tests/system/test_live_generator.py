"""Generator mode in a real systemd: timers listed with their next elapse, a timer that really
fires, `pcsystemd reload` leaving nothing failed, runtime disable and enable."""

from __future__ import annotations

import json

import pytest

from .harness import Sandbox, wait_until
from .live import (
    JOBS,
    expected_next,
    failed_units,
    loaded_units,
    next_elapse,
    pcsystemd,
    steps,
    write_job,
)

pytestmark = pytest.mark.system


def test_every_enabled_job_is_listed_with_its_next_elapse(clean_sandbox: Sandbox) -> None:
    box = clean_sandbox
    write_job(box, "yak", 'name: Shave the yak\ncommand: /bin/true\nschedule: "30 12 * * *"\n')
    write_job(
        box,
        "report",
        'name: Report\ncommand: /bin/true\nschedule: "0 6 1 * mon"\ntimezone: Europe/Berlin\n',
    )
    write_job(
        box, "resting", 'name: Resting\ncommand: /bin/true\nschedule: "* * * * *"\ndisabled: true\n'
    )
    write_job(box, "by-hand", "name: By hand\ncommand: /bin/true\n")

    box.systemctl("daemon-reload")
    # the generator compiled the jobs: systemd knows both timers, and no others
    known = box.systemctl("list-timers", "--all", "--plain", "--no-legend").stdout
    assert "pcsystemd-yak.timer" in known and "pcsystemd-report.timer" in known
    assert "pcsystemd-resting.timer" not in known and "pcsystemd-by-hand" not in known
    assert box.unit_property("pcsystemd-by-hand.service", "LoadState") == "loaded"

    # a bare daemon-reload leaves new timers inactive; `pcsystemd reload` starts them
    reloaded = pcsystemd(box, "reload")
    assert ("start", "pcsystemd-report.timer") in steps(reloaded.stdout)
    assert ("start", "pcsystemd-yak.timer") in steps(reloaded.stdout)
    active = box.systemctl("list-timers", "--plain", "--no-legend").stdout
    assert "pcsystemd-yak.timer" in active and "pcsystemd-report.timer" in active
    assert next_elapse(box, "pcsystemd-yak.timer") == expected_next(box, "30 12 * * *", "UTC")
    assert next_elapse(box, "pcsystemd-report.timer") == expected_next(
        box, "0 6 1 * mon", "Europe/Berlin"
    )

    again = pcsystemd(box, "reload", "--check", check=False)
    assert (again.returncode, again.stdout) == (0, ""), again.stderr


def test_a_timer_really_fires_into_the_log_file_and_the_journal(clean_sandbox: Sandbox) -> None:
    box = clean_sandbox
    write_job(
        box,
        "tick",
        "name: Every minute\n"
        "command: /bin/sh -c 'echo fired-by-the-timer as $(id -un); echo to-stderr >&2'\n"
        'schedule: "* * * * *"\n',
    )
    pcsystemd(box, "reload")
    assert box.unit_property("pcsystemd-tick.timer", "ActiveState") == "active"

    def finished_log() -> str:
        found = box.exec(["sh", "-c", "cat /var/log/pcsystemd/tick/tick-*.log"], check=False)
        return (
            found.stdout
            if "fired-by-the-timer" in found.stdout and "result" in found.stdout
            else ""
        )

    # next minute boundary plus start-up: at most about 61 s
    log = wait_until(finished_log, 75, interval=1, message="the timer to run the job")
    assert "[stdout] fired-by-the-timer as pcsystemd" in log
    assert "[stderr] to-stderr" in log
    journal = box.journal("pcsystemd-tick.service")
    assert "fired-by-the-timer as pcsystemd" in journal
    errors = box.exec(
        ["journalctl", "--no-pager", "-o", "cat", "-p", "err", "-u", "pcsystemd-tick.service"]
    ).stdout
    assert "to-stderr" in errors and "fired-by-the-timer" not in errors

    listed = json.loads(pcsystemd(box, "list", "--json").stdout)["jobs"]
    [tick] = listed
    assert tick["slug"] == "tick" and tick["result"] in ("success", "running")
    assert tick["last_run"] is not None and tick["next_run"] is not None


def test_reload_removes_a_gone_job_and_leaves_nothing_failed(clean_sandbox: Sandbox) -> None:
    box = clean_sandbox
    write_job(box, "stays", 'name: Stays\ncommand: /bin/true\nschedule: "0 3 * * *"\n')
    write_job(box, "sleeper", 'name: Sleeper\ncommand: /bin/sleep 300\nschedule: "0 4 * * *"\n')
    write_job(box, "broken", 'name: Broken\ncommand: /bin/false\nschedule: "0 5 * * *"\n')
    pcsystemd(box, "reload")
    pcsystemd(box, "start", "sleeper")
    failing = pcsystemd(box, "start", "--wait", "broken", check=False)
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert box.unit_property("pcsystemd-broken.service", "ActiveState") == "failed"
    wait_until(
        lambda: box.unit_property("pcsystemd-sleeper.service", "SubState") == "running",
        15,
        message="the sleeper to run",
    )

    box.exec(["rm", f"{JOBS}/sleeper.yaml", f"{JOBS}/broken.yaml"])
    check = pcsystemd(box, "reload", "--check", check=False)
    assert check.returncode == 3
    planned = steps(check.stdout)
    assert planned.index(("stop", "pcsystemd-sleeper.timer")) < planned.index(
        ("stop", "pcsystemd-sleeper.service")
    )
    assert ("reset-failed", "pcsystemd-broken.service") in planned
    assert all(line.startswith("would ") for line in check.stdout.splitlines())

    assert box.unit_property("pcsystemd-lock@sleeper.service", "ActiveState") == "active"
    reloaded = pcsystemd(box, "reload")
    assert ("release", "pcsystemd-lock@sleeper.service") in steps(reloaded.stdout)
    assert loaded_units(box, "pcsystemd-sleeper*") == []
    assert loaded_units(box, "pcsystemd-broken*") == []
    # no lock unit of a gone job stays active until the next boot
    for gone in ("sleeper", "broken"):
        assert box.unit_property(f"pcsystemd-lock@{gone}.service", "ActiveState") == "inactive"
    assert [unit for unit in failed_units(box) if unit.startswith("pcsystemd")] == []
    assert box.unit_property("pcsystemd-stays.timer", "ActiveState") == "active"
    # the stopped run recorded itself
    recorded = box.read_file("/var/lib/pcsystemd/sleeper/history.json")
    assert json.loads(recorded)["runs"][-1]["result"] == "stopped"


def test_disable_and_enable_at_runtime(clean_sandbox: Sandbox) -> None:
    box = clean_sandbox
    write_job(box, "yak", 'name: Yak\ncommand: /bin/true\nschedule: "30 12 * * *"\n')
    pcsystemd(box, "reload")

    disabled = pcsystemd(box, "disable", "yak")
    assert ("stop", "pcsystemd-yak.timer") in steps(disabled.stdout)
    assert box.exists("/etc/pcsystemd/disabled/yak")
    assert loaded_units(box, "pcsystemd-yak.timer") == []
    assert "pcsystemd-yak" not in box.systemctl("list-timers", "--all").stdout
    [row] = json.loads(pcsystemd(box, "list", "--json").stdout)["jobs"]
    assert (row["disabled"], row["next_run"]) == ("runtime", None)
    # the job file is untouched, and a reload keeps the job disabled
    assert "disabled" not in box.read_file(f"{JOBS}/yak.yaml")
    assert pcsystemd(box, "reload", "--check", check=False).returncode == 0
    box.systemctl("daemon-reload")
    assert loaded_units(box, "pcsystemd-yak.timer") == []

    enabled = pcsystemd(box, "enable", "yak")
    assert ("start", "pcsystemd-yak.timer") in steps(enabled.stdout)
    assert not box.exists("/etc/pcsystemd/disabled/yak")
    assert box.unit_property("pcsystemd-yak.timer", "ActiveState") == "active"
    [row] = json.loads(pcsystemd(box, "list", "--json").stdout)["jobs"]
    assert row["disabled"] is None and row["next_run"] is not None
