"""The SymPy oracle behind ``--verify``: check every result entry by entry, as the reference text does.

The reference text checks its matrix-calculus identities "by components": it declares explicit
3x3 matrices of real symbols, differentiates entry by entry with SymPy and compares with the
formula.  ``verify_derivation`` does the same for a whole derivation:

1. every dimension symbol (n, m, ...) is set to the integer N, so ``m*n`` becomes N*N;
2. every variable becomes an explicit SymPy matrix of real symbols named as people write them
   (``A_11``, ``A_12``, ..., ``x_1``, ``c``; ``A_1_10`` once an index reaches 10); a symmetric
   variable uses one symbol for A[i, j] and A[j, i] (``S_12`` is both S[0, 1] and S[1, 0]);
   differentials are variables too (``dA_11``, ``dA2_11``);
3. the IR of f and of each result is converted to explicit matrices (``to_sympy``: one method
   per IR node kind);
4. f is differentiated entry by entry (``sympy.diff``) and the derivative is arranged the way each
   result is defined (see ``Expected``), then compared entry by entry with the result.

Comparison is fast first, symbolic second: both sides are evaluated at a random rational point
(exactly, when the entries are rational functions; with 30 digits otherwise), which finds almost
every wrong result at once and gives a counterexample; entries that agree there are then proven
equal symbolically (``cancel``, which treats exp(...), sqrt(...) etc. as atoms, then ``simplify``)
within a time budget.  Entries that symbolic simplification cannot decide in time are compared at
several more random points, and the report says so.

Elementwise functions with kinks (abs, sign, relu, step) are differentiated away from their kinks:
the random points avoid zero.  Index positions in messages are 0-based ``[row, col]``, as in
NumPy; symbol names are 1-based, as in the reference text.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from fractions import Fraction

import sympy as sp
from sympy.matrices.expressions.kronecker import matrix_kronecker_product
from sympy.matrices.utilities import dotprodsimp

from . import budget as limits
from . import expr as E
from .dims import Dim

# the order results are checked and reported in (the order of every output format)
ORDER = ("differential", "gradient", "jacobian", "hessian_bilinear", "hessian")

SYMBOLIC_BUDGET = 2.0        # seconds for symbolic simplification, for the whole derivation
EXTRA_POINTS = 5             # random points for entries symbolic simplification did not decide
MAX_SYMBOLIC_SIZE = 20000    # differences with more nodes go straight to the random points
SIMPLIFY_SIZE = 400          # simplify() only what cancel() leaves that is smaller than this
DIGITS = 30                  # working precision for entries that are not rational functions


# ---------------------------------------------------------------------------------------------
# Explicit matrices of symbols
# ---------------------------------------------------------------------------------------------

class Instance:
    """The explicit N x N world: dimension symbols set to ``n``, variables as symbol matrices."""

    def __init__(self, n: int = 3):
        if n < 1:
            raise ValueError("the dimension size must be positive")
        self.n = n
        self._matrices: dict = {}
        self._names: set = set()

    def dim(self, d) -> int:
        d = Dim.of(d)
        return d.evaluate({s: self.n for s in d.symbols})

    def shape(self, e: E.Expr) -> tuple:
        return self.dim(e.rows), self.dim(e.cols)

    def matrix(self, var: E.Var) -> sp.Matrix:
        """The explicit matrix of ``var`` (the same object every time it is asked for)."""
        key = (var.name, var.diff)
        if key not in self._matrices:
            self._matrices[key] = self._build(var)
        return self._matrices[key]

    def _build(self, var: E.Var) -> sp.Matrix:
        r, c = self.shape(var)
        vector = var.cols == 1 and var.rows != 1
        sep = "_" if max(r, c) >= 10 else ""
        made: dict = {}

        def symbol(i, j):
            if var.symmetric:
                i, j = min(i, j), max(i, j)
            if (i, j) not in made:
                if r == 1 and c == 1:
                    name = var.name
                elif vector:
                    name = f"{var.name}_{i + 1}"
                else:
                    name = f"{var.name}_{i + 1}{sep}{j + 1}"
                while name in self._names:  # never let two entries share a symbol by accident
                    name += "'"
                self._names.add(name)
                made[(i, j)] = sp.Symbol(name, real=True)
            return made[(i, j)]

        return sp.Matrix(r, c, lambda i, j: symbol(i, j))


def vec(M: sp.Matrix) -> sp.Matrix:
    """Column-major vec, as in the reference text: vec(A) stacks the columns of A."""
    return sp.Matrix([M[i, j] for j in range(M.cols) for i in range(M.rows)])


def commutation_matrix(m: int, n: int) -> sp.Matrix:
    """K(m, n) with K vec(X) = vec(X') for X m x n: X[i, j] sits at i + j m in vec(X), j + i n in vec(X')."""
    K = sp.zeros(m * n, m * n)
    for i in range(m):
        for j in range(n):
            K[j + i * n, i + j * m] = 1
    return K


def _scalar(M: sp.Matrix):
    if M.shape != (1, 1):
        raise ValueError(f"expected a 1x1 value, got {M.rows}x{M.cols}")
    return M[0, 0]


def _times(a: sp.Matrix, b: sp.Matrix) -> sp.Matrix:
    """Matrix product; a 1x1 factor that does not conform acts as a scalar."""
    if a.cols == b.rows:
        return a * b
    if a.shape == (1, 1):
        return a[0, 0] * b
    if b.shape == (1, 1):
        return a * b[0, 0]
    raise ValueError(f"cannot multiply {a.rows}x{a.cols} by {b.rows}x{b.cols}")


def _broadcast(a: sp.Matrix, shape) -> sp.Matrix:
    if a.shape == tuple(shape):
        return a
    if a.shape == (1, 1):
        return sp.Matrix(shape[0], shape[1], lambda i, j: a[0, 0])
    raise ValueError(f"cannot use a {a.rows}x{a.cols} value as {shape[0]}x{shape[1]}")


ELEMENTWISE = {
    "exp": sp.exp, "log": sp.log, "sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "tanh": sp.tanh,
    "arcsin": sp.asin, "arccos": sp.acos, "arctan": sp.atan, "sqrt": sp.sqrt,
    "sigmoid": lambda v: 1 / (1 + sp.exp(-v)),
    "abs": sp.Abs, "sign": sp.sign,
    "relu": lambda v: sp.Max(0, v),
    "step": sp.Heaviside,
}


def _adj_derivative(X, dirs):
    ts = sp.symbols(f"_t0:{len(dirs)}")
    M = X + sum((t * D for t, D in zip(ts, dirs)), sp.zeros(*X.shape))
    A = sp.Matrix([[1]]) if M.shape == (1, 1) else M.adjugate(method="berkowitz")
    for t in ts:
        A = A.diff(t)
    return A.subs({t: 0 for t in ts})


class SympyConverter:
    """IR -> explicit SymPy matrix, one method per node kind (``_convert_<Kind>``).

    With ``point`` (symbol -> number) the variables' symbols are replaced by those numbers
    before anything is computed: the value of an expression at a point, cheaply (an inverse is
    then the inverse of a matrix of numbers, not a quotient of symbolic determinants)."""

    def __init__(self, instance: Instance, point: dict | None = None):
        self.instance = instance
        self.point = point
        self.memo: dict = {}

    def __call__(self, e: E.Expr) -> sp.Matrix:
        return self.convert(e)

    def convert(self, e: E.Expr) -> sp.Matrix:
        if e not in self.memo:
            method = getattr(self, "_convert_" + type(e).__name__, None)
            if method is None:
                raise NotImplementedError(f"no SymPy conversion for {type(e).__name__}")
            out = method(e)
            if not isinstance(out, sp.MatrixBase):   # nan from dividing by a determinant that is 0
                value = out
                out = sp.Matrix(*self.shape(e), lambda i, j: value)
            self.memo[e] = out
        return self.memo[e]

    def shape(self, e):
        return self.instance.shape(e)

    # leaves -------------------------------------------------------------------------------------
    def _convert_Var(self, e):
        M = self.instance.matrix(e)
        return M.xreplace(self.point) if self.point is not None else M

    def _convert_Num(self, e):
        v = e.value
        if isinstance(v, Fraction):
            return sp.Matrix([[sp.Rational(v.numerator, v.denominator)]])
        return sp.Matrix([[sp.Integer(v) if isinstance(v, int) else sp.Float(v, DIGITS)]])

    def _convert_Identity(self, e):
        return sp.eye(self.instance.dim(e.n))

    def _convert_Zero(self, e):
        return sp.zeros(*self.shape(e))

    def _convert_Ones(self, e):
        return sp.ones(*self.shape(e))

    def _convert_Commutation(self, e):
        return commutation_matrix(self.instance.dim(e.m), self.instance.dim(e.n))

    # n-ary --------------------------------------------------------------------------------------
    def _convert_Add(self, e):
        shape = self.shape(e)
        out = sp.zeros(*shape)
        for t in e.args:
            out += _broadcast(self.convert(t), shape)
        return out

    def _convert_Mul(self, e):
        parts = [self.convert(a) for a in e.args]
        coef = sp.Integer(1)
        matrix = None
        for p in parts:
            if p.shape == (1, 1) and (matrix is not None or p is not parts[-1]):
                coef *= p[0, 0]
            elif matrix is None:
                matrix = p
            else:
                matrix = _times(matrix, p)
        return coef * matrix if matrix is not None else sp.Matrix([[coef]])

    def _convert_MatMul(self, e):
        parts = [self.convert(a) for a in e.args]
        out = parts[0]
        for p in parts[1:]:
            out = _times(out, p)
        return out

    def _convert_Hadamard(self, e):
        shape = self.shape(e)
        out = sp.ones(*shape)
        for a in e.args:
            out = out.multiply_elementwise(_broadcast(self.convert(a), shape))
        return out

    # unary --------------------------------------------------------------------------------------
    def _convert_Transpose(self, e):
        return self.convert(e.arg).T

    def _convert_Inverse(self, e):
        M = self.convert(e.arg)
        if M.shape == (1, 1):
            return sp.Matrix([[1 / M[0, 0]]])
        if self.point is not None and not M.free_symbols and M.has(sp.Float):
            from .verify_matfun import inverse_value   # numbers from matrix functions: not by cofactors
            return inverse_value(M)
        # the adjugate formula keeps symbolic inverses compact (no pivoting on symbols)
        return M.adjugate(method="berkowitz") / M.det(method="berkowitz")

    def _convert_MatPow(self, e):
        M = self.convert(e.arg)
        out = M
        for _ in range(e.k - 1):  # plain products: Matrix.__pow__ simplifies as it goes, slowly
            out = _times(out, M)
        return out

    def _convert_Power(self, e):
        base, k = self.convert(e.base), _scalar(self.convert(e.exponent))
        return base.applyfunc(lambda v: v ** k)

    def _convert_Trace(self, e):
        return sp.Matrix([[self.convert(e.arg).trace()]])

    def _convert_Det(self, e):
        return sp.Matrix([[self.convert(e.arg).det(method="berkowitz")]])

    def _convert_LogDet(self, e):
        return sp.Matrix([[sp.log(self.convert(e.arg).det(method="berkowitz"))]])

    def _convert_Adj(self, e):
        M = self.convert(e.arg)
        if M.shape == (1, 1):
            return sp.Matrix([[1]])
        return M.adjugate(method="berkowitz")

    def _convert_AdjDiff(self, e):
        """d^k adj(X)[D1..Dk]: the mixed derivative of adj(X + t1 D1 + ... + tk Dk) at t = 0."""
        X, *dirs = [self.convert(a) for a in e.args]
        return _adj_derivative(X, dirs)

    def _convert_AdjJacobian(self, e):
        X, *dirs = [self.convert(a) for a in e.args]
        n = X.shape[0]
        columns = []
        for c in range(n):
            for r in range(n):
                unit = sp.zeros(n, n)
                unit[r, c] = 1
                columns.append(vec(_adj_derivative(X, dirs + [unit])))
        return sp.Matrix.hstack(*columns)

    def _convert_Diag(self, e):
        return sp.diag(*list(self.convert(e.arg)))

    def _convert_DiagPart(self, e):
        M = self.convert(e.arg)
        return sp.Matrix([M[i, i] for i in range(min(M.shape))])

    def _convert_Vec(self, e):
        return vec(self.convert(e.arg))

    def _convert_Reshape(self, e):
        v = vec(self.convert(e.arg))
        r, c = self.shape(e)
        return sp.Matrix(r, c, lambda i, j: v[i + j * r])

    def _convert_Sum(self, e):
        return sp.Matrix([[sp.Add(*self.convert(e.arg))]])

    def _convert_Norm1(self, e):
        return sp.Matrix([[sp.Add(*[sp.Abs(v) for v in self.convert(e.arg)])]])

    def _convert_Norm2(self, e):
        return sp.Matrix([[sp.sqrt(sp.Add(*[v ** 2 for v in self.convert(e.arg)]))]])

    def _convert_Kron(self, e):
        return matrix_kronecker_product(self.convert(e.a), self.convert(e.b))

    def _convert_Elementwise(self, e):
        fn = ELEMENTWISE[e.fn]
        return self.convert(e.arg).applyfunc(fn)

    # matrix functions have no closed form in the entries: numbers only, at a point (verify_matfun)
    def _convert_MatFun(self, e):
        from .verify_matfun import matfun_value
        return matfun_value(e.fn, self.convert(e.arg))

    def _convert_Frechet(self, e):
        from .verify_matfun import frechet_value
        return frechet_value(e.fn, self.convert(e.arg), [self.convert(d) for d in e.directions])

    def _convert_FrechetMatrix(self, e):
        from .verify_matfun import frechet_matrix_value
        return frechet_matrix_value(e.fn, self.convert(e.arg), [self.convert(d) for d in e.directions])


def to_sympy(e: E.Expr, instance: Instance, point: dict | None = None) -> sp.Matrix:
    """The explicit SymPy matrix of an IR expression (scalars are 1x1), at ``point`` if given."""
    with dotprodsimp(False):
        return SympyConverter(instance, point).convert(e)


# ---------------------------------------------------------------------------------------------
# What each result should be, from sympy.diff
# ---------------------------------------------------------------------------------------------

def _diff(e, s):
    """de/ds away from the kinks of abs, sign, relu and step: their DiracDelta terms are 0 there."""
    d = sp.diff(e, s)
    return d.replace(sp.DiracDelta, lambda *args: sp.S.Zero) if d.has(sp.DiracDelta) else d


class Expected:
    """The derivatives of f, entry by entry, arranged as matcalc defines each result.

    Coordinates.  Let q run over the entries of vec(X) (column-major) and s_q be the symbol at
    entry q.  For an ordinary variable the s_q are distinct and the derivative "along entry q" is
    D_q = d/ds_q.  For a symmetric variable S[i, j] and S[j, i] are one symbol s, the admissible
    directions are symmetric, and matcalc's results act through sym(E) = (E + E')/2:

    - the gradient is the symmetric G with <G, E> = f'(S)[E] for every symmetric E.  Take
      E = e_i e_i' (i = j): <G, E> = G_ii = df/ds_ii.  Take E = e_i e_j' + e_j e_i' (i != j),
      the direction that moves s_ij by 1: <G, E> = G_ij + G_ji = 2 G_ij = df/ds_ij.  So
      G_ii = df/ds_ii and G_ij = (1/2) df/ds_ij: off the diagonal the derivative against the
      shared symbol is twice the gradient entry;
    - the Jacobian is J_full P with P = (I + K)/2, so its column q is the derivative along
      sym(E_q): for q = (i, j) off the diagonal that direction moves s_ij by 1/2, so the column
      is (1/2) d vec(f)/ds_ij (the same for (i, j) and (j, i)), and d vec(f)/ds_ii on it;
    - the Hessian matrix is the Jacobian of vec(G), times P: entry ((i,j), (k,l)) is
      c_ij c_kl d2f/ds_ij ds_kl with c = 1 on the diagonal and 1/2 off it.

    So for both kinds of variable D_q = c_q d/ds_q, c_q = 1 except c_q = 1/2 off the diagonal of a symmetric
    variable.  The differential and the bilinear form need no such factor: with symmetric
    directions dS (shared symbols ds), d/dt f(S + t dS) = sum over distinct s of df/ds ds.
    """

    def __init__(self, F: sp.Matrix, X: sp.Matrix, dX: sp.Matrix, dX2: sp.Matrix, symmetric: bool):
        self.F, self.X, self.dX, self.dX2 = F, X, dX, dX2
        self.coords = []  # (symbol, factor c_q), in vec(X) order
        for j in range(X.cols):
            for i in range(X.rows):
                c = sp.Rational(1, 2) if symmetric and i != j else sp.Integer(1)
                self.coords.append((X[i, j], c))
        # the distinct symbols and their direction symbols, in first-appearance order
        self.pairs = []
        seen = set()
        for s, ds, ds2 in zip(vec(X), vec(dX), vec(dX2)):
            if s not in seen:
                seen.add(s)
                self.pairs.append((s, ds, ds2))
        self._vec_f = vec(F)
        self._partials: dict = {}

    def partial(self, p: int, s) -> sp.Expr:
        """d vec(F)_p / ds."""
        key = (p, s)
        if key not in self._partials:
            self._partials[key] = _diff(self._vec_f[p], s)
        return self._partials[key]

    def differential(self) -> sp.Matrix:
        r, c = self.F.shape
        return sp.Matrix(r, c, lambda i, j: sp.Add(*[self.partial(i + j * r, s) * ds
                                                     for s, ds, _ in self.pairs]))

    def gradient(self) -> sp.Matrix:
        r, c = self.X.shape
        return sp.Matrix(r, c, lambda i, j: self.coords[i + j * r][1] * self.partial(0, self.coords[i + j * r][0]))

    def jacobian(self, layout: str = "numerator") -> sp.Matrix:
        numel_f = self.F.rows * self.F.cols
        J = sp.Matrix(numel_f, len(self.coords), lambda p, q: self.coords[q][1] * self.partial(p, self.coords[q][0]))
        return J.T if layout == "denominator" else J

    def hessian_bilinear(self) -> sp.Matrix:
        first = _scalar(self.differential())
        return sp.Matrix([[sp.Add(*[_diff(first, t) * dt2 for t, _, dt2 in self.pairs])]])

    def hessian(self) -> sp.Matrix:
        k = len(self.coords)
        return sp.Matrix(k, k, lambda p, q: self.coords[p][1] * self.coords[q][1]
                         * _diff(self.partial(0, self.coords[p][0]), self.coords[q][0]))


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------

@dataclass
class ResultCheck:
    """How one result compared with SymPy.

    ``method`` is "symbolic" when every entry was proven equal symbolically (or a counterexample
    was found), "random points" when ``undecided`` entries were only compared at ``points``
    random points.  When not equal, ``position`` is the first differing entry (0-based
    [row, col]) and ``matcalc_entry`` / ``sympy_entry`` the two sides there; ``problem`` says what
    else went wrong (a shape mismatch)."""

    name: str
    equal: bool
    position: tuple | None = None
    matcalc_entry: str | None = None
    sympy_entry: str | None = None
    problem: str | None = None
    method: str = "symbolic"
    points: int = 1
    undecided: int = 0
    entries: int = 0
    undefined: int = 0      # entries where a side was undefined (a pole, log of 0) at every point

    @property
    def difference(self) -> str | None:
        """The first difference without the result's name: "[2, 1]: a (matcalc) vs b (sympy)"."""
        if self.problem:
            return self.problem
        if self.position is None:
            return None
        i, j = self.position
        return f"[{i}, {j}]: {self.matcalc_entry} (matcalc) vs {self.sympy_entry} (sympy)"

    @property
    def first_difference(self) -> str | None:
        """e.g. "gradient[1, 0]: 2*A_11*x_1 + ... (matcalc) vs ... (sympy)"; None when equal."""
        diff = self.difference
        if diff is None:
            return None
        return f"{self.name}{diff}" if diff.startswith("[") else f"{self.name}: {diff}"

    def to_dict(self) -> dict:
        return {"name": self.name, "equal": self.equal, "first_difference": self.first_difference,
                "position": list(self.position) if self.position else None,
                "method": self.method, "points": self.points, "undecided": self.undecided,
                "entries": self.entries, **({"undefined": self.undefined} if self.undefined else {})}


