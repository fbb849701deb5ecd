"""Write rendered units into a directory: atomically, only when changed, pruning only ours."""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pcsystemd.errors import PcsystemdError
from pcsystemd.model import GENERATED_MARKER, UNIT_PREFIX

_UNIT_SUFFIXES = (".service", ".timer", ".target")


class InstallError(PcsystemdError):
    """The output directory cannot be read or written."""


@dataclass
class Changes:
    """What a sync did (or, in a dry run, would do), by file name."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    diff: list[str] = field(default_factory=list)  # unified diff lines

    @property
    def any(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.changed)} changed, "
            f"{len(self.removed)} removed, {len(self.unchanged)} unchanged"
        )


def is_generated_by_us(path: Path) -> bool:
    """Our files carry the marker on their first line; nothing else is ever pruned."""
    if not (path.name.startswith(UNIT_PREFIX) and path.name.endswith(_UNIT_SUFFIXES)):
        return False
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            return GENERATED_MARKER in handle.readline()
    except OSError:
        return False


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise InstallError(f"{path}: cannot read: {error}") from error


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Write to a temporary sibling, fsync, then rename over: readers never see half a file."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _unified_diff(name: str, old: str | None, new: str | None) -> list[str]:
    return list(
        difflib.unified_diff(
            (old or "").splitlines(keepends=True),
            (new or "").splitlines(keepends=True),
            fromfile=f"a/{name}" if old is not None else "/dev/null",
            tofile=f"b/{name}" if new is not None else "/dev/null",
        )
    )


def sync_directory(
    directory: Path,
    files: Mapping[str, str],
    *,
    dry_run: bool = False,
    keep: Collection[str] = (),
) -> Changes:
    """Make `directory` hold exactly `files` among our generated units.

    `keep` names unit base names (e.g. `pcsystemd-yak`) whose existing files must survive even
    though nothing was rendered for them: a job whose file is now invalid keeps its last good
    units instead of silently losing its timer.
    """
    changes = Changes()
    if not dry_run:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InstallError(
                f"{directory}: cannot create the output directory: {error}"
            ) from error
    for name, text in sorted(files.items()):
        target = directory / name
        old = _read_text(target)
        if old == text:
            changes.unchanged.append(name)
            continue
        (changes.added if old is None else changes.changed).append(name)
        changes.diff += _unified_diff(name, old, text)
        if not dry_run:
            try:
                write_atomically(target, text)
            except OSError as error:
                raise InstallError(f"{target}: cannot write: {error}") from error
    if directory.is_dir():
        for existing in sorted(directory.iterdir()):
            if existing.name in files or not is_generated_by_us(existing):
                continue
            if existing.name.rsplit(".", 1)[0] in keep:
                continue
            changes.removed.append(existing.name)
            changes.diff += _unified_diff(existing.name, _read_text(existing), None)
            if not dry_run:
                existing.unlink()
    return changes
