"""Identification: read the gradient, the Jacobian and the Hessian off a differential.

- ``gradient``: df = <G, dX> = tr(G' dX).  G is found by pulling a seed W = 1 back through the
  linear map dX -> df (the adjoint, i.e. reverse mode): <W, A dX B> = <A' W B', dX>, ...
- ``jacobian_kron``: vec(df) = J vec(dX), structurally: vec(A dX B) = kron(B', A) vec(dX),
  vec(dX') = K vec(dX) with K the commutation matrix, vec(U .* dX) = diag(vec(U)) vec(dX).
- ``hessian_bilinear``: the second differential f''(x)[dX, dX2], differentiating df again.
- ``hessian_matrix``: the Jacobian of vec(G).

For a symmetric variable only symmetric dX are admissible: the gradient is the symmetric G with
<G, E> = f'(X)[E] for every symmetric E, that is sym(G) = (G + G')/2, and Jacobians act through
the projection P = (I + K)/2 onto symmetric directions.
"""

from __future__ import annotations

from fractions import Fraction

from . import expr as E
from .budget import check as within_budget
from .differential import differential
from .errors import MathError
from .simplify import simplify
from .workload import HESSIAN_HINT, JACOBIAN_HINT, check_differential, check_step

HESSIAN_FIRST_STEP = "the differential of the gradient (the first step to the Hessian)"


def _contains_dx(e: E.Expr, dx: E.Var) -> bool:
    return E.depends_on(e, dx)


def _split_linear(args, dx):
    """Index of the one factor that holds dx in a product (a linear form has exactly one)."""
    idx = [i for i, a in enumerate(args) if _contains_dx(a, dx)]
    if len(idx) != 1:
        raise MathError("the differential is not linear in the direction (internal error)")
    return idx[0]


# --- gradient: the adjoint of the linear map ------------------------------------------------------
#
# A reverse sweep over the DAG of the linear form L: the nodes that hold dx are visited once each,
# parents before children; the seeds arriving at a node from all its parents are summed, and the
# node's rule passes the sum on to its children.  A subexpression shared by many paths (a
# definition chain, where dy_k uses dy_(k-1) several times) is so pulled back once, not once per
# path: the work and the result's DAG grow with the DAG of L, not with its written-out tree.

def pullback(L: E.Expr, W: E.Expr, dx: E.Var) -> E.Expr:
    """The G with <W, L(dx)> = <G, dx> for all dx; memoised per distinct (node, seed)."""
    memo = L.memo()
    key = ("pullback", W, dx)
    if key not in memo:
        memo[key] = _reverse_sweep(L, W, dx)
    return memo[key]


def dependent_order(L: E.Expr, dx: E.Var) -> list:
    """The distinct nodes of L that hold dx, parents before children (reverse post-order)."""
    seen, post = set(), []
    stack = [(L, False)]
    while stack:
        node, done = stack.pop()
        if done:
            post.append(node)
        elif node not in seen:
            seen.add(node)
            stack.append((node, True))
            stack.extend((c, False) for c in reversed(node.children)
                         if c not in seen and _contains_dx(c, dx))
    return post[::-1]


def _reverse_sweep(L: E.Expr, W: E.Expr, dx: E.Var) -> E.Expr:
    if not _contains_dx(L, dx):
        return E.zero(dx.shape)
    arriving: dict = {L: [W]}      # node -> the seeds its parents have passed to it
    for node in dependent_order(L, dx):
        if node == dx:
            continue
        within_budget()   # the request's deadline (budget.py)
        seeds = arriving.pop(node)
        seed = seeds[0] if len(seeds) == 1 else E.add(*seeds)
        rule = PULLBACK_RULES.get(type(node))
        if rule is None:
            raise MathError(f"cannot identify a gradient through {type(node).__name__.lower()}",
                            hint="the differential is still shown; try --jacobian")
        for child, child_seed in rule(node, seed, dx):
            arriving.setdefault(child, []).append(child_seed)
    seeds = arriving.get(dx, [])
    return E.add(*seeds) if seeds else E.zero(dx.shape)


