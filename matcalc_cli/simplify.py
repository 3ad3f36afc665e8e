"""Canonical form: an ordered list of small rewrite rules, applied bottom-up to a fixed point.

The smart constructors in ``expr`` already flatten, fold numbers, drop zero and identity factors,
push transposes to the leaves and collect like terms.  The rules here do what needs a wider view,
in this order (``RULES`` at the end of the module):

- ``orient_scalar``: a 1x1 product equals its transpose; pick the orientation people write
  (the differential on the right: x'A'dx rather than dx'Ax; fewer transposes; then a fixed order).
- ``exp_ratio_to_sigmoid``: exp(u) ./ (1 + exp(u)) = sigmoid(u).
- ``sum_of_products``: sum(c .* dx) = c' * dx.
- ``merge_chain_powers``: M^2 * M = M^3 for a product M.
- ``split_inverse``: inv(P * Q) = inv(Q) * inv(P) (square factors) where the pieces cancel.
- ``merge_diagonals``, ``diagonal_times_vector``, ``sum_diagonals``: diag(a) * diag(b) = diag(a .* b),
  diag(a)^k = diag(a.^k), diag(du) * v = du .* v, diag(a) + diag(b) = diag(a + b).
- ``kron_products``, ``factor_kron``: kron(a, I) * M * kron(b', I) = kron(a * b', M),
  kron(a', I) * vec(B) = B * a, kron(A, B) + kron(A, C) = kron(A, B + C).
- ``factor_elementwise``: a .* b + a .* c = a .* (b + c).
- ``sum_of_rows``, ``product_with_ones``: a' + b' = (a + b)', v' * ones(n) = sum(v).
- ``inner_product_cancels``: (y ./ exp(z))' * exp(z) = sum(y).
- ``expand_trace``: tr(M * (x * dx' + dx * x')) = 2 * x' * M * dx where that is smaller.
- ``collect_coefficients``: s * M + t * M = (s + t) * M.
- ``factor_common``: pull common factors out of sums: Ax + A'x -> (A + A')x,
  det(X) a + det(X) b -> det(X) (a + b), 2A + 2B -> 2(A + B).
- ``merge_traces``: tr(M1 dX) + tr(M2 dX) = tr((M1 + M2) dX).
- ``order_commuting_factors``: functions of one matrix commute (logm(X) inv(X) = inv(X) logm(X)).
- ``merge_frechet_terms``: dexpm(X, E) + c dexpm(X, F) = dexpm(X, E + c F).

``cost`` is the cost model that chooses between equal forms.
"""

from __future__ import annotations


from . import expr as E
from .budget import check as within_budget

MAX_PASSES = 6


def cost(e: E.Expr) -> int:
    """The cost model that chooses between equal forms: the nodes of the written-out tree, about
    the tokens printed.  Rules that could lengthen a result (splitting an inverse, distributing a
    product, factoring elementwise products) keep their rewrite only when it costs less."""
    return E.tree_size(e)


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
    """Memoised per distinct node (a function of the node alone): the sums of a definition chain
    share their terms, and each is factored once."""
    if not isinstance(e, E.Add):
        return e
    memo = e.memo()
    if "factor_common" not in memo:
        memo["factor_common"] = _factor_common(e)
    return memo["factor_common"]


def _factor_common(e: E.Add) -> E.Expr:
    terms = [_decompose(t) for t in e.args]
    # 1. a scalar factor shared by every term, also as the lowest power of it: s^2 a + s b = s (s a + b)
    shared = _shared_powers([scalars for _, scalars, _ in terms])
    if shared:
        common = [_raise(b, k) for b, k in shared.items()]
        rest = [_compose(coef, _divide_powers(scalars, shared), chain) for coef, scalars, chain in terms]
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


