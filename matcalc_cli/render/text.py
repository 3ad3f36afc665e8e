"""IR -> the input language.  Output re-parses to the same expression.

One ``_print_X`` method per node kind; parentheses are decided in one place (``paren``) from the
precedence table.  The size of ``I`` (and of a broadcast scalar) is written out only where the
surrounding expression would not determine it: ``kron(I(n), X)`` but ``A + I``.
"""

from __future__ import annotations

from fractions import Fraction

from .. import expr as E
from .printer import ADD, ATOM, MUL, NEG, POSTFIX, POW, Printer  # noqa: F401 (re-exported)


def precedence(e: E.Expr) -> int:
    if isinstance(e, E.Add):
        return ADD
    if isinstance(e, E.Mul):
        c = e.args[0]
        if isinstance(c, E.Num) and c.value < 0:
            return NEG if len(e.args) == 2 and _is_simple_negation(e) else MUL
        return MUL
    if isinstance(e, (E.MatMul, E.Hadamard)):
        return MUL
    if isinstance(e, E.Num):
        v = e.value
        if v < 0:
            return NEG
        if isinstance(v, Fraction) and v.denominator != 1:
            return MUL
        return ATOM
    if isinstance(e, E.Power):
        if isinstance(e.exponent, E.Num) and e.exponent.value == -1:
            return MUL
        return POW
    if isinstance(e, E.MatPow):
        return POW
    if isinstance(e, E.Transpose):
        return POSTFIX
    return ATOM


def _is_simple_negation(e: E.Mul) -> bool:
    return e.args[0].value == -1 and not isinstance(e.args[1], E.Power)


class TextPrinter(Printer):
    """Prints in the input language."""

    mul_sep = " * "

    def precedence(self, e: E.Expr) -> int:
        return precedence(e)

    def dim(self, d) -> str:
        return str(d)

    # leaves ---------------------------------------------------------------------------------
    def _print_Var(self, e):
        return e.name

    def _print_Num(self, e):
        v = e.value
        if isinstance(v, Fraction):
            if v.denominator == 1:
                return _integer_text(v.numerator)
            return _decimal_text(v) or f"{v.numerator}/{v.denominator}"
        return _float_text(v)

    def _print_Identity(self, e):
        return "I" if self.shape_known[-1] else f"I({self.dim(e.n)})"

    def _print_Zero(self, e):
        return f"zeros({self.dim(e.rows)}, {self.dim(e.cols)})"

    def _print_Ones(self, e):
        if self.shape_known[-1]:
            return "1"
        if e.cols == 1:
            return f"ones({self.dim(e.rows)})"
        if e.rows == 1:
            return f"ones({self.dim(e.cols)})'"
        return f"ones({self.dim(e.rows)}, {self.dim(e.cols)})"

    def _print_Commutation(self, e):
        return f"commutation({self.dim(e.m)}, {self.dim(e.n)})"

    # products ------------------------------------------------------------------------------
    def _print_Mul(self, e):
        args = list(e.args)
        coef = args.pop(0).value if isinstance(args[0], E.Num) else Fraction(1)
        numer, denom = [], []
        for f in args:
            if f.is_scalar and isinstance(f, E.Power) and isinstance(f.exponent, E.Num) and f.exponent.value < 0:
                denom.append(E.power(f.base, E.Num(-f.exponent.value)))
            else:
                numer.append(f)
        # a scalar differential reads last: (2 * x * A) * dx
        numer.sort(key=lambda f: isinstance(f, E.Var) and f.diff > 0)
        known = self.shape_known[-1]
        if isinstance(coef, Fraction) and coef.denominator not in (1, 2) and _decimal_text(coef):
            p, q = coef, 1          # 0.1 * x, as written
        elif isinstance(coef, Fraction):
            p, q = coef.numerator, coef.denominator   # (A + A') / 2, x / 3
        else:
            p, q = coef, 1
        sign = ""
        if p < 0:
            sign, p = "-", -p
        if p == 1 and not denom and q == 1 and len(numer) == 1 and isinstance(numer[0], (E.MatMul, E.Hadamard)):
            # -a * b means -(a * b): no parentheses needed
            return sign + self.print(numer[0], known)
        parts = [] if p == 1 and numer else [self.print(E.Num(p))]
        for f in numer:
            if isinstance(f, E.Ones) and known:
                continue  # a broadcast scalar: the sum around it fixes the shape
            # products chain left to right with the same value: c * A * x, s * y .* z
            level = MUL if isinstance(f, (E.MatMul, E.Hadamard)) else MUL + 1
            parts.append(self.paren(f, level, known))
        text = self.mul_sep.join(parts) if parts else "1"
        below = ([str(q)] if q != 1 else []) + [self.paren(d, MUL + 1) for d in denom]
        if len(below) == 1:
            text += " / " + below[0]
        elif below:
            # one denominator, as written: x / (2 * s), not x / s / 2
            text += " / (" + self.mul_sep.join(below) + ")"
        return sign + text

    def _print_MatMul(self, e):
        # neighbours fix the size of I; ones(n) stays explicit (a bare 1 would be a scalar)
        return self.mul_sep.join(self.paren(f, MUL + 1, isinstance(f, E.Identity)) for f in e.args)

    def _print_Hadamard(self, e):
        known = self._siblings_determine(e.args)
        numer = [f for f in e.args if not _is_reciprocal(f)]
        denom = [E.power(f.base, E.Num(-f.exponent.value)) for f in e.args if _is_reciprocal(f)]
        text = " .* ".join(self.paren(f, MUL + 1, known) for f in numer) if numer else "1"
        for d in denom:
            text += " ./ " + self.paren(d, MUL + 1, known)
        return text

    # powers ------------------------------------------------------------------------------------
    def _print_Power(self, e):
        if isinstance(e.exponent, E.Num) and e.exponent.value == -1:
            op = " / " if e.is_scalar else " ./ "
            return "1" + op + self.paren(e.base, MUL + 1)
        op = "^" if e.is_scalar else ".^"
        return self.paren(e.base, POSTFIX) + op + self.exponent(e.exponent)

    def exponent(self, x: E.Expr) -> str:
        if isinstance(x, E.Num) and isinstance(x.value, Fraction) and x.value.denominator == 1:
            return _integer_text(x.value.numerator)
        return self.paren(x, ATOM)

    def _print_MatPow(self, e):
        return self.paren(e.arg, POSTFIX) + "^" + str(e.k)

    def _print_Transpose(self, e):
        return self.paren(e.arg, POSTFIX) + "'"

    # functions ----------------------------------------------------------------------------------
    def call(self, name, *args) -> str:
        return f"{name}(" + ", ".join(args) + ")"

    def _print_Inverse(self, e):
        return self.call("inv", self.print(e.arg))

    def _print_Trace(self, e):
        return self.call("tr", self.print(e.arg))

    def _print_Det(self, e):
        return self.call("det", self.print(e.arg))

    def _print_LogDet(self, e):
        return self.call("logdet", self.print(e.arg))

    def _print_Adj(self, e):
        return self.call("adj", self.print(e.arg))

    def _print_Diag(self, e):
        return self.call("diag", self.print(e.arg))

    def _print_DiagPart(self, e):
        return self.call("diag", self.print(e.arg))

    def _print_Vec(self, e):
        return self.call("vec", self.print(e.arg))

    def _print_Sum(self, e):
        return self.call("sum", self.print(e.arg))

    def _print_Norm1(self, e):
        return self.call("norm1", self.print(e.arg))

    def _print_Norm2(self, e):
        return self.call("norm2", self.print(e.arg))

    def _print_Kron(self, e):
        return self.call("kron", self.print(e.a), self.print(e.b))

    def _print_Reshape(self, e):
        return self.call("reshape", self.print(e.arg), self.dim(e.rows), self.dim(e.cols))

    def _print_Elementwise(self, e):
        return self.call(e.fn, self.print(e.arg))

    # matrix functions: expm(X), dexpm(X, E), d2expm(X, E1, E2), jexpm(X, E1) ---------------------
    def _print_MatFun(self, e):
        return self.call(e.fn, self.print(e.arg))

    def _print_Frechet(self, e):
        return self.call(E.frechet_name(e.fn, e.order), *[self.print(c) for c in e.children])

    def _print_FrechetMatrix(self, e):
        return self.call(E.frechet_matrix_name(e.fn), *[self.print(c) for c in e.children])


