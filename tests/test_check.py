"""``--check``: results against finite differences at random points.

The check must pass on what matcalc derives, and must fail when a result is wrong: a gradient
that misses a transpose, a Jacobian without its commutation matrix, a Hessian off by a factor, a
non-symmetric gradient for a symmetric variable.  The numeric helpers it stands on are tested here
too (dimension sizes, random points, the commutation matrix, the symmetric projection).
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import textwrap
from fractions import Fraction

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given

from matcalc_cli import derive
from matcalc_cli import expr as E
from matcalc_cli import numeric as N
from matcalc_cli.check import TOLERANCE_FIRST, CheckReport, check_derivation, relative_error
from matcalc_cli.cli import main

from strategies import profile_settings, programs

ALL = dict(gradient=True, jacobian=True, hessian=True)

CORRECT = [
    ("x: vector(n); A: matrix(n, n); x' * A * x", "x", ALL),
    ("x: vector(n); A: matrix(m, n); b: vector(m); norm2(A*x - b)^2", "x", ALL),
    ("X: matrix(n, n); det(X)", "X", ALL),
    ("X: matrix(n, n); logdet(X)", "X", ALL),
    ("X: symmetric(n); logdet(X)", "X", ALL),
    ("X: symmetric(n); A: matrix(n, n); tr(A * X * X)", "X", ALL),
    ("X: symmetric(n); A: matrix(n, n); tr(A * X)", "X", dict(gradient=True, symmetric_gradient="cookbook")),
    ("X: matrix(m, n); A: matrix(n, m); X * A * X", "X", {"jacobian": True}),
    ("X: matrix(m, n); A: matrix(n, m); X * A * X", "X", {"jacobian": True, "layout": "denominator"}),
    ("X: matrix(n, n); inv(X)", "X", {"jacobian": True}),
    ("X: matrix(n, n); adj(X)", "X", {"jacobian": True}),
    ("X: symmetric(n); X^2", "X", {"jacobian": True}),
    ("X: matrix(m, n); kron(X, X')", "X", {"jacobian": True}),
    ("x: vector(n); sum(log(x)) + sqrt(x' * x)", "x", ALL),
    ("x: vector(n); sum(relu(x)) + norm1(x) + sum(abs(x) .* x) + sum(step(x) .* x)", "x", ALL),
    ("X: matrix(m, n); sum(sigmoid(X)) + sum(exp(X) .* sin(X))", "X", ALL),
    ("x: vector(n); c: scalar; sum((x .* x + 1) .^ c)", "c", ALL),
    ("x: vector(n); lambda: scalar; lambda * x' * x", "lambda", ALL),
    ("x: vector(m*n); A: matrix(m, n); tr(A' * reshape(x, m, n))^2", "x", ALL),
]


@pytest.mark.parametrize("program,wrt,flags", CORRECT, ids=[f"{p} [{w}]" for p, w, _ in CORRECT])
def test_check_passes_on_what_matcalc_derives(program, wrt, flags):
    d = derive(program, wrt=wrt, **flags)
    report = check_derivation(d)
    assert [r.name for r in report.results] == list(d.results)
    assert report.passed, report.lines()
    for r in report.results:
        assert r.max_rel_error < r.tolerance / 100, r.line()  # accurate, not merely under tolerance


@given(programs())
@profile_settings(20)
def test_check_raises_no_false_alarm_on_random_programs(prog):
    d = derive(prog.source, wrt=prog.wrt, jacobian=True, gradient=prog.is_scalar, hessian=prog.is_scalar)
    report = check_derivation(d, points=2)
    assert report.passed, (str(prog), report.lines(), report.notes)


# --- wrong results fail ----------------------------------------------------------------------------

def with_result(d, name, expr):
    """The derivation with one result's expression replaced."""
    results = dict(d.results)
    results[name] = dataclasses.replace(results[name], expr=expr)
    return dataclasses.replace(d, results=results)


def verdicts(report: CheckReport) -> dict:
    return {r.name: r.passed for r in report.results}


def var(d, name):
    return d.typed.variables[name]


def test_gradient_missing_a_transpose_fails():
    d = derive("X: matrix(n, n); A: matrix(n, n); tr(A * X)", wrt="X", gradient=True)
    assert d.gradient.expr == E.transpose(var(d, "A"))
    report = check_derivation(with_result(d, "gradient", var(d, "A")))
    assert verdicts(report) == {"differential": True, "gradient": False}
    assert not report.passed
    assert report.results[1].max_rel_error > 1e-2


