"""The two ways the shim talks to journald: its stdout stream and the native protocol.

Under `StandardOutput=journal` the shim's stdout is a stream socket to journald, recognised by
`$JOURNAL_STREAM` (`device:inode` of that socket, see systemd.exec(5)). Each line written there
may start with a `<N>` syslog priority (`SyslogLevelPrefix=yes`, the default); that is how the
job's stderr lines reach the journal at error priority while its stdout lines stay at info
(the stream's own priority, `SyslogLevel=`). journald ends a line at a newline or a NUL byte,
and splits one longer than `LineMax=`; runlog.JournalFramer frames output accordingly.

The shim's own messages (start, result, refusals) go as datagrams in the native protocol
(systemd.journal-fields(7), "Native Journal Protocol") so that they can carry structured
fields such as `PCSYSTEMD_JOB=` and `PCSYSTEMD_RUN=`. journald attributes a datagram to the unit
through the sender's cgroup, so these appear under `journalctl -u` like the stream lines.
Nothing here imports anything heavy: this is on the shim's start-up path.

Neither way may block the shim for long. A journald that is hung or stopped (SIGSTOP, a
debugger, a disk that does not answer) stops reading both sockets, and a plain write then
waits for it for ever: the job's output pipe fills, the job blocks, and the shim, stuck in
the write, can neither end the job at its timeout nor act on `systemctl stop`. So a datagram
waits at most `DATAGRAM_TIMEOUT_SECONDS` (and after one timed out, the run sends no more),
and the stream is written with `stream_sender`: each send is non-blocking, and
runlog.write_all waits for room at most `STALL_SECONDS` without progress, or a second once
the run must end, then gives the stream up for the rest of the run (the log file still gets
everything).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from enum import Enum

JOURNAL_SOCKET = "/run/systemd/journal/socket"

# syslog(3) priorities, as used in `<N>` prefixes and PRIORITY=.
PRIORITY_ERR = 3
PRIORITY_WARNING = 4
PRIORITY_NOTICE = 5
PRIORITY_INFO = 6

# journald's stream reader splits lines longer than LineMax= (48 KiB by default) and parses a
# `<N>` prefix at the start of each piece; the shim splits long lines itself below this size
# so that every piece keeps its priority. (An admin who sets LineMax= below this in
# journald.conf lets journald split them first: a piece of a stdout line could then start
# with a `<N>` of the job's own.)
STREAM_LINE_LIMIT = 32 * 1024

# journald reads its streams as fast as it can; one that takes nothing of the shim's output
# for this long is hung or stopped, and waiting longer would hold up the job's timeout and
# `systemctl stop` (TimeoutStopSec= allows the shim RECORD_MARGIN_SECONDS for its records).
STALL_SECONDS = 10.0
# The longest a message of the shim's own waits for journald to take it as a datagram; one
# that is not taken goes to the stream instead.
DATAGRAM_TIMEOUT_SECONDS = 2.0

# A datagram must fit in the socket's send buffer; larger ones would need a memfd. The shim's
# messages are short, so values are cut to this length instead.
_MAX_VALUE_BYTES = 16 * 1024


def attached_to_journal(fd: int = 1) -> bool:
    """Whether `fd` is the journal stream systemd connected (compares `$JOURNAL_STREAM`)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = stream.partition(":")
    if not device.isdigit() or not inode.isdigit():
        return False
    try:
        status = os.fstat(fd)
    except OSError:
        return False
    return (status.st_dev, status.st_ino) == (int(device), int(inode))


def encode_fields(fields: Mapping[str, str | bytes | int]) -> bytes:
    """Serialise fields for the native protocol (binary-safe form for values with newlines)."""
    parts: list[bytes] = []
    for name, value in fields.items():
        if not _valid_field_name(name):
            raise ValueError(f"invalid journal field name {name!r}")
        data = value if isinstance(value, bytes) else str(value).encode("utf-8", "replace")
        data = data[:_MAX_VALUE_BYTES]
        key = name.encode("ascii")
        if b"\n" in data:
            parts.append(key + b"\n" + len(data).to_bytes(8, "little") + data + b"\n")
        else:
            parts.append(key + b"=" + data + b"\n")
    return b"".join(parts)


class Delivery(Enum):
    """What became of an entry sent as a datagram."""

    SENT = "sent"
    FAILED = "failed"  # no journald listening, or the entry refused
    TIMED_OUT = "timed out"  # journald's queue stayed full: it is hung or stopped

    def sent(self) -> bool:
        return self is Delivery.SENT


def send(fields: Mapping[str, str | bytes | int], socket_path: str = JOURNAL_SOCKET) -> Delivery:
    """Send one entry over the native protocol."""
    if not os.path.exists(socket_path):
        return Delivery.FAILED
    # The C module `socket` wraps: every run under systemd sends at least two messages, and
    # importing `socket` costs each run milliseconds (it builds enums of all its constants),
    # for nothing a datagram needs.
    import _socket

    try:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
    except OSError:
        return Delivery.FAILED
    try:
        # With a timeout the socket is non-blocking underneath: a full queue (a hung journald)
        # makes send raise TimeoutError after the wait instead of blocking the shim. Connected,
        # so that poll() waits for room in journald's queue; an unconnected datagram socket
        # always polls writable, and the wait would spin.
        sock.settimeout(DATAGRAM_TIMEOUT_SECONDS)
        sock.connect(socket_path)
        sock.send(encode_fields(fields))
    except TimeoutError:
        return Delivery.TIMED_OUT
    except OSError:
        return Delivery.FAILED
    finally:
        sock.close()
    return Delivery.SENT


def stream_sender(fd: int = 1) -> Callable[[Sequence[bytes | memoryview]], int] | None:
    """A send that never blocks on the stream socket `fd` (what os.writev would do, but
    returning EAGAIN when journald has not made room); None if `fd` is not a socket.

    MSG_DONTWAIT makes each send non-blocking without setting O_NONBLOCK on `fd`: that flag
    belongs to the open file, which the shim shares with fd 2 and with whatever else holds
    the stream, and would make their plain writes fail instead of wait.
    """
    import _socket

    try:
        # A duplicate, so that the socket object never closes `fd` itself (non-inheritable,
        # like every descriptor os.dup makes: no job process gets it).
        duplicate = os.dup(fd)
    except OSError:
        return None
    try:
        sock = _socket.socket(fileno=duplicate)
    except OSError:  # not a socket (a file or a pipe named by $JOURNAL_STREAM)
        os.close(duplicate)
        return None
    no_wait = _socket.MSG_DONTWAIT

    def send(buffers: Sequence[bytes | memoryview]) -> int:
        return sock.sendmsg(buffers, (), no_wait)

    return send


def _valid_field_name(name: str) -> bool:
    # journald drops fields whose names are not upper-case ASCII, digits and underscores, or
    # that start with an underscore (those are trusted fields it sets itself).
    return (
        0 < len(name) <= 64
        and not name.startswith("_")
        and not name[0].isdigit()
        and all(
            character.isascii() and (character.isupper() or character.isdigit() or character == "_")
            for character in name
        )
    )
