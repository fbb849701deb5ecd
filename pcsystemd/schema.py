"""The one field table of job keys: it drives parsing, defaults, validation and the reference docs.

`FIELDS` lists every key of a job file with its parser, default, help text and example. Parsing
never stops at the first problem: each parser reports into a `Checker` and returns `INVALID`, so a
file's every error is found in one pass. `build_job` turns a parsed file (merged over the global
`defaults`) into a `model.Job`; `reference_markdown` and `sample_job_yaml` render the same table
for people. Nothing here does I/O beyond what `schedule.compile_schedule` needs for time zones.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from pcsystemd.errors import Diagnostic
from pcsystemd.model import (
    DEFAULT_CONFIG_PATH,
    Failmail,
    GlobalConfig,
    Hardening,
    Job,
    Notify,
    Overlap,
    Retries,
    Schedule,
)
from pcsystemd.schedule import ScheduleError, compile_schedule
from pcsystemd.yamlload import Mark, MarkedList, MarkedMap

# typing is imported for the type checker only: the runtime shim's start-up (`pcsystemd
# run-job`) reaches this module, and typing alone costs it milliseconds. mypy knows the idiom.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


SLUG_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
SLUG_RULE = (
    "lowercase letters, digits, '-' and '_', starting with a letter or digit, at most 64 characters"
)
# Debian's adduser NAME_REGEX without the Samba `$` suffix, which would be a unit-file variable.
ACCOUNT_PATTERN = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
ACCOUNT_RULE = (
    "lowercase letters, digits, '_' and '-', starting with a letter or '_', at most 32 characters"
)
ENVIRONMENT_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: each can end a line
# of a unit file or a log line, so no value may carry one (a few keys allow tab and newline).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_NAMES = {"\n": "a line break", "\t": "a tab", "\r": "a carriage return", "\0": "NUL"}
# Characters that mean something in unit files (specifiers, variables, quoting) and never in
# the names and paths pcsystemd takes: refused rather than escaped.
_PATH_FORBIDDEN = "%$\"'\\"
_DURATION_PART = re.compile(r"\s*(\d+)\s*([smhd])")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION_SECONDS = 366 * 86400
# `user@example.org` or `Display Name <user@example.org>` (what mail(1) and sendmail take).
_MAIL_ADDRESS = re.compile(r"[^@\s<>,;]+@[^@\s<>,;]+|[^<>@]*<\s*[^@\s<>,;]+@[^@\s<>,;]+\s*>")
# One token of a POSIX shell word as shlex.split reads it (shlex itself is 20 times slower).
_SHELL_TOKEN = re.compile(
    r"""(?P<space>[ \t\r\n]+)
    |'(?P<single>[^']*)'
    |"(?P<double>(?:[^"\\]|\\.)*)"
    |\\(?P<escaped>.)
    |(?P<plain>[^ \t\r\n'"\\]+)""",
    re.VERBOSE | re.DOTALL,
)
_OPEN_DOUBLE_QUOTE_ESCAPE = re.compile(r'"(?:[^"\\]|\\.)*\\', re.DOTALL)
_DOUBLE_QUOTED_ESCAPE = re.compile(r'\\([\\"])')  # the only escapes shlex honours in "..."
_DURATION_FORMS = "'90s', '15m', '2h', '1d' or '1h30m'"


class _Invalid:
    """Returned by a parser that has reported an error; the job will not be built."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _Invalid()

Parser = Callable[["Checker", "Any", Mark, str], "Any"]


class Checker:
    """Collects every diagnostic of one file while its values are parsed."""

    def __init__(self, path: str, config: GlobalConfig, context: str = "") -> None:
        self.path = path
        self.config = config
        # Said after a message whose position is in another file (a value from the defaults).
        self.context = context
        self.diagnostics: list[Diagnostic] = []

    def error(self, mark: Mark, message: str) -> Any:
        """Report a problem at `mark`; returns INVALID so parsers can `return ck.error(...)`."""
        if self.context and mark.path != self.path:
            message = f"{message} ({self.context})"
        self.diagnostics.append(mark.diagnostic(message))
        return INVALID

    @property
    def failed(self) -> bool:
        return any(diagnostic.severity == "error" for diagnostic in self.diagnostics)


@dataclass(frozen=True)
class Field:
    """One key of a job file (or of one of its mappings): how to read it and how to explain it."""

    key: str
    parse: Parser
    type_text: str  # what a person should write, in words
    help: str
    example: str  # YAML, key included
    default: Any = None  # the parsed value when the key is absent (None: computed in build_job)
    default_text: str = "none"
    origin: str = "pcsystemd"  # "process-control": accepted with process-control's meaning
    required: bool = False
    subfields: tuple[Field, ...] = ()


# ---------------------------------------------------------------------------------------------
# Messages


def describe(value: Any) -> str:
    """How a YAML value is called in messages: its kind and, when short, the value itself."""
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({show(value)})"
    if isinstance(value, MarkedMap | Mapping):
        return "a mapping"
    if isinstance(value, MarkedList | list):
        return "a list"
    return type(value).__name__


def article(noun: str) -> str:
    """'a tag', 'an absolute path'."""
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def show(text: str, limit: int = 60) -> str:
    """A value quoted for a message, control characters escaped, long values shortened."""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return repr(text)


def type_error(ck: Checker, mark: Mark, label: str, expected: str, value: Any) -> Any:
    return ck.error(mark, f"'{label}' must be {expected}, not {describe(value)}")


def closest_key(key: str, known: Sequence[str]) -> str | None:
    """The known key a misspelt one most likely meant (difflib), if any is close."""
    lowered = {name.lower(): name for name in known}
    match = lowered.get(key.lower().replace("-", "_"))
    if match is None:
        import difflib  # only for a misspelt key: not on the runtime shim's start-up path

        close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
        match = lowered[close[0]] if close else None
    return match


def unknown_key_message(key: str, known: Sequence[str], where: str) -> str:
    """`unknown key` with a "did you mean" from difflib, or the list of valid keys."""
    match = closest_key(key, known)
    if match is not None:
        return f"unknown key {show(key)}{where}; did you mean '{match}'?"
    if len(known) <= 8:
        return f"unknown key {show(key)}{where}; the keys here are: {', '.join(known)}"
    return (
        f"unknown key {show(key)}{where}; remove it or check the spelling "
        "(`pcsystemd schema` lists every key)"
    )


def check_text(ck: Checker, text: str, mark: Mark, label: str, allowed: str = "") -> bool:
    """Refuse control characters (except those in `allowed`); report each with its position."""
    ok = True
    for match in _CONTROL.finditer(text):
        character = match.group()
        if character in allowed:
            continue
        name = _CONTROL_NAMES.get(character, "a control character")
        ck.error(
            mark.shifted(match.start()),
            f"'{label}' contains {name} (U+{ord(character):04X}); remove it"
            + (": this value must fit on one line" if character == "\n" else ""),
        )
        ok = False
    return ok


def config_name(config: GlobalConfig) -> str:
    return str(config.source_path) if config.source_path else DEFAULT_CONFIG_PATH


# ---------------------------------------------------------------------------------------------
# Parsers and parser builders. Each takes (checker, value, mark of the value, label).


def parse_boolean(ck: Checker, value: Any, mark: Mark, label: str) -> Any:
    if isinstance(value, bool):
        return value
    return type_error(ck, mark, label, "true or false", value)


def integer(minimum: int, maximum: int | None = None) -> Parser:
    """A whole number within [minimum, maximum]."""

    def parse(ck: Checker, value: Any, mark: Mark, label: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            return type_error(ck, mark, label, "a whole number", value)
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"at least {minimum}" if maximum is None else f"{minimum} to {maximum}"
            return ck.error(mark, f"'{label}' must be {bounds}, not {value}")
        return value

    return parse


def number(minimum: float, maximum: float) -> Parser:
    def parse(ck: Checker, value: Any, mark: Mark, label: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return type_error(ck, mark, label, "a number", value)
        if not minimum <= value <= maximum:
            return ck.error(mark, f"'{label}' must be between {minimum:g} and {maximum:g}")
        return float(value)

    return parse


def choice(enum: type[StrEnum]) -> Parser:
    """One of an enum's values."""
    names = [member.value for member in enum]

    def parse(ck: Checker, value: Any, mark: Mark, label: str) -> Any:
        if isinstance(value, str) and value in names:
            return enum(value)
        expected = "one of " + ", ".join(names)
        if isinstance(value, str):
            import difflib  # only for a mistake: not on the runtime shim's start-up path

            close = difflib.get_close_matches(value.lower(), names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            return ck.error(mark, f"'{label}' must be {expected}, not {show(value)}{hint}")
        return type_error(ck, mark, label, expected, value)

    return parse


def text(*, multiline: bool = False, max_length: int = 200) -> Parser:
    """Free text (names, descriptions): anything printable; the renderer escapes it."""

    def parse(ck: Checker, value: Any, mark: Mark, label: str) -> Any:
        if not isinstance(value, str):
            hint = "; put it in quotes" if isinstance(value, int | float) else ""
            return ck.error(mark, f"'{label}' must be text, not {describe(value)}{hint}")
        if not check_text(ck, value, mark, label, "\n\t" if multiline else ""):
            return INVALID
        stripped = value.strip()
        if not stripped:
            return ck.error(mark, f"'{label}' is empty; write some text or remove the key")
        if len(stripped) > max_length:
            return ck.error(
                mark,
                f"'{label}' is longer than {max_length} characters"
                + ("; put the details in 'description'" if label == "name" else "; shorten it"),
            )
        return stripped

    return parse


def identifier(pattern: re.Pattern[str], what: str, rule: str) -> Parser:
    """A name that ends up in a unit name or setting: it must match `pattern` exactly."""

    def parse(ck: Checker, value: Any, mark: Mark, label: str) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # `lock: 2024` is a fine name written without quotes
        if not isinstance(value, str):
            return type_error(ck, mark, label, article(what), value)
        if not check_text(ck, value, mark, label):
            return INVALID
        if not pattern.fullmatch(value):
            return ck.error(mark, f"'{label}' {show(value)} is not a valid {what}; use {rule}")
        return value

    return parse


parse_slug_name = identifier(SLUG_PATTERN, "name", SLUG_RULE)
parse_account = identifier(ACCOUNT_PATTERN, "user or group name", ACCOUNT_RULE)


def parse_absolute_path(ck: Checker, value: Any, mark: Mark, label: str) -> Any:
    if not isinstance(value, str):
        return type_error(ck, mark, label, "an absolute path", value)
    if not check_text(ck, value, mark, label):
        return INVALID
    for position, character in enumerate(value):
        if character in _PATH_FORBIDDEN:
            return ck.error(
                mark.shifted(position),
                f"'{label}' contains {character!r}, which pcsystemd does not allow in paths "
                "(% $ quotes and backslashes are unit-file syntax); use a path without it",
            )
    if not value.startswith("/"):
        return ck.error(
            mark, f"'{label}' must be an absolute path (starting with '/'), not {show(value)}"
        )
    if value != value.rstrip():
        # systemd strips trailing white space from unquoted settings: the path would change.
        return ck.error(mark, f"'{label}' {show(value)} ends in white space; remove it")
    plain = value.rstrip("/") or "/"
    # `..` could climb out of what a reviewer reads; `.` and `//` are only noise.
    if "//" in plain or any(part in (".", "..") for part in plain.split("/")):
        normal = posixpath.normpath(re.sub("/+", "/", plain))
        return ck.error(
            mark,
            f"'{label}' {show(value)} contains '//', '.' or '..'; write the plain path, "
            f"e.g. {show(normal)}",
        )
    return plain


def string_or_list(item: Parser, what: str, *, allow_empty: bool = False) -> Parser:
    """One item or a list of items; the result is a tuple without duplicates, in order."""

    def parse(ck: Checker, value: Any, mark: Mark, label: str) -> Any:
        entries: list[tuple[Any, Mark]]
        if isinstance(value, MarkedList):
            entries = list(value.items_with_marks())
            if not entries and not allow_empty:
                return ck.error(
                    mark, f"'{label}' is an empty list; list at least one {what} or remove the key"
                )
        elif isinstance(value, list):  # defaults given as plain Python data
            entries = [(entry, mark) for entry in value]
        elif isinstance(value, Mapping):
            return type_error(ck, mark, label, f"{article(what)} or a list of them", value)
        else:
            entries = [(value, mark)]
        results = [item(ck, entry, entry_mark, label) for entry, entry_mark in entries]
        if any(result is INVALID for result in results):
            return INVALID
        return tuple(dict.fromkeys(results))

    return parse


def mapping(fields: Sequence[Field]) -> Parser:
    """A nested mapping with its own keys; returns {key: parsed value or the field default}."""

    def parse(ck: Checker, value: Any, mark: Mark, label: str) -> Any:
        if not isinstance(value, Mapping):
            keys = ", ".join(field.key for field in fields)
            return type_error(ck, mark, label, f"a mapping with the keys {keys}", value)
        parsed = parse_fields(ck, value, fields, prefix=f"{label}.")
        return INVALID if INVALID in parsed.values() else parsed

    return parse


def _seconds_from_text(text: str) -> int | None:
    """'1h30m' → 5400; None when the text is not a duration."""
    position, total = 0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        total += int(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position == 0 or text[position:].strip():
        return None
    return total


def duration(*, bare_unit: str | None) -> Parser:
    """A duration in seconds: text like '90s' or '1h30m'; a bare number means `bare_unit`.

    `bare_unit=None` accepts a bare 0 only: a plain 30 is ambiguous for pcsystemd's own keys.
    """

    def parse(ck: Checker, value: Any, mark: Mark, label: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return type_error(ck, mark, label, f"a duration such as {_DURATION_FORMS}", value)
        if isinstance(value, str):
            seconds = _seconds_from_text(value)
            if seconds is None:
                stripped = value.strip()
                if re.fullmatch(r"\d+(\.\d+)?", stripped):
                    if bare_unit is None:
                        fix = f"add a unit: '{stripped}s' or '{stripped}m'"
                    else:
                        fix = f"write {stripped} without quotes (minutes) or add a unit: "
                        fix += f"'{stripped}s', '{stripped}m'"
                    return ck.error(mark, f"'{label}' {show(value)} has no unit; {fix}")
                return ck.error(
                    mark,
                    f"'{label}' {show(value)} is not a duration; write {_DURATION_FORMS}",
                )
        elif value == 0:
            seconds = 0
        elif bare_unit is None:
            return ck.error(
                mark,
                f"'{label}' {value!r} has no unit; write '{value!r}s' or '{value!r}m'",
            )
        else:
            exact = value * _DURATION_UNITS[bare_unit]
            if value < 0:
                return ck.error(
                    mark, f"'{label}' {value!r} is negative; write a duration of 0 or more"
                )
            if exact != int(exact):
                return ck.error(
                    mark,
                    f"'{label}' {value!r} is not a whole number of seconds; "
                    f"write it with a unit, e.g. '{max(1, round(exact))}s'",
                )
            seconds = int(exact)
        if seconds > MAX_DURATION_SECONDS:
            return ck.error(
                mark,
                f"'{label}' is longer than 366 days; write a shorter duration (at most '366d')",
            )
        return seconds

    return parse


def parse_command_line(ck: Checker, value: Any, mark: Mark, label: str) -> Any:
    """A command line split like a shell would (shlex), but later run without a shell."""
    if not isinstance(value, str):
        return type_error(ck, mark, label, "a command line (text)", value)
    # Line breaks may separate words (a folded `>` block); they may not sit inside a word.
    if not check_text(ck, value, mark, label, "\n\t"):
        return INVALID
    try:
        argv = split_command_line(value)
    except ValueError as error:
        return ck.error(
            mark,
            f"'{label}' cannot be split into words: {error}; close the quote "
            "(or escape a lone quote with a backslash)",
        )
    if not argv:
        return ck.error(mark, f"'{label}' is empty; write the command line to run")
    for word in argv:
        if "\n" in word:
            return ck.error(
                mark,
                f"'{label}' has a line break inside the quoted word {show(word)}; "
                "commands run without a shell, so write a script file for multi-line programs",
            )
    return tuple(argv)


def split_command_line(line: str) -> list[str]:
    """Split like `shlex.split(line)` (POSIX rules, no comments); ValueError like shlex's."""
    words: list[str] = []
    word: list[str] | None = None
    position, end = 0, len(line)
    while position < end:
        match = _SHELL_TOKEN.match(line, position)
        if match is None:  # an unclosed quote, or a backslash at the very end
            rest = line[position:]
            ends_in_escape = rest[0] == "\\" or (
                rest[0] == '"' and _OPEN_DOUBLE_QUOTE_ESCAPE.fullmatch(rest) is not None
            )
            raise ValueError("no escaped character" if ends_in_escape else "no closing quotation")
        position = match.end()
        kind = match.lastgroup or "plain"
        if kind == "space":
            if word is not None:
                words.append("".join(word))
                word = None
            continue
        token = match.group(kind)
        if kind == "double":
            token = _DOUBLE_QUOTED_ESCAPE.sub(r"\1", token)
        if word is None:
            word = []
        word.append(token)
    if word is not None:
        words.append("".join(word))
    return words


def parse_commands(ck: Checker, value: Any, mark: Mark, label: str) -> Any:
    """A command line, or a list of them run in sequence (stopping at the first failure)."""
    if isinstance(value, MarkedList | list):
        entries = (
            list(value.items_with_marks())
            if isinstance(value, MarkedList)
            else [(entry, mark) for entry in value]
        )
        if not entries:
            return ck.error(mark, f"'{label}' is an empty list; list at least one command line")
        # Duplicates are kept: running the same command twice can be meant.
        argvs = [parse_command_line(ck, entry, entry_mark, label) for entry, entry_mark in entries]
        return INVALID if INVALID in argvs else tuple(argvs)
    if not isinstance(value, str):
        return type_error(ck, mark, label, "a command line or a list of command lines", value)
    argv = parse_command_line(ck, value, mark, label)
    return INVALID if argv is INVALID else (argv,)


def parse_schedule_expression(ck: Checker, value: Any, mark: Mark, label: str) -> Any:
    """The text of one cron expression; build_job compiles it once the time zone is known."""
    if not isinstance(value, str):
        return type_error(ck, mark, label, "a cron expression in quotes", value)
    if not check_text(ck, value, mark, label, "\t"):
        return INVALID
    if not value.strip():
        return ck.error(
            mark, f"'{label}' is empty; remove the key for a job that only runs by hand"
        )
    return (value, mark)


def parse_environment(ck: Checker, value: Any, mark: Mark, label: str) -> Any:
    if not isinstance(value, Mapping):
        return type_error(ck, mark, label, "a mapping of variable names to values", value)
    marked = value if isinstance(value, MarkedMap) else as_marked(value, mark.path)
    result = [_environment_entry(ck, marked, name, label) for name in marked]
    return INVALID if INVALID in result else tuple(result)


def _environment_entry(ck: Checker, variables: MarkedMap, name: str, label: str) -> Any:
    item, mark = variables[name], variables.value_mark(name)
    if not ENVIRONMENT_NAME_PATTERN.fullmatch(name):
        return ck.error(
            variables.key_mark(name),
            f"environment variable name {show(name)} is not valid; use letters, digits "
            "and '_', not starting with a digit",
        )
    if name.startswith("PCSYSTEMD_"):
        # The unit's Environment= reaches the shim too: PCSYSTEMD_CONFIG would change which
        # global config (allowed users, directories) the shim trusts.
        return ck.error(
            variables.key_mark(name),
            f"environment variable name {name} is reserved for pcsystemd itself; "
            "choose another name",
        )
    # The text as written: `MODE: 0755` stays "0755" (YAML would read 493), `on` stays "on".
    written = variables.texts.get(name)
    if isinstance(item, bool):
        quoted = written or ("true" if item else "false")
        return ck.error(
            mark,
            f"environment variable {name} is {describe(item)}; quote it to pass the text: "
            f'{name}: "{quoted}"',
        )
    if isinstance(item, int | float):
        return (name, written or str(item))
    if item is None:
        return ck.error(
            mark, f'environment variable {name} has no value; write {name}: "" for an empty one'
        )
    if not isinstance(item, str):
        return ck.error(mark, f"environment variable {name} must be text, not {describe(item)}")
    if not check_text(ck, item, mark, f"{label}.{name}"):
        return INVALID
    return (name, item)


def parse_mail_address(ck: Checker, value: Any, mark: Mark, label: str) -> Any:
    if not isinstance(value, str):
        return type_error(ck, mark, label, "a mail address", value)
    if not check_text(ck, value, mark, label):
        return INVALID
    if not _MAIL_ADDRESS.fullmatch(value.strip()):
        return ck.error(
            mark,
            f"'{label}' {show(value)} is not a mail address; write user@example.org "
            "or 'Name <user@example.org>'",
        )
    return value.strip()


def parse_webhook(ck: Checker, value: Any, mark: Mark, label: str) -> Any:
    if not isinstance(value, str):
        return type_error(ck, mark, label, "an http:// or https:// URL", value)
    if not check_text(ck, value, mark, label):
        return INVALID
    try:
        parts = urlsplit(value)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in value
    except ValueError:
        valid = False
    if not valid:
        return ck.error(
            mark,
            f"'{label}' must be an http:// or https:// URL with a host name, not {show(value)}",
        )
    return value


def parse_exit_code(ck: Checker, value: Any, mark: Mark, label: str) -> Any:
    return integer(0, 255)(ck, value, mark, label)


def parse_retries(ck: Checker, value: Any, mark: Mark, label: str) -> Any:
    """A count, or a mapping {count, delay, backoff, max_delay}."""
    if isinstance(value, int) and not isinstance(value, bool):
        count = integer(0, 100)(ck, value, mark, label)
        return INVALID if count is INVALID else Retries(count=count)
    if not isinstance(value, Mapping):
        return type_error(ck, mark, label, "a number of retries or a mapping", value)
    parsed = parse_fields(ck, value, RETRIES_FIELDS, prefix=f"{label}.")
    if INVALID in parsed.values():
        return INVALID
    retries = Retries(
        count=parsed["count"],
        delay_seconds=float(parsed["delay"]),
        backoff=parsed["backoff"],
        max_delay_seconds=float(parsed["max_delay"]),
    )
    if retries.max_delay_seconds < retries.delay_seconds:
        where = value.value_mark("max_delay") if isinstance(value, MarkedMap) else mark
        return ck.error(
            where, f"'{label}.max_delay' is shorter than '{label}.delay'; make it at least as long"
        )
    return retries


# ---------------------------------------------------------------------------------------------
# The tables


_ADDRESSES = string_or_list(parse_mail_address, "mail address")
_TAGS = string_or_list(identifier(SLUG_PATTERN, "tag", SLUG_RULE), "tag")
_EXIT_CODES = string_or_list(parse_exit_code, "exit code")

FAILMAIL_FIELDS: tuple[Field, ...] = (
    Field(
        "from_address",
        parse_mail_address,
        "mail address",
        "Sender of the failure mail.",
        'from_address: "Fail Mail <jobs@example.org>"',
        default_text="pcsystemd@<host name>, or the global config's mail_from",
        origin="process-control",
    ),
    Field(
        "to_address",
        _ADDRESSES,
        "mail address or list of them",
        "Recipients of the failure mail.",
        "to_address: [ops@example.org, team@example.org]",
        default=(),
        default_text="nobody",
        origin="process-control",
    ),
)

NOTIFY_FIELDS: tuple[Field, ...] = (
    Field(
        "mail",
        _ADDRESSES,
        "mail address or list of them",
        "Where failure notices are mailed (added to failmail's recipients).",
        "mail: ops@example.org",
        default=(),
        default_text="nobody",
    ),
    Field(
        "webhook",
        parse_webhook,
        "http:// or https:// URL",
        "A URL that receives a JSON POST for each failure notice.",
        "webhook: https://hooks.example.org/pcsystemd",
    ),
    Field(
        "on_recovery",
        parse_boolean,
        "boolean",
        "Also send a notice when the job succeeds again after failing.",
        "on_recovery: true",
        default=False,
        default_text="false",
    ),
)

RETRIES_FIELDS: tuple[Field, ...] = (
    Field(
        "count",
        integer(0, 100),
        "whole number, 0 to 100",
        "How many times a failed run is retried within the same activation.",
        "count: 3",
        default=Retries.count,
        default_text=str(Retries.count),
    ),
    Field(
        "delay",
        duration(bare_unit=None),
        "duration",
        "Wait before the first retry.",
        "delay: 30s",
        default=int(Retries.delay_seconds),
        default_text=f"{Retries.delay_seconds:g}s",
    ),
    Field(
        "backoff",
        number(1, 10),
        "number, 1 to 10",
        "Each further retry waits this many times longer than the one before.",
        "backoff: 2",
        default=Retries.backoff,
        default_text=f"{Retries.backoff:g}",
    ),
    Field(
        "max_delay",
        duration(bare_unit=None),
        "duration",
        "The longest wait between two attempts.",
        "max_delay: 5m",
        default=int(Retries.max_delay_seconds),
        default_text=f"{Retries.max_delay_seconds:g}s",
    ),
)

FIELDS: tuple[Field, ...] = (
    Field(
        "name",
        text(),
        "text",
        "A human name for the job, shown in the unit's Description= and in messages. The job's "
        "machine name (its slug) is the file name without .yaml.",
        "name: Nightly PayPal audit",
        default_text="the slug",
        origin="process-control",
    ),
    Field(
        "description",
        text(multiline=True, max_length=4000),
        "text",
        "What the job does and whom to ask about it; several lines are fine.",
        "description: >\n  Downloads the PayPal audit files and loads them into the warehouse.",
        origin="process-control",
    ),
    Field(
        "command",
        parse_commands,
        "command line, or list of command lines",
        "What to run. The line is split into words like a shell would (quotes and backslashes "
        "work) but runs WITHOUT a shell: no globbing, pipes, redirection or $VARIABLES. A list "
        "runs its commands in sequence and stops at the first failure. Give full paths.",
        'command: /usr/local/bin/audit --fetch "/srv/audit files"',
        required=True,
        origin="process-control",
    ),
    Field(
        "slow_start_command",
        parse_commands,
        "command line, or list of command lines",
        "An alternative command for a first or catch-up run (`pcsystemd run-job --slow-start`).",
        "slow_start_command: /usr/local/bin/audit --fetch --all-history",
        default=(),
        origin="process-control",
    ),
    Field(
        "schedule",
        string_or_list(parse_schedule_expression, "cron expression"),
        "cron expression, or list of them",
        "When to run, as five-field Vixie cron (minute hour day-of-month month day-of-week; "
        "names like mon or jan work; when both day fields are restricted either one matching is "
        "enough). A list runs at the union of its expressions. Quote it: a leading '*' means "
        "something else in YAML. @daily and other aliases are not accepted. Without a schedule "
        "the job only runs by hand.",
        'schedule: "30 12 * * *"',
        default=(),
        default_text="none (runs only by hand)",
        origin="process-control",
    ),
    Field(
        "disabled",
        parse_boolean,
        "boolean",
        "Keep the job's service (it can still be started by hand) but generate no timer.",
        "disabled: true",
        default=False,
        default_text="false",
        origin="process-control",
    ),
    Field(
        "timeout",
        duration(bare_unit="m"),
        "duration (a bare number means minutes)",
        "How long a run may take before it is stopped and counted as failed. A bare number means "
        "minutes, as in process-control; text takes a unit: '90s', '15m', '2h', '1d'. 0 means no "
        "limit. The default is one day because a run that hangs forever holds its lock and "
        "silently stops every later run: a day is longer than any sane scheduled job, yet a hung "
        "one is noticed within a day. Set 0 explicitly for a job that must never be stopped.",
        "timeout: 30",
        default=86400,
        default_text="1d",
        origin="process-control",
    ),
    Field(
        "environment",
        parse_environment,
        "mapping of names to text",
        "Environment variables for the command. Numbers are passed as written; true/false must "
        "be quoted. Values may contain any printable character; names are letters, digits and "
        "'_'. Merged key by key with the global defaults.",
        "environment:\n  PYTHONPATH: /srv/audit/lib\n  LANG: C.UTF-8",
        default=(),
        default_text="none",
        origin="process-control",
    ),
    Field(
        "tag",
        _TAGS,
        "tag, or list of tags",
        "A group tag (same as `tags`; both may be given and are merged). Each tag becomes a "
        "pcsystemd-<tag>.target that starts and stops its jobs together.",
        "tag: payments",
        default=(),
        origin="process-control",
    ),
    Field(
        "tags",
        _TAGS,
        "tag, or list of tags",
        f"Group tags; each is {SLUG_RULE}.",
        "tags: [payments, nightly]",
        default=(),
        origin="process-control",
    ),
    Field(
        "allow_overtime",
        parse_boolean,
        "boolean",
        "process-control's overlap switch: true = a run that finds the previous one still going "
        "is skipped (overlap: skip); false = it fails (overlap: fail). Giving it together with a "
        "different `overlap` in the same file is an error.",
        "allow_overtime: true",
        default_text="false (overlap: fail)",
        origin="process-control",
    ),
    Field(
        "failure_threshold_for_mail",
        integer(1),
        "whole number, at least 1",
        "Send failure mail only after this many failed runs in a row.",
        "failure_threshold_for_mail: 3",
        default=1,
        default_text="1",
        origin="process-control",
    ),
    Field(
        "failmail",
        mapping(FAILMAIL_FIELDS),
        "mapping",
        "process-control's failure mail: from_address and to_address.",
        "failmail:\n  from_address: jobs@example.org\n  to_address: ops@example.org",
        default={"from_address": None, "to_address": ()},
        origin="process-control",
        subfields=FAILMAIL_FIELDS,
    ),
    Field(
        "user",
        parse_account,
        "user name",
        "The account the command runs as. It must be in the global config's allowed_users "
        "(the default user always is); root only with allow_root: true.",
        "user: batch",
        default_text="the global config's default_user (pcsystemd)",
    ),
    Field(
        "group",
        parse_account,
        "group name",
        "The group the command runs as; it must be in allowed_groups or be the name of an "
        "allowed user; root only with allow_root: true.",
        "group: batch",
        default_text="the user's primary group",
    ),
    Field(
        "working_directory",
        parse_absolute_path,
        "absolute path",
        "The directory the command starts in.",
        "working_directory: /srv/audit",
        default_text="/ (systemd's default)",
    ),
    Field(
        "lock",
        parse_slug_name,
        "lock group name",
        "Jobs with the same lock group never run at the same time (a run that finds the lock "
        f"held acts as `overlap` says). Same rules as a job's slug: {SLUG_RULE}.",
        "lock: payments-queue",
        default_text="the slug (the job never overlaps itself)",
    ),
    Field(
        "overlap",
        choice(Overlap),
        "skip, wait or fail",
        "What a run does when its lock is held: skip (log it and succeed), wait (up to "
        "overlap_wait, then fail), fail (count a failure: process-control's behaviour).",
        "overlap: wait",
        default=Overlap.FAIL,
        default_text="fail",
    ),
    Field(
        "overlap_wait",
        duration(bare_unit=None),
        "duration",
        "With overlap: wait, how long to wait for the lock.",
        "overlap_wait: 5m",
        default=600,
        default_text="10m",
    ),
    Field(
        "jitter",
        duration(bare_unit=None),
        "duration",
        "Start each run up to this much later, at random (RandomizedDelaySec=), so that many "
        "jobs on one schedule do not all start in the same second.",
        "jitter: 5m",
        default=0,
        default_text="0 (start on the minute)",
    ),
    Field(
        "catch_up",
        parse_boolean,
        "boolean",
        "Run once at boot if the machine was off when a run was due (Persistent=).",
        "catch_up: true",
        default=False,
        default_text="false",
    ),
    Field(
        "timezone",
        text(),
        "time zone name",
        "The time zone the schedule is read in, like Europe/Berlin or UTC.",
        "timezone: Europe/Berlin",
        default_text="the machine's time zone",
    ),
    Field(
        "stderr_is_failure",
        parse_boolean,
        "boolean",
        "Count a run that writes anything to standard error as failed, even if it exits 0 "
        "(early process-control's rule).",
        "stderr_is_failure: true",
        default=False,
        default_text="false",
    ),
    Field(
        "success_exit_codes",
        _EXIT_CODES,
        "exit code, or list of them (0 to 255)",
        "Exit codes that count as success.",
        "success_exit_codes: [0, 3]",
        default=(0,),
        default_text="[0]",
    ),
    Field(
        "unrecoverable_exit_codes",
        _EXIT_CODES,
        "exit code, or list of them (0 to 255)",
        "Exit codes after which retrying is pointless: no retry, and the circuit breaker trips at "
        "once.",
        "unrecoverable_exit_codes: [78]",
        default=(),
        default_text="none",
    ),
    Field(
        "retries",
        parse_retries,
        "number, or mapping",
        "Retry a failed run within the same activation (all attempts share the timeout). A "
        "number is the count; a mapping may also set delay, backoff and max_delay.",
        "retries:\n  count: 2\n  delay: 30s",
        default=Retries(),
        default_text="0 (no retries)",
        subfields=RETRIES_FIELDS,
    ),
    Field(
        "max_consecutive_failures",
        integer(0),
        "whole number",
        "After this many failed runs in a row the job stops being run until someone resets it "
        "(the circuit breaker). 0 turns the breaker off.",
        "max_consecutive_failures: 5",
        default=0,
        default_text="0 (off)",
    ),
    Field(
        "notify",
        mapping(NOTIFY_FIELDS),
        "mapping",
        "Failure notices: mail, webhook, on_recovery.",
        "notify:\n  mail: ops@example.org\n  on_recovery: true",
        default={"mail": (), "webhook": None, "on_recovery": False},
        subfields=NOTIFY_FIELDS,
    ),
    Field(
        "hardening",
        choice(Hardening),
        "none, basic or strict",
        "How strictly systemd sandboxes the job. basic: no new privileges, a private /tmp, "
        "/usr /boot /etc read-only, home directories read-only. strict: the whole file system "
        "read-only except read_write_paths, no home directories, no devices. none: only "
        "User=/Group=.",
        "hardening: strict",
        default=Hardening.BASIC,
        default_text="basic",
    ),
    Field(
        "read_write_paths",
        string_or_list(parse_absolute_path, "absolute path"),
        "absolute path, or list of them",
        "Paths the job may write even where hardening makes the file system read-only.",
        "read_write_paths: [/srv/audit/out]",
        default=(),
        default_text="none",
    ),
)

FIELDS_BY_KEY: dict[str, Field] = {field.key: field for field in FIELDS}


# ---------------------------------------------------------------------------------------------
# Parsing a whole file


def parse_fields(
    ck: Checker, data: Mapping[str, Any], fields: Sequence[Field], *, prefix: str = ""
) -> dict[str, Any]:
    """Parse every key of `data` with its field (INVALID where it failed); null means absent.

    Unknown keys are errors. Every value is parsed even after an error, so all are reported.
    """
    known = {field.key: field for field in fields}
    where = f" in '{prefix[:-1]}'" if prefix else ""
    marks = data if isinstance(data, MarkedMap) else None
    for key in data:
        if key not in known:
            mark = marks.key_mark(key) if marks is not None else _mark_of(ck)
            ck.error(mark, unknown_key_message(key, list(known), where))
    values: dict[str, Any] = {}
    for field in fields:
        value = data.get(field.key)
        if value is None:
            values[field.key] = field.default
            continue
        mark = marks.value_mark(field.key) if marks is not None else _mark_of(ck)
        values[field.key] = field.parse(ck, value, mark, prefix + field.key)
    return values


def _mark_of(ck: Checker) -> Mark:
    return Mark(ck.path, 0, 0)


def as_marked(value: Any, path: str) -> Any:
    """Plain Python data (a GlobalConfig built in code) as MarkedMap/MarkedList without lines."""
    if isinstance(value, MarkedMap | MarkedList) or not isinstance(value, Mapping | list):
        return value
    mark = Mark(path, 0, 0)
    if isinstance(value, list):
        marked_list = MarkedList(mark)
        for item in value:
            marked_list.add(as_marked(item, path), mark, None)
        return marked_list
    marked = MarkedMap(mark)
    for key, item in value.items():
        marked.set(str(key), as_marked(item, path), mark, mark, None)
    return marked


def merge_defaults(defaults: Mapping[str, Any], job: MarkedMap) -> MarkedMap:
    """The job over the global defaults, mappings merged recursively; the job's value wins.

    Lists are replaced, not appended. A null in the job removes an inherited value. Positions
    stay where each value was written, so an error in a default points into the global config.
    """
    base = as_marked(defaults, DEFAULT_CONFIG_PATH)
    result = MarkedMap(job.mark)
    for key in base:
        if key not in job:
            result.copy_entry(base, key)
            continue
        inherited, own = base[key], job[key]
        if own is None:
            continue
        if isinstance(inherited, MarkedMap) and isinstance(own, MarkedMap):
            merged = merge_defaults(inherited, own)
            result.set(key, merged, job.key_mark(key), job.value_mark(key), None)
        else:
            result.copy_entry(job, key)
    for key in job:
        if key not in base:
            result.copy_entry(job, key)
    return result


def check_defaults(defaults: MarkedMap, config: GlobalConfig) -> list[Diagnostic]:
    """Validate the global config's `defaults` key by key, so a typo there is found once."""
    ck = Checker(config_name(config), config)
    for key in defaults:
        field = FIELDS_BY_KEY.get(key)
        if field is None:
            ck.error(
                defaults.key_mark(key),
                unknown_key_message(key, list(FIELDS_BY_KEY), " in 'defaults'"),
            )
        elif defaults[key] is not None:
            field.parse(ck, defaults[key], defaults.value_mark(key), f"defaults.{key}")
    if "timezone" in defaults and isinstance(defaults["timezone"], str):
        _check_timezone(
            ck, defaults["timezone"], defaults.value_mark("timezone"), "defaults.timezone"
        )
    return ck.diagnostics


def _check_timezone(ck: Checker, timezone: str, mark: Mark, label: str) -> bool:
    # The schedule module owns the time zone rule (tzdata files, as systemd reads them).
    try:
        compile_schedule("0 0 * * *", timezone)
    except ScheduleError as error:
        ck.error(mark, f"'{label}': {error.message}")
        return False
    return True


def _from_job(ck: Checker, data: MarkedMap, key: str) -> bool:
    """Whether the job file itself set `key` (rather than the global defaults)."""
    return key in data and data.value_mark(key).path == ck.path


def build_job(
    data: MarkedMap,
    *,
    path: Path,
    slug: str,
    config: GlobalConfig,
    fingerprint: str | None = None,
) -> tuple[Job | None, list[Diagnostic]]:
    """Validate one parsed job file (merged over the defaults) and build its Job.

    `fingerprint`: of the file's bytes it was parsed from (Job.source_fingerprint)."""
    if config.defaults:
        data = merge_defaults(config.defaults, data)
    ck = Checker(str(path), config, context=f"inherited from 'defaults' by job {slug}")
    values = parse_fields(ck, data, FIELDS)
    misspelt = {closest_key(key, list(FIELDS_BY_KEY)) for key in data if key not in FIELDS_BY_KEY}
    if data.get("command") is None and "command" not in misspelt:
        ck.error(
            data.mark if data.mark.line else Mark(str(path), 1, 1),
            "missing required key 'command'; add the command line to run, e.g. "
            "command: /usr/local/bin/backup --full",
        )

    def valid(*keys: str) -> bool:
        return all(values[key] is not INVALID for key in keys)

    # Checks across keys, each run when the keys it needs are valid on their own.
    user = values["user"] or config.default_user
    if valid("user"):
        _check_account(ck, data, "user", user, allowed=config.user_allowed(user), is_user=True)
    group = values["group"]
    if valid("group") and group is not None:
        _check_account(ck, data, "group", group, allowed=config.group_allowed(group), is_user=False)
    overlap = _overlap(ck, data, values) if valid("overlap", "allow_overtime") else Overlap.FAIL
    timezone = values["timezone"]
    schedules: list[Schedule] = []
    if valid("timezone") and timezone is not None:
        timezone_mark = data.value_mark("timezone")
        if not _check_timezone(ck, timezone, timezone_mark, "timezone"):
            timezone = None  # still check the expressions themselves
    if valid("schedule"):
        schedules = _compile_schedules(ck, values["schedule"], timezone)
    if valid("success_exit_codes", "unrecoverable_exit_codes"):
        _check_exit_codes(ck, data, values)
    if ck.failed:
        return None, sorted(ck.diagnostics)
    failmail, notify = values["failmail"], values["notify"]
    job = Job(
        slug=slug,
        source_path=path,
        source_fingerprint=fingerprint,
        name=values["name"] or slug,
        description=values["description"],
        commands=values["command"],
        slow_start_commands=values["slow_start_command"],
        schedules=tuple(schedules),
        disabled=values["disabled"],
        timeout_seconds=values["timeout"],
        environment=values["environment"],
        tags=tuple(dict.fromkeys(values["tag"] + values["tags"])),
        user=user,
        group=values["group"],
        working_directory=values["working_directory"],
        lock_group=values["lock"] or slug,
        overlap=overlap,
        overlap_wait_seconds=values["overlap_wait"],
        jitter_seconds=values["jitter"],
        catch_up=values["catch_up"],
        timezone=timezone,
        stderr_is_failure=values["stderr_is_failure"],
        success_exit_codes=values["success_exit_codes"],
        unrecoverable_exit_codes=values["unrecoverable_exit_codes"],
        retries=values["retries"],
        max_consecutive_failures=values["max_consecutive_failures"],
        failure_threshold_for_mail=values["failure_threshold_for_mail"],
        failmail=Failmail(failmail["from_address"], failmail["to_address"]),
        notify=Notify(notify["mail"], notify["webhook"], notify["on_recovery"]),
        hardening=values["hardening"],
        read_write_paths=values["read_write_paths"],
    )
    return job, sorted(ck.diagnostics)


def _check_account(
    ck: Checker, data: MarkedMap, key: str, name: str, *, allowed: bool, is_user: bool
) -> None:
    if allowed:
        return
    mark = data.value_mark(key) if key in data else data.mark
    where = config_name(ck.config)
    if name in ("root", "0"):
        ck.error(
            mark,
            f"'{key}' root is not allowed: jobs run as root only when {where} says "
            "allow_root: true",
        )
    elif is_user:
        allowed_users = ", ".join(ck.config.allowed_users) or "none"
        ck.error(
            mark,
            f"user {name!r} is not allowed to run jobs; add it to allowed_users in {where} "
            f"(allowed now: {allowed_users})",
        )
    else:
        allowed_groups = ", ".join(ck.config.allowed_groups) or "none"
        ck.error(
            mark,
            f"group {name!r} is not allowed; add it to allowed_groups in {where} "
            f"(allowed now: {allowed_groups}, or the name of an allowed user)",
        )


def _overlap(ck: Checker, data: MarkedMap, values: Mapping[str, Any]) -> Overlap:
    """`overlap`, or what process-control's `allow_overtime` means when it is given."""
    overlap: Overlap = values["overlap"]
    allow_overtime = values["allow_overtime"]
    if allow_overtime is not None:
        implied = Overlap.SKIP if allow_overtime else Overlap.FAIL
        if "overlap" not in data:
            overlap = implied
        elif overlap is not implied:
            job_sets_overtime = _from_job(ck, data, "allow_overtime")
            if job_sets_overtime == _from_job(ck, data, "overlap"):
                written = "true" if allow_overtime else "false"
                ck.error(
                    data.value_mark("allow_overtime"),
                    f"allow_overtime: {written} means overlap: {implied}, but overlap: "
                    f"{overlap} is set on line {data.value_mark('overlap').line}; "
                    "remove allow_overtime (overlap says it all)",
                )
            elif job_sets_overtime:
                overlap = implied  # the job's own key beats the inherited one
    if overlap is not Overlap.WAIT and _from_job(ck, data, "overlap_wait"):
        ck.error(
            data.value_mark("overlap_wait"),
            f"'overlap_wait' only applies with overlap: wait (this job has overlap: {overlap}); "
            "remove it or set overlap: wait",
        )
    return overlap


def _compile_schedules(
    ck: Checker, expressions: Sequence[tuple[str, Mark]], timezone: str | None
) -> list[Schedule]:
    schedules: list[Schedule] = []
    seen: set[str] = set()
    for expression, mark in expressions:
        if expression in seen:
            continue
        seen.add(expression)
        try:
            schedules.append(compile_schedule(expression, timezone))
        except ScheduleError as error:
            ck.error(mark.shifted(error.column), f"'schedule' {show(expression)}: {error.message}")
    return schedules


def _check_exit_codes(ck: Checker, data: MarkedMap, values: Mapping[str, Any]) -> None:
    both = sorted(set(values["success_exit_codes"]) & set(values["unrecoverable_exit_codes"]))
    if both:
        codes = ", ".join(str(code) for code in both)
        ck.error(
            data.value_mark("unrecoverable_exit_codes"),
            f"exit code {codes} is both a success and unrecoverable; "
            "remove it from one of the two lists",
        )


# ---------------------------------------------------------------------------------------------
# Documentation from the same table


def iter_fields(fields: Sequence[Field] = FIELDS, prefix: str = "") -> Iterator[tuple[str, Field]]:
    """Every field with its dotted key (`retries.delay`), nested ones after their parent."""
    for field in fields:
        yield prefix + field.key, field
        yield from iter_fields(field.subfields, f"{prefix}{field.key}.")


def _origin_text(field: Field) -> str:
    return "process-control" if field.origin == "process-control" else "pcsystemd"


def reference_markdown() -> str:
    """docs/job-format.md: the job file reference, generated from FIELDS."""
    from pcsystemd.config import CONFIG_FIELDS  # config imports this module

    lines = [
        "# Job file reference",
        "",
        "<!-- Generated from the field tables in pcsystemd/schema.py and pcsystemd/config.py"
        " by `pcsystemd schema`; do not edit. Regenerate with"
        " `PCSYSTEMD_REGENERATE=1 .venv/bin/pytest tests/unit/test_schema.py`. -->",
        "",
        "One job per file: `<job_directory>/<slug>.yaml` (default job directory "
        "`/etc/pcsystemd/jobs`). The slug, the job's machine name, is the file name without "
        f"`.yaml`: {SLUG_RULE}. It names the units (`pcsystemd-<slug>.service`, "
        "`pcsystemd-<slug>.timer`). Files ending in `.yml` are reported, not read; hidden files "
        "and editor or dpkg leftovers (`*~`, `.*.swp`, `*.dpkg-*`) are ignored.",
        "",
        "Every key of process-control's job files is accepted with the same meaning, so an "
        'existing job directory compiles unchanged. Unknown keys are errors (with a "did you '
        'mean"). A key set to null (`key:` with nothing after it, or `~`) counts as not set: in '
        "a job it removes a value inherited from the global `defaults`.",
        "",
        "Errors read `path:line:col: error: what is wrong; how to fix it`. Every error of every "
        "file is reported, and an invalid job never stops the others from compiling.",
        "",
        "## Audit",
        "",
        "Jobs are only read from the job directory: a symlink in it must not lead out of it, and "
        "the directory, the directories above it and every job file must be owned by root (or a "
        "user in `trusted_owners`) and not be writable by group or others; otherwise the error "
        "names the path, its owner and mode and the `chown`/`chmod` that fixes it. A problem "
        "with the job directory itself stops every job (none of them can be trusted). Files "
        "named explicitly (`pcsystemd validate PATH`) outside the job directory are validated "
        "without the ownership audit, so a developer can check a checkout before review; "
        "pcsystemd only ever runs jobs from the job directory.",
        "",
        "The YAML is read safely (plain data only) and within bounds: 1 MiB per file, "
        "20 levels of nesting, 100000 values after aliases are expanded. Duplicate keys are "
        "errors.",
        "",
        "## Keys",
        "",
        "| key | type | default | meaning from |",
        "|---|---|---|---|",
    ]
    for key, field in iter_fields():
        required = " (required)" if field.required else ""
        lines.append(
            f"| [`{key}`](#{key.replace('.', '')}) | {_markdown(field.type_text)}{required} | "
            f"{_markdown(field.default_text)} | {_origin_text(field)} |"
        )
    lines.append("")
    for key, field in iter_fields():
        level = "###" if "." not in key else "####"
        lines += [f"{level} {key}", "", _markdown(field.help), ""]
        default = _markdown(field.default_text)
        lines.append(f"Type: {_markdown(field.type_text)}. Default: {default}.")
        if field.required:
            lines[-1] += " Required."
        lines += ["", "```yaml", field.example, "```", ""]
    lines += [
        "## Global config",
        "",
        "`/etc/pcsystemd/pcsystemd.yaml`, or the file named by `--config` or "
        "`$PCSYSTEMD_CONFIG`. Every key is optional and an empty or missing default file means "
        "all defaults; a file named explicitly must exist. Unknown keys are errors.",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for config_field in CONFIG_FIELDS:
        lines.append(
            f"| `{config_field.key}` | {_markdown(config_field.type_text)} | "
            f"{_markdown(config_field.default_text)} | {_markdown(config_field.help)} |"
        )
    lines.append("")
    return "\n".join(lines)


def _markdown(text: str) -> str:
    """Text for Markdown: `<slug>` outside code spans would be read as an HTML tag."""
    parts = text.split("`")
    for index in range(0, len(parts), 2):
        parts[index] = parts[index].replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
    return "`".join(parts)


def _comment(paragraph: str, width: int = 88) -> list[str]:
    import textwrap  # documentation only

    return textwrap.wrap(paragraph, width - 2, initial_indent="# ", subsequent_indent="# ")


SAMPLE_ACTIVE = ("name", "command", "schedule")


def sample_job_yaml() -> str:
    """A commented sample job file: the required keys set, every other key commented out."""
    lines = _comment(
        "A pcsystemd job. Save it as /etc/pcsystemd/jobs/<slug>.yaml; the slug (the file name "
        f"without .yaml) is {SLUG_RULE}. Only `command` is required. The keys after the first "
        "three are commented out with an example value; remove the leading '#' to use one."
    )
    for field in FIELDS:
        lines.append("")
        lines += _comment(f"{field.key}: {field.help} Default: {field.default_text}.")
        for example_line in field.example.splitlines():
            lines.append(example_line if field.key in SAMPLE_ACTIVE else f"#{example_line}")
    return "\n".join(lines) + "\n"
