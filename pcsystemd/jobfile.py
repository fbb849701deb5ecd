"""Find job files, audit them (owner, mode, symlinks) and load them into Jobs.

The audit model: pcsystemd runs only jobs from the job directory. The directory, every directory
above it and every job file must belong to root (or a `trusted_owners` user) and must not be
writable by group or others, and a symlink in the directory must not lead out of it: otherwise
someone who is not trusted could change what runs, and as whom.

`audit` (keyword of load_job/load_jobs) says what is checked:
- None (the default): audit every file inside the job directory; a file named explicitly
  outside it (`pcsystemd validate ~/checkout/jobs/x.yaml`, a developer's review before a merge)
  is validated without the ownership audit, since pcsystemd never runs it from there.
- True: as None, but a file outside the job directory is an error.
- False: no audit at all (`pcsystemd validate --no-audit` on a checkout given as --jobs).

The runtime shim calls load_job at every run, so this module stays lean: no jinja2, croniter
or pystemd, and one open() per file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import re
import stat
from collections.abc import Sequence
from pathlib import Path

from pcsystemd.errors import ConfigError, Diagnostic
from pcsystemd.fieldparsers import SLUG_PATTERN, SLUG_RULE
from pcsystemd.jobbuild import build_job
from pcsystemd.model import RELOAD_SERVICE_UNIT, RELOAD_SLUG, GlobalConfig, Job
from pcsystemd.runspec import content_fingerprint
from pcsystemd.yamlload import parse_yaml, read_limited

JOB_SUFFIX = ".yaml"
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK  # NONBLOCK: a FIFO must not hang us


def slug_from_path(path: Path | str) -> str:
    """The job's slug: the file's basename without .yaml; a clear error if it is not valid."""
    name = Path(path).name
    if not name.endswith(JOB_SUFFIX):
        stem = name.rsplit(".", 1)[0] if "." in name else name
        raise ConfigError.at(
            path,
            0,
            0,
            f"job files end in .yaml; rename it to {_suggest_slug(stem)}.yaml",
        )
    slug = name.removesuffix(JOB_SUFFIX)
    if not SLUG_PATTERN.fullmatch(slug):
        raise ConfigError.at(
            path,
            0,
            0,
            f"{slug!r} is not a valid job name: the file name without .yaml names the job and "
            f"its units (pcsystemd-<name>.service), so it must be {SLUG_RULE}; rename the file, "
            f"e.g. to {_suggest_slug(slug)}.yaml",
        )
    if slug == RELOAD_SLUG:
        raise ConfigError.at(
            path,
            0,
            0,
            f"{slug!r} is reserved: {RELOAD_SERVICE_UNIT} is pcsystemd's own unit that makes "
            f"job changes live; rename the file, e.g. to {slug}-job.yaml",
        )
    return slug


def _suggest_slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")[:64].rstrip("-_")
    return slug or "my-job"


def job_path(config: GlobalConfig, slug: str) -> Path:
    """Where the job with this slug lives (the slug is validated: no '/', no '..')."""
    if not SLUG_PATTERN.fullmatch(slug):
        raise ConfigError.at(
            config.job_directory,
            0,
            0,
            f"{slug!r} is not a job name; a job's name is its file's basename without .yaml: "
            f"{SLUG_RULE}",
        )
    return config.job_directory / f"{slug}{JOB_SUFFIX}"


def is_leftover(name: str) -> bool:
    """Editor and package-manager leftovers that sit next to job files and are never jobs."""
    return (
        name.startswith(".")  # .x.yaml.swp, .#x.yaml (Emacs lock), .git
        or name.endswith("~")
        or re.search(r"\.(dpkg|ucf)-[a-z]+$", name) is not None  # x.yaml.dpkg-old, .ucf-dist
        or name.endswith((".swp", ".swo", ".bak", ".orig", ".rej", ".tmp"))
    )


def find_job_files(directory: Path) -> tuple[list[Path], list[Diagnostic]]:
    """Every `*.yaml` in the directory, sorted; a `*.yml` file is reported, not read."""
    files: list[Path] = []
    diagnostics: list[Diagnostic] = []
    for name in sorted(os.listdir(directory)):
        if is_leftover(name):
            continue
        path = directory / name
        if name.endswith(JOB_SUFFIX):
            files.append(path)
        elif name.endswith(".yml"):
            diagnostics.append(
                Diagnostic(
                    str(path),
                    0,
                    0,
                    f"ignored: job files must end in .yaml; did you mean {name[:-4]}.yaml? "
                    "rename the file",
                )
            )
    return files, diagnostics


class _Auditor:
    """Ownership and mode checks, with the trusted user ids and checked directories cached."""

    def __init__(self, config: GlobalConfig) -> None:
        self.config = config
        self.trusted_uids = {0}
        for name in config.trusted_owners:
            with contextlib.suppress(KeyError):  # a trusted owner that does not exist owns nothing
                self.trusted_uids.add(pwd.getpwnam(name).pw_uid)
        self.directories: dict[str, list[Diagnostic]] = {}

    def owner_name(self, uid: int) -> str | None:
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return None

    def check(
        self, path: str, status: os.stat_result, what: str, *, sticky_ok: bool = False
    ) -> list[Diagnostic]:
        """Owner and mode of one file or directory."""
        problems: list[Diagnostic] = []
        if status.st_uid not in self.trusted_uids:
            name = self.owner_name(status.st_uid)
            owner = f"{name} (uid {status.st_uid})" if name else f"uid {status.st_uid}"
            trusted = ", ".join(dict.fromkeys(("root", *self.config.trusted_owners)))
            alternative = (
                f" (or add {name} to trusted_owners in {self.config.config_file})" if name else ""
            )
            problems.append(
                Diagnostic(
                    path,
                    0,
                    0,
                    f"{what} is owned by {owner}, not by a trusted owner ({trusted}), so that "
                    f"user could change what runs; run chown root {path}{alternative}",
                )
            )
        mode = stat.S_IMODE(status.st_mode)
        writable = [who for who, bit in (("group", 0o020), ("others", 0o002)) if mode & bit]
        # In a sticky directory (/tmp) only an entry's owner may rename or remove it.
        sticky = sticky_ok and stat.S_ISDIR(status.st_mode) and bool(mode & stat.S_ISVTX)
        if writable and not sticky:
            problems.append(
                Diagnostic(
                    path,
                    0,
                    0,
                    f"{what} is writable by {' and '.join(writable)} (mode {mode:04o}), so they "
                    f"could change what runs; run chmod go-w {path}",
                )
            )
        return problems

    def directory_chain(self, directory: str, what: str, top: str = "") -> list[Diagnostic]:
        """Audit `directory` and every directory above it, up to `/` or to `top` (excluded).

        Whoever may rename a directory above the job directory may swap in another one.
        """
        cached = self.directories.get(directory)
        if cached is not None:
            return cached
        problems: list[Diagnostic] = []
        current = directory
        while current != top or current == directory:
            try:
                status = os.stat(current)
            except OSError as error:
                problems.append(Diagnostic(current, 0, 0, f"cannot check: {error.strerror}"))
                break
            if current == directory:
                problems += self.check(current, status, what)
            else:
                label = f"this directory (above {directory})"
                problems += self.check(current, status, label, sticky_ok=True)
            if current == "/":
                break
            current = os.path.dirname(current)
        self.directories[directory] = problems
        return problems


class _Loader:
    """Loads job files for one config, remembering what was already audited."""

    def __init__(self, config: GlobalConfig, audit: bool | None) -> None:
        self.config = config
        self.audit = audit
        self.auditor = _Auditor(config) if audit is not False else None
        directory = os.path.abspath(config.job_directory)
        self.directory = directory
        self.real_directory = os.path.realpath(directory)

    def directory_problems(self) -> list[Diagnostic]:
        """Problems with the job directory itself (and the directories above it)."""
        if self.auditor is None:
            return []
        problems = self.auditor.directory_chain(self.real_directory, "the job directory")
        if self.directory != self.real_directory:
            # The job directory is a symlink: whoever may replace the link chooses the jobs.
            link_parent = os.path.realpath(os.path.dirname(self.directory))
            problems = problems + self.auditor.directory_chain(
                link_parent, f"the directory holding the symlink {self.directory}"
            )
        return problems

    def inside(self, path: str) -> bool:
        parent = os.path.dirname(path)
        return parent in (self.directory, self.real_directory)

    def open(self, path: str, *, audited: bool) -> tuple[int, str]:
        """Open a job file; also returns the path of the file that was really opened."""
        if not audited:
            return os.open(path, _OPEN_FLAGS), path
        try:  # one system call in the common case: a plain file, no symlink
            return os.open(path, _OPEN_FLAGS | os.O_NOFOLLOW), path
        except OSError as error:
            if error.errno != errno.ELOOP:
                raise
        target = os.path.realpath(path)
        if not target.startswith(self.real_directory + os.sep):
            raise ConfigError.at(
                path,
                0,
                0,
                f"the file is a symlink to {target}, outside the job directory; pcsystemd only "
                "trusts files in the job directory: copy the file in instead of linking it",
            )
        return os.open(target, _OPEN_FLAGS | os.O_NOFOLLOW), target

    def load(self, path: Path) -> tuple[Job | None, list[Diagnostic]]:
        """One job file → (Job or None, every diagnostic)."""
        absolute = os.path.abspath(path)
        try:
            slug = slug_from_path(absolute)
        except ConfigError as error:
            return None, list(error.diagnostics)
        audited = self.auditor is not None and (self.inside(absolute) or self.audit is True)
        if audited and not self.inside(absolute):
            return None, [
                Diagnostic(
                    absolute,
                    0,
                    0,
                    f"the file is outside the job directory {self.directory}; pcsystemd only "
                    "trusts job files there: move it into the job directory",
                )
            ]
        problems = self.directory_problems() if audited else []
        if problems:
            return None, problems
        try:
            data = self.read(absolute, audited=audited)
        except ConfigError as error:
            return None, list(error.diagnostics)
        try:
            parsed = parse_yaml(data, absolute)
        except ConfigError as error:
            return None, list(error.diagnostics)
        return build_job(
            parsed,
            path=Path(absolute),
            slug=slug,
            config=self.config,
            fingerprint=content_fingerprint(data) or "",
        )

    def read(self, path: str, *, audited: bool) -> bytes:
        """The file's bytes, after the audit of the file it really is (symlinks resolved)."""
        try:
            descriptor, target = self.open(path, audited=audited)
        except FileNotFoundError:
            raise ConfigError.at(path, 0, 0, "the job file does not exist") from None
        except OSError as error:
            raise ConfigError.at(
                path, 0, 0, f"cannot read the job file: {error.strerror}"
            ) from None
        try:
            # The checks look at the file that was opened, not at a name that could be swapped.
            status = os.fstat(descriptor)
            if not stat.S_ISREG(status.st_mode):
                raise ConfigError.at(path, 0, 0, "not a regular file; a job file is a plain file")
            if audited:
                assert self.auditor is not None
                problems = self.auditor.check(target, status, "the job file")
                parent = os.path.dirname(target)
                if target != path and parent != self.real_directory:  # a link into a subdirectory
                    problems += self.auditor.directory_chain(
                        parent, "the directory of the job file", self.real_directory
                    )
                if problems:
                    raise ConfigError(problems)
            return read_limited(descriptor, status.st_size)
        finally:
            os.close(descriptor)