def _is_reciprocal(f: E.Expr) -> bool:
    return isinstance(f, E.Power) and isinstance(f.exponent, E.Num) and f.exponent.value < 0


def _decimal_text(v: Fraction):
    """0.25 for 1/4, 0.001 for 1/1000; None when the decimal does not end soon (1/3)."""
    q = v.denominator
    for k in range(1, 13):
        if (10 ** k) % q == 0:
            digits = abs(v.numerator) * (10 ** k // q)
            text = str(digits).rjust(k + 1, "0")
            text = (text[:-k] + "." + text[-k:]).rstrip("0").rstrip(".")
            return ("-" if v < 0 else "") + text
    return _scientific_text(v)


def _scientific_text(v: Fraction):
    """Exact scientific notation, 1e-300 or 2.5e40, for a terminating decimal; None otherwise."""
    q, a, b = v.denominator, 0, 0
    while q % 2 == 0:
        q, a = q // 2, a + 1
    while q % 5 == 0:
        q, b = q // 5, b + 1
    if q != 1:
        return None
    k = max(a, b)
    digits = str(abs(v.numerator) * 2 ** (k - a) * 5 ** (k - b))   # v = digits / 10^k
    mantissa = digits.rstrip("0") or "0"
    exp10 = (len(digits) - len(mantissa)) - k + len(mantissa) - 1
    shown = mantissa[0] + ("." + mantissa[1:] if len(mantissa) > 1 else "")
    return ("-" if v < 0 else "") + f"{shown}e{exp10}"


def _integer_text(n: int) -> str:
    """An integer's digits, or exact scientific notation when that is much shorter (1e300)."""
    text = str(n)
    if len(text) > 21:
        short = _scientific_text(Fraction(n))
        if short and len(short) < len(text):
            return short
    return text


def _float_text(v: float) -> str:
    text = repr(v)
    if "e" in text or "E" in text:
        mant, exp = text.split("e")
        return f"{mant}e{int(exp)}"
    return text


def to_text(e: E.Expr) -> str:
    return TextPrinter().doprint(e)


E.Expr.text_printer = staticmethod(to_text)