def test_quadratic_form_gradient_2Ax_fails_for_nonsymmetric_A():
    d = derive("x: vector(n); A: matrix(n, n); x' * A * x", wrt="x", gradient=True)
    wrong = E.mul(E.Num(2), E.matmul(var(d, "A"), var(d, "x")))
    assert not check_derivation(with_result(d, "gradient", wrong)).passed


def test_unsymmetrised_gradient_of_a_symmetric_variable_fails():
    d = derive("X: symmetric(n); A: matrix(n, n); tr(A * X)", wrt="X", gradient=True)
    assert check_derivation(d).passed
    report = check_derivation(with_result(d, "gradient", E.transpose(var(d, "A"))))
    assert verdicts(report)["gradient"] is False


def test_jacobian_without_its_commutation_matrix_fails():
    d = derive("X: matrix(m, n); X'", wrt="X", jacobian=True)
    identity = E.Identity(d.x.rows * d.x.cols)
    report = check_derivation(with_result(d, "jacobian", identity))
    assert verdicts(report) == {"differential": True, "jacobian": False}


def test_numerator_jacobian_reported_as_denominator_layout_fails():
    num = derive("x: vector(n); A: matrix(m, n); A * x", wrt="x", jacobian=True)
    den = derive("x: vector(n); A: matrix(m, n); A * x", wrt="x", jacobian=True, layout="denominator")
    assert check_derivation(den).passed
    report = check_derivation(with_result(den, "jacobian", num.jacobian.expr))
    assert verdicts(report)["jacobian"] is False
    assert report.results[-1].max_rel_error == float("inf")  # wrong shape


def test_hessian_off_by_a_factor_fails_and_bilinear_form_is_checked():
    d = derive("X: matrix(n, n); det(X)", wrt="X", hessian=True)
    assert check_derivation(d).passed
    report = check_derivation(with_result(d, "hessian", E.mul(E.Num(Fraction(1, 2)), d.hessian.expr)))
    assert verdicts(report) == {"differential": True, "hessian_bilinear": True, "hessian": False}
    bad_bilinear = E.mul(E.Num(-1), d.hessian_bilinear.expr)
    report = check_derivation(with_result(d, "hessian_bilinear", bad_bilinear))
    assert verdicts(report) == {"differential": True, "hessian_bilinear": False, "hessian": True}


def test_wrong_differential_fails():
    d = derive("x: vector(n); A: matrix(n, n); x' * A * x", wrt="x", gradient=True)
    wrong = E.matmul(E.transpose(var(d, "x")), var(d, "A"), d.dx)  # x' A dx: half the derivative
    assert verdicts(check_derivation(with_result(d, "differential", wrong))) == {
        "differential": False, "gradient": True}


def test_hessian_of_a_symmetric_variable_must_carry_the_projection():
    d = derive("X: symmetric(n); logdet(X)", wrt="X", hessian=True)
    assert check_derivation(d).passed
    unprojected = E.mul(E.Num(-1), E.kron(E.inverse(d.x), E.inverse(d.x)))
    assert verdicts(check_derivation(with_result(d, "hessian", unprojected)))["hessian"] is False


def test_a_function_that_is_nowhere_finite_fails_with_a_reason():
    d = derive("x: vector(n); sum(log(-(x .* x) - 1))", wrt="x", gradient=True)
    report = check_derivation(d)
    assert not report.passed
    assert any("not finite" in r.message or "no clean point" in r.message for r in report.results)
    assert report.notes


# --- the report ----------------------------------------------------------------------------------

def test_report_lines_and_json():
    d = derive("x: vector(n); A: matrix(n, n); x' * A * x", wrt="x", **ALL)
    report = check_derivation(d, seed=7, points=2)
    for line, r in zip(report.lines(), report.results):
        assert re.fullmatch(rf"check {r.name}: max relative error \d\.\de[+-]\d\d PASS", line)
    doc = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert doc["passed"] is True and doc["seed"] == 7 and doc["points"] == 2
    assert doc["sizes"] == {"n": 3}
    assert [r["name"] for r in doc["results"]] == list(d.results)


def test_failed_report_is_valid_json_with_infinite_error():
    den = derive("x: vector(n); A: matrix(m, n); A * x", wrt="x", jacobian=True, layout="denominator")
    num = derive("x: vector(n); A: matrix(m, n); A * x", wrt="x", jacobian=True)
    report = check_derivation(with_result(den, "jacobian", num.jacobian.expr))
    doc = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert doc["passed"] is False
    assert doc["results"][-1]["max_rel_error"] is None
    assert report.lines()[-1].endswith("FAIL") or "FAIL (" in report.lines()[-1]


