"""install.sync_directory on a real directory: atomic writes, mtimes kept, only our files pruned."""

from __future__ import annotations

import os
from pathlib import Path

from pcsystemd.install import is_generated_by_us, sync_directory
from pcsystemd.model import GENERATED_MARKER

OURS = f"# {GENERATED_MARKER} from /etc/pcsystemd/jobs/a.yaml\n[Unit]\n"


def test_first_sync_writes_everything(tmp_path: Path) -> None:
    changes = sync_directory(tmp_path / "out", {"pcsystemd-a.service": OURS})
    assert changes.added == ["pcsystemd-a.service"]
    assert (tmp_path / "out" / "pcsystemd-a.service").read_text() == OURS
    assert oct((tmp_path / "out" / "pcsystemd-a.service").stat().st_mode & 0o777) == "0o644"


def test_unchanged_files_keep_their_mtime(tmp_path: Path) -> None:
    sync_directory(tmp_path, {"pcsystemd-a.service": OURS})
    unit = tmp_path / "pcsystemd-a.service"
    os.utime(unit, (1_000_000, 1_000_000))
    changes = sync_directory(tmp_path, {"pcsystemd-a.service": OURS})
    assert not changes.any
    assert changes.unchanged == ["pcsystemd-a.service"]
    assert unit.stat().st_mtime == 1_000_000


def test_changed_file_is_replaced_and_diffed(tmp_path: Path) -> None:
    sync_directory(tmp_path, {"pcsystemd-a.service": OURS})
    changes = sync_directory(tmp_path, {"pcsystemd-a.service": OURS + "Description=x\n"})
    assert changes.changed == ["pcsystemd-a.service"]
    assert "+Description=x\n" in changes.diff
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary left"


def test_prune_removes_only_our_generated_units(tmp_path: Path) -> None:
    sync_directory(tmp_path, {"pcsystemd-a.service": OURS, "pcsystemd-b.service": OURS})
    (tmp_path / "pcsystemd-handmade.service").write_text("[Unit]\n")  # not ours: no marker
    (tmp_path / "nginx.service").write_text(OURS)  # marker but not our prefix
    changes = sync_directory(tmp_path, {"pcsystemd-a.service": OURS})
    assert changes.removed == ["pcsystemd-b.service"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "nginx.service",
        "pcsystemd-a.service",
        "pcsystemd-handmade.service",
    ]


def test_keep_protects_units_of_an_invalid_job(tmp_path: Path) -> None:
    sync_directory(tmp_path, {"pcsystemd-a.service": OURS, "pcsystemd-a.timer": OURS})
    changes = sync_directory(tmp_path, {}, keep={"pcsystemd-a"})
    assert changes.removed == []
    assert (tmp_path / "pcsystemd-a.timer").exists()


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    changes = sync_directory(tmp_path / "out", {"pcsystemd-a.service": OURS}, dry_run=True)
    assert changes.added == ["pcsystemd-a.service"]
    assert not (tmp_path / "out").exists()


def test_symlinks_are_never_ours(tmp_path: Path) -> None:
    (tmp_path / "real").write_text(OURS)
    (tmp_path / "pcsystemd-x.service").symlink_to(tmp_path / "real")
    assert not is_generated_by_us(tmp_path / "pcsystemd-x.service")
