"""IR -> LaTeX (amsmath), and the ``--format latex`` document block.

Modelled on ``text``: one ``_print_X`` method per node kind, parentheses decided in one place
(``paren``) from the precedence table of ``text`` (``latex_precedence`` adjusts it where LaTeX
writes a node differently: ``X^{-1}`` is a superscript, ``A \\otimes B`` an infix product,
``\\frac{a}{b}`` a factor that needs no parentheses).  Everything emitted compiles with plain
pdflatex and amsmath alone: elementwise division is written with the Hadamard inverse
``X^{\\circ -1}``.

Conventions: products are juxtaposition, ``\\odot`` is the elementwise product and ``X^{\\circ k}``
the elementwise power; ``\\exp(X)``, ``\\log(X)``, ... of a vector or matrix act elementwise.
"""

from __future__ import annotations

import re
from fractions import Fraction

from .. import expr as E
from .share import shared_form
from .printer import ATOM, MUL, NEG, POSTFIX, POW, Printer
from .text import _float_text, _is_reciprocal, precedence
from . import documents

GREEK = frozenset((
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta",
    "iota", "kappa", "lambda", "mu", "nu", "xi", "pi", "varpi", "rho", "varrho", "sigma", "varsigma",
    "tau", "upsilon", "phi", "varphi", "chi", "psi", "omega",
    "Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi", "Psi", "Omega",
))

# elementwise functions: a LaTeX command that takes a parenthesised argument
FUNCTIONS = {
    "exp": r"\exp", "log": r"\log", "sin": r"\sin", "cos": r"\cos", "tan": r"\tan", "tanh": r"\tanh",
    "arcsin": r"\arcsin", "arccos": r"\arccos", "arctan": r"\arctan", "sigmoid": r"\sigma",
    "relu": r"\operatorname{relu}", "sign": r"\operatorname{sign}", "step": r"\operatorname{step}",
}

_NUMBER = re.compile(r"^-?(\d+(\.\d+)?|\\frac\{\d+\}\{\d+\})$")  # 2, 0.5, \frac{1}{2}
_TRAILING_DIGITS = re.compile(r"^([A-Za-z]+)(\d+)$")


# juxtaposed factors (products, operands of \odot) must bind tighter than a leading minus
FACTOR = NEG + 1
# a fraction \frac{a}{b} needs no parentheses as a factor, but does as the base of a superscript
FRACTION = POW


def latex_precedence(e: E.Expr) -> int:
    """``text.precedence``, adjusted where the LaTeX form binds differently from the text form."""
    if isinstance(e, (E.Inverse, E.MatPow)):
        return POSTFIX   # X^{-1}, X^{k}: superscripts
    if isinstance(e, E.Kron):
        return MUL       # A \otimes B is an infix product
    if isinstance(e, E.Ones) and e.rows == 1 and e.cols != 1:
        return POSTFIX   # \mathbf{1}_{n}^{\top}
    if isinstance(e, E.Num):
        v = e.value
        if v < 0:
            return NEG
        if isinstance(v, Fraction):
            return ATOM if v.denominator == 1 else FRACTION
        return MUL if "e" in _float_text(v) else ATOM   # 1.5 \cdot 10^{-8}
    if isinstance(e, E.Power):
        if isinstance(e.exponent, E.Num) and e.exponent.value == -1:
            return FRACTION if e.is_scalar else POW     # \frac{1}{x}, X^{\circ -1}
        return POW
    if isinstance(e, E.Mul) and _is_plain_fraction(e):
        return FRACTION
    if isinstance(e, E.Elementwise) and e.fn == "sqrt":
        return POSTFIX   # \sqrt{x}^{2} would read as the root of x^2
    return precedence(e)


def _is_plain_fraction(e: E.Mul) -> bool:
    """A positive all-scalar product with a denominator prints as one \\frac{...}{...}."""
    if not e.is_scalar:
        return False
    c = e.args[0]
    if isinstance(c, E.Num):
        if c.value < 0:
            return False
        if isinstance(c.value, Fraction) and c.value.denominator != 1:
            return True
    return any(_is_scalar_reciprocal(f) for f in e.args)


def _is_scalar_reciprocal(f: E.Expr) -> bool:
    return f.is_scalar and _is_reciprocal(f)


