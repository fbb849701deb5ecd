#!/usr/bin/python3 -I
"""A job that prints: SIZE bytes of LINE_LENGTH-byte log lines on stdout, from memory.

    print_output.py SIZE LINE_LENGTH

The capture benchmark's job (bench_shim.py), and the writer of its input file. It writes a
block of about 1 MiB of lines again and again, so that it spends almost nothing besides the
copy into the pipe: what is measured is the reader of that pipe (the shim, or `cat > file`),
not this program. Only the standard library: Debian's python3 runs it as the job.
"""

from __future__ import annotations

import os
import sys

BLOCK_SIZE = 1 << 20
SAMPLE = b"2025-01-31 12:00:00,123 INFO worker: processed a batch of items "


def block_of_lines(line_length: int) -> bytes:
    """About BLOCK_SIZE bytes of whole lines, each `line_length` bytes with its newline."""
    line = (SAMPLE * (line_length // len(SAMPLE) + 1))[: line_length - 1] + b"\n"
    return line * max(1, BLOCK_SIZE // len(line))


def print_output(fd: int, size: int, line_length: int) -> None:
    block = memoryview(block_of_lines(line_length))
    left = size
    while left > 0:
        piece = block[: min(left, len(block))]
        left -= len(piece)
        while piece:
            piece = piece[os.write(fd, piece) :]


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} SIZE LINE_LENGTH")
    size, line_length = int(sys.argv[1]), int(sys.argv[2])
    if line_length < 1:
        sys.exit("LINE_LENGTH must be at least 1")
    print_output(sys.stdout.fileno(), size, line_length)


if __name__ == "__main__":
    main()
