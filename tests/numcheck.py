"""Numeric checks of a whole derivation against finite differences (a test helper).

``check_derivation(d, points)`` evaluates every result of a derivation at random points and compares
them with central finite differences (with one Richardson step) of f itself, through
``matcalc_cli.numeric``:

- differential  f'(x)[dx]          vs  d/dt f(x + t dx)
- gradient      G                  vs  the numeric Jacobian of f, reshaped (sym(G) for symmetric x)
- jacobian      J                  vs  the numeric Jacobian of vec(f) (J P for symmetric x)
- hessian       H                  vs  finite differences of the gradient expression (checked above),
                                       and H = H'
- hessian_bilinear f''[dx, dx2]    vs  vec(dx)' H vec(dx2), and vs the four-point second difference
                                       of f along dx and dx2 (independent of every result)

``reparse_problems(d, values, sizes, rng)`` prints every result as text, parses it back with the
program's declarations (and those of dx, dx2) and evaluates it: the numbers must be the same.
``shape_problems(expr)`` lists IR nodes whose shape does not follow from their children's.

Comparisons are relative: |a - b| <= rtol * max(|a|, |b|, floor).  A mismatch is confirmed with a
second and a third step size before it counts, so that finite-difference noise is not reported as a
wrong derivative.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from matcalc_cli.numeric import (
    Evaluator, dimension_sizes, evaluate, numeric_jacobian, numeric_jacobian_of, point_problems, random_direction,
    random_point, shape_of,
)
from matcalc_cli.render.documents import declarations_text, shape_text
from matcalc_cli.render.text import to_text
from matcalc_cli.shapes import Symbol, check
from matcalc_cli.syntax import parse

RTOL = 1e-5
STEPS = (None, 1e-3, 1e-5)   # None: numeric.py's default step; the others confirm a mismatch


def rng_for(text: str, salt: int = 0) -> np.random.Generator:
    """A generator seeded from a text, so that every run checks the same points."""
    seed = int.from_bytes(hashlib.sha256(f"{salt}:{text}".encode()).digest()[:8], "little")
    return np.random.default_rng(seed)


def relative_error(a, b, floor: float = 1.0) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        return float("inf")   # a result of the wrong shape: Mismatch shows both
    if a.size == 0:
        return 0.0
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return float("inf") if not np.array_equal(np.isfinite(a), np.isfinite(b)) or \
            not np.allclose(a[np.isfinite(a)], b[np.isfinite(b)]) else 0.0
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))), floor)
    return float(np.max(np.abs(a - b))) / scale


@dataclass
class Mismatch:
    what: str
    error: float
    got: np.ndarray
    expected: np.ndarray

    def __str__(self):
        np.set_printoptions(precision=6, suppress=True, linewidth=140)
        shapes = "" if self.got.shape == self.expected.shape else \
            f" (shape {self.got.shape}, expected {self.expected.shape})"
        return (f"{self.what}: relative error {self.error:.3g}{shapes}\n  matcalc:\n{self.got}\n"
                f"  finite differences / reference:\n{self.expected}")


@dataclass
class CheckReport:
    program: str
    points: int = 0
    skipped: list = field(default_factory=list)     # reasons a point was not usable
    mismatches: list = field(default_factory=list)  # Mismatch
    checked: list = field(default_factory=list)     # names of results compared
    unstable: list = field(default_factory=list)    # comparisons too ill-conditioned to judge

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def __str__(self):
        out = [f"program: {self.program}", f"points checked: {self.points}, skipped: {self.skipped}"]
        out += [f"unstable: {u}" for u in self.unstable]
        out += [str(m) for m in self.mismatches]
        return "\n".join(out)


def _env(values, d, dx=None, dx2=None):
    env = dict(values)
    if dx is not None:
        env[d.dx.name] = dx
    if dx2 is not None:
        env[d.dx2.name] = dx2
    return env


def _fd_scale(values, d):
    return max(1.0, float(np.max(np.abs(values[d.x.name]))))


def _confirmed(what, got, make_expected, floor, rtol, report):
    """Compare at the default step; on a mismatch, retry with other steps.

    A mismatch counts only when the finite differences agree with each other much better than
    with matcalc; when they scatter as much as they disagree with matcalc, the point is too
    ill-conditioned to judge (``report.unstable``)."""
    estimates, best = [], None
    for h in STEPS:
        expected = make_expected(h)
        err = relative_error(got, expected, floor)
        if best is None or err < best[0]:
            best = (err, expected)
        if err <= rtol:
            return True
        estimates.append(expected)
    spread = max(relative_error(a, b, floor) for i, a in enumerate(estimates) for b in estimates[i + 1:])
    if spread * 10 >= best[0]:
        report.unstable.append(f"{what}: finite differences scatter ({spread:.2g}) as much as they "
                               f"disagree with matcalc ({best[0]:.2g})")
        return True
    report.mismatches.append(Mismatch(what, best[0], np.asarray(got), np.asarray(best[1])))
    return False


def magnitude(e, values: dict, sizes: dict) -> float:
    """The largest finite entry of any intermediate value of ``e`` (at least 1)."""
    ev = Evaluator(values, sizes)
    with np.errstate(all="ignore"):
        ev(e)
    out = 1.0
    for v in ev.memo.values():
        finite = np.abs(v[np.isfinite(v)])
        if finite.size:
            out = max(out, float(finite.max()))
    return out


def check_at(d, values: dict, sizes: dict, rng, report: CheckReport, rtol: float = RTOL) -> None:
    """Compare every result of ``d`` at one point with finite differences."""
    f = d.expression
    x = d.x
    # Rounding in f is relative to its largest intermediate value, not to f (which may cancel), and
    # differences divide it by the step: that sets the smallest derivative entries we can judge.
    floor = 2e-5 * magnitude(f, values, sizes)
    res = d.results
    dx = random_direction(d.dx, rng, sizes)
    dx2 = random_direction(d.dx2, rng, sizes)
    x0 = np.asarray(values[x.name], dtype=float)

    def f_at(point):
        env = dict(values)
        env[x.name] = point
        return evaluate(f, env, sizes)

    def directional(h, direction=dx):
        step = h if h is not None else 1e-4 * _fd_scale(values, d)
        c = lambda s: (f_at(x0 + s * direction) - f_at(x0 - s * direction)) / (2 * s)
        return (4 * c(step / 2) - c(step)) / 3

    if "differential" in res:
        got = evaluate(res["differential"].expr, _env(values, d, dx), sizes)
        report.checked.append("differential")
        _confirmed("differential f'(x)[dx]", got, directional, floor, rtol, report)

    if "gradient" in res:
        got = evaluate(res["gradient"].expr, values, sizes)
        xs = shape_of(x, sizes)
        report.checked.append("gradient")
        _confirmed("gradient", got,
                   lambda h: numeric_jacobian(d, values, sizes, h).reshape(xs, order="F"), floor, rtol, report)

    if "jacobian" in res:
        got = evaluate(res["jacobian"].expr, values, sizes)
        report.checked.append("jacobian")
        if d.layout == "denominator":
            make = lambda h: numeric_jacobian(d, values, sizes, h).T
        else:
            make = lambda h: numeric_jacobian(d, values, sizes, h)
        _confirmed("jacobian", got, make, floor, rtol, report)

    if "hessian" in res:
        H = evaluate(res["hessian"].expr, values, sizes)
        G = res["gradient"].expr if "gradient" in res else None
        report.checked.append("hessian")
        if G is not None:
            gfloor = 2e-5 * magnitude(G, values, sizes)
            _confirmed("hessian (vs differences of the gradient)", H,
                       lambda h: numeric_jacobian_of(lambda env: evaluate(G, env, sizes), x, values, sizes, h),
                       max(floor, gfloor), rtol, report)
        err = relative_error(H, H.T, floor)
        if err > rtol:
            report.mismatches.append(Mismatch("hessian is not symmetric", err, H, H.T))

    if "hessian_bilinear" in res:
        got = evaluate(res["hessian_bilinear"].expr, _env(values, d, dx, dx2), sizes)
        report.checked.append("hessian_bilinear")
        if "hessian" in res:
            H = evaluate(res["hessian"].expr, values, sizes)
            vx, vx2 = dx.reshape(-1, order="F"), dx2.reshape(-1, order="F")
            expected = np.array([[vx @ H @ vx2]])
            err = relative_error(got, expected, floor)
            if err > rtol:
                report.mismatches.append(Mismatch("hessian_bilinear vs vec(dx)' H vec(dx2)", err, got, expected))

        def second(h):
            step = h if h is not None else 1e-3 * _fd_scale(values, d)
            s2 = lambda s: (f_at(x0 + s * (dx + dx2)) - f_at(x0 + s * (dx - dx2)) - f_at(x0 - s * (dx - dx2))
                            + f_at(x0 - s * (dx + dx2))) / (4 * s * s)
            return (4 * s2(step / 2) - s2(step)) / 3

        # second differences lose more digits than first ones: a looser tolerance, a larger floor
        _confirmed("hessian_bilinear vs second differences of f", got, second,
                   1e-4 * magnitude(f, values, sizes), max(rtol, 1e-4), report)


def check_derivation(d, points: int = 3, salt: int = 0, sizes: dict | None = None,
                     rtol: float = RTOL) -> CheckReport:
    """Check every result of ``d`` at ``points`` random points (seeded from the program text)."""
    sizes = dimension_sizes(d, sizes)
    report = CheckReport(d.typed.source)
    rng = rng_for(d.typed.source + "|" + d.wrt, salt)
    for _ in range(points):
        values = random_point(d, rng, sizes)
        problems = point_problems(d, values, sizes, rng)
        if problems:
            report.skipped.append(problems[0])
            continue
        with np.errstate(all="ignore"):
            check_at(d, values, sizes, rng, report, rtol)
        report.points += 1
    return report


# --- text round trip ------------------------------------------------------------------------

def differential_declarations(d) -> str:
    """Declarations of dx and dx2, as the language writes them (dx: vector(n); dX: symmetric(n))."""
    return "; ".join(f"{v.name}: {shape_text(Symbol(v.name, v.shape, True, v.symmetric))}"
                     for v in (d.dx, d.dx2))


def reparse_program(d, text: str) -> str:
    return f"{declarations_text(d)}; {differential_declarations(d)}; {text}"


def reparse_problems(d, values: dict, sizes: dict, rng, rtol: float = 1e-9) -> list:
    """Each result printed as text parses back, with the same shape, to the same numbers."""
    problems = []
    dx = random_direction(d.dx, rng, sizes)
    dx2 = random_direction(d.dx2, rng, sizes)
    env = _env(values, d, dx, dx2)
    # f as the documents write it; each result as matcalc prints it (named shared parts and all)
    from matcalc_cli.render.documents import _expr_text
    items = [("expression", d.expression, _expr_text(d.expression, d))] + \
        [(name, r.expr, r.text()) for name, r in d.results.items()]
    for name, e, text in items:
        source = reparse_program(d, text)
        try:
            typed = check(parse(source))
        except Exception as exc:  # noqa: BLE001 - any failure to read the text back is the finding
            problems.append(f"{name}: {text!r} does not parse back: {type(exc).__name__}: {exc}")
            continue
        back = typed.expression
        if back.shape != e.shape:
            problems.append(f"{name}: {text!r} parses back with shape {back.shape}, not {e.shape}")
            continue
        with np.errstate(all="ignore"):
            a = evaluate(e, env, sizes)
            b = evaluate(back, env, sizes)
        err = relative_error(a, b, 1e-12)
        if err > rtol:
            problems.append(f"{name}: {text!r} parses back to different numbers (relative error {err:.3g})")
    return problems



# --- the IR is well shaped ------------------------------------------------------------------

def _shape_rule(node):
    """The shape a node must have given its children, or None when there is nothing to check."""
    from matcalc_cli import expr as E
    from matcalc_cli.dims import ONE
    kids = node.children
    if isinstance(node, (E.Add, E.Hadamard)):
        bad = [k for k in kids if k.shape != kids[0].shape]
        return f"{type(node).__name__} of different shapes" if bad else kids[0].shape
    if isinstance(node, E.Mul):
        nonscalar = [k for k in kids if not k.is_scalar]
        if len(nonscalar) > 1:
            return "Mul with more than one non-scalar factor"
        return nonscalar[0].shape if nonscalar else (ONE, ONE)
    if isinstance(node, E.MatMul):
        for a, b in zip(kids, kids[1:]):
            if a.cols != b.rows:
                return f"MatMul of {a.rows}x{a.cols} by {b.rows}x{b.cols}"
        return (kids[0].rows, kids[-1].cols)
    if isinstance(node, E.Transpose):
        return (node.arg.cols, node.arg.rows)
    if isinstance(node, (E.Inverse, E.MatPow, E.Adj)):
        return node.arg.shape if node.arg.rows == node.arg.cols else "not square"
    if isinstance(node, (E.Trace, E.Det, E.LogDet)):
        return (ONE, ONE) if node.arg.rows == node.arg.cols else "not square"
    if isinstance(node, (E.Sum, E.Norm1, E.Norm2)):
        return (ONE, ONE)
    if isinstance(node, E.Diag):
        return (node.arg.rows, node.arg.rows) if node.arg.cols == 1 else "diag of a non-vector"
    if isinstance(node, E.DiagPart):
        return (node.arg.rows, ONE) if node.arg.rows == node.arg.cols else "diag of a non-square"
    if isinstance(node, E.Vec):
        return (node.arg.rows * node.arg.cols, ONE)
    if isinstance(node, E.Reshape):
        same = node.rows * node.cols == node.arg.rows * node.arg.cols
        return node.shape if same else "reshape changes the number of entries"
    if isinstance(node, E.Kron):
        return (node.a.rows * node.b.rows, node.a.cols * node.b.cols)
    if isinstance(node, (E.Elementwise,)):
        return node.arg.shape
    if isinstance(node, E.Power):
        return node.base.shape if node.exponent.is_scalar else "non-scalar exponent"
    return None


def shape_problems(root) -> list:
    """Nodes whose shape does not follow from their children's (an ill-shaped IR)."""
    out, seen, stack = [], set(), [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(node.children)
        want = _shape_rule(node)
        if want is None:
            continue
        if isinstance(want, str) or want != node.shape:
            out.append(f"{type(node).__name__} {to_text(node)[:80]!r}: "
                       f"{want if isinstance(want, str) else 'expected shape ' + str(want)}, has {node.shape}")
    return out


# --- the source, evaluated directly ---------------------------------------------------------------
# An independent reading of a program: NumPy straight from the syntax tree, bypassing shape inference,
# the IR and its smart constructors (which fold and rewrite as they build).  If the IR of f does not
# evaluate to the same numbers, the IR does not mean what the program says.

class Unsupported(Exception):
    """A construct this small evaluator does not handle (e.g. an I whose size only inference knows)."""


class _Identity:
    """A bare I: its size comes from what it is added to or multiplied with."""


def _sized(a, like, side=None):
    if not isinstance(a, _Identity):
        return a
    if isinstance(like, _Identity) or like is None:
        raise Unsupported("I with no size")
    n = like.shape[0] if side == "left" else like.shape[1] if side == "right" else like.shape[0]
    return np.eye(n)


class _SizesWithDefaults(dict):
    """Sizes for the dimensions of a derivation, and distinct new ones for names only the source
    uses (a constant such as tr(ones(p, p)) that the IR folded away)."""

    def __missing__(self, name):
        taken = set(self.values())
        self[name] = next(k for k in range(6, 1000) if k not in taken)
        return self[name]


def _dim(node, sizes) -> int:
    from matcalc_cli import syntax as S
    if isinstance(node, S.Number):
        return int(node.text)
    if isinstance(node, S.Name):
        return sizes[node.name]
    if isinstance(node, S.Chain) and all(op == "*" for op, _, _ in node.rest):
        out = _dim(node.first, sizes)
        for _, operand, _ in node.rest:
            out *= _dim(operand, sizes)
        return out
    if isinstance(node, S.BinOp) and node.op == "^":
        return _dim(node.left, sizes) ** int(node.right.text)
    raise Unsupported(f"dimension {node}")


def _commutation(m, n):
    K = np.zeros((m * n, m * n))
    for i in range(m):
        for j in range(n):
            K[i * n + j, j * m + i] = 1.0   # vec(X)[j*m + i] = X[i, j] = vec(X')[i*n + j]
    return K


def _is_scalar(a):
    return not isinstance(a, _Identity) and a.shape == (1, 1)


_FUNCTIONS = {
    "exp": np.exp, "log": np.log, "sin": np.sin, "cos": np.cos, "tan": np.tan, "tanh": np.tanh,
    "arcsin": np.arcsin, "arccos": np.arccos, "arctan": np.arctan, "sqrt": np.sqrt,
    "sigmoid": lambda a: 1.0 / (1.0 + np.exp(-a)), "abs": np.abs, "sign": np.sign,
    "relu": lambda a: np.where(a > 0, a, 0.0), "step": lambda a: np.where(a > 0, 1.0, 0.0),
}


def _binary(op, a, b):
    if op in ("+", "-"):
        a, b = _sized(a, b), _sized(b, a)
        return a + b if op == "+" else a - b
    if op == "*":
        if _is_scalar(a) or _is_scalar(b):
            if isinstance(a, _Identity) or isinstance(b, _Identity):
                raise Unsupported("scalar times I")
            return a * b
        a, b = _sized(a, b, "left"), _sized(b, a, "right")
        return a @ b
    if op == "/":
        return a / b
    if op == ".*":
        return _sized(a, b) * _sized(b, a)
    if op == "./":
        return _sized(a, b) / _sized(b, a)
    if op == "^":
        k = float(b[0, 0])
        if _is_scalar(a):
            return a ** k
        if isinstance(a, _Identity):
            return a
        if not k.is_integer():
            raise Unsupported("non-integer matrix power")
        return np.linalg.matrix_power(a, int(k))
    if op == ".^":
        return _sized(a, None) ** float(b[0, 0])
    raise Unsupported(op)


def _call(node, args, sizes):
    name = node.name
    if name == "I":
        n = _dim(node.args[0], sizes)
        return np.eye(n)
    if name in ("ones", "zeros"):
        dims = [_dim(a, sizes) for a in node.args] + [1]
        return (np.ones if name == "ones" else np.zeros)((dims[0], dims[1]))
    if name == "commutation":
        return _commutation(_dim(node.args[0], sizes), _dim(node.args[1], sizes))
    if name == "reshape":
        return args[0].reshape((_dim(node.args[1], sizes), _dim(node.args[2], sizes)), order="F")
    if any(isinstance(a, _Identity) for a in args):
        raise Unsupported(f"{name}(I)")
    a = args[0]
    if name in _FUNCTIONS:
        return _FUNCTIONS[name](a)
    if name == "tr":
        return np.array([[np.trace(a)]])
    if name == "det":
        return np.array([[np.linalg.det(a)]])
    if name == "logdet":
        sign, value = np.linalg.slogdet(a)
        return np.array([[value if sign > 0 else np.nan]])
    if name == "inv":
        return np.linalg.inv(a)
    if name == "adj":
        return np.linalg.det(a) * np.linalg.inv(a) if a.shape != (1, 1) else np.ones((1, 1))
    if name == "diag":
        if a.shape[1] == 1 or a.shape[0] == 1:
            return np.diagflat(a.reshape(-1, order="F"))
        return np.diag(a).reshape(-1, 1).copy()
    if name == "vec":
        return a.reshape(-1, 1, order="F")
    if name == "kron":
        return np.kron(a, args[1])
    if name == "sum":
        return np.array([[np.sum(a)]])
    if name == "norm1":
        return np.array([[np.sum(np.abs(a))]])
    if name == "norm2":
        return np.array([[np.sqrt(np.sum(a * a))]])
    raise Unsupported(name)


def source_value(source: str, values: dict, sizes: dict) -> np.ndarray:
    """The value of a program's expression, evaluated from its syntax tree with NumPy."""
    from matcalc_cli import syntax as S

    program = parse(source)
    env = {k: np.asarray(v, dtype=float) for k, v in values.items()}
    sizes = _SizesWithDefaults(sizes)

    def ev(root):
        # iterative post-order: generated programs can be deep
        out, stack = {}, [(root, False)]
        while stack:
            node, done = stack.pop()
            kids = _children(node)
            if not done:
                stack.append((node, True))
                stack.extend((k, False) for k in kids)
                continue
            k = [out[id(c)] for c in kids]
            if isinstance(node, S.Number):
                v = np.array([[float(node.text)]])
            elif isinstance(node, S.Name):
                if node.name == "I":
                    v = _Identity()
                else:
                    v = env[node.name]
            elif isinstance(node, S.Neg):
                v = -k[0] if not isinstance(k[0], _Identity) else _raise(Unsupported("-I"))
            elif isinstance(node, S.Transpose):
                v = k[0] if isinstance(k[0], _Identity) else k[0].T
            elif isinstance(node, S.BinOp):
                v = _binary(node.op, k[0], k[1])
            elif isinstance(node, S.Chain):
                v = k[0]
                for (op, _, _), operand in zip(node.rest, k[1:]):
                    v = _binary(op, v, operand)
            elif isinstance(node, S.Call):
                v = _call(node, k, sizes)
            else:
                raise Unsupported(type(node).__name__)
            out[id(node)] = v
        return out[id(root)]

    def _children(node):
        if isinstance(node, (S.Neg, S.Transpose)):
            return [node.operand]
        if isinstance(node, S.BinOp):
            return [node.left, node.right]
        if isinstance(node, S.Chain):
            return [node.first] + [operand for _, operand, _ in node.rest]
        if isinstance(node, S.Call):
            if node.name in ("I", "ones", "zeros", "commutation"):
                return []
            if node.name == "reshape":
                return [node.args[0]]
            return list(node.args)
        return []

    with np.errstate(all="ignore"):
        for stmt in program.declarations:
            if isinstance(stmt, S.Definition):
                env[stmt.name] = ev(stmt.expression)
        value = ev(program.expression)
    if isinstance(value, _Identity):
        raise Unsupported("the expression is a bare I")
    return value


def _raise(exc):
    raise exc


def source_problems(d, values: dict, sizes: dict, rtol: float = 1e-6) -> list:
    """The IR of f against the program evaluated from its syntax tree ([] when they agree).
    Raises Unsupported for the few programs the direct evaluator cannot read.

    Both sides round differently (the IR reorders and folds), and an ill-conditioned det or inv
    magnifies that; a wrong IR differs by much more than ``rtol``."""
    got = evaluate(d.expression, values, sizes)
    expected = source_value(d.typed.source, values, sizes)
    if got.shape != expected.shape:
        return [f"f is {got.shape[0]} x {got.shape[1]} in the IR but {expected.shape[0]} x {expected.shape[1]} "
                f"in the source"]
    finite = np.isfinite(got) & np.isfinite(expected)
    if not np.array_equal(np.isfinite(got), np.isfinite(expected)):
        return [f"the IR of f is {'not ' if not np.all(np.isfinite(got)) else ''}finite where the source "
                f"is{' not' if not np.all(np.isfinite(expected)) else ''}"]
    err = relative_error(got[finite], expected[finite], magnitude(d.expression, values, sizes))
    if err > rtol:
        np.set_printoptions(precision=6, suppress=True, linewidth=140)
        return [f"the IR of f ({to_text(d.expression)!r}) evaluates differently from the source "
                f"(relative error {err:.3g}):\n  IR:\n{got}\n  source:\n{expected}"]
    return []
