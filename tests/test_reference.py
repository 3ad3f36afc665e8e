"""Every worked example of the reference text (chapter 60, "Matrix calculus", after Bright,
Edelman and Johnson), reproduced through ``derive``: the formula the text derives by hand, the
form matcalc prints, and the component-wise SymPy comparisons the text makes with explicit 3x3
symbolic matrices.  Each example is also run through the ``--verify`` oracle.

The text's ``dA'`` in the second derivative of det is a second direction, matcalc's ``dA2``.
"""

from __future__ import annotations

import pytest
import sympy as sp

from matcalc_cli import derive
from matcalc_cli import expr as E
from matcalc_cli.verify import Instance, commutation_matrix, to_sympy, vec, verify_derivation
from sympy.matrices.expressions.kronecker import matrix_kronecker_product as kron

XAX = "x: vector(n); A: matrix(n, n); x' * A * x"


def all_equal(M, N) -> bool:
    """The text's ``all(a == b for (a, b) in zip(M, N))``, with the algebra done."""
    M, N = sp.Matrix(M), sp.Matrix(N)
    return M.shape == N.shape and all(sp.cancel(a - b) == 0 for a, b in zip(M, N))


class Explicit:
    """A derivation with its variables as explicit 3x3 (or n x n) SymPy matrices."""

    def __init__(self, d, n: int = 3):
        self.d, self.inst = d, Instance(n)
        self.n = n

    def __getitem__(self, name):
        if name == self.d.dx.name:
            return self.inst.matrix(self.d.dx)
        if name == self.d.dx2.name:
            return self.inst.matrix(self.d.dx2)
        return self.inst.matrix(self.d.typed.variables[name])

    def of(self, e) -> sp.Matrix:
        return to_sympy(e, self.inst)

    def result(self, name) -> sp.Matrix:
        return self.of(self.d.results[name].expr)


def texts(d) -> dict:
    return {name: r.text() for name, r in d.results.items()}


# ---------------------------------------------------------------------------------------------
# 60.2 Example: derivative of a matrix expression, f(x) = x'Ax
# ---------------------------------------------------------------------------------------------

def test_xAx_differential_gradient_and_hessian():
    # df = x'(A' + A) dx,  grad f = (A + A') x,  H = f'' = A + A'
    d = derive(XAX, wrt="x", gradient=True, jacobian=True, hessian=True)
    assert texts(d) == {
        "differential": "x' * (A + A') * dx",
        "gradient": "(A + A') * x",
        "jacobian": "x' * (A + A')",            # f'(x) = x'(A' + A), a row vector
        "hessian_bilinear": "dx' * (A + A') * dx2",
        "hessian": "A + A'",
    }


def test_xAx_gradient_componentwise():
    # @syms x[1:3]::real A[1:3, 1:3]::real; u = x' * A * x; grad_u = [diff(u, xi) for xi in x]
    d = derive(XAX, wrt="x", gradient=True)
    ex = Explicit(d)
    x, A = ex["x"], ex["A"]
    u = (x.T * A * x)[0, 0]
    grad_u = sp.Matrix([sp.diff(u, xi) for xi in x])
    grad_u_1 = (A + A.T) * x
    assert all_equal(grad_u, grad_u_1)              # "The two are, of course, equal"
    assert all_equal(ex.result("gradient"), grad_u)
    # the text's first entry: 2 A11 x1 + A12 x2 + A13 x3 + A21 x2 + A31 x3
    A11, A12, A13, A21, A31 = A[0, 0], A[0, 1], A[0, 2], A[1, 0], A[2, 0]
    x1, x2, x3 = x
    assert sp.expand(grad_u[0] - (2 * A11 * x1 + A12 * x2 + A13 * x3 + A21 * x2 + A31 * x3)) == 0


def test_xAx_with_symmetric_A_is_2_x_A():
    # "When A' = A (A is symmetric) this simplifies to a more familiar looking 2x'A"
    d = derive("x: vector(n); A: symmetric(n); x' * A * x", wrt="x", gradient=True, jacobian=True, hessian=True)
    assert texts(d) == {
        "differential": "2 * x' * A * dx",
        "gradient": "2 * A * x",
        "jacobian": "2 * x' * A",
        "hessian_bilinear": "2 * dx' * A * dx2",
        "hessian": "2 * A",
    }


