"""The one exception hierarchy. Library code raises these; only the CLI entry prints them."""

from __future__ import annotations

from pcsystemd.record import record

# The runtime shim imports this module at every job run: no dataclasses, no pathlib there.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path


@record
class Diagnostic:
    """One user-facing problem, printed GCC style so editors and CI annotate the line."""

    path: str
    line: int  # 1-based; 0 when the problem concerns the whole file
    column: int  # 1-based; 0 when unknown
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = self.path
        if self.line:
            where += f":{self.line}"
            if self.column:
                where += f":{self.column}"
        return f"{where}: {self.severity}: {self.message}"

    def __lt__(self, other: Diagnostic) -> bool:
        """Sorted by file, position, message and severity (what order=True would compare)."""
        return self._order_key() < other._order_key()

    def _order_key(self) -> tuple[str, int, int, str, str]:
        return (self.path, self.line, self.column, self.message, self.severity)


class PcsystemdError(Exception):
    """Base of every error pcsystemd reports to a person."""

    exit_code = 1


class UsageError(PcsystemdError):
    """Wrong command line, unknown job name and similar mistakes of the caller."""

    exit_code = 2


class ConfigError(PcsystemdError):
    """One or more problems in a job file or the global config, each with its position."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic) -> None:
        self.diagnostics = sorted(diagnostics) if isinstance(diagnostics, list) else [diagnostics]
        super().__init__("\n".join(str(d) for d in self.diagnostics))

    @classmethod
    def at(cls, path: str | Path, line: int, column: int, message: str) -> ConfigError:
        return cls(Diagnostic(str(path), line, column, message))


class GlobalConfigError(ConfigError):
    """The global config is unusable: nothing can be compiled (exit status 2)."""

    exit_code = 2


class SystemdError(PcsystemdError):
    """systemd is unreachable or refused a request."""


class RunError(PcsystemdError):
    """The runtime shim could not do its own work (log directory, lock, state)."""
