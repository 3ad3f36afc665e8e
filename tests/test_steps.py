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
from clitools import run_on_terminal
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
    _assert_every_format_lays_out(d)


def _assert_every_format_lays_out(d):
    """The pretty view fits a narrow terminal, and every LaTeX style is written (compiled elsewhere)."""
    from rich.cells import cell_len
    from matcalc_cli.render import pretty
    from matcalc_cli.render.latex import LatexOptions
    lines = pretty.steps_view(d, 40)
    assert max(cell_len(line.plain) for line in lines) <= 40
    for style in ("align", "inline"):   # (equation and document lay out their rows as align does)
        assert R.latex(d.steps, LatexOptions.parse(style, "8.5cm"))


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


# --- the differential, rule by rule --------------------------------------------------------------

# rules that only pass d through a linear map: they go along with the rule before them
_LINEAR_RULE = re.compile(r"^(sum rule|constant factors: .*|d (tr|sum|vec|diag|reshape)\(.*|d\([A-Za-z]\w*'\) = .*)$")


def _rules_of_calculus(step) -> list:
    return [r for r in step.rules if not _LINEAR_RULE.match(r)]


def test_nested_expression_proceeds_rule_by_rule():
    d = steps_of(USER_EXAMPLES[0][0], "w", gradient=True)
    diff = [s for s in d.steps if s.stage == "differential"]
    assert shown(d, "differential")[:3] == [
        "sum(d log(1 + exp(-y .* (X * w))))",
        "sum(d exp(-y .* (X * w)) ./ (1 + exp(-y .* (X * w))))",
        "sum((exp(-y .* (X * w)) .* (-y .* (X * dw))) ./ (1 + exp(-y .* (X * w))))",
    ]
    assert diff[0].rules == ("d sum(u) = sum(du)",)
    assert diff[1].rules[0] == "chain rule: d log(u) = du ./ u"
    assert diff[2].rules[0] == "chain rule: d exp(u) = exp(u) .* du"
    assert not step_problems(d), step_problems(d)


def _assert_one_rule_a_step(d):
    """Each step of the differential applies one rule of the calculus to each differential the
    step before left pending (independent ones side by side), never several nested ones at once."""
    diff = [s for s in d.steps if s.stage == "differential"]
    before = 1
    for s in diff:
        assert len(_rules_of_calculus(s)) <= max(1, before), (s.rules, before)
        before = len(s.pending)
        if not s.pending:
            break


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: os.path.basename(p))
def test_samples_differentiate_one_rule_a_step(path):
    source, wrt, kw = _sample_command(path)
    _assert_one_rule_a_step(steps_of(source, wrt, **kw))


def test_two_layer_network_goes_through_each_layer():
    d = steps_of(USER_EXAMPLES[2][0], "W1", gradient=True)
    _assert_one_rule_a_step(d)
    rules = [r for s in d.steps if s.stage == "differential" for r in _rules_of_calculus(s)]
    assert [r.split(" = ")[0] for r in rules[:3]] == ["d(u^2)", "d norm2(u)", "chain rule: d tanh(u)"]


def test_symmetric_gradient_names_G_and_simplifies_it_first():
    d = steps_of(USER_EXAMPLES[1][0], "S", gradient=True)
    grad = [row for row, s in zip(R.rows(d.steps), d.steps) if s.stage == "gradient"]
    assert grad[0][0] == "\u2207f" and grad[0][1].startswith("(G + G') / 2  where G = ")
    assert "G put in" in [r for _, _, rules in grad for r in rules.split("; ")]
    assert grad[-1][1] == d.gradient.text()
    assert texts(d, "gradient")[0].startswith("G = ")   # parses back: G is a definition
    assert not step_problems(d), step_problems(d)


# --- several variables ------------------------------------------------------------------------------

def test_several_variables_share_the_differential_then_identify_each():
    d = steps_of("x: vector(n); W: matrix(n, n); x' * W * x", "x,W", gradient=True, hessian=True)
    assert_contract(d)
    assert not step_problems(d), step_problems(d)
    lhs = [lhs for lhs, _, _ in R.rows(d.steps) if lhs]
    assert lhs == ["df", "\u2207_x f", "\u2207_W f", "H[x, x]", "H[x, W]", "H[W, W]"]
    grouped = [s for s in d.steps if "the terms grouped by direction" in s.rules]
    assert len(grouped) == 1 and grouped[0].stage == "differential"
    assert d.steps[[s.stage for s in d.steps].index("gradient")].rules[0].startswith("the part of df in dx")
    doc = R.as_json(d.steps)
    assert {tuple(s["wrt"]) for s in doc if "wrt" in s} == {("x",), ("W",), ("x", "x"), ("x", "W"), ("W", "W")}


def test_several_variables_on_the_command_line():
    out = _run("x: vector(n); W: matrix(n, n); x' * W * x", "check", wrt="all")
    assert "check steps: " in out and "FAIL" not in out
    assert "\u2207_W f = " in out


