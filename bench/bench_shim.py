#!/usr/bin/env python3
"""Benchmark the runtime shim against running the bare command, and capture against `cat`.

    .venv/bin/python bench/bench_shim.py [--runs N] [--size BYTES] [--line-length N]

Prints figures and ratios side by side (not a test; nothing is asserted):

1. Overhead per run: `pcsystemd run-job` (the real entry: cli.main, the run spec the unit
   passes in $PCSYSTEMD_RUN_SPEC checked against the job file and the global config, lock,
   log file, history) against the bare command, both `/bin/true`. Wall time (best and
   median) and peak RSS (median) of N interleaved runs, for two installs: as Debian runs it
   (/usr/bin/python3 -IS, Debian's dist-packages on sys.path: what the package's
   /usr/bin/pcsystemd does, with this checkout's package first) and with this interpreter (a
   venv's console script: site, and the editable install's path finder). The package's
   bytecode is compiled first, as py3compile does when the Debian package is installed. For
   scale, the rows marked "reference" are the interpreter starting alone, and the shim
   without a spec: what a run costs when the job file changed since the units were made
   and is read again with PyYAML and the compiler's model.
   Targets: <= 30 ms and <= 20 MiB added.
2. Capture throughput on 1 GiB of output: a job run by the shim (its log file gets every
   line with a prefix) against the same job piped into `cat > out`, the shim installed as
   Debian runs it (the first install of section 1; this interpreter when Debian's python3
   has no PyYAML). Best and median of 5 interleaved rounds, since the machine may be
   shared. Target: >= 80 % of cat's throughput. Two jobs:
   - bench/print_output.py, a job printing lines from memory (the "job printing 1 GiB" of
     the target): it costs little besides the copy into the pipe, so what limits the
     throughput is the reader of the pipe, the shim or `cat`, which is what is compared.
   - `cat FILE`: a job as costly as the `cat` that reads it. When the machine has no more
     CPUs than busy processes (two: `cat FILE | cat > out` keeps both busy), the shim's
     reading and writing threads share CPUs with the job, and every bit of CPU the
     shim spends more than cat (the line prefixes, a log file a fifth larger) shows as lost
     throughput. With a CPU more, the shim's threads would run beside the job.
   Also shown: the same with the journal framing on (stdout, /dev/null, named by
   $JOURNAL_STREAM: what framing for journald costs the shim), and with the shim's stdout
   a journal stream (a socket named by $JOURNAL_STREAM, as under systemd, which a thread
   of this script reads as fast as it can: the output is copied twice more, into the
   socket and out of it, and the reader takes CPU from the job and the shim as journald
   would, though /usr/bin/time does not count it; journald, which parses every line, is
   slower still, so under systemd the journal sets the pace of a job this verbose); how
   much of the shim's time is its fixed cost per run (section 1), which is not capture; and
   the peak RSS of the run (the largest of the shim and its job, as /usr/bin/time reports
   it): flat, whatever the size of the output.
   Every measured run follows an unmeasured run of the same command whose output was just
   deleted, so that each writes into memory of the same warmth: on a virtual machine whose
   host takes back freed memory (virtio-balloon free page reporting), the first touch of
   such memory costs a fault on the host, and which command got it depended on the order
   the commands ran in; single runs varied by half their time.

Run as root (the shim opens the lock file itself when run by hand). Needs about 3.5 GiB of
free space in $TMPDIR for the 1 GiB case.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import print_output  # beside this script

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))
# What /usr/bin/pcsystemd does: the package's entry point itself, this checkout first.
ENTRY = (
    f"import sys; sys.path.insert(0, {str(REPOSITORY)!r})\n"
    + (REPOSITORY / "packaging" / "pcsystemd-entry-point").read_text()
)
SYSTEM_PYTHON = "/usr/bin/python3"
PRINTER = Path(print_output.__file__).resolve()


def timed(
    argv: list[str],
    *,
    stdout: int | None = None,
    stderr: int | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[float, int, int, float]:
    """Wall seconds, peak RSS (KiB), exit status and CPU seconds (with children) of a process.

    The RSS comes from /usr/bin/time: a child forked from this Python would report this
    Python's memory as its own peak (the kernel keeps the pre-exec high-water mark).
    """
    with tempfile.NamedTemporaryFile("r") as report:
        started = time.perf_counter()
        status = subprocess.call(
            ["/usr/bin/time", "-q", "-f", "%M %U %S", "-o", report.name, *argv],
            stdout=stdout,
            stderr=stderr,
            env=env,
        )
        elapsed = time.perf_counter() - started
        peak, user, system = report.read().split()[-3:]
    return elapsed, int(peak), status, float(user) + float(system)


def set_up(work: Path) -> Path:
    """A global config and the job of section 1 under `work`; returns the config file."""
    jobs = work / "jobs"
    jobs.mkdir()
    (jobs / "quick.yaml").write_text("name: Quick\ncommand: /bin/true\nuser: root\n")
    config = work / "pcsystemd.yaml"
    config.write_text(
        f"job_directory: {jobs}\nlog_directory: {work / 'log'}\n"
        f"state_directory: {work / 'state'}\nlock_directory: {work / 'run' / 'locks'}\n"
        "allowed_users: [root]\nallow_root: true\nlog_retention_runs: 1\n"
    )
    return config


@functools.cache  # both sections ask; each asking starts a python3
def interpreters() -> list[tuple[str, list[str]]]:
    """(label, interpreter argv) of each install measured: Debian's python3 if it has yaml,
    with the -IS of the package's entry point (#!/usr/bin/python3 -IS), and this one."""
    found = []
    system = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import yaml"], capture_output=True, check=False
    ).returncode
    if system == 0:
        found.append(("Debian: /usr/bin/python3 -IS + python3-yaml", [SYSTEM_PYTHON, "-IS"]))
    found.append((f"this interpreter: {sys.executable}", [sys.executable]))
    return found


