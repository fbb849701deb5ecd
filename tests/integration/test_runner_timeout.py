"""Timeouts and stops: the whole process tree ends, the result says why, the exit status agrees."""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from journald_stream import journal_stream_variable, small_send_buffer
from run_logs import captured
from shim_helpers import (
    last_run,
    make_config,
    make_job,
    only_log,
    process_alive,
    run_shim,
    shell,
    start_shim,
    terminate,
    wait_for,
)

from pcsystemd import runner

# A job whose main process and two descendants ignore SIGTERM; one of them has left the
# process group and the session (setsid), the other was orphaned by its parent.
STUBBORN = (
    "trap '' TERM; "
    "(trap '' TERM; exec sleep 300) & echo $! >> {pids}; "
    "setsid sh -c 'trap \"\" TERM; echo $$ >> {pids}; exec sleep 300' & "
    "sh -c '(trap \"\" TERM; exec sleep 300) & echo $! >> {pids}' ; "
    "echo $$ >> {pids}; echo started; sleep 300"
)


def pids_in(path: Path) -> list[int]:
    return [int(word) for word in path.read_text().split()] if path.exists() else []


def test_timeout_kills_grandchildren_that_ignore_sigterm(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    pids = tmp_path / "pids"
    job = make_job([shell(STUBBORN.format(pids=pids))], timeout_seconds=1)
    started = time.monotonic()
    finished = run_shim(job, config, work=tmp_path, kill_grace_seconds=0.5)
    elapsed = time.monotonic() - started
    assert finished.returncode == runner.EXIT_TIMEOUT, finished
    assert 1 <= elapsed < 8
    assert len(pids_in(pids)) == 4
    for pid in pids_in(pids):
        assert not process_alive(pid), f"process {pid} survived the timeout"
    text = only_log(config)
    assert "time is up: sending SIGTERM" in text and "sending SIGKILL" in text
    assert "# result: timeout\n" in text
    run = last_run(config)
    assert run["result"] == "timeout"
    assert run["signal"] == "SIGKILL"


def test_timeout_with_a_cooperative_job_needs_no_sigkill(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    job = make_job([shell("echo working; exec sleep 300")], timeout_seconds=1)
    finished = run_shim(job, config, work=tmp_path, kill_grace_seconds=5)
    assert finished.returncode == runner.EXIT_TIMEOUT
    text = only_log(config)
    assert "sending SIGKILL" not in text
    assert "# signal: SIGTERM\n" in text


def test_sigterm_to_the_shim_stops_the_job_and_records_stopped(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    pids = tmp_path / "pids"
    job = make_job([shell(STUBBORN.format(pids=pids))], timeout_seconds=60)
    process = start_shim(job, config, work=tmp_path, kill_grace_seconds=0.5)
    wait_for(lambda: len(pids_in(pids)) == 4, 10, "the job to start its processes")
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=20)
    # It dies of the signal it got, which systemd counts as a clean stop.
    assert process.returncode == -signal.SIGTERM
    for pid in pids_in(pids):
        assert not process_alive(pid)
    run = last_run(config)
    assert run["result"] == "stopped"
    assert "stop requested: sending SIGTERM" in only_log(config)
    assert "# result: stopped\n" in only_log(config)


def test_under_systemd_a_sigterm_at_the_deadline_is_a_timeout(tmp_path: Path) -> None:
    """systemd's RuntimeMaxSec= fires first; the shim sees the run's time is up."""
    config = make_config(tmp_path)
    job = make_job([shell("exec sleep 300")], timeout_seconds=2)
    process = start_shim(job, config, work=tmp_path, environment={"INVOCATION_ID": "0" * 32})
    wait_for(lambda: list((config.log_directory / "demo").glob("*.log")), 10, "the log file")
    # The shim's own clock runs later than systemd's: nothing happens before the SIGTERM.
    time.sleep(2.2)
    assert process.poll() is None, "under systemd the shim leaves the deadline to systemd"
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=20)
    assert process.returncode == runner.EXIT_TIMEOUT
    assert last_run(config)["result"] == "timeout"


def test_under_systemd_an_early_sigterm_is_a_stop(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    job = make_job([shell("exec sleep 300")], timeout_seconds=30)
    process = start_shim(job, config, work=tmp_path, environment={"INVOCATION_ID": "1" * 32})
    wait_for(lambda: list((config.log_directory / "demo").glob("*.log")), 10, "the log file")
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=20)
    assert process.returncode == -signal.SIGTERM
    assert last_run(config)["result"] == "stopped"


def test_under_systemd_the_shims_own_clock_is_the_backstop(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    job = make_job([shell("exec sleep 300")], timeout_seconds=1)
    started = time.monotonic()
    finished = run_shim(job, config, work=tmp_path, environment={"INVOCATION_ID": "2" * 32})
    elapsed = time.monotonic() - started
    assert finished.returncode == runner.EXIT_TIMEOUT
    assert elapsed >= 1 + runner.SYSTEMD_BACKSTOP_SECONDS - 0.2


def test_sigint_by_hand_stops_the_run(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    job = make_job([shell("exec sleep 300")])
    process = start_shim(job, config, work=tmp_path)
    wait_for(lambda: list((config.log_directory / "demo").glob("*.log")), 10, "the log file")
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=20)
    assert process.returncode == -signal.SIGINT
    assert last_run(config)["result"] == "stopped"


def test_stop_during_retry_delay(tmp_path: Path) -> None:
    from pcsystemd.model import Retries

    config = make_config(tmp_path)
    job = make_job([["false"]], retries=Retries(count=3, delay_seconds=60))
    process = start_shim(job, config, work=tmp_path)
    log_dir = config.log_directory / "demo"
    wait_for(
        lambda: any("retrying in 60 s" in p.read_text() for p in log_dir.glob("*.log")),
        10,
        "the first retry delay",
    )
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=20)
    assert time.monotonic() - started < 5
    assert process.returncode == -signal.SIGTERM
    run = last_run(config)
    assert run["result"] == "stopped" and run["attempts"] == 1


# A job that prints 4.4 MB (far more than the stream's send buffer holds), then waits.
FLOOD_LINES = 400_000
FLOOD = f"yes 0123456789 | head -n {FLOOD_LINES}; exec sleep 300"


class UnreadJournalStream:
    """A journal stream whose reader, journald's end, never reads (as if journald hung)."""

    def __init__(self) -> None:
        self.unread, stream = socket.socketpair()
        small_send_buffer(stream)
        self.stream = stream
        self.fd = stream.fileno()  # for the shim's stdout
        self.environment = journal_stream_variable(self.fd)

    def is_full(self) -> bool:
        """Whether the writer has filled it: bytes wait, and no more arrive for a while."""
        waiting = self.waiting()
        time.sleep(0.3)
        return waiting > 0 and self.waiting() == waiting

    def waiting(self) -> int:
        try:
            return len(self.unread.recv(1 << 20, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except BlockingIOError:
            return 0


@contextlib.contextmanager
def unread_journal_stream() -> Iterator[UnreadJournalStream]:
    journal_stream = UnreadJournalStream()
    with journal_stream.unread, journal_stream.stream:
        yield journal_stream


def assert_whole_flood_logged(text: str) -> None:
    # Every byte, in order (the shim's note may have ended a line early, so no newlines).
    assert captured(text.encode(), b"stdout").replace(b"\n", b"") == b"0123456789" * FLOOD_LINES


def flood_into_unread_journal(
    tmp_path: Path, *, timeout_seconds: int, stall_seconds: float
) -> tuple[float, str]:
    """Run FLOOD with stdout an unread journal stream, until it times out: how long the
    shim took, and the log file."""
    config = make_config(tmp_path)
    job = make_job([shell(FLOOD)], timeout_seconds=timeout_seconds)
    with unread_journal_stream() as journal_stream:
        started = time.monotonic()
        finished = run_shim(
            job,
            config,
            work=tmp_path,
            timeout=30,
            stdout=journal_stream.fd,
            environment=journal_stream.environment,
            kill_grace_seconds=0.5,
            output_stall_seconds=stall_seconds,
        )
        elapsed = time.monotonic() - started
    assert finished.returncode == runner.EXIT_TIMEOUT, finished
    assert last_run(config)["result"] == "timeout"
    return elapsed, only_log(config)


def test_a_journal_that_takes_nothing_is_given_up_and_the_timeout_still_works(
    tmp_path: Path,
) -> None:
    """A hung journald stops reading the shim's stream. The shim gives the stream up once it
    took nothing for the stall limit (a plain write would wait for ever, the job blocked on its
    full pipe), the log file still gets every line, and the timeout ends the job."""
    elapsed, text = flood_into_unread_journal(tmp_path, timeout_seconds=3, stall_seconds=1)
    assert 3 <= elapsed < 15
    assert_whole_flood_logged(text)
    assert (
        " [pcsystemd] writing to the journal failed: nothing taken for 1 s"
        " (the log file still has everything)\n"
    ) in text
    assert "# result: timeout\n" in text


def test_a_timeout_during_a_journal_stall_ends_the_job_on_time(tmp_path: Path) -> None:
    """The stall limit is long, the timeout comes first: the shim waits a second at most."""
    elapsed, text = flood_into_unread_journal(tmp_path, timeout_seconds=2, stall_seconds=60)
    assert 2 <= elapsed < 10
    assert "[pcsystemd] writing to the journal failed: nothing taken for 1 s" in text
    assert "# result: timeout\n" in text


def test_a_stop_during_a_journal_stall_is_acted_on_at_once(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    job = make_job([shell(FLOOD)], timeout_seconds=600)
    with unread_journal_stream() as journal_stream:
        process = start_shim(
            job,
            config,
            work=tmp_path,
            stdout=journal_stream.fd,
            environment=journal_stream.environment,
            kill_grace_seconds=0.5,
            output_stall_seconds=60,
        )
        try:
            # Stopped while the shim waits for room in the stream.
            wait_for(journal_stream.is_full, 10, "the journal stream to fill up")
            stopped_at = time.monotonic()
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=20)
        finally:
            terminate(process, signal.SIGKILL)
    assert time.monotonic() - stopped_at < 8
    assert process.returncode == -signal.SIGTERM
    text = only_log(config)
    assert "[pcsystemd] writing to the journal failed: nothing taken for 1 s" in text
    assert "# result: stopped\n" in text
    assert last_run(config)["result"] == "stopped"
