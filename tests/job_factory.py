"""The one way tests build a `model.Job`: what the loader makes of `command: /bin/true`,
with the test's changes on top, so test jobs get the field table's real defaults."""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

from pcsystemd.jobbuild import build_job
from pcsystemd.model import GlobalConfig, Job
from pcsystemd.yamlload import parse_yaml


@cache
def _loaded(slug: str) -> Job:
    path = Path(f"/etc/pcsystemd/jobs/{slug}.yaml")
    job, problems = build_job(
        parse_yaml("command: /bin/true\n", path), path=path, slug=slug, config=GlobalConfig()
    )
    assert job is not None, problems
    return job


def make_job(slug: str = "demo", **changes: Any) -> Job:
    """A valid job named `slug` (lock group `slug`), with `changes` applied."""
    return replace(_loaded(slug), **changes)