def test_check_is_deterministic_for_a_seed():
    d = derive("X: matrix(n, n); det(X)", wrt="X", hessian=True)
    a, b = check_derivation(d, seed=3), check_derivation(d, seed=3)
    assert [r.max_rel_error for r in a.results] == [r.max_rel_error for r in b.results]


def test_relative_error_is_scaled_by_the_larger_of_one_and_the_reference():
    assert relative_error(np.array([[1.0]]), np.array([[1.0 + 1e-7]])) == pytest.approx(1e-7, rel=1e-6)
    assert relative_error(np.array([[1e6]]), np.array([[1e6 + 1.0]])) == pytest.approx(1e-6, rel=1e-6)
    assert relative_error(np.zeros((2, 2)), np.zeros((2, 1))) == float("inf")
    assert relative_error(np.array([[np.nan]]), np.array([[0.0]])) == float("inf")
    assert TOLERANCE_FIRST <= 1e-5


# --- the numeric helpers ----------------------------------------------------------------------------

def test_dimension_sizes_are_distinct_deterministic_and_overridable():
    d = derive("A: matrix(m, n); B: matrix(n, p); x: vector(q); r: vector(k); sum(A * B) + sum(x) + sum(r)",
               wrt="A", gradient=True)
    sizes = N.dimension_sizes(d)
    assert set(sizes) == {"m", "n", "p", "q", "k"}
    assert len(set(sizes.values())) == len(sizes)
    assert all(v >= 2 for v in sizes.values())
    assert N.dimension_sizes(d) == sizes
    over = N.dimension_sizes(d, {"n": 4})
    assert over["n"] == 4 and len(set(over.values())) == len(over)


def test_random_point_shapes_symmetry_and_conditioning():
    d = derive("S: symmetric(n); A: matrix(n, n); B: matrix(m, n); x: vector(n); c: scalar; "
               "logdet(S) + logdet(A) + c * x' * S * x + sum(B)", wrt="S", gradient=True)
    sizes = N.dimension_sizes(d)
    values = N.random_point(d, np.random.default_rng(0), sizes)
    n, m = sizes["n"], sizes["m"]
    assert values["S"].shape == (n, n) and values["x"].shape == (n, 1) and values["c"].shape == (1, 1)
    assert values["B"].shape == (m, n)
    np.testing.assert_array_equal(values["S"], values["S"].T)
    assert np.linalg.det(values["A"]) > 0 and np.linalg.cond(values["A"]) < 100
    assert np.all(np.linalg.eigvalsh(values["S"]) > 0)
    assert not N.point_problems(d, values, sizes)


def test_random_point_finds_positive_arguments_and_avoids_kinks():
    d = derive("x: vector(n); y: vector(n); sum(log(x)) + sum(sqrt(y)) + norm1(x - y)", wrt="x", gradient=True)
    sizes = N.dimension_sizes(d)
    for seed in range(5):
        values = N.random_point(d, np.random.default_rng(seed), sizes)
        assert np.all(values["x"] > 0) and np.all(values["y"] > 0)
        assert np.min(np.abs(values["x"] - values["y"])) > 0.01
        assert not N.point_problems(d, values, sizes)


def test_commutation_matrix_transposes_vec():
    X = np.arange(6.0).reshape(2, 3)
    K = N.commutation_matrix(2, 3)
    np.testing.assert_array_equal(K @ X.reshape(-1, order="F"), X.T.reshape(-1, order="F"))


def test_evaluate_follows_the_ir():
    d = derive("X: matrix(n, n); A: matrix(m, n); tr(A' * A * inv(X)) + norm2(A)^2 + det(X)", wrt="X")
    sizes = N.dimension_sizes(d)
    values = N.random_point(d, np.random.default_rng(1), sizes)
    X, A = values["X"], values["A"]
    expected = np.trace(A.T @ A @ np.linalg.inv(X)) + np.sum(A * A) + np.linalg.det(X)
    assert N.evaluate(d.expression, values, sizes)[0, 0] == pytest.approx(expected, rel=1e-12)


