"""Five-field Vixie cron expressions → systemd `OnCalendar=` lines that fire at the same minutes.

The grammar and the day rule follow Vixie/ISC cron's `entry.c` and `cron.c` exactly (crontab(5)):
a field is a comma list of `*`, `n`, `a-b`, `*/s` or `a-b/s`; months and weekdays may be named;
0 and 7 are both Sunday. When BOTH day fields are restricted a day matches if EITHER does, and
cron calls a field "unrestricted" when its text starts with `*` — so `*/2` in the day-of-month
field keeps the AND rule. systemd ANDs all fields of one calendar expression, so the OR rule
becomes two `OnCalendar=` lines whose union is exactly cron's set of minutes.

croniter (a dependency, for other reasons) departs from Vixie in two ways, so nothing here relies
on it: it ORs the day fields whenever neither expands to every value (so `0 0 */2 * 1` runs on
odd days OR Mondays, where cron runs on odd Mondays), and it reads an equal range such as `10-10`
as the whole field (cron: just 10). The calendar proof tests compare against both.

Importing this module must stay cheap: the runtime shim reaches it through jobbuild when it
reads a job file itself (no current run spec in the unit).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path

from pcsystemd.model import Schedule

ZONEINFO_DIRECTORY = Path("/usr/share/zoneinfo")

_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MONTH_FULL_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
# February counts 29 days: cron and systemd both fire on Feb 29 in leap years.
_LONGEST_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# systemd writes weekdays Monday first; index = cron weekday (0 = Sunday).
_SYSTEMD_WEEKDAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELD_TEXT = re.compile(r"[^ \t]+")
_TIMEZONE_PATTERN = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")
_FIVE_FIELDS = "minute hour day-of-month month day-of-week"
_SEARCH_LIMIT_DAYS = 400 * 366  # every valid expression fires within one 400-year Gregorian cycle


class ScheduleError(ValueError):
    """A cron expression pcsystemd cannot schedule; `column`: 0-based offset of the culprit."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


@dataclass(frozen=True)
class _Field:
    """One of cron's five fields: its name in messages, its value range and its names, if any."""

    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] stands for low + i

    @property
    def span(self) -> str:
        return f"{self.low}-{self.high}"


_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DAY_OF_MONTH = _Field("day-of-month", 1, 31)
_MONTH = _Field("month", 1, 12, _MONTH_NAMES)
_DAY_OF_WEEK = _Field("day-of-week", 0, 7, _WEEKDAY_NAMES)  # 7 is Sunday again
_FIELDS = (_MINUTE, _HOUR, _DAY_OF_MONTH, _MONTH, _DAY_OF_WEEK)


