"""Show the work: the derivation as a chain of true equalities, each step naming its rule.

A tracing layer over the stages, which it runs again one rule at a time:

- **The differential.**  Each node's rule of ``differential.RULES`` is applied with the
  differentials of its children left as placeholders, so the rule's own form is kept (and can be
  written out as the rule's name: ``d inv(X) = -inv(X) * dX * inv(X)``); the placeholders are then
  filled in *literally* (no smart constructor runs), which gives the first step: every rule of
  the calculus applied, nothing simplified, the rules listed outermost first.  (A half-expanded
  d(u) is not an expression of the language, and every step must parse back; so a nested f gets
  all its differentiation rules in this one step.)  Then the expression is tidied one kind of
  rewriting at a time (transposes pushed to the leaves, scalar factors pulled out, like terms
  collected, ...: the smart constructors of ``expr``, run on one node kind at a time), then the
  canonical-form rules of ``simplify.RULES`` one rule at a time.  A step is recorded whenever a
  pass changes the expression, with the names of what changed it; independent applications of
  the same rule share a step.
- **Identification.**  The gradient through df = tr(G' dX), written as the adjoint moves of
  ``identify.pullback`` first give it (``literal_pullback``: (x' * (A + A'))' before (A + A') * x),
  the moves named; the Jacobian through vec(A dX B) = kron(B', A) vec(dX), the
  Hessian through the differential of the gradient; each result is then simplified in named steps
  as above, ending with the printed result.

Every step's expression equals the one before it (the tests evaluate each at random points), and
the last step of each stage is the result ``derive`` printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from . import expr as E
from . import identify
from . import simplify as S
from .differential import RULES as DIFFERENTIAL_RULES, _Differentiator, differential
from .render.breaking import SUM

MAX_STEPS = 60          # per stage: a runaway rewrite cannot print forever
CANONICAL = "rearrange into canonical form"
REORDER = "reorder terms"
BY_DIRECTION = "the terms grouped by direction"


@dataclass(frozen=True)
class Step:
    """One line of a derivation: ``<lhs> = expr``, justified by ``rules`` (names in words)."""

    stage: str           # differential | gradient | jacobian | hessian
    expr: E.Expr
    rules: tuple
    taken: frozenset = frozenset()
    result: bool = False  # the stage's result: printed exactly as the result is
    pending: tuple = ()   # Pending: differentials the step has not worked out yet (d log(u))
    defs: tuple = ()      # (name var, value): names the step is written with ('where G = ...')
    key: str = ""         # the result the stage ends with (derivation.results[key]); stage by default
    wrt: tuple = ()       # the variables of the result, with several variables

    @property
    def result_key(self) -> str:
        return self.key or self.stage

    @property
    def value(self) -> E.Expr:
        """The step's expression with its pending differentials worked out: what it equals."""
        if not (self.pending or self.defs):
            return self.expr
        mapping = {p.var: p.expansion for p in self.pending}
        mapping.update({var: raw_substitute(value, mapping) for var, value in self.defs})
        return raw_substitute(self.expr, mapping)

    def text(self) -> str:
        from .render.steps import step_text
        return step_text(self.expr, self.taken, self.result, self.pending, self.defs)

    def latex(self) -> str:
        from .render.steps import step_latex
        return step_latex(self.expr, self.taken, self.result, self.pending, self.defs)


class Rule(str):
    """A rule's name in words (the JSON ``rules`` entry), with its LaTeX when it is a formula.
    ``parts``: the LaTeX as pieces of LaTeX and expressions, for a rule that holds a result
    (d(∇f) = ...): a renderer prints the expressions itself, so that long ones break."""

    latex: str | None = None
    parts: tuple | None = None
    formula: tuple | None = None   # (words, U, its differential): "chain rule: ", log(u), du ./ u

    def __new__(cls, text: str, latex: str | None = None, parts: tuple | None = None):
        self = super().__new__(cls, text)
        self.latex = latex
        self.parts = parts
        return self


def _latex(e: E.Expr) -> str:
    from .render.latex import to_latex
    return to_latex(e)


# ---------------------------------------------------------------------------------------------
# Literal trees: nodes rebuilt without the smart constructors, so a step shows what a rule wrote
# ---------------------------------------------------------------------------------------------

def raw_rebuild(node: E.Expr, children: list) -> E.Expr:
    """``node`` with new children, built directly (no simplification)."""
    if all(new is old for new, old in zip(children, node.children)):
        return node
    if isinstance(node, E._Nary):
        return type(node)(tuple(children), node.shape)
    if isinstance(node, E.Elementwise):
        return E.Elementwise(node.fn, children[0])
    if isinstance(node, E.MatPow):
        return E.MatPow(children[0], node.k)
    if isinstance(node, E.Power):
        return E.Power(children[0], children[1])
    if isinstance(node, E.Kron):
        return E.Kron(children[0], children[1])
    if isinstance(node, E._Unary):
        return type(node)(children[0], node.shape)
    # other kinds (matrix functions and their Frechet derivatives, adjugate derivatives): through
    # their constructors, which leave such arguments as they are
    return E.rebuild(node, children)


def raw_substitute(e: E.Expr, mapping: dict) -> E.Expr:
    memo: dict = {}

    def go(node):
        if node in mapping:
            return mapping[node]
        if not node.children:
            return node
        if node not in memo:
            memo[node] = raw_rebuild(node, [go(c) for c in node.children])
        return memo[node]

    return go(e)


def _text(e: E.Expr) -> str:
    from .render.text import to_text
    return to_text(e)


# ---------------------------------------------------------------------------------------------
# The differential, every rule applied literally
# ---------------------------------------------------------------------------------------------

class _Placeholders(_Differentiator):
    """A differentiator whose d(child) is a placeholder name: applying a node's rule with it gives
    the rule's own form, before the children's differentials are known."""

    def __init__(self, directions: dict, named=None):
        super().__init__(dict(directions))
        self.made: dict = {}        # placeholder -> the child it stands for
        self.named = named or {}    # child -> the differential to use for it (rule names)

    def d(self, e):
        if e in self.named:
            return self.named[e]
        if e in self.directions:
            return self.directions[e]
        if self.named or not _depends(e, self.directions):
            return E.zero(e.shape)
        for p, child in self.made.items():
            if child == e:
                return p
        p = E.Var(f"\u00a7{len(self.made)}", e.shape, False, diff=1)
        self.made[p] = e
        return p


_PRODUCTS = (E.Mul, E.MatMul, E.Hadamard, E.Kron)


def _depends(e: E.Expr, directions) -> bool:
    return not e.free_vars.isdisjoint(directions)


