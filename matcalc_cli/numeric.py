"""Numbers for expressions: dimension sizes, random points, a NumPy interpreter for the IR, and
finite-difference Jacobians.  ``check`` and the tests build on these; NumPy is imported here only,
so a plain ``matcalc`` run never loads it.

Conventions (as everywhere in matcalc): every value is a 2-D float array with the node's shape (a
scalar is 1 x 1, a vector n x 1); ``vec`` is column-major.  For a symmetric variable the derivative
acts on symmetric directions only, so the numeric Jacobian is J P with P = (I + K)/2: column k is
the derivative along sym(E_k), E_k the k-th unit matrix.
"""

from __future__ import annotations

import numpy as np

from . import expr as E
from .dims import Dim

# Sizes given to dimension symbols: distinct, so that a misplaced transpose cannot hide behind a square.
PREFERRED_SIZES = {"n": 3, "m": 4, "p": 5, "q": 2, "k": 6, "r": 7}
SIZE_POOL = (3, 4, 5, 2, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)

# Random points keep arguments this far from kinks and domain edges (relative to their size).
KINK_MARGIN = 0.02
POSITIVE_MARGIN = 0.01
MAX_CONDITION = 1e6


# --- dimensions -----------------------------------------------------------------------------------





def dimension_symbols(derivation) -> list:
    """Dimension symbols in order of first use: variables' shapes first, then the expressions."""
    order: list = []

    def note(d: Dim):
        for s, _ in d.factors:
            if s not in order:
                order.append(s)

    for sym in derivation.typed.symbols.values():
        for d in sym.shape:
            note(Dim.of(d))
    for v in derivation.variables:
        for d in v.x.shape:
            note(d)
    roots = [derivation.expression] + [r.expr for r in derivation.results.values()]
    for node in E.walk(*roots):
        for d in E.node_dims(node):
            note(d)
    return order


def dimension_sizes(derivation, sizes=None) -> dict:
    """Every dimension symbol -> a distinct small int (n=3, m=4, p=5, q=2, ...); ``sizes`` overrides."""
    out = dict(sizes or {})
    taken = set(out.values())
    symbols = dimension_symbols(derivation)
    for s in symbols:
        if s in out:
            continue
        preferred = PREFERRED_SIZES.get(s)
        if preferred is not None and preferred not in taken:
            out[s] = preferred
            taken.add(preferred)
    for s in symbols:
        if s in out:
            continue
        value = next(v for v in SIZE_POOL + tuple(range(17, 1000)) if v not in taken)
        out[s] = value
        taken.add(value)
    return out


def shape_of(node_or_shape, sizes: dict) -> tuple:
    shape = node_or_shape.shape if isinstance(node_or_shape, E.Expr) else node_or_shape
    return (Dim.of(shape[0]).evaluate(sizes), Dim.of(shape[1]).evaluate(sizes))


# --- the interpreter ------------------------------------------------------------------------------

def commutation_matrix(m: int, n: int) -> np.ndarray:
    """K (mn x mn) with K vec(X) = vec(X') for X m x n (column-major vec)."""
    K = np.zeros((m * n, m * n))
    i, j = np.meshgrid(np.arange(m), np.arange(n), indexing="ij")
    K[(j + i * n).ravel(), (i + j * m).ravel()] = 1.0
    return K


def adjugate(a: np.ndarray) -> np.ndarray:
    """adj(A), also for singular A: with A = U S V', adj(A) = det(U) det(V) V adj(S) U'."""
    n = a.shape[0]
    if n == 1:
        return np.ones((1, 1))
    u, s, vh = np.linalg.svd(a)
    adj_s = np.array([np.prod(np.delete(s, i)) for i in range(n)])
    return np.linalg.det(u) * np.linalg.det(vh) * (vh.T * adj_s) @ u.T


