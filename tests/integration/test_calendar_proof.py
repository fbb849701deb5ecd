"""Proof that the emitted OnCalendar= lines fire at exactly the minutes Vixie cron would.

systemd itself (`systemd-analyze calendar`) computes the next runs of the emitted lines; they must
equal croniter's next runs and those of an independent, deliberately literal port of Vixie cron's
matcher below. Where croniter's day rule differs from Vixie's (a day field such as `*/2` starts
with `*`, so Vixie keeps the AND rule while croniter switches to OR), Vixie wins and only the port
is compared.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import CroniterBadDateError, croniter
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from pcsystemd.schedule import ScheduleError, compile_schedule, next_fire_times, parse_cron

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")

# systemd stops searching a little before 2200; compare only what both sides can see.
HORIZON = datetime(2150, 1, 1)
ITERATIONS = 40
BASES = (
    datetime(2027, 1, 1, 0, 0),  # a plain year start, reaching Feb 29 2028 for yearly schedules
    datetime(2027, 2, 27, 23, 59, 30),  # end of a common-year February, seconds off the minute
    datetime(2027, 12, 31, 23, 30),  # year end, into leap-year 2028
    datetime(2028, 2, 28, 12, 0),  # the day before a leap day
)

# (expression, what it covers)
CASES = [
    ("* * * * *", "every minute"),
    ("15-45 9-17 * * *", "ranges"),
    ("0 9-17 * * 1-5", "weekday range"),
    ("*/7 * * * *", "minute step that does not divide 60"),
    ("5-50/15 */5 * * *", "range step and hour step"),
    ("*/45 * * * *", "step larger than half the range"),
    ("0 0 */3 * *", "*/N in day-of-month"),
    ("0 0 1 */4 *", "*/N in month"),
    ("0 12 * * */2", "*/N in day-of-week"),
    ("0 12 * * 1-7/2", "stepped weekday range ending on Sunday 7"),
    ("0,15,59 0,12,23 * * *", "minute and hour lists"),
    ("1-3,5,7-9 0-2,22-23 * * *", "lists of ranges"),
    ("0,30 8,12,18 * * *", "hour list"),
    ("0 0 1,10,20,31 * *", "day list with 31"),
    ("0 6 * jan,jul mon-fri", "month and weekday names"),
    ("0 0 * JAN-MAR/2 SUN", "upper-case names, stepped name range"),
    ("30 4 * * Sat,sun,Mon", "weekday list across the week's end"),
    ("0 0 * feb-apr sat-7", "name and number in one range"),
    ("0 0 1,15 * 1", "both day fields restricted: either matches"),
    ("0 0 13 * fri", "Friday or the 13th"),
    ("30 8 1-7 * mon", "the 'first Monday' trap: OR, not AND"),
    ("0 0 31 * 0", "the 31st or Sunday"),
    ("0 0 1-31 * 1", "restricted full day-of-month: every day"),
    ("0 0 15 * 0-6", "restricted full day-of-week: every day"),
    ("0 0 15 * 0-7", "restricted day-of-week 0-7: every day"),
    ("0 0 28,29 2 *", "end of February"),
    ("0 12 29 2 *", "leap day only"),
    ("0 0 29 2 1", "leap day or Mondays in February"),
    ("0 0 29,30 2 *", "February with an impossible day beside a possible one"),
    ("0 0 30 2 mon", "impossible day OR Monday: Mondays of February"),
    ("0 0 28-31 2 *", "February range past its end"),
    ("59 23 31 * *", "month ends: 31st only where it exists"),
    ("0 0 30,31 * *", "30th and 31st"),
    ("0 0 31 1-12/2 *", "31st of odd months"),
    ("0 0 31 4,6,9,11,12 *", "31st of short months and December"),
    ("0 0 * * 0", "Sunday as 0"),
    ("0 0 * * 7", "Sunday as 7"),
    ("0 0 * * 5-7", "Friday to Sunday as 7"),
    ("0 0 * * 0,7", "Sunday twice"),
    ("0 0 * * 0-7/7", "stepped range hitting both Sundays"),
    ("0 0 * * */3", "*/3 in day-of-week: Sun, Wed, Sat"),
    # Vixie and croniter disagree here: a day field starting with '*' keeps the AND rule.
    ("0 0 */2 * 1", "*/2 day-of-month AND Monday"),
    ("0 0 1 * */2", "the 1st AND an even weekday"),
    ("0 0 */10 * sun", "*/10 day-of-month AND Sunday"),
    ("0 0 29 2 */7", "leap day AND Sunday: rare"),
    ("0 0 */5 2 1-5", "*/5 in February AND a working day"),
    # croniter reads an equal range as the whole field; Vixie as the one value.
    ("* 10-10 * * *", "equal range: one hour"),
    ("0 0 * * sun-sun", "equal name range: Sundays only"),
]


# --- an independent port of Vixie cron (entry.c get_range, cron.c find_jobs), valid input only ---

VIXIE_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
VIXIE_WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun"]
VIXIE_SPECS = [
    (0, 59, None),
    (0, 23, None),
    (1, 31, None),
    (1, 12, VIXIE_MONTHS),
    (0, 7, VIXIE_WEEKDAYS),
]


class VixieEntry:
    """The bit sets and DOM_STAR/DOW_STAR flags that cron's load_entry() would build."""

    def __init__(self, expression: str) -> None:
        texts = expression.split()
        self.bits: list[set[int]] = []
        for text, (low, high, names) in zip(texts, VIXIE_SPECS, strict=True):
            bits: set[int] = set()
            for item in text.split(","):
                span, _, step = item.partition("/")
                if span == "*":
                    first, last = low, high
                else:
                    start, _, end = span.partition("-")
                    first = self._number(start, low, names)
                    last = self._number(end, low, names) if end else first
                bits.update(range(first, last + 1, int(step) if step else 1))
            self.bits.append(bits)
        if self.bits[4] & {0, 7}:  # load_entry(): "make sundays equivalent"
            self.bits[4] |= {0, 7}
        self.dom_star = texts[2].startswith("*")
        self.dow_star = texts[4].startswith("*")

    @staticmethod
    def _number(text: str, low: int, names: list[str] | None) -> int:
        if text.isdigit():
            return int(text)
        assert names is not None
        return names.index(text.lower()) + low

    def day_fires(self, day: date) -> bool:
        dom = day.day in self.bits[2]
        dow = day.isoweekday() % 7 in self.bits[4]
        if day.month not in self.bits[3]:
            return False
        return (dom and dow) if (self.dom_star or self.dow_star) else (dom or dow)


