"""Several variables at once: ``--wrt x,W`` / ``--wrt all`` / ``derive(..., wrt=["x", "W"])``.

- every block (the differential in all directions, gradient[x], jacobian[x], the second differential
  in all pairs of directions, hessian[x, W]) against finite differences, on random programs where
  two or three of the program's names (of mixed kinds, symmetric included) are the variables;
- the blocks agree with what one-variable derivations give;
- one variable behaves exactly as before (same results, same JSON shape);
- the JSON and NumPy naming contract (``gradient``/``jacobian``/``hessian`` keyed by name and by
  "x,W"; ``gradient_x``, ``hessian_x_W``, ``gradients(**vars)``);
- the user's view: a two-layer network's four gradients in one call in every format, the Gaussian
  log-likelihood's H[mu, Sigma] block, each with ``--check``.
"""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import assume, given, note
from hypothesis import strategies as st

from matcalc_cli import derive
from matcalc_cli.check import check_derivation
from matcalc_cli.cli import main
from matcalc_cli.numeric import (
    dimension_sizes, evaluate, numeric_jacobian_of, point_problems, random_direction, random_point, shape_of,
)
from matcalc_cli import expr as E
from matcalc_cli.render.documents import declarations_text, shape_text
from matcalc_cli.render.numpy_code import to_numpy_module
from matcalc_cli.shapes import Symbol, check
from matcalc_cli.syntax import parse
from numcheck import relative_error, rng_for
from strategies import profile_settings, programs

TOL_FIRST, TOL_SECOND = 1e-5, 1e-4
STEPS = (None, 1e-3, 1e-5)   # a mismatch must persist at every step size to count

NETWORK = ("W1: matrix(h, n); b1: vector(h); W2: matrix(m, h); b2: vector(m); x: vector(n); y: vector(m); "
           "a = tanh(W1 * x + b1); norm2(W2 * a + b2 - y)^2 / 2")
NETWORK_WRT = ("W1", "b1", "W2", "b2")
GAUSSIAN = "x, mu: vector(n); Sigma: symmetric(n); -logdet(Sigma) / 2 - (x - mu)' * inv(Sigma) * (x - mu) / 2"


def cli(*args):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def vec(a):
    return np.asarray(a, dtype=float).reshape(-1, 1, order="F")


# --- numbers for every block ------------------------------------------------------------------

class Blocks:
    """Finite differences of f at one point, for every variable and pair of variables."""

    def __init__(self, d, values, sizes, rng):
        self.d, self.values, self.sizes, self.rng = d, values, sizes, rng
        self.variables = {v.name: v for v in d.variables}
        self.memo: dict = {}

    def J(self, name, h=None):
        if ("J", name, h) not in self.memo:
            f = self.d.expression
            self.memo["J", name, h] = numeric_jacobian_of(lambda env: evaluate(f, env, self.sizes),
                                                          self.variables[name].x, self.values, self.sizes, h)
        return self.memo["J", name, h]

    def H(self, a, b, h=None):
        """H[a, b]: finite differences, along b, of the gradient in a (the gradient[a] result,
        itself checked against finite differences of f first)."""
        if ("H", a, b, h) not in self.memo:
            G = self.d.gradients[a].expr
            self.memo["H", a, b, h] = numeric_jacobian_of(lambda env: evaluate(G, env, self.sizes),
                                                          self.variables[b].x, self.values, self.sizes, h)
        return self.memo["H", a, b, h]

    def direction(self, var):
        return random_direction(var, self.rng, self.sizes)

    def value(self, e, extra=None):
        return evaluate(e, {**self.values, **(extra or {})}, self.sizes)

    def errors(self):
        """key -> relative error of that result (the smallest over the step sizes)."""
        out = {}
        for key, r in self.d.results.items():
            tolerance = TOL_SECOND if r.name.startswith("hessian") else TOL_FIRST
            for h in STEPS:
                out[key] = min(out.get(key, np.inf), self._error(r, h))
                if out[key] <= tolerance:
                    break
        return out

    def _error(self, r, h):
        d = self.d
        rng_state = self.rng.bit_generator.state
        try:
            if r.name == "differential":
                dirs = {v.dx.name: self.direction(v.dx) for v in d.variables}
                want = sum(self.J(v.name, h) @ vec(dirs[v.dx.name]) for v in d.variables)
                want = want.reshape(shape_of(d.expression, self.sizes), order="F")
                return relative_error(self.value(r.expr, dirs), want)
            if r.name == "gradient":
                (name,) = r.wrt
                return relative_error(self.value(r.expr),
                                      self.J(name, h).reshape(shape_of(self.variables[name].x, self.sizes), order="F"))
            if r.name == "jacobian":
                J = self.J(r.wrt[0], h)
                return relative_error(self.value(r.expr), J.T if d.layout == "denominator" else J)
            if r.name == "hessian":
                H = self.H(*r.wrt, h)
                if r.wrt[0] == r.wrt[1]:
                    assert relative_error(H, H.T) < TOL_SECOND   # a diagonal block is symmetric
                return relative_error(self.value(r.expr), H)
            if r.name == "hessian_bilinear":
                first = {v.name: self.direction(v.dx) for v in d.variables}
                second = {v.name: self.direction(v.dx2) for v in d.variables}
                want = sum(vec(first[a]).T @ self.H(a, b, h) @ vec(second[b]) for a in first for b in second)
                env = {v.dx.name: first[v.name] for v in d.variables}
                env.update({v.dx2.name: second[v.name] for v in d.variables})
                return relative_error(self.value(r.expr, env), want)
        finally:
            self.rng.bit_generator.state = rng_state   # the same directions at every step size
        raise AssertionError(f"no check for {r.name}")


