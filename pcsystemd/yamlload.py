"""A safe, bounded YAML loader that remembers where every key and value stood.

PyYAML's own composer cannot be used here: with libyaml it recurses in C and crashes the whole
process on deep nesting, and its constructor expands aliases without limit (the "billion laughs").
So this module builds the data itself from libyaml's event stream, iteratively, and stops at the
first event that breaks a limit: the file size, the nesting depth, or the number of values the
document expands to once every alias is counted. Only plain data comes out (strings, numbers,
booleans, null, lists, mappings): any other tag is refused, so no Python object is ever built.
"""

from __future__ import annotations

import os
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path

import yaml
import yaml.constructor
import yaml.reader
import yaml.resolver

from pcsystemd.errors import ConfigError, Diagnostic
from pcsystemd.vocabulary import MAX_FILE_BYTES as MAX_FILE_BYTES

MAX_DEPTH = 20  # a job file needs 3 levels, the global config 5; libyaml slows down quadratically
MAX_VALUES = 100_000  # every scalar, list and mapping, counting each use of an alias again

try:  # libyaml when PyYAML was built with it (Debian's is); the Python parser has the same grammar
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml.parser import Parser as _PythonParser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, _PythonParser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            _PythonParser.__init__(self)


_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + name for name in ("str", "int", "float", "bool", "null"))
_MERGE, _MAP, _SEQ = _TAG + "merge", _TAG + "map", _TAG + "seq"
_QUOTES = ("'", '"')
# Dates and YAML's `=` value marker stay the text that was written: no job key wants a date object.
_KEPT_AS_TEXT = {_STR, _TAG + "timestamp", _TAG + "value"}
_IMPLICIT_RESOLVERS: dict[str, list[tuple[str, Any]]] = (
    yaml.resolver.Resolver.yaml_implicit_resolvers
)
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_SCALAR_CONSTRUCTORS = {
    _INT: _CONSTRUCTOR.construct_yaml_int,
    _FLOAT: _CONSTRUCTOR.construct_yaml_float,
    _BOOL: _CONSTRUCTOR.construct_yaml_bool,
    _NULL: _CONSTRUCTOR.construct_yaml_null,
}


# typing is imported for the type checker only: the runtime shim's start-up (`pcsystemd
# run-job`) reaches this module, and typing alone costs it milliseconds. mypy knows the idiom.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NamedTuple

    class _MarkFields(NamedTuple):
        path: str
        line: int
        column: int
        # Where the scalar's text starts relative to `column` (1 after an opening quote), or
        # None when columns inside the text cannot be mapped back (block, multi-line scalars).
        text_offset: int | None = None

else:  # what typing.NamedTuple makes of the class above
    _MarkFields = namedtuple("Mark", ("path", "line", "column", "text_offset"), defaults=(None,))


class Mark(_MarkFields):
    """A position in a file: 1-based line and column, as Diagnostic wants them.

    A named tuple rather than a frozen dataclass: one is made per YAML node, and tuples are
    several times cheaper to create.
    """

    __slots__ = ()

    def shifted(self, offset: int) -> Mark:
        """The position `offset` characters into the scalar's text (the mark itself if unknown)."""
        if self.text_offset is None:
            return self
        return Mark(self.path, self.line, self.column + self.text_offset + offset)

    def diagnostic(self, message: str, severity: str = "error") -> Diagnostic:
        return Diagnostic(self.path, self.line, self.column, message, severity)


