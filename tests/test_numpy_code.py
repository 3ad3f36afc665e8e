"""``--format numpy``: the generated module computes what the IR says, and its derivatives are the
derivatives of its own f (finite differences of the generated code, independent of the IR).

Inputs and outputs follow the caller's conventions: scalars as numbers, vectors as 1-D arrays,
matrices as 2-D arrays; Jacobians and Hessians are always 2-D.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given

from matcalc_cli import derive
from matcalc_cli import numeric as N
from matcalc_cli.render.numpy_code import to_numpy_module

from strategies import profile_settings, programs

ALL = dict(gradient=True, hessian=True)

# (program, wrt, flags): every node kind, every elementwise function, every kind of variable
PROGRAMS = [
    ("x: vector(n); A: matrix(n, n); x' * A * x", "x", ALL),
    ("x: vector(n); A: matrix(m, n); b: vector(m); norm2(A*x - b)^2 / 2", "x", ALL),
    ("x: vector(n); A: matrix(m, n); b: vector(m); A*x - b", "x", {"jacobian": True}),
    ("X: matrix(n, n); det(X)", "X", ALL),
    ("X: matrix(n, n); logdet(X)", "X", ALL),
    ("X: symmetric(n); logdet(X)", "X", dict(gradient=True, jacobian=True, hessian=True)),
    ("X: symmetric(n); A: matrix(n, n); tr(A * X * X)", "X", ALL),
    ("X: matrix(m, n); A: matrix(n, m); X * A * X", "X", {"jacobian": True}),
    ("X: matrix(n, n); inv(X)", "X", {"jacobian": True}),
    ("X: matrix(n, n); adj(X)", "X", {"jacobian": True}),
    ("X: matrix(n, n); X^3 - 2 * X^2", "X", {"jacobian": True}),
    ("X: matrix(n, n); tr(inv(X)^2)", "X", ALL),
    ("X: matrix(m, n); kron(X, X')", "X", {"jacobian": True}),
    ("X: matrix(m, n); vec(X)' * commutation(m, n) * vec(X)", "X", ALL),
    ("X: matrix(n, n); diag(X)' * diag(X) + sum(diag(diag(X)))", "X", ALL),
    ("x: vector(m*n); A: matrix(m, n); tr(A' * reshape(x, m, n))^2", "x", ALL),
    ("x: vector(n); sum(ones(k)) * sum(x .* x)", "x", ALL),
    ("X: matrix(m, n); ones(m)' * X * ones(n) + sum(zeros(m, n) + X)", "X", ALL),
    ("X: matrix(m, n); sum(sigmoid(X)) + sum(exp(X) .* sin(X)) + sum(cos(X) ./ 2) + sum(tanh(X))", "X", ALL),
    ("x: vector(n); sum(arctan(x)) + sum(arcsin(x / 10)) + sum(arccos(x / 10)) + sum(tan(x / 10))", "x", ALL),
    ("x: vector(n); sum(log(exp(x) + 1)) + sum(sqrt(x .* x + 1))", "x", ALL),
    ("x: vector(n); sum(relu(x)) + norm1(x) + sum(step(x)) + sum(sign(x) .* x) + sum(abs(x))", "x", ALL),
    ("x: vector(n); sqrt(x' * x) + sum((x .* x + 1) .^ 1.5) + sum(1 ./ (x .* x + 1))", "x", ALL),
    ("x: vector(n); c: scalar; sum((x .* x + 1) .^ c)", "c", ALL),
    ("x: vector(n); arcsin(0.5 * tanh(sum(x))) + 1 / sqrt(x' * x + 1)", "x", ALL),
    ("x: vector(p); v1: vector(m*n); A1: matrix(n*p, p); v2: vector(n*p); "
     "commutation(m, n) * ((3 + v1) / (0.5 + sigmoid(tr(A1 * x * v2'))))", "x", {"jacobian": True}),
    ("x: vector(n); c: scalar; c^2 * x", "c", {"jacobian": True}),
    ("x: vector(n); lambda: scalar; lambda * x' * x + lambda^3", "lambda", ALL),
    ("x: vector(n); lambda: scalar; lambda * x' * x + lambda^3", "x", ALL),
    ("x: vector(n); x * x'", "x", {"jacobian": True}),
    ("x: vector(n); A: matrix(n, n); exp(A * x) .* x", "x", {"jacobian": True}),
    ("X: matrix(n, n); X .* X' + I", "X", {"jacobian": True}),
    ("X: matrix(n, m); A: matrix(m, n); tr(A * X) + 3", "X", {"jacobian": True, "layout": "denominator"}),
    ("X: matrix(n, m); sum(X)", "X", ALL),
]


def load(derivation) -> dict:
    """Execute the generated module and return its namespace."""
    namespace = {"__name__": "matcalc_generated"}
    exec(compile(to_numpy_module(derivation), "<matcalc --format numpy>", "exec"), namespace)
    return namespace


def caller_form(value: np.ndarray, shape) -> object:
    """An internal 2-D value as a caller passes it: a float, a 1-D array or a 2-D array."""
    a = np.asarray(value, dtype=float)
    if a.shape == (1, 1) and shape[0] == 1 and shape[1] == 1:
        return float(a[0, 0])
    if shape[1] == 1:
        return a.reshape(-1)
    return a


def arguments(derivation, values: dict, extra_dims=()) -> dict:
    args = {name: caller_form(values[name], sym.shape) for name, sym in derivation.typed.symbols.items()
            if name in values}
    for v in (derivation.dx, derivation.dx2):
        if v.name in values:
            args[v.name] = caller_form(values[v.name], v.shape)
    return args


def free_dims(derivation, sizes) -> dict:
    """Dimension sizes no argument's shape determines (the module takes them as keywords)."""
    from matcalc_cli.render.numpy_code import ModuleWriter
    return {s: sizes[s] for s in ModuleWriter(derivation).free_dims}


