"""The SymPy oracle (``--verify``): explicit matrices, the IR -> SymPy converter, the derivative
conventions it checks against, and that it tells right results from wrong ones."""

from __future__ import annotations

import json
from dataclasses import replace
from fractions import Fraction

import pytest
import sympy as sp
from click.testing import CliRunner

import matcalc_cli.api as api
from matcalc_cli import derive
from matcalc_cli import expr as E
from matcalc_cli.cli import main
from matcalc_cli.verify import (Expected, Instance, ResultCheck, VerifyReport, commutation_matrix,
                                to_sympy, vec, verify_derivation)


def assert_same_matrix(M, N):
    assert M.shape == N.shape
    for a, b in zip(M, N):
        assert sp.cancel(a - b) == 0, (a, b)


def with_result(d, name, new_expr):
    """The derivation d with result ``name`` replaced by another expression (a wrong one)."""
    d.results[name] = replace(d.results[name], expr=new_expr)
    return d


def var(d, name):
    return d.typed.variables[name]


# ---------------------------------------------------------------------------------------------
# Explicit matrices of symbols
# ---------------------------------------------------------------------------------------------

def test_matrix_entries_are_named_as_people_write_them():
    inst = Instance(3)
    A = inst.matrix(E.Var("A", ("n", "n")))
    x = inst.matrix(E.Var("x", ("n", 1)))
    c = inst.matrix(E.Var("c", (1, 1)))
    assert A.shape == (3, 3) and x.shape == (3, 1) and c.shape == (1, 1)
    assert str(A[0, 1]) == "A_12" and str(A[2, 0]) == "A_31"
    assert [str(v) for v in x] == ["x_1", "x_2", "x_3"]
    assert str(c[0, 0]) == "c"
    assert all(s.is_real for s in A.free_symbols | x.free_symbols | c.free_symbols)


def test_the_same_var_gives_the_same_matrix_and_differentials_their_own():
    inst = Instance(2)
    A = E.Var("A", ("n", "n"))
    dA = E.Var("dA", ("n", "n"), diff=1)
    assert inst.matrix(A) is inst.matrix(E.Var("A", ("n", "n")))
    assert not (inst.matrix(A).free_symbols & inst.matrix(dA).free_symbols)
    assert str(inst.matrix(dA)[1, 0]) == "dA_21"


def test_indices_of_ten_or_more_are_separated():
    M = Instance(10).matrix(E.Var("A", ("n", "n")))
    assert str(M[0, 9]) == "A_1_10" and str(M[9, 0]) == "A_10_1"
    assert len(M.free_symbols) == 100


def test_symmetric_matrix_shares_symbols_across_the_diagonal():
    S = Instance(3).matrix(E.Var("S", ("n", "n"), symmetric=True))
    assert S == S.T
    assert len(S.free_symbols) == 6  # n (n + 1) / 2
    assert S[0, 2] is S[2, 0]


def test_dimension_monomials_are_instantiated():
    inst = Instance(3)
    X = inst.matrix(E.Var("X", ("m", "n")))
    assert X.shape == (3, 3)
    assert inst.dim(E.Var("v", ("m", 1)).rows * E.Var("w", ("n", 1)).rows) == 9
    K = E.Commutation("m", "n")
    assert to_sympy(K, inst).shape == (9, 9)


def test_colliding_entry_names_get_distinct_symbols():
    inst = Instance(2)
    a = inst.matrix(E.Var("A_1", ("n", 1)))      # A_1_1, A_1_2
    b = inst.matrix(E.Var("A", ("n", "n")))     # A_11, ... (no clash)
    c = inst.matrix(E.Var("A_1_1", (1, 1)))      # would clash with A_1's first entry
    assert len(a.free_symbols | b.free_symbols | c.free_symbols) == 2 + 4 + 1


def test_dimension_size_must_be_positive():
    with pytest.raises(ValueError):
        Instance(0)


# ---------------------------------------------------------------------------------------------
# The converter, one node kind at a time
# ---------------------------------------------------------------------------------------------