def reference_next(expression: str, base: datetime, count: int, until: datetime) -> list[datetime]:
    """Minute by minute after `base`; whole days and hours that cannot match are stepped over."""
    entry = VixieEntry(expression)
    moment = base.replace(second=0, microsecond=0) + timedelta(minutes=1)
    found: list[datetime] = []
    while len(found) < count and moment < until:
        if not entry.day_fires(moment.date()):
            moment = datetime.combine(moment.date() + timedelta(days=1), datetime.min.time())
        elif moment.hour not in entry.bits[1]:
            moment = moment.replace(minute=0) + timedelta(hours=1)
        else:
            if moment.minute in entry.bits[0]:
                found.append(moment)
            moment += timedelta(minutes=1)
    return found


def croniter_agrees_with_vixie(expression: str) -> bool:
    """Whether croniter computes Vixie's runs for this expression.

    croniter departs from Vixie twice: it ORs the day fields whenever neither expands to every
    value (Vixie looks at a leading '*'), and it reads an equal range such as `10-10` as the whole
    field (Vixie: just 10).
    """
    fields = croniter.expand(expression)[0]
    entry = VixieEntry(expression)
    for index, (low, high, _) in enumerate(VIXIE_SPECS):
        expanded: set[int] = set()
        for value in fields[index]:
            expanded.update(range(low, high + 1) if value == "*" else [int(value)])
        if index == 4:  # both count Sunday twice in their own way
            if {value % 7 for value in expanded} != {value % 7 for value in entry.bits[4]}:
                return False
        elif expanded != entry.bits[index]:
            return False
    croniter_ors = fields[2][0] != "*" and fields[4][0] != "*"  # its own test, in croniter.py
    return croniter_ors == (not entry.dom_star and not entry.dow_star)


def croniter_next(expression: str, base: datetime, count: int, until: datetime) -> list[datetime]:
    iterator = croniter(expression, base)
    found: list[datetime] = []
    while len(found) < count:
        moment = iterator.get_next(datetime)
        if moment >= until:
            break
        found.append(moment)
    return found


# --- systemd-analyze calendar ---

TIME_LINE = re.compile(
    r"^\s*(?:Next elapse|Iter\. #\d+): \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC$"
)


