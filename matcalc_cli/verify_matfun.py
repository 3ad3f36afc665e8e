"""``--verify`` for programs with matrix functions (expm, logm, sqrtm): numbers at high precision.

The entries of expm(X) of a 3 x 3 matrix of symbols have no closed form SymPy can differentiate, so
the entry-by-entry oracle of ``verify`` cannot be used as it is.  Instead every variable gets a
random rational value (square matrices near 2I, so that logm and sqrtm are defined), every quantity
is computed with mpmath at ``DIGITS`` significant digits (its expm, logm and sqrtm; the Frechet
derivatives in the results through the block-matrix identity of Higham and Relton), and f is
differentiated by central differences with steps so small that their error (about h^2) is far below
the tolerance, while the working precision keeps the rounding error (about 10^-DIGITS / h) as small:

- differential f'(x)[dx]: the derivative of f along dx;
- gradient and Jacobian: entry by entry, the derivative of f along each entry's symbol (arranged as
  ``verify.Expected`` arranges SymPy's derivatives, so symmetric variables are treated alike);
- second differential f''(x)[dx, dx2]: the second difference of f along dx and dx2;
- Hessian matrix: u' H v against the second difference of f along the directions u and v stand for,
  for random u and v (a wrong H differs along random directions with probability 1).

A result agrees when it matches to ``TOLERANCE_FIRST`` (first derivatives) or ``TOLERANCE_SECOND``
(second ones) relative to max(1, |value|): some twenty orders of magnitude above the numerical error
of the differences and below any wrong formula's error.
"""

from __future__ import annotations

import random
import time

import mpmath
import sympy as sp

from . import expr as E
from . import verify as V

DIGITS = 50
STEP_FIRST = sp.Rational(1, 10 ** 20)
STEP_SECOND = sp.Rational(1, 10 ** 12)
TOLERANCE_FIRST = sp.Float("1e-20", DIGITS)
TOLERANCE_SECOND = sp.Float("1e-12", DIGITS)
POINTS = 2
HESSIAN_PAIRS = 2


def has_matrix_functions(derivation) -> bool:
    roots = [derivation.expression] + [r.expr for r in derivation.results.values()]
    return any(isinstance(n, (E.MatFun, E.Frechet, E.FrechetMatrix)) for n in E.walk(*roots))


# --- mpmath values of the matrix functions, for SympyConverter at a point ----------------------------

def _to_mp(M: sp.Matrix) -> mpmath.matrix:
    if M.free_symbols:
        raise NotImplementedError("a matrix function of symbols: --verify compares matrix functions numerically")
    out = mpmath.matrix(M.rows, M.cols)
    for i in range(M.rows):
        for j in range(M.cols):
            v = sp.N(M[i, j], DIGITS)
            if not v.is_real:
                raise ValueError("a matrix function of a complex value")
            out[i, j] = mpmath.mpf(sp.Float(v, DIGITS)._mpf_)
    return out


def _to_sympy(A: mpmath.matrix) -> sp.Matrix:
    return sp.Matrix(A.rows, A.cols, lambda i, j: sp.Float(mpmath.re(A[i, j]), DIGITS))


def _mp_function(fn: str, A: mpmath.matrix) -> mpmath.matrix:
    if fn == "expm":
        return mpmath.expm(A)
    if fn == "sqrtm":
        return mpmath.sqrtm(A)
    return mpmath.logm(A)


def _derivative(fn: str, x, m: int):
    """f^(m)(x) for a scalar x."""
    if fn == "expm":
        return mpmath.exp(x)
    if fn == "logm":
        return mpmath.log(x) if m == 0 else (-1) ** (m - 1) * mpmath.factorial(m - 1) / x ** m
    c = mpmath.mpf(1)
    for i in range(m):
        c *= mpmath.mpf(1) / 2 - i
    return c * mpmath.sqrt(x) / x ** m


