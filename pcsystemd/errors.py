"""The one exception hierarchy. Library code raises these; only the CLI entry prints them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, order=True)
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