@settings(max_examples=examples(15), deadline=None, suppress_health_check=list(HealthCheck))
@given(programs(max_depth=3, budget=9))
def test_every_step_of_random_programs_in_all_their_variables_is_a_true_equation(prog):
    flags = dict(gradient=prog.is_scalar, jacobian=not prog.is_scalar)
    try:
        derive(prog.source, wrt="all", **flags)
    except MatcalcError:
        assume(False)
    d = steps_of(prog.source, "all", **flags)
    assert_contract(d)
    problems = step_problems(d, points=1, rtol=1e-6, require_point=False)
    assert not problems, "\n".join(problems)


# --- pretty: a Rich view at the terminal's width ------------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;]*m")
DONE_WHEN = [("x: vector(n); A: matrix(n, n); x' * A * x", "x", ["--hessian", "--gradient"]),
             ("A: matrix(n, n); det(A)", "A", ["--gradient", "--hessian"]),
             (USER_EXAMPLES[0][0], "w", ["--gradient", "--hessian"]),
             (USER_EXAMPLES[1][0], "S", ["--gradient"]),
             (open(os.path.join(os.path.dirname(__file__), "..", "samples", "two_layer_network.mc")).read(),
              "W1,b1,W2,b2", ["--gradient"])]


def _matcalc(args, env=None):
    """stdout of matcalc (in this process: the terminal's width comes from COLUMNS)."""
    from click.testing import CliRunner
    from matcalc_cli.cli import main
    full = {"NO_COLOR": None, "COLUMNS": None, "TERM": "xterm"}
    full.update(env or {})
    r = CliRunner().invoke(main, list(args), env=full)
    assert r.exit_code == 0, r.output
    return r.stdout


def _flags_of(flags) -> dict:
    kw = {k: "--" + k in flags for k in ("gradient", "jacobian", "hessian")}
    if "--symmetric-gradient" in flags:
        kw["symmetric_gradient"] = flags[flags.index("--symmetric-gradient") + 1]
    return kw


def _assert_rows_aligned(out: str, d):
    """Each step starts a line 'lhs = ' (or '    = '), its '=' in one column."""
    from matcalc_cli.render.pretty import UnicodePrinter, derivation_names
    lines = out.splitlines()
    column = next(line.index(" = ") for line in lines if line.lstrip().startswith("df = "))
    printer = UnicodePrinter(derivation_names(d))
    rows = R.pretty_rows(d.steps, lambda pending: R.StepUnicodePrinter(printer.names, pending), printer)
    steps = [r for r in rows if r.relation == "="]   # the others: 'where t1 = ...' under a step
    labels = {r.label for r in steps}
    starts = [line for line in lines if line[column:column + 3] == " = " and line[:column].strip() in labels]
    assert len(starts) == len(steps) == len(d.steps), out


@pytest.mark.parametrize("columns", [40, 80, 120])
def test_pretty_steps_fit_the_terminal_and_align(columns):
    from rich.cells import cell_len
    for program, wrt, flags in DONE_WHEN[1:4:2] if columns != 80 else DONE_WHEN:
        out = _matcalc([program, "--wrt", wrt, "--steps", "--format", "pretty", "--color", "never"] + flags,
                       env={"COLUMNS": str(columns)})
        lines = out.splitlines()
        assert max(cell_len(line) for line in lines) <= columns, out
        assert not ANSI.search(out)
        assert out.startswith("f(") and "\u2207" in out
        _assert_rows_aligned(out, steps_of(program, wrt, **_flags_of(flags)))


def test_pretty_steps_dim_the_rules_in_colour():
    program, wrt, flags = DONE_WHEN[0]
    out = _matcalc([program, "--wrt", wrt, "--steps", "--format", "pretty", "--color", "always"] + flags,
                   env={"COLUMNS": "100"})
    assert re.search(r"\x1b\[2m *product rule", out)   # dim
    assert "\x1b[35mdx\x1b[0m" in out                 # the direction in colour, dxᵀ too
    plain = ANSI.sub("", out)
    assert "df = dxᵀ A x + xᵀ A dx" in plain and "product rule" in plain
    assert not ANSI.search(_matcalc([program, "--wrt", wrt, "--steps", "--format", "pretty", "--color", "never"]
                                    + flags))


def _in_terminal(args, columns: int, env=None) -> str:
    """stdout of matcalc on a real pseudo-terminal ``columns`` wide."""
    code, output, err = run_on_terminal(args, columns, env, stderr_on_terminal=False)
    assert code == 0, err
    return output


