"""Runtime enable/disable of jobs (`pcsystemd disable JOB`) without editing the audited YAML.

A disabled job has a flag file `<disabled_directory>/<slug>` (root-owned, default
`/etc/pcsystemd/disabled`). Everything that decides which units exist honours it: the generator,
`pcsystemd generate` and `pcsystemd apply` treat the job as `disabled: true`, so its timer is
not produced while its service stays (it can still be started by hand, as with `disabled: true`).
The flag lives under /etc because the generator runs before /var is mounted, and because it is
administrator state like the links of `systemctl disable`, which also live in /etc.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from pcsystemd.errors import PcsystemdError
from pcsystemd.model import GlobalConfig, Job


class SwitchError(PcsystemdError):
    """A flag file cannot be written or removed."""


def flag_path(config: GlobalConfig, slug: str) -> Path:
    if not slug or "/" in slug or slug.startswith("."):
        raise SwitchError(f"{slug!r} is not a job name")
    return config.disabled_directory / slug


def disabled_at_runtime(config: GlobalConfig) -> frozenset[str]:
    """Slugs of the jobs switched off by `pcsystemd disable` (none without the directory)."""
    try:
        entries = list(os.scandir(config.disabled_directory))
    except OSError:
        return frozenset()
    return frozenset(
        entry.name
        for entry in entries
        if not entry.name.startswith(".") and entry.is_file(follow_symlinks=False)
    )


def honour_runtime_switches(jobs: Iterable[Job], config: GlobalConfig) -> list[Job]:
    """The jobs with every runtime-disabled one marked `disabled` (no timer is produced)."""
    switched_off = disabled_at_runtime(config)
    return [
        replace(job, disabled=True) if job.slug in switched_off and not job.disabled else job
        for job in jobs
    ]


def set_disabled(config: GlobalConfig, slug: str, disabled: bool) -> bool:
    """Create or remove the job's flag file; return whether anything changed."""
    path = flag_path(config, slug)
    try:
        if not disabled:
            path.unlink()
            return True
        if path.is_file():
            return False
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        temporary = path.with_name(f".{slug}.tmp")
        temporary.write_text(
            f"# `pcsystemd disable {slug}` at {stamp}; `pcsystemd enable {slug}` removes this.\n",
            encoding="utf-8",
        )
        os.replace(temporary, path)
        return True
    except FileNotFoundError:
        return False
    except OSError as error:
        verb = "disable" if disabled else "enable"
        raise SwitchError(f"cannot {verb} {slug}: {path}: {error.strerror}") from error