def _adjugate_derivatives() -> dict:
    """The generated code's own helpers for derivatives of adj (one definition, in numpy_code)."""
    from .render.numpy_code import HELPERS
    namespace = {"np": np, "_adj": adjugate}
    for name in ("_adj_diff", "_adj_jacobian"):
        exec(HELPERS[name], namespace)  # noqa: S102 - our own source text
    return namespace


_ADJ = _adjugate_derivatives()
adjugate_derivative = _ADJ["_adj_diff"]
adjugate_jacobian = _ADJ["_adj_jacobian"]


def logdet(a: np.ndarray) -> float:
    """log(det(A)): NaN when det(A) < 0 (the real logarithm), -inf when singular."""
    sign, value = np.linalg.slogdet(a)
    if sign > 0:
        return float(value)
    return float("-inf") if sign == 0 else float("nan")


def _sigmoid(a):
    return 0.5 * (1.0 + np.tanh(0.5 * a))


ELEMENTWISE_FUNCTIONS = {
    "exp": np.exp, "log": np.log, "sin": np.sin, "cos": np.cos, "tan": np.tan, "tanh": np.tanh,
    "arcsin": np.arcsin, "arccos": np.arccos, "arctan": np.arctan, "sqrt": np.sqrt,
    "sigmoid": _sigmoid, "abs": np.abs, "sign": np.sign,
    "relu": lambda a: np.maximum(a, 0.0),
    "step": lambda a: (a > 0).astype(float),
}


def _scalar(value) -> np.ndarray:
    return np.full((1, 1), float(value))


def _number(value) -> float:
    return float(value)


