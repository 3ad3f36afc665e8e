"""Lowering for generated code: rewrite a result into an equal expression that is cheap to evaluate.

The printed forms are what a person writes; evaluated literally some are far slower than needed
(``kron(x', I) * vec(B)`` forms an n x n^2 matrix where ``B * x`` is the answer).  Each rule
below is an identity of matrix algebra, applied bottom-up over the shared DAG (each distinct node
once); a rewrite is kept only where it lowers the estimated cost of evaluation (``cost``), so the
rewriting terminates:

- ``distribute_into_smaller_product``: a product over a sum factor is distributed,
  ``(A + c I) x = A x + c x``, so that each term is applied as the cheap map it is.
- ``kron_times_vector``: ``kron(A, B) y = vec(B Y A')`` with ``Y = reshape(y)``.
- ``commutation_times_vector``: ``K(m, n) y = vec(reshape(y, m, n)')``.
- ``diagonal_embedding_sandwich``: with ``S = diag(vec(I)) kron(1, I)`` (``S v = vec(diag(v))``),
  ``S' kron(P, Q) S = P .* Q``.
- ``trace_as_elementwise_sum``: ``tr(P Q) = sum(P .* Q')``, with the split that costs least.
- ``diagonal_as_row_sums``: ``diag(P Q) = (P .* Q') 1``, the same for the diagonal as a vector
  (``diag(A inv(M) A')`` costs n p^2, not n^2 p; the code generator writes ``X 1`` as a row sum).

Sizes are compared by their growth: every dimension symbol counts as the same large number.
"""

from __future__ import annotations

import math

from .. import expr as E
from ..dims import Dim

LARGE = 1000.0          # what a dimension symbol stands for when costs are compared
MAX_DISTRIBUTED = 32
ELEMENTWISE = 4.0       # an entry of a new array from an elementwise pass, against one multiply-add    # a distribution that would make more terms than this is not done


# sizes are estimates for comparing costs: capped, so that cubes and products of a few stay finite
# (a declared n^64 would overflow a float)
MAX_SIZE = 1e50


def size(d: Dim) -> float:
    power = sum(p for _, p in d.factors)
    if power * math.log10(LARGE) + math.log10(max(float(d.coef), 1.0)) > 50:
        return MAX_SIZE
    return min(float(d.coef) * LARGE ** power, MAX_SIZE)


def numel(e: E.Expr) -> float:
    return size(e.rows) * size(e.cols)


def chain_cost(shapes: list) -> float:
    """The least number of multiply-adds for a matrix chain (the classic dynamic programme)."""
    k = len(shapes)
    if k < 2:
        return 0.0
    dims = [size(shapes[0][0])] + [size(s[1]) for s in shapes]
    if len(set(dims[1:-1])) == 1:
        # every inner size the same: sweeping from the smaller end is optimal
        n, p, q = dims[1], dims[0], dims[-1]
        return min(p, q) * n * n * (k - 2) + p * n * q
    best = [[0.0] * k for _ in range(k)]
    for length in range(2, k + 1):
        for i in range(k - length + 1):
            j = i + length - 1
            best[i][j] = min(best[i][s] + best[s + 1][j] + dims[i] * dims[s + 1] * dims[j + 1]
                             for s in range(i, j))
    return best[0][k - 1]


# --- rules: each takes a node and returns an equal, cheaper one, or None -------------------------

def _scaled(e: E.Expr):
    """(scalar factors, body) of a possibly scaled matrix."""
    if isinstance(e, E.Mul) and not e.is_scalar:
        return list(e.args[:-1]), e.args[-1]
    return [], e


STRUCTURED = (E.Identity, E.Kron, E.Commutation, E.Diag)


def _is_structured(t: E.Expr) -> bool:
    return isinstance(_scaled(t)[1], STRUCTURED)


def distribute_into_smaller_product(e: E.Expr):
    if not isinstance(e, E.MatMul):
        return None
    for i, f in enumerate(e.args):
        scalars, body = _scaled(f)
        if not isinstance(body, E.Add) or len(body.args) > MAX_DISTRIBUTED:
            continue
        # distributing can pay only where the product is smaller than the sum factor (a vector
        # at an end) or where a term is a structured operator applied more cheaply than formed
        if numel(e) >= numel(body) and not any(_is_structured(t) for t in body.args):
            continue
        left, right = e.args[:i], e.args[i + 1:]
        return E.add(*[E.mul(*scalars, E.matmul(*left, t, *right)) for t in body.args])
    return None


