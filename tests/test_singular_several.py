"""det and adj against several variables at singular matrices.

det and adj are polynomials in the entries, so every derivative of a program built from them and
products exists everywhere.  With several variables (``--wrt X,Y``, ``--wrt all``) every block is
derived a second time through Jacobi's formula and the adjugate's own derivatives, and that form is
what ``Result.expr``, ``--check`` and the generated code evaluate.  Here every block (the
differential, its parts, gradients, Jacobians, the second differential, every Hessian block
H[a, b]) is evaluated at matrices of rank n - 1 and n - 2 (n = 3 and 4) and compared with central
finite differences of f itself, with det and adj evaluated explicitly (numeric.adjugate, from the
SVD: defined at singular matrices).  The same points go through --check's comparisons and through
the generated NumPy module.
"""

from __future__ import annotations

import numpy as np
import pytest

from matcalc_cli import check as C
from matcalc_cli import derive
from matcalc_cli import numeric as N
from matcalc_cli.render.numpy_code import to_numpy_module


def rank_deficient(rng, rows, cols, rank, symmetric=False):
    a = rng.standard_normal((rows, rank))
    if symmetric:
        return a @ np.diag(rng.choice((-1.0, 1.0), rank)) @ a.T
    return a @ rng.standard_normal((rank, cols))


# (program, --wrt, dimension sizes, the rank of each named matrix at the point; others are random)
CASES = [
    ("X: matrix(n, n); Y: matrix(n, n); det(X * Y)", "X,Y", {"n": 4}, {"X": 3, "Y": 3}),
    ("X: matrix(n, n); Y: matrix(n, n); det(X * Y)", "X,Y", {"n": 4}, {"X": 3}),
    ("X: matrix(n, n); Y: matrix(n, n); det(X * Y)", "X,Y", {"n": 3}, {"X": 2, "Y": 2}),
    ("X: matrix(n, n); Y: matrix(n, n); det(X) * tr(Y)", "all", {"n": 4}, {"X": 2, "Y": 1}),
    ("X: matrix(n, n); Y: matrix(n, n); det(X) * tr(Y)", "all", {"n": 3}, {"X": 2}),
    ("X: matrix(n, n); y: vector(n); adj(X) * y", "X,y", {"n": 4}, {"X": 2}),
    ("X: matrix(n, n); y: vector(n); adj(X) * y", "X,y", {"n": 3}, {"X": 2}),
    ("X: matrix(n, n); y: vector(n); z: vector(n); y' * adj(X) * z + det(X)", "all", {"n": 4}, {"X": 3}),
    ("X: matrix(n, n); y: vector(n); z: vector(n); y' * adj(X) * z + det(X)", "all", {"n": 3}, {"X": 1}),
    ("X: matrix(n, m); Y: matrix(n, m); det(X * Y')", "X,Y", {"n": 3, "m": 4}, {"X": 2, "Y": 2}),
    ("X: matrix(n, m); Y: matrix(n, m); A: matrix(n, n); det(X * Y') * tr(A * adj(X * Y'))", "X,Y",
     {"n": 4, "m": 5}, {"X": 3}),
    ("X: matrix(n, n); A: matrix(n, n); Y: matrix(n, n); tr(adj(X * A * Y))", "X,Y", {"n": 4}, {"X": 2, "Y": 3}),
    ("S: symmetric(n); x: vector(n); x' * adj(S) * x + det(S) * x' * x", "S,x", {"n": 4}, {"S": 2}),
    ("S: symmetric(n); x: vector(n); x' * adj(S) * x + det(S) * x' * x", "S,x", {"n": 3}, {"S": 2}),
    ("X: matrix(n, n); t: scalar; det(t * X + X')", "X,t", {"n": 3}, {"X": 2}),
    ("X: matrix(n, n); Y: matrix(n, n); adj(X) * Y + det(Y) * X", "X,Y", {"n": 3}, {"X": 2, "Y": 2}),
]