def _starts_with_digit(text: str) -> bool:
    return text[:1].isdigit()


class LatexPrinter(Printer):
    """Prints a math-mode LaTeX fragment (no ``$``)."""

    def __init__(self, names=(), bases=None):
        """``names``: the variables in sight; ``bases``: differential name -> variable name, when known."""
        super().__init__()
        self.names = frozenset(names)
        self.bases = dict(bases or {})
        # a variable called sigma would read like the logistic function: spell the function out then
        self.sigmoid = r"\operatorname{sigmoid}" if "sigma" in self.names else r"\sigma"

    def precedence(self, e: E.Expr) -> int:
        return latex_precedence(e)

    def wrap(self, text: str) -> str:
        return rf"\left({text}\right)"

    def call(self, name: str, *args: str) -> str:
        """``name(args)``; the parentheses grow only around tall arguments (fractions)."""
        inner = ", ".join(args)
        if r"\frac" in inner:
            return rf"{name}\left({inner}\right)"
        return f"{name}({inner})"

    # names and dimensions -------------------------------------------------------------------
    def name(self, name: str) -> str:
        body, sub = name_parts(name)
        return body if sub is None else f"{body}_{{{sub}}}"

    def dim(self, d) -> str:
        parts = [] if (d.coef == 1 and d.factors) else [str(d.coef)]
        for sym, p in d.factors:
            parts.append(self.name(sym) if p == 1 else f"{self.name(sym)}^{{{p}}}")
        return " ".join(parts)

    def size(self, rows, cols) -> str:
        return f"{self.dim(rows)} \\times {self.dim(cols)}"

    # leaves ---------------------------------------------------------------------------------
    def _print_Var(self, e):
        if not e.diff:
            return self.name(e.name)
        base = self.bases.get(e.name) or differential_base(e, self.names)
        body, sub = name_parts(base)
        if e.diff == 1:
            return r"\mathrm{d}" + (body if sub is None else f"{body}_{{{sub}}}")
        if sub is None:
            return rf"\mathrm{{d}}{body}_{{{e.diff}}}"
        return rf"\mathrm{{d}}{{{body}_{{{sub}}}}}_{{{e.diff}}}"

    def _print_Num(self, e):
        v = e.value
        if isinstance(v, Fraction):
            if v.denominator == 1:
                return str(v.numerator)
            sign = "-" if v < 0 else ""
            return rf"{sign}\frac{{{abs(v.numerator)}}}{{{v.denominator}}}"
        text = _float_text(v)
        if text in ("inf", "-inf"):
            return text.replace("inf", r"\infty")
        if text == "nan":
            return r"\mathrm{NaN}"
        if "e" in text:
            mant, exp = text.split("e")
            return rf"{mant} \cdot 10^{{{exp}}}"
        return text

    def _print_Identity(self, e):
        return "I" if self.shape_known[-1] else f"I_{{{self.dim(e.n)}}}"

    def _print_Zero(self, e):
        return f"0_{{{self.size(e.rows, e.cols)}}}"

    def _print_Ones(self, e):
        if e.rows == 1 and e.cols != 1:
            body, size = r"\mathbf{1}", self.dim(e.cols)
            return (body if self.shape_known[-1] else f"{body}_{{{size}}}") + r"^{\top}"
        if self.shape_known[-1]:
            return r"\mathbf{1}"
        if e.cols == 1:
            return rf"\mathbf{{1}}_{{{self.dim(e.rows)}}}"
        return rf"\mathbf{{1}}_{{{self.size(e.rows, e.cols)}}}"

    def _print_Commutation(self, e):
        return f"K_{{{self.dim(e.m)},{self.dim(e.n)}}}"

    # products ------------------------------------------------------------------------------
    def _print_Mul(self, e):
        args = list(e.args)
        coef = args.pop(0).value if isinstance(args[0], E.Num) else Fraction(1)
        numer, denom = [], []
        for f in args:
            if _is_scalar_reciprocal(f):
                denom.append(E.power(f.base, E.Num(-f.exponent.value)))
            else:
                numer.append(f)
        known = self.shape_known[-1]
        if isinstance(coef, Fraction):
            p, q = coef.numerator, coef.denominator
        else:
            p, q = coef, 1
        sign = ""
        if p < 0:
            sign, p = "-", -p
        scalars = [f for f in numer if f.is_scalar]
        matrix = [f for f in numer if not f.is_scalar and not (isinstance(f, E.Ones) and known)]
        rest = scalars + matrix
        if p == 1 and q == 1 and not denom and len(rest) == 1 \
                and isinstance(rest[0], (E.MatMul, E.Hadamard, E.Kron)):
            # -A x means -(A x): no parentheses needed
            return sign + self.print(rest[0], known)
        parts = []
        if q != 1 or denom:
            top = ([self.print(E.Num(p))] if p != 1 or not scalars else []) + self._braced(scalars)
            bottom = ([str(q)] if q != 1 else []) + self._braced(denom)
            parts.append(rf"\frac{{{self.scalar_product(top)}}}{{{self.scalar_product(bottom)}}}")
        else:
            if p != 1 or not (scalars or matrix):
                parts.append(self.print(E.Num(p)))
            parts.extend(self.paren(f, FACTOR) for f in scalars)
        for f in matrix:
            # products chain with the same value: c A x, s y \odot z
            level = MUL if isinstance(f, (E.MatMul, E.Hadamard, E.Kron)) else FACTOR
            parts.append(self.paren(f, level, known))
        return sign + self.scalar_product(parts)

    def _braced(self, factors) -> list:
        """Factors inside \\frac{...}{...}: the braces group a single factor already."""
        if len(factors) == 1:
            return [self.print(factors[0])]
        return [self.paren(f, FACTOR) for f in factors]

    def scalar_product(self, parts: list) -> str:
        """A number and the factor after it sit side by side (2 x); other factors are set apart (\\,)."""
        out = parts[0]
        for prev, t in zip(parts, parts[1:]):
            if _starts_with_digit(t):
                out += r" \cdot " + t
            elif _NUMBER.match(prev):
                out += " " + t
            else:
                out += r" \, " + t
        return out

    def _print_MatMul(self, e):
        # I and ones inside a product: the neighbours fix the size (A \mathbf{1}, not A \mathbf{1}_{n})
        out = ""
        for i, f in enumerate(e.args):
            text = self.paren(f, FACTOR, True)
            if i:
                # a differential is set apart from what follows it (\mathrm{d}X \, X); digits by \cdot
                out += r" \cdot " if _starts_with_digit(text) else \
                    r" \, " if _is_differential(e.args[i - 1]) else " "
            out += text
        return out

    def _print_Hadamard(self, e):
        known = self._siblings_determine(e.args)
        return r" \odot ".join(self.paren(f, FACTOR, known) for f in e.args)

    def _print_Kron(self, e):
        # operands of \otimes are parenthesised unless they are atoms or superscripted atoms
        return rf"{self.paren(e.a, POW)} \otimes {self.paren(e.b, POW)}"

    # powers and superscripts -------------------------------------------------------------------
    def superscript(self, base: E.Expr, sup: str) -> str:
        """base^{sup}: the base must not carry a superscript of its own (no double superscripts)."""
        return self.paren(base, ATOM) + "^{" + sup + "}"

    def _print_Power(self, e):
        x = e.exponent
        if e.is_scalar:
            if isinstance(x, E.Num) and x.value == -1:
                return rf"\frac{{1}}{{{self.print(e.base)}}}"
            return self.superscript(e.base, self.exponent(x))
        return self.superscript(e.base, r"\circ " + self.exponent(x))

    def exponent(self, x: E.Expr) -> str:
        return self.print(x)  # inside braces: no parentheses needed

    def _print_MatPow(self, e):
        if isinstance(e.arg, E.Inverse) and not isinstance(e.arg.arg, E.Transpose):
            return self.superscript(e.arg.arg, f"-{e.k}")  # X^{-2}
        return self.superscript(e.arg, str(e.k))

    def _print_Transpose(self, e):
        return self.superscript(e.arg, r"\top")

    def _print_Inverse(self, e):
        if isinstance(e.arg, E.Transpose):
            return self.superscript(e.arg.arg, r"-\top")
        return self.superscript(e.arg, "-1")

    # functions ----------------------------------------------------------------------------------
    def _print_Trace(self, e):
        return self.call(r"\operatorname{tr}", self.print(e.arg))

    def _print_Det(self, e):
        return self.call(r"\det", self.print(e.arg))

    def _print_LogDet(self, e):
        return self.call(r"\log\det", self.print(e.arg))

    def _print_Adj(self, e):
        return self.call(r"\operatorname{adj}", self.print(e.arg))

    def _print_Diag(self, e):
        return self.call(r"\operatorname{diag}", self.print(e.arg))

    def _print_DiagPart(self, e):
        return self.call(r"\operatorname{diag}", self.print(e.arg))

    def _print_Vec(self, e):
        return self.call(r"\operatorname{vec}", self.print(e.arg))

    def _print_Sum(self, e):
        return self.call(r"\operatorname{sum}", self.print(e.arg))

    def _print_Norm1(self, e):
        # for a matrix: the entrywise 1-norm, which is not the induced norm written ||X||_1
        arg = e.arg if _is_vector(e.arg) else E.vec(e.arg)
        return rf"\lVert {self.print(arg)} \rVert_1"

    def _print_Norm2(self, e):
        return rf"\lVert {self.print(e.arg)} \rVert_{2 if _is_vector(e.arg) else 'F'}"

    def _print_Reshape(self, e):
        return self.call(r"\operatorname{reshape}", self.print(e.arg), self.dim(e.rows), self.dim(e.cols))

    def _print_Elementwise(self, e):
        if e.fn == "sqrt":
            return rf"\sqrt{{{self.print(e.arg)}}}"
        if e.fn == "abs":
            return rf"\lvert {self.print(e.arg)} \rvert"
        name = self.sigmoid if e.fn == "sigmoid" else FUNCTIONS[e.fn]
        return self.call(name, self.print(e.arg))


    # matrix functions: e^{X}, X^{1/2}, logm(X); Frechet derivatives L_f(X)[E] and their
    # matrices K_f(X) (vec(L_f(X)[E]) = K_f(X) vec(E)), as in Higham's Functions of Matrices.
    # The braces make each a group, so that a superscript after it (^{-1}, ^{\top}) is not a double one.
    def _print_MatFun(self, e):
        if e.fn == "expm":
            return r"{\mathrm{e}^{" + self.print(e.arg) + "}}"
        if e.fn == "sqrtm":
            return "{" + self.superscript(e.arg, "1/2") + "}"
        return self.call(r"\operatorname{logm}", self.print(e.arg))

    def _frechet_head(self, letter: str, e, order: int) -> str:
        sup = f"^{{({order})}}" if order > 1 else ""
        return rf"\mathrm{{{letter}}}{sup}_{{\mathrm{{{e.fn}}}}}\left({self.print(e.arg)}\right)"

    def _print_Frechet(self, e):
        directions = ", ".join(self.print(d) for d in e.directions)
        return self._frechet_head("L", e, e.order) + rf"\left[{directions}\right]"

    def _print_FrechetMatrix(self, e):
        head = self._frechet_head("K", e, len(e.directions) + 1)
        if not e.directions:
            return head
        return head + r"\left[" + ", ".join(self.print(d) for d in e.directions) + r", \cdot\right]"