@dataclass(frozen=True)
class CronExpression:
    """A parsed five-field cron expression: the values each field allows (weekday 0 = Sunday)."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]
    # Vixie's DOM_STAR/DOW_STAR, inverted: the field's text does not start with '*'.
    day_of_month_restricted: bool
    day_of_week_restricted: bool

    @property
    def days_either(self) -> bool:
        """Whether a day matches when EITHER day field does (both fields are restricted)."""
        return self.day_of_month_restricted and self.day_of_week_restricted

    def matches_day(self, day: date) -> bool:
        """Whether cron would consider running on `day` at all."""
        if day.month not in self.months:
            return False
        by_month_day = day.day in self.days_of_month
        by_weekday = day.isoweekday() % 7 in self.days_of_week
        if self.days_either:
            return by_month_day or by_weekday
        return by_month_day and by_weekday


def parse_cron(expression: str) -> CronExpression:
    """Parse a five-field Vixie cron expression; raise ScheduleError for anything cron rejects."""
    for index, character in enumerate(expression):
        if character not in " \t" and unicodedata.category(character).startswith("C"):
            raise ScheduleError(
                f"control character {_describe(character)} in the schedule; "
                "write the five fields on one line, separated by spaces",
                index,
            )
        if not character.isascii():
            # Often a no-break space pasted from a web page: it would merge two fields.
            raise ScheduleError(
                f"unexpected character {_describe(character)} in the schedule; cron fields are "
                "plain ASCII separated by spaces",
                index,
            )
    tokens = [(match.start(), match.group()) for match in _FIELD_TEXT.finditer(expression)]
    if not tokens:
        raise ScheduleError(
            f"the schedule is empty; write the five fields {_FIVE_FIELDS}, e.g. '30 12 * * *'", 0
        )
    first_offset, first_token = tokens[0]
    if first_token.startswith("@"):
        raise _alias_error(first_token, first_offset)
    if len(tokens) > len(_FIELDS):
        extra_offset, extra_token = tokens[len(_FIELDS)]
        raise ScheduleError(
            f"the schedule has {len(tokens)} fields but cron takes five ({_FIVE_FIELDS}); "
            f"remove '{extra_token}' and what follows — there is no seconds or year field, "
            "and the command belongs under 'command'",
            extra_offset,
        )
    if len(tokens) < len(_FIELDS):
        missing = _join((field.name for field in _FIELDS[len(tokens) :]), "and")
        raise ScheduleError(
            f"the schedule has {len(tokens)} field{'s' if len(tokens) != 1 else ''} but cron "
            f"takes five ({_FIVE_FIELDS}); add the missing {missing}, e.g. '30 12 * * *'",
            len(expression.rstrip(" \t")),
        )
    values = [
        _parse_field(text, offset, field)
        for (offset, text), field in zip(tokens, _FIELDS, strict=True)
    ]
    days_of_week = values[4]
    if 7 in days_of_week:
        days_of_week = (days_of_week - {7}) | {0}
    cron = CronExpression(
        expression=expression,
        minutes=values[0],
        hours=values[1],
        days_of_month=values[2],
        months=values[3],
        days_of_week=days_of_week,
        day_of_month_restricted=not tokens[2][1].startswith("*"),
        day_of_week_restricted=not tokens[4][1].startswith("*"),
    )
    # With the OR rule the weekdays alone make it fire; otherwise the month days must exist.
    if not cron.days_either and not _possible_days(cron):
        raise ScheduleError(_never_message(cron), tokens[2][0])
    return cron


def compile_schedule(expression: str, timezone: str | None = None) -> Schedule:
    """Translate a cron expression into OnCalendar= lines that fire at exactly cron's minutes."""
    lines = _compiled_lines(expression)
    suffix = ""
    if timezone is not None:
        _check_timezone(timezone)  # not cached: it asks tzdata, on the file system
        suffix = f" {timezone}"
    return Schedule(expression, tuple(line + suffix for line in lines))


@lru_cache(maxsize=1024)
def _compiled_lines(expression: str) -> tuple[str, ...]:
    """The OnCalendar= lines of an expression, worked out once: many jobs share a schedule.

    Pure (a ScheduleError is raised again on every call, as exceptions are not cached).
    """
    return tuple(_calendar_lines(parse_cron(expression)))


def next_fire_times(expressions: Sequence[str], after: datetime, count: int) -> list[datetime]:
    """The next `count` minutes strictly after `after` at which any of the expressions fires.

    Times are wall-clock times in `after`'s time zone (naive in, naive out). A time that does not
    exist there (skipped by a DST change) is left out; an ambiguous one is taken once, at its first
    occurrence, as systemd does. Computed from the parsed fields rather than with croniter, which
    departs from Vixie cron (see the module docstring).
    """
    crons = [parse_cron(expression) for expression in expressions]
    if not crons or count <= 0:
        return []
    result: list[datetime] = []
    start = after.replace(tzinfo=None)
    for day in _days_from(start.date()):
        minutes: set[tuple[int, int]] = set()
        for cron in crons:
            if cron.matches_day(day):
                minutes.update((hour, minute) for hour in cron.hours for minute in cron.minutes)
        for hour, minute in sorted(minutes):
            candidate = _aware(datetime.combine(day, time(hour, minute)), after)
            if candidate is not None and candidate > after:
                result.append(candidate)
                if len(result) == count:
                    return result
    return result


def _parse_field(text: str, offset: int, field: _Field) -> frozenset[int]:
    values: set[int] = set()
    item_start = 0
    items = text.split(",")
    for index, item in enumerate(items):
        if not item:
            # Point at a comma: the one before a trailing empty item, else the one that ends it.
            column = offset + item_start - (1 if index == len(items) - 1 else 0)
            raise ScheduleError(
                f"empty item in the {field.name} list '{text}'; remove the extra ','", column
            )
        values.update(_parse_item(item, offset + item_start, field))
        item_start += len(item) + 1
    return frozenset(values)