@dataclass
class VerifyReport:
    n: int
    results: list = field(default_factory=list)   # ResultCheck, in display order
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(r.equal for r in self.results)

    def __getitem__(self, name: str) -> ResultCheck:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def lines(self) -> list:
        out = []
        for r in self.results:
            head = f"verify {r.name} (n={self.n}): "
            if not r.equal:
                diff = r.difference or ""
                out.append(head + "NOT equal" + (f" at {diff}" if diff.startswith("[") else f": {diff}"))
            elif r.undefined:
                out.append(head + f"undefined at the sample points: {r.undefined} of {r.entries} entries "
                                  "of f or the result are not finite at every random point tried "
                                  "(a singular matrix or a value outside a function's domain at this "
                                  "size; try another N)")
            elif r.method == "symbolic":
                out.append(head + "equal")
            elif r.method == "high precision":
                out.append(head + f"equal at {r.points} random point{'s' if r.points != 1 else ''} "
                                  "(matrix functions: finite differences of f at 50 digits)")
            else:
                out.append(head + f"equal at {r.points} random points (symbolic simplification did not "
                                  f"decide {r.undecided} of {r.entries} entries)")
        return out

    def to_dict(self) -> dict:
        return {"n": self.n, "passed": self.passed, "results": [r.to_dict() for r in self.results]}


