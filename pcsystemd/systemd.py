"""The one door to systemd: its D-Bus API through pystemd, with bytes turned into str here.

Only this module imports pystemd, and only when a function first talks to systemd, so the
runtime shim and the generator (which must not use D-Bus) never load it. pystemd's low-level
`dbuslib` is used rather than its introspecting `SDUnit` objects: it is the same in Debian 12's
pystemd 0.11 and in current releases, and costs one round trip per call instead of an
introspection per object.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pcsystemd.errors import SystemdError

DESTINATION = b"org.freedesktop.systemd1"
MANAGER_PATH = b"/org/freedesktop/systemd1"
MANAGER = b"org.freedesktop.systemd1.Manager"
UNIT = b"org.freedesktop.systemd1.Unit"
SERVICE = b"org.freedesktop.systemd1.Service"
TIMER = b"org.freedesktop.systemd1.Timer"
JOB = b"org.freedesktop.systemd1.Job"
PROPERTIES = b"org.freedesktop.DBus.Properties"
# systemd's own socket for root: works without dbus-daemon, as systemctl does.
PRIVATE_SOCKET = "/run/systemd/private"

POLL_SECONDS = 0.1
# -ENOTCONN, -ECONNRESET, -EPIPE: the connection is gone, not the request refused.
DISCONNECTED = frozenset({-107, -104, -32})
# ActiveState values during which a unit is doing something (a service run is not over).
BUSY_STATES = frozenset({"active", "activating", "deactivating", "reloading", "refreshing"})

# Exit codes of waitid(2) as systemd reports them in ExecMainCode.
CLD_EXITED, CLD_KILLED, CLD_DUMPED = 1, 2, 3


@dataclass(frozen=True)
class UnitState:
    """What systemd knows about one unit (service fields are None for other unit types)."""

    name: str
    load_state: str  # loaded, not-found, masked, bad-setting, error
    active_state: str  # active, inactive, failed, activating, deactivating, ...
    sub_state: str
    unit_file_state: str  # enabled, disabled, static, generated, masked, linked, "" ...
    description: str
    fragment_path: str
    need_daemon_reload: bool
    state_changed: datetime | None
    active_entered: datetime | None
    inactive_entered: datetime | None
    invocation_id: str  # hex; "" before the first activation
    result: str | None  # service: success, exit-code, signal, timeout, core-dump, ...
    main_pid: int | None  # the running main process
    exec_main_pid: int | None  # the main process of the current or last run, kept after it ends
    exec_main_code: int | None  # CLD_EXITED, CLD_KILLED, CLD_DUMPED; 0 before any run
    exec_main_status: int | None  # exit status, or signal number when killed
    exec_main_started: datetime | None
    exec_main_exited: datetime | None

    @property
    def known(self) -> bool:
        """Whether systemd has a unit file (or generated unit) by that name."""
        return self.load_state not in ("not-found", "")

    @property
    def busy(self) -> bool:
        return self.active_state in BUSY_STATES

    @property
    def failed(self) -> bool:
        return self.active_state == "failed"

    @property
    def exit_signal(self) -> str | None:
        """The signal that ended the main process, by name (SIGTERM), if one did."""
        if self.exec_main_code not in (CLD_KILLED, CLD_DUMPED) or self.exec_main_status is None:
            return None
        try:
            return signal.Signals(self.exec_main_status).name
        except ValueError:
            return f"signal {self.exec_main_status}"

    def describe_exit(self) -> str:
        """How the main process of the last run ended, for people: "exit status 3"."""
        if self.exec_main_code == CLD_EXITED:
            return f"exit status {self.exec_main_status}"
        if self.exit_signal is not None:
            dumped = " (core dumped)" if self.exec_main_code == CLD_DUMPED else ""
            return f"killed by {self.exit_signal}{dumped}"
        return "did not run"


@dataclass(frozen=True)
class TimerState:
    """What systemd knows about one timer unit."""

    name: str
    load_state: str
    active_state: str
    unit_file_state: str
    unit: str  # the unit it triggers
    next_elapse: datetime | None  # wall clock; None when nothing is scheduled
    next_elapse_monotonic_usec: int | None
    last_trigger: datetime | None
    result: str
    persistent: bool
    calendar: tuple[str, ...]  # the OnCalendar= expressions as systemd normalised them

    @property
    def known(self) -> bool:
        return self.load_state not in ("not-found", "")


@dataclass(frozen=True)
class UnitSummary:
    """One row of ListUnits: a unit systemd has loaded."""

    name: str
    description: str
    load_state: str
    active_state: str
    sub_state: str
    job_type: str | None  # a queued job (start, stop, ...) or None


@dataclass(frozen=True)
class UnitFile:
    """One installed unit file and its enablement state."""

    path: str
    state: str

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


@dataclass(frozen=True)
class UnitFileChange:
    """A symlink systemd created or removed while enabling, disabling or masking."""

    kind: str  # symlink, unlink
    path: str
    destination: str


def is_systemd_running() -> bool:
    """Whether systemd is this system's init (sd_booted(3): /run/systemd/system exists)."""
    return os.path.isdir("/run/systemd/system")


