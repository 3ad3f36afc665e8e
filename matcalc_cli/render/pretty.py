"""The terminal view (``--format pretty``): results in Unicode math, labelled, coloured with Rich,
broken at the terminal width.

Built to be reused: ``UnicodePrinter`` prints any expression in Unicode math with break marks;
``view`` lays out a header, labelled rows and dim notes at a width, for any list of rows (a
derivation's results, the steps of a derivation, several variables, the entries of a batch);
``make_console`` decides colour the same way everywhere; ``print_error`` renders an error.

Rich is imported here only, and this module only on the pretty path: the plain one-liner stays
light.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .. import expr as E
from ..errors import MatcalcError
from . import breaking
from .breaking import CLOSE, FACTOR, OPEN, SUM
from .printer import ATOM, MUL, POSTFIX
from .text import TextPrinter, precedence
from ..terminal import terminal_width  # noqa: F401 - the view's width, also for its callers

GREEK = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε", "zeta": "ζ",
    "eta": "η", "theta": "θ", "vartheta": "ϑ", "iota": "ι", "kappa": "κ", "lambda": "λ", "mu": "μ",
    "nu": "ν", "xi": "ξ", "pi": "π", "varpi": "ϖ", "rho": "ρ", "varrho": "ϱ", "sigma": "σ",
    "varsigma": "ς", "tau": "τ", "upsilon": "υ", "phi": "φ", "varphi": "ϕ", "chi": "χ", "psi": "ψ",
    "omega": "ω", "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Xi": "Ξ", "Pi": "Π",
    "Sigma": "Σ", "Upsilon": "Υ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω",
}
SUPERSCRIPT = str.maketrans("0123456789-+()n", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺⁽⁾ⁿ")
SUBSCRIPT = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
# the letters Unicode has subscripts for, for sizes such as Iₙ
SUBSCRIPT_LETTERS = str.maketrans("aehijklmnoprstuvx", "ₐₑₕᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓ")
_SUBSCRIPTABLE = re.compile(r"^([0-9]+|[aehijklmnoprstuvx])$")
_SUPERSCRIPTABLE = re.compile(r"^-?[0-9]+$")
_NAME_WITH_INDEX = re.compile(r"^([A-Za-z]+?)_?([0-9]+)$")

TRANSPOSE = "ᵀ"


def unicode_name(name: str) -> str:
    """How a name reads in Unicode math: alpha -> α, x1 and x_1 -> x₁, theta_0 -> θ₀; others as
    typed.  ``display_names`` keeps distinct names distinct."""
    if name in GREEK:
        return GREEK[name]
    m = _NAME_WITH_INDEX.match(name)
    if m and (len(m.group(1)) == 1 or m.group(1) in GREEK):
        return GREEK.get(m.group(1), m.group(1)) + m.group(2).translate(SUBSCRIPT)
    return name


def display_names(names) -> dict:
    """name -> its Unicode form, except where two names would read alike (x1 and x_1): those
    stay as typed."""
    names = list(dict.fromkeys(names))
    shown = {n: unicode_name(n) for n in names}
    seen: dict = {}
    for n, s in shown.items():
        seen.setdefault(s, []).append(n)
    # names kept as typed are ASCII and the Unicode forms are not, so the two never meet
    return {n: (s if len(seen[s]) == 1 else n) for n, s in shown.items()}


def _subscript(text: str) -> str:
    return text.translate(SUBSCRIPT).translate(SUBSCRIPT_LETTERS)


def superscript(text: str):
    """The superscript form of a small integer, or None."""
    return text.translate(SUPERSCRIPT) if _SUPERSCRIPTABLE.match(text) else None


def _names_in(*roots) -> list:
    return sorted({n.name for n in E.walk(*roots) if isinstance(n, E.Var)})


class UnicodePrinter(TextPrinter):
    """The input language's structure in the notation of a textbook: juxtaposed products, ᵀ, ⁻¹,
    ⊙, ⊗, tr, Greek letters; with break marks (``breaking``) for the layout."""

    mul_sep = FACTOR + " "
    term_break = SUM

    def __init__(self, names: dict | None = None):
        super().__init__()
        self.names = dict(names or {})

    def precedence(self, e: E.Expr) -> int:
        if isinstance(e, (E.Inverse, E.MatPow)):
            return POSTFIX
        if isinstance(e, E.Kron):
            return MUL
        if isinstance(e, E.Power) and not (isinstance(e.exponent, E.Num) and e.exponent.value == -1):
            return POSTFIX if self._exponent_text(e.exponent) is not None else precedence(e)
        return precedence(e)

    def wrap(self, text: str) -> str:
        return OPEN + "(" + text + ")" + CLOSE

    def call(self, name, *args) -> str:
        return f"{name}" + OPEN + "(" + ", ".join(args) + ")" + CLOSE

    # leaves --------------------------------------------------------------------------------
    def _print_Var(self, e):
        return self.names.get(e.name) or unicode_name(e.name)

    def _print_Identity(self, e):
        if self.shape_known[-1]:
            return "I"
        sub = str(e.n)
        return "I" + _subscript(sub) if _SUBSCRIPTABLE.match(sub) else f"I({sub})"

    def _print_Commutation(self, e):
        m, n = str(e.m), str(e.n)
        if _SUBSCRIPTABLE.match(m) and _SUBSCRIPTABLE.match(n):
            return "K" + _subscript(m) + "," + _subscript(n)
        return f"K({m}, {n})"

    # products ------------------------------------------------------------------------------
    def _print_Hadamard(self, e):
        known = self._siblings_determine(e.args)
        numer = [f for f in e.args if not _is_reciprocal(f)]
        denom = [E.power(f.base, E.Num(-f.exponent.value)) for f in e.args if _is_reciprocal(f)]
        text = (FACTOR + " ⊙ ").join(self.paren(f, MUL + 1, known) for f in numer) if numer else "1"
        for d in denom:
            text += FACTOR + " ⊘ " + self.paren(d, MUL + 1, known)
        return text

    def _print_MatMul(self, e):
        parts = [self.paren(f, MUL + 1, isinstance(f, E.Identity)) for f in e.args]
        out = parts[0]
        for p in parts[1:]:
            # a factor that starts with a digit would run into the one before it: 2 · 1
            out += FACTOR + (" · " if p[:1].isdigit() else " ") + p
        return out

    def _print_Kron(self, e):
        return self.paren(e.a, POSTFIX) + FACTOR + " ⊗ " + self.paren(e.b, POSTFIX)

    # superscripts ---------------------------------------------------------------------------
    def _exponent_text(self, x: E.Expr):
        if isinstance(x, E.Num):
            return superscript(self.print(x))
        return None

    def _print_Power(self, e):
        x = e.exponent
        if isinstance(x, E.Num) and x.value == -1:
            op = " / " if e.is_scalar else " ⊘ "
            return "1" + op + self.paren(e.base, MUL + 1)
        sup = self._exponent_text(x)
        ring = "" if e.is_scalar else "∘"
        if sup is not None:
            return self.paren(e.base, ATOM) + ring + sup
        return self.paren(e.base, ATOM) + ("^" if e.is_scalar else "∘^") + self.paren(x, ATOM)

    def _print_MatPow(self, e):
        if isinstance(e.arg, E.Inverse):
            return self.paren(e.arg.arg, ATOM) + superscript(f"-{e.k}")
        return self.paren(e.arg, ATOM) + superscript(str(e.k))

    def _print_Transpose(self, e):
        return self.paren(e.arg, ATOM) + TRANSPOSE

    def _print_Inverse(self, e):
        if isinstance(e.arg, E.Transpose):
            return self.paren(e.arg.arg, ATOM) + "⁻" + TRANSPOSE
        return self.paren(e.arg, ATOM) + "⁻¹"

    # functions -----------------------------------------------------------------------------
    def _print_LogDet(self, e):
        return self.call("log det", self.print(e.arg))

    def _print_Norm1(self, e):
        # of a matrix: the sum of absolute entries, not the induced norm ‖X‖₁ would suggest
        arg = e.arg if (e.arg.rows == 1 or e.arg.cols == 1) else E.vec(e.arg)
        return "‖" + self.print(arg) + "‖₁"

    def _print_Norm2(self, e):
        sub = "" if (e.arg.rows == 1 or e.arg.cols == 1) else "_F"
        return "‖" + self.print(e.arg) + "‖" + sub

    def _print_Elementwise(self, e):
        if e.fn == "sqrt":
            return "√" + self.paren(e.arg, ATOM)
        if e.fn == "abs":
            return "|" + self.print(e.arg) + "|"
        name = "σ" if e.fn == "sigmoid" and "σ" not in self.names.values() else e.fn
        return self.call(name, self.print(e.arg))


def _is_reciprocal(f: E.Expr) -> bool:
    return isinstance(f, E.Power) and isinstance(f.exponent, E.Num) and f.exponent.value < 0


# --- the view: rows laid out at a width ---------------------------------------------------------

@dataclass
class Row:
    """One labelled line of the view: ``label = expression``, with an optional dim note after
    it (a rule name, a convention).  ``expr`` is an expression; ``text`` a prepared marked text
    (from ``UnicodePrinter``) instead."""

    label: str
    expr: E.Expr | None = None
    text: str | None = None
    note: str = ""
    relation: str = "="


@dataclass
class Styles:
    label: str = "bold cyan"
    name: str = "bold"
    differential: str = "magenta"
    function: str = "green"
    operator: str = "yellow"
    number: str = "blue"
    note: str = "dim"
    heading: str = "bold"
    error: str = "bold red"
    caret: str = "bold red"
    hint: str = "cyan"


STYLES = Styles()
FUNCTION_WORDS = ("tr", "det", "log det", "adj", "diag", "vec", "sum", "exp", "log", "sin", "cos", "tan",
                  "tanh", "arcsin", "arccos", "arctan", "sigmoid", "sign", "relu", "step", "reshape",
                  "ones", "zeros", "commutation", "σ")
_OPERATORS = re.compile(r"[+\-/⊙⊘⊗·=]|[ᵀ⁻¹²³⁴⁵⁶⁷⁸⁹⁰∘]+|√|‖|‖_F|‖₁")
_NUMBER = re.compile(r"(?<![\w.])\d+(\.\d+)?(e-?\d+)?")
_WORD = re.compile(r"[^\W\d][\w₀-₉]*")


def style_math(text: str, differentials=()):
    """A Rich Text of a printed (unmarked) expression, coloured by structure."""
    from rich.text import Text

    t = Text(text)
    for m in _WORD.finditer(text):
        word = m.group(0).rstrip(TRANSPOSE)   # ᵀ is a letter to Python, but an operator here: dxᵀ
        end = m.start() + len(word)
        after = text[end:end + 1]
        if word in differentials:
            style = STYLES.differential
        elif after == "(" and word in FUNCTION_WORDS or word in ("log", "det") and after == " ":
            style = STYLES.function
        else:
            style = STYLES.name
        t.stylize(style, m.start(), end)
    for m in _OPERATORS.finditer(text):
        t.stylize(STYLES.operator, m.start(), m.end())
    for m in _NUMBER.finditer(text):
        t.stylize(STYLES.number, m.start(), m.end())
    return t


MAX_INDENT = 5   # levels: deeper breaks indent no further, or narrow terminals run out


def math_lines(marked: str, width: int, first_width: int | None = None, indent: int = 2) -> list:
    """A marked expression (``UnicodePrinter``) broken into plain lines: the first at most
    ``first_width`` cells, each continuation line indented ``indent`` cells per level."""
    from rich.cells import cell_len

    def measure(text, level):
        return indent * min(level, MAX_INDENT) if text is None else cell_len(text)

    tokens = breaking.tokenize(marked)
    lines = breaking.layout(tokens, max(width, 8), measure, first_width)
    out = []
    for i, ln in enumerate(lines):
        text = breaking.line_text(ln, lambda t: "").strip(" ")
        out.append(" " * (indent * min(ln.indent, MAX_INDENT)) + text)
    return out


def _plain_width(marked: str) -> int:
    from rich.cells import cell_len
    return cell_len(breaking.strip(marked))


def view(rows: list, *, width: int, printer: UnicodePrinter | None = None, header: list = (),
         notes: list = (), differentials=()) -> list:
    """The lines (Rich ``Text``) of a view: header lines, a blank line, the rows with their
    relations aligned, and the notes, dim.  No line is wider than ``width``."""
    from rich.cells import cell_len
    from rich.text import Text

    printer = printer or UnicodePrinter()
    out = []
    for h in header:
        out.extend(_fold(h if isinstance(h, Text) else Text(h), width))
    if header:
        out.append(Text(""))
    label_width = max((len(r.label) for r in rows), default=0)
    # labels in a column of their own, unless that leaves too little room for the expressions
    beside = label_width + 3 + 24 <= width
    blocks = []    # per row: its lines, and its note
    for r in rows:
        marked = r.text if r.text is not None else printer.doprint(r.expr)
        rel = f" {r.relation} "
        lines = []
        if beside:
            lead = r.label.rjust(label_width) + rel
            room = width - len(lead)
            pad = " " * len(lead)
            for i, line in enumerate(math_lines(marked, room, room, indent=2)):
                text = Text(lead if i == 0 else pad)
                if i == 0:
                    text.stylize(STYLES.label, 0, len(lead) - len(rel))
                    text.stylize(STYLES.operator, len(lead) - len(rel), len(lead))
                text.append_text(style_math(line, differentials))
                lines.extend(_fold(text, width))
        else:
            head = Text(r.label + rel.rstrip())
            head.stylize(STYLES.label, 0, len(r.label))
            lines.extend(_fold(head, width))
            for line in math_lines(marked, width - 4, width - 4, indent=2):
                text = Text("    ")
                text.append_text(style_math(line, differentials))
                lines.extend(_fold(text, width))
        blocks.append((lines, r.note))
    column = _note_column([(lines, note) for lines, note in blocks if note], width)
    for lines, note in blocks:
        if note and len(lines) == 1 and cell_len(lines[0].plain) + 3 <= column \
                and column + cell_len(note) <= width:
            # beside a one-line row, in the column of notes (a rule name, say)
            lines[0].append(" " * (column - cell_len(lines[0].plain)) + note, style=STYLES.note)
        elif note:   # under the row, indented under its expression, wrapped at spaces
            indent = label_width + 5 if beside else 6
            lines = lines + _wrap_note(note, width, indent)
        out.extend(lines)
    if notes:
        out.append(Text(""))
        for n in notes:
            out.extend(_fold(Text(n, style=STYLES.note), width))
    return out


MIN_NOTE_ROOM = 16   # cells: a column of notes narrower than this puts them under their rows


def _note_column(blocks: list, width: int) -> int:
    """Where the notes beside their rows start: the column that puts the most notes beside
    one-line rows (the leftmost of equals); the others go under their rows."""
    from rich.cells import cell_len

    singles = [(cell_len(lines[0].plain), cell_len(note)) for lines, note in blocks if len(lines) == 1]
    best, best_count = width + 1, 0
    for column in sorted({line + 3 for line, _ in singles}):
        if width - column < MIN_NOTE_ROOM:
            break
        count = sum(line + 3 <= column and column + note <= width for line, note in singles)
        if count > best_count:
            best, best_count = column, count
    return best


def _wrap_note(note: str, width: int, indent: int) -> list:
    """A note on lines of its own, indented, broken at spaces (anywhere in a word too long)."""
    import textwrap
    from rich.text import Text

    indent = min(indent, max(0, width - 20))
    room = max(1, width - indent)
    pieces = textwrap.wrap(note, room, break_on_hyphens=False, break_long_words=True) or [""]
    return [Text(" " * indent + p, style=STYLES.note) for p in pieces]


def _fold(text, width: int) -> list:
    """A line as lines no wider than ``width``: at spaces where it can, else anywhere."""
    from rich.cells import cell_len

    if cell_len(text.plain) <= width:
        return [text]
    from rich.console import Console
    console = Console(width=width, color_system=None, file=open(os.devnull, "w"))
    lines = list(text.wrap(console, width, overflow="fold"))
    for line in lines:
        line.rstrip()
    return lines


# --- a derivation's view ---------------------------------------------------------------------------

RESULT_LABELS = {
    "differential": "f'({x})[{dx}]",
    "gradient": "∇f({x})",
    "cookbook_gradient": "∇f({x}) (cookbook)",
    "jacobian": "J",
    "hessian_bilinear": "f''({x})[{dx}, {dx2}]",
    "hessian": "∇²f({x})",
}


def result_label(result, derivation, names: dict) -> str:
    """The label of a result in Unicode math; a kind of result this view does not know keeps the
    label it came with."""
    key = "cookbook_gradient" if result.name == "gradient" and result.label.startswith("cookbook") else result.name
    if key not in RESULT_LABELS:
        return result.label
    if derivation.several:
        return _several_label(key, result, derivation, names)
    x = names.get(derivation.x.name, derivation.x.name)
    return RESULT_LABELS[key].format(x=x, dx=derivation.dx.name, dx2=derivation.dx2.name)


def _several_label(key: str, result, derivation, names: dict) -> str:
    """Several variables: f'(x, W)[dx, dW], ∇_x f, J_x, f''(x, W)[(dx, dW), (dx2, dW2)], H[x, W]."""
    variables = derivation.variables
    args = ", ".join(names.get(v.name, v.name) for v in variables)
    sub = ", ".join(names.get(n, n) for n in result.wrt)
    if key == "differential":
        return f"f'({args})[{', '.join(v.dx.name for v in variables)}]"
    if key == "hessian_bilinear":
        first = ", ".join(v.dx.name for v in variables)
        second = ", ".join(v.dx2.name for v in variables)
        return f"f''({args})[({first}), ({second})]"
    return {"gradient": f"∇_{sub} f", "cookbook_gradient": f"∇_{sub} f (cookbook)",
            "jacobian": f"J_{sub}", "hessian": f"H[{sub}]"}[key]