# ---------------------------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------------------------

def _size(e, limit: int) -> int:
    """The number of nodes of e, counted up to ``limit``."""
    count = 0
    for _ in sp.preorder_traversal(e):
        count += 1
        if count >= limit:
            break
    return count


def _short(x, limit: int = 160) -> str:
    if isinstance(x, sp.Expr) and _size(x, 200) < 200 and x.is_polynomial():
        x = sp.expand(x)
    text = str(x)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _number(v):
    """(value, exact) of a SymPy number; value None when it is not finite."""
    v = sp.sympify(v)
    if v.is_Rational:
        return v, True
    if v.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        return None, False
    try:
        v = sp.N(v, DIGITS)
    except (TypeError, ValueError, ZeroDivisionError):  # pragma: no cover - defensive
        return None, False
    if not v.is_number or v.has(sp.zoo, sp.nan) or v.is_finite is False:
        return None, False
    return v, False


def _same(a, b):
    """True / False when the numbers a and b are / are not equal; None when either is undefined.
    Exact for rationals; otherwise to DIGITS - 8 significant digits."""
    va, ea = _number(a)
    vb, eb = _number(b)
    if va is None or vb is None:
        return None
    if ea and eb:
        return va == vb
    tolerance = sp.Float(10, DIGITS) ** (-(DIGITS - 8))
    return bool(abs(sp.N(va - vb, DIGITS)) <= tolerance * max(1, abs(va), abs(vb)))


