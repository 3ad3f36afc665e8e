r"""LaTeX output: the notation of each node kind, derivations read back to the same numbers, and
documents that compile with plain pdflatex + amsmath.

The read-back test is the one that checks the printer's parentheses: a small reader (a lark grammar
for exactly the LaTeX the printer writes) turns each result back into the input language, matcalc
parses it, and the numbers must match the original expression's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import lru_cache

import numpy as np
import pytest
from click.testing import CliRunner
from lark import Lark, Transformer, v_args

from fractions import Fraction

from matcalc_cli import derive
from matcalc_cli import expr as E
from matcalc_cli import numeric
from matcalc_cli.cli import main
from matcalc_cli.dims import Dim
from matcalc_cli.render import documents
from matcalc_cli.render.latex import LatexPrinter, differential_base, document_block, name_parts, to_latex
from matcalc_cli.shapes import Symbol, check
from matcalc_cli.syntax import parse

# --- a few variables ---------------------------------------------------------------------------------

x = E.Var("x", ("n", 1))
y = E.Var("y", ("n", 1))
A = E.Var("A", ("n", "n"))
X = E.Var("X", ("n", "n"))
B = E.Var("B", ("m", "n"))
s = E.Var("s", (1, 1))
c = E.Var("c", (1, 1))
dX = E.Var("dX", ("n", "n"), diff=1)


def tex(e: E.Expr) -> str:
    return to_latex(e)


# --- notation, one node kind (or one rule) at a time ------------------------------------------------

def _vec_mn():
    return E.Var("v", (Dim.of("m") * Dim.of("n"), 1))


NOTATION = [
    # leaves
    ("identity_alone_shows_its_size", lambda: E.identity("n"), r"I_{n}"),
    ("identity_in_a_sum_is_bare", lambda: E.add(A, E.identity("n")), r"A + I"),
    ("identity_in_kron_shows_its_size", lambda: E.kron(E.identity("n"), A), r"I_{n} \otimes A"),
    ("ones_vector", lambda: E.Ones(("n", 1)), r"\mathbf{1}_{n}"),
    ("ones_matrix", lambda: E.Ones(("m", "n")), r"\mathbf{1}_{m \times n}"),
    ("ones_in_a_product_is_bare", lambda: E.matmul(B, E.Ones(("n", 1))), r"B \mathbf{1}"),
    ("ones_broadcast_in_a_sum", lambda: E.sub(E.Ones(("n", 1)), x), r"\mathbf{1} - x"),
    ("zeros", lambda: E.Zero(("m", "n")), r"0_{m \times n}"),
    ("commutation", lambda: E.commutation("m", "n"), r"K_{m,n}"),
    ("integer", lambda: E.Num(7), "7"),
    ("rational", lambda: E.Num(Fraction(3, 4)), r"\frac{3}{4}"),
    ("negative_rational", lambda: E.Num(Fraction(-3, 4)), r"-\frac{3}{4}"),
    ("half", lambda: E.Num(Fraction(1, 2)), r"\frac{1}{2}"),
    ("decimal", lambda: E.Num(Fraction("0.1")), "0.1"),
    ("long_decimal", lambda: E.Num(Fraction("0.20000003")), "0.20000003"),
    ("scientific", lambda: E.Num(Fraction("1.5e-8")), r"1.5 \cdot 10^{-8}"),
    ("decimal_coefficient", lambda: E.mul(E.Num(Fraction("0.1")), s, c), r"0.1 c \, s"),
    # postfix and superscripts
    ("transpose", lambda: E.transpose(B), r"B^{\top}"),
    ("inverse", lambda: E.inverse(A), r"A^{-1}"),
    ("inverse_of_transpose", lambda: E.Inverse(E.Transpose(A, A.shape), A.shape), r"A^{-\top}"),
    ("matrix_power", lambda: E.matpow(A, 3), r"A^{3}"),
    ("power_of_inverse", lambda: E.MatPow(E.inverse(A), 2), r"A^{-2}"),
    ("power_of_transpose_is_parenthesised", lambda: E.MatPow(E.Transpose(A, A.shape), 2),
     r"\left(A^{\top}\right)^{2}"),
    ("transpose_of_product_is_parenthesised", lambda: E.Transpose(E.MatMul((A, X), A.shape), A.shape),
     r"\left(A X\right)^{\top}"),
    ("scalar_power", lambda: E.power(s, E.Num(2)), r"s^{2}"),
    ("hadamard_power", lambda: E.power(x, E.Num(2)), r"x^{\circ 2}"),
    ("hadamard_power_symbolic", lambda: E.power(X, s), r"X^{\circ s}"),
    ("sqrt_under_a_power_is_parenthesised", lambda: E.power(E.elementwise("sqrt", x), s),
     r"\left(\sqrt{x}\right)^{\circ s}"),
    ("negative_base_is_parenthesised", lambda: E.Power(E.Num(-2), s), r"\left(-2\right)^{s}"),
    # products
    ("matrix_product_is_juxtaposition", lambda: E.matmul(A, X, x), r"A X x"),
    ("differential_is_set_apart", lambda: E.matmul(dX, X), r"\mathrm{d}X \, X"),
    ("scalar_multiple", lambda: E.scale(2, x), r"2 x"),
    ("scalar_factor_is_set_apart", lambda: E.mul(s, x), r"s \, x"),
    ("scalar_times_matrix_product", lambda: E.mul(s, E.matmul(A, x)), r"s \, A x"),
    ("digit_after_number_uses_cdot", lambda: E.Mul((E.Num(2), E.Power(E.Num(3), s)), (1, 1)),
     r"2 \cdot 3^{s}"),
    ("rational_coefficient", lambda: E.scale(Fraction(1, 2), x), r"\frac{1}{2} x"),
    ("negative_rational_coefficient", lambda: E.scale(Fraction(-3, 2), x), r"-\frac{3}{2} x"),
    ("division_by_a_scalar", lambda: E.mul(s, E.power(c, E.Num(-1))), r"\frac{s}{c}"),
    ("scalar_over_number", lambda: E.scale(Fraction(1, 2), s), r"\frac{s}{2}"),
    ("reciprocal", lambda: E.power(s, E.Num(-1)), r"\frac{1}{s}"),
    ("vector_over_scalar", lambda: E.mul(E.power(s, E.Num(-1)), x), r"\frac{1}{s} \, x"),
    ("sum_in_a_product_is_parenthesised", lambda: E.matmul(E.add(A, X), x), r"\left(A + X\right) x"),
    ("negated_product_needs_no_parentheses", lambda: E.neg(E.matmul(A, x)), r"-A x"),
    ("negative_operand_of_hadamard_is_parenthesised",
     lambda: E.Hadamard((E.Mul((E.Num(-1), x), x.shape), y), x.shape), r"\left(-x\right) \odot y"),
    ("subtraction", lambda: E.sub(x, E.scale(2, y)), r"x - 2 y"),
    ("subtraction_of_a_sum_is_parenthesised",
     lambda: E.Add((x, E.Mul((E.Num(-1), E.Add((y, x), x.shape)), x.shape)), x.shape), r"x - \left(y + x\right)"),
    ("hadamard", lambda: E.hadamard(x, y), r"x \odot y"),
    ("elementwise_division", lambda: E.hadamard(x, E.power(y, E.Num(-1))), r"x \odot y^{\circ -1}"),
    ("kron", lambda: E.kron(A, X), r"A \otimes X"),
    ("kron_of_products_is_parenthesised", lambda: E.Kron(E.matmul(A, X), A),
     r"\left(A X\right) \otimes A"),
    ("kron_in_a_product_is_parenthesised",
     lambda: E.MatMul((E.Kron(A, X), E.commutation("n", "n")), E.Kron(A, X).shape),
     r"\left(A \otimes X\right) K_{n,n}"),
    # functions
    ("trace", lambda: E.trace(A), r"\operatorname{tr}(A)"),
    ("det", lambda: E.det(A), r"\det(A)"),
    ("logdet", lambda: E.logdet(A), r"\log\det(A)"),
    ("adjugate", lambda: E.adj(A), r"\operatorname{adj}(A)"),
    ("diag_of_vector", lambda: E.diag(x), r"\operatorname{diag}(x)"),
    ("diagonal_of_matrix", lambda: E.diag_part(A), r"\operatorname{diag}(A)"),
    ("vec", lambda: E.vec(B), r"\operatorname{vec}(B)"),
    ("sum", lambda: E.sum_(B), r"\operatorname{sum}(B)"),
    ("norm1_vector", lambda: E.norm1(x), r"\lVert x \rVert_1"),
    ("norm1_matrix_is_entrywise", lambda: E.norm1(B), r"\lVert \operatorname{vec}(B) \rVert_1"),
    ("norm2_vector", lambda: E.norm2(x), r"\lVert x \rVert_2"),
    ("frobenius_norm", lambda: E.norm2(B), r"\lVert B \rVert_F"),
    ("squared_norm", lambda: E.power(E.norm2(x), E.Num(2)), r"\lVert x \rVert_2^{2}"),
    ("reshape", lambda: E.reshape(_vec_mn(), "m", "n"), r"\operatorname{reshape}(v, m, n)"),
    ("sqrt", lambda: E.elementwise("sqrt", x), r"\sqrt{x}"),
    ("sigmoid", lambda: E.elementwise("sigmoid", x), r"\sigma(x)"),
    ("abs", lambda: E.elementwise("abs", x), r"\lvert x \rvert"),
    ("relu", lambda: E.elementwise("relu", x), r"\operatorname{relu}(x)"),
    ("sign", lambda: E.elementwise("sign", x), r"\operatorname{sign}(x)"),
    ("step", lambda: E.elementwise("step", x), r"\operatorname{step}(x)"),
    ("tall_argument_gets_growing_parentheses", lambda: E.elementwise("exp", E.mul(s, E.power(c, E.Num(-1)))),
     r"\exp\left(\frac{s}{c}\right)"),
] + [
    (f"function_{fn}", (lambda fn=fn: E.elementwise(fn, x)), rf"\{fn}(x)")
    for fn in ("exp", "log", "sin", "cos", "tan", "tanh", "arcsin", "arccos", "arctan")
]


@pytest.mark.parametrize("build, expected", [pytest.param(b, t, id=i) for i, b, t in NOTATION])
def test_notation(build, expected):
    assert tex(build()) == expected


def test_no_dollar_signs_in_fragments():
    assert "$" not in tex(E.add(E.trace(A), E.det(X)))


# --- names ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("x", "x"), ("X", "X"), ("alpha", r"\alpha"), ("lambda", r"\lambda"), ("Sigma", r"\Sigma"),
    ("x1", "x_{1}"), ("x12", "x_{12}"), ("alpha2", r"\alpha_{2}"), ("theta_0", r"\theta_{0}"),
    ("x_i", "x_{i}"), ("w_hat", r"w_{\mathrm{hat}}"), ("loss", r"\mathit{loss}"), ("xy1", r"\mathit{xy}_{1}"),
    ("x_y_z", r"\mathit{x\_y\_z}"), ("_x", r"\mathit{\_x}"), ("my_var", r"\mathit{my\_var}"),
])
def test_variable_names(name, expected):
    assert tex(E.Var(name, ("n", 1))) == expected


@pytest.mark.parametrize("var, expected", [
    (E.Var("dx", ("n", 1), diff=1), r"\mathrm{d}x"),
    (E.Var("dx2", ("n", 1), diff=2), r"\mathrm{d}x_{2}"),
    (E.Var("dX", ("n", "n"), diff=1), r"\mathrm{d}X"),
    (E.Var("dalpha", (1, 1), diff=1), r"\mathrm{d}\alpha"),
    (E.Var("dx1", ("n", 1), diff=1), r"\mathrm{d}x_{1}"),
    (E.Var("dx12", ("n", 1), diff=2), r"\mathrm{d}{x_{1}}_{2}"),
    (E.Var("dx_1", ("n", 1), diff=1), r"\mathrm{d}x_{1}"),       # the differential of a variable x_1
    (E.Var("dX2_1", ("n", "n"), diff=2), r"\mathrm{d}X_{2}"),    # dX2 was taken by the program
])
def test_differential_names(var, expected):
    assert tex(var) == expected


def test_differential_renamed_because_the_program_has_dx():
    """api names the differential dx_1 when the program already uses dx; it is still d x."""
    user_dx = E.Var("dx", ("n", 1))
    dx = E.Var("dx_1", ("n", 1), diff=1)
    assert differential_base(dx, {"dx", "x"}) == "x"
    assert tex(E.matmul(E.transpose(user_dx), dx)) == r"\mathit{dx}^{\top} \mathrm{d}x"


def test_name_parts():
    assert name_parts("x1") == ("x", "1")
    assert name_parts("beta") == (r"\beta", None)


def test_variable_named_sigma_keeps_the_logistic_function_apart():
    sigma = E.Var("sigma", (1, 1))
    assert tex(E.elementwise("sigmoid", E.mul(sigma, x))) == r"\operatorname{sigmoid}(\sigma \, x)"
    assert tex(E.elementwise("sigmoid", x)) == r"\sigma(x)"


def test_dimension_products_in_sizes():
    assert tex(E.identity(Dim.of("m") * Dim.of("n"))) == r"I_{m n}"
    assert tex(E.identity(Dim.of("n") * Dim.of("n"))) == r"I_{n^{2}}"
    assert tex(E.identity(3)) == r"I_{3}"


# --- derivations ------------------------------------------------------------------------------------

def rows(block: str) -> list:
    """The rows of the align* environment: (label, right-hand side)."""
    body = block.split(r"\begin{align*}")[1].split(r"\end{align*}")[0]
    out = []
    for line in body.strip().split("\n"):
        line = line.strip()
        if line.endswith(r"\\"):
            line = line[:-2].strip()
        if line.startswith("&"):   # a continuation line of a long result: joined back
            text = re.sub(r"^&(\\quad)*\s*(\{\}\s*)?", "", line)
            out[-1] = (out[-1][0], out[-1][1] + " " + text)
            continue
        label, rhs = line.split(" &= ")
        out.append((label, rhs))
    return out


def test_xAx():
    d = derive("x: vector(n); A: matrix(n, n); x' * A * x", wrt="x", gradient=True, hessian=True)
    r = dict(rows(document_block(d)))
    assert r[r"f'(x)[\mathrm{d}x]"] == r"x^{\top} \left(A + A^{\top}\right) \mathrm{d}x"
    assert r[r"\nabla f(x)"] == r"\left(A + A^{\top}\right) x"
    assert r[r"f''(x)[\mathrm{d}x, \mathrm{d}x_{2}]"] == r"\mathrm{d}x^{\top} \, \left(A + A^{\top}\right) \mathrm{d}x_{2}"
    assert r[r"\nabla^2 f(x)"] == r"A + A^{\top}"


def test_logdet():
    d = derive("X: symmetric(n); logdet(X)", wrt="X", gradient=True, hessian=True)
    block = document_block(d)
    r = dict(rows(block))
    assert r[r"\nabla f(X)"] == r"X^{-1}"
    assert r[r"f'(X)[\mathrm{d}X]"] == r"\operatorname{tr}(X^{-1} \mathrm{d}X)"
    hessian = r[r"\nabla^2 f(X)"]
    assert r"X^{-1} \otimes X^{-1}" in hessian and "K_{n,n}" in hessian and r"\frac{1}{2}" in hessian
    assert "% shapes: X: symmetric(n)" in block


def test_square_jacobian():
    d = derive("X: matrix(n, n); X^2", wrt="X", jacobian=True)
    r = dict(rows(document_block(d)))
    assert r[r"f'(X)[\mathrm{d}X]"] == r"X \mathrm{d}X + \mathrm{d}X \, X"
    assert r["J_f(X)"] == r"I_{n} \otimes X + X^{\top} \otimes I_{n}"


def test_logistic_loss():
    d = derive("w: vector(n); X: matrix(m, n); y: vector(m); sum(log(1 + exp(-y .* (X * w))))",
               wrt="w", gradient=True, hessian=True)
    block = document_block(d)
    r = dict(rows(block))
    g = r[r"\nabla f(w)"]
    assert g.startswith(r"-X^{\top}") and r"\sigma(" in g and r"\odot" in g
    assert r"X^{\top} \operatorname{diag}(" in r[r"\nabla^2 f(w)"]
    assert r"\odot: elementwise product" in block  # the legend, since \odot is used


def test_inverse_jacobian():
    d = derive("X: matrix(n, n); inv(X)", wrt="X", jacobian=True)
    r = dict(rows(document_block(d)))
    assert r[r"f'(X)[\mathrm{d}X]"] == r"-X^{-1} \mathrm{d}X \, X^{-1}"
    assert r["J_f(X)"] == r"-X^{-\top} \otimes X^{-1}"


def test_det_hessian():
    d = derive("X: matrix(n, n); det(X)", wrt="X", gradient=True, hessian=True)
    r = dict(rows(document_block(d)))
    assert r[r"\nabla f(X)"] == r"\det(X) \, X^{-\top}"
    bilinear = d.hessian_bilinear.latex()   # in one piece (the block breaks it across two lines)
    assert bilinear.startswith(r"\det(X) \, \left(")
    assert r"\operatorname{tr}(X^{-1} \mathrm{d}X \, X^{-1} \mathrm{d}X_{2})" in bilinear
    assert "K_{n,n}" in r[r"\nabla^2 f(X)"]


def test_document_block_order_and_layout():
    d = derive("x: vector(n); A: matrix(n, n); x' * A * x", wrt="x", gradient=True, jacobian=True, hessian=True)
    block = document_block(d)
    lines = block.rstrip("\n").split("\n")
    assert lines[0] == "% shapes: " + documents.declarations_text(d)
    begin = lines.index(r"\begin{align*}")
    assert all(line.startswith("%") for line in lines[:begin])
    assert lines[-1] == r"\end{align*}"
    labels = [label for label, _ in rows(block)]
    assert labels == [r"f'(x)[\mathrm{d}x]", r"\nabla f(x)", "J_f(x)",
                      r"f''(x)[\mathrm{d}x, \mathrm{d}x_{2}]", r"\nabla^2 f(x)"]
    body = lines[begin + 1:-1]
    assert all(line.endswith(r" \\") for line in body[:-1]) and not body[-1].endswith(r"\\")
    assert [rhs for _, rhs in rows(block)] == [r.latex() for r in documents.ordered_results(d)]
    assert d.latex() == block


def test_cookbook_gradient_is_labelled_as_such():
    d = derive("X: symmetric(n); logdet(X)", wrt="X", gradient=True, symmetric_gradient="cookbook")
    block = document_block(d)
    labels = [label for label, _ in rows(block)]
    assert labels == [r"f'(X)[\mathrm{d}X]", r"\nabla_{\text{cookbook}} f(X)"]
    assert "% gradient: Matrix Cookbook convention" in block
    plain = document_block(derive("X: symmetric(n); logdet(X)", wrt="X", gradient=True))
    assert "cookbook" not in plain


# --- reading the LaTeX back -------------------------------------------------------------------------

FUNCTION_NAMES = {
    r"\operatorname{tr}": "tr", r"\det": "det", r"\log\det": "logdet", r"\operatorname{adj}": "adj",
    r"\operatorname{diag}": "diag", r"\operatorname{vec}": "vec", r"\operatorname{sum}": "sum",
    r"\exp": "exp", r"\log": "log", r"\sin": "sin", r"\cos": "cos", r"\tan": "tan", r"\tanh": "tanh",
    r"\arcsin": "arcsin", r"\arccos": "arccos", r"\arctan": "arctan", r"\sigma": "sigmoid",
    r"\operatorname{sigmoid}": "sigmoid", r"\operatorname{relu}": "relu", r"\operatorname{sign}": "sign",
    r"\operatorname{step}": "step",
}

READER_GRAMMAR = r"""
?start: sum
?sum: term | sum "+" term -> add | sum "-" term -> sub
?term: kprod | "-" kprod -> neg
?kprod: hprod | kprod "\\otimes" hprod -> kron
?hprod: jprod | hprod "\\odot" jprod -> hadamard
?jprod: sup | jprod sup -> mul | jprod "\\cdot" sup -> mul
?sup: atom | atom "^{" script "}" -> superscript
script: "\\top" -> top | "-\\top" -> inverse_transpose | "\\circ" sum -> hadamard_power | sum -> power
?atom: NAMEREF -> name
     | NUMBER -> number
     | "\\frac{" sum "}{" sum "}" -> frac
     | open sum close -> group
     | FUNC open sum close -> call
     | "\\operatorname{reshape}" open sum "," dim "," dim close -> reshape
     | "\\sqrt{" sum "}" -> sqrt
     | "\\lVert" sum NORM -> norm
     | "\\lvert" sum "\\rvert" -> abs
     | "I" -> eye
     | "I_{" dim "}" -> eye_n
     | "\\mathbf{1}" -> ones_broadcast
     | "\\mathbf{1}_{" dim "}" -> ones_vector
     | "\\mathbf{1}_{" dim "\\times" dim "}" -> ones_matrix
     | "0_{" dim "\\times" dim "}" -> zeros
     | "K_{" dim "," dim "}" -> commutation
