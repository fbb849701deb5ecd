"""`@record` behaves as `@dataclass(frozen=True)` does, compared side by side on the same bodies.

Every class below is made twice by the same function, once by each decorator, so the two
share their qualified name and error messages can be compared word for word.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pcsystemd.record import FrozenInstanceError, field, fields, record, replace

REPO = Path(__file__).resolve().parents[2]

Decorate = Any  # a class decorator: record or dataclass(frozen=True)
FROZEN_DATACLASS = dataclasses.dataclass(frozen=True)
NAN = float("nan")


def run_record(decorate: Decorate) -> Any:
    @decorate
    class RunRecord:
        KIND: ClassVar[str] = "run"
        run_id: str
        result: str
        end: str | None = None
        attempts: int = 0

    return RunRecord


def noted_record(decorate: Decorate, make_field: Any) -> Any:
    @decorate
    class Noted:
        name: str
        problem: str | None = make_field(default=None, compare=False)
        size: int = make_field(default=0)

    return Noted


BOTH = [pytest.param(record, id="record"), pytest.param(FROZEN_DATACLASS, id="dataclass")]
NOTED = [noted_record(record, field), noted_record(FROZEN_DATACLASS, dataclasses.field)]


def outcome(cls: Any, args: tuple[object, ...], kwargs: dict[str, object]) -> object:
    """What a call makes: the instance's repr, hash and values, or the exception raised."""
    try:
        instance = cls(*args, **kwargs)
    except Exception as error:
        return type(error), str(error)
    values = tuple(getattr(instance, name) for name in ("run_id", "result", "end", "attempts"))
    return repr(instance), hash(instance), values, instance.__match_args__


VALUES = st.sampled_from(["x", "ok", None, 0, 3, (), NAN])
NAMES = st.sampled_from(["run_id", "result", "end", "attempts", "nope", "KIND"])


@given(st.lists(VALUES, max_size=6), st.dictionaries(NAMES, VALUES, max_size=5))
@example(("x", "ok"), {})
@example(("x",), {"result": "ok", "attempts": 2})
@example((), {"run_id": "x", "result": "ok", "end": "e", "attempts": 1})
@example((), {})  # two missing
@example(("x",), {"run_id": "y"})  # duplicate
@example(("x", "ok"), {"nope": 1})  # unexpected
@example(("x", "ok", None, 1, 2), {})  # too many
@example(("a", "b", "c", "d", "e", "f"), {"run_id": 1})  # duplicate reported before too many
def test_init_agrees_with_dataclass(args: Sequence[object], kwargs: dict[str, object]) -> None:
    mine = outcome(run_record(record), tuple(args), kwargs)
    assert mine == outcome(run_record(FROZEN_DATACLASS), tuple(args), kwargs)


def test_missing_three_is_worded_as_python_words_it() -> None:
    def three(decorate: Decorate) -> Any:
        @decorate
        class Three:
            a: int
            b: int
            c: int

        return Three

    for args in [(), (1,), (1, 2), (1, 2, 3, 4)]:
        assert outcome(three(record), args, {}) == outcome(three(FROZEN_DATACLASS), args, {})


def test_an_empty_record_takes_no_arguments() -> None:
    def empty(decorate: Decorate) -> Any:
        @decorate
        class Empty:
            pass

        return Empty

    mine, theirs = empty(record), empty(FROZEN_DATACLASS)
    assert repr(mine()) == repr(theirs()) == f"{mine.__qualname__}()"
    assert mine() == mine() and hash(mine()) == hash(theirs())
    with pytest.raises(TypeError) as ours:
        mine(1)
    with pytest.raises(TypeError) as expected:
        theirs(1)
    assert str(ours.value) == str(expected.value)


@pytest.mark.parametrize("decorate", BOTH)
def test_equality_and_hash(decorate: Decorate) -> None:
    cls = run_record(decorate)
    first = cls("x", "ok", attempts=2)
    assert first == cls(run_id="x", result="ok", end=None, attempts=2)
    assert hash(first) == hash(cls("x", "ok", None, 2)) == hash(("x", "ok", None, 2))
    assert first != cls("x", "ok", attempts=3)
    assert first.__eq__(("x", "ok", None, 2)) is NotImplemented
    assert first != run_record(decorate)("x", "ok", attempts=2)  # another class, same body
    nan = cls("x", NAN)
    assert nan == nan and nan == cls("x", NAN)  # one NaN object: tuples compare identity first
    assert cls("x", float("nan")) != cls("x", float("nan"))
    assert {first, cls("x", "ok", None, 2)} == {first}


def test_hash_and_repr_match_dataclass() -> None:
    mine, theirs = (
        run_record(record)("x", "ok", "e", 7),
        run_record(FROZEN_DATACLASS)("x", "ok", "e", 7),
    )
    assert hash(mine) == hash(theirs)
    assert repr(mine) == repr(theirs)
    assert repr(mine).endswith("RunRecord(run_id='x', result='ok', end='e', attempts=7)")
    assert mine != theirs  # different classes


@pytest.mark.parametrize("decorate", BOTH)
def test_defaults_are_class_attributes_and_classvars_are_not_fields(decorate: Decorate) -> None:
    cls = run_record(decorate)
    assert cls.end is None and cls.attempts == 0 and cls.KIND == "run"
    assert cls.__match_args__ == ("run_id", "result", "end", "attempts")
    assert cls("x", "ok").KIND == "run"