class _Points:
    """Random rational points, nonzero in every coordinate, at which f is finite and real.

    Three kinds are tried in turn: mixed signs, positive, small positive (for log, sqrt, arcsin).
    ``f_at(point)`` is the matrix of f's values at a point."""

    KINDS = ("mixed", "positive", "small")

    def __init__(self, symbols, f_at, seed: int = 0):
        self.symbols = sorted(symbols, key=lambda s: s.name)
        self.f_at = f_at
        self.rng = random.Random(seed)
        self.kind = None
        self.drawn: list = []   # the points handed out, in order

    def _draw(self, kind):
        point = {}
        for s in self.symbols:
            if kind == "small":
                v = sp.Rational(self.rng.randint(1, 9), self.rng.randint(30, 60))
            else:
                v = sp.Rational(self.rng.randint(1, 19), self.rng.randint(3, 11))
                if kind == "mixed" and self.rng.random() < 0.5:
                    v = -v
            point[s] = v
        return point

    def _valid(self, point) -> bool:
        try:
            values = self.f_at(point)
        except (ZeroDivisionError, ValueError):  # a singular matrix at this point
            return False
        for entry in values:
            v, _ = _number(entry)
            if v is None or v.has(sp.I) or v.is_real is False:
                return False
        return True

    def point(self, k: int) -> dict:
        """The k-th point (drawn on first use)."""
        while len(self.drawn) <= k:
            self.drawn.append(self._next())
        return self.drawn[k]

    def _next(self):
        kinds = [self.kind] if self.kind else self.KINDS
        for kind in kinds:
            for _ in range(8):
                point = self._draw(kind)
                if self._valid(point):
                    self.kind = kind
                    return point
        # nothing real and finite found: use a point anyway (complex values compare too)
        return self._draw(self.kind or "positive")


