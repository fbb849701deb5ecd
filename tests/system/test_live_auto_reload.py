"""auto_reload in a real systemd: pcsystemd-reload.path makes job changes live by itself.

A bare `systemctl daemon-reload` loads a new job's timer but leaves it inactive (systemd does
not start a newly wanted unit on reload); the watcher runs `pcsystemd reload --auto` whenever
the job directory or the global config changes, so no command is needed at all.
"""

from __future__ import annotations

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

WATCHER = "pcsystemd-reload.path"
WATCHER_SERVICE = "pcsystemd-reload.service"
# Each reload is a Python start, a daemon-reload and a few D-Bus calls: seconds, not minutes.
LIVE_WITHIN_SECONDS = 45


def job(schedule: str) -> str:
    return f'name: Watched\ncommand: /bin/true\nschedule: "{schedule}"\n'


def listed_timers(box: Sandbox) -> str:
    return box.systemctl("list-timers", "--plain", "--no-legend").stdout


def watcher_idle(box: Sandbox) -> bool:
    return box.unit_property(WATCHER_SERVICE, "ActiveState") in ("inactive", "failed")


@pytest.fixture
def watched(clean_sandbox: Sandbox) -> Sandbox:
    """Generator mode with auto_reload on (the shipped default), the watcher running."""
    box = clean_sandbox
    box.write_file(CONFIG, "auto_reload: true\n")
    started = pcsystemd(box, "reload")
    assert ("start", WATCHER) in steps(started.stdout)
    assert box.unit_property(WATCHER, "ActiveState") == "active"
    assert box.unit_property(WATCHER, "UnitFileState") == "generated"
    return box


def test_a_dropped_job_file_goes_live_changes_and_goes_without_a_command(
    watched: Sandbox,
) -> None:
    box = watched
    write_job(box, "watched", job("30 12 * * *"))
    wait_until(
        lambda: "pcsystemd-watched.timer" in listed_timers(box),
        LIVE_WITHIN_SECONDS,
        message="the new job's timer in list-timers",
    )
    assert next_elapse(box, "pcsystemd-watched.timer") == expected_next(box, "30 12 * * *", "UTC")
    wait_until(lambda: watcher_idle(box), LIVE_WITHIN_SECONDS, message="the watcher to finish")
    journal = box.journal(WATCHER_SERVICE)
    assert ("start", "pcsystemd-watched.timer") in steps(journal), journal

    # a new schedule is live as soon as the file changes
    write_job(box, "watched", job("45 3 * * *"))
    wait_until(
        lambda: (
            next_elapse(box, "pcsystemd-watched.timer") == expected_next(box, "45 3 * * *", "UTC")
        ),
        LIVE_WITHIN_SECONDS,
        message="the changed schedule to be live",
    )

    # a removed job leaves no unit and nothing failed
    box.exec(["rm", f"{JOBS}/watched.yaml"])
    wait_until(
        lambda: loaded_units(box, "pcsystemd-watched*") == [],
        LIVE_WITHIN_SECONDS,
        message="the removed job's units to go",
    )
    wait_until(lambda: watcher_idle(box), LIVE_WITHIN_SECONDS, message="the watcher to finish")
    assert failed_units(box) == []
    assert box.unit_property(WATCHER, "ActiveState") == "active"


def test_dropping_a_job_file_and_a_bare_daemon_reload_list_the_timer(watched: Sandbox) -> None:
    # What an operator used to systemd does (the issue's own words); the watcher has either
    # already done it or does it now.
    box = watched
    write_job(box, "bare", job("0 6 * * *"))
    box.systemctl("daemon-reload")
    wait_until(
        lambda: "pcsystemd-bare.timer" in listed_timers(box),
        LIVE_WITHIN_SECONDS,
        message="the timer in list-timers after a bare daemon-reload",
    )


def test_a_burst_of_job_files_all_go_live(watched: Sandbox) -> None:
    # A config management run writes files one after another while the watcher is already
    # reloading: systemd merges those changes into the running start, so `reload --auto`
    # must notice them itself.
    box = watched
    slugs = [f"burst-{number}" for number in range(8)]
    script = "".join(
        f"printf '{job('15 1 * * *')}' > {JOBS}/{slug}.yaml; sleep 0.2; " for slug in slugs
    )
    box.shell(script)
    wait_until(
        lambda: all(f"pcsystemd-{slug}.timer" in listed_timers(box) for slug in slugs),
        LIVE_WITHIN_SECONDS * 2,
        message="every timer of the burst in list-timers",
    )
    wait_until(lambda: watcher_idle(box), LIVE_WITHIN_SECONDS, message="the watcher to finish")
    assert failed_units(box) == []
    check = pcsystemd(box, "reload", "--check", check=False)
    assert (check.returncode, check.stdout) == (0, ""), check.stderr


def test_an_invalid_job_file_changes_nothing_and_fails_the_watcher_until_it_is_fixed(
    watched: Sandbox,
) -> None:
    box = watched
    write_job(box, "typo", job("0 1 * * *"))
    wait_until(
        lambda: "pcsystemd-typo.timer" in listed_timers(box) and watcher_idle(box),
        LIVE_WITHIN_SECONDS,
        message="the job live",
    )
    # A typo saved (or a copy that closed half-written): the watcher holds, so the job keeps
    # its units, its timer and any running run, and says why it failed.
    write_job(box, "typo", 'name: Typo\ncommand: /bin/true\nshedule: "0 1 * * *"\n')
    write_job(box, "other", job("0 2 * * *"))
    wait_until(
        lambda: box.unit_property(WATCHER_SERVICE, "ActiveState") == "failed",
        LIVE_WITHIN_SECONDS,
        message="the watcher's run to fail on the invalid job file",
    )
    assert box.unit_property(WATCHER_SERVICE, "Result") == "exit-code"
    journal = box.journal(WATCHER_SERVICE)
    assert f"{JOBS}/typo.yaml:3:1" in journal and "nothing changed" in journal
    assert box.unit_property("pcsystemd-typo.timer", "ActiveState") == "active"
    assert "pcsystemd-other.timer" not in listed_timers(box), "other changes wait for the fix"
    assert box.unit_property(WATCHER, "ActiveState") == "active"  # still watching

    write_job(box, "typo", job("0 3 * * *"))
    wait_until(
        lambda: (
            "pcsystemd-other.timer" in listed_timers(box)
            and box.unit_property(WATCHER_SERVICE, "ActiveState") == "inactive"
        ),
        LIVE_WITHIN_SECONDS,
        message="the fix and the waiting change live, the watcher's run a success",
    )
    assert next_elapse(box, "pcsystemd-typo.timer") == expected_next(box, "0 3 * * *", "UTC")
    assert failed_units(box) == []


def test_turning_auto_reload_off_removes_the_watcher_and_leaves_nothing_failed(
    watched: Sandbox,
) -> None:
    box = watched
    # the watcher sees its own config change and takes itself away
    box.write_file(CONFIG, "auto_reload: false\n")
    wait_until(
        lambda: loaded_units(box, "pcsystemd-reload*") == [],
        LIVE_WITHIN_SECONDS,
        message="the watcher's units to go",
    )
    assert failed_units(box) == []
    # from now on a job change waits for `pcsystemd reload`
    write_job(box, "later", job("0 2 * * *"))
    pending = pcsystemd(box, "reload", "--check", check=False)
    assert pending.returncode == 3, pending.stderr
    assert ("start", "pcsystemd-later.timer") in steps(pending.stdout)
