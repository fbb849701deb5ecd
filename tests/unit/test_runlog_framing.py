"""Line framing of interleaved output chunks: every line prefixed, nothing lost or reordered."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from pcsystemd.runlog import STDERR, STDOUT, LineFramer, TimestampCache, utc_timestamp

PREFIXES = {STDOUT: b"<O>", STDERR: b"<E>"}

chunks = st.lists(
    st.tuples(
        st.sampled_from([STDOUT, STDERR]),
        st.binary(min_size=1, max_size=60).map(lambda data: data.replace(b"<", b"(")),
    ),
    max_size=30,
)


def frame_all(framer: LineFramer, events: list[tuple[int, bytes]]) -> bytes:
    return b"".join(
        bytes(piece)
        for stream, data in events
        for piece in framer.frame(stream, data, PREFIXES[stream])
    )


def expected_lines(events: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """The (stream, line) pairs a reader should see: a stream switch ends an open line."""
    lines: list[tuple[int, bytes]] = []
    open_stream = 0
    for stream, data in events:
        for index, part in enumerate(data.split(b"\n")):
            if index == 0 and open_stream == stream:
                lines[-1] = (stream, lines[-1][1] + part)
            else:
                lines.append((stream, part))
        open_stream = 0 if data.endswith(b"\n") else stream
        if data.endswith(b"\n"):
            lines.pop()  # the empty remainder after the final newline is no line
    return lines


def parse(output: bytes) -> list[tuple[int, bytes]]:
    lines: list[tuple[int, bytes]] = []
    if not output:
        return lines
    for line in output.split(b"\n")[: -1 if output.endswith(b"\n") else None]:
        match = re.match(rb"<([OE])>", line)
        assert match, f"line without prefix: {line!r}"
        lines.append((STDOUT if match[1] == b"O" else STDERR, line[3:]))
    return lines


@settings(max_examples=300)
@given(chunks)
def test_every_line_is_prefixed_and_content_is_kept(events: list[tuple[int, bytes]]) -> None:
    output = frame_all(LineFramer(), events)
    assert parse(output) == expected_lines(events)


@settings(max_examples=300)
@given(chunks, st.integers(min_value=2, max_value=16))
def test_split_lines_never_exceed_the_limit(events: list[tuple[int, bytes]], limit: int) -> None:
    output = frame_all(LineFramer(split_at=limit), events)
    parsed = parse(output)
    assert all(len(content) <= limit for _, content in parsed)
    # Joining the pieces of each stream gives back exactly what the stream wrote.
    for stream in (STDOUT, STDERR):
        written = b"".join(data.replace(b"\n", b"") for s, data in events if s == stream)
        assert b"".join(content for s, content in parsed if s == stream) == written


def test_continuation_of_an_open_line_gets_no_second_prefix() -> None:
    framer = LineFramer()
    output = frame_all(framer, [(STDOUT, b"par"), (STDOUT, b"tial\nnext\n")])
    assert output == b"<O>partial\n<O>next\n"
    assert framer.close_line() == b""


def test_switching_streams_ends_the_open_line() -> None:
    framer = LineFramer()
    output = frame_all(framer, [(STDOUT, b"half"), (STDERR, b"error\n"), (STDOUT, b"rest")])
    assert output == b"<O>half\n<E>error\n<O>rest"
    assert framer.close_line() == b"\n"


def test_long_line_detection_across_chunks() -> None:
    framer = LineFramer(split_at=8)
    output = frame_all(framer, [(STDERR, b"abcde"), (STDERR, b"fghijk\n")])
    assert output == b"<E>abcde" + b"fgh\n<E>ijk\n"


def test_utc_timestamp_format() -> None:
    assert utc_timestamp(0.5) == "1970-01-01T00:00:00.500Z"
    assert utc_timestamp(86400 * 365.25 * 30 + 0.001).startswith("2000-01-01T")


def test_timestamp_cache_reports_a_new_date() -> None:
    cache = TimestampCache(start=0.0)  # 1970-01-01
    stamp, new_date = cache.now()
    assert re.fullmatch(rb"\d\d:\d\d:\d\d\.\d{3}", stamp)
    assert new_date is not None and new_date != "1970-01-01"
    assert cache.now()[1] is None
