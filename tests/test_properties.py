"""Property tests over random well-shaped programs (``strategies.programs``).

For every generated program:

- ``derive`` does not fail, and every result is a well-shaped IR (each node's shape follows from its
  children's);
- the differential, gradient (scalar f), Jacobian, Hessian matrix and bilinear form agree with finite
  differences at a random point (``numcheck.check_at``);
- the IR of f evaluates to the same numbers as the program read directly from its syntax tree
  (so constant folding and rewriting while building cannot change the function unnoticed);
- the text of f and of every result parses back (after the program's declarations and those of dx,
  dx2) to an expression of the same shape and the same numbers;
- the denominator-layout Jacobian is the transpose of the numerator-layout one.

Points where an evaluation is genuinely ill-conditioned (not finite, an argument at a kink or at
the edge of a domain, an ill-conditioned inverse) are skipped with ``assume`` and counted; the count
must stay rare (``test_skipped_points_are_rare``).  Run with ``-s`` to see how many programs were
checked.  MATCALC_HYPOTHESIS_PROFILE=long runs 20x the examples.

Every failure these tests found is kept below as an explicit regression case.
"""

from __future__ import annotations

import collections
import json
import os
import re
import time

import numpy as np
import pytest
from hypothesis import assume, given, note, settings

from matcalc_cli import derive
from matcalc_cli.numeric import dimension_sizes, evaluate, random_point
from matcalc_cli.render.documents import declarations_text
from numcheck import Unsupported, check_derivation, reparse_problems, rng_for, shape_problems, source_problems
from strategies import PROFILE, Program, profile_settings, programs

STATS: collections.Counter = collections.Counter()
SKIPS: collections.Counter = collections.Counter()
STARTED = time.time()


def _derive_all(program: str, wrt: str, scalar: bool, **kw):
    return derive(program, wrt=wrt, gradient=scalar, jacobian=True, hessian=scalar, **kw)


def _results(d):
    return [("expression", d.expression)] + [(name, r.expr) for name, r in d.results.items()]


def assert_well_shaped(d):
    problems = [f"{name}: {p}" for name, e in _results(d) for p in shape_problems(e)]
    assert not problems, "ill-shaped IR:\n" + "\n".join(problems[:5])


def _skip_reason(reason: str) -> str:
    return re.sub(r"\s+", " ", reason.split(":")[0])[:60]


# --- the properties -----------------------------------------------------------------------------

@profile_settings(1200)
@given(programs())
def test_derivatives_match_finite_differences(p: Program):
    note(str(p))
    STATS["derivatives: programs"] += 1
    d = _derive_all(p.source, p.wrt, p.is_scalar)
    assert_well_shaped(d)
    report = check_derivation(d, points=1)
    if report.skipped:
        STATS["derivatives: skipped"] += 1
        SKIPS[_skip_reason(report.skipped[0])] += 1
    elif report.unstable and report.ok:
        STATS["derivatives: skipped"] += 1
        SKIPS["finite differences scatter"] += 1
    assume(report.points > 0 and not (report.unstable and report.ok))
    STATS["derivatives: checked"] += 1
    STATS["derivatives: results compared"] += len(report.checked)
    assert report.ok, str(report)


@profile_settings(500)
@given(programs())
def test_ir_evaluates_like_the_source(p: Program):
    """The IR that shape inference and the smart constructors build means what the program says:
    it evaluates to the numbers NumPy gets from the syntax tree directly (numcheck.source_value)."""
    note(str(p))
    STATS["source: programs"] += 1
    d = derive(p.source, wrt=p.wrt, jacobian=True)
    sizes = dimension_sizes(d)
    values = random_point(d, rng_for(p.source, 3), sizes)
    try:
        problems = source_problems(d, values, sizes)
    except Unsupported as e:
        STATS["source: unsupported"] += 1
        SKIPS[f"direct evaluation: {e}"] += 1
        assume(False)
    assert not problems, "\n".join(problems)


@profile_settings(700)
@given(programs(max_depth=5))
def test_results_print_and_parse_back(p: Program):
    note(str(p))
    STATS["round trip: programs"] += 1
    d = _derive_all(p.source, p.wrt, p.is_scalar)
    sizes = dimension_sizes(d)
    rng = rng_for(p.source, 1)
    values = random_point(d, rng, sizes)
    problems = reparse_problems(d, values, sizes, rng)
    STATS["round trip: texts"] += len(d.results) + 1
    assert not problems, "\n".join(problems)