def group_repeated_sum(e: E.Expr) -> E.Expr:
    """A repeated sum written once: (a + b) * c + (a + b) * d = (a + b) * (c + d).

    A sum that several terms (not all: that is ``factor_common``) have as a scalar factor is
    pulled out of those terms: (a + b) * c + (a + b) * d + e = (a + b) * (c + d) + e."""
    if not isinstance(e, E.Add):
        return e
    terms = [_decompose(t) for t in e.args]
    counts: dict = {}
    for i, (_, scalars, _) in enumerate(terms):
        for base, k in _powers(scalars).items():
            if isinstance(base, E.Add) and k > 0:
                counts.setdefault(base, []).append(i)
    groups = [(b, idx) for b, idx in counts.items() if 2 <= len(idx) < len(terms)]
    if not groups:
        return e
    base, idx = max(groups, key=lambda g: (len(g[1]), cost(g[0])))
    inner = E.add(*[_compose(terms[i][0], _divide_powers(terms[i][1], {base: 1}), terms[i][2]) for i in idx])
    return E.add(E.mul(base, inner), *[t for i, t in enumerate(e.args) if i not in idx])


def _powers(factors) -> dict:
    """base -> exponent of a product of commuting factors (s^2 * s * t -> {s: 3, t: 1})."""
    out: dict = {}
    for f in factors:
        base, k = E._base_and_exponent(f)
        out[base] = out.get(base, 0) + k
    return out


def _shared_powers(products: list) -> dict:
    """base -> exponent shared by every product of commuting factors: the same power in each, or
    the lowest of positive powers (s^2 and s share s; 1/s^2 and 1/s share nothing)."""
    counts = [_powers(p) for p in products]
    shared = {}
    for base, k in counts[0].items():
        exps = [c.get(base) for c in counts]
        if any(x is None for x in exps):
            continue
        if all(x == k for x in exps) or all(x > 0 for x in exps):
            shared[base] = min(exps) if k > 0 else k
    return {b: k for b, k in shared.items() if k != 0}


def _divide_powers(factors, shared: dict) -> list:
    """The factors of a product with the shared powers taken out."""
    counts = _powers(factors)
    for base, k in shared.items():
        counts[base] -= k
    return [_raise(b, k) for b, k in counts.items() if k != 0]


def _raise(base: E.Expr, k) -> E.Expr:
    return base if k == 1 else E.Power(base, E.Num(k))


def _is_vector(e: E.Expr) -> bool:
    return e.cols == 1 or e.rows == 1


def _hides_scaled_term(terms, idx) -> bool:
    """Pulling a factor out of s*M*x + t*x would leave (s*M + t*I) x, where t is not a number: a
    plain term hidden behind t * I.  People write (A + A') * x / (x' * x) - 2 * x' * A * x * x / ...
    (but (A' * A + lambda * I) * dx2 for a direction: the matrix that acts on it)."""
    rests = [terms[i] for i in idx]
    bare = [scalars for _, scalars, chain in rests if len(chain) == 1]
    return bool(bare) and len(bare) < len(rests) and any(bare)


def _factor_side(e: E.Add, terms, side: int):
    groups: dict = {}
    for i, (_, scalars, chain) in enumerate(terms):
        if chain and not chain[side].is_scalar:
            if len(chain) == 1 and not _is_vector(chain[side]):
                # (A + I) x reads well, but (M - I) inv(S) or (tr(...) I) M hide a plain term
                continue
            groups.setdefault(chain[side], []).append(i)
    candidates = [(f, idx) for f, idx in groups.items() if len(idx) >= 2
                  and (E.has_differential(f) or not _hides_scaled_term(terms, idx))]
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


# --- rule: powers of a product --------------------------------------------------------------------

def merge_chain_powers(e: E.Expr) -> E.Expr:
    """M^2 * M = M^3 where M is itself a product: (X'AX)^2 X'AX = (X'AX)^3, on either side."""
    if not isinstance(e, E.MatMul):
        return e
    f = list(e.args)
    changed = False
    i = 0
    while i < len(f):
        p = f[i]
        if isinstance(p, E.MatPow) and isinstance(p.arg, E.MatMul):
            chain = list(p.arg.args)
            L = len(chain)
            if f[i + 1:i + 1 + L] == chain:
                f[i:i + 1 + L] = [E.matpow(p.arg, p.k + 1)]
                changed = True
                continue
            if i >= L and f[i - L:i] == chain:
                f[i - L:i + 1] = [E.matpow(p.arg, p.k + 1)]
                i -= L
                changed = True
                continue
            if i + 1 < len(f) and isinstance(f[i + 1], E.MatPow) and f[i + 1].arg == p.arg:
                f[i:i + 2] = [E.matpow(p.arg, p.k + f[i + 1].k)]
                changed = True
                continue
        i += 1
    return E.matmul(*f) if changed else e