def as_2d(out, shape) -> np.ndarray:
    return np.asarray(out, dtype=float).reshape(shape)


def point(derivation, seed=0):
    sizes = N.dimension_sizes(derivation)
    rng = np.random.default_rng(seed)
    values = N.random_point(derivation, rng, sizes)
    assert not N.point_problems(derivation, values, sizes)
    values[derivation.dx.name] = N.random_direction(derivation.dx, rng, sizes)
    values[derivation.dx2.name] = N.random_direction(derivation.dx2, rng, sizes)
    return sizes, values


def derivation_of(program, wrt, flags):
    return derive(program, wrt=wrt, **flags)


IDS = [f"{p} [{w}]" for p, w, _ in PROGRAMS]


# --- the generated module computes the IR ----------------------------------------------------------

@pytest.mark.parametrize("program,wrt,flags", PROGRAMS, ids=IDS)
def test_generated_functions_equal_the_interpreted_ir(program, wrt, flags):
    d = derivation_of(program, wrt, flags)
    mod = load(d)
    sizes, values = point(d)
    args = arguments(d, values)
    args.update(free_dims(d, sizes))
    exprs = {"f": d.expression, **{name: r.expr for name, r in d.results.items()}}
    for name, e in exprs.items():
        call_args = dict(args)
        if name not in ("differential", "hessian_bilinear"):
            call_args.pop(d.dx.name)
        if name != "hessian_bilinear":
            call_args.pop(d.dx2.name)
        got = mod[name](**call_args)
        expected = N.evaluate(e, values, sizes)
        np.testing.assert_allclose(as_2d(got, expected.shape), expected, rtol=1e-10, atol=1e-12,
                                   err_msg=f"{name} of {program}")


@pytest.mark.parametrize("program,wrt,flags", PROGRAMS, ids=IDS)
def test_generated_derivatives_are_finite_differences_of_generated_f(program, wrt, flags):
    """Independent of the IR interpreter: differentiate the module's own f numerically."""
    d = derivation_of(program, wrt, flags)
    mod = load(d)
    sizes, values = point(d, seed=1)
    dims = free_dims(d, sizes)

    def call(fn):
        return lambda env: as_2d(fn(**arguments(d, {k: v for k, v in env.items() if k in d.typed.symbols}),
                                    **dims), N.shape_of(d.expression if fn is mod["f"] else d.x, sizes))

    J = N.numeric_jacobian_of(call(mod["f"]), d.x, values, sizes)
    base = {k: v for k, v in values.items() if k in d.typed.symbols}
    args = arguments(d, base)
    args.update(dims)
    if "jacobian" in d.results:
        got = mod["jacobian"](**args)
        expected = J.T if d.layout == "denominator" else J
        assert got.ndim == 2
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    if "gradient" in d.results:
        G = as_2d(mod["gradient"](**args), N.shape_of(d.x, sizes))
        np.testing.assert_allclose(G, J.reshape(G.shape, order="F"), rtol=1e-6, atol=1e-6)
    if "hessian" in d.results:
        H = N.numeric_jacobian_of(call(mod["gradient"]), d.x, values, sizes)
        np.testing.assert_allclose(mod["hessian"](**args), H, rtol=1e-6, atol=1e-6)
    dx = values[d.dx.name]
    df = mod["differential"](**args, **{d.dx.name: caller_form(dx, d.x.shape)})
    expected = (J @ dx.reshape(-1, 1, order="F")).reshape(N.shape_of(d.expression, sizes), order="F")
    np.testing.assert_allclose(as_2d(df, expected.shape), expected, rtol=1e-6, atol=1e-6)


