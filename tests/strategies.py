"""Hypothesis strategies: random, well-shaped matcalc programs over the whole language.

``programs()`` draws a program as text: declarations, then one expression built top-down by
target shape.  ``_Builder.expr(shape, depth, need_x)`` picks a production valid for ``shape``
(sums, products, transposes, powers, every matrix function, every elementwise function,
constructors, kron / vec / reshape over product dimensions ...) and recurses on the operand
shapes that production needs.  One operand of every production carries ``need_x`` down, so the
variable we differentiate against always occurs.

Values must be valid at random points, so some operands come from restricted families:

- ``positive``: entries > 0 (exp(bounded), 1 + u.^2, 0.5 + sigmoid(u), ...), under log, sqrt,
  ./, /, fractional and variable powers;
- ``bounded`` (|entries| <= 1) under exp, and ``small`` (|entries| <= 0.5) under arcsin, arccos, tan;
- ``nonsingular`` square matrices (U'U + I, I + tanh(U)/10, diag(exp(u)), kron of such, ...)
  under inv, adj, det and negative matrix powers, and the ``posdet`` ones (det > 0) under logdet.

Sometimes a subexpression becomes a definition (``u1 = ...``) that later leaves may use again.
Dimensions are the symbols n, m, p (sizes ``SIZES``, all distinct) and products of two of them.

Hypothesis profiles are registered here: "ci" (the default: derandomized, the same examples every
run) and "long" (20x the examples, new ones each run), selected with the environment variable
MATCALC_HYPOTHESIS_PROFILE=ci|long.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from itertools import combinations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from matcalc_cli.numeric import PREFERRED_SIZES

# matcalc raises the recursion limit on first use (deep expressions); raise it before any test runs,
# so that Hypothesis does not see it change during a test
sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))

# --- profiles --------------------------------------------------------------------------------

EXAMPLES = {"ci": 1, "long": 20}  # multiplier of each test's base number of examples

# registered as matcalc-ci / matcalc-long, so that Hypothesis's own "ci" profile is left alone
_SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("matcalc-ci", deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=_SUPPRESS)
settings.register_profile("matcalc-long", deadline=None, derandomize=False, print_blob=True,
                          suppress_health_check=_SUPPRESS)

PROFILE = os.environ.get("MATCALC_HYPOTHESIS_PROFILE", "ci")
if PROFILE not in EXAMPLES:
    raise RuntimeError(f"MATCALC_HYPOTHESIS_PROFILE={PROFILE!r}: use one of {sorted(EXAMPLES)}")


def examples(base: int) -> int:
    """The number of examples for a test that runs ``base`` examples in the ci profile."""
    return base * EXAMPLES[PROFILE]


def profile_settings(base: int, **kw) -> settings:
    """Settings for a property test: the active profile with ``examples(base)`` examples."""
    return settings(settings.get_profile("matcalc-" + PROFILE), max_examples=examples(base), **kw)


# --- dimensions ------------------------------------------------------------------------------
# A dimension is a sorted tuple of symbols: () is 1, ("n",) is n, ("m", "n") is m*n.

BASE = ("n", "m", "p")
SIZES = {s: PREFERRED_SIZES[s] for s in BASE}   # the sizes the numeric checks give them (3, 4, 5)
ONE: tuple = ()
MAX_NUMEL = 80          # no intermediate shape larger than this many entries


def dim_text(d: tuple) -> str:
    return "*".join(d) if d else "1"


def dim_mul(a: tuple, b: tuple) -> tuple:
    return tuple(sorted(a + b))


def dim_size(d: tuple) -> int:
    out = 1
    for s in d:
        out *= SIZES[s]
    return out


def numel(shape) -> int:
    return dim_size(shape[0]) * dim_size(shape[1])


def splits(d: tuple):
    """All (a, b) with a * b = d, as multisets of symbols."""
    out = set()
    for k in range(len(d) + 1):
        for idx in combinations(range(len(d)), k):
            a = tuple(d[i] for i in idx)
            b = tuple(d[i] for i in range(len(d)) if i not in idx)
            out.add((a, b))
    return sorted(out)


def shape_text(shape) -> str:
    return f"{dim_text(shape[0])} x {dim_text(shape[1])}"


# --- generated programs ----------------------------------------------------------------------

@dataclass(frozen=True)
class Program:
    source: str            # declarations and the expression, one line
    expression: str
    wrt: str
    wrt_kind: str          # scalar | vector | row | matrix | square | symmetric
    shape: tuple           # the output shape, as dimension tuples
    depth: int

    @property
    def is_scalar(self) -> bool:
        return self.shape == (ONE, ONE)

    def __str__(self) -> str:
        return f"{self.source}   [wrt {self.wrt}]"


X_KINDS = ("vector", "vector", "vector", "matrix", "matrix", "square", "square", "symmetric", "symmetric",
           "scalar", "row")
NUMBERS = ("2", "3", "0.5", "1.5", "0.25", "0.1")
POSITIVE_NUMBERS = ("2", "0.5", "1.5", "3")


class _Builder:
    """Draws one expression; collects the declarations of the names it uses."""

    def __init__(self, draw, x_name: str, x_kind: str, x_shape, budget: int):
        self.draw = draw
        self.x_name, self.x_kind, self.x_shape = x_name, x_kind, x_shape
        self.budget = budget
        self.decls: dict = {}          # name -> declaration type text
        self.defs: dict = {}           # name -> expression text, for 'name = expr' definitions
        self.defs_by_shape: dict = {}  # shape -> [defined names]
        self.by_shape: dict = {}       # (shape, symmetric) -> [names]
        self.counters: dict = {}
        self._declare(x_name, x_kind, x_shape)

    # choices ----------------------------------------------------------------------------------
    def pick(self, options):
        return options[self.draw(st.integers(0, len(options) - 1))]

    def weighted(self, options):
        """options: [(weight, value)]; shrinks towards the first."""
        total = sum(w for w, _ in options)
        k = self.draw(st.integers(0, total - 1))
        for w, v in options:
            if k < w:
                return v
            k -= w
        raise AssertionError  # pragma: no cover

    def coin(self, p_true_in_4: int = 2) -> bool:
        return self.draw(st.integers(0, 3)) < p_true_in_4

    def spend(self) -> bool:
        """Use one node of the budget; False when the tree is big enough."""
        if self.budget <= 0:
            return False
        self.budget -= 1
        return True

    def carrier(self, k: int, need_x: bool):
        """Which of k operands carries the variable: a list of k flags."""
        if not need_x:
            return [False] * k
        i = self.draw(st.integers(0, k - 1))
        return [j == i for j in range(k)]

    def inner_dim(self, *shapes_with_slot):
        """A dimension for the slot marked None in each of the given shapes, keeping sizes small."""
        options = [(3, ("n",)), (3, ("m",)), (3, ("p",)), (1, ONE), (1, ("m", "n")), (1, ("n", "p"))]
        ok = []
        for w, d in options:
            fits = all(numel(tuple(d if s is None else s for s in sh)) <= MAX_NUMEL for sh in shapes_with_slot)
            if fits:
                ok.append((w, d))
        return self.weighted(ok)

    # names ------------------------------------------------------------------------------------
    def _declare(self, name, kind, shape):
        r, c = shape
        text = {"scalar": "scalar", "vector": f"vector({dim_text(r)})",
                "symmetric": f"symmetric({dim_text(r)})"}.get(kind, f"matrix({dim_text(r)}, {dim_text(c)})")
        self.decls[name] = text
        self.by_shape.setdefault((shape, kind == "symmetric"), []).append(name)

    def _fresh(self, prefix):
        self.counters[prefix] = self.counters.get(prefix, 0) + 1
        return f"{prefix}{self.counters[prefix]}"

    def const(self, shape) -> str:
        """A named constant (not the variable) of the given shape; reuses names half the time."""
        r, c = shape
        if r == ONE and c == ONE:
            kind, prefix = "scalar", "c"
        elif c == ONE:
            kind, prefix = "vector", "v"
        elif r == ONE:
            return self.const((c, ONE)) + "'"
        elif r == c and len(r) == 1 and self.coin(1):
            kind, prefix = "symmetric", "P"
        else:
            kind, prefix = "matrix", "A"
        existing = [n for n in self.by_shape.get((shape, kind == "symmetric"), []) if n != self.x_name]
        if existing and self.coin():
            return self.pick(existing)
        if kind == "scalar" and "lambda" not in self.decls and self.coin(1):
            name = "lambda"
        else:
            name = self._fresh(prefix)
        self._declare(name, kind, shape)
        return name

    # the variable, adapted to any shape --------------------------------------------------------
    def x_of_shape(self, shape) -> str:
        x, (xr, xc) = self.x_name, self.x_shape
        r, c = shape
        options = []
        if shape == self.x_shape:
            options.append((6, lambda: x))
        if shape == (xc, xr) and xr != xc:
            options.append((4, lambda: f"{x}'"))
        if self.x_kind in ("square", "symmetric") and shape == self.x_shape:
            options.append((1, lambda: f"{x}'"))
        if r == ONE and c == ONE:
            if xr == xc and xr != ONE:
                options.append((2, lambda: f"tr({x})"))
            if (xr, xc) != (ONE, ONE):
                options.append((2, lambda: f"sum({x})"))
                options.append((1, lambda: f"norm2({x})"))
        if c == ONE and r == dim_mul(xr, xc) and r != ONE and (xr, xc) != (r, ONE):
            options.append((2, lambda: f"vec({x})"))
        if numel(shape) == numel(self.x_shape) and dim_mul(r, c) == dim_mul(xr, xc) and r != ONE \
                and (xr, xc) != (ONE, ONE) and shape != self.x_shape:
            options.append((1, lambda: f"reshape({x}, {dim_text(r)}, {dim_text(c)})"))
        if (xr, xc) == (ONE, ONE) and shape != (ONE, ONE):
            options.append((3, lambda: f"({x} * {self.const(shape)})"))
            options.append((1, lambda: f"({x} + {self.const(shape)})"))
        if r == c and xc == ONE and r == xr and r != ONE:
            options.append((1, lambda: f"diag({x})"))

        def sandwich():
            parts = []
            if r != xr or self.coin(1):
                parts.append(self.const((r, xr)))
            parts.append(x)
            if c != xc or self.coin(1):
                parts.append(self.const((xc, c)))
            return "(" + " * ".join(parts) + ")" if len(parts) > 1 else parts[0]

        if (xr, xc) != (ONE, ONE) and numel((r, xr)) <= MAX_NUMEL and numel((xc, c)) <= MAX_NUMEL:
            options.append((3, sandwich))
        if not options:
            return f"({x} * {self.const(shape)})" if (xr, xc) == (ONE, ONE) else sandwich()
        return self.weighted(options)()

    def define(self, shape, depth, need_x) -> str:
        """A definition 'u1 = <expr>' of the given shape; its name stands for it, here and later."""
        text = self.expr(shape, depth, need_x)
        name = self._fresh("u")
        self.defs[name] = text
        self.defs_by_shape.setdefault(shape, []).append(name)
        return name

    # leaves -----------------------------------------------------------------------------------
    def leaf(self, shape, need_x: bool) -> str:
        if need_x:
            return self.x_of_shape(shape)
        r, c = shape
        options = [(6, lambda: self.const(shape))]
        if self.defs_by_shape.get(shape):
            options.append((3, lambda: self.pick(self.defs_by_shape[shape])))
        if shape == self.x_shape or shape == (self.x_shape[1], self.x_shape[0]):
            options.append((3, lambda: self.x_of_shape(shape)))
        if r == ONE and c == ONE:
            options.append((2, lambda: self.pick(NUMBERS)))
        else:
            options.append((1, lambda: f"ones({dim_text(r)})" if c == ONE else
                            f"ones({dim_text(r)}, {dim_text(c)})"))
            options.append((1, lambda: f"(2 * ones({dim_text(r)}, {dim_text(c)}))"))
        if r == c and r != ONE:
            options.append((2, lambda: f"I({dim_text(r)})"))
            if len(r) == 2:
                options.append((1, lambda: f"commutation({r[0]}, {r[1]})"))
        return self.weighted(options)()

    # generic expressions -------------------------------------------------------------------------
    def expr(self, shape, depth: int, need_x: bool = False) -> str:
        if depth <= 0 or not self.spend():
            return self.leaf(shape, need_x)
        r, c = shape
        scalar = r == ONE and c == ONE
        square = r == c and not scalar
        d = depth - 1
        P = []  # (weight, production)

        P.append((3, lambda: self.leaf(shape, need_x)))
        P.append((1, lambda: self.define(shape, d, need_x)))
        P.append((3, lambda: self._add(shape, d, need_x)))
        P.append((1, lambda: self._neg(shape, d, need_x)))
        P.append((2, lambda: self._scale(shape, d, need_x)))
        P.append((1, lambda: self._divide(shape, d, need_x)))
        P.append((4, lambda: self._matmul(shape, d, need_x)))
        P.append((2, lambda: self._hadamard(shape, d, need_x)))
        P.append((5, lambda: self._elementwise(shape, d, need_x)))
        P.append((1, lambda: self._epower(shape, d, need_x)))
        if not scalar:
            P.append((1, lambda: self._broadcast(shape, d, need_x)))
            P.append((2, lambda: self._transpose(shape, d, need_x)))
            if numel(shape) <= MAX_NUMEL:
                P.append((1, lambda: self._reshape(shape, d, need_x)))
        if square:
            P.append((1, lambda: self._matpow(shape, d, need_x)))
            P.append((1, lambda: self._inverse(shape, d, need_x)))
            P.append((1, lambda: self._adj(shape, d, need_x)))
            if len(r) == 1:
                P.append((1, lambda: f"diag({self.expr((r, ONE), d, need_x)})"))
                P.append((1, lambda: f"diag({self.expr((ONE, r), d, need_x)})"))
        if c == ONE and r != ONE:
            P.append((1, lambda: f"diag({self.expr((r, r), d, need_x)})"))
            P.append((1, lambda: self._vec(shape, d, need_x)))
        if len(r) == 2 and c == ONE:
            P.append((1, lambda: f"(commutation({r[0]}, {r[1]}) * {self.expr(shape, d, need_x)})"))
        if self._kron_splits(shape):
            P.append((2, lambda: self._kron(shape, d, need_x)))
        if scalar:
            P.append((3, lambda: self._trace(d, need_x)))
            P.append((1, lambda: f"det({self.nonsingular(self._square_dim(), d, need_x)})"))
            P.append((1, lambda: f"logdet({self.nonsingular(self._square_dim(), d, need_x, posdet=True)})"))
            P.append((3, lambda: self._reduce("sum", d, need_x)))
            P.append((1, lambda: self._reduce("norm1", d, need_x)))
            P.append((1, lambda: self._reduce("norm2", d, need_x)))
            P.append((1, lambda: self._vec_inner(d, need_x)))
        return self.weighted(P)()

    def _square_dim(self):
        return self.weighted([(3, ("n",)), (3, ("m",)), (2, ("p",)), (1, ("n", "p"))])

    def _add(self, shape, d, need_x):
        k = self.weighted([(4, 2), (1, 3)])
        flags = self.carrier(k, need_x)
        out = self.expr(shape, d, flags[0])
        for f in flags[1:]:
            out += self.pick((" + ", " - ")) + self.expr(shape, d, f)
        return f"({out})"

    def _neg(self, shape, d, need_x):
        return self.pick(("-", "+")) + f"({self.expr(shape, d, need_x)})"

    def _broadcast(self, shape, d, need_x):
        fs, fm = self.carrier(2, need_x)
        s, m = self.expr((ONE, ONE), d, fs), self.expr(shape, d, fm)
        return self.pick((f"({s} + {m})", f"({m} - {s})", f"({m} + {s})", f"({s} - {m})"))

    def _scale(self, shape, d, need_x):
        fs, fm = self.carrier(2, need_x)
        s, m = self.expr((ONE, ONE), d, fs), self.expr(shape, d, fm)
        return self.pick((f"({s} * {m})", f"({m} * {s})", f"({s} .* {m})"))

    def _divide(self, shape, d, need_x):
        fs, fm = self.carrier(2, need_x)
        m = self.expr(shape, d, fm)
        if self.coin(1):
            return f"({m} / {self.pick(POSITIVE_NUMBERS)})" if not fs else f"({m} / {self.positive((ONE, ONE), d, fs)})"
        s = self.positive((ONE, ONE), d, fs)
        if shape != (ONE, ONE) and self.coin(1):
            # a scalar divided elementwise by a matrix
            return f"({self.expr((ONE, ONE), d, fm)} ./ {self.positive(shape, d, fs)})"
        return f"({m} / {s})"

    def _matmul(self, shape, d, need_x):
        r, c = shape
        k = self.weighted([(4, 2), (1, 3)])
        dims = [r] + [self.inner_dim((r, None), (None, c)) for _ in range(k - 1)] + [c]
        flags = self.carrier(k, need_x)
        factors = [self.expr((dims[i], dims[i + 1]), d, flags[i]) for i in range(k)]
        return "(" + " * ".join(factors) + ")"

    def _hadamard(self, shape, d, need_x):
        if self.coin(1):
            fa, fb = self.carrier(2, need_x)
            return f"({self.expr(shape, d, fa)} ./ {self.positive(shape, d, fb)})"
        fa, fb = self.carrier(2, need_x)
        return f"({self.expr(shape, d, fa)} .* {self.expr(shape, d, fb)})"

    def _epower(self, shape, d, need_x):
        scalar = shape == (ONE, ONE)
        op = self.pick(("^", ".^")) if scalar else ".^"
        kind = self.weighted([(3, "int"), (2, "frac"), (1, "neg"), (1, "var")])
        if kind == "int":
            return f"({self.expr(shape, d, need_x)}) {op} {self.pick(('2', '3'))}"
        if kind == "frac":
            return f"({self.positive(shape, d, need_x)}) {op} {self.pick(('0.5', '1.5', '-0.5'))}"
        if kind == "neg":
            return f"({self.positive(shape, d, need_x)}) {op} {self.pick(('-1', '-2'))}"
        fb, fe = self.carrier(2, need_x)
        return f"({self.positive(shape, d, fb)}) {op} ({self.small((ONE, ONE), d, fe)} + 1)"

    def _transpose(self, shape, d, need_x):
        r, c = shape
        return f"({self.expr((c, r), d, need_x)})'"

    def _reshape(self, shape, d, need_x):
        r, c = shape
        total = dim_mul(r, c)
        sources = [s for s in splits(total) if s != (r, c) and numel(s) <= MAX_NUMEL]
        if not sources:
            return self.expr(shape, d, need_x)
        src = self.pick(sources)
        return f"reshape({self.expr(src, d, need_x)}, {dim_text(r)}, {dim_text(c)})"

    def _vec(self, shape, d, need_x):
        r, _ = shape
        sources = [(a, b) for a, b in splits(r) if b != ONE] or [(ONE, r)]
        a, b = self.pick(sources)
        if len(a) == 1 and len(b) == 1 and self.coin(1):
            # K(a, b) vec(U) = vec(U'): U is a x b
            return f"(commutation({a[0]}, {b[0]}) * vec({self.expr((a, b), d, need_x)}))"
        return f"vec({self.expr((a, b), d, need_x)})"

    def _kron_splits(self, shape):
        r, c = shape
        out = []
        for r1, r2 in splits(r):
            for c1, c2 in splits(c):
                if (r1, c1) != (ONE, ONE) and (r2, c2) != (ONE, ONE):
                    out.append(((r1, c1), (r2, c2)))
        return out

    def _kron(self, shape, d, need_x):
        a, b = self.pick(self._kron_splits(shape))
        fa, fb = self.carrier(2, need_x)
        return f"kron({self.expr(a, d, fa)}, {self.expr(b, d, fb)})"

    def _matpow(self, shape, d, need_x):
        if self.coin(1):
            return f"({self.nonsingular(shape[0], d, need_x)}) ^ {self.pick(('-1', '-2'))}"
        return f"({self.expr(shape, d, need_x)}) ^ {self.pick(('2', '3'))}"

    def _inverse(self, shape, d, need_x):
        return f"inv({self.nonsingular(shape[0], d, need_x)})"

    def _adj(self, shape, d, need_x):
        return f"adj({self.nonsingular(shape[0], d, need_x)})"

    def _trace(self, d, need_x):
        k = self._square_dim()
        return f"tr({self.expr((k, k), d, need_x)})"

    def _reduce(self, fn, d, need_x):
        r = self.inner_dim((None, ONE))
        c = self.inner_dim((r, None))
        return f"{fn}({self.expr((r, c), d, need_x)})"

    def _vec_inner(self, d, need_x):
        r = self.inner_dim((None, ONE))
        c = self.inner_dim((r, None))
        fa, fb = self.carrier(2, need_x)
        if len(r) == 1 and len(c) == 1 and self.coin(2):
            # vec(U)' K vec(V) = <U, V'>, K = commutation(r, c)
            return (f"(vec({self.expr((c, r), d, fa)})' * commutation({r[0]}, {c[0]}) * "
                    f"vec({self.expr((r, c), d, fb)}))")
        return f"(vec({self.expr((r, c), d, fa)})' * vec({self.expr((r, c), d, fb)}))"

    def _elementwise(self, shape, d, need_x):
        fn = self.pick(("exp", "log", "sin", "cos", "tan", "tanh", "arcsin", "arccos", "arctan", "sqrt",
                        "sigmoid", "abs", "sign", "relu", "step"))
        if fn == "exp":
            # bounded, or a constant (values of order 1): exp(sum(X)) could be exp(12)
            arg = self.bounded(shape, d, need_x) if (need_x or self.coin(3)) else self.const(shape)
        elif fn in ("log", "sqrt"):
            arg = self.positive(shape, d, need_x)
        elif fn in ("tan", "arcsin", "arccos"):
            arg = self.small(shape, d, need_x)
        else:
            arg = self.expr(shape, d, need_x)
        out = f"{fn}({arg})"
        if fn in ("sign", "step"):
            # constant pieces: keep the variable elsewhere too, so the derivative is not just 0
            fb = need_x
            out = f"({out} .* {self.expr(shape, d, fb)})" if shape != (ONE, ONE) else f"({out} * {self.expr(shape, d, fb)})"
        return out

    # restricted families -------------------------------------------------------------------------
    def positive(self, shape, depth, need_x) -> str:
        """Entries > 0 (and away from 0) at every point."""
        scalar = shape == (ONE, ONE)
        pw = ".^" if not scalar else self.pick(("^", ".^"))
        if depth <= 0 or not self.spend():
            if need_x:
                return f"(1 + ({self.x_of_shape(shape)}) {pw} 2)"
            r, c = shape
            return self.weighted([(2, lambda: self.pick(POSITIVE_NUMBERS) if scalar else
                                   f"(2 * ones({dim_text(r)}, {dim_text(c)}))"),
                                  (2, lambda: f"exp({self.const(shape)})"),
                                  (1, lambda: f"(1 + {self.const(shape)} {pw} 2)")])()
        d = depth - 1
        P = [
            (3, lambda: f"exp({self.bounded(shape, d, need_x)})"),
            (3, lambda: f"(1 + ({self.expr(shape, d, need_x)}) {pw} 2)"),
            (1, lambda: f"(0.5 + sigmoid({self.expr(shape, d, need_x)}))"),
            (1, lambda: f"(2 + {self.pick(('sin', 'tanh', 'cos'))}({self.expr(shape, d, need_x)}))"),
            (1, lambda: f"sqrt({self.positive(shape, d, need_x)})"),
            (1, lambda: self._pos_pair(shape, d, need_x)),
        ]
        if scalar:
            r = self.inner_dim((None, ONE))
            c = self.inner_dim((r, None))
            P += [
                (1, lambda: f"(1 + norm2({self.expr((r, c), d, need_x)}) ^ 2)"),
                (1, lambda: f"(1 + sum({self.expr((r, c), d, need_x)} .^ 2))"),
                (1, lambda: f"(0.5 + norm1({self.expr((r, c), d, need_x)}))"),
            ]
            if c == ONE:
                P.append((1, lambda: self._gram_scalar(r, d, need_x)))
        return self.weighted(P)()

    def _gram_scalar(self, r, d, need_x):
        v = self.expr((r, ONE), d, need_x)
        return f"(1 + ({v})' * {v})"

    def _pos_pair(self, shape, d, need_x):
        fa, fb = self.carrier(2, need_x)
        a, b = self.positive(shape, d, fa), self.positive(shape, d, fb)
        if shape == (ONE, ONE):
            return f"({a} {self.pick(('*', '+', '/', '.*', './'))} {b})"
        return f"({a} {self.pick(('.*', '+', './'))} {b})"

    def bounded(self, shape, depth, need_x) -> str:
        """|entries| <= 1."""
        d = depth - 1
        fn = self.pick(("tanh", "sin", "cos", "sigmoid", "arctan/2", "product"))
        if fn == "arctan/2":
            return f"(arctan({self.expr(shape, d, need_x)}) / 2)"
        if fn == "product" and depth > 0:
            fa, fb = self.carrier(2, need_x)
            return f"({self.bounded(shape, d, fa)} .* {self.bounded(shape, d, fb)})"
        if fn == "product":
            fn = "tanh"
        return f"{fn}({self.expr(shape, d, need_x)})"

    def small(self, shape, depth, need_x) -> str:
        """|entries| <= 0.5."""
        b = self.bounded(shape, depth, need_x)
        return self.pick((f"(0.5 * {b})", f"({b} / 3)", f"({b} .* 0.4)"))

    def nonsingular(self, k: tuple, depth, need_x, posdet: bool = False) -> str:
        """A k x k matrix far from singular; with posdet, its determinant is positive too."""
        assert k != ONE
        d = depth - 1
        sq = (k, k)
        if depth <= 0 or not self.spend():
            if need_x and self.x_shape == sq and not posdet:
                return self.x_name
            return self._gram(k, 0, need_x)
        P = [
            (3, lambda: self._gram(k, d, need_x)),
            (1, lambda: f"diag({self.positive((k, ONE), d, need_x)})"),
            (1, lambda: f"inv({self.nonsingular(k, d, need_x, posdet)})"),
            (1, lambda: f"({self.nonsingular(k, d, need_x, posdet)})'"),
            (1, lambda: f"({self.nonsingular(k, d, need_x)}) ^ 2"),
            (1, lambda: f"({self.positive((ONE, ONE), d, need_x)} * {self.nonsingular(k, d, False, posdet)})"),
            (1, lambda: self._ns_product(k, d, need_x, posdet)),
        ]
        if dim_size(k) <= 4:
            P.append((3, lambda: f"(I + {self.bounded(sq, d, need_x)} / 10)"))
        if len(k) == 2:
            P.append((2, lambda: self._ns_kron(k, d, need_x, posdet)))
        if not posdet and not need_x:
            P.append((2, lambda: self.const(sq)))
        if not posdet and self.x_shape == sq:
            P.append((2, lambda: self.x_name))
        return self.weighted(P)()

    def _gram(self, k, d, need_x):
        a = self.inner_dim((None, k))
        u = self.expr((a, k), d, need_x)
        form = self.pick(("uu", "uu-t", "scaled"))
        if form == "uu":
            return f"(({u})' * {u} + I)"
        if form == "uu-t":
            v = self.expr((k, a), d, need_x)
            return f"({v} * ({v})' + I({dim_text(k)}))"
        return f"(I + ({u})' * {u} / 4)"

    def _ns_product(self, k, d, need_x, posdet):
        fa, fb = self.carrier(2, need_x)
        return f"({self.nonsingular(k, d, fa, posdet)} * {self.nonsingular(k, d, fb, posdet)})"

    def _ns_kron(self, k, d, need_x, posdet):
        fa, fb = self.carrier(2, need_x)
        return f"kron({self.nonsingular((k[0],), d, fa, posdet)}, {self.nonsingular((k[1],), d, fb, posdet)})"


def _x_shape(kind: str, draw):
    if kind == "scalar":
        return "t", (ONE, ONE)
    if kind == "vector":
        return "x", (draw(st.sampled_from((("n",), ("m",), ("p",)))), ONE)
    if kind == "row":
        return "y", (ONE, draw(st.sampled_from((("m",), ("n",)))))
    if kind == "matrix":
        return "X", draw(st.sampled_from(((("n",), ("m",)), (("m",), ("p",)), (("p",), ("n",)))))
    if kind == "square":
        k = draw(st.sampled_from((("n",), ("p",), ("m",))))
        return "X", (k, k)
    if kind == "symmetric":
        k = draw(st.sampled_from((("n",), ("p",), ("m",))))
        return "S", (k, k)
    raise ValueError(kind)


@st.composite
def programs(draw, max_depth: int = 6, budget: int = 18, output: str | None = None,
             x_kinds: tuple = X_KINDS) -> Program:
    """A random well-shaped program and the variable to differentiate against.

    output: "scalar", "vector", "matrix" or None (any, mostly scalar)."""
    kind = draw(st.sampled_from(x_kinds))
    name, x_shape = _x_shape(kind, draw)
    if output is None:
        output = draw(st.sampled_from(("scalar", "scalar", "scalar", "vector", "matrix")))
    if output == "scalar":
        shape = (ONE, ONE)
    elif output == "vector":
        shape = (draw(st.sampled_from((("n",), ("m",), ("p",), ("m", "n")))), ONE)
    else:
        shape = draw(st.sampled_from(((("n",), ("m",)), (("m",), ("m",)), (("p",), ("n",)), (ONE, ("n",)))))
    depth = draw(st.integers(min(2, max_depth), max_depth))
    b = _Builder(draw, name, kind, x_shape, budget)
    text = b.expr(shape, depth, need_x=True)
    statements = [f"{n}: {t}" for n, t in b.decls.items()] + [f"{n} = {t}" for n, t in b.defs.items()]
    return Program("; ".join(statements + [text]), text, name, kind, shape, depth)
