"""The people's commands over D-Bus in a real systemd: list, status, start, stop, logs, history,
reset, --tag, and the errors a person meets."""

from __future__ import annotations

import json

import pytest

from .harness import Sandbox, wait_until
from .live import pcsystemd, write_job

pytestmark = pytest.mark.system


def listed(box: Sandbox, *args: str) -> dict[str, dict[str, object]]:
    rows = json.loads(pcsystemd(box, "list", "--json", *args).stdout)["jobs"]
    return {row["slug"]: row for row in rows}


def test_start_wait_then_logs_history_status_and_list(clean_sandbox: Sandbox) -> None:
    box = clean_sandbox
    write_job(
        box,
        "hello",
        "name: Say hello\n"
        "command: /bin/sh -c 'echo hello from $(id -un) run $RUN_MARK; echo warn >&2'\n"
        'schedule: "30 12 * * *"\n'
        "tags: [demo]\n"
        "environment:\n  RUN_MARK: first\n",
    )
    pcsystemd(box, "reload")

    started = pcsystemd(box, "start", "--wait", "hello")
    assert started.stdout.startswith("hello: success (exit status 0)")
    first_log = started.stdout.split("log: ")[1].strip()
    assert first_log.startswith("/var/log/pcsystemd/hello/hello-")

    logs = pcsystemd(box, "logs", "hello").stdout
    assert "[stdout] hello from pcsystemd run first" in logs and "[stderr] warn" in logs
    assert logs == box.read_file(first_log)

    status = pcsystemd(box, "status", "hello")
    assert status.returncode == 0
    assert "status: success" in status.stdout
    assert "pcsystemd-hello.timer: active" in status.stdout and "left)" in status.stdout
    assert f"Log: {first_log}" in status.stdout

    row = listed(box)["hello"]
    assert (row["result"], row["tags"], row["running_pid"]) == ("success", ["demo"], None)
    assert row["timer_active"] is True and str(row["next_run"]).endswith("Z")
    assert row["log_file"] == first_log and row["exit_status"] == 0
    table = pcsystemd(box, "list").stdout.splitlines()
    assert table[0].split()[:6] == ["JOB", "NEXT", "LEFT", "LAST", "PASSED", "RESULT"]
    assert table[1].startswith("hello ") and " success " in table[1]

    # a second run: history numbers runs newest first, and `logs --run 2` is the first one
    box.exec(["sed", "-i", "s/: first/: second/", "/etc/pcsystemd/jobs/hello.yaml"])
    pcsystemd(box, "reload")
    pcsystemd(box, "start", "--wait", "hello")
    history = pcsystemd(box, "history", "hello").stdout.splitlines()
    assert history[0] == "hello: 2 recorded run(s), 0 consecutive failure(s)"
    assert history[2].split()[0] == "1" and history[3].split()[0] == "2"
    assert history[3].split()[-1] == first_log.rsplit("/", 1)[1]
    assert "run second" in pcsystemd(box, "logs", "hello").stdout
    assert pcsystemd(box, "logs", "hello", "--run", "2").stdout == box.read_file(first_log)


def test_a_failing_job_trips_and_reset_clears_it(clean_sandbox: Sandbox) -> None:
    box = clean_sandbox
    write_job(
        box,
        "fails",
        "name: Fails\ncommand: /bin/sh -c 'echo broken >&2; exit 3'\nmax_consecutive_failures: 1\n",
    )
    pcsystemd(box, "reload")

    failed = pcsystemd(box, "start", "--wait", "fails", check=False)
    assert failed.returncode == 1
    assert failed.stdout.startswith("fails: failed (exit status 3")
    status = pcsystemd(box, "status", "fails", check=False)
    assert status.returncode == 1 and "circuit breaker tripped" in status.stdout
    refused = pcsystemd(box, "start", "--wait", "fails", check=False)
    assert refused.returncode == 1 and refused.stdout.startswith("fails: tripped")
    assert box.unit_property("pcsystemd-fails.service", "ActiveState") == "failed"

    reset = pcsystemd(box, "reset", "fails")
    assert "was: " in reset.stdout and "circuit breaker tripped" in reset.stdout
    assert box.unit_property("pcsystemd-fails.service", "ActiveState") == "inactive"
    [state] = json.loads(pcsystemd(box, "status", "--json", "fails", check=False).stdout)["jobs"]
    assert (state["tripped"], state["consecutive_failures"]) == (None, 0)


def test_a_running_job_shows_its_pid_and_stop_ends_it(clean_sandbox: Sandbox) -> None:
    box = clean_sandbox
    write_job(box, "sleepy", "name: Sleepy\ncommand: /bin/sleep 300\n")
    pcsystemd(box, "reload")

    assert pcsystemd(box, "start", "sleepy").stdout.startswith("sleepy: started")
    pid = wait_until(
        lambda: listed(box)["sleepy"]["running_pid"], 15, message="the run's pid in `list`"
    )
    assert box.unit_property("pcsystemd-sleepy.service", "MainPID") == str(pid)
    assert f"{{pid: {pid}, status: running}}" in pcsystemd(box, "status", "sleepy").stdout
    assert pcsystemd(box, "start", "sleepy").stdout.startswith("sleepy: already running")

    stopped = pcsystemd(box, "stop", "sleepy")
    assert stopped.stdout.startswith(f"sleepy: stopped the run (pid {pid})")
    row = listed(box)["sleepy"]
    assert (row["running_pid"], row["result"]) == (None, "stopped")
    assert pcsystemd(box, "stop", "sleepy").stdout == "sleepy: not running\n"


def test_slow_start_and_tags_go_through_the_units(clean_sandbox: Sandbox) -> None:
    box = clean_sandbox
    for slug in ("one", "two"):
        write_job(
            box,
            slug,
            f"name: Job {slug}\ncommand: /bin/echo normal {slug}\n"
            f"slow_start_command: /bin/echo slow {slug}\ntags: [group]\n",
        )
    write_job(box, "other", "name: Other\ncommand: /bin/echo other\n")
    pcsystemd(box, "reload")

    started = pcsystemd(box, "start", "--wait", "--slow-start", "--tag", "group")
    assert [line.split(":")[0] for line in started.stdout.splitlines() if "log:" not in line] == [
        "one",
        "two",
    ]
    for slug in ("one", "two"):
        assert f"[stdout] slow {slug}" in pcsystemd(box, "logs", slug).stdout
    assert listed(box)["other"]["result"] is None
    assert sorted(listed(box, "--tag", "group")) == ["one", "two"]

    pcsystemd(box, "start", "--wait", "one")
    assert "[stdout] normal one" in pcsystemd(box, "logs", "one").stdout


def test_errors_a_person_meets(clean_sandbox: Sandbox) -> None:
    box = clean_sandbox
    write_job(box, "yak", "name: Yak\ncommand: /bin/true\n")

    unknown = pcsystemd(box, "status", "yk", check=False)
    assert unknown.returncode == 2
    assert "unknown job 'yk'" in unknown.stderr and "did you mean 'yak'?" in unknown.stderr
    no_tag = pcsystemd(box, "start", "--tag", "nope", check=False)
    assert no_tag.returncode == 2 and "no valid job is tagged 'nope'" in no_tag.stderr
    not_root = box.exec(["pcsystemd", "start", "yak"], user="pcsystemd", check=False)
    assert not_root.returncode == 2 and "needs root" in not_root.stderr
    nothing = pcsystemd(box, "start", check=False)
    assert nothing.returncode == 2 and "--tag" in nothing.stderr