@given(programs(max_depth=4, budget=10))
@profile_settings(25)
def test_generated_module_equals_the_ir_on_random_programs(prog):
    d = derive(prog.source, wrt=prog.wrt, jacobian=True, gradient=prog.is_scalar, hessian=prog.is_scalar)
    mod = load(d)
    sizes = N.dimension_sizes(d)
    values = N.random_point(d, np.random.default_rng(0), sizes)
    args = arguments(d, values)
    args.update(free_dims(d, sizes))
    for name in ("f", "gradient", "jacobian", "hessian"):
        if name == "f" or name in d.results:
            e = d.expression if name == "f" else d.results[name].expr
            expected = N.evaluate(e, values, sizes)
            got = as_2d(mod[name](**args), expected.shape)
            np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-10, equal_nan=True,
                                       err_msg=f"{name} of {prog}")


# --- the caller's conventions ------------------------------------------------------------------------

def test_scalar_f_gives_float_and_vector_gradient_gives_1d():
    mod = load(derive("x: vector(n); A: matrix(n, n); x' * A * x", wrt="x", gradient=True, jacobian=True,
                      hessian=True))
    x, A = np.array([1.0, 2.0, 3.0]), np.arange(9.0).reshape(3, 3)
    value = mod["f"](x=x, A=A)
    assert isinstance(value, float) and value == pytest.approx(x @ A @ x)
    g = mod["gradient"](x=x, A=A)
    assert g.shape == (3,)
    np.testing.assert_allclose(g, (A + A.T) @ x)
    assert mod["jacobian"](x=x, A=A).shape == (1, 3)
    np.testing.assert_allclose(mod["hessian"](x=x, A=A), A + A.T)
    # a column vector is accepted as well
    assert mod["f"](x=x.reshape(3, 1), A=A) == pytest.approx(value)


def test_vector_f_gives_1d_and_matrix_f_gives_2d():
    vec_mod = load(derive("x: vector(n); A: matrix(m, n); A * x", wrt="x", jacobian=True))
    A, x = np.arange(12.0).reshape(4, 3), np.array([1.0, -1.0, 2.0])
    y = vec_mod["f"](A=A, x=x)
    assert y.shape == (4,)
    np.testing.assert_allclose(y, A @ x)
    np.testing.assert_allclose(vec_mod["jacobian"](A=A, x=x), A)
    mat_mod = load(derive("x: vector(n); x * x'", wrt="x", jacobian=True))
    assert mat_mod["f"](x=x).shape == (3, 3)
    assert mat_mod["jacobian"](x=x).shape == (9, 3)


def test_scalar_variable_gradient_is_a_float():
    mod = load(derive("x: vector(n); c: scalar; c^2 * x' * x", wrt="c", gradient=True, hessian=True))
    x = np.array([1.0, 2.0])
    g = mod["gradient"](x=x, c=3.0)
    assert isinstance(g, float) and g == pytest.approx(2 * 3.0 * 5.0)
    assert mod["hessian"](x=x, c=3.0).shape == (1, 1)


def test_jacobian_vec_is_column_major_on_both_sides():
    # f(X) = X' (m x n -> n x m): the Jacobian is the commutation matrix K(m, n)
    mod = load(derive("X: matrix(m, n); X'", wrt="X", jacobian=True))
    X = np.arange(6.0).reshape(2, 3)
    J = mod["jacobian"](X=X)
    dX = np.random.default_rng(0).standard_normal((2, 3))
    np.testing.assert_allclose(J @ dX.reshape(-1, order="F"), dX.T.reshape(-1, order="F"))


def test_denominator_layout_is_the_transpose():
    program = "x: vector(n); A: matrix(m, n); A * x"
    num = load(derive(program, wrt="x", jacobian=True))
    den = load(derive(program, wrt="x", jacobian=True, layout="denominator"))
    A, x = np.arange(12.0).reshape(4, 3), np.ones(3)
    np.testing.assert_allclose(den["jacobian"](A=A, x=x), num["jacobian"](A=A, x=x).T)