# Each rule: (node L, the summed seed W arriving at it) -> [(child, the seed it passes to child)],
# for the children that hold dx: <W, L(dx)> = sum of <seed_i, child_i(dx)>.

def _pb_transpose(L, W, dx):
    return [(L.arg, E.transpose(W))]


def _pb_add(L, W, dx):
    return [(t, W) for t in L.args if _contains_dx(t, dx)]


def _pb_mul(L, W, dx):
    i = _split_linear(L.args, dx)
    others = L.args[:i] + L.args[i + 1:]
    F = L.args[i]
    if not F.is_scalar or L.is_scalar:
        return [(F, E.mul(*others, W))]
    # dx sits in a scalar factor s of s * M: <W, s M> = s <M, W>
    M = E.mul(*others)
    return [(F, E.inner(M, W))]


def _pb_matmul(L, W, dx):
    i = _split_linear(L.args, dx)
    F = L.args[i]
    left, right = L.args[:i], L.args[i + 1:]
    seed = W
    if left:
        seed = E.matmul(E.transpose(E.matmul(*left)), seed)
    if right:
        seed = E.matmul(seed, E.transpose(E.matmul(*right)))
    return [(F, seed)]


def _pb_hadamard(L, W, dx):
    i = _split_linear(L.args, dx)
    others = L.args[:i] + L.args[i + 1:]
    return [(L.args[i], E.hadamard(*others, W))]


def _pb_trace(L, W, dx):
    return [(L.arg, E.mul(W, E.identity(L.arg.rows)))]


def _pb_sum(L, W, dx):
    return [(L.arg, E.mul(W, E.ones(L.arg.shape)))]


def _pb_diag_part(L, W, dx):
    return [(L.arg, E.diag(W))]


def _pb_diag(L, W, dx):
    return [(L.arg, E.diag_part(W))]


def _pb_reshape(L, W, dx):
    # vec is column-major on both sides, so reshaping back carries the seed along
    return [(L.arg, E.reshape(W, L.arg.rows, L.arg.cols))]


def _kron_vec_map(L: E.Kron, dx: E.Var):
    """(M, F) with vec(L) = M vec(F), F the operand of kron that holds dx.

    vec(kron(A, B)) = T (vec(A) kron vec(B)) with T = kron(I_q, K(s, p), I_r) for A p x q, B r x s;
    vec(F) kron vec(B) = kron(I, vec(B)) vec(F) and vec(A) kron vec(F) = kron(vec(A), I) vec(F)."""
    a, b = L.a, L.b
    if _contains_dx(a, dx) and _contains_dx(b, dx):
        raise MathError("internal error: kron with the differential on both sides")
    p, q, r, s = a.rows, a.cols, b.rows, b.cols
    T = E.kron(E.kron(E.identity(q), E.commutation(s, p)), E.identity(r))
    if _contains_dx(a, dx):
        return E.matmul(T, E.kron(E.identity(p * q), E.vec(b))), a
    return E.matmul(T, E.kron(E.vec(a), E.identity(r * s))), b


def _pb_kron(L, W, dx):
    M, F = _kron_vec_map(L, dx)
    return [(F, E.reshape(E.matmul(E.transpose(M), E.vec(W)), F.rows, F.cols))]


def _pb_adj_diff(L, W, dx):
    # <W, d^k adj(X)[.., Di, ..]> = d^(k+1) det(X)[.., Di, .., W'], symmetric in its directions,
    # = <d^k adj(X)[.., W', ..]', Di>
    x, dirs = L.args[0], list(L.args[1:])
    if _contains_dx(x, dx):
        raise MathError("the differential is not linear in the direction (internal error)")
    i = _split_linear(dirs, dx)
    seed = E.transpose(E.adj_diff(x, *dirs[:i], *dirs[i + 1:], E.transpose(W)))
    return [(dirs[i], seed)]


def _frechet_slot(L, dx):
    """(index of the direction that holds dx, the other directions) of L^(k)_f(X)[E1..Ek]."""
    if _contains_dx(L.arg, dx):
        raise MathError(f"the differential moves the argument of {E.frechet_name(L.fn, L.order)} "
                        "(internal error: it should be linear in the direction)")
    i = _split_linear(L.directions, dx)
    return i, L.directions[:i] + L.directions[i + 1:]