N = 3
Avar = E.Var("A", ("n", "n"))
Bvar = E.Var("B", ("n", "n"))
xvar = E.Var("x", ("n", 1))
yvar = E.Var("y", ("n", 1))
cvar = E.Var("c", (1, 1))


@pytest.fixture
def inst():
    return Instance(N)


def M(inst, v):
    return inst.matrix(v)


def test_vec_is_column_major(inst):
    A = M(inst, Avar)
    assert list(vec(A)) == [A[0, 0], A[1, 0], A[2, 0], A[0, 1], A[1, 1], A[2, 1], A[0, 2], A[1, 2], A[2, 2]]
    assert to_sympy(E.vec(Avar), inst) == vec(A)


def test_reshape_undoes_vec(inst):
    A = M(inst, Avar)
    assert to_sympy(E.Reshape(E.vec(Avar), ("n", "n")), inst) == A
    row = to_sympy(E.reshape(xvar, 1, "n"), inst)
    assert row == M(inst, xvar).T


@pytest.mark.parametrize("m, n", [(2, 3), (3, 2), (3, 3)])
def test_commutation_matrix_maps_vec_to_vec_of_transpose(m, n):
    X = sp.Matrix(m, n, lambda i, j: sp.Symbol(f"X_{i}{j}"))
    K = commutation_matrix(m, n)
    assert K * vec(X) == vec(X.T)
    assert K.T * K == sp.eye(m * n)


