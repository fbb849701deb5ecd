"""Failure notification in a real systemd: a failing job's OnFailure= unit delivers a mail to a
local SMTP server and a webhook to a local HTTP server inside the container, honouring
failure_threshold_for_mail; OnSuccess= brings the recovery notice; a dead webhook costs
neither the job nor the mail.

The sinks are tests/integration/notify_sinks.py, run by the container's python3 as services.
The SMTP one listens on port 25 of the container's loopback, the default smtp_host:smtp_port,
and the container has no sendmail, so the notifier's SMTP path is the one exercised.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import REPOSITORY, Sandbox, wait_until

pytestmark = pytest.mark.system

SINKS = REPOSITORY / "tests" / "integration" / "notify_sinks.py"
SINKS_IN_CONTAINER = "/usr/local/lib/pcsystemd-test/notify_sinks.py"
EVIDENCE = "/var/tmp/notify-sinks"
WEBHOOK_PORT = 8088
SLUG = "flaky"
SERVICE = f"pcsystemd-{SLUG}.service"
NOTIFY_UNIT = f"pcsystemd-notify@{SLUG}.service"

JOB = """\
name: Flaky job
command: {command}
failure_threshold_for_mail: 2
notify:
  mail: [ops@example.org]
  webhook: http://127.0.0.1:{port}/hooks/pcsystemd
  on_recovery: true
