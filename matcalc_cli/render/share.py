"""Shared subexpressions for printing: name what a large result repeats.

Results are DAGs in memory, but text writes them out as trees, and a subexpression used k times is
written k times (the second derivative of exp(exp(exp(x))) repeats every inner exp).  For a large
result this picks the repeated subexpressions that save the most text and names them t1, t2, ...,
so the result prints as ``t1 = exp(x); t2 = exp(t1); ...; <result>``: the language's definitions,
so the line still parses.  Small results are left as people write them.
"""

from __future__ import annotations

from .. import expr as E

MIN_TREE_SIZE = 60      # results smaller than this print whole
MIN_SHARED_SIZE = 5     # a shared subexpression is at least this big
MIN_SAVING = 0.25       # sharing must shrink the written size by at least this fraction
# a result that still writes out to more than this many nodes with its differential-free parts
# named (a definition chain's differential repeats dy_(k-1) in dy_k) names the parts that hold the
# differential too: the text is then as large as the DAG, not as the tree
DIFFERENTIAL_SHARE_SIZE = 2_000


def _order(roots) -> list:
    """Distinct nodes, parents before children (reverse post-order over the DAG)."""
    seen, post = set(), []
    for root in roots:
        stack = [(root, False)]
        while stack:
            node, done = stack.pop()
            if done:
                post.append(node)
                continue
            if node in seen:
                continue
            seen.add(node)
            stack.append((node, True))
            stack.extend((c, False) for c in node.children)
    return post[::-1]


def _choose(e: E.Expr, differentials: bool = False) -> list:
    """One pass, parents before children: a node written at least twice gets a name, and from then
    on its children are written once, inside its definition.  Largest repeats are named first.
    Parts that hold a differential are named only with ``differentials`` (people read dx in place)."""
    order = _order([e])
    count = dict.fromkeys(order, 0)
    count[e] = 1
    chosen = []
    for node in order:
        k = count[node]
        named = (node is not e and k >= 2 and node.children
                 and (differentials or not E.has_differential(node))
                 and E.tree_size(node) >= MIN_SHARED_SIZE)
        if named:
            chosen.append(node)
            k = 1
        for c in node.children:
            count[c] += k
    return chosen


def _written_size(e: E.Expr, chosen: list) -> int:
    """Characters-proxy: nodes written out, with each chosen node written once (in its definition)."""
    leaves = set(chosen)
    memo: dict = {}

    def size(node, root):
        if node in leaves and not root:
            return 1
        key = (node, root)
        if key not in memo:
            memo[key] = 1 + sum(size(c, False) for c in node.children)
        return memo[key]

    return size(e, True) + sum(size(n, True) for n in chosen)


def _chosen(e: E.Expr) -> list:
    """The subexpressions to name in a result (memoised: every printer asks)."""
    memo = e.memo()
    if "shared" not in memo:
        chosen = _choose(e)
        if _written_size(e, chosen) > DIFFERENTIAL_SHARE_SIZE and E.has_differential(e):
            chosen = _choose(e, differentials=True)
        if chosen and _written_size(e, chosen) > (1 - MIN_SAVING) * E.tree_size(e):
            chosen = []
        memo["shared"] = chosen
    return memo["shared"]


def shared_size(e: E.Expr) -> int:
    """Nodes written when ``e`` is printed with its repeated parts named (its definitions and
    body): the size of the text, computed on the DAG without writing anything."""
    if E.tree_size(e) < MIN_TREE_SIZE:
        return E.tree_size(e)
    chosen = _chosen(e)
    return _written_size(e, chosen) if chosen else E.tree_size(e)


def shared_form(e: E.Expr, taken) -> tuple:
    """([(name_var, definition)], body): the result with its repeated parts named.  Refused
    (MathError) when even that is larger than E.MAX_PRINTED_SIZE nodes."""
    E.check_printable(e, shared_size(e))
    if E.tree_size(e) < MIN_TREE_SIZE:
        return [], e
    chosen = _chosen(e)
    if not chosen:
        return [], e
    return _name(e, chosen, taken)


def _name(e: E.Expr, chosen: list, taken) -> tuple:
    # define inner subexpressions first: a definition may use the ones before it
    depth_first = [n for n in _order([e] + chosen)[::-1] if n in set(chosen)]
    names, mapping, definitions = iter(_fresh_names(taken)), {}, []
    for node in depth_first:
        definition = _replace(node, mapping)   # the names defined so far
        var = E.Var(next(names), node.shape, _is_symmetric(node))
        mapping[node] = var
        definitions.append((var, definition))
    return definitions, _replace(e, mapping)


def _replace(e: E.Expr, mapping: dict) -> E.Expr:
    """Substitute below the root (the root itself is what is being defined)."""
    if not e.children:
        return e
    return E.rebuild(e, [E.substitute(c, mapping) for c in e.children])


def _is_symmetric(node: E.Expr) -> bool:
    return not node.is_scalar and node.rows == node.cols and E.transpose(node) == node


def _fresh_names(taken):
    i = 1
    while True:
        name = f"t{i}"
        if name not in taken:
            yield name
        i += 1


def shared_text(e: E.Expr, taken, print_one) -> str:
    """The text of a result with its definitions first: 't1 = ...; t2 = ...; result'."""
    definitions, body = shared_form(e, taken)
    parts = [f"{var.name} = {print_one(d)}" for var, d in definitions]
    parts.append(print_one(body))
    return "; ".join(parts)
