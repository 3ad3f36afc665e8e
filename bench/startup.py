"""Start-up cost and one-liner latency of the matcalc command.

    python bench/startup.py [--runs N] [--top K]

1. ``python -X importtime``: the modules a plain one-liner imports, the slowest K, and whether any
   heavy module (sympy, numpy, rich) is among them.
2. Wall time of ``matcalc "x'*A*x" --wrt x`` over N runs, next to the floor of ``python -c pass``
   and of ``matcalc --version`` (interpreter + click, no parsing).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from common import matcalc_command, summary

ONE_LINER = ["x'*A*x", "--wrt", "x"]
HEAVY = ("sympy", "numpy", "rich", "pygments")


def importtime(args: list, top: int) -> None:
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "matcalc_cli"] + args,
                       capture_output=True, text=True)
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
        start = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True)
        times.append(time.perf_counter() - start)
        if p.returncode != 0:
            raise SystemExit(f"{cmd} failed: {p.stderr.decode()}")
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20, help="runs of each command (default 20)")
    ap.add_argument("--top", type=int, default=12, help="imports to list (default 12)")
    opts = ap.parse_args()

    importtime(ONE_LINER, opts.top)
    print()
    importtime(ONE_LINER + ["--format", "json"], 5)
    print()
    matcalc = matcalc_command()
    wall(matcalc + ONE_LINER, 2)  # warm the file cache and lark's grammar cache
    print(f"wall time over {opts.runs} runs:")
    for label, cmd in [("python -c pass", [sys.executable, "-c", "pass"]),
                       ("matcalc --version", matcalc + ["--version"]),
                       ("matcalc \"x'*A*x\" --wrt x", matcalc + ONE_LINER),
                       ("matcalc \"x'*A*x\" --wrt x --hessian", matcalc + ONE_LINER + ["--hessian"]),
                       ("matcalc ... --format json", matcalc + ONE_LINER + ["--format", "json"])]:
        print(f"  {label:40s} {summary(wall(cmd, opts.runs))}")


if __name__ == "__main__":
    main()
