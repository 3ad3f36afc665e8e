"""``matcalc batch``: one process for many entries against one process per entry, --jobs 2 against
--jobs 1, peak memory against the number of entries, and the time to the first line of output.

    python bench/batch.py                      # everything, 1,000 entries
    python bench/batch.py --entries 1000 --singles 100 --repeat 3
    python bench/batch.py --only memory

The entries are a realistic mix (gradients, Jacobians, Hessians of losses, traces, determinants,
inverses, a few errors), cycled to the requested count.  Single calls are timed on the first
``--singles`` entries and scaled to the batch's size (all of them with ``--singles`` = entries).
Every figure is a median over ``--repeat`` runs; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, matcalc_command

DECLARATIONS = "x, b, mu: vector(n); A, B, X, Q: matrix(n, n); S, Sigma: symmetric(n); C: matrix(m, n); y: vector(m)"
MIX = [
    "x' * A * x | --wrt x --hessian",
    "norm2(C * x - y)^2 | --wrt x --hessian",
    "norm2(C * x - y)^2 + 0.1 * x' * x | --wrt x --gradient",
    "sum(log(1 + exp(-y .* (C * x)))) | --wrt x",
    "log(sum(exp(x))) - b' * x | --wrt x --hessian",
    "tr(A * X * B * X') | --wrt X --hessian",
    "tr(X' * Q * X) | --wrt X --gradient",
    "logdet(S) | --wrt S --gradient",
    "-(x - mu)' * inv(Sigma) * (x - mu) / 2 - logdet(Sigma) / 2 | --wrt Sigma --gradient",
    "-(x - mu)' * inv(Sigma) * (x - mu) / 2 | --wrt mu --hessian",
    "det(X) | --wrt X --hessian",
    "inv(X) | --wrt X --jacobian",
    "X * X | --wrt X --jacobian",
    "exp(A * x) | --wrt x --jacobian",
    "tanh(C * x) | --wrt x --jacobian",
    "sigmoid(b' * x) | --wrt x --hessian",
    "tr(inv(X)) | --wrt X --gradient",
    "x' * A * x / (x' * x) | --wrt x --hessian",
    "x' * A * * x | --wrt x",                          # a typo: errors cost too
]


def write_batch(path: Path, entries: int) -> list:
    lines = [MIX[i % len(MIX)] for i in range(entries)]
    path.write_text(DECLARATIONS + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return lines


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def run(args, **kwargs) -> float:
    return run_with_cpu(args, **kwargs)[0]


def run_with_cpu(args, **kwargs) -> tuple:
    """Wall-clock seconds and CPU seconds (user + system, all processes) of one matcalc run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(matcalc_command() + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=env(), **kwargs)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def single_args(line: str) -> list:
    program, _, options = line.partition("|")
    return [DECLARATIONS + "; " + program.strip(), "--format", "json"] + shlex.split(options)


def peak_rss_mb(args) -> float:
    """Peak resident memory of one matcalc run, measured in a fresh parent process."""
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
             "stderr=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", probe] + matcalc_command() + args, capture_output=True,
                         text=True, env=env())
    return int(out.stdout.strip()) / 1024


def time_to_first_line(args) -> float:
    start = time.perf_counter()
    p = subprocess.Popen(matcalc_command() + args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env())
    p.stdout.readline()
    elapsed = time.perf_counter() - start
    p.stdout.close()
    p.wait()
    return elapsed


def median(fn, repeat):
    return statistics.median(fn() for _ in range(repeat))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=1000)
    ap.add_argument("--singles", type=int, default=100, help="single calls to time (scaled to --entries)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", choices=["speed", "jobs", "memory", "stream"])
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="matcalc-bench-"))
    path = tmp / "mix.mcb"
    lines = write_batch(path, a.entries)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {a.entries} entries, "
          f"medians of {a.repeat} runs")

    if a.only in (None, "speed"):
        batch = median(lambda: run(["batch", str(path), "--format", "json"]), a.repeat)
        k = min(a.singles, a.entries)
        singles = sum(run(single_args(line)) for line in lines[:k]) * a.entries / k
        print(f"speed   one batch process {batch:8.2f} s | {a.entries} single calls {singles:8.2f} s"
              f"{'' if k == a.entries else f' (scaled from {k})'} | ratio {singles / batch:5.1f}x")

    if a.only in (None, "jobs"):
        runs = {}
        for jobs in ("1", "2"):
            measured = [run_with_cpu(["batch", str(path), "--format", "json", "--jobs", jobs])
                        for _ in range(a.repeat)]
            runs[jobs] = (statistics.median(w for w, _ in measured), statistics.median(c for _, c in measured))
        (one, cpu1), (two, cpu2) = runs["1"], runs["2"]
        print(f"jobs    --jobs 1 {one:8.2f} s (cpu {cpu1:6.2f} s) | --jobs 2 {two:8.2f} s (cpu {cpu2:6.2f} s) "
              f"| speed-up {one / two:5.2f}x")

    if a.only in (None, "memory"):
        small, large = tmp / "small.mcb", tmp / "large.mcb"
        write_batch(small, 1000)
        write_batch(large, 10000)
        m1 = peak_rss_mb(["batch", str(small), "--format", "json"])
        m10 = peak_rss_mb(["batch", str(large), "--format", "json"])
        print(f"memory  peak RSS 1,000 entries {m1:6.1f} MB | 10,000 entries {m10:6.1f} MB | ratio {m10 / m1:4.2f}")

    if a.only in (None, "stream"):
        huge = tmp / "huge.mcb"
        write_batch(huge, 100000)
        first = median(lambda: time_to_first_line(["batch", str(huge), "--format", "json"]), a.repeat)
        one_liner = median(lambda: run([single_args(lines[0])[0], "--wrt", "x"]), a.repeat)
        print(f"stream  first line of a 100,000-entry batch after {first:6.2f} s "
              f"(a single one-liner: {one_liner:6.2f} s)")


if __name__ == "__main__":
    main()
