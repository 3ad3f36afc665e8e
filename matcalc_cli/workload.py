"""Size estimates before the expensive steps of a derivation.

Every stage works on the shared DAG, so its work grows with what the result is when written with
its repeated parts named (``render.share``), not with the written-out tree: a definition chain
100 deep is cheap.  What is large even when shared (the Hessian of tr(A0*X*A1*X*...*A63*X) is a
sum of thousands of Kronecker products) is refused here, before the step that would take minutes,
with a message that names the limit and how to go on.  The measure is computed on the DAG in time
linear in its size, so a refusal comes within moments of the start.
"""

from __future__ import annotations

from . import expr as E
from .budget import refuse

MAX_STEP_SIZE = 20_000   # nodes (written shared) of the form an expensive step starts from


def shared_size(e: E.Expr) -> int:
    """Nodes written when ``e`` is printed with its repeated parts named."""
    from .render.share import shared_size as measure   # the measure the printers use
    return measure(e)


def check_step(e: E.Expr, what: str, hint: str) -> None:
    """Refuse to go on from ``e`` (called ``what``) when it is too large."""
    size = shared_size(e)
    if size > MAX_STEP_SIZE:
        raise refuse(f"{what} has {size:,} nodes, even written with its repeated parts named",
                     f"{MAX_STEP_SIZE:,} nodes", hint)


def differential_size(e: E.Expr, variables) -> int:
    """About the nodes of d(e) written shared, before it is built: the product rule writes, at
    each distinct node that depends on ``variables``, one term per factor that depends on them,
    each with all the node's factors (the others shared, not copied)."""
    variables = frozenset(variables)
    seen, total, stack = set(), 0, [e]
    while stack:
        node = stack.pop()
        if node in seen or node.free_vars.isdisjoint(variables):
            continue
        seen.add(node)
        moving = [c for c in node.children if not c.free_vars.isdisjoint(variables)]
        terms = node.k if isinstance(node, E.MatPow) else max(len(moving), 1)
        total += terms * (len(node.children) + 1)
        stack.extend(moving)
    return total


def check_differential(e: E.Expr, variables, what: str, hint: str) -> None:
    """Refuse to differentiate ``e`` when ``what`` (its differential) is estimated too large:
    before any of it is built."""
    size = differential_size(e, variables)
    if size > MAX_STEP_SIZE:
        raise refuse(f"{what} would have about {size:,} nodes, even written with its repeated parts named",
                     f"{MAX_STEP_SIZE:,} nodes", hint)


HESSIAN_HINT = ("ask for the gradient alone (--gradient), or differentiate a smaller expression "
                "(fewer factors, a shorter definition chain)")
JACOBIAN_HINT = "differentiate a smaller expression (fewer factors, a shorter definition chain)"