def _rule_name(node: E.Expr, directions: dict) -> str:
    """The rule used at ``node``, in words, or written out on a generic argument."""
    if isinstance(node, E.Add):
        return "sum rule"
    if isinstance(node, _PRODUCTS):
        dependent = sum(_depends(c, directions) for c in node.children)
        return "product rule" if dependent > 1 else "constant factors: d(A * U) = A * dU"
    # write the rule out: the node's argument as U (or the variable itself), its differential dU
    generic, named = {}, {}
    letters = iter(("U", "V", "W") if node.children[0].cols != 1 else ("u", "v", "w"))
    for c in node.children:
        if c in generic or not _depends(c, directions):
            continue
        if c in directions:
            generic[c], named[c] = c, directions[c]
        else:
            g = E.Var(next(letters), c.shape, False)
            generic[c], named[g] = g, E.Var("d" + g.name, c.shape, False, diff=1)
    shown = raw_substitute(node, generic)
    written = DIFFERENTIAL_RULES[type(node)](_Placeholders(directions, named), shown)
    lhs = _text(shown)
    call = lhs.endswith(")") and lhs[0].isalpha()
    lhs = f"d {lhs}" if call else f"d({lhs})"
    lhs_latex = r"\mathrm{d}\," + _latex(shown) if call else r"\mathrm{d}\left(" + _latex(shown) + r"\right)"
    prefix = "chain rule: " if isinstance(node, E.Elementwise) else ""
    rule = Rule(f"{prefix}{lhs} = {_text(written)}",
                (r"\text{chain rule: }" if prefix else "") + f"{lhs_latex} = {_latex(written)}")
    rule.formula = (prefix, shown, written)   # for a renderer with a notation of its own
    return rule


def _product_rule(D: _Placeholders, e: E.Expr) -> E.Expr:
    """d(f1 f2 ... fk) = df1 f2 ... fk + ... + f1 ... dfk, written in the order of the factors
    (the rule as a reader writes it; ``differential`` builds the same sum, sorted)."""
    terms = []
    for i, f in enumerate(e.children):
        df = D.d(f)
        if not E.is_zero(df):
            terms.append(raw_rebuild(e, [df if j == i else g for j, g in enumerate(e.children)]))
    return terms[0] if len(terms) == 1 else E.Add(tuple(terms), e.shape)


def _apply_rule(D: _Placeholders, e: E.Expr) -> E.Expr:
    return _product_rule(D, e) if isinstance(e, _PRODUCTS) else DIFFERENTIAL_RULES[type(e)](D, e)


# the rules that only pass d through a linear map (d tr(U) = tr(dU), d(A * U) = A * dU, the sum
# rule): a step that applies a rule goes on through these, so that each step shows one rule that
# changes something (the chain rule through log, the product rule, d inv(X), ...)
_LINEAR_RULES = (E.Add, E.Transpose, E.Trace, E.Sum, E.Vec, E.Diag, E.DiagPart, E.Reshape)


def _is_linear_rule(e: E.Expr, directions) -> bool:
    if isinstance(e, _LINEAR_RULES):
        return True
    return isinstance(e, _PRODUCTS) and sum(_depends(c, directions) for c in e.children) == 1


@dataclass(frozen=True)
class Pending:
    """A differential not yet worked out in a step, d(sub): written so (``d log(u)``) by the
    renderers; ``expansion`` is what it equals, every rule applied (a step's parsed-back text and
    its numerical check use it)."""

    var: E.Var          # the stand-in in the step's expression
    sub: E.Expr
    expansion: E.Expr


class RuleByRule:
    """The differential worked out from the outside in, one rule a step (and the linear rules that
    follow it): df = sum(d log(v)) = sum(dv ./ v) = ... .  Every step is an expression in which
    the differentials still to be worked out stand as ``Pending`` names."""

    def __init__(self, f: E.Expr, directions: dict):
        self.f, self.directions = f, dict(directions)
        self.memo: dict = {}
        self.pending: dict = {}     # sub -> Pending
        self.by_var: dict = {}      # stand-in var -> Pending

    def expand(self, e: E.Expr) -> E.Expr:
        """d(e) with every rule applied as written (literal: nothing simplified)."""
        if e in self.directions:
            return self.directions[e]
        if not _depends(e, self.directions):
            return E.zero(e.shape)
        if e not in self.memo:
            D = _Placeholders(self.directions)
            written = _apply_rule(D, e)
            self.memo[e] = raw_substitute(written, {p: self.expand(c) for p, c in D.made.items()})
        return self.memo[e]

    def stand_in(self, e: E.Expr) -> E.Expr:
        if e in self.directions:
            return self.directions[e]
        if not _depends(e, self.directions):
            return E.zero(e.shape)
        if e not in self.pending:
            var = E.Var(f"\u00a7d{len(self.pending)}", e.shape, False, diff=1)
            self.pending[e] = Pending(var, e, self.expand(e))
            self.by_var[var] = self.pending[e]
        return self.pending[e].var

    def apply(self, e: E.Expr, rules: list) -> E.Expr:
        """d(e) by e's own rule, then on through linear rules; other differentials stand in."""
        _note(rules, _rule_name(e, self.directions))
        D = _Placeholders(self.directions)
        written = _apply_rule(D, e)
        return raw_substitute(written, {
            p: self.apply(c, rules) if _is_linear_rule(c, self.directions) else self.stand_in(c)
            for p, c in D.made.items()})

    def pending_in(self, e: E.Expr) -> tuple:
        return tuple(self.by_var[v] for v in sorted(e.free_vars, key=lambda v: v.name) if v in self.by_var)

    def steps(self) -> list:
        """[(expr, rules, pendings)], the last one with every rule applied."""
        if self.f in self.directions or not _depends(self.f, self.directions):
            rule = (f"f = {self.f.name}, so df = {self.directions[self.f].name}" if self.f in self.directions
                    else "f does not depend on " + ", ".join(v.name for v in self.directions))
            return [(self.expand(self.f), [rule], ())]
        rules: list = []
        current = self.apply(self.f, rules)
        out = [(current, rules, self.pending_in(current))]
        while out[-1][2] and len(out) < MAX_STEPS:
            rules = []
            order = list(dict.fromkeys(n for n in E.walk(current) if n in self.by_var))
            mapping = {v: self.apply(self.by_var[v].sub, rules) for v in order}
            current = raw_substitute(current, mapping)
            out.append((current, rules, self.pending_in(current)))
        if out[-1][2]:   # a runaway: every remaining differential worked out at once
            full = raw_substitute(current, {p.var: p.expansion for p in out[-1][2]})
            out.append((full, ["the remaining rules"], ()))
        return out


def literal_differential(f: E.Expr, x: E.Var, dx: E.Var):
    """(df with every rule applied as written, the rules used, outermost first)."""
    steps = RuleByRule(f, {x: dx}).steps()
    rules: list = []
    for _, names, _ in steps:
        _note(rules, names)
    return steps[-1][0], rules


