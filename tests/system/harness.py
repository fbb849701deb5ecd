"""Drive one booted systemd sandbox (real systemd as PID 1 in systemd-nspawn) from pytest.

Everything goes through tests/system/sandbox, the project's wrapper around systemd-sandbox,
so the tests and `tests/system/sandbox prepare` always agree on the rootfs. See README.md here.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
SANDBOX_SCRIPT = REPOSITORY / "tests" / "system" / "sandbox"
DEFAULT_ROOTFS = Path("/var/cache/pcsystemd-test/rootfs")
# Written by systemd-sandbox's `build` as its last step: without it the rootfs is unusable.
ROOTFS_STAMP = ".systemd-sandbox-stamp"
HOST_TOOLS = ("systemd-nspawn", "nsenter", "unshare", "setsid", "tar")

# Where the working tree lands inside the container: the layout the Debian package uses,
# run by Debian's own python3 with Debian's yaml, jinja2, croniter and pystemd.
DIST_PACKAGES = "/usr/lib/python3/dist-packages"
PACKAGE_DIR = f"{DIST_PACKAGES}/pcsystemd"
SHIM = "/usr/bin/pcsystemd"
GENERATOR = "/usr/lib/systemd/system-generators/pcsystemd-generator"
# A switched-off generator is parked outside every generator directory (RESET_SCRIPT restores it).
GENERATOR_PARKED = "/usr/local/lib/pcsystemd-test/pcsystemd-generator"
SYSUSERS = "/usr/lib/sysusers.d/pcsystemd.conf"
TMPFILES = "/usr/lib/tmpfiles.d/pcsystemd.conf"
NOTIFY_TEMPLATE = "/usr/lib/systemd/system/pcsystemd-notify@.service"
# The package renders its notify unit at build time (packaging/build_docs.py) just like this.
RENDER_NOTIFY_UNIT = """
import sys
from pcsystemd.model import GlobalConfig
from pcsystemd.render import render_notify_unit
sys.stdout.write(render_notify_unit(GlobalConfig(shim_path="/usr/bin/pcsystemd")))
"""
JOB_DIRECTORY = "/etc/pcsystemd/jobs"

ENTRY_POINT = """#!/usr/bin/python3
# Installed by the pcsystemd system-test harness, like the Debian package's entry point.
import sys

from pcsystemd.{module} import main

sys.exit(main())
"""

# One exec instead of a dozen: stop our units, forget every file a test may have left, and let
# systemd (and the generator) see the empty job directory. Errors of single steps are ignored
# on purpose: state that is already clean must not fail the reset.
RESET_SCRIPT = r"""
systemctl kill --signal=KILL 'pcsystemd-*' 2>/dev/null
timeout 60 systemctl stop 'pcsystemd-*' 2>/dev/null
rm -rf /etc/pcsystemd /var/log/pcsystemd /var/lib/pcsystemd /run/pcsystemd
find /etc/systemd/system /run/systemd/system -depth -name 'pcsystemd*' -exec rm -rf {} + 2>/dev/null
install -d -m 0755 -o root -g root /etc/pcsystemd /etc/pcsystemd/jobs
# No watcher by default: a test that runs `pcsystemd reload` reads that reload's own output
# (tests/system/test_live_auto_reload.py turns it on).
printf 'auto_reload: false\n' > /etc/pcsystemd/pcsystemd.yaml
systemd-tmpfiles --create /usr/lib/tmpfiles.d/pcsystemd.conf
if [ -e /usr/local/lib/pcsystemd-test/pcsystemd-generator ]; then
    mv /usr/local/lib/pcsystemd-test/pcsystemd-generator \
        /usr/lib/systemd/system-generators/pcsystemd-generator
fi
systemctl daemon-reload
systemctl reset-failed
true
"""

T = TypeVar("T")


class SandboxUnavailable(Exception):
    """The host cannot run the sandbox (not root, tools or rootfs missing): skip, do not fail."""


class SandboxCommandError(subprocess.CalledProcessError):
    """A command inside the container failed; the message carries its output for the report."""

    def __str__(self) -> str:
        # A long argument (a Python script) would bury the output that explains the failure.
        command = shlex.join(arg if len(arg) <= 120 else arg[:117] + "..." for arg in self.cmd)
        lines = [f"{command} exited with status {self.returncode}"]
        for label, text in (("stdout", self.stdout), ("stderr", self.stderr)):
            if text:
                lines.append(f"--- {label} (last 40 lines) ---")
                lines.extend(text.splitlines()[-40:])
        return "\n".join(lines)


def unique_name(prefix: str = "pcsy") -> str:
    """A container name no other pytest session uses (pid + random), within nspawn's limit."""
    name = f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}"
    assert len(name) <= 40, name
    return name


# `require`: a host that cannot run the sandbox fails the suite (CI, where it must run);
# `skip`: never boot it (quick local runs); unset: run when possible, skip with the reason.
MODE_VARIABLE = "PCSYSTEMD_SYSTEM_TESTS"