def _pb_frechet(L, W, dx):
    # <W, L^(k)(X)[E.., F]> = <L^(k)(X')[W, E'..], F>: the adjoint of a primary matrix function's
    # derivative is its derivative at X' (real Taylor coefficients); first order: <W, L(X)[F]> = <L(X')[W], F>
    i, others = _frechet_slot(L, dx)
    seed = E.frechet(L.fn, E.transpose(L.arg), (W,) + tuple(E.transpose(d) for d in others))
    return [(L.directions[i], seed)]


def _pb_frechet_matrix(L, W, dx):
    raise MathError(f"cannot identify a derivative through {E.frechet_matrix_name(L.fn)}(...) when the "
                    "differential moves its argument or directions",
                    hint=f"write the map with d{L.fn}(X, E) instead of "
                         f"{E.frechet_matrix_name(L.fn)}(X) * vec(E)")


PULLBACK_RULES = {
    E.AdjDiff: _pb_adj_diff,
    E.Frechet: _pb_frechet,
    E.FrechetMatrix: _pb_frechet_matrix,
    E.Kron: _pb_kron,
    E.Transpose: _pb_transpose,
    E.Add: _pb_add,
    E.Mul: _pb_mul,
    E.MatMul: _pb_matmul,
    E.Hadamard: _pb_hadamard,
    E.Trace: _pb_trace,
    E.Sum: _pb_sum,
    E.DiagPart: _pb_diag_part,
    E.Diag: _pb_diag,
    E.Vec: _pb_reshape,
    E.Reshape: _pb_reshape,
}


def sym(G: E.Expr) -> E.Expr:
    return E.mul(E.Num(Fraction(1, 2)), E.add(G, E.transpose(G)))


def gradient(df: E.Expr, x: E.Var, dx: E.Var) -> E.Expr:
    """G with df = <G, dx> (for a symmetric x: the symmetric such G)."""
    if not df.is_scalar:
        raise MathError("the gradient is defined for a scalar function",
                        hint="use --jacobian for a vector or matrix valued function")
    G = pullback(df, E.Num(1), dx)
    check_step(G, "the gradient before simplification", JACOBIAN_HINT)
    # symmetrize before simplifying: G + G' then collects term by term
    return simplify(sym(G) if x.symmetric else G)


def cookbook_gradient(G_sym: E.Expr) -> E.Expr:
    """The Matrix Cookbook's symmetric-matrix 'gradient' G + G' - I .* G, from sym(G)."""
    n = G_sym.rows
    return simplify(E.sub(E.mul(E.Num(2), G_sym), E.hadamard(E.Identity(n), G_sym)))


# --- Jacobian in Kronecker form -----------------------------------------------------------------

def jacobian_kron(L: E.Expr, dx: E.Var) -> E.Expr:
    """J with vec(L(dx)) = J vec(dx); memoised per distinct node (a shared subtree once)."""
    memo = L.memo()
    key = ("jacobian", dx)
    if key not in memo:
        memo[key] = _jacobian_kron(L, dx)
    return memo[key]


def _jacobian_kron(L: E.Expr, dx: E.Var) -> E.Expr:
    numel_out = L.rows * L.cols
    if not _contains_dx(L, dx):
        return E.zero((numel_out, dx.rows * dx.cols))
    if L.is_scalar:
        return E.transpose(E.vec(pullback(L, E.Num(1), dx)))
    rule = JACOBIAN_RULES.get(type(L))
    if rule is None:
        raise MathError(f"cannot identify a Jacobian through {type(L).__name__.lower()}",
                        hint="the differential is still shown")
    return rule(L, dx)


def _jac_var(L, dx):
    return E.identity(dx.rows * dx.cols)


def _jac_transpose(L, dx):
    F = L.arg
    return E.matmul(E.commutation(F.rows, F.cols), jacobian_kron(F, dx))