def _divided_difference(fn: str, lam, nodes: tuple, memo: dict):
    """f[lam_i for i in nodes], confluent where an index repeats (f^(m)/m! for m + 1 equal nodes)."""
    key = tuple(sorted(nodes))
    if key not in memo:
        first, last = key[0], key[-1]
        if first == last:
            memo[key] = _derivative(fn, lam[first], len(key) - 1) / mpmath.factorial(len(key) - 1)
        else:
            without_last, without_first = key[:-1], key[1:]
            memo[key] = (_divided_difference(fn, lam, without_first, memo)
                         - _divided_difference(fn, lam, without_last, memo)) / (lam[last] - lam[first])
    return memo[key]


MIN_EIGENVALUE_GAP = mpmath.mpf("1e-3")


def _mp_frechet_eig(fn: str, A: mpmath.matrix, directions):
    """L^(k)_f(A)[E1..Ek] by the Daleckii-Krein formula, for A = V diag(lam) V^-1 with distinct
    eigenvalues: V M V^-1 with M_ab = sum over orders s of the directions and paths a, i1, ..., b of
    f[lam_a, lam_i1, ..., lam_b] Es1~[a, i1] ... Esk~[i_(k-1), b], E~ = V^-1 E V.  None when the
    eigenvalues are too close for divided differences (then the block matrix is used)."""
    import itertools
    lam, V = mpmath.eig(A)
    n = A.rows
    if any(abs(lam[i] - lam[j]) < MIN_EIGENVALUE_GAP for i in range(n) for j in range(i)):
        return None
    Vinv = mpmath.inverse(V)
    tilde = [Vinv * D * V for D in directions]
    memo: dict = {}
    k = len(directions)
    M = mpmath.matrix(n, n)
    for a in range(n):
        for b in range(n):
            total = mpmath.mpc(0)
            for inner in itertools.product(range(n), repeat=max(k - 1, 0)):
                path = (a,) + inner + (b,) if k else (a,)
                if not k and a != b:
                    continue
                dd = _divided_difference(fn, lam, path, memo)
                for order in itertools.permutations(range(k)):
                    term = dd
                    for step, j in enumerate(order):
                        term *= tilde[j][path[step], path[step + 1]]
                    total += term
            M[a, b] = total
    return V * M * Vinv