def _parse_item(item: str, offset: int, field: _Field) -> Iterable[int]:
    """One list item: `*`, `n`, `a-b`, `*/s` or `a-b/s` (Vixie's get_range)."""
    _check_characters(item, offset, field)
    position = 0
    single = False
    if item[0] == "*":
        first, last = field.low, field.high
        position = 1
        if position < len(item) and item[position] == "-":
            raise ScheduleError(
                f"'*' already means every {field.name} and cannot start a range; "
                f"write a range like '{field.low}-{field.low + 5}' instead",
                offset,
            )
    else:
        first, position = _parse_value(item, position, offset, field)
        if position < len(item) and item[position] == "-":
            if position + 1 == len(item):
                raise ScheduleError(
                    f"the range '{item}' has no end; write both ends, e.g. '{item}{field.high}'",
                    offset + position,
                )
            last, position = _parse_value(item, position + 1, offset, field)
            if first > last:
                raise ScheduleError(_reversed_message(item, first, last, field), offset)
        else:
            last, single = first, True
    step = 1
    if position < len(item) and item[position] == "/":
        slash = position
        if single:
            start = item[:slash]
            raise ScheduleError(
                f"a step needs a range or '*': '{item}' is not cron syntax; "
                f"write '{start}-{field.high}{item[slash:]}'",
                offset,
            )
        digits = _digit_run(item, slash + 1)
        if not digits:
            raise ScheduleError(
                f"'/' must be followed by a step size in the {field.name} field; "
                f"write e.g. '{item[:slash]}/5'",
                offset + slash + 1 if slash + 1 < len(item) else offset + slash,
            )
        step = _bounded_int(digits, field.high + 1)  # any huge step leaves the first value
        if step == 0:
            raise ScheduleError(
                f"a step of 0 never advances; use a step of 1 or more, e.g. '{item[:slash]}/5'",
                offset + slash + 1,
            )
        position = slash + 1 + len(digits)
    if position < len(item):
        raise ScheduleError(
            f"unexpected '{item[position]}' in the {field.name} field; write numbers, ranges "
            "'a-b', lists 'a,b' and steps '*/n' or 'a-b/n'",
            offset + position,
        )
    return range(first, last + 1, step)


def _parse_value(item: str, position: int, offset: int, field: _Field) -> tuple[int, int]:
    """A number or a name at `position`; returns its value and the position after it."""
    digits = _digit_run(item, position)
    if digits:
        end = position + len(digits)
        letters = _letter_run(item, end)
        if letters:
            raise _letters_error(digits + letters, offset + position, field)
        value = _bounded_int(digits, field.high + 1)
        if not field.low <= value <= field.high:
            raise ScheduleError(_out_of_range_message(digits, field), offset + position)
        return value, end
    letters = _letter_run(item, position)
    if letters:
        if letters.lower() in field.names:
            return field.low + field.names.index(letters.lower()), position + len(letters)
        raise _letters_error(letters, offset + position, field)
    # Callers only ask at a position inside the item, so there is a character to name.
    raise ScheduleError(
        f"expected a number in the {field.name} field but found '{item[position]}'; "
        f"write a value in {field.span}",
        offset + position,
    )


def _check_characters(item: str, offset: int, field: _Field) -> None:
    """Reject characters that are not cron syntax, naming the dialect they come from."""
    for index, character in enumerate(item):
        if character.isascii() and (character.isalnum() or character in "*-/"):
            continue
        column = offset + index
        if character == "?":
            raise ScheduleError("'?' is Quartz syntax, not Vixie cron; write '*' for 'any'", column)
        if character == "#":
            raise ScheduleError(
                "'#' (the nth weekday of the month) is not supported by Vixie cron; schedule "
                "the weekday alone and let the command check the date",
                column,
            )
        raise ScheduleError(
            f"unexpected character {_describe(character)} in the {field.name} field; write "
            "numbers, ranges 'a-b', lists 'a,b' and steps '*/n' or 'a-b/n'",
            column,
        )


