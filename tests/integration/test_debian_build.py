"""The Debian package: built by scripts/build-deb, lintian-clean, and holding what it promises.

The package is built once per source tree (scripts/build-deb --reuse keeps it in
/var/tmp/pcsystemd-deb, keyed by a hash of the tree), so this module and the system test that
installs it share one build. Installing it into a real systemd:
tests/system/test_debian_package.py.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import debian_build
import pytest

import pcsystemd
from pcsystemd import schema
from pcsystemd.cli import build_parser
from pcsystemd.config import CONFIG_FIELDS

pytestmark = pytest.mark.slow

REPOSITORY = Path(__file__).resolve().parents[2]
DEBIAN = REPOSITORY / "packaging" / "debian"
# The Debian packages of pcsystemd's Python dependencies (pyproject name -> Debian name).
DEBIAN_NAMES = {
    "pyyaml": "python3-yaml",
    "jinja2": "python3-jinja2",
    "croniter": "python3-croniter",
    "pystemd": "python3-pystemd",
}
BASH_COMPLETION = Path("/usr/share/bash-completion/bash_completion")


def build_package() -> Path:
    return debian_build.build_package((*debian_build.BUILD_TOOLS, "lintian"))


@pytest.fixture(scope="module")
def deb() -> Path:
    return build_package()


@pytest.fixture(scope="module")
def unpacked(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package's files (dpkg-deb -x) with its control files in DEBIAN/ (dpkg-deb -e)."""
    root = tmp_path_factory.mktemp("deb-root")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    subprocess.run(["dpkg-deb", "-e", str(deb), str(root / "DEBIAN")], check=True)
    return root


def control_field(deb: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True
    ).stdout.strip()


