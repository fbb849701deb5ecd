"""pcsystemd.systemd against a real systemd, with Debian 12's pystemd 0.11 and with the
current pystemd from the virtualenv: the adapter must work with both."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from .harness import Sandbox

pytestmark = pytest.mark.system

# The virtualenv's pystemd is built against the same Debian 12 libsystemd and python3.11 the
# container has, so its extension modules load there unchanged.
VENV_PYSTEMD = Path(pytest.__file__).resolve().parents[1] / "pystemd"
PYPI_PYSTEMD_ROOT = "/opt/pystemd-pypi"

PRELUDE = """
import dataclasses, datetime, json, sys
import pystemd
from pcsystemd import systemd
from pcsystemd.errors import SystemdError

out = {"pystemd": pystemd.__version__, "file": pystemd.__file__}

def error_of(function, *args, **kwargs):
    try:
        function(*args, **kwargs)
    except SystemdError as error:
        return str(error)
    return None

def wait_active(name, not_invocation=None):
    import time
    deadline = time.monotonic() + 20
    while (state := systemd.unit_state(name)).active_state != "active" or (
        state.invocation_id == not_invocation
    ):
        assert time.monotonic() < deadline, f"{name} is {state.active_state}"
        time.sleep(0.1)
    return state

def encode(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    raise TypeError(repr(value))
"""

SERVICE = """[Unit]
Description=adapter test {name}

[Service]
Type=exec
ExecStart={command}
"""


@pytest.fixture(scope="module", params=["debian", "pypi"])
def flavour(request: pytest.FixtureRequest, sandbox: Sandbox) -> Iterator[str]:
    if request.param == "pypi":
        if not (VENV_PYSTEMD / "dbuslib.pyi").exists():
            pytest.skip(f"no pystemd from PyPI at {VENV_PYSTEMD}")
        sandbox.exec(["mkdir", "-p", PYPI_PYSTEMD_ROOT])
        sandbox.cp(VENV_PYSTEMD, f"{PYPI_PYSTEMD_ROOT}/")
    yield request.param


def adapter(box: Sandbox, flavour: str, code: str, *, user: str | None = None) -> dict[str, Any]:
    """Run `code` (which fills the dict `out`) inside the container; return `out`."""
    script = PRELUDE + code + "\nprint(json.dumps(out, default=encode))\n"
    env = {"PYTHONPATH": PYPI_PYSTEMD_ROOT} if flavour == "pypi" else {}
    result = box.exec(["python3", "-c", script], user=user, env=env, timeout=90)
    out: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    # prove which pystemd answered
    if flavour == "debian":
        assert out["pystemd"] == "0.11.0"
        assert out["file"].startswith("/usr/lib/python3/dist-packages/")
    else:
        assert out["pystemd"] != "0.11.0" and out["file"].startswith(PYPI_PYSTEMD_ROOT)
    return out


def install_service(box: Sandbox, name: str, command: str) -> None:
    box.write_file(f"/etc/systemd/system/{name}", SERVICE.format(name=name, command=command))


def parse_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def test_reload_picks_up_a_changed_unit_file(clean_sandbox: Sandbox, flavour: str) -> None:
    box = clean_sandbox
    name = "pcsystemd-adapter-reload.service"
    # a running unit stays loaded, so systemd keeps its old definition until a reload
    install_service(box, name, "/bin/sleep 300")
    box.systemctl("daemon-reload")
    box.systemctl("start", name)
    changed = SERVICE.format(name="changed", command="/bin/sleep 300")
    box.write_file(f"/etc/systemd/system/{name}", changed)
    out = adapter(
        box,
        flavour,
        f"""
out["running"] = systemd.is_systemd_running()
out["before"] = systemd.unit_state("{name}")
systemd.daemon_reload()
out["after"] = systemd.unit_state("{name}")
out["unknown"] = systemd.unit_state("pcsystemd-adapter-nothing.service")
""",
    )
    assert out["running"] is True
    before, after = out["before"], out["after"]
    assert before["description"] == f"adapter test {name}" and before["need_daemon_reload"]
    assert after["description"] == "adapter test changed" and not after["need_daemon_reload"]
    assert (after["load_state"], after["active_state"]) == ("loaded", "active")
    assert after["fragment_path"] == f"/etc/systemd/system/{name}"
    assert after["unit_file_state"] == "static"
    assert after["main_pid"] == before["main_pid"] > 1
    assert out["unknown"]["load_state"] == "not-found"
    assert out["unknown"]["invocation_id"] == "" and out["unknown"]["exec_main_started"] is None


def test_start_and_wait_reports_a_failed_run(clean_sandbox: Sandbox, flavour: str) -> None:
    install_service(clean_sandbox, "pcsystemd-adapter-fail.service", "/bin/sh -c 'exit 3'")
    clean_sandbox.systemctl("daemon-reload")
    out = adapter(
        clean_sandbox,
        flavour,
        """
state = systemd.run("pcsystemd-adapter-fail.service", timeout=30)
out["state"] = state
out["exit"] = state.describe_exit()
out["failed_units"] = systemd.list_units("pcsystemd-adapter-*", states=["failed"])
systemd.reset_failed("pcsystemd-adapter-fail.service")
out["after_reset"] = systemd.unit_state("pcsystemd-adapter-fail.service")
""",
    )
    state = out["state"]
    assert (state["active_state"], state["result"]) == ("failed", "exit-code")
    assert (state["exec_main_code"], state["exec_main_status"]) == (1, 3)
    assert out["exit"] == "exit status 3"
    assert state["main_pid"] is None and len(state["invocation_id"]) == 32
    started, exited = parse_time(state["exec_main_started"]), parse_time(state["exec_main_exited"])
    assert started is not None and exited is not None and started <= exited
    assert abs((datetime.now(UTC) - exited).total_seconds()) < 60
    # the container's systemd shares the host's clock, so the timestamps are comparable
    assert [unit["name"] for unit in out["failed_units"]] == ["pcsystemd-adapter-fail.service"]
    assert out["after_reset"]["active_state"] == "inactive"
    assert clean_sandbox.unit_property("pcsystemd-adapter-fail.service", "Result") == "success"


def test_a_run_killed_by_a_signal_names_it(clean_sandbox: Sandbox, flavour: str) -> None:
    # "$$" is systemd's escape for "$": the shell sees `kill -USR1 $$` and kills itself
    # (not SIGTERM: systemd counts death by SIGTERM as a clean exit)
    command = "/bin/sh -c 'kill -USR1 $$$$'"
    install_service(clean_sandbox, "pcsystemd-adapter-kill.service", command)
    clean_sandbox.systemctl("daemon-reload")
    out = adapter(
        clean_sandbox,
        flavour,
        """
state = systemd.run("pcsystemd-adapter-kill.service", timeout=30)
out["state"] = state
out["signal"] = state.exit_signal
out["exit"] = state.describe_exit()
""",
    )
    assert out["state"]["result"] == "signal"
    assert (out["signal"], out["exit"]) == ("SIGUSR1", "killed by SIGUSR1")


def test_start_without_wait_then_stop(clean_sandbox: Sandbox, flavour: str) -> None:
    install_service(clean_sandbox, "pcsystemd-adapter-long.service", "/bin/sleep 300")
    clean_sandbox.systemctl("daemon-reload")
    out = adapter(
        clean_sandbox,
        flavour,
        """
out["queued"] = systemd.start("pcsystemd-adapter-long.service")
out["started"] = wait_active("pcsystemd-adapter-long.service")
out["listed"] = systemd.list_units("pcsystemd-adapter-*")
out["timeout"] = error_of(systemd.run, "pcsystemd-adapter-long.service", timeout=1)
out["stopped"] = systemd.stop("pcsystemd-adapter-long.service", wait=True, timeout=30)
""",
    )
    # without wait the call returns as soon as the job is queued, maybe before it ran
    assert out["queued"]["active_state"] in ("inactive", "activating", "active")
    started = out["started"]
    assert started["active_state"] == "active" and started["main_pid"] > 1
    assert [(u["name"], u["active_state"], u["sub_state"]) for u in out["listed"]] == [
        ("pcsystemd-adapter-long.service", "active", "running")
    ]
    # waiting for a run that does not end is bounded
    assert out["timeout"] == "timed out waiting for pcsystemd-adapter-long.service"
    stopped = out["stopped"]
    assert (stopped["active_state"], stopped["main_pid"]) == ("inactive", None)
    assert clean_sandbox.exec(["pgrep", "-x", "sleep"], check=False).returncode == 1


def test_restart_starts_a_new_invocation(clean_sandbox: Sandbox, flavour: str) -> None:
    install_service(clean_sandbox, "pcsystemd-adapter-again.service", "/bin/sleep 300")
    clean_sandbox.systemctl("daemon-reload")
    out = adapter(
        clean_sandbox,
        flavour,
        """
name = "pcsystemd-adapter-again.service"
systemd.start(name)
first = wait_active(name)
systemd.restart(name)
second = wait_active(name, not_invocation=first.invocation_id)
# the run never ends by itself, so waiting for it must time out
out["timeout"] = error_of(systemd.restart, name, wait=True, timeout=1)
out["first"], out["second"] = first, second
systemd.stop(name, wait=True, timeout=30)
""",
    )
    first, second = out["first"], out["second"]
    # a restart is a new run: new invocation, new main process (wait_active fails otherwise)
    assert len(first["invocation_id"]) == len(second["invocation_id"]) == 32
    assert first["main_pid"] != second["main_pid"]
    assert out["timeout"] == "timed out waiting for pcsystemd-adapter-again.service"


TIMER = """[Unit]
Description=adapter test timer

[Timer]
OnCalendar=*-*-* 04:00:00
Unit=pcsystemd-adapter-tick.service

[Install]
WantedBy=timers.target
"""


def test_timer_enable_start_state_and_disable(clean_sandbox: Sandbox, flavour: str) -> None:
    box = clean_sandbox
    box.write_file("/etc/systemd/system/pcsystemd-adapter-tick.timer", TIMER)
    install_service(box, "pcsystemd-adapter-tick.service", "/bin/true")
    box.systemctl("daemon-reload")
    out = adapter(
        box,
        flavour,
        """
name = "pcsystemd-adapter-tick.timer"
out["before"] = systemd.timer_state(name)
out["enabled"] = systemd.enable([name])
systemd.start(name, wait=True, timeout=30)
out["timer"] = systemd.timer_state(name)
out["files"] = systemd.list_unit_files("pcsystemd-adapter-tick.*")
out["disabled"] = systemd.disable([name])
out["after_disable"] = systemd.unit_state(name).unit_file_state
out["runtime"] = systemd.enable([name], runtime=True)
out["runtime_state"] = systemd.unit_state(name).unit_file_state
systemd.disable([name], runtime=True)
systemd.stop(name, wait=True, timeout=30)
""",
    )
    assert out["before"]["unit_file_state"] == "disabled"
    assert out["before"]["next_elapse"] is None
    assert out["enabled"] == [
        {
            "kind": "symlink",
            "path": "/etc/systemd/system/timers.target.wants/pcsystemd-adapter-tick.timer",
            "destination": "/etc/systemd/system/pcsystemd-adapter-tick.timer",
        }
    ]
    timer = out["timer"]
    assert (timer["active_state"], timer["unit_file_state"]) == ("active", "enabled")
    assert timer["unit"] == "pcsystemd-adapter-tick.service"
    assert timer["calendar"] == ["*-*-* 04:00:00"]
    next_elapse = parse_time(timer["next_elapse"])
    assert next_elapse is not None
    seconds_ahead = (next_elapse - datetime.now(UTC)).total_seconds()
    assert 0 < seconds_ahead <= 24 * 3600 + 60
    assert timer["last_trigger"] is None
    assert [(f["path"], f["state"]) for f in out["files"]] == [
        ("/etc/systemd/system/pcsystemd-adapter-tick.service", "static"),
        ("/etc/systemd/system/pcsystemd-adapter-tick.timer", "enabled"),
    ]
    assert [change["kind"] for change in out["disabled"]] == ["unlink"]
    assert out["after_disable"] == "disabled"
    assert out["runtime"][0]["path"] == (
        "/run/systemd/system/timers.target.wants/pcsystemd-adapter-tick.timer"
    )
    assert out["runtime_state"] == "enabled-runtime"
    assert not box.exists("/run/systemd/system/timers.target.wants/pcsystemd-adapter-tick.timer")


def test_mask_blocks_a_unit_until_unmasked(clean_sandbox: Sandbox, flavour: str) -> None:
    # A runtime mask (/run) only beats units of lower priority than /etc, like the generator's
    # or the package's: put this one where packages put theirs.
    unit_file = "/usr/local/lib/systemd/system/pcsystemd-adapter-mask.service"
    clean_sandbox.write_file(unit_file, SERVICE.format(name="mask", command="/bin/true"))
    clean_sandbox.systemctl("daemon-reload")
    try:
        out = masking(clean_sandbox, flavour)
    finally:
        clean_sandbox.exec(["rm", "-f", unit_file])
    assert out["masked"] == "masked"
    assert out["start_error"] is not None and "masked" in out["start_error"]
    assert out["unmasked"] == "loaded"
    assert out["changes"][0]["path"] == "/run/systemd/system/pcsystemd-adapter-mask.service"
    assert out["changes"][0]["destination"] == "/dev/null"


def masking(box: Sandbox, flavour: str) -> dict[str, Any]:
    return adapter(
        box,
        flavour,
        """
name = "pcsystemd-adapter-mask.service"
out["changes"] = systemd.mask([name], runtime=True)
out["masked"] = systemd.unit_state(name).load_state
out["start_error"] = error_of(systemd.start, name)
systemd.unmask([name], runtime=True)
out["unmasked"] = systemd.unit_state(name).load_state
""",
    )


def test_errors_name_the_unit_and_the_remedy(clean_sandbox: Sandbox, flavour: str) -> None:
    out = adapter(
        clean_sandbox,
        flavour,
        """
out["start"] = error_of(systemd.start, "pcsystemd-adapter-nothing.service")
out["enable"] = error_of(systemd.enable, ["pcsystemd-adapter-nothing.timer"])
out["reset"] = error_of(systemd.reset_failed, "pcsystemd-adapter-nothing.service")
""",
    )
    assert out["start"] == (
        "start pcsystemd-adapter-nothing.service: systemd has no unit "
        "'pcsystemd-adapter-nothing.service' (is the job compiled, and was systemd reloaded since?)"
    )
    assert out["enable"].startswith("enable pcsystemd-adapter-nothing.timer: systemd has no unit")
    assert out["reset"].startswith("reset pcsystemd-adapter-nothing.service: systemd has no unit")


def test_an_unprivileged_user_may_look_but_not_act(clean_sandbox: Sandbox, flavour: str) -> None:
    install_service(clean_sandbox, "pcsystemd-adapter-user.service", "/bin/true")
    clean_sandbox.systemctl("daemon-reload")
    out = adapter(
        clean_sandbox,
        flavour,
        """
out["state"] = systemd.unit_state("pcsystemd-adapter-user.service")
out["start"] = error_of(systemd.start, "pcsystemd-adapter-user.service")
out["reload"] = error_of(systemd.daemon_reload)
""",
        user="pcsystemd",
    )
    assert out["state"]["load_state"] == "loaded"
    assert out["start"] == "start pcsystemd-adapter-user.service: permission denied (run as root)"
    assert out["reload"] == "reload systemd: permission denied (run as root)"
    assert (
        clean_sandbox.unit_property("pcsystemd-adapter-user.service", "ActiveState") == "inactive"
    )


def test_the_connection_survives_a_reexec_of_systemd(clean_sandbox: Sandbox, flavour: str) -> None:
    # An upgrade of systemd re-executes it, which drops the connections of its clients.
    out = adapter(
        clean_sandbox,
        flavour,
        """
import subprocess
out["before"] = systemd.unit_state("systemd-journald.service").active_state
subprocess.run(["systemctl", "daemon-reexec"], check=True)
out["after"] = systemd.unit_state("systemd-journald.service").active_state
""",
    )
    assert out["before"] == out["after"] == "active"
