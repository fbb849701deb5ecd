"""Generate the Debian package's man pages, bash completion and notify unit from the code.

Run at package build time (debian/rules) with the source tree on PYTHONPATH:

    python3 packaging/build_docs.py --output debian/generated --version 0.1.0

Nothing here is written twice: the commands and options in pcsystemd(8) and in the bash
completion come from the argparse parser (`pcsystemd.cli.build_parser`), the job-key reference
in pcsystemd.yaml(5) from the schema's field table (`pcsystemd.schema.FIELDS`, and the global
configuration's keys from `pcsystemd.config.CONFIG_FIELDS`), and the
packaged `pcsystemd-notify@.service` from the same template the generator renders.
Only the standard library and pcsystemd itself are needed (no pandoc, no docutils).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAN_SOURCES = HERE / "man"
# Where the Debian package puts the `pcsystemd` entry point; units must name it absolutely.
SHIM_PATH = "/usr/bin/pcsystemd"
# Shown once under OPTIONS in pcsystemd(8), not repeated under every command.
COMMON_DESTS = frozenset({"config", "jobs", "debug", "help"})


# ---------------------------------------------------------------------------- argparse


@dataclass(frozen=True)
class Option:
    """One option or positional argument of a command, as the docs and completion need it."""

    flags: tuple[str, ...]  # empty for a positional argument
    metavar: str | None  # None: the option takes no value
    choices: tuple[str, ...]
    help: str
    repeatable: bool
    remainder: bool  # argparse.REMAINDER: the rest of the line, parsed elsewhere

    @property
    def positional(self) -> bool:
        return not self.flags


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    options: tuple[Option, ...]  # its own, documented under the command
    common: tuple[Option, ...]  # the shared ones it accepts too (--config, --jobs, ...)


def _option(action: argparse.Action) -> Option:
    takes_value = action.nargs != 0
    metavar: str | None = None
    if takes_value:
        if isinstance(action.metavar, str):
            metavar = action.metavar
        elif action.nargs == argparse.REMAINDER:
            metavar = "ARGUMENTS"
        elif action.option_strings:
            metavar = action.dest.upper()
        else:
            metavar = action.dest
    choices = tuple(str(choice) for choice in action.choices) if action.choices else ()
    help_text = action.help if isinstance(action.help, str) else ""
    if help_text == argparse.SUPPRESS:
        help_text = ""
    return Option(
        flags=tuple(action.option_strings),
        metavar=metavar,
        choices=choices,
        help=help_text.replace("%(default)s", str(action.default)),
        repeatable=action.nargs in ("*", "+"),
        remainder=action.nargs == argparse.REMAINDER,
    )


def _subparsers(
    parser: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    # argparse has no public API to walk its subcommands; shtab and argcomplete read the same
    # private attributes.
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise SystemExit("build_docs: the parser has no subcommands")


def commands(parser: argparse.ArgumentParser) -> list[Command]:
    """Every subcommand with its help text and its own options, in the parser's order."""
    subparsers = _subparsers(parser)
    helps = {choice.dest: choice.help or "" for choice in subparsers._choices_actions}
    result = []
    for name, sub in subparsers.choices.items():
        visible = [action for action in sub._actions if action.help != argparse.SUPPRESS]
        options = tuple(_option(a) for a in visible if a.dest not in COMMON_DESTS)
        common = tuple(_option(a) for a in visible if a.dest in COMMON_DESTS)
        result.append(Command(name, helps.get(name) or sub.description or "", options, common))
    return result


def global_options(parser: argparse.ArgumentParser) -> list[Option]:
    return [
        _option(action)
        for action in parser._actions
        if action.option_strings and action.help != argparse.SUPPRESS
    ]


# ---------------------------------------------------------------------------- roff

_INLINE_CODE = re.compile(r"`([^`]+)`")
_MAN_REFERENCE = re.compile(r"\b([a-z][a-z0-9_.-]*)\(([1-8])\)")