class _Side:
    """One side of a comparison: its symbolic matrix and its values at the k-th point (cached)."""

    def __init__(self, symbolic: sp.Matrix, at):
        self.symbolic = symbolic
        self._at = at
        self._values: dict = {}

    def value(self, k: int, point: dict, i: int, j: int):
        if k not in self._values:
            try:
                self._values[k] = self._at(point)
            except (ZeroDivisionError, ValueError):  # singular at this point
                self._values[k] = None
        values = self._values[k]
        return None if values is None else values[i, j]


def _is_rational_function(d) -> bool:
    return not d.atoms(sp.Function) and all(p.exp.is_Integer for p in d.atoms(sp.Pow))


def _proven_zero(d) -> bool | None:
    """True when d is identically zero, False when it is a nonzero rational function of the
    symbols, None when SymPy cannot decide.

    ``cancel`` decides rational functions exactly, and treats exp(...), sqrt(...), ... as
    further generators; ``simplify`` gets what that leaves, when it is small."""
    if d.has(sp.nan, sp.zoo, sp.oo, -sp.oo):
        return None   # undefined somewhere: decided (or not) at the random points
    for p in d.atoms(sp.Pow):
        if p.exp.is_negative and sp.expand(p.base) == 0:
            return None   # a denominator that is identically 0 (det of X - X' at odd N): undefined
    c = sp.cancel(d)
    if c == 0:
        return True
    if _is_rational_function(c):
        return False
    if _size(c, SIMPLIFY_SIZE) >= SIMPLIFY_SIZE:
        return None
    return True if sp.simplify(c) == 0 else None


