"""The output writer thread: same bytes as writing directly, in order, bounded, never hangs."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from pcsystemd import runlog
from pcsystemd.runlog import STDERR, STDOUT, BackgroundWriter, Buffer, RunOutput

STAMP = b"12:00:00.000"


def make_output(tmp_path: Path, name: str, *, attached: bool) -> RunOutput:
    """A RunOutput writing to a fresh log file, with a fixed time stamp for comparisons."""
    output = RunOutput(attached, start=0.0)
    output.log_path = tmp_path / name
    output.log_fd = os.open(output.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    output._timestamps.now = lambda: (STAMP, None)  # type: ignore[method-assign]
    return output


def a_run(output: RunOutput) -> None:
    """Job output interleaved with the shim's own lines, as a run produces them."""
    output.log_lines(["# header"])
    output.job_output(STDOUT, b"par")
    output.job_output(STDERR, b"err\n")
    output.job_output(STDOUT, b"tial\nline\n" * 3)
    output.log_lines(["a note"], timestamped=True)
    output.journal_line(5, "shim message")
    output.job_output(STDOUT, b"x" * 100_000)  # longer than journald's line limit
    output.job_output(STDOUT, b"\nlast")
    output.log_lines(["# footer"])


def test_the_writer_thread_writes_the_same_bytes_as_direct_writes(
    tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    direct = make_output(tmp_path, "direct.log", attached=True)
    a_run(direct)
    direct.close_log()
    direct_journal = capfdbinary.readouterr().out

    threads = threading.active_count()  # pytest or a plugin may run threads of their own
    threaded = make_output(tmp_path, "threaded.log", attached=True)
    threaded.start_writer()
    a_run(threaded)
    threaded.stop_writer()
    threaded.close_log()
    threaded_journal = capfdbinary.readouterr().out

    log = (tmp_path / "threaded.log").read_bytes()
    assert log == (tmp_path / "direct.log").read_bytes()
    assert log.startswith(
        b"# header\n12:00:00.000 [stdout] par\n12:00:00.000 [stderr] err\n"
        b"12:00:00.000 [stdout] tial\n12:00:00.000 [stdout] line\n"
    )
    # The note waited for the output queued before it.
    assert b"[stdout] line\n12:00:00.000 [pcsystemd] a note\n" in log
    assert log.endswith(b"12:00:00.000 [stdout] last\n# footer\n")
    assert threaded_journal == direct_journal
    # Plain stdout lines go without a prefix; the long one is split, each piece prefixed.
    assert b"\nline\n<5>shim message\n<6>xxx" in threaded_journal
    assert threading.active_count() == threads, "stop_writer ended the thread"


def test_a_failing_mirror_is_noted_in_the_log_after_what_was_queued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_all = runlog.write_all

    def stdout_gone(fd: int, buffers: Sequence[Buffer], **options: Any) -> None:
        if fd == 1:
            raise OSError(errno.EPIPE, os.strerror(errno.EPIPE))
        write_all(fd, buffers, **options)

    monkeypatch.setattr(runlog, "write_all", stdout_gone)
    output = make_output(tmp_path, "run.log", attached=False)
    output.start_writer()
    output.job_output(STDOUT, b"one\n")
    output.job_output(STDOUT, b"two\n")
    output.stop_writer()
    output.close_log()
    assert output.mirror_error == "writing to standard output failed: Broken pipe"
    lines = (tmp_path / "run.log").read_bytes().splitlines()
    note = (
        b"12:00:00.000 [pcsystemd] writing to standard output failed: Broken pipe"
        b" (the log file still has everything)"
    )
    # Noted once, after the chunk that failed (the reading thread notices it a chunk or so
    # later), and the log still got every chunk.
    assert lines[0] == b"12:00:00.000 [stdout] one"
    assert sorted(lines[1:]) == sorted([b"12:00:00.000 [stdout] two", note])


def in_thread(action: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=action, daemon=True)
    thread.start()
    return thread


def test_at_most_depth_chunks_wait_for_a_slow_writer() -> None:
    release = threading.Event()
    delivered: list[bytes] = []

    def slow(log_pieces: Sequence[Buffer], mirror_fd: int, pieces: Sequence[Buffer]) -> None:
        release.wait()
        delivered.append(b"".join(pieces))

    writer = BackgroundWriter(slow, depth=2)
    try:
        # One chunk is being delivered, two wait: all three are accepted.
        def three() -> None:
            for number in range(3):
                writer.submit([], 1, [bytes([number])])

        first = in_thread(three)
        first.join(timeout=5)
        assert not first.is_alive()
        fourth = in_thread(lambda: writer.submit([], 1, [b"\x03"]))
        fourth.join(timeout=0.3)
        assert fourth.is_alive(), "the fourth chunk must wait for room"
    finally:
        release.set()
    fourth.join(timeout=5)
    writer.stop()
    assert delivered == [b"\x00", b"\x01", b"\x02", b"\x03"]


def test_a_bug_in_the_writer_thread_reaches_the_caller_instead_of_hanging_it() -> None:
    def broken(log_pieces: Sequence[Buffer], mirror_fd: int, pieces: Sequence[Buffer]) -> None:
        raise ValueError("bug")

    threads = threading.active_count()
    writer = BackgroundWriter(broken, depth=1)
    submitted: list[int] = []

    def submit_many() -> None:
        for number in range(10):
            with contextlib.suppress(RuntimeError):
                writer.submit([b"data"], 1, [])
            submitted.append(number)

    submitting = in_thread(submit_many)
    submitting.join(timeout=5)
    assert submitted == list(range(10)), "the writer kept taking chunks"
    with pytest.raises(RuntimeError) as raised:
        writer.flush()
    assert isinstance(raised.value.__cause__, ValueError)
    started = time.monotonic()
    with pytest.raises(RuntimeError):
        writer.stop()
    assert time.monotonic() - started < 5
    assert threading.active_count() == threads
