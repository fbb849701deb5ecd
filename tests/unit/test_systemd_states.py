"""The systemd adapter's own logic, without systemd: conversions, exit descriptions, errors.

Talking to a real systemd is proven in tests/system/test_systemd_adapter.py.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pcsystemd import systemd
from pcsystemd.errors import SystemdError
from pcsystemd.systemd import CLD_DUMPED, CLD_EXITED, CLD_KILLED, UnitState

STATE = UnitState(
    name="pcsystemd-x.service",
    load_state="loaded",
    active_state="failed",
    sub_state="failed",
    unit_file_state="static",
    description="",
    fragment_path="",
    need_daemon_reload=False,
    state_changed=None,
    active_entered=None,
    inactive_entered=None,
    invocation_id="",
    result="exit-code",
    main_pid=None,
    exec_main_pid=42,
    exec_main_code=CLD_EXITED,
    exec_main_status=3,
    exec_main_started=None,
    exec_main_exited=None,
)


@pytest.mark.parametrize(
    ("code", "status", "signal", "text"),
    [
        (CLD_EXITED, 3, None, "exit status 3"),
        (CLD_EXITED, 0, None, "exit status 0"),
        (CLD_KILLED, 9, "SIGKILL", "killed by SIGKILL"),
        (CLD_DUMPED, 11, "SIGSEGV", "killed by SIGSEGV (core dumped)"),
        (CLD_KILLED, 99, "signal 99", "killed by signal 99"),
        (0, 0, None, "did not run"),
    ],
)
def test_exit_descriptions(code: int, status: int, signal: str | None, text: str) -> None:
    state = replace(STATE, exec_main_code=code, exec_main_status=status)
    assert (state.exit_signal, state.describe_exit()) == (signal, text)


@pytest.mark.parametrize(
    ("active", "busy", "failed"),
    [
        ("active", True, False),
        ("activating", True, False),
        ("deactivating", True, False),
        ("inactive", False, False),
        ("failed", False, True),
    ],
)
def test_activity(active: str, busy: bool, failed: bool) -> None:
    assert (
        replace(STATE, active_state=active).busy,
        replace(STATE, active_state=active).failed,
    ) == (
        busy,
        failed,
    )


def test_known() -> None:
    assert STATE.known
    assert not replace(STATE, load_state="not-found").known


def test_timestamps_zero_and_infinity_mean_never() -> None:
    assert systemd._time(0) is None
    assert systemd._time(2**64 - 1) is None
    assert systemd._time(1_700_000_000_123_456) == datetime(
        2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC
    )


def test_bytes_become_text_all_the_way_down() -> None:
    value = [(b"a.service", b"loaded", 3, [b"x"]), {b"key": b"\xff"}]
    assert systemd._text(value) == [("a.service", "loaded", 3, ["x"]), {"key": "\ufffd"}]


class DBusAccessDeniedError(Exception):
    """Stands in for pystemd's class of that name (matched by name: 0.11 and later agree)."""

    errno = -13
    err_message = b"Access denied"


class DBusNoSuchUnitError(Exception):
    errno = -2
    err_message = b"Unit nope.service not found."


class DBusTimeoutError(Exception):
    errno = -110
    err_message = b"Connection timed out."


def test_error_messages_say_what_to_do() -> None:
    denied = systemd._translate(DBusAccessDeniedError(), "start x.service", "x.service")
    assert str(denied) == "start x.service: permission denied (run as root)"
    unknown = systemd._translate(DBusNoSuchUnitError(), "stop nope.service", "nope.service")
    assert str(unknown) == (
        "stop nope.service: systemd has no unit 'nope.service' "
        "(is the job compiled, and was systemd reloaded since?)"
    )
    other = systemd._translate(DBusTimeoutError(), "reload systemd", None)
    assert str(other) == "reload systemd: Connection timed out"
    assert all(isinstance(error, SystemdError) for error in (denied, unknown, other))


def test_without_systemd_every_call_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(systemd, "is_systemd_running", lambda: False)
    monkeypatch.setattr(systemd, "_bus", None)
    with pytest.raises(SystemdError, match="systemd is not running on this system"):
        systemd.unit_state("pcsystemd-x.service")
    with pytest.raises(SystemdError, match="systemd is not running on this system"):
        systemd.daemon_reload()


def test_one_string_is_not_a_list_of_units() -> None:
    with pytest.raises(TypeError, match="sequence of unit names"):
        systemd._encode("pcsystemd-x.timer")


def test_own_unit_is_read_from_the_cgroup_v2_line(tmp_path: Path) -> None:
    cgroup = tmp_path / "cgroup"
    cgroup.write_text("0::/system.slice/pcsystemd-reload.service\n")
    assert systemd.own_unit(str(cgroup)) == "pcsystemd-reload.service"
    cgroup.write_text("0::/\n")  # not in a unit (a container's init, a bare process)
    assert systemd.own_unit(str(cgroup)) is None
    assert systemd.own_unit(str(tmp_path / "missing")) is None
    # a container on a hybrid host: only the unified hierarchy names the unit
    cgroup.write_text("9:name=systemd:/\n1:cpu:/\n0::/system.slice/probe.service\n")
    assert systemd.own_unit(str(cgroup)) == "probe.service"
    # a legacy (v1) host: systemd's own hierarchy names the unit
    cgroup.write_text("1:name=systemd:/system.slice/cron.service\n0::/\n")
    assert systemd.own_unit(str(cgroup)) == "cron.service"
