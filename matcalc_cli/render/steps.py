"""Derivation steps (``matcalc_cli.steps``) as text, LaTeX, JSON, and rows for any renderer.

``rows(steps)`` is what every format shows: (lhs, rhs, rules) per line, the lhs written only on
the first line of a stage (``df``, ``∇f``, ``J``, ``H``) and empty on the lines that continue it.
"""

from __future__ import annotations

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


def step_parts(e: E.Expr, taken=(), result: bool = False, pending=()) -> tuple:
    """([(name, definition text)], body text) of a step as a person reads it: its repeated parts
    named as results are (a result exactly as ``Result.text`` prints it), pending differentials
    written d(u)."""
    if result:
        from .text import to_text
        definitions, body = share.shared_form(e, taken)
        return [(v.name, to_text(d)) for v, d in definitions], to_text(body)
    definitions, body = _literal_shared_form(e, taken)
    printer = lambda: StepTextPrinter(pending_map(pending))
    return [(v.name, printer().doprint(d)) for v, d in definitions], printer().doprint(body)


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


def step_text(e: E.Expr, taken=(), result: bool = False, pending=()) -> str:
    """A step in the input language (parses back): 't1 = ...; t2 = ...; body'.  A differential
    the step has not worked out yet is a name defined as its value: 'dt1 = ...; sum(dt1 ./ u)'."""
    first = []
    if pending:
        named, e = _named_pending(e, taken, pending)
        first = [f"{name} = {StepTextPrinter().doprint(x)}" for name, x in named]
        taken = set(taken) | {name for name, _ in named}
    definitions, body = step_parts(e, taken, result)
    return "; ".join(first + [f"{name} = {d}" for name, d in definitions] + [body])


def step_latex(e: E.Expr, taken=(), result: bool = False, pending=()) -> str:
    """A step in LaTeX, its repeated parts named (``... \\quad \\text{where } t_{1} = ...``)."""
    from .latex import latex_with_definitions, shared_latex
    if result:
        return shared_latex(e, taken)
    if pending:
        printer = step_latex_printer([e], pending)
        definitions, body = _literal_shared_form(e, taken)
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
        definitions, body = step_parts(s.expr, s.taken, s.result, s.pending)
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


def pretty_rows(steps, step_printer, printer) -> list:
    """The steps as rows of the pretty view (``pretty.Row``): ``lhs = step`` with its rules as the
    note, then a 'where' row for each name a large step defines.  ``step_printer(pending)`` makes
    the printer of one step; ``printer`` prints the results (the last step of each stage)."""
    from .pretty import Row

    out = []
    for i, s in enumerate(steps):
        lhs = lhs_of(s) if starts_chain(steps, i) else ""
        p = printer if s.result else step_printer(s.pending)
        definitions, body = step_forms(s.expr, s.taken, s.result)
        out.append(Row(lhs, text=p.doprint(body), note="; ".join(s.rules)))
        for var, definition in definitions:
            out.append(Row("where " + printer.print(var), text=p.doprint(definition)))
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
            out += textwrap.wrap(rules, width, initial_indent=indent + "(", subsequent_indent=indent,
                                 break_on_hyphens=False)
            out[-1] += ")"
    return "\n".join(out) + "\n"


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


def latex(steps) -> str:
    """An align* block, '=' aligned: ``\\mathrm{d}f &= ... \\qquad (rule; rule)`` per step; a long
    step has its rules on the rows below it, one a row, so that no rule pushes the others aside."""
    lines, stage = [], None
    for s in steps:
        lhs = LATEX_LHS[s.stage] if s.stage != stage else ""
        stage = s.stage
        typeset = [latex_rule(r) for r in s.rules]
        short = len(s.rules) <= 2 and len(s.text()) + sum(len(r) for r in s.rules) <= LATEX_LINE
        if short:
            lines.append(rf"{lhs} &= {s.latex()} \qquad \text{{(}}" + r"\text{; }".join(typeset) + r"\text{)}")
            continue
        lines.append(rf"{lhs} &= {s.latex()}")
        for i, r in enumerate(typeset):
            opening = r"\text{(}" if i == 0 else ""
            closing = r"\text{)}" if i == len(typeset) - 1 else r"\text{;}"
            lines.append(rf" &\qquad {opening}{r}{closing}")
    return "\\begin{align*}\n" + " \\\\\n".join(lines) + "\n\\end{align*}\n"


def latex_document(steps) -> str:
    """A complete document around ``latex`` (compiles with pdflatex and amsmath)."""
    return ("\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n"
            "\\usepackage[margin=1.5cm,landscape]{geometry}\n\\allowdisplaybreaks\n\\begin{document}\n"
            + latex(steps) + "\\end{document}\n")


# --- JSON -------------------------------------------------------------------------------------

def as_json(steps) -> list:
    """The ``steps`` field of ``--format json``: {stage, text, latex, rules} per step."""
    return [{"stage": s.stage, "text": s.text(), "latex": s.latex(), "rules": list(s.rules)} for s in steps]