def test_symmetric_variable_gradient_and_projected_hessian():
    mod = load(derive("X: symmetric(n); logdet(X)", wrt="X", gradient=True, hessian=True))
    X = np.array([[2.0, 0.5, 0.0], [0.5, 3.0, 0.2], [0.0, 0.2, 1.5]])
    np.testing.assert_allclose(mod["gradient"](X=X), np.linalg.inv(X))
    H = mod["hessian"](X=X)
    K = N.commutation_matrix(3, 3)
    np.testing.assert_allclose(H @ K, H)  # zero on antisymmetric directions: H P = H


def test_symmetric_gradient_is_sym_of_entrywise_finite_differences():
    # f accepts any square matrix, so a checker may difference entry by entry and symmetrize
    mod = load(derive("X: symmetric(n); A: matrix(n, n); tr(A * X * X)", wrt="X", gradient=True))
    rng = np.random.default_rng(7)
    A = rng.standard_normal((3, 3))
    X = rng.standard_normal((3, 3))
    X = X + X.T
    h, G = 1e-6, np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            E = np.zeros((3, 3))
            E[i, j] = h
            G[i, j] = (mod["f"](X=X + E, A=A) - mod["f"](X=X - E, A=A)) / (2 * h)
    np.testing.assert_allclose(mod["gradient"](X=X, A=A), (G + G.T) / 2, atol=1e-6)


def test_differential_and_bilinear_take_directions_named_like_the_program():
    mod = load(derive("X: matrix(n, n); det(X)", wrt="X", hessian=True))
    rng = np.random.default_rng(3)
    X, dX, dX2 = np.eye(3) * 2 + 0.1 * rng.standard_normal((3, 3)), rng.standard_normal((3, 3)), \
        rng.standard_normal((3, 3))
    H = mod["hessian"](X=X)
    b = mod["hessian_bilinear"](X=X, dX=dX, dX2=dX2)
    assert b == pytest.approx(dX.reshape(-1, order="F") @ H @ dX2.reshape(-1, order="F"))
    d1 = mod["differential"](X=X, dX=dX)
    assert d1 == pytest.approx(np.linalg.det(X) * np.trace(np.linalg.solve(X, dX)))
    with pytest.raises(TypeError, match="dX2"):
        mod["hessian_bilinear"](X=X, dX=dX)


def test_argument_errors_are_clear():
    mod = load(derive("x: vector(n); A: matrix(m, n); A * x", wrt="x", jacobian=True))
    A = np.ones((4, 3))
    with pytest.raises(TypeError, match="missing argument.*x"):
        mod["f"](A=A)
    with pytest.raises(TypeError, match="unexpected argument.*y"):
        mod["f"](A=A, x=np.ones(3), y=1.0)
    with pytest.raises(ValueError, match="does not match"):
        mod["f"](A=A, x=np.ones(5))
    with pytest.raises(ValueError, match="vector"):
        mod["f"](A=A, x=np.ones((3, 2)))
    with pytest.raises(ValueError, match="matrix"):
        mod["f"](A=np.ones(4), x=np.ones(3))


def test_product_dimensions_are_read_and_checked():
    mod = load(derive("x: vector(m*n); A: matrix(m, n); tr(A' * reshape(x, m, n))", wrt="x", gradient=True))
    A = np.arange(6.0).reshape(2, 3)
    x = np.arange(6.0) + 1
    assert mod["f"](x=x, A=A) == pytest.approx(np.sum(A * x.reshape(2, 3, order="F")))
    np.testing.assert_allclose(mod["gradient"](x=x, A=A), A.reshape(-1, order="F"))
    with pytest.raises(ValueError, match="m\\*n"):
        mod["f"](x=np.ones(5), A=A)


def test_dimension_that_no_argument_determines_is_a_keyword():
    mod = load(derive("x: vector(n); sum(ones(k)) * sum(x)", wrt="x", gradient=True))
    x = np.array([1.0, 2.0])
    with pytest.raises(TypeError, match="pass k="):
        mod["f"](x=x)
    assert mod["f"](x=x, k=4) == pytest.approx(12.0)
    np.testing.assert_allclose(mod["gradient"](x=x, k=4), [4.0, 4.0])