@profile_settings(300)
@given(programs(max_depth=4, output=None))
def test_denominator_layout_is_the_transpose(p: Program):
    note(str(p))
    STATS["layout: programs"] += 1
    num = derive(p.source, wrt=p.wrt, jacobian=True)
    den = derive(p.source, wrt=p.wrt, jacobian=True, layout="denominator")
    assert_well_shaped(num)
    assert_well_shaped(den)
    sizes = dimension_sizes(num)
    values = random_point(num, rng_for(p.source, 2), sizes)
    with np.errstate(all="ignore"):
        a = evaluate(num.results["jacobian"].expr, values, sizes)
        b = evaluate(den.results["jacobian"].expr, values, sizes)
    assume(np.all(np.isfinite(a)))
    np.testing.assert_allclose(b, a.T, rtol=1e-9, atol=1e-12 * max(1.0, float(np.max(np.abs(a)))))


def test_skipped_points_are_rare():
    """Runs after the properties above (file order): few programs may be skipped as ill-conditioned."""
    checked = STATS["derivatives: programs"]
    if checked < 100:
        pytest.skip("the finite-difference property did not run in this session")
    rate = STATS["derivatives: skipped"] / checked
    summary = {"profile": PROFILE, "seconds": round(time.time() - STARTED, 1), **STATS,
               "skip reasons": dict(SKIPS.most_common())}
    print("\nproperty tests:", json.dumps(summary, indent=1))
    path = os.environ.get("MATCALC_PROPERTY_SUMMARY")
    if path:
        with open(path, "w") as fh:
            json.dump(summary, fh, indent=1)
    assert rate < 0.03, f"{rate:.1%} of the programs had no usable random point: {dict(SKIPS)}"
    unread = STATS["source: unsupported"] / max(1, STATS["source: programs"])
    assert unread < 0.03, f"{unread:.1%} of the programs could not be evaluated from the source: {dict(SKIPS)}"


# --- the generator covers the whole language ----------------------------------------------------------

LANGUAGE = {
    "operators": ["+", "-", "*", "/", ".*", "./", "^", ".^", "'"],
    "functions": ["tr(", "det(", "logdet(", "inv(", "adj(", "diag(", "vec(", "kron(", "sum(", "norm1(", "norm2(",
                  "exp(", "log(", "sin(", "cos(", "tan(", "tanh(", "arcsin(", "arccos(", "arctan(", "sqrt(",
                  "sigmoid(", "abs(", "sign(", "relu(", "step(", "I(", "ones(", "commutation(", "reshape("],
    "declarations": ["scalar", "vector(", "matrix(", "symmetric(", "*n", " = "],
}


def _token_pattern(token: str) -> str:
    """tan( but not tanh( or arctan(; * but not .*; ^ but not .^"""
    if token[0].isalpha():
        return r"(?<![A-Za-z])" + re.escape(token)
    if token in ("*", "/", "^"):
        return r"(?<!\.)" + re.escape(token)
    return re.escape(token)


def test_generated_programs_cover_the_language():
    seen = collections.Counter()
    kinds = collections.Counter()
    depths = []

    @settings(max_examples=400, deadline=None, derandomize=True, database=None)
    @given(programs())
    def collect(p):
        text = p.source
        for group in LANGUAGE.values():
            for token in group:
                if re.search(_token_pattern(token), text):
                    seen[token] += 1
        kinds[p.wrt_kind] += 1
        depths.append(p.depth)
        # the variable we differentiate against always occurs (in the expression or a definition used)
        assert re.search(rf"\b{p.wrt}\b", p.source.split(";", 1)[1])

    collect()
    missing = [t for group in LANGUAGE.values() for t in group if not seen[t]]
    assert not missing, f"never generated: {missing}"
    assert set(kinds) == {"scalar", "vector", "row", "matrix", "square", "symmetric"}
    assert max(depths) == 6


def test_generated_programs_are_well_shaped():
    """Every generated program shape-checks, with the output shape the generator aimed for."""
    from strategies import SIZES, dim_size

    @settings(max_examples=300, deadline=None, derandomize=True, database=None)
    @given(programs())
    def shapes(p):
        d = derive(p.source, wrt=p.wrt, jacobian=True)
        r, c = d.expression.shape
        assert (r.evaluate(SIZES), c.evaluate(SIZES)) == (dim_size(p.shape[0]), dim_size(p.shape[1]))

    shapes()


