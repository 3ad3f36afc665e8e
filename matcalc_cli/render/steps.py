"""Derivation steps (``matcalc_cli.steps``) as text, LaTeX, JSON, and rows for any renderer.

``rows(steps)`` is what every format shows: (lhs, rhs, rules) per line, the lhs written only on
the first line of a stage (``df``, ``∇f``, ``J``, ``H``) and empty on the lines that continue it.
"""

from __future__ import annotations

import re
import textwrap

from .. import expr as E
from . import share
from .printer import ATOM, MUL, NEG, POW
from .text import TextPrinter

# what each stage's chain of equalities is about
LHS = {"differential": "df", "gradient": "\u2207f", "jacobian": "J", "hessian": "H"}
LATEX_LHS = {"differential": r"\mathrm{d}f", "gradient": r"\nabla f", "jacobian": r"J", "hessian": r"H"}

LATEX_LINE = 90   # LaTeX: a step longer than this (text and rules) has its rules on rows below
WIDTH = 100   # plain text: rules go in a column when the lines fit this width


# --- one step's expression ------------------------------------------------------------------------
# Steps hold literal trees (a rule's output before simplification): a negation may sit inside a
# product, where the smart constructors never leave one, so such factors get parentheses.  A
# differential the step has not worked out yet (``steps.Pending``) is written d(u), or d log(u)
# for a function's value, as a textbook writes it.

# nodes printed as a call, f(...): their pending differential reads d f(...)
_CALLS = (E.Elementwise, E.Trace, E.Det, E.LogDet, E.Sum, E.Diag, E.DiagPart, E.Vec, E.Norm1, E.Norm2)


class ShowsPending:
    """A printer mixin: stand-ins of pending differentials print as ``d`` of what they stand for.
    ``pending``: stand-in var -> subexpression; ``d_symbol`` and ``d_space`` per format."""

    pending: dict = {}
    d_symbol = "d"
    d_space = " "
    calls = _CALLS

    def _is_call(self, sub) -> bool:
        return isinstance(sub, self.calls) and not (isinstance(sub, E.Elementwise) and sub.fn in ("sqrt", "abs"))

    def _print_Var(self, e):
        sub = self.pending.get(e)
        if sub is None:
            return super()._print_Var(e)
        if self._is_call(sub):
            return self.d_symbol + self.d_space + self.print(sub)
        return self.d_symbol + self.wrap(self.print(sub))

    def precedence(self, e):
        sub = self.pending.get(e) if isinstance(e, E.Var) else None
        if sub is not None:
            # d exp(u) is a factor as it stands, but (d exp(u))' needs its parentheses
            return POW if self._is_call(sub) else ATOM
        return super().precedence(e)


class StepTextPrinter(ShowsPending, TextPrinter):
    calls = _CALLS + (E.Inverse,)

    def __init__(self, pending=None):
        super().__init__()
        self.pending = dict(pending or {})

    def paren(self, e, level, known=False):
        text = self.print(e, known)
        if self.precedence(e) < level or (level == MUL + 1 and self.precedence(e) == NEG):
            return self.wrap(text)
        return text


def _is_reciprocal(f: E.Expr) -> bool:
    return isinstance(f, E.Power) and isinstance(f.exponent, E.Num) and f.exponent.value < 0


def pending_map(pending) -> dict:
    """stand-in var -> the subexpression it is the differential of."""
    return {p.var: p.sub for p in pending}


LITERAL_SHARE_SIZE = 300   # a step that is not a result names its repeats only when this large


def _literal_shared_form(e: E.Expr, taken) -> tuple:
    """``share.shared_form`` for literal trees, and only for large ones: ([(name var, definition)],
    body) with the repeated parts named, nothing rebuilt through the smart constructors."""
    if E.tree_size(e) <= LITERAL_SHARE_SIZE:
        return [], e
    chosen = share._choose(e)
    if not chosen or share._written_size(e, chosen) > (1 - share.MIN_SAVING) * E.tree_size(e):
        return [], e
    chosen_set = set(chosen)
    inner_first = [n for n in share._order([e] + chosen)[::-1] if n in chosen_set]
    names, mapping, definitions = iter(share._fresh_names(taken)), {}, []
    for node in inner_first:
        definitions.append((E.Var(next(names), node.shape, share._is_symmetric(node)), _below_root(node, mapping)))
        mapping[node] = definitions[-1][0]
    return definitions, _below_root(e, mapping)


