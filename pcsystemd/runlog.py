"""Per-run log files: naming, header and footer, line framing of captured output, retention.

One file per run, `<log_directory>/<slug>/<slug>-YYYYmmdd-HHMMSS.log` (UTC start time, as
process-control named them); a second run that starts in the same second gets `-1`, `-2`, ...
The file is created with O_EXCL, so two runs can never share one.

The file starts with a header of `# key: value` lines (command, pid, user, start) and ends
with a footer (end, duration, result, exit status or signal). In between, every captured
line is written as `HH:MM:SS.mmm [stdout] <bytes>`: the UTC time of day, then which stream
(`[stdout]`, `[stderr]`, or `[pcsystemd]` for a note of the shim's own). The date is in the
header, and a `# date:` line marks a change of date during the run. The time stamp is short on
purpose: with 80-byte lines a full ISO date and time on every line makes the log 40 % larger
than the output, and writing the log is what limits throughput.

Output is handled a chunk at a time, never a line or a byte at a time: the prefix is
inserted with one `bytes.replace` per chunk and the pieces go out with one writev. The bytes
are kept as they are (binary output and invalid UTF-8 pass through untouched); a line without
a newline is written as it arrives, however long it gets.

While a command runs, the writes happen on a thread of their own (`start_writer`): the main
thread reads chunk N+1 and frames it for the log file (and for the journal, when attached to
it) while the writer thread writes chunk N to the log and to the journal or the terminal
(os.read, os.write and os.writev release the GIL, so the two overlap). All framing happens
in the reading thread, on the chunk it has just read (still in its CPU's cache), and the
framers' state is that thread's alone. On one thread, reading, framing and writing cost
about 1.7 times what `cat` spends passing the same output on; split this way each thread
does less than cat. At most `WRITER_DEPTH` chunks wait for the writer, so memory stays flat,
and a writer that cannot keep up holds the reading back just as a blocking write did.
Everything else written (the shim's own lines, the header and footer) first waits until the
writer has written what is queued, and is then written directly, in order.

A write to the journal stream (or to a terminal descriptor inherited as non-blocking) waits
for room, but not for ever: after `journal.STALL_SECONDS` without progress (a hung
journald), or a second once the run must end (a stop, its time up), that destination is
given up for the rest of the run and this is noted in the log file, which goes on getting
everything.

Retention, applied after each run: a log file is removed when more than `log_retention_runs`
newer runs exist, or when its run started more than `log_retention_days` days ago; 0 turns a
limit off. The file of the run that just ended is always kept, and only files whose names
match the pattern above are ever touched.
"""

from __future__ import annotations

import errno
import os
import select
import time

from pcsystemd.errors import RunError
from pcsystemd.journal import STALL_SECONDS, STREAM_LINE_LIMIT, stream_sender

# The runtime shim imports this module at every job run. Not imported here for that reason:
# re, datetime and pathlib (the log file names are parsed by hand), typing (the type
# checker's only), threading (only a run with much output starts a writer thread).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path
    from threading import Lock

    StrPath = str | os.PathLike[str]

Buffer = bytes | memoryview
if TYPE_CHECKING:
    # What the writer thread takes: a chunk (log pieces, mirror descriptor, mirror pieces),
    # a flush to acknowledge, or None to end.
    _WriterItem = tuple[Sequence[Buffer], int, Sequence[Buffer]] | Lock | None