def _letters_error(word: str, column: int, field: _Field) -> ScheduleError:
    """Explain letters that are not a month or weekday name (often Quartz's `L` or `W`)."""
    suffix = word.lstrip("0123456789").upper()
    if suffix in ("L", "LW") and field is _DAY_OF_MONTH:
        return ScheduleError(
            "'L' (the last day of the month) is not supported by Vixie cron; list the days "
            "explicitly, e.g. '28-31', and let the command check the date",
            column + len(word) - len(suffix),
        )
    if suffix == "L" and field is _DAY_OF_WEEK:
        return ScheduleError(
            "'L' (the last such weekday of the month) is not supported by Vixie cron; schedule "
            "the weekday alone and let the command check the date",
            column + len(word) - len(suffix),
        )
    if suffix == "W" and field is _DAY_OF_MONTH:
        return ScheduleError(
            "'W' (the nearest weekday) is not supported by Vixie cron; "
            "list the days explicitly instead",
            column + len(word) - len(suffix),
        )
    if not field.names:
        return ScheduleError(
            f"'{word}' is not a number; the {field.name} field takes numbers in {field.span}",
            column,
        )
    kind = "month" if field is _MONTH else "weekday"
    return ScheduleError(
        f"unknown {kind} name '{word}'; use {field.span} or the three-letter names "
        f"{field.names[0]}..{field.names[-1]}",
        column,
    )


def _out_of_range_message(digits: str, field: _Field) -> str:
    message = f"{field.name} {digits} is out of range; use {field.span}"
    if field is _DAY_OF_WEEK:
        message += " (0 and 7 are Sunday) or sun..sat"
    elif field is _MONTH:
        message += " or jan..dec"
    return message


def _reversed_message(item: str, first: int, last: int, field: _Field) -> str:
    text = item.split("/")[0]
    step = item[len(text) :]
    if field is _DAY_OF_WEEK and last == 0:
        return f"the range '{text}' runs backwards; Sunday is also 7: write '{first}-7{step}'"
    # Wrapping around is what such a range usually means: 22-2 is 22-23,0-2.
    high = 6 if field is _DAY_OF_WEEK else field.high
    return (
        f"the range '{text}' runs backwards; cron ranges go upwards: "
        f"write '{first}-{high}{step},{field.low}-{last}{step}'"
    )


def _alias_error(token: str, column: int) -> ScheduleError:
    alias = token.lower()
    if alias in _ALIASES:
        return ScheduleError(
            f"'{token}' aliases are not allowed; write the five fields, e.g. '{_ALIASES[alias]}'",
            column,
        )
    if alias == "@reboot":
        return ScheduleError(
            "'@reboot' is not a calendar schedule; write the five fields, "
            "or start the job from a unit ordered after boot",
            column,
        )
    return ScheduleError(
        f"'{token}' is not a cron field; write the five fields {_FIVE_FIELDS}, e.g. '30 12 * * *'",
        column,
    )


def _never_message(cron: CronExpression) -> str:
    days = sorted(cron.days_of_month)
    months = [_MONTH_FULL_NAMES[month - 1] for month in sorted(cron.months)]
    day_words = f"day {days[0]}" if len(days) == 1 else "days " + _join(map(str, days), "and")
    month_words = _join(months, "or")
    return (
        f"this schedule can never run: {day_words} never occur{'s' if len(days) == 1 else ''} "
        f"in {month_words}; choose days that exist in "
        + ("that month" if len(months) == 1 else "those months")
        + (" (February has 29 days in leap years)" if 2 in cron.months else "")
    )


def _join(words: Iterable[str], conjunction: str) -> str:
    listed = list(words)
    return listed[0] if len(listed) == 1 else f"{', '.join(listed[:-1])} {conjunction} {listed[-1]}"


def _possible_days(cron: CronExpression) -> bool:
    return any(
        day <= _LONGEST_MONTH[month - 1] for month in cron.months for day in cron.days_of_month
    )


