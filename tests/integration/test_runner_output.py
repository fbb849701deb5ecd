"""Output capture under stress: binary data, huge lines, early close, lingering pipes, 1 GiB."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from journald_stream import journal_stream_variable, journald_entries
from run_logs import captured
from shim_helpers import (
    last_run,
    log_files,
    make_config,
    make_job,
    only_log,
    process_alive,
    run_shim,
    shell,
    wait_for,
)

from pcsystemd import journal


def test_binary_and_invalid_utf8_pass_through_untouched(tmp_path: Path) -> None:
    payload = bytes(range(256)).replace(b"\n", b"") + b"\xff\xfe\xc3\x28 end"
    source = tmp_path / "payload"
    source.write_bytes(payload + b"\n" + payload)
    config = make_config(tmp_path)
    finished = run_shim(make_job([["cat", str(source)]]), config, work=tmp_path)
    assert finished.returncode == 0, finished
    log = (config.log_directory / "demo").iterdir().__next__().read_bytes()
    assert captured(log, b"stdout") == payload + b"\n" + payload
    assert finished.stdout == payload + b"\n" + payload


def test_ten_megabyte_line_without_newline(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    size = 10 * 1024 * 1024
    job = make_job([shell(f"head -c {size} /dev/zero | tr '\\0' a; echo tail >&2")])
    finished = run_shim(job, config, work=tmp_path, stdout=subprocess.DEVNULL)
    assert finished.returncode == 0, finished
    log = next((config.log_directory / "demo").iterdir()).read_bytes()
    assert captured(log, b"stdout") == b"a" * size
    assert captured(log, b"stderr") == b"tail"


def test_child_closing_stdout_early(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    job = make_job([shell("echo before; exec >&-; sleep 0.3; echo after-close >&2; exit 0")])
    finished = run_shim(job, config, work=tmp_path, timeout=20)
    assert finished.returncode == 0, finished
    text = only_log(config)
    assert " [stdout] before\n" in text and " [stderr] after-close\n" in text
    assert last_run(config)["result"] == "success"


def test_grandchild_holding_the_pipe_does_not_hang_the_run(tmp_path: Path) -> None:
    """The main process exits; a background child keeps stdout open for far longer."""
    config = make_config(tmp_path)
    pid_file = tmp_path / "grandchild.pid"
    job = make_job([shell(f"sleep 300 & echo $! > {pid_file}; echo main-done")])
    started = time.monotonic()
    finished = run_shim(job, config, work=tmp_path, drain_seconds=0.5, kill_grace_seconds=1)
    elapsed = time.monotonic() - started
    assert finished.returncode == 0, finished
    assert elapsed < 10, "bounded drain, then finish"
    text = only_log(config)
    assert " [stdout] main-done\n" in text
    assert "still hold its output open" in text
    assert not process_alive(int(pid_file.read_text()))


def test_grandchild_ignoring_sigterm_while_holding_the_pipe(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    pid_file = tmp_path / "grandchild.pid"
    # An ignored signal stays ignored across exec: this sleep cannot be ended by SIGTERM.
    script = f"(trap '' TERM; exec sleep 300) & echo $! > {pid_file}; echo main-done"
    started = time.monotonic()
    finished = run_shim(
        make_job([shell(script)]), config, work=tmp_path, drain_seconds=0.3, kill_grace_seconds=0.5
    )
    assert finished.returncode == 0, finished
    assert time.monotonic() - started < 10
    wait_for(pid_file.exists, 5, "the grandchild's pid")
    assert not process_alive(int(pid_file.read_text()))
    assert "sending SIGKILL" in only_log(config)


def test_background_process_not_holding_the_pipe_is_ended_too(tmp_path: Path) -> None:
    """What systemd would do when the unit stops; outside systemd the shim does it itself."""
    config = make_config(tmp_path)
    pid_file = tmp_path / "daemon.pid"
    job = make_job([shell(f"setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! > {pid_file}")])
    finished = run_shim(job, config, work=tmp_path, kill_grace_seconds=1)
    assert finished.returncode == 0, finished
    assert not process_alive(int(pid_file.read_text()))
    assert "left processes running: ending them" in only_log(config)


def test_interleaved_streams_keep_lines_apart(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    job = make_job(
        [shell("printf 'partial'; sleep 0.2; echo error-line >&2; sleep 0.2; echo ' rest'")]
    )
    assert run_shim(job, config, work=tmp_path).returncode == 0
    lines = [line for line in only_log(config).splitlines() if re.match(r"\d\d:", line)]
    assert [line[13:] for line in lines if line[14:17] == "std"] == [
        "[stdout] partial",
        "[stderr] error-line",
        "[stdout]  rest",
    ]


def journal_run(tmp_path: Path, script: str, **job_options: Any) -> bytes:
    """Run with stdout on a file that $JOURNAL_STREAM names, as under StandardOutput=journal."""
    config = make_config(tmp_path)
    stream = tmp_path / "journal-stream"
    with open(stream, "wb") as handle:
        finished = run_shim(
            make_job([shell(script)], **job_options),
            config,
            work=tmp_path,
            stdout=handle,
            environment=journal_stream_variable(handle.fileno()),
        )
    assert finished.stderr == b"", finished
    return stream.read_bytes()


def test_journal_stream_gets_priorities(tmp_path: Path) -> None:
    output = journal_run(
        tmp_path, "echo out-1; echo err-1 >&2; printf out-2; echo err-2 >&2; exit 4"
    )
    entries = journald_entries(output)
    # (The two pipes are read as output arrives: no order between them is promised.)
    assert {(6, b"out-1"), (3, b"err-1"), (6, b"out-2"), (3, b"err-2")} <= set(entries)
    # Exactly the job's stderr lines are at error priority; the shim's own messages are not.
    assert [message for priority, message in entries if priority <= 3] == [b"err-1", b"err-2"]
    assert any(entry[1].startswith(b"demo: started") for entry in entries if entry[0] == 6)
    assert any(
        priority == 4 and message.startswith(b"demo: failed (exit status 4)")
        for priority, message in entries
    ), entries


def test_journal_stream_keeps_stdout_off_error_priority(tmp_path: Path) -> None:
    # A job cannot raise a stdout line to error priority, by a prefix or after a NUL byte.
    output = journal_run(tmp_path, r"printf '<3>fake\nok\0<2>nul\n'; echo real >&2")
    entries = journald_entries(output)
    assert [message for priority, message in entries if priority <= 3] == [b"real"]
    assert (6, b"<3>fake") in entries and (6, b"<2>nul") in entries


def test_journal_stream_splits_long_lines_keeping_priority(tmp_path: Path) -> None:
    size = 200_000
    output = journal_run(tmp_path, f"head -c {size} /dev/zero | tr '\\0' e >&2; echo >&2; echo ok")
    entries = journald_entries(output)
    error_lines = [message for priority, message in entries if priority == 3]
    assert b"".join(error_lines) == b"e" * size
    assert all(len(line) <= journal.STREAM_LINE_LIMIT for line in error_lines)
    assert not [line for priority, line in entries if b"e" * 10 in line and priority != 3]
    assert (6, b"ok") in entries


@pytest.mark.slow
def test_one_gibibyte_of_output_with_flat_memory(tmp_path: Path) -> None:
    size = 1 << 30
    config = make_config(tmp_path)
    usage = tmp_path / "usage"
    line = "x" * 99
    job = make_job([shell(f"yes {line} | head -c {size}")])
    finished = run_shim(
        job, config, work=tmp_path, stdout=subprocess.DEVNULL, usage_file=usage, timeout=600
    )
    assert finished.returncode == 0, finished
    log = next((config.log_directory / "demo").iterdir())
    try:
        lines = size // 100
        # Every line arrived with its prefix (15 bytes), plus header and footer.
        assert log.stat().st_size >= size + lines * 15
        peak_kib = int(usage.read_text())
        assert peak_kib < 60 * 1024, f"peak RSS of the shim {peak_kib} KiB"
    finally:
        log.unlink()
    assert last_run(config)["result"] == "success"


def test_a_run_by_hand_whose_stdout_closes_says_where_the_output_is(tmp_path: Path) -> None:
    """`pcsystemd run-job … | head -1`: the terminal copy breaks, the log file keeps it all."""
    config = make_config(tmp_path)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    try:
        finished = run_shim(
            make_job([shell("seq 1 1000")]), config, work=tmp_path, stdout=write_end
        )
    finally:
        os.close(write_end)
    assert finished.returncode == 0, finished
    [log] = log_files(config)
    failure = b"writing to standard output failed: Broken pipe"
    warning = failure + f"; the run's output is complete only in {log}\n".encode()
    assert warning in finished.stderr, finished
    text = log.read_bytes()
    expected = b"\n".join(str(number).encode() for number in range(1, 1001))
    assert captured(text, b"stdout") == expected
    assert b" [pcsystemd] " + failure + b" (the log file still has everything)\n" in text
