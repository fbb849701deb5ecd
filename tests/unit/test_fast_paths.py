"""The short ways taken for speed give exactly what the long ways they stand in for give.

Each shortcut (the shim's own argument reading, the log-name time stamps, the cached schedule
compilation, the renderer's directory arithmetic) is compared with the general code it
replaces, on the inputs that matter and on generated ones.
"""

from __future__ import annotations

import argparse
import calendar
import re
import shlex
import time
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pcsystemd import shim, spawn
from pcsystemd.render import _child, _managed_directory
from pcsystemd.runlog import _stamp_to_epoch, parse_log_file_name
from pcsystemd.schedule import ScheduleError, compile_schedule

# --- `pcsystemd run-job` arguments -----------------------------------------------------------


def argparse_reading(argv: list[str]) -> tuple[str, str | None, str | None, bool] | str:
    """What the shim's argparse parser makes of argv; "error" when it refuses it."""
    parser = argparse.ArgumentParser(prog="pcsystemd run-job", exit_on_error=False)
    parser.add_argument("--config")
    parser.add_argument("--jobs")
    parser.add_argument("--slow-start", action="store_true")
    parser.add_argument("job")
    try:
        args, unknown = parser.parse_known_args(argv)
    except (argparse.ArgumentError, SystemExit):
        return "error"
    if unknown:
        return "error"
    return args.job, args.config, args.jobs, args.slow_start


WORDS = st.sampled_from(
    ["--config", "--jobs", "--slow-start", "--config=/etc/x.yaml", "--jobs=/srv/jobs", "yak",
     "backup-db", "/etc/pc.yaml", "-", "--", "-x", "--conf", "--slow", "--jobs=", "a=b", "",
     "--slow-start=1", "--config=-q", "--help", "-h"]
)  # fmt: skip


@given(st.lists(WORDS, max_size=6))
@example(["yak"])
@example(["--config", "/etc/pc.yaml", "--jobs", "/srv/jobs", "--slow-start", "yak"])
@example(["yak", "--config=/a", "--config", "/b"])
@example(["--config", "-x", "yak"])
@example(["--conf", "/a", "yak"])
def test_plain_argument_reading_agrees_with_argparse(argv: list[str]) -> None:
    plain = shim._parse_plain_arguments(argv)
    if plain is not None:  # None: argparse reads it, so nothing can differ
        assert plain == argparse_reading(argv)


def test_the_units_own_argument_forms_never_need_argparse() -> None:
    forms = [
        ["yak"],
        ["--slow-start", "yak"],
        ["--config", "/etc/pc/pc.yaml", "--jobs", "/srv/jobs", "yak"],
        ["--config", "/etc/pc/pc.yaml", "yak"],
    ]
    for argv in forms:
        assert shim._parse_plain_arguments(argv) is not None, argv
    for argv in (["--help"], [], ["yak", "cow"], ["--config"], ["--slow", "yak"]):
        assert shim._parse_plain_arguments(argv) is None, argv


def test_argparse_still_answers_help_and_mistakes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        shim._parse_arguments(["--help"])
    assert stopped.value.code == 0
    assert "usage: pcsystemd run-job" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stopped:
        shim._parse_arguments(["yak", "cow"])
    assert stopped.value.code == 2
    assert "unrecognized arguments: cow" in capsys.readouterr().err


# --- log file time stamps --------------------------------------------------------------------


def strptime_epoch(stamp: str) -> float | None:
    try:
        return float(calendar.timegm(time.strptime(stamp, "%Y%m%d-%H%M%S")))
    except ValueError:
        return None


