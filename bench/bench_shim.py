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
2. Capture throughput on 1 GiB of output: the shim running `cat FILE` (its log file gets every
   line with a prefix) against `cat FILE | cat > out`, the shim installed as Debian runs it
   (the first install of section 1; this interpreter when Debian's python3 has no PyYAML).
   Best and median of 5 interleaved rounds, since the machine may be shared. Target:
   >= 80 % of cat's throughput. Also shown: the same with the
   journal framing on (stdout named by $JOURNAL_STREAM, pointed at /dev/null here), and how
   much of the shim's time is its fixed cost per run (section 1), which is not capture.
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
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))
# What /usr/bin/pcsystemd does (packaging/pcsystemd-entry-point), this checkout first.
ENTRY = (
    f"import sys; sys.path.insert(0, {str(REPOSITORY)!r}); "
    "sys.path.append('/usr/lib/python3/dist-packages'); "
    "from pcsystemd.cli import main; sys.exit(main())"
)
SYSTEM_PYTHON = "/usr/bin/python3"


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
    """A global config and two jobs under `work`; returns the config file."""
    jobs = work / "jobs"
    jobs.mkdir()
    (jobs / "quick.yaml").write_text("name: Quick\ncommand: /bin/true\nuser: root\n")
    (jobs / "flood.yaml").write_text(
        f"name: Flood\ncommand: /bin/cat {work / 'input'}\nuser: root\n"
    )
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


def make_input(path: Path, size: int, line_length: int) -> None:
    line = (b"2025-01-31 12:00:00,123 INFO worker: processed a batch of items " * 4)[
        : line_length - 1
    ] + b"\n"
    block = line * max(1, (1 << 20) // len(line))
    with open(path, "wb") as output:
        left = size
        while left > 0:
            piece = block[:left]
            output.write(piece)
            left -= len(piece)


def throughput(work: Path, config: Path, size: int, rounds: int, fixed_cost: float) -> None:
    source = work / "input"
    subprocess.run(["cat", str(source)], stdout=subprocess.DEVNULL, check=True)  # page cache
    environment = shim_environment(config, "flood")
    null = os.stat("/dev/null")
    journal_environment = {**environment, "JOURNAL_STREAM": f"{null.st_dev}:{null.st_ino}"}
    baseline_out = work / "cat.out"
    install, python = interpreters()[0]
    shim_command = [*python, "-c", ENTRY, "run-job", "--config", str(config), "flood"]
    logs = work / "log" / "flood"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    # name: (argv, environment, where its output goes)
    commands = {
        "cat": (["sh", "-c", f"cat {source} | cat > {baseline_out}"], None, baseline_out),
        "shim": (shim_command, environment, logs),
        "shim+journal": (shim_command, journal_environment, logs),
    }
    results: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    rss: dict[str, int] = {name: 0 for name in commands}
    log_size = 0
    for _ in range(rounds):
        for name, (argv, env, output) in commands.items():
            for measured in (False, True):  # the warm-up run: see the module docstring
                subprocess.run(["sync"], check=True)
                seconds, peak, status, used = timed(argv, **quiet, env=env)
                if status != 0:
                    sys.exit(f"{name} failed (exit status {status})")
                if measured:
                    results[name].append(seconds)
                    cpu[name].append(used)
                    rss[name] = max(rss[name], peak)
                written = [output] if output.is_file() else list(output.glob("flood-*.log"))
                if output == logs:
                    log_size = max([log_size, *(log.stat().st_size for log in written)])
                for path in written:
                    path.unlink()
    mib = size / (1 << 20)
    best = {name: min(times) for name, times in results.items()}
    median = {name: statistics.median(times) for name, times in results.items()}
    least_cpu = {name: min(times) for name, times in cpu.items()}
    print(f"\ncapture of {mib:.0f} MiB of output, the shim as {install}")
    print(f"(best and median of {rounds} rounds; CPU, the least of them, includes the producer):")
    print(
        f"  {'':28} {'seconds':>8} {'MiB/s':>8} {'of cat':>8} {'median':>8} {'of cat':>7}"
        f" {'CPU s':>7} {'of cat':>7} {'peak RSS':>10}"
    )
    for name, label in (
        ("cat", "cat FILE | cat > out"),
        ("shim", "pcsystemd run-job (log)"),
        ("shim+journal", "  ... + journal framing"),
    ):
        cpu_ratio = least_cpu["cat"] / least_cpu[name] if least_cpu[name] else 1.0
        peak_text = f"{rss[name] / 1024:.1f} MiB" if name != "cat" else ""
        print(
            f"  {label:28} {best[name]:8.2f} {mib / best[name]:8.0f}"
            f" {best['cat'] / best[name]:8.0%} {median[name]:8.2f}"
            f" {median['cat'] / median[name]:7.0%} {least_cpu[name]:7.2f} {cpu_ratio:7.0%}"
            f" {peak_text:>10}"
        )
    print(f"  target: >= 80 % of cat; log file {log_size / size:.2f} x the output's size")
    # Start-up, job file, lock, history: paid once per run, whatever the job prints.
    capture = best["shim"] - fixed_cost
    print(
        f"  of the shim's {best['shim']:.2f} s, {fixed_cost * 1000:.0f} ms are its fixed cost per"
        f" run (run-job of /bin/true above); the rest is {best['cat'] / capture:.0%} of cat"
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
            make_input(work / "input", args.size, args.line_length)
            throughput(work, config, args.size, args.rounds, fixed_cost)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