def package_paths(deb: Path) -> dict[str, str]:
    """Path inside the package -> `ls -l` style mode and owner column (dpkg-deb -c)."""
    listing = subprocess.run(
        ["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    paths = {}
    for line in listing.splitlines():
        mode, owner, _size, _date, _time, name = line.split(None, 5)
        paths[name.split(" -> ")[0].removeprefix(".").rstrip("/") or "/"] = f"{mode} {owner}"
    return paths


def read_maybe_gzipped(path: Path) -> bytes:
    if path.exists():
        return path.read_bytes()
    return gzip.decompress(path.with_name(path.name + ".gz").read_bytes())


def files_below(directory: Path) -> Iterator[Path]:
    for path in sorted(directory.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path.relative_to(directory)


def man_section(page: str, title: str) -> str:
    """The roff text of one `.SH` section of a man page."""
    match = re.search(rf"^\.SH {re.escape(title)}\n(.*?)(?=^\.SH |\Z)", page, re.M | re.S)
    assert match, f"no section {title!r}"
    return match.group(1)


# ---------------------------------------------------------------------------- the build


def test_package_is_named_after_the_version_and_architecture_all(deb: Path) -> None:
    assert deb.name == f"pcsystemd_{pcsystemd.__version__}_all.deb"
    assert control_field(deb, "Package") == "pcsystemd"
    assert control_field(deb, "Version") == pcsystemd.__version__
    assert control_field(deb, "Architecture") == "all"


def test_depends_on_debian_packages_of_every_python_dependency(deb: Path) -> None:
    """Each pyproject dependency maps to its Debian package, with the same lower bound."""
    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]
    depends = {
        relation.split(" ", 1)[0]: relation
        for relation in (item.strip() for item in control_field(deb, "Depends").split(","))
    }
    for requirement in project["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)", requirement)
        assert match, f"unexpected requirement syntax {requirement!r}"
        debian_name = DEBIAN_NAMES[match.group(1).lower()]
        assert depends.get(debian_name) == f"{debian_name} (>= {match.group(2)})", depends
    assert "systemd" in depends


def test_lintian_reports_no_errors_and_no_warnings(deb: Path) -> None:
    changes = sorted(deb.parent.glob(f"pcsystemd_{pcsystemd.__version__}_*.changes"))
    result = subprocess.run(
        ["lintian", "--fail-on", "error,warning", str(deb), *map(str, changes)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    complaints = [line for line in result.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert complaints == [], result.stdout
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_lintian_override_has_a_written_reason() -> None:
    for overrides in DEBIAN.glob("*lintian-overrides"):
        previous = ""
        for line in overrides.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                assert previous.startswith("#"), f"{overrides.name}: no reason above {line!r}"
            previous = line


# ---------------------------------------------------------------------------- contents


def test_installs_the_entry_points_and_generator(deb: Path, unpacked: Path) -> None:
    paths = package_paths(deb)
    for path, module, options in (
        # -S as well for the command every job run starts (packaging/pcsystemd-entry-point)
        ("/usr/bin/pcsystemd", "pcsystemd.cli", "-IS"),
        ("/usr/lib/systemd/system-generators/pcsystemd-generator", "pcsystemd.generator", "-I"),
    ):
        assert paths[path].startswith("-rwxr-xr-x root/root"), (path, paths[path])
        script = (unpacked / path.lstrip("/")).read_text()
        # isolated: a job's PYTHONPATH (its Environment=) must not reach pcsystemd's imports
        assert script.startswith(f"#!/usr/bin/python3 {options}\n"), script
        assert f"from {module} import main" in script, script
    assert "/usr/bin/pcsystemd-generator" not in paths


def test_templates_are_in_usr_share_and_reachable_from_the_python_package(
    unpacked: Path,
) -> None:
    shipped = unpacked / "usr/share/pcsystemd/templates"
    source = REPOSITORY / "templates"
    assert list(files_below(shipped)) == list(files_below(source))
    for name in files_below(source):
        assert (shipped / name).read_bytes() == (source / name).read_bytes(), name
    link = unpacked / "usr/lib/python3/dist-packages/pcsystemd/templates"
    assert link.is_symlink()
    assert link.resolve() == shipped.resolve()


def test_notify_template_unit_names_the_installed_shim(unpacked: Path) -> None:
    unit = (unpacked / "usr/lib/systemd/system/pcsystemd-notify@.service").read_text()
    assert re.search(r"^ExecStart=/usr/bin/pcsystemd notify %i$", unit, re.M), unit


def test_sysusers_and_tmpfiles_entries(deb: Path, unpacked: Path) -> None:
    sysusers = (unpacked / "usr/lib/sysusers.d/pcsystemd.conf").read_text()
    assert sysusers == (DEBIAN / "pcsystemd.sysusers").read_text()
    tmpfiles = (unpacked / "usr/lib/tmpfiles.d/pcsystemd.conf").read_text()
    entries = {
        fields[1]: (fields[0], fields[2], fields[3], fields[4])
        for fields in (line.split() for line in tmpfiles.splitlines())
        if fields and not fields[0].startswith("#")
    }
    assert entries == {
        "/var/log/pcsystemd": ("d", "0755", "root", "root"),
        "/var/lib/pcsystemd": ("d", "0755", "root", "root"),
        "/run/pcsystemd": ("d", "0755", "root", "root"),
        "/run/pcsystemd/locks": ("d", "0700", "root", "root"),
        "/etc/pcsystemd/jobs": ("d", "0755", "root", "root"),
    }
    assert package_paths(deb)["/etc/pcsystemd/jobs"] == "drwxr-xr-x root/root"


def test_examples_are_the_repositorys(unpacked: Path) -> None:
    shipped = unpacked / "usr/share/doc/pcsystemd/examples"
    source = REPOSITORY / "examples"
    names = list(files_below(source))
    assert names, "examples/ is empty"
    for name in names:
        assert read_maybe_gzipped(shipped / name) == (source / name).read_bytes(), name


def test_maintainer_scripts_are_valid_shell(unpacked: Path) -> None:
    for script in ("postinst", "prerm", "postrm"):
        path = unpacked / "DEBIAN" / script
        assert os.access(path, os.X_OK), script
        subprocess.run(["sh", "-n", str(path)], check=True)
        text = path.read_text()
        assert "daemon-reload" in text or script == "prerm", script


# ---------------------------------------------------------------------------- generated docs


def man_page(unpacked: Path, name: str) -> str:
    return read_maybe_gzipped(unpacked / "usr/share/man" / name).decode()


def test_man_pages_render_without_groff_warnings(unpacked: Path) -> None:
    for name in ("man8/pcsystemd.8", "man5/pcsystemd.yaml.5"):
        path = unpacked / "usr/share/man" / f"{name}.gz"
        result = subprocess.run(
            ["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", str(path)],
            capture_output=True,
            text=True,
            env={**os.environ, "LC_ALL": "C.UTF-8", "MANWIDTH": "80"},
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == "", result.stderr
        assert "PCSYSTEMD" in result.stdout


def plain(roff: str) -> str:
    """Roff text without font changes and escapes: what a reader sees, line breaks aside."""
    text = re.sub(r"\\f[BIR]", "", roff)
    return text.replace("\\-", "-").replace("\\&", "").replace("\\ ", " ").replace("\\e", "\\")


def documented_keys(section: str) -> list[str]:
    heads = re.findall(r"^\.TP\n\\fB(.+?)\\fR$", section, re.M)
    return [head.replace("\\-", "-").replace("\\ ", " ") for head in heads]


def test_job_key_reference_is_the_field_table(unpacked: Path) -> None:
    """One entry per field of the schema's table, in its order: the table is the only list."""
    section = man_section(man_page(unpacked, "man5/pcsystemd.yaml.5"), "JOB KEYS")
    assert documented_keys(section) == [key for key, _field in schema.iter_fields()]
    text = plain(section)
    for key, field in schema.iter_fields():
        assert field.help.replace("`", "") in text, key
        assert field.default_text in text, key


def test_global_config_reference_is_the_config_table(unpacked: Path) -> None:
    section = man_section(man_page(unpacked, "man5/pcsystemd.yaml.5"), "GLOBAL CONFIGURATION")
    assert documented_keys(section) == [field.key for field in CONFIG_FIELDS]


def test_command_reference_is_the_parser(unpacked: Path) -> None:
    commands_section = man_section(man_page(unpacked, "man8/pcsystemd.8"), "COMMANDS")
    documented = re.findall(r"^\\fBpcsystemd (\S+?)\\fR", commands_section, re.M)
    assert [name.replace("\\-", "-") for name in documented] == parser_commands()


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the parser has no subcommands")


def parser_commands() -> list[str]:
    return list(subcommand_parsers())


# ---------------------------------------------------------------------------- completion


def complete(unpacked: Path, words: list[str]) -> list[str]:
    """What the packaged completion offers for the last word of `words`, via bash-completion."""
    if not BASH_COMPLETION.is_file():
        pytest.skip("bash-completion is not installed: run scripts/setup")
    script = unpacked / "usr/share/bash-completion/completions/pcsystemd"
    line = " ".join(words)
    program = (
        f"source {BASH_COMPLETION}\n"
        f"source {script}\n"
        'COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$LINE"; COMP_POINT=${#LINE}\n'
        '_pcsystemd pcsystemd "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program, "bash", *words],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "LINE": line, "HOME": "/nonexistent"},
        check=True,
    )
    return sorted(word for word in result.stdout.splitlines() if word)


def test_completion_offers_every_subcommand_of_the_parser(unpacked: Path) -> None:
    assert complete(unpacked, ["pcsystemd", ""]) == sorted(parser_commands())


def test_completion_offers_each_commands_own_options(unpacked: Path) -> None:
    for name, sub in subcommand_parsers().items():
        expected = sorted(
            flag for action in sub._actions for flag in action.option_strings if flag[1] == "-"
        )
        assert complete(unpacked, ["pcsystemd", name, "--"]) == expected, name


def test_completion_offers_job_names_from_the_job_directory(unpacked: Path, tmp_path: Path) -> None:
    for slug in ("yak", "paypal-audit"):
        (tmp_path / f"{slug}.yaml").write_text("name: x\ncommand: /bin/true\n")
    (tmp_path / "notes.txt").write_text("")
    offered = complete(unpacked, ["pcsystemd", "--jobs", str(tmp_path), "explain", ""])
    assert {"yak", "paypal-audit"} <= set(offered)
    # explain takes one job; status takes several
    assert complete(unpacked, ["pcsystemd", "--jobs", str(tmp_path), "explain", "yak", ""]) == []
    more = complete(unpacked, ["pcsystemd", "status", "--jobs", str(tmp_path), "yak", ""])
    assert {"yak", "paypal-audit"} <= set(more)
    assert "notes" not in offered


# ---------------------------------------------------------------------------- Debian's libraries


def test_packaged_code_works_with_debians_python_and_libraries(unpacked: Path) -> None:
    """Debian's python3 with Debian's croniter/pystemd/yaml/jinja2 compiles the shipped examples."""
    dist_packages = unpacked / "usr/lib/python3/dist-packages"
    environment = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(dist_packages), "LC_ALL": "C.UTF-8"}
    versions = subprocess.run(
        [
            "/usr/bin/python3",
            "-c",
            "import importlib.metadata as m, pkgutil, importlib, pcsystemd\n"
            "for module in pkgutil.iter_modules(pcsystemd.__path__):\n"
            "    importlib.import_module('pcsystemd.' + module.name)\n"
            "print(m.version('croniter'), m.version('pystemd'), pcsystemd.__file__)\n",
        ],
        capture_output=True,
        text=True,
        env=environment,
        cwd=unpacked,  # not the checkout: `python3 -c` puts the working directory on sys.path
        check=True,
    ).stdout.split()
    assert versions[0].startswith("1.3.5"), versions
    assert versions[1].startswith("0.11"), versions
    assert versions[2].startswith(str(dist_packages)), versions
    examples = unpacked / "usr/share/doc/pcsystemd/examples/jobs"
    shim = unpacked / "usr/bin/pcsystemd"
    result = subprocess.run(
        ["/usr/bin/python3", str(shim), "explain", "--jobs", str(examples), "yak", "--count", "3"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=unpacked,
    )
    assert result.returncode == 0, result.stderr
    assert "OnCalendar=" in result.stdout
    assert len(re.findall(r"^\w{3} \d{4}-\d\d-\d\d 12:30:00 ", result.stdout, re.M)) == 3
