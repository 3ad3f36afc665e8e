"""The expression IR: small immutable nodes with shapes, and smart constructors.

Every stage after parsing takes and returns these nodes.  Nodes are built through the lower-case
constructors (``add``, ``mul``, ``matmul``, ``transpose`` ...), which apply cheap local rules
(flatten, fold numbers, drop zero and identity factors, push transposes to the leaves, merge
powers) so that trees are born tidy.  Heavier rewriting lives in ``simplify``.

Shapes are pairs of ``Dim``: a scalar is 1x1, a column vector n x 1.
"""

from __future__ import annotations

import hashlib
import math
import weakref
from fractions import Fraction

from .budget import check as within_budget
from .dims import Dim, ONE

MAX_KEY = 160


ELEMENTWISE = (
    "exp", "log", "sin", "cos", "tan", "tanh", "arcsin", "arccos", "arctan",
    "sqrt", "sigmoid", "abs", "sign", "relu", "step",
)


class Expr:
    """Base of all nodes.  Subclasses list their data in ``_fields``."""

    __slots__ = ("shape", "_hash", "_key", "_free", "_memo", "_canon", "__weakref__")
    _fields: tuple = ()

    def _init(self, shape):
        within_budget()   # every node built checks the request's deadline (budget.py)
        self.shape = (Dim.of(shape[0]), Dim.of(shape[1]))
        data = self._data()
        self._hash = hash((type(self).__name__,) + data)
        self._key = None
        self._free = None
        self._memo = None
        # hash-consing: equal trees share one canonical node, so equality is one identity test
        # (children compare by their canonical nodes) and per-node facts are computed once
        self._canon = _canonical(self, (type(self), data, self.shape))

    def _data(self) -> tuple:
        return tuple(getattr(self, f) for f in self._fields)

    @property
    def children(self) -> tuple:
        return ()

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return self is other or (isinstance(other, Expr) and self._canon is other._canon)

    def __ne__(self, other):
        return not self == other

    def __setattr__(self, name, value):
        if name in ("_key", "_free", "_memo", "_canon") or not hasattr(self, "_canon"):
            object.__setattr__(self, name, value)
        else:
            raise AttributeError(f"{type(self).__name__} is immutable")

    def memo(self) -> dict:
        """A per-node cache for facts derived from the (immutable) tree."""
        canon = self._canon
        if canon._memo is None:
            object.__setattr__(canon, "_memo", {})
        return canon._memo

    @property
    def diff_rank(self) -> int:
        """The highest differential order inside (0 for none; 2 when dX2 occurs)."""
        return max((v.diff for v in self.free_vars), default=0)

    @property
    def free_vars(self) -> frozenset:
        """The Var nodes this expression contains (cached: trees are immutable)."""
        if self._free is None:
            if isinstance(self, Var):
                free = frozenset((self,))
            else:
                free = frozenset().union(*(c.free_vars for c in self.children))
            object.__setattr__(self, "_free", free)
        return self._free

    @property
    def key(self) -> str:
        """A canonical string used to order terms and factors deterministically.

        Built from the children's keys; a long one keeps its start and a stable digest of the
        rest, so keys stay short even where a shared subtree is written out many times."""
        if self._key is None:
            key = self._make_key()
            if len(key) > MAX_KEY:
                key = key[:MAX_KEY // 2] + "~" + hashlib.blake2b(key.encode(), digest_size=12).hexdigest()
            object.__setattr__(self, "_key", key)
        return self._key

    def _make_key(self) -> str:
        raise NotImplementedError

    @property
    def is_scalar(self) -> bool:
        return self.shape[0] == 1 and self.shape[1] == 1

    @property
    def rows(self) -> Dim:
        return self.shape[0]

    @property
    def cols(self) -> Dim:
        return self.shape[1]

    # the text printer, installed by render.text when it is imported (the IR does not reach up
    # into the printers); until then a node shows its canonical key
    text_printer = None

    def __repr__(self):
        try:
            shown = str(self)
        except AttributeError:  # a node the language has no text for (AdjDiff): its key
            shown = self.key
        return f"<{type(self).__name__} {shown}>"

    def __str__(self):
        printer = Expr.text_printer
        return printer(self) if printer is not None else self.key


# ---------------------------------------------------------------------------------------------
# Leaves
# ---------------------------------------------------------------------------------------------

# (kind, data, shape) -> weak reference to the canonical node.  Plain weak references (no
# callbacks: a callback may run at any moment, also while a time limit interrupts); dead entries
# are swept whenever the table has doubled since the last sweep.
_CANONICAL: dict = {}
_SWEEP_AT = [1 << 16]


def _canonical(node, index):
    ref = _CANONICAL.get(index)
    canon = ref() if ref is not None else None
    if canon is None:
        if len(_CANONICAL) >= _SWEEP_AT[0]:
            for k in [k for k, r in _CANONICAL.items() if r() is None]:
                del _CANONICAL[k]
            _SWEEP_AT[0] = max(1 << 16, 2 * len(_CANONICAL))
        _CANONICAL[index] = weakref.ref(node)
        canon = node
    return canon


class Var(Expr):
    """A named symbol.  ``diff`` > 0 marks a differential (dX for diff=1, dX2 for diff=2)."""

    __slots__ = ("name", "symmetric", "diff")
    _fields = ("name", "symmetric", "diff")

    def __init__(self, name: str, shape, symmetric: bool = False, diff: int = 0):
        self.name, self.symmetric, self.diff = name, symmetric, diff
        self._init(shape)

    def _data(self):
        return (self.name, self.symmetric, self.diff, self.shape)

    def _make_key(self):
        # differentials sort after everything else, so they end up at the right of products
        return ("~" * self.diff) + self.name


class Num(Expr):
    __slots__ = ("value",)
    _fields = ("value",)

    def __init__(self, value):
        # constants are exact, and within the range of doubles so that generated code computes
        # what is printed (no silent overflow to inf or underflow to 0)
        self.value = checked_constant(value)
        self._init((1, 1))

    def _make_key(self):
        return "#" + str(self.value)


class Identity(Expr):
    __slots__ = ("n",)
    _fields = ("n",)

    def __init__(self, n):
        self.n = Dim.of(n)
        self._init((self.n, self.n))

    def _make_key(self):
        return "I"


class Zero(Expr):
    __slots__ = ()

    def __init__(self, shape):
        self._init(shape)

    def _data(self):
        return self.shape

    def _make_key(self):
        return "0"


class Ones(Expr):
    __slots__ = ()

    def __init__(self, shape):
        self._init(shape)

    def _data(self):
        return self.shape

    def _make_key(self):
        return "1"


class Commutation(Expr):
    """K(m, n): the mn x mn permutation with K vec(X) = vec(X') for X m x n."""

    __slots__ = ("m", "n")
    _fields = ("m", "n")

    def __init__(self, m, n):
        self.m, self.n = Dim.of(m), Dim.of(n)
        self._init((self.m * self.n, self.m * self.n))

    def _make_key(self):
        return f"K({self.m},{self.n})"


# ---------------------------------------------------------------------------------------------
# Interior nodes
# ---------------------------------------------------------------------------------------------

class _Nary(Expr):
    __slots__ = ("args",)
    _fields = ("args",)
    _sep = ","

    def __init__(self, args: tuple, shape):
        self.args = tuple(args)
        self._init(shape)

    @property
    def children(self):
        return self.args

    def _make_key(self):
        return f"{type(self).__name__[0]}(" + self._sep.join(a.key for a in self.args) + ")"


class Add(_Nary):
    __slots__ = ()
    _sep = "+"


class Mul(_Nary):
    """Scalar multiplication: scalar factors, then at most one non-scalar factor, last."""

    __slots__ = ()
    _sep = "*"


class MatMul(_Nary):
    __slots__ = ()
    _sep = " "

    def _make_key(self):
        return "(" + " ".join(a.key for a in self.args) + ")"


class Hadamard(_Nary):
    __slots__ = ()
    _sep = ".*"


class _Unary(Expr):
    __slots__ = ("arg",)
    _fields = ("arg",)
    label = ""

    def __init__(self, arg: Expr, shape):
        self.arg = arg
        self._init(shape)

    @property
    def children(self):
        return (self.arg,)

    def _make_key(self):
        return f"{self.label}({self.arg.key})"


class Transpose(_Unary):
    __slots__ = ()

    def _make_key(self):
        return self.arg.key + "'"


class Inverse(_Unary):
    __slots__ = ()
    label = "inv"

    def _make_key(self):
        return self.arg.key + "^-1"


class Trace(_Unary):
    __slots__ = ()
    label = "tr"


class Det(_Unary):
    __slots__ = ()
    label = "det"


class LogDet(_Unary):
    __slots__ = ()
    label = "logdet"


class Adj(_Unary):
    __slots__ = ()
    label = "adj"


class Diag(_Unary):
    """diag(v): a vector on the diagonal of a square matrix."""

    __slots__ = ()
    label = "diag"


class DiagPart(_Unary):
    """diag(X): the diagonal of a square matrix, as a column vector."""

    __slots__ = ()
    label = "diagpart"


class Vec(_Unary):
    __slots__ = ()
    label = "vec"


class Sum(_Unary):
    __slots__ = ()
    label = "sum"


class Norm1(_Unary):
    __slots__ = ()
    label = "norm1"


class Norm2(_Unary):
    __slots__ = ()
    label = "norm2"


class Reshape(_Unary):
    """reshape(v, m, n): column-major inverse of vec."""

    __slots__ = ()
    label = "reshape"

    def _data(self):
        return (self.arg, self.shape)


class AdjDiff(Expr):
    """d^k adj(X)[D1, ..., Dk]: the k-th derivative of the adjugate at X in the directions D1..Dk.

    adj is a polynomial in the entries of X, so this is defined at every X, singular or not; the
    everywhere-valid form that the generated code and --check evaluate (``differential`` with
    ``everywhere=True``).  It prints in the language through its form for invertible X."""

    __slots__ = ("args",)
    _fields = ("args",)

    def __init__(self, args: tuple):
        self.args = tuple(args)
        self._init(args[0].shape)

    @property
    def children(self):
        return self.args

    def _make_key(self):
        return "dadj(" + ",".join(a.key for a in self.args) + ")"


class AdjJacobian(Expr):
    """The n^2 x n^2 matrix J with vec(d^(k+1) adj(X)[D1, ..., Dk, E]) = J vec(E)."""

    __slots__ = ("args",)
    _fields = ("args",)

    def __init__(self, args: tuple):
        self.args = tuple(args)
        n = args[0].rows
        self._init((n * n, n * n))

    @property
    def children(self):
        return self.args

    def _make_key(self):
        return "jadj(" + ",".join(a.key for a in self.args) + ")"


class Elementwise(Expr):
    __slots__ = ("fn", "arg")
    _fields = ("fn", "arg")

    def __init__(self, fn: str, arg: Expr):
        self.fn, self.arg = fn, arg
        self._init(arg.shape)

    @property
    def children(self):
        return (self.arg,)

    def _make_key(self):
        return f"{self.fn}({self.arg.key})"


class MatPow(Expr):
    """A square matrix to a positive integer power (negative powers are powers of inv)."""

    __slots__ = ("arg", "k")
    _fields = ("arg", "k")

    def __init__(self, arg: Expr, k: int):
        self.arg, self.k = arg, k
        self._init(arg.shape)

    @property
    def children(self):
        return (self.arg,)

    def _make_key(self):
        return f"{self.arg.key}^{self.k}"


class Power(Expr):
    """Elementwise power base .^ exponent; the exponent is a scalar expression."""

    __slots__ = ("base", "exponent")
    _fields = ("base", "exponent")

    def __init__(self, base: Expr, exponent: Expr):
        self.base, self.exponent = base, exponent
        self._init(base.shape)

    @property
    def children(self):
        return (self.base, self.exponent)

    def _make_key(self):
        return f"{self.base.key}.^{self.exponent.key}"


class Kron(Expr):
    __slots__ = ("a", "b")
    _fields = ("a", "b")

    def __init__(self, a: Expr, b: Expr):
        self.a, self.b = a, b
        self._init((a.rows * b.rows, a.cols * b.cols))

    @property
    def children(self):
        return (self.a, self.b)

    def _make_key(self):
        return f"kron({self.a.key},{self.b.key})"


# ---------------------------------------------------------------------------------------------
# Predicates and helpers
# ---------------------------------------------------------------------------------------------

def is_zero(e: Expr) -> bool:
    return isinstance(e, Zero) or (isinstance(e, Num) and e.value == 0)


def is_one(e: Expr) -> bool:
    return isinstance(e, Num) and e.value == 1


def zero(shape) -> Expr:
    shape = (Dim.of(shape[0]), Dim.of(shape[1]))
    return Num(0) if shape == (ONE, ONE) else Zero(shape)


def identity(n) -> Expr:
    n = Dim.of(n)
    return Num(1) if n == 1 else Identity(n)


def ones(shape) -> Expr:
    shape = (Dim.of(shape[0]), Dim.of(shape[1]))
    return Num(1) if shape == (ONE, ONE) else Ones(shape)


def walk(*roots: Expr) -> list:
    """Every distinct node object under the roots, parents first (iterative: trees may be deep)."""
    seen, stack, out = set(), list(roots), []
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        out.append(node)
        stack.extend(reversed(node.children))
    return out


def node_dims(node: Expr) -> list:
    """The dimensions a node mentions: its shape, and the sizes of I and K."""
    dims = list(node.shape)
    if isinstance(node, Commutation):
        dims += [node.m, node.n]
    elif isinstance(node, Identity):
        dims.append(node.n)
    return dims


def contains(e: Expr, pred) -> bool:
    """True if some node of ``e`` satisfies ``pred``."""
    return any(pred(node) for node in walk(e))


def depends_on(e: Expr, var: Var) -> bool:
    return var in e.free_vars


def has_differential(e: Expr, order: int | None = None) -> bool:
    return any(v.diff and (order is None or v.diff == order) for v in e.free_vars)


def split_coef(e: Expr):
    """(numeric coefficient, rest): 3*A -> (3, A); 5 -> (5, 1)."""
    if isinstance(e, Num):
        return e.value, Num(1)
    if isinstance(e, Mul) and isinstance(e.args[0], Num):
        rest = e.args[1:]
        return e.args[0].value, rest[0] if len(rest) == 1 else Mul(rest, e.shape)
    return Fraction(1), e


def _arith(a, b, op):
    # exact: Fractions neither overflow nor underflow; Num() checks the range of the result
    return op(Fraction(a), Fraction(b))


# the range of constants: that of (normal) doubles, so that NumPy code computes what is printed
MAX_CONSTANT = Fraction(1.7976931348623157e308)
MIN_CONSTANT = Fraction(2.2250738585072014e-308)


def checked_constant(value) -> Fraction:
    """``value`` as an exact Fraction, or a MathError when it is not a finite double-range number."""
    from .errors import MathError
    if isinstance(value, float) and not math.isfinite(value):
        raise MathError(f"a numeric constant is not finite ({value})",
                        hint="rescale the constants in the expression")
    if isinstance(value, float):
        # a float given to the IR directly (the parser makes exact Fractions) stays a float
        if value and not 2.2250738585072014e-308 <= abs(value):
            raise MathError(f"a numeric constant underflows: {value!r} is outside the range of double "
                            "precision numbers (about 2.2e-308 to 1.8e308 in size)",
                            hint="rescale the constants in the expression")
        return value
    value = value if isinstance(value, Fraction) else Fraction(value)
    bits = value.numerator.bit_length() - value.denominator.bit_length()
    if not value or -1000 < bits < 1000:   # well inside the range (the usual case, no big arithmetic)
        return value
    if not (MIN_CONSTANT <= abs(value) <= MAX_CONSTANT):
        which = "overflows" if abs(value) > 1 else "underflows"
        raise MathError(f"a numeric constant {which}: {approximate(value)} is outside the range of "
                        "double precision numbers (about 2.2e-308 to 1.8e308 in size)",
                        hint="rescale the constants in the expression")
    return value


def approximate(value: Fraction) -> str:
    """A short decimal for a Fraction of any size (1.2e+400), without converting to float."""
    from decimal import Context, Decimal
    ctx = Context(prec=3, Emax=10 ** 9, Emin=-10 ** 9)
    return str(ctx.divide(Decimal(value.numerator), Decimal(value.denominator)).normalize(ctx)).lower()


# ---------------------------------------------------------------------------------------------
# Smart constructors
# ---------------------------------------------------------------------------------------------

def add(*terms: Expr) -> Expr:
    """Sum of same-shaped terms: flattened, zeros dropped, like terms collected, sorted."""
    flat = []
    for t in terms:
        if isinstance(t, Add):
            flat.extend(t.args)
        elif isinstance(t, Mul) and len(t.args) == 2 and isinstance(t.args[0], Num) \
                and isinstance(t.args[1], Add):
            # c * (a + b) inside a sum joins it, so that like terms meet: x - (x + y) = -y
            flat.extend(scale(t.args[0].value, u) for u in t.args[1].args)
        else:
            flat.append(t)
    if not flat:
        raise ValueError("add() needs at least one term")
    shape = flat[0].shape
    coefs: dict = {}
    first: dict = {}   # body -> the term itself, while it occurs once (no need to rebuild it)
    for t in flat:
        if is_zero(t):
            continue
        c, body = split_coef(t)
        if body in coefs:
            coefs[body] = _arith(coefs[body], c, lambda x, y: x + y)
            first[body] = None
        else:
            coefs[body], first[body] = c, t
    out = [first[body] or scale(c, body) for body, c in coefs.items() if c != 0]
    if not out:
        return zero(shape)
    if len(out) == 1:
        return out[0]
    out.sort(key=_term_order)
    return Add(tuple(out), shape)


def _term_order(t: Expr):
    # positive terms before negative ones, constants last among each ("x + 1", "1 - s", "x - 1"),
    # otherwise order by the canonical key of the non-numeric part
    c, body = split_coef(t)
    return (c < 0, isinstance(t, Num), body.key)


def scale(c, e: Expr) -> Expr:
    """Numeric multiple c * e."""
    if c == 1:
        return e
    return mul(Num(c), e)


def neg(e: Expr) -> Expr:
    return mul(Num(-1), e)


def sub(a: Expr, b: Expr) -> Expr:
    return add(a, neg(b))


def mul(*factors: Expr) -> Expr:
    """Scalar multiplication: any number of scalar factors times at most one non-scalar."""
    coef = Fraction(1)
    scalars: list = []
    nonscalar = None
    stack = list(reversed(factors))
    while stack:
        f = stack.pop()
        if isinstance(f, Mul):
            stack.extend(reversed(f.args))
        elif isinstance(f, Num):
            coef = _arith(coef, f.value, lambda x, y: x * y)
        elif f.is_scalar:
            scalars.append(f)
        elif nonscalar is None:
            nonscalar = f
        else:
            raise ValueError("mul(): more than one non-scalar factor")
    shape = nonscalar.shape if nonscalar is not None else (ONE, ONE)
    if coef == 0 or (nonscalar is not None and is_zero(nonscalar)):
        return zero(shape)
    scalars = _merge_scalar_powers(scalars)
    if nonscalar is not None and isinstance(nonscalar, Zero):
        return nonscalar
    parts = ([Num(coef)] if coef != 1 else []) + scalars + ([nonscalar] if nonscalar is not None else [])
    if not parts:
        return Num(1)
    if len(parts) == 1:
        return parts[0]
    return Mul(tuple(parts), shape)


def _base_and_exponent(f: Expr):
    if isinstance(f, Power) and isinstance(f.exponent, Num):
        return f.base, f.exponent.value
    return f, Fraction(1)


def _merge_scalar_powers(scalars: list) -> list:
    """s * s -> s^2, s * s^-1 -> 1; then a canonical order (differentials last)."""
    exps: dict = {}
    for s in scalars:
        base, e = _base_and_exponent(s)
        exps[base] = _arith(exps[base], e, lambda x, y: x + y) if base in exps else e
    out = []
    for base, e in exps.items():
        if e == 0:
            continue
        out.append(base if e == 1 else Power(base, Num(e)))
    out.sort(key=_factor_order)
    return out


def _factor_order(f: Expr):
    """Order of commuting factors: plain names first, differentials last (y .* (X*w), 2 * s * dx)."""
    base = _base_and_exponent(f)[0]
    simple = isinstance(base, Var) or (isinstance(base, Transpose) and isinstance(base.arg, Var))
    return (has_differential(f), not simple, base.key)


def matmul(*factors: Expr) -> Expr:
    """Matrix product.  1x1 factors are pulled out as scalars, identities dropped, powers merged."""
    scalars: list = []
    chain: list = []
    for f in factors:
        parts = f.args if isinstance(f, MatMul) else (f,)
        for p in parts:
            if isinstance(p, Mul) and not p.is_scalar:
                scalars.extend(p.args[:-1])
                p = p.args[-1]
                if isinstance(p, MatMul):
                    chain.extend(p.args)
                    continue
            chain.append(p)
    if not chain:
        raise ValueError("matmul() needs factors")
    shape = (chain[0].rows, chain[-1].cols)
    if len(chain) > 1:
        # a 1x1 factor inside a longer chain is a scalar multiple
        scalars.extend(c for c in chain if c.is_scalar)
        kept = [c for c in chain if not c.is_scalar]
        chain = kept or [Num(1)]
        chain = _split_scalar_segments(chain, scalars)
    if any(is_zero(c) for c in chain) or any(is_zero(s) for s in scalars):
        return zero(shape)
    chain = _merge_matrix_powers([c for c in chain if not isinstance(c, Identity)] or [chain[0]])
    if len(chain) == 1:
        body = chain[0]
        if isinstance(body, Identity) and body.shape != shape:
            body = Identity(shape[0])
    else:
        body = MatMul(tuple(chain), (chain[0].rows, chain[-1].cols))
    return mul(*scalars, body) if scalars else body


def _split_scalar_segments(chain: list, scalars: list) -> list:
    """Pull 1x1 sub-products out as scalars: x' x z' C y = (x'x)(z'Cy).

    A segment f_i..f_j with one row at its start and one column at its end is a scalar, and the
    factors around it still conform (both sides of it have an inner dimension of 1)."""
    i = 0
    while i < len(chain):
        if chain[i].rows == 1:
            for j in range(i, len(chain)):
                if chain[j].cols == 1:
                    if (i, j) != (0, len(chain) - 1) and j > i:
                        scalars.append(MatMul(tuple(chain[i:j + 1]), (ONE, ONE)))
                        chain = chain[:i] + chain[j + 1:]
                        i -= 1
                    break
        i += 1
    return chain or [Num(1)]


def _matrix_base_exp(f: Expr):
    if isinstance(f, Inverse):
        return f.arg, -1
    if isinstance(f, MatPow):
        if isinstance(f.arg, Inverse):
            return f.arg.arg, -f.k
        return f.arg, f.k
    return f, 1


def _merge_matrix_powers(chain: list) -> list:
    out: list = []
    for f in chain:
        if out and isinstance(out[-1], Kron) and isinstance(f, Kron):
            a, b = out[-1], f
            if a.a.cols == b.a.rows and a.b.cols == b.b.rows:
                # mixed product: kron(A, B) kron(C, D) = kron(AC, BD)
                out[-1] = kron(matmul(a.a, b.a), matmul(a.b, b.b))
                continue
        if out and out[-1].rows == out[-1].cols and f.rows == f.cols:
            b1, k1 = _matrix_base_exp(out[-1])
            b2, k2 = _matrix_base_exp(f)
            if b1 == b2:
                out.pop()
                merged = matpow(b1, k1 + k2)
                if not isinstance(merged, Identity):
                    out.append(merged)
                continue
        out.append(f)
    return out or [Identity(chain[0].rows)]


def matpow(a: Expr, k: int) -> Expr:
    if a.is_scalar:
        return power(a, Num(k))
    if k == 0:
        return Identity(a.rows)
    if k == 1:
        return a
    if k < 0:
        a, k = inverse(a), -k
        if k == 1:
            return a
    if isinstance(a, MatPow):
        return MatPow(a.arg, a.k * k)
    if isinstance(a, Identity):
        return a
    return MatPow(a, k)


def hadamard(*factors: Expr) -> Expr:
    """Elementwise product: scalars pulled out, ones dropped, equal factors merged to powers."""
    scalars: list = []
    items: list = []
    for f in factors:
        for p in (f.args if isinstance(f, Hadamard) else (f,)):
            if p.is_scalar:
                scalars.append(p)
            elif isinstance(p, Mul):
                scalars.extend(p.args[:-1])
                inner = p.args[-1]
                items.extend(inner.args if isinstance(inner, Hadamard) else (inner,))
            else:
                items.append(p)
    if not items:
        return mul(*scalars)
    shape = items[0].shape
    if any(is_zero(i) for i in items):
        return zero(shape)
    exps: dict = {}
    for i in items:
        if isinstance(i, Ones):
            continue
        base, e = _base_and_exponent(i)
        exps[base] = _arith(exps[base], e, lambda x, y: x + y) if base in exps else e
    merged = []
    for base, e in exps.items():
        if e == 0:
            continue
        merged.append(base if e == 1 else Power(base, Num(e)))
    if not merged:
        body = Ones(shape)
    elif len(merged) == 1:
        body = merged[0]
    else:
        merged.sort(key=_factor_order)
        body = Hadamard(tuple(merged), shape)
    return mul(*scalars, body) if scalars else body


def transpose(e: Expr) -> Expr:
    """Transpose, pushed down to the leaves: (AB)' = B'A', inv(A)' = inv(A'), S' = S.

    Memoised per distinct node (a pure function of the node), so a shared subtree is
    transposed once, however often it occurs."""
    if e.is_scalar:
        return e
    memo = e.memo()
    out = memo.get("transpose")
    if out is None:
        out = memo["transpose"] = _transpose(e)
    return out


def _transpose(e: Expr) -> Expr:
    if isinstance(e, Var):
        return e if e.symmetric else Transpose(e, (e.cols, e.rows))
    if isinstance(e, Transpose):
        return e.arg
    if e.cols == 1 and isinstance(e, (Add, Hadamard, Elementwise, Power)):
        # a row made of a column expression reads best whole: (A*x - b)', not x'*A' - b'
        return Transpose(e, (e.cols, e.rows))
    if isinstance(e, (Identity, Diag)):
        return e
    if isinstance(e, Zero):
        return Zero((e.cols, e.rows))
    if isinstance(e, Ones):
        return Ones((e.cols, e.rows))
    if isinstance(e, Commutation):
        return Commutation(e.n, e.m)
    if isinstance(e, MatMul):
        return matmul(*[transpose(f) for f in reversed(e.args)])
    if isinstance(e, Mul):
        return mul(*e.args[:-1], transpose(e.args[-1]))
    if isinstance(e, Add):
        return add(*[transpose(t) for t in e.args])
    if isinstance(e, Hadamard):
        return hadamard(*[transpose(f) for f in e.args])
    if isinstance(e, Inverse):
        return inverse(transpose(e.arg))
    if isinstance(e, MatPow):
        return matpow(transpose(e.arg), e.k)
    if isinstance(e, Adj):
        return adj(transpose(e.arg))
    if isinstance(e, AdjDiff):
        return adj_diff(*[transpose(a) for a in e.args])
    if isinstance(e, Elementwise):
        return elementwise(e.fn, transpose(e.arg))
    if isinstance(e, Power):
        return power(transpose(e.base), e.exponent)
    if isinstance(e, Kron):
        return kron(transpose(e.a), transpose(e.b))
    if isinstance(e, Vec) or (isinstance(e, Reshape) and e.cols == 1):
        return Transpose(e, (e.cols, e.rows))
    if isinstance(e, (MatFun, Frechet)):
        return _transpose_matfun(e)
    return Transpose(e, (e.cols, e.rows))


def inverse(e: Expr) -> Expr:
    if e.is_scalar:
        return power(e, Num(-1))
    if isinstance(e, Inverse):
        return e.arg
    if isinstance(e, Identity):
        return e
    if isinstance(e, Mul):
        return mul(*[power(s, Num(-1)) for s in e.args[:-1]], inverse(e.args[-1]))
    if isinstance(e, MatPow):
        return matpow(inverse(e.arg), e.k)
    if isinstance(e, MatFun) and e.fn == "expm":
        return matfun("expm", neg(e.arg))      # inv(expm(X)) = expm(-X)
    if isinstance(e, Transpose):
        return Inverse(e, e.shape)
    return Inverse(e, e.shape)


def power(base: Expr, exponent: Expr) -> Expr:
    """Elementwise power; for scalars the ordinary power."""
    if isinstance(exponent, Num):
        k = exponent.value
        if k == 0:
            return ones(base.shape)
        if k == 1:
            return base
        if isinstance(base, Num):
            folded = _fold_power(base.value, k)
            if folded is not None:
                return Num(folded)
        if isinstance(base, Power) and isinstance(base.exponent, Num) and _is_integer(k):
            return power(base.base, Num(_arith(base.exponent.value, k, lambda x, y: x * y)))
        if isinstance(base, Ones):
            return base
        if isinstance(base, Mul) and _is_integer(k):
            return mul(*[power(f, exponent) for f in base.args])
    return Power(base, exponent)


def _is_integer(k) -> bool:
    return isinstance(k, Fraction) and k.denominator == 1


MAX_FOLDED_BITS = 4096   # a folded power's exact numerator and denominator stay this short


def _fold_power(b: Fraction, k: Fraction):
    """b^k for numbers: the exact value when it is short; None to keep b^k as written (a
    fractional power, or an exact value too long to write); a MathError when b^k is undefined
    (0^-1, (-1)^(1/2)) or outside the range of doubles (1e200^2)."""
    from .errors import MathError
    b, k = Fraction(b), Fraction(k)
    if b == 0:
        if k < 0:
            raise MathError(f"0^{k} is undefined (a division by zero)",
                            hint="a constant base of 0 needs a positive exponent")
        return Fraction(0)
    if b < 0 and k.denominator != 1:
        raise MathError(f"({b})^({k}) is not a real number: a negative base needs an integer exponent")
    if abs(b) == 1:
        return b ** int(k) if k.denominator == 1 else Fraction(1)
    # the size of the result, from logarithms (exact powers of huge exponents are never formed)
    log2 = (math.log2(abs(b.numerator)) - math.log2(b.denominator)) * float(k)
    if not -1022.5 < log2 < 1024.5:
        which = "overflows" if log2 > 0 else "underflows"
        raise MathError(f"the constant {approximate(b)}^{approximate(k)} {which}: it is outside the "
                        "range of double precision numbers (about 2.2e-308 to 1.8e308 in size)",
                        hint="rescale the constants in the expression")
    if k.denominator != 1:
        return None
    bits = max(b.numerator.bit_length(), b.denominator.bit_length()) * abs(int(k))
    return b ** int(k) if bits <= MAX_FOLDED_BITS else None


# where the elementwise functions are defined, for constant arguments
_DOMAIN = {
    "log": (lambda v: v > 0, "log({}) is undefined: log needs a positive argument"),
    "sqrt": (lambda v: v >= 0, "sqrt({}) is not a real number: sqrt needs an argument >= 0"),
    "arcsin": (lambda v: -1 <= v <= 1, "arcsin({}) is undefined: arcsin needs an argument in [-1, 1]"),
    "arccos": (lambda v: -1 <= v <= 1, "arccos({}) is undefined: arccos needs an argument in [-1, 1]"),
}


# exact values of the elementwise functions at 0 (and of log at 1), folded when they are constants
_AT_ZERO = {"exp": 1, "cos": 1, "sigmoid": Fraction(1, 2), "sin": 0, "tan": 0, "tanh": 0, "arcsin": 0,
            "arctan": 0, "sqrt": 0, "sign": 0, "abs": 0, "relu": 0, "step": 0}


def elementwise(fn: str, arg: Expr) -> Expr:
    if isinstance(arg, Num):
        if fn in _DOMAIN and not _DOMAIN[fn][0](arg.value):
            from .errors import MathError
            v = Fraction(arg.value)
            raise MathError(_DOMAIN[fn][1].format(approximate(v) if v.denominator != 1 else v))
        if arg.value == 0 and fn in _AT_ZERO:
            return Num(_AT_ZERO[fn])
        if fn == "log" and arg.value == 1:
            return Num(0)
        if fn == "abs":
            return Num(abs(arg.value))
    if fn == "log" and isinstance(arg, Elementwise) and arg.fn == "exp":
        return arg.arg
    return Elementwise(fn, arg)


def trace(e: Expr) -> Expr:
    if e.is_scalar:
        return e
    if isinstance(e, Add):
        return add(*[trace(t) for t in e.args])
    if isinstance(e, Mul):
        return mul(*e.args[:-1], trace(e.args[-1]))
    if isinstance(e, Transpose):
        return trace(e.arg)
    if isinstance(e, Identity) and e.n.is_int:
        return Num(e.n.coef)
    if isinstance(e, Zero):
        return Num(0)
    if isinstance(e, MatMul):
        return _trace_of_chain(e)
    if isinstance(e, Diag):
        return sum_(e.arg)
    if isinstance(e, Kron) and e.a.rows == e.a.cols:
        return mul(trace(e.a), trace(e.b))
    return Trace(e, (1, 1))


def _trace_of_chain(e: MatMul) -> Expr:
    """tr is invariant under cyclic rotation; choose the rotation people write.

    A rotation that makes the product 1x1 drops the trace (tr(x y') = y'x); otherwise a factor
    holding a differential goes last (tr(inv(X) dX)), else the smallest canonical key wins so
    that tr(AB) and tr(BA) collect."""
    f = list(e.args)
    k = len(f)
    flipped = [transpose(x) for x in reversed(f)]  # tr(M) = tr(M')
    rotations = [f[i:] + f[:i] for i in range(k)] + [flipped[i:] + flipped[:i] for i in range(k)]
    for r in rotations:
        if r[0].rows == 1:
            return matmul(*r)
    with_diff = [r for r in rotations if has_differential(r[-1])]
    candidates = with_diff or rotations
    best = min(candidates, key=lambda r: (sum(transpose_count(x) for x in r), tuple(x.key for x in r)))
    body = matmul(*best)
    if isinstance(body, MatMul) and body.args == tuple(best):
        return Trace(body, (1, 1))
    # the rotation brought equal factors together (inv(M) B' dP B inv(M) -> B inv(M)^2 B' dP):
    # a shorter chain, traced again
    return trace(body)


MAX_PRINTED_SIZE = 200_000


def tree_size(e: Expr) -> int:
    """Nodes in the expression written out as a tree (shared subtrees counted every time)."""
    memo = e.memo()
    if "size" not in memo:
        memo["size"] = 1 + sum(tree_size(c) for c in e.children)
    return memo["size"]


def check_printable(e: Expr, written: int | None = None) -> None:
    """Refuse, clearly, to write out a result that would swell to megabytes of text.  ``written``:
    the nodes actually written (render.share names repeated parts; default: the whole tree)."""
    size = tree_size(e) if written is None else written
    if size > MAX_PRINTED_SIZE:
        from .errors import MathError
        shared = "" if written is None else " with its repeated parts named"
        raise MathError(f"the result written out{shared} has {size:,} nodes (the limit is {MAX_PRINTED_SIZE:,})",
                        hint="use --format numpy, which computes shared subexpressions once, "
                             "or differentiate a smaller expression")


def transpose_count(e: Expr) -> int:
    """How many transposes of matrices (not of vectors) an expression shows; fewer reads better."""
    memo = e.memo()
    if "tc" not in memo:
        count = sum(transpose_count(c) for c in e.children)
        if isinstance(e, Transpose) and e.arg.cols != 1:
            # a transposed differential reads worst: tr(X' dX), not tr(X dX')
            count += 3 if isinstance(e.arg, Var) and e.arg.diff else 1
        if isinstance(e, Inverse) and isinstance(e.arg, Transpose):
            count += 1
        memo["tc"] = count
    return memo["tc"]


def det(e: Expr) -> Expr:
    if e.is_scalar:
        return e
    if isinstance(e, Transpose):
        return det(e.arg)
    if isinstance(e, Identity):
        return Num(1)
    return Det(e, (1, 1))


def logdet(e: Expr) -> Expr:
    if e.is_scalar:
        return elementwise("log", e)
    if isinstance(e, Transpose):
        return logdet(e.arg)
    if isinstance(e, Identity):
        return Num(0)
    return LogDet(e, (1, 1))


def adj(e: Expr) -> Expr:
    if e.is_scalar:
        return Num(1)
    return Adj(e, e.shape)


def adj_diff(x: Expr, *directions: Expr) -> Expr:
    """d^k adj(X)[D1, ..., Dk]; zero when a direction is zero or k >= n (adj has degree n - 1)."""
    if any(is_zero(d) for d in directions):
        return zero(x.shape)
    if x.is_scalar:
        return Num(1) if not directions else Num(0)
    if x.rows.is_int and len(directions) >= x.rows.coef:
        return zero(x.shape)
    if not directions:
        return adj(x)
    return AdjDiff((x,) + tuple(sorted(directions, key=lambda d: d.key)))


def adj_jacobian(x: Expr, *directions: Expr) -> Expr:
    """J with vec(d^(k+1) adj(X)[D1, ..., Dk, E]) = J vec(E)."""
    if any(is_zero(d) for d in directions):
        return zero((x.rows * x.rows, x.rows * x.rows))
    return AdjJacobian((x,) + tuple(sorted(directions, key=lambda d: d.key)))


def diag(e: Expr) -> Expr:
    """Vector -> diagonal matrix."""
    if e.is_scalar:
        return e
    if isinstance(e, Mul):
        return mul(*e.args[:-1], diag(e.args[-1]))
    if isinstance(e, Ones):
        return Identity(e.rows)
    if isinstance(e, Zero):
        return Zero((e.rows, e.rows))
    return Diag(e, (e.rows, e.rows))


def diag_part(e: Expr) -> Expr:
    """Square matrix -> vector of its diagonal."""
    if e.is_scalar:
        return e
    if isinstance(e, Diag):
        return e.arg
    if isinstance(e, Transpose):
        return diag_part(e.arg)
    if isinstance(e, Mul):
        return mul(*e.args[:-1], diag_part(e.args[-1]))
    if isinstance(e, Identity):
        return Ones((e.n, ONE))
    if isinstance(e, Zero):
        return Zero((e.rows, ONE))
    if isinstance(e, Add):
        return add(*[diag_part(t) for t in e.args])
    return DiagPart(e, (e.rows, ONE))


def vec(e: Expr) -> Expr:
    if e.cols == 1:
        return e
    if e.rows == 1:
        return transpose(e)
    if isinstance(e, Mul):
        return mul(*e.args[:-1], vec(e.args[-1]))
    if isinstance(e, Zero):
        return Zero((e.rows * e.cols, ONE))
    if isinstance(e, Ones):
        return Ones((e.rows * e.cols, ONE))
    if isinstance(e, Reshape):
        return vec(e.arg)
    return Vec(e, (e.rows * e.cols, ONE))


def reshape(e: Expr, rows, cols) -> Expr:
    rows, cols = Dim.of(rows), Dim.of(cols)
    if (rows, cols) == e.shape:
        return e
    if isinstance(e, Vec) and e.arg.shape == (rows, cols):
        return e.arg
    if isinstance(e, Mul):
        return mul(*e.args[:-1], reshape(e.args[-1], rows, cols))
    if isinstance(e, Add):
        return add(*[reshape(t, rows, cols) for t in e.args])
    if isinstance(e, Ones):
        return Ones((rows, cols))
    if isinstance(e, Zero):
        return zero((rows, cols))
    if cols == 1:
        return vec(e) if e.rows == 1 else Reshape(e, (rows, cols))
    if e.shape == (cols, rows) and (rows == 1 or cols == 1):
        return transpose(e)
    return Reshape(e, (rows, cols))


def sum_(e: Expr) -> Expr:
    if e.is_scalar:
        return e
    if isinstance(e, Mul):
        return mul(*e.args[:-1], sum_(e.args[-1]))
    if isinstance(e, Transpose):
        return sum_(e.arg)
    if isinstance(e, Add):
        return add(*[sum_(t) for t in e.args])
    if isinstance(e, Zero):
        return Num(0)
    if isinstance(e, Ones) and e.rows.is_int and e.cols.is_int:
        return Num(e.rows.coef * e.cols.coef)
    if isinstance(e, Identity) and e.n.is_int:
        return Num(e.n.coef)
    if isinstance(e, Kron):
        return mul(sum_(e.a), sum_(e.b))
    return Sum(e, (1, 1))


def norm1(e: Expr) -> Expr:
    if isinstance(e, Transpose):
        return norm1(e.arg)
    if e.is_scalar:
        return elementwise("abs", e)
    return Norm1(e, (1, 1))


def norm2(e: Expr) -> Expr:
    if isinstance(e, Transpose):
        return norm2(e.arg)
    if e.is_scalar:
        return elementwise("abs", e)
    return Norm2(e, (1, 1))


def kron(a: Expr, b: Expr) -> Expr:
    if a.is_scalar:
        return mul(a, b)
    if b.is_scalar:
        return mul(b, a)
    if is_zero(a) or is_zero(b):
        return Zero((a.rows * b.rows, a.cols * b.cols))
    if isinstance(a, Mul) or isinstance(b, Mul):
        sa, ba = (a.args[:-1], a.args[-1]) if isinstance(a, Mul) else ((), a)
        sb, bb = (b.args[:-1], b.args[-1]) if isinstance(b, Mul) else ((), b)
        return mul(*sa, *sb, kron(ba, bb))
    if isinstance(a, Identity) and isinstance(b, Identity):
        return Identity(a.n * b.n)
    return Kron(a, b)


def commutation(m, n) -> Expr:
    m, n = Dim.of(m), Dim.of(n)
    if m == 1 or n == 1:
        return identity(m * n)
    return Commutation(m, n)


def inner(a: Expr, b: Expr) -> Expr:
    """<a, b> = sum(a .* b), written as people do: a'b for vectors, tr(A'B) for matrices."""
    if a.is_scalar:
        return mul(a, b)
    if a.cols == 1:
        return matmul(transpose(a), b)
    if a.rows == 1:
        return matmul(a, transpose(b))
    return trace(matmul(transpose(a), b))


def rebuild(e: Expr, children: list) -> Expr:
    """The node ``e`` with new children, built through the smart constructors."""
    if isinstance(e, Add):
        return add(*children)
    if isinstance(e, Mul):
        return mul(*children)
    if isinstance(e, MatMul):
        return matmul(*children)
    if isinstance(e, Hadamard):
        return hadamard(*children)
    if isinstance(e, Power):
        return power(*children)
    if isinstance(e, Kron):
        return kron(*children)
    if isinstance(e, MatPow):
        return matpow(children[0], e.k)
    if isinstance(e, Elementwise):
        return elementwise(e.fn, children[0])
    if isinstance(e, Reshape):
        return reshape(children[0], e.rows, e.cols)
    if isinstance(e, AdjDiff):
        return adj_diff(*children)
    if isinstance(e, AdjJacobian):
        return adj_jacobian(*children)
    unary = {Transpose: transpose, Inverse: inverse, Trace: trace, Det: det, LogDet: logdet,
             Adj: adj, Diag: diag, DiagPart: diag_part, Vec: vec, Sum: sum_, Norm1: norm1, Norm2: norm2}
    if type(e) in unary:
        return unary[type(e)](children[0])
    if isinstance(e, (MatFun, Frechet, FrechetMatrix)):
        return _rebuild_matfun(e, children)
    return e  # leaves


def substitute(e: Expr, mapping: dict) -> Expr:
    """Replace nodes (keys of ``mapping``) by expressions, rebuilding through the constructors."""
    memo: dict = {}

    def go(node):
        if node in mapping:
            return mapping[node]
        if not node.children:
            return node
        if node in memo:
            return memo[node]
        out = rebuild(node, [go(c) for c in node.children])
        memo[node] = out
        return out

    return go(e)


# ---------------------------------------------------------------------------------------------
# Primary matrix functions (expm, logm, sqrtm) and their Frechet derivatives
# ---------------------------------------------------------------------------------------------
#
# For a primary matrix function f (defined through the eigenvalues, not entry by entry):
#   f(X + E) = f(X) + L_f(X)[E] + ...,  L_f(X) the Frechet derivative, linear in E;
#   L^(k)_f(X)[E1, ..., Ek] the k-th derivative, multilinear and symmetric in the directions;
#   for E commuting with X, L_f(X)[E] = f'(X) E (and likewise for every order);
#   with real Taylor coefficients, L_f(X)' = L_f(X') as maps, and the adjoint of E -> L_f(X)[E]
#   under <A, B> = tr(A'B) is G -> L_f(X')[G].

MATFUNS = ("expm", "logm", "sqrtm")
MAX_FRECHET_ORDER = 4      # evaluated through a 2^k n block matrix: 16 n at the highest order
_ELEMENTWISE_TWIN = {"expm": "exp", "logm": "log", "sqrtm": "sqrt"}


def frechet_name(fn: str, k: int) -> str:
    """dexpm, d2expm, ...: the name of the k-th Frechet derivative in the language."""
    return ("d" if k == 1 else f"d{k}") + fn


def frechet_matrix_name(fn: str) -> str:
    """jexpm: the matrix of the Frechet derivative in its last direction (vec form)."""
    return "j" + fn


def matfun_names() -> dict:
    """Every name of the language for these functions -> (kind, fn, order): kind is 'f' (the
    function), 'd' (a Frechet derivative of that order) or 'j' (its matrix, of that order)."""
    names = {}
    for fn in MATFUNS:
        names[fn] = ("f", fn, 0)
        for k in range(1, MAX_FRECHET_ORDER + 1):
            names[frechet_name(fn, k)] = ("d", fn, k)
        names[frechet_matrix_name(fn)] = ("j", fn, 0)
    return names


class MatFun(Expr):
    """expm(X), logm(X), sqrtm(X): principal matrix functions of a square matrix."""

    __slots__ = ("fn", "arg")
    _fields = ("fn", "arg")

    def __init__(self, fn: str, arg: Expr):
        self.fn, self.arg = fn, arg
        self._init(arg.shape)

    @property
    def children(self):
        return (self.arg,)

    def _make_key(self):
        return f"{self.fn}({self.arg.key})"


class Frechet(Expr):
    """L^(k)_f(X)[E1, ..., Ek], printed dexpm(X, E), d2expm(X, E1, E2), ... (k = len(directions))."""

    __slots__ = ("fn", "arg", "directions")
    _fields = ("fn", "arg", "directions")

    def __init__(self, fn: str, arg: Expr, directions: tuple):
        self.fn, self.arg, self.directions = fn, arg, tuple(directions)
        self._init(arg.shape)

    @property
    def children(self):
        return (self.arg,) + self.directions

    @property
    def order(self) -> int:
        return len(self.directions)

    def _make_key(self):
        return f"{frechet_name(self.fn, self.order)}({','.join(c.key for c in self.children)})"


class FrechetMatrix(Expr):
    """K with vec(L^(k+1)_f(X)[E1, ..., Ek, F]) = K vec(F): the Jacobian of the Frechet derivative in
    its last direction, n^2 x n^2; printed jexpm(X), jexpm(X, E1), ..."""

    __slots__ = ("fn", "arg", "directions")
    _fields = ("fn", "arg", "directions")

    def __init__(self, fn: str, arg: Expr, directions: tuple):
        self.fn, self.arg, self.directions = fn, arg, tuple(directions)
        n = arg.rows
        self._init((n * n, n * n))

    @property
    def children(self):
        return (self.arg,) + self.directions

    def _make_key(self):
        return f"{frechet_matrix_name(self.fn)}({','.join(c.key for c in self.children)})"


def matfun(fn: str, arg: Expr) -> Expr:
    """f(X); on a scalar the ordinary function, f(I) and f(0) folded, expm(logm(X)) = X."""
    if arg.is_scalar:
        return elementwise(_ELEMENTWISE_TWIN[fn], arg)
    if isinstance(arg, Identity):
        return {"expm": lambda: mul(elementwise("exp", Num(1)), arg), "logm": lambda: Zero(arg.shape),
                "sqrtm": lambda: arg}[fn]()
    if isinstance(arg, Zero) and fn != "logm":
        return Identity(arg.rows) if fn == "expm" else arg
    if fn == "expm" and isinstance(arg, MatFun) and arg.fn == "logm":
        return arg.arg
    return MatFun(fn, arg)


_ALL = "commutes with every matrix"


def function_base(e: Expr):
    """The matrix M of which e is a function (a scalar multiple, power, inverse, expm, logm, sqrtm,
    or a sum of those and of multiples of I), so that e commutes with every other function of M;
    ``_ALL`` for a multiple of I."""
    while True:
        if isinstance(e, Mul) and not e.is_scalar:
            e = e.args[-1]
        elif isinstance(e, (Inverse, MatPow, MatFun)):
            e = e.arg
        else:
            break
    if isinstance(e, Identity):
        return _ALL
    if isinstance(e, Add):
        bases = {function_base(t) for t in e.args} - {_ALL}
        if not bases:
            return _ALL
        return bases.pop() if len(bases) == 1 else e
    return e


def commute(a: Expr, b: Expr) -> bool:
    """True when a and b are known to commute (functions of one matrix, or a multiple of I)."""
    if a.is_scalar or b.is_scalar:
        return True
    ba, bb = function_base(a), function_base(b)
    return ba is _ALL or bb is _ALL or ba == bb


def _falling(k: int, c: Fraction) -> Fraction:
    """c (c - 1) ... (c - k + 1): the k-th derivative of x^c is this times x^(c - k)."""
    out = Fraction(1)
    for i in range(k):
        out *= c - i
    return out


def matfun_derivative(fn: str, x: Expr, k: int) -> Expr:
    """f^(k)(X) as a matrix function: what L^(k)_f(X) multiplies directions that commute with X by."""
    if fn == "expm":
        return matfun("expm", x)
    if fn == "logm":  # d^k log = (-1)^(k-1) (k-1)! x^-k
        return scale(_falling(k - 1, Fraction(-1)), matpow(x, -k))
    # d^k x^(1/2) = (1/2)(-1/2)...(3/2 - k) x^(1/2 - k) = c_k inv(sqrtm(X)) X^(1 - k)
    return scale(_falling(k, Fraction(1, 2)), matmul(inverse(matfun("sqrtm", x)), matpow(x, 1 - k)))


def _strip_scalars(d: Expr):
    if isinstance(d, Mul) and not d.is_scalar:
        return list(d.args[:-1]), d.args[-1]
    return [], d


def frechet(fn: str, arg: Expr, directions) -> Expr:
    """L^(k)_f(X)[E1, ..., Ek]: linear in each direction, so scalar factors come out; directions
    that commute with X give f^(k)(X) E1 ... Ek; for expm a direction I drops an order."""
    directions = tuple(directions)
    if not directions:
        return matfun(fn, arg)
    if len(directions) > MAX_FRECHET_ORDER:
        from .errors import MathError
        raise MathError(f"derivatives of {fn} of order above {MAX_FRECHET_ORDER} are not supported",
                        hint="differentiate an expression with fewer nested derivatives")
    if any(is_zero(d) for d in directions):
        return zero(arg.shape)
    scalars, bodies = [], []
    for d in directions:
        s, body = _strip_scalars(d)
        scalars += s
        bodies.append(body)
    if arg.is_scalar:
        return mul(*scalars, *bodies, matfun_derivative(fn, arg, len(bodies)))
    if fn == "expm" and any(isinstance(b, Identity) for b in bodies):
        # expm(X + tI) = e^t expm(X): a direction I lowers the order by one
        rest = [b for b in bodies if not isinstance(b, Identity)]
        return mul(*scalars, frechet(fn, arg, rest))
    if all(commute(b, arg) for b in bodies):
        return mul(*scalars, matmul(*bodies, matfun_derivative(fn, arg, len(bodies))))
    bodies.sort(key=lambda b: b.key)   # symmetric in the directions: one canonical order
    return mul(*scalars, Frechet(fn, arg, tuple(bodies)))


def frechet_matrix(fn: str, arg: Expr, directions=()) -> Expr:
    directions = tuple(directions)
    if len(directions) >= MAX_FRECHET_ORDER:
        from .errors import MathError
        raise MathError(f"derivatives of {fn} of order above {MAX_FRECHET_ORDER} are not supported")
    if any(is_zero(d) for d in directions):
        n = arg.rows
        return zero((n * n, n * n))
    scalars, bodies = [], []
    for d in directions:
        s, body = _strip_scalars(d)
        scalars += s
        bodies.append(body)
    if arg.is_scalar:   # the 1 x 1 matrix of F -> f^(k+1)(x) E1 ... Ek F
        return mul(*scalars, *bodies, matfun_derivative(fn, arg, len(bodies) + 1))
    bodies.sort(key=lambda b: b.key)
    return mul(*scalars, FrechetMatrix(fn, arg, tuple(bodies)))


def _transpose_matfun(e: Expr):
    """f(X)' = f(X') and L_f(X)[E]' = L_f(X')[E'] (real Taylor coefficients); None for other nodes."""
    if isinstance(e, MatFun):
        return matfun(e.fn, transpose(e.arg))
    if isinstance(e, Frechet):
        return frechet(e.fn, transpose(e.arg), [transpose(d) for d in e.directions])
    return None


def _rebuild_matfun(e: Expr, children: list):
    if isinstance(e, MatFun):
        return matfun(e.fn, children[0])
    if isinstance(e, Frechet):
        return frechet(e.fn, children[0], children[1:])
    if isinstance(e, FrechetMatrix):
        return frechet_matrix(e.fn, children[0], children[1:])
    return None