# --- rule: inverse of a product of square factors --------------------------------------------------

def split_inverse(e: E.Expr) -> E.Expr:
    """A' * inv(B' * X' * A') * B' = inv(X'): inv(PQ) = inv(Q) inv(P) for square P, Q, used where
    the pieces cancel.

    For square P, Q, used where the pieces cancel against their neighbours (the result is
    smaller), not otherwise; under a trace the ends meet too: tr(inv(X * Y) * dX * Y) =
    tr(inv(X) * dX)."""
    under_trace = isinstance(e, E.Trace) and isinstance(e.arg, E.MatMul)
    chain = e.arg if under_trace else e
    if not isinstance(chain, E.MatMul):
        return e
    for i, f in enumerate(chain.args):
        if isinstance(f, E.Inverse) and isinstance(f.arg, E.MatMul) \
                and all(a.rows == a.cols for a in f.arg.args):
            pieces = [E.inverse(a) for a in reversed(f.arg.args)]
            out = E.matmul(*chain.args[:i], *pieces, *chain.args[i + 1:])
            if under_trace:
                out = E.trace(out)
            if cost(out) < cost(e):
                return out
    return e


# --- rules: Kronecker products --------------------------------------------------------------------

def _outer_vec_row(f: E.Expr):
    """vec(a * b')' as kron(b', a') (vec(a b') = kron(b, a)), else None."""
    if isinstance(f, E.Transpose) and isinstance(f.arg, E.Vec) and isinstance(f.arg.arg, E.MatMul):
        chain = f.arg.arg.args
        if len(chain) == 2 and chain[0].cols == 1 and chain[1].rows == 1:
            return E.kron(chain[1], E.transpose(chain[0]))
    return None


def _kron_step(f: list):
    """One local rewrite of a chain of factors toward Kronecker form, or None."""
    for i in range(len(f)):
        row = _outer_vec_row(f[i])
        if row is not None and i > 0 and f[i - 1].cols == 1 and not f[i - 1].is_scalar:
            # u * kron(p', q') = kron(p', u * q'), p' a row
            return f[:i - 1] + [E.kron(row.a, E.matmul(f[i - 1], row.b))] + f[i + 1:]
    for i in range(len(f) - 1):
        k, v = f[i], f[i + 1]
        if isinstance(k, E.Kron) and k.a.rows == 1 and isinstance(k.b, E.Identity) and isinstance(v, E.Vec) \
                and v.arg.rows == k.b.n and v.arg.cols == k.a.cols:
            # kron(a', I) * vec(B) = vec(B * a) = B * a
            return f[:i] + [E.matmul(v.arg, E.transpose(k.a))] + f[i + 2:]
        if _is_diag_vec_identity(k) and i + 2 < len(f) and isinstance(v, E.Kron) \
                and isinstance(v.b, E.Identity) and _is_diag_vec_identity(f[i + 2]) \
                and v.a.rows == v.a.cols == v.b.n == k.arg.arg.n:
            # diag(vec(I)) * kron(M, I) * diag(vec(I)) = diag(vec(I .* M))
            return f[:i] + [E.diag(E.vec(E.hadamard(E.Identity(v.b.n), v.a)))] + f[i + 3:]
    for i in range(len(f) - 2):
        a, m, b = f[i], f[i + 1], f[i + 2]
        if isinstance(a, E.Kron) and isinstance(b, E.Kron) and a.a.cols == 1 and b.a.rows == 1 \
                and isinstance(a.b, E.Identity) and isinstance(b.b, E.Identity) \
                and m.rows == a.b.cols and m.cols == b.b.rows:
            # kron(a, I) * M * kron(b', I) = kron(a * b', M)
            return f[:i] + [E.kron(E.matmul(a.a, b.a), m)] + f[i + 3:]
    return None