def load_jobs(
    config: GlobalConfig, paths: Sequence[Path] | None = None, *, audit: bool | None = None
) -> tuple[list[Job], list[Diagnostic]]:
    """Every valid job, and every problem of every invalid one; one bad job never stops another.

    `paths` None: every *.yaml of the job directory. A directory in `paths` stands for its
    *.yaml files. Problems with the job directory itself raise ConfigError: no job in it can be
    trusted then, and acting on an empty list would remove every unit.
    """
    loader = _Loader(config, audit)
    diagnostics: list[Diagnostic] = []
    files: list[Path] = []
    if paths is None:
        directory = Path(loader.directory)
        if not directory.exists() and not directory.is_symlink():
            warning = "the job directory does not exist: there are no jobs to compile"
            return [], [Diagnostic(str(directory), 0, 0, warning, "warning")]
        problems = loader.directory_problems()
        if problems:
            raise ConfigError(problems)
        files, found = _list(directory)
        diagnostics += found
    else:
        for path in paths:
            if Path(path).is_dir():
                more, found = _list(Path(path))
                files += more
                diagnostics += found
            else:
                files.append(Path(path))
    jobs: list[Job] = []
    defined_by: dict[str, Path] = {}
    for path in files:
        job, found = loader.load(path)
        diagnostics += found
        if job is None:
            continue
        if job.slug in defined_by:
            diagnostics.append(
                Diagnostic(
                    str(job.source_path),
                    0,
                    0,
                    f"job {job.slug!r} is also defined by {defined_by[job.slug]}; a job's name "
                    "(its file's basename) must be unique",
                )
            )
            continue
        defined_by[job.slug] = job.source_path
        jobs.append(job)
    return jobs, sorted(set(diagnostics))


def _list(directory: Path) -> tuple[list[Path], list[Diagnostic]]:
    try:
        return find_job_files(directory)
    except OSError as error:
        raise ConfigError.at(
            directory, 0, 0, f"cannot list the job directory: {error.strerror}"
        ) from None


def load_job(config: GlobalConfig, slug_or_path: str | Path, *, audit: bool | None = None) -> Job:
    """One job by slug (from the job directory) or by path; ConfigError with all its problems."""
    if (
        isinstance(slug_or_path, str)
        and "/" not in slug_or_path
        and not slug_or_path.endswith(JOB_SUFFIX)
    ):
        path = job_path(config, slug_or_path)
    else:
        path = Path(slug_or_path)
    job, diagnostics = _Loader(config, audit).load(path)
    if job is None:
        raise ConfigError(diagnostics)
    return job