def _calendar_lines(cron: CronExpression) -> list[str]:
    clock = f"{_numbers(cron.hours, _HOUR)}:{_numbers(cron.minutes, _MINUTE)}:00"
    months = _numbers(cron.months, _MONTH)
    all_weekdays = len(cron.days_of_week) == 7
    all_month_days = len(cron.days_of_month) == 31
    if cron.days_either:
        if all_weekdays or all_month_days:
            return [f"*-{months}-* {clock}"]  # either field alone already matches every day
        lines = [f"{_weekdays(cron.days_of_week)} *-{months}-* {clock}"]
        if _possible_days(cron):  # `30 0 30 2 mon`: only the Mondays of February are left
            lines.insert(0, f"*-{months}-{_numbers(cron.days_of_month, _DAY_OF_MONTH)} {clock}")
        return lines
    days = _numbers(cron.days_of_month, _DAY_OF_MONTH)
    weekdays = "" if all_weekdays else _weekdays(cron.days_of_week) + " "
    return [f"{weekdays}*-{months}-{days} {clock}"]


def _numbers(values: frozenset[int], field: _Field) -> str:
    """`*` for the whole range, else two-digit values with runs of three or more as `a..b`."""
    if values == frozenset(range(field.low, field.high + 1)):
        return "*"
    return ",".join(
        f"{first:02d}"
        if first == last
        else f"{first:02d}{'..' if last > first + 1 else ','}{last:02d}"
        for first, last in _runs(sorted(values))
    )


def _weekdays(values: frozenset[int]) -> str:
    """systemd's own normal form: Monday first, runs of three or more as `Mon..Fri`."""
    monday_first = sorted((value - 1) % 7 for value in values)
    return ",".join(
        _SYSTEMD_WEEKDAYS[(first + 1) % 7]
        if first == last
        else f"{_SYSTEMD_WEEKDAYS[(first + 1) % 7]}{'..' if last > first + 1 else ','}"
        f"{_SYSTEMD_WEEKDAYS[(last + 1) % 7]}"
        for first, last in _runs(monday_first)
    )


def _runs(values: list[int]) -> Iterator[tuple[int, int]]:
    """Consecutive runs of sorted values as (first, last) pairs."""
    first = previous = values[0]
    for value in values[1:]:
        if value != previous + 1:
            yield first, previous
            first = value
        previous = value
    yield first, previous


def _check_timezone(name: str) -> None:
    """systemd accepts a zone only if tzdata has a TZif file for it; refuse anything else here."""
    hint = (
        "use a name from tzdata such as 'Europe/Berlin' or 'UTC' (see timedatectl list-timezones)"
    )
    if not _TIMEZONE_PATTERN.fullmatch(name):
        raise ScheduleError(f"'{name}' is not a time zone name; {hint}", 0)
    try:
        with (ZONEINFO_DIRECTORY / name).open("rb") as zone_file:
            known = zone_file.read(4) == b"TZif"
    except OSError:
        known = False
    if not known:
        raise ScheduleError(f"unknown time zone '{name}'; {hint}", 0)


def _days_from(first: date) -> Iterator[date]:
    for offset in range(_SEARCH_LIMIT_DAYS):
        try:
            yield first + timedelta(days=offset)
        except OverflowError:
            return


def _aware(wall_clock: datetime, after: datetime) -> datetime | None:
    """`wall_clock` in `after`'s zone, or None if that local time does not exist there."""
    zone = after.tzinfo
    if zone is None:
        return wall_clock
    local = wall_clock.replace(tzinfo=zone)
    round_trip = local.astimezone(UTC).astimezone(zone)
    return local if round_trip.replace(tzinfo=None) == wall_clock else None


def _bounded_int(digits: str, ceiling: int) -> int:
    """The number, or `ceiling` if it is larger (int() refuses thousands of digits)."""
    significant = digits.lstrip("0") or "0"
    return min(int(significant), ceiling) if len(significant) <= 6 else ceiling


def _digit_run(text: str, position: int) -> str:
    end = position
    while end < len(text) and text[end].isascii() and text[end].isdigit():
        end += 1
    return text[position:end]


def _letter_run(text: str, position: int) -> str:
    end = position
    while end < len(text) and text[end].isascii() and text[end].isalpha():
        end += 1
    return text[position:end]


def _describe(character: str) -> str:
    if character.isprintable() and character.isascii():
        return f"'{character}'"
    name = unicodedata.name(character, "")
    return f"U+{ord(character):04X}" + (f" ({name})" if name else "")
