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
"""

from __future__ import annotations

import os
from collections.abc import Mapping

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


def send(fields: Mapping[str, str | bytes | int], socket_path: str = JOURNAL_SOCKET) -> bool:
    """Send one entry over the native protocol; False when journald cannot be reached."""
    if not os.path.exists(socket_path):
        return False
    # The C module `socket` wraps: every run under systemd sends at least two messages, and
    # importing `socket` costs each run milliseconds (it builds enums of all its constants),
    # for nothing a datagram needs.
    import _socket

    try:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
    except OSError:
        return False
    try:
        sock.sendto(encode_fields(fields), socket_path)
    except OSError:
        return False
    finally:
        sock.close()
    return True


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