# ---------------------------------------------------------------------------------------------
# Tidying in named passes: the smart constructors, one node kind at a time
# ---------------------------------------------------------------------------------------------

def _symmetry_names(e: E.Expr) -> list:
    """'symmetry: S' = S' for each declared symmetric matrix a transpose pushed into ``e`` meets."""
    return [Rule(f"symmetry: {v.name}' = {v.name}", rf"\text{{symmetry: }} {_latex(v)}^{{\top}} = {_latex(v)}")
            for v in sorted(e.free_vars, key=lambda v: v.name) if v.symmetric and not v.is_scalar]


def _name_transpose(before: E.Transpose, after: E.Expr) -> list:
    names = [_name_transpose_kind(before)]
    return names + ([n for n in _symmetry_names(before.arg) if n not in names] if not before.arg.is_scalar else [])


def _name_transpose_kind(before: E.Transpose) -> str:
    a = before.arg
    if a.is_scalar:
        return "a scalar is its own transpose"
    if isinstance(a, E.MatMul):
        return "transpose of a product: (A * B)' = B' * A'"
    if isinstance(a, E.Transpose):
        return "(A')' = A"
    if isinstance(a, E.Var) and a.symmetric:
        return _symmetry_names(a)[0]
    if isinstance(a, E.Add):
        return "transpose of a sum"
    if isinstance(a, E.Hadamard):
        return "(A .* B)' = A' .* B'"
    if isinstance(a, E.Inverse):
        return "inv(A)' = inv(A')"
    if isinstance(a, E.Mul):
        return "(c * A)' = c * A'"
    if isinstance(a, E.Kron):
        return "kron(A, B)' = kron(A', B')"
    if isinstance(a, (E.Identity, E.Diag)):
        return "a diagonal matrix is symmetric"
    if isinstance(a, (E.Zero, E.Ones)):
        return "the transpose of a constant matrix"
    if isinstance(a, (E.Elementwise, E.Power)):
        return "f(A)' = f(A') elementwise"
    return "transpose"


def _name_matmul(before: E.MatMul, after: E.Expr) -> list:
    args = before.args
    if any(E.is_zero(a) for a in args):
        return ["a zero factor"]
    names = []
    if len(args) > 1 and any(a.is_scalar or isinstance(a, E.Mul) for a in args):
        names.append("scalar factors commute")
    if any(isinstance(a, E.MatMul) for a in args):
        names.append("associativity of the product")
    if any(isinstance(a, E.Identity) for a in args):
        names.append("A * I = A")
    chain = after.args[-1] if isinstance(after, E.Mul) else after
    if any(isinstance(f, (E.MatPow, E.Inverse)) for f in (chain.args if isinstance(chain, E.MatMul) else (chain,))) \
            and _matrix_powers(chain) > _matrix_powers(before):
        names.append("powers of the same matrix")
    if not names:
        names.append("a 1 x 1 product is a scalar")   # x' y z' = (x' y) z'
    return names


def _matrix_powers(e: E.Expr) -> int:
    return sum(f.k if isinstance(f, E.MatPow) else 1 for f in (e.args if isinstance(e, E.MatMul) else (e,))
               if isinstance(f, (E.MatPow, E.Inverse))) - len(e.args if isinstance(e, E.MatMul) else (e,))


def _name_add(before: E.Add, after: E.Expr) -> str:
    if any(E.is_zero(t) for t in before.args):
        return "drop zero terms"
    if any(isinstance(t, E.Add) for t in before.args) and not _fewer_terms(before, after):
        return "associativity of the sum"
    if _fewer_terms(before, after):
        return "collect like terms"
    return REORDER


def _terms(e: E.Expr) -> int:
    n = 0
    for t in (e.args if isinstance(e, E.Add) else (e,)):
        inner = t.args[-1] if isinstance(t, E.Mul) and len(t.args) == 2 and isinstance(t.args[0], E.Num) else t
        n += len(inner.args) if isinstance(inner, E.Add) else 1
    return n


def _fewer_terms(before, after) -> bool:
    return _terms(after) < _terms(before)


def _name_mul(before: E.Mul, after: E.Expr) -> str:
    if any(E.is_zero(a) for a in before.args):
        return "a zero factor"
    flat = [f for a in before.args for f in (a.args if isinstance(a, E.Mul) else (a,))]
    bases = [E._base_and_exponent(f)[0] for f in flat if not isinstance(f, E.Num) and f.is_scalar]
    if len(set(bases)) < len(bases):
        return "powers of the same scalar: s^a * s^b = s^(a + b)"
    if sum(isinstance(f, E.Num) for f in flat) > 1:
        return "multiply the numbers"
    return "scalar factors commute"


def _name_trace(before: E.Trace, after: E.Expr) -> str:
    a = before.arg
    if a.is_scalar:
        return "the trace of a scalar is the scalar"
    if isinstance(a, E.Add) and isinstance(after, E.Add) and any(
            isinstance(t, E.Trace) and t.arg not in a.args for t in after.args):
        return "linearity and cyclic property of the trace"
    if isinstance(a, E.Mul) and isinstance(a.args[-1], E.MatMul) and not any(
            isinstance(t, E.Trace) and t.arg == a.args[-1] for t in E.walk(after)):
        return "linearity and cyclic property of the trace"
    if isinstance(a, (E.Add, E.Mul)):
        return "linearity of the trace"
    if isinstance(a, E.Transpose):
        return "tr(A') = tr(A)"
    if isinstance(a, E.MatMul):
        return "cyclic property of the trace"
    return "trace"


def _name_hadamard(before: E.Hadamard, after: E.Expr) -> str:
    if any(E.is_zero(a) for a in before.args):
        return "a zero factor"
    if any(a.is_scalar or isinstance(a, E.Mul) for a in before.args):
        return "scalar factors commute"
    if isinstance(after, (E.Power, E.Hadamard)) and _powers(after) > _powers(before):
        return "u .* u = u.^2"
    return "commutativity of .*"


def _powers(e):
    parts = e.args if isinstance(e, E.Hadamard) else (e,)
    return sum(isinstance(p, E.Power) for p in parts)


_LINEAR = {E.Vec: "vec", E.Sum: "sum", E.Diag: "diag", E.DiagPart: "diag", E.Reshape: "reshape"}


