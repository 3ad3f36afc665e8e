"""``--steps``: the derivation as a chain of true equalities, each step naming its rule.

- every step of every sample, and of random programs, is a true equation: its text, parsed back
  after the program's declarations and those of dx, dx2, evaluates to the stage's result at random
  points and directions (the differential's steps to df, the gradient's to the gradient, ...);
- the last step of each stage is the printed result; the JSON contract holds;
- the reference text's examples give the known steps;
- plain output aligns '=' and fits the terminal; the LaTeX compiles with pdflatex.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from matcalc_cli import derive
from matcalc_cli.cli import run
from matcalc_cli.errors import MatcalcError
from matcalc_cli.numeric import dimension_sizes, evaluate, random_direction, random_point, point_problems
from matcalc_cli.render import steps as R
from matcalc_cli.shapes import check
from matcalc_cli.steps import CANONICAL
from matcalc_cli.syntax import parse
from matcalc_cli.render.documents import declarations_text, shape_text
from matcalc_cli.shapes import Symbol
from numcheck import relative_error, reparse_program, rng_for
from strategies import examples, programs

SAMPLES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "samples", "*.mc")))
STATS: collections.Counter = collections.Counter()


def steps_of(program, wrt=None, **flags):
    return derive(program, wrt=wrt, steps=True, **flags)


def texts(d, stage=None):
    return [s.text() for s in d.steps if stage is None or s.stage == stage]


def reparse_with_directions(d, text: str) -> str:
    """The program's declarations, those of every direction (dx, dx2, dW, dW2, ...), then ``text``."""
    if not d.several:
        return reparse_program(d, text)
    directions = "; ".join(f"{v.name}: {shape_text(Symbol(v.name, v.shape, True, v.symmetric))}"
                           for var in d.variables for v in (var.dx, var.dx2))
    return f"{declarations_text(d)}; {directions}; {text}"


def step_problems(d, points: int = 2, rtol: float = 1e-7, require_point: bool = True) -> list:
    """Each step's text parsed back and evaluated equals its stage's result (df for the
    differential), at ``points`` random points and directions (a stage's result is named as the
    stage is: d.results['gradient'] for the gradient's steps)."""
    problems = []
    sizes = dimension_sizes(d)
    rng = rng_for(d.typed.source + "|steps")
    parsed = []
    for s in d.steps:
        text = s.text()
        try:
            back = check(parse(reparse_with_directions(d, text))).expression
        except Exception as exc:  # noqa: BLE001 - a step that does not parse back is the finding
            problems.append(f"{s.stage}: {text!r} does not parse back: {exc}")
            continue
        parsed.append((s, text, back))
    done = 0
    for _ in range(points * 3):
        if done == points:
            break
        values = random_point(d, rng, sizes)
        if point_problems(d, values, sizes, rng):
            continue
        done += 1
        env = dict(values)
        for v in d.variables:
            env[v.dx.name] = random_direction(v.dx, rng, sizes)
            env[v.dx2.name] = random_direction(v.dx2, rng, sizes)
        with np.errstate(all="ignore"):
            for s, text, back in parsed:
                expected = evaluate(d.results[s.result_key].expr, env, sizes)
                got = evaluate(back, env, sizes)
                err = relative_error(got, expected, 1e-9)
                if err > rtol:
                    problems.append(f"{s.stage}: {text!r} differs from the result (relative error {err:.3g})")
    if require_point and not done:
        problems.append("no random point where f and every step can be evaluated")
    return problems


def assert_contract(d):
    """The JSON contract: stages in order, non-empty rules, each stage ends with its result."""
    doc = R.as_json(d.steps)
    assert doc, "no steps"
    order = ["differential", "gradient", "jacobian", "hessian"]
    stages = [s["stage"] for s in doc]
    assert stages == sorted(stages, key=order.index)
    for s in doc:
        # with several variables a result's steps also name its variables
        assert set(s) == {"stage", "text", "latex", "rules"} | ({"wrt"} if d.several and s["stage"] != "differential"
                                                                 else set())
        assert s["rules"] and all(isinstance(r, str) and r for r in s["rules"])
    for key in {s.result_key for s in d.steps}:
        last = [s for s in d.steps if s.result_key == key][-1]
        assert last.text() == d.results[key].text()


# --- every sample -------------------------------------------------------------------------------