def test_python_keywords_and_module_names_as_variable_names():
    program = ("lambda: scalar; class: vector(n); np: vector(n); t1: matrix(n, n); vars: scalar; f: scalar; "
               "_tr: scalar; result: vector(n); lambda * class' * t1 * np + vars * f * _tr + result' * np")
    d = derive(program, wrt="np", gradient=True, hessian=True)
    mod = load(d)
    rng = np.random.default_rng(0)
    v = {"lambda": 2.0, "class": rng.standard_normal(3), "np": rng.standard_normal(3),
         "t1": rng.standard_normal((3, 3)), "vars": 3.0, "f": 5.0, "_tr": 7.0, "result": rng.standard_normal(3)}
    expected = 2.0 * v["class"] @ v["t1"] @ v["np"] + 3 * 5 * 7 + v["result"] @ v["np"]
    assert mod["f"](**v) == pytest.approx(expected)
    np.testing.assert_allclose(mod["gradient"](**v), 2.0 * v["t1"].T @ v["class"] + v["result"])
    np.testing.assert_allclose(mod["hessian"](**v), np.zeros((3, 3)))


# --- the shape of the code ---------------------------------------------------------------------------

def _function_source(source: str, name: str) -> str:
    tree = ast.parse(source)
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    return ast.get_source_segment(source, node)


def test_shared_subexpressions_are_computed_once():
    source = to_numpy_module(derive("X: matrix(n, n); det(X)", wrt="X", hessian=True))
    body = _function_source(source, "hessian_bilinear")
    assert body.count("np.linalg.inv(X)") == 1
    body = _function_source(source, "hessian")
    assert body.count("np.linalg.inv(") == 1   # inv(X) and inv(X') = inv(X)': one inversion


def test_module_imports_only_numpy_and_documents_itself():
    program = "X: symmetric(n); A: matrix(n, n); tr(A * X * X)"
    source = to_numpy_module(derive(program, wrt="X", gradient=True, jacobian=True, hessian=True))
    tree = ast.parse(source)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert imported == {"numpy"}
    doc = ast.get_docstring(tree)
    assert program in doc and "column-major" in doc and "(I + K)/2" in doc
    for name in ("f", "differential", "gradient", "jacobian", "hessian_bilinear", "hessian"):
        assert ast.get_docstring(next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name))


def test_long_sums_and_deep_nesting_compile():
    terms = " + ".join(f"{k} * x' * x" if k % 2 else f"sum(sin({k} * x))" for k in range(1, 80))
    d = derive(f"x: vector(n); {terms}", wrt="x", gradient=True)
    load(d)
    nested = "x"
    for _ in range(40):
        nested = f"sin({nested})"
    d = derive(f"x: vector(n); sum({nested})", wrt="x", gradient=True)
    source = to_numpy_module(d)
    # nesting is cut into temporaries: no statement is much longer than a line
    function = ast.parse(_function_source(source, "gradient")).body[0]
    statements = [ast.unparse(node) for node in function.body[1:]]
    assert len(statements) > 10 and max(len(text) for text in statements) < 160
    mod = load(d)
    x = np.array([0.3, -0.2])
    expected = x.copy()
    for _ in range(40):
        expected = np.sin(expected)
    assert mod["f"](x=x) == pytest.approx(expected.sum())


# --- the command line --------------------------------------------------------------------------------

def test_cli_format_numpy_writes_a_module_that_runs_alone(tmp_path):
    program = "x: vector(n); A: matrix(m, n); b: vector(m); lambda: scalar; norm2(A*x - b)^2 + lambda * x' * x"
    out = subprocess.run([sys.executable, "-m", "matcalc_cli.cli", program, "--wrt", "x", "--gradient",
                          "--hessian", "--format", "numpy"], capture_output=True, text=True, check=True)
    path = tmp_path / "loss_grad.py"
    path.write_text(out.stdout)
    script = textwrap.dedent(f"""
        import importlib.util, json, sys
        spec = importlib.util.spec_from_file_location("loss_grad", {str(path)!r})
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        assert not any(name.startswith("matcalc") for name in sys.modules), "imports matcalc"
        import numpy as np
        A = np.arange(12.0).reshape(4, 3) / 10; b = np.ones(4); x = np.array([1.0, -2.0, 0.5])
        args = dict(x=x, A=A, b=b)
        args["lambda"] = 0.5
        print(json.dumps({{"f": mod.f(**args), "g": mod.gradient(**args).tolist(),
                           "h": mod.hessian(**args).tolist()}}))
    """)
    run = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    import json
    got = json.loads(run.stdout)
    A = np.arange(12.0).reshape(4, 3) / 10
    b, x = np.ones(4), np.array([1.0, -2.0, 0.5])
    r = A @ x - b
    assert got["f"] == pytest.approx(r @ r + 0.5 * x @ x)
    np.testing.assert_allclose(got["g"], 2 * A.T @ r + x)
    np.testing.assert_allclose(got["h"], 2 * A.T @ A + np.eye(3))
