"""Size and time of results on ever deeper expressions: polynomial growth, no exponential blow-up.

    python bench/growth.py [--max-time SECONDS] [--family NAME ...] [--hessian]

For each family f_k of expressions (k = nesting depth, number of factors or length of a definition
chain) the table shows the size of the gradient (or Hessian) written out as a tree (shared subtrees
counted every time), the number of distinct nodes, its size as printed (repeated parts named,
``t1 = ...; ...``: the text's nodes), the text length, and the time.  The last columns are growth
exponents between two rows, log(size_2 / size_1) / log(k_2 / k_1), of the printed size and of the
time: a constant exponent is polynomial growth (1 linear, 2 quadratic, ...); an exponent that keeps
rising with k is the sign of exponential growth.  A family stops when one row takes longer than
--max-time, or when matcalc refuses it (a size limit, shown with its message).
"""

from __future__ import annotations

import argparse
import math
import sys
import time

from common import REPO, dag_size, tree_size

sys.path.insert(0, str(REPO))

from matcalc_cli import derive  # noqa: E402
from matcalc_cli.render.share import shared_size  # noqa: E402
from matcalc_cli.errors import MatcalcError  # noqa: E402

def _chain(k: int, step: str, var: str = "y", decl: str = "vector(n)", result: str = "sum") -> str:
    """y0: vector(n); y1 = step(y0); ...; yk = step(y(k-1)); result(yk)"""
    lines = [f"{var}0: {decl}"] + [f"{var}{i} = " + step.replace("@", f"{var}{i - 1}") for i in range(1, k + 1)]
    return "; ".join(lines + [f"{result}({var}{k})"])


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
    # definition chains: small as DAGs, exponentially large written out
    "chain-exp-square": (lambda k: _chain(k, "exp(@) + @ .* @"), "y0", (5, 10, 20, 40, 80)),
    "chain-sine": (lambda k: _chain(k, "sin(@) + @"), "y0", (5, 10, 20, 40)),
    "chain-gram": (lambda k: _chain(k, "@ * @' + @", "Y", "matrix(n, n)", "tr"), "Y0", (5, 10, 20, 40)),
    "trace-product": (lambda k: "X: matrix(n, n); tr(" + " * ".join(f"A{i} * X" for i in range(k)) + ")", "X",
                      (4, 8, 16, 32, 64)),
    "determinant-of-sum": (lambda k: "X: matrix(n, n); det(" + " + ".join(f"X^{i + 1}" for i in range(k)) + ")",
                           "X", (1, 2, 4, 8)),
}


def measure(program: str, wrt: str, hessian: bool):
    t0 = time.perf_counter()
    d = derive(program, wrt=wrt, hessian=hessian, gradient=True)
    texts = {name: r.text() for name, r in d.results.items()}
    elapsed = time.perf_counter() - t0
    sizes = {name: (tree_size(r.expr), dag_size(r.expr), shared_size(r.expr), len(texts[name]))
             for name, r in d.results.items()}
    return elapsed, sizes


def run_family(name: str, hessian: bool, max_time: float) -> None:
    make, wrt, ks = FAMILIES[name]
    key = "hessian" if hessian else "gradient"
    print(f"\n{name}: e.g. {make(ks[0])}")
    print(f"  {'k':>5s} {'input':>8s} {key + ' tree':>14s} {'distinct':>9s} {'printed':>9s} {'text':>10s} "
          f"{'time':>9s} {'exp.size':>8s} {'exp.time':>8s}")
    previous = None
    for k in ks:
        program = make(k)
        try:
            elapsed, sizes = measure(program, wrt, hessian)
        except MatcalcError as e:
            print(f"  {k:5d} {len(program):8d}  refused: {type(e).__name__}: {e.message[:90]}")
            break
        except RecursionError:
            print(f"  {k:5d} {len(program):8d}  stopped: RecursionError")
            break
        tree, distinct, printed, text = sizes[key]
        exponents = ["", ""]
        if previous and k != previous[0]:
            scale = math.log(k / previous[0])
            exponents = [f"{math.log(max(printed, 1) / previous[1]) / scale:8.2f}",
                         f"{math.log(max(elapsed, 1e-6) / previous[2]) / scale:8.2f}"]
        shown_tree = f"{tree:14d}" if tree < 10 ** 14 else f"{tree:14.2e}"
        print(f"  {k:5d} {len(program):8d} {shown_tree} {distinct:9d} {printed:9d} {text:10d} "
              f"{elapsed * 1000:7.0f}ms {exponents[0]:>8s} {exponents[1]:>8s}")
        previous = (k, max(printed, 1), max(elapsed, 1e-6))
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
