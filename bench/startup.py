"""Start-up cost and one-liner latency of the matcalc command.

    python bench/startup.py [--runs N] [--top K]

1. ``python -X importtime``: the modules a plain one-liner imports, the slowest K, and whether any
   heavy module (sympy, numpy, rich) is among them.
2. Wall time of the plain one-liner
   ``matcalc "x: vector(n); A: matrix(n,n); x' * A * x" --wrt x --format plain`` against the floor
   ``python -c "import click, lark"``, measured side by side (the commands take turns, N rounds,
   medians) with the ratio; then ``python -c pass``, ``matcalc --version`` and other formats.

Measure an installed matcalc (``pip install .`` into a venv, not editable): pip compiles the
modules once.  With PYTHONDONTWRITEBYTECODE set, a run from a source tree recompiles every module
each time; this script unsets it for the commands it times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from common import matcalc_command, summary

ONE_LINER = ["x: vector(n); A: matrix(n,n); x' * A * x", "--wrt", "x", "--format", "plain"]
FLOOR = [sys.executable, "-c", "import click, lark"]
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
HEAVY = ("sympy", "numpy", "rich", "pygments")


def importtime(args: list, top: int) -> None:
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "matcalc_cli"] + args,
                       capture_output=True, text=True, env=ENV)
    rows = []
    for line in p.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_part, cumulative_us, name = line.split("|", 2)
        self_us = self_part.split(":", 1)[1]
        name = name[1:]  # nesting shows as indentation after one space
        rows.append((int(cumulative_us), int(self_us), name.rstrip()))
    total_self = sum(r[1] for r in rows)
    print(f"$ python -X importtime -m matcalc_cli {' '.join(args)}")
    print(f"  {len(rows)} modules imported, {total_self / 1000:.1f} ms in total (sum of self times)")
    top_level = [r for r in rows if not r[2].startswith(" ")]
    print(f"  slowest {top} top-level imports (cumulative):")
    for cumulative, _self, name in sorted(top_level, reverse=True)[:top]:
        print(f"    {cumulative / 1000:8.1f} ms  {name.strip()}")
    heavy = sorted({r[2].strip().split(".")[0] for r in rows if r[2].strip().split(".")[0] in HEAVY})
    print(f"  heavy modules imported: {', '.join(heavy) if heavy else 'none'}")


def wall(cmd: list, runs: int) -> list:
    times = []
    for _ in range(runs):
        times.append(once(cmd))
    return times


def once(cmd: list) -> float:
    start = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, env=ENV)
    elapsed = time.perf_counter() - start
    if p.returncode != 0:
        raise SystemExit(f"{cmd} failed: {p.stderr.decode()}")
    return elapsed


def side_by_side(commands: dict, runs: int) -> dict:
    """Each command once per round, in turn, so that a load that comes and goes affects all alike."""
    times = {label: [] for label in commands}
    for _ in range(runs):
        for label, cmd in commands.items():
            times[label].append(once(cmd))
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20, help="runs of each command (default 20)")
    ap.add_argument("--top", type=int, default=12, help="imports to list (default 12)")
    opts = ap.parse_args()

    importtime(ONE_LINER, opts.top)
    print()
    importtime(ONE_LINER[:3] + ["--format", "json"], 5)
    print()
    matcalc = matcalc_command()
    wall(matcalc + ONE_LINER, 2)  # warm the file cache
    print(f"side by side, {opts.runs} rounds (matcalc: {' '.join(matcalc)}):")
    times = side_by_side({"python -c \"import click, lark\"": FLOOR,
                          "matcalc <x' * A * x> --wrt x --format plain": matcalc + ONE_LINER}, opts.runs)
    for label, ts in times.items():
        print(f"  {label:48s} {summary(ts)}")
    floor, plain = (statistics.median(ts) for ts in times.values())
    print(f"  ratio of the medians: {plain / floor:.2f}")
    print()
    print(f"other commands, {opts.runs} runs each:")
    for label, cmd in [("python -c pass", [sys.executable, "-c", "pass"]),
                       ("matcalc --version", matcalc + ["--version"]),
                       ("matcalc ... --hessian", matcalc + ONE_LINER + ["--hessian"]),
                       ("matcalc ... --format json", matcalc + ONE_LINER[:3] + ["--format", "json"])]:
        print(f"  {label:48s} {summary(wall(cmd, opts.runs))}")


if __name__ == "__main__":
    main()
