"""Adversarial values through pcsystemd/escape.py, read back by a model of systemd's parser.

The model below follows systemd.syntax(7), systemd.unit(5) "Specifiers" and systemd.service(5)
"Command lines" as systemd 252 (Debian 12) implements them: lines end at LF, CR or NUL; a line
ending in an unpaired backslash continues on the next line that is not a comment; comment lines
are never continued; whitespace around a value is stripped; `%%` is the only literal specifier;
quoted words take C escapes (`\\\\`, `\\"`); ExecStart= separates commands at a lone unquoted
`;`, expands `$$`, `${NAME}` and `$NAME` in arguments but never in the program path. It is strict
where systemd would guess: a quote inside a word, an unknown escape, a stray `%` or `$` fail.
tests/system/test_escaping_roundtrip.py proves the same values against the real systemd.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pcsystemd import escape
from pcsystemd.jobbuild import build_job
from pcsystemd.model import GlobalConfig, Job
from pcsystemd.render import RenderError, render_all
from pcsystemd.yamlload import parse_yaml

WHITESPACE = " \t\n\r"
_LINE_END = re.compile(r"\r\n|[\n\r\0]")
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "s": " ",
}
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_BARE_VARIABLE = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*")


class ModelError(AssertionError):
    """The model of systemd found something it would reject, warn about or guess at."""


# ---------------------------------------------------------------------------------------------
# The model of systemd's unit-file parser


def assignments(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of every assignment, as systemd's config parser reads the file."""
    result: list[tuple[str, str, str]] = []
    section = ""
    continuation: str | None = None
    for raw in _LINE_END.split(text):
        if raw.lstrip(WHITESPACE)[:1] in ("#", ";"):
            continue  # comments are dropped, also in the middle of a continuation
        line = raw if continuation is None else continuation + raw
        escaped = False
        for character in line:
            escaped = not escaped if character == "\\" else False
        if escaped:
            continuation = line[:-1] + " "
            continue
        continuation = None
        line = line.strip(WHITESPACE)
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise ModelError(f"invalid section header {line!r}")
            section = line[1:-1]
            continue
        key, equals, value = line.partition("=")
        if not equals:
            raise ModelError(f"missing '=' in {line!r}")
        result.append((section, key.strip(WHITESPACE), value.strip(WHITESPACE)))
    if continuation is not None:
        raise ModelError(f"file ends inside a continued line: {continuation!r}")
    return result


def settings_of(text: str) -> dict[str, list[str]]:
    """Every value of each `Section.Key`, in file order."""
    found: dict[str, list[str]] = {}
    for section, key, value in assignments(text):
        found.setdefault(f"{section}.{key}", []).append(value)
    return found


def resolve_specifiers(value: str) -> str:
    """`%%` → `%`; any other specifier would expand to something else, so it is an error."""
    out: list[str] = []
    position = 0
    while position < len(value):
        character = value[position]
        if character != "%":
            out.append(character)
            position += 1
            continue
        following = value[position + 1 : position + 2]
        if following != "%":
            raise ModelError(f"specifier %{following} at offset {position} in {value!r}")
        out.append("%")
        position += 2
    return "".join(out)


def _escape_at(text: str, position: int, c_escapes: bool) -> tuple[str, int]:
    """The character a backslash at text[position - 1] stands for, and where reading goes on."""
    if position >= len(text):
        raise ModelError(f"backslash at the end of {text!r}")
    character = text[position]
    if not c_escapes:
        return character, position + 1
    if character not in _SIMPLE_ESCAPES:
        raise ModelError(f"escape \\{character} in {text!r} is not one pcsystemd writes")
    return _SIMPLE_ESCAPES[character], position + 1


@dataclass(frozen=True)
class Word:
    text: str
    raw: str  # as written, quotes and escapes included


