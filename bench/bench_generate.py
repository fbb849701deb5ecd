#!/usr/bin/env python3
"""Benchmark: how long `pcsystemd generate` and the generator take for N jobs, and how it scales.

Prints wall time per run (best of several) for N = 100, 1000 and 2000 jobs, the time per job,
and the ratio between sizes (linear growth means the per-job time stays flat). Target: 1000 jobs
well under a second. Usage: .venv/bin/python bench/bench_generate.py [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def best_of(repeat: int, argv: list[str], env: dict[str, str]) -> float:
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(
            argv, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        timings.append(time.perf_counter() - start)
    return min(timings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    binaries = Path(sys.executable).parent
    print(f"{'jobs':>6} {'generate (s)':>13} {'per job (ms)':>13} {'generator (s)':>14}")
    per_job: dict[int, float] = {}
    for count in (100, 1000, 2000):
        with tempfile.TemporaryDirectory() as directory:
            root = Path(directory)
            config = make_site(root, count)
            env = {**os.environ, "PCSYSTEMD_CONFIG": str(config)}
            generate = best_of(
                args.repeat,
                [str(binaries / "pcsystemd"), "generate", "--output", str(root / "out")],
                env,
            )
            # Fresh output directory each time, as systemd gives the generator.
            out = root / "gen"
            argv = [str(binaries / "pcsystemd-generator"), str(out), str(out), str(out)]
            timings = []
            for _ in range(args.repeat):
                subprocess.run(["rm", "-rf", str(out)], check=True)
                out.mkdir()
                start = time.perf_counter()
                subprocess.run(argv, check=True, env=env)
                timings.append(time.perf_counter() - start)
            per_job[count] = generate / count
            print(
                f"{count:>6} {generate:>13.3f} {generate / count * 1000:>13.3f}"
                f" {min(timings):>14.3f}"
            )
    ratio = per_job[2000] / per_job[100]
    print(f"per-job time 2000 vs 100 jobs: {ratio:.2f}x (≤ 1 means no worse than linear)")
    print("target: 1000 jobs well under 1 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