def point(d, sizes, ranks, seed):
    """Values for every symbol: the named matrices at the given rank (symmetric where declared)."""
    rng = np.random.default_rng(seed)
    values = {}
    for name, sym in d.typed.symbols.items():
        r, c = N.shape_of(sym.shape, sizes)
        if name in ranks:
            values[name] = rank_deficient(rng, r, c, ranks[name], sym.symmetric)
        else:
            a = rng.standard_normal((r, c))
            values[name] = (a + a.T) / 2 if sym.symmetric else a
    t = values.get("t")
    if t is not None:
        values["t"] = np.zeros((1, 1))   # t * X + X' at t = 0: X' singular
    return values


def f_at(d, values, sizes):
    return N.evaluate(d.expression, values, sizes)


def moved(values, directions, s):
    out = dict(values)
    for name, e in directions.items():
        out[name] = values[name] + s * e
    return out


def first_difference(d, values, directions, sizes, h=1e-3):
    """d/ds f(values + s directions) at 0: central differences, one Richardson step (exact for
    polynomials of degree up to 4, tiny error beyond)."""
    c = lambda k: (f_at(d, moved(values, directions, k), sizes) - f_at(d, moved(values, directions, -k), sizes)) / (2 * k)
    return (4 * c(h / 2) - c(h)) / 3


def second_difference(d, values, first, second, sizes, h=1e-3):
    """d^2/ds dt f(values + s first + t second) at 0, central, one Richardson step."""
    def c(k):
        total = 0.0
        for a, b, sign in ((1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1)):
            shift = {n: a * k * e for n, e in first.items()}
            for n, e in second.items():
                shift[n] = shift.get(n, 0) + b * k * e
            total = total + sign * f_at(d, moved(values, shift, 1.0), sizes)
        return total / (4 * k * k)
    return (4 * c(h / 2) - c(h)) / 3


def direction(var, rng, sizes):
    return N.random_direction(var, rng, sizes)


def unit(var, sizes):
    return list(N.unit_directions(var, sizes))


def vec(a):
    return np.asarray(a).reshape(-1, 1, order="F")


def close(got, expected, what, tol=1e-6):
    got, expected = np.asarray(got, dtype=float), np.asarray(expected, dtype=float)
    if got.size == 1 and expected.size == 1:
        got, expected = got.reshape(1, 1), expected.reshape(1, 1)
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, expected {expected.shape}"
    assert np.all(np.isfinite(got)), f"{what}: not finite at a singular point:\n{got}"
    scale = max(1.0, float(np.max(np.abs(expected))))
    err = float(np.max(np.abs(got - expected))) / scale if got.size else 0.0
    assert err < tol, f"{what}: relative error {err:.2e}\n{got}\nexpected\n{expected}"


def derivation_for(program, wrt):
    probe = derive(program, wrt=wrt)
    if probe.expression.is_scalar:
        return derive(program, wrt=wrt, gradient=True, hessian=True)
    return derive(program, wrt=wrt, jacobian=True)


@pytest.mark.parametrize("program, wrt, sizes, ranks", CASES,
                         ids=[f"{c[0].split(';')[-1].strip()}@{c[2]}{c[3]}" for c in CASES])
