"""Slow start through the unit: `pcsystemd start --slow-start JOB`.

`pcsystemd start --slow-start JOB` (root) writes a request file with a fresh id into a
root-owned directory next to the locks, then starts the unit as usual. The shim, as the
job user, may read but not forge it; it honours a request once (remembering the consumed
id in its state directory) and only while it is fresh, so a request never leaks into a
later scheduled run. No extra process or unit is involved.
"""

from __future__ import annotations

import os
import time

from pcsystemd import leanjson
from pcsystemd.errors import RunError
from pcsystemd.history import atomic_write

# Only for the type checker: the shim imports this module at every run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pcsystemd.model import GlobalConfig

REQUEST_TTL_SECONDS = 120.0
# In the job's state directory: the id of the last request a run honoured (or dropped).
_CONSUMED = "slow-start.consumed"


def request_path(lock_directory: str | os.PathLike[str], slug: str) -> str:
    """Where `pcsystemd start --slow-start` leaves its request for the next run."""
    return os.path.join(os.path.dirname(os.fspath(lock_directory)), "slow-start", slug)


def request(config: GlobalConfig, slug: str) -> str:
    """Ask the job's next run (started through its unit) to run slow_start_command; root only."""
    path = request_path(config.lock_directory, slug)
    request_id = os.urandom(8).hex()
    try:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    except OSError as error:
        raise RunError(f"cannot create {os.path.dirname(path)}: {error.strerror}") from error
    payload = {"id": request_id, "created": time.time()}
    atomic_write(path, leanjson.dumps(payload).encode() + b"\n", mode=0o644)
    return request_id


def pending(lock_directory: str, slug: str) -> str | None:
    """The id of a fresh, trustworthy slow-start request for the job, if there is one."""
    path = request_path(lock_directory, slug)
    try:
        with open(path, "rb") as request_file:
            owner = os.fstat(request_file.fileno()).st_uid
            data = leanjson.loads(request_file.read())
        request_id = data["id"]
        age = time.time() - float(data["created"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # Only root can write into the request directory; a file owned by anyone else was not
    # put there by `pcsystemd start`.
    if owner != 0 or not isinstance(request_id, str):
        return None
    if not -5.0 <= age <= REQUEST_TTL_SECONDS:
        return None
    return request_id


def _consumed(state_directory: str) -> str | None:
    """The id of the request the job's runs last honoured or dropped."""
    try:
        with open(os.path.join(state_directory, _CONSUMED), "rb") as consumed:
            return consumed.read().decode("utf-8", "replace").strip() or None
    except OSError:
        return None


def consume(state_directory: str, request_id: str) -> bool:
    """Remember that the request was used (or dropped), so that no later run honours it;
    False if it was already. Raises RunError when it cannot be remembered."""
    if _consumed(state_directory) == request_id:
        return False
    atomic_write(os.path.join(state_directory, _CONSUMED), request_id.encode() + b"\n")
    return True