def _below_root(e: E.Expr, mapping: dict) -> E.Expr:
    from ..steps import raw_rebuild, raw_substitute
    if not e.children:
        return e
    return raw_rebuild(e, [raw_substitute(c, mapping) for c in e.children])


def step_forms(e: E.Expr, taken=(), result: bool = False) -> tuple:
    """([(name var, definition)], body): a step with its repeated parts named as results are."""
    if result:
        return share.shared_form(e, taken)
    return _literal_shared_form(e, taken)


def step_parts(e: E.Expr, taken=(), result: bool = False, pending=(), defs=()) -> tuple:
    """([(name, definition text)], body text) of a step as a person reads it: its repeated parts
    named as results are (a result exactly as ``Result.text`` prints it), pending differentials
    written d(u)."""
    if result:
        from .text import to_text
        definitions, body = share.shared_form(e, taken)
        return [(v.name, to_text(d)) for v, d in definitions], to_text(body)
    definitions, body = _literal_shared_form(e, taken)
    printer = lambda: StepTextPrinter(pending_map(pending))
    return [(v.name, printer().doprint(d)) for v, d in list(defs) + definitions], printer().doprint(body)


def _named_pending(e: E.Expr, taken, pending) -> tuple:
    """``e`` with each pending differential a name of the language (dt1, dt2, ...) and the
    definitions [(name, expansion)] that make it parse back to the same value."""
    from ..steps import raw_substitute
    used = set(taken) | {v.name for v in E.walk(e, *[p.expansion for p in pending]) if isinstance(v, E.Var)}
    names, mapping, definitions = (f"dt{i}" for i in range(1, 10 ** 6)), {}, []
    for p in pending:
        name = next(n for n in names if n not in used)
        var = E.Var(name, p.var.shape, False, diff=1)
        mapping[p.var] = var
        definitions.append((name, p.expansion))
    return definitions, raw_substitute(e, mapping)


def step_text(e: E.Expr, taken=(), result: bool = False, pending=(), defs=()) -> str:
    """A step in the input language (parses back): 't1 = ...; t2 = ...; body'.  A differential
    the step has not worked out yet is a name defined as its value: 'dt1 = ...; sum(dt1 ./ u)'."""
    first = [f"{var.name} = {StepTextPrinter().doprint(value)}" for var, value in defs]
    if pending:
        named, e = _named_pending(e, taken, pending)
        first += [f"{name} = {StepTextPrinter().doprint(x)}" for name, x in named]
        taken = set(taken) | {name for name, _ in named}
    definitions, body = step_parts(e, taken, result)
    return "; ".join(first + [f"{name} = {d}" for name, d in definitions] + [body])


def step_latex(e: E.Expr, taken=(), result: bool = False, pending=(), defs=()) -> str:
    """A step in LaTeX, its repeated parts named (``... \\quad \\text{where } t_{1} = ...``)."""
    from .latex import latex_with_definitions, shared_latex
    if result:
        return shared_latex(e, taken)
    if pending or defs:
        printer = step_latex_printer([e] + [v for _, v in defs], pending)
        definitions, body = _literal_shared_form(e, taken)
        definitions = list(defs) + definitions
        text = printer.doprint(body)
        if definitions:
            text += r" \quad \text{where } " + r",\ ".join(
                f"{printer.doprint(var)} = {printer.doprint(d)}" for var, d in definitions)
        return text
    definitions, body = _literal_shared_form(e, taken)
    return latex_with_definitions(e, definitions, body)


