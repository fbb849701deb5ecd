"""The runtime shim under a real systemd: units started with systemctl, results as systemd sees
them, output in the log file and the journal, timeouts, stops and the lock."""

from __future__ import annotations

import json

import pytest
from run_logs import captured

from pcsystemd.journal import STALL_SECONDS
from pcsystemd.runner import SPEC_FROM_UNIT, SPEC_STALE

from .harness import Sandbox, wait_until
from .live import pcsystemd, write_job

pytestmark = pytest.mark.system


def start_and_wait(box: Sandbox, slug: str) -> int:
    """`systemctl start --wait`: returns when the run has ended; its exit status.

    The tests start from a clean /run (no lock directory or lock file yet), as after a boot:
    the unit itself must manage that first start.
    """
    started = box.systemctl("start", "--wait", f"pcsystemd-{slug}.service", check=False)
    return started.returncode


def journal_cursor(box: Sandbox) -> str:
    """Where the journal ends now: one container serves every test, and an earlier test may
    have run a job of the same name, so journal checks look only after this point."""
    shown = box.exec(["journalctl", "--no-pager", "-q", "-n", "0", "--show-cursor"]).stdout
    return shown.strip().removeprefix("-- cursor: ")


def journal_of(box: Sandbox, slug: str, *, after: str, most_priority: int = 7) -> str:
    """The unit's messages after the cursor, up to a priority (3 = what `-p err` shows).

    The priority is filtered here: journalctl 252 returns nothing for `-u … -p err
    --after-cursor=…` when the cursor's own entry does not match the filters.
    """
    box.exec(["journalctl", "--flush"], check=False)
    argv = ["journalctl", "--no-pager", "-o", "json", "-u", f"pcsystemd-{slug}.service"]
    entries = [
        json.loads(line)
        for line in box.exec([*argv, f"--after-cursor={after}"]).stdout.splitlines()
    ]
    return "".join(
        f"{entry['MESSAGE']}\n"
        for entry in entries
        if int(entry.get("PRIORITY", 6)) <= most_priority and isinstance(entry.get("MESSAGE"), str)
    )


def run_log(box: Sandbox, slug: str) -> str:
    found = box.exec(["sh", "-c", f"cat /var/log/pcsystemd/{slug}/{slug}-*.log"], check=False)
    return found.stdout


def last_run(box: Sandbox, slug: str) -> dict[str, object]:
    data = json.loads(box.read_file(f"/var/lib/pcsystemd/{slug}/history.json"))
    run: dict[str, object] = data["runs"][-1]
    return run


def test_a_successful_run_logs_to_file_and_journal(clean_sandbox: Sandbox) -> None:
    box = clean_sandbox
    write_job(
        box,
        "hello",
        "name: Hello\n"
        "command: /bin/sh -c 'echo out-line as $(id -un); echo err-line >&2; echo out-two'\n",
    )
    pcsystemd(box, "reload")
    cursor = journal_cursor(box)
    assert start_and_wait(box, "hello") == 0
    assert box.unit_property("pcsystemd-hello.service", "Result") == "success"
    assert box.unit_property("pcsystemd-hello.service", "ActiveState") == "inactive"

    log = run_log(box, "hello")
    assert "[stdout] out-line as pcsystemd\n" in log
    assert "[stderr] err-line\n" in log
    assert "# command: /bin/sh -c 'echo out-line" in log
    assert log.endswith("# result: success\n# exit status: 0\n")
    files = box.exec(["ls", "-ln", "/var/log/pcsystemd/hello"]).stdout
    assert files.count("hello-") == 1

    journal = wait_until(
        lambda: next(
            (text for text in [journal_of(box, "hello", after=cursor)] if "hello: success" in text),
            "",
        ),
        15,
        message="the run's result message in the journal",
    )
    assert "out-line as pcsystemd" in journal and "err-line" in journal and "out-two" in journal
    errors = journal_of(box, "hello", after=cursor, most_priority=3).splitlines()
    assert errors == ["err-line"], "exactly the job's stderr lines are at error priority"

    # The shim's own messages carry structured fields that link them to the run.
    entries = [
        json.loads(line)
        for line in box.exec(
            [
                "journalctl",
                "--no-pager",
                "-o",
                "json",
                f"--after-cursor={cursor}",
                "PCSYSTEMD_JOB=hello",
            ]
        ).stdout.splitlines()
    ]
    run_id = last_run(box, "hello")["run_id"]
    assert {entry["PCSYSTEMD_RUN"] for entry in entries} == {run_id}
    assert any(entry.get("PCSYSTEMD_RESULT") == "success" for entry in entries)
    assert all(entry.get("_SYSTEMD_UNIT") == "pcsystemd-hello.service" for entry in entries)