def _is_diag_vec_identity(f: E.Expr) -> bool:
    return isinstance(f, E.Diag) and isinstance(f.arg, E.Vec) and isinstance(f.arg.arg, E.Identity)


def kron_products(e: E.Expr) -> E.Expr:
    """kron(a, I) * M * kron(b', I) = kron(a * b', M), also through a sum that the outer factors
    distribute over, and u * vec(a * b')' = kron(b', u * a'): Hessians of functions of W * x
    read as kron(x * x', C).  Kept only where the result is smaller."""
    if not isinstance(e, E.MatMul):
        return e
    f = list(e.args)
    step = _kron_step(f)
    if step is not None:
        out = E.matmul(*step)
        return out if cost(out) <= cost(e) else e
    for i, s_ in enumerate(f):
        if isinstance(s_, E.Add) and i > 0 and isinstance(f[i - 1], E.Kron) \
                and expanded_terms(s_) <= MAX_EXPANDED_TERMS:
            after = [f[i + 1]] if i + 1 < len(f) and isinstance(f[i + 1], E.Kron) else []
            terms = [_on_body(simplify_node(E.matmul(f[i - 1], t, *after)), kron_products) for t in s_.args]
            if all(_kron_led(_body(t)) for t in terms):
                out = E.matmul(*f[:i - 1], factor_kron(E.add(*terms)), *f[i + 1 + len(after):])
                # kron(A, B) * (kron(C, I(n)) + ...): the identities it merges away print as I(n)
                if _written_cost(out) <= _written_cost(e):
                    return out
    return e


def _kron_led(t: E.Expr) -> bool:
    """A Kronecker product, or a product that starts with one (kron(A, B) * commutation(n, n))."""
    return isinstance(t, E.Kron) or (isinstance(t, E.MatMul) and isinstance(t.args[0], E.Kron))


def _written_cost(e: E.Expr) -> int:
    """``cost`` with each identity counted as it prints inside a Kronecker product, I(n): a name
    and its dimension."""
    return cost(e) + _identities(e)


def _identities(e: E.Expr) -> int:
    memo = e.memo()
    if "identities" not in memo:
        memo["identities"] = isinstance(e, E.Identity) + sum(_identities(c) for c in e.children)
    return memo["identities"]


def absorb_into_kron(e: E.Expr) -> E.Expr:
    """kron(a, B) * N = kron(a, B * N) for a column a.

    Likewise N * kron(b, B) = kron(b, N * B) for a row b.  A Kronecker factor with a vector takes in its neighbours: diag(u) * kron(x', I(m)) =
    kron(x', diag(u)), kron(h, I(k)) * C = kron(h, C); where the neighbour holds the other
    vector, kron(a, kron(b', C)) = kron(a * b', C)."""
    if isinstance(e, E.Kron) and (e.a.cols == 1 or e.a.rows == 1) and not e.a.is_scalar:
        return _kron_of_vectors(e.a, e.b)
    if not isinstance(e, E.MatMul):
        return e
    f = list(e.args)
    for i, k in enumerate(f):
        if not isinstance(k, E.Kron) or k.a.is_scalar:
            continue
        if k.a.cols == 1 and i + 1 < len(f) and not f[i + 1].is_scalar:
            return E.matmul(*f[:i], _kron_of_vectors(k.a, E.matmul(k.b, *f[i + 1:])))
        if k.a.rows == 1 and i > 0 and not f[i - 1].is_scalar:
            return E.matmul(_kron_of_vectors(k.a, E.matmul(*f[:i], k.b)), *f[i + 1:])
    return e


def _kron_of_vectors(v: E.Expr, inner: E.Expr) -> E.Expr:
    """kron(v, inner), with kron(a, kron(b', C)) = kron(a * b', C) (a a column, b' a row; or the
    other way round, kron(b', kron(a, C)) = kron(a * b', C))."""
    scalars, body = _scalars(inner), _body(inner)
    if isinstance(body, E.Kron) and not body.a.is_scalar:
        u = body.a
        if v.cols == 1 and u.rows == 1:
            return E.mul(*scalars, E.kron(E.matmul(v, u), body.b))
        if v.rows == 1 and u.cols == 1:
            return E.mul(*scalars, E.kron(E.matmul(u, v), body.b))
    return E.kron(v, inner)