def roff_text(text: str) -> str:
    """Plain text (with `code` spans) as roff: escapes, hyphens of options as minus signs."""
    text = text.replace("\\", "\\e")
    # An option's dashes are minus signs (searchable, copy-pastable); other hyphens stay.
    text = re.sub(r"(?<![\w-])-(-?)(?=\w)", lambda m: "\\-" + ("\\-" if m.group(1) else ""), text)
    text = _INLINE_CODE.sub(lambda m: f"\\fB{m.group(1)}\\fR", text)
    text = _MAN_REFERENCE.sub(lambda m: f"\\fB{m.group(1)}\\fR({m.group(2)})", text)
    lines = []
    for line in text.splitlines():
        # A line starting with a dot or quote would be read as a request.
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def roff_word(text: str) -> str:
    return roff_text(text).replace(" ", "\\ ")


def _synopsis_part(option: Option) -> str:
    if option.positional:
        value = f"\\fI{roff_word(option.metavar or '')}\\fR"
        return f"[{value}...]" if option.repeatable else value
    flag = f"\\fB{roff_word(max(option.flags, key=len))}\\fR"
    if option.metavar:
        flag += f" \\fI{roff_word(option.metavar)}\\fR"
    return f"[{flag}]"


def _option_items(options: Iterable[Option]) -> Iterator[str]:
    for option in options:
        if option.positional:
            head = f"\\fI{roff_word(option.metavar or '')}\\fR"
        else:
            flags = ", ".join(f"\\fB{roff_word(flag)}\\fR" for flag in option.flags)
            head = f"{flags} \\fI{roff_word(option.metavar)}\\fR" if option.metavar else flags
        text = option.help or ""
        if option.choices:
            text += f" (one of: {', '.join(option.choices)})"
        yield ".TP"
        yield head
        yield roff_text(text.strip() or "(no description)")


def commands_section(parser: argparse.ArgumentParser) -> str:
    out: list[str] = []
    for command in commands(parser):
        synopsis = " ".join(_synopsis_part(option) for option in command.options)
        out += [".TP", f"\\fBpcsystemd {roff_word(command.name)}\\fR {synopsis}".rstrip()]
        help_text = command.help[:1].upper() + command.help[1:]
        out.append(roff_text(help_text.rstrip(".") + "."))
        options = [option for option in command.options if option.help]
        if options:
            out += [".RS", *_option_items(options), ".RE"]
    return "\n".join(out)


def options_section(parser: argparse.ArgumentParser) -> str:
    return "\n".join(_option_items(global_options(parser)))


# ---------------------------------------------------------------------------- schema


def roff_example(text: str) -> list[str]:
    """A literal YAML example, shown as such (.EX keeps spacing; escapes still apply)."""
    lines = []
    for line in text.splitlines():
        # Minus signs, not hyphens, so that a copied example still works.
        line = line.replace("\\", "\\e").replace("-", "\\-")
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return [".RS", ".EX", *lines, ".EE", ".RE"]


def job_keys_section() -> str:
    """The job-key reference: every row of the schema's field table, nested keys dotted."""
    from pcsystemd import schema

    out: list[str] = []
    for key, field in schema.iter_fields():
        facts = f"Type: {field.type_text}{'; required' if field.required else ''}."
        facts += f" Default: {field.default_text}."
        if field.origin == "process-control":
            facts += " Same meaning as in process-control."
        out += [".TP", f"\\fB{roff_word(key)}\\fR", roff_text(field.help), ".br"]
        out += [roff_text(facts), *roff_example(field.example)]
    return "\n".join(out)


def config_keys_section() -> str:
    """The global configuration's keys, from its own field table (pcsystemd.config)."""
    from pcsystemd.config import CONFIG_FIELDS

    out: list[str] = []
    for field in CONFIG_FIELDS:
        facts = f"Type: {field.type_text}. Default: {field.default_text}."
        if field.alias:
            facts += f" Also accepted as {field.alias} (process-control's name)."
        out += [".TP", f"\\fB{roff_word(field.key)}\\fR", roff_text(field.help), ".br"]
        out.append(roff_text(facts))
    return "\n".join(out)


# ---------------------------------------------------------------------------- outputs


def build_date() -> str:
    """The changelog's date (SOURCE_DATE_EPOCH, set by dpkg-buildpackage): reproducible."""
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))
    return time.strftime("%Y-%m-%d", time.gmtime(epoch))


def fill(template: Path, values: dict[str, str]) -> str:
    text = template.read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    leftover = re.findall(r"@[A-Z_]+@", text)
    if leftover:
        raise SystemExit(f"build_docs: {template}: unfilled placeholders {leftover}")
    return text


