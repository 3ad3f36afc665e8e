"""Derivation on the shared DAG: definition chains and nested expressions, small as DAGs and
exponentially large written out, are derived with work and output that grow with the DAG.

These tests guard the mechanisms without timings: results of chains are checked numerically at
small depth; the number of rule applications and the printed size grow linearly with the depth;
what is large even when shared is refused by a size estimate before the work, with the limit named.
"""

import pytest

from matcalc_cli import budget, derive, expr as E, identify
from matcalc_cli.budget import LimitError
from matcalc_cli.errors import MathError
from matcalc_cli.render.share import shared_size
from matcalc_cli.verify import verify_derivation

from numcheck import check_derivation, reparse_problems, rng_for
from matcalc_cli.numeric import dimension_sizes, random_point


def chain(k: int, step: str, var: str = "y", decl: str = "vector(n)", result: str = "sum") -> str:
    """y0: vector(n); y1 = step(y0); ...; yk = step(y(k-1)); result(yk)"""
    lines = [f"{var}0: {decl}"]
    for i in range(1, k + 1):
        lines.append(f"{var}{i} = " + step.replace("@", f"{var}{i - 1}"))
    return "; ".join(lines + [f"{result}({var}{k})"])


def exp_square_chain(k):
    return chain(k, "exp(@) + @ .* @")


def sine_chain(k):
    return chain(k, "sin(@) + @")


def gram_chain(k):
    # named Z, not Y: expressions are shared process-wide, and test_safety times the Y chain's work
    return chain(k, "@ * @' + @", "Z", "matrix(n, n)", "tr")


def nested_inverse(k):
    return "X: matrix(n, n); tr(" + "inv(X + " * k + "X" + ")" * k + ")"


def trace_product(k):
    return "X: matrix(n, n); tr(" + " * ".join(f"A{i} * X" for i in range(k)) + ")"


# --- correct: chains at small depth against finite differences ---------------------------------

@pytest.mark.parametrize("program, wrt", [
    (exp_square_chain(3), "y0"),
    (sine_chain(4), "y0"),
    (gram_chain(2), "Z0"),
    (nested_inverse(3), "X"),
    (trace_product(4), "X"),
])
def test_chain_results_match_finite_differences(program, wrt):
    d = derive(program, wrt=wrt, gradient=True, hessian=True)
    report = check_derivation(d, points=2)
    assert report.points > 0 and report.ok, str(report)


def test_a_chain_differential_prints_shared_and_parses_back_to_the_same_numbers():
    # 12 deep: dZ_k = dZ_(k-1) Z' + Z dZ_(k-1)' + dZ_(k-1) repeats dZ_(k-1), so parts holding dZ0
    # are named too (an elementwise chain's differential is collected into one product of its
    # chain-rule factors instead, which holds dy0 once)
    d = derive(gram_chain(12), wrt="Z0", gradient=True)
    text = d.results["differential"].text()
    definitions = text.split("; ")[:-1]
    assert any("dZ0" in part for part in definitions), text   # a named part holds the differential
    sizes = dimension_sizes(d, None)
    rng = rng_for("dag-reparse")
    values = random_point(d, rng, sizes)
    assert reparse_problems(d, values, sizes, rng, rtol=1e-7) == []


def test_a_small_chain_verifies_symbolically():
    d = derive(sine_chain(2), wrt="y0", gradient=True)
    assert verify_derivation(d, 3).passed


# --- the mechanism: each node once -------------------------------------------------------------

def _pullback_rule_applications(program, wrt, monkeypatch) -> int:
    count = [0]
    counted = {}
    for kind, rule in identify.PULLBACK_RULES.items():
        def wrapped(L, W, dx, rule=rule):
            count[0] += 1
            return rule(L, W, dx)
        counted[kind] = wrapped
    monkeypatch.setattr(identify, "PULLBACK_RULES", counted)
    derive(program, wrt=wrt, gradient=True)
    return count[0]


def test_the_reverse_sweep_applies_rules_linearly_in_the_chain_depth(monkeypatch):
    # per path it would double with every level; once per node it grows by a constant per level
    counts = {k: _pullback_rule_applications(exp_square_chain(k), "y0", monkeypatch) for k in (10, 20, 40)}
    assert counts[40] - counts[20] == 2 * (counts[20] - counts[10]), counts
    assert counts[40] <= 40 * 20, counts


def test_a_shared_seed_is_summed_before_it_is_passed_on():
    # x' * A * x: dx receives two seeds (A * x and A' * x), summed into one gradient
    d = derive("x: vector(n); A: matrix(n, n); x' * A * x", wrt="x", gradient=True)
    assert d.results["gradient"].text() == "(A + A') * x"


@pytest.mark.parametrize("make, wrt, kinds", [
    (exp_square_chain, "y0", ("differential", "gradient")),
    (sine_chain, "y0", ("differential", "gradient")),
    (gram_chain, "Z0", ("differential", "gradient")),
])
def test_chain_results_grow_as_the_function_written_shared(make, wrt, kinds):
    """Each result, written shared, stays within a constant factor of f written shared, at every
    depth.  (f itself is linear in the depth where its sums do not flatten, as in exp(y) + y .* y;
    y_k = sin(y_(k-1)) + y_(k-1) is one flat sum of k + 1 terms, quadratic in all.)"""
    ratios = {}
    for k in (10, 20, 40):
        d = derive(make(k), wrt=wrt, gradient=True, hessian="hessian_bilinear" in kinds)
        f = shared_size(d.expression)
        ratios[k] = {kind: shared_size(d.results[kind].expr) / f for kind in kinds}
    for kind in kinds:
        assert ratios[40][kind] <= 1.3 * ratios[20][kind] <= 1.3 ** 2 * ratios[10][kind], ratios


