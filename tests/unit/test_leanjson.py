"""leanjson gives what json.loads and json.dumps give, by the `_json` path and by the fallback.

Every comparison runs twice: once with the C accelerator called directly (the path taken on
CPython), once with the fallback to the json module forced, as on a Python without `_json`.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pcsystemd import leanjson

REPO = Path(__file__).resolve().parents[2]
PATHS = pytest.mark.parametrize("fast", [True, False], ids=["accelerated", "stdlib"])


@contextmanager
def path(fast: bool) -> Iterator[None]:
    """Run the block with the `_json` path (fast) or with the json module doing the work."""
    leanjson._use_stdlib(not fast)
    try:
        assert leanjson.accelerated() == fast
        yield
    finally:
        leanjson._use_stdlib(False)


def shape(value: object) -> object:
    """A comparable picture of a decoded value: types kept, NaN and -0.0 told apart."""
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, list):
        return ("list", [shape(item) for item in value])
    if isinstance(value, dict):
        return ("dict", [(key, shape(item)) for key, item in value.items()])
    return (type(value).__name__, value)


def outcome(function: Any, argument: object) -> object:
    """What a call gives: a picture of the value, or the exception's type and message."""
    try:
        result = function(argument)
    except (ValueError, TypeError) as error:
        return type(error), str(error)
    return shape(result)


TEXT = st.text(
    st.characters(codec="utf-8") | st.sampled_from("\x00\x1f\x7f\u2028\ud800\udfff\U0001f600")
)
FLOATS = st.floats() | st.sampled_from([1e308, -1e308, 5e-324, -0.0, 0.0, math.inf, -math.inf])
INTEGERS = st.integers() | st.sampled_from([10**100, -(2**64), 2**63])
SCALARS = st.none() | st.booleans() | INTEGERS | FLOATS | TEXT
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children)
        | st.tuples(children, children)
        | st.dictionaries(TEXT, children, max_size=4)
    ),
    max_leaves=20,
)


@PATHS
@given(VALUES)
@example({"a": [1, 2.5, None, True, False, "x"], "": {}, "é": [[]]})
@example(["\U0001f600", '\x00\n\t"\\/', "\u2028", "\ud800"])
@example([math.nan, math.inf, -math.inf, -0.0, 1e308, 10**100])
@example(((), {"k": ()}))
def test_dumps_agrees_and_round_trips(fast: bool, value: object) -> None:
    with path(fast):
        text = leanjson.dumps(value)
        assert text == json.dumps(value)
        assert text.isascii()
        assert outcome(leanjson.loads, text) == outcome(json.loads, text)
        assert outcome(leanjson.loads, text.encode()) == outcome(json.loads, text.encode())


DOCUMENTS = [
    "",
    " ",
    "{",
    "}",
    "{} x",
    "{}{}",
    "[1,",
    "[1 2]",
    "[,]",
    '{"a" 1}',
    '{"a":1,}',
    "01",
    "1.",
    ".5",
    "-",
    "tru",
    "true false",
    "nul",
    "\ufeff{}",
    "\u00a01",  # a no-break space is not JSON whitespace
    '"\\x"',
    '"\x01"',  # control characters must be escaped
    '"unterminated',
    ' \n\t{"a" : 1 } \r\n',
    '"\\ud800"',
    '"\\ud83d\\ude00"',
    '"\\u00e9\U0001f600"',
    "NaN",
    "Infinity",
    "-Infinity",
    "[NaN, Infinity, -Infinity, -0, -0.0, 1E400, 1e308, 5e-324]",
    "12345678901234567890123456789012345678901234567890",
    "true",
    "false",
    "null",
    "[]",
    "{}",
    '{"a": 1, "a": 2}',
    '{"a": {"b": [[], {}]}}',
]


@PATHS
@given(st.sampled_from(DOCUMENTS) | st.text('{}[]",:0123456789.eE+-tfnulrsINaIy \t\n\r\\/é'))
def test_loads_agrees_on_any_text(fast: bool, text: str) -> None:
    with path(fast):
        assert outcome(leanjson.loads, text) == outcome(json.loads, text)


@PATHS
@pytest.mark.parametrize("text", DOCUMENTS)
def test_loads_agrees_on_documents(fast: bool, text: str) -> None:
    with path(fast):
        assert outcome(leanjson.loads, text) == outcome(json.loads, text)
        data = text.encode("utf-8", "surrogatepass")
        assert outcome(leanjson.loads, data) == outcome(json.loads, data)
        assert outcome(leanjson.loads, bytearray(data)) == outcome(json.loads, data)