def words(value: str, *, c_escapes: bool, command_line: bool = False) -> list[Word]:
    """systemd's extract_first_word with EXTRACT_UNQUOTE (and EXTRACT_CUNESCAPE), strictly."""
    result: list[Word] = []
    position = 0
    while True:
        while position < len(value) and value[position] in WHITESPACE:
            position += 1
        if position >= len(value):
            return result
        start = position
        if command_line and re.match(r"\\;(\s|$)", value[position:]):
            result.append(Word(";", "\\;"))  # the documented literal semicolon
            position += 2
            continue
        out: list[str] = []
        while position < len(value) and value[position] not in WHITESPACE:
            character = value[position]
            if character in "\"'":
                if position != start:
                    raise ModelError(f"quote inside a word of {value!r}")
                position += 1
                while True:
                    if position >= len(value):
                        raise ModelError(f"unterminated quote in {value!r}")
                    inner = value[position]
                    if inner == character:
                        position += 1
                        break
                    if inner == "\\":
                        unescaped, position = _escape_at(value, position + 1, c_escapes)
                        out.append(unescaped)
                        continue
                    out.append(inner)
                    position += 1
                if position < len(value) and value[position] not in WHITESPACE:
                    raise ModelError(f"closing quote not followed by whitespace in {value!r}")
            elif character == "\\":
                unescaped, position = _escape_at(value, position + 1, c_escapes)
                out.append(unescaped)
            else:
                out.append(character)
                position += 1
        result.append(Word("".join(out), value[start:position]))


def expand_argument(word: Word) -> list[str]:
    """ExecStart= `$` rules for one argument with an empty environment, strictly."""
    if _BARE_VARIABLE.fullmatch(word.text):
        raise ModelError(f"{word.raw!r} is replaced by a variable split into words")
    out: list[str] = []
    position = 0
    while position < len(word.text):
        if word.text.startswith("$$", position):
            out.append("$")
            position += 2
        elif word.text[position] == "$":
            raise ModelError(f"unescaped $ at offset {position} of {word.text!r}")
        else:
            out.append(word.text[position])
            position += 1
    return ["".join(out)]


def command_lines(value: str) -> list[list[str]]:
    """ExecStart=: the argv of each command, after specifiers, unquoting and `$` expansion."""
    commands: list[list[Word]] = [[]]
    for word in words(value, c_escapes=True, command_line=True):
        if word.raw == ";":
            commands.append([])
        else:
            commands[-1].append(word)
    result: list[list[str]] = []
    for command in commands:
        if not command:
            raise ModelError(f"empty command in {value!r}")
        executable = resolve_specifiers(command[0].text)
        if executable[:1] in ("-", "@", ":", "+", "!"):
            raise ModelError(f"executable {executable!r} starts with a prefix character")
        argv = [executable]
        for word in command[1:]:
            argv += expand_argument(Word(resolve_specifiers(word.text), word.raw))
        result.append(argv)
    return result


# ---------------------------------------------------------------------------------------------
# The model itself, checked on hand-written lines whose meaning systemd.syntax(7) spells out


def test_model_reads_the_documented_examples() -> None:
    assert settings_of("[A]\nK=value 2 \\\n   value 2 continued\n")["A.K"] == [
        "value 2     value 2 continued"
    ]
    assert settings_of("[A]\nK=v\\\n# ignored\n; also\n  more\n")["A.K"] == ["v   more"]
    assert settings_of("[A]\n# comment\\\nK=kept\n")["A.K"] == ["kept"]
    assert [w.text for w in words('"a b" \'c\\\\d\' e\\"f', c_escapes=True)] == [
        "a b",
        "c\\d",
        'e"f',
    ]
    assert command_lines('/bin/echo one ; /bin/echo "two two" \\;') == [
        ["/bin/echo", "one"],
        ["/bin/echo", "two two", ";"],
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[A]\nK=a\\\nInjected=1\n", {"A.K": ["a Injected=1"]}),
        ("[A]\nK=a\\\\\nNext=1\n", {"A.K": ["a\\\\"], "A.Next": ["1"]}),
        ("[A]\nK=a\rInjected=1\n", {"A.K": ["a"], "A.Injected": ["1"]}),
        ("[A]\nK=a\0Injected=1\n", {"A.K": ["a"], "A.Injected": ["1"]}),
    ],
)
def test_model_sees_line_ends_and_continuations(text: str, expected: dict[str, list[str]]) -> None:
    assert settings_of(text) == expected