!open: "(" | "\\left("
!close: ")" | "\\right)"
dim: dimf+
?dimf: DIMSYM | INT | DIMSYM "^{" INT "}" -> dim_power
NORM: "\\rVert_1" | "\\rVert_2" | "\\rVert_F"
DIMSYM: /[a-z]/
INT: /[0-9]+/
NUMBER: /[0-9]+(\.[0-9]+)?/
THIN: "\\,"
%ignore THIN
%ignore /\s+/
"""


def _alternatives(texts) -> str:
    return "|".join(re.escape(t) for t in sorted(texts, key=len, reverse=True))


@v_args(inline=True)
class ToLanguage(Transformer):
    """LaTeX parse tree -> the matcalc language, every subexpression in parentheses."""

    def __init__(self, names: dict):
        super().__init__()
        self.names = names

    def add(self, a, b): return f"({a}) + ({b})"
    def sub(self, a, b): return f"({a}) - ({b})"
    def neg(self, a): return f"-({a})"
    def kron(self, a, b): return f"kron({a}, {b})"
    def hadamard(self, a, b): return f"({a}) .* ({b})"
    def mul(self, a, b): return f"({a}) * ({b})"
    def name(self, t): return self.names[str(t)]
    def number(self, t): return str(t)
    def frac(self, a, b): return f"({a}) / ({b})"
    def group(self, _o, a, _c): return a
    def call(self, f, _o, a, _c): return f"{FUNCTION_NAMES[str(f)]}({a})"
    def reshape(self, _o, a, m, n, _c): return f"reshape({a}, {m}, {n})"
    def sqrt(self, a): return f"sqrt({a})"
    def norm(self, a, kind): return f"norm1({a})" if str(kind).endswith("1") else f"norm2({a})"
    def abs(self, a): return f"abs({a})"
    def eye(self): return "I"
    def eye_n(self, n): return f"I({n})"
    def ones_broadcast(self): return "1"
    def ones_vector(self, n): return f"ones({n})"
    def ones_matrix(self, m, n): return f"ones({m}, {n})"
    def zeros(self, m, n): return f"zeros({m}, {n})"
    def commutation(self, m, n): return f"commutation({m}, {n})"
    def dim(self, *factors): return "*".join(str(f) for f in factors)
    def dim_power(self, sym, k): return "*".join([str(sym)] * int(k))
    def top(self): return ("'", None)
    def inverse_transpose(self): return ("inv'", None)
    def hadamard_power(self, k): return (".^", k)
    def power(self, k): return ("^", k)

    def superscript(self, base, script):
        op, k = script
        if op == "'":
            return f"({base})'"
        if op == "inv'":
            return f"inv(({base})')"
        return f"({base}){op}({k})"


def reader(names: dict):
    """A parser for the printer's LaTeX with the given rendered names (LaTeX -> language name)."""
    functions = dict(FUNCTION_NAMES)
    if any(t == r"\sigma" for t in names):
        del functions[r"\sigma"]  # a variable sigma: the printer spells the function out
    grammar = READER_GRAMMAR + f"NAMEREF: /{_alternatives(names)}/\n" + \
        f"FUNC: /{_alternatives(functions)}/\n"
    return _lark(grammar), ToLanguage(names)