def own_unit(cgroup_file: str = "/proc/self/cgroup") -> str | None:
    """The unit this process runs in (the last part of its cgroup path), or None.

    A plain read, no D-Bus: `0::/system.slice/pcsystemd-reload.service` (cgroup v2), else
    systemd's own `name=systemd` hierarchy (a legacy cgroup v1 host).
    """
    paths = {}
    try:
        with open(cgroup_file, encoding="utf-8") as lines:
            for line in lines:
                hierarchy, _, path = line.rstrip("\n").partition(":")[2].partition(":")
                paths[hierarchy] = path
    except OSError:
        return None
    # The unified hierarchy first: in a container on a hybrid host only it names the unit.
    for hierarchy in ("", "name=systemd"):
        name = paths.get(hierarchy, "").rsplit("/", 1)[-1]
        if "." in name:
            return name
    return None


# ---------------------------------------------------------------------------- connection

_bus: Any = None


def _connect() -> Any:
    """Open (once per process) a connection to systemd: its private socket as root, else the bus."""
    global _bus
    if _bus is not None:
        return _bus
    if not is_systemd_running():
        raise SystemdError(
            "systemd is not running on this system (it was not booted with systemd as init), "
            "so pcsystemd cannot talk to it"
        )
    from pystemd.dbusexc import DBusBaseError
    from pystemd.dbuslib import DBus, DBusAddress

    if os.geteuid() == 0 and os.path.exists(PRIVATE_SOCKET):
        bus = DBusAddress(f"unix:path={PRIVATE_SOCKET}".encode(), peer_to_peer=True)
        try:
            bus.open()
        except DBusBaseError:
            pass  # systemd too old or socket unusable: the system bus below will do
        else:
            _bus = bus
            return bus
    bus = DBus()
    try:
        bus.open()
    except DBusBaseError as error:
        raise SystemdError(f"cannot connect to the system bus: {_message(error)}") from error
    _bus = bus
    return bus


def close() -> None:
    """Close the connection (a later call opens a new one)."""
    global _bus
    if _bus is not None:
        _bus.close()
        _bus = None


def _message(error: Exception) -> str:
    message = getattr(error, "err_message", None) or str(error)
    text = _text(message)
    return str(text).strip().rstrip(".") or type(error).__name__


def _translate(error: Exception, action: str, unit: str | None) -> SystemdError:
    """Turn a pystemd error into a SystemdError that says what failed and what to do."""
    kind = type(error).__name__
    if kind in ("DBusAccessDeniedError", "DBusInteractiveAuthorizationRequiredError"):
        return SystemdError(f"{action}: permission denied (run as root)")
    if kind in ("DBusNoSuchUnitError", "DBusFileNotFoundError") and unit is not None:
        return SystemdError(
            f"{action}: systemd has no unit {unit!r} "
            "(is the job compiled, and was systemd reloaded since?)"
        )
    return SystemdError(f"{action}: {_message(error)}")


def _call(
    action: str,
    method: bytes,
    signature: bytes,
    arguments: list[Any],
    *,
    path: bytes = MANAGER_PATH,
    interface: bytes = MANAGER,
    unit: str | None = None,
) -> Any:
    from pystemd.dbusexc import DBusBaseError
    from pystemd.dbuslib import apply_signature

    encoded = apply_signature(signature, arguments) if signature else []
    for attempt in (1, 2):
        try:
            return _connect().call_method(DESTINATION, path, interface, method, encoded).body
        except DBusBaseError as error:
            # systemd drops its connections when it re-executes itself (an upgrade): reconnect
            # and ask once more; every request made here may safely be repeated.
            if attempt == 1 and getattr(error, "errno", 0) in DISCONNECTED:
                close()
                continue
            raise _translate(error, action, unit) from error
    raise AssertionError("unreachable")


def _properties(path: bytes, interface: bytes, action: str) -> dict[str, Any]:
    body = _call(action, b"GetAll", b"s", [interface], path=path, interface=PROPERTIES)
    # pystemd returns an empty a{sv} as [] rather than {}
    return {key.decode(): value for key, value in (body or {}).items()}