def derivation_names(derivation, *extra) -> dict:
    roots = [derivation.expression] + [r.printed for r in derivation.results.values()] + list(extra)
    return display_names(list(derivation.typed.symbols) + _names_in(*roots))


def derivation_rows(derivation, printer: UnicodePrinter) -> list:
    """A derivation's results as rows, in the order of every format; a result that names what it
    repeats gets a 'where' row per name."""
    from .documents import ordered_results
    from .share import shared_form

    rows = []
    for r in ordered_results(derivation):
        definitions, body = shared_form(r.printed, r.taken)
        rows.append(Row(result_label(r, derivation, printer.names), body))
        for var, definition in definitions:
            rows.append(Row("where " + printer.print(var), definition))
        if r.name == "differential" and derivation.several:
            # the part in each direction, the others zero: f'(x, W)[dx, 0]
            args = ", ".join(printer.names.get(v.name, v.name) for v in derivation.variables)
            for name, part in derivation.parts.items():
                only = ", ".join(v.dx.name if v.name == name else "0" for v in derivation.variables)
                rows.append(Row(f"f'({args})[{only}]", part.printed))
    return rows


def header_lines(derivation, printer: UnicodePrinter, width: int) -> list:
    """The function (broken like any result) and one dim line of shapes, inferred ones marked."""
    from rich.text import Text
    from .documents import shape_text

    x = ", ".join(printer.names.get(v.name, v.name) for v in derivation.variables)
    lead = f"f({x}) = "
    lines = []
    # a definition chain's function is written with what it repeats named, like the results
    from .share import shared_form
    definitions, body = shared_form(derivation.expression,
                                    set(derivation.typed.symbols) | set(derivation.typed.definitions))
    written = "; ".join([f"{printer.doprint(v)} = {printer.doprint(d)}" for v, d in definitions]
                        + [printer.doprint(body)])
    for i, line in enumerate(math_lines(written, width - len(lead), width - len(lead))):
        text = Text(lead if i == 0 else " " * len(lead))
        if i == 0:
            text.stylize(STYLES.heading, 0, len(lead))
        text.append_text(style_math(line))
        lines.append(text)
    shapes = []
    for name, sym in derivation.typed.symbols.items():
        shapes.append(f"{printer.names.get(name, name)}: {shape_text(sym)}" + ("" if sym.declared else " (inferred)"))
    # one dim line, wrapped between the shapes (never inside one) when the terminal is narrow
    lead = "shapes  "
    line = ""
    for entry in shapes:
        if line and len(lead) + len(line) + 3 + len(entry) > width:
            lines.append(Text(lead + line, style=STYLES.note))
            lead, line = " " * len(lead), ""
        line += ("   " if line else "") + entry
    lines.append(Text(lead + line, style=STYLES.note))
    return lines


