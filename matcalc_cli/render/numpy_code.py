"""IR -> a self-contained Python module that computes f and its derivatives with NumPy.

``to_numpy_module(derivation)`` writes one function per result, ``f``, ``differential``,
``gradient``, ``jacobian``, ``hessian_bilinear``, ``hessian`` (those that were derived), each a
direct translation of the symbolic result: no numerical differentiation.  Every function takes the
program's variables as keyword arguments named as in the program (``f(**{"lambda": 2.0, ...})``
works for names that are Python keywords); every dimension is read from the arguments' shapes.

Inside the functions every matrix is a 2-D array (a vector n x 1), as in the IR, and every 1 x 1
value that arithmetic allows is a NumPy scalar (scalar arguments, inner products, sums, traces):
arithmetic on numbers costs far less than on 1 x 1 arrays, and NumPy's rules (NaN, inf, a
warning) still hold; an operation that needs a matrix gets a 1 x 1 array.  Inputs are converted
on the way in, checked once per combination of shapes (``_inputs``), and outputs on the way out
(a float for a scalar, a 1-D array for a vector, a 2-D array otherwise; Jacobians and Hessians
are always 2-D).  Repeated subtrees are computed once into temporaries (common-subexpression
elimination).

One ``_print_X`` method per node kind, as in the text printer; parentheses come from one
precedence table (Python's).
"""

from __future__ import annotations

import keyword
import textwrap
from fractions import Fraction

from .. import __version__
from .. import expr as E
from ..dims import Dim
from . import lowering as L
from .documents import ORDER as FUNCTION_ORDER  # results in the order every format uses
from .documents import ordered_results

# Python precedence, loosest first (what matters here)
ADD, MUL, UNARY, POW, ATOM = 1, 2, 3, 4, 5

# n-ary operations longer than this are split into temporaries (Python compiles deep chains badly)
CHUNK = 24
# an inline expression longer than this gets a temporary of its own
LINE_LIMIT = 88


# helpers the generated module may need, by name; only those used are written out
HELPERS = {
    "_logdet": '''def _logdet(a):
    """log(det(a)) via slogdet: NaN when det(a) < 0, -inf when a is singular."""
    sign, value = np.linalg.slogdet(a)
    return value if sign > 0 else np.float64(-np.inf if sign == 0 else np.nan)''',
    "_adj": '''def _adj(a):
    """The adjugate, also of a singular matrix: with a = U S V', adj(a) = det(U) det(V) V adj(S) U'."""
    n = a.shape[0]
    if n == 1:
        return np.ones((1, 1))
    u, s, vh = np.linalg.svd(a)
    adj_s = np.array([np.prod(np.delete(s, i)) for i in range(n)])
    return np.linalg.det(u) * np.linalg.det(vh) * (vh.T * adj_s) @ u.T''',
    "_adj_diff": '''def _adj_diff(a, *dirs):
    """d^k adj(a)[d1, ..., dk], exact at every a, singular or not.

    For a rank-one direction u e_c' the map t -> adj(a + t u e_c') is affine (each cofactor is the
    determinant of a rank-one update), so adj(a + sum t_j u_j e_cj') is multi-affine and its
    coefficient of t_1...t_k is a signed sum of 2^k adjugates; d^k adj is multilinear, so it is
    the sum of those over the columns c_1..c_k (distinct: equal columns give a rank-one sum)."""
    import itertools
    n, k = a.shape[0], len(dirs)
    out = np.zeros((n, n))
    if k >= n:
        return out
    scale = np.linalg.norm(a) / np.sqrt(n) or 1.0
    for cols in itertools.permutations(range(n), k):
        us = [d[:, c] for d, c in zip(dirs, cols)]
        sizes = [np.linalg.norm(u) for u in us]
        if not all(sizes):
            continue
        coef = np.zeros((n, n))
        for mask in range(2 ** k):
            m, sign = a.astype(float).copy(), (-1) ** k
            for j in range(k):
                if mask >> j & 1:
                    m[:, cols[j]] += us[j] * (scale / sizes[j])
                    sign = -sign
            coef += sign * _adj(m)
        out += coef * np.prod([s / scale for s in sizes])
    return out''',
    "_adj_jacobian": '''def _adj_jacobian(a, *dirs):
    """J with vec(d^(k+1) adj(a)[d1, ..., dk, e]) = J vec(e), column by column."""
    n = a.shape[0]
    J = np.zeros((n * n, n * n))
    for c in range(n):
        for r in range(n):
            e = np.zeros((n, n))
            e[r, c] = 1.0
            J[:, r + c * n] = _adj_diff(a, *dirs, e).reshape(-1, order="F")
    return J''',
    "_diag_part": '''def _diag_part(a):
    return np.diag(a).reshape(-1, 1).copy()''',
    "_vec": '''def _vec(a):
    """Column-major vec: the columns of a stacked into one column."""
    return a.reshape(-1, 1, order="F")''',
    "_reshape": '''def _reshape(a, rows, cols):
    """Column-major reshape, the inverse of vec."""
    return a.reshape((rows, cols), order="F")''',
    "_norm2": '''def _norm2(a):
    """Euclidean norm of a vector, Frobenius norm of a matrix."""
    return np.sqrt(np.vdot(a, a))''',
    "_commutation": '''def _commutation(m, n):
    """K (mn x mn) with K vec(X) = vec(X') for X m x n."""
    K = np.zeros((m * n, m * n))
    i, j = np.meshgrid(np.arange(m), np.arange(n), indexing="ij")
    K[(j + i * n).ravel(), (i + j * m).ravel()] = 1.0
    return K''',
    "_kron": '''def _kron(a, b):
    """kron(a, b) as one broadcast product (np.kron has a large fixed cost on small matrices)."""
    return (a[:, None, :, None] * b[None, :, None, :]).reshape(a.shape[0] * b.shape[0], a.shape[1] * b.shape[1])''',
    "_kron_matmul": '''def _kron_matmul(a, b, y, p, q):
    """kron(a, b) @ y without forming the Kronecker product: column c of y is vec(Y_c) with Y_c
    q x p, and kron(a, b) vec(Y_c) = vec(b Y_c a').  a is t x p, b is s x q; None is an identity."""
    r = y.shape[1]
    z = y.reshape(q, p, r, order="F")
    if b is not None:
        z = np.tensordot(b, z, axes=(1, 0))                  # s x p x r
    if a is not None:
        z = np.tensordot(z, a, axes=(1, 1)).transpose(0, 2, 1)  # s x t x r
    return z.reshape(-1, r, order="F")''',
    "_matmul_kron": '''def _matmul_kron(y, a, b, t, s):
    """y @ kron(a, b) = (kron(a', b') @ y')' without forming the Kronecker product.  a is t x p,
    b is s x q; None is an identity."""
    at = None if a is None else a.T
    bt = None if b is None else b.T
    return _kron_matmul(at, bt, y.T, t, s).T''',
    "_commute_rows": '''def _commute_rows(y, m, n):
    """commutation(m, n) @ y: each column vec(X), X m x n, becomes vec(X'); a permutation of rows."""
    return y.reshape(n, m, -1).transpose(1, 0, 2).reshape(m * n, -1)''',
    "_commute_cols": '''def _commute_cols(y, m, n):
    """y @ commutation(m, n): a permutation of columns."""
    return y.reshape(-1, m, n).transpose(0, 2, 1).reshape(-1, m * n)''',
    "_plus_diagonal": '''def _plus_diagonal(a, c, fresh):
    """a + c I without forming I: in place when a is a new array."""
    a = a if fresh else a.copy()
    a.flat[::a.shape[0] + 1] += np.asarray(c, dtype=float).reshape(-1)
    return a''',
    "_sigmoid": '''def _sigmoid(a):
    return 0.5 * (1.0 + np.tanh(0.5 * a))''',
    "_relu": '''def _relu(a):
    return np.maximum(a, 0.0)''',
    "_step": '''def _step(a):
    """Heaviside step (a > 0), the derivative of relu."""
    return (a > 0).astype(float)''',
}