def _text(value: Any) -> Any:
    """bytes → str, recursively (D-Bus strings and object paths arrive as bytes)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list | tuple):
        return type(value)(_text(item) for item in value)
    if isinstance(value, dict):
        return {_text(key): _text(item) for key, item in value.items()}
    return value


def _time(microseconds: Any) -> datetime | None:
    # systemd's "never" is 0 (and "infinity" UINT64_MAX for some properties)
    if not microseconds or microseconds >= 2**63:
        return None
    return datetime.fromtimestamp(microseconds / 1_000_000, tz=UTC)


def _unit_path(name: str) -> bytes:
    """The object path of a unit, loading its file if systemd has not yet (never fails)."""
    return bytes(_call(f"load {name}", b"LoadUnit", b"s", [name.encode()], unit=name))


# ---------------------------------------------------------------------------- queries


def unit_state(name: str) -> UnitState:
    """The state of one unit; an unknown unit has load_state "not-found" (see .known)."""
    path = _unit_path(name)
    unit = _text(_properties(path, UNIT, f"read the state of {name}"))
    service: dict[str, Any] = {}
    if name.endswith(".service") and unit.get("LoadState") == "loaded":
        service = _text(_properties(path, SERVICE, f"read the state of {name}"))
    main_pid = service.get("MainPID")
    return UnitState(
        name=name,
        load_state=unit.get("LoadState", ""),
        active_state=unit.get("ActiveState", ""),
        sub_state=unit.get("SubState", ""),
        unit_file_state=unit.get("UnitFileState", ""),
        description=unit.get("Description", ""),
        fragment_path=unit.get("FragmentPath", ""),
        need_daemon_reload=bool(unit.get("NeedDaemonReload", False)),
        state_changed=_time(unit.get("StateChangeTimestamp")),
        active_entered=_time(unit.get("ActiveEnterTimestamp")),
        inactive_entered=_time(unit.get("InactiveEnterTimestamp")),
        invocation_id=bytes(unit.get("InvocationID") or b"").hex(),
        result=service.get("Result"),
        main_pid=main_pid or None,
        exec_main_pid=service.get("ExecMainPID") or None,
        exec_main_code=service.get("ExecMainCode"),
        exec_main_status=service.get("ExecMainStatus"),
        exec_main_started=_time(service.get("ExecMainStartTimestamp")),
        exec_main_exited=_time(service.get("ExecMainExitTimestamp")),
    )


def timer_state(name: str) -> TimerState:
    """The state of one timer: next and last elapse, the unit it starts."""
    path = _unit_path(name)
    unit = _text(_properties(path, UNIT, f"read the state of {name}"))
    timer: dict[str, Any] = {}
    if unit.get("LoadState") == "loaded":
        timer = _text(_properties(path, TIMER, f"read the state of {name}"))
    return TimerState(
        name=name,
        load_state=unit.get("LoadState", ""),
        active_state=unit.get("ActiveState", ""),
        unit_file_state=unit.get("UnitFileState", ""),
        unit=timer.get("Unit", ""),
        next_elapse=_time(timer.get("NextElapseUSecRealtime")),
        next_elapse_monotonic_usec=timer.get("NextElapseUSecMonotonic") or None,
        last_trigger=_time(timer.get("LastTriggerUSec")),
        result=timer.get("Result", ""),
        persistent=bool(timer.get("Persistent", False)),
        calendar=tuple(spec for _base, spec, _next in timer.get("TimersCalendar", [])),
    )


def list_units(*patterns: str, states: Sequence[str] = ()) -> list[UnitSummary]:
    """Units systemd has loaded whose names match a glob pattern (all units without one)."""
    rows = _call(
        "list units",
        b"ListUnitsByPatterns",
        b"asas",
        [[state.encode() for state in states], [pattern.encode() for pattern in patterns]],
    )
    summaries = [
        UnitSummary(
            name=name,
            description=description,
            load_state=load,
            active_state=active,
            sub_state=sub,
            job_type=job_type or None,
        )
        for name, description, load, active, sub, _following, _path, _job, job_type, _job_path in (
            _text(row) for row in rows or []
        )
    ]
    return sorted(summaries, key=lambda summary: summary.name)


def list_unit_files(*patterns: str) -> list[UnitFile]:
    """Installed unit files (loaded or not) whose names match a glob pattern."""
    rows = _call(
        "list unit files",
        b"ListUnitFilesByPatterns",
        b"asas",
        [[], [pattern.encode() for pattern in patterns]],
    )
    files = [UnitFile(path=path, state=state) for path, state in (_text(row) for row in rows or [])]
    return sorted(files, key=lambda unit_file: unit_file.name)


# ---------------------------------------------------------------------------- actions


def daemon_reload() -> None:
    """Reload all unit files and rerun generators (returns when systemd is done)."""
    _call("reload systemd", b"Reload", b"", [])


def _wait_for_job(job_path: bytes, name: str, deadline: float | None) -> None:
    from pystemd.dbusexc import DBusBaseError

    bus = _connect()
    while True:
        try:
            bus.get_property(DESTINATION, job_path, JOB, b"State", b"s")
        except DBusBaseError:
            return  # the job object is gone: the job has finished one way or another
        _pause(deadline, name)


def _pause(deadline: float | None, name: str) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise SystemdError(f"timed out waiting for {name}")
    time.sleep(POLL_SECONDS)


def _job(verb: str, method: bytes, name: str, wait: bool, timeout: float | None) -> UnitState:
    deadline = None if timeout is None else time.monotonic() + timeout
    job_path = _call(f"{verb} {name}", method, b"ss", [name.encode(), b"replace"], unit=name)
    if not wait:
        return unit_state(name)
    _wait_for_job(bytes(job_path), name, deadline)
    if verb == "stop" or not name.endswith(".service"):
        return unit_state(name)
    # The start job is done, so the run has begun (or failed to): idle now means it has ended.
    while True:
        state = unit_state(name)
        if not state.busy:
            return state
        _pause(deadline, name)


def start(name: str, *, wait: bool = False, timeout: float | None = None) -> UnitState:
    """Start a unit. With wait: for a service, return when the run has ended (its final state
    and result); for other units, when systemd's start job is done.

    A service run already in progress is waited for rather than started twice (systemd merges
    the start job into the running unit).
    """
    return _job("start", b"StartUnit", name, wait, timeout)


def stop(name: str, *, wait: bool = False, timeout: float | None = None) -> UnitState:
    """Stop a unit; with wait, return once it has stopped."""
    return _job("stop", b"StopUnit", name, wait, timeout)


def restart(name: str, *, wait: bool = False, timeout: float | None = None) -> UnitState:
    """Restart a unit (start it when it is not running); wait as for start()."""
    return _job("restart", b"RestartUnit", name, wait, timeout)


def run(name: str, *, timeout: float | None = None) -> UnitState:
    """Start a service and return its state once that run has ended: start(wait=True)."""
    return start(name, wait=True, timeout=timeout)


def reset_failed(name: str | None = None) -> None:
    """Forget the failed state of one unit, or of all units."""
    if name is None:
        _call("reset failed units", b"ResetFailed", b"", [])
    else:
        _call(f"reset {name}", b"ResetFailedUnit", b"s", [name.encode()], unit=name)


def _changes(rows: Iterable[Any]) -> tuple[UnitFileChange, ...]:
    return tuple(UnitFileChange(*_text(row)) for row in rows or [])


def enable(
    names: Sequence[str], *, runtime: bool = False, reload: bool = True
) -> tuple[UnitFileChange, ...]:
    """Enable unit files (their [Install] links; runtime: under /run, gone at reboot)."""
    action = f"enable {', '.join(names)}"
    unit = names[0] if len(names) == 1 else None
    body = _call(action, b"EnableUnitFiles", b"asbb", [_encode(names), runtime, False], unit=unit)
    if reload:
        daemon_reload()
    return _changes(body[1])


def disable(
    names: Sequence[str], *, runtime: bool = False, reload: bool = True
) -> tuple[UnitFileChange, ...]:
    """Disable unit files (remove their links, in /etc or, with runtime, in /run)."""
    action = f"disable {', '.join(names)}"
    unit = names[0] if len(names) == 1 else None
    body = _call(action, b"DisableUnitFiles", b"asb", [_encode(names), runtime], unit=unit)
    if reload:
        daemon_reload()
    return _changes(body)


def mask(
    names: Sequence[str], *, runtime: bool = False, reload: bool = True
) -> tuple[UnitFileChange, ...]:
    """Mask units (link to /dev/null) so nothing can start them; works for generated units."""
    body = _call(
        f"mask {', '.join(names)}", b"MaskUnitFiles", b"asbb", [_encode(names), runtime, False]
    )
    if reload:
        daemon_reload()
    return _changes(body)


def unmask(
    names: Sequence[str], *, runtime: bool = False, reload: bool = True
) -> tuple[UnitFileChange, ...]:
    """Undo mask()."""
    body = _call(
        f"unmask {', '.join(names)}", b"UnmaskUnitFiles", b"asb", [_encode(names), runtime]
    )
    if reload:
        daemon_reload()
    return _changes(body)


def _encode(names: Sequence[str]) -> list[bytes]:
    if isinstance(names, str):
        raise TypeError("pass a sequence of unit names, not one string")
    return [name.encode() for name in names]