def _sample_command(path):
    source = open(path).read()
    m = re.search(r"matcalc @\S+ (.*)", source)
    flags = m.group(1).split() if m else []
    wrt = flags[flags.index("--wrt") + 1] if "--wrt" in flags else None
    kw = {k: ("--" + k) in flags for k in ("gradient", "jacobian", "hessian")}
    if "--layout" in flags:
        kw["layout"] = flags[flags.index("--layout") + 1]
    return source, wrt, kw


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: os.path.basename(p))
def test_every_step_of_every_sample_is_a_true_equation(path):
    source, wrt, kw = _sample_command(path)
    for flags in (kw, {"gradient": False, "jacobian": True, "hessian": False}):
        d = steps_of(source, wrt, **flags)
        assert_contract(d)
        assert not step_problems(d), "\n".join(step_problems(d))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: os.path.basename(p))
def test_samples_need_no_unexplained_jump(path):
    source, wrt, kw = _sample_command(path)
    d = steps_of(source, wrt, **kw)
    jumps = [s.text() for s in d.steps if CANONICAL in s.rules]
    assert not jumps, jumps


# --- random programs ----------------------------------------------------------------------------

@settings(max_examples=examples(60), deadline=None, suppress_health_check=list(HealthCheck))
@given(programs(max_depth=4, budget=12), st.sampled_from(["numerator", "denominator"]),
       st.sampled_from(["frobenius", "cookbook"]))
def test_every_step_of_random_programs_is_a_true_equation(prog, layout, convention):
    """Also counts how often the named passes fall short of the canonical form (a step named
    CANONICAL: still a true equation, but a jump); ``pytest -s`` prints the figures."""
    scalar = prog.is_scalar
    flags = dict(gradient=scalar, jacobian=True, hessian=scalar, layout=layout, symmetric_gradient=convention)
    try:
        derive(prog.source, wrt=prog.wrt, **flags)
    except MatcalcError:
        assume(False)   # what derive refuses is tested elsewhere; --steps must add no failure
    d = steps_of(prog.source, prog.wrt, **flags)
    assert_contract(d)
    STATS["programs"] += 1
    STATS["steps"] += len(d.steps)
    STATS["jumps"] += sum(CANONICAL in s.rules for s in d.steps)
    problems = step_problems(d, points=1, rtol=1e-6, require_point=False)
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    if STATS["programs"]:
        print(f"\n--steps on random programs: {STATS['programs']} programs, {STATS['steps']} steps checked, "
              f"{STATS['jumps']} steps needed '{CANONICAL}'")


# --- the reference text's examples --------------------------------------------------------------

def test_quadratic_form_steps_read_as_the_reference_text():
    d = steps_of("x: vector(n); A: matrix(n, n); x' * A * x", "x", gradient=True)
    assert texts(d, "differential") == [
        "dx' * A * x + x' * A * dx",
        "(dx' * A * x)' + x' * A * dx",
        "x' * A * dx + x' * A' * dx",
        "x' * (A + A') * dx",
    ]
    rules = [s.rules for s in d.steps]
    assert rules[0][0] == "product rule"
    assert rules[1] == ("a scalar is its own transpose",)
    assert rules[2][0].startswith("transpose of a product")
    assert texts(d, "gradient") == ["(x' * (A + A'))'", "(A + A') * x"]
    assert rules[-2] == ("df = \u2207f' * dx",)
    assert rules[-1][0].startswith("transpose of a product")


def test_matrix_times_vector_is_one_constant_factor_step():
    d = steps_of("x: vector(n); A: matrix(m, n); A * x", "x")
    assert texts(d, "differential") == ["A * dx"]
    assert d.steps[0].rules == ("constant factors: d(A * U) = A * dU",)
    assert texts(d, "jacobian") == ["A"]
    assert d.steps[-1].rules == ("df = J * dx",)


def shown(d, stage=None):
    """The steps' right-hand sides as the plain output shows them (d(u) for a pending differential)."""
    return [rhs for (_, rhs, _), s in zip(R.rows(d.steps), d.steps) if stage is None or s.stage == stage]