def _pairwise(e: E.Expr, rule):
    """Apply a rule for adjacent factors (a, b) -> replacement to the first pair it fits."""
    if not isinstance(e, E.MatMul):
        return None
    args = e.args
    for i in range(len(args) - 1):
        out = rule(args[i], args[i + 1])
        if out is not None:
            return E.matmul(*args[:i], out, *args[i + 2:])
    return None


def _kron_vector(a: E.Expr, b: E.Expr):
    if isinstance(a, E.Kron) and b.cols == 1:
        A, B = a.a, a.b
        Y = E.reshape(b, B.cols, A.cols)
        return E.vec(E.matmul(B, Y, E.transpose(A)))
    if isinstance(b, E.Kron) and a.rows == 1:
        A, B = b.a, b.b
        Y = E.reshape(E.transpose(a), B.rows, A.rows)
        return E.transpose(E.vec(E.matmul(E.transpose(B), Y, A)))
    return None


def kron_times_vector(e: E.Expr):
    return _pairwise(e, _kron_vector)


def _commutation_vector(a: E.Expr, b: E.Expr):
    if isinstance(a, E.Commutation) and b.cols == 1:
        return E.vec(E.transpose(E.reshape(b, a.m, a.n)))
    if isinstance(b, E.Commutation) and a.rows == 1:
        # y' K(m, n) = (K(n, m) y)'
        return E.transpose(E.vec(E.transpose(E.reshape(E.transpose(a), b.n, b.m))))
    return None


def commutation_times_vector(e: E.Expr):
    return _pairwise(e, _commutation_vector)


def _is_ones(e: E.Expr) -> bool:
    return isinstance(e, E.Ones)


def _embedding(k: E.Expr, d: E.Expr, transposed: bool) -> bool:
    """k, d (or d, k transposed) are kron(1, I(m)) and diag(vec(I(m))): together S or S'."""
    if not (isinstance(k, E.Kron) and isinstance(d, E.Diag) and isinstance(d.arg, E.Vec)):
        return False
    ones_ok = _is_ones(k.a) and (k.a.rows == 1 if transposed else k.a.cols == 1)
    return (ones_ok and isinstance(k.b, E.Identity) and isinstance(d.arg.arg, E.Identity)
            and d.arg.arg.n == k.b.n)


def diagonal_embedding_sandwich(e: E.Expr):
    if not isinstance(e, E.MatMul):
        return None
    args = e.args
    for i in range(len(args) - 4):
        k1, d1, mid, d2, k2 = args[i:i + 5]
        if (isinstance(mid, E.Kron) and _embedding(k1, d1, True) and _embedding(k2, d2, False)
                and mid.a.shape == mid.b.shape == (k2.b.n, k2.b.n)):
            return E.matmul(*args[:i], E.hadamard(mid.a, mid.b), *args[i + 5:])
    return None


def trace_as_elementwise_sum(e: E.Expr):
    if not (isinstance(e, E.Trace) and isinstance(e.arg, E.MatMul)):
        return None
    f = list(e.arg.args)
    shapes = [x.shape for x in f]

    def cost(j):
        return chain_cost(shapes[:j]) + chain_cost(shapes[j:]) + size(f[0].rows) * size(f[j - 1].cols)

    j = min(range(1, len(f)), key=cost)
    if cost(j) >= chain_cost(shapes):
        return None
    left, right = E.matmul(*f[:j]), E.matmul(*f[j:])
    return E.sum_(E.hadamard(left, E.transpose(right)))


def diagonal_as_row_sums(e: E.Expr):
    if not (isinstance(e, E.DiagPart) and isinstance(e.arg, E.MatMul)):
        return None
    f = e.arg.args
    best = None
    for j in range(1, len(f)):
        left, right = E.matmul(*f[:j]), E.matmul(*f[j:])
        c = cost(left) + cost(right) + (ELEMENTWISE + 1) * numel(left)
        if best is None or c < best[0]:
            best = (c, left, right)
    _, left, right = best
    return E.matmul(E.hadamard(left, E.transpose(right)), E.ones((left.cols, 1)))


RULES = (
    diagonal_embedding_sandwich,
    kron_times_vector,
    commutation_times_vector,
    distribute_into_smaller_product,
    trace_as_elementwise_sum,
    diagonal_as_row_sums,
)

