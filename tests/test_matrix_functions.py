"""Matrix functions expm, logm, sqrtm and their Frechet derivatives.

Every derivative is compared with finite differences of f at random points, near 2I and far from
normal (a large strictly upper triangular part), in every format: the IR, the printed text parsed
back, the generated NumPy module; the first-order derivative of expm also with SciPy's
expm_frechet, and the implementations of the Frechet derivative (SciPy fast paths, the block-matrix
identity, mpmath's Daleckii-Krein form) with one another.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg as sl
from click.testing import CliRunner

from matcalc_cli import derive
from matcalc_cli import expr as E
from matcalc_cli import numeric as N
from matcalc_cli.api import Result
from matcalc_cli.check import check_derivation
from matcalc_cli.cli import main
from matcalc_cli.errors import MatcalcError, ParseError, ShapeError
from matcalc_cli.render.numpy_code import to_numpy_module
from matcalc_cli.shapes import check
from matcalc_cli.simplify import simplify
from matcalc_cli.syntax import parse
from matcalc_cli.verify import verify_derivation

from numcheck import CheckReport, check_at, reparse_problems
from test_latex import compile_latex, pdflatex  # noqa: F401 (a fixture)
from test_numpy_code import arguments, as_2d, free_dims, load

ALL = dict(gradient=True, hessian=True)
JAC = dict(jacobian=True)

LYAPUNOV = "A: matrix(n, n); Q: matrix(n, n); P: matrix(n, n); t: scalar; tr(Q * expm(A * t) * P * expm(A' * t))"
FRECHET_DISTANCE = "S1: symmetric(n); S2: symmetric(n); tr(S1 + S2 - 2 * sqrtm(sqrtm(S1) * S2 * sqrtm(S1)))"
LOG_NORM = "X: symmetric(n); norm2(logm(X))^2"

# (program, wrt, flags): each function, each kind of result, symmetric and general arguments,
# derivatives of derivatives (a program that contains dexpm has d2expm in its Hessian)
PROGRAMS = [
    ("X: matrix(n, n); expm(X)", "X", JAC),
    ("X: matrix(n, n); logm(X)", "X", JAC),
    ("X: matrix(n, n); sqrtm(X)", "X", JAC),
    ("X: matrix(n, n); A: matrix(n, n); tr(A * expm(X))", "X", ALL),
    ("X: matrix(n, n); A: matrix(n, n); tr(A * logm(X))", "X", {"gradient": True}),
    pytest.param("X: matrix(n, n); A: matrix(n, n); tr(A * logm(X))", "X", ALL, marks=pytest.mark.slow),
    ("X: matrix(n, n); A: matrix(n, n); tr(A * sqrtm(X))", "X", ALL),
    ("X: symmetric(n); A: matrix(n, n); tr(A * expm(X))", "X", ALL),
    ("X: symmetric(n); A: matrix(n, n); tr(A * sqrtm(X))", "X", ALL),
    ("X: matrix(n, n); norm2(logm(X))^2", "X", {"gradient": True}),
    pytest.param("X: matrix(n, n); norm2(logm(X))^2", "X", ALL, marks=pytest.mark.slow),
    (LOG_NORM, "X", ALL),
    ("X: matrix(n, n); x: vector(n); x' * expm(X) * sqrtm(X) * x", "X", ALL),
    ("X: matrix(n, n); B: matrix(n, n); dexpm(X, B)", "X", JAC),
    ("X: matrix(n, n); E: matrix(n, n); dlogm(X, E)", "E", JAC),
    ("X: matrix(n, n); B: matrix(n, n); tr(B * dsqrtm(X, B))", "X", ALL),
    ("X: matrix(n, n); B: matrix(n, n); C: matrix(n, n); tr(C * d2expm(X, B, X))", "X", {"gradient": True}),
    ("t: scalar; A: matrix(n, n); expm(t * A)", "t", JAC),
    ("t: scalar; A: matrix(n, n); tr(logm(A + t * I) * sqrtm(A))", "t", ALL),
    (LYAPUNOV, "t", ALL),
    (LYAPUNOV, "A", {"gradient": True}),
    pytest.param(LYAPUNOV, "A", ALL, marks=pytest.mark.slow),
    (FRECHET_DISTANCE, "S2", ALL),
]


def _values(p):
    return p.values if hasattr(p, "values") else p


IDS = [f"{_values(p)[0]} [{_values(p)[1]}]{' hessian' if 'hessian' in _values(p)[2] else ''}" for p in PROGRAMS]


def non_normal_point(d, rng, sizes) -> dict:
    """Values near 2I plus a large strictly upper triangular part: ||X X' - X' X|| is of the order
    of ||X||^2, and the eigenvalues stay near 2 (logm and sqrtm are defined)."""
    values = N.random_values(d, rng, sizes)
    for name, sym in d.typed.symbols.items():
        r, c = N.shape_of(sym.shape, sizes)
        if r == c > 1 and not sym.symmetric:
            values[name] = 2 * np.eye(r) + np.triu(rng.uniform(1.0, 2.0, (r, r)), 1) \
                + 0.05 * rng.standard_normal((r, r))
    return values


def points(d, seed=0):
    """A random point of check's kind and a non-normal one."""
    sizes = N.dimension_sizes(d)
    rng = np.random.default_rng(seed)
    out = [N.random_point(d, rng, sizes), non_normal_point(d, rng, sizes)]
    for values in out:
        assert not N.point_problems(d, values, sizes), N.point_problems(d, values, sizes)
    return sizes, rng, out


