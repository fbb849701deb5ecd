"""Line framing of interleaved output chunks: every line prefixed, nothing lost or reordered."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from journald_stream import journald_entries

from pcsystemd.journal import PRIORITY_ERR, PRIORITY_INFO
from pcsystemd.runlog import (
    STDERR,
    STDOUT,
    JournalFramer,
    LineFramer,
    TimestampCache,
    journal_prefix,
    utc_timestamp,
)

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


# Output as a job might print it to fool the journal: priority prefixes, NUL bytes, markup.
TRICKY = [b"<", b">", b"3", b"7", b"12", b"\n", b"\0", b"x", b"<3>", b"<6>"]


def tricky_chunks(pieces: list[bytes]) -> st.SearchStrategy[list[tuple[int, bytes]]]:
    return st.lists(
        st.tuples(
            st.sampled_from([STDOUT, STDERR]),
            st.lists(st.sampled_from(pieces), min_size=1, max_size=20).map(b"".join),
        ),
        max_size=20,
    )


def journal_framed(events: list[tuple[int, bytes]], framer: JournalFramer | None = None) -> bytes:
    framer = framer or JournalFramer()
    return b"".join(
        bytes(piece)
        for stream, data in events
        for piece in framer.frame(stream, data, journal_prefix(stream))
    )


@settings(max_examples=500)
@given(tricky_chunks([*TRICKY, b" "]))
def test_the_journal_sees_every_stderr_line_at_error_and_every_stdout_line_at_info(
    events: list[tuple[int, bytes]],
) -> None:
    # journald ends a line at a NUL too; the lines a reader should see are split there, and,
    # as journald logs them, without trailing blanks and without the empty ones.
    as_journald_splits = [(stream, data.replace(b"\0", b"\n")) for stream, data in events]
    priority = {STDOUT: PRIORITY_INFO, STDERR: PRIORITY_ERR}
    expected = [
        (priority[stream], line.rstrip(b" "))
        for stream, line in expected_lines(as_journald_splits)
        if line.rstrip(b" ")
    ]
    assert journald_entries(journal_framed(events)) == expected


@settings(max_examples=500)
@given(tricky_chunks(TRICKY), st.integers(min_value=2, max_value=12))
def test_split_lines_keep_their_priority_in_the_journal(
    events: list[tuple[int, bytes]], limit: int
) -> None:
    # Long lines, NUL bytes and `<` together: journald (with room for the prefix) must see
    # each stream's bytes, in order, at that stream's priority only.
    framed = journal_framed(events, JournalFramer(split_at=limit))
    entries = journald_entries(framed, line_max=limit + len(b"<6>") + 1)
    for stream, priority in ((STDOUT, PRIORITY_INFO), (STDERR, PRIORITY_ERR)):
        written = b"".join(data for s, data in events if s == stream)
        logged = b"".join(message for p, message in entries if p == priority)
        assert logged == written.replace(b"\n", b"").replace(b"\0", b"")
    assert {priority for priority, _ in entries} <= {PRIORITY_INFO, PRIORITY_ERR}


def test_plain_stdout_goes_to_the_journal_as_it_came() -> None:
    framer = JournalFramer()
    chunk = b"a line\nand a < b\nhalf"
    assert framer.frame(STDOUT, chunk, b"<6>") == [chunk]
    assert framer.frame(STDOUT, b"<still the same line\n", b"<6>")[0] == b"<still the same line\n"


def test_a_stdout_line_starting_with_a_priority_is_neutralised() -> None:
    framer = JournalFramer()
    output = b"".join(bytes(piece) for piece in framer.frame(STDOUT, b"ok\n<3>fake\n", b"<6>"))
    assert output == b"<6>ok\n<6><3>fake\n"
    assert journald_entries(output) == [(PRIORITY_INFO, b"ok"), (PRIORITY_INFO, b"<3>fake")]


def test_a_nul_byte_cannot_smuggle_a_priority_into_the_journal() -> None:
    output = journal_framed([(STDOUT, b"binary\0<0>emergency?\n"), (STDERR, b"e1\0e2\n")])
    assert journald_entries(output) == [
        (PRIORITY_INFO, b"binary"),
        (PRIORITY_INFO, b"<0>emergency?"),
        (PRIORITY_ERR, b"e1"),
        (PRIORITY_ERR, b"e2"),
    ]


def test_markup_full_of_angle_brackets_keeps_its_lines() -> None:
    chunk = b"<tr>" + b"<td>x</td>" * 40 + b"</tr>\n"
    assert journal_framed([(STDOUT, b"open line "), (STDOUT, chunk)]) == b"open line " + chunk
    assert journal_framed([(STDOUT, chunk)]) == b"<6>" + chunk


def test_utc_timestamp_format() -> None:
    assert utc_timestamp(0.5) == "1970-01-01T00:00:00.500Z"
    assert utc_timestamp(86400 * 365.25 * 30 + 0.001).startswith("2000-01-01T")


def test_timestamp_cache_reports_a_new_date() -> None:
    cache = TimestampCache(start=0.0)  # 1970-01-01
    stamp, new_date = cache.now()
    assert re.fullmatch(rb"\d\d:\d\d:\d\d\.\d{3}", stamp)
    assert new_date is not None and new_date != "1970-01-01"
    assert cache.now()[1] is None
