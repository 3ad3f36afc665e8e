"""Size and time of results on ever deeper expressions: polynomial growth, no exponential blow-up.

    python bench/growth.py [--max-time SECONDS] [--family NAME ...] [--hessian]

For each family f_k of expressions (k = nesting depth or number of terms) the table shows the size of
the differential / gradient / Hessian written out as a tree (shared subtrees counted every time), the
number of distinct nodes, the text length, and the time.  The last column is the growth exponent
between two rows, log(size_2 / size_1) / log(k_2 / k_1): a constant exponent is polynomial growth
(1 linear, 2 quadratic, ...); an exponent that keeps rising with k is the sign of exponential growth.
A family stops when one row takes longer than --max-time.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

from common import REPO, dag_size, tree_size

sys.path.insert(0, str(REPO))

from matcalc_cli import derive  # noqa: E402
from matcalc_cli.errors import MatcalcError  # noqa: E402

FAMILIES = {
    # name: (program for k, wrt, the sizes k runs through)
    "nested-exp": (lambda k: "x: scalar; " + "exp(" * k + "x" + ")" * k, "x", (2, 4, 8, 16, 32, 64)),
    "nested-sigmoid-vector": (lambda k: "x: vector(n); sum(" + "sigmoid(" * k + "x" + ")" * k + ")", "x",
                              (2, 4, 8, 16, 32)),
    "nested-inverse": (lambda k: "X: matrix(n, n); tr(" + "inv(X + " * k + "X" + ")" * k + ")", "X",
                       (1, 2, 4, 8, 16)),
    "layers": (lambda k: "x: vector(n); A: matrix(n, n); sum(" + "tanh(A * " * k + "x" + ")" * k + ")", "x",
               (1, 2, 4, 8, 16)),
    "matrix-chain": (lambda k: "X: matrix(n, n); tr(" + " * ".join(["X"] * k) + ")", "X", (2, 4, 8, 16, 32, 64)),
    "product-of-traces": (lambda k: "X: matrix(n, n); " + " * ".join(f"tr(A{i} * X)" for i in range(k)), "X",
                          (2, 4, 8, 16, 32)),
    "sum-of-terms": (lambda k: "x: vector(n); " + " + ".join(f"x' * A{i} * x" for i in range(k)), "x",
                     (10, 100, 1000, 2000)),
    "power-tower": (lambda k: "x: scalar; " + "^".join(["x"] * k), "x", (2, 4, 8, 16, 32, 64)),
    "hadamard-chain": (lambda k: "x: vector(n); sum(" + " .* ".join(["x"] * k) + ")", "x", (2, 4, 8, 16, 32, 64)),
    "determinant-of-sum": (lambda k: "X: matrix(n, n); det(" + " + ".join(f"X^{i + 1}" for i in range(k)) + ")",
                           "X", (1, 2, 4, 8)),
}


def measure(program: str, wrt: str, hessian: bool):
    t0 = time.perf_counter()
    d = derive(program, wrt=wrt, hessian=hessian, gradient=True)
    texts = {name: r.text() for name, r in d.results.items()}
    elapsed = time.perf_counter() - t0
    sizes = {name: (tree_size(r.expr), dag_size(r.expr), len(texts[name])) for name, r in d.results.items()}
    return elapsed, sizes


def run_family(name: str, hessian: bool, max_time: float) -> None:
    make, wrt, ks = FAMILIES[name]
    key = "hessian" if hessian else "gradient"
    print(f"\n{name}: e.g. {make(ks[0])}")
    print(f"  {'k':>5s} {'input':>8s} {'df tree':>9s} {key + ' tree':>14s} {'distinct':>9s} {'text':>10s} "
          f"{'time':>9s} {'exponent':>9s}")
    previous = None
    for k in ks:
        program = make(k)
        try:
            elapsed, sizes = measure(program, wrt, hessian)
        except MatcalcError as e:
            print(f"  {k:5d} {len(program):8d}  stopped: {type(e).__name__}: {e.message[:70]}")
            break
        except RecursionError:
            print(f"  {k:5d} {len(program):8d}  stopped: RecursionError")
            break
        df = sizes["differential"][0]
        tree, distinct, text = sizes[key]
        exponent = ""
        if previous and previous[1] > 0 and k != previous[0]:
            exponent = f"{math.log(max(tree, 1) / previous[1]) / math.log(k / previous[0]):9.2f}"
        print(f"  {k:5d} {len(program):8d} {df:9d} {tree:14d} {distinct:9d} {text:10d} {elapsed * 1000:7.0f}ms "
              f"{exponent:>9s}")
        previous = (k, tree)
        if elapsed > max_time:
            print(f"  (stopping: {elapsed:.1f}s > --max-time {max_time}s)")
            break


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-time", type=float, default=5.0)
    ap.add_argument("--hessian", action="store_true", help="measure the Hessian instead of the gradient")
    ap.add_argument("--family", action="append", choices=sorted(FAMILIES), help="only these families")
    opts = ap.parse_args()
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))
    for name in opts.family or FAMILIES:
        run_family(name, opts.hessian, opts.max_time)


if __name__ == "__main__":
    main()