def fd_report(d, seed=0) -> CheckReport:
    sizes, rng, pts = points(d, seed)
    report = CheckReport(d.typed.source)
    for values in pts:
        with np.errstate(all="ignore"):
            check_at(d, values, sizes, rng, report)
        report.points += 1
    return report


# --- every derivative against finite differences -------------------------------------------------

@pytest.mark.parametrize("program,wrt,flags", PROGRAMS, ids=IDS)
def test_derivatives_agree_with_finite_differences_including_non_normal_points(program, wrt, flags):
    d = derive(program, wrt=wrt, **flags)
    report = fd_report(d)
    assert report.points == 2
    assert not report.mismatches, report.mismatches


@pytest.mark.parametrize("program,wrt,flags", PROGRAMS, ids=IDS)
def test_printed_results_parse_back_to_the_same_numbers(program, wrt, flags):
    d = derive(program, wrt=wrt, **flags)
    sizes, rng, pts = points(d, seed=1)
    assert not reparse_problems(d, pts[1], sizes, rng)


@pytest.mark.parametrize("program,wrt,flags", PROGRAMS, ids=IDS)
def test_generated_numpy_module_equals_the_ir_and_finite_differences_of_its_f(program, wrt, flags):
    d = derive(program, wrt=wrt, **flags)
    mod = load(d)
    sizes, rng, pts = points(d, seed=2)
    values = dict(pts[1])
    values[d.dx.name] = N.random_direction(d.dx, rng, sizes)
    values[d.dx2.name] = N.random_direction(d.dx2, rng, sizes)
    args = arguments(d, values)
    args.update(free_dims(d, sizes))
    plain = {k: v for k, v in args.items() if k not in (d.dx.name, d.dx2.name)}
    for name, r in d.results.items():
        call = dict(plain)
        if name in ("differential", "hessian_bilinear"):
            call[d.dx.name] = args[d.dx.name]
        if name == "hessian_bilinear":
            call[d.dx2.name] = args[d.dx2.name]
        got = mod[name](**call)
        expected = N.evaluate(r.expr, values, sizes)
        np.testing.assert_allclose(as_2d(got, expected.shape), expected, rtol=1e-9, atol=1e-11, err_msg=name)
    # the module's own f, differenced, gives the module's differential
    x0 = np.asarray(args[d.x.name], dtype=float)
    direction = np.asarray(args[d.dx.name], dtype=float)
    h = 1e-5
    f = lambda x: np.asarray(mod["f"](**{**plain, d.x.name: x}), dtype=float)
    fd = (f(x0 + h * direction) - f(x0 - h * direction)) / (2 * h)
    got = np.asarray(mod["differential"](**{**plain, d.dx.name: args[d.dx.name]}), dtype=float)
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-6)


def test_only_modules_with_matrix_functions_import_scipy():
    with_scipy = to_numpy_module(derive("X: matrix(n, n); tr(expm(X))", wrt="X"))
    without = to_numpy_module(derive("X: matrix(n, n); tr(X * X)", wrt="X"))
    assert "import scipy.linalg\n" in with_scipy
    assert "scipy" not in without
    assert "expm_frechet" not in to_numpy_module(derive("X: matrix(n, n); tr(logm(X))", wrt="X"))