def test_every_block_matches_finite_differences_at_singular_points(program, wrt, sizes, ranks):
    d = derivation_for(program, wrt)
    assert d.several
    values = point(d, sizes, ranks, seed=len(program) + sum(sizes.values()))
    rng = np.random.default_rng(7)
    variables = {v.name: v for v in d.variables}
    checked = set()
    largest = 0.0   # some block must be far from zero here, or the comparison proves little

    def evaluate(e, extra=None):
        return N.evaluate(e, {**values, **(extra or {})}, sizes)

    # the differential in all directions, and its part in each direction
    dirs = {name: direction(v.x, rng, sizes) for name, v in variables.items()}
    env = {v.dx.name: dirs[name] for name, v in variables.items()}
    close(evaluate(d.results["differential"].expr, env), first_difference(d, values, dirs, sizes), "differential")
    checked.add("differential")
    for name, part in d.parts.items():
        close(evaluate(part.expr, env), first_difference(d, values, {name: dirs[name]}, sizes), f"part {name}")

    for key, r in d.results.items():
        if r.name == "gradient":
            v = variables[r.wrt[0]]
            # <G, E> for the unit directions E (symmetric ones for a symmetric variable)
            G = evaluate(r.expr)
            for E_ in unit(v.x, sizes):
                close(np.sum(G * E_), first_difference(d, values, {v.name: E_}, sizes), f"{key} along a unit direction")
            if v.x.symmetric:
                close(G, G.T, f"{key} symmetric")
        elif r.name == "jacobian":
            v = variables[r.wrt[0]]
            J = evaluate(r.expr)
            # J times vec(E) is the derivative along E, for the unit directions (symmetric ones
            # for a symmetric variable, on which J = J P acts)
            units = unit(v.x, sizes)
            J = J @ np.hstack([vec(E_) for E_ in units])
            expected = np.hstack([vec(first_difference(d, values, {v.name: E_}, sizes)) for E_ in units])
            close(J, expected, key)
        elif r.name == "hessian_bilinear":
            first = {name: direction(v.dx, rng, sizes) for name, v in variables.items()}
            second = {name: direction(v.dx2, rng, sizes) for name, v in variables.items()}
            env2 = {variables[n].dx.name: e for n, e in first.items()}
            env2.update({variables[n].dx2.name: e for n, e in second.items()})
            close(evaluate(r.expr, env2), second_difference(d, values, first, second, sizes), key, tol=1e-5)
        elif r.name == "hessian":
            a, b = (variables[n] for n in r.wrt)
            H = evaluate(r.expr)
            assert H.shape == (vec(values[a.name]).size, vec(values[b.name]).size)
            for _ in range(3):
                e1, e2 = direction(a.x, rng, sizes), direction(b.x, rng, sizes)
                close(vec(e1).T @ H @ vec(e2), second_difference(d, values, {a.name: e1}, {b.name: e2}, sizes),
                      f"{key} along random directions", tol=1e-5)
            if a is b:
                if a.x.symmetric:   # H = J P: symmetric on symmetric directions
                    P = np.hstack([vec(E_) for E_ in unit(a.x, sizes)])
                    close(P.T @ H @ P, (P.T @ H @ P).T, f"{key} symmetric")
                else:
                    close(H, H.T, f"{key} symmetric")
        else:
            continue
        checked.add(r.name)
        largest = max(largest, float(np.max(np.abs(evaluate(r.expr))) if r.name != "hessian_bilinear" else 0.0))
    expected_kinds = {"differential"} | ({"gradient", "hessian", "hessian_bilinear"} if d.expression.is_scalar
                                         else {"jacobian"})
    assert checked == expected_kinds
    assert largest > 1e-2, "every derivative vanishes at this point: choose ranks that test something"


def _check_at(d, values, sizes, monkeypatch):
    """check_derivation (what --check runs) with its random points replaced by ``values``."""
    monkeypatch.setattr(N, "random_point", lambda derivation, rng, s, attempts=3: dict(values))
    return C.check_derivation(d, points=1, sizes=sizes)


@pytest.mark.parametrize("program, wrt, sizes, ranks", CASES[::2],
                         ids=[f"{c[0].split(';')[-1].strip()}@{c[2]}{c[3]}" for c in CASES[::2]])
def test_check_passes_at_singular_points(program, wrt, sizes, ranks, monkeypatch):
    d = derivation_for(program, wrt)
    values = point(d, sizes, ranks, seed=3 + len(program))
    report = _check_at(d, values, sizes, monkeypatch)
    assert report.passed, "\n".join(report.lines())
    assert {r.name for r in report.results} == set(d.results)


def generated(d):
    namespace: dict = {}
    exec(to_numpy_module(d), namespace)   # noqa: S102 - matcalc's own output
    return namespace


