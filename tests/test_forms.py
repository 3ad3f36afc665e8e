"""Results a person would write, valid wherever the derivative exists.

1. det and adj at singular matrices.  det and adj are polynomials in the entries, so their
   derivatives exist everywhere; matcalc derives them twice: as the reference text writes them
   (through inv, printed) and as polynomials (Jacobi's formula d det(X) = tr(adj(X) dX), and the
   derivatives of adj), which is what ``Result.expr``, the generated code and ``--check`` evaluate.
   Tested here at matrices of rank n, n-1 and n-2 against central finite differences (exact up to
   rounding for polynomials of low degree, with a small step).
"""

from __future__ import annotations

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