def test_hessian_of_xAx_is_symmetric():
    # "Example: Hessian is symmetric": H = A + A' = H'
    d = derive(XAX, wrt="x", hessian=True)
    H = Explicit(d).result("hessian")
    assert H == H.T and H != sp.zeros(3, 3)


# ---------------------------------------------------------------------------------------------
# 60.2 Example: derivative of matrix application, f(x) = Ax; 60.3 sum and product rules
# ---------------------------------------------------------------------------------------------

def test_Ax_jacobian_is_A():
    # df = A(x + dx) - Ax = A dx = f'(x)[dx], so f'(x) = A
    d = derive("x: vector(n); A: matrix(m, n); A * x", wrt="x", jacobian=True)
    assert texts(d) == {"differential": "A * dx", "jacobian": "A"}
    assert d.jacobian.expr == d.typed.variables["A"]


def test_product_rule_dA_is_zero_for_a_constant_A():
    # df = (dA)x + A(dx) = 0x + A dx: A is constant when differentiating against x,
    # and against A the other term remains: d(Ax) = dA x
    d = derive("x: vector(n); A: matrix(m, n); A * x", wrt="A", jacobian=True)
    assert d.differential.text() == "dA * x"
    ex = Explicit(d)
    assert all_equal(ex.result("jacobian"), vec(ex["A"] * ex["x"]).jacobian(vec(ex["A"])))


def test_hadamard_product_is_diag_times_vector():
    # v .* w = diag(v) w
    d = derive("v: vector(n); w: vector(n); v .* w", wrt="w", jacobian=True)
    ex = Explicit(d)
    v, w = ex["v"], ex["w"]
    assert ex.of(d.expression) == sp.diag(*v) * w
    assert d.jacobian.text() == "diag(v)"


def test_A_times_x_hadamard_x():
    # df = A(dx .* x + x .* dx) = 2A(x .* dx), f'(x) = 2A diag(x)
    d = derive("x: vector(n); A: matrix(m, n); A * (x .* x)", wrt="x", jacobian=True)
    assert texts(d) == {"differential": "2 * A * (x .* dx)", "jacobian": "2 * A * diag(x)"}
    ex = Explicit(d)
    x, A = ex["x"], ex["A"]
    f = A * x.multiply_elementwise(x)
    assert all_equal(f.jacobian(x), 2 * A * sp.diag(*x))
    assert all_equal(ex.result("jacobian"), f.jacobian(x))


def test_chain_rule_jacobian_is_a_product():
    # f(x) = g(h(x)): f'(x) = g'(h(x)) h'(x), here g = exp elementwise and h(x) = Ax
    d = derive("x: vector(n); A: matrix(n, n); exp(A * x)", wrt="x", jacobian=True)
    assert d.jacobian.text() == "diag(exp(A * x)) * A"
    ex = Explicit(d)
    x, A = ex["x"], ex["A"]
    h = A * x
    g_prime = sp.diag(*[sp.exp(v) for v in h])
    assert all_equal(ex.result("jacobian"), g_prime * h.jacobian(x))
    assert all_equal(ex.result("jacobian"), h.applyfunc(sp.exp).jacobian(x))


# ---------------------------------------------------------------------------------------------
# 60.4 Derivatives of matrix functions: A^2, vec and kron
# ---------------------------------------------------------------------------------------------

def test_A_squared_differential():
    # df = dA A + A dA, not 2 A dA: A need not commute with dA
    d = derive("A: matrix(n, n); A^2", wrt="A", jacobian=True)
    assert d.differential.text() == "A * dA + dA * A"