def _compare(name, actual: _Side, expected: _Side, points: _Points, deadline: float) -> ResultCheck:
    A, B = actual.symbolic, expected.symbolic
    check = ResultCheck(name, True, entries=A.rows * A.cols)
    if A.shape != B.shape:
        check.equal = False
        check.problem = f"shape {A.rows}x{A.cols} (matcalc) vs {B.rows}x{B.cols} (sympy)"
        return check

    def differ(i, j):
        check.equal = False
        check.position, check.matcalc_entry, check.sympy_entry = (i, j), _short(A[i, j]), _short(B[i, j])
        return check

    def same_at(k, i, j):
        point = points.point(k)
        a, b = actual.value(k, point, i, j), expected.value(k, point, i, j)
        return None if a is None or b is None else _same(a, b)

    # 1. one random rational point: cheap, and a counterexample when the result is wrong
    todo, undefined = [], []
    defined = set()          # entries compared with both sides defined at some point
    for i in range(A.rows):
        for j in range(A.cols):
            limits.check()
            a, b = A[i, j], B[i, j]
            if a == b or (_size(a, 40) + _size(b, 40) < 40 and sp.expand(a - b) == 0):
                continue  # equal on sight
            k, same = 0, same_at(0, i, j)
            while same is None and k < 4:  # undefined there (a kink, a pole): another point
                k += 1
                same = same_at(k, i, j)
            if same is False:
                return differ(i, j)
            if same is None:
                undefined.append((i, j))   # a pole everywhere (inv of a singular matrix): no proof
                continue
            defined.add((i, j))
            todo.append((i, j))
    # 2. symbolic proof, within the time budget
    undecided = []
    for n_done, (i, j) in enumerate(todo):
        left = deadline - time.monotonic()
        d = A[i, j] - B[i, j]
        if left <= 0:
            undecided.extend(todo[n_done:])
            break
        if _size(d, MAX_SYMBOLIC_SIZE) >= MAX_SYMBOLIC_SIZE:
            undecided.append((i, j))
            continue
        try:
            with limits.soft_limit(left):
                proven = _proven_zero(d)
        except limits.SoftTimeout:
            undecided.extend(todo[n_done:])
            break
        if proven is False:
            return differ(i, j)
        if proven is None:
            undecided.append((i, j))
    # 3. what symbolic simplification did not decide: more random points
    if undecided:
        for i, j in undecided:
            for k in range(1, 1 + EXTRA_POINTS):
                limits.check()
                same = same_at(k, i, j)
                if same is False:
                    return differ(i, j)
                if same is not None:
                    defined.add((i, j))
        check.method = "random points"
        check.points = 1 + EXTRA_POINTS
        check.undecided = len(undecided)
    undefined += [ij for ij in undecided if ij not in defined]
    if undefined:
        check.method = "random points"
        check.points = 1 + EXTRA_POINTS
        check.undefined = len(undefined)
    return check


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------