def _on_body(t: E.Expr, rule) -> E.Expr:
    """A rule applied to the non-scalar part of s * M."""
    return E.mul(*_scalars(t), rule(_body(t))) if _scalars(t) else rule(t)


def simplify_node(e: E.Expr) -> E.Expr:
    """The rules applied once to one node; memoised per distinct node (the rules are functions of
    the node alone), so a distribution tried in many places of a DAG is worked out once."""
    memo = e.memo()
    if "simplify_node" not in memo:
        out = e
        for rule in RULES:
            out = rule(out)
        memo["simplify_node"] = out
    return memo["simplify_node"]


def factor_kron(e: E.Expr) -> E.Expr:
    """kron(A, B) + kron(A, C) = kron(A, B + C).

    Also kron(A, C) + kron(B, C) = kron(A + B, C), for the terms of a sum that share an operand
    (scalar factors go with the other operand)."""
    if not isinstance(e, E.Add):
        return e
    for side in ("a", "b"):
        groups: dict = {}
        for i, t in enumerate(e.args):
            if isinstance(_body(t), E.Kron):
                groups.setdefault(getattr(_body(t), side), []).append(i)
        merged = [idx for idx in groups.values() if len(idx) >= 2]
        if not merged:
            continue
        idx = merged[0]
        shared = getattr(_body(e.args[idx[0]]), side)
        other = "b" if side == "a" else "a"
        inner = E.add(*[E.mul(*_scalars(e.args[i]), getattr(_body(e.args[i]), other)) for i in idx])
        combined = E.kron(shared, inner) if side == "a" else E.kron(inner, shared)
        return E.add(combined, *[t for i, t in enumerate(e.args) if i not in idx])
    return e


# --- rules: diagonal matrices ----------------------------------------------------------------------

def merge_diagonals(e: E.Expr) -> E.Expr:
    """diag(a) * diag(b) = diag(a .* b) and diag(a)^k = diag(a.^k): diagonal matrices multiply entrywise."""
    if isinstance(e, E.MatPow) and isinstance(e.arg, E.Diag):
        return E.diag(E.power(e.arg.arg, E.Num(e.k)))
    if not isinstance(e, E.MatMul) or not any(isinstance(f, E.Diag) for f in e.args):
        return e
    out: list = []
    for f in e.args:
        if out and isinstance(out[-1], E.Diag) and isinstance(f, E.Diag):
            out[-1] = E.diag(E.hadamard(out[-1].arg, f.arg))
        else:
            out.append(f)
    return e if len(out) == len(e.args) else E.matmul(*out)


def diagonal_times_vector(e: E.Expr) -> E.Expr:
    """diag(u) * v = u .* v where u holds a differential: the differential then sits in an
    elementwise product, and reads (and differentiates) as one: x .* dx rather than diag(dx) * x.
    Likewise a vector diag(u) * dx (exp(z) .* dz), but not inside a product that a matrix acts on
    or a bilinear form (dx' * diag(u) * dx2 reads as the Hessian between its directions)."""
    if not isinstance(e, E.MatMul) or e.cols != 1:
        return e
    f = e.args
    for i in range(len(f) - 1):
        if isinstance(f[i], E.Diag) and f[i + 1].cols == 1 and i + 1 == len(f) - 1 and (
                E.has_differential(f[i].arg) or (i == 0 and E.has_differential(f[i + 1]))):
            return E.matmul(*f[:i], E.hadamard(f[i].arg, f[i + 1]))
    return e


def sum_diagonals(e: E.Expr) -> E.Expr:
    """diag(a) + diag(b) = diag(a + b), with numeric and scalar coefficients carried inside."""
    if not isinstance(e, E.Add):
        return e
    diagonal = [t for t in e.args if isinstance(_body(t), E.Diag)]
    if len(diagonal) < 2:
        return e
    others = [t for t in e.args if not isinstance(_body(t), E.Diag)]
    inner = E.add(*[E.mul(*_scalars(t), _body(t).arg) for t in diagonal])
    return E.add(E.diag(inner), *others) if others else E.diag(inner)