STDOUT = 1
STDERR = 2
_STREAM_MARKS = {STDOUT: b" [stdout] ", STDERR: b" [stderr] "}
_NOTE_MARK = b" [pcsystemd] "
# What ends a line for journald's stream reader.
_LINE_ENDS = (ord("\n"), 0)
# `<` a journal framer looks at in a chunk of stdout before it frames the chunk instead.
_MAX_ANGLE_BRACKETS = 16
LEGEND = "# times: UTC"
LOG_FILE_MODE = 0o640
_MAX_SUFFIX = 10_000
# Chunks that may wait for the writer thread (one more is being written): with the pipe's own
# buffer, enough to ride out a slow write without stalling the job (4 was no faster). Each
# costs the chunk and its framed copies: the log file's, and the journal's when a line of it
# needed a prefix; two to three times the read size.
WRITER_DEPTH = 2
# Job output a run writes in its own thread before it starts the writer thread: most runs
# print little, and a thread (and the threading module) would only cost them start-up time.
WRITER_THRESHOLD_BYTES = 256 * 1024
# How often a write that waits for room asks whether the run must end (a stop, a timeout),
# and how long it may then still wait: a busy journald gets a moment, a hung one does not
# keep the shim from ending the job within systemd's stop timeout.
_GIVE_UP_CHECK_SECONDS = 0.25
_HURRIED_STALL_SECONDS = 1.0