def _name_other(before: E.Expr, after: E.Expr) -> str:
    kind = type(before).__name__
    f = _LINEAR.get(type(before))
    if f and isinstance(before.arg, E.Mul):
        return f"{f}(c * A) = c * {f}(A)"
    if f and isinstance(before.arg, E.Add):
        return f"{f}(A + B) = {f}(A) + {f}(B)"
    if f == "sum" and isinstance(before.arg, E.Transpose):
        return "sum(A') = sum(A)"
    names = {"Power": "powers: u.^a .* u.^b = u.^(a + b)", "Vec": "vec of a vector is the vector",
             "Diag": "diag of a scalar multiple", "DiagPart": "diagonal of a matrix",
             "Sum": "linearity of sum", "Inverse": "inverse of a product", "Kron": "kron of scalars",
             "MatPow": "powers of the same matrix", "Elementwise": "value at a constant",
             "Det": "det(A') = det(A)", "LogDet": "logdet(A') = logdet(A)", "Reshape": "reshape of vec",
             "Norm1": "norm of the transpose", "Norm2": "norm of the transpose"}
    return names.get(kind, "simplify")


# the passes in the order a reader expects them: transposes, then products, then sums
TIDY_PASSES = (
    ((E.Transpose,), _name_transpose),
    ((E.Trace,), _name_trace),
    ((E.Mul,), _name_mul),
    ((E.MatMul,), _name_matmul),
    ((E.Hadamard,), _name_hadamard),
    ((E.Add,), _name_add),
    ((E.Power, E.Vec, E.Diag, E.DiagPart, E.Sum, E.Inverse, E.Kron, E.MatPow, E.Elementwise, E.Det,
      E.LogDet, E.Reshape, E.Norm1, E.Norm2, E.Adj), _name_other),
)

_NAMERS = {t: namer for types, namer in TIDY_PASSES for t in types}


def _namer(node):
    return _NAMERS.get(type(node), _name_other)


def _bottom_up(e: E.Expr, at_node, names: list, smart_parents) -> E.Expr:
    """Rewrite every node with ``at_node`` (children first).  Parents of changed nodes are rebuilt
    literally, or through the smart constructors when ``smart_parents`` (whatever that changes
    beyond the literal rebuild is named too)."""
    memo: dict = {}

    def go(node):
        if not node.children:
            return node
        if node in memo:
            return memo[node]
        children = [go(c) for c in node.children]
        out = raw_rebuild(node, children)
        smart_here = smart_parents is True or (smart_parents and isinstance(node, smart_parents))
        if smart_here and out is not node:
            smart = E.rebuild(node, children)
            if smart != out:
                _note(names, _namer(out)(out, smart))
            out = smart
        out = at_node(out)
        memo[node] = out
        return out

    return go(e)


def _note(names: list, name):
    for n in ([name] if isinstance(name, str) else name):
        if n not in names:
            names.append(n)


def _tidy_pass(e: E.Expr, types, namer):
    names: list = []

    def at_node(node):
        if isinstance(node, types):
            smart = E.rebuild(node, list(node.children))
            if smart != node:
                _note(names, namer(node, smart))
                return smart
        return node

    # a scalar multiple of a scalar multiple reads as one: -(-a) / 2 is written a / 2
    return _bottom_up(e, at_node, names, smart_parents=(E.Mul,)), names


def _is_tidy(e: E.Expr) -> bool:
    """Every node is as the smart constructors build it (up to the order of terms in a sum)."""
    for n in E.walk(e):
        if not n.children:
            continue
        smart = E.rebuild(n, list(n.children))
        if smart != n and not (isinstance(n, E.Add) and isinstance(smart, E.Add)
                               and sorted(a.key for a in n.args) == sorted(a.key for a in smart.args)):
            return False
    return True


# ---------------------------------------------------------------------------------------------
# The canonical-form rules, one at a time
# ---------------------------------------------------------------------------------------------

RULE_NAMES = {
    "exp_ratio_to_sigmoid": "exp(u) ./ (1 + exp(u)) = sigmoid(u)",
    "sum_of_products": "sum(u .* v) = u' * v",
    "collect_coefficients": "collect like terms",
    "factor_common": "factor out common factors",
    "merge_traces": "tr(A) + tr(B) = tr(A + B)",
}


def simplify_rule_name(rule) -> str:
    """A simplifier rule's name in words (a rule added later gets its docstring's first line)."""
    name = getattr(rule, "step_name", None) or RULE_NAMES.get(rule.__name__)
    if name:
        return name
    doc = (rule.__doc__ or "").strip().splitlines()
    return doc[0].rstrip(".") if doc else rule.__name__.replace("_", " ")


def _rule_pass(e: E.Expr, rule):
    names: list = []

    def at_node(node):
        out = rule(node)
        if out != node:
            _note(names, simplify_rule_name(rule))
            return out
        return node

    out = _bottom_up(e, at_node, names, smart_parents=True)
    return out, names


def _scalar_flip_passes(e: E.Expr):
    """``orient_scalar`` as a reader does it, in two steps: write the scalar as its transpose,
    then push the transpose through the product.  Yields (expr, rules) for each step taken."""
    flips: list = []

    def mark(node):
        out = S.orient_scalar(node)
        if out != node:
            flips.append(node)
            return E.Transpose(node, node.shape)
        return node

    first = _bottom_up(e, mark, [], smart_parents=False)
    if not flips:
        return []
    names = ["a scalar is its own transpose"]

    def push(node):
        if isinstance(node, E.Transpose) and node.arg in flips:
            return S.orient_scalar(node.arg)
        return node

    second_names = ["transpose of a product: (A * B)' = B' * A'"]
    for node in flips:
        _note(second_names, _symmetry_names(node))
    second = _bottom_up(first, push, second_names, smart_parents=True)
    return [(first, names), (second, second_names)]


def simplify_steps(e: E.Expr, target: E.Expr | None = None) -> list:
    """[(expr, rules)] taking ``e`` (a literal tree) to canonical form one named pass at a time.

    ``target`` is the canonical form the stage printed; should the passes end elsewhere, a last
    step says so (the tests check that this is rare and still a true equation)."""
    out: list = []
    current = e
    while len(out) < MAX_STEPS and (target is None or current != target):
        taken = _next_steps(current)
        if not taken:
            break
        out.extend(taken)
        current = taken[-1][0]
    goal = target if target is not None else S.simplify(current)
    if current != goal:
        out.append((goal, [CANONICAL]))
    return _merge_reorders(out)


def _merge_reorders(steps: list) -> list:
    """A step that only reorders terms is folded into the next one (which lists it)."""
    out, pending = [], False
    for e, rules in steps:
        if list(rules) == [REORDER] and e is not steps[-1][0]:
            pending = True
            continue
        out.append((e, list(rules) + ([REORDER] if pending and REORDER not in rules else [])))
        pending = False
    return out