def test_products(inst):
    A, B, x = M(inst, Avar), M(inst, Bvar), M(inst, xvar)
    assert to_sympy(E.matmul(Avar, Bvar, xvar), inst) == A * B * x
    assert to_sympy(E.hadamard(Avar, Bvar), inst) == A.multiply_elementwise(B)
    assert to_sympy(E.mul(cvar, Avar), inst) == M(inst, cvar)[0, 0] * A
    assert to_sympy(E.kron(Avar, xvar), inst) == sp.Matrix(9, 3, lambda i, j: A[i // 3, j] * x[i % 3])


def test_scalar_broadcast_is_times_ones(inst):
    c = M(inst, cvar)[0, 0]
    broadcast = E.add(Avar, E.mul(cvar, E.Ones(("n", "n"))))
    assert to_sympy(broadcast, inst) == M(inst, Avar) + c * sp.ones(3, 3)


def test_matrix_functions(inst):
    A = M(inst, Avar)
    assert to_sympy(E.trace(Avar), inst)[0, 0] == A.trace()
    assert sp.expand(to_sympy(E.det(Avar), inst)[0, 0] - A.det()) == 0
    assert to_sympy(E.logdet(Avar), inst)[0, 0] == sp.log(to_sympy(E.det(Avar), inst)[0, 0])
    assert_same_matrix(to_sympy(E.inverse(Avar), inst) * A, sp.eye(3))
    assert_same_matrix(to_sympy(E.adj(Avar), inst), A.adjugate())
    assert to_sympy(E.matpow(Avar, 3), inst) == A * A * A
    assert to_sympy(E.transpose(Avar), inst) == A.T


def test_diag_both_ways(inst):
    A, x = M(inst, Avar), M(inst, xvar)
    assert to_sympy(E.diag(xvar), inst) == sp.diag(*x)
    assert to_sympy(E.diag_part(Avar), inst) == sp.Matrix([A[0, 0], A[1, 1], A[2, 2]])


def test_sums_and_norms(inst):
    x = M(inst, xvar)
    assert to_sympy(E.sum_(xvar), inst)[0, 0] == sum(x)
    assert to_sympy(E.norm1(xvar), inst)[0, 0] == sum(sp.Abs(v) for v in x)
    assert to_sympy(E.norm2(xvar), inst)[0, 0] == sp.sqrt(sum(v ** 2 for v in x))


def test_elementwise_power_and_numbers(inst):
    x = M(inst, xvar)
    assert to_sympy(E.power(xvar, E.Num(3)), inst) == x.applyfunc(lambda v: v ** 3)
    assert to_sympy(E.Num(Fraction(2, 3)), inst)[0, 0] == sp.Rational(2, 3)
    assert to_sympy(E.Identity("n"), inst) == sp.eye(3)
    assert to_sympy(E.Zero(("n", 1)), inst) == sp.zeros(3, 1)
    assert to_sympy(E.Ones((1, "n")), inst) == sp.ones(1, 3)


@pytest.mark.parametrize("fn, value, expected", [
    ("sigmoid", sp.Rational(1, 2), 1 / (1 + sp.exp(-sp.Rational(1, 2)))),
    ("relu", sp.Rational(-2, 3), 0),
    ("relu", sp.Rational(2, 3), sp.Rational(2, 3)),
    ("step", sp.Rational(-2, 3), 0),
    ("step", sp.Rational(2, 3), 1),
    ("sign", sp.Rational(-2, 3), -1),
    ("abs", sp.Rational(-2, 3), sp.Rational(2, 3)),
    ("arctan", sp.Integer(1), sp.pi / 4),
])
def test_elementwise_functions(inst, fn, value, expected):
    out = to_sympy(E.elementwise(fn, xvar), inst)
    x = M(inst, xvar)
    assert sp.simplify(out[1].xreplace({x[1]: value}) - expected) == 0


def test_value_at_a_point_equals_substituted_symbolic_value(inst):
    e = E.matmul(E.inverse(Avar), xvar)
    point = {s: sp.Rational(k + 2, k + 5) for k, s in
             enumerate(sorted(M(inst, Avar).free_symbols | M(inst, xvar).free_symbols, key=str))}
    symbolic = to_sympy(e, inst)
    at_point = to_sympy(e, inst, point)
    assert at_point.free_symbols == set()
    assert_same_matrix(symbolic.xreplace(point), at_point)


# ---------------------------------------------------------------------------------------------
# What the oracle expects: the conventions, worked out by hand on small cases
# ---------------------------------------------------------------------------------------------

def test_expected_gradient_of_a_symmetric_variable_halves_off_diagonal_derivatives():
    # f(S) = tr(S B): df/ds_ij = B_ij + B_ji off the diagonal (s_ij is both S_ij and S_ji),
    # and the symmetric gradient is (B + B')/2
    inst = Instance(3)
    S_var = E.Var("S", ("n", "n"), symmetric=True)
    S, B = inst.matrix(S_var), inst.matrix(Bvar)
    dS = inst.matrix(E.Var("dS", ("n", "n"), symmetric=True, diff=1))
    dS2 = inst.matrix(E.Var("dS2", ("n", "n"), symmetric=True, diff=2))
    F = sp.Matrix([[(S * B).trace()]])
    ex = Expected(F, S, dS, dS2, symmetric=True)
    assert sp.diff(F[0, 0], S[0, 1]) == B[0, 1] + B[1, 0]
    assert_same_matrix(ex.gradient(), (B + B.T) / 2)
    # the Jacobian is vec(G)' (columns (i, j) and (j, i) equal), the differential <G, dS>
    assert_same_matrix(ex.jacobian(), vec((B + B.T) / 2).T)
    assert_same_matrix(ex.differential(), sp.Matrix([[((B + B.T) / 2 * dS).trace()]]))


def test_expected_hessian_of_a_symmetric_variable():
    # f(S) = tr(S S): gradient 2S, Hessian (I + K) acting on symmetric directions: 2 P = I + K
    inst = Instance(2)
    S_var = E.Var("S", ("n", "n"), symmetric=True)
    S = inst.matrix(S_var)
    dS = inst.matrix(E.Var("dS", ("n", "n"), symmetric=True, diff=1))
    dS2 = inst.matrix(E.Var("dS2", ("n", "n"), symmetric=True, diff=2))
    ex = Expected(sp.Matrix([[(S * S).trace()]]), S, dS, dS2, symmetric=True)
    assert_same_matrix(ex.gradient(), 2 * S)
    assert_same_matrix(ex.hessian(), sp.eye(4) + commutation_matrix(2, 2))
    assert_same_matrix(ex.hessian_bilinear(), sp.Matrix([[2 * (dS * dS2).trace()]]))


def test_expected_jacobian_layouts():
    inst = Instance(3)
    A, x = inst.matrix(Avar), inst.matrix(xvar)
    dx = inst.matrix(E.Var("dx", ("n", 1), diff=1))
    dx2 = inst.matrix(E.Var("dx2", ("n", 1), diff=2))
    ex = Expected(A * x, x, dx, dx2, symmetric=False)
    assert ex.jacobian("numerator") == A
    assert ex.jacobian("denominator") == A.T
    assert ex.differential() == A * dx


# ---------------------------------------------------------------------------------------------
# verify passes on correct derivations
# ---------------------------------------------------------------------------------------------

CORRECT = [
    # vectors
    ("x: vector(n); A: matrix(n, n); x' * A * x", "x"),
    ("x: vector(n); A: matrix(m, n); b: vector(m); norm2(A * x - b)^2", "x"),
    ("x: vector(n); A: matrix(m, n); A * x", "x"),
    ("x: vector(n); norm2(x)", "x"),
    ("x: vector(n); norm1(x)", "x"),
    ("x: vector(n); exp(x) ./ sum(exp(x))", "x"),
    ("x: vector(n); y: vector(n); kron(x, y)", "x"),
    ("x: vector(n); y: vector(n); kron(y, x)", "x"),
    ("x: vector(n); diag(x) * x", "x"),
    ("x: vector(n); ones(n)' * x + 1", "x"),
    ("x: vector(n); reshape(x, 1, n)", "x"),
    ("x: vector(n); a: vector(n); sum(x .^ 3) + a' * x", "x"),
    # elementwise functions (kinks are fine away from zero)
    ("x: vector(n); sum(exp(x) + log(x) + sqrt(x))", "x"),
    ("x: vector(n); sum(sin(x) + cos(x) + tan(x) + tanh(x))", "x"),
    ("x: vector(n); sum(arcsin(x) + arccos(x) + arctan(x))", "x"),
    ("x: vector(n); A: matrix(n, n); sigmoid(A * x)", "x"),
    ("x: vector(n); sum(abs(x)) + sum(sign(x) .* x)", "x"),
    ("x: vector(n); relu(x) + step(x) .* x", "x"),
    # scalars
    ("c: scalar; x: vector(n); c * x + c^2 * x", "c"),
    ("c: scalar; exp(c) * sin(c)", "c"),
    # matrices
    ("X: matrix(n, n); tr(X * X')", "X"),
    ("X: matrix(m, n); sum(X .^ 2)", "X"),
    ("X: matrix(m, n); X'", "X"),
    ("X: matrix(n, n); vec(X')", "X"),
    ("X: matrix(n, n); diag(X)", "X"),
    ("X: matrix(n, n); diag(diag(X))", "X"),
    ("X: matrix(n, n); B: matrix(n, n); kron(X, B)", "X"),
    ("X: matrix(n, n); commutation(n, n) * vec(X)", "X"),
    ("X: matrix(n, n); norm2(X)", "X"),
    ("X: matrix(n, n); tr(X^3)", "X"),
    ("A: matrix(n, n); inv(A)", "A"),
    ("A: matrix(n, n); det(A)", "A"),
    ("A: matrix(n, n); logdet(A)", "A"),
    ("X: matrix(n, n); adj(X)", "X"),
    # symmetric variables
    ("S: symmetric(n); logdet(S)", "S"),
    ("S: symmetric(n); B: matrix(n, n); tr(S * B)", "S"),
    ("S: symmetric(n); x: vector(n); x' * S * S * x", "S"),
    ("S: symmetric(n); S * S", "S"),
    ("S: symmetric(n); inv(S)", "S"),
]


def _derive_all(program, wrt, layout="numerator"):
    """Every result the program allows: with the Hessian for scalar functions."""
    probe = derive(program, wrt=wrt)
    if probe.expression.is_scalar:
        return derive(program, wrt=wrt, gradient=True, jacobian=True, hessian=True, layout=layout)
    return derive(program, wrt=wrt, jacobian=True, layout=layout)


@pytest.mark.parametrize("program, wrt", CORRECT)
def test_verify_passes_on_correct_derivations(program, wrt):
    d = _derive_all(program, wrt)
    report = verify_derivation(d, 3)
    assert report.passed, report.lines()
    assert [r.name for r in report.results] == [n for n in ("differential", "gradient", "jacobian",
                                                           "hessian_bilinear", "hessian") if n in d.results]
    assert all(line.startswith(f"verify {r.name} (n=3): equal") for line, r in zip(report.lines(), report.results))
    assert all(r.first_difference is None for r in report.results)


@pytest.mark.parametrize("program, wrt", [
    ("x: vector(n); A: matrix(m, n); A * x", "x"),
    ("X: matrix(m, n); A: matrix(p, m); A * X", "X"),
    ("S: symmetric(n); x: vector(n); S * x", "S"),
])
def test_verify_checks_the_denominator_layout(program, wrt):
    d = _derive_all(program, wrt, layout="denominator")
    assert verify_derivation(d, 2).passed
    # and the numerator-layout Jacobian put in its place is caught (the layouts differ here)
    numerator = _derive_all(program, wrt).results["jacobian"].expr
    wrong = with_result(d, "jacobian", numerator)
    report = verify_derivation(wrong, 2)
    assert not report["jacobian"].equal


@pytest.mark.parametrize("n", [1, 2, 4])
def test_verify_at_other_sizes(n):
    d = derive("x: vector(n); A: matrix(n, n); x' * A * x", wrt="x", gradient=True, hessian=True)
    report = verify_derivation(d, n)
    assert report.passed and report.n == n
    assert all(f"(n={n})" in line for line in report.lines())


def test_small_polynomial_results_are_proven_symbolically():
    d = derive("x: vector(n); A: matrix(n, n); x' * A * x", wrt="x", gradient=True, jacobian=True, hessian=True)
    report = verify_derivation(d, 3, budget=60)
    assert all(r.method == "symbolic" and r.undecided == 0 for r in report.results)
    assert report.lines() == [f"verify {name} (n=3): equal" for name in
                              ("differential", "gradient", "jacobian", "hessian_bilinear", "hessian")]


def test_kinks_drop_out_away_from_zero():
    # d sign = 0 and d step = 0 away from zero: the DiracDelta terms of sympy.diff are dropped
    d = derive("x: vector(n); norm1(x)", wrt="x", gradient=True, hessian=True)
    report = verify_derivation(d, 3, budget=60)
    assert report.passed
    assert report["hessian"].method == "symbolic"


def test_without_time_for_symbolic_work_entries_are_compared_at_random_points():
    d = derive("A: matrix(n, n); inv(A)", wrt="A", jacobian=True)
    report = verify_derivation(d, 3, budget=0)
    assert report.passed
    jac = report["jacobian"]
    assert jac.method == "random points" and jac.points > 1 and jac.undecided == jac.entries == 81
    assert report.lines()[-1] == (f"verify jacobian (n=3): equal at {jac.points} random points "
                                  f"(symbolic simplification did not decide 81 of 81 entries)")


def test_the_random_points_are_reproducible():
    d = derive("x: vector(n); A: matrix(n, n); exp(A * x)", wrt="x")
    assert verify_derivation(d, 3, seed=5).to_dict() == verify_derivation(d, 3, seed=5).to_dict()


# ---------------------------------------------------------------------------------------------
# verify fails, usefully, on wrong results
# ---------------------------------------------------------------------------------------------

def test_gradient_of_xAx_replaced_by_2Ax_is_caught():
    d = derive("x: vector(n); A: matrix(n, n); x' * A * x", wrt="x", gradient=True)
    d = with_result(d, "gradient", E.mul(E.Num(2), E.matmul(var(d, "A"), d.x)))
    report = verify_derivation(d, 3)
    assert not report.passed
    assert report["differential"].equal
    g = report["gradient"]
    assert not g.equal and g.position == (0, 0)
    assert g.first_difference.startswith("gradient[0, 0]: ")
    # both sides, named: matcalc's 2 (A x)_1 against sympy's ((A + A') x)_1
    assert "2*A_11*x_1 + 2*A_12*x_2 + 2*A_13*x_3 (matcalc)" in g.first_difference
    assert "A_21*x_2" in g.first_difference and g.first_difference.endswith("(sympy)")
    assert report.lines()[1].startswith("verify gradient (n=3): NOT equal at [0, 0]: 2*A_11*x_1")
    assert report.to_dict()["passed"] is False


def test_wrong_jacobian_of_A_squared_is_caught():
    d = derive("A: matrix(n, n); A^2", wrt="A", jacobian=True)
    A = var(d, "A")
    d = with_result(d, "jacobian", E.mul(E.Num(2), E.kron(E.Identity(A.rows), A)))  # "2 A dA"
    report = verify_derivation(d, 3)
    assert not report["jacobian"].equal
    assert report.lines()[-1].startswith("verify jacobian (n=3): NOT equal at [")
    assert " vs " in report.lines()[-1]


def test_sign_error_in_the_inverse_is_caught():
    # the reference text's vec(d inv(A)) = (inv(A)' (x) inv(A)) vec(dA) lost the minus sign
    d = derive("A: matrix(n, n); inv(A)", wrt="A", jacobian=True)
    A = var(d, "A")
    d = with_result(d, "jacobian", E.kron(E.transpose(E.inverse(A)), E.inverse(A)))
    assert not verify_derivation(d, 2)["jacobian"].equal


def test_wrong_hessian_and_bilinear_form_are_caught():
    d = derive("x: vector(n); A: matrix(n, n); x' * A * x", wrt="x", hessian=True)
    A = var(d, "A")
    d = with_result(d, "hessian", E.mul(E.Num(2), A))
    d = with_result(d, "hessian_bilinear", E.matmul(E.transpose(d.dx), A, d.dx2))
    report = verify_derivation(d, 3)
    assert not report["hessian"].equal and not report["hessian_bilinear"].equal
    assert report["differential"].equal


def test_wrong_differential_is_caught():
    d = derive("A: matrix(n, n); A^2", wrt="A")
    A = var(d, "A")
    d = with_result(d, "differential", E.mul(E.Num(2), E.matmul(A, d.dx)))
    report = verify_derivation(d, 3)
    assert not report["differential"].equal and report["jacobian"].equal


def test_cookbook_gradient_is_not_the_symmetric_gradient():
    d = derive("S: symmetric(n); x: vector(n); x' * S * x", wrt="S", gradient=True)
    assert verify_derivation(d, 3).passed
    cookbook = derive("S: symmetric(n); x: vector(n); x' * S * x", wrt="S", gradient=True,
                      symmetric_gradient="cookbook")
    assert verify_derivation(cookbook, 3).passed   # checked against its own convention
    # the cookbook's matrix offered as the symmetric gradient is caught
    report = verify_derivation(with_result(d, "gradient", cookbook.gradient.expr), 3)
    assert not report["gradient"].equal
    i, j = report["gradient"].position
    assert i != j  # the diagonal agrees, off the diagonal the cookbook doubles


def test_wrong_transcendental_result_is_caught_numerically():
    d = derive("x: vector(n); sum(exp(x))", wrt="x", gradient=True)
    d = with_result(d, "gradient", E.hadamard(E.elementwise("exp", d.x), d.x))
    report = verify_derivation(d, 3)
    assert not report["gradient"].equal
    assert "exp(x_1)" in report["gradient"].first_difference


def test_wrong_result_is_caught_without_time_for_symbolic_work():
    d = derive("A: matrix(n, n); inv(A)", wrt="A", jacobian=True)
    A = var(d, "A")
    d = with_result(d, "jacobian", E.neg(E.kron(E.inverse(A), E.inverse(A))))  # inv(A) for inv(A)'
    assert not verify_derivation(d, 3, budget=0)["jacobian"].equal


def test_shape_mismatch_is_reported():
    d = derive("x: vector(n); A: matrix(n, n); x' * A * x", wrt="x", gradient=True)
    g = d.results["gradient"].expr
    d = with_result(d, "gradient", E.transpose(g))
    report = verify_derivation(d, 3)
    assert report["gradient"].first_difference == "gradient: shape 1x3 (matcalc) vs 3x1 (sympy)"
    assert report.lines()[1] == "verify gradient (n=3): NOT equal: shape 1x3 (matcalc) vs 3x1 (sympy)"


def test_report_to_dict_is_json():
    d = derive("x: vector(n); A: matrix(n, n); x' * A * x", wrt="x", gradient=True)
    report = verify_derivation(d, 2)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["n"] == 2 and data["passed"] is True
    assert [r["name"] for r in data["results"]] == ["differential", "gradient"]
    assert all(r["equal"] and r["first_difference"] is None for r in data["results"])


def test_report_passed_is_all_results_equal():
    ok, bad = ResultCheck("gradient", True), ResultCheck("hessian", False, position=(1, 0),
                                                         matcalc_entry="a", sympy_entry="b")
    assert VerifyReport(3, [ok]).passed and not VerifyReport(3, [ok, bad]).passed
    assert bad.first_difference == "hessian[1, 0]: a (matcalc) vs b (sympy)"
    assert VerifyReport(3, [bad]).lines() == ["verify hessian (n=3): NOT equal at [1, 0]: a (matcalc) vs b (sympy)"]


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------

XAX = "x: vector(n); A: matrix(n, n); x' * A * x"


def test_cli_verify_prints_the_lines_and_exits_0():
    result = CliRunner().invoke(main, [XAX, "--wrt", "x", "--hessian", "--verify", "--format", "plain"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "# verify differential (n=3): equal" in lines
    assert "# verify hessian (n=3): equal" in lines
    assert "A + A'" in lines


def test_cli_verify_with_a_size():
    result = CliRunner().invoke(main, ["A: matrix(n, n); A^2", "--verify", "2", "--format", "plain"])
    assert result.exit_code == 0, result.output
    assert "# verify jacobian (n=2): equal" in result.output.splitlines()


def test_cli_verify_json_has_a_verify_field():
    result = CliRunner().invoke(main, [XAX, "--wrt", "x", "--verify", "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["verify"]["passed"] is True and doc["verify"]["n"] == 3
    assert {r["name"] for r in doc["verify"]["results"]} == {"differential", "gradient"}


def test_cli_verify_exits_1_when_not_equal(monkeypatch):
    real_derive = api.derive

    def wrong_derive(*args, **kwargs):
        d = real_derive(*args, **kwargs)
        return with_result(d, "gradient", E.mul(E.Num(2), E.matmul(d.typed.variables["A"], d.x)))

    monkeypatch.setattr(api, "derive", wrong_derive)
    result = CliRunner().invoke(main, [XAX, "--wrt", "x", "--verify", "--format", "plain"])
    assert result.exit_code == 1
    assert "# verify gradient (n=3): NOT equal at [0, 0]: " in result.output
    assert "# verify differential (n=3): equal" in result.output


def test_cli_verify_needs_a_positive_size():
    result = CliRunner().invoke(main, [XAX, "--wrt", "x", "--verify", "0"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


# ---------------------------------------------------------------------------------------------
# The time budget
# ---------------------------------------------------------------------------------------------

def test_time_limit_interrupts_and_restores_the_alarm_handler():
    import signal
    import time

    from matcalc_cli.budget import SoftTimeout, soft_limit

    if not hasattr(signal, "setitimer") or signal.getsignal(signal.SIGALRM) is not signal.SIG_DFL:
        pytest.skip("needs SIGALRM free in the main thread")
    start = time.monotonic()
    with pytest.raises(SoftTimeout):
        with soft_limit(0.05):
            while time.monotonic() - start < 5:
                pass
    assert time.monotonic() - start < 2
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0
    with soft_limit(5):  # a block that ends in time leaves no timer behind
        pass
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL


def test_verify_stays_within_its_budget_on_heavy_programs():
    import time

    d = derive("X: matrix(n, n); tr(adj(X))", wrt="X", gradient=True, hessian=True)
    start = time.monotonic()
    report = verify_derivation(d, 3, budget=0.5)
    assert report.passed
    # the budget bounds symbolic work; building and the random points take the rest
    assert time.monotonic() - start < 20
