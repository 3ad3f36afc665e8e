"""Results a person would write, valid wherever the derivative exists.

1. det and adj at singular matrices.  det and adj are polynomials in the entries, so their
   derivatives exist everywhere; matcalc derives them twice: as the reference text writes them
   (through inv, printed) and as polynomials (Jacobi's formula d det(X) = tr(adj(X) dX), and the
   derivatives of adj), which is what ``Result.expr``, the generated code and ``--check`` evaluate.
   Tested here at matrices of rank n, n-1 and n-2 against central finite differences (exact up to
   rounding for polynomials of low degree, with a small step).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from matcalc_cli import derive
from matcalc_cli import numeric as N
from matcalc_cli.render.numpy_code import to_numpy_module

SIZES = {"n": 4, "m": 3}


def rank_deficient(rng, rows, cols, rank):
    return rng.standard_normal((rows, rank)) @ rng.standard_normal((rank, cols))


def finite_jacobian(f, x, h=1e-6):
    """d vec(f) / d vec(x), column-major, by central differences."""
    cols = []
    for k in range(x.size):
        e = np.zeros(x.size)
        e[k] = h
        step = e.reshape(x.shape, order="F")
        cols.append(((np.atleast_2d(f(x + step)) - np.atleast_2d(f(x - step))) / (2 * h)).reshape(-1, order="F"))
    return np.array(cols).T


def value(d, result, X):
    return N.evaluate(d.results[result].expr, {d.wrt: X}, SIZES)


def f_of(d):
    return lambda X: N.evaluate(d.expression, {d.wrt: X}, SIZES)


def generated(d):
    namespace: dict = {}
    exec(to_numpy_module(d), namespace)
    return namespace


# --- the adjugate's derivatives, numerically ------------------------------------------------------

@pytest.mark.parametrize("n, rank", [(3, 3), (3, 2), (3, 1), (4, 2), (5, 3), (5, 2)])
def test_adjugate_derivatives_match_finite_differences(n, rank):
    rng = np.random.default_rng(10 * n + rank)
    X = rank_deficient(rng, n, n, rank)
    D, E = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    h = 1e-6
    first = (N.adjugate(X + h * D) - N.adjugate(X - h * D)) / (2 * h)
    np.testing.assert_allclose(N.adjugate_derivative(X, D), first, atol=1e-7)
    second = (N.adjugate_derivative(X + h * E, D) - N.adjugate_derivative(X - h * E, D)) / (2 * h)
    np.testing.assert_allclose(N.adjugate_derivative(X, D, E), second, atol=1e-6)
    J = N.adjugate_jacobian(X)
    np.testing.assert_allclose(J @ D.reshape(-1, order="F"), first.reshape(-1, order="F"), atol=1e-7)


def test_adjugate_derivative_of_order_n_and_more_is_zero():
    rng = np.random.default_rng(3)
    X, D = rng.standard_normal((2, 2)), rng.standard_normal((2, 2))
    np.testing.assert_array_equal(N.adjugate_derivative(X, D, D), np.zeros((2, 2)))
    # n = 2: adj is linear, adj([a b; c d]) = [d -b; -c a]
    np.testing.assert_allclose(N.adjugate_derivative(X, D), np.array([[D[1, 1], -D[0, 1]], [-D[1, 0], D[0, 0]]]))


# --- det(X): gradient and Hessian at singular X ----------------------------------------------------

@pytest.mark.parametrize("rank", [4, 3, 2, 1])
def test_det_gradient_and_hessian_at_rank(rank):
    d = derive("X: matrix(n, n); det(X)", wrt="X", gradient=True, hessian=True)
    X = rank_deficient(np.random.default_rng(rank), 4, 4, rank)
    G = value(d, "gradient", X)
    np.testing.assert_allclose(G, N.adjugate(X).T, atol=1e-10)
    np.testing.assert_allclose(G.reshape(-1, 1, order="F"), finite_jacobian(f_of(d), X).T, atol=1e-6)
    H = value(d, "hessian", X)
    grad = lambda Y: N.evaluate(d.results["gradient"].expr, {"X": Y}, SIZES).reshape(-1, 1, order="F")
    np.testing.assert_allclose(H, finite_jacobian(grad, X), atol=1e-6)
    np.testing.assert_allclose(H, H.T, atol=1e-9)


def test_det_prints_the_reference_form_labelled_for_invertible_X():
    d = derive("X: matrix(n, n); det(X)", wrt="X", gradient=True)
    assert d.gradient.text() == "det(X) * inv(X')"
    assert "valid for invertible X" in d.gradient.note
    assert str(d.gradient.expr) == "adj(X')"


def test_det_of_an_outer_product_prints_the_everywhere_valid_form():
    # x x' is singular for every x (n > 1): an inverse of it would be wrong everywhere
    d = derive("x: vector(n); det(x * x')", wrt="x", gradient=True)
    assert d.gradient.text() == "2 * adj(x * x') * x"
    assert d.gradient.shown is None


@pytest.mark.parametrize("rank", [3, 2, 1])
def test_det_of_gram_matrix_hessian_at_rank_deficient_X(rank):
    # X n x m (4 x 3): X'X is singular when rank(X) < 3
    d = derive("X: matrix(n, m); det(X' * X)", wrt="X", gradient=True, hessian=True)
    X = rank_deficient(np.random.default_rng(20 + rank), 4, 3, rank)
    G = value(d, "gradient", X)
    np.testing.assert_allclose(G.reshape(-1, 1, order="F"), finite_jacobian(f_of(d), X).T, atol=1e-6)
    H = value(d, "hessian", X)
    np.testing.assert_allclose(H, H.T, atol=1e-8)
    grad = lambda Y: N.evaluate(d.results["gradient"].expr, {"X": Y}, SIZES).reshape(-1, 1, order="F")
    np.testing.assert_allclose(H, finite_jacobian(grad, X), atol=1e-5)


@pytest.mark.parametrize("rank", [4, 3, 2, 1])
def test_jacobian_of_adj_at_rank(rank):
    d = derive("X: matrix(n, n); adj(X)", wrt="X", jacobian=True)
    X = rank_deficient(np.random.default_rng(30 + rank), 4, 4, rank)
    J = value(d, "jacobian", X)
    np.testing.assert_allclose(J, finite_jacobian(f_of(d), X), atol=1e-6)


def test_generated_code_evaluates_det_and_adj_derivatives_at_singular_points():
    rng = np.random.default_rng(5)
    X = rank_deficient(rng, 4, 4, 2)   # rank n - 2: adj(X) = 0, its derivative is not
    d = derive("X: matrix(n, n); adj(X)", wrt="X", jacobian=True)
    code = generated(d)
    J = code["jacobian"](X=X)
    np.testing.assert_allclose(J, finite_jacobian(lambda Y: code["f"](X=Y), X), atol=1e-6)
    assert np.abs(J).max() > 0.1
    d = derive("X: matrix(n, n); det(X)", wrt="X", gradient=True, hessian=True)
    code = generated(d)
    X = rank_deficient(rng, 4, 4, 3)
    np.testing.assert_allclose(code["gradient"](X=X), N.adjugate(X).T, atol=1e-10)
    H = code["hessian"](X=X)
    np.testing.assert_allclose(H, finite_jacobian(lambda Y: code["gradient"](X=Y).reshape(-1, order="F"), X),
                               atol=1e-6)


def test_check_passes_at_singular_points_of_the_hessian_of_tr_adj():
    d = derive("x: vector(n); tr(adj(x * x'))", wrt="x", gradient=True, hessian=True)
    x = np.array([[1.0], [-2.0], [0.5], [3.0]])
    H = value(d, "hessian", x)
    grad = lambda y: N.evaluate(d.results["gradient"].expr, {"x": y}, SIZES)
    np.testing.assert_allclose(H, finite_jacobian(grad, x), atol=1e-6)
    np.testing.assert_allclose(H, H.T, atol=1e-9)


# --- 2. canonical-form rules, each alone: the rewritten expression has the same value -------------

from matcalc_cli import expr as E  # noqa: E402
from matcalc_cli import simplify as S  # noqa: E402
from matcalc_cli.check import check_derivation  # noqa: E402
from matcalc_cli.shapes import check as typecheck  # noqa: E402
from matcalc_cli.syntax import parse  # noqa: E402

RULE_CASES = [
    # (rule, program whose expression the rule rewrites)
    (S.merge_diagonals, "a: vector(n); b: vector(n); A: matrix(n, n); A * diag(a) * diag(b) * A"),
    (S.merge_diagonals, "a: vector(n); diag(a)^3"),
    (S.sum_diagonals, "a: vector(n); b: vector(n); c: scalar; diag(a) + c * diag(b) - 2 * diag(a .* b)"),
    (S.factor_elementwise, "s: vector(n); y: vector(n); (1 - s) .* s .* (1 - y) + y .* (1 - s) .* s"),
    (S.sum_of_rows, "y: vector(n); (1 - y)' + y'"),
    (S.product_with_ones, "y: vector(n); y' * ones(n)"),
    (S.merge_chain_powers, "X: matrix(n, m); A: matrix(n, n); (X' * A * X)^2 * X' * A * X"),
    (S.merge_chain_powers, "X: matrix(n, m); A: matrix(n, n); X' * A * X * (X' * A * X)^2"),
    (S.split_inverse, "X: matrix(n, n); A: matrix(n, n); B: matrix(n, n); A' * inv(B' * X' * A') * B'"),
    (S.kron_products, "x: vector(n); M: matrix(m, m); kron(x, I(m)) * M * kron(x', I(m))"),
    (S.kron_products, "x: vector(n); u: vector(m); e: vector(m); u * vec(e * x')'"),
    (S.kron_products, "x: vector(n); M: matrix(m, m); e: vector(m); s: scalar; "
                      "kron(x, I(m)) * (M * kron(x', I(m)) / s - kron(x', e * e'))"),
    (S.kron_products, "x: vector(n); B: matrix(m, n); A: matrix(p, m); A * kron(x', I(m)) * vec(B)"),
    (S.kron_products, "M: matrix(m, m); diag(vec(I(m))) * kron(M, I(m)) * diag(vec(I(m)))"),
    (S.expand_trace, "x: vector(n); y: vector(n); S: symmetric(n); tr(S * (x * y' + y * x'))"),
    (S.inner_product_cancels, "y: vector(n); z: vector(n); (y ./ exp(z))' * exp(z)"),
    (S.factor_kron, "A: matrix(n, n); B: matrix(m, m); C: matrix(m, m); c: scalar; kron(A, B) - c * kron(A, C)"),
    (S.factor_kron, "A: matrix(n, n); B: matrix(m, m); C: matrix(m, m); D: matrix(n, n); "
                    "kron(A, B) + kron(A, C) + kron(D, B * C)"),
    (S.factor_kron, "A: matrix(n, n); B: matrix(m, m); D: matrix(n, n); kron(A, B) - 2 * kron(D, B)"),
    (S.kron_products, "X: matrix(n, n); kron(X', I(n)) * (kron(I(n), X) * commutation(n, n) + kron(X, I(n)))"),
    (S.kron_products, "S: symmetric(n); x: vector(n); "
                      "kron(inv(S), inv(S)) * (kron(x * x' * inv(S), I(n)) + kron(I(n), x * x' * inv(S)))"),
    (S.absorb_into_kron, "u: vector(m); x: vector(n); diag(u) * kron(x', I(m))"),
    (S.absorb_into_kron, "h: vector(n); C: matrix(m, m); D: matrix(m, p); kron(h, I(m)) * C * D"),
    (S.absorb_into_kron, "x: vector(n); A: matrix(p, m); B: matrix(m, m); A * kron(x', B)"),
    (S.factor_common, "s: scalar; a: scalar; b: scalar; s^2 * a - s * b"),
    (S.factor_common, "s: scalar; t: scalar; x: vector(n); y: vector(n); s^3 * t * x + s^2 * t^2 * y"),
    (S.factor_elementwise, "s: vector(n); a: vector(n); b: vector(n); s.^2 .* a + s .* (1 - s) .* b"),
    (S.factor_elementwise, "s: vector(n); t: vector(n); y: vector(n); "
                           "s .* (s - y) .* (1 - s).^2 + s.^2 .* (1 - s).^2 - s.^2 .* (s - y) .* (1 - s)"),
    (S.split_inverse, "X: matrix(n, n); Y: matrix(n, n); D: matrix(n, n); tr(inv(X * Y) * D * Y)"),
    (S.expand_trace, "X: matrix(n, n); Y: matrix(n, n); D: matrix(n, n); F: matrix(n, n); "
                     "tr(inv(X * Y) * (X * D + F * Y))"),
    (S.group_repeated_sum, "a: scalar; b: scalar; c: scalar; d: scalar; e: scalar; (a + b) * c + (a + b) * d + e"),
    (S.group_repeated_sum, "a: scalar; b: scalar; c: scalar; C: matrix(n, m); D: matrix(n, m); F: matrix(n, m); "
                           "(a + b) * C + c * (a + b) * D - F"),
]


def tokens(text):
    return re.findall(r"[A-Za-z_][A-Za-z_0-9]*|\d+|\.\*|\./|\.\^|\S", text)


def typed_expression(program):
    return typecheck(parse(program)).expression


def random_values(expr, rng, sizes):
    values = {}
    for v in expr.free_vars:
        a = rng.standard_normal(N.shape_of(v, sizes))
        values[v.name] = (a + a.T) / 2 if v.symmetric else a
    return values


@pytest.mark.parametrize("rule, program", RULE_CASES, ids=[f"{r.__name__}:{p.split(';')[-1].strip()}"
                                                         for r, p in RULE_CASES])
def test_rule_rewrites_to_an_equal_smaller_expression(rule, program):
    e = typed_expression(program)
    out = rule(e)
    assert out != e, f"{rule.__name__} did not apply to {e}"
    assert len(tokens(str(out))) <= len(tokens(str(e))), "a rewrite never makes a result longer"
    rng = np.random.default_rng(len(program))
    sizes = {"n": 3, "m": 4, "p": 5}
    for _ in range(3):
        values = random_values(e, rng, sizes)
        np.testing.assert_allclose(N.evaluate(out, values, sizes), N.evaluate(e, values, sizes),
                                   rtol=1e-10, atol=1e-10)


def test_elementwise_quotient_and_product_by_the_same_factor_cancel():
    assert str(typed_expression("y: vector(n); z: vector(n); y ./ exp(z) .* exp(z)")) == "y"


def test_diagonal_times_vector_moves_the_differential_into_an_elementwise_product():
    d = derive("x: vector(n); diag(x)^2 * x", wrt="x", jacobian=True)
    assert d.differential.text() == "3 * x.^2 .* dx"   # diag(x.^2) * dx + 2 * x.^2 .* dx, collected
    assert d.jacobian.text() == "3 * diag(x.^2)"


def test_a_constant_leads_a_sum_of_negative_terms():
    assert str(typed_expression("s: scalar; -s + 1")) == "1 - s"
    assert str(typed_expression("s: scalar; s + 1")) == "s + 1"
    assert str(typed_expression("s: scalar; -s - 1")) == "-s - 1"


def test_a_trace_rotated_into_a_shorter_chain_merges_its_powers():
    e = typed_expression("M: matrix(n, n); B: matrix(n, n); D: matrix(n, n); tr(inv(M) * B * D * inv(M))")
    assert str(e) == "tr(B * D * inv(M)^2)"


def test_elementwise_factors_of_differentials_collect_but_the_hessian_keeps_its_symmetric_form():
    d = derive("W1: matrix(h, n); b1: vector(h); W2: matrix(m, h); x: vector(n); y: vector(m); "
               "norm2(W2 * tanh(W1 * x + b1) - y)^2 / 2", wrt="W1,b1", hessian=True)
    bilinear = d.results["hessian_bilinear"].text()
    assert "(dW1 * x + db1)" in bilinear and ".* db1" not in bilinear
    assert check_derivation(d, points=1).passed
    d = derive("x: vector(n); W: matrix(n, n); tanh(x)' * W * tanh(x)", wrt="x", hessian=True)
    assert d.hessian.text().startswith("diag(1 - tanh(x).^2) * (W + W') * diag(1 - tanh(x).^2) - ")


# --- 3. the examples print as a person writes them ----------------------------------------

# (program, wrt, result, what matcalc prints, what a person writes, how they differ)
FORMS = [
    ("z: vector(n); y: vector(n); -y' * log(exp(z) / sum(exp(z)))", "z", "gradient",
     "sum(y) * exp(z) / sum(exp(z)) - y", "sum(y) * exp(z) / sum(exp(z)) - y", "exact"),
    ("z: vector(n); y: vector(n); -y' * log(exp(z) / sum(exp(z)))", "z", "hessian",
     "sum(y) * (diag(exp(z)) / sum(exp(z)) - exp(z) * exp(z)' / sum(exp(z))^2)",
     "sum(y) * (diag(exp(z)) / sum(exp(z)) - exp(z) * exp(z)' / sum(exp(z))^2)", "exact"),
    ("W: matrix(m, n); x: vector(n); y: vector(m); log(sum(exp(W * x))) - y' * W * x", "W", "hessian",
     "kron(x * x', diag(exp(W * x)) / sum(exp(W * x)) - exp(W * x) * exp(W * x)' / sum(exp(W * x))^2)",
     "kron(x * x', diag(exp(W * x)) / sum(exp(W * x)) - exp(W * x) * exp(W * x)' / sum(exp(W * x))^2)",
     "exact, with e = exp(W * x) and S = sum(e) written out"),
    ("X: matrix(n, n); diag(diag(X))", "X", "jacobian", "diag(vec(I(n)))", "diag(vec(I(n)))", "exact"),
    ("x: vector(n); diag(x)^2 * x", "x", "jacobian", "3 * diag(x.^2)", "3 * diag(x.^2)", "exact"),
    ("x: vector(m); A: matrix(m, n); logdet(A' * diag(x) * A)", "x", "hessian",
     "-(A * inv(A' * diag(x) * A) * A').^2", "-(H .* H)",
     "H = A * inv(A' * diag(x) * A) * A' written out; H .* H printed as H.^2"),
    ("X: matrix(n, m); A: matrix(n, n); tr((X' * A * X)^4)", "X", "gradient",
     "4 * (A * X * (X' * A * X)^3 + A' * X * (X' * A' * X)^3)",
     "4 * (A * X * (X' * A * X)^3 + A' * X * (X' * A' * X)^3)", "exact"),
    ("w: vector(n); X: matrix(m, n); y: vector(m); "
     "y' * log(sigmoid(X * w)) + (1 - y)' * log(1 - sigmoid(X * w))", "w", "hessian",
     "-X' * diag((1 - sigmoid(X * w)) .* sigmoid(X * w)) * X",
     "-X' * diag(sigmoid(X * w) .* (1 - sigmoid(X * w))) * X", "the two factors of .* in the other order"),
    ("X: matrix(n, n); A: matrix(n, n); B: matrix(n, n); det(A * X * B)", "X", "gradient",
     "det(A * X * B) * inv(X')", "det(A * X * B) * inv(X')", "exact (labelled: valid for invertible A * X * B)"),
    # a second round of everyday programs
    ("x: vector(n); log(sum(exp(x)))", "x", "hessian_bilinear",
     "(exp(x) .* dx / sum(exp(x)) - exp(x)' * dx * exp(x) / sum(exp(x))^2)' * dx2",
     "(exp(x) .* dx / sum(exp(x)) - exp(x)' * dx * exp(x) / sum(exp(x))^2)' * dx2", "exact"),
    ("x: vector(n); mu: vector(n); s: scalar; exp(-norm2(x - mu)^2 / (2 * s))", "x", "gradient",
     "-exp(-norm2(x - mu)^2 / (2 * s)) * (x - mu) / s", "-exp(-norm2(x - mu)^2 / (2 * s)) * (x - mu) / s",
     "exact"),
    ("x: vector(n); w: vector(n); sigmoid(w' * x)", "w", "hessian",
     "(1 - sigmoid(w' * x)) * (1 - 2 * sigmoid(w' * x)) * sigmoid(w' * x) * x * x'",
     "(1 - sigmoid(w' * x)) * (1 - 2 * sigmoid(w' * x)) * sigmoid(w' * x) * x * x'", "exact"),
    ("x: vector(n); S: symmetric(n); x' * inv(S) * x", "S", "hessian",
     "(kron(inv(S) * x * x' * inv(S), inv(S)) + kron(inv(S), inv(S) * x * x' * inv(S))) * (I + commutation(n, n)) / 2",
     "(kron(inv(S) * x * x' * inv(S), inv(S)) + kron(inv(S), inv(S) * x * x' * inv(S))) * (I + commutation(n, n)) / 2",
     "exact"),
    ("A: matrix(n, n); b: vector(n); c: vector(n); c' * inv(A) * b", "A", "hessian",
     "(kron(inv(A) * b * c' * inv(A), inv(A')) + kron(inv(A), inv(A') * c * b' * inv(A'))) * commutation(n, n)",
     "(kron(inv(A) * b * c' * inv(A), inv(A')) + kron(inv(A), inv(A') * c * b' * inv(A'))) * commutation(n, n)",
     "exact"),
    ("X: matrix(n, n); tr(X' * X * X' * X)", "X", "hessian",
     "4 * (kron(X', X) * commutation(n, n) + kron(X' * X, I(n)) + kron(I(n), X * X'))",
     "4 * (kron(X', X) * commutation(n, n) + kron(X' * X, I(n)) + kron(I(n), X * X'))", "exact"),
    ("W: matrix(m, n); x: vector(n); relu(W * x)", "W", "jacobian",
     "kron(x', diag(step(W * x)))", "kron(x', diag(step(W * x)))", "exact"),
    ("W: matrix(k, d); b: vector(k); h: vector(d); t: vector(k); log(sum(exp(W * h + b))) - t' * (W * h + b)",
     "W,b", "hessian[W, b]",
     "kron(h, diag(exp(W * h + b)) / sum(exp(W * h + b)) - exp(W * h + b) * exp(W * h + b)' / sum(exp(W * h + b))^2)",
     "kron(h, diag(exp(W * h + b)) / sum(exp(W * h + b)) - exp(W * h + b) * exp(W * h + b)' / sum(exp(W * h + b))^2)",
     "exact"),
    ("P: symmetric(n); B: matrix(n, n); R: matrix(n, n); tr(inv(R + B' * P * B))", "P", "differential",
     "-tr(B * inv(B' * P * B + R)^2 * B' * dP)", "-tr(B * inv(B' * P * B + R)^2 * B' * dP)", "exact"),
    ("X: matrix(n, n); Y: matrix(n, n); det(X * Y)", "X,Y", "hessian_bilinear",
     "det(X * Y) * ((tr(inv(X) * dX) + tr(inv(Y) * dY)) * (tr(inv(X) * dX2) + tr(inv(Y) * dY2))"
     " - tr(inv(X) * dX * inv(X) * dX2) - tr(inv(Y) * dY * inv(Y) * dY2))",
     "det(X * Y) * ((tr(inv(X) * dX) + tr(inv(Y) * dY)) * (tr(inv(X) * dX2) + tr(inv(Y) * dY2))"
     " - tr(inv(X) * dX * inv(X) * dX2) - tr(inv(Y) * dY * inv(Y) * dY2))",
     "exact (labelled: valid for invertible X * Y)"),
]


@pytest.mark.parametrize("program, wrt, kind, printed, person, how", FORMS,
                         ids=[f"{f[2]}:{f[0].split(';')[-1].strip()}" for f in FORMS])
def test_prints_what_a_person_writes(program, wrt, kind, printed, person, how):
    flags = {"hessian": dict(gradient=True, hessian=True), "gradient": dict(gradient=True),
             "jacobian": dict(jacobian=True), "differential": dict(gradient=True),
             "hessian_bilinear": dict(hessian=True)}[kind.split("[")[0]]
    d = derive(program, wrt=wrt, **flags)
    text = d.results[kind].text()
    assert text == printed
    assert abs(len(tokens(text)) - len(tokens(person))) <= 25 if how != "exact" else text == person
    report = check_derivation(d, points=2)
    assert report.passed, str(report)


def test_hessian_of_a_rayleigh_quotient_has_no_kron_vec_or_commutation():
    d = derive("x: vector(n); A: matrix(n, n); x' * A * x / (x' * x)", wrt="x", gradient=True, hessian=True)
    for r in d.results.values():
        text = r.text()
        assert not any(word in text for word in ("kron", "vec", "commutation")), text
    assert check_derivation(d, points=2).passed


@pytest.mark.parametrize("program", [
    "x: vector(n); A: matrix(m, n); sum(exp(A * x)) + x' * diag(x) * x",
    "x: vector(n); A: matrix(n, n); exp(A * x) .* x + diag(x) * A * x",
    "x: vector(n); b: vector(n); norm2(x)^2 * (b .* x) + log(sum(exp(x))) * x",
])
def test_vector_functions_of_a_vector_have_plain_jacobians(program):
    d = derive(program, wrt="x", jacobian=True, **({"hessian": True} if "sum(exp(A" in program else {}))
    for r in d.results.values():
        text = r.text()
        assert not any(word in text for word in ("kron", "vec(", "commutation")), text
    assert check_derivation(d, points=2).passed


def test_softmax_cross_entropy_gradient_does_not_divide_by_exp():
    d = derive("z: vector(n); y: vector(n); -y' * log(exp(z) / sum(exp(z)))", wrt="z", gradient=True)
    text = d.gradient.text()
    assert "./ exp" not in text and "/ exp(z)" not in text.replace("/ sum(exp(z))", "")
    # exp(-750) underflows to 0: a form with y ./ exp(z) gives inf or nan there, this one the answer
    z, y = np.array([-750.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0])
    with np.errstate(all="raise", under="ignore"):
        g = generated(d)["gradient"](z=z, y=y)
    softmax = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose(g, y.sum() * softmax - y, atol=1e-12)


# --- 4. shapes: an equation between products of dimensions is refused, naming them ---------------

def test_kron_quadratic_form_with_undeclared_factors_names_the_product_constraint():
    from matcalc_cli.errors import ShapeError
    with pytest.raises(ShapeError) as info:
        derive("x: vector(m*n); x' * kron(A, B) * x", wrt="x")
    message = info.value.message
    assert "m*n" in message and "p*r" in message and "A: p x q" in message
    assert info.value.line == 1


def test_kron_quadratic_form_with_matching_declarations_derives():
    d = derive("x: vector(m*n); A: matrix(n, n); B: matrix(m, m); x' * kron(A, B) * x", wrt="x", gradient=True)
    assert d.gradient.text() == "(kron(A', B') + kron(A, B)) * x"
    assert check_derivation(d, points=1).passed