# matrix functions: these helpers use SciPy, which a module imports only when it needs one of them
SCIPY_HELPERS = {
    "_expm": '''def _expm(a):
    return scipy.linalg.expm(a)''',
    "_logm": '''def _logm(a):
    """The principal logarithm: real for a real matrix with no eigenvalue on the closed negative axis."""
    return _real(scipy.linalg.logm(a))''',
    "_sqrtm": '''def _sqrtm(a):
    """The principal square root: real for a real matrix with no eigenvalue on the closed negative axis."""
    return _real(scipy.linalg.sqrtm(a))''',
    "_real": '''def _real(a):
    """The real matrix a complex result stands for (NaN where it is genuinely complex)."""
    if np.iscomplexobj(a):
        if np.max(np.abs(a.imag), initial=0.0) > 1e-8 * max(1.0, np.max(np.abs(a), initial=0.0)):
            return np.full(a.shape, np.nan)
        return a.real.copy()
    return a''',
    "_dexpm": '''def _dexpm(a, e):
    """The Frechet derivative of expm at a in the direction e."""
    return scipy.linalg.expm_frechet(a, e, compute_expm=False)''',
    "_dsqrtm": '''def _dsqrtm(a, e):
    """The Frechet derivative of sqrtm at a in the direction e: the l with s l + l s = e, s = sqrtm(a)."""
    s = _sqrtm(a)
    return scipy.linalg.solve_sylvester(s, s, e)''',
    "_frechet": '''def _frechet(f, a, *directions):
    """The k-th Frechet derivative of the matrix function f at a in the directions: the top-right
    block of f of the 2^k block matrix X_j = [[X_(j-1), kron(I, E_j)], [0, X_(j-1)]], X_0 = a
    (Higham and Relton 2014); each direction is scaled to the size of a first (the map is linear)."""
    n = a.shape[0]
    size = max(np.linalg.norm(a), 1e-300)
    factor, block = 1.0, a
    for e in directions:
        norm = np.linalg.norm(e)
        if norm == 0.0:
            return np.zeros((n, n))
        factor *= norm / size
        upper = np.kron(np.eye(block.shape[0] // n), e * (size / norm))
        block = np.block([[block, upper], [np.zeros_like(block), block]])
    return factor * f(block)[:n, -n:]''',
    "_frechet_matrix": '''def _frechet_matrix(derivative, a, *directions):
    """K with vec(derivative(a, *directions, F)) = K vec(F): column q from the q-th unit matrix."""
    n = a.shape[0]
    columns = []
    for q in range(n * n):
        unit = np.zeros(n * n)
        unit[q] = 1.0
        columns.append(derivative(a, *directions, unit.reshape((n, n), order="F")).reshape(-1, order="F"))
    return np.column_stack(columns)''',
}
HELPERS.update(SCIPY_HELPERS)
# helpers that call others
# helpers that call other helpers
HELPER_NEEDS = {"_logm": ("_real",), "_sqrtm": ("_real",), "_dsqrtm": ("_sqrtm", "_real"),
                "_matmul_kron": ("_kron_matmul",)}


INPUT_HELPERS = '''def _dim_value(spec, dims):
    """The size a dimension spec ("n", "m*n", "n^2", 3) stands for; None if a symbol is unknown."""
    if isinstance(spec, int):
        return spec
    value = 1
    for factor in spec.split("*"):
        base, _, power = factor.partition("^")
        if base.isdigit():
            size = int(base)
        elif base in dims:
            size = dims[base]
        else:
            return None
        value *= size ** int(power or 1)
    return value


_CHECKED = {}   # (spec, argument names, types and shapes) -> (how to take each argument, sizes)


def _inputs(vars, spec):
    """The arguments a function uses (spec: their names, directions, the sizes it needs), as 2-D
    float arrays (scalars as NumPy scalars, vectors n x 1), then those sizes, in one tuple.
    Arguments of the types and shapes of an earlier call skip the checks (they depend on those
    alone): each is taken as it is, as a column, or converted."""
    key = [spec]
    for k, v in vars.items():
        if type(v) is np.ndarray:
            key += (k, v.shape, v.dtype.char)
        elif k in _FREE_DIMS:
            key += (k, v)
        else:
            key += (k, type(v), np.shape(v))
    key = tuple(key)
    known = _CHECKED.get(key)
    if known is None:
        known = _inputs_plan(vars, spec)
        if len(_CHECKED) < 64:
            _CHECKED[key] = known
    plan, sizes = known
    out = []
    for name, how, shape in plan:
        v = vars[name]
        if how == 0:                  # already a float array of the right shape
            out.append(v)
        elif how == 1:                # a 1-D float vector: its column
            out.append(v[:, None])
        elif how == 2:                # a scalar
            out.append(np.float64(v) if type(v) is float or type(v) is int
                       else np.asarray(v, dtype=float).reshape(-1)[0])
        else:
            out.append(np.asarray(v, dtype=float).reshape(shape))
    return (*out, *sizes)


def _inputs_plan(vars, spec):
    """Check the arguments; how to take each one the function uses, and the sizes it needs."""
    names, directions, need = spec
    arrays, dims = _inputs_checked(vars, directions, need)
    plan = []
    for name in names:
        v, a = vars[name], arrays[name]
        if a.shape == (1, 1) and _is_scalar(name, directions):
            how = 2
        elif type(v) is np.ndarray and v.dtype.type is np.float64 and v.shape == a.shape:
            how = 0
        elif type(v) is np.ndarray and v.dtype.type is np.float64 and v.ndim == 1:
            how = 1
        else:
            how = 3
        plan.append((name, how, a.shape))
    return tuple(plan), tuple(dims[s] for s in need)


def _is_scalar(name, directions):
    of = dict(directions).get(name, name)
    return any(n == of and kind == "scalar" for n, kind, *_ in _VARIABLES)


def _inputs_checked(vars, directions=(), need=()):
    """Check and convert the keyword arguments: 2-D float arrays (scalars 1 x 1, vectors n x 1)
    and the dimension sizes read from their shapes."""
    wanted = {name: spec for name, *spec in _VARIABLES}
    wanted.update((name, wanted[of]) for name, of in directions)
    required = [name for name, *_, req in _VARIABLES if req] + [name for name, _ in directions]
    unknown = sorted(set(vars) - set(wanted) - set(_FREE_DIMS))
    if unknown:
        raise TypeError("unexpected argument(s): " + ", ".join(unknown)
                        + "; expected: " + ", ".join(required))
    missing = [name for name in required if name not in vars]
    if missing:
        raise TypeError("missing argument(s): " + ", ".join(missing))
    dims = {name: int(vars[name]) for name in _FREE_DIMS if name in vars}
    arrays, pending = {}, []  # pending: (argument, dimension spec, size)
    for name in wanted:
        if name not in vars:
            continue
        kind, rows, cols, symmetric, _ = wanted[name]
        a = np.asarray(vars[name], dtype=float)
        if kind == "scalar":
            if a.size != 1:
                raise ValueError(f"{name} must be a scalar, got an array of shape {a.shape}")
            a = a.reshape(1, 1)
        elif kind == "vector":
            if a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 1):
                a = a.reshape(-1, 1)
            else:
                raise ValueError(f"{name} must be a vector (1-D array), got shape {a.shape}")
        elif a.ndim != 2:
            raise ValueError(f"{name} must be a matrix (2-D array), got shape {a.shape}")
        # a symmetric variable is taken as given: f at a non-symmetric matrix is the expression's
        # value there, so finite differences entry by entry, symmetrized, give the gradient
        pending += [(name, rows, a.shape[0]), (name, cols, a.shape[1])]
        arrays[name] = a
    progress = True
    while progress:  # bind symbols from the shapes; m*n with m known gives n
        progress = False
        for item in list(pending):
            name, spec, size = item
            value = _dim_value(spec, dims)
            if value is None:
                factors = [f.partition("^") for f in str(spec).split("*")]
                unknown = [(base, power) for base, _, power in factors if not base.isdigit() and base not in dims]
                if len(unknown) != 1 or unknown[0][1]:
                    continue
                rest = _dim_value("*".join(f for f in str(spec).split("*") if f != unknown[0][0]) or 1, dims)
                if size % rest == 0:
                    dims[unknown[0][0]] = size // rest
                    value = size
                    progress = True
            if value != size:
                raise ValueError(f"{name}: a dimension of size {size} does not match {spec}"
                                 + ("" if value is None else f" = {value}") + " from the other arguments")
            pending.remove(item)
    for name, spec, size in pending:  # a product of sizes no argument gives alone: known as a whole
        if dims.setdefault(spec, size) != size:
            raise ValueError(f"{name}: a dimension of size {size} does not match {spec} = {dims[spec]}"
                             " from the other arguments")
    for symbol in need:
        if symbol not in dims and _dim_value(symbol, dims) is not None:
            dims[symbol] = _dim_value(symbol, dims)
        if symbol not in dims:
            raise TypeError(f"cannot tell the size {symbol} from the arguments: pass {symbol}=<int>")
    return arrays, dims


def _out(a, shape, kind):
    """A result in the caller's form: a float, a 1-D array (vector) or a 2-D array."""
    if type(a) is np.ndarray and a.shape == shape and a.dtype.type is np.float64:
        return a if kind == "matrix" else a.reshape(-1) if kind == "vector" else float(a[0, 0])
    a = np.asarray(a, dtype=float)
    if a.shape != shape:
        if a.size != 1:
            raise ValueError(f"internal error: result of shape {a.shape}, expected {shape}")
        a = np.full(shape, a.reshape(-1)[0])
    if kind == "scalar":
        return float(a[0, 0])
    if kind == "vector":
        return a.reshape(-1)
    return a'''


