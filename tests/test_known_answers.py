"""Known answers for the mistakes people make with matrix derivatives.

Each test states the mistake, checks that matcalc does not make it (the exact form it prints), and
checks the numbers, so that a right-looking but wrong form cannot pass."""

import numpy as np
import pytest

from matcalc_cli import derive
from matcalc_cli.numeric import dimension_sizes, evaluate, random_point


def _values(d, seed=0):
    sizes = dimension_sizes(d)
    return random_point(d, np.random.default_rng(seed), sizes), sizes


def _num_grad(d, values, sizes, h=1e-6):
    """Central differences of f against every entry of x, independently (no symmetry)."""
    x = values[d.wrt]
    g = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        for sign in (1, -1):
            v = dict(values)
            xp = x.copy()
            xp[idx] += sign * h
            v[d.wrt] = xp
            g[idx] += sign * evaluate(d.expression, v, sizes)[0, 0] / (2 * h)
    return g


def test_quadratic_form_gradient_is_A_plus_A_transpose_not_2A():
    d = derive("x: vector(n); A: matrix(n, n); x' * A * x", wrt="x", gradient=True)
    assert d.gradient.text() == "(A + A') * x"
    values, sizes = _values(d)
    G = evaluate(d.gradient.expr, values, sizes)
    wrong = 2 * values["A"] @ values["x"]
    assert np.allclose(G, _num_grad(d, values, sizes), atol=1e-6)
    assert not np.allclose(G, wrong, atol=1e-3)


def test_quadratic_form_with_symmetric_matrix_is_2Sx():
    d = derive("x: vector(n); S: symmetric(n); x' * S * x", wrt="x", gradient=True)
    assert d.gradient.text() == "2 * S * x"


def test_square_is_not_2X_dX():
    d = derive("X: matrix(n, n); X^2", wrt="X", jacobian=True)
    assert d.differential.text() in ("X * dX + dX * X", "dX * X + X * dX")
    values, sizes = _values(d)
    dX = np.random.default_rng(1).standard_normal(values["X"].shape)
    v = dict(values, dX=dX)
    got = evaluate(d.differential.expr, v, sizes)
    X = values["X"]
    assert np.allclose(got, X @ dX + dX @ X)
    assert not np.allclose(got, 2 * X @ dX, atol=1e-3)


def test_jacobian_of_square_in_kronecker_form():
    d = derive("X: matrix(n, n); X^2", wrt="X", jacobian=True)
    terms = set(d.jacobian.text().split(" + "))
    assert terms == {"kron(I(n), X)", "kron(X', I(n))"}


def test_numerator_and_denominator_layout_are_transposes():
    prog = "x: vector(n); A: matrix(m, n); A * x"
    num = derive(prog, wrt="x", jacobian=True)
    den = derive(prog, wrt="x", jacobian=True, layout="denominator")
    assert num.jacobian.text() == "A"
    assert den.jacobian.text() == "A'"
    values, sizes = _values(num)
    J = evaluate(num.jacobian.expr, values, sizes)
    assert J.shape == (sizes["m"], sizes["n"])  # numel(f) x numel(x)


def test_symmetric_gradient_is_sym_of_unconstrained_not_cookbook():
    # f(X) = tr(A X) on symmetric X: the Frobenius gradient is (A + A')/2 ...
    d = derive("X: symmetric(n); A: matrix(n, n); tr(A * X)", wrt="X", gradient=True)
    assert d.gradient.text() == "(A + A') / 2"
    values, sizes = _values(d)
    G = evaluate(d.gradient.expr, values, sizes)
    # ... because <G, E> must equal f'(X)[E] for every symmetric direction E
    rng = np.random.default_rng(3)
    n = sizes["n"]
    for _ in range(3):
        E = rng.standard_normal((n, n))
        E = E + E.T
        assert np.isclose(np.sum(G * E), np.trace(values["A"] @ E))
    # the Matrix Cookbook's G + G' - I .* G does not satisfy that identity
    cook = derive("X: symmetric(n); A: matrix(n, n); tr(A * X)", wrt="X", gradient=True,
                  symmetric_gradient="cookbook")
    assert cook.gradient.label.startswith("cookbook")
    C = evaluate(cook.gradient.expr, values, sizes)
    A = values["A"]
    assert np.allclose(C, A + A.T - np.eye(n) * A)
    E = np.ones((n, n))
    assert not np.isclose(np.sum(C * E), np.trace(A @ E))


def test_logdet_gradient_symmetric_is_inverse():
    d = derive("X: symmetric(n); logdet(X)", wrt="X", gradient=True)
    assert d.gradient.text() == "inv(X)"


def test_logdet_gradient_general_is_inverse_transpose():
    d = derive("X: matrix(n, n); logdet(X)", wrt="X", gradient=True)
    assert d.gradient.text() == "inv(X')"


def test_trace_AX_gradient_is_A_transpose():
    d = derive("X: matrix(n, m); A: matrix(m, n); tr(A * X)", wrt="X", gradient=True)
    assert d.gradient.text() == "A'"


def test_det_hessian_is_the_reference_bilinear_form():
    d = derive("A: matrix(n, n); det(A)", wrt="A", hessian=True)
    assert d.hessian_bilinear.text() == \
        "det(A) * (tr(inv(A) * dA) * tr(inv(A) * dA2) - tr(inv(A) * dA * inv(A) * dA2))"


@pytest.mark.parametrize("program, wrt, gradient", [
    ("x: vector(n); b: vector(n); b' * x", "x", "b"),
    ("x: vector(n); x' * x", "x", "2 * x"),
    ("x: vector(n); A: matrix(m, n); b: vector(m); norm2(A * x - b)^2", "x", "2 * A' * (A * x - b)"),
    ("X: matrix(n, m); norm2(X)^2", "X", "2 * X"),
    ("x: vector(n); y: vector(m); X: matrix(m, n); sum(log(1 + exp(-y .* (X * x))))", "x",
     "-X' * (y .* sigmoid(-y .* (X * x)))"),
])
def test_textbook_gradients(program, wrt, gradient):
    assert derive(program, wrt=wrt, gradient=True).gradient.text() == gradient