def test_steps_on_a_real_terminal_are_the_pretty_view():
    from rich.cells import cell_len
    program, wrt, flags = DONE_WHEN[2]
    out = _in_terminal([program, "--wrt", wrt, "--steps"] + flags, 50)
    assert ANSI.search(out)   # a terminal: colour
    lines = ANSI.sub("", out).splitlines()
    assert max(cell_len(line) for line in lines) <= 50
    assert any(line.startswith("df = sum(d log(1 + exp(-y ⊙ (X w))))") for line in lines), lines
    for env in ({"NO_COLOR": ""}, {"TERM": "dumb"}):   # a terminal, but no colour wanted
        assert not ANSI.search(_in_terminal([program, "--wrt", wrt, "--steps"] + flags, 50, env))


# --- LaTeX: every style, at every width, compiles without an overfull line ------------------------------

LATEX_EXAMPLES = [(p, w, f) for p, w, f in DONE_WHEN] + [
    ("x: vector(n); A: matrix(m, n); A * x", "x", []),
    ("x: vector(n); A: matrix(m, n); A * (x .* x)", "x", []),
    ("A: matrix(n, n); A^2", "A", []),
    ("A: matrix(n, n); inv(A)", "A", []),
    (USER_EXAMPLES[2][0], "W1", ["--gradient", "--hessian"]),
    ("X: symmetric(n); logdet(X)", "X", ["--gradient", "--symmetric-gradient", "cookbook"]),
]


def _sample_flags(path) -> tuple:
    source, wrt, kw = _sample_command(path)
    flags = [f"--{k}" for k in ("gradient", "jacobian", "hessian") if kw.get(k)]
    flags += ["--layout", kw["layout"]] if "layout" in kw else []
    return source, wrt or "all", flags


SAMPLE_EXAMPLES = [_sample_flags(p) for p in SAMPLES]


def _latex_steps(style, width=None, examples=LATEX_EXAMPLES) -> str:
    from click.testing import CliRunner
    from matcalc_cli.cli import main
    outs = []
    for program, wrt, flags in examples:
        extra = ["--latex-width", width] if width else []
        r = CliRunner().invoke(main, [program, "--wrt", wrt, "--steps", "--format", "latex", "--latex-style", style]
                               + flags + extra)
        assert r.exit_code == 0, r.output
        outs.append(r.stdout)
    return outs


def _latex_problems(body: str, width=None) -> list:
    from matcalc_cli.render.latex import parse_width
    text_width = "" if width is None else f"\\setlength{{\\textwidth}}{{{parse_width(width):.1f}pt}}\n"
    doc = "\\documentclass{article}\n\\usepackage{amsmath}\n\\allowdisplaybreaks\n" + text_width + \
        "\\begin{document}\n" + body + "\n\\end{document}\n"
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "steps.tex"), "w") as fh:
            fh.write(doc)
        subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "steps.tex"], cwd=tmp,
                       capture_output=True, text=True, timeout=300)
        log = open(os.path.join(tmp, "steps.log"), encoding="latin-1").read()
    return re.findall(r"^! .*", log, re.M) + re.findall(r"^Overfull \\hbox.*", log, re.M)


def _body(style, outputs) -> str:
    if style == "document":
        for out in outputs:
            assert out.startswith("\\documentclass{article}") and out.rstrip().endswith("\\end{document}")
        return "\n".join(o.split("\\begin{document}\n", 1)[1].rsplit("\\end{document}", 1)[0] for o in outputs)
    if style == "inline":
        for out in outputs:
            assert all(line.startswith("$") for line in out.splitlines()), out
        return "\\emergencystretch=1em\n" + "\n\n".join(
            f"We find {line} for every direction." for out in outputs for line in out.splitlines())
    return "\n".join(outputs)


needs_pdflatex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")


@needs_pdflatex
@pytest.mark.parametrize("style", ["align", "equation", "inline", "document"])
def test_latex_steps_compile_in_every_style(style):
    """The reference text's examples, the user's, and every sample."""
    assert _latex_problems(_body(style, _latex_steps(style, examples=LATEX_EXAMPLES + SAMPLE_EXAMPLES))) == []


@needs_pdflatex
@pytest.mark.parametrize("width", ["8.5cm", pytest.param("50", marks=pytest.mark.slow)])
@pytest.mark.parametrize("style", ["align", pytest.param("equation", marks=pytest.mark.slow)])
def test_latex_steps_fit_a_narrow_column(style, width):
    assert _latex_problems(_body(style, _latex_steps(style, width)), width) == []


def test_latex_steps_break_long_lines_and_follow_the_transpose_option():
    from click.testing import CliRunner
    from matcalc_cli.cli import main
    program, wrt, flags = DONE_WHEN[1]
    r = CliRunner().invoke(main, [program, "--wrt", wrt, "--steps", "--format", "latex", "--latex-transpose",
                                  "prime"] + flags)
    assert "^{\\top}" not in r.stdout and "'" in r.stdout
    assert r.stdout.count("\\\\\n") > 6   # the Hessian's rules on rows of their own, broken