def step_latex_printer(exprs, pending=(), **options):
    """A LaTeX printer for steps: every name in ``exprs`` typeset distinctly, pending
    differentials as \\mathrm{d}(u)."""
    from .latex import LatexPrinter, _names_in

    class StepLatexPrinter(ShowsPending, LatexPrinter):
        d_symbol = r"\mathrm{d}"
        d_space = r"\,"

        def _print_Hadamard(self, e):
            # a literal d log(u) = du ./ u: the division written as the text writes it
            from .breaking import FACTOR as BETWEEN
            from .latex import FACTOR as LEVEL
            known = self._siblings_determine(e.args)
            numer = [f for f in e.args if not _is_reciprocal(f)]
            denom = [E.power(f.base, E.Num(-f.exponent.value)) for f in e.args if _is_reciprocal(f)]
            if not denom or not numer:
                return super()._print_Hadamard(e)
            text = (BETWEEN + r" \odot ").join(self.paren(f, LEVEL, known) for f in numer)
            for d in denom:
                text += BETWEEN + r" \oslash " + self.paren(d, LEVEL, known)
            return text

    names = set()
    for x in list(exprs) + [p.sub for p in pending]:
        names |= _names_in(x)
    printer = StepLatexPrinter(names, **options)
    printer.pending = pending_map(pending)
    return printer


def lhs_of(step, names=None) -> str:
    """What a stage's chain is about: df, ∇f, J, H; with several variables ∇_x f, J_x, H[x, W]."""
    names = names or LHS
    if not step.wrt:
        return names[step.stage]
    sub = ", ".join(step.wrt)
    return {"gradient": f"\u2207_{sub} f", "jacobian": f"J_{sub}", "hessian": f"H[{sub}]"}.get(
        step.stage, names[step.stage])


def latex_lhs(step, name=None) -> str:
    """``lhs_of`` in LaTeX; ``name`` typesets a variable's name."""
    name = name or (lambda n: n)
    if not step.wrt:
        return LATEX_LHS[step.stage]
    sub = ", ".join(name(n) for n in step.wrt)
    return {"gradient": rf"\nabla_{{{sub}}} f", "jacobian": rf"J_{{{sub}}}", "hessian": rf"H_{{{sub}}}"}.get(
        step.stage, LATEX_LHS[step.stage])


def starts_chain(steps, i) -> bool:
    """Step i begins a new chain of equalities (a new stage, or another variable's result)."""
    return i == 0 or (steps[i].stage, steps[i].result_key) != (steps[i - 1].stage, steps[i - 1].result_key)


def rows(steps, lhs_names=None) -> list:
    """[(lhs, rhs, rules)]: rules joined with '; '."""
    out = []
    for i, s in enumerate(steps):
        lhs = lhs_of(s, lhs_names) if starts_chain(steps, i) else ""
        definitions, body = step_parts(s.expr, s.taken, s.result, s.pending, s.defs)
        where = "  where " + ", ".join(f"{n} = {d}" for n, d in definitions) if definitions else ""
        out.append((lhs, body + where, "; ".join(s.rules)))
    return out


def StepUnicodePrinter(names, pending=()):
    """The pretty view's printer for a step: Unicode math, pending differentials as d(u), and a
    negation inside a product in parentheses (literal trees keep one there)."""
    from .pretty import UnicodePrinter

    class _StepUnicodePrinter(ShowsPending, UnicodePrinter):
        def paren(self, e, level, known=False):
            text = self.print(e, known)
            if self.precedence(e) < level or (level == MUL + 1 and self.precedence(e) == NEG):
                return self.wrap(text)
            return text

    printer = _StepUnicodePrinter(names)
    printer.pending = pending_map(pending)
    return printer


def rule_in_notation(rule, printer) -> str:
    """A rule of the calculus in the notation of ``printer`` (d log(u) = du ⊘ u in the pretty
    view); other rules as they are named."""
    from . import breaking
    formula = getattr(rule, "formula", None)
    if not formula:
        return str(rule)
    words, shown, written = formula
    if isinstance(shown, str):   # a rule that holds a result: words and its expression
        lhs = shown
    else:                         # a rule of the calculus on a generic argument: d log(u) = ...
        lhs = breaking.strip(printer.doprint(shown))
        lhs = f"d {lhs}" if printer._is_call(shown) else f"d({lhs})"
    return f"{words}{lhs} = {breaking.strip(printer.doprint(written))}"