@lru_cache(maxsize=None)
def _lark(grammar: str) -> Lark:
    return Lark(grammar, parser="lalr")


def read_back(latex: str, names: dict) -> str:
    parser, to_language = reader(names)
    return to_language.transform(parser.parse(latex))


def derivation_names(d) -> dict:
    """Rendered name -> name, for every symbol and the two differentials."""
    printer = LatexPrinter(d.typed.symbols, {d.dx.name: d.x.name, d.dx2.name: d.x.name})
    names = {printer.print(E.Var(n, sym.shape)): n for n, sym in d.typed.symbols.items()}
    names[printer.print(d.dx)] = d.dx.name
    names[printer.print(d.dx2)] = d.dx2.name
    return names


def reparse(d, language: str) -> E.Expr:
    decls = [documents.declarations_text(d)] + [
        f"{v.name}: {documents.shape_text(Symbol(v.name, v.shape, True, v.symmetric))}" for v in (d.dx, d.dx2)]
    return check(parse("; ".join(decls + [language]))).expression


ROUND_TRIP = [
    ("x: vector(n); A: matrix(n, n); x' * A * x", "x"),
    ("X: symmetric(n); logdet(X)", "X"),
    ("X: matrix(n, n); X^2", "X"),
    ("w: vector(n); X: matrix(m, n); y: vector(m); sum(log(1 + exp(-y .* (X * w))))", "w"),
    ("X: matrix(n, n); inv(X)", "X"),
    ("X: matrix(n, n); det(X)", "X"),
    ("x: vector(n); norm2(x)^2 / 2 + norm1(x)", "x"),
    ("X: matrix(m, n); sqrt(X) ./ X + X.^3", "X"),
    ("X: matrix(n, n); alpha: scalar; sigma: scalar; tr(alpha * X + sigma * inv(X)') / (1 + sigma)", "X"),
    ("x1: vector(n); theta_0: scalar; w_hat: vector(n); sigmoid(theta_0 * x1' * w_hat)", "x1"),
    ("X: matrix(m, n); A: matrix(n, m); tr(A * X) * det(X' * X)", "X"),
    ("X: matrix(n, n); A: matrix(n, n); kron(X, A) * vec(X)", "X"),
    ("X: matrix(n, n); A: matrix(n, n); kron(A * X, 2 * X') * vec(X)", "X"),
    ("x: vector(n); A: matrix(m, n); b: vector(m); norm2(A * x - b)^2", "x"),
    ("X: matrix(n, n); adj(X) + X^3 - 2 * I", "X"),
    ("x: vector(n); tanh(x) .* sin(x) + cos(x) ./ (1 + exp(x))", "x"),
    ("x: vector(n); sum(arctan(x) + arcsin(x / 4) + arccos(x / 4) + tan(x / 4))", "x"),
    ("x: vector(n); diag(x) * x + diag(x * x')", "x"),
    ("X: matrix(m, n); reshape(vec(X'), m, n) + zeros(m, n)", "X"),
    ("X: matrix(m, n); commutation(m, n) * vec(X)", "X"),
    ("x: vector(n); c: scalar; sum(abs(x) + relu(x) .* sign(x)) / c + c * x' * x", "x"),
    ("x: vector(n); s: scalar; exp(s * x' * x / 2) - 1 / (s + x' * x)", "x"),
    ("S: symmetric(n); a: vector(n); a' * inv(S) * a + tr(S)^2", "S"),
]


