"""Standard identities, Matrix Cookbook style: one test per identity, named after it.

Every identity is derived (gradient and Hessian for a scalar f, the Jacobian always) and each result
is compared with central finite differences of f at three seeded random points, all dimensions of
distinct sizes (n=3, m=4, p=5): the differential along a random dx, the gradient, the Jacobian, the
Hessian matrix (against differences of the gradient, and H = H'), and the bilinear form
f''[dx, dx2] (against vec(dx)' H vec(dx2) and against second differences of f).  For many the
printed form is checked too: it must be the form a person writes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest

from matcalc_cli import derive
from matcalc_cli.numeric import dimension_sizes, evaluate, numeric_gradient, random_point
from numcheck import check_derivation, rng_for

ELEMENTWISE = ("exp", "log", "sin", "cos", "tan", "tanh", "arcsin", "arccos", "arctan", "sqrt", "sigmoid",
               "abs", "relu")


class Identity(NamedTuple):
    id: str
    program: str
    wrt: str
    forms: dict = {}      # result name -> the text a person writes


I = Identity
IDENTITIES = [
    # --- traces ---------------------------------------------------------------------------------
    I("tr_AX", "A: matrix(m, n); X: matrix(n, m); tr(A * X)", "X", {"gradient": "A'"}),
    I("tr_XA", "A: matrix(m, n); X: matrix(n, m); tr(X * A)", "X", {"gradient": "A'"}),
    I("tr_AXB", "A: matrix(p, n); X: matrix(n, m); B: matrix(m, p); tr(A * X * B)", "X", {"gradient": "A' * B'"}),
    I("tr_AXtB", "A: matrix(p, m); X: matrix(n, m); B: matrix(n, p); tr(A * X' * B)", "X", {"gradient": "B * A"}),
    I("tr_XtAX", "X: matrix(n, m); A: matrix(n, n); tr(X' * A * X)", "X", {"gradient": "(A + A') * X"}),
    I("tr_XtX", "X: matrix(n, m); tr(X' * X)", "X", {"gradient": "2 * X", "hessian": "2 * I(m*n)"}),
    I("tr_XX", "X: matrix(n, n); tr(X * X)", "X", {"gradient": "2 * X'"}),
    I("tr_AXBXt", "X: matrix(n, m); A: matrix(n, n); B: matrix(m, m); tr(A * X * B * X')", "X",
      {"gradient": "A * X * B + A' * X * B'"}),
    I("tr_AXBX", "X: matrix(n, n); A: matrix(n, n); B: matrix(n, n); tr(A * X * B * X)", "X",
      {"gradient": "A' * X' * B' + B' * X' * A'"}),
    I("tr_Xinv_A", "X: matrix(n, n); A: matrix(n, n); tr(inv(X) * A)", "X", {"gradient": "-inv(X') * A' * inv(X')"}),
    I("tr_A_Xinv_B", "X: matrix(n, n); A: matrix(m, n); B: matrix(n, m); tr(A * inv(X) * B)", "X",
      {"gradient": "-inv(X') * A' * B' * inv(X')"}),
    I("tr_X_cubed", "X: matrix(n, n); tr(X^3)", "X", {"gradient": "3 * X'^2"}),
    I("tr_A_X_pow_4", "X: matrix(n, n); A: matrix(n, n); tr(A * X^4)", "X"),
    I("tr_X_pow_minus_2", "X: matrix(n, n); tr(X^-2)", "X", {"gradient": "-2 * inv(X')^3"}),
    I("tr_kron", "X: matrix(n, n); A: matrix(m, m); tr(kron(X, A))", "X", {"gradient": "tr(A) * I(n)"}),
    I("tr_SA_symmetric", "S: symmetric(n); A: matrix(n, n); tr(S * A)", "S", {"gradient": "(A + A') / 2"}),
    I("tr_S_squared_symmetric", "S: symmetric(n); tr(S^2)", "S", {"gradient": "2 * S"}),
    I("sum_of_inverse", "X: matrix(n, n); sum(inv(X))", "X", {"gradient": "-inv(X') * ones(n, n) * inv(X')"}),
    # --- determinants -----------------------------------------------------------------------------
    I("det_X", "X: matrix(n, n); det(X)", "X", {"gradient": "det(X) * inv(X')"}),
    I("det_AXB", "X: matrix(n, n); A: matrix(n, n); B: matrix(n, n); det(A * X * B)", "X"),
    I("det_inv_X", "X: matrix(n, n); det(inv(X))", "X", {"gradient": "-det(inv(X)) * inv(X')"}),
    I("det_XtX", "X: matrix(m, n); det(X' * X)", "X", {"gradient": "2 * det(X' * X) * X * inv(X' * X)"}),
    I("det_X_squared", "X: matrix(n, n); det(X^2)", "X", {"gradient": "2 * det(X^2) * inv(X')"}),
    I("det_symmetric", "S: symmetric(n); det(S)", "S", {"gradient": "det(S) * inv(S)"}),
    I("logdet_X", "X: matrix(n, n); logdet(X)", "X",
      {"gradient": "inv(X')", "hessian": "-kron(inv(X), inv(X')) * commutation(n, n)"}),
    I("logdet_symmetric", "X: symmetric(n); logdet(X)", "X", {"gradient": "inv(X)"}),
    I("logdet_XtX", "X: matrix(m, n); logdet(X' * X)", "X", {"gradient": "2 * X * inv(X' * X)"}),
    I("logdet_I_plus_tA", "t: scalar; A: matrix(n, n); logdet(I + t * A)", "t",
      {"gradient": "tr(A * inv(I + t * A))"}),
    I("adj_trace", "X: matrix(n, n); tr(adj(X))", "X"),
    I("adj_jacobian", "X: matrix(n, n); adj(X)", "X"),
    # --- inverses -----------------------------------------------------------------------------------
    I("inv_X_jacobian", "X: matrix(n, n); inv(X)", "X", {"jacobian": "-kron(inv(X'), inv(X))"}),
    I("inv_X_power_jacobian", "X: matrix(n, n); X^-1", "X", {"jacobian": "-kron(inv(X'), inv(X))"}),
    I("inv_symmetric_jacobian", "S: symmetric(n); inv(S)", "S"),
    I("a_invX_b", "X: matrix(n, n); a: vector(n); b: vector(n); a' * inv(X) * b", "X",
      {"gradient": "-inv(X') * a * b' * inv(X')"}),
    I("inv_I_plus_x_xt", "x: vector(n); sum(inv(I + x * x'))", "x"),
    # --- norms --------------------------------------------------------------------------------------
    I("norm2_squared", "x: vector(n); norm2(x)^2", "x", {"gradient": "2 * x", "hessian": "2 * I(n)"}),
    I("norm2", "x: vector(n); norm2(x)", "x", {"gradient": "x / norm2(x)"}),
    I("norm2_residual", "x: vector(n); A: matrix(m, n); b: vector(m); norm2(A * x - b)", "x",
      {"gradient": "A' * (A * x - b) / norm2(A * x - b)"}),
    I("norm1", "x: vector(n); norm1(x)", "x", {"gradient": "sign(x)"}),
    I("norm1_residual", "x: vector(n); A: matrix(m, n); b: vector(m); norm1(A * x - b)", "x",
      {"gradient": "A' * sign(A * x - b)"}),
    I("frobenius_squared", "X: matrix(n, m); norm2(X)^2", "X", {"gradient": "2 * X"}),
    I("frobenius", "X: matrix(n, m); norm2(X)", "X", {"gradient": "X / norm2(X)"}),
    I("frobenius_AX_minus_B", "X: matrix(n, m); A: matrix(p, n); B: matrix(p, m); norm2(A * X - B)^2", "X",
      {"gradient": "2 * A' * (A * X - B)"}),
    # --- quadratic forms ----------------------------------------------------------------------------
    I("xtAx", "x: vector(n); A: matrix(n, n); x' * A * x", "x", {"gradient": "(A + A') * x", "hessian": "A + A'"}),
    I("xtSx_symmetric_S", "x: vector(n); S: symmetric(n); x' * S * x", "x",
      {"gradient": "2 * S * x", "hessian": "2 * S"}),
    I("xtAx_wrt_A", "x: vector(n); A: matrix(n, n); x' * A * x", "A", {"gradient": "x * x'"}),
    I("xtSx_wrt_S", "x: vector(n); S: symmetric(n); x' * S * x", "S", {"gradient": "x * x'"}),
    I("atXb", "X: matrix(n, m); a: vector(n); b: vector(m); a' * X * b", "X", {"gradient": "a * b'"}),
    I("atXtb", "X: matrix(n, m); a: vector(m); b: vector(n); a' * X' * b", "X", {"gradient": "b * a'"}),
    I("btXtXc", "X: matrix(n, m); b: vector(m); c: vector(m); b' * X' * X * c", "X",
      {"gradient": "X * (b * c' + c * b')"}),
    I("btXtDXc", "X: matrix(n, m); b: vector(m); c: vector(m); D: matrix(n, n); b' * X' * D * X * c", "X",
      {"gradient": "D * X * c * b' + D' * X * b * c'"}),
    I("affine_quadratic", "x: vector(n); A: matrix(m, n); b: vector(m); C: matrix(m, p); D: matrix(p, n); "
                          "e: vector(p); (A * x + b)' * C * (D * x + e)", "x",
      {"gradient": "A' * C * (D * x + e) + D' * C' * (A * x + b)", "hessian": "A' * C * D + D' * C' * A"}),
    I("xtAx_plus_btx", "x: vector(n); A: matrix(n, n); b: vector(n); x' * A * x + b' * x", "x",
      {"gradient": "(A + A') * x + b"}),
    # --- least squares ------------------------------------------------------------------------------
    I("least_squares", "x: vector(n); A: matrix(m, n); b: vector(m); norm2(A * x - b)^2", "x",
      {"gradient": "2 * A' * (A * x - b)", "hessian": "2 * A' * A"}),
    I("least_squares_expanded", "x: vector(n); A: matrix(m, n); b: vector(m); (A * x - b)' * (A * x - b)", "x",
      {"gradient": "2 * A' * (A * x - b)"}),
    I("ridge", "x: vector(n); A: matrix(m, n); b: vector(m); lambda: scalar; norm2(A * x - b)^2 + lambda * x' * x",
      "x", {"gradient": "2 * (A' * (A * x - b) + lambda * x)", "hessian": "2 * (A' * A + lambda * I)"}),
    I("ridge_wrt_lambda", "x: vector(n); A: matrix(m, n); b: vector(m); lambda: scalar; "
                          "norm2(A * x - b)^2 + lambda * x' * x", "lambda", {"gradient": "x' * x"}),
    I("least_squares_wrt_A", "x: vector(n); A: matrix(m, n); b: vector(m); norm2(A * x - b)^2", "A",
      {"gradient": "2 * (A * x - b) * x'"}),
    I("weighted_least_squares", "x: vector(n); A: matrix(m, n); b: vector(m); W: symmetric(m); "
                                "(A * x - b)' * W * (A * x - b)", "x",
      {"gradient": "2 * A' * W * (A * x - b)", "hessian": "2 * A' * W * A"}),
    # --- losses of statistics and machine learning ---------------------------------------------------
    I("logistic_loss", "X: matrix(m, n); w: vector(n); y: vector(m); sum(log(1 + exp(-y .* (X * w))))", "w",
      {"gradient": "-X' * (y .* sigmoid(-y .* (X * w)))"}),
    I("softmax_cross_entropy", "z: vector(n); y: vector(n); log(sum(exp(z))) - y' * z", "z",
      {"gradient": "exp(z) / sum(exp(z)) - y"}),
    I("log_sum_exp", "z: vector(n); log(sum(exp(z)))", "z", {"gradient": "exp(z) / sum(exp(z))"}),
    I("softmax_jacobian", "z: vector(n); exp(z) / sum(exp(z))", "z",
      {"jacobian": "diag(exp(z)) / sum(exp(z)) - exp(z) * exp(z)' / sum(exp(z))^2"}),
    I("gaussian_loglik_mu", "S: symmetric(n); x: vector(n); mu: vector(n); "
                            "-0.5 * logdet(S) - 0.5 * (x - mu)' * inv(S) * (x - mu)", "mu",
      {"gradient": "inv(S) * (x - mu)", "hessian": "-inv(S)"}),
    I("gaussian_loglik_S", "S: symmetric(n); x: vector(n); mu: vector(n); "
                           "-0.5 * logdet(S) - 0.5 * (x - mu)' * inv(S) * (x - mu)", "S",
      {"gradient": "(inv(S) * (x - mu) * (x - mu)' * inv(S) - inv(S)) / 2"}),
    I("linear_layer_sigmoid_jacobian", "W: matrix(m, n); x: vector(n); b: vector(m); sigmoid(W * x + b)", "W"),
    I("two_layer_net", "W: matrix(m, n); V: matrix(p, m); x: vector(n); y: vector(p); "
                       "norm2(V * tanh(W * x) - y)^2", "W"),
    # --- elementwise functions: in a sum, in an inner product, as a Jacobian ---------------------------
    *[I(f"sum_{fn}", f"x: vector(n); sum({fn}(x))", "x") for fn in ELEMENTWISE],
    *[I(f"inner_{fn}", f"x: vector(n); a: vector(n); a' * {fn}(x)", "x") for fn in ELEMENTWISE],
    *[I(f"jacobian_{fn}", f"x: vector(n); {fn}(x)", "x") for fn in ELEMENTWISE],
    I("sum_exp_AX", "X: matrix(n, m); A: matrix(p, n); sum(exp(A * X))", "X", {"gradient": "A' * exp(A * X)"}),
    I("sign_weighted_squares", "x: vector(n); a: vector(n); sum(sign(a) .* x .^ 2)", "x"),
    I("step_weighted_squares", "x: vector(n); a: vector(n); sum(step(a) .* x .^ 2)", "x"),
    I("elementwise_cube", "x: vector(n); sum(x .^ 3)", "x", {"gradient": "3 * x.^2", "hessian": "6 * diag(x)"}),
    I("elementwise_reciprocal", "x: vector(n); a: vector(n); sum(a ./ x)", "x", {"gradient": "-a ./ x.^2"}),
    I("elementwise_sqrt_power", "x: vector(n); sum(x .^ 1.5)", "x"),
    I("hadamard_quadratic", "X: matrix(n, m); A: matrix(n, m); sum(X .* A .* X)", "X", {"gradient": "2 * A .* X"}),
    I("variable_exponent", "t: scalar; x: vector(n); sum(exp(x) .^ t)", "t"),
    I("scalar_power", "t: scalar; t^3", "t", {"gradient": "3 * t^2", "hessian": "6 * t"}),
    I("scalar_quotient", "t: scalar; c: scalar; c / (1 + t^2)", "t"),
    # --- kron, diag (both ways), vec, reshape, commutation, ones -------------------------------------
    I("kron_jacobian_left", "X: matrix(n, m); B: matrix(p, n); kron(X, B)", "X"),
    I("kron_jacobian_right", "X: matrix(n, m); A: matrix(p, n); kron(A, X)", "X"),
    I("kron_sum", "X: matrix(n, m); B: matrix(p, n); sum(kron(X, B))", "X", {"gradient": "sum(B) * ones(n, m)"}),
    I("kron_quadratic", "x: vector(n); y: vector(m); A: matrix(m*n, m*n); kron(x, y)' * A * kron(x, y)", "x"),
    I("diag_of_vector_trace", "x: vector(n); A: matrix(n, n); tr(A * diag(x))", "x", {"gradient": "diag(A)"}),
    I("diag_of_matrix_inner", "X: matrix(n, n); a: vector(n); a' * diag(X)", "X", {"gradient": "diag(a)"}),
    I("diag_of_vector_jacobian", "x: vector(n); diag(x)", "x"),
    I("diag_of_matrix_jacobian", "X: matrix(n, n); diag(X)", "X"),
    I("diag_quadratic", "x: vector(n); A: matrix(n, n); x' * diag(x) * A * x", "x"),
    I("vec_inner", "X: matrix(n, m); a: vector(m*n); a' * vec(X)", "X", {"gradient": "reshape(a, n, m)"}),
    I("vec_jacobian", "X: matrix(n, m); vec(X)", "X", {"jacobian": "I(m*n)"}),
    I("vec_transpose_jacobian", "X: matrix(n, m); vec(X')", "X", {"jacobian": "commutation(n, m)"}),
    I("commutation_vec", "X: matrix(n, m); commutation(n, m) * vec(X)", "X", {"jacobian": "commutation(n, m)"}),
    I("reshape_jacobian", "x: vector(m*n); A: matrix(p, n); A * reshape(x, n, m)", "x", {"jacobian": "kron(I(m), A)"}),
    I("ones_inner", "x: vector(n); ones(n)' * x", "x", {"gradient": "ones(n)"}),
    # --- products and matrix powers -----------------------------------------------------------------
    I("XtX_jacobian", "X: matrix(n, m); X' * X", "X"),
    I("XXt_jacobian", "X: matrix(n, m); X * X'", "X"),
    I("AXB_jacobian", "X: matrix(n, m); A: matrix(p, n); B: matrix(m, p); A * X * B", "X", {"jacobian": "kron(B', A)"}),
    I("Ax_jacobian", "x: vector(n); A: matrix(m, n); A * x", "x", {"jacobian": "A"}),
    I("Xt_jacobian", "X: matrix(n, m); X'", "X", {"jacobian": "commutation(n, m)"}),
    I("X_squared_jacobian", "X: matrix(n, n); X^2", "X", {"jacobian": "kron(I(n), X) + kron(X', I(n))"}),
    I("X_cubed_jacobian", "X: matrix(n, n); X^3", "X"),
    I("atX2b", "X: matrix(n, n); a: vector(n); b: vector(n); a' * X^2 * b", "X",
      {"gradient": "X' * a * b' + a * b' * X'"}),
    I("S_squared_jacobian_symmetric", "S: symmetric(n); S * S", "S"),
    # --- scalar variables ------------------------------------------------------------------------------
    I("scalar_times_matrix_trace", "t: scalar; A: matrix(n, n); B: matrix(n, n); tr(exp(t) * A * B)", "t",
      {"gradient": "exp(t) * tr(A * B)"}),
    I("scalar_exp_vector_jacobian", "t: scalar; x: vector(n); exp(t * x)", "t"),
    I("det_I_plus_tA", "t: scalar; A: matrix(n, n); det(I + t * A)", "t"),
    I("scalar_outer_jacobian", "t: scalar; a: vector(n); b: vector(m); t^2 * a * b'", "t"),
]
del I

BY_ID = {i.id: i for i in IDENTITIES}
assert len(BY_ID) == len(IDENTITIES), "identity ids must be unique"


def _derive(identity: Identity, **kw):
    scalar = derive(identity.program, wrt=identity.wrt).expression.is_scalar
    return derive(identity.program, wrt=identity.wrt, gradient=scalar, jacobian=True, hessian=scalar, **kw)


@pytest.mark.parametrize("identity", [pytest.param(i, id=i.id) for i in IDENTITIES])
def test_identity_matches_finite_differences(identity):
    d = _derive(identity)
    report = check_derivation(d, points=3)
    assert report.points >= 2, f"too few usable random points: {report.skipped}"
    expected = {"differential", "jacobian"} | ({"gradient", "hessian", "hessian_bilinear"}
                                                if d.expression.is_scalar else set())
    assert set(report.checked) == expected
    assert report.ok, str(report)


WITH_FORMS = [i for i in IDENTITIES if i.forms]


@pytest.mark.parametrize("identity", [pytest.param(i, id=i.id) for i in WITH_FORMS])
def test_identity_prints_as_a_person_writes_it(identity):
    d = _derive(identity)
    printed = {name: d.results[name].text() for name in identity.forms}
    assert printed == identity.forms


# --- the Jacobian in denominator layout is the transpose ---------------------------------------------

@pytest.mark.parametrize("name", ["AXB_jacobian", "XtX_jacobian", "softmax_jacobian", "inv_symmetric_jacobian",
                                  "xtAx", "least_squares_wrt_A"])
def test_denominator_layout_is_the_transpose(name):
    identity = BY_ID[name]
    d = _derive(identity, layout="denominator")
    report = check_derivation(d, points=2)
    assert report.points >= 1 and report.ok, str(report)
    numerator = _derive(identity)
    sizes = dimension_sizes(d)
    values = random_point(d, rng_for(name), sizes)
    J = evaluate(d.results["jacobian"].expr, values, sizes)
    Jn = evaluate(numerator.results["jacobian"].expr, values, sizes)
    np.testing.assert_allclose(J, Jn.T, rtol=1e-10, atol=1e-12)


# --- the Matrix Cookbook's convention for symmetric matrices ------------------------------------------

@pytest.mark.parametrize("name", ["logdet_symmetric", "det_symmetric", "xtSx_wrt_S", "tr_SA_symmetric",
                                  "gaussian_loglik_S"])
def test_cookbook_symmetric_gradient_is_2G_minus_diag(name):
    """With --symmetric-gradient cookbook: G + G' - I .* G, from the full (unsymmetrised) G,
    which is 2 sym(G) - I .* sym(G) in terms of the true (symmetric) gradient."""
    identity = BY_ID[name]
    d = derive(identity.program, wrt=identity.wrt, gradient=True, symmetric_gradient="cookbook")
    sizes = dimension_sizes(d)
    rng = rng_for(name)
    for _ in range(2):
        values = random_point(d, rng, sizes)
        G = numeric_gradient(d, values, sizes)
        expected = 2 * G - np.diag(np.diag(G))
        got = evaluate(d.results["gradient"].expr, values, sizes)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8 * max(1.0, np.abs(expected).max()))


def test_cookbook_form_of_logdet_symmetric():
    d = derive("X: symmetric(n); logdet(X)", wrt="X", gradient=True, symmetric_gradient="cookbook")
    assert d.gradient.text() == "2 * inv(X) - I .* inv(X)"


# --- the table covers what it says it covers -----------------------------------------------------------

def test_table_covers_every_elementwise_function_and_matrix_function():
    text = " ".join(i.program.split(";")[-1] for i in IDENTITIES)
    for fn in ELEMENTWISE + ("tr", "det", "logdet", "inv", "adj", "diag", "vec", "kron", "sum", "norm1", "norm2",
                             "reshape", "commutation", "ones"):
        assert f"{fn}(" in text, fn
    kinds = " ".join(i.program for i in IDENTITIES)
    for decl in ("scalar", "vector(n)", "symmetric(n)", "matrix(n, m)", "matrix(m, n)", "m*n"):
        assert decl in kinds, decl
    wrt_kinds = {derive(i.program, wrt=i.wrt).x.shape for i in IDENTITIES}
    assert len(wrt_kinds) >= 6