def _kind(shape) -> str:
    r, c = shape
    if r == 1 and c == 1:
        return "scalar"
    if c == 1:
        return "vector"
    return "matrix"


def _dim_spec(d: Dim):
    return d.coef if d.is_int else str(d)


def _num_literal(value) -> tuple:
    """(code, precedence) of a number."""
    if isinstance(value, Fraction) and max(abs(value.numerator), value.denominator) > 2 ** 53:
        # beyond 2^53 NumPy would take an int for int64 (and wrap or refuse): write the double
        code = repr(float(value))
    elif isinstance(value, Fraction):
        if value.denominator == 1:
            code = str(value.numerator)
        else:
            return f"{value.numerator} / {value.denominator}", MUL
    else:
        code = repr(float(value))
        if code in ("inf", "-inf", "nan"):
            code = {"inf": "np.inf", "-inf": "-np.inf", "nan": "np.nan"}[code]
    return code, (UNARY if code.startswith("-") else ATOM)


class Names:
    """Local names: the program's own where Python allows, otherwise with a trailing underscore."""

    def __init__(self, reserved):
        self.taken = set(reserved)

    def take(self, preferred: str) -> str:
        name = preferred
        if keyword.iskeyword(name) or name in self.taken:
            name = preferred + "_"
        i = 1
        while keyword.iskeyword(name) or name in self.taken:
            name = f"{preferred}_{i}"
            i += 1
        self.taken.add(name)
        return name


RESERVED = {"np", "scipy", "vars", "f", "a", "d", "float", "int", "abs", "sum"} | set(FUNCTION_ORDER) | set(HELPERS) | {
    "_inputs", "_inputs_checked", "_inputs_plan", "_is_scalar", "_CHECKED", "_out", "derivatives", "hvp", "_hvp", "_dim_value", "_VARIABLES", "_FREE_DIMS", "_DIRECTIONS"}


class _Code:
    """Code of a value: its precedence, the code of its negation when cheap (positive), and
    whether it is a NumPy scalar (a 1 x 1 value kept as a number, not as an array)."""
    __slots__ = ("code", "prec", "positive", "scalar")

    def __init__(self, code, prec, positive=None, scalar=False):
        self.code, self.prec, self.positive, self.scalar = code, prec, positive, scalar