def systemd_elapses(
    specs: Sequence[str], base: datetime, iterations: int
) -> list[tuple[str, list[datetime]]]:
    """For each calendar spec, in order: systemd's normalized form and its next elapse times."""
    assert SYSTEMD_ANALYZE is not None
    argv = [
        SYSTEMD_ANALYZE,
        "calendar",
        f"--base-time={base:%Y-%m-%d %H:%M:%S} UTC",
        f"--iterations={iterations}",
        "--",
        *specs,
    ]
    result = subprocess.run(
        argv,
        env={**os.environ, "TZ": "UTC", "SYSTEMD_COLORS": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    blocks: list[tuple[str, list[datetime]]] = []
    for line in result.stdout.splitlines():
        if line.strip().startswith("Normalized form:"):
            blocks.append((line.split(":", 1)[1].strip(), []))
        elif match := TIME_LINE.match(line):
            blocks[-1][1].append(datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S"))
    assert len(blocks) == len(specs), result.stdout
    return blocks


def systemd_union(
    expressions: Sequence[str], base: datetime, iterations: int, until: datetime
) -> dict[str, list[datetime]]:
    """Compile every expression, ask systemd once for all lines, and unite each one's lines."""
    lines = {expression: compile_schedule(expression).on_calendar for expression in expressions}
    specs = [line for expression in expressions for line in lines[expression]]
    blocks = iter(systemd_elapses(specs, base, iterations))
    union: dict[str, list[datetime]] = {}
    for expression in expressions:
        times: set[datetime] = set()
        for line in lines[expression]:
            normalized, elapses = next(blocks)
            # Our lines are already in systemd's normal form: what a reader sees is what runs.
            assert normalized == line
            times.update(elapses)
        union[expression] = sorted(time for time in times if time < until)[:iterations]
    return union


@pytest.fixture(scope="module")
def systemd_runs() -> dict[datetime, dict[str, list[datetime]]]:
    """One systemd-analyze call per base time for all the cases."""
    expressions = [expression for expression, _ in CASES]
    return {base: systemd_union(expressions, base, ITERATIONS, HORIZON) for base in BASES}


@pytest.mark.parametrize("base", BASES, ids=lambda base: f"{base:%Y%m%d-%H%M%S}")
@pytest.mark.parametrize(("expression", "covers"), CASES, ids=[case[0] for case in CASES])
def test_systemd_fires_exactly_when_cron_would(
    systemd_runs: dict[datetime, dict[str, list[datetime]]],
    expression: str,
    covers: str,
    base: datetime,
) -> None:
    systemd = systemd_runs[base][expression]
    reference = reference_next(expression, base, ITERATIONS, HORIZON)
    assert reference, f"{expression} ({covers}) never fires before {HORIZON}"
    assert systemd == reference, covers
    # `pcsystemd explain` lists the same runs.
    assert next_fire_times([expression], base, len(reference)) == reference
    if croniter_agrees_with_vixie(expression):
        assert croniter_next(expression, base, ITERATIONS, HORIZON) == reference, covers


@pytest.mark.parametrize(
    "expression",
    ["0 0 */2 * 1", "0 0 1 * */2", "0 0 */10 * sun", "0 0 */5 2 1-5", "* 10-10 * * *"],
)
def test_croniter_diverges_from_vixie_where_documented(expression: str) -> None:
    """Guards the divergence note: if croniter ever follows Vixie, the special case can go."""
    assert not croniter_agrees_with_vixie(expression)
    base = BASES[0]
    assert croniter_next(expression, base, 20, HORIZON) != reference_next(
        expression, base, 20, HORIZON
    )


def test_union_of_several_expressions() -> None:
    expressions = ["0 0 1,15 * 1", "30 12 * * */2", "0 0 1 * *"]
    base = BASES[0]
    lines = [
        line for expression in expressions for line in compile_schedule(expression).on_calendar
    ]
    systemd = sorted({time for _, times in systemd_elapses(lines, base, 30) for time in times})[:30]
    merged = sorted({t for e in expressions for t in reference_next(e, base, 30, HORIZON)})[:30]
    assert systemd == merged
    assert next_fire_times(expressions, base, 30) == merged


@pytest.mark.parametrize(
    "base_utc",
    [
        datetime(2027, 1, 10, tzinfo=UTC),
        datetime(2027, 3, 26, tzinfo=UTC),  # spring forward: 02:30 does not exist on Mar 28
        datetime(2027, 10, 29, tzinfo=UTC),  # fall back: 02:30 happens twice on Oct 31
    ],
    ids=["winter", "spring-forward", "fall-back"],
)
def test_timezone_suffix_agrees_with_explain(base_utc: datetime) -> None:
    zone = ZoneInfo("Europe/Berlin")
    expression = "30 2 * * *"
    lines = compile_schedule(expression, "Europe/Berlin").on_calendar
    assert lines == ("*-*-* 02:30:00 Europe/Berlin",)
    naive_base = base_utc.replace(tzinfo=None)
    systemd = sorted(time for _, times in systemd_elapses(lines, naive_base, 6) for time in times)
    explained = next_fire_times([expression], base_utc.astimezone(zone), 6)
    assert systemd == [time.astimezone(UTC).replace(tzinfo=None) for time in explained]


def test_importing_schedule_loads_no_third_party_module() -> None:
    """The shim imports jobbuild → schedule at start-up; croniter and friends must stay unloaded."""
    code = (
        "import sys; import pcsystemd.schedule\n"
        "loaded = sorted(m for m in ('croniter', 'dateutil', 'jinja2', 'yaml', 'pystemd')"
        " if m in sys.modules)\n"
        "print(loaded)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# --- property test: random valid expressions, many per systemd-analyze call ---


@st.composite
def field_texts(draw: st.DrawFn, low: int, high: int, names: Sequence[str] = ()) -> str:
    def value(number: int) -> str:
        named = draw(st.booleans())
        if named and names:
            name = names[number - low]
            return draw(st.sampled_from([name, name.upper(), name.capitalize()]))
        return str(number)

    def item() -> str:
        kind = draw(st.sampled_from(["*", "*/n", "a", "a-b", "a-b/n"]))
        step = draw(st.integers(1, high - low + 2))
        if kind == "*":
            return "*"
        if kind == "*/n":
            return f"*/{step}"
        first = draw(st.integers(low, high))
        if kind == "a":
            return value(first)
        last = draw(st.integers(first, high))
        span = f"{value(first)}-{value(last)}"
        return span if kind == "a-b" else f"{span}/{step}"

    return ",".join(item() for _ in range(draw(st.integers(1, 3))))


# Weekday names cover 0-6 only; 7 appears as a number.
WEEKDAY_NAMES = VIXIE_WEEKDAYS[:7]


@st.composite
def cron_expressions(draw: st.DrawFn) -> str:
    weekday = draw(st.one_of(field_texts(0, 6, WEEKDAY_NAMES), field_texts(0, 7), st.just("*")))
    # Month ends and short months often enough to meet leap days and impossible dates.
    day_of_month = draw(st.one_of(field_texts(1, 31), field_texts(28, 31), st.just("*")))
    month = draw(
        st.one_of(
            field_texts(1, 12, VIXIE_MONTHS),
            st.sampled_from(["2", "feb", "4,6,9,11", "2,4", "2-4/2"]),
            st.just("*"),
        )
    )
    return " ".join(
        [draw(field_texts(0, 59)), draw(field_texts(0, 23)), day_of_month, month, weekday]
    )


def schedulable(expression: str) -> bool:
    try:
        parse_cron(expression)
    except ScheduleError:
        return False
    return True


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    # No shrinking: each example costs a systemd-analyze run, shrinking a failure takes minutes,
    # and every assertion already names the offending expression.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(
    expressions=st.lists(cron_expressions(), min_size=8, max_size=8),
    base=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2035, 12, 31)).map(
        lambda moment: moment.replace(microsecond=0)
    ),
)
def test_random_expressions_fire_exactly_when_cron_would(
    expressions: list[str], base: datetime
) -> None:
    iterations = 12
    valid = [expression for expression in expressions if schedulable(expression)]
    rejected = [expression for expression in expressions if expression not in valid]
    for expression in rejected:
        # Rejected only when it truly never fires: eight years always include a leap day.
        assert reference_next(expression, base, 1, base + timedelta(days=8 * 366)) == []
    assume(valid)
    systemd = systemd_union(valid, base, iterations, HORIZON)
    for expression in valid:
        reference = reference_next(expression, base, iterations, HORIZON)
        assert systemd[expression] == reference, expression
        assert next_fire_times([expression], base, len(reference)) == reference, expression
        if croniter_agrees_with_vixie(expression):
            try:
                expected = croniter_next(expression, base, iterations, HORIZON)
            except CroniterBadDateError:
                continue  # croniter gives up on rare schedules (a leap day AND a weekday)
            assert expected == reference, expression