def test_an_exp_square_chain_has_results_linear_in_the_depth_and_a_second_differential_at_most_quadratic():
    sizes = {}
    for k in (10, 20, 40):
        d = derive(exp_square_chain(k), wrt="y0", hessian=True)
        sizes[k] = {kind: shared_size(r.expr) for kind, r in d.results.items() if kind != "hessian"}
    for kind in sizes[10]:
        # doubling the depth about doubles the shared size (a tree would square it); the second
        # differential of the collected chain-rule product of k factors has k terms of k - 1
        # factors: at most quadratic, never exponential
        growth = 4.4 if kind == "hessian_bilinear" else 2.2
        assert sizes[40][kind] <= growth * sizes[20][kind] and sizes[20][kind] <= growth * sizes[10][kind], sizes


def test_the_hessian_matrix_of_a_chain_grows_less_than_quadratically():
    # the Hessian of a product of k factors has k terms of k - 1 factors (a flattened product shares
    # no partial products): quadratic at worst, never exponential
    sizes = {k: shared_size(derive(exp_square_chain(k), wrt="y0", hessian=True).results["hessian"].expr)
             for k in (20, 40)}
    assert sizes[40] <= 4 * sizes[20], sizes


def test_a_chain_40_deep_has_a_hessian_of_shared_size_linear_in_the_depth():
    with budget.limit(budget.DEFAULT_TIMEOUT):
        d = derive(exp_square_chain(40), wrt="y0", hessian=True)
    for r in d.results.values():
        assert E.tree_size(r.expr) > 10 ** 9          # written out as a tree: astronomically large
        assert shared_size(r.expr) < 200 * 40, r.key  # written shared: a few hundred nodes a level


def test_the_printed_limit_applies_to_the_shared_form():
    d = derive(exp_square_chain(30), wrt="y0", gradient=True)
    G = d.results["gradient"]
    assert E.tree_size(G.expr) > E.MAX_PRINTED_SIZE
    assert len(G.text()) < 20_000


def test_json_and_latex_write_a_chain_shared():
    from matcalc_cli.render.documents import as_json
    d = derive(exp_square_chain(30), wrt="y0", gradient=True)
    doc = as_json(d)
    assert len(doc) < 100_000 and "t1 = " in doc
    assert "where" in d.latex()


# --- refused before the work when large even shared ---------------------------------------------

def test_a_hessian_large_even_when_shared_is_refused_by_an_estimate():
    with pytest.raises(LimitError) as err:
        derive(trace_product(64), wrt="X", hessian=True)
    message = err.value.message
    assert "second differential" in message and "the limit is 20,000 nodes" in message
    assert "--gradient" in err.value.hint


def test_the_refusal_comes_before_the_second_differential_is_built(monkeypatch):
    from matcalc_cli import differential
    calls = []
    original = differential._Differentiator.d

    def counting(self, e):
        calls.append(e)
        return original(self, e)

    monkeypatch.setattr(differential._Differentiator, "d", counting)
    with pytest.raises(LimitError):
        derive(trace_product(64), wrt="X", hessian=True)
    # only the first differential was taken: one call per distinct node of f
    assert len(calls) < 4 * 64 * 2


def test_the_estimate_is_close_to_the_size_built():
    from matcalc_cli.differential import differential
    from matcalc_cli.workload import differential_size
    d = derive(trace_product(12), wrt="X", gradient=True)
    df = d.results["differential"].expr
    estimate = differential_size(df, [d.x])
    built = shared_size(differential(df, d.x, d.dx2))
    assert built / 2 <= estimate <= 2 * built


def test_the_gradient_of_the_same_program_is_not_refused():
    d = derive(trace_product(64), wrt="X", gradient=True)
    assert shared_size(d.results["gradient"].expr) < 20_000


def test_verify_refuses_a_chain_sympy_would_write_out():
    d = derive(sine_chain(30), wrt="y0", gradient=True)
    with pytest.raises(LimitError) as err:
        verify_derivation(d, 3)
    assert "the limit is 600 nodes" in err.value.message and "--check" in err.value.hint


def test_a_result_too_large_even_shared_is_refused_with_the_limit_named():
    with pytest.raises(MathError) as err:
        E.check_printable(E.Num(1), E.MAX_PRINTED_SIZE + 1)
    assert "200,000" in err.value.message and "--format numpy" in err.value.hint


def test_check_evaluates_a_deep_chain_on_the_dag():
    # --check evaluates the shared expression: 30 levels, 2^30 nodes written out
    from matcalc_cli.check import check_derivation as numeric_check
    d = derive(sine_chain(30), wrt="y0", gradient=True)
    report = numeric_check(d)
    assert report.passed, report.lines()