def derivation_notes(derivation) -> list:
    from .documents import ordered_results

    notes = [r.note for r in ordered_results(derivation) if r.note]
    results = [r.printed for r in ordered_results(derivation)]
    legend = elementwise_legend(results + [derivation.expression])
    if legend:
        notes.append(legend)
    return notes


def elementwise_legend(exprs) -> str:
    """What the elementwise notation in these expressions means, naming only what they use."""
    used = {}
    for n in E.walk(*exprs):
        if isinstance(n, E.Hadamard):
            used["⊙"] = "⊙ elementwise product"
            if any(_is_reciprocal(f) for f in n.args):
                used["⊘"] = "⊘ elementwise division"
        elif isinstance(n, E.Power) and not n.is_scalar:
            used["⊘" if _is_reciprocal(n) else "∘"] = \
                "⊘ elementwise division" if _is_reciprocal(n) else "X∘ᵏ elementwise power"
        elif isinstance(n, E.Elementwise) and not n.is_scalar:
            used["f"] = "functions of vectors and matrices act elementwise"
    order = ("⊙", "⊘", "∘", "f")
    return "; ".join(used[k] for k in order if k in used)


def derivation_view(derivation, width: int) -> list:
    names = derivation_names(derivation)
    printer = UnicodePrinter(names)
    differentials = {v.dx.name for v in derivation.variables} | {v.dx2.name for v in derivation.variables}
    return view(derivation_rows(derivation, printer), width=width, printer=printer,
                header=header_lines(derivation, printer, width), notes=derivation_notes(derivation),
                differentials=differentials)