def _jac_add(L, dx):
    return E.add(*[jacobian_kron(t, dx) for t in L.args])


def _jac_mul(L, dx):
    i = _split_linear(L.args, dx)
    others = L.args[:i] + L.args[i + 1:]
    F = L.args[i]
    if not F.is_scalar:
        return E.mul(*others, jacobian_kron(F, dx))
    M = E.mul(*others)  # s(dx) * M: vec(s M) = vec(M) s
    return E.matmul(E.vec(M), jacobian_kron(F, dx))


def apply_to_vector(F: E.Expr, b: E.Expr, dx: E.Var) -> E.Expr:
    """F * b for a matrix F linear in dx and a vector b, with b pushed inside F so that dx no
    longer sits in a matrix factor: diag(u) b = b .* u, (s M) b = s (M b), (F1 + F2) b = F1 b + F2 b.
    A vector function of a vector then has a Jacobian in plain matrix form (diag, outer products),
    never kron(b', I) * vec(...)."""
    if not _contains_dx(F, dx) or F.cols == 1:
        return E.matmul(F, b)
    if isinstance(F, E.Add):
        return E.add(*[apply_to_vector(t, b, dx) for t in F.args])
    if isinstance(F, E.Mul):
        return E.mul(*F.args[:-1], apply_to_vector(F.args[-1], b, dx))
    if isinstance(F, E.Diag):
        return E.hadamard(F.arg, b)
    if isinstance(F, E.MatMul):
        i = _split_linear(F.args, dx)
        right = E.matmul(*F.args[i + 1:], b) if i + 1 < len(F.args) else b
        inner = apply_to_vector(F.args[i], right, dx)
        return E.matmul(*F.args[:i], inner) if i > 0 else inner
    return E.matmul(F, b)


def _jac_matmul(L, dx):
    i = _split_linear(L.args, dx)
    F = L.args[i]
    if L.cols == 1 and F.cols != 1 and i + 1 < len(L.args):
        pushed = apply_to_vector(F, E.matmul(*L.args[i + 1:]), dx)
        if not (isinstance(pushed, E.MatMul) and F in pushed.args):
            whole = E.matmul(*L.args[:i], pushed) if i > 0 else pushed
            return jacobian_kron(whole, dx)
    A = E.matmul(*L.args[:i]) if i > 0 else E.identity(F.rows)
    B = E.matmul(*L.args[i + 1:]) if i + 1 < len(L.args) else E.identity(F.cols)
    return E.matmul(E.kron(E.transpose(B), A), jacobian_kron(F, dx))


def _jac_hadamard(L, dx):
    i = _split_linear(L.args, dx)
    U = E.hadamard(*(L.args[:i] + L.args[i + 1:]))
    return E.matmul(E.diag(E.vec(U)), jacobian_kron(L.args[i], dx))


def _jac_diag_part(L, dx):
    F = L.arg
    if isinstance(F, E.MatMul):
        i = _split_linear(F.args, dx)
        if isinstance(F.args[i], E.Diag):
            # diag(A diag(u) B) = (A .* B') u
            A = E.matmul(*F.args[:i]) if i > 0 else E.identity(F.rows)
            B = E.matmul(*F.args[i + 1:]) if i + 1 < len(F.args) else E.identity(F.cols)
            return E.matmul(E.hadamard(A, E.transpose(B)), jacobian_kron(F.args[i].arg, dx))
    # diag(F) = (F .* I) 1, so vec(diag(F)) = kron(1', I) diag(vec(I)) vec(F)
    n = L.arg.rows
    select = E.matmul(E.kron(E.transpose(E.Ones((n, 1))), E.Identity(n)), E.diag(E.vec(E.Identity(n))))
    return E.matmul(select, jacobian_kron(L.arg, dx))


def _jac_diag(L, dx):
    if isinstance(L.arg, E.DiagPart):
        # diag(diag(F)) = I .* F
        return E.matmul(E.diag(E.vec(E.Identity(L.rows))), jacobian_kron(L.arg.arg, dx))
    # diag(f) = I .* (f 1'), so vec(diag(f)) = diag(vec(I)) kron(1, I) f
    n = L.rows
    spread = E.matmul(E.diag(E.vec(E.Identity(n))), E.kron(E.Ones((n, 1)), E.Identity(n)))
    return E.matmul(spread, jacobian_kron(L.arg, dx))


