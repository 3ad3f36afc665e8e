"""The differential: df = f(x + dx) - f(x) to first order, as an expression linear in dx.

One small function per node kind, each a rule of the differential calculus (sum, product and
chain rules; d inv(X) = -inv(X) dX inv(X); d det(X) = det(X) tr(inv(X) dX); ...).  Results of
subexpressions are memoised, so shared subtrees are differentiated once.
"""

from __future__ import annotations

from fractions import Fraction

from . import expr as E
from .budget import check as within_budget
from .errors import MathError


def differential(f: E.Expr, x: E.Var, dx: E.Var, everywhere: bool = False) -> E.Expr:
    """df for a change dx of the variable x (dx has x's shape).

    By default det and adj are differentiated as the reference text does, through inv(X)
    (d det(X) = det(X) tr(inv(X) dX)), which holds for invertible X.  With ``everywhere`` they are
    differentiated as the polynomials they are: Jacobi's formula d det(X) = tr(adj(X) dX), and
    d adj(X) = adj_diff(X, dX), which hold at every X, singular or not."""
    return _Differentiator(x, dx, everywhere).d(f)


def uses_inverse_form(f: E.Expr) -> bool:
    """True when f has a det or adj whose classical derivative goes through inv."""
    return E.contains(f, lambda n: isinstance(n, (E.Det, E.Adj, E.AdjDiff, E.AdjJacobian)))


class _Differentiator:
    def __init__(self, x: E.Var, dx: E.Var, everywhere: bool = False):
        self.x, self.dx = x, dx
        self.everywhere = everywhere
        self.memo: dict = {}

    def d(self, e: E.Expr) -> E.Expr:
        if e in self.memo:
            return self.memo[e]
        within_budget()   # the request's deadline (budget.py)
        if not E.depends_on(e, self.x):
            result = E.zero(e.shape)
        else:
            rule = RULES.get(type(e))
            if rule is None:  # pragma: no cover - every node kind has a rule
                raise MathError(f"no differentiation rule for {type(e).__name__}")
            result = rule(self, e)
        self.memo[e] = result
        return result


def d_var(D, e: E.Var):
    return D.dx  # only reached for the variable itself: other names do not depend on x


def d_add(D, e: E.Add):
    return E.add(*[D.d(t) for t in e.args])


def _product_rule(D, args, combine):
    """d(f1 f2 ... fk) = sum_i f1 ... d(fi) ... fk, for any associative product ``combine``."""
    terms = []
    for i, f in enumerate(args):
        df = D.d(f)
        if E.is_zero(df):
            continue
        terms.append(combine(*args[:i], df, *args[i + 1:]))
    return E.add(*terms) if terms else E.zero(combine(*args).shape)


def d_mul(D, e: E.Mul):
    return _product_rule(D, e.args, E.mul)


def d_matmul(D, e: E.MatMul):
    return _product_rule(D, e.args, E.matmul)


def d_hadamard(D, e: E.Hadamard):
    return _product_rule(D, e.args, E.hadamard)


def d_transpose(D, e: E.Transpose):
    return E.transpose(D.d(e.arg))


def d_inverse(D, e: E.Inverse):
    # from 0 = d(X inv(X)) = dX inv(X) + X d(inv(X))
    return E.neg(E.matmul(e, D.d(e.arg), e))


def d_matpow(D, e: E.MatPow):
    # d(X^k) = sum_i X^i dX X^(k-1-i): X and dX need not commute
    a, k, da = e.arg, e.k, D.d(e.arg)
    return E.add(*[E.matmul(E.matpow(a, i), da, E.matpow(a, k - 1 - i)) for i in range(k)])


def d_power(D, e: E.Power):
    """Elementwise u.^c: c u.^(c-1) .* du; a variable exponent adds u.^c .* log(u) dc."""
    u, c = e.base, e.exponent
    du, dc = D.d(u), D.d(c)
    terms = []
    if not E.is_zero(du):
        if isinstance(c, E.Num):
            coef = E.power(u, E.Num(c.value - 1))
            terms.append(E.mul(c, E.hadamard(coef, du)))
        else:
            coef = E.power(u, E.add(c, E.Num(-1)))
            terms.append(E.mul(c, E.hadamard(coef, du)))
    if not E.is_zero(dc):
        terms.append(E.mul(dc, E.hadamard(e, E.elementwise("log", u))))
    return E.add(*terms) if terms else E.zero(e.shape)