def blocks_at_a_point(d, seed_text):
    """Blocks at a clean random point, or None when none was found (kinks, ill conditioning)."""
    rng = rng_for(seed_text)
    sizes = dimension_sizes(d)
    values = random_point(d, rng, sizes)
    if point_problems(d, values, sizes):
        return None
    return Blocks(d, values, sizes, rng)


def assert_every_block_matches(d, seed_text, random_program=False):
    b = blocks_at_a_point(d, seed_text)
    if random_program:
        assume(b is not None)   # a point near a kink or singularity: this program is skipped
    assert b is not None, "no clean point"
    with np.errstate(all="ignore"):
        errors = b.errors()
    bad = {k: e for k, e in errors.items()
           if e > (TOL_SECOND if d.results[k].name.startswith("hessian") else TOL_FIRST)}
    assert not bad, f"{bad}\n" + d.text()
    return b


# --- random programs, two or three of their names differentiated together ----------------------

@st.composite
def several_variables(draw):
    """A random program and two or three of its names (the generated variable and constants of
    any kind: scalars, vectors, matrices, symmetric matrices) as the variables."""
    p = draw(programs(max_depth=4, budget=10))
    typed = check(parse(p.source))
    others = [n for n in typed.symbols if n in typed.variables and n != p.wrt]
    assume(others)
    k = draw(st.integers(1, min(2, len(others))))
    chosen = draw(st.permutations(others))[:k]
    names = [p.wrt] + list(chosen)
    if draw(st.booleans()):
        names.reverse()
    return p, names


@profile_settings(80)
@given(several_variables())
def test_every_block_matches_finite_differences(case):
    p, names = case
    note(f"{p.source}   [wrt {','.join(names)}]")
    d = derive(p.source, wrt=names, gradient=p.is_scalar, jacobian=not p.is_scalar, hessian=p.is_scalar)
    assert d.wrts == tuple(names)
    kinds = {r.name for r in d.results.values()}
    assert kinds == ({"differential", "gradient", "hessian", "hessian_bilinear"} if p.is_scalar
                     else {"differential", "jacobian"})
    if p.is_scalar:
        k = len(names)
        assert len(d.hessians) == k * (k + 1) // 2   # H[x, W] once; H[W, x] is its transpose
    b = assert_every_block_matches(d, p.source + ",".join(names), random_program=True)
    # each block is what a one-variable derivation gives
    for name in names:
        single = derive(p.source, wrt=name, gradient=p.is_scalar, jacobian=not p.is_scalar)
        kind = "gradient" if p.is_scalar else "jacobian"
        block = (d.gradients if p.is_scalar else d.jacobians)[name]
        with np.errstate(all="ignore"):
            assert relative_error(b.value(block.expr), b.value(single.results[kind].expr)) < 1e-8, name