@pytest.mark.parametrize(
    ("function", "value", "problem"),
    [
        (resolve_specifiers, "%n", "specifier"),
        (resolve_specifiers, "100%", "specifier"),
        (command_lines, "/bin/x $HOME", "split into words"),
        (command_lines, '/bin/x "${X}"', r"unescaped \$"),
        (command_lines, "-/bin/x", "prefix"),
        (command_lines, '/bin/x "a"b', "closing quote"),
        (command_lines, "/bin/x ; ;", "empty command"),
    ],
)
def test_model_refuses_what_systemd_would_change(
    function: Callable[[str], object], value: str, problem: str
) -> None:
    with pytest.raises(ModelError, match=problem):
        function(value)


# ---------------------------------------------------------------------------------------------
# Round trips through the model

# Everything that means something to systemd, a few letters, and non-ASCII that Python or
# other tools treat as line ends or whitespace (U+0085 is not here: it is a C1 control).
HOSTILE = "%$\"'\\;#[]=-+@!:~{} nx/é😀\u2028\u2029\u00a0\ufeff"
hostile_text = st.text(alphabet=HOSTILE, max_size=24)
ADVERSARIAL_VALUES = [
    "%n",
    "%%",
    "100%",
    "$HOME",
    "${X}",
    "$$",
    '"quoted"',
    "'single'",
    "it's",
    '"',
    "\\",
    "a\\",
    "a\\\\",
    "a\\\\\\",
    "\\n",
    " ;",
    ";",
    "; /usr/bin/false",
    "-rf",
    "+x",
    "@x",
    "!x",
    ":x",
    "é 😀 \u2028 \u2029",
    "x\nInjected=yes",
    "[Service]",
]
SAFE_VALUES = [value for value in ADVERSARIAL_VALUES if "\n" not in value]


@given(hostile_text)
@example("trailing backslash\\")
@example("two\\\\")
@example("backslash then space\\ ")
@settings(max_examples=300)
def test_unit_text_reads_back_exactly(value: str) -> None:
    text = f"[Unit]\nDescription=job: {escape.unit_text(value)}\nSourcePath=/after\n"
    read = settings_of(text)
    # systemd strips the value's trailing whitespace; the schema strips names already.
    assert [resolve_specifiers(v) for v in read["Unit.Description"]] == [
        f"job: {value}".rstrip(WHITESPACE)
    ]
    assert read["Unit.SourcePath"] == ["/after"]


@given(st.text(alphabet=HOSTILE + "\t", max_size=24))
@example("ends in a backslash\\")
@example("Injected=yes")
def test_comment_hides_everything_and_swallows_nothing(value: str) -> None:
    text = f"[Unit]\n# {escape.comment(value)}\nDescription=after\n"
    assert settings_of(text) == {"Unit.Description": ["after"]}


@given(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True), hostile_text)
@example("A", "x\\")
@example("B", "")
@example("C", "  padded  ")
@settings(max_examples=300)
def test_environment_assignment_reads_back_exactly(name: str, value: str) -> None:
    line = escape.environment_assignment(name, value)
    read = settings_of(f"[Service]\nEnvironment={line}\nUser=after\n")
    (environment,) = read["Service.Environment"]
    assert [resolve_specifiers(w.text) for w in words(environment, c_escapes=True)] == [
        f"{name}={value}"
    ]
    assert read["Service.User"] == ["after"]