def arguments(d, values):
    """The generated functions' keyword arguments: vectors as 1-D arrays, scalars as floats."""
    out = {}
    for name, sym in d.typed.symbols.items():
        a = values[name]
        if sym.shape[0] == 1 and sym.shape[1] == 1:
            out[name] = float(a[0, 0])
        elif sym.shape[1] == 1:
            out[name] = a[:, 0]
        else:
            out[name] = a
    return out


@pytest.mark.parametrize("program, wrt, sizes, ranks", CASES[1::2],
                         ids=[f"{c[0].split(';')[-1].strip()}@{c[2]}{c[3]}" for c in CASES[1::2]])
def test_generated_code_at_singular_points(program, wrt, sizes, ranks):
    d = derivation_for(program, wrt)
    values = point(d, sizes, ranks, seed=11 + len(program))
    code = generated(d)
    args = arguments(d, values)
    with np.errstate(all="raise", under="ignore"):
        outputs = {}
        for key, r in d.results.items():
            if r.name in ("gradient", "jacobian", "hessian"):
                name = "_".join((r.name,) + tuple(r.wrt))
                outputs[key] = np.asarray(code[name](**args), dtype=float)
        together = code["gradients"](**args) if d.expression.is_scalar else {}
    for key, got in outputs.items():
        r = d.results[key]
        expected = N.evaluate(r.expr, values, sizes)
        close(got.reshape(expected.shape, order="F") if got.ndim < 2 else got, expected, f"generated {key}")
        if r.name == "gradient":
            close(np.asarray(together[r.wrt[0]]).reshape(expected.shape, order="F"), expected,
                  f"gradients()[{r.wrt[0]}]")
    # and the gradients are the finite differences of the generated f (its det and adj explicit)
    f = code["f"]
    for key, r in d.results.items():
        if r.name != "gradient":
            continue
        name = r.wrt[0]
        G = np.asarray(outputs[key], dtype=float).reshape(N.shape_of(d.typed.symbols[name].shape, sizes), order="F")
        for E_ in N.unit_directions(next(v.x for v in d.variables if v.name == name), sizes):
            h = 1e-4
            plus = arguments(d, moved(values, {name: E_}, h))
            minus = arguments(d, moved(values, {name: E_}, -h))
            close(np.sum(G * E_), (f(**plus) - f(**minus)) / (2 * h), f"generated {key} vs f", tol=1e-5)


def test_the_printed_form_is_the_reference_texts_labelled():
    d = derive("X: matrix(n, n); Y: matrix(n, n); det(X * Y)", wrt="X,Y", gradient=True, hessian=True)
    assert d.gradients["X"].text() == "det(X * Y) * inv(X')"
    assert "valid for invertible X * Y" in d.gradients["X"].note
    assert "generated code and --check use a form valid at every point" in d.hessians["X", "Y"].note
    # what is evaluated has no inverse at all
    from matcalc_cli import expr as E
    for r in list(d.results.values()) + list(d.parts.values()):
        assert not E.contains(r.expr, lambda n: isinstance(n, E.Inverse)), r.key


def test_blocks_without_det_or_adj_are_not_labelled():
    d = derive("X: matrix(n, n); y: vector(n); det(X) + y' * y", wrt="X,y", gradient=True, hessian=True)
    assert d.gradients["y"].note == "" and d.gradients["y"].text() == "2 * y"
    assert d.hessians["y", "y"].shown is None


def test_one_variable_and_several_evaluate_the_same_everywhere_form():
    one = derive("X: matrix(n, n); Y: matrix(n, n); det(X * Y)", wrt="X", gradient=True, hessian=True)
    both = derive("X: matrix(n, n); Y: matrix(n, n); det(X * Y)", wrt="X,Y", gradient=True, hessian=True)
    rng = np.random.default_rng(1)
    values = {"X": rank_deficient(rng, 4, 4, 3), "Y": rank_deficient(rng, 4, 4, 3)}
    for kind, key in (("gradient", "gradient[X]"), ("hessian", "hessian[X, X]")):
        close(N.evaluate(both.results[key].expr, values, {"n": 4}),
              N.evaluate(one.results[kind].expr, values, {"n": 4}), key, tol=1e-10)