def run_spec(config: Path, slug: str) -> str:
    """$PCSYSTEMD_RUN_SPEC as the job's unit sets it (compiled like the generator does)."""
    from pcsystemd import runspec
    from pcsystemd.config import load_global_config
    from pcsystemd.jobfile import load_job

    global_config = load_global_config(config)
    text = runspec.encode(runspec.compile_spec(load_job(global_config, slug), global_config))
    assert text is not None
    return text


def shim_environment(config: Path | None = None, slug: str | None = None) -> dict[str, str]:
    """This environment for the shim, as a run by hand; ENTRY puts the checkout on sys.path,
    and a PYTHONPATH would make the shim start itself again isolated (cli.main). With a job,
    also the run spec its unit would pass."""
    environment = dict(os.environ)
    for name in ("INVOCATION_ID", "JOURNAL_STREAM", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"):
        environment.pop(name, None)
    environment.pop("PCSYSTEMD_RUN_SPEC", None)
    if config is not None and slug is not None:
        environment["PCSYSTEMD_RUN_SPEC"] = run_spec(config, slug)
    return environment


def compile_bytecode(python: str) -> None:
    """What py3compile does at package installation (and PYTHONDONTWRITEBYTECODE prevents)."""
    subprocess.run(
        [python, "-m", "compileall", "-q", str(REPOSITORY / "pcsystemd")],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def overhead(config: Path, runs: int) -> float:
    """Print the figures of section 1; returns the best wall time of run-job with the first
    of interpreters() (Debian's when it has PyYAML; the capture test runs it), in seconds."""
    without_spec = shim_environment()
    with_spec = shim_environment(config, "quick")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    shim_arguments = ["run-job", "--config", str(config), "quick"]
    # (label, argv, environment, is the shim); /usr/bin/time's own fork and exec are in
    # every row alike.
    rows: list[tuple[str, list[str], dict[str, str], bool]] = [
        ("bare /bin/true", ["/bin/true"], without_spec, False)
    ]
    for label, python in interpreters():
        compile_bytecode(python[0])
        shown = " ".join(python)
        rows.append((f"{shown} -c pass (reference)", [*python, "-c", "pass"], without_spec, False))
        shim = [*python, "-c", ENTRY, *shim_arguments]
        rows.append((f"run-job, {label}", shim, with_spec, True))
        rows.append((f"run-job, {shown}, no run spec (reference)", shim, without_spec, False))
    for _, argv, environment, _ in rows:  # warm the page cache
        for _ in range(2):
            timed(argv, **quiet, env=environment)
    results: dict[str, list[tuple[float, int]]] = {label: [] for label, _, _, _ in rows}
    for _ in range(runs):
        for label, argv, environment, _ in rows:
            seconds, rss, status, _ = timed(argv, **quiet, env=environment)
            if status != 0:
                sys.exit(f"exit status {status}: {' '.join(argv)}")
            results[label].append((seconds, rss))
    print(
        f"overhead per run ({runs} interleaved runs; best and median wall time, median peak RSS):"
    )
    print(f"  {'':66} {'best ms':>8} {'median':>8} {'added':>7} {'RSS MiB':>8} {'added':>6}")
    bare = results["bare /bin/true"]
    bare_best = min(s for s, _ in bare) * 1000
    bare_median = statistics.median(s for s, _ in bare) * 1000
    bare_mib = statistics.median(r for _, r in bare) / 1024
    for label, _, _, is_shim in rows:
        best = min(s for s, _ in results[label]) * 1000
        median = statistics.median(s for s, _ in results[label]) * 1000
        mib = statistics.median(r for _, r in results[label]) / 1024
        added = f"{best - bare_best:7.1f} {mib:8.1f} {mib - bare_mib:6.1f}"
        if label == "bare /bin/true":
            added = f"{'':7} {mib:8.1f} {'':6}"
        print(f"  {label:66} {best:8.1f} {median:8.1f} {added}{'  <- shim' if is_shim else ''}")
    print(f"  (median of bare /bin/true: {bare_median:.1f} ms; 'added' = best minus its best)")
    print("  targets: <= 30 ms and <= 20 MiB added per run")
    first_shim = next(label for label, _, _, is_shim in rows if is_shim)
    return min(s for s, _ in results[first_shim])


# The rows of section 2, each job's: row -> label.
CAPTURE_ROWS = {
    "cat": "  JOB | cat > out",
    "shim": "  pcsystemd run-job (log)",
    "shim+framing": "    ... + journal framing",
    "shim+journal": "    ... + journal stream",
}


def flood_jobs(work: Path, size: int, line_length: int) -> dict[str, tuple[str, list[str]]]:
    """The capture test's jobs, each a job file in `work` and the same command for the
    baseline: slug -> (what the job is, its argv)."""
    source = work / "input"
    with open(source, "wb") as output:  # the input `cat` prints, as the printer prints it
        print_output.print_output(output.fileno(), size, line_length)
    subprocess.run(["cat", str(source)], stdout=subprocess.DEVNULL, check=True)  # page cache
    jobs = {
        "printer": (
            "a job printing from memory (bench/print_output.py)",
            [SYSTEM_PYTHON, "-I", str(PRINTER), str(size), str(line_length)],
        ),
        "cat-file": ("the job `cat FILE` (as costly as the cat reading it)", ["cat", str(source)]),
    }
    for slug, (_, argv) in jobs.items():
        # A JSON string is a YAML double-quoted scalar: no path can break the job file.
        command = json.dumps(shlex.join(argv))
        (work / "jobs" / f"{slug}.yaml").write_text(
            f"name: {slug}\ncommand: {command}\nuser: root\n"
        )
    return jobs


@contextlib.contextmanager
def drained_journal_stream() -> Iterator[tuple[int, dict[str, str]]]:
    """A stream socket for the shim's stdout, named by $JOURNAL_STREAM as under systemd; a
    thread reads the other end as fast as it can (journald would parse it, too). Yields the
    descriptor and the variable."""
    reader, stream = socket.socketpair()

    def drain() -> None:
        buffer = bytearray(1 << 20)
        while reader.recv_into(buffer):
            pass

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    try:
        status = os.fstat(stream.fileno())
        yield stream.fileno(), {"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}
    finally:
        stream.close()  # the shim has ended: the reader sees the end of the stream
        thread.join()
        reader.close()


def throughput(work: Path, config: Path, args: argparse.Namespace, fixed_cost: float) -> None:
    """Print the figures of section 2: for each job, its output captured by the shim (log
    file; log file and journal) against the same job piped into `cat > file`."""
    install, python = interpreters()[0]
    baseline_out = work / "cat.out"
    logs = work / "log"
    jobs = flood_jobs(work, args.size, args.line_length)
    null = os.stat("/dev/null")  # where stdout goes, unless to a journal stream
    # (slug, row): (argv, environment, where its output goes, stdout a journal stream)
    commands: dict[tuple[str, str], tuple[list[str], dict[str, str] | None, Path, bool]] = {}
    for slug, (_, job_argv) in jobs.items():
        shim = [*python, "-c", ENTRY, "run-job", "--config", str(config), slug]
        shim_env = shim_environment(config, slug)
        piped = f"{shlex.join(job_argv)} | cat > {shlex.quote(str(baseline_out))}"
        commands[slug, "cat"] = (["sh", "-c", piped], None, baseline_out, False)
        framing_env = {**shim_env, "JOURNAL_STREAM": f"{null.st_dev}:{null.st_ino}"}
        commands[slug, "shim"] = (shim, shim_env, logs / slug, False)
        commands[slug, "shim+framing"] = (shim, framing_env, logs / slug, False)
        commands[slug, "shim+journal"] = (shim, shim_env, logs / slug, True)
    wall: dict[tuple[str, str], list[float]] = {key: [] for key in commands}
    cpu: dict[tuple[str, str], list[float]] = {key: [] for key in commands}
    rss: dict[tuple[str, str], int] = {key: 0 for key in commands}
    log_size = 0
    for _ in range(args.rounds):
        for key, (argv, environment, output, to_journal) in commands.items():
            for measured in (False, True):  # the warm-up run: see the module docstring
                subprocess.run(["sync"], check=True)
                with contextlib.ExitStack() as stack:
                    stdout, env = subprocess.DEVNULL, environment
                    if to_journal:
                        stdout, stream_variable = stack.enter_context(drained_journal_stream())
                        env = {**(environment or {}), **stream_variable}
                    seconds, peak, status, used = timed(
                        argv, stdout=stdout, stderr=subprocess.DEVNULL, env=env
                    )
                if status != 0:
                    sys.exit(f"{' '.join(key)} failed (exit status {status})")
                if measured:
                    wall[key].append(seconds)
                    cpu[key].append(used)
                    rss[key] = max(rss[key], peak)
                written = [output] if output.is_file() else list(output.glob("*.log"))
                if output != baseline_out:
                    log_size = max([log_size, *(log.stat().st_size for log in written)])
                for path in written:
                    path.unlink()
    mib = args.size / (1 << 20)
    print(
        f"\ncapture of {mib:.0f} MiB of output ({args.line_length}-byte lines), the shim as"
        f" {install}\n(best and median of {args.rounds} rounds; CPU, the least of them,"
        " includes the job's):"
    )
    print(
        f"  {'':28} {'seconds':>8} {'MiB/s':>8} {'of cat':>8} {'median':>8} {'of cat':>7}"
        f" {'CPU s':>7} {'of cat':>7} {'peak RSS':>10}"
    )
    for slug, (what, _) in jobs.items():
        print(f"  {what}:")
        best = {row: min(wall[slug, row]) for row in CAPTURE_ROWS}
        median = {row: statistics.median(wall[slug, row]) for row in CAPTURE_ROWS}
        least_cpu = {row: min(cpu[slug, row]) for row in CAPTURE_ROWS}
        for row, label in CAPTURE_ROWS.items():
            peak_text = f"{rss[slug, row] / 1024:.1f} MiB" if row != "cat" else ""
            print(
                f"  {label:28} {best[row]:8.2f} {mib / best[row]:8.0f}"
                f" {best['cat'] / best[row]:8.0%} {median[row]:8.2f}"
                f" {median['cat'] / median[row]:7.0%} {least_cpu[row]:7.2f}"
                f" {least_cpu['cat'] / least_cpu[row]:7.0%} {peak_text:>10}"
            )
        # Start-up, job file, lock, history: paid once per run, whatever the job prints.
        capture = best["shim"] - fixed_cost
        print(
            f"  {'':4}of the shim's {best['shim']:.2f} s, {fixed_cost * 1000:.0f} ms are its fixed"
            f" cost per run (section 1); the rest is {best['cat'] / capture:.0%} of cat"
        )
    print(
        f"  target: >= 80 % of cat, for the job printing from memory; the log file is"
        f" {log_size / args.size:.2f} x the output"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="runs for the overhead figures")
    parser.add_argument("--size", type=int, default=1 << 30, help="bytes of output to capture")
    parser.add_argument("--line-length", type=int, default=100, help="bytes per output line")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the capture test")
    parser.add_argument("--skip-capture", action="store_true", help="only the overhead figures")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: a shim run by hand opens the lock file itself")
    work = Path(tempfile.mkdtemp(prefix="pcsystemd-bench-"))
    try:
        config = set_up(work)
        fixed_cost = overhead(config, args.runs)
        if not args.skip_capture:
            throughput(work, config, args, fixed_cost)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