def pretty_rows(steps, step_printer, printer) -> list:
    """The steps as rows of the pretty view (``pretty.Row``): ``lhs = step`` with its rules as the
    note, then a 'where' row for each name a large step defines.  ``step_printer(pending)`` makes
    the printer of one step; ``printer`` prints the results (the last step of each stage)."""
    from .pretty import Row

    out = []
    for i, s in enumerate(steps):
        lhs = lhs_of(s) if starts_chain(steps, i) else ""
        p = printer if s.result else step_printer(s.pending)
        rules = "; ".join(rule_in_notation(r, step_printer(())) for r in s.rules)
        definitions, body = step_forms(s.expr, s.taken, s.result)
        definitions = list(s.defs) + list(definitions)
        out.append(Row(lhs, text=p.doprint(body)))
        for var, definition in definitions:
            # under the step's expression, so that the '=' column stays the steps' own
            out.append(Row("", text=f"where {printer.print(var)} = " + p.doprint(definition), relation=" "))
        out[-1].note = rules   # the rules after the step and what it defines
    return out


def plain(steps, width: int = WIDTH) -> str:
    """One step a line, '=' aligned; the rules in a column after the expressions when they fit
    ``width``, else on the lines below the step, indented under its expression.  An expression
    wider than ``width`` is broken before its outermost operators, continued under itself."""
    table = rows(steps)
    left = max(len(lhs) for lhs, _, _ in table)
    lines = [f"{lhs.rjust(left)} = {rhs}" for lhs, rhs, _ in table]
    fitting = [len(line) for line, (_, _, rules) in zip(lines, table) if len(line) + 2 + len(rules) <= width]
    column = max(fitting, default=0) + 2
    indent = " " * (left + 5)
    out = []
    for line, (_, _, rules) in zip(lines, table):
        if len(line) + 2 <= column and column + len(rules) <= width:
            out.append(line + " " * (column - len(line)) + rules)
        elif len(line) + 2 + len(rules) <= width:
            out.append(line + "  " + rules)
        else:
            out += wrap_expression(line, width, " " * (left + 3))
            out += _pack_rules(rules, width, indent)
    return "\n".join(out) + "\n"


def _pack_rules(rules: str, width: int, indent: str) -> list:
    """'(rule; rule; ...)' on lines under a step: whole rules a line where they fit, a long one
    wrapped at its spaces."""
    items = rules.split("; ")
    text = [("(" if i == 0 else "") + r + (")" if i == len(items) - 1 else ";") for i, r in enumerate(items)]
    lines: list = []
    for item in text:
        if lines and len(lines[-1]) + 1 + len(item) <= width:
            lines[-1] += " " + item
        elif len(indent) + len(item) <= width:
            lines.append(indent + item)
        else:
            lines += textwrap.wrap(item, width, initial_indent=indent, subsequent_indent=indent + " ",
                                   break_on_hyphens=False)
    return lines


_BREAKS = (" + ", " - ", " * ", " .* ", " ./ ", " / ", ", ", "; ")


def wrap_expression(line: str, width: int, indent: str) -> list:
    """``line`` cut into pieces of at most ``width`` characters where it can be: before an
    operator (after a comma) at the shallowest parenthesis depth within reach."""
    out = []
    while len(line) > width:
        depth, best = 0, None
        for i, ch in enumerate(line[:width]):
            if ch in "([":
                depth += 1
            elif ch in ")]":
                depth -= 1
            elif ch == " " and i > len(indent) + 8 and any(line.startswith(b, i) for b in _BREAKS):
                cut = i + 2 if line.startswith(", ", i - 1) or line.startswith("; ", i - 1) else i
                if best is None or depth <= best[0]:
                    best = (depth, cut)
        if best is None:
            break
        out.append(line[:best[1]].rstrip())
        line = indent + line[best[1]:].lstrip()
    return out + [line]


# --- LaTeX ------------------------------------------------------------------------------------

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "\u2207": r"$\nabla$"}