SYMMETRIC_MIX = [
    ("x: vector(n); S: symmetric(n); A: matrix(n, n); x' * A * S * x + logdet(S)", "x,S,A"),
    ("S: symmetric(n); T: symmetric(n); tr(S * T * S) + sum(exp(T))", "S,T"),
    ("c: scalar; S: symmetric(n); v: vector(n); c^2 * v' * inv(S) * v + sin(c) * tr(S)", "c,S,v"),
    ("U: matrix(m, k); V: matrix(n, k); M: matrix(m, n); norm2(M - U * V')^2", "U,V"),
    ("X: matrix(m, n); w: vector(n); b: scalar; y: vector(m); sum(log(1 + exp(-y .* (X * w + b))))", "w,b"),
]


@pytest.mark.parametrize("program, wrt", SYMMETRIC_MIX)
def test_every_block_of_a_mixed_program_matches_finite_differences(program, wrt):
    d = derive(program, wrt=wrt, gradient=True, hessian=True)
    assert_every_block_matches(d, program)
    assert check_derivation(d).passed


@pytest.mark.parametrize("program, wrt", [
    ("x: vector(n); W: matrix(m, n); b: vector(m); exp(W * x + b)", "x,W,b"),
    ("X: matrix(n, n); S: symmetric(n); X * S * X'", "X,S"),
])
def test_jacobian_blocks_match_finite_differences(program, wrt):
    for layout in ("numerator", "denominator"):
        d = derive(program, wrt=wrt, jacobian=True, layout=layout)
        assert set(d.jacobians) == set(wrt.split(","))
        assert_every_block_matches(d, program + layout)


# --- one variable: as before ------------------------------------------------------------------

ONE_VARIABLE = [
    ("x: vector(n); A: matrix(n, n); x' * A * x", "x", ["--hessian", "--gradient"]),
    ("X: symmetric(n); A: matrix(n, n); tr(A * inv(X))", "X", ["--gradient", "--hessian"]),
    ("X: matrix(n, n); X^2", "X", ["--jacobian"]),
]


@pytest.mark.parametrize("program, wrt, flags", ONE_VARIABLE)
def test_one_variable_in_a_list_is_the_one_variable_derivation(program, wrt, flags):
    kw = {f.strip("-"): True for f in flags}
    a, b = derive(program, wrt=wrt, **kw), derive(program, wrt=[wrt], **kw)
    assert not a.several and not b.several
    assert list(a.results) == list(b.results) == [r.name for r in a.results.values()]
    assert [r.text() for r in a.results.values()] == [r.text() for r in b.results.values()]
    assert a.x == b.x and a.dx.name == "d" + wrt
    _, out, _ = cli(program, "--wrt", wrt, "--format", "json", *flags)
    doc = json.loads(out)
    assert doc["wrt"] == wrt and doc["differential"]["direction"] == "d" + wrt
    for kind in ("gradient", "jacobian", "hessian"):
        if kind in doc:
            assert "text" in doc[kind]          # today's shape: one result, not keyed by name
    numpy = to_numpy_module(a)
    assert "def gradients(" not in numpy and "gradient_" + wrt not in numpy


def test_wrt_all_with_one_variable_is_the_one_variable_output():
    program = "X: matrix(n, n); det(X) + tr(X * X)"
    assert cli(program, "--wrt", "all", "--hessian")[1] == cli(program, "--wrt", "X", "--hessian")[1]


# --- choosing the variables -------------------------------------------------------------------

def test_wrt_all_takes_the_variables_in_declaration_order():
    d = derive("b: vector(m); W: matrix(m, n); x: vector(n); c: scalar; sum(W * x + b)", wrt="all")
    assert d.wrts == ("b", "W", "x")     # c is declared but not used: nothing to differentiate
    assert list(d.gradients) == ["b", "W", "x"]


@pytest.mark.parametrize("wrt, message", [
    ("x,x", "'x' is asked for twice"),
    ("x,q", "there is no 'q'"),
    ("x,", "an empty name"),
    ("x,u", "'u' is a definition"),
])
def test_bad_variable_lists_are_usage_errors(wrt, message):
    code, out, err = cli("x: vector(n); W: matrix(n, n); u = W * x; u' * x", "--wrt", wrt)
    assert code == 2 and message in err and out == ""