def test_vec_stacks_columns():
    # @syms A[1:2, 1:2]; vec(A) = [A11, A21, A12, A22]
    A_var = E.Var("A", (2, 2))
    inst = Instance(2)
    A = inst.matrix(A_var)
    assert list(to_sympy(E.vec(A_var), inst)) == [A[0, 0], A[1, 0], A[0, 1], A[1, 1]]
    assert list(vec(A)) == [A[i % 2, i // 2] for i in range(4)]  # Julia's linear indexing


def test_A_squared_jacobian_componentwise_and_from_basis_elements():
    # J = vec(A^2).jacobian(vec(A)), and JJ built column by column from basis(i, j) A + A basis(i, j)
    d = derive("A: matrix(n, n); A^2", wrt="A", jacobian=True)
    ex = Explicit(d)
    A = ex["A"]
    J = vec(A ** 2).jacobian(vec(A))

    def basis(i, j):
        b = sp.zeros(3, 3)
        b[i, j] = 1
        return b

    JJ = sp.Matrix.hstack(*[vec(basis(i, j) * A + A * basis(i, j)) for j in range(3) for i in range(3)])
    assert J == JJ                                            # "The matrix JJ is identical to J"
    assert J[0, :] == sp.Matrix([[2 * A[0, 0], A[0, 1], A[0, 2], A[1, 0], 0, 0, A[2, 0], 0, 0]])
    assert all_equal(ex.result("jacobian"), J)


def test_A_squared_jacobian_is_the_sum_of_two_krons():
    # vec(A dA + dA A) = (kron(I, A) + kron(A', I)) vec(dA)
    d = derive("A: matrix(n, n); A^2", wrt="A", jacobian=True)
    A_var = d.typed.variables["A"]
    I_n = E.Identity(A_var.rows)
    J = d.jacobian.expr
    assert isinstance(J, E.Add)
    assert set(J.args) == {E.kron(I_n, A_var), E.kron(E.transpose(A_var), I_n)}
    assert d.jacobian.text() == "kron(A', I(n)) + kron(I(n), A)"
    # the text's SymPy check: J == kron(I(3), A) + kron(A', I(3)), entry by entry
    ex = Explicit(d)
    A = ex["A"]
    JJ = kron(sp.eye(3), A) + kron(A.T, sp.eye(3))
    assert all_equal(vec(A ** 2).jacobian(vec(A)), JJ)
    assert all_equal(ex.result("jacobian"), JJ)


def test_kron_replaces_each_entry_by_a_block():
    # @syms A[1:2, 1:3] B[1:3, 1:4]; kron(A, B) = hcat((vcat((A[i,j]*B for i in 1:2)...) for j in 1:3)...)
    A_var, B_var = E.Var("A", (2, 3)), E.Var("B", (3, 4))
    inst = Instance(3)
    A, B = inst.matrix(A_var), inst.matrix(B_var)
    K = to_sympy(E.kron(A_var, B_var), inst)
    blocks = sp.Matrix.hstack(*[sp.Matrix.vstack(*[A[i, j] * B for i in range(2)]) for j in range(3)])
    assert K.shape == (6, 12) and K == blocks


def test_kron_algebra():
    inst = Instance(2)
    A_var, B_var, C_var, D_var = (E.Var(name, ("n", "n")) for name in "ABCD")
    A, B, C, D = (inst.matrix(v) for v in (A_var, B_var, C_var, D_var))
    # transposes: (A (x) B)' = A' (x) B', which is how matcalc writes it
    t = E.transpose(E.kron(A_var, B_var))
    assert t == E.kron(E.transpose(A_var), E.transpose(B_var))
    assert to_sympy(t, inst) == kron(A, B).T
    # trace: tr(A (x) B) = tr(A) tr(B)
    assert sp.expand(kron(A, B).trace() - A.trace() * B.trace()) == 0
    # determinants: det(A (x) B) = det(A)^m det(B)^n, A n x n, B m x m (here both 2 x 2)
    assert sp.expand(kron(A, B).det() - A.det() ** 2 * B.det() ** 2) == 0
    # multiplication: (A (x) B)(C (x) D) = (AC) (x) (BD)
    assert all_equal(to_sympy(E.matmul(E.kron(A_var, B_var), E.kron(C_var, D_var)), inst), kron(A * C, B * D))
    # inverses: inv(A (x) B) = inv(A) (x) inv(B)
    assert all_equal(kron(A, B).inv(method="ADJ"), kron(A.inv(method="ADJ"), B.inv(method="ADJ")))


def test_kron_vec_identity():
    # (A (x) B) vec(C) = vec(B C A'), checked with m = n = 2 and r = s = 3 as in the text
    A_var, B_var, C_var = E.Var("A", (2, 2)), E.Var("B", (3, 3)), E.Var("C", (3, 2))
    inst = Instance(3)
    A, B, C = (inst.matrix(v) for v in (A_var, B_var, C_var))
    L = to_sympy(E.matmul(E.kron(A_var, B_var), E.vec(C_var)), inst)
    R = to_sympy(E.vec(E.matmul(B_var, C_var, E.transpose(A_var))), inst)
    assert all_equal(L, R)
    assert all_equal(L, vec(B * C * A.T))
    # and matcalc reads the identity back off as a Jacobian against C
    d = derive("A: matrix(m, m); B: matrix(r, r); C: matrix(r, m); vec(B * C * A')", wrt="C", jacobian=True)
    assert d.jacobian.text() == "kron(A, B)"


def test_A_cubed_jacobian_is_the_sum_of_three_krons():
    # df = A^2 dA + A dA A + dA A^2,  J = kron(I, A^2) + kron(A', A) + kron((A')^2, I)
    d = derive("A: matrix(n, n); A^3", wrt="A", jacobian=True)
    assert d.differential.text() == "A * dA * A + A^2 * dA + dA * A^2"
    A_var = d.typed.variables["A"]
    I_n = E.Identity(A_var.rows)
    J = d.jacobian.expr
    assert set(J.args) == {E.kron(I_n, E.matpow(A_var, 2)), E.kron(E.transpose(A_var), A_var),
                           E.kron(E.matpow(E.transpose(A_var), 2), I_n)}
    assert d.jacobian.text() == "kron(A', A) + kron(A'^2, I(n)) + kron(I(n), A^2)"
    ex = Explicit(d)
    A = ex["A"]
    JJ = kron(sp.eye(3), A ** 2) + kron(A.T, A) + kron(A.T ** 2, sp.eye(3))
    assert all_equal(vec(A ** 3).jacobian(vec(A)), JJ)
    assert all_equal(ex.result("jacobian"), JJ)


def test_A_times_A_times_A_is_A_cubed():
    # the product rule on A A A gives the same derivative as the power rule on A^3
    a = derive("A: matrix(n, n); A * A * A", wrt="A", jacobian=True)
    b = derive("A: matrix(n, n); A^3", wrt="A", jacobian=True)
    assert texts(a) == texts(b)


# ---------------------------------------------------------------------------------------------
# 60.4 Example: derivative of the matrix inverse
# ---------------------------------------------------------------------------------------------

def test_inverse_differential():
    # 0 = d(A inv(A)) = dA inv(A) + A d(inv(A)), so d(inv(A)) = -inv(A) dA inv(A)
    d = derive("A: matrix(n, n); inv(A)", wrt="A", jacobian=True)
    assert d.differential.text() == "-inv(A) * dA * inv(A)"


def test_inverse_jacobian():
    # vec(d inv(A)) = -(inv(A)' (x) inv(A)) vec(dA) = -(inv(A') (x) inv(A)) vec(dA).
    # (The text drops the minus sign when it writes the Jacobian; the derivation above it has it.)
    d = derive("A: matrix(n, n); inv(A)", wrt="A", jacobian=True)
    A_var = d.typed.variables["A"]
    J = d.jacobian.expr
    # canonical form writes (inv(A))' as inv(A'): the same node either way
    assert J == E.neg(E.kron(E.transpose(E.inverse(A_var)), E.inverse(A_var)))
    assert J == E.neg(E.kron(E.inverse(E.transpose(A_var)), E.inverse(A_var)))
    assert d.jacobian.text() == "-kron(inv(A'), inv(A))"
    ex = Explicit(d)
    A = ex["A"]
    Ainv = A.adjugate() / A.det()
    expected = -kron(Ainv.T, Ainv)
    assert all_equal(ex.result("jacobian"), expected)
    assert all_equal(vec(Ainv).jacobian(vec(A)), expected)
    assert not all_equal(ex.result("jacobian"), -expected)   # the sign matters


# ---------------------------------------------------------------------------------------------
# 60.4 Example: derivative of the matrix determinant
# ---------------------------------------------------------------------------------------------

def test_det_gradient_is_the_cofactor_matrix():
    # d det(A) = det(A) tr(inv(A) dA) = tr(det(A) inv(A) dA): gradient det(A) inv(A)' = cofactors
    d = derive("A: matrix(n, n); det(A)", wrt="A", gradient=True)
    assert d.differential.text() == "det(A) * tr(inv(A) * dA)"
    assert d.gradient.text() == "det(A) * inv(A')"
    ex = Explicit(d)
    A = ex["A"]
    partials = sp.Matrix(3, 3, lambda i, j: sp.diff(A.det(), A[i, j]))  # d det(A) / dA_ij = C_ij
    assert all_equal(partials, A.cofactor_matrix())
    assert all_equal(ex.result("gradient"), A.cofactor_matrix())


def test_det_of_I_plus_dA_to_first_order_is_the_trace():
    # @syms dA[1:2, 1:2]; det(I + dA) - det(I) = dA11 dA22 + dA11 - dA12 dA21 + dA22
    dA = Instance(2).matrix(E.Var("dA", (2, 2), diff=1))
    change = sp.expand((sp.eye(2) + dA).det() - sp.eye(2).det())
    assert change == dA[0, 0] * dA[1, 1] + dA[0, 0] - dA[0, 1] * dA[1, 0] + dA[1, 1]
    # "the only first-order terms are from the diagonal sum", for 3 x 3 too
    t = sp.Symbol("t")
    for n in (2, 3):
        dA = Instance(n).matrix(E.Var("dA", (n, n), diff=1))
        first_order = sp.expand((sp.eye(n) + t * dA).det()).coeff(t, 1)
        assert sp.expand(first_order - dA.trace()) == 0
    # and matcalc's differential of det at A = I is tr(dA)
    d = derive("A: matrix(n, n); det(A)", wrt="A")
    ex = Explicit(d)
    at_identity = ex.result("differential").xreplace(dict(zip(ex["A"], sp.eye(3))))
    assert sp.expand(at_identity[0, 0] - ex["dA"].trace()) == 0


def test_det_differential_by_the_product_rule():
    # det(A + A(inv(A) dA)) - det(A) = det(A) tr(inv(A) dA): the first-order change
    d = derive("A: matrix(n, n); det(A)", wrt="A")
    ex = Explicit(d)
    A, dA = ex["A"], ex["dA"]
    t = sp.Symbol("t")
    first_order = sp.diff((A + t * dA).det(), t).subs(t, 0)
    assert all_equal(ex.result("differential"), sp.Matrix([[first_order]]))


def test_det_second_derivative():
    # f''(A)[dA, dA'] = det(A) tr(inv(A) dA') tr(inv(A) dA) - det(A) tr(inv(A) dA' inv(A) dA)
    d = derive("A: matrix(n, n); det(A)", wrt="A", hessian=True)
    assert d.hessian_bilinear.text() == \
        "det(A) * (tr(inv(A) * dA) * tr(inv(A) * dA2) - tr(inv(A) * dA * inv(A) * dA2))"
    ex = Explicit(d)
    A, dA, dA2 = ex["A"], ex["dA"], ex["dA2"]
    s, t = sp.symbols("s t")
    second = sp.diff((A + s * dA + t * dA2).det(), s, t).subs({s: 0, t: 0})
    B = ex.result("hessian_bilinear")
    assert all_equal(B, sp.Matrix([[second]]))
    # symmetric in its two directions
    swapped = B.xreplace({**dict(zip(dA, dA2)), **dict(zip(dA2, dA))})
    assert all_equal(B, swapped)


def test_det_hessian_matrix_is_symmetric_and_matches_the_bilinear_form():
    # f''[dA, dA2] = vec(dA)' H vec(dA2)
    d = derive("A: matrix(n, n); det(A)", wrt="A", hessian=True)
    ex = Explicit(d)
    H = ex.result("hessian")
    assert all_equal(H, H.T)
    assert all_equal(vec(ex["dA"]).T * H * vec(ex["dA2"]), ex.result("hessian_bilinear"))
    A = ex["A"]
    assert all_equal(H, sp.hessian(A.det(), list(vec(A))))


# ---------------------------------------------------------------------------------------------
# 60.5 The adjoint method: g(p) = f(inv(A) b), with f(x) = c'x
# ---------------------------------------------------------------------------------------------

ADJOINT = "A: matrix(n, n); b: vector(n); c: vector(n); c' * inv(A) * b"


def test_adjoint_method_differential_and_gradient():
    # dg = f'(x)[-inv(A) dA inv(A) b] = -v' dA x with v' = f'(x) inv(A) (A'v = grad f = c), x = inv(A) b
    d = derive(ADJOINT, wrt="A", gradient=True)
    assert d.differential.text() == "-c' * inv(A) * dA * inv(A) * b"
    assert d.gradient.text() == "-inv(A') * c * b' * inv(A')"       # -v x'
    ex = Explicit(d)
    A, b, c = ex["A"], ex["b"], ex["c"]
    Ainv = A.adjugate() / A.det()
    v = Ainv.T * c           # solves the adjoint equation A'v = c
    x = Ainv * b             # solves Ax = b
    assert all_equal(A.T * v, c)
    assert all_equal(ex.result("gradient"), -v * x.T)
    g = (c.T * Ainv * b)[0, 0]
    assert all_equal(ex.result("gradient"), sp.Matrix(3, 3, lambda i, j: sp.diff(g, A[i, j])))


def test_adjoint_method_second_derivative_reads_without_double_negatives():
    d = derive(ADJOINT, wrt="A", hessian=True)
    # not: -c' * inv(A) * (-dA * inv(A) * dA2 - dA2 * inv(A) * dA) * inv(A) * b
    assert d.hessian_bilinear.text() == "c' * inv(A) * (dA * inv(A) * dA2 + dA2 * inv(A) * dA) * inv(A) * b"


# ---------------------------------------------------------------------------------------------
# The oracle agrees with every example
# ---------------------------------------------------------------------------------------------

EXAMPLES = [
    (XAX, "x", dict(gradient=True, jacobian=True, hessian=True)),
    ("x: vector(n); A: symmetric(n); x' * A * x", "x", dict(gradient=True, hessian=True)),
    ("x: vector(n); A: matrix(m, n); A * x", "x", dict(jacobian=True)),
    ("x: vector(n); A: matrix(m, n); A * (x .* x)", "x", dict(jacobian=True)),
    ("x: vector(n); A: matrix(n, n); exp(A * x)", "x", dict(jacobian=True)),
    ("A: matrix(n, n); A^2", "A", dict(jacobian=True)),
    ("A: matrix(n, n); A^3", "A", dict(jacobian=True)),
    ("A: matrix(n, n); inv(A)", "A", dict(jacobian=True)),
    ("A: matrix(n, n); det(A)", "A", dict(gradient=True, hessian=True)),
    ("A: matrix(m, m); B: matrix(r, r); C: matrix(r, m); vec(B * C * A')", "C", dict(jacobian=True)),
    (ADJOINT, "A", dict(gradient=True)),
]


@pytest.mark.parametrize("program, wrt, flags", EXAMPLES)
def test_verify_agrees_with_every_example(program, wrt, flags):
    d = derive(program, wrt=wrt, **flags)
    report = verify_derivation(d, 3)
    assert report.passed, report.lines()
    assert len(report.results) == len(d.results)


def test_commutation_appears_where_the_text_transposes():
    # the text's (dx' A x)' = x' A' dx: vec(dX') = K vec(dX) is what makes such transposes linear maps
    d = derive("X: matrix(m, n); X'", wrt="X", jacobian=True)
    assert d.jacobian.text() == "commutation(m, n)"
    ex = Explicit(d)
    X = ex["X"]
    assert ex.result("jacobian") == commutation_matrix(3, 3)
    assert ex.result("jacobian") * vec(X) == vec(X.T)
