"""The mechanisms that make generated NumPy code fast, each guarded without timing anything:
products in the cheap order, structured operators never formed, work shared across results,
Hessian-vector products without the Hessian, code that grows linearly with the program."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from matcalc_cli import derive
from matcalc_cli import expr as E
from matcalc_cli import numeric as N
from matcalc_cli.render import lowering
from matcalc_cli.render.numpy_code import to_numpy_module

from strategies import profile_settings, programs
from test_numpy_code import PROGRAMS, _function_source, arguments, as_2d, caller_form, free_dims, load, point


class Recorded(np.ndarray):
    """An array that records the operand shapes of every matrix product it takes part in."""

    log: list = []

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        plain = [np.asarray(i) if isinstance(i, Recorded) else i for i in inputs]
        if ufunc is np.matmul:
            Recorded.log.append(tuple(np.shape(i) for i in plain))
        out = getattr(ufunc, method)(*plain, **kwargs)
        return out.view(Recorded) if isinstance(out, np.ndarray) else out


def products(fn, **args) -> list:
    """The (left shape, right shape) of every matrix product fn computes."""
    Recorded.log = []
    fn(**{k: np.asarray(v, dtype=float).view(Recorded) if not np.isscalar(v) else v for k, v in args.items()})
    return Recorded.log


def module(program, wrt, **flags):
    return load(derive(program, wrt=wrt, **flags))


def flops(shapes) -> int:
    (p, q), (_, r) = shapes
    return p * q * r


# --- products in the cheap order --------------------------------------------------------------------

@pytest.mark.parametrize("program", [
    "x: vector(n); A: matrix(n, n); x' * A' * A * x",
    "x: vector(n); A, B, C: matrix(n, n); x' * A * B * C * x",
    "x: vector(n); A: matrix(n, n); x' * A * x / (x' * x)",
    "x: vector(n); A: matrix(m, n); b: vector(m); norm2(A * x - b)^2 + x' * x",
])
def test_vector_gradient_is_matrix_vector_products_only(program):
    n = 7
    rng = np.random.default_rng(0)
    mod = module(program, "x", gradient=True)
    args = {name: rng.standard_normal((n, n) if name.isupper() else n) for name in "xbABC" if name + ":" in
            program or f", {name}" in program or f"{name}, " in program}
    for shapes in products(mod["gradient"], **args):
        assert 1 in shapes[0] or 1 in shapes[1], f"matrix-matrix product {shapes} in the gradient of {program}"


def test_chain_is_evaluated_in_the_cheap_order_at_either_end():
    n = 9
    rng = np.random.default_rng(1)
    A, B, C = (rng.standard_normal((n, n)) for _ in range(3))
    x = rng.standard_normal(n)
    mod = module("x: vector(n); A, B, C: matrix(n, n); A * B * C * x", "x", jacobian=True)
    assert all(flops(s) <= n * n for s in products(mod["f"], x=x, A=A, B=B, C=C))
    mod = module("x: vector(n); A, B, C: matrix(n, n); x' * A * B * C", "x", jacobian=True)
    assert all(flops(s) <= n * n for s in products(mod["f"], x=x, A=A, B=B, C=C))


def test_chain_order_dynamic_programme():
    # (10 x 100)(100 x 5)(5 x 50): (AB)C costs 7500, A(BC) 75000
    a, b, c = (E.Var(n, s) for n, s in (("A", (10, 100)), ("B", (100, 5)), ("C", (5, 50))))
    assert lowering.chain_cost([a.shape, b.shape, c.shape]) == 10 * 100 * 5 + 10 * 5 * 50
    source = to_numpy_module(derive("A: matrix(10, 100); B: matrix(100, 5); C: matrix(5, 50); "
                                    "x: vector(50); A * B * C * x", wrt="x", jacobian=True))
    assert "A @ (B @ (C @ x))" in _function_source(source, "f")



class Shapes(np.ndarray):
    """An array that records the shapes of the operands of every NumPy operation on it."""

    log: list = []

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        plain = [np.asarray(i) if isinstance(i, Shapes) else i for i in inputs]
        Shapes.log.extend(np.shape(i) for i in plain)
        out = getattr(ufunc, method)(*plain, **kwargs)
        return out.view(Shapes) if isinstance(out, np.ndarray) else out


@pytest.mark.parametrize("program,wrt", [
    ("x: vector(n); A: matrix(n, n); x' * A * x / (x' * x)", "x"),
    ("W: matrix(k, n); x: vector(n); y: vector(k); log(sum(exp(W * x))) - y' * W * x", "W"),
    ("x: vector(n); A: matrix(m, n); b: vector(m); lam: scalar; norm2(A * x - b)^2 + lam * x' * x", "x"),
])
def test_scalars_are_numbers_not_one_by_one_arrays(program, wrt):
    """Inner products, sums and scalar arguments are NumPy scalars: no arithmetic on 1 x 1 arrays,
    no matrix of ones, an outer product by broadcasting."""
    d = derive(program, wrt=wrt, gradient=True, hessian=True)
    mod = load(d)
    sizes, values = point(d)
    args = arguments(d, values)
    args.update(free_dims(d, sizes))
    for dx in d.directions:
        args.pop(dx[0].name, None)
    for fn in ("f", "gradient"):
        Shapes.log = []
        mod[fn](**{k: np.asarray(v, dtype=float).view(Shapes) if np.ndim(v) else v for k, v in args.items()})
        assert (1, 1) not in Shapes.log, f"a 1 x 1 array in {fn} of {program}"
        assert "np.ones" not in _function_source(to_numpy_module(d), fn)



def test_arguments_are_checked_once_per_combination_of_shapes():
    mod = module("x: vector(n); A: matrix(m, n); b: vector(m); lam: scalar; norm2(A * x - b)^2 + lam * x' * x",
                 "x", gradient=True)
    rng = np.random.default_rng(8)
    args = dict(x=rng.standard_normal(3), A=rng.standard_normal((4, 3)), b=rng.standard_normal(4), lam=0.5)
    first = mod["gradient"](**args)
    checked = mod["_inputs_checked"]

    def refuse(*a, **k):
        raise AssertionError("checked again")

    mod["_inputs_checked"] = refuse
    np.testing.assert_array_equal(mod["gradient"](**args), first)          # same shapes: no checks
    np.testing.assert_array_equal(mod["gradient"](**dict(args, lam=0.25)), mod["gradient"](**dict(args, lam=0.25)))
    with pytest.raises(AssertionError, match="checked again"):
        mod["gradient"](**dict(args, x=rng.standard_normal(5)))            # new shapes: checked
    mod["_inputs_checked"] = checked
    with pytest.raises(ValueError, match="does not match"):
        mod["gradient"](**dict(args, x=rng.standard_normal(5)))
    # an integer array of a known shape is still converted, not taken as it is
    ints = dict(args, A=np.arange(12).reshape(4, 3))
    np.testing.assert_allclose(mod["gradient"](**ints), mod["gradient"](**dict(ints, A=ints["A"].astype(float))))


# --- structured operators are applied, not formed ----------------------------------------------------

VECTOR_GRADIENTS = [
    ("x: vector(n); A: matrix(n, n); x' * A * x / (x' * x)", "x"),
    ("w: vector(n); X: matrix(m, n); y: vector(m); sum(log(1 + exp(-y .* (X * w))))", "w"),
    ("x: vector(n); A: matrix(m, n); b: vector(m); -sum(log(b - A * x))", "x"),
    ("x: vector(n); A: matrix(n, p); logdet(A' * diag(x) * A)", "x"),
    ("x: vector(n); A: matrix(m, n); b: vector(m); lambda: scalar; norm2(A*x - b)^2 + lambda * x' * x", "x"),
    ("mu: vector(n); S: symmetric(n); x: vector(n); -(x - mu)' * inv(S) * (x - mu) / 2", "mu"),
]


@pytest.mark.parametrize("program,wrt", VECTOR_GRADIENTS)
def test_vector_gradient_forms_no_identity_kron_or_diagonal_matrix(program, wrt):
    source = to_numpy_module(derive(program, wrt=wrt, gradient=True, hessian=True))
    for name in ("gradient", "hvp"):
        body = _function_source(source, name)
        for dense in ("np.eye", "np.kron", "_kron(", "np.diagflat", "_commutation"):
            assert dense not in body, f"{dense} in {name} of {program}:\n{body}"


def test_diagonal_of_a_product_is_row_sums_not_the_product():
    """diag(A inv(A' diag(x) A) A') (the gradient, and inside hvp) costs n p^2: no n x n product."""
    n, p = 12, 3
    rng = np.random.default_rng(3)
    mod = module("x: vector(n); A: matrix(n, p); logdet(A' * diag(x) * A)", "x", gradient=True, hessian=True)
    args = dict(x=1 + rng.random(n), A=rng.standard_normal((n, p)))
    for fn, extra in (("gradient", {}), ("hvp", {"v": rng.standard_normal(n)})):
        for (rows, _), (_, cols) in products(mod[fn], **args, **extra):
            assert rows * cols < n * n, f"an n x n product in {fn}"
    assert "keepdims" in _function_source(to_numpy_module(derive(
        "x: vector(n); A: matrix(n, p); logdet(A' * diag(x) * A)", wrt="x", gradient=True)), "gradient")


def test_rayleigh_hessian_needs_no_n_by_n_squared_temporary():
    # the symbolic Hessian has kron(x', I(n)) * (vec(I(n)) * ...): an n x n^2 operator
    n = 12
    rng = np.random.default_rng(2)
    mod = module("x: vector(n); A: matrix(n, n); x' * A * x / (x' * x)", "x", hessian=True)
    for shapes in products(mod["hessian"], x=rng.standard_normal(n), A=rng.standard_normal((n, n))):
        assert max(np.prod(s) for s in shapes) <= n * n


def test_logdet_of_diagonal_congruence_hessian_is_a_hadamard_square():
    # -kron(1', I) diag(vec(I)) kron(M, M) diag(vec(I)) kron(1, I) = -(M .* M)
    source = to_numpy_module(derive("x: vector(n); A: matrix(n, p); logdet(A' * diag(x) * A)", wrt="x",
                                    hessian=True))
    body = _function_source(source, "hessian")
    assert "kron" not in body.split('"""')[-1] and "np.diagflat" not in body


def test_matrix_hessian_permutes_instead_of_multiplying_by_commutation():
    source = to_numpy_module(derive("X: matrix(n, n); logdet(X)", wrt="X", hessian=True))
    body = _function_source(source, "hessian").split('"""')[-1]
    assert "_commutation(" not in body and "_commute_cols(" in body


def test_single_use_inverse_times_a_matrix_is_a_solve():
    source = to_numpy_module(derive("mu: vector(n); S: matrix(n, n); x: vector(n); (x - mu)' * inv(S) * (x - mu)",
                                    wrt="mu", gradient=True))
    assert "np.linalg.solve" in _function_source(source, "f")


# --- several results at once, and H v without H -------------------------------------------------------

HESSIAN_PROGRAMS = [(p, w, f) for p, w, f in PROGRAMS if f.get("hessian")]


def _direction(d, sizes, seed=3):
    return N.random_direction(E.Var("v", d.x.shape, d.x.symmetric), np.random.default_rng(seed), sizes)


@pytest.mark.parametrize("program,wrt,flags", HESSIAN_PROGRAMS, ids=[f"{p} [{w}]" for p, w, _ in HESSIAN_PROGRAMS])
def test_hvp_equals_the_hessian_times_the_direction(program, wrt, flags):
    d = derive(program, wrt=wrt, **flags)
    mod = load(d)
    sizes, values = point(d)
    args = arguments(d, values)
    args.update(free_dims(d, sizes))
    args.pop(d.dx.name)
    args.pop(d.dx2.name)
    v = _direction(d, sizes)
    H = as_2d(mod["hessian"](**args), (v.size, v.size))
    got = np.asarray(mod["hvp"](**args, v=v.reshape(-1) if d.x.cols == 1 else v), dtype=float)
    np.testing.assert_allclose(got.reshape(-1, order="F"), H @ v.reshape(-1, order="F"), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("program", ["X: matrix(n, n); det(X)", "X: matrix(n, n); tr(adj(X))"])
def test_hvp_at_a_singular_matrix_is_the_derivative_of_the_gradient(program):
    """hvp differentiates the everywhere-valid gradient (through adj), so it holds at rank n-1 too."""
    mod = module(program, "X", gradient=True, hessian=True)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((3, 3))
    X[:, 2] = X[:, 0] + X[:, 1]
    V = rng.standard_normal((3, 3))
    h = 1e-6
    expected = (mod["gradient"](X=X + h * V) - mod["gradient"](X=X - h * V)) / (2 * h)
    np.testing.assert_allclose(mod["hvp"](X=X, v=V), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("program,wrt,flags", HESSIAN_PROGRAMS[:8], ids=[p for p, _, _ in HESSIAN_PROGRAMS[:8]])
def test_derivatives_returns_what_each_function_returns(program, wrt, flags):
    d = derive(program, wrt=wrt, **flags)
    mod = load(d)
    sizes, values = point(d)
    args = arguments(d, values)
    args.update(free_dims(d, sizes))
    args.pop(d.dx.name)
    args.pop(d.dx2.name)
    together = mod["derivatives"](**args)
    assert set(together) == {"f"} | {k for k in ("gradient", "jacobian", "hessian") if k in d.results}
    for name, value in together.items():
        np.testing.assert_allclose(value, mod[name](**args), rtol=1e-12, atol=1e-14)


def test_derivatives_computes_a_shared_subexpression_once():
    source = to_numpy_module(derive("X: matrix(n, n); logdet(X)", wrt="X", gradient=True, hessian=True))
    assert _function_source(source, "derivatives").count("np.linalg.inv(") == 1


def test_hvp_direction_name_avoids_the_programs_names():
    d = derive("v: vector(n); A: matrix(n, n); v' * A * v", wrt="v", hessian=True)
    mod = load(d)
    rng = np.random.default_rng(4)
    v, A, u = rng.standard_normal(5), rng.standard_normal((5, 5)), rng.standard_normal(5)
    np.testing.assert_allclose(mod["hvp"](v=v, A=A, v1=u), (A + A.T) @ u)


@given(programs(max_depth=4, budget=10))
@profile_settings(15)
def test_hvp_and_derivatives_on_random_programs(prog):
    if not prog.is_scalar:
        return
    d = derive(prog.source, wrt=prog.wrt, gradient=True, hessian=True)
    mod = load(d)
    sizes = N.dimension_sizes(d)
    values = N.random_point(d, np.random.default_rng(0), sizes)
    args = arguments(d, values)
    args.update(free_dims(d, sizes))
    v = _direction(d, sizes)
    H = N.evaluate(d.results["hessian"].expr, values, sizes)
    name = next(k for k in ("v", "v1", "v2", "v3") if k not in d.typed.symbols)
    got = np.asarray(mod["hvp"](**args, **{name: v.reshape(-1) if d.x.cols == 1 else v}), dtype=float)
    np.testing.assert_allclose(got.reshape(-1, order="F"), H @ v.reshape(-1, order="F"), rtol=1e-8, atol=1e-9,
                               equal_nan=True, err_msg=str(prog))
    together = mod["derivatives"](**args)
    np.testing.assert_allclose(np.asarray(together["gradient"], dtype=float).reshape(-1, order="F"),
                               N.evaluate(d.results["gradient"].expr, values, sizes).reshape(-1, order="F"),
                               rtol=1e-9, atol=1e-10, equal_nan=True, err_msg=str(prog))


SEVERAL = [
    ("x: vector(n); W: matrix(m, n); S: symmetric(m); lambda: scalar; "
     "(W * x)' * S * (W * x) + lambda * sum(exp(W * x))", "x,W,S,lambda"),
    ("W1: matrix(h, n); b1: vector(h); w2: vector(h); x: vector(n); y: scalar; "
     "(w2' * tanh(W1 * x + b1) - y)^2", "W1,b1,w2"),
    ("mu: vector(n); S: symmetric(n); x: vector(n); -logdet(S) / 2 - (x - mu)' * inv(S) * (x - mu) / 2", "mu,S"),
    ("x: vector(5); A: matrix(5, 2); logdet(A' * diag(x) * A)", "x,A"),
]


@pytest.mark.parametrize("program,wrt", SEVERAL)
def test_hvp_of_several_variables_is_the_hessian_blocks_times_the_directions(program, wrt):
    """hvp(v={x_i: v_i})[x_i] = sum_j H[x_i, x_j] vec(v_j), against the symbolic blocks evaluated
    (H[b, a] = H[a, b]'), and no block is formed in its code."""
    d = derive(program, wrt=wrt, hessian=True)
    mod = load(d)
    sizes = N.dimension_sizes(d)
    values = N.random_point(d, np.random.default_rng(6), sizes)
    args = {name: caller_form(values[name], sym.shape) for name, sym in d.typed.symbols.items()}
    args.update(free_dims(d, sizes))
    rng = np.random.default_rng(7)
    directions = {v.name: rng.standard_normal(N.evaluate(v.x, values, sizes).shape) for v in d.variables}
    blocks = {}
    for (a, b), r in d.hessians.items():
        blocks[a, b] = N.evaluate(r.expr, values, sizes)
        blocks[b, a] = blocks[a, b].T
    got = mod["hvp"](**args, v={name: (v.reshape(-1) if v.shape[1] == 1 else v) for name, v in directions.items()})
    assert list(got) == list(d.wrts)
    for a in d.wrts:
        want = sum(blocks[a, b] @ directions[b].reshape(-1, order="F") for b in d.wrts)
        np.testing.assert_allclose(np.reshape(got[a], -1, order="F"), want, rtol=1e-8, atol=1e-9, err_msg=a)
    body = _function_source(to_numpy_module(d), "_hvp")
    for dense in ("np.eye", "np.kron", "_kron(", "np.diagflat", "_commutation"):
        assert dense not in body, f"{dense} in the hvp of {program}:\n{body}"


def test_hvp_of_several_variables_wants_one_direction_per_variable():
    mod = load(derive("x: vector(n); W: matrix(n, n); x' * W * x", wrt="x,W", hessian=True))
    x, W = np.ones(3), np.eye(3)
    with pytest.raises(TypeError, match="one direction per variable"):
        mod["hvp"](x=x, W=W, v={"x": x})
    got = mod["hvp"](x=x, W=W, v={"x": x, "W": W})
    np.testing.assert_allclose(got["x"], 2 * W @ x + 2 * W @ x)   # (W + W') v_x + (v_W + v_W') x
    np.testing.assert_allclose(got["W"], 2 * np.outer(x, x))      # v_x x' + x v_x'


# --- code size follows the program ------------------------------------------------------------------------

def _product_chain(k: int) -> str:
    decls = "; ".join(f"A{i}: matrix(n, n)" for i in range(1, k + 1))
    return f"x: vector(n); {decls}; x' * " + " * ".join(f"A{i}" for i in range(1, k + 1)) + " * x"


def test_generated_code_of_a_k64_chain_grows_linearly_and_is_matrix_vector_products():
    sizes = {}
    for k in (16, 32, 64):
        source = to_numpy_module(derive(_product_chain(k), wrt="x", gradient=True, hessian=True))
        sizes[k] = len(_function_source(source, "gradient").split('"""')[-1])
    assert sizes[64] / sizes[32] < 2.3 and sizes[32] / sizes[16] < 2.3, sizes
    mod = load(derive(_product_chain(8), wrt="x", gradient=True))
    rng = np.random.default_rng(5)
    args = {f"A{i}": rng.standard_normal((6, 6)) for i in range(1, 9)}
    for shapes in products(mod["gradient"], x=rng.standard_normal(6), **args):
        assert 1 in shapes[0] or 1 in shapes[1]