WORK_PER_NODE = 2
MAX_DEPTH = 50   # rules strictly lower the cost; this only bounds a pathological cascade


def cost(e: E.Expr) -> float:
    """Estimated multiply-adds to evaluate e as the code generator does (each subtree counted
    where it occurs; memoised per node)."""
    memo = e.memo()
    if "evaluation_cost" not in memo:
        memo["evaluation_cost"] = _cost(e)
    return memo["evaluation_cost"]


def _cost(e: E.Expr) -> float:
    if not e.children:
        return 0.0 if isinstance(e, (E.Var, E.Num)) else ELEMENTWISE * numel(e)
    if isinstance(e, E.MatMul):
        dense = [f for f in e.args if not isinstance(f, STRUCTURED)]
        structured = [f for f in e.args if isinstance(f, STRUCTURED)]
        # a structured factor is applied as a map: about one pass over its operand per factor
        biggest = max((numel(f) for f in dense), default=0.0)
        total = chain_cost([f.shape for f in dense]) + len(structured) * (numel(e) + biggest)
        total += sum(cost(c) for f in structured for c in f.children) + sum(cost(f) for f in dense)
        return total
    own = ELEMENTWISE * numel(e)
    if isinstance(e, E.Transpose):
        own = 0.0   # a view
    elif isinstance(e, (E.Inverse, E.Det, E.LogDet, E.Adj)):
        own = size(e.arg.rows) ** 3
    elif isinstance(e, E.MatPow):
        own = size(e.rows) ** 3 * e.k.bit_length()
    return own + sum(cost(c) for c in e.children)


def lower(*roots: E.Expr, memo: dict | None = None) -> list:
    """The roots rewritten by the rules, bottom-up, each distinct node once (shared across roots).
    A rule's rewrite is kept when, itself lowered, it costs less than the node."""
    memo = {} if memo is None else memo   # shared by the functions of one module
    # rewrites tried (each lowers a candidate) are bounded by the size of the DAG: past that the
    # rest is printed as it is, still correct
    budget = [WORK_PER_NODE * len(E.walk(*roots)) + 1000]

    def go(node, depth=0):
        if node in memo:
            return memo[node]
        if not node.children:
            return node
        children = [go(c, depth) for c in node.children]
        same = all(new is old for new, old in zip(children, node.children))
        out = node if same else E.rebuild(node, children)
        if depth < MAX_DEPTH and budget[0] > 0:
            for rule in RULES:
                new = rule(out)
                if new is None or new == out:
                    continue
                budget[0] -= 1
                new = go(new, depth + 1)
                if cost(new) < cost(out):
                    out = new
                    break
        memo[node] = out
        return out

    return share_subchains([go(r) for r in roots])


def share_subchains(roots: list) -> list:
    """A product that contains the factors of another product computed anyway uses it:
    x' A x next to A x becomes x' (A x).  The nested product is built directly (the constructor
    would flatten it); it is code, not a printed form."""
    nodes = E.walk(*roots)
    chains = {n.args: n for n in nodes if isinstance(n, E.MatMul)}
    if len(chains) < 2:
        return roots
    mapping = {}
    for node in nodes:
        if not isinstance(node, E.MatMul) or len(node.args) < 3:
            continue
        best = None
        k = len(node.args)
        for length in range(k - 1, 1, -1):   # the longest shared prefix or suffix
            for i in (0, k - length):
                inner = chains.get(node.args[i:i + length])
                if inner is not None:
                    best = (i, length, inner)
                    break
            if best:
                break
        if best is None:
            continue
        i, length, inner = best
        args = node.args[:i] + (inner,) + node.args[i + length:]
        if chain_cost([a.shape for a in args]) <= chain_cost([a.shape for a in node.args]):
            mapping[node] = E.MatMul(args, node.shape)
    if not mapping:
        return roots
    memo: dict = {}

    def go(node):
        if node in mapping:
            return mapping[node]
        if not node.children or node in memo:
            return memo.get(node, node)
        children = [go(c) for c in node.children]
        if all(new is old for new, old in zip(children, node.children)):
            out = node
        elif isinstance(node, E.MatMul):
            out = E.MatMul(tuple(children), node.shape)
        else:
            out = E.rebuild(node, children)
        memo[node] = out
        return out

    return [go(r) for r in roots]