def latex_text(rule: str) -> str:
    """A rule's words inside \\text{...}: LaTeX specials escaped, so that pdflatex takes any name."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) if ord(ch) < 128 or ch in _LATEX_SPECIAL
                   else f"[U+{ord(ch):04X}]" for ch in rule)


# rules whose names are formulas, typeset (the others are set as words)
T, TR, INV = r"^{\top}", r"\operatorname{tr}", r"^{-1}"
LATEX_RULES = {
    "transpose of a product: (A * B)' = B' * A'": rf"\text{{transpose of a product: }} (AB){T} = B{T} A{T}",
    "(A')' = A": rf"(A{T}){T} = A",
    "(A .* B)' = A' .* B'": rf"(A \odot B){T} = A{T} \odot B{T}",
    "inv(A)' = inv(A')": rf"(A{INV}){T} = (A{T}){INV}",
    "(c * A)' = c * A'": rf"(cA){T} = cA{T}",
    "kron(A, B)' = kron(A', B')": rf"(A \otimes B){T} = A{T} \otimes B{T}",
    "f(A)' = f(A') elementwise": rf"f(A){T} = f(A{T}) \text{{ elementwise}}",
    "A * I = A": r"AI = A",
    "powers of the same scalar: s^a * s^b = s^(a + b)": r"\text{powers of the same scalar: } s^{a} s^{b} = s^{a + b}",
    "tr(A') = tr(A)": rf"{TR}(A{T}) = {TR}(A)",
    "u .* u = u.^2": r"u \odot u = u^{\circ 2}",
    "powers: u.^a .* u.^b = u.^(a + b)": r"u^{\circ a} \odot u^{\circ b} = u^{\circ (a + b)}",
    "det(A') = det(A)": rf"\det(A{T}) = \det(A)",
    "logdet(A') = logdet(A)": rf"\log\det(A{T}) = \log\det(A)",
    "exp(u) ./ (1 + exp(u)) = sigmoid(u)": r"\exp(u) \oslash (1 + \exp(u)) = \sigma(u)",
    "sum(u .* v) = u' * v": rf"\operatorname{{sum}}(u \odot v) = u{T} v",
    "tr(A) + tr(B) = tr(A + B)": rf"{TR}(A) + {TR}(B) = {TR}(A + B)",
    "constant factors: d(A * U) = A * dU": r"\text{constant factors: } \mathrm{d}(AU) = A \, \mathrm{d}U",
    "tr(W' * F') = tr(W * F)": rf"{TR}(W{T} F{T}) = {TR}(W F)",
    "tr(W' * (s * M)) = s * tr(M' * W)": rf"{TR}(W{T} (s M)) = s \, {TR}(M{T} W)",
    "a' * dX * b = tr(b * a' * dX)": rf"a{T} \mathrm{{d}}X \, b = {TR}(b a{T} \mathrm{{d}}X)",
    "cyclic property of the trace: tr(A * dX * B) = tr(B * A * dX)":
        rf"\text{{cyclic property of the trace: }} {TR}(A \mathrm{{d}}X \, B) = {TR}(B A \mathrm{{d}}X)",
    "u .* dx = diag(u) * dx": r"u \odot \mathrm{d}x = \operatorname{diag}(u) \mathrm{d}x",
    "tr(W' * (U .* dX)) = tr((U .* W)' * dX)": rf"{TR}(W{T} (U \odot \mathrm{{d}}X)) = {TR}((U \odot W){T} \mathrm{{d}}X)",
    "sum(F) = tr(ones' * F)": rf"\operatorname{{sum}}(F) = {TR}(\mathbf{{1}}{T} F)",
    "vec(dX') = commutation * vec(dX)": rf"\operatorname{{vec}}(\mathrm{{d}}X{T}) = K \operatorname{{vec}}(\mathrm{{d}}X)",
    "vec(s * M) = vec(M) * s": r"\operatorname{vec}(s M) = \operatorname{vec}(M) \, s",
    "vec(c * F) = c * vec(F)": r"\operatorname{vec}(c F) = c \operatorname{vec}(F)",
    "vec(A * dX * B) = kron(B', A) * vec(dX)":
        rf"\operatorname{{vec}}(A \mathrm{{d}}X \, B) = (B{T} \otimes A) \operatorname{{vec}}(\mathrm{{d}}X)",
    "vec(U .* dX) = diag(vec(U)) * vec(dX)":
        r"\operatorname{vec}(U \odot \mathrm{d}X) = \operatorname{diag}(\operatorname{vec}(U)) \operatorname{vec}(\mathrm{d}X)",
    "a scalar s = tr(G' * dX) has vec(s) = vec(G)' * vec(dX)":
        rf"\text{{a scalar }} s = {TR}(G{T} \mathrm{{d}}X) \text{{ has }} \operatorname{{vec}}(s) = "
        rf"\operatorname{{vec}}(G){T} \operatorname{{vec}}(\mathrm{{d}}X)",
    "J = vec(\u2207f)' for a scalar f": rf"J = \operatorname{{vec}}(\nabla f){T} \text{{ for a scalar }} f",
}


def latex_rule(rule: str) -> str:
    """A rule in math mode: its formula typeset where known, else its words in \\text{}."""
    formula = getattr(rule, "latex", None) or LATEX_RULES.get(str(rule))
    return formula if formula else r"\text{" + latex_text(rule) + "}"


# the rules go beside a step (\\qquad (rule)) when they take at most this share of the line and
# the step fits on one line with them; else they go on rows of their own below it
TAG_SHARE = 0.5


def rule_marked(rule, printer) -> str:
    """A rule in math mode, marked for breaking where it holds an expression (``Rule.parts``)."""
    parts = getattr(rule, "parts", None)
    if parts:
        text = "".join(p if isinstance(p, str) else printer.marked(p) for p in parts)
    else:
        text = latex_rule(rule)
    # the rules' own transposes as --latex-transpose writes them
    return text.replace(r"^{\top}", "^{" + printer.transpose + "}").replace(r"\top}", printer.transpose + "}")


def latex_steps_printer(steps, options=None, bases=None, delimiters: str = "left"):
    """One LaTeX printer for a whole derivation's steps: every name in sight typeset distinctly,
    differentials as d of their variable (``bases``), ``--latex-transpose`` followed."""
    from .latex import LatexOptions
    options = options or LatexOptions()
    exprs = [s.expr for s in steps] + [p.expansion for s in steps for p in s.pending]
    exprs += [x for s in steps for r in s.rules for x in (getattr(r, "parts", None) or ()) if isinstance(x, E.Expr)]
    exprs += [v for s in steps for v, _ in step_forms(s.expr, s.taken, s.result)[0]]
    exprs += [x for s in steps for d in s.defs for x in d]
    pending = [p for s in steps for p in s.pending]
    # in running text a fraction cannot break either: a long numerator goes after \frac{1}{2}
    return step_latex_printer(exprs, pending, bases=bases, transpose=options.transpose, delimiters=delimiters,
                              max_fraction=options.width / (3 if delimiters == "left" else 8))


def latex_rows(steps, printer, width: float) -> list:
    """The steps as rows of ``latex.align_block``: ``lhs &= step`` with its rules as the row's tag
    when they fit beside it, else one rule a row below it; a step's 'where' definitions after it."""
    from . import breaking
    from .latex import FILL, Row, typeset_width

    labels = [latex_lhs(s, printer.name) if starts_chain(steps, i) else "" for i, s in enumerate(steps)]
    label_width = max((typeset_width(x) for x in labels), default=0.0)
    room = FILL * width - label_width - typeset_width(" = ")
    rows = []
    for s, label in zip(steps, labels):
        printer.pending = pending_map(s.pending)
        definitions, body = step_forms(s.expr, s.taken, s.result)
        definitions = list(s.defs) + list(definitions)
        marked = printer.marked(body)
        where = [Row((r"\text{where } " if i == 0 else "") + printer.print(var), printer.marked(d), where=True)
                 for i, (var, d) in enumerate(definitions)]
        printer.pending = {}
        rules = [rule_marked(r, printer) for r in s.rules]
        tag = r"\text{(}" + r"\text{; }".join(rules) + r"\text{)}"
        tag_width = typeset_width(r"\qquad " + breaking.strip(tag))
        beside = (not definitions and tag_width <= TAG_SHARE * FILL * width
                  and typeset_width(breaking.strip(marked)) + tag_width <= room)
        rows.append(Row(label, marked, tag=tag if beside else ""))
        rows += where
        if not beside:
            rows += [Row("", r"\qquad " + line, relation="") for line in _rule_lines(rules, room - 20.0)]
    return rows