@PATHS
@pytest.mark.parametrize(
    "text", ["", "{", "{} x", "[1,", "\ufeff{}", b"", b"\xff", b"[\xc3(]", b'"\xed\xa0"']
)
def test_invalid_input_raises_value_error(fast: bool, text: str | bytes) -> None:
    with path(fast), pytest.raises(ValueError) as raised:
        leanjson.loads(text)
    with pytest.raises(ValueError) as expected:
        json.loads(text)
    assert type(raised.value) is type(expected.value)
    assert str(raised.value) == str(expected.value)


@PATHS
def test_extra_data_is_reported_where_json_reports_it(fast: bool) -> None:
    with path(fast), pytest.raises(json.JSONDecodeError) as raised:
        leanjson.loads('{"a": 1}  \n x')
    assert (raised.value.msg, raised.value.pos, raised.value.lineno) == ("Extra data", 12, 2)


@PATHS
def test_a_utf8_bom_in_bytes_is_skipped_as_json_skips_it(fast: bool) -> None:
    with path(fast):
        assert leanjson.loads(b'\xef\xbb\xbf{"a": 1}') == json.loads(b'\xef\xbb\xbf{"a": 1}')


@PATHS
@pytest.mark.parametrize("value", [{(1, 2): 1}, {object(): 1}, object(), [1, {1, 2}], b"x"])
def test_what_is_not_json_is_refused(fast: bool, value: object) -> None:
    with path(fast), pytest.raises(TypeError) as raised:
        leanjson.dumps(value)
    with pytest.raises(TypeError) as expected:
        json.dumps(value)
    assert str(raised.value) == str(expected.value)


@PATHS
def test_keys_json_converts_are_converted(fast: bool) -> None:
    value = {1: "a", 2.5: "b", None: "c", False: "d"}
    with path(fast):
        assert (
            leanjson.dumps(value)
            == json.dumps(value)
            == ('{"1": "a", "2.5": "b", "null": "c", "false": "d"}')
        )


@PATHS
def test_circular_references_are_refused(fast: bool) -> None:
    looped: list[object] = [1]
    looped.append(looped)
    with path(fast), pytest.raises(ValueError, match="Circular reference detected"):
        leanjson.dumps(looped)


@PATHS
def test_a_failed_dumps_leaves_nothing_behind(fast: bool) -> None:
    # The C encoder leaves the ids of the containers it was in when default() raised in its
    # markers dict: a reused dict would then refuse these same containers as circular.
    inner = [1, object()]
    outer = {"a": inner}
    with path(fast):
        with pytest.raises(TypeError):
            leanjson.dumps(outer)
        inner.pop()
        assert leanjson.dumps(outer) == '{"a": [1]}'
        assert leanjson.dumps([outer, outer]) == '[{"a": [1]}, {"a": [1]}]'  # shared, not a loop


@PATHS
def test_loads_refuses_what_is_not_text(fast: bool) -> None:
    with path(fast), pytest.raises(TypeError, match="must be str, bytes or bytearray, not int"):
        leanjson.loads(1)  # type: ignore[arg-type]


def test_accelerated_on_cpython_and_forced_off_for_tests() -> None:
    assert leanjson.accelerated() is (sys.implementation.name == "cpython")
    leanjson._use_stdlib()
    try:
        assert leanjson.accelerated() is False
    finally:
        leanjson._use_stdlib(False)
    assert leanjson.accelerated() is (sys.implementation.name == "cpython")


@pytest.mark.parametrize(
    "stand_in",
    [
        None,  # no _json at all: the import fails
        types.SimpleNamespace(),  # no make_scanner
        types.SimpleNamespace(  # make_scanner with another signature
            make_scanner=lambda: None,
            make_encoder=lambda *args: None,
            encode_basestring_ascii=lambda text: text,
        ),
    ],
    ids=["missing", "incomplete", "changed"],
)
def test_falls_back_to_json_when_the_accelerator_does_not_fit(
    monkeypatch: pytest.MonkeyPatch, stand_in: object
) -> None:
    monkeypatch.setitem(sys.modules, "_json", stand_in)
    leanjson._use_stdlib(False)  # decide again, with the stand-in
    try:
        assert leanjson.accelerated() is False
        assert leanjson.loads('{"a": [1, NaN]}')["a"][0] == 1
        assert leanjson.dumps({"a": (1, "é")}) == '{"a": [1, "\\u00e9"]}'
    finally:
        monkeypatch.undo()
        leanjson._use_stdlib(False)
    assert leanjson.accelerated() is True


def test_using_it_imports_no_json_re_or_enum() -> None:
    # -S: the virtualenv's editable-install .pth imports re and enum at start-up by itself.
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); import pcsystemd.leanjson; "
        "assert pcsystemd.leanjson.loads('{\"a\": [1]}') == {'a': [1]}; "
        "assert pcsystemd.leanjson.dumps({'a': 1}) == '{\"a\": 1}'; "
        "assert pcsystemd.leanjson.accelerated(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'json', 're', 'enum'}))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