class MarkedMap(dict[str, "Any"]):
    """A YAML mapping (keys are always the key's text) that knows where each key and value stood."""

    __slots__ = ("key_marks", "mark", "texts", "value_marks")

    def __init__(self, mark: Mark) -> None:
        super().__init__()
        self.mark = mark
        self.key_marks: dict[str, Mark] = {}
        self.value_marks: dict[str, Mark] = {}
        # The source text of plain (unquoted) scalar values: `0755` stays "0755", not 493.
        self.texts: dict[str, str] = {}

    def set(self, key: str, value: Any, key_mark: Mark, value_mark: Mark, text: str | None) -> None:
        """Store one entry with its positions."""
        self[key] = value
        self.key_marks[key] = key_mark
        self.value_marks[key] = value_mark
        if text is None:
            self.texts.pop(key, None)
        else:
            self.texts[key] = text

    def copy_entry(self, other: MarkedMap, key: str) -> None:
        """Take one entry, with its positions, from another mapping."""
        self.set(
            key, other[key], other.key_marks[key], other.value_marks[key], other.texts.get(key)
        )

    def key_mark(self, key: str) -> Mark:
        return self.key_marks.get(key, self.mark)

    def value_mark(self, key: str) -> Mark:
        return self.value_marks.get(key, self.mark)


class MarkedList(list["Any"]):
    """A YAML sequence that knows where each item stood."""

    __slots__ = ("item_marks", "mark", "texts")

    def __init__(self, mark: Mark) -> None:
        super().__init__()
        self.mark = mark
        self.item_marks: list[Mark] = []
        self.texts: list[str | None] = []

    def add(self, value: Any, mark: Mark, text: str | None) -> None:
        self.append(value)
        self.item_marks.append(mark)
        self.texts.append(text)

    def items_with_marks(self) -> Iterator[tuple[Any, Mark]]:
        return zip(self, self.item_marks, strict=True)


class _Abort(Exception):
    """A limit was broken: stop reading at once."""


class _Frame:
    """A mapping or sequence whose end event has not come yet.

    A plain class with slots, not a dataclass: the runtime shim imports this module at every
    run, and a dataclass costs its start-up more than the whole parse of a job file.
    """

    __slots__ = (
        "anchor",
        "container",
        "explicit_lines",
        "key",
        "key_mark",
        "mark",
        "merges",
        "size",
        "skip_value",
    )

    def __init__(
        self,
        container: MarkedMap | MarkedList,
        mark: Mark,
        anchor: str | None,
        *,
        merges: list[tuple[Any, Mark]] | None = None,
        explicit_lines: dict[str, int] | None = None,
    ) -> None:
        self.container = container
        self.mark = mark
        self.anchor = anchor
        self.size = 1
        # mappings only: the key waiting for its value, and `<<` merges applied at the end
        self.key: str | None = None
        self.key_mark: Mark | None = None
        self.skip_value = False  # the value of a duplicate key: read it, keep the first one
        self.merges = merges
        self.explicit_lines = explicit_lines