def utc_timestamp(when: float) -> str:
    """`2025-01-31T12:34:56.789Z`: the one timestamp format of logs and history."""
    seconds = int(when)
    milliseconds = int((when - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{milliseconds:03d}Z"


def parse_log_file_name(slug: str, name: str) -> tuple[str, int] | None:
    """(`YYYYmmdd-HHMMSS` start stamp, suffix) of a run log's file name, None if it is not one.

    The names are `<slug>-YYYYmmdd-HHMMSS.log`, or `...-N.log` for a later run in the same
    second (create_log_file).
    """
    prefix = slug + "-"
    if not (name.startswith(prefix) and name.endswith(".log")):
        return None
    rest = name[len(prefix) : -len(".log")]
    stamp, suffix = rest[:15], rest[15:]
    if len(stamp) != 15 or stamp[8] != "-" or not _digits(stamp[:8] + stamp[9:]):
        return None
    if not suffix:
        return stamp, 0
    if suffix[0] != "-" or not _digits(suffix[1:]):
        return None
    return stamp, int(suffix[1:])


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def is_log_file_name(slug: str, name: str) -> bool:
    return parse_log_file_name(slug, name) is not None


def create_log_file(directory: StrPath, slug: str, start: float) -> tuple[str, int]:
    """Create the run's log file exclusively; returns its path and a write descriptor."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(start))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
    for suffix in range(_MAX_SUFFIX):
        name = f"{slug}-{stamp}.log" if suffix == 0 else f"{slug}-{stamp}-{suffix}.log"
        path = os.path.join(directory, name)
        try:
            return path, os.open(path, flags, LOG_FILE_MODE)
        except FileExistsError:
            continue
        except OSError as error:
            raise RunError(f"cannot create the log file {path}: {error.strerror}") from error
    raise RunError(f"cannot create a log file in {directory}: {_MAX_SUFFIX} runs in one second")


def _log_files(directory: StrPath, slug: str) -> list[tuple[str, str]]:
    """(start stamp, path) of this job's run logs in `directory`, oldest first."""
    found: list[tuple[str, int, str]] = []  # start stamp, suffix, path: sorts by start
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    for entry in entries:
        parsed = parse_log_file_name(slug, entry.name)
        if parsed is not None and entry.is_file(follow_symlinks=False):
            found.append((parsed[0], parsed[1], entry.path))
    return [(stamp, path) for stamp, _, path in sorted(found)]


def list_log_files(directory: StrPath, slug: str) -> list[Path]:
    """This job's run logs in `directory`, oldest first (for the CLI: as paths)."""
    from pathlib import Path

    return [Path(path) for _, path in _log_files(directory, slug)]


def prune_logs(
    directory: StrPath,
    slug: str,
    *,
    keep_runs: int,
    keep_days: int,
    keep: StrPath | None = None,
    now: float | None = None,
) -> list[str]:
    """Remove run logs beyond the retention limits; returns what was removed."""
    now = time.time() if now is None else now
    spared = None if keep is None else os.fspath(keep)
    doomed: list[str] = []
    for position, (stamp, path) in enumerate(reversed(_log_files(directory, slug))):
        if path == spared:  # newest first
            continue
        too_many = keep_runs > 0 and position >= keep_runs
        too_old = False
        if keep_days > 0:
            started = _stamp_to_epoch(stamp)
            too_old = started is not None and now - started > keep_days * 86400
        if too_many or too_old:
            doomed.append(path)
    removed = []
    for path in doomed:
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


def _stamp_to_epoch(stamp: str) -> float | None:
    """`YYYYmmdd-HHMMSS` (UTC, as parse_log_file_name found it) → seconds since the epoch.

    What calendar.timegm(time.strptime(stamp, "%Y%m%d-%H%M%S")) gives, with the same range
    checks (a leap second is allowed), without importing _strptime into every run.
    """
    try:
        year, month, day = int(stamp[0:4]), int(stamp[4:6]), int(stamp[6:8])
        hour, minute, second = int(stamp[9:11]), int(stamp[11:13]), int(stamp[13:15])
    except ValueError:
        return None
    days = _days_since_epoch(year, month, day)
    if days is None or hour > 23 or minute > 59 or second > 61:
        return None
    return float(days * 86400 + hour * 3600 + minute * 60 + second)


def _days_since_epoch(year: int, month: int, day: int) -> int | None:
    """Days from 1970-01-01 to a proleptic Gregorian date; None for an impossible date.

    datetime.date would do, at the cost of an import per run; this is the well-known
    days-from-civil computation (March-based years, 400-year eras).
    """
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    month_days = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    if year < 1 or not 1 <= month <= 12 or not 1 <= day <= month_days[month - 1]:
        return None
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


class LineFramer:
    """Inserts a prefix at the start of every line of interleaved stdout/stderr chunks.

    A chunk of one stream that arrives while the other stream's line is unfinished first
    ends that line, so lines of the two streams never run together. With `split_at`, lines
    longer than that are broken (for journald, which would otherwise lose their priority).
    """

    def __init__(self, split_at: int = 0) -> None:
        self.open_stream = 0  # the stream whose last line has no newline yet; 0: none
        self.line_length = 0  # bytes written of that unfinished line
        self.split_at = split_at

    def frame(self, stream: int, data: bytes, prefix: bytes) -> list[Buffer]:
        """What to write for `data` from `stream` (for writev); every line starts with `prefix`.

        The chunk is copied once, by `bytes.replace`; the pieces around it are not joined,
        because each join would copy the whole chunk again.
        """
        return self._frame(stream, data, prefix, as_is=False)

    def _frame(self, stream: int, data: bytes, prefix: bytes, *, as_is: bool) -> list[Buffer]:
        """`frame`; with `as_is` (a subclass found that the lines of `data` need no prefix)
        the chunk is not copied at all, unless a line must be split."""
        pieces: list[Buffer] = []
        if self.open_stream and self.open_stream != stream:
            pieces.append(b"\n")
            self.open_stream = 0
            self.line_length = 0
        if self.split_at and self._has_long_line(data):
            pieces.append(self._frame_split(stream, data, prefix))
            return pieces
        if as_is:
            pieces.append(data)
        else:
            if not self.open_stream:
                pieces.append(prefix)
            body = data.replace(b"\n", b"\n" + prefix)
            # A chunk that ends a line must not start the next one: its last prefix goes.
            pieces.append(memoryview(body)[: -len(prefix)] if data.endswith(b"\n") else body)
        if data.endswith(b"\n"):
            self.open_stream = 0
            self.line_length = 0
        else:
            self.open_stream = stream
            last_newline = data.rfind(b"\n")
            tail = len(data) - last_newline - 1
            self.line_length = tail if last_newline >= 0 else self.line_length + len(data)
        return pieces

    def close_line(self) -> bytes:
        """A newline if a line is unfinished, so what follows starts on its own line."""
        if not self.open_stream:
            return b""
        self.open_stream = 0
        self.line_length = 0
        return b"\n"

    def _has_long_line(self, data: bytes) -> bool:
        # Any run of more than split_at bytes without a newline contains a whole aligned window
        # of half that size, so checking those windows (each a memchr in C) is enough.
        limit = self.split_at
        first = data.find(b"\n")
        if self.line_length + (first if first >= 0 else len(data)) > limit:
            return True
        if len(data) <= limit:
            return False
        window = limit // 2
        return any(
            data.find(b"\n", start, start + window) < 0
            for start in range(0, len(data) - window + 1, window)
        )

    def _frame_split(self, stream: int, data: bytes, prefix: bytes) -> bytes:
        pieces: list[bytes] = []
        segments = data.split(b"\n")
        last = len(segments) - 1
        for index, segment in enumerate(segments):
            if index > 0:
                pieces.append(b"\n")
                self.open_stream = 0
                self.line_length = 0
            if index == last and not segment:
                break  # the chunk ended with a newline
            if not self.open_stream:
                pieces.append(prefix)
                self.open_stream = stream
            while segment:
                room = self.split_at - self.line_length
                if room <= 0:
                    pieces.append(b"\n" + prefix)
                    self.line_length = 0
                    continue
                piece, segment = segment[:room], segment[room:]
                pieces.append(piece)
                self.line_length += len(piece)
        return b"".join(pieces)


class JournalFramer(LineFramer):
    """Frames output for journald's stream protocol (the shim's stdout under systemd).

    journald reads a `<N>` priority at the start of every line, and a line ends at a newline,
    at a NUL byte, or after LineMax= bytes (see journal.py). So a stderr line needs `<3>` in
    front, and a stdout line needs `<6>` only if it starts with `<` (a job's own `<3>` must
    not raise its line's priority): every other stdout line gets the stream's priority,
    SyslogLevel=, which is info unless the unit says otherwise. Most output has no line
    starting with `<`, so a chunk of it goes out as it came, without being copied: framing
    every line cost as much again as the log file's framing. In a chunk that is framed, a
    NUL byte becomes a newline (journald would end the line there anyway, dropping the NUL)
    so that the piece after it gets its prefix too; the log file keeps the NUL. A chunk that
    goes as it came needs no such care: each piece of it gets the stream's priority.
    """

    def __init__(self, split_at: int = STREAM_LINE_LIMIT) -> None:
        super().__init__(split_at=split_at)

    def frame(self, stream: int, data: bytes, prefix: bytes) -> list[Buffer]:
        # A chunk ending in a NUL is framed so that the next one starts a line (open_stream).
        as_is = stream == STDOUT and not data.endswith(b"\0") and not self._has_marked_line(data)
        if not as_is and b"\0" in data:
            data = data.replace(b"\0", b"\n")
        return self._frame(stream, data, prefix, as_is=as_is)

    def _has_marked_line(self, data: bytes) -> bool:
        """Whether a line of stdout `data` (ended by a newline or a NUL) starts with `<`."""
        # If a stderr line is open, frame() ends it first: position 0 then starts a line.
        starts_line = self.open_stream != STDOUT
        position = data.find(b"<")  # a memchr: output without any `<` costs next to nothing
        for _ in range(_MAX_ANGLE_BRACKETS):
            if position < 0:
                return False
            if data[position - 1] in _LINE_ENDS if position else starts_line:
                return True
            position = data.find(b"<", position + 1)
        return position >= 0  # markup, with `<` everywhere: framing is cheaper than looking


class TimestampCache:
    """Formats the per-chunk time of day at most once per millisecond; notices a new date."""

    def __init__(self, start: float) -> None:
        self._millisecond = -1
        self._text = b""
        self.date = time.strftime("%Y-%m-%d", time.gmtime(start))

    def now(self) -> tuple[bytes, str | None]:
        """The UTC time of day, and the new date if it changed since the last call."""
        current = time.time()
        millisecond = int(current * 1000)
        new_date = None
        if millisecond != self._millisecond:
            self._millisecond = millisecond
            stamp = utc_timestamp(current)
            self._text = stamp[11:23].encode("ascii")
            if stamp[:10] != self.date:
                self.date = new_date = stamp[:10]
        return self._text, new_date


def stream_prefix(timestamp: bytes, stream: int) -> bytes:
    return timestamp + _STREAM_MARKS[stream]


def journal_prefix(stream: int) -> bytes:
    return b"<3>" if stream == STDERR else b"<6>"


class RunOutput:
    """Where captured output goes: the run's log file, and the journal or the terminal."""

    def __init__(
        self,
        attached: bool,
        start: float,
        *,
        stall_seconds: float = STALL_SECONDS,
        must_end: Callable[[], bool] | None = None,
    ) -> None:
        self.attached = attached  # our stdout is systemd's journal stream
        # Writes to the journal stream never block (see journal.py); None: not a socket.
        self._journal_send = stream_sender(1) if attached else None
        # How long a write to the journal (or a non-blocking terminal) may wait for room
        # (write_all), and whether the run must end now, when it may wait a second at most
        # (asked from the writer thread too).
        self.stall_seconds = stall_seconds
        self._must_end = must_end
        self.log_fd: int | None = None
        self.log_path: str | None = None
        self.log_error: str | None = None
        # The first write to the journal or the terminal that failed, if any.
        self.mirror_error: str | None = None
        self._mirror_broken: set[int] = set()
        # Failures for the log file, appended by whichever thread wrote (list.append and pop
        # are atomic), noted by the reading thread.
        self._mirror_notes: list[str] = []
        # Both used by the reading thread only (see the module docstring).
        self._file_framer = LineFramer()
        self._journal_framer = JournalFramer()
        self._timestamps = TimestampCache(start)
        self._writer: BackgroundWriter | None = None
        # While a command runs: start a writer thread once its output passes the threshold.
        self._writer_wanted = False
        self._writer_threshold = WRITER_THRESHOLD_BYTES
        self._direct_bytes = 0
        self.stderr_bytes = 0

    def start_writer(self, threshold: int = WRITER_THRESHOLD_BYTES) -> None:
        """Write job output on a thread of its own, until `stop_writer`, once `threshold`
        bytes of it have been written directly (0: from now on)."""
        self._writer_wanted = True
        self._direct_bytes = 0
        self._writer_threshold = threshold
        if threshold <= 0:
            self._start_thread()

    def _start_thread(self) -> None:
        if self._writer is None:
            reuse_freed_memory()
            self._writer = BackgroundWriter(self._deliver, WRITER_DEPTH)

    def stop_writer(self) -> None:
        """Wait until everything queued is written; then write in the calling thread again."""
        self._writer_wanted = False
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.stop()
            self._note_mirror_failure()

    def job_output(self, stream: int, data: bytes) -> None:
        if stream == STDERR:
            self.stderr_bytes += len(data)
        if self._writer is None and self._writer_wanted:
            self._direct_bytes += len(data)
            if self._direct_bytes > self._writer_threshold:
                self._start_thread()
        log_pieces: list[Buffer] = []
        if self.log_fd is not None and self.log_error is None:
            # The time stamp is the time of reading.
            stamp, new_date = self._timestamps.now()
            if new_date is not None:
                date_line = f"# date: {new_date}\n".encode()
                log_pieces.append(self._file_framer.close_line() + date_line)
            log_pieces += self._file_framer.frame(stream, data, stream_prefix(stamp, stream))
        if self.attached:
            mirror_fd = 1
            mirror_pieces = self._journal_framer.frame(stream, data, journal_prefix(stream))
        else:
            mirror_fd, mirror_pieces = (1 if stream == STDOUT else 2), [data]
        if self._writer is not None:
            self._writer.submit(log_pieces, mirror_fd, mirror_pieces)
        else:
            self._deliver(log_pieces, mirror_fd, mirror_pieces)
        self._note_mirror_failure()

    def log_lines(self, lines: Sequence[str], *, timestamped: bool = False) -> None:
        """Lines of the shim's own in the log file (header, notes, footer)."""
        if self.log_fd is None:
            return
        self._flush()
        text = self._file_framer.close_line()
        for line in lines:
            if timestamped:
                stamp, new_date = self._timestamps.now()
                if new_date is not None:
                    text += f"# date: {new_date}\n".encode()
                text += stamp + _NOTE_MARK + line.encode("utf-8", "replace")
            else:
                text += line.encode("utf-8", "replace")
            text += b"\n"
        self._write_log([text])

    def journal_line(self, priority: int, message: str) -> None:
        """A line of the shim's own on the journal stream, at its priority."""
        self._flush()
        data = self._journal_framer.close_line()
        for line in message.splitlines() or [""]:
            data += f"<{priority}>{line}\n".encode("utf-8", "replace")
        self._write_mirror(1, [data])
        self._note_mirror_failure()

    def terminal_line(self, message: str) -> None:
        self._flush()
        self._write_mirror(2, [(message + "\n").encode("utf-8", "replace")])
        self._note_mirror_failure()

    def close_log(self) -> None:
        if self.log_fd is not None:
            self.log_lines([])
            try:
                os.close(self.log_fd)
            except OSError as error:
                self.log_error = self.log_error or f"{self.log_path}: {error.strerror}"
            self.log_fd = None

    def _flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def _deliver(
        self, log_pieces: Sequence[Buffer], mirror_fd: int, mirror_pieces: Sequence[Buffer]
    ) -> None:
        """Write one framed chunk of job output everywhere it goes (on the writer thread, if
        any): the log file, and the journal stream or the terminal."""
        if log_pieces:
            self._write_log(log_pieces)
        self._write_mirror(mirror_fd, mirror_pieces)

    def _write_log(self, data: Sequence[Buffer]) -> None:
        assert self.log_fd is not None
        if self.log_error is not None:
            return
        try:
            write_all(self.log_fd, data)
        except OSError as error:
            # Keep reading the job's pipes (it must never block on us); the journal still
            # gets every line, and the run is marked as an error at the end.
            self.log_error = f"writing {self.log_path} failed: {error.strerror}"

    def _write_mirror(self, fd: int, data: Sequence[Buffer]) -> None:
        if fd in self._mirror_broken:
            return
        send = self._journal_send if fd == 1 else None
        try:
            write_all(fd, data, send=send, stall_seconds=self.stall_seconds, give_up=self._must_end)
        except OSError as error:
            self._mirror_broken.add(fd)
            if self.attached:
                where = "the journal"
            else:
                where = "standard output" if fd == 1 else "standard error"
            failure = f"writing to {where} failed: {error.strerror}"
            self.mirror_error = self.mirror_error or failure
            # Noted in the log by the reading thread: the file framer's state is its own.
            self._mirror_notes.append(failure)

    def _note_mirror_failure(self) -> None:
        while self._mirror_notes:
            failure = self._mirror_notes.pop(0)
            self.log_lines([f"{failure} (the log file still has everything)"], timestamped=True)


class BackgroundWriter:
    """A thread that delivers chunks in order: `depth` chunks may wait while one is delivered.

    The hand-over uses two of CPython's C queues (`_queue.SimpleQueue`): one carries the
    chunks, the other `depth` tokens of room. queue.Queue, with its locks and conditions
    written in Python, cost the reading thread about 20 µs more per 1 MiB chunk, a tenth of
    what framing the chunk costs.
    """

    def __init__(
        self, deliver: Callable[[Sequence[Buffer], int, Sequence[Buffer]], None], depth: int
    ) -> None:
        import threading
        from _queue import SimpleQueue

        self._deliver = deliver
        self._new_lock = threading.Lock
        self._items: SimpleQueue[_WriterItem] = SimpleQueue()
        self._room: SimpleQueue[None] = SimpleQueue()
        for _ in range(depth):
            self._room.put(None)
        self._failure: BaseException | None = None
        # A daemon: a writer stuck on a blocked descriptor must not keep the shim alive.
        self._thread = threading.Thread(target=self._run, name="pcsystemd-writer", daemon=True)
        self._thread.start()

    def submit(
        self, log_pieces: Sequence[Buffer], mirror_fd: int, mirror_pieces: Sequence[Buffer]
    ) -> None:
        """Queue a chunk; waits while `depth` chunks are already waiting."""
        self._room.get()
        self._items.put((log_pieces, mirror_fd, mirror_pieces))
        self._raise_failure()

    def flush(self) -> None:
        """Return once everything queued so far has been delivered."""
        delivered = self._new_lock()
        delivered.acquire()
        self._items.put(delivered)  # released by the writer when it gets there
        delivered.acquire()
        self._raise_failure()

    def stop(self) -> None:
        """Deliver everything queued, then end the thread."""
        self._items.put(None)
        self._thread.join()
        self._raise_failure()

    def _run(self) -> None:
        import signal

        # Signals belong to the main thread (its poll loop wakes up for them); here they
        # would only interrupt writes.
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        while True:
            item = self._items.get()
            if item is None:
                return
            if not isinstance(item, tuple):
                item.release()  # a flush: everything before it has been delivered
                continue
            # Room for the next chunk as soon as this one is taken: `depth` may wait.
            self._room.put(None)
            try:
                if self._failure is None:
                    self._deliver(*item)
            except BaseException as error:
                # A bug, not an I/O error (deliver records those): hand it to the main thread,
                # and keep taking items so that it never waits for room forever.
                self._failure = error

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise RuntimeError("the output writer thread failed") from self._failure


# mallopt(3) parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# A chunk and its framed copy (1.2 MiB for 100-byte lines) stay well below this; only a chunk
# of almost nothing but newlines frames to more, and is mapped and unmapped as before.
_MMAP_THRESHOLD = 8 << 20
# Free memory the heap may keep rather than hand back: more than the chunks in flight need.
_TRIM_THRESHOLD = 64 << 20

_memory_tuned = False


def reuse_freed_memory() -> None:
    """Make glibc's malloc keep the memory of freed chunks of output for the next ones.

    By default a chunk (and its framed copy) either gets fresh pages from mmap, or comes from
    a heap that free() trims back as soon as more than about two chunks lie free at its top:
    either way every chunk's pages were faulted in and zeroed again, a sixth to a third of
    the reading thread's time. With fixed thresholds the few chunks in flight are recycled in
    the heap; memory stays flat (bounded by the chunks in flight, not by the output).
    Done once per process, when a command's output first grows large (the writer
    threshold): a run that prints little does not pay for the ctypes import.
    """
    global _memory_tuned
    if _memory_tuned:
        return
    _memory_tuned = True
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


def write_all(
    fd: int,
    buffers: Sequence[Buffer],
    *,
    send: Callable[[Sequence[Buffer]], int] | None = None,
    stall_seconds: float = STALL_SECONDS,
    give_up: Callable[[], bool] | None = None,
) -> None:
    """Write all of `buffers` to `fd` (one writev, or `send`, per round), however the kernel
    splits it.

    `send` is a non-blocking write to `fd` (journal.stream_sender); a descriptor may also be
    non-blocking by itself (inherited so). Either way, when there is no room the write waits
    for it, but not longer than `stall_seconds` without progress (a second, once `give_up()`
    says the run must end): then it fails with EAGAIN.
    """
    views = [memoryview(buffer) for buffer in buffers if len(buffer)]
    stalled_since: float | None = None
    while views:
        try:
            written = os.writev(fd, views) if send is None else send(views)
            stalled_since = None
        except BlockingIOError:
            now = time.monotonic()
            if stalled_since is None:
                stalled_since = now
            limit = stall_seconds
            if give_up is not None and give_up():
                limit = min(stall_seconds, _HURRIED_STALL_SECONDS)
            waited = now - stalled_since
            if waited >= limit:
                raise OSError(errno.EAGAIN, f"nothing taken for {limit:g} s") from None
            wait = limit - waited
            if give_up is not None:
                wait = min(wait, _GIVE_UP_CHECK_SECONDS)
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            poller.poll(max(1, int(wait * 1000)))
            continue
        while written:
            if written >= len(views[0]):
                written -= len(views.pop(0))
            else:
                views[0] = views[0][written:]
                written = 0
