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
        ("ends in backslash\\", "ends in backslash\\\\"),
        ("two backslashes\\\\", "two backslashes\\\\"),
        ('quotes "stay" literal', 'quotes "stay" literal'),
    ],
)
def test_unit_text(value: str, expected: str) -> None:
    assert escape.unit_text(value) == expected


@pytest.mark.parametrize("value", ["line\nInjected=yes", "tab\there", "nul\x00", "bell\x07", "del\x7f"])
def test_control_characters_are_refused_everywhere(value: str) -> None:
    for function in (escape.unit_text, escape.comment, escape.specifiers, escape.quoted):
        with pytest.raises(escape.UnsafeValueError, match="control character"):
            function(value)


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