def _next_steps(e: E.Expr) -> list:
    """The first pass, in reading order, that changes ``e``: its steps [(expr, rules)], or []."""
    reorder = None
    for types, namer in TIDY_PASSES:
        new, names = _tidy_pass(e, types, namer)
        if new != e:
            if names == [REORDER]:
                reorder = reorder or [(new, names)]   # commutativity alone: only if nothing else
                continue
            return [(new, names)]
    if not _is_tidy(e):
        return [(_full_rebuild(e), ["simplify"])]
    for rule in S.RULES:
        if rule is S.orient_scalar:
            flips = _scalar_flip_passes(e)
            if flips:
                return flips
            continue
        new, names = _rule_pass(e, rule)
        if new != e:
            return [(new, names)]
    return reorder or []


def _full_rebuild(e: E.Expr) -> E.Expr:
    memo: dict = {}

    def go(node):
        if not node.children:
            return node
        if node not in memo:
            memo[node] = E.rebuild(node, [go(c) for c in node.children])
        return memo[node]

    return go(e)


# ---------------------------------------------------------------------------------------------
# Identification: the rules of identify's adjoint and vec/kron walks, named along the way to dx
# ---------------------------------------------------------------------------------------------

def _holder(L: E.Expr, dx: E.Var):
    held = [c for c in L.children if E.depends_on(c, dx)]
    return held[0] if len(held) == 1 else None


def _adjoint_name(L: E.Expr, dx: E.Var, top: bool):
    F = _holder(L, dx)
    if isinstance(L, E.Transpose):
        return "tr(W' * F') = tr(W * F)"
    if isinstance(L, E.Mul) and F is not None and F.is_scalar and not L.is_scalar:
        return "tr(W' * (s * M)) = s * tr(M' * W)"
    if isinstance(L, E.MatMul) and F is not None:
        i = L.args.index(F)
        if i + 1 < len(L.args):
            if L.is_scalar and L.args[0].rows == 1 and F.cols != 1:
                return "a' * dX * b = tr(b * a' * dX)"
            return "cyclic property of the trace: tr(A * dX * B) = tr(B * A * dX)"
        return None
    if isinstance(L, E.Hadamard):
        if L.cols == 1 and L.is_scalar is False:
            return "u .* dx = diag(u) * dx"
        return "tr(W' * (U .* dX)) = tr((U .* W)' * dX)"
    if isinstance(L, E.Sum):
        return "sum(F) = tr(ones' * F)"
    if isinstance(L, E.DiagPart):
        return "w' * diag(F) = tr(diag(w) * F)"
    if isinstance(L, E.Diag):
        return "tr(W' * diag(f)) = diag(W)' * f"
    if isinstance(L, (E.Vec, E.Reshape)):
        return "w' * vec(F) = tr(reshape(w)' * F)"
    if isinstance(L, E.Kron):
        return "vec(kron(A, B)) rearranged as a product with vec(A) or vec(B)"
    return None


def _jacobian_name(L: E.Expr, dx: E.Var, top: bool):
    F = _holder(L, dx)
    if isinstance(L, E.Transpose):
        return "vec(dX') = commutation * vec(dX)"
    if isinstance(L, E.Mul) and F is not None:
        return "vec(s * M) = vec(M) * s" if F.is_scalar else None   # vec(c F) = c vec(F): plain
    if isinstance(L, E.MatMul):
        if F is not None and F.cols == 1 and L.args[-1] is F:
            return None    # vec(A * dx) = A * dx: nothing to rearrange
        return "vec(A * dX * B) = kron(B', A) * vec(dX)"
    if isinstance(L, E.Hadamard):
        return "u .* dx = diag(u) * dx" if L.cols == 1 else "vec(U .* dX) = diag(vec(U)) * vec(dX)"
    if isinstance(L, E.DiagPart):
        return "vec(diag(F)) = kron(ones', I) * diag(vec(I)) * vec(F)"
    if isinstance(L, E.Diag):
        return "vec(diag(f)) = diag(vec(I)) * kron(ones, I) * f"
    if isinstance(L, E.Kron):
        return "vec(kron(A, B)) rearranged as a product with vec(A) or vec(B)"
    return None


def _walk_rules(L: E.Expr, dx: E.Var, namer, out: list, top: bool = True, adjoint_below_scalars=False):
    if not E.depends_on(L, dx) or isinstance(L, E.Var):
        return
    if adjoint_below_scalars and L.is_scalar and namer is _jacobian_name:
        _note(out, "a scalar s = tr(G' * dX) has vec(s) = vec(G)' * vec(dX)")
        _walk_rules(L, dx, _adjoint_name, out, top)
        return
    name = namer(L, dx, top)
    if name:
        _note(out, name)
    if isinstance(L, E.Add):
        for t in L.args:
            _walk_rules(L=t, dx=dx, namer=namer, out=out, top=False,
                        adjoint_below_scalars=adjoint_below_scalars)
        return
    for c in L.children:
        if E.depends_on(c, dx):
            _walk_rules(c, dx, namer, out, False, adjoint_below_scalars)


def _identification_rule(dx: E.Var) -> Rule:
    d = _latex(dx)
    if dx.is_scalar:
        return Rule(f"df = \u2207f * {dx.name}", rf"\mathrm{{d}}f = \nabla f \, {d}")
    if dx.cols == 1:
        return Rule(f"df = \u2207f' * {dx.name}", rf"\mathrm{{d}}f = \nabla f^{{\top}} {d}")
    return Rule(f"df = tr(\u2207f' * {dx.name})", rf"\mathrm{{d}}f = \operatorname{{tr}}(\nabla f^{{\top}} {d})")


# the adjoint moves of ``identify.pullback``, written literally: G as a reader first writes it,
# e.g. (x' * (A + A'))' from df = x' * (A + A') * dx, before any simplification

def _r_transpose(e: E.Expr) -> E.Expr:
    if e.is_scalar:
        return e
    if isinstance(e, E.Transpose):
        return e.arg                       # (A')' = A, too plain to be a step
    if isinstance(e, E.Mul):               # (c * A)' = c * A'
        return _r_mul(list(e.args[:-1]), _r_transpose(e.args[-1]))
    return E.Transpose(e, (e.cols, e.rows))


def _r_matmul(factors: list) -> E.Expr:
    """A literal product; numbers and scalars in front, identity factors and ones dropped."""
    scalars, chain = [], []
    for f in factors:
        if isinstance(f, E.Mul):
            scalars += list(f.args[:-1])
            f = f.args[-1]
        if f.is_scalar and len(factors) > 1:
            scalars.append(f)
        elif not isinstance(f, E.Identity):
            chain.append(f)
    if not chain:
        identity = [f for f in factors if isinstance(f, E.Identity)]
        chain = identity[:1] or [E.Num(1)]
    body = chain[0] if len(chain) == 1 else E.MatMul(tuple(chain), (chain[0].rows, chain[-1].cols))
    return _r_mul(scalars, body)