class FunctionWriter:
    """Translates one expression into the body of one function, with temporaries for shared subtrees."""

    def __init__(self, var_names: dict, names: Names, dims: "Dimensions"):
        self.var_names = var_names      # program name -> local name
        self.names = names
        self.dims = dims
        self.lines: list = []
        self.helpers: set = set()
        self.used_vars: set = set()
        self.used_dims: set = set()
        self.done: dict = {}
        self.temps: set = set()
        self.counter = 0

    # --- driver ---------------------------------------------------------------------------------
    def translate(self, root: E.Expr) -> str:
        return self.translate_all([root])[0]

    def translate_all(self, roots: list) -> list:
        """Code for each root; subtrees shared within and across the roots are computed once."""
        return [c.code for c in self.translate_codes(roots)]

    def translate_codes(self, roots: list) -> list:
        """As translate_all, the _Code of each root (which says whether it is a NumPy scalar)."""
        order, uses, parents = self._topological(roots)
        # inv(A) and inv(A') both needed: one inversion, the other its transpose
        bases = [_inverse_base(n)[0] for n in order if isinstance(n, E.Inverse)]
        self.shared_inverses = {b for b in bases if bases.count(b) > 1}
        self.inverses: dict = {}
        # structured operators used only as factors of products are applied, never formed
        self.operators = {node for node in order if isinstance(node, OPERATORS)
                          and node not in roots and parents[node] <= {E.MatMul}
                          and (not isinstance(node, E.Inverse)
                               or (uses[node] == 1 and _inverse_base(node)[0] not in self.shared_inverses))}
        done = self.done = {}
        for node in order:
            kids = [done[c] for c in node.children]
            if not isinstance(node, TAKES_SCALARS):
                kids = [self.array(k) for k in kids]
            code = getattr(self, "_print_" + type(node).__name__)(node, kids)
            cheap = isinstance(node, (E.Var, E.Num, E.Ones)) or node in self.operators
            if node not in roots and not cheap and (uses[node] > 1 or len(code.code) > LINE_LIMIT):
                code = self.temporary(code.code, code.scalar)
                self.temps.add(node)
            done[node] = code
        return [done[r] for r in roots]

    @staticmethod
    def array(code: _Code) -> _Code:
        """The code as a 2-D array: a NumPy scalar becomes 1 x 1 where an operation needs a matrix."""
        return _Code(f"np.full((1, 1), {code.code})", ATOM) if code.scalar else code

    def _topological(self, roots):
        """Distinct nodes in dependency order, how many times each is used by its parents, and
        the kinds of those parents."""
        uses: dict = {root: 1 for root in roots}
        parents: dict = {root: set() for root in roots}
        order: list = []
        placed: set = set()
        stack = [(root, False) for root in reversed(roots)]
        while stack:
            node, ready = stack.pop()
            if node in placed:
                continue
            if ready:
                placed.add(node)
                order.append(node)
                for c in node.children:
                    uses[c] = uses.get(c, 0) + 1
                    parents.setdefault(c, set()).add(type(node))
                continue
            stack.append((node, True))
            stack.extend((c, False) for c in reversed(node.children) if c not in placed)
        return order, uses, parents

    def temporary(self, code: str, scalar: bool = False) -> _Code:
        self.counter += 1
        name = self.names.take(f"t{self.counter}")
        self.lines.append(f"{name} = {code}")
        return _Code(name, ATOM, scalar=scalar)

    def wrap(self, c: _Code, level: int) -> str:
        return f"({c.code})" if c.prec < level else c.code

    def dim(self, d: Dim) -> str:
        """Code for a size: a product of the locals the dimensions module decided on."""
        parts = [] if d.coef == 1 and d.factors else [str(d.coef)]
        for key, p in self.dims.split(Dim(1, d.factors)):
            self.used_dims.add(key)
            local = self.dims.local[key]
            parts.append(local if p == 1 else f"{local} ** {p}")
        return " * ".join(parts)

    def shape(self, shape) -> str:
        return f"({self.dim(shape[0])}, {self.dim(shape[1])})"

    def call(self, fn: str, *args: str) -> _Code:
        if fn.startswith("_"):
            self.need(fn)
        return _Code(f"{fn}({', '.join(args)})", ATOM)

    def scalar_call(self, fn: str, *args: str) -> _Code:
        """A call whose value is a NumPy scalar."""
        code = self.call(fn, *args)
        code.scalar = True
        return code

    def chain(self, parts: list, sep: str, level: int) -> _Code:
        """a <sep> b <sep> ...: left-associative, long chains cut into temporaries."""
        codes = [self.wrap(parts[0], level)] + [sep.lstrip() + self.wrap(p, level + 1) for p in parts[1:]]
        return _Code(self.joined(codes), level, scalar=all(p.scalar for p in parts))

    def joined(self, codes: list) -> str:
        """Join 'a', '* b', '* c' ...; a line that grows too long (or too many terms) becomes a temporary."""
        while True:
            line, count = codes[0], 1
            while count < len(codes) and count < CHUNK and len(line) + 1 + len(codes[count]) <= LINE_LIMIT:
                line += " " + codes[count]
                count += 1
            if count == len(codes):
                return line
            count = max(count, 2)
            head = self.temporary(" ".join(codes[:count]))   # only a name: its kind does not matter here
            codes = [head.code] + codes[count:]

    # --- leaves ---------------------------------------------------------------------------------
    def _print_Var(self, e, kids):
        self.used_vars.add(e.name)
        # scalar arguments come in as NumPy scalars (see _inputs)
        return _Code(self.var_names[e.name], ATOM, scalar=e.is_scalar)

    def _print_Num(self, e, kids):
        code, prec = _num_literal(e.value)
        positive = _num_literal(-e.value)[0] if e.value < 0 else None
        return _Code(code, prec, positive=positive, scalar=True)

    def _print_Identity(self, e, kids):
        return _Code(f"np.eye({self.dim(e.n)})", ATOM)

    def _print_Zero(self, e, kids):
        return _Code(f"np.zeros({self.shape(e.shape)})", ATOM)

    def _print_Ones(self, e, kids):
        return _Code(f"np.ones({self.shape(e.shape)})", ATOM)

    def _print_Commutation(self, e, kids):
        return self.call("_commutation", self.dim(e.m), self.dim(e.n))

    # --- n-ary ----------------------------------------------------------------------------------
    def _print_Add(self, e, kids):
        kids = self._ones_as_number(e, kids)
        # c * I in a sum of matrices is added to the diagonal: the identity is never formed
        diagonal = [i for i, t in enumerate(e.args) if _identity_multiple(t) and t not in self.temps]
        if diagonal and len(diagonal) < len(e.args) and not e.is_scalar:
            rest = [k for i, k in enumerate(kids) if i not in diagonal]
            body = self._sum_code(rest) if len(rest) > 1 else rest[0]
            scale = " + ".join(self._scalar_code(e.args[i]) for i in diagonal)
            fresh = body.prec < ATOM    # an arithmetic result is a new array, safe to change
            return self.call("_plus_diagonal", body.code, scale, str(fresh))
        return self._sum_code(kids)

    def _scalar_code(self, t: E.Expr) -> str:
        """Code of the scalar c in c * I."""
        if isinstance(t, E.Identity):
            return "1"
        parts = []
        for a in t.args[:-1]:
            code = _num_literal(a.value)[0] if isinstance(a, E.Num) else self.done[a].code
            parts.append(f"({code})")
        return " * ".join(parts)

    def _sum_code(self, kids) -> _Code:
        codes = [self.wrap(kids[0], ADD)]
        for k in kids[1:]:
            codes.append(f"- {k.positive}" if k.positive is not None else f"+ {self.wrap(k, ADD + 1)}")
        return _Code(self.joined(codes), ADD, scalar=all(k.scalar for k in kids))

    def _ones_as_number(self, e, kids) -> list:
        """In an elementwise sum or product of matrices, a matrix of ones is the number 1 (NumPy
        broadcasts it against the other operands, which have the full shape): no array is made."""
        ones = [i for i, a in enumerate(e.args) if isinstance(a, E.Ones) and a not in self.temps]
        if not ones or len(ones) == len(kids) or e.shape == (1, 1):
            return kids
        return [_Code("1", ATOM, scalar=True) if i in ones else k for i, k in enumerate(kids)]

    def _print_Mul(self, e, kids):
        scaled = self._scaled_product(e)
        if scaled is not None:
            return scaled
        scalar = all(k.scalar for k in kids)
        args = list(e.args)
        coef = Fraction(1)
        if isinstance(args[0], E.Num) and isinstance(args[0].value, Fraction):
            coef, args, kids = args[0].value, args[1:], kids[1:]
        numer, denom = [], []
        for a, k in zip(args, kids):
            reciprocal = (isinstance(a, E.Power) and a.is_scalar and isinstance(a.exponent, E.Num)
                          and a.exponent.value == -1 and a not in self.temps)
            if reciprocal:
                denom.append(self.wrap(self.done[a.base], MUL + 1))
            else:
                numer.append(k)
        size = abs(coef)
        if max(size.numerator, size.denominator) > 2 ** 53:   # too long for int64: the double
            numer.insert(0, _Code(repr(float(size)), ATOM))
            size = Fraction(1)
        elif size.numerator != 1 or not numer:
            numer.insert(0, _Code(str(size.numerator), ATOM))
        body = self.chain(numer, " * ", MUL) if len(numer) > 1 else numer[0]
        if size.denominator != 1:
            denom.append(str(size.denominator))
        if denom:
            body = _Code(self.wrap(body, MUL) + "".join(f" / {d}" for d in denom), MUL)
        body.scalar = scalar
        if coef > 0:
            return body
        negated = "-" + self.wrap(body, MUL)
        return _Code(negated, UNARY if body.prec >= UNARY else MUL, positive=self.wrap(body, ADD + 1), scalar=scalar)

    def _scaled_product(self, e):
        """s * (A @ B @ x): the scalar applied to the smallest factor, not to the result."""
        product = e.args[-1]
        if not isinstance(product, E.MatMul) or product in self.temps or e.is_scalar:
            return None
        ops = [self.operand(a, self.done[a]) for a in product.args]
        # a vector of ones is applied as a sum (see ChainPlan), so it takes no scale
        dense = [o for o in ops if o.kind == "dense" and not isinstance(o.node, E.Ones)]
        if not dense:
            return None
        smallest = min(dense, key=lambda o: L.numel(o.node))
        if L.numel(smallest.node) >= L.numel(product):
            return None
        scalar = E.mul(*e.args[:-1])
        if isinstance(scalar, E.Num):
            code = _Code(*_num_literal(scalar.value))
        elif scalar in self.done:
            code = self.done[scalar]
        else:
            code = self._print_Mul(scalar, [self.done[c] for c in scalar.args])
        smallest.code = _Code(f"{self.wrap(code, MUL)} * {self.wrap(smallest.code, MUL + 1)}", MUL,
                              scalar=code.scalar and smallest.code.scalar)
        return ChainPlan(ops).code(self)

    def _print_MatMul(self, e, kids):
        operands = [self.operand(a, k) for a, k in zip(e.args, kids)]
        return self.number_if_scalar(e, ChainPlan(operands).code(self))

    @staticmethod
    def number_if_scalar(e, code: _Code) -> _Code:
        """A 1 x 1 product (an inner product x' A y) taken out of its array: what follows is
        arithmetic on a NumPy scalar, far cheaper than on a 1 x 1 array."""
        if not e.is_scalar or code.scalar:
            return code
        return _Code(f"{code.code if code.prec == ATOM else '(' + code.code + ')'}[0, 0]", ATOM, scalar=True)

    def operand(self, node: E.Expr, code: _Code) -> "Operand":
        """A factor of a product: dense, or a structured operator applied without forming it."""
        if node in self.operators:
            if isinstance(node, E.Diag):
                return Operand("diag", node, code, self.done[node.arg])
            if isinstance(node, E.Inverse):
                return Operand("inv", node, code, self.array(self.done[node.arg]))
            if isinstance(node, E.Commutation):
                return Operand("comm", node, code, (self.dim(node.m), self.dim(node.n)))
            if isinstance(node, E.Kron):
                a, b = node.a, node.b
                side = [None if isinstance(x, E.Identity) else self.array(self.done[x]).code for x in (a, b)]
                dims = [self.dim(a.rows), self.dim(a.cols), self.dim(b.rows), self.dim(b.cols)]
                return Operand("kron", node, code, (side, dims))
        return Operand("dense", node, code, None)

    def _print_Hadamard(self, e, kids):
        return self.chain(self._ones_as_number(e, kids), " * ", MUL)

    # --- unary ----------------------------------------------------------------------------------
    def _print_Transpose(self, e, kids):
        if kids[0].scalar:
            return kids[0]
        return _Code(self.wrap(kids[0], ATOM) + ".T", ATOM)

    def _print_Inverse(self, e, kids):
        base, transposed = _inverse_base(e)
        if base not in self.shared_inverses:
            return self.call("np.linalg.inv", kids[0].code)
        if base not in self.inverses:
            self.inverses[base] = self.temporary(f"np.linalg.inv({self.array(self.done[base]).code})")
        inv = self.inverses[base]
        return _Code(inv.code + ".T", ATOM) if transposed else inv

    def _print_MatPow(self, e, kids):
        return self.call("np.linalg.matrix_power", kids[0].code, str(e.k))

    def _print_Power(self, e, kids):
        base, exponent = kids
        if isinstance(e.base, E.Num):
            # a number to a power with NumPy's rules (NaN, not a complex number or an error)
            base = _Code(f"np.float64({base.code})", ATOM, scalar=True)
        return _Code(f"{self.wrap(base, ATOM)} ** {self.wrap(exponent, UNARY)}", POW,
                     scalar=base.scalar and exponent.scalar)

    # reductions to a number give a NumPy scalar, not a 1 x 1 array
    def _print_Trace(self, e, kids):
        return kids[0] if kids[0].scalar else _Code(self.wrap(kids[0], ATOM) + ".trace()", ATOM, scalar=True)

    def _print_Det(self, e, kids):
        return self.scalar_call("np.linalg.det", kids[0].code)

    def _print_LogDet(self, e, kids):
        return self.scalar_call("_logdet", kids[0].code)

    def _print_Adj(self, e, kids):
        return self.call("_adj", kids[0].code)

    def _print_AdjDiff(self, e, kids):
        self.helpers.update(("_adj", "_adj_diff"))
        return self.call("_adj_diff", *[k.code for k in kids])

    def _print_AdjJacobian(self, e, kids):
        self.helpers.update(("_adj", "_adj_diff", "_adj_jacobian"))
        return self.call("_adj_jacobian", *[k.code for k in kids])

    def _print_Diag(self, e, kids):
        return self.call("np.diagflat", kids[0].code)

    def _print_DiagPart(self, e, kids):
        return self.call("_diag_part", kids[0].code)

    def _print_Vec(self, e, kids):
        return self.call("_vec", kids[0].code)

    def _print_Reshape(self, e, kids):
        return self.call("_reshape", kids[0].code, self.dim(e.rows), self.dim(e.cols))

    def _print_Sum(self, e, kids):
        return kids[0] if kids[0].scalar else _Code(self.wrap(kids[0], ATOM) + ".sum()", ATOM, scalar=True)

    def _print_Norm1(self, e, kids):
        return self.scalar_call("np.abs", kids[0].code) if kids[0].scalar else \
            _Code(f"np.abs({kids[0].code}).sum()", ATOM, scalar=True)

    def _print_Norm2(self, e, kids):
        return self.scalar_call("np.abs" if kids[0].scalar else "_norm2", kids[0].code)

    def _print_Kron(self, e, kids):
        return self.call("_kron", kids[0].code, kids[1].code)

    # matrix functions: SciPy through the helpers above
    def need(self, *helpers):
        for h in helpers:
            self.helpers.add(h)
            self.need(*HELPER_NEEDS.get(h, ()))

    def _print_MatFun(self, e, kids):
        self.need("_" + e.fn)
        return self.call("_" + e.fn, kids[0].code)

    def _frechet_function(self, fn: str, order: int) -> str:
        """Code for the function (a, *directions) -> L^(order)_fn(a)[directions]."""
        if order == 1 and fn in ("expm", "sqrtm"):
            self.need("_d" + fn)
            return "_d" + fn
        self.need("_frechet", "_" + fn)
        return f"lambda a, *e: _frechet(_{fn}, a, *e)"

    def _print_Frechet(self, e, kids):
        function = self._frechet_function(e.fn, e.order)
        if function.startswith("lambda"):
            return self.call("_frechet", "_" + e.fn, *[k.code for k in kids])
        return self.call(function, *[k.code for k in kids])

    def _print_FrechetMatrix(self, e, kids):
        function = self._frechet_function(e.fn, len(e.directions) + 1)
        self.need("_frechet_matrix")
        return self.call("_frechet_matrix", function, *[k.code for k in kids])

    def _print_Elementwise(self, e, kids):
        fn = {"sigmoid": "_sigmoid", "relu": "_relu", "step": "_step"}.get(e.fn, "np." + e.fn)
        code = self.call(fn, kids[0].code)
        code.scalar = kids[0].scalar
        return code