class _Builder:
    """Turns libyaml events into MarkedMap/MarkedList data, enforcing every limit as it goes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.errors: list[Diagnostic] = []
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[Any, int, str | None]] = {}  # value, size, plain text
        self.values = 0
        self.root: Any = None
        self.root_mark = Mark(path, 1, 1)
        self.documents = 0

    def mark(self, event: Any) -> Mark:
        start = event.start_mark
        offset: int | None = None
        if start.line == event.end_mark.line:
            style = getattr(event, "style", None)
            offset = 0 if not style else 1 if style in _QUOTES else None
        return Mark(self.path, start.line + 1, start.column + 1, offset)

    def fail(self, mark: Mark, message: str) -> _Abort:
        self.errors.append(mark.diagnostic(message))
        return _Abort()

    def count(self, size: int, mark: Mark) -> None:
        self.values += size
        if self.values > MAX_VALUES:
            raise self.fail(
                mark,
                f"the document expands to more than {MAX_VALUES} values (too many aliases, "
                "as in a 'billion laughs' attack, or simply too much data); "
                "write the values out instead of nesting aliases",
            )

    def run(self, text: str) -> None:
        """Feed every event of the text; stops at the first broken limit (_Abort)."""
        get_event = _Parser(text).get_event
        while True:
            event = get_event()
            kind = type(event)
            if kind is yaml.ScalarEvent:  # most events: kept on the shortest path
                self.scalar_event(event)
            elif event is None or kind is yaml.StreamEndEvent:
                return
            else:
                self.feed(event)

    def scalar_event(self, event: Any) -> None:
        start = event.start_mark
        offset: int | None = None
        if start.line == event.end_mark.line:
            style = event.style
            offset = 0 if not style else 1 if style in _QUOTES else None
        mark = Mark(self.path, start.line + 1, start.column + 1, offset)
        self.values += 1
        if self.values > MAX_VALUES:
            self.count(0, mark)
        value = self.scalar(event, mark)
        text = event.value if value is not event.value else None
        if event.anchor is not None:
            self.anchors[event.anchor] = (value, 1, text)
        self.add(value, mark, 1, text, is_key_ok=True, merge=value is _MERGE_KEY)

    def feed(self, event: Any) -> None:
        """Every event but scalars."""
        kind = type(event)
        if kind is yaml.AliasEvent:
            mark = self.mark(event)
            if event.anchor not in self.anchors:
                if any(frame.anchor == event.anchor for frame in self.stack):
                    raise self.fail(
                        mark,
                        f"alias *{event.anchor} refers to a node that contains it; "
                        "a recursive structure cannot be a job setting",
                    )
                raise self.fail(
                    mark,
                    f"alias *{event.anchor} has no anchor &{event.anchor} before it; "
                    "define the anchor first",
                )
            value, size, text = self.anchors[event.anchor]
            self.count(size, mark)
            is_key_ok = not isinstance(value, (MarkedMap, MarkedList))
            self.add(value, mark, size, text, is_key_ok=is_key_ok, merge=False)
        elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
            mark = self.mark(event)
            if len(self.stack) >= MAX_DEPTH:
                raise self.fail(
                    mark,
                    f"the document is nested more than {MAX_DEPTH} levels deep; "
                    "flatten it (a job file needs three levels at most)",
                )
            self.check_tag(
                event.tag, _MAP if isinstance(event, yaml.MappingStartEvent) else _SEQ, mark
            )
            self.count(1, mark)
            if isinstance(event, yaml.MappingStartEvent):
                frame = _Frame(MarkedMap(mark), mark, event.anchor, merges=[], explicit_lines={})
            else:
                frame = _Frame(MarkedList(mark), mark, event.anchor)
            self.stack.append(frame)
        elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            frame = self.stack.pop()
            if isinstance(frame.container, MarkedMap):
                self.apply_merges(frame)
            self.remember(frame.anchor, frame.container, frame.size, None)
            self.add(frame.container, frame.mark, frame.size, None, is_key_ok=False, merge=False)
        elif kind is yaml.DocumentStartEvent:
            self.documents += 1
            if self.documents > 1:
                raise self.fail(
                    self.mark(event),
                    "a second YAML document ('---') in the same file; "
                    "put one job per file and remove the '---' line",
                )

    def check_tag(self, tag: str | None, expected: str, mark: Mark) -> None:
        if tag not in (None, "!", expected):
            raise self.fail(mark, _tag_message(tag or ""))

    def scalar(self, event: Any, mark: Mark) -> Any:
        tag = event.tag
        value = event.value
        if tag is None or tag == "!":
            if not event.implicit[0]:  # quoted: always a string
                return value
            # SafeLoader's implicit resolution (Resolver.resolve), inlined: it runs per scalar.
            tag = _STR
            for candidate, pattern in _IMPLICIT_RESOLVERS.get(value[:1], ()):
                if pattern.match(value):
                    tag = candidate
                    break
        if tag in _KEPT_AS_TEXT:
            return event.value
        if tag == _MERGE:
            return _MERGE_KEY
        constructor = _SCALAR_CONSTRUCTORS.get(tag)
        if constructor is None:
            raise self.fail(mark, _tag_message(tag))
        try:
            return constructor(yaml.ScalarNode(tag, event.value))
        except (ValueError, yaml.YAMLError):
            raise self.fail(
                mark,
                f"{event.value!r} is not a valid {tag.removeprefix(_TAG)}; "
                "remove the explicit tag or fix the value",
            ) from None

    def remember(self, anchor: str | None, value: Any, size: int, text: str | None) -> None:
        if anchor is not None:
            self.anchors[anchor] = (value, size, text)

    def add(
        self, value: Any, mark: Mark, size: int, text: str | None, *, is_key_ok: bool, merge: bool
    ) -> None:
        if not self.stack:
            self.root, self.root_mark = value, mark
            return
        frame = self.stack[-1]
        frame.size += size
        container = frame.container
        if isinstance(container, MarkedList):
            container.append(value)
            container.item_marks.append(mark)
            container.texts.append(text)
            return
        if frame.key_mark is None:  # this node is a key
            self.take_key(frame, value, mark, text, is_key_ok=is_key_ok, merge=merge)
            return
        key, key_mark = frame.key, frame.key_mark
        frame.key, frame.key_mark = None, None
        if frame.skip_value:
            frame.skip_value = False
        elif key is None:  # `<<: *defaults`
            assert frame.merges is not None
            frame.merges.append((value, mark))
        else:
            container.set(key, value, key_mark, mark, text)

    def take_key(
        self,
        frame: _Frame,
        value: Any,
        mark: Mark,
        text: str | None,
        *,
        is_key_ok: bool,
        merge: bool,
    ) -> None:
        frame.key_mark = mark
        if merge:
            frame.key = None
            return
        if not is_key_ok:
            # The value of this key is still read (and skipped) so that later errors are found.
            self.errors.append(
                mark.diagnostic("a list or mapping cannot be a key; write the key as plain text")
            )
            frame.skip_value = True
            return
        key = text if text is not None else value if isinstance(value, str) else str(value)
        lines = frame.explicit_lines
        assert lines is not None
        if key in lines:
            self.errors.append(
                mark.diagnostic(
                    f"duplicate key {key!r} (first defined on line {lines[key]}); "
                    "remove one of the two"
                )
            )
            frame.skip_value = True
            return
        lines[key] = mark.line
        frame.key = key

    def apply_merges(self, frame: _Frame) -> None:
        """YAML 1.1 `<<` merge keys: copy keys the mapping does not set itself."""
        container = frame.container
        assert isinstance(container, MarkedMap) and frame.merges is not None
        for value, mark in frame.merges:
            sources = list(value) if isinstance(value, MarkedList) else [value]
            for source in sources:
                if not isinstance(source, MarkedMap):
                    self.errors.append(
                        mark.diagnostic(
                            "'<<' (merge) needs a mapping or a list of mappings; "
                            "point it at an anchored mapping, e.g. <<: *defaults"
                        )
                    )
                    continue
                for key in source:
                    if key not in container:
                        container.copy_entry(source, key)


class _MergeKey:
    """Stands for the YAML `<<` key while a mapping is being built."""


_MERGE_KEY = _MergeKey()


def _tag_message(tag: str) -> str:
    shown = tag.replace(_TAG, "!!")
    return (
        f"the tag {shown} is not allowed: job files hold only plain data (text, numbers, "
        "true/false, lists and mappings); remove the tag"
    )


def _syntax_diagnostic(path: str, text: str, error: yaml.MarkedYAMLError) -> Diagnostic:
    mark = error.problem_mark or error.context_mark
    line = mark.line + 1 if mark is not None else 0
    column = mark.column + 1 if mark is not None else 0
    problem = error.problem or "invalid YAML"
    lines = text.splitlines()
    offending = ""
    if mark is not None and mark.line < len(lines) and mark.column < len(lines[mark.line]):
        offending = lines[mark.line][mark.column]
    if offending == "\t":
        hint = "YAML does not allow tabs for indentation; indent with spaces"
    elif "mapping values are not allowed" in problem:
        hint = "check the indentation, and quote values that contain ': '"
    elif error.context and "quoted scalar" in error.context:
        hint = "close the quote"
    else:
        hint = "check the indentation and the quoting"
    where = ""
    context_mark = error.context_mark
    if error.context and context_mark is not None and context_mark.line + 1 != line:
        where = f" ({error.context} started on line {context_mark.line + 1})"
    return Diagnostic(path, line, column, f"YAML syntax error: {problem}{where}; {hint}")


def _reader_diagnostic(path: str, text: str, error: yaml.reader.ReaderError) -> Diagnostic:
    # libyaml reports a byte offset into the UTF-8 encoding of the text.
    prefix = text.encode("utf-8")[: error.position].decode("utf-8", errors="replace")
    line = prefix.count("\n") + 1
    column = len(prefix) - (prefix.rfind("\n") + 1) + 1
    character = error.character
    shown = f"U+{character:04X}" if isinstance(character, int) else repr(character)
    return Diagnostic(
        path,
        line,
        column,
        f"the file contains a character YAML does not allow ({shown}: {error.reason}); remove it",
    )


def _too_large_message() -> str:
    return (
        f"the file is larger than {MAX_FILE_BYTES // 1024} KiB; a job or config file "
        "needs a few lines, so remove what is not needed"
    )


def parse_yaml(data: bytes | str, path: str | Path) -> MarkedMap:
    """Parse one YAML document that must be a mapping; raise ConfigError with every problem."""
    name = str(path)
    if isinstance(data, bytes):
        if len(data) > MAX_FILE_BYTES:
            raise ConfigError.at(name, 0, 0, _too_large_message())
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            prefix = data[: error.start].decode("utf-8", errors="replace")
            line = prefix.count("\n") + 1
            column = len(prefix) - (prefix.rfind("\n") + 1) + 1
            raise ConfigError.at(
                name,
                line,
                column,
                f"the file is not valid UTF-8 (byte 0x{data[error.start]:02x}); save it as UTF-8",
            ) from None
    else:
        text = data
        if len(text) > MAX_FILE_BYTES:
            raise ConfigError.at(name, 0, 0, _too_large_message())
    text = text.removeprefix("\ufeff")
    builder = _Builder(name)
    try:
        builder.run(text)
    except _Abort:
        pass
    except yaml.MarkedYAMLError as error:
        builder.errors.append(_syntax_diagnostic(name, text, error))
    except yaml.reader.ReaderError as error:
        builder.errors.append(_reader_diagnostic(name, text, error))
    if builder.errors:
        raise ConfigError(builder.errors)
    root = builder.root
    if root is None:  # an empty file, only comments, or a lone `~`
        return MarkedMap(Mark(name, 1, 1))
    if not isinstance(root, MarkedMap):
        kind = "a list" if isinstance(root, MarkedList) else f"a single value ({root!r})"
        raise ConfigError(
            builder.root_mark.diagnostic(
                f"the file must be a YAML mapping of keys to values, not {kind}; "
                "write one 'key: value' per line, like 'name: Backup'"
            )
        )
    return root


def read_bounded(path: Path) -> bytes:
    """Read a file, refusing more than MAX_FILE_BYTES without reading all of a huge one."""
    with open(path, "rb") as stream:
        return read_limited(stream.fileno(), os.fstat(stream.fileno()).st_size)


def read_limited(descriptor: int, size_hint: int) -> bytes:
    """Up to MAX_FILE_BYTES + 1 bytes from an open file: enough to tell it is too large.

    Read in pieces about the size of the file (`size_hint`, from fstat): a buffered read of
    the whole limit would allocate a megabyte for every file of a few hundred bytes.
    """
    limit = MAX_FILE_BYTES + 1
    chunks = []
    total = 0
    while total < limit:
        chunk = os.read(descriptor, min(limit - total, max(size_hint + 1, 65536)))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def load_yaml_file(path: Path) -> MarkedMap:
    """Read and parse one YAML file (OSError is left to the caller, who knows what it means)."""
    return parse_yaml(read_bounded(path), path)