def test_journald_keeps_stdout_at_info_whatever_the_job_prints(clean_sandbox: Sandbox) -> None:
    """The real journald, against what tests/journald_stream.py assumes of it: a `<N>` of the
    job's own, a NUL byte followed by one, and markup stay at info; stderr, NUL-split pieces
    included, is at error priority, with trailing blanks cut."""
    box = clean_sandbox
    write_job(
        box,
        "tricky",
        "name: Tricky\n"
        r"""command: /bin/sh -c 'printf "<3>fake-err\nplain\0<0>after-nul\n<html>\n";"""
        r""" printf "e1\0e2\n  spaced  \n" >&2'"""
        "\n",
    )
    pcsystemd(box, "reload")
    cursor = journal_cursor(box)
    assert start_and_wait(box, "tricky") == 0

    def finished_journal() -> str:
        text = journal_of(box, "tricky", after=cursor)
        return text if "tricky: success" in text else ""

    journal = wait_until(finished_journal, 15, message="the run's result message in the journal")
    for line in ("<3>fake-err", "plain", "<0>after-nul", "<html>"):
        assert f"{line}\n" in journal, (line, journal)
    errors = journal_of(box, "tricky", after=cursor, most_priority=3).splitlines()
    assert errors == ["e1", "e2", "  spaced"], errors
    assert "[stdout] plain\0<0>after-nul\n" in run_log(box, "tricky"), "the log keeps the NUL"


def test_a_failing_run_ends_the_unit_with_exit_code(clean_sandbox: Sandbox) -> None:
    box = clean_sandbox
    write_job(box, "fails", "name: Fails\ncommand: /bin/sh -c 'echo broken >&2; exit 3'\n")
    pcsystemd(box, "reload")
    assert start_and_wait(box, "fails") != 0
    assert box.unit_property("pcsystemd-fails.service", "Result") == "exit-code"
    assert box.unit_property("pcsystemd-fails.service", "ActiveState") == "failed"
    assert box.unit_property("pcsystemd-fails.service", "ExecMainStatus") == "3"
    assert "# result: failed\n# exit status: 3\n" in run_log(box, "fails")
    assert last_run(box, "fails")["result"] == "failed"


def test_a_hung_job_times_out_with_its_whole_tree(clean_sandbox: Sandbox) -> None:
    box = clean_sandbox
    # The main process and two descendants ignore SIGTERM; one left the session (setsid).
    box.write_file(
        "/usr/local/bin/hang",
        "#!/bin/sh\ntrap '' TERM\n(exec sleep 300) &\nsetsid sleep 301 &\n"
        "echo hanging\nsleep 302\n",
        mode=0o755,
    )
    write_job(box, "hangs", "name: Hangs\ncommand: /usr/local/bin/hang\ntimeout: 2s\n")
    pcsystemd(box, "reload")
    assert start_and_wait(box, "hangs") != 0
    assert box.unit_property("pcsystemd-hangs.service", "Result") == "timeout"
    log = run_log(box, "hangs")
    assert "[stdout] hanging\n" in log
    assert "time is up: sending SIGTERM" in log and "sending SIGKILL" in log
    assert "# result: timeout\n" in log
    assert last_run(box, "hangs")["result"] == "timeout"
    # Nothing of the job is left in its cgroup, and no sleeper escaped anywhere.
    assert box.unit_property("pcsystemd-hangs.service", "TasksCurrent") in ("", "[not set]", "0")
    survivors = box.exec(["pgrep", "-f", "sleep 30[012]"], check=False)
    assert survivors.stdout == "", survivors.stdout


def test_systemctl_stop_is_a_clean_stop_recorded_as_stopped(clean_sandbox: Sandbox) -> None:
    box = clean_sandbox
    write_job(box, "long", "name: Long\ncommand: /bin/sh -c 'echo begun; exec sleep 300'\n")
    pcsystemd(box, "reload")
    box.systemctl("start", "pcsystemd-long.service")
    wait_until(lambda: "[stdout] begun" in run_log(box, "long"), 15, message="the job to start")
    box.systemctl("stop", "pcsystemd-long.service")
    assert box.unit_property("pcsystemd-long.service", "ActiveState") == "inactive"
    assert box.unit_property("pcsystemd-long.service", "Result") == "success"
    assert last_run(box, "long")["result"] == "stopped"
    assert "# result: stopped\n" in run_log(box, "long")