def test_hadamard_square_pulls_out_the_two_and_reads_diag():
    d = steps_of("x: vector(n); A: matrix(m, n); A * (x .* x)", "x")
    assert shown(d, "differential") == ["A * d(x.^2)", "A * (2 * x .* dx)", "2 * A * (x .* dx)"]
    assert d.steps[0].rules == ("constant factors: d(A * U) = A * dU",)
    assert d.steps[1].rules == ("d(x.^2) = 2 * x .* dx",)
    # the pending differential parses back as a name defined as its value
    assert texts(d, "differential")[0] == "dt1 = 2 * x .* dx; A * dt1"
    assert texts(d, "jacobian") == ["2 * A * diag(x)"]
    assert d.steps[-1].rules == ("df = J * dx", "u .* dx = diag(u) * dx")


def test_matrix_square_is_the_product_rule_not_2_A_dA():
    d = steps_of("A: matrix(n, n); A^2", "A")
    assert texts(d, "differential") == ["A * dA + dA * A"]
    assert d.steps[0].rules == ("d(A^2) = A * dA + dA * A",)
    assert texts(d, "jacobian") == ["kron(A', I(n)) + kron(I(n), A)"]
    assert d.steps[-1].rules == ("vec(df) = J * vec(dA)", "vec(A * dX * B) = kron(B', A) * vec(dX)")


def test_inverse_rule_and_its_kronecker_form():
    d = steps_of("A: matrix(n, n); inv(A)", "A")
    assert texts(d, "differential") == ["-inv(A) * dA * inv(A)"]
    assert d.steps[0].rules == ("d inv(A) = -inv(A) * dA * inv(A)",)
    assert texts(d, "jacobian") == ["-kron(inv(A'), inv(A))"]


def test_determinant_rule_and_gradient_through_the_trace():
    d = steps_of("A: matrix(n, n); det(A)", "A", gradient=True, hessian=True)
    assert texts(d, "differential") == ["det(A) * tr(inv(A) * dA)"]
    assert d.steps[0].rules[0].startswith("d det(A) = ")
    grad = [s for s in d.steps if s.stage == "gradient"]
    assert [s.text() for s in grad] == ["det(A) * inv(A)'", "det(A) * inv(A')"]
    assert grad[0].rules[0] == "df = tr(\u2207f' * dA)"
    assert grad[1].rules == ("inv(A)' = inv(A')",)
    hess = [s for s in d.steps if s.stage == "hessian"]
    assert hess[0].rules[0].startswith("second differential: d(\u2207f) = ")
    assert not step_problems(d)


def test_symmetric_variable_shows_the_symmetrization():
    d = steps_of("X: symmetric(n); A: matrix(n, n); tr(A * inv(X))", "X", gradient=True)
    grad = [s for s in d.steps if s.stage == "gradient"]
    assert any("symmetric" in r for s in grad for r in s.rules)
    assert grad[-1].text() == d.gradient.text()
    assert not step_problems(d)


def test_symmetry_of_a_declared_symmetric_matrix_is_a_named_step():
    d = steps_of("x: vector(n); S: symmetric(n); x' * S * x", "x", gradient=True)
    assert texts(d, "differential") == ["dx' * S * x + x' * S * dx", "(dx' * S * x)' + x' * S * dx",
                                        "2 * x' * S * dx"]
    assert "symmetry: S' = S" in d.steps[2].rules
    assert texts(d, "gradient")[-1] == "2 * S * x"
    assert not step_problems(d)


def test_denominator_layout_transposes_as_a_step():
    d = steps_of("A: matrix(n, n); x: vector(n); A * x", "A", jacobian=True, layout="denominator")
    jac = [s for s in d.steps if s.stage == "jacobian"]
    assert any(r.startswith("denominator layout") for r in jac[0].rules)
    assert jac[-1].text() == d.jacobian.text()
    assert not step_problems(d)


def test_cookbook_convention_is_a_step():
    d = steps_of("X: symmetric(n); logdet(X)", "X", gradient=True, symmetric_gradient="cookbook")
    grad = [s for s in d.steps if s.stage == "gradient"]
    assert any("Matrix Cookbook" in r for s in grad for r in s.rules)
    assert grad[-1].text() == d.gradient.text()


# --- the user's examples read as a derivation --------------------------------------------------

USER_EXAMPLES = [
    ("X: matrix(m, n); y: vector(m); w: vector(n); sum(log(1 + exp(-y .* (X * w))))", "w"),
    ("S: symmetric(n); x, mu: vector(n); -logdet(S) / 2 - (x - mu)' * inv(S) * (x - mu) / 2", "S"),
    ("W1: matrix(h, n); W2: matrix(m, h); x: vector(n); y: vector(m); "
     "norm2(W2 * tanh(W1 * x) - y)^2", "W1"),
]