def d_trace(D, e: E.Trace):
    return E.trace(D.d(e.arg))


def d_det(D, e: E.Det):
    if D.everywhere:
        # Jacobi's formula, at every X: the gradient of det is the cofactor matrix adj(X)'
        return E.trace(E.matmul(E.adj(e.arg), D.d(e.arg)))
    # det(X + dX) - det(X) = det(X) tr(inv(X) dX)
    return E.mul(e, E.trace(E.matmul(E.inverse(e.arg), D.d(e.arg))))


def d_logdet(D, e: E.LogDet):
    return E.trace(E.matmul(E.inverse(e.arg), D.d(e.arg)))


def d_adj(D, e: E.Adj):
    if D.everywhere:
        return E.adj_diff(e.arg, D.d(e.arg))
    # adj(X) = det(X) inv(X):  d adj = det(X) (tr(inv(X) dX) inv(X) - inv(X) dX inv(X))
    x, dx = e.arg, D.d(e.arg)
    inv = E.inverse(x)
    return E.mul(E.det(x), E.sub(E.mul(E.trace(E.matmul(inv, dx)), inv), E.matmul(inv, dx, inv)))


def _multilinear_rule(D, e, build):
    """d F(X, D1..Dk) for F multilinear in the directions: a new direction dX, plus dDi in each."""
    x, dirs = e.args[0], list(e.args[1:])
    terms = [build(x, *dirs, D.d(x))] if E.depends_on(x, D.x) else []
    for i, di in enumerate(dirs):
        ddi = D.d(di)
        if not E.is_zero(ddi):
            terms.append(build(x, *dirs[:i], ddi, *dirs[i + 1:]))
    return E.add(*terms) if terms else E.zero(e.shape)


def d_adj_diff(D, e: E.AdjDiff):
    return _multilinear_rule(D, e, E.adj_diff)


def d_adj_jacobian(D, e: E.AdjJacobian):
    return _multilinear_rule(D, e, E.adj_jacobian)


def d_diag(D, e: E.Diag):
    return E.diag(D.d(e.arg))


def d_diag_part(D, e: E.DiagPart):
    return E.diag_part(D.d(e.arg))


def d_vec(D, e: E.Vec):
    return E.vec(D.d(e.arg))


def d_reshape(D, e: E.Reshape):
    return E.reshape(D.d(e.arg), e.rows, e.cols)


def d_sum(D, e: E.Sum):
    return E.sum_(D.d(e.arg))


def d_norm1(D, e: E.Norm1):
    # away from zero entries: d sum|u| = <sign(u), du>
    return E.inner(E.elementwise("sign", e.arg), D.d(e.arg))


def d_norm2(D, e: E.Norm2):
    # d ||u|| = <u, du> / ||u||
    return E.mul(E.inner(e.arg, D.d(e.arg)), E.power(e, E.Num(-1)))


def d_kron(D, e: E.Kron):
    return E.add(E.kron(D.d(e.a), e.b), E.kron(e.a, D.d(e.b)))


def _elementwise_derivative(fn: str, u: E.Expr) -> E.Expr:
    """f'(u), elementwise."""
    f = lambda name, arg=u: E.elementwise(name, arg)
    one = E.ones(u.shape)
    sq = lambda v: E.power(v, E.Num(2))
    table = {
        "exp": lambda: f("exp"),
        "log": lambda: E.power(u, E.Num(-1)),
        "sin": lambda: f("cos"),
        "cos": lambda: E.neg(f("sin")),
        "tan": lambda: E.add(one, sq(f("tan"))),
        "tanh": lambda: E.sub(one, sq(f("tanh"))),
        "arcsin": lambda: E.power(E.sub(one, sq(u)), E.Num(Fraction(-1, 2))),
        "arccos": lambda: E.neg(E.power(E.sub(one, sq(u)), E.Num(Fraction(-1, 2)))),
        "arctan": lambda: E.power(E.add(one, sq(u)), E.Num(-1)),
        "sqrt": lambda: E.mul(E.Num(Fraction(1, 2)), E.power(f("sqrt"), E.Num(-1))),
        "sigmoid": lambda: E.hadamard(f("sigmoid"), E.sub(one, f("sigmoid"))),
        "abs": lambda: f("sign"),
        "sign": lambda: E.zero(u.shape),
        "step": lambda: E.zero(u.shape),
        "relu": lambda: f("step"),
    }
    return table[fn]()