def _r_mul(scalars: list, body: E.Expr) -> E.Expr:
    """A literal scalar multiple: one number in front, then the other scalars, then ``body``."""
    if isinstance(body, E.Mul):
        scalars, body = scalars + list(body.args[:-1]), body.args[-1]
    flat = []
    for f in scalars:
        flat += list(f.args) if isinstance(f, E.Mul) else [f]
    coef = Fraction(1)
    for f in flat:
        if isinstance(f, E.Num):
            coef *= f.value
    rest = [f for f in flat if not isinstance(f, E.Num)]
    if isinstance(body, E.Num) and body.is_scalar:
        coef *= body.value
        if rest:
            rest, body = rest[:-1], rest[-1]
        else:
            return E.Num(coef)
    parts = ([E.Num(coef)] if coef != 1 else []) + rest
    return E.Mul(tuple(parts) + (body,), body.shape) if parts else body


def literal_pullback(L: E.Expr, W: E.Expr, dx: E.Var) -> E.Expr:
    """The G with <W, L(dx)> = <G, dx>, each adjoint move written out (cf. ``identify.pullback``)."""
    if not E.depends_on(L, dx):
        return E.zero(dx.shape)
    if isinstance(L, E.Var):
        return W
    F = _holder(L, dx)
    if isinstance(L, E.Add):
        parts = [literal_pullback(t, W, dx) for t in L.args if E.depends_on(t, dx)]
        return parts[0] if len(parts) == 1 else E.Add(tuple(parts), dx.shape)
    if F is None:
        return identify.pullback(L, W, dx)
    others = [c for c in L.children if c is not F] if not isinstance(L, E.Kron) else None
    if isinstance(L, E.Transpose):
        return literal_pullback(F, _r_transpose(W), dx)
    if isinstance(L, E.Mul):
        if not F.is_scalar or L.is_scalar:
            return literal_pullback(F, _r_mul(others, W), dx)
        M = _r_mul(others[:-1], others[-1]) if len(others) > 1 else others[0]
        return literal_pullback(F, E.inner(M, W), dx)
    if isinstance(L, E.MatMul):
        i = L.args.index(F)
        left, right = list(L.args[:i]), list(L.args[i + 1:])
        seed = [W]
        if left:
            seed = [_r_transpose(_r_matmul(left))] + seed
        if right:
            seed = seed + [_r_transpose(_r_matmul(right))]
        return literal_pullback(F, _r_matmul(seed), dx)
    if isinstance(L, E.Hadamard):
        if W.is_scalar:
            body = others[0] if len(others) == 1 else E.Hadamard(tuple(others), L.shape)
            return literal_pullback(F, _r_mul([W], body), dx)
        return literal_pullback(F, E.Hadamard(tuple(others) + (W,), L.shape), dx)
    if isinstance(L, E.Trace):
        return literal_pullback(F, _r_mul([W], E.Identity(F.rows)), dx)
    if isinstance(L, E.Sum):
        return literal_pullback(F, _r_mul([W], E.ones(F.shape)), dx)
    return identify.pullback(L, W, dx)


def gradient_steps(df: E.Expr, x: E.Var, dx: E.Var, target: E.Expr, cookbook: bool = False,
                   taken=frozenset()) -> list:
    """[(expr, rules)]: the gradient read off df = tr(G' dX), then simplified to ``target``; for a
    symmetric variable [(expr, rules, defs)] (``_symmetrized_steps``)."""
    raw = literal_pullback(df, E.Num(1), dx)
    rules = [_identification_rule(dx)]
    _walk_rules(df, dx, _adjoint_name, rules)
    current = raw
    if x.symmetric and not cookbook:
        return _symmetrized_steps(raw, x, dx, rules, target, taken)
    if cookbook:
        G = identify.gradient(df, x, dx)
        current = E.Add((E.Mul((E.Num(2), G), G.shape),
                         E.Mul((E.Num(-1), E.Hadamard((E.Identity(G.rows), G), G.shape)), G.shape)), G.shape)
        head = r"\text{Matrix Cookbook convention: } 2G - I \odot G,\ G = "
        rules.append(_with_formula(Rule(f"Matrix Cookbook convention: 2 * G - I .* G, G = {_text(G)}",
                                        head + _latex(G), (head, G)), "Matrix Cookbook convention: 2G - I ⊙ G, G", G))
    return _chain(current, rules, target)


def _symmetrized_steps(raw: E.Expr, x: E.Var, dx: E.Var, rules: list, target: E.Expr, taken) -> list:
    """A symmetric variable: ∇f = (G + G') / 2 for the G with df = tr(G' dX), G written as a
    definition ('where G = ...') and simplified there first; then G put in and the whole
    simplified to ``target``.  [(expr, rules, defs)]."""
    used = set(taken) | {v.name for v in E.walk(raw, target) if isinstance(v, E.Var)}
    name = next(n for n in ("G", "G0", "G1", "G2", "Gf") if n not in used) if "G" in used else "G"
    G = E.Var(name, raw.shape, False)
    body = _half(E.Add((G, E.Transpose(G, (G.cols, G.rows))), G.shape))
    rules = list(rules) + [Rule(
        f"{x.name} symmetric: \u2207f = ({name} + {name}') / 2 for the {name} with df = tr({name}' * {dx.name})",
        rf"{_latex(x)} \text{{ symmetric: }} \nabla f = \tfrac{{1}}{{2}}({name} + {name}^{{\top}}) "
        rf"\text{{ for }} {name} \text{{ with }} \mathrm{{d}}f = \operatorname{{tr}}({name}^{{\top}} {_latex(dx)})")]
    chain = _drop_repeats([(raw, rules)] + simplify_steps(raw))
    simplified = chain[-1][0]
    out = [(body, r, ((G, e),)) for e, r in chain]
    put_in = raw_substitute(body, {G: simplified})
    out.append((put_in, [f"{name} put in"], ()))
    out += [(e, r, ()) for e, r in simplify_steps(put_in, target)[0:]]
    out.append((target, [], ()))
    cleaned: list = []
    for e, r, defs in out:   # a step that writes the same as the one before adds nothing
        if cleaned and cleaned[-1][0] == e and cleaned[-1][2] == defs:
            cleaned[-1] = (e, cleaned[-1][1], defs)   # the later object: the last is the result itself
            continue
        cleaned.append((e, r, defs))
    return cleaned


def _with_formula(rule: Rule, lhs: str, rhs: E.Expr) -> Rule:
    """``rule`` as '<lhs> = <rhs>' for renderers with a notation of their own (``Rule.formula``)."""
    rule.formula = ("", lhs, rhs)
    return rule


def _half(e: E.Expr) -> E.Expr:
    return E.Mul((E.Num(Fraction(1, 2)), e), e.shape)