@given(
    st.tuples(
        st.integers(0, 9999),
        st.integers(0, 13),
        st.integers(0, 32),
        st.integers(0, 24),
        st.integers(0, 60),
        st.integers(0, 62),
    )
)
@example((2024, 2, 29, 23, 59, 60))  # a leap day and a leap second
@example((2023, 2, 29, 0, 0, 0))  # no such day
@example((0, 1, 1, 0, 0, 0))  # no year 0
@example((2024, 1, 1, 0, 0, 61))  # strptime's %S goes up to 61
@example((2024, 1, 1, 0, 0, 62))
def test_stamp_to_epoch_agrees_with_strptime(parts: tuple[int, ...]) -> None:
    year, month, day, hour, minute, second = parts
    stamp = f"{year:04d}{month:02d}{day:02d}-{hour:02d}{minute:02d}{second:02d}"
    assert _stamp_to_epoch(stamp) == strptime_epoch(stamp)


def regex_reading(slug: str, name: str) -> tuple[str, int] | None:
    """What the former parser, a regular expression, makes of a name (ASCII digits only:
    the names create_log_file makes)."""
    match = re.fullmatch(re.escape(slug) + r"-(\d{8}-\d{6})(?:-(\d+))?\.log", name, re.ASCII)
    return None if match is None else (match[1], int(match[2] or 0))


@given(
    st.sampled_from(["demo", "a", "a-b", "x.y"]),
    st.lists(
        st.sampled_from(["demo", "a", "-", "b", "2", "0", "9", ".log", ".", "x"]), max_size=12
    ),
)
@example("demo", ["demo", "-", "2025", "0131", "-", "1200", "00", ".log"])
@example("demo", ["demo", "-", "2025", "0131", "-", "1200", "00", "-", "12", ".log"])
@example("a", ["a", "-", "b", "-", "2025", "0131", "-", "1200", "00", ".log"])
def test_log_file_names_are_read_as_the_regular_expression_did(
    slug: str, pieces: list[str]
) -> None:
    name = "".join(pieces)
    assert parse_log_file_name(slug, name) == regex_reading(slug, name)


@given(st.lists(st.text(max_size=12), max_size=4))
@example(["", "a b", "it's", "$HOME", "%n", "plain-word_1.2:3,4@5%6+7=8/9"])
def test_shell_join_agrees_with_shlex(argv: list[str]) -> None:
    assert spawn.shell_join(argv) == shlex.join(argv)


def test_log_file_names_with_non_ascii_digits_are_not_ours() -> None:
    assert parse_log_file_name("demo", "demo-２０２５0131-120000.log") is None
    assert parse_log_file_name("demo", "demo-20250131-120000.log") == ("20250131-120000", 0)


# --- schedules -------------------------------------------------------------------------------


def test_a_cached_schedule_is_still_checked_every_time() -> None:
    first = compile_schedule("*/15 9-17 * * mon-fri")
    assert compile_schedule("*/15 9-17 * * mon-fri") == first
    zoned = compile_schedule("*/15 9-17 * * mon-fri", "Europe/Berlin")
    assert zoned.on_calendar == tuple(f"{line} Europe/Berlin" for line in first.on_calendar)
    for _ in range(2):  # errors are never cached away
        with pytest.raises(ScheduleError, match="unknown time zone"):
            compile_schedule("*/15 9-17 * * mon-fri", "Mars/Olympus_Mons")
        with pytest.raises(ScheduleError):
            compile_schedule("61 * * * *")


# --- unit directories ------------------------------------------------------------------------

PATHS = st.lists(st.sampled_from(["", "/", "//", ".", "..", "var", "log", "lib", "pc"]), max_size=5)


@given(PATHS, st.sampled_from(["x", "log", "lib", "a-b", "x.lock"]))
@example(["/var/log"], "log")
@example(["//var/log"], "x")
@example(["."], "x")
def test_directory_arithmetic_agrees_with_pathlib(parts: list[str], slug: str) -> None:
    directory = Path("/".join(parts)) if parts else Path()
    assert _child(directory, slug) == str(PurePosixPath(directory) / slug)
    for base in ("/var/log", "/var/lib"):
        try:
            expected: str | None = str((PurePosixPath(directory) / slug).relative_to(base))
        except ValueError:
            expected = None
        assert _managed_directory(directory, base, slug) == expected
