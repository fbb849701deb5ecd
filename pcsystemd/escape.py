"""Escaping for systemd unit-file syntax (systemd.syntax(7), systemd.unit(5) "Specifiers").

Every value a job file contributes to a unit goes through one of these functions (they are the
jinja2 filters of the renderer), so no job can inject a directive, a line, or a specifier.
Control characters are refused, never escaped: the schema already rejects them with a
positioned error, and a refusal here is the last line of defence.
"""

from __future__ import annotations

import re

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
# Characters that may appear in an ExecStart= word without quoting.
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


class UnsafeValueError(ValueError):
    """A value that cannot be represented safely in a unit file."""


def _refuse_control_characters(value: str) -> str:
    match = _CONTROL_CHARACTERS.search(value)
    if match:
        raise UnsafeValueError(
            f"control character {match.group()!r} at offset {match.start()} in {value!r} "
            "cannot appear in a unit file"
        )
    return value


def _balance_trailing_backslashes(value: str) -> str:
    # systemd joins a line that ends in an unpaired backslash with the next line; an even
    # run of backslashes at the end is literal text, so pair the last one up.
    run = len(value) - len(value.rstrip("\\"))
    return value + "\\" if run % 2 else value


def specifiers(value: str) -> str:
    """Make `%` literal: systemd expands `%n`, `%i`, ... in most settings."""
    return _refuse_control_characters(value).replace("%", "%%")


def unit_text(value: str) -> str:
    """A free-text setting such as Description=: literal `%`, no line continuation."""
    return _balance_trailing_backslashes(specifiers(value))


def comment(value: str) -> str:
    """Text inside a `#` comment line: one line, nothing else to escape."""
    return _refuse_control_characters(value)


def quoted(value: str) -> str:
    """A double-quoted word as systemd.syntax(7) defines it: C escapes for `\\` and `\"`."""
    escaped = specifiers(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def environment_assignment(name: str, value: str) -> str:
    """One `Environment=` word: `"NAME=value"`, literal `%`, `\\`, `"` and `$`.

    Environment= does not expand `$` (only ExecStart= does), so `$` needs no escape here.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise UnsafeValueError(f"{name!r} is not a valid environment variable name")
    return quoted(f"{name}={value}")


def exec_word(value: str) -> str:
    """One word of an ExecStart= command line: literal `%` and `$`, quoted when needed."""
    _refuse_control_characters(value)
    if value == ";":  # a lone `;` separates commands, even when quoted
        return "\\;"
    # Prefixes such as `-` or `+` only mean something on the executable, which exec_command
    # requires to be an absolute path, so arguments may start with them.
    if _PLAIN_WORD.fullmatch(value):
        return value.replace("%", "%%")
    return quoted(value).replace("$", "$$")


def exec_command(argv: list[str] | tuple[str, ...]) -> str:
    """A whole ExecStart= command line; the first word must be an absolute path."""
    if not argv or not argv[0].startswith("/"):
        raise UnsafeValueError(f"command {argv!r} must start with an absolute path")
    return " ".join(exec_word(word) for word in argv)


def path(value: str) -> str:
    """An absolute path setting such as WorkingDirectory= (unquoted; the schema refuses spaces
    where a setting would split on them)."""
    if not value.startswith("/"):
        raise UnsafeValueError(f"{value!r} is not an absolute path")
    if "\\" in value:
        raise UnsafeValueError(f"backslash in path {value!r} is not supported")
    return specifiers(value)


def path_list(values: list[str] | tuple[str, ...]) -> str:
    """A space-separated list of absolute paths (ReadWritePaths=): each word quoted."""
    return " ".join(quoted(path(value)) for value in values)
