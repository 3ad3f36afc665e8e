"""One call for k variables against k one-variable calls.

For each program: the median time of ``derive(program, wrt=[all k variables])`` and of the k calls
``derive(program, wrt=v)``, one per variable, with the results the user asks for (gradients by
default).  With ``--cli``, also the wall time of one ``matcalc --wrt x,W,...`` process against k
``matcalc --wrt v`` processes, which is what a user at a shell pays.

With ``--hessian`` the one call also computes the mixed blocks H[x, W] (k (k + 1) / 2 blocks) that
the k one-variable calls never give (they give the k diagonal blocks only), so the comparison
favours the k calls.

    python bench/multivar.py [--repeat 5] [--hessian] [--cli]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import matcalc_command  # noqa: E402

from matcalc_cli import derive  # noqa: E402

PROGRAMS = [
    ("two-layer network",
     "W1: matrix(h, n); b1: vector(h); W2: matrix(m, h); b2: vector(m); x: vector(n); y: vector(m); "
     "a = tanh(W1 * x + b1); norm2(W2 * a + b2 - y)^2 / 2",
     ["W1", "b1", "W2", "b2"]),
    ("three-layer network",
     "W1: matrix(h, n); b1: vector(h); W2: matrix(k, h); b2: vector(k); W3: matrix(m, k); b3: vector(m); "
     "x: vector(n); y: vector(m); a1 = tanh(W1 * x + b1); a2 = sigmoid(W2 * a1 + b2); "
     "norm2(W3 * a2 + b3 - y)^2 / 2",
     ["W1", "b1", "W2", "b2", "W3", "b3"]),
    ("Gaussian log-likelihood",
     "x, mu: vector(n); Sigma: symmetric(n); -logdet(Sigma) / 2 - (x - mu)' * inv(Sigma) * (x - mu) / 2",
     ["mu", "Sigma"]),
    ("matrix factorization",
     "M: matrix(m, n); U: matrix(m, k); V: matrix(n, k); norm2(M - U * V')^2 + norm2(U)^2 + norm2(V)^2",
     ["U", "V"]),
    ("logistic regression with bias",
     "X: matrix(m, n); y: vector(m); w: vector(n); b: scalar; sum(log(1 + exp(-y .* (X * w + b * ones(m)))))",
     ["w", "b"]),
]


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--hessian", action="store_true", help="ask for the Hessian too")
    ap.add_argument("--cli", action="store_true", help="also time matcalc processes")
    args = ap.parse_args()
    flags = {"gradient": True, "hessian": args.hessian}
    derive(PROGRAMS[0][1], wrt=PROGRAMS[0][2][0])   # build the parser once, outside the timings

    print(f"derive(): one call for k variables vs k one-variable calls (median of {args.repeat}), "
          f"{'gradients and Hessians' if args.hessian else 'gradients'}")
    print(f"  {'program':30s} {'k':>2s} {'one call':>10s} {'k calls':>10s} {'ratio':>6s}")
    ratios = []
    for title, program, names in PROGRAMS:
        one = median_time(lambda: derive(program, wrt=names, **flags), args.repeat)
        k_calls = median_time(lambda: [derive(program, wrt=v, **flags) for v in names], args.repeat)
        ratios.append(one / k_calls)
        print(f"  {title:30s} {len(names):2d} {one * 1000:8.1f}ms {k_calls * 1000:8.1f}ms {one / k_calls:6.2f}")
    print(f"  median ratio {statistics.median(ratios):.2f}")

    if args.cli:
        cmd = matcalc_command()
        extra = ["--gradient"] + (["--hessian"] if args.hessian else [])
        print(f"\nmatcalc processes: one run with --wrt {{all k}} vs k runs (median of {args.repeat})")
        print(f"  {'program':30s} {'k':>2s} {'one run':>10s} {'k runs':>10s} {'ratio':>6s}")
        for title, program, names in PROGRAMS:
            def run(wrt):
                subprocess.run(cmd + [program, "--wrt", wrt] + extra, check=True, capture_output=True)
            one = median_time(lambda: run(",".join(names)), args.repeat)
            k_runs = median_time(lambda: [run(v) for v in names], args.repeat)
            print(f"  {title:30s} {len(names):2d} {one * 1000:8.1f}ms {k_runs * 1000:8.1f}ms {one / k_runs:6.2f}")


if __name__ == "__main__":
    main()