def _all_vars(derivation):
    """Every Var in f and the results, by (name, diff), in order of first appearance."""
    found, seen = {}, set()
    stack = [derivation.expression] + [r.printed for r in derivation.results.values()]
    stack.reverse()  # popped from the end: f first
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, E.Var):
            found.setdefault((node.name, node.diff), node)
        stack.extend(reversed(node.children))
    return found


def verify_derivation(derivation, n: int = 3, *, seed: int = 0,
                      budget: float = SYMBOLIC_BUDGET) -> VerifyReport:
    """Check every result of ``derivation`` against SymPy with all dimensions set to ``n``.

    ``budget`` bounds the seconds spent on symbolic simplification (the random-point check,
    which finds wrong results, always runs in full); ``seed`` fixes the random points."""
    limits.check_verify_request(derivation, n)
    with dotprodsimp(False):
        from .verify_matfun import has_matrix_functions, verify_high_precision
        if has_matrix_functions(derivation):
            return verify_high_precision(derivation, n, seed, budget)
        return _verify(derivation, n, seed, budget)


def _verify(derivation, n, seed, budget) -> VerifyReport:
    start = time.monotonic()
    inst = Instance(n)
    # the variable and its directions first, then everything else, in order of appearance
    for var in (derivation.x, derivation.dx, derivation.dx2):
        inst.matrix(var)
    for var in _all_vars(derivation).values():
        inst.matrix(var)
    convert = SympyConverter(inst)
    F = convert(derivation.expression)
    X, dX, dX2 = inst.matrix(derivation.x), inst.matrix(derivation.dx), inst.matrix(derivation.dx2)
    expected = Expected(F, X, dX, dX2, derivation.x.symmetric)
    def gradient():
        G = expected.gradient()
        if derivation.results["gradient"].label.startswith("cookbook"):
            # the Matrix Cookbook's G + G' - I .* G of the unconstrained gradient, which is
            # 2 sym(G) - I .* sym(G) of the symmetric one
            G = 2 * G - sp.diag(*[G[i, i] for i in range(G.rows)])
        return G

    makers = {
        "differential": expected.differential,
        "gradient": gradient,
        "jacobian": lambda: expected.jacobian(derivation.layout),
        "hessian_bilinear": expected.hessian_bilinear,
        "hessian": expected.hessian,
    }
    symbols = set()
    for M in inst._matrices.values():
        symbols |= M.free_symbols
    points = _Points(symbols, lambda point: SympyConverter(inst, point).convert(derivation.expression), seed)
    deadline = start + budget
    report = VerifyReport(n)
    for name in ORDER:
        if name not in derivation.results:
            continue
        e = derivation.results[name].printed
        try:
            want = makers[name]()
            actual = _Side(convert(e), lambda point, e=e: SympyConverter(inst, point).convert(e))
            wanted = _Side(want, lambda point, want=want: want.xreplace(point))
            check = _compare(name, actual, wanted, points, deadline)
        except (ValueError, TypeError, NotImplementedError, ZeroDivisionError) as err:
            check = ResultCheck(name, False, problem=f"could not be checked: {err}")
        report.results.append(check)
    report.seconds = time.monotonic() - start
    return report
