"""The bounded, position-keeping YAML loader: data, marks, and every refusal with its message."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from pcsystemd.errors import ConfigError
from pcsystemd.yamlload import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_VALUES,
    Mark,
    MarkedList,
    MarkedMap,
    parse_yaml,
    read_bounded,
)


def errors(text: str | bytes) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_yaml(text, "job.yaml")
    return [str(diagnostic) for diagnostic in caught.value.diagnostics]


def test_keys_and_values_keep_their_one_based_positions() -> None:
    data = parse_yaml('name: Backup\ncommand:\n  - /bin/true\n  - "/bin/echo hi"\n', "job.yaml")
    assert data == {"name": "Backup", "command": ["/bin/true", "/bin/echo hi"]}
    assert isinstance(data, MarkedMap)
    assert data.key_mark("command") == Mark("job.yaml", 2, 1, 0)
    assert data.value_mark("name") == Mark("job.yaml", 1, 7, 0)
    commands = data["command"]
    assert isinstance(commands, MarkedList)
    assert commands.item_marks == [Mark("job.yaml", 3, 5, 0), Mark("job.yaml", 4, 5, 1)]


def test_a_quoted_scalar_maps_offsets_past_its_opening_quote() -> None:
    data = parse_yaml("plain: 0 1\nquoted: '0 1'\nblock: |\n  text\n", "job.yaml")
    assert data.value_mark("plain").shifted(2) == Mark("job.yaml", 1, 10)
    assert data.value_mark("quoted").shifted(2) == Mark("job.yaml", 2, 12)
    # Inside a block scalar columns cannot be mapped back: the mark stays where it was.
    assert data.value_mark("block").shifted(2) == data.value_mark("block")


def test_plain_scalars_resolve_like_safe_load_and_keep_their_text() -> None:
    data = parse_yaml(
        "octal: 0755\nyes_word: yes\nnumber: 1_000\nfloat: 1.10\nnothing: ~\n"
        "date: 2024-01-01\nquoted: '0755'\n",
        "job.yaml",
    )
    assert data == {
        "octal": 493,
        "yes_word": True,
        "number": 1000,
        "float": 1.1,
        "nothing": None,
        "date": "2024-01-01",  # no job key wants a date object
        "quoted": "0755",
    }
    assert data.texts == {
        "octal": "0755",
        "yes_word": "yes",
        "number": "1_000",
        "float": "1.10",
        "nothing": "~",
    }


def test_keys_are_always_the_text_that_was_written() -> None:
    assert list(parse_yaml("1: a\ntrue: b\n~: c\n", "job.yaml")) == ["1", "true", "~"]


def test_an_empty_or_comment_only_file_is_an_empty_mapping() -> None:
    for text in ("", "# nothing here\n", "---\n", "~\n"):
        assert parse_yaml(text, "job.yaml") == {}


def test_a_byte_order_mark_is_accepted() -> None:
    assert parse_yaml("\ufeffname: x\n".encode(), "job.yaml") == {"name": "x"}


def test_every_duplicate_key_is_reported_with_both_lines() -> None:
    assert errors("command: a\nname: b\ncommand: c\nname: d\nenv:\n  A: 1\n  A: 2\n") == [
        "job.yaml:3:1: error: duplicate key 'command' (first defined on line 1); "
        "remove one of the two",
        "job.yaml:4:1: error: duplicate key 'name' (first defined on line 2); "
        "remove one of the two",
        "job.yaml:7:3: error: duplicate key 'A' (first defined on line 6); remove one of the two",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "name: a: b\n",
            "job.yaml:1:8: error: YAML syntax error: mapping values are not allowed in this "
            "context; check the indentation, and quote values that contain ': '",
        ),
        (
            "environment:\n\tPATH: /bin\n",
            "job.yaml:2:1: error: YAML syntax error: found character that cannot start any token; "
            "YAML does not allow tabs for indentation; indent with spaces",
        ),
        (
            "name: 'unclosed\ncommand: x\n",
            "job.yaml:3:1: error: YAML syntax error: found unexpected end of stream (while "
            "scanning a quoted scalar started on line 1); close the quote",
        ),
        (
            "tags: [a, b\n",
            "job.yaml:2:1: error: YAML syntax error: did not find expected ',' or ']' (while "
            "parsing a flow sequence started on line 1); check the indentation and the quoting",
        ),
    ],
)
def test_syntax_errors_point_at_their_line_and_column(text: str, expected: str) -> None:
    assert errors(text) == [expected]


def test_a_control_character_in_the_file_is_located() -> None:
    assert errors("name: ok\ncommand: a\x07b\n") == [
        "job.yaml:2:11: error: the file contains a character YAML does not allow "
        "(U+0007: control characters are not allowed); remove it"
    ]


def test_invalid_utf8_is_located() -> None:
    assert errors(b"name: ok\ncommand: caf\xe9\n") == [
        "job.yaml:2:13: error: the file is not valid UTF-8 (byte 0xe9); save it as UTF-8"
    ]


@pytest.mark.parametrize(
    ("text", "kind"),
    [("- /bin/true\n", "a list"), ("just text\n", "a single value ('just text')")],
)
def test_the_top_level_must_be_a_mapping(text: str, kind: str) -> None:
    assert errors(text) == [
        f"job.yaml:1:1: error: the file must be a YAML mapping of keys to values, not {kind}; "
        "write one 'key: value' per line, like 'name: Backup'"
    ]


def test_a_second_document_is_refused() -> None:
    assert errors("name: a\n---\nname: b\n") == [
        "job.yaml:2:1: error: a second YAML document ('---') in the same file; put one job per "
        "file and remove the '---' line"
    ]


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("data: !!python/object/apply:os.system [id]\n", "!!python/object/apply:os.system"),
        ("data: !!python/name:os.system ''\n", "!!python/name:os.system"),
        ("data: !!binary aGVsbG8=\n", "!!binary"),
        ("data: !!set {a, b}\n", "!!set"),
        ("data: !custom x\n", "!custom"),
    ],
)
def test_no_python_object_or_other_tag_is_ever_built(text: str, tag: str) -> None:
    assert errors(text) == [
        f"job.yaml:1:7: error: the tag {tag} is not allowed: job files hold only plain data "
        "(text, numbers, true/false, lists and mappings); remove the tag"
    ]


def test_standard_tags_are_honoured() -> None:
    assert parse_yaml("a: !!str 0755\nb: !!int '12'\n", "job.yaml") == {"a": "0755", "b": 12}
    assert errors("a: !!int twelve\n") == [
        "job.yaml:1:4: error: 'twelve' is not a valid int; remove the explicit tag or fix the value"
    ]


def test_aliases_and_merge_keys_work_within_limits() -> None:
    data = parse_yaml(
        "base: &base {timeout: 10, env: {A: 1}}\njob:\n  <<: *base\n  timeout: 20\nagain: *base\n",
        "job.yaml",
    )
    assert data["job"] == {"timeout": 20, "env": {"A": 1}}
    assert data["again"] == {"timeout": 10, "env": {"A": 1}}
    assert data.value_mark("again") == Mark("job.yaml", 5, 8, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "a: *nowhere\n",
            "job.yaml:1:4: error: alias *nowhere has no anchor &nowhere before it; "
            "define the anchor first",
        ),
        (
            "a: &loop [1, *loop]\n",
            "job.yaml:1:14: error: alias *loop refers to a node that contains it; "
            "a recursive structure cannot be a job setting",
        ),
        (
            "a: {[1, 2]: x}\n",
            "job.yaml:1:5: error: a list or mapping cannot be a key; write the key as plain text",
        ),
        (
            "a:\n  <<: [1]\n",
            "job.yaml:2:7: error: '<<' (merge) needs a mapping or a list of mappings; "
            "point it at an anchored mapping, e.g. <<: *defaults",
        ),
    ],
)
def test_broken_aliases_and_keys(text: str, expected: str) -> None:
    assert errors(text) == [expected]


def _billion_laughs(levels: int) -> str:
    lines = ["lol0: &lol0 [" + ", ".join(["lol"] * 10) + "]"]
    for level in range(1, levels):
        lines.append(f"lol{level}: &lol{level} [" + ", ".join([f"*lol{level - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_fails_fast_without_eating_memory() -> None:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        found = errors(_billion_laughs(9))  # would expand to 10**9 strings
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert found == [
        # the 8th *lol3 of line 5 (10**4 + ... values each) breaks the budget
        f"job.yaml:5:63: error: the document expands to more than {MAX_VALUES} values (too many "
        "aliases, as in a 'billion laughs' attack, or simply too much data); write the values "
        "out instead of nesting aliases"
    ]
    assert elapsed < 1.0
    assert peak < 10 * 1024 * 1024


def test_a_small_alias_tree_below_the_budget_loads() -> None:
    assert len(parse_yaml(_billion_laughs(3), "job.yaml")["lol2"]) == 10


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 200_000])
def test_deep_flow_nesting_fails_fast(depth: int) -> None:
    started = time.perf_counter()
    found = errors("a: " + "[" * depth + "]" * depth + "\n")
    assert time.perf_counter() - started < 1.0
    assert found == [
        f"job.yaml:1:{3 + MAX_DEPTH}: error: the document is nested more than {MAX_DEPTH} levels "
        "deep; flatten it (a job file needs three levels at most)"
    ]


def test_deep_block_nesting_fails_too() -> None:
    text = "".join("  " * level + f"k{level}:\n" for level in range(MAX_DEPTH + 5))
    assert errors(text)[0].startswith(
        f"job.yaml:{MAX_DEPTH + 1}:{2 * MAX_DEPTH + 1}: error: the document is nested more than"
    )


def test_nesting_up_to_the_limit_is_fine() -> None:
    depth = MAX_DEPTH - 1  # plus the top-level mapping
    value = parse_yaml("a: " + "[" * depth + "]" * depth + "\n", "job.yaml")["a"]
    levels = 0
    while value != []:
        value = value[0]
        levels += 1
    assert levels == depth - 1


def test_a_huge_file_is_refused_before_parsing() -> None:
    big = b"name: x\n" + b"# padding\n" * (MAX_FILE_BYTES // 10 + 1)
    assert errors(big) == [
        "job.yaml: error: the file is larger than 1024 KiB; a job or config file needs a few "
        "lines, so remove what is not needed"
    ]


def test_too_many_plain_values_are_refused_too() -> None:
    text = "a: [" + ",".join(["1"] * (MAX_VALUES + 10)) + "]\n"
    assert errors(text)[0].startswith(
        # the mapping, its key and the list come first
        f"job.yaml:1:{5 + 2 * (MAX_VALUES - 3)}: error: the document expands to more than"
    )


def test_read_bounded_never_reads_more_than_the_limit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "big.yaml"
    path.write_bytes(b"x" * (MAX_FILE_BYTES * 3))
    assert len(read_bounded(path)) == MAX_FILE_BYTES + 1
