"""Job files on disk: finding them, the audit (owner, mode, symlinks), loading, invalid cases.

tests/cases/invalid/<name>/ holds job.yaml (and optionally config.yaml) with the exact errors in
expected-errors.txt, paths relative to the case. Regenerate with PCSYSTEMD_REGENERATE=1.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from pcsystemd import config as config_module
from pcsystemd.config import load_global_config
from pcsystemd.errors import ConfigError
from pcsystemd.jobfile import is_leftover, load_job, load_jobs, slug_from_path
from pcsystemd.model import GlobalConfig, Overlap

INVALID_CASES = Path(__file__).resolve().parent.parent / "cases" / "invalid"
REGENERATE = os.environ.get("PCSYSTEMD_REGENERATE") == "1"
IS_ROOT = os.geteuid() == 0
# Files the tests create belong to whoever runs them; that user must be trusted unless root.
ME = pwd.getpwuid(os.geteuid()).pw_name
TRUSTED = ("root",) if IS_ROOT else ("root", ME)
YAK = 'name: Shave the yak\ncommand: /bin/true\nschedule: "30 12 * * *"\n'
needs_root = pytest.mark.skipif(not IS_ROOT, reason="changing a file's owner needs root")


def job_directory(tmp_path: Path) -> Path:
    directory = tmp_path / "jobs"
    directory.mkdir()
    directory.chmod(0o755)
    return directory


def config_for(directory: Path, **settings: object) -> GlobalConfig:
    return GlobalConfig(job_directory=directory, trusted_owners=TRUSTED, **settings)  # type: ignore[arg-type]


def write(directory: Path, name: str, text: str = YAK, mode: int = 0o644) -> Path:
    path = directory / name
    path.write_text(text)
    path.chmod(mode)
    return path


def messages(diagnostics: list[object]) -> list[str]:
    return [str(diagnostic) for diagnostic in diagnostics]


# ---------------------------------------------------------------------------------------------
# Invalid cases with their exact errors


@pytest.mark.parametrize("name", sorted(path.name for path in INVALID_CASES.iterdir()))
def test_invalid_case_reports_exactly_its_expected_errors(name: str) -> None:
    case = INVALID_CASES / name
    config_file = case / "config.yaml"
    config = load_global_config(config_file, environ={}) if config_file.exists() else GlobalConfig()
    jobs, diagnostics = load_jobs(config, [case / "job.yaml"], audit=False)
    assert jobs == []
    found = "".join(f"{d}\n".replace(f"{case}/", "") for d in diagnostics)
    expected_file = case / "expected-errors.txt"
    if REGENERATE:
        expected_file.write_text(found)
    assert found == expected_file.read_text()
    assert all(d.severity == "error" for d in diagnostics)


# ---------------------------------------------------------------------------------------------
# Loading


def test_the_yak_compiles_with_no_global_config_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", tmp_path / "none.yaml")
    config = load_global_config(None, environ={})
    assert config == GlobalConfig()
    directory = job_directory(tmp_path)
    write(directory, "yak.yaml")
    jobs, diagnostics = load_jobs(replace(config, job_directory=directory, trusted_owners=TRUSTED))
    assert diagnostics == []
    [job] = jobs
    assert (job.slug, job.name, job.user) == ("yak", "Shave the yak", "pcsystemd")
    assert job.commands == (("/bin/true",),)
    assert job.all_on_calendar == ("*-*-* 12:30:00",)
    assert job.source_path == directory / "yak.yaml"


def test_a_process_control_job_directory_loads_unchanged(tmp_path: Path) -> None:
    directory = job_directory(tmp_path)
    write(
        directory,
        "paypal_audit.yaml",
        "name: PayPal audit\n"
        "description: >\n"
        "    Parse the PayPal audit files.\n"
        "command:\n"
        "    - /usr/bin/paypal-audit --fetch\n"
        '    - /usr/bin/paypal-audit --parse "/var/spool/audit dir"\n'
        "slow_start_command: /usr/bin/paypal-audit --fetch --all-history\n"
        "schedule: 35 19 * * *\n"
        "disabled: false\n"
        "timeout: 30\n"
        "environment:\n"
        "    PYTHONPATH: /srv/audit/lib\n"
        "    RETRIES: 3\n"
        "tag: payments\n"
        "tags: [audit]\n"
        "allow_overtime: true\n"
        "failure_threshold_for_mail: 2\n"
        "failmail:\n"
        '    from_address: "Fail Mail <fr-tech@example.org>"\n'
        "    to_address: fr-tech@example.org\n",
    )
    job = load_job(config_for(directory), "paypal_audit")
    assert job.name == "PayPal audit"
    assert job.description == "Parse the PayPal audit files."
    assert job.commands == (
        ("/usr/bin/paypal-audit", "--fetch"),
        ("/usr/bin/paypal-audit", "--parse", "/var/spool/audit dir"),
    )
    assert job.slow_start_commands == (("/usr/bin/paypal-audit", "--fetch", "--all-history"),)
    assert job.all_on_calendar == ("*-*-* 19:35:00",)
    assert job.scheduled
    assert job.timeout_seconds == 1800
    assert job.environment == (("PYTHONPATH", "/srv/audit/lib"), ("RETRIES", "3"))
    assert job.tags == ("payments", "audit")
    assert job.overlap is Overlap.SKIP
    assert job.failure_threshold_for_mail == 2
    assert job.failmail.to_address == ("fr-tech@example.org",)


def test_one_bad_job_never_stops_the_others(tmp_path: Path) -> None:
    directory = job_directory(tmp_path)
    write(directory, "b-good.yaml")
    write(directory, "a-bad.yaml", "command: /bin/true\ntimeout: soon\nuser: root\n")
    write(directory, "c-broken.yaml", "command: [unclosed\n")
    write(directory, "d-good.yaml")
    jobs, diagnostics = load_jobs(config_for(directory))
    assert [job.slug for job in jobs] == ["b-good", "d-good"]
    assert messages(diagnostics) == [
        f"{directory}/a-bad.yaml:2:10: error: 'timeout' 'soon' is not a duration; write '90s', "
        "'15m', '2h', '1d' or '1h30m'",
        f"{directory}/a-bad.yaml:3:7: error: 'user' root is not allowed: jobs run as root only "
        "when /etc/pcsystemd/pcsystemd.yaml says allow_root: true",
        f"{directory}/c-broken.yaml:2:1: error: YAML syntax error: did not find expected ',' or "
        "']' (while parsing a flow sequence started on line 1); check the indentation and the "
        "quoting",
    ]


def test_leftovers_are_ignored_and_yml_is_reported(tmp_path: Path) -> None:
    directory = job_directory(tmp_path)
    write(directory, "real.yaml")
    for leftover in (
        "real.yaml~",
        ".real.yaml.swp",
        ".#real.yaml",
        "real.yaml.dpkg-old",
        "real.yaml.dpkg-dist",
        "real.yaml.ucf-dist",
        "README.md",
        ".hidden.yaml",
    ):
        write(directory, leftover, "not: [a job\n")
    (directory / "subdirectory.d").mkdir()
    write(directory, "typo.yml")
    jobs, diagnostics = load_jobs(config_for(directory))
    assert [job.slug for job in jobs] == ["real"]
    assert messages(diagnostics) == [
        f"{directory}/typo.yml: error: ignored: job files must end in .yaml; did you mean "
        "typo.yaml? rename the file"
    ]
    assert is_leftover("x.yaml.dpkg-new") and not is_leftover("x.yaml")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "Backup Job.yaml",
            "'Backup Job' is not a valid job name: the file name without .yaml names the job and "
            "its units (pcsystemd-<name>.service), so it must be lowercase letters, digits, '-' "
            "and '_', starting with a letter or digit, at most 64 characters; rename the file, "
            "e.g. to backup-job.yaml",
        ),
        (
            "-leading.yaml",
            "'-leading' is not a valid job name: the file name without .yaml names the job and "
            "its units (pcsystemd-<name>.service), so it must be lowercase letters, digits, '-' "
            "and '_', starting with a letter or digit, at most 64 characters; rename the file, "
            "e.g. to leading.yaml",
        ),
        (
            "x" * 65 + ".yaml",
            f"'{'x' * 65}' is not a valid job name: the file name without .yaml names the job "
            "and its units (pcsystemd-<name>.service), so it must be lowercase letters, digits, "
            "'-' and '_', starting with a letter or digit, at most 64 characters; rename the "
            f"file, e.g. to {'x' * 64}.yaml",
        ),
    ],
)
def test_file_names_must_make_valid_slugs(tmp_path: Path, name: str, message: str) -> None:
    directory = job_directory(tmp_path)
    write(directory, name)
    jobs, diagnostics = load_jobs(config_for(directory))
    assert jobs == []
    assert messages(diagnostics) == [f"{directory}/{name}: error: {message}"]


def test_slug_from_path() -> None:
    assert slug_from_path(Path("/etc/pcsystemd/jobs/nightly_backup-2.yaml")) == "nightly_backup-2"
    with pytest.raises(ConfigError) as caught:
        slug_from_path("/srv/jobs/backup.json")
    assert str(caught.value) == (
        "/srv/jobs/backup.json: error: job files end in .yaml; rename it to backup.yaml"
    )


def test_load_job_by_slug_and_its_errors(tmp_path: Path) -> None:
    directory = job_directory(tmp_path)
    write(directory, "yak.yaml")
    write(directory, "bad.yaml", "command: /bin/true\ndisabled: maybe\nhardening: loose\n")
    config = config_for(directory)
    assert load_job(config, "yak").slug == "yak"
    assert load_job(config, directory / "yak.yaml").slug == "yak"
    with pytest.raises(ConfigError) as caught:
        load_job(config, "bad")
    assert messages(caught.value.diagnostics) == [
        f"{directory}/bad.yaml:2:11: error: 'disabled' must be true or false, not a string "
        "('maybe')",
        f"{directory}/bad.yaml:3:12: error: 'hardening' must be one of none, basic, strict, not "
        "'loose'",
    ]
    with pytest.raises(ConfigError) as caught:
        load_job(config, "gone")
    assert str(caught.value) == f"{directory}/gone.yaml: error: the job file does not exist"


@pytest.mark.parametrize("slug", ["../etc/passwd", "..", "Yak", ".hidden"])
def test_load_job_refuses_names_that_are_not_slugs(tmp_path: Path, slug: str) -> None:
    directory = job_directory(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_job(config_for(directory), slug)
    if "/" in slug:  # taken as a path: outside the job directory, and not a .yaml file
        assert "job files end in .yaml" in str(caught.value)
    else:
        assert str(caught.value) == (
            f"{directory}: error: {slug!r} is not a job name; a job's name is its file's "
            "basename without .yaml: lowercase letters, digits, '-' and '_', starting with a "
            "letter or digit, at most 64 characters"
        )


def test_explicit_paths_and_directories(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    write(checkout, "one.yaml")
    write(checkout, "two.yaml", "command: /bin/true\n", mode=0o666)  # a developer's umask
    other = tmp_path / "other"
    other.mkdir()
    write(other, "one.yaml")
    config = config_for(job_directory(tmp_path))
    # Outside the job directory: validated, ownership not audited.
    jobs, diagnostics = load_jobs(config, [checkout])
    assert ([job.slug for job in jobs], diagnostics) == (["one", "two"], [])
    jobs, diagnostics = load_jobs(config, [checkout / "one.yaml", other / "one.yaml"])
    assert [job.source_path for job in jobs] == [checkout / "one.yaml"]
    assert messages(diagnostics) == [
        f"{other}/one.yaml: error: job 'one' is also defined by {checkout}/one.yaml; a job's "
        "name (its file's basename) must be unique"
    ]


def test_audit_true_refuses_files_outside_the_job_directory(tmp_path: Path) -> None:
    directory = job_directory(tmp_path)
    outside = write(tmp_path, "elsewhere.yaml")
    config = config_for(directory)
    with pytest.raises(ConfigError) as caught:
        load_job(config, outside, audit=True)
    assert str(caught.value) == (
        f"{outside}: error: the file is outside the job directory {directory}; pcsystemd only "
        "trusts job files there: move it into the job directory"
    )
    assert load_job(config, outside).slug == "elsewhere"  # audit=None: a developer's check


def test_a_missing_job_directory_is_a_warning_not_an_error(tmp_path: Path) -> None:
    jobs, diagnostics = load_jobs(config_for(tmp_path / "absent"))
    assert jobs == []
    assert messages(diagnostics) == [
        f"{tmp_path}/absent: warning: the job directory does not exist: there are no jobs to "
        "compile"
    ]


def test_defaults_from_the_global_config_file_apply_to_every_job(tmp_path: Path) -> None:
    config_file = tmp_path / "pcsystemd.yaml"
    config_file.write_text(
        "allowed_users: [batch]\n"
        "defaults:\n"
        "  user: batch\n"
        "  timeout: 45m\n"
        "  environment: {LANG: C.UTF-8, TZ: UTC}\n"
    )
    directory = job_directory(tmp_path)
    write(directory, "a.yaml", "command: /bin/true\nenvironment: {TZ: Europe/Paris}\n")
    write(directory, "b.yaml", "command: /bin/true\nuser: pcsystemd\ntimeout: 0\n")
    config = replace(load_global_config(config_file, environ={}), job_directory=directory)
    jobs, diagnostics = load_jobs(replace(config, trusted_owners=TRUSTED))
    assert diagnostics == []
    first, second = jobs
    assert (first.user, first.timeout_seconds) == ("batch", 2700)
    assert first.environment == (("LANG", "C.UTF-8"), ("TZ", "Europe/Paris"))
    assert (second.user, second.timeout_seconds) == ("pcsystemd", 0)


# ---------------------------------------------------------------------------------------------
# The audit


def test_a_group_or_world_writable_job_file_is_refused(tmp_path: Path) -> None:
    directory = job_directory(tmp_path)
    write(directory, "good.yaml")
    bad = write(directory, "shared.yaml", mode=0o666)
    jobs, diagnostics = load_jobs(config_for(directory))
    assert [job.slug for job in jobs] == ["good"]
    assert messages(diagnostics) == [
        f"{bad}: error: the job file is writable by group and others (mode 0666), so they "
        f"could change what runs; run chmod go-w {bad}"
    ]
    bad.chmod(0o664)
    with pytest.raises(ConfigError) as caught:
        load_job(config_for(directory), "shared")
    assert "writable by group (mode 0664)" in str(caught.value)


@needs_root
def test_a_job_file_owned_by_an_untrusted_user_is_refused(tmp_path: Path) -> None:
    directory = job_directory(tmp_path)
    named = write(directory, "named.yaml")
    os.chown(named, pwd.getpwnam("nobody").pw_uid, -1)
    unnamed = write(directory, "unnamed.yaml")
    os.chown(unnamed, 4242, -1)
    config = config_for(directory, source_path=Path("/etc/pcsystemd/pcsystemd.yaml"))
    jobs, diagnostics = load_jobs(config)
    assert jobs == []
    uid = pwd.getpwnam("nobody").pw_uid
    assert messages(diagnostics) == [
        f"{named}: error: the job file is owned by nobody (uid {uid}), not by a trusted owner "
        f"(root), so that user could change what runs; run chown root {named} (or add nobody "
        "to trusted_owners in /etc/pcsystemd/pcsystemd.yaml)",
        f"{unnamed}: error: the job file is owned by uid 4242, not by a trusted owner (root), "
        f"so that user could change what runs; run chown root {unnamed}",
    ]
    # A trusted owner (the deploy user of config management) may own them.
    trusted = replace(config, trusted_owners=("root", "nobody"))
    assert [job.slug for job in load_jobs(trusted)[0]] == ["named"]


def test_an_untrusted_job_directory_stops_every_job(tmp_path: Path) -> None:
    directory = job_directory(tmp_path)
    write(directory, "yak.yaml")
    directory.chmod(0o777)
    with pytest.raises(ConfigError) as caught:
        load_jobs(config_for(directory))
    assert str(caught.value) == (
        f"{directory}: error: the job directory is writable by group and others (mode 0777), "
        f"so they could change what runs; run chmod go-w {directory}"
    )
    with pytest.raises(ConfigError):
        load_job(config_for(directory), "yak")  # the shim refuses to run it, too
    # No audit: a developer validating a checkout.
    assert [job.slug for job in load_jobs(config_for(directory), audit=False)[0]] == ["yak"]


def test_a_writable_directory_above_the_job_directory_is_refused(tmp_path: Path) -> None:
    parent = tmp_path / "etc"
    parent.mkdir()
    directory = job_directory(parent)
    write(directory, "yak.yaml")
    parent.chmod(0o775)
    with pytest.raises(ConfigError) as caught:
        load_jobs(config_for(directory))
    assert str(caught.value) == (
        f"{parent}: error: this directory (above {directory}) is writable by group (mode 0775), "
        f"so they could change what runs; run chmod go-w {parent}"
    )
    parent.chmod(0o1777)  # sticky, like /tmp: only an entry's owner may rename it
    assert [job.slug for job in load_jobs(config_for(directory))[0]] == ["yak"]


def test_a_symlinked_job_directory_is_audited_on_both_ends(tmp_path: Path) -> None:
    real = job_directory(tmp_path)
    write(real, "yak.yaml")
    holder = tmp_path / "etc"
    holder.mkdir()
    (holder / "jobs").symlink_to(real)
    config = config_for(holder / "jobs")
    assert [job.slug for job in load_jobs(config)[0]] == ["yak"]
    assert load_job(config, "yak").source_path == holder / "jobs" / "yak.yaml"
    holder.chmod(0o777)
    with pytest.raises(ConfigError) as caught:
        load_jobs(config)
    assert str(caught.value) == (
        f"{holder}: error: the directory holding the symlink {holder}/jobs is writable by group "
        f"and others (mode 0777), so they could change what runs; run chmod go-w {holder}"
    )


def test_symlinks_must_not_lead_out_of_the_job_directory(tmp_path: Path) -> None:
    directory = job_directory(tmp_path)
    real = write(directory, "real.yaml")
    outside = write(tmp_path, "outside.yaml")
    (directory / "alias.yaml").symlink_to(real)
    (directory / "escape.yaml").symlink_to(outside)
    (directory / "relative.yaml").symlink_to("../outside.yaml")
    subdirectory = directory / "shared"
    subdirectory.mkdir()
    subdirectory.chmod(0o777)
    write(subdirectory, "inner.yaml")
    (directory / "inner.yaml").symlink_to(subdirectory / "inner.yaml")
    jobs, diagnostics = load_jobs(config_for(directory))
    assert [job.slug for job in jobs] == ["alias", "real"]
    assert messages(diagnostics) == [
        f"{directory}/escape.yaml: error: the file is a symlink to {outside}, outside the job "
        "directory; pcsystemd only trusts files in the job directory: copy the file in instead "
        "of linking it",
        f"{directory}/relative.yaml: error: the file is a symlink to {outside}, outside the job "
        "directory; pcsystemd only trusts files in the job directory: copy the file in instead "
        "of linking it",
        f"{subdirectory}: error: the directory of the job file is writable by group and others "
        f"(mode 0777), so they could change what runs; run chmod go-w {subdirectory}",
    ]


def test_a_job_file_must_be_a_regular_file(tmp_path: Path) -> None:
    directory = job_directory(tmp_path)
    os.mkfifo(directory / "fifo.yaml", 0o644)  # opening it must not hang
    (directory / "dir.yaml").mkdir()
    jobs, diagnostics = load_jobs(config_for(directory))
    assert jobs == []
    assert messages(diagnostics) == [
        f"{directory}/dir.yaml: error: not a regular file; a job file is a plain file",
        f"{directory}/fifo.yaml: error: not a regular file; a job file is a plain file",
    ]


def test_loading_a_job_imports_nothing_heavy(tmp_path: Path) -> None:
    """The runtime shim loads its job at every run: no jinja2, croniter or pystemd."""
    directory = job_directory(tmp_path)
    write(directory, "yak.yaml")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from pcsystemd.config import load_global_config\n"
        "from pcsystemd.jobfile import load_job\n"
        "from pcsystemd.model import GlobalConfig\n"
        f"config = GlobalConfig(job_directory=Path({str(directory)!r}),\n"
        f"                      trusted_owners={TRUSTED!r})\n"
        "assert load_job(config, 'yak').slug == 'yak'\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('jinja2', 'croniter', 'pystemd'))\n"
        "print(heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
