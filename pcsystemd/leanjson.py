"""`loads` and `dumps` as json.loads and json.dumps give them, for a fraction of the import.

The runtime shim (`pcsystemd run-job`, every job run) must start in 30 ms or less, and
`import json` measured 7 ms here (13 ms before anything has loaded re and enum): the json
package imports re, which imports enum, for regular expressions that on CPython serve little
more than skipping whitespace, since the C accelerator `_json` parses and encodes. This module
calls `_json` directly, as json.JSONDecoder and json.JSONEncoder do with their default
settings. It imports json only to build an error to raise, or when `_json` is missing or its
signatures changed (another Python implementation or version): then json does everything.

Covered: what json.loads(text) and json.dumps(value) do with default arguments (separators
", " and ": ", ensure_ascii, NaN and Infinity allowed, keys unsorted, circular references
refused), for dict, list, tuple, str, int, float, bool and None. Bytes are read as UTF-8,
with or without a UTF-8 BOM, as json reads them; json's detection of UTF-16 and UTF-32 is not
reproduced.
"""

from __future__ import annotations

# typing costs milliseconds to import too; mypy reads this branch, Python skips it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import _json
    from collections.abc import Callable
    from typing import Any

    _Accelerator = tuple[_json.make_scanner, type[_json.make_encoder], Callable[[str], str]]

# The accelerator is built on first use rather than at import, so a run that reads and writes
# no JSON pays nothing; None once decided means "the json module does the work".
_fast: _Accelerator | None = None
_decided = False

_WHITESPACE = " \t\n\r"  # what json.decoder.WHITESPACE skips around a document
_FLAGS = (False, False, True)  # sort_keys, skipkeys, allow_nan: json.dumps' defaults


class _ScannerContext:
    """The attributes `_json.make_scanner` reads from a json.JSONDecoder, with its defaults."""

    strict = True  # control characters inside strings are refused
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    # Only ever called with "NaN", "Infinity" or "-Infinity", which float() reads as json does.
    parse_constant = float

    def __init__(self) -> None:
        self.memo: dict[str, str] = {}  # read by the pure-Python scanner only; kept for parity


def _default(value: object) -> Any:
    """json.JSONEncoder.default: anything not JSON is refused, with json's message."""
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


def _build() -> _Accelerator | None:
    try:
        import _json

        scanner = _json.make_scanner(_ScannerContext())  # type: ignore[arg-type]
        # Built once here only to find out whether the signature is the one expected.
        _json.make_encoder({}, _default, _json.encode_basestring_ascii, None, ": ", ", ", *_FLAGS)
        return scanner, _json.make_encoder, _json.encode_basestring_ascii
    except (ImportError, AttributeError, TypeError):
        return None


def _accelerator() -> _Accelerator | None:
    global _fast, _decided
    if not _decided:
        _fast, _decided = _build(), True
    return _fast


def accelerated() -> bool:
    """Whether `_json` does the work (False: the json module is imported and used)."""
    return _accelerator() is not None


def _use_stdlib(on: bool = True) -> None:
    """For tests: make the json module do the work (on), or decide again on next use (off)."""
    global _fast, _decided
    _fast, _decided = None, on


def _error(message: str, document: str, position: int) -> ValueError:
    # json is imported here, on failure only, for the exception json.loads raises; the C
    # scanner does the same for the errors it finds itself.
    from json import JSONDecodeError

    return JSONDecodeError(message, document, position)


def loads(text: str | bytes) -> Any:
    """json.loads(text): the value of one JSON document; ValueError if it is not one."""
    fast = _accelerator()
    if fast is None:
        import json

        return json.loads(text)
    if isinstance(text, str):
        if text.startswith("\ufeff"):
            raise _error("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        string = text
    elif isinstance(text, bytes | bytearray):
        # As json.detect_encoding reads UTF-8: a BOM is skipped, lone surrogates are let through.
        codec = "utf-8-sig" if text.startswith(b"\xef\xbb\xbf") else "utf-8"
        string = text.decode(codec, "surrogatepass")
    else:
        kind = text.__class__.__name__
        raise TypeError(f"the JSON object must be str, bytes or bytearray, not {kind}")
    start = len(string) - len(string.lstrip(_WHITESPACE))  # lstrip copies nothing if none
    try:
        value, end = fast[0](string, start)
    except StopIteration as stop:  # the scanner's "no value starts here", inner ones included
        raise _error("Expecting value", string, stop.value) from None
    rest = string[end:]  # usually "" or "\n"
    if rest.strip(_WHITESPACE):
        raise _error("Extra data", string, end + len(rest) - len(rest.lstrip(_WHITESPACE)))
    return value


def dumps(value: Any) -> str:
    """json.dumps(value): compact-ish one-line JSON, ASCII only, keys in insertion order."""
    fast = _accelerator()
    if fast is None:
        import json

        return json.dumps(value)
    _, make_encoder, encode_string = fast
    # A new encoder and markers dict per call, as json.dumps makes them: when default() raises,
    # the C encoder leaves ids in markers, and a reused dict would then report circular
    # references that are not there. Making one costs about 0.3 µs.
    encode = make_encoder({}, _default, encode_string, None, ": ", ", ", *_FLAGS)
    return "".join(encode(value, 0))
