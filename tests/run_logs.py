"""Reading a run's log file in tests: the job's bytes of one stream, without the prefixes."""

from __future__ import annotations

import re

# What runlog puts in front of every captured line: `HH:MM:SS.mmm [stream] `.
PREFIX = re.compile(rb"^\d\d:\d\d:\d\d\.\d{3} \[(stdout|stderr|pcsystemd)\] ", re.M)


def captured(log: bytes, mark: bytes) -> bytes:
    """The job's bytes of one stream (`b"stdout"`, `b"stderr"`), recovered from the log
    file's prefixed lines (a line the shim ended early, for a note, comes out split in two)."""
    lines = []
    for line in log.split(b"\n"):
        match = PREFIX.match(line)
        if match and match[1] == mark:
            lines.append(line[match.end() :])
    return b"\n".join(lines)