# --- consoles, colour and errors -------------------------------------------------------------------

def wants_colour(color: str, stream) -> bool:
    """--color always|never|auto; auto: a terminal, no NO_COLOR (any value), TERM not dumb."""
    if color == "always":
        return True
    if color == "never":
        return False
    if "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def make_console(stream, color: str = "auto", width: int | None = None):
    """A Rich console on ``stream`` that writes escape codes only when colour is wanted, and
    knows the terminal's width (80 when it cannot tell)."""
    from rich.console import Console

    if width is None:
        width = terminal_width(stream)
    colour = wants_colour(color, stream)
    return Console(file=stream, width=width, force_terminal=colour, no_color=not colour,
                   color_system="standard" if colour else None, highlight=False, emoji=False,
                   markup=False, soft_wrap=False, legacy_windows=False)


def print_lines(console, lines) -> None:
    """The lines, each already no wider than the console: written as they are (one call: Rich's
    per-call work adds up on a long view)."""
    from rich.text import Text

    if lines:
        console.print(Text("\n").join(lines), overflow="fold", no_wrap=True, crop=False)


def print_derivation(derivation, console, extra: list = ()) -> None:
    """The pretty view of a derivation, then ``extra`` lines (reports of --check / --verify)."""
    from rich.text import Text

    lines = derivation_view(derivation, console.width)
    for e in extra:
        lines.extend(_fold(Text(e, style=STYLES.note), console.width))
    print_lines(console, lines)