def _is_differential(e: E.Expr) -> bool:
    return isinstance(e, E.Var) and e.diff > 0 or isinstance(e, E.Transpose) and _is_differential(e.arg)


def _is_vector(e: E.Expr) -> bool:
    return e.rows == 1 or e.cols == 1


def name_parts(name: str):
    r"""(body, subscript or None): ``x`` -> (x, None), ``x1`` -> (x, 1), ``alpha`` -> (\alpha, None),
    ``theta_0`` -> (\theta, 0), ``w_hat`` -> (w, \mathrm{hat}), ``loss`` -> (\mathit{loss}, None)."""
    m = _TRAILING_DIGITS.match(name)
    if m:
        return _word(m.group(1)), m.group(2)
    head, _, tail = name.partition("_")
    if head.isalpha() and tail.isalnum() and (len(head) == 1 or head in GREEK):
        return _word(head), _subscript_word(tail)
    return _word(name), None


def _word(name: str) -> str:
    if len(name) == 1 and name.isalpha():
        return name
    if name in GREEK:
        return "\\" + name
    return r"\mathit{" + name.replace("_", r"\_") + "}"


def _subscript_word(word: str) -> str:
    if word.isdigit() or len(word) == 1:
        return word
    if word in GREEK:
        return "\\" + word
    return r"\mathrm{" + word + "}"