def _body(t: E.Expr) -> E.Expr:
    return t.args[-1] if isinstance(t, E.Mul) and not t.is_scalar else t


def _scalars(t: E.Expr) -> tuple:
    return t.args[:-1] if isinstance(t, E.Mul) and not t.is_scalar else ()


# --- rule: common elementwise factors ------------------------------------------------------------

def factor_elementwise(e: E.Expr) -> E.Expr:
    """a .* b .* c + a .* b .* d = a .* b .* (c + d): factors shared by every term of a sum of
    elementwise products (vectors and matrices), so that (1 - y) + y can meet and cancel."""
    if not isinstance(e, E.Add) or e.is_scalar:
        return e
    parts = []
    for t in e.args:
        scal, body = _scalars(t), _body(t)
        parts.append((scal, list(body.args) if isinstance(body, E.Hadamard) else [body]))
    shared = _shared_powers([factors for _, factors in parts])   # also powers: s.^2 .* a + s .* b
    if not shared:
        return e
    lefts = [_divide_powers(factors, shared) for _, factors in parts]
    if any(not left for left in lefts) or not _collects_differentials(e, shared, lefts):
        return e
    rests = [E.mul(*scal, E.hadamard(*left)) for (scal, _), left in zip(parts, lefts)]
    out = E.hadamard(*[_raise(b, k) for b, k in shared.items()], E.add(*rests))
    return out if cost(out) < cost(e) else e


def _collects_differentials(e: E.Expr, shared: dict, lefts: list) -> bool:
    """Whether factoring collects differentials as a person does.

    Where a sum holds differentials, factor only what collects them as a person does: the
    coefficient of a shared differential (a .* dx + b .* dx = (a + b) .* dx), or a shared
    coefficient of plain differentials (t .* (dW * x) + t .* db = t .* (dW * x + db)); not a
    factor of some other product (the Hessian's d(grad) keeps its terms, which identify apart)."""
    if not E.has_differential(e):
        return True
    if all(len(left) == 1 for left in lefts):
        return True
    return any(E.has_differential(b) for b in shared) and \
        not any(E.has_differential(f) for left in lefts for f in left)


# --- rule: inner products that cancel --------------------------------------------------------------

def inner_product_cancels(e: E.Expr) -> E.Expr:
    """(y ./ exp(z))' * exp(z) = sum(y): an inner product a' * b as sum(a .* b) where factors of
    the elementwise product cancel (and the result is smaller)."""
    if not isinstance(e, E.MatMul) or not e.is_scalar or len(e.args) != 2 or e.args[1].cols != 1:
        return e
    a, b = E.transpose(e.args[0]), e.args[1]
    if not (isinstance(a, E.Hadamard) or isinstance(b, E.Hadamard)):
        return e
    out = E.sum_(E.hadamard(a, b))
    return out if cost(out) < cost(e) else e


# --- rule: traces of outer products --------------------------------------------------------------

MAX_EXPANDED_TERMS = 16   # a distribution is tried only where it writes at most this many terms


def expanded_terms(e: E.Expr) -> int:
    """How many terms ``e`` has with every product distributed over its sums, counted up to
    MAX_EXPANDED_TERMS + 1 (per distinct node: Y_k = Y_(k-1) * Y_(k-1)' + Y_(k-1), k deep, has
    about 2^(2^k) terms in k nodes)."""
    memo = e.memo()
    if "terms" not in memo:
        if isinstance(e, E.Add):
            n = sum(expanded_terms(t) for t in e.args)
        elif isinstance(e, (E.MatMul, E.Mul, E.Hadamard, E.Kron, E.Transpose)):
            n = 1
            for c in e.children:
                n *= expanded_terms(c)
        else:
            n = 1
        memo["terms"] = min(n, MAX_EXPANDED_TERMS + 1)
    return memo["terms"]


