"""The native journal protocol encoding and the journal-stream check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pcsystemd import journal


def test_simple_fields_are_key_equals_value_lines() -> None:
    data = journal.encode_fields({"MESSAGE": "hello", "PRIORITY": 6, "PCSYSTEMD_JOB": "demo"})
    assert data == b"MESSAGE=hello\nPRIORITY=6\nPCSYSTEMD_JOB=demo\n"


def test_values_with_newlines_use_the_length_prefixed_form() -> None:
    data = journal.encode_fields({"MESSAGE": "two\nlines"})
    assert data == b"MESSAGE\n" + (9).to_bytes(8, "little") + b"two\nlines\n"


@pytest.mark.parametrize("name", ["", "lower", "_TRUSTED", "1ST", "WITH-DASH", "É"])
def test_invalid_field_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        journal.encode_fields({name: "x"})


def test_send_without_a_journal_socket_reports_failure(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    assert journal.send({"MESSAGE": "x"}, socket_path=missing) is journal.Delivery.FAILED


def test_attached_to_journal_compares_device_and_inode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open(tmp_path / "stream", "w") as stream, open(tmp_path / "other", "w") as other:
        status = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{status.st_dev}:{status.st_ino}")
        assert journal.attached_to_journal(stream.fileno())
        assert not journal.attached_to_journal(other.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", "garbage")
        assert not journal.attached_to_journal(stream.fileno())
        monkeypatch.delenv("JOURNAL_STREAM")
        assert not journal.attached_to_journal(stream.fileno())