def _values(d, rng):
    sizes = numeric.dimension_sizes(d)
    values = numeric.random_point(d, rng, sizes)
    values[d.dx.name] = numeric.random_direction(d.dx, rng, sizes)
    values[d.dx2.name] = numeric.random_direction(d.dx2, rng, sizes)
    return values, sizes


def _derive_all(program, wrt):
    scalar = derive(program, wrt=wrt).expression.is_scalar
    return derive(program, wrt=wrt, gradient=scalar, jacobian=True, hessian=scalar)


@pytest.mark.parametrize("program, wrt", ROUND_TRIP, ids=[p for p, _ in ROUND_TRIP])
def test_latex_reads_back_to_the_same_numbers(program, wrt):
    d = _derive_all(program, wrt)
    names = derivation_names(d)
    values, sizes = _values(d, np.random.default_rng(len(program)))
    items = [("expression", d.expression)] + [(name, r.printed) for name, r in d.results.items()]
    for what, e in items:
        latex = to_latex(e) if what == "expression" else LatexPrinter(
            d.typed.symbols, {d.dx.name: d.x.name, d.dx2.name: d.x.name}).doprint(e)
        language = read_back(latex, names)
        back = reparse(d, language)
        assert back.shape == e.shape, (what, latex, language)
        want = numeric.evaluate(e, values, sizes)
        got = numeric.evaluate(back, values, sizes)
        assert np.allclose(got, want, rtol=1e-9, atol=1e-12), (what, latex, language)