def skip_or_fail_without_sandbox() -> None:
    """Before booting: skip (or, with PCSYSTEMD_SYSTEM_TESTS=require, fail) with the reason."""
    mode = os.environ.get(MODE_VARIABLE, "")
    if mode == "skip":
        pytest.skip(f"{MODE_VARIABLE}=skip")
    try:
        check_host()
    except SandboxUnavailable as unavailable:
        if mode == "require":
            pytest.fail(f"{MODE_VARIABLE}=require but {unavailable}")
        pytest.skip(str(unavailable))


def check_host(rootfs: Path = DEFAULT_ROOTFS) -> None:
    """Raise SandboxUnavailable with the reason when this host cannot boot the sandbox."""
    if os.geteuid() != 0:
        raise SandboxUnavailable("system tests need root (systemd-nspawn, nsenter)")
    missing = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    if missing:
        raise SandboxUnavailable(
            f"missing host tools {', '.join(missing)}: run `tests/system/sandbox prepare`"
        )
    if not (rootfs / ROOTFS_STAMP).is_file():
        raise SandboxUnavailable(
            f"no sandbox rootfs at {rootfs}: run `tests/system/sandbox prepare`"
        )


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    *,
    interval: float = 0.2,
    message: str = "condition",
) -> T:
    """Call `predicate` until it returns something truthy and return that; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {message}")
        time.sleep(interval)


class Sandbox:
    """One container of the sandbox: boot, run commands inside, copy files in, stop."""

    def __init__(self, name: str, *, rootfs: Path = DEFAULT_ROOTFS) -> None:
        self.name = name
        self.rootfs = rootfs
        self._environment = {
            **os.environ,
            "SANDBOX_NAME": name,
            "PCSYSTEMD_SANDBOX_ROOTFS": str(rootfs),
        }
        self._booted = False

    # ------------------------------------------------------------------ lifecycle

    def _script(
        self, arguments: Sequence[str], *, timeout: float, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SANDBOX_SCRIPT), *arguments],
            env=self._environment,
            text=True,
            capture_output=True,
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            timeout=timeout,
        )

    def boot(self) -> None:
        """Boot the cached rootfs (ephemeral overlay) and wait until systemd is running."""
        # Marked before the attempt: a half-finished boot must be stopped as well.
        self._booted = True
        result = self._script(["boot"], timeout=180)
        if result.returncode != 0:
            raise RuntimeError(f"sandbox boot of {self.name} failed:\n{result.stderr}")

    def stop(self) -> None:
        """Power the container off and remove its state; safe to call twice."""
        if not self._booted:
            return
        self._booted = False
        result = self._script(["stop"], timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"sandbox stop of {self.name} failed:\n{result.stderr}")
        # Names are unique per session, so nobody will reuse this state (lock, console log).
        if not self.running():
            shutil.rmtree(self.state_directory, ignore_errors=True)

    @property
    def state_directory(self) -> Path:
        root = self._environment.get("SANDBOX_STATE_DIR", "/var/tmp/pcsystemd-sandbox-state")
        return Path(root) / self.name

    def running(self) -> bool:
        return self._script(["status"], timeout=30).returncode == 0

    # ------------------------------------------------------------------ commands

    def exec(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        user: str | None = None,
        input: str | None = None,
        timeout: float = 60,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run argv inside the container (clean environment, as root unless `user`)."""
        options: list[str] = []
        if user is not None:
            options += ["-u", user]
        if cwd is not None:
            options += ["-w", cwd]
        for key, value in (env or {}).items():
            options += ["-e", f"{key}={value}"]
        # Killing our nsenter would leave the command running inside the container, so the
        # container's own `timeout` ends it; the host-side timeout is only a backstop.
        inner = ["timeout", "--kill-after=5", f"{timeout:g}", *argv]
        started = time.monotonic()
        result = self._script(
            ["exec", *options, "--", *inner],
            input=input if input is not None else "",
            timeout=timeout + 30,
        )
        completed = subprocess.CompletedProcess(list(argv), result.returncode)
        completed.stdout, completed.stderr = result.stdout, result.stderr
        if result.returncode in (124, 137) and time.monotonic() - started >= timeout:
            raise subprocess.TimeoutExpired(list(argv), timeout, result.stdout, result.stderr)
        if check and result.returncode != 0:
            raise SandboxCommandError(result.returncode, list(argv), result.stdout, result.stderr)
        return completed

    def shell(
        self, script: str, *, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a /bin/sh script inside the container (`set -e`); for plumbing, not for the SUT."""
        return self.exec(["/bin/sh", "-ec", script], check=check, timeout=timeout)

    def python(
        self,
        code: str,
        *args: str,
        check: bool = True,
        user: str | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run Python code with the container's python3 (Debian's modules + our package)."""
        return self.exec(["python3", "-c", code, *args], check=check, user=user, timeout=timeout)

    def systemctl(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.exec(["systemctl", "--no-pager", *arguments], check=check)

    def unit_property(self, unit: str, name: str) -> str:
        """One property of a unit as `systemctl show --value` prints it."""
        return self.systemctl("show", "--value", f"--property={name}", unit).stdout.strip()

    def journal(self, unit: str | None = None, *, cursor: str | None = None) -> str:
        """Journal text (message only), of one unit and/or after a cursor."""
        argv = ["journalctl", "--no-pager", "--quiet", "-o", "cat"]
        if unit is not None:
            argv += ["-u", unit]
        if cursor is not None:
            argv += [f"--after-cursor={cursor}"]
        return self.exec(argv, check=False).stdout

    def journal_cursor(self) -> str:
        """The cursor of the newest journal entry, to read only what comes after it."""
        self.exec(["journalctl", "--flush"], check=False)
        output = self.exec(["journalctl", "-n", "0", "--show-cursor", "--quiet"], check=False)
        for line in output.stdout.splitlines():
            if line.startswith("-- cursor: "):
                return line.removeprefix("-- cursor: ").strip()
        return ""

    # ------------------------------------------------------------------ files

    def cp(self, host_path: str | Path, container_path: str) -> None:
        """Copy a host file or directory in (cp -a semantics: an existing dir receives it)."""
        result = self._script(["cp", str(host_path), container_path], timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"copy {host_path} -> {container_path} failed:\n{result.stderr}")

    def write_file(self, path: str, text: str, mode: int = 0o644, owner: str = "root") -> None:
        """Create or replace a file atomically, with its parent directories."""
        self.exec(
            [
                "/bin/sh",
                "-ec",
                'mkdir -p "$(dirname "$1")"; tmp="$1.sandbox-tmp"; cat >"$tmp"; '
                'chmod "$2" "$tmp"; chown "$3" "$tmp"; mv -f "$tmp" "$1"',
                "sh",
                path,
                f"{mode:o}",
                owner,
            ],
            input=text,
        )

    def read_file(self, path: str) -> str:
        return self.exec(["cat", path]).stdout

    def exists(self, path: str) -> bool:
        return self.exec(["test", "-e", path], check=False).returncode == 0

    # ------------------------------------------------------------------ pcsystemd

    def install_pcsystemd(self, repository: Path = REPOSITORY) -> None:
        """Install the working tree's pcsystemd as the Debian package lays it out."""
        with tempfile.TemporaryDirectory(prefix="pcsystemd-stage-") as stage:
            package = Path(stage) / "pcsystemd"
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
            shutil.copytree(repository / "pcsystemd", package, ignore=ignore)
            # The wheel ships the top-level templates/ as pcsystemd/templates (pyproject.toml).
            shutil.copytree(repository / "templates", package / "templates", ignore=ignore)
            self.exec(["rm", "-rf", PACKAGE_DIR])
            self.cp(package, f"{DIST_PACKAGES}/")
        # The package's own /usr/bin/pcsystemd (python3 -IS), as the Debian build installs it.
        entry_point = repository / "packaging" / "pcsystemd-entry-point"
        self.write_file(SHIM, entry_point.read_text(), mode=0o755)
        self.write_file(GENERATOR, ENTRY_POINT.format(module="generator"), mode=0o755)
        debian = repository / "packaging" / "debian"
        self.cp(debian / "pcsystemd.sysusers", SYSUSERS)
        self.exec(["systemd-sysusers"])
        self.cp(debian / "pcsystemd.tmpfiles", TMPFILES)
        self.exec(["systemd-tmpfiles", "--create", TMPFILES])
        self.exec(["python3", "-m", "compileall", "-q", PACKAGE_DIR])
        notify_unit = self.python(RENDER_NOTIFY_UNIT, check=False)
        if notify_unit.returncode == 0:
            self.write_file(NOTIFY_TEMPLATE, notify_unit.stdout)
        else:  # the renderer is broken: the tests that need the unit will say so
            self.exec(["rm", "-f", NOTIFY_TEMPLATE])
        self.systemctl("daemon-reload")

    def set_generator(self, enabled: bool) -> None:
        """Install or park pcsystemd-generator (apply-mode tests run without it), then reload."""
        if enabled:
            script = f"[ ! -e {GENERATOR_PARKED} ] || mv {GENERATOR_PARKED} {GENERATOR}"
        else:
            script = (
                f"mkdir -p {Path(GENERATOR_PARKED).parent}; "
                f"[ ! -e {GENERATOR} ] || mv {GENERATOR} {GENERATOR_PARKED}"
            )
        self.shell(script)
        self.systemctl("daemon-reload")

    def reset(self) -> None:
        """Forget every job, unit, log and state a test left; one container serves a session."""
        self.exec(["/bin/sh", "-c", RESET_SCRIPT], timeout=120)