def _rule_lines(rules: list, room: float) -> list:
    """Rules in parentheses on rows of their own: as many a row as fit ``room`` points, a long
    one alone (broken by ``align_block`` where it holds an expression)."""
    from . import breaking
    from .latex import typeset_width

    pieces = []
    for i, r in enumerate(rules):
        opening = r"\text{(}" if i == 0 else ""
        closing = r"\text{)}" if i == len(rules) - 1 else r"\text{;}"
        pieces += _fitting_rule(opening + r + closing, room)
    lines: list = []
    for piece in pieces:
        if lines and typeset_width(breaking.strip(lines[-1] + r" \ " + piece)) <= room \
                and breaking.SUM not in lines[-1] + piece and breaking.FACTOR not in lines[-1] + piece:
            lines[-1] += r" \ " + piece
        else:
            lines.append(piece)
    return lines


def _fitting_rule(rule: str, room: float) -> list:
    """A rule as pieces no wider than ``room`` points where it can be cut: a rule in words
    before a formula (\\text{words: } formula) is cut after its words; a marked formula is left
    to the line breaking."""
    from . import breaking
    from .latex import typeset_width

    if typeset_width(breaking.strip(rule)) <= room or breaking.SUM in rule or breaking.FACTOR in rule:
        return [rule]
    words = _WORDS_ONLY.match(rule)
    if words:   # a rule in words: cut between words
        opening, text, closing = words.groups()
        lines = [""]
        for word in text.split(" "):
            trial = (lines[-1] + " " + word).strip()
            if lines[-1] and typeset_width(r"\text{" + trial + "}") > room:
                lines.append(word)
            else:
                lines[-1] = trial
        pieces = [r"\text{" + line + "}" for line in lines]
        pieces[0] = (opening or "") + pieces[0]
        pieces[-1] += closing or ""
        return pieces
    head, sep, tail = rule.partition(": }")
    if sep and tail.strip():
        return [head + ":}"] + _fitting_rule(tail.strip(), room)
    # a formula with words between its parts (s = ... \text{ has } ...): cut before the words
    pieces = [p for p in re.split(r"(?= \\text\{ )", rule) if p.strip()]
    lines: list = []
    for piece in pieces:
        if lines and typeset_width(breaking.strip(lines[-1] + piece)) <= room:
            lines[-1] += piece
        else:
            lines.append(piece.strip())
    return lines


