"""Canonical form: an ordered list of small rewrite rules, applied bottom-up to a fixed point.

The smart constructors in ``expr`` already flatten, fold numbers, drop zero and identity factors,
push transposes to the leaves and collect like terms.  The rules here do what needs a wider view:

- ``orient_scalar``: a 1x1 product equals its transpose; pick the orientation people write
  (the differential on the right: x'A'dx rather than dx'Ax; fewer transposes; then a fixed order).
- ``factor_common``: pull common factors out of sums: Ax + A'x -> (A + A')x,
  det(X) a + det(X) b -> det(X) (a + b), 2A + 2B -> 2(A + B).
"""

from __future__ import annotations

from collections import Counter

from . import expr as E
from .budget import check as within_budget

MAX_PASSES = 6


def simplify(e: E.Expr) -> E.Expr:
    for _ in range(MAX_PASSES):
        new = _bottom_up(e)
        if new == e:
            return new
        e = new
    return e


def _bottom_up(e: E.Expr) -> E.Expr:
    memo: dict = {}

    def go(node):
        if not node.children or node.memo().get("canonical"):
            return node
        if node in memo:
            return memo[node]
        within_budget()   # the request's deadline (budget.py)
        children = [go(c) for c in node.children]
        same = all(new is old for new, old in zip(children, node.children))
        out = node if same else E.rebuild(node, children)
        for rule in RULES:
            out = rule(out)
        if out == node:
            # the rules are functions of the node alone, so a fixed point stays one
            node.memo()["canonical"] = True
            out.memo()["canonical"] = True
        memo[node] = out
        return out

    return go(e)


# --- rule: orientation of scalar products -------------------------------------------------------

def _diff_rank(e: E.Expr) -> int:
    return e.diff_rank


def _orientation_score(chain: E.Expr):
    factors = chain.args if isinstance(chain, E.MatMul) else (chain,)
    return (-_diff_rank(factors[-1]), _diff_rank(factors[0]), E.transpose_count(chain), chain.key)


def flip(chain: E.MatMul) -> E.Expr:
    """The transpose of a 1x1 product, written out: (x'Ay)' = y'A'x."""
    return E.matmul(*[E.transpose(f) for f in reversed(chain.args)])


def orient_scalar(e: E.Expr) -> E.Expr:
    if not (isinstance(e, E.MatMul) and e.is_scalar):
        return e
    other = flip(e)
    if isinstance(other, E.MatMul) and _orientation_score(other) < _orientation_score(e):
        return other
    return e


# --- rule: common factors ---------------------------------------------------------------------

def _decompose(term: E.Expr):
    """term = coef * scalars * chain -> (coef, [scalar factors], [matrix factors]).

    For a scalar term the chain is its 1x1 product (x'A dx), so scalar terms factor too."""
    coef, body = E.split_coef(term)
    parts = [p for p in (body.args if isinstance(body, E.Mul) else (body,)) if not isinstance(p, E.Num)]
    if not term.is_scalar:
        last = parts.pop()
        return coef, parts, list(last.args) if isinstance(last, E.MatMul) else [last]
    chains = [p for p in parts if isinstance(p, E.MatMul)]
    if not chains:
        return coef, parts, []
    pick = max(chains, key=_diff_rank)
    parts.remove(pick)
    return coef, parts, list(pick.args)


def _compose(coef, scalars, chain) -> E.Expr:
    body = E.matmul(*chain) if chain else E.Num(1)
    return E.mul(E.Num(coef), *scalars, body)


def collect_coefficients(e: E.Expr) -> E.Expr:
    """s*M + t*M -> (s + t)*M: terms that differ only in their scalar factors."""
    if not isinstance(e, E.Add):
        return e
    groups: dict = {}
    for i, (_, _, chain) in enumerate(_decompose(t) for t in e.args):
        if chain:
            groups.setdefault(tuple(chain), []).append(i)
    merged = [idx for idx in groups.values() if len(idx) >= 2]
    if not merged:
        return e
    used = {i for idx in merged for i in idx}
    out = [t for i, t in enumerate(e.args) if i not in used]
    for idx in merged:
        parts = [_decompose(e.args[i]) for i in idx]
        coefficient = E.add(*[E.mul(E.Num(c), *scalars) for c, scalars, _ in parts])
        out.append(E.mul(coefficient, E.matmul(*parts[0][2])))
    return E.add(*out)


def factor_common(e: E.Expr) -> E.Expr:
    if not isinstance(e, E.Add):
        return e
    terms = [_decompose(t) for t in e.args]
    # 1. a scalar factor shared by every term
    shared = Counter(terms[0][1])
    for _, scalars, _ in terms[1:]:
        shared &= Counter(scalars)
    if shared:
        common = list(shared.elements())
        rest = []
        for coef, scalars, chain in terms:
            left = Counter(scalars) - shared
            rest.append(_compose(coef, list(left.elements()), chain))
        return E.mul(*common, factor_common(E.add(*rest)))
    # 2. a numeric factor shared by every term: 2A + 2B -> 2 (A + B), -A - B -> -(A + B)
    if all(c < 0 for c, _, _ in terms):
        return E.neg(factor_common(E.add(*[E.neg(t) for t in e.args])))
    coefs = {abs(c) for c, _, _ in terms}
    if len(coefs) == 1 and 1 not in coefs and 0 not in coefs:
        c = coefs.pop()
        return E.mul(E.Num(c), factor_common(E.add(*[E.scale(t_c / c, E.split_coef(t)[1])
                                                     for t, (t_c, _, _) in zip(e.args, terms)])))
    # 3. a common right or left matrix factor
    for side in (-1, 0):
        grouped = _factor_side(e, terms, side)
        if grouped is not None:
            return grouped
    return e


