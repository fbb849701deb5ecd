"""The model's enumerations and the constants the compiler and the runtime shim share.

The runtime shim (`pcsystemd run-job`, every job run) needs `Overlap` and `RunResult` but
not the compiled model: importing `dataclasses` would cost its start-up ~15 ms (it pulls in
inspect, ast, dis and tokenize). enum itself is cheap next to that, and `signal` imports it
anyway. model.py re-exports these names, so the compiler's modules import them from there.
"""

from __future__ import annotations

from enum import StrEnum

UNIT_PREFIX = "pcsystemd-"
DEFAULT_CONFIG_PATH = "/etc/pcsystemd/pcsystemd.yaml"
# A job file or the global config larger than this is refused (yamlload), and has no
# fingerprint in a run spec (runspec).
MAX_FILE_BYTES = 1024 * 1024
# Seconds between the SIGTERM and the SIGKILL the shim sends a job's process group; the
# renderer derives TimeoutStopSec= from it so systemd waits for the shim to finish its records.
KILL_GRACE_SECONDS = 10
# Extra seconds systemd grants the shim after the grace period to write the log footer and history.
RECORD_MARGIN_SECONDS = 10


def retry_delay(
    delay_seconds: float, backoff: float, max_delay_seconds: float, attempt: int
) -> float:
    """Seconds to wait before retry number `attempt` (1-based): the job's `retries` settings."""
    return min(delay_seconds * backoff ** (attempt - 1), max_delay_seconds)


def unit_base_name(slug: str) -> str:
    """The one place a job's slug becomes a unit name (slugs are already unit-name safe)."""
    return f"{UNIT_PREFIX}{slug}"


class Overlap(StrEnum):
    """What a run does when its lock is held by another run."""

    SKIP = "skip"  # log, record `skipped`, exit 0 (process-control's allow_overtime)
    WAIT = "wait"  # wait up to `overlap_wait`, then fail
    FAIL = "fail"  # record a failure, exit non-zero (process-control's default)

    def waits(self) -> bool:
        return self is Overlap.WAIT

    def is_failure(self) -> bool:
        """Whether finding the lock held (after any waiting) counts as a failed run."""
        return self is not Overlap.SKIP


class RunResult(StrEnum):
    """How one run ended, as recorded in history and the log footer."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"  # non-zero exit, death by signal, stderr under stderr_is_failure
    TIMEOUT = "timeout"
    SKIPPED = "skipped"  # lock held under overlap: skip
    LOCKED = "locked"  # lock held under overlap: fail / wait ran out
    STOPPED = "stopped"  # the shim was told to stop (systemctl stop)
    TRIPPED = "tripped"  # refused by the circuit breaker
    ERROR = "error"  # the shim could not start the job (missing executable, bad cwd, ...)

    def is_failure(self) -> bool:
        return self not in (RunResult.SUCCESS, RunResult.SKIPPED, RunResult.RUNNING)

    def counts_towards_breaker(self) -> bool:
        """Refusals by the breaker itself and deliberate stops do not deepen the failure streak."""
        return self.is_failure() and self not in (RunResult.TRIPPED, RunResult.STOPPED)