def test_adjugate_of_a_singular_matrix():
    a = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [1.0, 0.0, 1.0]])
    cof = np.array([[(-1) ** (i + j) * np.linalg.det(np.delete(np.delete(a, i, 0), j, 1)) for j in range(3)]
                    for i in range(3)])
    np.testing.assert_allclose(N.adjugate(a), cof.T, atol=1e-12)


def test_numeric_jacobian_of_a_symmetric_variable_is_projected():
    d = derive("X: symmetric(n); A: matrix(n, n); A * X", wrt="X", jacobian=True)
    sizes = N.dimension_sizes(d)
    values = N.random_point(d, np.random.default_rng(2), sizes)
    J = N.numeric_jacobian(d, values, sizes)
    n = sizes["n"]
    K = N.commutation_matrix(n, n)
    np.testing.assert_allclose(J @ K, J, atol=1e-9)  # zero on antisymmetric directions
    P = (np.eye(n * n) + K) / 2
    np.testing.assert_allclose(J, np.kron(np.eye(n), values["A"]) @ P, atol=1e-9)


# --- the command line --------------------------------------------------------------------------------

def test_cli_check_prints_pass_lines_and_exits_0():
    result = CliRunner().invoke(main, ["X: symmetric(n); logdet(X)", "--hessian", "--gradient", "--check",
                                       "--format", "plain"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("# check")]
    assert [line.split(":")[0] for line in lines] == [
        "# check differential", "# check gradient", "# check hessian_bilinear", "# check hessian"]
    assert all(line.endswith("PASS") for line in lines)


def test_cli_check_in_json():
    result = CliRunner().invoke(main, ["x: vector(n); A: matrix(n, n); x' * A * x", "--wrt", "x", "--check",
                                       "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["check"]["passed"] is True
    assert {r["name"] for r in doc["check"]["results"]} == {"differential", "gradient"}


def test_cli_check_with_numpy_format_keeps_the_module_valid_python():
    result = CliRunner().invoke(main, ["x: vector(n); sum(exp(x))", "--check", "--format", "numpy"])
    assert result.exit_code == 0
    compile(result.output, "<module>", "exec")
    assert "# check gradient: max relative error" in result.output


def test_cli_exits_1_when_a_result_is_wrong(monkeypatch):
    from matcalc_cli import identify

    real = identify.gradient

    def transposed_gradient(df, x, dx):
        return E.transpose(real(df, x, dx))

    monkeypatch.setattr(identify, "gradient", transposed_gradient)
    result = CliRunner().invoke(main, ["X: matrix(n, n); A: matrix(n, n); tr(A * X)", "--wrt", "X",
                                       "--gradient", "--check", "--format", "plain"])
    assert result.exit_code == 1
    assert "# check gradient: max relative error" in result.output and "FAIL" in result.output
    assert "Traceback" not in result.output


def _numpy_imported_after(args: list) -> bool:
    script = textwrap.dedent(f"""
        import sys
        from matcalc_cli.cli import main
        try:
            main({args!r}, standalone_mode=False)
        except SystemExit:
            pass
        print("numpy" in sys.modules)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip().splitlines()[-1] == "True"


def test_numpy_is_loaded_only_for_check():
    program = "x: vector(n); A: matrix(n, n); x' * A * x"
    assert _numpy_imported_after([program, "--wrt", "x", "--hessian", "--format", "plain"]) is False
    assert _numpy_imported_after([program, "--wrt", "x", "--check", "--format", "plain"]) is True


# --- found on the way -------------------------------------------------------------------------------

def test_printed_hessian_reparses_to_the_same_shape():
    # ones(n) inside a product must print as ones(n), not 1 (the text would not re-parse)
    d = derive("x: vector(n); A: matrix(n, n); x' * A * x * sum(x)", wrt="x", hessian=True)
    again = derive("x: vector(n); A: matrix(n, n); " + d.hessian.text(), wrt="x", jacobian=True)
    assert again.expression.shape == d.hessian.expr.shape


def test_power_of_a_piecewise_constant_function_has_zero_derivative():
    d = derive("x: vector(n); sum(sign(x).^2) + x' * x", wrt="x", gradient=True, hessian=True)
    assert check_derivation(d).passed


def test_vec_of_a_reshaped_row_is_a_column():
    program = "x: vector(n); v: vector(n*n); vec(reshape(v', n, n))' * vec(diag(x))"
    d = derive(program, wrt="x", jacobian=True)
    assert d.expression.shape == (1, 1)
    d = derive(program, wrt="x", gradient=True, hessian=True)
    assert check_derivation(d).passed