def _mp_frechet(fn: str, A: mpmath.matrix, directions) -> mpmath.matrix:
    """L^(k)_f(A)[E1..Ek] (f(A) for k = 0): by the Daleckii-Krein formula when A has distinct
    eigenvalues, else the top-right block of f of the 2^k n block matrix (Higham and Relton)."""
    fast = _mp_frechet_eig(fn, A, directions)
    if fast is not None:
        return fast
    n = A.rows
    block = A
    for D in directions:
        m = block.rows
        big = mpmath.matrix(2 * m, 2 * m)
        for i in range(m):
            for j in range(m):
                big[i, j] = block[i, j]
                big[m + i, m + j] = block[i, j]
        for b in range(m // n):            # kron(I, D) in the top-right quarter
            for i in range(n):
                for j in range(n):
                    big[b * n + i, m + b * n + j] = D[i, j]
        block = big
    F = _mp_function(fn, block)
    out = mpmath.matrix(n, n)
    for i in range(n):
        for j in range(n):
            out[i, j] = F[i, F.cols - n + j]
    return out


def matfun_value(fn: str, M: sp.Matrix) -> sp.Matrix:
    with mpmath.workdps(DIGITS + 10):
        return _to_sympy(_mp_frechet(fn, _to_mp(M), []))


def inverse_value(M: sp.Matrix) -> sp.Matrix:
    """The inverse of a matrix of numbers, at the working precision (not by cofactors)."""
    with mpmath.workdps(DIGITS + 10):
        return _to_sympy(mpmath.inverse(_to_mp(M)))


def frechet_value(fn: str, M: sp.Matrix, directions) -> sp.Matrix:
    with mpmath.workdps(DIGITS + 10):
        return _to_sympy(_mp_frechet(fn, _to_mp(M), [_to_mp(D) for D in directions]))


def frechet_matrix_value(fn: str, M: sp.Matrix, directions) -> sp.Matrix:
    n = M.rows
    with mpmath.workdps(DIGITS + 10):
        A, Ds = _to_mp(M), [_to_mp(D) for D in directions]
        columns = []
        for q in range(n * n):
            unit = mpmath.matrix(n, n)
            unit[q % n, q // n] = 1
            L = _mp_frechet(fn, A, Ds + [unit])
            columns.append([L[i, j] for j in range(n) for i in range(n)])
        return sp.Matrix(n * n, n * n, lambda p, q: sp.Float(mpmath.re(columns[q][p]), DIGITS))


# --- the oracle ----------------------------------------------------------------------------------------

class _Oracle:
    """f at points near a base point, and its first and second directional derivatives there."""

    def __init__(self, derivation, inst: V.Instance, point: dict):
        self.f = derivation.expression
        self.inst = inst
        self.point = point

    def f_at(self, shift: dict) -> sp.Matrix:
        moved = {s: v + shift.get(s, 0) for s, v in self.point.items()}
        return V.SympyConverter(self.inst, moved).convert(self.f).applyfunc(lambda v: sp.N(v, DIGITS))

    @staticmethod
    def _combine(a: dict, b: dict, sa, sb) -> dict:
        out = {s: sa * v for s, v in a.items()}
        for s, v in b.items():
            out[s] = out.get(s, 0) + sb * v
        return out

    def first(self, direction: dict) -> sp.Matrix:
        h = STEP_FIRST
        step = {s: h * v for s, v in direction.items()}
        minus = {s: -v for s, v in step.items()}
        return (self.f_at(step) - self.f_at(minus)) / (2 * h)

    def second(self, a: dict, b: dict) -> sp.Expr:
        h = STEP_SECOND
        at = lambda sa, sb: V._scalar(self.f_at(self._combine(a, b, sa * h, sb * h)))
        return (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1)) / (4 * h * h)


def _same(a, b, tolerance) -> bool:
    a, b = sp.N(a, DIGITS), sp.N(b, DIGITS)
    if not (a.is_number and b.is_number) or a.has(sp.nan, sp.zoo, sp.oo, -sp.oo) \
            or b.has(sp.nan, sp.zoo, sp.oo, -sp.oo):
        return False
    return bool(abs(a - b) <= tolerance * max(1, abs(a), abs(b)))


def _random_rational(rng, low, high, denominator=64):
    return sp.Rational(rng.randint(int(low * denominator), int(high * denominator)), denominator)


def _random_point(derivation, inst, rng) -> dict:
    """Rational values: square matrices near 2I (eigenvalues in the right half plane, where logm and
    sqrtm are defined and smooth), other entries in [-1, 1] away from 0, scalars in [0.5, 1.5]."""
    point = {}
    for (name, diff), var in V._all_vars(derivation).items():
        M = inst.matrix(var)
        square = M.rows == M.cols and M.rows > 1
        for i in range(M.rows):
            for j in range(M.cols):
                s = M[i, j]
                if s in point:
                    continue
                if diff:
                    point[s] = _random_rational(rng, -1, 1) or sp.Rational(1, 3)
                elif M.shape == (1, 1):
                    point[s] = _random_rational(rng, 0.5, 1.5)
                elif square and i == j:
                    point[s] = 2 + _random_rational(rng, 0, 0.5)
                elif square:
                    point[s] = _random_rational(rng, -1, 1) / M.rows
                else:
                    point[s] = _random_rational(rng, 0.2, 1) * rng.choice((-1, 1))
    return point


def verify_high_precision(derivation, n: int = 3, seed: int = 0, budget: float = V.SYMBOLIC_BUDGET):
    """A ``verify.VerifyReport`` for a derivation with matrix functions: every result against the
    high-precision differences of f at ``POINTS`` random points (the second only while the time
    spent is under ``budget`` seconds)."""
    start = time.monotonic()
    inst = V.Instance(n)
    for var in (derivation.x, derivation.dx, derivation.dx2):
        inst.matrix(var)
    for var in V._all_vars(derivation).values():
        inst.matrix(var)
    X, dX, dX2 = (inst.matrix(v) for v in (derivation.x, derivation.dx, derivation.dx2))
    coords = V.Expected(sp.zeros(1, 1), X, dX, dX2, derivation.x.symmetric).coords   # (symbol, c_q)
    # a differential dX moves each distinct symbol of X by the matching entry of dX
    along = lambda D, point: {s: point[ds] for s, ds in zip(V.vec(X), V.vec(D))}
    rng = random.Random(seed)
    checks = {name: V.ResultCheck(name, True, method="high precision", points=0)
              for name in V.ORDER if name in derivation.results}
    for k in range(POINTS):
        if k and time.monotonic() - start > budget:
            break
        point = _valid_point(derivation, inst, rng)
        oracle = _Oracle(derivation, inst, point)
        partials: dict = {}

        def partial(s):
            if s not in partials:
                partials[s] = oracle.first({s: 1})
            return partials[s]

        for name, check in checks.items():
            if not check.equal:
                continue
            check.points += 1
            result = derivation.results[name].expr
            try:
                value = V.SympyConverter(inst, point).convert(result)
                _compare_one(name, check, value, derivation, oracle, partial, coords, along, point, dX, dX2,
                             rng)
            except (ValueError, TypeError, NotImplementedError, ZeroDivisionError) as err:
                check.equal, check.problem = False, f"could not be checked: {err}"
    report = V.VerifyReport(n, [checks[name] for name in V.ORDER if name in checks])
    report.seconds = time.monotonic() - start
    return report


def _valid_point(derivation, inst, rng) -> dict:
    for _ in range(20):
        point = _random_point(derivation, inst, rng)
        try:
            F = V.SympyConverter(inst, point).convert(derivation.expression)
        except (ValueError, ZeroDivisionError, NotImplementedError):
            continue
        if all(sp.N(v, 15).is_real for v in F):
            return point
    return point


def _differ(check, position, a, b, what=None):
    check.equal = False
    check.position = position
    check.matcalc_entry, check.sympy_entry = V._short(sp.N(a, 20)), V._short(sp.N(b, 20))
    where = what or f"[{position[0]}, {position[1]}]"
    check.problem = (f"{where}: {check.matcalc_entry} (matcalc) vs {check.sympy_entry} "
                     f"(finite differences at {DIGITS} digits)")


def _compare_one(name, check, value, derivation, oracle, partial, coords, along, point, dX, dX2, rng):
    layout = derivation.layout
    if name == "differential":
        want = oracle.first(along(dX, point))
        _compare_matrices(check, value, want, TOLERANCE_FIRST)
    elif name == "gradient":
        r, c = value.shape
        want = sp.Matrix(r, c, lambda i, j: coords[i + j * r][1] * V._scalar(partial(coords[i + j * r][0])))
        _compare_matrices(check, value, want, TOLERANCE_FIRST)
    elif name == "jacobian":
        columns = [c * V.vec(partial(s)) for s, c in coords]
        J = sp.Matrix.hstack(*columns)
        _compare_matrices(check, value, J.T if layout == "denominator" else J, TOLERANCE_FIRST)
    elif name == "hessian_bilinear":
        want = oracle.second(along(dX, point), along(dX2, point))
        _compare_matrices(check, value, sp.Matrix([[want]]), TOLERANCE_SECOND)
    elif name == "hessian":
        for _ in range(HESSIAN_PAIRS):
            u = [_random_rational(rng, -1, 1) for _ in coords]
            v = [_random_rational(rng, -1, 1) for _ in coords]
            got = (sp.Matrix([u]) * value * sp.Matrix(v))[0, 0]
            # u' H v = sum_pq u_p v_q c_p c_q d2f/ds_p ds_q: the second derivative along U and V
            U, W = {}, {}
            for (s, c), up, vq in zip(coords, u, v):
                U[s] = U.get(s, 0) + c * up
                W[s] = W.get(s, 0) + c * vq
            want = oracle.second(U, W)
            if not _same(got, want, TOLERANCE_SECOND):
                _differ(check, None, got, want, "u' H v for random u, v")
                return


def _compare_matrices(check, got: sp.Matrix, want: sp.Matrix, tolerance):
    if got.shape != want.shape:
        check.equal = False
        check.problem = f"shape {got.rows}x{got.cols} (matcalc) vs {want.rows}x{want.cols} (finite differences)"
        return
    check.entries = got.rows * got.cols
    for i in range(got.rows):
        for j in range(got.cols):
            if not _same(got[i, j], want[i, j], tolerance):
                _differ(check, (i, j), got[i, j], want[i, j])
                return