def _is_vector(e: E.Expr) -> bool:
    return e.cols == 1 or e.rows == 1


def _factor_side(e: E.Add, terms, side: int):
    groups: dict = {}
    for i, (_, scalars, chain) in enumerate(terms):
        if chain and not chain[side].is_scalar:
            if len(chain) == 1 and not _is_vector(chain[side]):
                # (A + I) x reads well, but (M - I) inv(S) or (tr(...) I) M hide a plain term
                continue
            groups.setdefault(chain[side], []).append(i)
    candidates = [(f, idx) for f, idx in groups.items() if len(idx) >= 2]
    if not candidates:
        return None
    factor, idx = max(candidates, key=lambda c: (len(c[1]), -len(c[0].key)))
    rests = [(terms[i], terms[i][2][:-1] if side == -1 else terms[i][2][1:]) for i in idx]
    if all(not rest for _, rest in rests):
        # s x + t x: only scalars differ
        inner = factor_common(E.add(*[_compose(c, sc, []) for (c, sc, _), _ in rests]))
        combined = E.mul(inner, factor)
    else:
        n = factor.rows if side == -1 else factor.cols
        inner = factor_common(E.add(*[_compose(c, sc, rest or [E.identity(n)]) for (c, sc, _), rest in rests]))
        combined = E.matmul(inner, factor) if side == -1 else E.matmul(factor, inner)
    others = [e.args[i] for i in range(len(terms)) if i not in idx]
    return E.add(combined, *others) if others else combined


# --- rule: sigmoid ------------------------------------------------------------------------------

def _one_plus_exp(e: E.Expr):
    """u when e is 1 + exp(u) (1 broadcast or scalar), else None."""
    if isinstance(e, E.Add) and len(e.args) == 2:
        a, b = e.args
        for one, other in ((a, b), (b, a)):
            if (E.is_one(one) or isinstance(one, E.Ones)) and isinstance(other, E.Elementwise) \
                    and other.fn == "exp":
                return other.arg
    return None


def exp_ratio_to_sigmoid(e: E.Expr) -> E.Expr:
    """exp(u)^k ./ (1 + exp(u))^k -> sigmoid(u)^k, in elementwise and scalar products."""
    if not isinstance(e, (E.Hadamard, E.Mul)):
        return e
    factors = list(e.args)
    powers = {}
    for i, f in enumerate(factors):
        base, k = E._base_and_exponent(f)
        if isinstance(base, E.Elementwise) and base.fn == "exp":
            powers.setdefault(base.arg, [None, None])[0] = (i, k)
        u = _one_plus_exp(base)
        if u is not None:
            powers.setdefault(u, [None, None])[1] = (i, k)
    for u, (num, den) in powers.items():
        if num and den and num[1] == -den[1]:
            k = num[1]
            sig = E.power(E.elementwise("sigmoid", u), E.Num(k))
            rest = [f for j, f in enumerate(factors) if j not in (num[0], den[0])]
            combine = E.hadamard if isinstance(e, E.Hadamard) else E.mul
            return combine(*rest, sig) if rest else sig
    return e


# --- rule: sums of elementwise products with a differential --------------------------------------

def sum_of_products(e: E.Expr) -> E.Expr:
    """sum(c .* p) = c'p and sum(c .* p .* q) = p' diag(c) q for vectors p, q holding differentials,
    so that differentials read as products: x' * dx rather than sum(x .* dx)."""
    if not isinstance(e, E.Sum):
        return e
    arg = e.arg
    if not isinstance(arg, E.Hadamard):
        return e
    with_d = [f for f in arg.args if E.has_differential(f)]
    rest = [f for f in arg.args if not E.has_differential(f)]
    if len(with_d) not in (1, 2):
        return e
    c = E.hadamard(*rest) if rest else None
    if len(with_d) == 1:
        return E.inner(c, with_d[0]) if c is not None else E.sum_(with_d[0])
    p, q = with_d
    if arg.cols != 1:
        return e
    middle = [E.diag(c)] if c is not None else []
    return E.matmul(E.transpose(p), *middle, q)


# --- rule: traces that share a factor ------------------------------------------------------------

def merge_traces(e: E.Expr) -> E.Expr:
    """tr(M1 dX) + tr(M2 dX) -> tr((M1 + M2) dX) when the arguments share a factor."""
    if not isinstance(e, E.Add):
        return e
    traces = [i for i, t in enumerate(e.args) if isinstance(E.split_coef(t)[1], E.Trace)]
    if len(traces) < 2:
        return e
    inner = E.add(*[E.scale(E.split_coef(e.args[i])[0], E.split_coef(e.args[i])[1].arg) for i in traces])
    factored = factor_common(inner)
    if isinstance(factored, E.Add):
        return e
    others = [t for i, t in enumerate(e.args) if i not in traces]
    return E.add(E.trace(factored), *others)


RULES = (orient_scalar, exp_ratio_to_sigmoid, sum_of_products, collect_coefficients, factor_common,
         merge_traces)
