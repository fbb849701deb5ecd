"""Facts the unit and the shim must agree on, or every run fails: the lock file (the unit's
standard input, which the shim checks) and the time systemd grants the shim to stop."""

from __future__ import annotations

from pathlib import Path

import job_factory

from pcsystemd import locking, runner
from pcsystemd.model import GlobalConfig
from pcsystemd.render import unit_settings


def test_lock_file_and_stop_timeout_agree() -> None:
    for config in (GlobalConfig(), GlobalConfig(lock_directory=Path("/run/other/locks"))):
        job = job_factory.make_job("yak", lock_group="shared-group")
        settings = unit_settings(job, config)
        assert settings.lock_file == str(locking.lock_file_path(config, "shared-group"))
        assert settings.stop_timeout_seconds == runner.stop_timeout_seconds()
