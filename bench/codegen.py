"""Generated NumPy code against hand-written closed forms of the same derivatives.

For each everyday derivative: the module from ``--format numpy`` is generated once, then its
function and a hand-written closed form are timed side by side (median of repeated runs,
single-threaded BLAS, CPU time of the process) and their peak memory measured with tracemalloc (NumPy reports its
allocations to it).  The two answers are checked to agree before anything is timed.

    python bench/codegen.py                     # every case at n = 100, 1000, 2000
    python bench/codegen.py --sizes 100 --case rayleigh
    python bench/codegen.py --hvp               # also hvp(v) against one gradient evaluation

Matrix variables (Hessians of n^2 x n^2) run at the sizes in MATRIX_SIZES.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"   # before NumPy is imported: one BLAS thread, comparable timings

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from matcalc_cli import derive  # noqa: E402
from matcalc_cli.render.numpy_code import to_numpy_module  # noqa: E402

SIZES = (100, 1000, 2000)
MATRIX_SIZES = (10, 30, 60)     # n for n x n matrix variables: the Hessian is n^2 x n^2
P = 60                          # the small side of tall matrices (logdet(A' diag(x) A))
K = 10                          # classes of the softmax


def _spd(rng, n):
    a = rng.standard_normal((n, n)) / np.sqrt(n)
    return a @ a.T + np.eye(n)


def _sigmoid(z):
    return 0.5 * (1 + np.tanh(0.5 * z))


# --- hand-written closed forms ------------------------------------------------------------------

def quad_grad(x, A):
    return 2 * (A.T @ (A @ x))


def abc_grad(x, A, B, C):
    return A @ (B @ (C @ x)) + C.T @ (B.T @ (A.T @ x))


def rayleigh_grad(x, A):
    q = x @ x
    s = A @ x + A.T @ x
    return s / q - 2 * (x @ (A @ x)) / q ** 2 * x


def rayleigh_hess(x, A):
    q = x @ x
    a = x @ (A @ x)
    S = A + A.T
    s = S @ x
    H = S / q - 2 * (np.outer(s, x) + np.outer(x, s)) / q ** 2 + 8 * a / q ** 3 * np.outer(x, x)
    H[np.diag_indices_from(H)] -= 2 * a / q ** 2
    return H


def logistic_grad(w, X, y):
    return -X.T @ (y * _sigmoid(-y * (X @ w)))


def logistic_hess(w, X, y):
    s = _sigmoid(-y * (X @ w))
    return X.T @ ((y * y * s * (1 - s))[:, None] * X)


def logdet_hess(x, A):
    M = A @ np.linalg.solve(A.T @ (x[:, None] * A), A.T)
    return -M * M


def lsq_grad(x, A, b):
    return 2 * (A.T @ (A @ x - b))


def ridge_hess(x, A, b, lam):
    H = 2 * (A.T @ A)
    H[np.diag_indices_from(H)] += 2 * lam
    return H


def softmax_grad(W, x, y):
    e = np.exp(W @ x)
    return np.outer(e / e.sum() - y, x)


def gauss_mu_grad(mu, S, x):
    return np.linalg.solve(S, x - mu)


def gauss_sigma_grad(S, mu, x):
    Si = np.linalg.inv(S)
    u = Si @ (x - mu)
    return (np.outer(u, u) - Si) / 2


def barrier_grad(x, A, b):
    return A.T @ (1 / (b - A @ x))


def barrier_hess(x, A, b):
    r = 1 / (b - A @ x)
    return A.T @ ((r * r)[:, None] * A)


def trace_grad(X, A):
    return A @ X + A.T @ X


def trace_hess(X, A):
    return np.kron(np.eye(X.shape[0]), A + A.T)


def tanh_grad(W, x, b, y):
    t = np.tanh(W @ x + b)
    return np.outer(2 * (1 - t * t) * (t - y), x)


def logdet_matrix_hess(X):
    n = X.shape[0]
    Xi = np.linalg.inv(X)
    # H[a + b n, c + d n] = -Xi[b, c] Xi[d, a]
    return -np.multiply.outer(Xi, Xi).transpose(3, 0, 1, 2).reshape(n * n, n * n, order="F")


# --- the cases ------------------------------------------------------------------------------------

def _vec(rng, n):
    return rng.standard_normal(n)


def _mat(rng, r, c):
    return rng.standard_normal((r, c)) / np.sqrt(c)


# name: (program, wrt, result, hand-written, inputs(rng, n) -> dict, matrix variable?)
CASES = {
    "x'A'Ax gradient": ("x: vector(n); A: matrix(n, n); x' * A' * A * x", "x", "gradient", quad_grad,
                        lambda r, n: dict(x=_vec(r, n), A=_mat(r, n, n)), False),
    "x'ABCx gradient": ("x: vector(n); A, B, C: matrix(n, n); x' * A * B * C * x", "x", "gradient", abc_grad,
                        lambda r, n: dict(x=_vec(r, n), A=_mat(r, n, n), B=_mat(r, n, n), C=_mat(r, n, n)),
                        False),
    "Rayleigh gradient": ("x: vector(n); A: matrix(n, n); x' * A * x / (x' * x)", "x", "gradient", rayleigh_grad,
                          lambda r, n: dict(x=_vec(r, n), A=_mat(r, n, n)), False),
    "Rayleigh Hessian": ("x: vector(n); A: matrix(n, n); x' * A * x / (x' * x)", "x", "hessian", rayleigh_hess,
                         lambda r, n: dict(x=_vec(r, n), A=_mat(r, n, n)), False),
    "logistic gradient": ("w: vector(n); X: matrix(m, n); y: vector(m); sum(log(1 + exp(-y .* (X * w))))", "w",
                          "gradient", logistic_grad,
                          lambda r, n: dict(w=_vec(r, n) / 10, X=_mat(r, n, n), y=np.sign(_vec(r, n))), False),
    "logistic Hessian": ("w: vector(n); X: matrix(m, n); y: vector(m); sum(log(1 + exp(-y .* (X * w))))", "w",
                         "hessian", logistic_hess,
                         lambda r, n: dict(w=_vec(r, n) / 10, X=_mat(r, n, n), y=np.sign(_vec(r, n))), False),
    "logdet(A' diag(x) A) Hessian": ("x: vector(n); A: matrix(n, p); logdet(A' * diag(x) * A)", "x", "hessian",
                                     logdet_hess,
                                     lambda r, n: dict(x=1 + r.random(n), A=_mat(r, n, P)), False),
    "least squares gradient": ("x: vector(n); A: matrix(m, n); b: vector(m); norm2(A * x - b)^2", "x", "gradient",
                               lsq_grad, lambda r, n: dict(x=_vec(r, n), A=_mat(r, n, n), b=_vec(r, n)), False),
    "ridge Hessian": ("x: vector(n); A: matrix(m, n); b: vector(m); lam: scalar; "
                      "norm2(A * x - b)^2 + lam * x' * x", "x", "hessian", ridge_hess,
                      lambda r, n: dict(x=_vec(r, n), A=_mat(r, n, n), b=_vec(r, n), lam=0.1), False),
    "softmax cross-entropy gradient (W)": ("W: matrix(k, n); x: vector(n); y: vector(k); "
                                           "log(sum(exp(W * x))) - y' * W * x", "W", "gradient", softmax_grad,
                                           lambda r, n: dict(W=_mat(r, K, n), x=_vec(r, n),
                                                             y=np.eye(K)[0]), False),
    "Gaussian log-likelihood gradient (mu)": ("mu: vector(n); S: symmetric(n); x: vector(n); "
                                              "-logdet(S) / 2 - (x - mu)' * inv(S) * (x - mu) / 2", "mu",
                                              "gradient", gauss_mu_grad,
                                              lambda r, n: dict(mu=_vec(r, n), S=_spd(r, n), x=_vec(r, n)), False),
    "Gaussian log-likelihood gradient (Sigma)": ("mu: vector(n); S: symmetric(n); x: vector(n); "
                                                 "-logdet(S) / 2 - (x - mu)' * inv(S) * (x - mu) / 2", "S",
                                                 "gradient", gauss_sigma_grad,
                                                 lambda r, n: dict(mu=_vec(r, n), S=_spd(r, n), x=_vec(r, n)),
                                                 False),
    "log-det barrier gradient": ("x: vector(n); A: matrix(m, n); b: vector(m); -sum(log(b - A * x))", "x",
                                 "gradient", barrier_grad,
                                 lambda r, n: dict(x=np.zeros(n), A=_mat(r, n, n), b=1 + r.random(n)), False),
    "log-det barrier Hessian": ("x: vector(n); A: matrix(m, n); b: vector(m); -sum(log(b - A * x))", "x",
                                "hessian", barrier_hess,
                                lambda r, n: dict(x=np.zeros(n), A=_mat(r, n, n), b=1 + r.random(n)), False),
    "trace cost tr(X'AX) gradient": ("X: matrix(n, n); A: matrix(n, n); tr(X' * A * X)", "X", "gradient",
                                     trace_grad, lambda r, n: dict(X=_mat(r, n, n), A=_mat(r, n, n)), False),
    "tanh layer gradient (W)": ("W: matrix(n, n); x, b, y: vector(n); norm2(tanh(W * x + b) - y)^2", "W",
                                "gradient", tanh_grad,
                                lambda r, n: dict(W=_mat(r, n, n), x=_vec(r, n), b=_vec(r, n), y=_vec(r, n)),
                                False),
    "trace cost tr(X'AX) Hessian (matrix)": ("X: matrix(n, n); A: matrix(n, n); tr(X' * A * X)", "X", "hessian",
                                             trace_hess, lambda r, n: dict(X=_mat(r, n, n), A=_mat(r, n, n)),
                                             True),
    "logdet(X) Hessian (matrix)": ("X: matrix(n, n); logdet(X)", "X", "hessian", logdet_matrix_hess,
                                   lambda r, n: dict(X=_spd(r, n)), True),
}


# several variables at once: hvp(v={name: ...}) against one call of gradients() (--hvp)
SEVERAL = {
    "tanh layer (W, b)": ("W: matrix(n, n); x, b, y: vector(n); norm2(tanh(W * x + b) - y)^2", "W,b",
                          lambda r, n: dict(W=_mat(r, n, n), x=_vec(r, n), b=_vec(r, n), y=_vec(r, n))),
    "Gaussian log-likelihood (mu, S)": ("mu: vector(n); S: symmetric(n); x: vector(n); "
                                        "-logdet(S) / 2 - (x - mu)' * inv(S) * (x - mu) / 2", "mu,S",
                                        lambda r, n: dict(mu=_vec(r, n), S=_spd(r, n), x=_vec(r, n))),
}


def run_several(name: str, sizes, budget: float):
    program, wrt, inputs = SEVERAL[name]
    d = derive(program, wrt=wrt, gradient=True, hessian=True)
    namespace: dict = {}
    exec(compile(to_numpy_module(d), f"<{program}>", "exec"), namespace)
    for n in sizes:
        rng = np.random.default_rng(n)
        kwargs = inputs(rng, n)
        v = {x: rng.standard_normal(np.shape(kwargs[x])) for x in d.wrts}
        t_hvp = median_time(namespace["hvp"], dict(kwargs, v=v), budget)
        t_grad = median_time(namespace["gradients"], kwargs, budget)
        print(f"{name + ' hvp / gradients()':60s} {n:5d} {_ms(t_hvp):>11s} {_ms(t_grad):>11s} "
              f"{t_hvp / t_grad:6.2f}", flush=True)


def median_time(fn, kwargs, budget: float, min_runs: int = 3, max_runs: int = 25) -> float:
    """Median CPU time of this process (single-threaded BLAS): other processes on a shared machine
    inflate wall-clock times, much less the CPU time."""
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < budget and len(times) < max_runs):
        t0 = time.process_time()
        fn(**kwargs)
        times.append(time.process_time() - t0)
    return statistics.median(times)


def peak_memory(fn, kwargs) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn(**kwargs)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def module_for(program: str, wrt: str, result: str) -> dict:
    d = derive(program, wrt=wrt, **{result: True})
    namespace: dict = {}
    exec(compile(to_numpy_module(d), f"<{result} of {program}>", "exec"), namespace)
    return namespace


def run_case(name: str, sizes, budget: float, with_hvp: bool):
    program, wrt, result, hand, inputs, matrix_variable = CASES[name]
    mod = module_for(program, wrt, result)
    generated = mod[result]
    rows = []
    for n in (MATRIX_SIZES if matrix_variable else sizes):
        rng = np.random.default_rng(n)
        kwargs = inputs(rng, n)
        ours, theirs = generated(**kwargs), hand(**kwargs)
        scale = max(1.0, float(np.max(np.abs(theirs))))
        error = float(np.max(np.abs(np.asarray(ours) - theirs))) / scale
        if error > 1e-8:
            raise AssertionError(f"{name} at n={n}: generated and hand-written differ by {error:.1e}")
        t_gen = median_time(generated, kwargs, budget)
        t_hand = median_time(hand, kwargs, budget)
        m_gen, m_hand = peak_memory(generated, kwargs), peak_memory(hand, kwargs)
        row = [name, n, t_gen, t_hand, m_gen, m_hand]
        if with_hvp and result == "hessian":
            v = rng.standard_normal(np.shape(kwargs[wrt]))
            hv = mod["hvp"](**kwargs, v=v)
            flat_h = np.asarray(ours)
            expected = flat_h @ v.reshape(-1, order="F")
            assert np.allclose(np.ravel(hv, order="F"), expected, atol=1e-8 * scale * max(1, np.abs(v).max()))
            gmod = module_for(program, wrt, "gradient")
            t_hvp = median_time(mod["hvp"], dict(kwargs, v=v), budget)
            t_grad = median_time(gmod["gradient"], kwargs, budget)
            row += [t_hvp / t_grad]
        rows.append(row)
        print(_format(row), flush=True)
    return rows


HEADER = (f"{'case':42s} {'n':>5s} {'generated':>11s} {'hand':>11s} {'ratio':>6s} "
          f"{'mem gen':>9s} {'mem hand':>9s} {'ratio':>6s}")


def _ms(t: float) -> str:
    return f"{t * 1000:9.3f}ms"


def _mb(b: int) -> str:
    return f"{b / 2 ** 20:7.2f}MB"


def _format(row) -> str:
    name, n, tg, th, mg, mh = row[:6]
    text = (f"{name:42s} {n:5d} {_ms(tg):>11s} {_ms(th):>11s} {tg / th:6.2f} "
            f"{_mb(mg):>9s} {_mb(mh):>9s} {mg / max(mh, 1):6.2f}")
    if len(row) > 6:
        text += f"   hvp/gradient {row[6]:5.2f}"
    return text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--case", action="append", help="substring of the case names to run (repeatable)")
    ap.add_argument("--budget", type=float, default=0.5, help="seconds of repeats per measurement")
    ap.add_argument("--hvp", action="store_true", help="also time hvp(v) against one gradient")
    args = ap.parse_args(argv)
    names = [c for c in CASES if not args.case or any(s.lower() in c.lower() for s in args.case)]
    print(f"numpy {np.__version__}, single-threaded BLAS; medians of CPU time; ratio = generated / hand-written")
    print(HEADER)
    worst = {}
    for name in names:
        for row in run_case(name, args.sizes, args.budget, args.hvp):
            kind = "hessian" if "Hessian" in name else "gradient"
            worst[kind] = max(worst.get(kind, 0), row[2] / row[3])
            worst["memory"] = max(worst.get("memory", 0), row[4] / max(row[5], 1))
    print("worst ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in worst.items()))
    if args.hvp:
        print()
        print(f"{'several variables: hvp(v={...}) against gradients()':60s} {'n':>5s} {'hvp':>11s} "
              f"{'gradients':>11s} {'ratio':>6s}")
        for name in SEVERAL:
            if not args.case or any(c.lower() in name.lower() for c in args.case):
                run_several(name, [n for n in args.sizes if n <= 1000], args.budget)


if __name__ == "__main__":
    main()