# --- the numeric check itself rejects wrong derivatives ---------------------------------------------

def test_the_check_rejects_a_wrong_gradient_and_hessian():
    from matcalc_cli import expr as E
    from matcalc_cli.api import Result

    d = derive("x: vector(n); A: matrix(n, n); x' * A * x", wrt="x", gradient=True, jacobian=True, hessian=True)
    assert check_derivation(d).ok
    A, x = d.typed.variables["A"], d.x
    d.results["gradient"] = Result("gradient", "g", E.mul(E.Num(2), E.matmul(A, x)))   # the classic 2Ax
    d.results["hessian"] = Result("hessian", "h", E.mul(E.Num(2), A))
    report = check_derivation(d)
    wrong = {m.what.split(" ")[0] for m in report.mismatches}
    assert {"gradient", "hessian", "hessian_bilinear"} <= wrong


def test_the_check_rejects_a_wrong_symmetric_gradient():
    from matcalc_cli.api import Result

    d = derive("S: symmetric(n); A: matrix(n, n); tr(S * A)", wrt="S", gradient=True, jacobian=True)
    assert check_derivation(d).ok
    d.results["gradient"] = Result("gradient", "g", d.typed.variables["A"])  # A, not (A + A') / 2
    assert not check_derivation(d).ok


# --- regressions: failures the properties found, kept as explicit cases --------------------------------

REGRESSIONS = [
    # d(u.^c) with du = 0 although u depends on x (sign, step): 'add() needs at least one term'
    pytest.param("t: scalar; sign(t)^2", "t", id="power_of_sign_scalar"),
    pytest.param("x: vector(n); sum(step(x) .^ 2)", "x", id="power_of_step"),
    pytest.param("x: vector(n); norm2(sign(x) .* x)", "x", id="norm2_of_sign_times_x"),
    pytest.param("X: matrix(m, p); v1: vector(m); P1: symmetric(p); A1: matrix(p, p); "
                 "norm2((sign((v1' * X * P1)) .* (v1' * X * A1)))", "X", id="norm2_sign_hadamard_found"),
    # vec(reshape(A, r, c)) was simplified to A itself (right only when A is a column)
    pytest.param("X: matrix(n, m); vec(reshape(X, m, n))", "X", id="vec_of_reshape"),
    pytest.param("X: matrix(n, m); a: vector(m*n); a' * vec(reshape(X, m, n))", "X", id="vec_of_reshape_inner"),
    pytest.param("t: scalar; a: vector(m*m); reshape(t * a', m, m)", "t", id="jacobian_of_reshape_of_row"),
    pytest.param("X: matrix(m, p); B: matrix(p, m); sum(B .* reshape(X, p, m))", "X",
                 id="gradient_through_reshape_jacobian_shape"),
    pytest.param("X: matrix(p, n); B: matrix(n, p); sum(B .* reshape(X, n, p))^2", "X",
                 id="hessian_through_reshape"),
    pytest.param("X: matrix(p, n); (sum(exp(reshape(X, n, p))))^2", "X", id="hessian_of_reshape_exp"),
    pytest.param("X: matrix(m, p); logdet(reshape(X, p, m)' * reshape(X, p, m) + I)", "X",
                 id="logdet_of_reshape_gram"),
    pytest.param("X: matrix(n, m*n); A5: matrix(m*n, n); vec(reshape(X, m*n, n))' * vec(A5)", "X",
                 id="vec_of_reshape_inner_product"),
    pytest.param("X: matrix(n, m); A1: matrix(p, n); A2: matrix(m, p); v1: vector(m); v2: vector(m); "
                 "reshape((tr(((A1 * X * A2)) ^ 2) * kron((v1' - v2' + ones(1, m)), (ones(1, m) .* v1'))), m, m)",
                 "X", id="reshape_of_kron_of_rows_found"),
    # ones(n, n) inside a product printed as '1' (fixed in 67e6518): keep the round trip
    pytest.param("X: matrix(p, p); sum(inv(X))", "X", id="ones_in_product_prints_as_ones"),
    pytest.param("x: vector(n); sum(inv(I + x * x'))", "x", id="ones_between_inverses"),
    # a dimension m*m is printed m^2, which declarations could not say
    pytest.param("x: vector(n); v1: vector(m*m); c1: scalar; (reshape(v1, m, m) / (1 + ((sum(x) .* c1)) ^ 2))",
                 "x", id="square_dimension_in_declarations"),
    pytest.param("S: symmetric(n); A1: matrix(m, n); v1: vector(n); v2: vector(m); sum(kron((A1 * S * v1), v2'))",
                 "S", id="kron_sum_symmetric"),
    # exp(0) folded to 0 (it is 1): a wrong f and gradient, and 'division by zero' for / exp(0)
    pytest.param("x: vector(n); sum(x) * exp(0)", "x", id="exp_of_zero_times"),
    pytest.param("x: vector(n); sum(x) / exp(0)", "x", id="exp_of_zero_divides"),
    pytest.param("x: vector(n); v: vector(n); sum(x .^ 2) * exp(sum(v - v))", "x", id="exp_of_cancelled_sum"),
    pytest.param("X: matrix(n, n); v2: vector(m); A8: matrix(m, n); A7: matrix(n, m); "
                 "u1 = v2'; u2 = (log(sqrt((1 + ((A8 * X * A7)) .^ 2))) .* ((v2 - v2) * u1)); "
                 "logdet(I + cos(X) / 10) / exp(sin(tr(u2)))", "X", id="exp_of_zero_found"),
    # a sum of broadcast scalars as a factor of a matrix product printed as a plain scalar:
    # (c - (c + ones(1, m))) * v printed '(c - (1 + c)) * v', which reads back as a vector
    pytest.param("c: scalar; v: vector(m); (c - (c + ones(1, m))) * v", "c", id="broadcast_sum_in_product"),
    pytest.param("c: scalar; v: vector(m); (c / 2 - (c + ones(1, m))) * v", "c", id="broadcast_sum_in_product_2"),
    pytest.param("X: matrix(n, n); v1: vector(m*n); v2: vector(m); c1: scalar; c2: scalar; v3: vector(m); "
                 "step(tr(((2 * ones(m, m)) / (1 + (v1)' * v1))) * (((c2 ./ (2 * ones(1, m))) - (c1 + ones(1, m))) "
                 "* abs((0.1 .* v3)))) * tr(X) + arctan(tr(X))", "X", id="broadcast_sum_in_product_found"),
]


