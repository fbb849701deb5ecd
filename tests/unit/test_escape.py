"""Escaping for unit-file syntax: the last line of defence against injection."""

from __future__ import annotations

import pytest

from pcsystemd import escape


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain text", "plain text"),
        ("100% done", "100%% done"),
        ("%n%i", "%%n%%i"),
        # A space, not a second backslash: systemd strips it and reads exactly one backslash.
        ("ends in backslash\\", "ends in backslash\\ "),
        ("two backslashes\\\\", "two backslashes\\\\"),
        ('quotes "stay" literal', 'quotes "stay" literal'),
    ],
)
def test_unit_text(value: str, expected: str) -> None:
    assert escape.unit_text(value) == expected


@pytest.mark.parametrize(
    "value", ["line\nInjected=yes", "tab\there", "nul\x00", "bell\x07", "del\x7f", "csi\x9b"]
)
def test_control_characters_are_refused_everywhere(value: str) -> None:
    for function in (escape.unit_text, escape.comment, escape.specifiers, escape.quoted):
        if function is escape.comment and value == "tab\there":
            continue  # a multi-line description may hold tabs; see test_comment
        with pytest.raises(escape.UnsafeValueError, match="control character"):
            function(value)


def test_comment() -> None:
    assert escape.comment("col1\tcol2 100% $HOME") == "col1\tcol2 100% $HOME"
    assert escape.comment("ends in backslash\\") == "ends in backslash\\ "
    with pytest.raises(escape.UnsafeValueError, match="not valid Unicode"):
        escape.comment("undecodable \udcff byte")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("A", "b", '"A=b"'),
        ("PATH_X", "a b", '"PATH_X=a b"'),
        ("Q", 'say "hi"', '"Q=say \\"hi\\""'),
        ("B", "back\\slash", '"B=back\\\\slash"'),
        ("P", "50%", '"P=50%%"'),
        ("D", "$HOME and ${X}", '"D=$HOME and ${X}"'),
    ],
)
def test_environment_assignment(name: str, value: str, expected: str) -> None:
    assert escape.environment_assignment(name, value) == expected


def test_environment_name_must_be_a_name() -> None:
    with pytest.raises(escape.UnsafeValueError):
        escape.environment_assignment("A B", "x")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/usr/bin/pcsystemd", "run-job", "yak"], "/usr/bin/pcsystemd run-job yak"),
        (["/opt/my tools/pc", "run-job", "x"], '"/opt/my tools/pc" run-job x'),
        (["/usr/bin/x", "--config", "/etc/a%b.yaml"], "/usr/bin/x --config /etc/a%%b.yaml"),
        (["/usr/bin/x", "$HOME"], '/usr/bin/x "$$HOME"'),
        (["/usr/bin/x", ";"], "/usr/bin/x \\;"),
        (["/usr/bin/x", "-rf"], "/usr/bin/x -rf"),
        # systemd never expands `$` in the program path, so it must not be doubled there.
        (["/opt/a$b/pc", "$b"], '"/opt/a$b/pc" "$$b"'),
        (["/opt/100%/pc", ""], '/opt/100%%/pc ""'),
    ],
)
def test_exec_command(argv: list[str], expected: str) -> None:
    assert escape.exec_command(argv) == expected


def test_exec_command_needs_an_absolute_path() -> None:
    with pytest.raises(escape.UnsafeValueError, match="absolute"):
        escape.exec_command(["pcsystemd", "run-job"])


def test_path() -> None:
    assert escape.path("/srv/data 100%") == "/srv/data 100%%"
    with pytest.raises(escape.UnsafeValueError):
        escape.path("relative/dir")
    with pytest.raises(escape.UnsafeValueError):
        escape.path("/a\\b")
    assert escape.path_list(["/a", "/b c"]) == '"/a" "/b c"'
    # `%` escaped once, not twice; a trailing space survives inside quotes.
    assert escape.path_list(["/srv/100%n", "/srv/x "]) == '"/srv/100%%n" "/srv/x "'
    with pytest.raises(escape.UnsafeValueError, match="ends in a space"):
        escape.path("/srv/x ")