def test_several_variables_api():
    d = derive(GAUSSIAN, wrt=["mu", "Sigma"], gradient=True, hessian=True)
    assert d.several and d.wrt == "mu,Sigma"
    assert list(d.gradients) == ["mu", "Sigma"] and list(d.hessians) == [
        ("mu", "mu"), ("mu", "Sigma"), ("Sigma", "Sigma")]
    assert [r.key for r in d.results.values()] == [
        "differential", "gradient[mu]", "gradient[Sigma]", "hessian_bilinear",
        "hessian[mu, mu]", "hessian[mu, Sigma]", "hessian[Sigma, Sigma]"]
    with pytest.raises(AttributeError, match="gradients"):
        d.gradient
    with pytest.raises(AttributeError, match="variables"):
        d.x
    assert [v.dx.name for v in d.variables] == ["dmu", "dSigma"]
    # the differential is the sum of its parts, one per direction
    assert list(d.parts) == ["mu", "Sigma"]
    assert d.differential.expr == E.add(*(p.expr for p in d.parts.values()))
    assert d.parts["mu"].expr.free_vars.isdisjoint({d.variables[1].dx})


def test_direction_names_do_not_clash():
    d = derive("x: vector(n); dx: vector(n); x' * dx", wrt="x,dx")
    names = [v.dx.name for v in d.variables] + [v.dx2.name for v in d.variables]
    assert len(set(names)) == 4 and not set(names) & {"x", "dx"}
    assert_every_block_matches(derive("x: vector(n); dx: vector(n); x' * dx", wrt="x,dx", hessian=True,
                                      gradient=True), "clash")


# --- formats ----------------------------------------------------------------------------------

def _parses_back(d, text):
    """A result line, parsed with the program's declarations and the directions'."""
    decls = [declarations_text(d)] + [f"{v.name}: {shape_text(Symbol(v.name, v.shape, True, v.symmetric))}"
                                      for v, _ in d.directions]
    return derive("; ".join(decls) + "; " + text, wrt=d.wrts[0])


def test_plain_is_one_result_a_line_in_the_documented_order():
    code, out, _ = cli(GAUSSIAN, "--wrt", "mu,Sigma", "--gradient", "--hessian")
    assert code == 0
    d = derive(GAUSSIAN, wrt="mu,Sigma", gradient=True, hessian=True)
    lines = out.splitlines()
    # differential, gradient[mu], gradient[Sigma], f'', H[mu, mu], H[mu, Sigma], H[Sigma, Sigma]
    assert lines == [r.text() for r in d.results.values()] and len(lines) == 7
    rng = rng_for("plain")
    b = blocks_at_a_point(d, "plain")
    env = dict(b.values)
    for v, _ in d.directions:
        env[v.name] = random_direction(v, rng, b.sizes)
    for line, r in zip(lines, d.results.values()):
        again = _parses_back(d, line).expression
        assert np.allclose(evaluate(again, env, b.sizes), evaluate(r.expr, env, b.sizes)), line


def test_json_is_keyed_by_variable_and_by_pair():
    code, out, _ = cli("x: vector(n); W: matrix(m, n); S: symmetric(m); (W * x)' * S * (W * x)",
                       "--wrt", "x,W,S", "--gradient", "--jacobian", "--hessian", "--format", "json")
    doc = json.loads(out)
    assert doc["wrt"] == ["x", "W", "S"]
    assert list(doc["gradient"]) == ["x", "W", "S"] and list(doc["jacobian"]) == ["x", "W", "S"]
    assert list(doc["hessian"]) == ["x,x", "x,W", "x,S", "W,W", "W,S", "S,S"]
    assert doc["gradient"]["W"]["shape"] == ["m", "n"]
    assert doc["jacobian"]["W"]["shape"] == [1, "m*n"]
    assert doc["hessian"]["x,W"]["shape"] == ["n", "m*n"]   # numel(x) x numel(W)
    assert doc["hessian"]["W,S"]["shape"] == ["m*n", "m^2"]
    assert doc["differential"]["directions"] == {"x": "dx", "W": "dW", "S": "dS"}
    assert set(doc["differential"]["parts"]) == {"x", "W", "S"}
    assert doc["hessian_bilinear"]["directions"] == [{"x": "dx", "W": "dW", "S": "dS"},
                                                     {"x": "dx2", "W": "dW2", "S": "dS2"}]
    for block in list(doc["gradient"].values()) + list(doc["hessian"].values()):
        assert block["text"] and block["latex"]


