"""IR -> LaTeX (amsmath), and the ``--format latex`` output in its four styles.

The styles (``--latex-style``): ``align`` (one align* block), ``equation`` (an equation* per
result), ``inline`` ($...$ lines for running text) and ``document`` (a file pdflatex compiles);
``latex_document`` gives the same for several derivations at once.  Long results are broken across
lines (``breaking``) at a width measured by an estimate of typeset widths (``typeset_width``).

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
from dataclasses import dataclass
from fractions import Fraction

from .. import __version__
from .. import expr as E
from ..errors import UsageError
from . import breaking
from .breaking import CLOSE, OPEN, SUM
from .breaking import FACTOR as BETWEEN_FACTORS
from .share import shared_form
from .printer import ATOM, MUL, NEG, POSTFIX, POW, Printer
from .text import _decimal_text, _float_text, _integer_text, _is_reciprocal, precedence
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
            decimal = decimal_form(v) if v.denominator != 1 else None
            if decimal is not None:
                return MUL if r"\cdot" in decimal else ATOM   # 1.5 \cdot 10^{-8}
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


# a constant whose denominator is larger than this, and whose decimal ends, is written as a
# decimal (0.1, 0.20000003, 1.5 \cdot 10^{-8}); smaller ones as fractions (\frac{3}{4})
DECIMAL_DENOMINATOR = 8


def _integer_latex(n: int) -> str:
    """An integer's digits, or exact scientific notation where the text printer uses it:
    1e300 is 10^{300}, not three hundred zeros running off the page."""
    text = _integer_text(n)
    if "e" not in text:
        return text
    mant, exp = text.split("e")
    sign = "-" if mant.startswith("-") else ""
    mant = mant.lstrip("-")
    return rf"{sign}10^{{{int(exp)}}}" if mant == "1" else rf"{sign}{mant} \cdot 10^{{{int(exp)}}}"


def decimal_form(v: Fraction):
    """The decimal LaTeX of a constant typed as a decimal (0.1, 1.5e-8), or None."""
    if v.denominator <= DECIMAL_DENOMINATOR:
        return None
    text = _decimal_text(v)
    if text is None:
        return None
    digits = text.lstrip("-").replace(".", "").lstrip("0")
    if abs(v) < Fraction(1, 10000) and len(digits) <= 6:
        # a long run of zeros: scientific notation
        sign = "-" if v < 0 else ""
        mant, exp = f"{abs(float(v)):e}".split("e")
        mant = mant.rstrip("0").rstrip(".")
        return rf"{sign}{mant} \cdot 10^{{{int(exp)}}}"
    return text


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


TRANSPOSES = {"top": r"\top", "T": r"\mathsf{T}", "prime": r"\prime"}


class LatexPrinter(Printer):
    """Prints a math-mode LaTeX fragment (no ``$``).

    ``marked`` gives the same text with the break marks of ``breaking`` in it, for laying out
    long results; ``doprint`` gives it without them."""

    term_break = SUM

    def __init__(self, names=(), bases=None, transpose: str = "top", delimiters: str = "left",
                 max_fraction: float | None = None):
        """``names``: the variables in sight; ``bases``: differential name -> variable name, when
        known; ``transpose``: top, T or prime; ``delimiters``: ``left`` (\\left( grows with its
        contents) or ``plain`` (breakable inside running text)."""
        super().__init__()
        self.names = frozenset(names)
        self.bases = dict(bases or {})
        self.rendered = latex_names(self.names)
        self.transpose = TRANSPOSES[transpose]
        self.delimiters = delimiters
        # a numerator wider than this (pt) is written after its fraction, where lines can break
        self.max_fraction = max_fraction
        # a variable called sigma would read like the logistic function: spell the function out then
        self.sigmoid = r"\operatorname{sigmoid}" if "sigma" in self.names else r"\sigma"

    def precedence(self, e: E.Expr) -> int:
        return latex_precedence(e)

    def doprint(self, e: E.Expr) -> str:
        return breaking.strip(self.marked(e))

    def marked(self, e: E.Expr) -> str:
        return super().doprint(e)

    def wrap(self, text: str) -> str:
        if self.delimiters == "plain":
            return OPEN + f"({text})" + CLOSE
        return OPEN + rf"\left({text}\right)" + CLOSE

    def call(self, name: str, *args: str) -> str:
        """``name(args)``; the parentheses grow only around tall arguments (fractions)."""
        inner = ", ".join(args)
        if r"\frac" in inner and self.delimiters != "plain":
            return name + OPEN + rf"\left({inner}\right)" + CLOSE
        return name + OPEN + f"({inner})" + CLOSE

    # names and dimensions -------------------------------------------------------------------
    def name(self, name: str) -> str:
        if name in self.rendered:
            return self.rendered[name]
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
        base = self.name(self.bases.get(e.name) or differential_base(e, self.names))
        if e.diff == 1:
            return r"\mathrm{d}" + base
        if "_{" not in base:
            return rf"\mathrm{{d}}{base}_{{{e.diff}}}"
        return rf"\mathrm{{d}}{{{base}}}_{{{e.diff}}}"

    def _print_Num(self, e):
        v = e.value
        if isinstance(v, Fraction):
            if v.denominator == 1:
                return _integer_latex(v.numerator)
            decimal = decimal_form(v)
            if decimal is not None:
                return decimal
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
        if isinstance(coef, Fraction) and decimal_form(coef) is not None:
            p, q = coef, 1          # 0.1 x, as typed
        elif isinstance(coef, Fraction):
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
            numerator = self.scalar_product(top)
            if scalars and self.max_fraction and typeset_width(breaking.strip(numerator)) > self.max_fraction:
                # a fraction cannot be broken across lines: a long numerator goes after it, \frac{1}{2} (a - b)
                parts.append(rf"\frac{{{self.print(E.Num(p))}}}{{{self.scalar_product(bottom)}}}")
                parts.extend(self.paren(f, FACTOR) for f in scalars)
            else:
                parts.append(rf"\frac{{{numerator}}}{{{self.scalar_product(bottom)}}}")
        else:
            if p != 1 or not (scalars or matrix):
                parts.append(self.print(E.Num(p)))
            parts.extend(self.paren(f, FACTOR) for f in scalars)
        for f in matrix:
            # products chain with the same value: c A x, s y \odot z
            level = MUL if isinstance(f, (E.MatMul, E.Hadamard, E.Kron)) else FACTOR
            parts.append(self.paren(f, level, known))
        return sign + self.scalar_product(parts, breakable=True)

    def _braced(self, factors) -> list:
        """Factors inside \\frac{...}{...}: the braces group a single factor already."""
        if len(factors) == 1:
            return [self.print(factors[0])]
        return [self.paren(f, FACTOR) for f in factors]

    def scalar_product(self, parts: list, breakable: bool = False) -> str:
        """A number and the factor after it sit side by side (2 x); other factors are set apart (\\,)."""
        mark = BETWEEN_FACTORS if breakable else ""
        out = parts[0]
        for prev, t in zip(parts, parts[1:]):
            if _starts_with_digit(t):
                out += mark + r" \cdot " + t
            elif _NUMBER.match(prev):
                out += " " + t
            else:
                out += mark + r" \, " + t
        return out

    def _print_MatMul(self, e):
        # I and ones inside a product: the neighbours fix the size (A \mathbf{1}, not A \mathbf{1}_{n})
        out = ""
        for i, f in enumerate(e.args):
            text = self.paren(f, FACTOR, True)
            if i:
                # a differential is set apart from what follows it (\mathrm{d}X \, X); digits by \cdot
                out += BETWEEN_FACTORS + (r" \cdot " if _starts_with_digit(text) else
                                 r" \, " if _is_differential(e.args[i - 1]) else " ")
            out += text
        return out

    def _print_Hadamard(self, e):
        known = self._siblings_determine(e.args)
        return (BETWEEN_FACTORS + r" \odot ").join(self.paren(f, FACTOR, known) for f in e.args)

    def _print_Kron(self, e):
        # operands of \otimes are parenthesised unless they are atoms or superscripted atoms
        return self.paren(e.a, POW) + BETWEEN_FACTORS + r" \otimes " + self.paren(e.b, POW)

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
        return self.superscript(e.arg, self.transpose)

    def _print_Inverse(self, e):
        if isinstance(e.arg, E.Transpose):
            if self.transpose == r"\prime":   # A^{-\prime} reads badly: (A')^{-1}
                return self.wrap(self.print(e.arg)) + "^{-1}"
            return self.superscript(e.arg.arg, "-" + self.transpose)
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
        return rf"\mathrm{{{letter}}}{sup}_{{\mathrm{{{e.fn}}}}}" + self.wrap(self.print(e.arg))

    def brackets(self, text: str) -> str:
        """[directions]: plain brackets where a line may break (inline text), else growing ones."""
        if self.delimiters == "plain":
            return OPEN + f"[{text}]" + CLOSE
        return OPEN + rf"\left[{text}\right]" + CLOSE

    def _print_Frechet(self, e):
        directions = ", ".join(self.print(d) for d in e.directions)
        return self._frechet_head("L", e, e.order) + self.brackets(directions)

    def _print_FrechetMatrix(self, e):
        head = self._frechet_head("K", e, len(e.directions) + 1)
        if not e.directions:
            return head
        return head + self.brackets(", ".join(self.print(d) for d in e.directions) + r", \cdot")


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


def latex_names(names) -> dict:
    """name -> its LaTeX, with distinct names typeset distinctly: where two would read alike
    (x1 and x_1 are both x_{1}) each is written out as typed, \\mathit{x1}, \\mathit{x\\_1}."""
    shown = {}
    for n in names:
        body, sub = name_parts(n)
        shown[n] = body if sub is None else f"{body}_{{{sub}}}"
    count: dict = {}
    for t in shown.values():
        count[t] = count.get(t, 0) + 1
    return {n: (t if count[t] == 1 else r"\mathit{" + n.replace("_", r"\_") + "}") for n, t in shown.items()}


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
    # free_vars is cached per distinct node: no walk of the written-out tree
    return {v.name for v in e.free_vars if not v.diff}


def to_latex(e: E.Expr) -> str:
    """A math-mode fragment (no ``$``)."""
    return LatexPrinter(_names_in(e)).doprint(e)


def shared_latex(e: E.Expr, taken=()) -> str:
    """A result with the subexpressions it repeats named: ``body \\quad\\text{where } t_{1} = ...``."""
    definitions, body = shared_form(e, taken)
    return latex_with_definitions(e, definitions, body)


def latex_with_definitions(e: E.Expr, definitions, body: E.Expr) -> str:
    r"""``body \quad\text{where } t_{1} = ...``: ``e`` written as ``body`` and the names it defines."""
    printer = LatexPrinter(_names_in(e))
    text = printer.doprint(body)
    if definitions:
        text += r" \quad \text{where } " + r",\ ".join(
            f"{printer.doprint(var)} = {printer.doprint(d)}" for var, d in definitions)
    return text


# --- how wide a fragment typesets ---------------------------------------------------------------
#
# Line breaking needs the width of typeset math without running TeX.  ``typeset_width`` estimates
# it in points at 10pt Computer Modern from the glyphs and spacing TeX uses (math italic letters,
# binary operators with medium spaces, scripts at 70%, \frac as its wider part); the estimate
# errs on the wide side, and the compile tests check it against pdflatex's own "Overfull \hbox".

ARTICLE_TEXT_WIDTH = 345.0   # pt: \textwidth of the article class at 10pt, on letter and A4 paper
PT_PER_CHARACTER = 5.0       # --latex-width N: N average math glyphs of 10pt type
QUAD = 10.0                  # pt: the indentation of a continuation line (\quad)
MAX_INDENT = 2               # levels: deeper breaks indent no further, or narrow columns run out
UNITS = {"pt": 1.0, "mm": 2.84528, "cm": 28.4528, "in": 72.27, "em": 10.0}
# the estimate is within a few percent of TeX's own widths; lines are filled to this share of the
# width so that the rest absorbs the error
FILL = 0.93
SCRIPT = 0.78                # superscripts and subscripts (7pt type, and the space after them)

_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|[{}^_]|\s+|.", re.S)
_GREEK_WIDTH = {"lower": 6.0, "upper": 8.0}
_NAMED_FUNCTIONS = {"exp", "log", "sin", "cos", "tan", "tanh", "arcsin", "arccos", "arctan", "det"}
_FIXED = {
    "top": 7.8, "prime": 2.8, "infty": 10.0, "nabla": 8.3, "lVert": 5.0, "rVert": 5.0, "lvert": 2.8,
    "rvert": 2.8, "circ": 5.0, ",": 1.67, ";": 2.78, ":": 2.22, "!": -1.67, " ": 3.33, "quad": 10.0,
    "qquad": 20.0, "_": 5.0, "{": 5.0, "}": 5.0, "%": 8.3, "&": 7.8, "#": 8.3, "$": 5.0,
    "allowbreak": 0.0, "\\": 0.0,
}
_BINARY = {"otimes", "odot", "cdot", "times"}
_TEXT_COMMANDS = {"operatorname", "mathrm", "text", "mathit", "mathbf", "mathsf"}
_DELIMITER_SIZES = {"left": 5.2, "right": 5.2, "bigl": 4.8, "bigr": 4.8, "Bigl": 6.0, "Bigr": 6.0}


def _glyph(ch: str) -> float:
    if ch.islower():
        return {"m": 8.8, "w": 7.3, "i": 3.5, "j": 4.2, "l": 3.0, "t": 3.7, "r": 4.6}.get(ch, 5.7)
    if ch.isupper():
        return {"M": 9.8, "W": 9.5, "I": 4.5, "J": 5.5}.get(ch, 8.3)
    if ch.isdigit():
        return 5.0
    if ch in "()[]":
        return 3.9
    if ch in ".,;:|'!":
        return 2.8
    return 7.8


def _text_glyphs(text: str) -> float:
    """Upright text (operator names, \\mathrm, \\text) at 10pt."""
    w = 0.0
    for ch in text:
        w += 3.3 if ch == " " else 7.5 if ch.isupper() else 8.3 if ch == "m" else 2.8 if ch in "il" else 5.6 if ch in "dgm" else 4.9
    return w


class _WidthReader:
    def __init__(self, text: str):
        self.tokens = [t for t in _TOKEN.findall(text)]
        self.i = 0

    def next(self):
        t = self.tokens[self.i] if self.i < len(self.tokens) else None
        self.i += 1
        return t

    def argument(self, scale: float) -> float:
        """One argument: a brace group or a single token."""
        while self.i < len(self.tokens) and self.tokens[self.i].isspace():
            self.i += 1
        if self.i < len(self.tokens) and self.tokens[self.i] == "{":
            self.i += 1
            return self.group(scale)
        return self.group(scale, single=True)

    def raw_argument(self) -> str:
        """The text of a brace group, unread (for \\text{...} and friends)."""
        depth, out = 0, []
        while self.i < len(self.tokens):
            t = self.next()
            if t == "{":
                depth += 1
                if depth == 1:
                    continue
            elif t == "}":
                depth -= 1
                if depth == 0:
                    break
            out.append(t.lstrip("\\") if t.startswith("\\") and len(t) == 2 else t)
            if depth == 0:
                break
        return "".join(out)

    def group(self, scale: float, single: bool = False, after_operand: bool = False) -> float:
        width, prev_operand, script = 0.0, after_operand, None
        while self.i < len(self.tokens):
            t = self.next()
            if t == "}":
                break
            if t.isspace():
                continue
            w, operand = 0.0, True
            if t in ("^", "_"):
                arg = self.argument(scale * SCRIPT)
                if script is not None and script[0] != t:   # x_{1}^{2}: stacked, the wider counts
                    w = max(0.0, arg - script[1])
                    script = None
                else:
                    w, script = arg, (t, arg)
                width += w + 0.5 * scale    # \scriptspace
                if single:
                    break
                continue
            script = None
            if t == "{":
                w = self.group(scale)
            elif t.startswith("\\"):
                name = t[1:]
                if name == "frac":
                    w = max(self.argument(scale), self.argument(scale)) + 2.4 * scale
                elif name == "sqrt":
                    w = self.argument(scale) + 8.5 * scale
                elif name in _TEXT_COMMANDS:
                    text = self.raw_argument()
                    w = _text_glyphs(text.replace("\\", "")) * scale
                    if name == "operatorname":
                        w += 1.67 * scale
                elif name in _DELIMITER_SIZES:
                    self.next()
                    w = _DELIMITER_SIZES[name] * scale
                elif name in _NAMED_FUNCTIONS:
                    w = (_text_glyphs(name) + 1.67) * scale
                elif name in GREEK:
                    w = _GREEK_WIDTH["upper" if name[0].isupper() else "lower"] * scale
                elif name in _BINARY:
                    w = 7.8 * scale + (4.45 if prev_operand and scale == 1.0 else 0.0)
                    operand = False
                elif name in _FIXED:
                    w = _FIXED[name] * scale
                    operand = name not in (",", ";", ":", "!", " ", "quad", "qquad")
                else:
                    w = 8.0 * scale
            elif t in "+-":
                w = 7.8 * scale + (4.45 if prev_operand and scale == 1.0 else 0.0)
                operand = False
            elif t == "=":
                w = 7.8 * scale + (5.56 if scale == 1.0 else 0.0)
                operand = False
            elif t == ",":
                w = (2.8 + 1.67) * scale
                operand = False
            elif t == "&":
                w = 0.0
            else:
                w = _glyph(t) * scale
                operand = t not in "([" and t != "&"
            width += w
            prev_operand = operand
            if single:
                break
        return width


def typeset_width(latex: str, scale: float = 1.0, after_operand: bool = False) -> float:
    """An estimate, in points, of how wide a math fragment typesets in display style at 10pt.
    ``after_operand``: the fragment continues a formula, so a leading + or - is a binary operator
    (spaced), not a sign."""
    return _WidthReader(latex).group(scale, after_operand=after_operand)


@dataclass(frozen=True)
class LatexOptions:
    """How ``--format latex`` writes: the style, the line width in points, the transpose."""

    style: str = "align"
    width: float = ARTICLE_TEXT_WIDTH
    transpose: str = "top"

    @classmethod
    def parse(cls, style: str = "align", width=None, transpose: str = "top") -> "LatexOptions":
        if style not in STYLES:
            raise UsageError(f"unknown LaTeX style {style!r}", hint="use " + ", ".join(STYLES))
        if transpose not in TRANSPOSES:
            raise UsageError(f"unknown LaTeX transpose {transpose!r}", hint="use top, T or prime")
        return cls(style, parse_width(width), transpose)


STYLES = ("align", "inline", "equation", "document")


def parse_width(width) -> float:
    """--latex-width: a number of characters (60) or a length (8.5cm, 90mm, 3.5in, 252pt)."""
    if width is None:
        return ARTICLE_TEXT_WIDTH
    if isinstance(width, (int, float)):
        value, unit = float(width), None
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", str(width))
        if not m or m.group(2) not in ("",) + tuple(UNITS):
            raise UsageError(f"--latex-width {width}: expected a number of characters or a length "
                             "such as 8.5cm", hint="units: " + ", ".join(UNITS))
        value, unit = float(m.group(1)), m.group(2) or None
    points = value * (UNITS[unit] if unit else PT_PER_CHARACTER)
    if not 60 <= points <= 2000:
        raise UsageError(f"--latex-width {width}: {points:.0f}pt is not a usable line width",
                         hint="give between 12 and 400 characters, or a length between 2.2cm and 70cm")
    return points


# --- breaking long results -----------------------------------------------------------------------

# a continuation line that starts with one of these starts with a binary operator: TeX must see
# something before it ({}) to space it as one
_LEADING_OPERATOR = re.compile(r"^(\+|-|\\otimes|\\odot|\\cdot)\s")
_LEADING_SPACE = re.compile(r"^(\\,\s*)+")


def break_lines(marked: str, first_width: float, width: float) -> list:
    """A marked fragment (``LatexPrinter.marked``) as lines: (level, text).  The first line is at
    most ``first_width`` points wide, the others ``width`` less their indentation (``QUAD`` a
    level).  A group that spans lines gets delimiters that can (\\bigl( ... \\bigr))."""

    def measure(text, level):
        # pieces are measured one by one: each as the continuation of what comes before it
        return QUAD * min(level, MAX_INDENT) if text is None else typeset_width(text, after_operand=True)

    tokens = breaking.tokenize(marked, braces=True)
    lines = breaking.layout(tokens, width, measure, first_width)
    spanning = breaking.split_groups(lines)
    if spanning:
        _open_up(tokens, spanning)
    out = []
    for ln in lines:
        text = breaking.line_text(ln, lambda t: "").strip()
        if out:
            text = _LEADING_SPACE.sub("", text)
            if _LEADING_OPERATOR.match(text):
                text = "{} " + text
        out.append((min(ln.indent, MAX_INDENT), text))
    return out


def _open_up(tokens: list, groups: set) -> None:
    """\\left( ... \\right) (or [ ]) of the groups that span lines become \\bigl( ... \\bigr) (\\Bigl when
    the group holds a fraction); the tokens are changed in place."""
    opened: dict = {}
    for i, t in enumerate(tokens):
        if t.kind == "open" and t.group in groups:
            opened[t.group] = i
        elif t.kind == "close" and t.group in opened:
            start = opened.pop(t.group)
            inner = "".join(x.text for x in tokens[start:i])
            size = "Big" if r"\frac" in inner else "big"
            first = next((x for x in tokens[start:i] if x.kind == "text"), None)
            last = next((x for x in reversed(tokens[start:i]) if x.kind == "text"), None)
            if first is not None and first.text.startswith((r"\left(", r"\left[")):
                first.text = rf"\{size}l" + first.text[len(r"\left"):]
            if last is not None and last.text.endswith((r"\right)", r"\right]")):
                last.text = last.text[:-len(r"\right)")] + rf"\{size}r" + last.text[-1]


# A break between factors in running text.  A bare \allowbreak is not enough: a line ending there
# has no stretch (math glue hardly stretches), so TeX finds no acceptable break and sets the
# whole formula as one overfull line.  The glue before the break lets a line ending there fall
# short (ragged, as in \raggedright); the glue after it is dropped at a break and cancels the first
# one where TeX does not break, so the formula reads as written.
RAGGED_BREAK = r"\hskip 0pt plus 1fil\relax\allowbreak\hskip 0pt plus -1fil\relax"


def allow_breaks(marked: str) -> str:
    """For running text: TeX may break an inline formula after a top-level + or -, and here also
    between factors (RAGGED_BREAK); inside braces nothing changes."""
    out, depth, i = [], 0, 0
    while i < len(marked):
        ch = marked[i]
        if ch == "\\" and i + 1 < len(marked):
            out.append(marked[i:i + 2])
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == breaking.FACTOR and depth == 0:
            out.append(RAGGED_BREAK)
            if marked[i + 1:i + 2].isalpha():    # \relax must not run into a letter
                out.append(" ")
        elif ch not in breaking.MARKERS:
            out.append(ch)
        i += 1
    return "".join(out)


# --- one derivation, in each style ---------------------------------------------------------------

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


def _several_labels(derivation, printer: LatexPrinter) -> dict:
    """Labels by result key for several variables: \\nabla_{x} f, J_{x} f, \\nabla^2_{x W} f."""
    names = {v.name: printer.print(v.x) for v in derivation.variables}
    args = ", ".join(names.values())
    first = ", ".join(printer.print(v.dx) for v in derivation.variables)
    second = ", ".join(printer.print(v.dx2) for v in derivation.variables)
    labels = {}
    for r in derivation.results.values():
        sub = " ".join(names[n] for n in r.wrt)
        if r.name == "differential":
            labels[r.key] = f"f'({args})[{first}]"
        elif r.name == "hessian_bilinear":
            labels[r.key] = f"f''({args})[({first}), ({second})]"
        elif r.name == "gradient" and r.label.startswith("cookbook"):
            labels[r.key] = rf"\nabla^{{\text{{cookbook}}}}_{{{sub}}} f"
        elif r.name == "gradient":
            labels[r.key] = rf"\nabla_{{{sub}}} f"
        elif r.name == "jacobian":
            labels[r.key] = f"J_{{{sub}}} f"
        elif r.name == "hessian":
            labels[r.key] = rf"\nabla^2_{{{sub}}} f"
    return labels


def _uses_elementwise(e: E.Expr) -> bool:
    return E.contains(e, lambda n: isinstance(n, (E.Hadamard, E.Elementwise))
                      or (isinstance(n, E.Power) and not n.is_scalar))


@dataclass
class Row:
    """One equation of a block: ``label relation expression``, the expression given marked.
    ``where``: the row defines a name that the result before it uses."""

    label: str
    marked: str
    relation: str = "="
    where: bool = False
    tag: str = ""        # LaTeX set after the row, e.g. \text{(product rule)}


def derivation_printer(derivation, options: LatexOptions | None = None, delimiters: str = "left") -> LatexPrinter:
    """The printer for a whole derivation: every name in it (the shared t1, t2 too) typeset
    distinctly, differentials as d of their variable."""
    options = options or LatexOptions()
    names = set(derivation.typed.symbols) | set(_names_in(derivation.expression))
    for r in derivation.results.values():
        names |= {var.name for var, _ in shared_form(r.printed, r.taken)[0]}
    return LatexPrinter(names, {d.name: x.name for d, x in derivation.directions},
                        transpose=options.transpose, delimiters=delimiters,
                        max_fraction=options.width / 3 if delimiters == "left" else None)


def derivation_rows(derivation, printer: LatexPrinter) -> list:
    """A derivation's results as rows, in the order of every format; a result that names what it
    repeats is followed by a 'where' row per name."""
    labels = _several_labels(derivation, printer) if derivation.several else _labels(derivation, printer)
    rows = []
    for r in documents.ordered_results(derivation):
        key = "cookbook_gradient" if r.name == "gradient" and r.label.startswith("cookbook") else r.key
        key = r.key if derivation.several else key
        definitions, body = shared_form(r.printed, r.taken)
        label = labels[key] if key in labels else r"\text{" + escape_text(r.label) + "}"
        rows.append(Row(label, printer.marked(body)))
        for i, (var, definition) in enumerate(definitions):
            where = r"\text{where } " if i == 0 else ""
            rows.append(Row(where + printer.print(var), printer.marked(definition), where=True))
    return rows


def align_block(rows: list, width: float = ARTICLE_TEXT_WIDTH, environment: str = "align*") -> str:
    """Rows as one ``align*`` (or, with ``environment="split"``, the body of a split): the
    relations aligned, long right-hand sides continued on indented lines so that no line is wider
    than ``width`` points."""
    label_width = max((typeset_width(r.label) for r in rows), default=0.0)
    out = []
    for r in rows:
        rel = typeset_width(" " + r.relation + " ") if r.relation else 0.0
        tag = r" \qquad " + r.tag if r.tag else ""
        room = FILL * width - label_width - (typeset_width(tag) if tag else 0.0)
        lines = break_lines(r.marked, room - rel, room)
        for i, (level, text) in enumerate(lines):
            if i == len(lines) - 1:
                text += tag
            if i == 0:
                out.append(f"  {r.label} &{r.relation} {text}".rstrip() if r.relation else f"  & {text}")
            else:
                out.append("  &" + r"\quad" * level + " " + text)
    return rf"\begin{{{environment}}}" + "\n" + " \\\\\n".join(out) + "\n" + rf"\end{{{environment}}}"


def _comments(derivation) -> list:
    results = documents.ordered_results(derivation)
    lines = [f"% shapes: {documents.declarations_text(derivation)}"]
    lines += [f"% {r.name}: {r.note}" for r in results if r.note]
    if any(_uses_elementwise(r.printed) for r in results):
        lines.append(ELEMENTWISE_LEGEND)
    return lines


def _with_definitions(rows: list) -> list:
    """Rows grouped: each result with the 'where' rows after it."""
    groups: list = []
    for r in rows:
        if r.where and groups:
            groups[-1].append(r)
        else:
            groups.append([r])
    return groups


def equation_blocks(rows: list, width: float) -> list:
    """Each result in its own ``equation*``; a long one, or one with 'where' rows, as a split."""
    blocks = []
    for group in _with_definitions(rows):
        first = group[0]
        room = FILL * width - typeset_width(first.label)
        if len(group) == 1 and len(break_lines(first.marked, room - typeset_width(" = "), room)) == 1:
            lead = f"{first.label} {first.relation} " if first.relation else ""
            text = f"  {lead}{breaking.strip(first.marked)}"
        else:
            text = align_block(group, width, environment="split")
        blocks.append("\\begin{equation*}\n" + text + "\n\\end{equation*}")
    return blocks


def inline_lines(rows: list, width: float = ARTICLE_TEXT_WIDTH) -> list:
    """``$label = rhs$`` lines for running text, a result's 'where' definitions after it."""
    out = []
    for group in _with_definitions(rows):
        parts = []
        for r in group:
            label = r.label.replace(r"\text{where } ", "")
            lead = f"{label} {r.relation} " if r.relation else ""
            # a short formula reads as written; a long one may break between factors too
            text = breaking.strip(r.marked)
            if typeset_width(lead + text) > width / 2:
                text = allow_breaks(r.marked)
            parts.append(f"${lead}{text}$")
        out.append(parts[0] + (", where " + ", ".join(parts[1:]) if len(parts) > 1 else ""))
    return out


def render_latex(derivation, options: LatexOptions | None = None, comments=()) -> str:
    """``--format latex`` for one derivation, in the style asked for; ``comments`` (the reports
    of --check and --verify) as % lines at the end, inside the document in the document style."""
    text = latex_document([derivation], options)
    if not comments:
        return text
    lines = "".join(f"% {c}\n" for c in comments)
    end = "\\end{document}\n"
    if text.endswith(end):
        return text[:-len(end)] + lines + end
    return text + lines


def document_block(derivation) -> str:
    """The ``align`` style: comment lines, then one ``align*`` environment (amsmath)."""
    return render_latex(derivation, LatexOptions())


def entry_latex(derivation, options: LatexOptions) -> str:
    """One derivation's LaTeX, without a preamble, in ``options.style``."""
    if options.style == "inline":
        printer = derivation_printer(derivation, options, delimiters="plain")
        return "\n".join(inline_lines(derivation_rows(derivation, printer), options.width)) + "\n"
    printer = derivation_printer(derivation, options)
    rows = derivation_rows(derivation, printer)
    if options.style == "align":
        return "\n".join(_comments(derivation) + [align_block(rows, options.width)]) + "\n"
    if options.style == "equation":
        return "\n".join(_comments(derivation) + equation_blocks(rows, options.width)) + "\n"
    return _document_body(derivation, printer, rows, options)


def notebook_latex(derivation) -> str:
    """For Jupyter (MathJax): the align* block alone, no comment lines."""
    printer = derivation_printer(derivation)
    return align_block(derivation_rows(derivation, printer))


def result_latex(result, style: str, options: LatexOptions | None = None) -> str:
    """One result (``api.Result``) on its own: ``inline`` as $...$ (breakable in running text),
    ``equation`` in an equation* (a split when it is long); ``align`` as a one-row align*."""
    options = LatexOptions.parse(style, None, "top") if options is None else options
    names = _names_in(result.printed) | {var.name for var, _ in shared_form(result.printed, result.taken)[0]}
    printer = LatexPrinter(names, transpose=options.transpose,
                           delimiters="plain" if style == "inline" else "left",
                           max_fraction=None if style == "inline" else options.width / 3)
    definitions, body = shared_form(result.printed, result.taken)
    rows = [Row("", printer.marked(body), relation="")]
    rows += [Row((r"\text{where } " if i == 0 else "") + printer.print(var), printer.marked(d), where=True)
             for i, (var, d) in enumerate(definitions)]
    if style == "inline":
        return "\n".join(inline_lines(rows, options.width))
    if style == "align":
        return align_block(rows, options.width)
    if style == "equation":
        return "\n".join(equation_blocks(rows, options.width))
    raise UsageError(f"a single result has no {style!r} style", hint="use inline, equation or align; "
                     "Derivation.latex(style='document') gives a document")


PREAMBLE = "\\documentclass{article}\n\\usepackage{amsmath}\n\\allowdisplaybreaks\n"


def latex_document(entries, options: LatexOptions | None = None) -> str:
    """LaTeX for several derivations at once (a batch, say): ``entries`` are derivations or
    (heading, derivation) pairs.  The ``document`` style gives one complete file that compiles
    with pdflatex; the others give fragments to paste or ``\\input``, with a heading
    (``\\paragraph*``) before each entry that has one."""
    options = options or LatexOptions()
    parts = []
    for entry in entries:
        heading, derivation = entry if isinstance(entry, tuple) else (None, entry)
        if heading is not None:
            command = r"\section*" if options.style == "document" else r"\paragraph*"
            parts.append(f"{command}{{{escape_text(heading)}}}\n")
        parts.append(entry_latex(derivation, options))
    body = "\n".join(parts) if len(parts) > 1 else "".join(parts)
    if options.style != "document":
        return body
    # \\sloppy: headings and notes in words break at spaces rather than run into the margin
    preamble = PREAMBLE
    if options.width != ARTICLE_TEXT_WIDTH:
        preamble += f"\\setlength{{\\textwidth}}{{{options.width:.1f}pt}}\n"
    return (preamble + f"% written by matcalc {__version__}\n\\begin{{document}}\n\\sloppy\n\n" + body
            + "\n\\end{document}\n")


def _document_body(derivation, printer: LatexPrinter, rows: list, options: LatexOptions) -> str:
    """The function and its shapes, the results, and the conventions as a small note."""
    x = ", ".join(printer.print(v.x) for v in derivation.variables)
    f_row = Row(f"f({x})", printer.marked(derivation.expression))
    shapes = ", ".join(f"${printer.name(n)}$ {_shape_words(sym, printer)}"
                       + ("" if sym.declared else " (inferred)")
                       for n, sym in derivation.typed.symbols.items())
    out = [r"\noindent The function", align_block([f_row], options.width),
           rf"\noindent with {shapes}; its derivatives with respect to ${x}$:",
           align_block(rows, options.width)]
    results = documents.ordered_results(derivation)
    notes = [r.note for r in results if r.note]
    if any(_uses_elementwise(r.printed) for r in results):
        notes.append(r"$\odot$ is the elementwise product, $X^{\circ k}$ the elementwise power, "
                     r"and functions of vectors and matrices act elementwise")
    if notes:
        out.append(r"\begin{small}\noindent " + r"\\ ".join(
            n if n.startswith("$") else escape_text(n) for n in notes) + r"\end{small}")
    return "\n".join(out) + "\n"


def _shape_words(sym, printer: LatexPrinter) -> str:
    r, c = sym.shape
    if sym.symmetric:
        return rf"symmetric (${printer.size(r, c)}$)"
    if r == 1 and c == 1:
        return "scalar"
    if c == 1:
        return rf"a vector (${printer.dim(r)}$)"
    return rf"a matrix (${printer.size(r, c)}$)"


_TEXT_ESCAPES = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#", "%": r"\%",
    "_": r"\_", "^": r"\textasciicircum{}", "~": r"\textasciitilde{}", "<": r"\textless{}",
    ">": r"\textgreater{}", "|": r"\textbar{}",
}


def escape_text(text: str) -> str:
    """Any text as LaTeX text that compiles with pdflatex: specials escaped, characters outside
    ASCII spelled without their accents (or as ?), control characters dropped."""
    import unicodedata

    out = []
    for ch in text:
        if ch in _TEXT_ESCAPES:
            out.append(_TEXT_ESCAPES[ch])
        elif " " <= ch <= "~":
            out.append(ch)
        elif ch in "\t\n":
            out.append(" ")
        elif ord(ch) >= 128:
            plain = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
            out.append(escape_text(plain) if plain else "?")
    return "".join(out)