def _jac_vec(L, dx):
    return jacobian_kron(L.arg, dx)


def _jac_kron(L, dx):
    M, F = _kron_vec_map(L, dx)
    return E.matmul(M, jacobian_kron(F, dx))


def _jac_adj_diff(L, dx):
    x, dirs = L.args[0], list(L.args[1:])
    i = _split_linear(dirs, dx)
    return E.matmul(E.adj_jacobian(x, *dirs[:i], *dirs[i + 1:]), jacobian_kron(dirs[i], dx))


def frechet_kron_form(fn: str, X: E.Expr, others=()) -> E.Expr:
    """K with vec(L^(k)_f(X)[E.., F]) = K vec(F).  First order, in Kronecker form where one exists:
    sqrtm from S L + L S = F, K = inv(kron(I, S) + kron(S', I)); logm as the inverse of expm's at
    logm(X); otherwise the named operator matrix jexpm(X, E..)."""
    n = X.rows
    if not others and fn == "sqrtm":
        S = E.matfun("sqrtm", X)
        return E.inverse(E.add(E.kron(E.identity(n), S), E.kron(E.transpose(S), E.identity(n))))
    if not others and fn == "logm":
        return E.inverse(E.frechet_matrix("expm", E.matfun("logm", X)))
    return E.frechet_matrix(fn, X, others)


def _jac_frechet(L, dx):
    i, others = _frechet_slot(L, dx)
    return E.matmul(frechet_kron_form(L.fn, L.arg, others), jacobian_kron(L.directions[i], dx))


JACOBIAN_RULES = {
    E.AdjDiff: _jac_adj_diff,
    E.Frechet: _jac_frechet,
    E.FrechetMatrix: lambda L, dx: _pb_frechet_matrix(L, None, dx),
    E.Kron: _jac_kron,
    E.Var: _jac_var,
    E.Transpose: _jac_transpose,
    E.Add: _jac_add,
    E.Mul: _jac_mul,
    E.MatMul: _jac_matmul,
    E.Hadamard: _jac_hadamard,
    E.DiagPart: _jac_diag_part,
    E.Diag: _jac_diag,
    E.Vec: _jac_vec,
    E.Reshape: _jac_vec,
}


def symmetric_projection(n) -> E.Expr:
    """P = (I + K)/2: vec(sym(E)) = P vec(E)."""
    return E.mul(E.Num(Fraction(1, 2)), E.add(E.Identity(n * n), E.commutation(n, n)))


def jacobian(f: E.Expr, df: E.Expr, x: E.Var, dx: E.Var, layout: str = "numerator") -> E.Expr:
    """The Jacobian of vec(f) against vec(x) (numerator layout: numel(f) x numel(x))."""
    if f.is_scalar:
        J = E.transpose(E.vec(gradient(df, x, dx)))
    else:
        check_step(df, "the differential (the start of the Jacobian)", JACOBIAN_HINT)
        J = jacobian_kron(df, dx)
        if x.symmetric:
            J = E.matmul(J, symmetric_projection(x.rows))
    J = simplify(J)
    return simplify(E.transpose(J)) if layout == "denominator" else J


# --- Hessian ---------------------------------------------------------------------------------

def hessian_bilinear(df: E.Expr, x: E.Var, dx2: E.Var, everywhere: bool = False) -> E.Expr:
    """f''(x)[dx, dx2]: differentiate df again (dx fixed) in the direction dx2."""
    check_differential(df, [x], "the second differential", HESSIAN_HINT)
    second = differential(df, x, dx2, everywhere)
    check_step(second, "the second differential before simplification", HESSIAN_HINT)
    return simplify(second)


