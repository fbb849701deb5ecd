"""What journald makes of bytes written to a service's stdout stream: (priority, message) pairs.

A model of systemd 252's stream reader (src/journal/journald-stream.c, stdout_stream_scan,
stdout_stream_line and stdout_stream_log, with syslog_parse_priority from
src/basic/syslog-util.c), so that tests can check what `journalctl -p` would show without a
journald: a line ends at a newline, at a NUL byte, after `line_max` bytes, or at the end of the
stream; its trailing whitespace is cut; with SyslogLevelPrefix=yes, a line starting with `<N>`
(N in 0..7, written with up to three digits) gets priority N and loses the prefix; every other
line gets the stream's priority (SyslogLevel=, info by default); a line left empty is not
logged. Not modelled: the line break journald makes when the writing process changes (only
the shim writes to its stream).
"""

from __future__ import annotations

import os
import socket

INFO = 6
# journald's LineMax= default.
LINE_MAX = 48 * 1024
# What strstrip() cuts (systemd's WHITESPACE).
WHITESPACE = b" \t\n\r"


def journald_entries(
    stream: bytes, *, default_priority: int = INFO, line_max: int = LINE_MAX
) -> list[tuple[int, bytes]]:
    entries: list[tuple[int, bytes]] = []
    position = 0
    while position < len(stream):
        window = stream[position : position + line_max]
        breaks = [found for found in (window.find(b"\n"), window.find(b"\0")) if found >= 0]
        if breaks:
            end = min(breaks)
            line, position = window[:end], position + end + 1
        else:
            # No line end within line_max bytes (or the stream ends): a line of what there is.
            line, position = window, position + len(window)
        priority, message = parse_priority(line.rstrip(WHITESPACE), default_priority)
        if message:
            entries.append((priority, message))
    return entries


def parse_priority(line: bytes, default_priority: int) -> tuple[int, bytes]:
    """syslog_parse_priority(…, with_facility=false): `<N>` with N's digits all decimal and
    its value at most 7; anything else leaves the line as it is."""
    if not line.startswith(b"<"):
        return default_priority, line
    end = line.find(b">")
    if end not in (2, 3, 4):
        return default_priority, line
    digits = line[1:end]
    if not (digits.isascii() and digits.isdigit()) or int(digits) > 7:
        return default_priority, line
    return int(digits), line[end + 1 :]


# A send buffer for a test's journal stream socket, whatever the host's default
# (net.core.wmem_default): what a test writes must not all fit into it.
SMALL_SEND_BUFFER = 64 * 1024


def small_send_buffer(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_SEND_BUFFER)


def journal_stream_variable(fd: int) -> dict[str, str]:
    """$JOURNAL_STREAM naming `fd`, as systemd sets it under StandardOutput=journal."""
    status = os.fstat(fd)
    return {"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}