def test_reader_catches_a_wrong_parenthesisation():
    """The read-back test can fail: x' (A + B) x and x' A + B x differ."""
    d = derive("x: vector(n); A: matrix(n, n); x' * A * x", wrt="x", gradient=True)
    names = derivation_names(d)
    values, sizes = _values(d, np.random.default_rng(0))
    grouped = reparse(d, read_back(r"\left(A + A^{\top}\right) x", names))
    expanded = reparse(d, read_back(r"A x + A^{\top} x", names))
    assert np.allclose(numeric.evaluate(grouped, values, sizes), numeric.evaluate(expanded, values, sizes))
    with pytest.raises(Exception):  # A + A' x: a matrix plus a vector
        reparse(d, read_back(r"A + A^{\top} x", names))
    assert not np.allclose(numeric.evaluate(reparse(d, read_back(r"-x^{\top} A x", names)), values, sizes),
                           numeric.evaluate(reparse(d, read_back(r"x^{\top} A x", names)), values, sizes))


# --- compiling ----------------------------------------------------------------------------------------

COMPILE_PROGRAMS = [
    ("x: vector(n); A: matrix(n, n); x' * A * x", "x", []),
    ("X: symmetric(n); logdet(X)", "X", ["--symmetric-gradient", "cookbook"]),
    ("X: symmetric(n); logdet(X)", "X", []),
    ("X: matrix(n, n); X^2", "X", []),
    ("w: vector(n); X: matrix(m, n); y: vector(m); sum(log(1 + exp(-y .* (X * w))))", "w", []),
    ("X: matrix(n, n); inv(X)", "X", []),
    ("X: matrix(n, n); det(X)", "X", []),
    ("X: matrix(m, n); sqrt(X) ./ X + X.^3", "X", []),
    ("x: vector(n); A: matrix(m, n); A * ones(n) * sum(x) + norm1(A * x) * ones(m)", "x", []),
    ("x: vector(n); dx: vector(n); x' * dx + norm2(x)^2", "x", []),
    ("x1: vector(n); theta_0: scalar; w_hat: vector(n); sigma: scalar; sigmoid(sigma * x1' * w_hat / theta_0)", "x1", []),
    ("X: matrix(m, n); reshape(vec(X'), m, n) .* abs(X)", "X", ["--layout", "denominator"]),
    ("x: vector(n); s: scalar; exp(0.5 * s * x' * x) + 1.5e-8 * x' * x", "x", []),
]

PREAMBLE = "\\documentclass{article}\n\\usepackage{amsmath}\n\\begin{document}\n"


@pytest.fixture(scope="module")
def pdflatex():
    exe = shutil.which("pdflatex")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("pdflatex is missing, and CI must run the LaTeX compile test (install texlive-latex-base)")
        pytest.skip("pdflatex is not installed (CI installs it and runs this test)")
    return exe


def compile_latex(pdflatex, body: str, tmp_path) -> subprocess.CompletedProcess:
    (tmp_path / "doc.tex").write_text(PREAMBLE + body + "\n\\end{document}\n", encoding="utf-8")
    return subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)


def _flags(program, wrt, extra):
    scalar = derive(program, wrt=wrt).expression.is_scalar
    return (["--gradient", "--hessian"] if scalar else []) + ["--jacobian"] + extra


def test_document_blocks_compile(pdflatex, tmp_path):
    runner = CliRunner()
    blocks = []
    for program, wrt, extra in COMPILE_PROGRAMS:
        result = runner.invoke(main, [program, "--wrt", wrt, "--format", "latex"] + _flags(program, wrt, extra))
        assert result.exit_code == 0, (program, result.output)
        blocks.append(result.stdout)
    done = compile_latex(pdflatex, "\n".join(blocks), tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "doc.pdf").exists()