def test_fields() -> None:
    cls = run_record(record)
    names = tuple(f.name for f in dataclasses.fields(run_record(FROZEN_DATACLASS)))
    assert fields(cls) == fields(cls("x", "ok")) == names
    assert fields(NOTED[0]) == ("name", "problem", "size")
    with pytest.raises(TypeError):
        fields(object())


def test_frozen() -> None:
    mine, theirs = run_record(record)("x", "ok"), run_record(FROZEN_DATACLASS)("x", "ok")
    for name in ["run_id", "attempts", "other"]:
        messages = []
        for instance, error in [
            (mine, FrozenInstanceError),
            (theirs, dataclasses.FrozenInstanceError),
        ]:
            with pytest.raises(error) as assigning:
                setattr(instance, name, 1)
            with pytest.raises(error) as deleting:
                delattr(instance, name)
            messages.append((str(assigning.value), str(deleting.value)))
        assert messages[0] == messages[1]
    assert issubclass(FrozenInstanceError, AttributeError)
    assert mine.attempts == 0 and "other" not in vars(mine)


def test_a_subclass_that_is_no_record_may_set_its_own_attributes() -> None:
    base = run_record(record)

    class Sub(base):  # type: ignore[misc, valid-type]
        pass

    sub = Sub("x", "ok")
    sub.extra = 1
    assert sub.extra == 1
    with pytest.raises(FrozenInstanceError):
        sub.attempts = 2


@pytest.mark.parametrize("which", [0, 1], ids=["record", "dataclass"])
def test_compare_false_field(which: int) -> None:
    cls = NOTED[which]
    plain = cls("a")
    noted = cls("a", problem="broken")
    assert plain == noted and hash(plain) == hash(noted) == hash(("a", 0))
    assert plain != cls("a", size=1)
    assert noted.problem == "broken" and cls.problem is None
    assert repr(noted).endswith("Noted(name='a', problem='broken', size=0)")
    assert cls("a", "p", 2) == cls(name="a", problem="q", size=2)


def test_replace() -> None:
    for cls, replacing in [
        (run_record(record), replace),
        (run_record(FROZEN_DATACLASS), dataclasses.replace),
    ]:
        original = cls("x", "ok")
        changed = replacing(original, attempts=3, end="e")
        assert (changed.run_id, changed.end, changed.attempts) == ("x", "e", 3)
        assert original.attempts == 0 and type(changed) is cls
    mine, theirs = run_record(record)("x", "ok"), run_record(FROZEN_DATACLASS)("x", "ok")
    with pytest.raises(TypeError) as ours:
        replace(mine, nope=1)
    with pytest.raises(TypeError) as expected:
        dataclasses.replace(theirs, nope=1)
    assert str(ours.value) == str(expected.value)
    with pytest.raises(TypeError):
        replace(run_record(record), attempts=1)  # the class, not an instance
    with pytest.raises(TypeError):
        replace(object())


@pytest.mark.parametrize("decorate", BOTH)
@pytest.mark.parametrize("value", [[], {}, set(), bytearray()])
def test_mutable_default_is_refused(decorate: Decorate, value: object) -> None:
    with pytest.raises(ValueError, match="mutable default") as raised:

        @decorate
        class Mutable:
            items: object = value

    if decorate is record:
        with pytest.raises(ValueError) as expected:

            @FROZEN_DATACLASS
            class Mutable2:
                items: object = value

        assert str(raised.value) == str(expected.value)


def test_mutable_default_through_field_is_refused() -> None:
    with pytest.raises(ValueError, match="mutable default"):

        @record
        class Mutable:
            items: list[int] = field(default=[])


@pytest.mark.parametrize("decorate", BOTH)
def test_required_after_default_is_refused(decorate: Decorate) -> None:
    with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):

        @decorate
        class Backwards:
            a: int = 0
            b: int


def test_records_do_not_inherit_records() -> None:
    base = run_record(record)
    with pytest.raises(TypeError, match="inherit"):

        @record
        class Child(base):  # type: ignore[misc, valid-type]
            extra: int = 0


def test_methods_the_class_defines_are_kept() -> None:
    @record
    class Own:
        name: str

        def __repr__(self) -> str:
            return f"<{self.name}>"

        def __lt__(self, other: Own) -> bool:
            return self.name < other.name

    assert repr(Own("a")) == "<a>"
    assert sorted([Own("b"), Own("a")]) == [Own("a"), Own("b")]
    assert hash(Own("a")) == hash(("a",))


def test_a_class_defining_setattr_is_refused() -> None:
    with pytest.raises(TypeError, match="Cannot overwrite attribute __setattr__"):

        @record
        class Mutable:
            name: str

            def __setattr__(self, name: str, value: object) -> None:
                pass


def test_pattern_matching() -> None:
    instance = run_record(record)("x", "ok", attempts=2)
    cls = type(instance)
    match instance:
        case cls(run_id, result, None, attempts):
            assert (run_id, result, attempts) == ("x", "ok", 2)
        case _:
            pytest.fail("no match")


@record
class Picklable:  # at module level, where pickle finds it
    name: str
    values: tuple[int, ...] = ()


def test_copy_and_pickle() -> None:
    instance = Picklable("x", (1, 2))
    assert copy.copy(instance) == instance == copy.deepcopy(instance)
    assert pickle.loads(pickle.dumps(instance)) == instance


def test_import_costs_no_heavy_module() -> None:
    # -S: the virtualenv's editable-install .pth imports re and enum at start-up by itself.
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); import pcsystemd.record; "
        "print(sorted(m for m in sys.modules if m in "
        "{'dataclasses','inspect','typing','json','re','enum'}))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