def test_check_and_verify_pass_for_each_function():
    for fn in ("expm", "logm", "sqrtm"):
        d = derive(f"X: matrix(n, n); A: matrix(n, n); tr(A * {fn}(X))", wrt="X", gradient=True)
        assert check_derivation(d, points=1).passed
        report = verify_derivation(d, 3)
        assert report.passed, report.lines()
        assert all(r.method == "high precision" for r in report.results)


def test_verify_finds_a_wrong_gradient():
    d = derive("X: matrix(n, n); norm2(logm(X))^2", wrt="X", gradient=True)
    g = d.results["gradient"]
    d.results["gradient"] = Result("gradient", g.label, E.transpose(g.expr))
    report = verify_derivation(d, 3)
    assert not report["gradient"].equal
    assert "finite differences at 50 digits" in report["gradient"].first_difference


def test_verify_finds_a_wrong_hessian_along_random_directions():
    d = derive(LOG_NORM, wrt="X", gradient=True, hessian=True)
    h = d.results["hessian"]
    d.results["hessian"] = Result("hessian", h.label, E.scale(2, h.expr))
    report = verify_derivation(d, 3)
    assert report["gradient"].equal
    assert not report["hessian"].equal


# --- the Frechet derivative itself ---------------------------------------------------------------

def _non_normal(n, rng):
    return 2 * np.eye(n) + np.triu(rng.uniform(1.0, 3.0, (n, n)), 1) + 0.1 * rng.standard_normal((n, n))