def hessian_matrix(G: E.Expr, x: E.Var, dx: E.Var, everywhere: bool = False) -> E.Expr:
    """The Hessian matrix: the Jacobian of vec(G), numel(x) x numel(x)."""
    check_differential(G, [x], HESSIAN_FIRST_STEP, HESSIAN_HINT)
    dG = differential(G, x, dx, everywhere)
    check_step(dG, HESSIAN_FIRST_STEP, HESSIAN_HINT)
    dG = simplify(dG)
    H = jacobian_kron(E.vec(dG), dx)
    if x.symmetric:
        H = E.matmul(H, symmetric_projection(x.rows))
    return simplify(H)


# --- det and adj at every point ---------------------------------------------------------------

def inverted_arguments(f: E.Expr, x: E.Var) -> list:
    """The arguments of det and adj that hold x: their classical derivatives invert them."""
    out = []
    for node in E.walk(f):
        if isinstance(node, (E.Det, E.Adj)) and E.depends_on(node.arg, x) and node.arg not in out:
            out.append(node.arg)
    return out


def _structurally_singular(m: E.Expr) -> bool:
    """A product through a dimension 1 (x * y', rank one) is singular for every value of its factors."""
    return any(isinstance(node, E.MatMul) and not node.is_scalar
               and any(a.cols == 1 for a in node.args[:-1])
               for node in E.walk(m))


def printed_form(classical: E.Expr, exact: E.Expr, inverted: list) -> E.Expr:
    """The reference text's form (through inv) where it can hold; the everywhere-valid one where an
    inverted matrix is singular for every value (det(x * x')) and that one prints in the language."""
    if classical == exact:
        return exact
    printable = not E.contains(exact, lambda n: isinstance(n, (E.AdjDiff, E.AdjJacobian)))
    if printable and any(_structurally_singular(a) for a in inverted):
        return exact
    return classical


# --- several variables at once ----------------------------------------------------------------
#
# The differential in all directions, f'(x, W)[dx, dW], is computed in one pass over f (what the
# variables share is differentiated once) and is linear in the pair (dx, dW).  Setting the other
# directions to zero in it (cheap: only the nodes that hold them are rebuilt) gives the part in each
# direction, which is brought to canonical form alone; gradients and Jacobians are read off the
# parts with the one-variable rules above, and the Hessian blocks off the gradients.

def _without(e: E.Expr, zeros: dict) -> E.Expr:
    """``e`` with the directions in ``zeros`` set to zero, rebuilt through the constructors (which
    drop the zero terms); subtrees free of them are kept as they are."""
    memo: dict = {}

    def go(node):
        if node.free_vars.isdisjoint(zeros):
            return node
        if node in zeros:
            return zeros[node]
        if node not in memo:
            memo[node] = E.rebuild(node, [go(c) for c in node.children])
        return memo[node]

    return go(e)


def split_by_direction(df: E.Expr, directions: list) -> list:
    """The part of ``df`` in each direction (in the order given), each simplified: df = their sum."""
    if len(directions) == 1:
        return [simplify(df)]
    parts = []
    for d in directions:
        zeros = {o: E.zero(o.shape) for o in directions if o is not d}
        parts.append(simplify(_without(df, zeros)))
    return parts


def hessian_blocks(G: E.Expr, x: E.Var, others: list, everywhere: bool = False) -> list:
    """The Hessian blocks H[x, y] = the Jacobian of vec(G) against vec(y), G the gradient in x,
    for each (y, dy) of ``others``: numel(x) x numel(y), with vec(dx)' H[x, y] vec(dy2) in f''.
    dG is taken in all those directions in one pass and split."""
    from .differential import differential_all
    directions = [dy for _, dy in others]
    check_differential(G, [y for y, _ in others], HESSIAN_FIRST_STEP, HESSIAN_HINT)
    dG = differential_all(G, {y: dy for y, dy in others}, everywhere)
    check_step(dG, HESSIAN_FIRST_STEP, HESSIAN_HINT)
    blocks = []
    for (y, dy), part in zip(others, split_by_direction(dG, directions)):
        H = jacobian_kron(E.vec(part), dy)
        if y.symmetric:
            H = E.matmul(H, symmetric_projection(y.rows))
        blocks.append(simplify(H))
    return blocks