# --- products: the cheapest order, structured operators applied as maps ---------------------------

# node kinds that a product applies without forming them
OPERATORS = (E.Diag, E.Inverse, E.Kron, E.Commutation)

# node kinds whose code takes NumPy scalars for its 1 x 1 operands (elementwise arithmetic,
# reductions, products: a 1 x 1 factor of a product is a scale); every other kind gets arrays
TAKES_SCALARS = (E.Add, E.Mul, E.Hadamard, E.Power, E.Elementwise, E.Transpose, E.Sum, E.Trace,
                 E.Norm1, E.Norm2, E.MatMul)



def _is_ones_column(node) -> bool:
    return isinstance(node, E.Ones) and node.cols == 1


def _is_ones_row(node) -> bool:
    return isinstance(node, E.Ones) and node.rows == 1


def _identity_multiple(t: E.Expr) -> bool:
    return isinstance(t, E.Identity) or (isinstance(t, E.Mul) and isinstance(t.args[-1], E.Identity))


def _inverse_base(node: E.Inverse):
    """(A, transposed) for inv(A) and inv(A')."""
    if isinstance(node.arg, E.Transpose):
        return node.arg.arg, True
    return node.arg, False


class Operand:
    """One factor of a chain: kind dense | diag (v) | inv (A) | kron ((a, b), dims) | comm (m, n)."""

    __slots__ = ("kind", "node", "code", "data")

    def __init__(self, kind, node, code, data):
        self.kind, self.node, self.code, self.data = kind, node, code, data


def _pair_cost(left: Operand, right: Operand, p: float, q: float, r: float) -> float:
    """Multiply-adds of (p x q) @ (q x r) when the left/right factors are of the given kinds
    (an interval of two or more factors is dense, or diagonal if all of it is)."""
    lk, rk = left.kind, right.kind
    if lk == "diag" and rk == "diag":
        return q
    if lk == "diag":
        return q * r
    if rk == "diag":
        return p * q
    if lk == "comm":
        return q * r
    if rk == "comm":
        return p * q
    if lk == "inv":
        return q ** 3 + q * q * r
    if rk == "inv":
        return q ** 3 + p * q * q
    if lk == "kron":
        return r * q * (L.size(left.node.b.rows) + L.size(left.node.a.rows))
    if rk == "kron":
        return p * q * (L.size(right.node.b.cols) + L.size(right.node.a.cols))
    return p * q * r