def _symmetric_projection(J: E.Expr, x: E.Var, rules: list) -> E.Expr:
    P = identify.symmetric_projection(x.rows)
    rules.append(f"{x.name} symmetric: J acts through P = (I + commutation) / 2")
    return E.MatMul((J, P), (J.rows, P.cols))


def jacobian_steps(f: E.Expr, df: E.Expr, x: E.Var, dx: E.Var, layout: str, target: E.Expr) -> list:
    if f.is_scalar:
        G = identify.gradient(df, x, dx)
        raw = E.Transpose(E.Vec(G, (G.rows * G.cols, 1)) if G.cols != 1 else G, (1, G.rows * G.cols))
        rules = ["J = vec(\u2207f)' for a scalar f"]
    else:
        raw = identify.jacobian_kron(df, dx)
        if dx.cols == 1 and df.cols == 1:
            rules = [Rule(f"df = J * {dx.name}", rf"\mathrm{{d}}f = J {_latex(dx)}")]
        else:
            rules = [Rule(f"vec(df) = J * vec({dx.name})",
                          rf"\operatorname{{vec}}(\mathrm{{d}}f) = J \operatorname{{vec}}({_latex(dx)})")]
        _walk_rules(df, dx, _jacobian_name, rules, adjoint_below_scalars=True)
        if x.symmetric:
            raw = _symmetric_projection(raw, x, rules)
    if layout == "denominator":
        raw = E.Transpose(raw, (raw.cols, raw.rows))
        rules.append("denominator layout: the transpose of the numerator layout")
    return _chain(raw, rules, target)


def hessian_steps(G: E.Expr, x: E.Var, dx: E.Var, dx2: E.Var, target: E.Expr, bilinear: E.Expr | None,
                  taken, block=None) -> list:
    """The Hessian read off the differential of the gradient, d(∇f) = H dx (vec(d∇f) = H vec(dX));
    the rules also give the second differential f''[dx, dx2] it comes with (when ``bilinear``).
    ``block``: with several variables, (v, w) for H[v, w], read off d(∇_v f) in the direction of w
    (``x``, ``dx`` are then w's)."""
    from .render.latex import shared_latex
    from .render.share import shared_text
    dG = S.simplify(differential(G, x, dx))
    raw = identify.jacobian_kron(E.vec(dG), dx)
    d, d2 = _latex(dx), _latex(dx2)
    grad, grad_latex = "\u2207f", r"\nabla f"
    if block is not None:
        grad, grad_latex = f"\u2207_{block[0].name} f", rf"\nabla_{{{_latex(block[0].x)}}} f"
    within = f" in {dx.name}" if block is not None else ""
    within_latex = rf"\text{{ in }} {d}" if block is not None else ""
    head = rf"\text{{second differential: }} \mathrm{{d}}({grad_latex}){within_latex} = "
    rules = [_with_formula(Rule(f"second differential: d({grad}){within} = {shared_text(dG, taken, _text)}",
                                head + shared_latex(dG, taken), (head, dG)),
                           f"second differential: d({grad}){within}", dG)]
    if dx.cols == 1 and block is None:
        rules.append(Rule(f"d({grad}) = H * {dx.name}", rf"\mathrm{{d}}({grad_latex}) = H {d}"))
    else:
        rules.append(Rule(f"vec(d({grad})) = H * vec({dx.name})",
                          rf"\operatorname{{vec}}(\mathrm{{d}}({grad_latex})) = H \operatorname{{vec}}({d})"))
    _walk_rules(E.vec(dG), dx, _jacobian_name, rules, adjoint_below_scalars=True)
    if bilinear is not None and block is None:
        # (a break mark before the second '=': a long rule row may go on to the next line there)
        head = rf"f''[{d}, {d2}] = \operatorname{{vec}}({d})^{{\top}} H \operatorname{{vec}}({d2})" + SUM + " = "
        rules.append(_with_formula(Rule(f"f''[{dx.name}, {dx2.name}] = vec({dx.name})' * H * vec({dx2.name}) = "
                                        f"{shared_text(bilinear, taken, _text)}",
                                        head.replace(SUM, "") + shared_latex(bilinear, taken), (head, bilinear)),
                                   f"f''[{dx.name}, {dx2.name}] = vec({dx.name})ᵀ H vec({dx2.name})", bilinear))
    elif block is not None:
        v, w = block
        rules.append(Rule(f"f'' contains vec({v.dx.name})' * H[{v.name}, {w.name}] * vec({w.dx2.name})",
                          rf"f'' \text{{ contains }} \operatorname{{vec}}({_latex(v.dx)})^{{\top}} "
                          rf"H_{{{_latex(v.x)}, {_latex(w.x)}}} \operatorname{{vec}}({_latex(w.dx2)})"))
    if x.symmetric:
        raw = _symmetric_projection(raw, x, rules)
    return _chain(raw, rules, target)


def _chain(first: E.Expr, rules: list, target: E.Expr) -> list:
    """The stage's steps: ``first`` (justified by ``rules``), simplified step by step to ``target``;
    the last step holds the target object itself, so that it prints exactly as the result does."""
    return _drop_repeats([(first, rules)] + simplify_steps(first, target) + [(target, [])])


def _drop_repeats(steps: list) -> list:
    """A step that writes the same expression as the one before adds nothing (the later object is
    kept: the last one is the result itself)."""
    out = []
    for e, rules in steps:
        if out and out[-1][0] == e:
            out[-1] = (e, out[-1][1])
            continue
        out.append((e, rules))
    return out


def differential_steps(f: E.Expr, directions: dict, target: E.Expr) -> list:
    """[(expr, rules, pendings)]: the rules applied one by one (``RuleByRule``), then the literal
    differential simplified step by step to ``target``."""
    applied = RuleByRule(f, directions).steps()
    if len(directions) == 1:
        rest = _chain(applied[-1][0], [], target)[1:]
    else:
        rest = _by_direction_steps(applied[-1][0], directions, target)
    return [(e, rules, pending, ()) for e, rules, pending in applied] + [(e, rules, (), ()) for e, rules in rest]


def _literal_part(e: E.Expr, d: E.Var, directions) -> E.Expr | None:
    """The terms of the literal differential ``e`` in the direction ``d`` (None: there are none),
    cut out of the tree as written: df is linear in the directions, so each node but a sum has one
    child that holds them."""
    if e in directions:
        return e if e == d else None
    if isinstance(e, E.Add):
        parts = [p for p in (_literal_part(t, d, directions) for t in e.args) if p is not None]
        return None if not parts else parts[0] if len(parts) == 1 else E.Add(tuple(parts), e.shape)
    held = [i for i, c in enumerate(e.children) if _depends(c, directions)]
    if len(held) != 1:
        raise ValueError("not linear in one child")
    part = _literal_part(e.children[held[0]], d, directions)
    if part is None:
        return None
    return raw_rebuild(e, [part if i == held[0] else c for i, c in enumerate(e.children)])