@given(
    hostile_text.map(lambda text: "/opt/" + text.replace("\\", "")),
    st.lists(hostile_text, max_size=5),
)
@example("/usr/bin/pcsystemd", [";", "$HOME", "${X}", "$$", "%n", "", "-x", "a\\"])
@example("/opt/a$b %n/pc", ["run-job", "slug"])
@settings(max_examples=300)
def test_exec_command_reads_back_exactly(executable: str, arguments: list[str]) -> None:
    argv = [executable, *arguments]
    read = settings_of(f"[Service]\nExecStart={escape.exec_command(argv)}\nUser=after\n")
    (line,) = read["Service.ExecStart"]
    assert command_lines(line) == [argv]
    assert read["Service.User"] == ["after"]


@given(hostile_text.filter(lambda text: "\\" not in text and not text.endswith(" ")))
@example("my jobs/100%/$HOME/\"q\"/'s'/;/é😀\u2028")
def test_path_reads_back_exactly(tail: str) -> None:
    value = "/srv/" + tail
    read = settings_of(f"[Service]\nWorkingDirectory={escape.path(value)}\nUser=after\n")
    assert [resolve_specifiers(v) for v in read["Service.WorkingDirectory"]] == [value]
    assert read["Service.User"] == ["after"]


@given(st.lists(hostile_text.map(lambda text: "/srv/" + text.replace("\\", "")), max_size=4))
@example(["/srv/a b", "/srv/trailing ", '/srv/"q"', "/srv/100%n", "/srv/$HOME;"])
def test_path_list_reads_back_exactly(values: list[str]) -> None:
    read = settings_of(f"[Service]\nReadWritePaths={escape.path_list(values)}\nUser=after\n")
    (line,) = read["Service.ReadWritePaths"]
    # ReadWritePaths= unquotes without C escapes, then resolves specifiers in each word.
    assert [resolve_specifiers(w.text) for w in words(line, c_escapes=False)] == values


# ---------------------------------------------------------------------------------------------
# Refusals: the last line of defence

REFUSED = [chr(code) for code in (*range(0x00, 0x20), *range(0x7F, 0xA0))] + ["\ud800", "\udfff"]
FILTERS: list[Callable[[str], object]] = [
    escape.specifiers,
    escape.unit_text,
    escape.comment,
    escape.quoted,
    lambda value: escape.environment_assignment("NAME", value),
    lambda value: escape.exec_command(["/usr/bin/x", value]),
    lambda value: escape.exec_command([f"/usr/bin/{value}"]),
    lambda value: escape.path(f"/srv/{value}"),
    lambda value: escape.path_list([f"/srv/{value}"]),
]


@pytest.mark.parametrize("character", REFUSED, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize("function", range(len(FILTERS)))
def test_control_characters_and_surrogates_are_refused(character: str, function: int) -> None:
    if FILTERS[function] is escape.comment and character == "\t":
        assert escape.comment(f"a{character}b") == "a\tb"
        return
    with pytest.raises(escape.UnsafeValueError, match=r"control character|not valid Unicode"):
        FILTERS[function](f"a{character}b")


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        (lambda: escape.path("/srv/trailing "), "ends in a space"),
        (lambda: escape.path("srv/relative"), "absolute"),
        (lambda: escape.path("-/srv/prefixed"), "absolute"),
        (lambda: escape.path("/srv/back\\slash"), "backslash"),
        (lambda: escape.path_list(["/srv/ok", "relative"]), "absolute"),
        (lambda: escape.exec_command(["-/usr/bin/x"]), "absolute"),
        (lambda: escape.exec_command(["+/usr/bin/x"]), "absolute"),
        (lambda: escape.exec_command([]), "absolute"),
        (lambda: escape.environment_assignment("A=B", "x"), "not a valid"),
        (lambda: escape.environment_assignment("1A", "x"), "not a valid"),
    ],
)
def test_values_that_cannot_be_written_are_refused(
    call: Callable[[], object], problem: str
) -> None:
    with pytest.raises(escape.UnsafeValueError, match=problem):
        call()


# ---------------------------------------------------------------------------------------------
# The schema refuses first, with a positioned diagnostic; escape only backs it up

