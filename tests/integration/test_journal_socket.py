"""Sending to a real datagram socket, as journald's /run/systemd/journal/socket is."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from pcsystemd import journal


def test_send_delivers_one_datagram_with_all_fields(tmp_path: Path) -> None:
    path = str(tmp_path / "socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(path)
        fields = {"MESSAGE": "line one\nline two", "PCSYSTEMD_JOB": "demo", "PRIORITY": 4}
        assert journal.send(fields, socket_path=path)
        receiver.settimeout(5)
        assert receiver.recv(65536) == journal.encode_fields(fields)


def test_send_to_a_dead_socket_fails_quietly(tmp_path: Path) -> None:
    path = tmp_path / "socket"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(path))
    assert path.exists()
    assert journal.send({"MESSAGE": "x"}, socket_path=str(path)) is False


def test_sending_leaves_the_socket_module_unimported(tmp_path: Path) -> None:
    """The shim sends every run's messages; `import socket` would cost each run milliseconds."""
    path = str(tmp_path / "socket")
    code = (
        "import sys\n"
        "from pcsystemd import journal\n"
        f"assert journal.send({{'MESSAGE': 'hello'}}, socket_path={path!r})\n"
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