@pytest.mark.parametrize("n", [3, 4])
def test_dexpm_agrees_with_scipy_expm_frechet(n):
    """The differential of expm(X) evaluated, the block-matrix identity, the generated module's
    helper and mpmath's Daleckii-Krein form all equal SciPy's expm_frechet."""
    from matcalc_cli import verify_matfun as VM
    import mpmath
    import sympy as sp
    rng = np.random.default_rng(n)
    d = derive("X: matrix(n, n); expm(X)", wrt="X", jacobian=True)
    assert d.differential.text() == "dexpm(X, dX)"
    mod = load(d)
    for X in (_non_normal(n, rng), rng.standard_normal((n, n))):
        E_ = rng.standard_normal((n, n))
        expected = sl.expm_frechet(X, E_, compute_expm=False)
        sizes = {"n": n}
        ir = N.evaluate(d.differential.expr, {"X": X, "dX": E_}, sizes)
        np.testing.assert_allclose(ir, expected, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(N.block_frechet_derivative("expm", X, [E_]), expected, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(mod["differential"](X=X, dX=E_), expected, rtol=1e-10, atol=1e-12)
        J = N.evaluate(d.jacobian.expr, {"X": X}, sizes)
        np.testing.assert_allclose(J @ E_.reshape(-1, order="F"), expected.reshape(-1, order="F"), rtol=1e-9,
                                   atol=1e-11)
        with mpmath.workdps(30):
            mp = VM._mp_frechet("expm", mpmath.matrix(X.tolist()), [mpmath.matrix(E_.tolist())])
            value = np.array([[float(mpmath.re(mp[i, j])) for j in range(n)] for i in range(n)])
        np.testing.assert_allclose(value, expected, rtol=1e-10, atol=1e-12)
        # and the value verify uses at a point, through SymPy matrices of numbers
        S = VM.frechet_value("expm", sp.Matrix(X.tolist()), [sp.Matrix(E_.tolist())])
        np.testing.assert_allclose(np.array(S.tolist(), dtype=float), expected, rtol=1e-10, atol=1e-12)


def test_second_frechet_derivative_is_the_derivative_of_the_first():
    rng = np.random.default_rng(5)
    n = 3
    X, E1, E2 = _non_normal(n, rng), rng.standard_normal((n, n)), rng.standard_normal((n, n))
    for fn in ("expm", "logm", "sqrtm"):
        h = 1e-5
        first = lambda Y: N.frechet_derivative(fn, Y, [E1])
        fd = (first(X + h * E2) - first(X - h * E2)) / (2 * h)
        second = N.frechet_derivative(fn, X, [E1, E2])
        np.testing.assert_allclose(second, fd, rtol=1e-6, atol=1e-6, err_msg=fn)
        # symmetric in the directions
        np.testing.assert_allclose(N.frechet_derivative(fn, X, [E2, E1]), second, rtol=1e-8, atol=1e-10)


def test_sqrtm_and_logm_derivatives_solve_their_defining_equations():
    rng = np.random.default_rng(6)
    n = 4
    X, E_ = _non_normal(n, rng), rng.standard_normal((n, n))
    S = sl.sqrtm(X)
    L = N.frechet_derivative("sqrtm", X, [E_])
    np.testing.assert_allclose(S @ L + L @ S, E_, atol=1e-10)
    # dlogm is the inverse of dexpm at logm(X)
    Lg = N.frechet_derivative("logm", X, [E_])
    np.testing.assert_allclose(sl.expm_frechet(sl.logm(X), Lg, compute_expm=False), E_, atol=1e-8)


# --- printed forms: the rules --------------------------------------------------------------------

def text(program, wrt, name="gradient", **flags):
    d = derive(program, wrt=wrt, **(flags or {"gradient": True}))
    return d.results[name].text()


def test_gradient_through_the_adjoint():
    assert text("X: matrix(n, n); A: matrix(n, n); tr(A * expm(X))", "X") == "dexpm(X', A')"
    assert text("X: matrix(n, n); A: matrix(n, n); tr(A * logm(X))", "X") == "dlogm(X', A')"
    assert text("X: matrix(n, n); A: matrix(n, n); tr(A * sqrtm(X))", "X") == "dsqrtm(X', A')"


def test_symmetric_argument_gives_a_symmetric_gradient():
    assert text("X: symmetric(n); A: matrix(n, n); tr(A * expm(X))", "X") == "dexpm(X, A + A') / 2"
    assert text(LOG_NORM, "X") == "2 * inv(X) * logm(X)"
    rng = np.random.default_rng(3)
    for program in ("X: symmetric(n); A: matrix(n, n); tr(A * expm(X))", "X: symmetric(n); A: matrix(n, n); "
                    "tr(A * logm(X) * A')", "X: symmetric(n); A: matrix(n, n); tr(A * sqrtm(X)) + norm2(sqrtm(X))^2",
                    LOG_NORM):
        d = derive(program, wrt="X", gradient=True)
        sizes = N.dimension_sizes(d)
        G = N.evaluate(d.gradient.expr, N.random_point(d, rng, sizes), sizes)
        np.testing.assert_allclose(G, G.T, atol=1e-12)
        assert simplify(E.transpose(d.gradient.expr)) == d.gradient.expr


def test_scalar_times_a_matrix_commutes():
    # d/dt expm(t A) = A expm(t A)
    assert text("t: scalar; A: matrix(n, n); expm(t * A)", "t", "differential", jacobian=True) == \
        "A * expm(t * A) * dt"
    # d/dt tr(logm(t A)) = tr(inv(t A) A) = n / t
    assert text("t: scalar; A: matrix(n, n); tr(logm(t * A))", "t") == "tr(I(n)) / t"


def test_directions_that_commute_with_x_simplify():
    cases = {
        "dexpm(X, X)": "X * expm(X)",
        "dexpm(X, 3 * I)": "3 * expm(X)",
        "dexpm(X, inv(X))": "inv(X) * expm(X)",
        "dlogm(X, X)": "I(n)",
        "dlogm(X, I)": "inv(X)",
        "dsqrtm(X, 2 * I)": "inv(sqrtm(X))",
        "dsqrtm(X, sqrtm(X))": "I(n) / 2",
        "d2expm(X, I, B)": "dexpm(X, B)",
        "d2expm(X, B, I)": "dexpm(X, B)",
        "d2logm(X, I, I)": "-inv(X)^2",
        "d2expm(X, B, 0 * B)": "zeros(n, n)",
        "dexpm(X, 2 * B) - 2 * dexpm(X, B)": "zeros(n, n)",
        "d2expm(X, C, B) - d2expm(X, B, C)": "zeros(n, n)",
        "expm(logm(X))": "X",
        "inv(expm(X))": "expm(-X)",
        "expm(X)'": "expm(X')",
        "dexpm(X, B)'": "dexpm(X', B')",
    }
    for source, printed in cases.items():
        d = derive(f"X: matrix(n, n); B: matrix(n, n); C: matrix(n, n); {source}", wrt="X", jacobian=True)
        assert str(d.expression) == printed, source


def test_scalar_arguments_are_ordinary_functions():
    assert text("x: scalar; expm(x) + logm(x) + sqrtm(x)", "x") == "exp(x) + 1 / (2 * sqrt(x)) + 1 / x"


def test_jacobians_in_kronecker_form_and_as_operator_matrices():
    J = lambda fn: text(f"X: matrix(n, n); {fn}(X)", "X", "jacobian", jacobian=True)
    assert J("sqrtm") == "inv(kron(I(n), sqrtm(X)) + kron(sqrtm(X'), I(n)))"
    assert J("logm") == "inv(jexpm(logm(X)))"
    assert J("expm") == "jexpm(X)"
    assert text("X: matrix(n, n); B: matrix(n, n); dexpm(X, B)", "X", "jacobian", jacobian=True) == "jexpm(X, B)"


def test_hessians_are_bilinear_forms_in_second_frechet_derivatives():
    d = derive("X: matrix(n, n); A: matrix(n, n); tr(A * expm(X))", wrt="X", hessian=True)
    assert d.hessian_bilinear.text() == "tr(A * d2expm(X, dX, dX2))"
    assert d.hessian.text() == "jexpm(X', A') * commutation(n, n)"


# --- language: names, shapes, errors ----------------------------------------------------------------

@pytest.mark.parametrize("source,shape", [
    ("expm(X)", ("n", "n")), ("dlogm(X, B)", ("n", "n")), ("d2sqrtm(X, B, B)", ("n", "n")),
    ("d4expm(X, B, B, B, B)", ("n", "n")), ("jexpm(X)", ("n^2", "n^2")), ("jsqrtm(X, B)", ("n^2", "n^2")),
])
def test_shapes(source, shape):
    typed = check(parse(f"X: matrix(n, n); B: matrix(n, n); {source}"))
    assert tuple(str(s) for s in typed.expression.shape) == shape


@pytest.mark.parametrize("source,fragment,hint", [
    ("x: vector(n); expm(x)", "expm is the matrix exponential and needs a square matrix, but x is n x 1",
     "for the exponential of each entry use exp(x)"),
    ("A: matrix(m, n); logm(A)", "logm is the matrix logarithm and needs a square matrix, but A is m x n",
     "use log(A)"),
    ("A: matrix(m, n); sqrtm(A' * A * A')", "sqrtm is the matrix square root", "use sqrt(A' * A * A')"),
    ("X: matrix(n, n); B: matrix(m, n); dexpm(X, B)", "the direction B (m x n) of dexpm must have the shape", None),
])
def test_shape_errors_name_the_elementwise_twin(source, fragment, hint):
    with pytest.raises(ShapeError) as info:
        derive(source)
    assert fragment in info.value.message
    if hint:
        assert hint in info.value.hint


def test_arity_and_order_errors():
    with pytest.raises(ParseError, match="dexpm takes 2 arguments, got 1"):
        derive("X: matrix(n, n); dexpm(X)")
    with pytest.raises(ParseError, match="expm takes 1 argument, got 2"):
        derive("X: matrix(n, n); expm(X, X)")
    with pytest.raises(MatcalcError, match="unknown function 'd5expm'"):
        derive("X: matrix(n, n); d5expm(X, X, X, X, X, X)")
    with pytest.raises(MatcalcError, match="order above 4"):
        derive("X: matrix(n, n); B: matrix(n, n); tr(d4expm(X, B, B, B, B))", wrt="X", hessian=True)


def test_cli_errors_exit_1_with_a_caret():
    result = CliRunner().invoke(main, ["x: vector(n); sqrtm(x)"])
    assert result.exit_code == 1
    assert "^" in result.stderr and "use sqrt(x)" in result.stderr


# --- formats ---------------------------------------------------------------------------------------

def test_latex_compiles(pdflatex, tmp_path):  # noqa: F811 (the fixture)
    runner = CliRunner()
    blocks = []
    for program, wrt, flags in [_values(p) for p in PROGRAMS[::2]] + [(LYAPUNOV, "A", ALL)]:
        extra = ["--hessian", "--gradient"] if "hessian" in flags else ["--jacobian"]
        result = runner.invoke(main, [program, "--wrt", wrt, "--format", "latex"] + extra)
        assert result.exit_code == 0, result.output
        blocks.append(result.stdout)
    from matcalc_cli.render.latex import to_latex
    tricky = derive("X: matrix(n, n); inv(sqrtm(X))^2 * logm(X)' * sqrtm(X * X)' * expm(X)^-1 * expm(X)'", wrt="X",
                    jacobian=True)
    blocks.append(r"\[ " + to_latex(tricky.expression) + r" \]")
    blocks.append(r"\[ " + to_latex(check(parse("X: matrix(n, n); jexpm(X, X * X)'")).expression) + r" \]")
    done = compile_latex(pdflatex, "\n".join(blocks), tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]


def test_latex_notation():
    d = derive("X: matrix(n, n); A: matrix(n, n); tr(A * expm(X)) + tr(sqrtm(X)) + tr(logm(X))", wrt="X",
               gradient=True, hessian=True)
    from matcalc_cli.render.latex import to_latex
    assert r"{\mathrm{e}^{X}}" in to_latex(E.matfun("expm", d.x))
    assert r"{X^{1/2}}" in to_latex(E.matfun("sqrtm", d.x))
    assert r"\operatorname{logm}(X)" in to_latex(E.matfun("logm", d.x))
    assert r"\mathrm{L}_{\mathrm{expm}}\left(X^{\top}\right)\left[A^{\top}\right]" in d.gradient.latex()
    assert r"\mathrm{L}^{(2)}_{\mathrm{expm}}" in d.hessian_bilinear.latex()


def test_json_has_every_result_with_text_latex_and_checks():
    result = CliRunner().invoke(main, [LOG_NORM, "--gradient", "--format", "json", "--check", "--timeout", "0"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["gradient"]["text"] == "2 * inv(X) * logm(X)"
    assert r"\operatorname{logm}" in data["gradient"]["latex"]
    assert data["check"]["passed"]


# --- the README examples -------------------------------------------------------------------------

def run(*args):
    # correctness, not speed: no time limit on a loaded machine
    result = CliRunner().invoke(main, list(args) + ["--timeout", "0"])
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_readme_lyapunov_cost_in_t_and_in_a():
    lines = run(LYAPUNOV, "--wrt", "t", "--gradient", "--check")
    assert lines[1] == "tr(A * expm(t * A) * P * expm(t * A') * Q) + tr(A' * expm(t * A') * Q * expm(t * A) * P)"
    assert all(line.endswith("PASS") for line in lines if line.startswith("# check"))
    lines = run(LYAPUNOV, "--wrt", "A", "--gradient", "--check")
    assert lines[1] == "t * dexpm(t * A', Q * expm(t * A) * P + Q' * expm(t * A) * P')"
    assert all(line.endswith("PASS") for line in lines if line.startswith("# check"))


def test_readme_frechet_distance_between_gaussians():
    lines = run(FRECHET_DISTANCE, "--wrt", "S2", "--gradient", "--check")
    assert lines[1] == "I - sqrtm(S1) * inv(sqrtm(sqrtm(S1) * S2 * sqrtm(S1))) * sqrtm(S1)"
    assert all(line.endswith("PASS") for line in lines if line.startswith("# check"))


def test_readme_squared_log_norm_on_spd_matrices():
    lines = run(LOG_NORM, "--hessian", "--gradient", "--verify")
    assert lines[:4] == [
        "2 * tr(logm(X) * dlogm(X, dX))",
        "2 * inv(X) * logm(X)",
        "2 * (tr(dlogm(X, dX) * dlogm(X, dX2)) + tr(logm(X) * d2logm(X, dX, dX2)))",
        "kron(I(n), inv(X)) * (inv(jexpm(logm(X))) - kron(inv(X) * logm(X), I(n))) * (I + commutation(n, n))",
    ]
    assert all("equal at" in line for line in lines if line.startswith("# verify"))


@pytest.mark.parametrize("fn", ["expm", "logm", "sqrtm"])
def test_matrix_functions_of_symmetric_matrices_agree_with_scipy(fn):
    """Symmetric arguments go through the eigendecomposition; it must agree with SciPy's methods."""
    import numpy as np
    import scipy.linalg as sl
    from matcalc_cli.numeric import matrix_function
    rng = np.random.default_rng(7)
    b = rng.standard_normal((5, 5))
    s = b @ b.T / 5 + 0.5 * np.eye(5)
    expected = getattr(sl, fn)(s)
    assert np.allclose(matrix_function(fn, s), expected, rtol=1e-12, atol=1e-12)
    if fn != "expm":   # principal log/sqrt of a matrix with a negative eigenvalue: not real
        assert np.isnan(matrix_function(fn, np.diag([1.0, -1.0, 2.0]))).all()