def differential_base(v: E.Var, names=()) -> str:
    """The variable a differential belongs to, from its name (see ``api._fresh_name``):
    dx -> x, dx2 -> x, and when the program already uses those names dx_1 -> x, dx2_1 -> x.
    ``names``: the other names in sight; dx_1 is read as d(x_1) unless a name dx is among them."""
    stem = v.name[1:] if v.name.startswith("d") and len(v.name) > 1 else v.name
    if v.diff == 2:
        if stem.endswith("2") and len(stem) > 1:
            return stem[:-1]
        m = re.match(r"^(.+)2_\d+$", stem)
        return m.group(1) if m else stem
    m = re.match(r"^(.+)_\d+$", stem)
    if m and "d" + m.group(1) in names:
        return m.group(1)
    return stem


def _names_in(e: E.Expr) -> set:
    names, stack = set(), [e]
    while stack:
        n = stack.pop()
        if isinstance(n, E.Var) and not n.diff:
            names.add(n.name)
        stack.extend(n.children)
    return names


def to_latex(e: E.Expr) -> str:
    """A math-mode fragment (no ``$``)."""
    return LatexPrinter(_names_in(e)).doprint(e)


def shared_latex(e: E.Expr, taken=()) -> str:
    """A result with the subexpressions it repeats named: ``body \\quad\\text{where } t_{1} = ...``."""
    definitions, body = shared_form(e, taken)
    printer = LatexPrinter(_names_in(e))
    text = printer.doprint(body)
    if definitions:
        text += r" \quad \text{where } " + r",\ ".join(
            f"{printer.doprint(var)} = {printer.doprint(d)}" for var, d in definitions)
    return text