def _module(d):
    mod = types.ModuleType("generated")
    exec(compile(to_numpy_module(d), "generated.py", "exec"), mod.__dict__)
    return mod


def test_numpy_names_and_gradients_computed_together():
    program = "x: vector(n); W: matrix(m, n); S: symmetric(m); lambda: scalar; " \
              "(W * x)' * S * (W * x) + lambda * sum(exp(W * x))"
    d = derive(program, wrt="x,W,S,lambda", gradient=True, hessian=True)
    mod = _module(d)
    names = {n for n in dir(mod) if not n.startswith("_") and callable(getattr(mod, n)) and n != "np"}
    blocks = {f"hessian_{a}_{b}" for a, b in d.hessians}
    assert names == {"f", "differential", "hessian_bilinear", "gradients", "derivatives", "hvp"} | \
        {f"gradient_{n}" for n in d.wrts} | blocks
    assert "hessian_W_x" not in names and "hessian_x_W" in names
    b = blocks_at_a_point(d, "numpy")
    args = {n: b.values[n] for n in d.typed.symbols}
    args = {n: (float(a[0, 0]) if a.shape == (1, 1) else a.reshape(-1) if a.shape[1] == 1 else a)
            for n, a in args.items()}
    together = mod.gradients(**args)
    assert list(together) == list(d.wrts)
    for name in d.wrts:
        one = getattr(mod, f"gradient_{name}")(**args)
        assert np.allclose(together[name], one)
        want = b.J(name).reshape(shape_of(b.variables[name].x, b.sizes), order="F")
        assert np.allclose(np.reshape(together[name], want.shape, order="F"), want, atol=1e-6)
    H = mod.hessian_x_W(**args)
    assert H.shape == (3, 12)       # n = 3, m = 4
    assert np.allclose(H, b.H("x", "W"), atol=1e-6)
    dirs = {v.dx.name: random_direction(v.dx, rng_for("numpy"), b.sizes) for v in d.variables}
    dirs = {k: (float(a[0, 0]) if a.shape == (1, 1) else a.reshape(-1) if a.shape[1] == 1 else a)
            for k, a in dirs.items()}
    df = mod.differential(**args, **dirs)
    assert np.isclose(df, sum((vec(b.J(v.name)).T @ vec(dirs[v.dx.name])).item() for v in d.variables))


def test_latex_labels_every_block():
    code, out, _ = cli(GAUSSIAN, "--wrt", "mu,Sigma", "--gradient", "--hessian", "--format", "latex")
    assert code == 0
    for label in (r"\nabla_{\mu} f", r"\nabla_{\Sigma} f", r"\nabla^2_{\mu \mu} f", r"\nabla^2_{\mu \Sigma} f",
                  r"\nabla^2_{\Sigma \Sigma} f", r"f'(\mu, \Sigma)[\mathrm{d}\mu, \mathrm{d}\Sigma]"):
        assert label in out, label
    assert r"\nabla^2_{\Sigma \mu}" not in out


# --- the user's view: a two-layer network and a Gaussian, each checked --------------------------

