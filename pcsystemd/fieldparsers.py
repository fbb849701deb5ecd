"""How a job key's value is read: `Checker`, `Field`, the messages, and the shared parsers.

A parser takes (checker, value, mark of the value, label), reports each problem into the `Checker`
and returns `INVALID`, so parsing never stops at the first problem and a file's every error is
found in one pass. `parse_fields` reads a mapping by a table of `Field`s. The tables themselves
are in `schema` (job keys) and `config` (global settings), which both build on this module;
keeping the machinery apart leaves `schema` to the table and what is generated from it. No I/O.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from pcsystemd.errors import Diagnostic
from pcsystemd.model import GlobalConfig
from pcsystemd.yamlload import Mark, MarkedList, MarkedMap

# typing is imported for the type checker only: the runtime shim (`pcsystemd run-job`)
# reaches this module when it reads a job file itself, and typing alone costs it
# milliseconds. mypy knows the idiom.
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


# ---------------------------------------------------------------------------------------------
# Reading a mapping by its fields (a job file, a nested key, the global config)


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