def _by_direction_steps(lit: E.Expr, directions: dict, target: E.Expr) -> list:
    """Several variables: the literal differential's terms grouped by direction, then each part
    simplified (the parts side by side, a step of each at a time) to the printed sum of parts."""
    try:
        dirs = frozenset(directions.values())
        parts = [(d, _literal_part(lit, d, dirs)) for d in directions.values()]
    except ValueError:
        return _drop_repeats([(lit, [])] + simplify_steps(lit) + [(target, [BY_DIRECTION])])[1:]
    parts = [(d, p) for d, p in parts if p is not None]
    terms = target.args if isinstance(target, E.Add) else (target,)

    def goal(d):   # the printed part in d: the terms of the result that hold d
        held = [t for t in terms if d in t.free_vars]
        return held[0] if len(held) == 1 else None

    chains = [simplify_steps(p, goal(d)) for d, p in parts]
    parts = [p for _, p in parts]
    whole = lambda es: es[0] if len(es) == 1 else E.Add(tuple(es), lit.shape)
    out = [(whole(parts), [BY_DIRECTION])]
    current = list(parts)
    for k in range(max((len(c) for c in chains), default=0)):
        rules: list = []
        for i, chain in enumerate(chains):
            if k < len(chain):
                current[i] = chain[k][0]
                _note(rules, chain[k][1])
        out.append((whole(current), rules or [REORDER]))
    if out[-1][0] != target:
        out.append((target, [REORDER]))
    return _drop_repeats([(lit, [])] + out)[1:]


def _with_no_pending(steps: list) -> list:
    return [(e, rules, (), ()) for e, rules in steps]


def derivation_steps(d) -> list:
    """Every step of the derivation ``d`` (an ``api.Derivation``): a list of ``Step``.  With several
    variables: the differential in all directions, then each result read off its variable's part
    (the JSON stage stays the kind of result; ``Step.wrt`` names the variables)."""
    results = d.results
    taken = results["differential"].taken
    df = results["differential"].printed
    # (stage, result key, wrt, [(expr, rules, pendings)])
    stages = [("differential", "differential", (),
               differential_steps(d.expression, {v.x: v.dx for v in d.variables}, df))]
    by_name = {v.name: v for v in d.variables}
    for key, r in results.items():
        if r.name == "gradient":
            v = by_name[r.wrt[0]] if d.several else d.variables[0]
            part = d.differential_part(v.name).printed
            steps = gradient_steps(part, v.x, v.dx, r.printed, r.label.startswith("cookbook"), taken)
            steps = [(e, rules, (), defs) for e, rules, *rest in steps for defs in [rest[0] if rest else ()]]
            if d.several:
                steps[0] = (steps[0][0], [_part_rule(d, v)] + list(steps[0][1]), (), steps[0][3])
            stages.append(("gradient", key, r.wrt, steps))
    for key, r in results.items():
        if r.name == "jacobian":
            v = by_name[r.wrt[0]] if d.several else d.variables[0]
            part = d.differential_part(v.name).printed
            steps = jacobian_steps(d.expression, part, v.x, v.dx, d.layout, r.printed)
            if d.several:
                steps[0] = (steps[0][0], [_part_rule(d, v)] + list(steps[0][1]))
            stages.append(("jacobian", key, r.wrt, _with_no_pending(steps)))
    first_block = True
    for key, r in results.items():
        if r.name == "hessian":
            v, w = (by_name[r.wrt[0]], by_name[r.wrt[1]]) if d.several else (d.variables[0],) * 2
            G = identify.gradient(d.differential_part(v.name).printed, v.x, v.dx)
            bilinear = results["hessian_bilinear"].printed if first_block else None
            steps = hessian_steps(G, w.x, w.dx, w.dx2, r.printed, bilinear, taken,
                                  block=(v, w) if d.several else None)
            first_block = False
            stages.append(("hessian", key, r.wrt, _with_no_pending(steps)))
    return [Step(stage, e, tuple(rules), taken, result=i == len(steps) - 1, pending=pending, defs=defs,
                 key=key if d.several else "", wrt=wrt if d.several else ())
            for stage, key, wrt, steps in stages for i, (e, rules, pending, defs) in enumerate(steps)]


def _part_rule(d, v) -> Rule:
    """Several variables: a result of ``v`` is read off the part of df in its direction."""
    only = ", ".join(w.dx.name if w is v else "0" for w in d.variables)
    args = ", ".join(w.name for w in d.variables)
    only_latex = ", ".join(_latex(w.dx) if w is v else "0" for w in d.variables)
    args_latex = ", ".join(_latex(w.x) for w in d.variables)
    return Rule(f"the part of df in {v.dx.name}: f'({args})[{only}]",
                rf"\text{{the part of }} \mathrm{{d}}f \text{{ in }} {_latex(v.dx)}\text{{: }} "
                rf"f'({args_latex})[{only_latex}]")


# ---------------------------------------------------------------------------------------------
# --check with --steps: every step against its stage's result, in numbers
# ---------------------------------------------------------------------------------------------

STEP_TOLERANCE = 1e-7   # steps are identities, not finite differences: only rounding separates them

def check_steps(d, seed: int = 0, points: int = 3):
    """A ``check.ResultCheck`` named 'steps': the largest relative difference between a step and its
    stage's result over ``points`` random points and directions (NumPy is imported here only)."""
    import math

    import numpy as np

    from . import numeric as N
    from .check import ResultCheck, relative_error

    sizes = N.dimension_sizes(d)
    rng = np.random.default_rng(seed)
    worst, message = 0.0, ""
    with np.errstate(all="ignore"):
        for _ in range(points):
            env = N.random_point(d, rng, sizes)
            for v in d.variables:
                env[v.dx.name] = N.random_direction(v.dx, rng, sizes)
                env[v.dx2.name] = N.random_direction(v.dx2, rng, sizes)
            for i, step in enumerate(d.steps or []):
                try:
                    err = relative_error(N.evaluate(step.value, env, sizes),
                                         N.evaluate(d.results[step.result_key].expr, env, sizes))
                except (NotImplementedError, ValueError, KeyError, np.linalg.LinAlgError) as e:
                    err, message = math.inf, f"cannot evaluate step {i + 1}: {e}"
                if err > worst or math.isnan(err):
                    worst = err if not math.isnan(err) else math.inf
                    if err > STEP_TOLERANCE and not message:
                        message = f"step {i + 1} ({step.stage}) differs from the result"
    return ResultCheck("steps", worst, STEP_TOLERANCE, message)