"""
FAILING = "/bin/sh -c 'echo about to fail; echo disk full >&2; exit 3'"
SUCCEEDING = "/bin/sh -c 'echo all good'"


def start_sink(box: Sandbox, kind: str, port: int) -> None:
    box.exec(
        [
            "systemd-run",
            f"--unit=sink-{kind}",
            "--collect",
            "--quiet",
            "python3",
            SINKS_IN_CONTAINER,
            kind,
            str(port),
            f"{EVIDENCE}/{kind}",
        ]
    )
    probe = (
        "import socket, sys\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=1).close()\n"
        "except OSError:\n"
        "    sys.exit(1)\n"
    )
    wait_until(
        lambda: box.python(probe, str(port), check=False).returncode == 0,
        20,
        message=f"the {kind} sink to listen on port {port}",
    )


@pytest.fixture
def sinks(clean_sandbox: Sandbox) -> Iterator[Sandbox]:
    box = clean_sandbox
    box.exec(["mkdir", "-p", str(Path(SINKS_IN_CONTAINER).parent)])
    box.cp(SINKS, SINKS_IN_CONTAINER)
    box.exec(["rm", "-rf", EVIDENCE])
    start_sink(box, "smtp", 25)
    start_sink(box, "http", WEBHOOK_PORT)
    try:
        yield box
    finally:
        box.systemctl("stop", "sink-smtp.service", "sink-http.service", check=False)


def records(box: Sandbox, kind: str, prefix: str) -> list[dict[str, Any]]:
    code = (
        "import json, pathlib, sys\n"
        "paths = sorted(pathlib.Path(sys.argv[1]).glob(sys.argv[2] + '-*.json'))\n"
        "print(json.dumps([json.loads(p.read_text()) for p in paths]))\n"
    )
    return list(json.loads(box.python(code, f"{EVIDENCE}/{kind}", prefix).stdout))


def mails(box: Sandbox) -> list[dict[str, Any]]:
    return records(box, "smtp", "mail")


def webhooks(box: Sandbox) -> list[dict[str, Any]]:
    return [json.loads(request["body"]) for request in records(box, "http", "request")]


def install_job(box: Sandbox, command: str) -> None:
    box.write_file(
        f"/etc/pcsystemd/jobs/{SLUG}.yaml", JOB.format(command=command, port=WEBHOOK_PORT)
    )
    box.systemctl("daemon-reload")
    assert box.unit_property(SERVICE, "LoadState") == "loaded"


def run_and_wait_for_notifier(box: Sandbox) -> str:
    """Run the job once and wait until the notify unit it triggers has finished; its result.

    Read from the journal: a finished oneshot unit may be unloaded at once, taking its
    properties with it.
    """
    cursor = box.journal_cursor()
    box.systemctl("start", SERVICE, check=False)

    def notifier_result() -> str | None:
        text = box.journal(NOTIFY_UNIT, cursor=cursor)
        if f"{NOTIFY_UNIT}: Deactivated successfully." in text:
            return "success"
        failed = re.search(rf"{re.escape(NOTIFY_UNIT)}: Failed with result '([^']+)'", text)
        return failed.group(1) if failed else None

    return wait_until(notifier_result, 60, message=f"{NOTIFY_UNIT} to run and finish")


def test_failures_reaching_the_threshold_are_mailed_and_posted(sinks: Sandbox) -> None:
    box = sinks
    install_job(box, FAILING)
    assert box.unit_property(SERVICE, "OnFailure") == NOTIFY_UNIT

    # First failure: below failure_threshold_for_mail (2), nothing is sent.
    assert run_and_wait_for_notifier(box) == "success"
    assert box.unit_property(SERVICE, "Result") == "exit-code"
    assert mails(box) == [] and webhooks(box) == []
    assert "notifying from 2 (failure_threshold_for_mail)" in box.journal(NOTIFY_UNIT)

    # Second failure in a row: the threshold is reached, both channels deliver.
    assert run_and_wait_for_notifier(box) == "success"
    [mail] = mails(box)
    assert mail["recipients"] == ["ops@example.org"]
    assert mail["sender"] == "pcsystemd@sandbox"
    assert "Subject: pcsystemd: flaky failed (exit status 3) on sandbox" in mail["data"]
    assert "about to fail" in mail["data"] and "disk full" in mail["data"]
    assert "consecutive failures: 2" in mail["data"]
    [hook] = webhooks(box)
    assert (hook["event"], hook["job"], hook["host"]) == ("failure", SLUG, "sandbox")
    assert (hook["result"], hook["exit_status"], hook["consecutive_failures"]) == ("failed", 3, 2)
    assert hook["log_file"].startswith(f"/var/log/pcsystemd/{SLUG}/{SLUG}-")
    assert hook["log_file"] in mail["data"]
    assert "disk full" in hook["log_tail"]
    assert hook["started"] and hook["ended"] and hook["run_id"]
    history = json.loads(box.read_file(f"/var/lib/pcsystemd/{SLUG}/history.json"))
    assert hook["run_id"] == history["runs"][-1]["run_id"]

    # The job succeeds again: OnSuccess= brings the recovery notice.
    install_job(box, SUCCEEDING)
    assert box.unit_property(SERVICE, "OnSuccess") == NOTIFY_UNIT
    assert run_and_wait_for_notifier(box) == "success"
    assert [m["recipients"] for m in mails(box)] == [["ops@example.org"]] * 2
    assert "Subject: pcsystemd: flaky recovered on sandbox" in mails(box)[1]["data"]
    recovery = webhooks(box)[1]
    assert (recovery["event"], recovery["result"], recovery["consecutive_failures"]) == (
        "recovery",
        "success",
        2,
    )

    # A further success is no recovery.
    assert run_and_wait_for_notifier(box) == "success"
    assert len(mails(box)) == 2 and len(webhooks(box)) == 2
    assert box.systemctl("list-units", "--failed", "--plain", "--no-legend").stdout.strip() == ""


def test_a_dead_webhook_costs_neither_the_job_nor_the_mail(sinks: Sandbox) -> None:
    box = sinks
    box.systemctl("stop", "sink-http.service")
    install_job(box, FAILING)
    run_and_wait_for_notifier(box)  # below the threshold
    result = run_and_wait_for_notifier(box)

    [mail] = mails(box)
    assert "Subject: pcsystemd: flaky failed (exit status 3) on sandbox" in mail["data"]
    # The failed channel is logged, bounded (three attempts) and shows as a failed notify unit;
    # the job's own unit only carries its own result.
    assert result == "exit-code"
    journal = box.journal(NOTIFY_UNIT)
    assert f"webhook http://127.0.0.1:{WEBHOOK_PORT}/hooks/pcsystemd failed" in journal
    assert "gave up after 3 attempts" in journal
    assert box.unit_property(SERVICE, "Result") == "exit-code"
    history = json.loads(box.read_file(f"/var/lib/pcsystemd/{SLUG}/history.json"))
    assert [run["result"] for run in history["runs"]] == ["failed", "failed"]