def expand_trace(e: E.Expr) -> E.Expr:
    """tr(M * (x * dx' + dx * x')) = 2 * x' * M * dx for symmetric M: a trace over a sum is
    distributed where the terms then drop their traces (rank-one terms) and the result is smaller.
    Never where the full distribution is large (it grows exponentially down a definition chain)."""
    if not isinstance(e, E.Trace) or not isinstance(e.arg, E.MatMul):
        return e
    if expanded_terms(e.arg) > MAX_EXPANDED_TERMS:
        return e
    f = e.arg.args
    for i, s_ in enumerate(f):
        if isinstance(s_, E.Add):
            # each product brought to its own canonical form first: tr(inv(X * Y) * X * dY) = tr(inv(Y) * dY)
            terms = [E.trace(simplify_node(E.matmul(*f[:i], t, *f[i + 1:]))) for t in s_.args]
            out = E.add(*[simplify_node(t) for t in terms])
            if cost(out) < cost(e):
                return out
    return e


# --- rules: sums of rows, products with ones ------------------------------------------------------

def sum_of_rows(e: E.Expr) -> E.Expr:
    """a' + b' = (a + b)' for row vectors, so that terms inside can meet: (1 - y)' + y' = 1'."""
    if not isinstance(e, E.Add) or e.rows != 1 or e.is_scalar:
        return e
    summed = E.add(*[E.transpose(t) for t in e.args])
    out = E.transpose(summed)
    return out if cost(out) < cost(e) else e


def product_with_ones(e: E.Expr) -> E.Expr:
    """ones(n)' * v = v' * ones(n) = sum(v): the sum of the entries."""
    if not isinstance(e, E.MatMul) or not e.is_scalar or len(e.args) != 2:
        return e
    a, b = e.args
    if isinstance(a, E.Ones):
        return E.sum_(b)
    if isinstance(b, E.Ones):
        return E.sum_(a)
    return e


# --- rules: matrix functions ----------------------------------------------------------------------

def order_commuting_factors(e: E.Expr) -> E.Expr:
    """Functions of one matrix commute: logm(X) inv(X) = inv(X) logm(X).  Adjacent factors that are
    functions of the same matrix, one of them expm, logm or sqrtm, are put in one order (by key), so
    that such products collect: G + G' -> 2 G for the gradient of norm2(logm(X))^2."""
    if not isinstance(e, E.MatMul):
        return e
    out, run, base = [], [], None

    def flush():
        out.extend(sorted(run, key=lambda f: f.key) if any(isinstance(f, E.MatFun) for f in run) else run)

    for f in e.args:
        b = E.function_base(f)
        if run and b == base:
            run.append(f)
            continue
        flush()
        run, base = [f], b
    flush()
    return e if out == list(e.args) else E.matmul(*out)


def merge_frechet_terms(e: E.Expr) -> E.Expr:
    """L_f(X)[E] + c L_f(X)[F] -> L_f(X)[E + c F]: the derivative is linear in its direction
    (the symmetric gradient of tr(A expm(X)) reads dexpm(X, A + A') / 2)."""
    if not isinstance(e, E.Add):
        return e
    groups: dict = {}
    for i, t in enumerate(e.args):
        coef, body = E.split_coef(t)
        if isinstance(body, E.Frechet) and body.order == 1:
            groups.setdefault((body.fn, body.arg), []).append((i, coef, body.directions[0]))
    merged = [g for g in groups.values() if len(g) > 1]
    if not merged:
        return e
    used = {i for g in merged for i, _, _ in g}
    out = [t for i, t in enumerate(e.args) if i not in used]
    for (fn, arg), g in ((k, v) for k, v in groups.items() if len(v) > 1):
        out.append(E.frechet(fn, arg, (E.add(*[E.scale(c, d) for _, c, d in g]),)))
    return E.add(*out)


RULES = (
    orient_scalar, exp_ratio_to_sigmoid, sum_of_products,
    merge_chain_powers, split_inverse,
    merge_diagonals, diagonal_times_vector, sum_diagonals,
    kron_products, absorb_into_kron, factor_kron,
    factor_elementwise, sum_of_rows, product_with_ones, inner_product_cancels, expand_trace,
    collect_coefficients, factor_common, group_repeated_sum, merge_traces,
    order_commuting_factors, merge_frechet_terms,
)