def test_every_notation_compiles(pdflatex, tmp_path):
    fragments = [tex(b()) for _, b, _ in NOTATION]
    fragments += [tex(E.Var(n, (1, 1))) for n in ("alpha", "Sigma", "theta_0", "w_hat", "xy1", "x_y_z", "_x")]
    fragments += [tex(E.Var("dx12", ("n", 1), diff=2)) + "^{\\top}"]
    for program, wrt in ROUND_TRIP:
        d = _derive_all(program, wrt)
        fragments += [to_latex(d.expression)] + [r.latex() for r in d.results.values()]
    body = "\n".join(f"\\[ {f} \\]" for f in fragments)
    done = compile_latex(pdflatex, body, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]


def test_compile_test_detects_bad_latex(pdflatex, tmp_path):
    """The harness sees an undefined command (\\circledcirc needs amssymb, which is not loaded)."""
    done = compile_latex(pdflatex, r"\[ A \circledcirc B \]", tmp_path)
    assert done.returncode != 0


# --- the command line ---------------------------------------------------------------------------------

def test_cli_latex_prints_only_latex():
    program = "x: vector(n); A: matrix(n, n); x' * A * x"
    result = CliRunner().invoke(main, [program, "--wrt", "x", "--hessian", "--gradient", "--format", "latex"])
    assert result.exit_code == 0, result.output
    d = derive(program, wrt="x", gradient=True, hessian=True)
    assert result.stdout == document_block(d)
    assert result.stderr == ""
    for line in result.stdout.splitlines():
        assert line.startswith("%") or line in (r"\begin{align*}", r"\end{align*}") or " &= " in line, line


def test_cli_latex_inferred_shapes_note_goes_to_stderr():
    result = CliRunner().invoke(main, ["A: matrix(n, n); x' * A * x", "--wrt", "x", "--format", "latex"])
    assert result.exit_code == 0, result.output
    assert "inferred shapes" in result.stderr
    assert "matcalc:" not in result.stdout
    assert result.stdout.startswith("% shapes: ")