# the document block ------------------------------------------------------------------------------

ELEMENTWISE_LEGEND = (r"% \odot: elementwise product; X^{\circ k}: elementwise power; "
                      r"functions of vectors and matrices act elementwise")


def _labels(derivation, printer: LatexPrinter) -> dict:
    x = printer.print(derivation.x)
    dx, dx2 = printer.print(derivation.dx), printer.print(derivation.dx2)
    return {
        "differential": f"f'({x})[{dx}]",
        "gradient": rf"\nabla f({x})",
        "cookbook_gradient": rf"\nabla_{{\text{{cookbook}}}} f({x})",
        "jacobian": f"J_f({x})",
        "hessian_bilinear": f"f''({x})[{dx}, {dx2}]",
        "hessian": rf"\nabla^2 f({x})",
    }


def _uses_elementwise(e: E.Expr) -> bool:
    return E.contains(e, lambda n: isinstance(n, (E.Hadamard, E.Elementwise))
                      or (isinstance(n, E.Power) and not n.is_scalar))


def document_block(derivation) -> str:
    """The ``--format latex`` output: comment lines, then one ``align*`` environment (amsmath)."""
    x = derivation.x.name
    printer = LatexPrinter(derivation.typed.symbols, {derivation.dx.name: x, derivation.dx2.name: x})
    labels = _labels(derivation, printer)
    results = documents.ordered_results(derivation)
    lines = [f"% shapes: {documents.declarations_text(derivation)}"]
    for r in results:
        if r.note:
            lines.append(f"% {r.name}: {r.note}")
    if any(_uses_elementwise(r.printed) for r in results):
        lines.append(ELEMENTWISE_LEGEND)
    lines.append(r"\begin{align*}")
    rows = []
    for r in results:
        key = "cookbook_gradient" if r.name == "gradient" and r.label.startswith("cookbook") else r.name
        definitions, body = shared_form(r.printed, r.taken)
        rows.append(f"  {labels[key]} &= {printer.doprint(body)}")
        for i, (var, definition) in enumerate(definitions):
            where = r"\text{where } " if i == 0 else ""
            rows.append(f"  {where}{printer.doprint(var)} &= {printer.doprint(definition)}")
    lines.append(" \\\\\n".join(rows))
    lines.append(r"\end{align*}")
    return "\n".join(lines) + "\n"
