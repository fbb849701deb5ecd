#!/usr/bin/env python3
"""Benchmark: how long `pcsystemd generate` and the generator take for N jobs, and how it scales.

For N = 100, 1000 and 2000 jobs it prints the wall time (best of several runs) of
`pcsystemd generate` writing every unit into an empty directory (the first write: one fsync
per file, so mostly the disk's speed), of the same command on an unchanged tree (every run
after the first: read, compare, write nothing), the time per job of the latter, and of the
generator writing into a fresh directory as systemd hands it one (on a tmpfs, like /run, when
/dev/shm is one). Then the ratio of per-job times between sizes: linear growth keeps it flat.
Target: 1000 jobs well under a second. The package's bytecode is compiled first, as Debian's
py3compile does at installation. Usage: .venv/bin/python bench/bench_generate.py [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
SCHEDULES = ["*/5 * * * *", "30 12 * * *", "0 6 1,15 * fri", "2-59/5 * * * *", "0 0 29 2 *"]


def make_site(root: Path, count: int) -> Path:
    jobs = root / "jobs"
    jobs.mkdir(mode=0o755)
    for index in range(count):
        (jobs / f"job-{index:05d}.yaml").write_text(
            f"name: Benchmark job {index}\n"
            f"command: /usr/bin/env echo {index}\n"
            f'schedule: "{SCHEDULES[index % len(SCHEDULES)]}"\n'
            f"timeout: {index % 90 + 1}m\n"
            "environment:\n  A: b\n"
            f"tags: [bench, group-{index % 7}]\n"
        )
    config = root / "pcsystemd.yaml"
    config.write_text(f"job_directory: {jobs}\nshim_path: /usr/bin/pcsystemd\n")
    return config


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def best_of(repeat: int, argv: list[str], env: dict[str, str], fresh: Path | None = None) -> float:
    """The best wall time of `repeat` runs; with `fresh`, each run gets it as an empty directory."""
    timings = []
    for _ in range(repeat):
        if fresh is not None:
            shutil.rmtree(fresh, ignore_errors=True)
            fresh.mkdir()
        timings.append(timed(argv, env))
    return min(timings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    binaries = Path(sys.executable).parent
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(REPOSITORY / "pcsystemd")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    shm = Path("/dev/shm")
    on_tmpfs = shm.is_dir() and os.access(shm, os.W_OK)
    print(
        f"pcsystemd: {binaries / 'pcsystemd'}; generator output in {shm if on_tmpfs else '$TMPDIR'}"
    )
    print(
        f"{'jobs':>6} {'first write (s)':>16} {'unchanged (s)':>14} {'per job (ms)':>13}"
        f" {'generator (s)':>14}"
    )
    per_job: dict[int, float] = {}
    for count in (100, 1000, 2000):
        with (
            tempfile.TemporaryDirectory() as directory,
            tempfile.TemporaryDirectory(dir=shm if on_tmpfs else None) as generator_directory,
        ):
            root = Path(directory)
            config = make_site(root, count)
            env = {**os.environ, "PCSYSTEMD_CONFIG": str(config)}
            out = root / "out"
            generate = [str(binaries / "pcsystemd"), "generate", "--output", str(out)]
            first_write = best_of(args.repeat, generate, env, fresh=out)
            unchanged = best_of(args.repeat, generate, env)
            gen = Path(generator_directory) / "gen"
            generator = [str(binaries / "pcsystemd-generator"), str(gen), str(gen), str(gen)]
            generator_time = best_of(args.repeat, generator, env, fresh=gen)
            per_job[count] = unchanged / count
            print(
                f"{count:>6} {first_write:>16.3f} {unchanged:>14.3f}"
                f" {unchanged / count * 1000:>13.3f} {generator_time:>14.3f}"
            )
    ratio = per_job[2000] / per_job[100]
    print(
        f"per-job time (unchanged) 2000 vs 100 jobs: {ratio:.2f}x (≤ 1 means no worse than linear)"
    )
    print("target: 1000 jobs well under 1 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
