"""Derivation steps (``matcalc_cli.steps``) as text, LaTeX, JSON, and rows for any renderer.

``rows(steps)`` is what every format shows: (lhs, rhs, rules) per line, the lhs written only on
the first line of a stage (``df``, ``∇f``, ``J``, ``H``) and empty on the lines that continue it.
"""

from __future__ import annotations

import textwrap

from .. import expr as E
from . import share
from .printer import MUL, NEG
from .text import TextPrinter

# what each stage's chain of equalities is about
LHS = {"differential": "df", "gradient": "\u2207f", "jacobian": "J", "hessian": "H"}
LATEX_LHS = {"differential": r"df", "gradient": r"\nabla f", "jacobian": r"J", "hessian": r"H"}

WIDTH = 100   # plain text: rules go in a column when the lines fit this width


# --- one step's expression ------------------------------------------------------------------------
# Steps hold literal trees (a rule's output before simplification): a negation may sit inside a
# product, where the smart constructors never leave one, so such factors get parentheses.

class StepTextPrinter(TextPrinter):
    def paren(self, e, level, known=False):
        text = self.print(e, known)
        if self.precedence(e) < level or (level == MUL + 1 and self.precedence(e) == NEG):
            return self.wrap(text)
        return text


def _literal_shared_form(e: E.Expr, taken) -> tuple:
    """``share.shared_form`` for literal trees: the repeated parts named, nothing rebuilt."""
    from ..steps import raw_substitute
    if E.tree_size(e) < share.MIN_TREE_SIZE:
        return [], e
    chosen = share._choose(e)
    if not chosen or share._written_size(e, chosen) > (1 - share.MIN_SAVING) * E.tree_size(e):
        return [], e
    chosen_set = set(chosen)
    inner_first = [n for n in share._order([e] + chosen)[::-1] if n in chosen_set]
    names, mapping, definitions = iter(share._fresh_names(taken)), {}, []
    for node in inner_first:
        body = raw_substitute(node, {}) if not mapping else _below_root(node, mapping)
        var = E.Var(next(names), node.shape, share._is_symmetric(node))
        mapping[node] = var
        definitions.append((var, body))
    return definitions, _below_root(e, mapping)


def _below_root(e: E.Expr, mapping: dict) -> E.Expr:
    from ..steps import raw_rebuild, raw_substitute
    if not e.children:
        return e
    return raw_rebuild(e, [raw_substitute(c, mapping) for c in e.children])


def step_text(e: E.Expr, taken=(), result: bool = False) -> str:
    """A step in the input language (parses back), its repeated parts named as results are."""
    if result:
        from .text import to_text
        return share.shared_text(e, taken, to_text)
    definitions, body = _literal_shared_form(e, taken)
    printer = StepTextPrinter()
    parts = [f"{var.name} = {printer.doprint(d)}" for var, d in definitions]
    return "; ".join(parts + [StepTextPrinter().doprint(body)])


def step_latex(e: E.Expr, taken=(), result: bool = False) -> str:
    """A step in LaTeX, its repeated parts named (``... \\quad \\text{where } t_{1} = ...``)."""
    from .latex import LatexPrinter, _names_in, shared_latex
    if result:
        return shared_latex(e, taken)
    definitions, body = _literal_shared_form(e, taken)
    printer = LatexPrinter(_names_in(e))
    text = printer.doprint(body)
    if definitions:
        text += r" \quad \text{where } " + r",\ ".join(
            f"{printer.doprint(var)} = {printer.doprint(d)}" for var, d in definitions)
    return text


def rows(steps, lhs_names=None) -> list:
    """[(lhs, rhs, rules)]: rules joined with '; '."""
    names = lhs_names or LHS
    out, stage = [], None
    for s in steps:
        lhs = names[s.stage] if s.stage != stage else ""
        stage = s.stage
        out.append((lhs, s.text(), "; ".join(s.rules)))
    return out


def plain(steps, width: int = WIDTH) -> str:
    """One step a line, '=' aligned; the rules in a column after the expressions when they fit
    ``width``, else on the lines below the step, indented under its expression."""
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
            out.append(line)
            out += textwrap.wrap(rules, width, initial_indent=indent + "(", subsequent_indent=indent,
                                 break_on_hyphens=False)
            out[-1] += ")"
    return "\n".join(out) + "\n"


# --- LaTeX ------------------------------------------------------------------------------------

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "\u2207": r"$\nabla$"}


def latex_text(rule: str) -> str:
    """A rule's words inside \\text{...}: LaTeX specials escaped, so that pdflatex takes any name."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) if ord(ch) < 128 or ch in _LATEX_SPECIAL
                   else f"[U+{ord(ch):04X}]" for ch in rule)


def latex(steps) -> str:
    """An align* block: ``df &= ... && \\text{(rule)}`` per line."""
    lines, stage = [], None
    for s in steps:
        lhs = LATEX_LHS[s.stage] if s.stage != stage else ""
        stage = s.stage
        rule = r"\text{(" + latex_text("; ".join(s.rules)) + ")}"
        lines.append(f"{lhs} &= {s.latex()} && {rule}")
    return "\\begin{align*}\n" + " \\\\\n".join(lines) + "\n\\end{align*}\n"


def latex_document(steps) -> str:
    """A complete document around ``latex`` (compiles with pdflatex and amsmath)."""
    return ("\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n"
            "\\usepackage[margin=1.5cm,landscape]{geometry}\n\\begin{document}\n"
            + latex(steps) + "\\end{document}\n")


# --- JSON -------------------------------------------------------------------------------------

def as_json(steps) -> list:
    """The ``steps`` field of ``--format json``: {stage, text, latex, rules} per step."""
    return [{"stage": s.stage, "text": s.text(), "latex": s.latex(), "rules": list(s.rules)} for s in steps]
