"""Cron parsing, OnCalendar= output and every schedule error with its exact column.

Whether the emitted lines fire at cron's minutes is proven against systemd itself in
tests/integration/test_calendar_proof.py; these tests pin the parser and the readable output.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from pcsystemd.model import Schedule
from pcsystemd.schedule import (
    CronExpression,
    ScheduleError,
    compile_schedule,
    next_fire_times,
    parse_cron,
)

EVERY_MINUTE = frozenset(range(60))
EVERY_HOUR = frozenset(range(24))
EVERY_DAY = frozenset(range(1, 32))
EVERY_MONTH = frozenset(range(1, 13))
EVERY_WEEKDAY = frozenset(range(7))


def test_every_minute() -> None:
    assert parse_cron("* * * * *") == CronExpression(
        expression="* * * * *",
        minutes=EVERY_MINUTE,
        hours=EVERY_HOUR,
        days_of_month=EVERY_DAY,
        months=EVERY_MONTH,
        days_of_week=EVERY_WEEKDAY,
        day_of_month_restricted=False,
        day_of_week_restricted=False,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5", {5}),
        ("05", {5}),
        ("1-4", {1, 2, 3, 4}),
        ("7-7", {7}),  # an equal range is its one value (croniter reads it as every value)
        ("1,5,1", {1, 5}),
        ("*/15", {0, 15, 30, 45}),
        ("*/45", {0, 45}),
        ("*/100", {0}),  # a step past the end leaves the first value, as in cron
        ("10-20/4", {10, 14, 18}),
        ("58-59,0-1", {58, 59, 0, 1}),
        ("*/30,7", {0, 7, 30}),
    ],
)
def test_minute_field(text: str, expected: set[int]) -> None:
    assert parse_cron(f"{text} * * * *").minutes == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("jan", {1}),
        ("DEC", {12}),
        ("Mar-May", {3, 4, 5}),
        ("jan-dec/3", {1, 4, 7, 10}),
        ("feb,8,oct", {2, 8, 10}),
        ("jun-9", {6, 7, 8, 9}),
        ("*/2", {1, 3, 5, 7, 9, 11}),
    ],
)
def test_month_field(text: str, expected: set[int]) -> None:
    assert parse_cron(f"0 0 * {text} *").months == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", {0}),
        ("7", {0}),  # 7 is Sunday too
        ("0,7", {0}),
        ("5-7", {5, 6, 0}),
        ("sun", {0}),
        ("Mon-FRI", {1, 2, 3, 4, 5}),
        ("sat-7", {6, 0}),
        ("*/2", {0, 2, 4, 6}),
        ("*/3", {0, 3, 6}),
        ("1-7/2", {1, 3, 5, 0}),
        ("0-7/7", {0}),
        ("sun-sun", {0}),
    ],
)
def test_day_of_week_field(text: str, expected: set[int]) -> None:
    assert parse_cron(f"0 0 * * {text}").days_of_week == expected


@pytest.mark.parametrize(
    ("expression", "dom_restricted", "dow_restricted"),
    [
        ("0 0 * * *", False, False),
        ("0 0 1 * *", True, False),
        ("0 0 * * 1", False, True),
        ("0 0 1 * 1", True, True),
        # Vixie looks at the first character only: '*/2' and '*,5' count as unrestricted.
        ("0 0 */2 * 1", False, True),
        ("0 0 1 * */2", True, False),
        ("0 0 *,5 * 1", False, True),
        # ...and a field that covers everything without starting with '*' is restricted.
        ("0 0 1-31 * 1", True, True),
        ("0 0 1 * 0-7", True, True),
    ],
)
def test_restricted_day_fields_follow_vixie(
    expression: str, dom_restricted: bool, dow_restricted: bool
) -> None:
    cron = parse_cron(expression)
    assert (cron.day_of_month_restricted, cron.day_of_week_restricted) == (
        dom_restricted,
        dow_restricted,
    )
    assert cron.days_either == (dom_restricted and dow_restricted)


def test_fields_may_be_separated_by_tabs_and_runs_of_spaces() -> None:
    assert parse_cron(" 30\t12  1 *\t* ").hours == {12}


@pytest.mark.parametrize(
    ("expression", "lines"),
    [
        ("30 12 * * *", ("*-*-* 12:30:00",)),
        ("0 * * * *", ("*-*-* *:00:00",)),
        ("* * * * *", ("*-*-* *:*:00",)),
        ("*/15 9-17 * * mon-fri", ("Mon..Fri *-*-* 09..17:00,15,30,45:00",)),
        ("0,1 0,1,2,5 * * *", ("*-*-* 00..02,05:00,01:00",)),
        ("0 0 1 jan *", ("*-01-01 00:00:00",)),
        ("0 0 * jan-mar,dec *", ("*-01..03,12-* 00:00:00",)),
        ("0 0 29 2 *", ("*-02-29 00:00:00",)),
        ("0 0 * * 0", ("Sun *-*-* 00:00:00",)),
        ("0 0 * * 5-7", ("Fri..Sun *-*-* 00:00:00",)),
        ("0 0 * * sat,sun,mon", ("Mon,Sat,Sun *-*-* 00:00:00",)),
        ("0 0 * * 0-6", ("*-*-* 00:00:00",)),
        # Both day fields restricted: either matches, so two lines whose union cron fires at.
        ("0 0 1,15 * 1", ("*-*-01,15 00:00:00", "Mon *-*-* 00:00:00")),
        ("30 8 1-7 6 mon", ("*-06-01..07 08:30:00", "Mon *-06-* 08:30:00")),
        # One of them covers every day: so does their union.
        ("0 0 1-31 * 1", ("*-*-* 00:00:00",)),
        ("0 0 15 * 0-7", ("*-*-* 00:00:00",)),
        # Feb 30 cannot happen; the Mondays of February remain.
        ("0 0 30 2 mon", ("Mon *-02-* 00:00:00",)),
        # A leading '*' keeps the AND rule: one line with both restrictions.
        ("0 0 */2 * 1", ("Mon *-*-01,03,05,07,09,11,13,15,17,19,21,23,25,27,29,31 00:00:00",)),
        ("0 0 1 * */2", ("Tue,Thu,Sat,Sun *-*-01 00:00:00",)),
    ],
)
def test_on_calendar_lines(expression: str, lines: tuple[str, ...]) -> None:
    assert compile_schedule(expression) == Schedule(expression, lines)


@pytest.mark.parametrize(
    "spellings",
    [
        ("0 0 * * 0", "0 0 * * 7", "0 0 * * sun", "0 0 * * SUN", "0 0 * * 0,7"),
        ("*/20 * * * *", "0,20,40 * * * *", "0-59/20 * * * *", "40,0,20 * * * *"),
        ("0 0 * 1-3 *", "0 0 * jan-mar *", "0 0 * 1,2,3 *"),
    ],
)
def test_equivalent_spellings_compile_to_the_same_lines(spellings: tuple[str, ...]) -> None:
    assert len({compile_schedule(expression).on_calendar for expression in spellings}) == 1


def test_timezone_is_appended_to_every_line() -> None:
    schedule = compile_schedule("0 3 1 * 1", "Europe/Berlin")
    assert schedule.on_calendar == (
        "*-*-01 03:00:00 Europe/Berlin",
        "Mon *-*-* 03:00:00 Europe/Berlin",
    )
    assert compile_schedule("0 3 * * *", "UTC").on_calendar == ("*-*-* 03:00:00 UTC",)


@pytest.mark.parametrize(
    ("timezone", "message"),
    [
        ("Mars/Olympus_Mons", "unknown time zone 'Mars/Olympus_Mons'"),
        ("Europe", "unknown time zone 'Europe'"),  # a directory
        ("leapseconds", "unknown time zone 'leapseconds'"),  # a tzdata file, not a zone
        ("../../etc/passwd", "'../../etc/passwd' is not a time zone name"),
        ("Europe/Berlin ", "'Europe/Berlin ' is not a time zone name"),
        ("", "'' is not a time zone name"),
    ],
)
def test_bad_timezones(timezone: str, message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        compile_schedule("0 3 * * *", timezone)
    hint = (
        "use a name from tzdata such as 'Europe/Berlin' or 'UTC' (see timedatectl list-timezones)"
    )
    assert caught.value.message == f"{message}; {hint}"
    assert caught.value.column == 0


ERRORS = [
    # (expression, column, message)
    (
        "",
        0,
        "the schedule is empty; write the five fields minute hour day-of-month month "
        "day-of-week, e.g. '30 12 * * *'",
    ),
    (
        "   ",
        0,
        "the schedule is empty; write the five fields minute hour day-of-month month "
        "day-of-week, e.g. '30 12 * * *'",
    ),
    ("@daily", 0, "'@daily' aliases are not allowed; write the five fields, e.g. '0 0 * * *'"),
    ("@HOURLY", 0, "'@HOURLY' aliases are not allowed; write the five fields, e.g. '0 * * * *'"),
    ("  @weekly", 2, "'@weekly' aliases are not allowed; write the five fields, e.g. '0 0 * * 0'"),
    ("@yearly", 0, "'@yearly' aliases are not allowed; write the five fields, e.g. '0 0 1 1 *'"),
    (
        "@reboot",
        0,
        "'@reboot' is not a calendar schedule; write the five fields, or start the job from a "
        "unit ordered after boot",
    ),
    (
        "@every 5m",
        0,
        "'@every' is not a cron field; write the five fields minute hour day-of-month month "
        "day-of-week, e.g. '30 12 * * *'",
    ),
    (
        "0 0 * * * *",
        10,
        "the schedule has 6 fields but cron takes five (minute hour day-of-month month "
        "day-of-week); remove '*' and what follows — there is no seconds or year field, and the "
        "command belongs under 'command'",
    ),
    (
        "30 12 * * * /bin/true --now",
        12,
        "the schedule has 7 fields but cron takes five (minute hour day-of-month month "
        "day-of-week); remove '/bin/true' and what follows — there is no seconds or year field, "
        "and the command belongs under 'command'",
    ),
    (
        "0 0 *",
        5,
        "the schedule has 3 fields but cron takes five (minute hour day-of-month month "
        "day-of-week); add the missing month and day-of-week, e.g. '30 12 * * *'",
    ),
    (
        "0",
        1,
        "the schedule has 1 field but cron takes five (minute hour day-of-month month "
        "day-of-week); add the missing hour, day-of-month, month and day-of-week, "
        "e.g. '30 12 * * *'",
    ),
    (
        "0 0\t* *  ",
        7,
        "the schedule has 4 fields but cron takes five (minute hour day-of-month month "
        "day-of-week); add the missing day-of-week, e.g. '30 12 * * *'",
    ),
    (
        "0 0 L * *",
        4,
        "'L' (the last day of the month) is not supported by Vixie cron; list the days "
        "explicitly, e.g. '28-31', and let the command check the date",
    ),
    (
        "0 0 LW * *",
        4,
        "'L' (the last day of the month) is not supported by Vixie cron; list the days "
        "explicitly, e.g. '28-31', and let the command check the date",
    ),
    (
        "0 0 15W * *",
        6,
        "'W' (the nearest weekday) is not supported by Vixie cron; list the days explicitly "
        "instead",
    ),
    (
        "0 0 * * 5L",
        9,
        "'L' (the last such weekday of the month) is not supported by Vixie cron; schedule the "
        "weekday alone and let the command check the date",
    ),
    (
        "0 0 * * 1#2",
        9,
        "'#' (the nth weekday of the month) is not supported by Vixie cron; schedule the weekday "
        "alone and let the command check the date",
    ),
    ("0 0 ? * *", 4, "'?' is Quartz syntax, not Vixie cron; write '*' for 'any'"),
    ("0 0 * * ?", 8, "'?' is Quartz syntax, not Vixie cron; write '*' for 'any'"),
    ("60 * * * *", 0, "minute 60 is out of range; use 0-59"),
    ("* 24 * * *", 2, "hour 24 is out of range; use 0-23"),
    ("0 0 0 * *", 4, "day-of-month 0 is out of range; use 1-31"),
    ("0 0 1,32 * *", 6, "day-of-month 32 is out of range; use 1-31"),
    ("0 0 * 0 *", 6, "month 0 is out of range; use 1-12 or jan..dec"),
    ("0 0 * 1-13 *", 8, "month 13 is out of range; use 1-12 or jan..dec"),
    ("0 0 * * 8", 8, "day-of-week 8 is out of range; use 0-7 (0 and 7 are Sunday) or sun..sat"),
    ("99999999999999 * * * *", 0, "minute 99999999999999 is out of range; use 0-59"),
    (
        "* 22-2 * * *",
        2,
        "the range '22-2' runs backwards; cron ranges go upwards: write '22-23,0-2'",
    ),
    (
        "0 0 * nov-feb *",
        6,
        "the range 'nov-feb' runs backwards; cron ranges go upwards: write '11-12,1-2'",
    ),
    ("* * * * sat-sun", 8, "the range 'sat-sun' runs backwards; Sunday is also 7: write '6-7'"),
    (
        "* * * * fri-mon",
        8,
        "the range 'fri-mon' runs backwards; cron ranges go upwards: write '5-6,0-1'",
    ),
    (
        "0 1,22-4/2 * * *",
        4,
        "the range '22-4' runs backwards; cron ranges go upwards: write '22-23/2,0-4/2'",
    ),
    ("*/0 * * * *", 2, "a step of 0 never advances; use a step of 1 or more, e.g. '*/5'"),
    ("0-30/00 * * * *", 5, "a step of 0 never advances; use a step of 1 or more, e.g. '0-30/5'"),
    ("5/10 * * * *", 0, "a step needs a range or '*': '5/10' is not cron syntax; write '5-59/10'"),
    (
        "0 0 * * 1,mon/2",
        10,
        "a step needs a range or '*': 'mon/2' is not cron syntax; write 'mon-7/2'",
    ),
    ("*/ * * * *", 1, "'/' must be followed by a step size in the minute field; write e.g. '*/5'"),
    ("*/x * * * *", 2, "'/' must be followed by a step size in the minute field; write e.g. '*/5'"),
    (
        "*/5/2 * * * *",
        3,
        "unexpected '/' in the minute field; write numbers, ranges 'a-b', lists 'a,b' and steps "
        "'*/n' or 'a-b/n'",
    ),
    ("1,,2 * * * *", 2, "empty item in the minute list '1,,2'; remove the extra ','"),
    ("1, * * * *", 1, "empty item in the minute list '1,'; remove the extra ','"),
    (",1 * * * *", 0, "empty item in the minute list ',1'; remove the extra ','"),
    ("0 0 1,,15 * *", 6, "empty item in the day-of-month list '1,,15'; remove the extra ','"),
    ("* * * foo *", 6, "unknown month name 'foo'; use 1-12 or the three-letter names jan..dec"),
    (
        "* * * january *",
        6,
        "unknown month name 'january'; use 1-12 or the three-letter names jan..dec",
    ),
    (
        "* * * * mon-sunday",
        12,
        "unknown weekday name 'sunday'; use 0-7 or the three-letter names sun..sat",
    ),
    ("* jan * * *", 2, "'jan' is not a number; the hour field takes numbers in 0-23"),
    ("5x * * * *", 0, "'5x' is not a number; the minute field takes numbers in 0-59"),
    (
        "0\u00a00 * * *",
        1,
        "unexpected character U+00A0 (NO-BREAK SPACE) in the schedule; cron fields are plain "
        "ASCII separated by spaces",
    ),
    (
        "0 0\n* * *",
        3,
        "control character U+000A in the schedule; write the five fields on one line, "
        "separated by spaces",
    ),
    (
        "0 0 * * 1\x00",
        9,
        "control character U+0000 in the schedule; write the five fields on one line, "
        "separated by spaces",
    ),
    (
        "*-5 * * * *",
        0,
        "'*' already means every minute and cannot start a range; write a range like '0-5' instead",
    ),
    ("5- * * * *", 1, "the range '5-' has no end; write both ends, e.g. '5-59'"),
    (
        "1-2-3 * * * *",
        3,
        "unexpected '-' in the minute field; write numbers, ranges 'a-b', lists 'a,b' and steps "
        "'*/n' or 'a-b/n'",
    ),
    ("-1 * * * *", 0, "expected a number in the minute field but found '-'; write a value in 0-59"),
    (
        "0 0 * * 1;",
        9,
        "unexpected character ';' in the day-of-week field; write numbers, ranges 'a-b', lists "
        "'a,b' and steps '*/n' or 'a-b/n'",
    ),
    (
        "0 0 */2,% * *",
        8,
        "unexpected character '%' in the day-of-month field; write numbers, ranges 'a-b', lists "
        "'a,b' and steps '*/n' or 'a-b/n'",
    ),
    (
        "0 0 30 2 *",
        4,
        "this schedule can never run: day 30 never occurs in February; choose days that exist "
        "in that month (February has 29 days in leap years)",
    ),
    (
        "0 0 31 4,6,9,11 *",
        4,
        "this schedule can never run: day 31 never occurs in April, June, September or "
        "November; choose days that exist in those months",
    ),
    (
        "0 0  30,31 feb *",
        5,
        "this schedule can never run: days 30 and 31 never occur in February; choose days that "
        "exist in that month (February has 29 days in leap years)",
    ),
    # The weekday field starts with '*', so cron ANDs the day fields: still never.
    (
        "0 0 30 2 */2",
        4,
        "this schedule can never run: day 30 never occurs in February; choose days that exist "
        "in that month (February has 29 days in leap years)",
    ),
]


@pytest.mark.parametrize(("expression", "column", "message"), ERRORS, ids=repr)
def test_error_message_and_column(expression: str, column: int, message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        compile_schedule(expression)
    assert (caught.value.column, caught.value.message) == (column, message)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "expression",
    [
        "0 0 29 2 *",  # leap years only, as in cron and systemd
        "0 0 31 4,6,9,11,12 *",  # December has a 31st
        "0 0 29,30 2 *",  # the 29th is enough
        "0 0 30 2 1",  # both restricted: every Monday of February
        "*/100 * * * *",  # cron accepts a step past the end
        "0 0 * * 0-7",
    ],
)
def test_valid_edge_cases(expression: str) -> None:
    assert compile_schedule(expression).on_calendar


def test_next_fire_times_unites_and_deduplicates() -> None:
    after = datetime(2027, 1, 1, 11, 59, 30)
    times = next_fire_times(["0 12 * * *", "0 12,18 * * *", "0 0 2 1 *"], after, 5)
    assert times == [
        datetime(2027, 1, 1, 12, 0),
        datetime(2027, 1, 1, 18, 0),
        datetime(2027, 1, 2, 0, 0),
        datetime(2027, 1, 2, 12, 0),
        datetime(2027, 1, 2, 18, 0),
    ]


def test_next_fire_times_is_strictly_after() -> None:
    after = datetime(2027, 1, 1, 12, 0)
    assert next_fire_times(["0 12 * * *"], after, 1) == [datetime(2027, 1, 2, 12, 0)]


def test_next_fire_times_follows_vixie_day_rules() -> None:
    after = datetime(2027, 1, 1)  # a Friday
    # Both restricted: the 15th OR Mondays.
    assert next_fire_times(["0 0 15 * 1"], after, 3) == [
        datetime(2027, 1, 4),
        datetime(2027, 1, 11),
        datetime(2027, 1, 15),
    ]
    # '*/2' starts with '*': odd days AND Mondays.
    assert next_fire_times(["0 0 */2 * 1"], after, 2) == [
        datetime(2027, 1, 11),
        datetime(2027, 1, 25),
    ]
    assert next_fire_times(["0 12 29 2 *"], after, 2) == [
        datetime(2028, 2, 29, 12, 0),
        datetime(2032, 2, 29, 12, 0),
    ]


def test_next_fire_times_edge_arguments() -> None:
    after = datetime(2027, 1, 1)
    assert next_fire_times([], after, 5) == []
    assert next_fire_times(["* * * * *"], after, 0) == []
    with pytest.raises(ScheduleError):
        next_fire_times(["0 0 * * *", "@daily"], after, 1)


def test_next_fire_times_in_a_zone_skips_missing_and_doubled_local_times() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 02:30 does not exist on 2027-03-28 and happens twice on 2027-10-31 (taken once, the first).
    spring = next_fire_times(["30 2 * * *"], datetime(2027, 3, 27, 3, 0, tzinfo=berlin), 2)
    assert [time.astimezone(UTC) for time in spring] == [
        datetime(2027, 3, 29, 0, 30, tzinfo=UTC),
        datetime(2027, 3, 30, 0, 30, tzinfo=UTC),
    ]
    autumn = next_fire_times(["30 2 * * *"], datetime(2027, 10, 30, 3, 0, tzinfo=berlin), 2)
    assert [time.astimezone(UTC) for time in autumn] == [
        datetime(2027, 10, 31, 0, 30, tzinfo=UTC),
        datetime(2027, 11, 1, 1, 30, tzinfo=UTC),
    ]