class ChainPlan:
    """The order of a matrix chain with least cost (dynamic programme over the shapes, every
    dimension symbol counted as the same large size, so a vector at an end makes every step a
    matrix-vector product), and its code: structured operators applied as maps (diag as a
    broadcast product, inverse as solve, kron through reshapes, commutation as a permutation)."""

    def __init__(self, operands: list):
        self.ops = operands
        k = len(operands)
        self.dims = [L.size(operands[0].node.rows)] + [L.size(o.node.cols) for o in operands]
        self.cost = {}
        self.split = {}
        self.kind = {}
        for i, o in enumerate(operands):
            self.cost[i, i], self.kind[i, i] = 0.0, o.kind
        if all(o.kind == "dense" for o in operands) and len(set(self.dims[1:-1])) == 1:
            self._sweep(k)   # every inner size the same: from the smaller end, no search needed
            return
        for length in range(2, k + 1):
            for i in range(k - length + 1):
                j = i + length - 1
                best = None
                for s in range(i, j):
                    c = self.cost[i, s] + self.cost[s + 1, j] + self._step(i, s, j)
                    if best is None or c < best[0]:
                        best = (c, s)
                self.cost[i, j], self.split[i, j] = best
                self.kind[i, j] = "diag" if all(o.kind == "diag" for o in operands[i:j + 1]) else "dense"

    def _sweep(self, k):
        from_left = self.dims[0] <= self.dims[-1]
        for length in range(2, k + 1):
            for i in range(k - length + 1):
                j = i + length - 1
                self.split[i, j] = j - 1 if from_left else i
                self.kind[i, j] = "dense"

    def _step(self, i, s, j):
        left = self._as_operand(i, s)
        right = self._as_operand(s + 1, j)
        p, q, r = self.dims[i], self.dims[s + 1], self.dims[j + 1]
        cost = _pair_cost(left, right, p, q, r)
        if left.kind not in ("dense", "diag") and right.kind not in ("dense", "diag"):
            cost += p * q   # two structured operators: the left one is formed
        return cost

    def _as_operand(self, i, j):
        return self.ops[i] if i == j else Operand(self.kind[i, j], None, None, None)

    def code(self, w: "FunctionWriter") -> _Code:
        code, kind = self._emit(w, 0, len(self.ops) - 1)
        if kind == "diag":
            return w.call("np.diagflat", code.code)
        return code

    def _emit(self, w, i, j):
        """(code, kind) of the product of factors i..j; kind diag means the code is the vector."""
        if i == j:
            o = self.ops[i]
            if o.kind == "diag":
                return o.data, "diag"
            return o.code, o.kind
        s = self.split[i, j]
        left, lk = self._emit(w, i, s)
        right, rk = self._emit(w, s + 1, j)
        if lk not in ("dense", "diag") and rk not in ("dense", "diag"):
            left, lk = self.ops[i].code, "dense"   # two structured operators: form the left one
        scalar = left.scalar and right.scalar
        if lk == "diag" and rk == "diag":
            return _Code(f"{w.wrap(left, MUL)} * {w.wrap(right, MUL + 1)}", MUL, scalar=scalar), "diag"
        if lk == "diag":
            right = self._dense(w, right, rk, s + 1, j)
            return _Code(f"{w.wrap(left, MUL)} * {w.wrap(right, MUL + 1)}", MUL, scalar=scalar), "dense"
        if rk == "diag":
            left = self._dense(w, left, lk, i, s)
            row = right.code if right.scalar else f"{w.wrap(right, ATOM)}.T"
            return _Code(f"{w.wrap(left, MUL)} * {row}", MUL, scalar=scalar), "dense"
        if lk == "dense" and rk == "dense":
            if s + 1 == j and _is_ones_column(self.ops[j].node) and not left.scalar:
                # X 1: the row sums of X, without a matrix of ones
                return _Code(f"{w.wrap(left, ATOM)}.sum(axis=1, keepdims=True)", ATOM), "dense"
            if i == s and _is_ones_row(self.ops[i].node) and not right.scalar:
                return _Code(f"{w.wrap(right, ATOM)}.sum(axis=0, keepdims=True)", ATOM), "dense"
            if self.dims[s + 1] == 1:
                # inner size 1: a column times a row (or a number), which broadcasting does
                # without a matrix product
                return _Code(f"{w.wrap(left, MUL)} * {w.wrap(right, MUL + 1)}", MUL, scalar=scalar), "dense"
            return _Code(f"{w.wrap(left, MUL)} @ {w.wrap(right, MUL + 1)}", MUL), "dense"
        if lk == "dense":
            return self._apply_right(w, w.array(left), self.ops[j]), "dense"
        return self._apply_left(w, self.ops[i], w.array(right)), "dense"

    def _dense(self, w, code, kind, i, j):
        return self.ops[i].code if kind not in ("dense", "diag") and i == j else code

    @staticmethod
    def _apply_left(w, op: Operand, y: _Code) -> _Code:
        if op.kind == "inv":
            return w.call("np.linalg.solve", op.data.code, y.code)
        if op.kind == "comm":
            return w.call("_commute_rows", y.code, *op.data)
        (a, b), (t, p, s, q) = op.data
        return w.call("_kron_matmul", a or "None", b or "None", y.code, p, q)

    @staticmethod
    def _apply_right(w, y: _Code, op: Operand) -> _Code:
        if op.kind == "inv":
            solved = w.call("np.linalg.solve", f"{w.wrap(op.data, ATOM)}.T", f"{w.wrap(y, ATOM)}.T")
            return _Code(solved.code + ".T", ATOM)
        if op.kind == "comm":
            return w.call("_commute_cols", y.code, *op.data)
        (a, b), (t, p, s, q) = op.data
        return w.call("_matmul_kron", y.code, a or "None", b or "None", t, s)


# --- the module -----------------------------------------------------------------------------------



def _symbols_of(dims) -> list:
    out: list = []
    for d in dims:
        for s, _ in Dim.of(d).factors:
            if s not in out:
                out.append(s)
    return out




def _docstring(text: str) -> str:
    # control characters (NUL, ESC, ...) from the program's comments become visible escapes: a
    # Python source cannot carry some of them, and none belongs in a docstring
    from ..errors import visible
    text = "\n".join(visible(line) for line in text.split("\n"))
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


DOC_LIMIT = 1200
DOC_TREE_LIMIT = 20_000   # a result larger than this written out is not put in a docstring


def _doc_text(e: E.Expr, text) -> str:
    """The formula for a docstring; the code never needs it, so a huge one is left out (the code
    computes shared subexpressions once, whatever the size of the written-out form)."""
    if E.tree_size(e) > DOC_TREE_LIMIT:
        return f"(a formula of {E.tree_size(e):,} nodes written out; not shown)"
    return text()


def _wrap_doc(doc: str) -> str:
    """A function docstring: the first paragraph (the formula) wrapped, and cut when it is very long."""
    first, sep, rest = doc.partition("\n\n")
    if len(first) > DOC_LIMIT:
        first = first[:DOC_LIMIT].rsplit(" ", 1)[0] + " ... (cut)"
    first = textwrap.fill(first, width=96, subsequent_indent="    ", break_long_words=False,
                          break_on_hyphens=False)
    return first + sep + rest


def _describe(kind: str, shape) -> str:
    r, c = shape
    if kind == "scalar":
        return "a float"
    if kind == "vector":
        return f"a 1-D array of length {r}"
    return f"a 2-D array {r} x {c}"


def _argument_text(name: str, sym) -> str:
    from .documents import shape_text
    kind = _kind(sym.shape)
    how = {"scalar": "a number", "vector": f"a 1-D array of length {sym.shape[0]} (or {sym.shape[0]} x 1)",
           "matrix": f"a 2-D array {sym.shape[0]} x {sym.shape[1]}"}[kind]
    if sym.symmetric:
        how += ", symmetric"
    return f"{name}: {shape_text(sym)} -> {how}"


class Dimensions:
    """Which sizes the arguments' shapes determine, and how code names each size.

    A symbol is determined when it is a whole dimension of a required argument, or the one unknown
    of a product (x: vector(m*n) with m known gives n).  A product none of whose unknowns is
    determined (only m*n ever appears) is known as a whole; every other symbol is a keyword."""

    def __init__(self, specs: list, used: list, names: Names):
        known: dict = {}        # ordered as found: the module's text must not depend on hash order
        progress = True
        while progress:
            progress = False
            for d in specs:
                unknown = [(s, p) for s, p in d.factors if s not in known]
                if len(unknown) == 1 and unknown[0][1] == 1:
                    known[unknown[0][0]] = True
                    progress = True
        self.known = known
        self.products = []          # products known only as a whole, as factor tuples
        for d in specs:
            if any(s not in known for s, _ in d.factors) and d.factors not in self.products:
                self.products.append(d.factors)
        in_products = dict.fromkeys(s for f in self.products for s, _ in f)
        self.free = [s for s in used if s not in known and s not in in_products] + \
                    [s for s in in_products if s not in known]
        self.local = {}
        for s in list(known) + self.free:
            self.local[s] = names.take(s)
        for f in self.products:
            key = str(Dim(1, f))
            self.local[key] = names.take("_".join(s if p == 1 else f"{s}{p}" for s, p in f))

    def split(self, d: Dim) -> list:
        """d (coefficient 1) as [(key, power)]: whole products where they help, then symbols."""
        powers = dict(d.factors)
        out = []
        for f in self.products:
            if all(powers.get(s, 0) >= p for s, p in f):
                rest = {s: powers[s] - dict(f).get(s, 0) for s in powers}
                if all(s in self.known or q == 0 for s, q in rest.items()):
                    out.append((str(Dim(1, f)), 1))
                    powers = rest
        out += [(s, p) for s, p in sorted(powers.items()) if p > 0]
        return out