def test_a_stopped_journald_does_not_hang_the_run(clean_sandbox: Sandbox) -> None:
    """journald, stopped (as if hung), takes nothing from the unit's stdout stream: the shim
    gives the stream up after its stall limit and the run completes, all output in its log."""
    box = clean_sandbox
    lines, line = 200_000, "x" * 99  # 20 MB: more than systemd's 8 MiB stream buffer holds
    go = "/run/pcsystemd-test-flood-go"
    box.exec(["rm", "-f", go])
    write_job(
        box,
        "flood",
        "name: Flood\ncommand: /bin/sh -c '"
        f"while [ ! -e {go} ]; do sleep 0.1; done; yes {line} | head -n {lines}; "
        "sleep 5; echo finished'\ntimeout: 2m\n",
    )
    pcsystemd(box, "reload")
    cursor = journal_cursor(box)
    box.systemctl("start", "--no-block", "pcsystemd-flood.service")
    # The run's first messages reach a working journald; then it stops, and the flood begins.
    wait_until(lambda: "command started" in run_log(box, "flood"), 15, message="the run to start")
    box.systemctl("kill", "--signal=SIGSTOP", "systemd-journald.service")
    try:
        box.exec(["touch", go])
        note = f"[pcsystemd] writing to the journal failed: nothing taken for {STALL_SECONDS:g} s"
        wait_until(lambda: note in run_log(box, "flood"), 60, message="the shim to give up")
    finally:
        box.systemctl("kill", "--signal=SIGCONT", "systemd-journald.service")
    wait_until(
        lambda: box.unit_property("pcsystemd-flood.service", "ActiveState") == "inactive",
        30,
        message="the run to end",
    )
    assert box.unit_property("pcsystemd-flood.service", "Result") == "success"
    log = run_log(box, "flood")
    # Every byte, in order (the shim's note may have ended a line early, so no newlines).
    printed = captured(log.encode(), b"stdout").replace(b"\n", b"")
    assert printed == (line * lines + "finished").encode()
    assert "# result: success\n" in log
    assert last_run(box, "flood")["result"] == "success"
    # The shim's warning, sent when the run ended, reached journald running again.
    warnings = journal_of(box, "flood", after=cursor, most_priority=4)
    assert "the run's output is complete only in /var/log/pcsystemd/flood/flood-" in warnings


def test_the_lock_file_is_out_of_the_job_users_reach(clean_sandbox: Sandbox) -> None:
    box = clean_sandbox
    write_job(box, "locked", "name: Locked\ncommand: /bin/true\n")
    pcsystemd(box, "reload")
    assert start_and_wait(box, "locked") == 0
    listing = box.exec(["stat", "-c", "%a %U", "/run/pcsystemd/locks"]).stdout.split()
    assert listing == ["700", "root"]
    opened = box.exec(
        ["python3", "-c", "open('/run/pcsystemd/locks/locked.lock')"],
        user="pcsystemd",
        check=False,
    )
    assert opened.returncode != 0 and "PermissionError" in opened.stderr
    by_hand = box.exec(["pcsystemd", "run-job", "locked"], user="pcsystemd", check=False)
    assert by_hand.returncode != 0
    assert "only accessible to root" in by_hand.stderr and "pcsystemd start" in by_hand.stderr


def test_kill_9_of_the_shim_frees_the_lock_for_the_next_run(clean_sandbox: Sandbox) -> None:
    box = clean_sandbox
    write_job(
        box,
        "victim",
        "name: Victim\ncommand: /bin/sh -c 'echo started; exec sleep 300'\noverlap: fail\n",
    )
    write_job(
        box,
        "sibling",
        "name: Sibling\ncommand: /bin/echo sibling ran\nlock: victim\noverlap: fail\n",
    )
    pcsystemd(box, "reload")
    box.systemctl("start", "pcsystemd-victim.service")
    wait_until(lambda: "[stdout] started" in run_log(box, "victim"), 15, message="the victim")
    # The shared lock group is busy: the sibling is refused.
    assert start_and_wait(box, "sibling") != 0
    assert last_run(box, "sibling")["result"] == "locked"

    box.systemctl("kill", "--kill-who=main", "--signal=SIGKILL", "pcsystemd-victim.service")
    wait_until(
        lambda: box.unit_property("pcsystemd-victim.service", "ActiveState") != "active",
        30,
        message="the killed unit to stop",
    )
    assert start_and_wait(box, "sibling") == 0
    assert last_run(box, "sibling")["result"] == "success"


def test_the_unit_passes_the_compiled_job_and_an_edit_is_still_noticed(
    clean_sandbox: Sandbox,
) -> None:
    """$PCSYSTEMD_RUN_SPEC survives systemd's unquoting (quotes, %, $ and backslashes) and the
    shim runs from it; a job file edited without regenerating the units is read again."""
    box = clean_sandbox
    command = '/bin/sh -c \'printf "%s|" "$0" "$GREETING"\' \'a "b" 100% $HOME c:\\temp\''
    write_job(
        box,
        "compiled",
        f"name: Compiled\ncommand: {json.dumps(command)}\n"
        "environment:\n  GREETING: 'say \"hi\" 50% $USER \\ end'\n",
    )
    pcsystemd(box, "reload")
    cursor = journal_cursor(box)
    assert start_and_wait(box, "compiled") == 0
    log = run_log(box, "compiled")
    assert f"# job file: /etc/pcsystemd/jobs/compiled.yaml ({SPEC_FROM_UNIT})\n" in log
    assert '[stdout] a "b" 100% $HOME c:\\temp|say "hi" 50% $USER \\ end|' in log
    journal = journal_of(box, "compiled", after=cursor)
    assert "PCSYSTEMD_RUN_SPEC" not in journal

    write_job(box, "compiled", "name: Compiled\ncommand: /bin/echo edited\n")
    box.exec(["sh", "-c", "rm /var/log/pcsystemd/compiled/*.log"])
    cursor = journal_cursor(box)
    assert start_and_wait(box, "compiled") == 0
    log = run_log(box, "compiled")
    assert "[stdout] edited\n" in log
    assert f"({SPEC_STALE})" in log
    assert "regenerate the units (pcsystemd reload)" in journal_of(box, "compiled", after=cursor)
