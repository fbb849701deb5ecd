"""Escaping for systemd unit-file syntax (systemd.syntax(7), systemd.unit(5) "Specifiers").

Every value a job file contributes to a unit goes through one of these functions (they are the
jinja2 filters of the renderer), so no job can inject a directive, a line, or a specifier.
Control characters are refused, never escaped: the schema already rejects them with a
positioned error, and a refusal here is the last line of defence.

Each function is for one kind of setting; tests/system/test_escaping_roundtrip.py proves against
systemd 252 that what it writes is read back exactly.
"""

from __future__ import annotations

import re

# why: C1 controls (U+0080-U+009F) are control characters too (U+009B is an 8-bit CSI for a
# terminal showing `systemctl status`), and the schema refuses them; the last line of defence
# must not be weaker than the first. Lone surrogates come from undecodable file names
# (surrogateescape): systemd ignores a setting that is not valid UTF-8, and writing the file
# would fail with UnicodeEncodeError, so they are refused with a clear message instead.
# U+2028/U+2029 are deliberately allowed: systemd reads them back exactly (proven by the
# round trip); only the schema refuses them, for the sake of log lines.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATES = re.compile(r"[\ud800-\udfff]")
# Characters that may appear in an ExecStart= word without quoting.
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


class UnsafeValueError(ValueError):
    """A value that cannot be represented safely in a unit file."""


def _refuse_control_characters(value: str, allowed: str = "") -> str:
    for match in _CONTROL_CHARACTERS.finditer(value):
        if match.group() not in allowed:
            raise UnsafeValueError(
                f"control character {match.group()!r} at offset {match.start()} in {value!r} "
                "cannot appear in a unit file"
            )
    surrogate = _SURROGATES.search(value)
    if surrogate:
        raise UnsafeValueError(
            f"{value!r} is not valid Unicode (undecodable byte at offset {surrogate.start()}) "
            "and cannot appear in a unit file"
        )
    return value


def _end_line_safely(value: str) -> str:
    # why: systemd joins a line that ends in an unpaired backslash with the next line (and the
    # lines after any comment block), which would let a value swallow the next directive.
    # Pairing the backslash up (the old fix) keeps the line safe but systemd then reads two
    # backslashes, because Description= and comments know no escapes. A space after the
    # backslash also ends the continuation scan (the backslash escapes the space), and systemd
    # strips trailing whitespace from the value, so it reads back exactly one backslash.
    run = len(value) - len(value.rstrip("\\"))
    return value + " " if run % 2 else value


def specifiers(value: str) -> str:
    """Make `%` literal: systemd expands `%n`, `%i`, ... in most settings."""
    return _refuse_control_characters(value).replace("%", "%%")


def unit_text(value: str) -> str:
    """A free-text setting such as Description=: literal `%`, no line continuation."""
    return _end_line_safely(specifiers(value))


def comment(value: str) -> str:
    """Text inside a `#` comment line: one line, nothing else to escape."""
    # why: a tab is allowed because the schema allows tabs in multi-line `description`, whose
    # lines become comments; a tab cannot end or continue a line, and systemd ignores comments.
    # The trailing-backslash guard costs nothing: systemd 252 never continues a comment line,
    # but older parsers did, and the line after a comment may be a directive.
    return _end_line_safely(_refuse_control_characters(value, allowed="\t"))


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


def _executable(value: str) -> str:
    # why: systemd never expands `$` in the program to execute (systemd.service(5): "the first
    # argument may not be a variable"), so `$$` there would name a different file; `%` is
    # still a specifier.
    if _PLAIN_WORD.fullmatch(value):
        return value.replace("%", "%%")
    return quoted(value)


def exec_word(value: str) -> str:
    """One argument of an ExecStart= command line: literal `%` and `$`, quoted when needed."""
    _refuse_control_characters(value)
    if value == ";":  # a lone unquoted `;` separates commands; `\;` is the documented literal
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
    return " ".join([_executable(argv[0]), *(exec_word(word) for word in argv[1:])])


def _absolute(value: str) -> str:
    if not value.startswith("/"):
        raise UnsafeValueError(f"{value!r} is not an absolute path")
    if "\\" in value:
        raise UnsafeValueError(f"backslash in path {value!r} is not supported")
    return value


def path(value: str) -> str:
    """An absolute path setting that takes the rest of the line, such as WorkingDirectory=.

    Unquoted, so never for a setting that splits on spaces (a list, a command line).
    """
    # why: these settings take the rest of the line unquoted and systemd strips trailing
    # whitespace from it, so `/srv/x ` would silently become `/srv/x`: refuse, as nothing
    # can write it.
    if _absolute(value).endswith(" "):
        raise UnsafeValueError(
            f"path {value!r} ends in a space, which systemd strips from an unquoted setting"
        )
    return specifiers(value)


def path_list(values: list[str] | tuple[str, ...]) -> str:
    """A space-separated list of absolute paths (ReadWritePaths=): each word quoted."""
    # why: not through path(): quoted() escapes `%` itself, and path() had escaped it already,
    # so systemd read `%%` back where the job said `%`. Quoted words also keep a trailing
    # space, which path() must refuse.
    return " ".join(quoted(_absolute(value)) for value in values)
