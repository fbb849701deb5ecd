"""Apply mode in a real systemd: `pcsystemd apply` is idempotent, `--check` reports honestly,
gone jobs leave nothing failed, invalid jobs keep their units, and the modes never mix."""

from __future__ import annotations

import json

import pytest

from .harness import Sandbox, wait_until
from .live import (
    CONFIG,
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

ETC = "/etc/systemd/system"


@pytest.fixture
def box(clean_sandbox: Sandbox) -> Sandbox:
    """The sandbox in apply mode (the generator stays installed and must stand aside)."""
    clean_sandbox.write_file(CONFIG, "mode: apply\n")
    return clean_sandbox


def our_files(box: Sandbox) -> list[str]:
    listing = box.exec(["sh", "-c", f"cd {ETC} && ls -1d pcsystemd-* 2>/dev/null || true"])
    return sorted(listing.stdout.split())


def test_apply_and_reload_refuse_the_other_mode(clean_sandbox: Sandbox) -> None:
    box = clean_sandbox
    write_job(box, "yak", 'name: Yak\ncommand: /bin/true\nschedule: "30 12 * * *"\n')
    for args in (["apply"], ["apply", "--check"]):
        refused = pcsystemd(box, *args, check=False)
        assert refused.returncode == 2, refused
        assert "refusing to apply" in refused.stderr and "mode: apply" in refused.stderr
    assert our_files(box) == []

    box.write_file(CONFIG, "mode: apply\n")
    refused = pcsystemd(box, "reload", check=False)
    assert refused.returncode == 2 and "run `pcsystemd apply` instead" in refused.stderr


def test_apply_twice_is_idempotent_and_check_tells_the_truth(box: Sandbox) -> None:
    write_job(box, "yak", 'name: Yak\ncommand: /bin/true\nschedule: "30 12 * * *"\n')
    write_job(
        box, "audit", 'name: Audit\ncommand: /bin/true\nschedule: "35 19 * * *"\ntags: [audit]\n'
    )

    check = pcsystemd(box, "apply", "--check", check=False)
    assert check.returncode == 3, check
    planned = steps(check.stdout)
    assert ("add", f"{ETC}/pcsystemd-yak.timer") in planned
    assert ("add", f"{ETC}/pcsystemd-tag-audit.target") in planned
    assert ("enable", "pcsystemd-yak.timer") in planned
    assert ("start", "pcsystemd-audit.timer") in planned
    assert our_files(box) == [], "--check wrote files"

    applied = pcsystemd(box, "apply")
    assert [step for step in steps(applied.stdout) if step[0] != "add"] == [
        ("enable", "pcsystemd-audit.timer"),
        ("enable", "pcsystemd-yak.timer"),
        ("reload", "systemd"),
        ("start", "pcsystemd-audit.timer"),
        ("start", "pcsystemd-yak.timer"),
    ]
    for timer in ("pcsystemd-yak.timer", "pcsystemd-audit.timer"):
        assert box.systemctl("is-enabled", timer).stdout.strip() == "enabled"
        assert box.unit_property(timer, "ActiveState") == "active"
        assert box.unit_property(timer, "FragmentPath") == f"{ETC}/{timer}"
    assert next_elapse(box, "pcsystemd-yak.timer") == expected_next(box, "30 12 * * *", "UTC")
    # the generator stood aside: nothing of ours in its directory
    generated = box.exec(["sh", "-c", "ls /run/systemd/generator | grep pcsystemd || true"])
    assert generated.stdout == ""

    stamps = box.exec(["sh", "-c", f"stat -c '%n %Y' {ETC}/pcsystemd-*"]).stdout
    for args in (["apply", "--check"], ["apply"]):
        again = pcsystemd(box, *args, check=False)
        assert (again.returncode, again.stdout) == (0, ""), again
    assert "nothing to change" in again.stderr
    assert box.exec(["sh", "-c", f"stat -c '%n %Y' {ETC}/pcsystemd-*"]).stdout == stamps

    write_job(box, "yak", 'name: Yak\ncommand: /bin/true\nschedule: "45 6 * * *"\n')
    check = pcsystemd(box, "apply", "--check", check=False)
    assert check.returncode == 3
    # The service changes too: its run spec carries the job file's fingerprint.
    assert steps(check.stdout) == [
        ("change", f"{ETC}/pcsystemd-yak.service"),
        ("change", f"{ETC}/pcsystemd-yak.timer"),
        ("reload", "systemd"),
        ("restart", "pcsystemd-yak.timer"),
    ]
    pcsystemd(box, "apply")
    assert next_elapse(box, "pcsystemd-yak.timer") == expected_next(box, "45 6 * * *", "UTC")
    assert pcsystemd(box, "apply", "--check", check=False).returncode == 0


def test_apply_removes_gone_jobs_and_leaves_nothing_failed(box: Sandbox) -> None:
    write_job(box, "stays", 'name: Stays\ncommand: /bin/true\nschedule: "0 3 * * *"\n')
    write_job(
        box,
        "sleeper",
        'name: Sleeper\ncommand: /bin/sleep 300\nschedule: "0 4 * * *"\ntags: [night]\n',
    )
    write_job(box, "broken", 'name: Broken\ncommand: /bin/false\nschedule: "0 5 * * *"\n')
    pcsystemd(box, "apply")
    pcsystemd(box, "start", "sleeper")
    assert pcsystemd(box, "start", "--wait", "broken", check=False).returncode == 1
    wait_until(
        lambda: box.unit_property("pcsystemd-sleeper.service", "SubState") == "running",
        15,
        message="the sleeper to run",
    )

    box.exec(["rm", f"{JOBS}/sleeper.yaml", f"{JOBS}/broken.yaml"])
    removed = pcsystemd(box, "apply")
    done = steps(removed.stdout)
    # stopped (timer first) and disabled before the files went
    assert done.index(("stop", "pcsystemd-sleeper.timer")) < done.index(
        ("stop", "pcsystemd-sleeper.service")
    )
    assert done.index(("stop", "pcsystemd-sleeper.service")) < done.index(
        ("remove", f"{ETC}/pcsystemd-sleeper.service")
    )
    assert ("disable", "pcsystemd-broken.timer") in done
    assert ("remove", f"{ETC}/pcsystemd-tag-night.target") in done
    assert ("reset-failed", "pcsystemd-broken.service") in done

    assert our_files(box) == [
        "pcsystemd-lock@.service",
        "pcsystemd-notify@.service",
        "pcsystemd-stays.service",
        "pcsystemd-stays.timer",
    ]
    assert loaded_units(box, "pcsystemd-sleeper*") == []
    assert loaded_units(box, "pcsystemd-broken*") == []
    assert loaded_units(box, "pcsystemd-tag-*") == []
    assert [unit for unit in failed_units(box) if unit.startswith("pcsystemd")] == []
    links = box.exec(["ls", f"{ETC}/timers.target.wants"]).stdout.split()
    assert [link for link in links if link.startswith("pcsystemd")] == ["pcsystemd-stays.timer"]
    recorded = json.loads(box.read_file("/var/lib/pcsystemd/sleeper/history.json"))
    assert recorded["runs"][-1]["result"] == "stopped"
    assert pcsystemd(box, "apply", "--check", check=False).returncode == 0


def test_an_invalid_job_keeps_its_last_good_units(box: Sandbox) -> None:
    write_job(box, "yak", 'name: Yak\ncommand: /bin/true\nschedule: "30 12 * * *"\n')
    pcsystemd(box, "apply")
    write_job(box, "yak", 'name: Yak\ncommand: /bin/true\nschedule: "30 12 * * *"\nshedule: x\n')

    for args in (["apply", "--check"], ["apply"]):
        result = pcsystemd(box, *args, check=False)
        assert result.returncode == 1, result
        assert f"{JOBS}/yak.yaml:4:1: error:" in result.stderr
        assert result.stdout == ""
    assert box.unit_property("pcsystemd-yak.timer", "ActiveState") == "active"
    assert box.exists(f"{ETC}/pcsystemd-yak.timer")


def test_disable_and_enable_at_runtime_in_apply_mode(box: Sandbox) -> None:
    write_job(box, "yak", 'name: Yak\ncommand: /bin/true\nschedule: "30 12 * * *"\n')
    pcsystemd(box, "apply")

    disabled = pcsystemd(box, "disable", "yak")
    assert [pair for pair in steps(disabled.stdout) if pair[1].startswith(("pcsystemd", "/"))] == [
        ("stop", "pcsystemd-yak.timer"),
        ("disable", "pcsystemd-yak.timer"),
        ("remove", f"{ETC}/pcsystemd-yak.timer"),
    ]
    assert loaded_units(box, "pcsystemd-yak.timer") == []
    assert pcsystemd(box, "apply", "--check", check=False).returncode == 0

    pcsystemd(box, "enable", "yak")
    assert box.systemctl("is-enabled", "pcsystemd-yak.timer").stdout.strip() == "enabled"
    assert box.unit_property("pcsystemd-yak.timer", "ActiveState") == "active"
    assert pcsystemd(box, "apply", "--check", check=False).returncode == 0


def test_switching_from_generator_to_apply_mode_takes_the_timers_over(
    clean_sandbox: Sandbox,
) -> None:
    box = clean_sandbox
    write_job(box, "yak", 'name: Yak\ncommand: /bin/true\nschedule: "30 12 * * *"\n')
    pcsystemd(box, "reload")
    assert box.unit_property("pcsystemd-yak.timer", "UnitFileState") == "generated"

    box.write_file(CONFIG, "mode: apply\n")
    pcsystemd(box, "apply")
    assert box.unit_property("pcsystemd-yak.timer", "FragmentPath") == f"{ETC}/pcsystemd-yak.timer"
    assert box.unit_property("pcsystemd-yak.timer", "ActiveState") == "active"

    # no watcher: this reload's own output is what the test reads
    box.write_file(CONFIG, "mode: generator\nauto_reload: false\n")
    back = pcsystemd(box, "reload")
    assert ("remove", f"{ETC}/pcsystemd-yak.timer") in steps(back.stdout)
    assert our_files(box) == []
    assert box.unit_property("pcsystemd-yak.timer", "UnitFileState") == "generated"
    assert box.unit_property("pcsystemd-yak.timer", "ActiveState") == "active"
    assert [unit for unit in failed_units(box) if unit.startswith("pcsystemd")] == []