def _value_kind(option: Option) -> str:
    """How a shell completes this option's value: from choices, directories, files, or not."""
    if option.choices:
        return "choices"
    metavar = (option.metavar or "").upper()
    if metavar in ("DIR", "DIRECTORY"):
        return "dir"
    if metavar in ("FILE", "PATH"):
        return "file"
    return "none"


def _positional_kind(option: Option) -> str:
    metavar = (option.metavar or "").upper()
    if "JOB" in metavar:
        return "job-or-file" if "FILE" in metavar else "job"
    if metavar in ("PATH", "FILE"):
        return "file"
    # `run-job` hands its arguments to the shim unparsed (argparse.REMAINDER); the first is a job.
    return "job" if option.remainder else "none"


def _shell_words(words: Iterable[str]) -> str:
    return " ".join(sorted(set(words)))


def bash_completion(parser: argparse.ArgumentParser) -> str:
    """A bash-completion script for every command and option the parser knows."""
    top_level = global_options(parser)

    def flags(options: Iterable[Option], kind: str | None = None) -> str:
        return _shell_words(
            flag
            for option in options
            if option.metavar and (kind is None or _value_kind(option) == kind)
            for flag in option.flags
        )

    cases: list[str] = []
    for command in commands(parser):
        options = [*command.options, *command.common]
        positionals = [option for option in command.options if option.positional]
        positional = _positional_kind(positionals[0]) if positionals else "none"
        repeat = "yes" if positionals and positionals[0].repeatable else "no"
        lines = [
            f"        {command.name})",
            f"            options='{_shell_words(f for o in options for f in o.flags)}'",
            f"            value_options='{flags(options)}'",
            f"            dir_options='{flags(options, 'dir')}'",
            f"            file_options='{flags(options, 'file')}'",
            f"            positional={positional} repeat={repeat}",
        ]
        choice_options = [option for option in options if option.flags and option.choices]
        if choice_options:
            lines.append("            case $prev in")
            for option in choice_options:
                pattern = "|".join(option.flags)
                lines.append(f"                {pattern}) choices='{' '.join(option.choices)}' ;;")
            lines.append("            esac")
        lines.append("            ;;")
        cases.append("\n".join(lines))
    values = {
        "COMMANDS": " ".join(command.name for command in commands(parser)),
        "GLOBAL_OPTIONS": _shell_words(flag for option in top_level for flag in option.flags),
        "GLOBAL_VALUE_OPTIONS": flags(top_level),
        "GLOBAL_DIR_OPTIONS": flags(top_level, "dir"),
        "GLOBAL_FILE_OPTIONS": flags(top_level, "file"),
        "GLOBAL_VALUE_PATTERN": "|".join(flags(top_level).split()) or "--",
        "CASES": "\n".join(cases),
    }
    return fill(HERE / "completion" / "pcsystemd.bash.in", values)


def notify_unit() -> str:
    """The notify template unit as the package ships it (the default config, /usr/bin)."""
    from pcsystemd.model import GlobalConfig
    from pcsystemd.render import render_notify_unit

    return render_notify_unit(GlobalConfig(shim_path=SHIM_PATH))


def main(argv: list[str] | None = None) -> int:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--output", required=True, type=Path, help="directory to write to")
    arguments.add_argument("--version", required=True, help="the package's upstream version")
    options = arguments.parse_args(argv)

    from pcsystemd import __version__
    from pcsystemd.cli import build_parser

    if options.version != __version__:
        raise SystemExit(
            f"build_docs: debian/changelog says {options.version}, pcsystemd.__version__ says "
            f"{__version__}: make them agree"
        )
    parser = build_parser()
    values = {"VERSION": __version__, "DATE": build_date()}
    output: Path = options.output
    (output / "bash-completion").mkdir(parents=True, exist_ok=True)
    files = {
        output / "pcsystemd.8": fill(
            MAN_SOURCES / "pcsystemd.8.in",
            {**values, "COMMANDS": commands_section(parser), "OPTIONS": options_section(parser)},
        ),
        output / "pcsystemd.yaml.5": fill(
            MAN_SOURCES / "pcsystemd.yaml.5.in",
            {**values, "JOB_KEYS": job_keys_section(), "CONFIG_KEYS": config_keys_section()},
        ),
        output / "bash-completion" / "pcsystemd": bash_completion(parser),
        output / "pcsystemd-notify@.service": notify_unit(),
    }
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
        print(f"build_docs: wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