@pytest.mark.parametrize("program, wrt", REGRESSIONS)
def test_regression(program, wrt):
    scalar = derive(program, wrt=wrt, jacobian=True).expression.is_scalar
    d = _derive_all(program, wrt, scalar)
    assert_well_shaped(d)
    report = check_derivation(d, points=2)
    assert report.points >= 1, report.skipped
    assert report.ok, str(report)
    sizes = dimension_sizes(d)
    rng = rng_for(program, 1)
    values = random_point(d, rng, sizes)
    problems = source_problems(d, values, sizes) + reparse_problems(d, values, sizes, rng)
    assert not problems, "\n".join(problems)


def test_regression_vec_of_reshape_is_vec():
    """vec(reshape(X, m, n)) = vec(X): column-major reshaping keeps the order of the entries."""
    d = derive("X: matrix(n, m); vec(reshape(X, m, n))", wrt="X", jacobian=True)
    r, c = d.expression.shape
    assert (str(r), str(c)) == ("m*n", "1")
    assert d.jacobian.text() == "I(m*n)"


def test_regression_declarations_of_a_square_dimension_parse_back():
    d = derive("v: vector(m*m); sum(v)", wrt="v")
    again = derive(declarations_text(d) + "; sum(v)", wrt="v")
    assert again.x.shape == d.x.shape


# --- det and adj at singular matrices: derivatives of the polynomials they are ---------------------

@pytest.mark.parametrize("program", ["x: vector(n); det(x * x')", "x: vector(n); tr(adj(x * x'))"],
                         ids=["det_of_outer_product", "trace_adj_of_outer_product"])
def test_gradient_of_det_at_a_singular_matrix(program):
    d = derive(program, wrt="x", gradient=True)
    sizes = dimension_sizes(d)
    values = {"x": np.array([[1.0], [2.0], [3.0]])}   # x x' exactly of rank 1
    # n = 3: det(x x') and every 2 x 2 principal minor of x x' vanish for all x, so the gradient is 0
    with np.errstate(all="ignore"):
        G = evaluate(d.gradient.expr, values, sizes)
    np.testing.assert_allclose(G, np.zeros_like(G), atol=1e-9)