def _power(base: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    e = float(np.asarray(exponent).reshape(-1)[0])
    if e.is_integer() and abs(e) < 2 ** 31:
        k = int(e)
        return base ** k if k >= 0 else 1.0 / base ** (-k)
    return np.power(base, e)


def _matmul(args):
    return args[0] @ args[1] if len(args) == 2 else np.linalg.multi_dot(args)


def _product(args):
    out = args[0]
    for a in args[1:]:
        out = out * a
    return out


# one small function per node kind: (node, evaluated children, values, sizes) -> 2-D array
def _ev_var(node, kids, values, sizes):
    try:
        v = values[node.name]
    except KeyError:
        raise KeyError(f"no value for {node.name!r}") from None
    return np.asarray(v, dtype=float).reshape(shape_of(node, sizes), order="F")


# --- matrix functions (SciPy, imported on first use) -------------------------------------------------

def _real(a: np.ndarray) -> np.ndarray:
    """The real matrix a complex result stands for (NaN where it is genuinely complex)."""
    if np.iscomplexobj(a):
        if np.max(np.abs(a.imag), initial=0.0) > 1e-8 * max(1.0, float(np.max(np.abs(a), initial=0.0))):
            return np.full(a.shape, np.nan)
        return a.real.copy()
    return a


def matrix_function(fn: str, a: np.ndarray) -> np.ndarray:
    """expm, logm (principal) or sqrtm (principal) of a square matrix."""
    if a.ndim == 2 and a.shape[0] == a.shape[1] and np.array_equal(a, a.T):
        return _symmetric_matrix_function(fn, a)
    import scipy.linalg as sl
    if fn == "expm":
        return sl.expm(a)
    if fn == "logm":
        return _real(sl.logm(a))
    return _real(sl.sqrtm(a))


def _symmetric_matrix_function(fn: str, a: np.ndarray) -> np.ndarray:
    """f(A) = V f(w) V' from A's eigendecomposition: for symmetric A (a symmetric variable, and
    every point of its finite differences) ten times faster than the general Schur methods, and as
    accurate.  The principal log and square root of a matrix with a negative eigenvalue are
    complex: NaN, as _real gives for general matrices."""
    w, v = np.linalg.eigh(a)
    if fn == "expm":
        fw = np.exp(w)
    elif np.min(w, initial=np.inf) < 0 or (fn == "logm" and np.min(w, initial=np.inf) == 0):
        return np.full(a.shape, np.nan)
    else:
        fw = np.log(w) if fn == "logm" else np.sqrt(w)
    return (v * fw) @ v.T


def frechet_derivative(fn: str, a: np.ndarray, directions) -> np.ndarray:
    """L^(k)_f(A)[E1, ..., Ek].  First order: SciPy's expm_frechet for expm, the Sylvester equation
    S L + L S = E for sqrtm.  Otherwise the top-right n x n block of f of the 2^k n block matrix
    X_j = [[X_(j-1), kron(I, E_j)], [0, X_(j-1)]], X_0 = A (Higham and Relton, SIMAX 35 (2014)).
    Each direction is scaled to the size of A first (the map is linear in it), so that the block
    matrix is not dominated by a large direction."""
    import scipy.linalg as sl
    directions = list(directions)
    if len(directions) == 1 and fn == "expm":
        return sl.expm_frechet(a, directions[0], compute_expm=False)
    if len(directions) == 1 and fn == "sqrtm":
        s = matrix_function("sqrtm", a)
        return sl.solve_sylvester(s, s, directions[0])
    return block_frechet_derivative(fn, a, directions)


def block_frechet_derivative(fn: str, a: np.ndarray, directions) -> np.ndarray:
    """L^(k)_f(A)[E1, ..., Ek] as the top-right block of f of the 2^k n block matrix."""
    n = a.shape[0]
    size = max(float(np.linalg.norm(a)), 1e-300)
    factor = 1.0
    block = a
    for e in directions:
        norm = float(np.linalg.norm(e))
        if norm == 0.0:
            return np.zeros((n, n))
        factor *= norm / size
        m = block.shape[0] // n
        upper = np.kron(np.eye(m), e * (size / norm))
        block = np.block([[block, upper], [np.zeros_like(block), block]])
    return factor * matrix_function(fn, block)[:n, -n:]


def frechet_matrix(fn: str, a: np.ndarray, directions=()) -> np.ndarray:
    """K with vec(L^(k+1)(A)[E.., F]) = K vec(F): column q is vec of the derivative along the q-th unit
    matrix (column-major)."""
    n = a.shape[0]
    cols = []
    for q in range(n * n):
        unit = np.zeros(n * n)
        unit[q] = 1.0
        f = frechet_derivative(fn, a, list(directions) + [unit.reshape((n, n), order="F")])
        cols.append(f.reshape(-1, order="F"))
    return np.column_stack(cols)


EVALUATORS = {
    E.MatFun: lambda n, k, v, s: matrix_function(n.fn, k[0]),
    E.Frechet: lambda n, k, v, s: frechet_derivative(n.fn, k[0], k[1:]),
    E.FrechetMatrix: lambda n, k, v, s: frechet_matrix(n.fn, k[0], k[1:]),
    E.Var: _ev_var,
    E.Num: lambda n, k, v, s: _scalar(_number(n.value)),
    E.Identity: lambda n, k, v, s: np.eye(n.n.evaluate(s)),
    E.Zero: lambda n, k, v, s: np.zeros(shape_of(n, s)),
    E.Ones: lambda n, k, v, s: np.ones(shape_of(n, s)),
    E.Commutation: lambda n, k, v, s: commutation_matrix(n.m.evaluate(s), n.n.evaluate(s)),
    E.Add: lambda n, k, v, s: sum(k[1:], k[0]),
    E.Mul: lambda n, k, v, s: _product(k),
    E.MatMul: lambda n, k, v, s: _matmul(k),
    E.Hadamard: lambda n, k, v, s: _product(k),
    E.Transpose: lambda n, k, v, s: k[0].T,
    E.Inverse: lambda n, k, v, s: np.linalg.inv(k[0]),
    E.MatPow: lambda n, k, v, s: np.linalg.matrix_power(k[0], n.k),
    E.Power: lambda n, k, v, s: _power(k[0], k[1]),
    E.Trace: lambda n, k, v, s: _scalar(np.trace(k[0])),
    E.Det: lambda n, k, v, s: _scalar(np.linalg.det(k[0])),
    E.LogDet: lambda n, k, v, s: _scalar(logdet(k[0])),
    E.Adj: lambda n, k, v, s: adjugate(k[0]),
    E.AdjDiff: lambda n, k, v, s: adjugate_derivative(*k),
    E.AdjJacobian: lambda n, k, v, s: adjugate_jacobian(*k),
    E.Diag: lambda n, k, v, s: np.diagflat(k[0]),
    E.DiagPart: lambda n, k, v, s: np.diag(k[0]).reshape(-1, 1).copy(),
    E.Vec: lambda n, k, v, s: k[0].reshape(-1, 1, order="F"),
    E.Reshape: lambda n, k, v, s: k[0].reshape(shape_of(n, s), order="F"),
    E.Sum: lambda n, k, v, s: _scalar(np.sum(k[0])),
    E.Norm1: lambda n, k, v, s: _scalar(np.sum(np.abs(k[0]))),
    E.Norm2: lambda n, k, v, s: _scalar(np.sqrt(np.sum(k[0] ** 2))),
    E.Kron: lambda n, k, v, s: np.kron(k[0], k[1]),
    E.Elementwise: lambda n, k, v, s: ELEMENTWISE_FUNCTIONS[n.fn](k[0]),
}


class Evaluator:
    """Evaluates nodes at one point; shared subtrees (equal nodes) are computed once."""

    def __init__(self, values: dict, sizes: dict):
        self.values, self.sizes = values, sizes
        self.memo: dict = {}

    def __call__(self, root: E.Expr) -> np.ndarray:
        memo = self.memo
        stack = [(root, False)]
        while stack:
            node, ready = stack.pop()
            if node in memo:
                continue
            if not ready:
                stack.append((node, True))
                stack.extend((c, False) for c in node.children if c not in memo)
                continue
            rule = EVALUATORS.get(type(node))
            if rule is None:
                raise NotImplementedError(f"no numeric evaluation for {type(node).__name__}")
            out = np.asarray(rule(node, [memo[c] for c in node.children], self.values, self.sizes), dtype=float)
            expected = shape_of(node, self.sizes)
            if out.shape != expected:
                if out.size == 1:
                    out = np.full(expected, float(out.reshape(-1)[0]))
                else:
                    raise ValueError(f"{type(node).__name__} evaluated to shape {out.shape}, expected {expected}")
            memo[node] = out
        return memo[root]


def evaluate(expr: E.Expr, values: dict, sizes: dict) -> np.ndarray:
    """The value of any IR node at ``values`` (name -> array), a 2-D array of the node's shape."""
    with np.errstate(all="ignore"):
        return Evaluator(values, sizes)(expr)


# --- random points ----------------------------------------------------------------------------------

# (signed?, scale): the order in which kinds of points are tried
# (signed entries?, scale): a negative scale makes negative (definite) values, for log(-x),
# logdet(-X); a large one values beyond 1, for sqrt(x - 1)
PROFILES = ((True, 1.0), (False, 1.0), (False, 0.3), (True, 0.3), (False, 0.1), (True, 0.1), (True, 3.0),
            (False, -1.0), (False, 3.0), (False, -0.3), (False, 10.0), (False, -3.0))


def _random_value(sym_shape, symmetric: bool, rng, sizes: dict, signed: bool, scale: float) -> np.ndarray:
    r, c = shape_of(sym_shape, sizes)

    def entries(shape):
        if signed:
            return rng.uniform(-1.0, 1.0, shape)
        return rng.uniform(0.2, 1.0, shape)

    if r == 1 and c == 1:
        mag = rng.uniform(0.5, 1.5)
        sign = rng.choice((-1.0, 1.0)) if signed else 1.0
        return np.full((1, 1), sign * mag * scale)
    if r == c:
        # diagonally dominant around 2I: eigenvalues in Re > 0, so det > 0, and well conditioned
        noise = entries((r, c)) / r
        if symmetric:
            noise = (noise + noise.T) / 2
        return scale * (2.0 * np.eye(r) + noise + np.diag(rng.uniform(0.0, 0.5, r)))
    if signed:
        return scale * entries((r, c))
    return scale * rng.uniform(0.5, 1.5, (r, c))


def random_direction(var, rng, sizes: dict) -> np.ndarray:
    """A random direction for ``var`` (symmetric for a symmetric variable)."""
    r, c = shape_of(var, sizes)
    d = rng.standard_normal((r, c))
    if getattr(var, "symmetric", False):
        d = (d + d.T) / 2
    return d


def _quoted(node, width: int = 40) -> str:
    """A subexpression as the user writes it, cut short: where a point fails, in their terms."""
    from .render.text import to_text
    if E.tree_size(node) > 200:      # written out it could be megabytes: its head only
        head = getattr(node, "fn", None) or type(node).__name__.lower()
        return f"{head}(...)"
    text = to_text(node)
    return text if len(text) <= width else text[:width - 3] + "..."


def domain_problems(evaluator: Evaluator) -> list:
    """Reasons why the evaluated point is a poor place for finite differences (empty: fine)."""
    problems = []
    for node, value in evaluator.memo.items():
        if not np.all(np.isfinite(value)):
            problems.append(f"{_quoted(node)} is not finite")
            continue
        kids = [evaluator.memo.get(c) for c in node.children]
        if any(k is None for k in kids):
            continue
        if isinstance(node, E.Elementwise):
            a = kids[0]
            size = max(1.0, float(np.max(np.abs(a))))
            if node.fn in ("abs", "sign", "relu", "step") and np.min(np.abs(a)) < KINK_MARGIN * size:
                problems.append(f"{node.fn} argument near 0")
            elif node.fn in ("log", "sqrt") and np.min(a) < POSITIVE_MARGIN * size:
                problems.append(f"{node.fn} argument not positive")
            elif node.fn in ("arcsin", "arccos") and np.max(np.abs(a)) > 1 - KINK_MARGIN:
                problems.append(f"{node.fn} argument near +-1")
            elif node.fn == "tan" and np.min(np.abs(np.cos(a))) < 0.05:
                problems.append("tan argument near a pole")
        elif isinstance(node, E.Power):
            a, e = kids[0], float(kids[1].reshape(-1)[0])
            size = max(1.0, float(np.max(np.abs(a))))
            if not e.is_integer() and np.min(a) < POSITIVE_MARGIN * size:
                problems.append("non-integer power of a non-positive base")
            elif e < 0 and np.min(np.abs(a)) < POSITIVE_MARGIN * size:
                problems.append("negative power of a base near 0")
        elif isinstance(node, E.Norm1):
            a = kids[0]
            if np.min(np.abs(a)) < KINK_MARGIN * max(1.0, float(np.max(np.abs(a)))):
                problems.append("norm1 entry near 0")
        elif isinstance(node, E.Norm2):
            if float(value[0, 0]) < POSITIVE_MARGIN:
                problems.append("norm2 near 0")
        elif isinstance(node, (E.MatFun, E.Frechet, E.FrechetMatrix)) and node.fn != "expm":
            problem = principal_domain_problem(kids[0], node.fn)
            if problem:
                problems.append(problem)
        elif isinstance(node, (E.Inverse, E.LogDet, E.Adj)):
            a = kids[0]
            if np.linalg.cond(a) > MAX_CONDITION:
                problems.append(f"{type(node).__name__} argument ill conditioned")
            if isinstance(node, E.LogDet) and np.linalg.slogdet(a)[0] <= 0:
                problems.append("logdet of a matrix with det <= 0")
    return problems


def principal_domain_problem(a: np.ndarray, fn: str) -> str | None:
    """Why logm or sqrtm of a is a poor place to differentiate: an eigenvalue on or near the closed
    negative real axis, where the principal branch is not defined or not differentiable."""
    eig = np.linalg.eigvals(a)
    size = max(1.0, float(np.max(np.abs(eig), initial=0.0)))
    near_axis = (np.abs(eig.imag) < POSITIVE_MARGIN * size) & (eig.real < POSITIVE_MARGIN * size)
    if np.any(near_axis):
        return f"{fn} argument has an eigenvalue near the closed negative real axis"
    if np.linalg.cond(a) > MAX_CONDITION:
        return f"{fn} argument ill conditioned"
    return None


def point_problems(derivation, values: dict, sizes: dict, rng=None) -> list:
    """domain_problems for f and every result at ``values`` (with random directions if needed)."""
    env = dict(values)
    rng = rng if rng is not None else np.random.default_rng(12345)
    for v, _ in derivation.directions:
        if v.name not in env:
            env[v.name] = random_direction(v, rng, sizes)
    ev = Evaluator(env, sizes)
    with np.errstate(all="ignore"):
        try:
            ev(derivation.expression)
            for r in derivation.results.values():
                ev(r.expr)
            return domain_problems(ev)
        except (np.linalg.LinAlgError, ValueError, OverflowError, ZeroDivisionError) as e:
            return [f"{type(e).__name__}: {e}"]


def random_values(derivation, rng, sizes: dict, signed: bool = True, scale: float = 1.0) -> dict:
    """One random value per symbol of the program, without any domain check."""
    return {name: _random_value(sym.shape, sym.symmetric, rng, sizes, signed, scale)
            for name, sym in derivation.typed.symbols.items()}


def random_point(derivation, rng, sizes: dict, attempts: int = 3) -> dict:
    """name -> 2-D array for every symbol, at a point where f and every result are finite and away
    from kinks and domain edges (several kinds of points are tried; the least bad one is kept)."""
    best, best_count = None, None
    for _ in range(attempts):
        for signed, scale in PROFILES:
            values = random_values(derivation, rng, sizes, signed, scale)
            problems = point_problems(derivation, values, sizes, rng)
            if not problems:
                return values
            if best_count is None or len(problems) < best_count:
                best, best_count = values, len(problems)
    return best


# --- finite differences -----------------------------------------------------------------------------

def unit_directions(var, sizes: dict):
    """The directions whose derivatives make the columns of the Jacobian: E_k, or sym(E_k)."""
    from .budget import check as within_budget
    r, c = shape_of(var, sizes)
    for k in range(r * c):
        within_budget()
        e = np.zeros(r * c)
        e[k] = 1.0
        d = e.reshape((r, c), order="F")
        if getattr(var, "symmetric", False):
            d = (d + d.T) / 2
        yield d


def _step(scale_value, h):
    if h is not None:
        return h
    return 1e-4 * max(1.0, float(np.max(np.abs(scale_value))) if np.size(scale_value) else 1.0)


def directional_derivative(func, x0: np.ndarray, d: np.ndarray, h: float, shrink: int = 6) -> np.ndarray:
    """d/dt func(x0 + t d) at 0: central differences with one Richardson step (error O(h^4)).

    The step is cut by 4 until two successive estimates agree (to 1e-9, relative), so that fast
    oscillation (sin(1000 x)) does not pass for a derivative; the best agreeing estimate is kept."""
    def central(step):
        return (func(x0 + step * d) - func(x0 - step * d)) / (2 * step)

    def richardson(step):
        return (4 * central(step / 2) - central(step)) / 3

    prev = richardson(h)
    best, best_gap = prev, np.inf
    for _ in range(shrink):
        h /= 4
        cur = richardson(h)
        with np.errstate(all="ignore"):
            gap = float(np.max(np.abs(cur - prev), initial=0.0)) / max(1.0, float(np.max(np.abs(cur), initial=0.0)))
        if not np.isfinite(gap):
            gap = np.inf
        if gap < best_gap:
            best, best_gap = prev, gap
        if gap < 1e-9:
            break
        prev = cur
    return best


def numeric_jacobian_of(func, var, values: dict, sizes: dict, h=None) -> np.ndarray:
    """Jacobian of vec(func(values)) against vec(values[var.name]) (J P for symmetric var)."""
    x0 = np.asarray(values[var.name], dtype=float).reshape(shape_of(var, sizes), order="F")
    h = _step(x0, h)

    def at(x):
        env = dict(values)
        env[var.name] = x
        return np.asarray(func(env), dtype=float).reshape(-1, order="F")

    cols = [directional_derivative(at, x0, d, h) for d in unit_directions(var, sizes)]
    return np.column_stack(cols)


def numeric_jacobian(derivation, values: dict, sizes: dict, h=None) -> np.ndarray:
    """Central differences of vec(f) against vec(x): numel(f) x numel(x), column-major vec.
    For a symmetric x the columns are derivatives along symmetric directions: the result is J P."""
    f = derivation.expression
    return numeric_jacobian_of(lambda env: evaluate(f, env, sizes), derivation.x, values, sizes, h)


def numeric_gradient(derivation, values: dict, sizes: dict, h=None) -> np.ndarray:
    """The gradient of a scalar f, shaped like x (sym(G) for a symmetric x)."""
    J = numeric_jacobian(derivation, values, sizes, h)
    return J.reshape(shape_of(derivation.x, sizes), order="F")


def numeric_hessian(derivation, values: dict, sizes: dict, h=None, gradient=None) -> np.ndarray:
    """The Hessian matrix of a one-variable derivation (numel x by numel x, P H P for a symmetric x);
    see ``numeric_hessian_block``."""
    x = derivation.x
    return numeric_hessian_block(derivation.expression, x, x, values, sizes, h, gradient)


def numeric_hessian_block(f: E.Expr, x, y, values: dict, sizes: dict, h=None, gradient=None) -> np.ndarray:
    """The Hessian block H[x, y] (numel x by numel y; the derivatives of the gradient in x along the
    directions of y, P H P for symmetric variables).  x and y may be the same variable.

    With ``gradient`` (an expression for the gradient in x, trusted): finite differences of it
    along y.  Otherwise mixed second differences of f, with one Richardson step."""
    if gradient is not None:
        return numeric_jacobian_of(lambda env: evaluate(gradient, env, sizes), y, values, sizes, h)
    x0 = np.asarray(values[x.name], dtype=float).reshape(shape_of(x, sizes), order="F")
    y0 = np.asarray(values[y.name], dtype=float).reshape(shape_of(y, sizes), order="F")
    h = 1e-3 * max(1.0, float(np.max(np.abs(x0))), float(np.max(np.abs(y0)))) if h is None else h
    dirs_x, dirs_y = list(unit_directions(x, sizes)), list(unit_directions(y, sizes))

    def fat(a, b, s, t):
        env = dict(values)
        env[x.name] = x0 + s * a
        env[y.name] = np.asarray(env[y.name], dtype=float).reshape(y0.shape, order="F") + t * b
        return float(evaluate(f, env, sizes)[0, 0])

    def second(a, b, step):
        return (fat(a, b, step, step) - fat(a, b, step, -step) - fat(a, b, -step, step)
                + fat(a, b, -step, -step)) / (4 * step * step)

    same = x.name == y.name   # a diagonal block is symmetric: half the entries suffice
    H = np.zeros((len(dirs_x), len(dirs_y)))
    for i, a in enumerate(dirs_x):
        for j in range(i if same else 0, len(dirs_y)):
            b = dirs_y[j]
            H[i, j] = (4 * second(a, b, h / 2) - second(a, b, h)) / 3
            if same:
                H[j, i] = H[i, j]
    return H