def _log_of_product(D, e: E.Elementwise):
    """d log(s * u) = ds / s + du ./ u, factor by factor (scalars broadcast), so that a factor
    cancels in its own term: d log(exp(z) / sum(exp(z))) = dz - exp(z)' * dz / sum(exp(z)),
    with no division by exp(z) (which overflows where log(softmax) is finite)."""
    u = e.arg
    factors = list(u.args[:-1]) + (list(u.args[-1].args) if isinstance(u.args[-1], E.Hadamard)
                                   else [u.args[-1]]) if isinstance(u, E.Mul) else list(u.args)
    terms = []
    for f in factors:
        df = D.d(f)
        if E.is_zero(df):
            continue
        ratio = E.hadamard(df, E.power(f, E.Num(-1)))
        terms.append(E.mul(ratio, E.ones(e.shape)) if f.is_scalar and not e.is_scalar else ratio)
    return E.add(*terms) if terms else E.zero(e.shape)


def d_elementwise(D, e: E.Elementwise):
    if e.fn == "log" and (isinstance(e.arg, E.Hadamard) or (isinstance(e.arg, E.Mul) and len(e.arg.args) > 1)):
        return _log_of_product(D, e)
    du = D.d(e.arg)
    deriv = _elementwise_derivative(e.fn, e.arg)
    if E.is_zero(deriv):
        return E.zero(e.shape)
    return E.hadamard(deriv, du)


def d_matfun(D, e: E.MatFun):
    # f(X + dX) = f(X) + L_f(X)[dX] + ...: the Frechet derivative (dexpm, dlogm, dsqrtm)
    return E.frechet(e.fn, e.arg, (D.d(e.arg),))


def _frechet_terms(D, e, build):
    """d of L^(k)(X)[E1..Ek]: L^(k+1)(X)[E1..Ek, dX] for the move of X, plus L^(k)(X)[.., dEi, ..]
    for each direction (multilinear: the product rule)."""
    terms = []
    dx = D.d(e.arg)
    if not E.is_zero(dx):
        terms.append(build(e.fn, e.arg, e.directions + (dx,)))
    for i, direction in enumerate(e.directions):
        d_dir = D.d(direction)
        if not E.is_zero(d_dir):
            terms.append(build(e.fn, e.arg, e.directions[:i] + (d_dir,) + e.directions[i + 1:]))
    return E.add(*terms) if terms else E.zero(e.shape)


def d_frechet(D, e: E.Frechet):
    return _frechet_terms(D, e, E.frechet)


def d_frechet_matrix(D, e: E.FrechetMatrix):
    # jexpm(X, E..) is the matrix of F -> L^(k+1)(X)[E.., F]; a move of X adds a direction
    return _frechet_terms(D, e, E.frechet_matrix)


RULES = {
    E.MatFun: d_matfun,
    E.Frechet: d_frechet,
    E.FrechetMatrix: d_frechet_matrix,
    E.Var: d_var,
    E.Add: d_add,
    E.Mul: d_mul,
    E.MatMul: d_matmul,
    E.Hadamard: d_hadamard,
    E.Transpose: d_transpose,
    E.Inverse: d_inverse,
    E.MatPow: d_matpow,
    E.Power: d_power,
    E.Trace: d_trace,
    E.Det: d_det,
    E.LogDet: d_logdet,
    E.Adj: d_adj,
    E.AdjDiff: d_adj_diff,
    E.AdjJacobian: d_adj_jacobian,
    E.Diag: d_diag,
    E.DiagPart: d_diag_part,
    E.Vec: d_vec,
    E.Reshape: d_reshape,
    E.Sum: d_sum,
    E.Norm1: d_norm1,
    E.Norm2: d_norm2,
    E.Kron: d_kron,
    E.Elementwise: d_elementwise,
}