_WORDS_ONLY = re.compile(r"^(\\text\{\(\})?\\text\{([^{}\\$]*)\}(\\text\{[;)]\})?$")


def _chains(steps) -> list:
    """The steps grouped by chain of equalities (stage, and variable with several)."""
    groups: list = []
    for i, s in enumerate(steps):
        if starts_chain(steps, i):
            groups.append([])
        groups[-1].append(s)
    return groups


def latex(steps, options=None, bases=None) -> str:
    """``--steps --format latex`` in the style of ``options`` (``latex.LatexOptions``): ``align``
    one align* with '=' aligned and the rules as \\text{(...)} after each step (on rows of their own
    when long); ``equation`` an equation* (a split) per chain; ``inline`` a $...$ line per step;
    ``document`` a complete file.  Long steps break as results do (``latex.align_block``), at
    ``options.width``."""
    from .latex import ARTICLE_TEXT_WIDTH, PREAMBLE, LatexOptions, align_block
    options = options or LatexOptions()
    if options.style == "inline":
        return latex_inline(steps, options, bases)
    printer = latex_steps_printer(steps, options, bases)
    if options.style == "equation":
        blocks = [align_block(latex_rows(chain, printer, options.width), options.width, environment="split")
                  for chain in _chains(steps)]
        return "\n".join("\\begin{equation*}\n" + b + "\n\\end{equation*}" for b in blocks) + "\n"
    block = align_block(latex_rows(steps, printer, options.width), options.width) + "\n"
    if options.style != "document":
        return block
    width = "" if options.width == ARTICLE_TEXT_WIDTH else f"\\setlength{{\\textwidth}}{{{options.width:.1f}pt}}\n"
    return (PREAMBLE + width + "\\begin{document}\n\\sloppy\n\n\\noindent The derivation step by step:\n"
            + block + "\\end{document}\n")


