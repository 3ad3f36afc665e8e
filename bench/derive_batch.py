"""Time of ``derive`` for a batch of programs: the samples and a set of everyday expressions.

    python bench/derive_batch.py [--repeat R] [--hessian] [--all-results]

Each program is derived R times in this process (parser cache warm after the first); the table shows
the median per program, and the total for the batch.  With --all-results every program also asks for
the gradient / Jacobian / Hessian it admits.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time

from common import REPO, summary

sys.path.insert(0, str(REPO))

from matcalc_cli import derive  # noqa: E402
from matcalc_cli.errors import MatcalcError  # noqa: E402

EVERYDAY = [
    ("x: vector(n); A: matrix(n, n); x' * A * x", "x"),
    ("x: vector(n); b: vector(n); A: matrix(n, n); norm2(A * x - b)^2", "x"),
    ("X: matrix(n, n); det(X)", "X"),
    ("X: matrix(n, n); logdet(X)", "X"),
    ("X: matrix(n, n); tr(inv(X))", "X"),
    ("X: matrix(n, n); inv(X)", "X"),
    ("X: matrix(n, n); X^3", "X"),
    ("S: symmetric(n); logdet(S) + tr(S * A)", "S"),
    ("X: matrix(m, n); A: matrix(p, m); B: matrix(n, q); A * X * B", "X"),
    ("X: matrix(m, n); y: vector(m); w: vector(n); sum(log(1 + exp(-y .* (X * w))))", "w"),
    ("W: matrix(m, n); x: vector(n); b: vector(m); sigmoid(W * x + b)", "W"),
    ("x: vector(n); exp(x) ./ sum(exp(x))", "x"),
    ("X: matrix(m, n); kron(X, X)", "X"),
    ("x: vector(n); diag(x) * x .^ 3", "x"),
    ("X: matrix(n, n); tr(X' * X * X' * X)", "X"),
]


def sample_programs() -> list:
    out = []
    for path in sorted((REPO / "samples").glob("*.mc")):
        text = path.read_text()
        match = re.search(r"--wrt (\w+)", text)
        out.append((f"@samples/{path.name}", text, match.group(1) if match else None))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--hessian", action="store_true", help="ask for the Hessian of scalar functions")
    ap.add_argument("--all-results", action="store_true", help="gradient, Jacobian and Hessian where defined")
    opts = ap.parse_args()

    start = time.perf_counter()
    derive("x: vector(n); x' * x", wrt="x")  # builds (or loads) the parser once
    print(f"first derive (parser construction included): {(time.perf_counter() - start) * 1000:.1f} ms\n")

    programs = [(label, text, wrt) for label, text, wrt in sample_programs()]
    programs += [(text if len(text) < 60 else text[:57] + "...", text, wrt) for text, wrt in EVERYDAY]
    every = []
    print(f"{'program':62s} {'median':>10s} {'results':>8s}")
    for label, text, wrt in programs:
        times, count = [], 0
        for _ in range(opts.repeat):
            t0 = time.perf_counter()
            try:
                probe = derive(text, wrt=wrt)
                scalar = probe.expression.is_scalar
                flags = {}
                if opts.all_results:
                    flags = {"gradient": scalar, "jacobian": True, "hessian": scalar}
                elif opts.hessian and scalar:
                    flags = {"hessian": True}
                d = derive(text, wrt=wrt, **flags) if flags else probe
                for r in d.results.values():
                    r.text()
                count = len(d.results)
            except MatcalcError as e:
                print(f"{label:62s} error: {e.message}")
                break
            times.append(time.perf_counter() - t0)
        if times:
            every.extend(times)
            print(f"{label:62s} {statistics.median(times) * 1000:8.1f} ms {count:8d}")
    print(f"\nall {len(programs)} programs x {opts.repeat}: {summary(every)}")
    print(f"batch total (median per program, summed): "
          f"{sum(statistics.median(every[i:i + opts.repeat]) for i in range(0, len(every), opts.repeat)) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