class ModuleWriter:
    """Assembles the module: docstring, specification of the arguments, functions, helpers."""

    def __init__(self, derivation):
        self.d = derivation
        typed = derivation.typed
        self.symbols = dict(typed.symbols)
        self.required = [n for n in self.symbols if n in typed.variables or n in derivation.wrts]
        self.function_names = _function_names(derivation)
        self.names = Names(RESERVED | {"_args", "_dims"} | set(self.function_names.values()) | {"gradients"})
        self.var_names = {n: self.names.take(n) for n in self.symbols}
        self.direction_of = {}   # direction name -> the variable it is a direction of
        for v, x in derivation.directions:
            self.var_names[v.name] = self.names.take(v.name)
            self.direction_of[v.name] = x.name
        roots = [derivation.expression] + [r.expr for r in derivation.results.values()]
        specs = [Dim.of(d) for n in self.required for d in self.symbols[n].shape]
        used = _symbols_of([d for s in self.symbols.values() for d in s.shape]
                           + [d for node in E.walk(*roots) for d in E.node_dims(node)])
        self.dims = Dimensions(specs, used, self.names)
        self.free_dims = self.dims.free
        self.helpers: set = set()
        self.lowered: dict = {}   # node -> its lowered form, for every function of the module

    def function(self, name: str, expr: E.Expr, kind: str, doc: str, directions=()) -> str:
        return self.function_of(name, [(None, expr, kind)], doc, directions)

    def function_of(self, name: str, outputs: list, doc: str, directions=()) -> str:
        """One function computing outputs [(key, expr, kind)]: the value itself for a single
        output with key None, else a dict by key; subexpressions shared between them computed once."""
        w = FunctionWriter(self.var_names, Names(self.names.taken), self.dims)
        codes = w.translate_codes(L.lower(*[expr for _, expr, _ in outputs], memo=self.lowered))
        # a result that is a NumPy scalar is returned as a float; every other one through _out,
        # which checks its shape
        returns = [f"float({c.code})" if c.scalar and kind == "scalar" else
                   f"_out({c.code}, {w.shape(expr.shape)}, {kind!r})"
                   for c, (_, expr, kind) in zip(codes, outputs)]
        self.helpers |= w.helpers
        need = [s for s in self.dims.local if s in w.used_dims]
        used = [v for v in list(self.symbols) + list(directions) if v in w.used_vars]
        spec = (tuple(used), tuple((n, self.direction_of[n]) for n in directions), tuple(need))
        taken = [self.var_names[v] for v in used] + [self.dims.local[s] for s in need]
        lines = [f"def {name}(**vars):", f'    """{_docstring(_wrap_doc(doc))}"""',
                 f"    {', '.join(taken) + (',' if len(taken) == 1 else '') + ' = ' if taken else ''}"
                 f"_inputs(vars, {spec!r})"]
        lines += [f"    {line}" for line in w.lines]
        if len(outputs) == 1 and outputs[0][0] is None:
            code = returns[0]
            if len(code) > LINE_LIMIT - 10:
                inner = codes[0].code
                if not inner.isidentifier():
                    result = w.names.take("result")
                    lines.append(f"    {result} = {inner}")
                    code = code.replace(inner, result, 1)
            lines.append(f"    return {code}")
        else:
            lines.append("    return {")
            for (key, _, _), code in zip(outputs, returns):
                lines.append(f"        {key!r}: {code},")
            lines.append("    }")
        return "\n".join(lines)

    def hvp_expression(self):
        """H v without H: the derivative of the gradient in the direction v (for a symmetric
        variable, in the direction sym(v), which is what H = J P does to vec(v))."""
        from ..differential import differential
        from ..identify import gradient
        from ..simplify import simplify
        d = self.d
        x, dx = d.x, d.dx
        G = gradient(d.results["differential"].expr, x, dx)
        name = self.direction_name()
        v = E.Var(name, x.shape, x.symmetric)
        direction = v
        if x.symmetric and x.rows != 1:
            direction = E.mul(E.Num(Fraction(1, 2)), E.add(E.Var(name, x.shape), E.transpose(E.Var(name, x.shape))))
        # the form valid at every point (det and adj through adj, not inv), as Result.expr is
        dG = simplify(differential(G, x, dx, everywhere=True))
        return E.substitute(dG, {dx: direction}), name

    def direction_name(self, base: str = "v", of: str | None = None) -> str:
        """A keyword for a direction that no name of the program uses: v, else v1, v2, ..."""
        taken = set(self.symbols) | {dx.name for dx, _ in self.d.directions} | set(self.direction_of)
        name, i = base, 1
        while name in taken:
            name, i = f"{base}{i}", i + 1
        if name not in self.var_names:
            self.var_names[name] = self.names.take(name)
        self.direction_of[name] = of if of is not None else self.d.x.name
        return name

    def hvp_expressions(self):
        """With several variables: per variable x_i, the derivative of its gradient in the
        direction (v_1, ..., v_k) of all of them, sum_j H[x_i, x_j] v_j, never forming a block;
        the keyword the caller passes (a dict by variable) and the internal direction names."""
        from ..differential import differential_all
        from ..identify import gradient
        from ..simplify import simplify
        d = self.d
        public = self.direction_name("v", of="")
        del self.direction_of[public]     # the caller's dict, not an argument of its own
        names, along = {}, {}
        for var in d.variables:
            x = var.x
            name = self.direction_name(f"{public}_{x.name}", of=x.name)
            names[x.name] = name
            v = E.Var(name, x.shape, x.symmetric)
            if x.symmetric and x.rows != 1:
                v = E.mul(E.Num(Fraction(1, 2)), E.add(E.Var(name, x.shape), E.transpose(E.Var(name, x.shape))))
            along[var.dx] = v
        first = {var.x: var.dx for var in d.variables}
        outputs = []
        for var in d.variables:
            G = gradient(d.parts[var.x.name].expr, var.x, var.dx)
            dG = simplify(differential_all(G, first, everywhere=True))
            outputs.append((var.x.name, E.substitute(dG, along), _kind(var.x.shape)))
        return outputs, public, names

    def hvp_several(self) -> list:
        """hvp(**vars, v={name: direction}) -> {name: sum_j H[name, x_j] v_j}: a public function
        that unpacks the dict, and _hvp, which takes each direction as a keyword of its own."""
        outputs, public, names = self.hvp_expressions()
        self.hvp_keyword = public
        inner_doc = "hvp with each direction a keyword of its own: " + ", ".join(
            f"{n} (of {x})" for x, n in names.items()) + "."
        inner = self.function_of("_hvp", outputs, inner_doc, tuple(names.values()))
        wanted = ", ".join(f"{x!r}" for x in names)
        unpack = ", ".join(f"{n!r}: {public}[{x!r}]" for x, n in names.items())
        doc = (f"The Hessian times a direction, by variable, without forming a block: {public} is a dict "
               f"{{{', '.join(f'{x!r}: ...' for x in names)}}} of directions shaped like the variables; "
               f"returns {{name: sum over j of H[name, x_j] @ vec({public}[x_j])}}, each shaped like its "
               "variable (the derivative of the gradients in the direction).")
        outer = "\n".join([
            "def hvp(**vars):",
            f'    """{_docstring(_wrap_doc(doc))}"""',
            f"    {public} = vars.pop({public!r}, None)",
            f"    if not isinstance({public}, dict) or set({public}) != {{{wanted}}}:",
            f"        raise TypeError({('hvp needs ' + public + '={' + ', '.join(f'{x!r}: ...' for x in names) + '}: one direction per variable')!r})",
            f"    return _hvp(**vars, **{{{unpack}}})",
        ])
        return [outer, inner]

    def variables_spec(self) -> str:
        rows = ["_VARIABLES = (", "    # name, kind, rows, cols, symmetric, required"]
        for n, s in self.symbols.items():
            kind = _kind(s.shape)
            r, c = (_dim_spec(Dim.of(s.shape[0])), _dim_spec(Dim.of(s.shape[1])))
            rows.append(f"    ({n!r}, {kind!r}, {r!r}, {c!r}, {bool(s.symmetric)!r}, {n in self.required!r}),")
        rows.append(")")
        rows.append(f"_FREE_DIMS = {tuple(self.free_dims)!r}"
                    + ("  # sizes the arguments do not determine: pass them as keywords" if self.free_dims else ""))
        return "\n".join(rows)

    def docstring(self, functions: list) -> str:
        from .documents import declarations_text
        from .text import to_text
        d = self.d
        source = (d.typed.source or "").strip() or f"{declarations_text(d)}; {to_text(d.expression)}"
        several = d.several
        lines = ["NumPy functions for a matrix expression and its derivatives "
                 f"(generated by matcalc {__version__}).", "", "Program:", ""]
        lines += ["    " + line for line in source.splitlines()]
        lines += ["", f"Shapes: {declarations_text(d)}", f"Differentiated with respect to {', '.join(d.wrts)}.", "",
                  "Arguments (keywords named as in the program; every dimension is read from the shapes):"]
        for n, s in self.symbols.items():
            note = "" if n in self.required else "  (optional: not used by the expression)"
            lines.append("    " + _argument_text(n, s) + note)
        for s in self.free_dims:
            lines.append(f"    {s}: int -> the size {s}, which no argument's shape determines")
        if any(keyword.iskeyword(n) for n in self.symbols):
            bad = next(n for n in self.symbols if keyword.iskeyword(n))
            lines.append(f"    (a name that is a Python keyword is passed with **: f(**{{{bad!r}: ...}}))")
        lines += ["", "Functions:"]
        lines += ["    " + line for line in functions]
        lines += ["", "Conventions:",
                  "    Scalars come back as floats, vectors as 1-D arrays, matrices as 2-D arrays; Jacobians and",
                  "    Hessians are always 2-D.  vec is column-major: vec(X) = X.reshape(-1, order=\"F\").",
                  f"    The Jacobian ({d.layout} layout) is "
                  + ("numel(f) x numel(x): vec(df) = J vec(dx)." if d.layout == "numerator"
                     else "numel(x) x numel(f): vec(df)' = vec(dx)' J."),
                  "    The Hessian is numel(x) x numel(x): f''(x)[dx, dx2] = vec(dx)' H vec(dx2)."
                  if not several else
                  "    The Hessian block hessian_x_W is numel(x) x numel(W): f''[(dx, dW), (dx2, dW2)] is the\n"
                  "    sum of vec(da)' H[a, b] vec(db2) over pairs of variables, H[W, x] = hessian_x_W().T."]
        for v in d.variables:
            if v.x.symmetric:
                lines += [f"    {v.name} is symmetric: only symmetric directions are admissible.  The gradient is the",
                          "    symmetric G with <G, E> = f'(X)[E] for symmetric E, and the Jacobian and Hessian are",
                          "    multiplied on the right by P = (I + K)/2 (zero on antisymmetric directions)."]
        return '"""' + _docstring("\n".join(lines)) + '\n"""'

    def write(self) -> str:
        from .text import to_text
        d = self.d
        f = d.expression
        fkind = _kind(f.shape)
        first = [v.dx.name for v in d.variables]
        second = [v.dx2.name for v in d.variables]
        funcs, summary = [], []
        f_text = _doc_text(f, lambda: to_text(f))
        funcs.append(self.function("f", f, fkind, f"f = {f_text}: {_describe(fkind, f.shape)}."))
        summary.append(f"f(**vars)  {f_text}: {_describe(fkind, f.shape)}")
        for r in ordered_results(d):
            name = self.function_names[r.key]
            if r.name == "differential":
                dirs = tuple(first)
                kind, extra = fkind, "".join(f", {n}=..." for n in dirs)
            elif r.name == "hessian_bilinear":
                dirs = tuple(first + second)
                kind, extra = "scalar", "".join(f", {n}=..." for n in dirs)
            elif r.name == "gradient":
                kind, dirs, extra = _kind(r.expr.shape), (), ""
            else:
                kind, dirs, extra = "matrix", (), ""
            shape = r.expr.shape
            what = _describe(kind, shape)
            if r.name == "gradient":
                what += f", shaped like {r.wrt[0]}"
            doc = f"{r.label} = {_doc_text(r.expr, r.text)}: {what}."
            if r.note:
                doc += f"\n\n    ({r.note})\n    "
            funcs.append(self.function(name, r.expr, kind, doc, dirs))
            summary.append(f"{name}(**vars{extra})  {r.label}: {what}")
        # every derivative in one function, computing what they share once: derivatives(**vars);
        # with several variables also gradients(**vars), the dict an optimiser wants
        together = [("f", f, fkind)] + [
            (r.name if not d.several else self.function_names[r.key], r.expr,
             _kind(r.expr.shape) if r.name == "gradient" else "matrix")
            for r in ordered_results(d) if r.name in ("gradient", "jacobian", "hessian")]
        if len(together) > 1:
            keys = ", ".join(repr(k) for k, _, _ in together)
            funcs.append(self.function_of("derivatives", together,
                                          f"{{{keys}}} at once, computing what they share once.", ()))
            summary.append(f"derivatives(**vars)  a dict of {keys}, sharing the work")
        if d.several and d.gradients:
            gradients = [(name, r.expr, _kind(r.expr.shape)) for name, r in d.gradients.items()]
            doc = ("Every gradient, computed together (shared subexpressions once): a dict "
                   + ", ".join(f"{name!r}: gradient_{name}" for name in d.gradients) + ".")
            funcs.append(self.function_of("gradients", gradients, doc, ()))
            summary.append("gradients(**vars)  every gradient, computed together: a dict by variable name")
        if "hessian" in d.results and not d.several:
            x = d.x
            hv, v = self.hvp_expression()
            what = "a 1-D array" if _kind(x.shape) == "vector" else f"shaped like {d.wrt}"
            doc = (f"H @ vec({v}), the Hessian times a direction, without forming H: the derivative of "
                   f"the gradient in the direction {v}: {what}.")
            funcs.append(self.function_of("hvp", [(None, hv, _kind(x.shape))], doc, (v,)))
            summary.append(f"hvp(**vars, {v}=...)  the Hessian times {v} ({what}), never forming the Hessian")
        if d.several and any(r.name == "hessian" for r in d.results.values()):
            funcs += self.hvp_several()
            keys = ", ".join(f"{x!r}: ..." for x in d.wrts)
            summary.append(f"hvp(**vars, {self.hvp_keyword}={{{keys}}})  the Hessian times the directions, "
                           "by variable, never forming a block")
        spec = self.variables_spec()
        helpers = [HELPERS[h] for h in HELPERS if h in self.helpers]
        imports = "import numpy as np\n" + ("import scipy.linalg\n" if self.helpers & set(SCIPY_HELPERS) else "")
        rule = "# --- helpers " + "-" * 86
        return (self.docstring(summary) + "\n\n" + imports + "\n" + spec + "\n\n\n"
                + "\n\n\n".join(funcs) + "\n\n\n" + rule + "\n\n" + "\n\n\n".join([INPUT_HELPERS] + helpers)
                + "\n")


def _function_names(derivation) -> dict:
    """Result key -> function name: the kind alone for one variable ("gradient"); with several,
    the kind and the variables ("gradient_x", "hessian_x_W"); "differential", "hessian_bilinear"."""
    names, used = {}, set()
    for r in derivation.results.values():
        name = r.name if not (derivation.several and r.wrt) else "_".join((r.name,) + tuple(r.wrt))
        base, i = name, 2
        while name in used:   # x_y, z and x, y_z would both give hessian_x_y_z
            name, i = f"{base}_{i}", i + 1
        used.add(name)
        names[r.key] = name
    return names


def to_numpy_module(derivation) -> str:
    """A self-contained Python module (NumPy only) computing f and every result of ``derivation``."""
    return ModuleWriter(derivation).write()