JOB_PATH = Path("/etc/pcsystemd/jobs/probe.yaml")
# Characters the schema refuses in one-line text; YAML's own escapes write them into the file.
SCHEMA_REFUSED = [chr(code) for code in (*range(0x00, 0x20), *range(0x7F, 0xA0))] + [
    "\u2028",
    "\u2029",
]


def _build(fields: str) -> tuple[Job | None, list[str]]:
    data = parse_yaml(f"command: /bin/true\n{fields}", str(JOB_PATH))
    job, diagnostics = build_job(data, path=JOB_PATH, slug="probe", config=GlobalConfig())
    return job, [str(d) for d in diagnostics if d.severity == "error"]


def _yaml_escaped(character: str) -> str:
    return f"\\U{ord(character):08x}"


@pytest.mark.parametrize("character", SCHEMA_REFUSED, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize(
    ("template", "label"),
    [
        ('name: "a{}b"', "name"),
        ('description: "a{}b"', "description"),
        ('environment: {{X: "a{}b"}}', "environment.X"),
        ('working_directory: "/srv/a{}b"', "working_directory"),
        ('read_write_paths: ["/srv/a{}b"]', "read_write_paths"),
    ],
)
def test_schema_refuses_control_characters_with_a_diagnostic(
    character: str, template: str, label: str
) -> None:
    if label == "description" and character in "\n\t":
        return  # a multi-line description may hold line breaks and tabs: see the next test
    job, errors = _build(template.format(_yaml_escaped(character)))
    assert job is None
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{JOB_PATH}:2:")
    assert f"'{label}" in errors[0] and f"U+{ord(character):04X}" in errors[0]


def test_every_character_escape_refuses_is_refused_by_the_schema_first() -> None:
    refused_by_escape = {c for c in REFUSED if not _SURROGATE.fullmatch(c)}
    assert refused_by_escape <= set(SCHEMA_REFUSED)


def test_a_schema_valid_description_with_tabs_and_lines_renders() -> None:
    job, errors = _build('description: "col1\\tcol2\\nline ending in a backslash\\\\"')
    assert errors == [] and job is not None
    lines = [f"# {escape.comment(line)}" for line in (job.description or "").splitlines()]
    assert lines == ["# col1\tcol2", "# line ending in a backslash\\ "]


def test_a_path_with_a_trailing_space_never_reaches_a_unit_changed() -> None:
    # systemd would strip the space from WorkingDirectory=: either the schema refuses the
    # path with a diagnostic, or escape.path refuses to write it.
    job, errors = _build('working_directory: "/srv/trailing "')
    if job is None:
        assert any("working_directory" in error for error in errors)
        return
    assert job.working_directory is not None
    with pytest.raises(escape.UnsafeValueError, match="ends in a space"):
        escape.path(job.working_directory)


@pytest.mark.parametrize(
    "character", ["\x00", "\n", "\r", "\x1b", "\x7f", "\x85", "\x9b", "\udcff"]
)
@pytest.mark.parametrize(
    "field", ["name", "description", "environment", "working_directory", "read_write_paths"]
)
def test_the_renderer_refuses_what_did_not_come_through_the_schema(
    character: str, field: str
) -> None:
    # The last line of defence: a Job built directly, with a value the schema would refuse.
    values: dict[str, object] = {
        "name": f"a{character}b",
        "description": f"a{character}b",
        "environment": (("X", f"a{character}b"),),
        "working_directory": f"/srv/a{character}b",
        "read_write_paths": (f"/srv/a{character}b",),
    }
    if field == "description" and character in "\n\r\x85":
        return  # the template splits the description into comment lines at these
    job, errors = _build("")
    assert job is not None, errors
    job = replace(job, **{field: values[field]})
    with pytest.raises(RenderError) as raised:
        render_all([job], GlobalConfig(shim_path="/usr/bin/pcsystemd"))
    assert isinstance(raised.value.__cause__, escape.UnsafeValueError)
