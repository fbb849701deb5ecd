"""Sending to real sockets, as journald's /run/systemd/journal/socket and stream sockets are."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from journald_stream import small_send_buffer

from pcsystemd import journal, runlog


def test_send_delivers_one_datagram_with_all_fields(tmp_path: Path) -> None:
    path = str(tmp_path / "socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(path)
        fields = {"MESSAGE": "line one\nline two", "PCSYSTEMD_JOB": "demo", "PRIORITY": 4}
        assert journal.send(fields, socket_path=path) is journal.Delivery.SENT
        receiver.settimeout(5)
        assert receiver.recv(65536) == journal.encode_fields(fields)


def test_send_to_a_dead_socket_fails_quietly(tmp_path: Path) -> None:
    path = tmp_path / "socket"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(path))
    assert path.exists()
    assert journal.send({"MESSAGE": "x"}, socket_path=str(path)) is journal.Delivery.FAILED


def test_sending_leaves_the_socket_module_unimported(tmp_path: Path) -> None:
    """The shim sends every run's messages; `import socket` would cost each run milliseconds."""
    path = str(tmp_path / "socket")
    code = (
        "import sys\n"
        "from pcsystemd import journal\n"
        f"assert journal.send({{'MESSAGE': 'hello'}}, socket_path={path!r}).sent()\n"
        "print('socket' in sys.modules)\n"
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(path)
        result = subprocess.run(
            [sys.executable, "-I", "-c", code],
            capture_output=True,
            text=True,
            check=True,
        )
        receiver.settimeout(5)
        assert receiver.recv(65536) == b"MESSAGE=hello\n"
    assert result.stdout == "False\n"


def test_a_datagram_journald_does_not_take_is_given_up_after_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hung journald's queue fills up; the shim's message must not wait for it for ever,
    nor spin while it waits."""
    path = str(tmp_path / "socket")
    monkeypatch.setattr(journal, "DATAGRAM_TIMEOUT_SECONDS", 0.5)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(path)
        # A fresh sender per datagram, so that what fills up is the receiver's queue
        # (net.unix.max_dgram_qlen), not one sender's buffer.
        for _ in range(100_000):
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as filler:
                filler.setblocking(False)
                try:
                    filler.sendto(b"MESSAGE=filler\n", path)
                except BlockingIOError:
                    break
        else:
            pytest.fail("the receiver's queue never filled up")
        outcome: list[journal.Delivery] = []
        started, cpu_started = time.monotonic(), time.process_time()
        sender = threading.Thread(
            target=lambda: outcome.append(journal.send({"MESSAGE": "stuck"}, socket_path=path))
        )
        sender.start()
        sender.join(10)
        assert not sender.is_alive(), "send waited for journald for ever"
        assert outcome == [journal.Delivery.TIMED_OUT]
        assert 0.5 <= time.monotonic() - started < 5
        # It slept while it waited: a spinning wait would cost the whole 0.5 s of CPU.
        assert time.process_time() - cpu_started < 0.25


def test_the_stream_sender_is_for_sockets_and_leaves_the_descriptor_blocking(
    tmp_path: Path,
) -> None:
    with open(tmp_path / "file", "wb") as handle:
        assert journal.stream_sender(handle.fileno()) is None
    ours, theirs = socket.socketpair()
    with ours, theirs:
        send = journal.stream_sender(ours.fileno())
        assert send is not None
        assert send([b"one ", memoryview(b"two")]) == 7
        assert theirs.recv(100) == b"one two"
        assert os.get_blocking(ours.fileno()), "O_NONBLOCK would change fd 2 and others too"


def test_writing_to_a_stream_nobody_reads_fails_after_the_stall_limit() -> None:
    ours, theirs = socket.socketpair()
    small_send_buffer(ours)
    with ours, theirs:
        send = journal.stream_sender(ours.fileno())
        started = time.monotonic()
        with pytest.raises(OSError) as raised:
            runlog.write_all(ours.fileno(), [b"x" * (8 << 20)], send=send, stall_seconds=0.3)
        assert raised.value.errno == errno.EAGAIN
        assert raised.value.strerror == "nothing taken for 0.3 s"
        assert 0.3 <= time.monotonic() - started < 5


def test_a_slow_reader_is_not_a_stall() -> None:
    """Only a wait without any progress counts: a reader slower than the limit in total is fine."""
    ours, theirs = socket.socketpair()
    small_send_buffer(ours)
    size = 2 << 20
    received = bytearray()

    def read_slowly() -> None:  # 1.6 s or more for all of it, never a second without reading
        while len(received) < size:
            time.sleep(0.1)
            received.extend(theirs.recv(128 * 1024))

    with ours, theirs:
        reader = threading.Thread(target=read_slowly, daemon=True)
        reader.start()
        started = time.monotonic()
        data = os.urandom(size)
        runlog.write_all(
            ours.fileno(),
            [data[:1000], memoryview(data)[1000:]],
            send=journal.stream_sender(ours.fileno()),
            stall_seconds=1.0,
        )
        reader.join(10)
        assert time.monotonic() - started > 1.0
        assert bytes(received) == data