def test_cli_latex_error_goes_to_stderr():
    result = CliRunner().invoke(main, ["x: vector(n); x +", "--format", "latex"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr


def test_cli_latex_cookbook_gradient():
    result = CliRunner().invoke(main, ["X: symmetric(n); logdet(X)", "--gradient", "--format", "latex",
                                       "--symmetric-gradient", "cookbook"])
    assert result.exit_code == 0, result.output
    assert r"\nabla_{\text{cookbook}} f(X) &= " in result.stdout


# --- a bug found in a file this test file does not own ---------------------------------------------------

def test_text_printer_ones_in_a_product_reparses_with_the_same_shape():
    d = derive("x: vector(n); A: matrix(m, n); A * ones(n) * sum(x)", wrt="x")
    text = str(d.expression)   # 'sum(x) * A * 1': A is m x n, the expression is m x 1
    back = check(parse("x: vector(n); A: matrix(m, n); " + text)).expression
    assert back.shape == d.expression.shape


# --- styles, line widths and names, compiled -------------------------------------------------------------
#
# Every sample and every example of the README in each style, the long results of the issue that once ran
# off the page, and the whole identity table as one document: compiled with pdflatex, the log checked for
# errors and for "Overfull \hbox".  Several results go into one document per run, to keep the runs few.

import shlex  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from matcalc_cli.errors import UsageError  # noqa: E402
from matcalc_cli.render import latex as L  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_identities import IDENTITIES  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
STYLES = ("align", "inline", "equation", "document")


def sample_commands() -> list:
    """The command in each sample's header, as matcalc arguments."""
    out = []
    for path in sorted((REPO / "samples").glob("*.mc")):
        for line in path.read_text().splitlines():
            text = line.lstrip("#").strip()
            if text.startswith("matcalc "):
                out.append(shlex.split(text)[1:])
    return out


def readme_commands() -> list:
    """The README's console examples that succeed, and the programs of its table of examples."""
    text = (REPO / "README.md").read_text()
    out = []
    lines = text.splitlines()
    from test_readme import _sessions
    for command, expected in _sessions():
        if command.startswith("matcalc ") and not command.startswith("matcalc batch") \
                and not (expected and expected[0].startswith(("shape error", "syntax error"))):
            out.append(shlex.split(command)[1:])
    for row in re.findall(r"^\| `([^`]+)`(?:, `([^`]+)`)? \| `(\w+)` \|", text, re.M):
        program, declaration, wrt = row
        out.append([(declaration + "; " if declaration else "") + program, "--wrt", wrt])
    return out


# --steps too: its LaTeX (render/steps.py) follows the styles and widths
EXAMPLES = sample_commands() + readme_commands()


def latex_of(args, style, extra=()) -> str:
    r = CliRunner().invoke(main, list(args) + ["--format", "latex", "--latex-style", style] + list(extra))
    assert r.exit_code == 0, (args, r.output)
    return r.stdout


def compile_problems(pdflatex, text: str, tmp_path, name="doc") -> list:
    """Errors and overfull boxes pdflatex reports for a complete document."""
    (tmp_path / f"{name}.tex").write_text(text, encoding="utf-8")
    done = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", f"{name}.tex"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    log = (tmp_path / f"{name}.log").read_text(encoding="latin-1")
    problems = re.findall(r"^! .*", log, re.M) + re.findall(r"^Overfull \\hbox.*", log, re.M)
    if done.returncode != 0 and not problems:
        problems.append(f"pdflatex exit {done.returncode}")
    return problems


def minimal_document(body: str, width: float | None = None) -> str:
    text_width = rf"\setlength{{\textwidth}}{{{width:.1f}pt}}" + "\n" if width else ""
    return "\\documentclass{article}\n\\usepackage{amsmath}\n\\allowdisplaybreaks\n" + text_width + \
        "\\begin{document}\n" + body + "\n\\end{document}\n"


def in_running_text(inline: str) -> str:
    """Inline output as a person uses it: each line inside a sentence, a paragraph each.  A long
    formula in running text leaves TeX few places to break, as any long inline formula does; the
    paragraph gets the usual bit of slack (\\emergencystretch) that documents give for that."""
    return "\\emergencystretch=1em\n" + "\n\n".join(
        f"We find {line} for every direction." for line in inline.splitlines() if line)


def document_body(doc: str) -> str:
    return doc.split("\\begin{document}\n", 1)[1].rsplit("\\end{document}", 1)[0]


def test_examples_are_many():
    assert len(sample_commands()) >= 10 and len(readme_commands()) >= 8


@pytest.mark.parametrize("style", STYLES)
def test_every_sample_and_readme_example_compiles(pdflatex, tmp_path, style):
    outputs = [latex_of(args, style) for args in EXAMPLES]
    if style == "document":
        for out in outputs:   # complete files: preamble, document, end
            assert out.startswith("\\documentclass{article}") and out.rstrip().endswith("\\end{document}")
        # one compile as is, then the bodies of all in one document
        assert compile_problems(pdflatex, outputs[0], tmp_path, "one") == []
        text = outputs[0].split("\\begin{document}")[0] + "\\begin{document}\n" + \
            "\n".join(document_body(o) for o in outputs) + "\\end{document}\n"
    elif style == "inline":
        for args, out in zip(EXAMPLES, outputs):
            # a step ends with its rules in words: $df = ...$ (product rule)
            end = ("$", ")") if "--steps" in args else ("$",)
            assert all(line.startswith("$") and line.endswith(end) for line in out.splitlines()), out
            assert "%" not in out
        text = minimal_document("\n\n".join(in_running_text(o) for o in outputs))
    else:
        text = minimal_document("\n".join(outputs))
    assert compile_problems(pdflatex, text, tmp_path) == []


LONG = [
    ("x: vector(n); A: matrix(n, n); x' * A * x / (x' * x)", "x"),
    ("x: vector(n); W: matrix(n, n); tanh(x)' * W * tanh(x)", "x"),
    ("x: vector(n); A, B, C: matrix(n, n); b, c: vector(n); "
     "(A * x - b)' * B * (A * x - c) + x' * C * x + (x - b)' * A * (x - c)", "x"),
    ("X: matrix(n, n); det(X)", "X"),
    ("S: symmetric(n); x, mu: vector(n); -0.5 * logdet(S) - 0.5 * (x - mu)' * inv(S) * (x - mu)", "S"),
    ("x: scalar; x^x^x", "x"),
]


def _long_args(program, wrt):
    scalar = derive(program, wrt=wrt).expression.is_scalar
    return [program, "--wrt", wrt, "--jacobian"] + (["--gradient", "--hessian"] if scalar else [])


@lru_cache(maxsize=None)
def _long_derivation(program, wrt):
    scalar = derive(program, wrt=wrt).expression.is_scalar
    return derive(program, wrt=wrt, gradient=scalar, jacobian=True, hessian=scalar)


@pytest.mark.parametrize("width", [None, "8.5cm", "50"])
def test_long_results_fit_the_page(pdflatex, tmp_path, width):
    """The results that ran off the page now break: no overfull box in any style, at an article's
    width and at a narrow column's."""
    blocks, inline = [], []
    for program, wrt in LONG:
        d = _long_derivation(program, wrt)
        blocks.append(L.render_latex(d, L.LatexOptions.parse("align", width)))
        blocks.append(L.render_latex(d, L.LatexOptions.parse("equation", width)))
        assert max(len(b.splitlines()) for b in blocks[-2:]) > 5
        if width is None:   # in a narrow column, how running text breaks is the paragraph's business
            inline.append(in_running_text(L.render_latex(d, L.LatexOptions.parse("inline", width))))
    # and one through the command line, in the document style, compiled as it is
    blocks.append(document_body(latex_of(_long_args(*LONG[2]), "document",
                                         ["--latex-width", width] if width else [])))
    text = minimal_document("\n".join(blocks) + "\n\n" + "\n\n".join(inline),
                            None if width is None else L.parse_width(width))
    assert compile_problems(pdflatex, text, tmp_path) == []


def test_long_results_are_broken_at_top_level_sums_first():
    out = latex_of(_long_args(*LONG[2]), "align")
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(r"\nabla f(x) &= "))
    continuations = []
    for line in lines[start + 1:]:
        if not line.strip().startswith("&"):
            break
        continuations.append(line.strip())
    gradient = "\n".join(lines[start:start + 1 + len(continuations)])
    assert continuations and all(line.startswith(r"&\quad {} + ") or line.startswith(r"&\quad {} - ")
                                 for line in continuations), gradient


def test_a_group_that_spans_lines_gets_delimiters_that_can():
    out = latex_of(_long_args(*LONG[0]), "align", ["--latex-width", "40"])
    for line in out.splitlines():
        if line.startswith("%"):
            continue
        # \left( and \right) stay on one line, balanced; \bigl( ... \bigr) may span lines
        assert line.count(r"\left(") == line.count(r"\right)"), line
    assert r"\bigl(" in out or r"\Bigl(" in out


def test_identity_table_compiles_as_one_document(pdflatex, tmp_path):
    """Every program of the identity table (more than a hundred derivatives, each with its gradient,
    Jacobian and Hessian) in the document style: no error, no line wider than the page."""
    entries = []
    for identity in IDENTITIES:
        scalar = derive(identity.program, wrt=identity.wrt).expression.is_scalar
        d = derive(identity.program, wrt=identity.wrt, gradient=scalar, jacobian=True, hessian=scalar)
        entries.append((identity.id, d))
    assert len(entries) >= 96
    doc = L.latex_document(entries, L.LatexOptions(style="document"))
    assert doc.count(r"\section*{") == len(entries)
    assert compile_problems(pdflatex, doc, tmp_path) == []


def _broken_back(block: str) -> list:
    """The right-hand sides of an align block, continuation lines joined, as the printer writes one line."""
    joined = []
    for label, rhs in rows(block):
        rhs = re.sub(r"\\([bB]ig)l\(", r"\\left(", rhs)
        joined.append((label, re.sub(r"\\([bB]ig)r\)", r"\\right)", rhs)))
    return joined


@pytest.mark.parametrize("program, wrt", LONG[:5], ids=[p[:30] for p, _ in LONG[:5]])
def test_broken_results_read_back_to_the_same_numbers(program, wrt):
    """Breaking changes where lines end, never what a result is: each broken result, read back, is the
    same function at random points."""
    d = _derive_all(program, wrt)
    names = derivation_names(d)
    values, sizes = _values(d, np.random.default_rng(7))
    block = L.render_latex(d, L.LatexOptions(width=150.0))
    results = documents.ordered_results(d)
    body = [(label, rhs) for label, rhs in _broken_back(block) if not label.startswith(r"\text{where")]
    assert len(body) == len(results)
    for r, (label, rhs) in zip(results, body):
        if r.expr != L.shared_form(r.expr, r.taken)[1]:
            continue   # written with named parts; the one-line form is checked by the read-back test above
        back = reparse(d, read_back(rhs, names))
        want = numeric.evaluate(r.expr, values, sizes)
        assert np.allclose(numeric.evaluate(back, values, sizes), want, rtol=1e-9, atol=1e-12), (label, rhs)


# --- names, transposes, widths -----------------------------------------------------------------------------

def test_distinct_names_typeset_distinctly():
    names = L.latex_names(["x1", "x_1", "W_out", "alpha", "t1", "t_2"])
    assert len(set(names.values())) == len(names)
    assert names["W_out"] == r"W_{\mathrm{out}}" and names["alpha"] == r"\alpha" and names["t_2"] == "t_{2}"
    alone = L.latex_names(["x1"])
    assert alone["x1"] == "x_{1}"


NAMES_PROGRAM = ("x1, x_1, _x, x__y, z_: vector(n); W_out: matrix(n, n); alpha, lambda, Sigma: scalar; "
                 "alpha * x1' * W_out * x_1 + lambda * norm2(x1 + _x + x__y + z_)^2 * Sigma")


def test_every_name_a_user_can_type_compiles_and_reads_distinctly(pdflatex, tmp_path):
    outputs = []
    for style in ("align", "equation"):
        for transpose in ("top", "T", "prime"):
            outputs.append(latex_of([NAMES_PROGRAM, "--wrt", "x1", "--hessian", "--gradient"], style,
                                    ["--latex-transpose", transpose]))
    inline = latex_of([NAMES_PROGRAM, "--wrt", "x1"], "inline")
    assert r"\alpha" in outputs[0] and r"\lambda" in outputs[0] and r"\Sigma" in outputs[0]
    assert r"W_{\mathrm{out}}" in outputs[0] and r"\mathit{x1}" in outputs[0] and r"\mathit{x\_1}" in outputs[0]
    assert compile_problems(pdflatex, minimal_document("\n".join(outputs) + "\n\n" + in_running_text(inline)),
                            tmp_path) == []


@pytest.mark.parametrize("transpose, expected", [("top", r"X^{-\top}"), ("T", r"X^{-\mathsf{T}}"),
                                                 ("prime", r"\left(X^{\prime}\right)^{-1}")])
def test_transpose_styles(transpose, expected):
    out = latex_of(["X: matrix(n, n); inv(X)", "--jacobian"], "align", ["--latex-transpose", transpose])
    assert expected in out


@pytest.mark.parametrize("text, points", [(None, 345.0), ("60", 300.0), ("8.5cm", 8.5 * 28.4528),
                                          ("90mm", 90 * 2.84528), ("3.5in", 3.5 * 72.27), ("252pt", 252.0)])
def test_width_option(text, points):
    assert L.parse_width(text) == pytest.approx(points)


@pytest.mark.parametrize("text", ["wide", "-3cm", "8.5parsecs", "1", "0.5cm", "900cm"])
def test_bad_width_is_a_usage_error(text):
    with pytest.raises(UsageError):
        L.parse_width(text)
    r = CliRunner().invoke(main, ["x' * x", "--wrt", "x", "--format", "latex", "--latex-width", text])
    assert r.exit_code == 2 and "--latex-width" in r.stderr


def test_inline_style_is_only_formulas_and_reports_go_to_stderr():
    r = CliRunner().invoke(main, ["A: matrix(n, n); x' * A * x", "--wrt", "x", "--format", "latex",
                                  "--latex-style", "inline", "--check"])
    assert r.exit_code == 0, r.output
    assert r.stdout == "$f'(x)[\\mathrm{d}x] = x^{\\top} (A + A^{\\top}) \\mathrm{d}x$\n" \
                       "$\\nabla f(x) = (A + A^{\\top}) x$\n"
    assert "PASS" in r.stderr and "inferred shapes" in r.stderr


def test_equation_style_puts_each_result_in_its_own_environment():
    out = latex_of(["x: vector(n); A: matrix(n, n); x' * A * x", "--wrt", "x", "--hessian", "--gradient"], "equation")
    assert out.count(r"\begin{equation*}") == 4 and r"\begin{split}" not in out
    long = latex_of(_long_args(*LONG[2]), "equation")
    assert r"\begin{split}" in long


def test_document_style_typesets_the_program_and_its_shapes():
    out = latex_of(["A: matrix(n, n); x' * A * x", "--wrt", "x"], "document")
    assert r"f(x) &= x^{\top} A x" in out
    assert r"$x$ a vector ($n$) (inferred)" in out and r"$A$ a matrix ($n \times n$)" in out


def test_escape_text_compiles_anything(pdflatex, tmp_path):
    nasty = "a_b & c % d $ e # f { g } h ~ i ^ j \\ k < l > m | n é ü ß 漢"
    assert compile_problems(pdflatex, minimal_document(L.escape_text(nasty)), tmp_path) == []


# --- the Python API ------------------------------------------------------------------------------------------

def test_api_latex_styles_and_jupyter():
    d = derive("x: vector(n); A: matrix(n, n); x' * A * x", wrt="x", gradient=True)
    assert d.gradient.latex() == r"\left(A + A^{\top}\right) x"
    assert d.gradient.latex("inline") == r"$(A + A^{\top}) x$"
    assert r"\begin{equation*}" in d.gradient.latex("equation")
    assert d.gradient._repr_latex_() == r"$\displaystyle \left(A + A^{\top}\right) x$"
    assert d._repr_latex_().startswith(r"\begin{align*}") and "%" not in d._repr_latex_()
    assert d.latex("document").startswith(r"\documentclass{article}")
    assert d.latex() == document_block(d)
    assert d.latex("inline", transpose="prime").splitlines()[1] == r"$\nabla f(x) = (A + A^{\prime}) x$"


def test_rows_of_any_derivation_with_tags_compile_within_the_width(pdflatex, tmp_path):
    """align_block takes any rows (the steps of a derivation, say): an empty label continues the
    previous relation, a tag (the rule) goes after the row, and long rows still fit."""
    d = _long_derivation(*LONG[2])
    printer = L.derivation_printer(d)
    rows = [L.Row(r"\mathrm{d}f", printer.marked(d.differential.expr), tag=r"\text{(product rule)}"),
            L.Row("", printer.marked(d.differential.expr), tag=r"\text{(collect terms)}"),
            L.Row(r"\nabla f", printer.marked(d.gradient.expr), tag=r"\text{($\mathrm{d}f = \nabla f^{\top} \mathrm{d}x$)}")]
    block = L.align_block(rows)
    assert block.count(r"\text{(") == 3 and r"\begin{align*}" in block
    assert compile_problems(pdflatex, minimal_document(block), tmp_path) == []