def print_error(error: MatcalcError, console, source: str | None = None, filename: str | None = None,
                quote: str = "line") -> None:
    """An error for a person at a terminal: exactly the lines of plain mode (``error.render``, so
    the same words and the same care with what is quoted), coloured, the program line cut to the
    terminal around the caret."""
    from rich.text import Text

    width = console.width
    plain = error.render(source, filename, quote=quote).split("\n")
    caret_at = next((i for i, line in enumerate(plain) if i and line.strip() == "^"), None)
    lines = []
    for i, line in enumerate(plain):
        if caret_at is not None and i == caret_at - 1:
            snippet, caret = _around_caret(line, plain[caret_at], width)
            lines.append(Text(snippet))
            lines.append(Text(caret, style=STYLES.caret))
        elif caret_at is not None and i == caret_at:
            continue
        elif error.hint and i == len(plain) - 1:
            t = Text(line)
            t.stylize(STYLES.hint, 0, len("hint:"))
            lines.extend(_fold(t, width))
        else:
            t = Text(line)
            if i == 0:
                t.stylize(STYLES.error, 0, len(error.kind) + 1)
            lines.extend(_fold(t, width))
    print_lines(console, lines)


def _around_caret(snippet: str, caret: str, width: int) -> tuple:
    """The quoted program line and its caret line, cut to ``width`` around the caret."""
    if len(snippet) <= width and len(caret) <= width:
        return snippet, caret
    indent = len(snippet) - len(snippet.lstrip(" "))
    body, col = snippet[indent:], caret.index("^") - indent
    room = max(10, width - indent - 6)
    start = max(0, min(col - room // 2, len(body) - room))
    prefix = "..." if start else ""
    suffix = "..." if start + room < len(body) else ""
    return (" " * indent + prefix + body[start:start + room] + suffix,
            " " * (indent + len(prefix) + col - start) + "^")


# --- a derivation's steps (--steps) ------------------------------------------------------------------

def steps_view(derivation, width: int) -> list:
    """``--steps`` on a terminal: the function and its shapes, then each step a row, the '='
    aligned and the rules dim beside it (below it where the row or the terminal is too narrow),
    long rows broken by structure; every line at most ``width`` cells."""
    from .steps import pretty_rows, StepUnicodePrinter

    steps = derivation.steps
    extra = [p.sub for s in steps for p in s.pending] + [s.expr for s in steps]
    names = derivation_names(derivation, *extra)
    printer = UnicodePrinter(names)
    differentials = {v.dx.name for v in derivation.variables} | {v.dx2.name for v in derivation.variables}
    if "d" not in names:   # the d of a differential not worked out yet: d log(u)
        differentials.add("d")
    rows = pretty_rows(steps, lambda pending: StepUnicodePrinter(names, pending), printer)
    notes = []
    legend = elementwise_legend([s.value for s in steps] + [derivation.expression])
    if legend:
        notes.append(legend)
    return view(rows, width=width, printer=printer, header=header_lines(derivation, printer, width),
                notes=notes, differentials=differentials)


def print_steps(derivation, console, extra: list = ()) -> None:
    """The pretty view of ``--steps``, then ``extra`` lines (reports of --check / --verify)."""
    from rich.text import Text

    lines = steps_view(derivation, console.width)
    for e in extra:
        lines.extend(_fold(Text(e, style=STYLES.note), console.width))
    print_lines(console, lines)