@pytest.mark.parametrize("program,wrt", USER_EXAMPLES)
def test_user_examples_are_true_steps_without_jumps(program, wrt):
    d = steps_of(program, wrt, gradient=True, hessian=True)
    assert_contract(d)
    assert not step_problems(d), step_problems(d)
    assert not [s for s in d.steps if CANONICAL in s.rules]


# --- formats ------------------------------------------------------------------------------------

def _run(program, *flags, fmt="plain", **kw):
    lines = []
    run(program, wrt=kw.get("wrt"), gradient="gradient" in flags, jacobian="jacobian" in flags,
        hessian="hessian" in flags, fmt=fmt, layout="numerator", symmetric_gradient="frobenius",
        check="check" in flags, steps=True, out=lambda s="", nl=True: lines.append(s + ("\n" if nl else "")))
    return "".join(lines)


def test_plain_aligns_equals_and_names_rules():
    out = _run("x: vector(n); A: matrix(n, n); x' * A * x", "gradient", wrt="x")
    lines = out.splitlines()
    assert lines[0].startswith("df = dx' * A * x + x' * A * dx")
    assert lines[1].startswith("   = (dx' * A * x)' + x' * A * dx")
    assert lines[-2].startswith("\u2207f = (x' * (A + A'))'")
    assert lines[-1].startswith("   = (A + A') * x")
    assert {line.index("=") for line in lines} == {3}
    assert all("  " in line.split(" = ", 1)[1] for line in lines)   # a rule after every expression


@pytest.mark.parametrize("program,wrt", USER_EXAMPLES)
def test_plain_fits_the_terminal(program, wrt):
    out = _run(program, "gradient", "hessian", wrt=wrt)
    assert max(len(line) for line in out.splitlines()) <= R.WIDTH, out


def test_long_expressions_break_before_their_outermost_operator():
    line = "df = (" + " + ".join(["tr(inv(A) * B * inv(A) * dX)"] * 4) + ") / 2"
    pieces = R.wrap_expression(line, 60, "     ")
    assert all(len(p) <= 60 for p in pieces)
    assert "".join(p.strip() + " " for p in pieces).split() == line.split()
    assert all(p.startswith("     + ") for p in pieces[1:])


def test_check_and_steps_together():
    out = _run("A: matrix(n, n); det(A)", "gradient", "check", wrt="A")
    assert "df = det(A) * tr(inv(A) * dA)" in out
    assert "# check gradient" in out and "FAIL" not in out


def test_json_steps_field_follows_the_contract():
    doc = json.loads(_run("x: vector(n); A: matrix(n, n); x' * A * x", "hessian", fmt="json", wrt="x"))
    steps = doc["steps"]
    assert [s["stage"] for s in steps][0] == "differential"
    diff = [s for s in steps if s["stage"] == "differential"]
    assert diff[-1]["text"] == doc["differential"]["text"]
    hess = [s for s in steps if s["stage"] == "hessian"]
    assert hess[-1]["text"] == doc["hessian"]["text"]
    assert all(s["rules"] and s["latex"] for s in steps)


def test_rows_for_any_renderer():
    d = steps_of("A: matrix(n, n); det(A)", "A", gradient=True)
    rows = R.rows(d.steps)
    assert [lhs for lhs, _, _ in rows] == ["df", "\u2207f", ""]
    assert all(isinstance(r, str) and r for _, _, r in rows)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_latex_steps_compile():
    # the CLI's block in a document of one's own, and the module's own document
    block = _run("x: vector(n); A: matrix(n, n); x' * A * x", "gradient", "hessian", fmt="latex", wrt="x")
    doc = ("\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n\\begin{document}\n"
           + block + "\\end{document}\n")
    docs = [doc] + [R.latex_document(steps_of(p, w, gradient=True, hessian=True).steps)
                    for p, w in [("A: matrix(n, n); det(A)", "A")] + USER_EXAMPLES]
    for doc in docs:
        _compile(doc)


def _compile(doc):
    assert "&=" in doc and "\\text{(" in doc
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "steps.tex"), "w") as fh:
            fh.write(doc)
        proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "steps.tex"], cwd=tmp,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-3000:]