def latex_inline(steps, options, bases=None) -> str:
    """A ``$lhs = step$ ($rule$; ...)`` line per step, for running text: long formulas may break
    between factors as well as at their sums (\\allowbreak)."""
    from . import breaking
    from .latex import allow_breaks, typeset_width
    printer = latex_steps_printer(steps, options, bases, delimiters="plain")
    out = []
    for i, s in enumerate(steps):
        lhs = latex_lhs(s, printer.name) + " " if starts_chain(steps, i) else ""
        printer.pending = pending_map(s.pending)
        definitions, body = step_forms(s.expr, s.taken, s.result)
        definitions = list(s.defs) + list(definitions)
        parts = [(lhs + "= ", printer.marked(body))]
        parts += [(printer.print(var) + " = ", printer.marked(d)) for var, d in definitions]
        printer.pending = {}
        texts = []
        for lead, marked in parts:
            text = breaking.strip(marked)
            if typeset_width(lead + text) > options.width / 2:
                text = _stretchable(allow_breaks(marked))
            texts.append(f"${lead}{text}$")
        line = texts[0] + (", where " + ", ".join(texts[1:]) if len(texts) > 1 else "")
        out.append(f"{line} (" + "; ".join(_inline_rule(r, printer) for r in s.rules) + ")")
    return "\n".join(out) + "\n"


def _inline_rule(rule, printer) -> str:
    """A rule in running text: words as words (they break at spaces), a formula in $...$."""
    from ..steps import Rule
    from . import breaking
    from .latex import allow_breaks
    if not (getattr(rule, "parts", None) or getattr(rule, "latex", None) or str(rule) in LATEX_RULES):
        return latex_text(rule)
    # the words of a formula (\text{chain rule: } ..., \text{ has }) leave math mode, where they can break
    out = []
    parts = getattr(rule, "parts", None)
    if parts:   # in a sentence the rule names its formula; the expression it holds is a display's
        head = "".join(p for p in parts[:next(i for i, p in enumerate(parts) if not isinstance(p, str))])
        rule = Rule(str(rule), re.sub(r"\s*(,\\ G)?\s*=\s*$", "", breaking.strip(head)))
    formula = _stretchable(_between_factors(allow_breaks(rule_marked(rule, printer))))
    for i, piece in enumerate(_TEXT_IN_MATH.split(formula)):
        if i % 2:
            out.append(piece)
        elif piece.strip():
            out.append("$" + piece.strip() + "$")
    return " ".join(p.strip() for p in out if p.strip())


def _stretchable(formula: str) -> str:
    """Where a formula in running text may break between factors it may also stretch a little:
    a paragraph of long formulas has too little stretchable space otherwise, and TeX would set a
    line too wide rather than one too loose."""
    return re.sub(r"\\allowbreak( \\,)?", lambda m: r"\allowbreak\mskip 3mu plus 6mu" if m.group(1)
                  else r"\allowbreak\mskip 0mu plus 3mu", formula)


def _between_factors(formula: str) -> str:
    """A typeset rule, as written (no break marks), may break before each of its factors at the top
    level too (\\allowbreak before a \\operatorname or a letter after a space)."""
    out, depth = [], 0
    for i, ch in enumerate(formula):
        escaped = formula[i - 1:i] == "\\"
        if ch in "{(" and not escaped:
            depth += 1
        elif ch in "})" and not escaped:
            depth -= 1
        if ch == " " and depth == 0 and "".join(out).strip() and not "".join(out).endswith(("\\nabla", "}", "allowbreak")) \
                and re.match(r" (\\operatorname|[A-Za-z]\b|\\mathrm)", formula[i:]):
            out.append(r"\allowbreak ")
            continue
        out.append(ch)
    return "".join(out)


_TEXT_IN_MATH = re.compile(r"\\text\{([^{}]*)\}")


def latex_document(steps, options=None, bases=None) -> str:
    """A complete document of the steps (compiles with pdflatex and amsmath)."""
    from .latex import LatexOptions
    options = options or LatexOptions()
    return latex(steps, LatexOptions("document", options.width, options.transpose), bases)


# --- JSON -------------------------------------------------------------------------------------

def as_json(steps) -> list:
    """The ``steps`` field of ``--format json``: {stage, text, latex, rules} per step, and with
    several variables ``wrt`` (["W"], ["x", "W"] for H[x, W]) on the steps of each result."""
    out = []
    for s in steps:
        entry = {"stage": s.stage, "text": s.text(), "latex": s.latex(), "rules": list(s.rules)}
        if s.wrt:   # several variables: whose gradient, Jacobian or Hessian block this is
            entry["wrt"] = list(s.wrt)
        out.append(entry)
    return out
