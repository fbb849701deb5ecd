"""Fixtures for the system tests: one booted sandbox per pytest session, reset before each test.

See README.md in this directory for how to use them.
"""

from __future__ import annotations

import atexit
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from .harness import Sandbox, skip_or_fail_without_sandbox, unique_name

HERE = Path(__file__).resolve().parent

_journal_cursor = pytest.StashKey[str]()
_sandbox_of = pytest.StashKey[Sandbox]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Everything in this directory needs the sandbox, so `-m "not system"` deselects it all
    # even when a test forgets the marker.
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.system)


def _terminate_as_interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM would otherwise end Python without running finally blocks or atexit handlers,
    # leaving the container running; pytest ends the session cleanly on KeyboardInterrupt.
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """A booted container with the working tree's pcsystemd installed, for the whole session."""
    skip_or_fail_without_sandbox()

    container = Sandbox(unique_name())
    atexit.register(container.stop)
    previous_sigterm = signal.getsignal(signal.SIGTERM)
    if previous_sigterm == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        container.boot()
        container.install_pcsystemd()
        container.reset()
        yield container
    finally:
        try:
            container.stop()
        finally:
            atexit.unregister(container.stop)
            if previous_sigterm == signal.SIG_DFL:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture
def clean_sandbox(request: pytest.FixtureRequest, sandbox: Sandbox) -> Sandbox:
    """The session's container with no jobs, units, logs or state left by earlier tests.

    When the test fails, the journal written during it is added to the report.
    """
    sandbox.reset()
    request.node.stash[_journal_cursor] = sandbox.journal_cursor()
    request.node.stash[_sandbox_of] = sandbox
    return sandbox


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    container = item.stash.get(_sandbox_of, None)
    cursor = item.stash.get(_journal_cursor, None)
    if container is None or cursor is None:
        return
    try:
        journal = container.exec(
            ["journalctl", "--no-pager", "-o", "short-monotonic", f"--after-cursor={cursor}"],
            check=False,
        ).stdout
    except Exception as error:  # the report must not hide the test's own failure
        journal = f"(could not read the journal: {error})"
    report.sections.append(("container journal during the test", journal[-20000:]))