def test_two_layer_network_gradients_in_one_call_in_every_format():
    wrt = ",".join(NETWORK_WRT)
    code, out, _ = cli(NETWORK, "--wrt", wrt, "--gradient", "--check")
    assert code == 0, out
    lines = out.splitlines()
    assert len([line for line in lines if not line.startswith("#")]) == 5   # differential and 4 gradients
    for name in NETWORK_WRT:
        assert any(line.startswith(f"# check gradient[{name}]:") and line.endswith("PASS") for line in lines)

    code, out, _ = cli(NETWORK, "--wrt", wrt, "--gradient", "--check", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and list(doc["gradient"]) == list(NETWORK_WRT) and doc["check"]["passed"]
    assert [c["name"] for c in doc["check"]["results"]] == ["differential"] + [f"gradient[{n}]" for n in NETWORK_WRT]

    code, out, _ = cli(NETWORK, "--wrt", wrt, "--gradient", "--check", "--format", "latex")
    assert code == 0 and all(rf"\nabla_{{{n[0]}_{{{n[1]}}}}} f" in out for n in NETWORK_WRT)

    code, out, _ = cli(NETWORK, "--wrt", wrt, "--gradient", "--check", "--format", "numpy")
    assert code == 0
    mod = types.ModuleType("network")
    exec(compile(out, "network.py", "exec"), mod.__dict__)
    rng = np.random.default_rng(1)
    n, h, m = 3, 5, 4
    args = dict(W1=rng.standard_normal((h, n)), b1=rng.standard_normal(h), W2=rng.standard_normal((m, h)),
                b2=rng.standard_normal(m), x=rng.standard_normal(n), y=rng.standard_normal(m))
    grads = mod.gradients(**args)
    # backpropagation by hand
    a = np.tanh(args["W1"] @ args["x"] + args["b1"])
    r = args["W2"] @ a + args["b2"] - args["y"]
    delta = (args["W2"].T @ r) * (1 - a ** 2)
    assert np.allclose(grads["b2"], r) and np.allclose(grads["W2"], np.outer(r, a))
    assert np.allclose(grads["b1"], delta) and np.allclose(grads["W1"], np.outer(delta, args["x"]))


def test_gaussian_mean_covariance_block_with_check():
    code, out, _ = cli(GAUSSIAN, "--wrt", "mu,Sigma", "--hessian", "--check")
    assert code == 0, out
    assert any(line.startswith("# check hessian[mu, Sigma]:") and line.endswith("PASS") for line in out.splitlines())
    d = derive(GAUSSIAN, wrt="mu,Sigma", hessian=True)
    H = d.hessians[("mu", "Sigma")]
    # d(inv(S) (x - mu)) along dS = -inv(S) dS inv(S) (x - mu): -kron((x - mu)' inv(S), inv(S)) P
    b = blocks_at_a_point(d, "gaussian")
    S, r = np.linalg.inv(b.values["Sigma"]), b.values["x"] - b.values["mu"]
    n = S.shape[0]
    K = np.zeros((n * n, n * n))
    for i in range(n):
        for j in range(n):
            K[j + i * n, i + j * n] = 1
    want = -np.kron(r.T @ S, S) @ (np.eye(n * n) + K) / 2
    assert np.allclose(b.value(H.expr), want)
    assert (str(H.shape[0]), str(H.shape[1])) == ("n", "n^2")


def test_gaussian_blocks_verify_with_sympy():
    from matcalc_cli.verify import verify_derivation
    d = derive(GAUSSIAN, wrt="mu,Sigma", gradient=True, hessian=True)
    report = verify_derivation(d, 2)
    assert report.passed and [r.name for r in report.results] == list(d.results)


def test_check_and_verify_catch_a_wrong_mixed_block():
    from dataclasses import replace

    from matcalc_cli.verify import verify_derivation
    d = derive("x: vector(n); W: matrix(n, n); x' * W * x", wrt="x,W", hessian=True)
    key = "hessian[x, W]"
    right = d.results[key].expr
    # kron(x', I) without the commutation term: the derivative through dW' is missing
    d.results[key] = replace(d.results[key], expr=E.kron(E.transpose(d.variables[0].x), E.identity(right.rows)))
    report = check_derivation(d)
    assert not report.passed
    assert [r.name for r in report.results if not r.passed] == [key]
    verified = verify_derivation(d, 2)
    assert [r.name for r in verified.results if not r.equal] == [key]


def test_latex_of_every_kind_of_block_compiles(tmp_path):
    import shutil
    import subprocess
    exe = shutil.which("pdflatex")
    if exe is None:
        pytest.skip("pdflatex is not installed")
    blocks = [cli(GAUSSIAN, "--wrt", "mu,Sigma", "--gradient", "--hessian", "--symmetric-gradient", "cookbook",
                  "--format", "latex")[1],
              cli("x: vector(n); W_1: matrix(m, n); exp(W_1 * x)", "--wrt", "x,W_1", "--format", "latex")[1]]
    assert r"J_{W_{1}} f" in blocks[1] and r"\nabla^{\text{cookbook}}_{\Sigma} f" in blocks[0]
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\n\\usepackage{amsmath}\n\\begin{document}\n"
                                      + "\n".join(blocks) + "\n\\end{document}\n", encoding="utf-8")
    done = subprocess.run([exe, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
