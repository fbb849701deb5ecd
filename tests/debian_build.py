"""Build (or reuse) the .deb of the current tree: shared by the package's integration test and
its system test, so one build serves both."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
BUILD_DEB = REPOSITORY / "scripts" / "build-deb"
# Outside the repository; shared between the tests and across sessions (keyed by source hash).
PACKAGE_CACHE = Path(os.environ.get("PCSYSTEMD_DEB_CACHE", "/var/tmp/pcsystemd-deb"))
BUILD_TOOLS = ("dpkg-buildpackage", "dh", "pybuild")


def build_package(tools: tuple[str, ...] = BUILD_TOOLS) -> Path:
    """The .deb of the current tree: built now, or reused when already built from it."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"Debian build tools missing ({', '.join(missing)}): run scripts/setup")
    result = subprocess.run(
        [str(BUILD_DEB), "--reuse", str(PACKAGE_CACHE)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        pytest.fail(f"scripts/build-deb failed:\n{result.stderr[-5000:]}")
    return Path(result.stdout.strip().splitlines()[-1])
