"""Sending to a real datagram socket, as journald's /run/systemd/journal/socket is."""

from __future__ import annotations

import socket
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
