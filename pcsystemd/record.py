"""`@record`: the frozen-dataclass behaviour pcsystemd uses, without importing dataclasses.

The runtime shim (`pcsystemd run-job`, every job run) must start in 30 ms or less, and
`import dataclasses` measured 15 ms here (25 ms before anything has loaded re and enum): it
pulls in inspect, ast, dis, tokenize, re and enum, and exec()s the methods it generates. This
module imports nothing and builds closures instead: `@record` behaves like
`@dataclass(frozen=True)`, and `field(default=..., compare=False)` like dataclasses.field.
Not supported: records inheriting from records, order, default_factory, kw_only.
"""

from __future__ import annotations

# typing is not imported at run time (it costs milliseconds too); mypy reads this branch.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar, dataclass_transform

    T = TypeVar("T")
else:

    def dataclass_transform(**_options: object) -> object:
        """Run-time stand-in: the real one only tells type checkers what `record` does."""
        return lambda function: function


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a record (like dataclasses.FrozenInstanceError)."""


_MISSING = object()  # "no default": None is a legitimate default


class _Field(tuple[object, bool]):
    """(default, compare): what `field()` leaves in the class body until `@record` reads it."""


def field(*, default: object, compare: bool = True) -> Any:
    """A field with a default; `compare=False` leaves it out of == and hash()."""
    return _Field((default, compare))


def _missing_message(names: list[str]) -> str:
    # The wording CPython uses for a function's missing arguments, so errors read the same.
    quoted = [repr(name) for name in names]
    listed = ", ".join(quoted[:-1]) + ("," if len(quoted) > 2 else "") + " and " + quoted[-1]
    listed, plural = (quoted[0], "") if len(quoted) == 1 else (listed, "s")
    return f"missing {len(quoted)} required positional argument{plural}: {listed}"


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[T]) -> type[T]:
    """Make `cls` a frozen record of its own annotated attributes (see the module docstring)."""
    if any("__record_fields__" in vars(base) for base in cls.__mro__[1:]):
        raise TypeError(f"{cls.__name__}: records cannot inherit from records")
    names: list[str] = []
    defaults: list[object] = []
    compared: list[str] = []
    for name, annotation in vars(cls).get("__annotations__", {}).items():
        # Annotations are strings (`from __future__ import annotations`) and stay unevaluated:
        # evaluating them would import whatever they name.
        kind = str(annotation).removeprefix("typing.")
        if kind == "ClassVar" or kind.startswith("ClassVar["):
            continue
        default, compare = vars(cls).get(name, _MISSING), True
        if isinstance(default, _Field):
            default, compare = default
            setattr(cls, name, default)  # the class attribute is the default, as in dataclasses
        if default is _MISSING and defaults and defaults[-1] is not _MISSING:
            raise TypeError(f"non-default argument {name!r} follows default argument")
        if type(default).__hash__ is None:  # dataclasses' test for a shared mutable default
            message = f"mutable default {type(default)} for field {name} is not allowed"
            raise ValueError(message + ": use default_factory")
        names.append(name)
        defaults.append(default)
        if compare:
            compared.append(name)
    # Computed once per class, so that an __init__ call only walks tuples.
    all_names, all_defaults, compared_names = tuple(names), tuple(defaults), tuple(compared)
    index = {name: position for position, name in enumerate(all_names)}
    count, required, qualname = len(all_names), all_defaults.count(_MISSING), cls.__qualname__

    def __init__(self: Any, *args: object, **kwargs: object) -> None:
        # Checked in the order, and worded the way, CPython checks a function's arguments.
        for key in kwargs:
            if key not in index:
                raise TypeError(f"{qualname}.__init__() got an unexpected keyword argument {key!r}")
            if index[key] < len(args):
                raise TypeError(f"{qualname}.__init__() got multiple values for argument {key!r}")
        if len(args) > count:
            takes = f"from {required + 1} to {count + 1}" if required < count else f"{count + 1}"
            given = f"positional argument{'s' if count else ''} but {len(args) + 1} were given"
            raise TypeError(f"{qualname}.__init__() takes {takes} {given}")
        for name, value in zip(all_names, args, strict=False):
            object.__setattr__(self, name, value)
        missing = []
        for position in range(len(args), count):
            name = all_names[position]
            value = kwargs[name] if name in kwargs else all_defaults[position]
            if value is _MISSING:
                missing.append(name)
            else:
                object.__setattr__(self, name, value)
        if missing:
            raise TypeError(f"{qualname}.__init__() {_missing_message(missing)}")

    def __setattr__(self: Any, name: str, value: object) -> None:
        if type(self) is cls or name in index:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in index:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        # Tuples, as dataclasses compare: an identical object (a NaN) equals itself.
        mine = tuple([getattr(self, name) for name in compared_names])
        return mine == tuple([getattr(other, name) for name in compared_names])

    def __hash__(self: Any) -> int:
        return hash(tuple([getattr(self, name) for name in compared_names]))

    def __repr__(self: Any) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in all_names)
        return f"{self.__class__.__qualname__}({shown})"

    for name in ("__setattr__", "__delattr__"):
        if name in vars(cls):
            raise TypeError(f"Cannot overwrite attribute {name} in class {cls.__name__}")
    # A method the class defines itself wins, as in dataclasses; a body that defines __eq__
    # has __hash__ = None put in it implicitly, so None there does not count.
    methods = (__init__, __repr__, __eq__, __hash__, __setattr__, __delattr__)
    for method in methods:
        if vars(cls).get(method.__name__) is None:
            method.__qualname__ = f"{qualname}.{method.__name__}"
            setattr(cls, method.__name__, method)
    setattr(cls, "__match_args__", all_names)  # noqa: B010 (mypy refuses the plain assignment)
    setattr(cls, "__record_fields__", all_names)  # noqa: B010
    return cls


def fields(obj_or_class: object) -> tuple[str, ...]:
    """The field names of a record class or instance, in order."""
    names: tuple[str, ...] | None = getattr(obj_or_class, "__record_fields__", None)
    if names is None:
        raise TypeError("fields() must be called with a record type or instance")
    return names


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of the record `obj` with some fields changed (like dataclasses.replace)."""
    if isinstance(obj, type) or not hasattr(obj, "__record_fields__"):
        raise TypeError("replace() should be called on record instances")
    for name in fields(obj):
        if name not in changes:
            changes[name] = getattr(obj, name)
    return obj.__class__(**changes)
