"""The matcalc language: syntax, precedence, declarations, shape inference, and text round trips.

Each test states one fact about the language as a person writes it, and checks it at the level
where it is decided: the syntax tree for precedence, the symbol table for shapes, the IR for
meaning.  The round-trip tests print f with the plain-text printer and parse the text back.
"""

from __future__ import annotations

import pytest

from matcalc_cli import derive
from matcalc_cli import expr as E
from matcalc_cli import syntax as S
from matcalc_cli.dims import Dim
from matcalc_cli.errors import MatcalcError, NameLookupError, ParseError, ShapeError
from matcalc_cli.render.text import to_text
from matcalc_cli.shapes import check
from matcalc_cli.render.documents import shape_text

n, m, p = Dim.of("n"), Dim.of("m"), Dim.of("p")
ONE = Dim(1)

# the declarations most tests start from
DECL = ("x, y: vector(n); z: vector(m); A, B: matrix(n, n); C: matrix(m, n); "
        "S: symmetric(n); c, t: scalar; ")


def typed(program: str):
    """Parse and shape-check: the language layer alone, no differentiation."""
    return check(S.parse(program))


def ir(program: str) -> E.Expr:
    return typed(program).expression


def shape_of(program: str) -> tuple:
    return ir(program).shape


def sx(node) -> str:
    """The syntax tree as an s-expression; chains are folded left to right."""
    if isinstance(node, S.Number):
        return node.text
    if isinstance(node, S.Name):
        return node.name
    if isinstance(node, S.Call):
        return "(" + " ".join([node.name] + [sx(a) for a in node.args]) + ")"
    if isinstance(node, S.Chain):
        out = sx(node.first)
        for op, operand, _pos in node.rest:
            out = f"({op} {out} {sx(operand)})"
        return out
    if isinstance(node, S.BinOp):
        return f"({node.op} {sx(node.left)} {sx(node.right)})"
    if isinstance(node, S.Neg):
        return f"(neg {sx(node.operand)})"
    if isinstance(node, S.Transpose):
        return f"(' {sx(node.operand)})"
    raise AssertionError(f"unknown syntax node {node!r}")


def tree(expression: str) -> str:
    return sx(S.parse(expression).expression)


# --- every operator and function parses and shape-checks ------------------------------------------

# (expression after DECL, shape of f)
OPERATIONS = [
    ("x + y", (n, ONE)),
    ("x - y", (n, ONE)),
    ("A * x", (n, ONE)),
    ("x' * y", (ONE, ONE)),
    ("x * y'", (n, n)),
    ("C * x", (m, ONE)),
    ("z' * C", (ONE, n)),
    ("A / c", (n, n)),
    ("x / 2", (n, ONE)),
    ("x .* y", (n, ONE)),
    ("A ./ B", (n, n)),
    ("A ^ 3", (n, n)),
    ("A ^ -1", (n, n)),
    ("c ^ t", (ONE, ONE)),
    ("x .^ 2", (n, ONE)),
    ("x .^ c", (n, ONE)),
    ("C'", (n, m)),
    ("-C", (m, n)),
    ("+C", (m, n)),
    ("tr(A)", (ONE, ONE)),
    ("det(A)", (ONE, ONE)),
    ("logdet(S)", (ONE, ONE)),
    ("inv(A)", (n, n)),
    ("adj(A)", (n, n)),
    ("diag(x)", (n, n)),
    ("diag(A)", (n, ONE)),
    ("vec(C)", (m * n, ONE)),
    ("kron(A, C)", (n * m, n * n)),
    ("kron(x, z')", (n, m)),
    ("sum(C)", (ONE, ONE)),
    ("norm1(x)", (ONE, ONE)),
    ("norm2(C)", (ONE, ONE)),
    ("I(n)", (n, n)),
    ("I(3)", (Dim(3), Dim(3))),
    ("ones(n)", (n, ONE)),
    ("ones(m, n)", (m, n)),
    ("zeros(m, n) + C", (m, n)),
    ("commutation(m, n)", (m * n, m * n)),
    ("commutation(m, n) * vec(C)", (m * n, ONE)),
    ("reshape(vec(C), n, m)", (n, m)),
    ("reshape(x, 1, n)", (ONE, n)),
] + [(f"{fn}(C)", (m, n)) for fn in E.ELEMENTWISE]


@pytest.mark.parametrize("expression, shape", OPERATIONS, ids=[o[0] for o in OPERATIONS])
def test_every_operation_parses_and_has_its_shape(expression, shape):
    assert shape_of(DECL + expression) == shape


ELEMENTWISE_DOCUMENTED = ("exp log sin cos tan tanh arcsin arccos arctan sqrt sigmoid abs sign relu step").split()


def test_documented_elementwise_functions_all_exist():
    assert set(ELEMENTWISE_DOCUMENTED) <= set(E.ELEMENTWISE)


@pytest.mark.parametrize("fn", ["tr", "det", "logdet", "inv", "adj", "diag", "vec", "sum", "norm1", "norm2"]
                         + ELEMENTWISE_DOCUMENTED)
def test_every_function_is_differentiable_through_derive(fn):
    """Each function goes through the whole pipeline (sum(...) makes every f scalar)."""
    body = f"{fn}(X)" if fn in ("tr", "det", "logdet", "sum", "norm1", "norm2") else f"sum({fn}(X))"
    d = derive(f"X: matrix(n, n); {body}", wrt="X")
    assert d.expression.is_scalar
    assert d.gradient.expr.shape == (n, n)


# --- precedence and associativity -------------------------------------------------------------

@pytest.mark.parametrize("expression, expected", [
    ("-x^2", "(neg (^ x 2))"),                # unary minus is looser than ^
    ("-x.^2", "(neg (.^ x 2))"),
    ("x'^2", "(^ (' x) 2)"),                  # transpose is tighter than ^
    ("x'.^2", "(.^ (' x) 2)"),
    ("a*b'", "(* a (' b))"),                  # transpose binds to the operand, not the product
    ("a.*b'", "(.* a (' b))"),
    ("x.^2.*y", "(.* (.^ x 2) y)"),           # .^ before .*
    ("x./y.^2", "(./ x (.^ y 2))"),           # .^ before ./
    ("x./y.*z", "(.* (./ x y) z)"),           # ./ and .* are left associative, same level
    ("x.*y./z", "(./ (.* x y) z)"),
    ("a/b/c", "(/ (/ a b) c)"),
    ("a-b-c", "(- (- a b) c)"),
    ("a-b+c", "(+ (- a b) c)"),
    ("a+b*c", "(+ a (* b c))"),
    ("a*b+c", "(+ (* a b) c)"),
    ("x'*A*x", "(* (* (' x) A) x)"),
    ("-x'*y", "(* (neg (' x)) y)"),           # unary minus is tighter than *
    ("--x", "(neg (neg x))"),
    ("2^-x", "(^ 2 (neg x))"),                # a signed exponent
    ("x^2^3", "(^ (^ x 2) 3)"),               # powers read left to right, as in MATLAB
    ("x.^2.^3", "(.^ (.^ x 2) 3)"),
    ("x^-2^3", "(^ (^ x (neg 2)) 3)"),        # a signed exponent binds to its power only
    ("2^-x^2", "(^ (^ 2 (neg x)) 2)"),
    ("A^-1.^2", "(.^ (^ A (neg 1)) 2)"),
    ("A''", "(' (' A))"),
    ("(A*B)'", "(' (* A B))"),
    ("tr(A)'", "(' (tr A))"),
    ("f.^g'", "(.^ f (' g))"),
    ("kron(A, B)*x", "(* (kron A B) x)"),
    ("-A*B", "(* (neg A) B)"),
    ("a - -b", "(- a (neg b))"),
    ("a .* -b", "(.* a (neg b))"),
])
def test_precedence_in_the_syntax_tree(expression, expected):
    assert tree(expression) == expected


@pytest.mark.parametrize("written, meant", [
    ("-c^2", "-(c^2)"),
    ("-x.^2", "-(x.^2)"),
    ("x'.^2", "(x').^2"),
    ("(x'*y)^2", "((x')*y)^2"),
    ("c*x'", "c*(x')"),
    ("x'*y", "(x')*y"),
    ("x .* y.^2", "x .* (y.^2)"),
    ("x ./ y .* x", "(x ./ y) .* x"),
    ("-x' * A * y", "-((x' * A) * y)"),
    ("c - t - c", "(c - t) - c"),
    ("c / t / c", "(c / t) / c"),
    ("A*B'", "A*(B')"),
    ("2^-c", "2^(-c)"),
    ("c^2^3", "(c^2)^3"),
    ("c^t^2", "(c^t)^2"),
])
def test_precedence_gives_the_ir_of_the_parenthesised_form(written, meant):
    assert ir(DECL + written) == ir(DECL + meant)


@pytest.mark.parametrize("left, right", [
    ("-c^2", "(-c)^2"),
    ("c^2^3", "c^(2^3)"),
    ("x' * y * c - t", "x' * (y * c - t)"),
])
def test_precedence_distinguishes(left, right):
    assert ir(DECL + left) != ir(DECL + right)


# --- declarations ------------------------------------------------------------------------------

def test_several_names_in_one_declaration_share_the_shape():
    sy = typed("A, B: matrix(m, n); tr(A' * B)").symbols
    assert sy["A"].shape == sy["B"].shape == (m, n)
    assert sy["A"].declared and sy["B"].declared


def test_symmetric_declaration_is_square_and_symmetric():
    sy = typed("S: symmetric(n); logdet(S)").symbols
    assert sy["S"].shape == (n, n)
    assert sy["S"].symmetric


def test_integer_dimensions():
    sy = typed("A: matrix(3, 4); x: vector(4); A * x").symbols
    assert sy["A"].shape == (Dim(3), Dim(4))
    assert sy["A"].shape[0].is_int and sy["A"].shape[0].evaluate({}) == 3


def test_product_dimensions():
    t = typed("A: matrix(m*n, 3); v: vector(m*n); v' * A")
    assert t.symbols["A"].shape == (m * n, Dim(3))
    assert t.expression.shape == (ONE, Dim(3))
    assert t.symbols["A"].shape[0].evaluate({"m": 2, "n": 5}) == 10


def test_product_dimension_matches_kron_and_vec():
    t = typed("A: matrix(m, n); B: matrix(p, n); v: vector(m*p); v' * kron(A, B)")
    assert t.expression.shape == (ONE, n * n)
    t = typed("A: matrix(m, n); v: vector(m*n); v' * vec(A)")
    assert t.expression.is_scalar


def test_scalar_declaration():
    sy = typed("c: scalar; x: vector(n); c * x").symbols
    assert sy["c"].shape == (ONE, ONE)


@pytest.mark.parametrize("program, error", [
    ("x: vector(n); x: vector(n); x", NameLookupError),          # declared twice
    ("x, x: vector(n); x", NameLookupError),
    ("I: matrix(n, n); I", NameLookupError),                    # I is the identity
    ("A: matrix(0, n); A", ShapeError),                          # dimensions are positive
    ("x: vector(n); A: matrix(n, n); A * x; x' * x", ParseError),  # one expression
    ("x' * x; x: vector(n)", ParseError),                      # declarations first
    ("x: tensor(n); x", ParseError),
    ("x: vector(n, m); x", ParseError),
    ("x: matrix(n); x", ParseError),
    ("x: vector(); x", ParseError),
    ("x: vector(n); y: vector(m); x + y", ShapeError),
])
def test_bad_declarations(program, error):
    with pytest.raises(error):
        typed(program)


# --- separators and comments -----------------------------------------------------------------

@pytest.mark.parametrize("program", [
    "x: vector(n); A: matrix(n, n); x' * A * x",
    "x: vector(n)\nA: matrix(n, n)\nx' * A * x",
    "x: vector(n)\r\nA: matrix(n, n)\r\nx' * A * x\r\n",
    "\n\n;x: vector(n);;\n; A: matrix(n, n)\n\n x' * A * x ;\n\n",
    "# a quadratic form\nx: vector(n)   # the variable\nA: matrix(n, n)\n# the function:\nx' * A * x  # done",
    "x: vector(n); A: matrix(n, n); x' * \\\n  A * x",
    "x:vector(n);A:matrix(n,n);x'*A*x",
    "x: vector(n); A: matrix(n, n);\tx'\t*\tA * x",
    "x: vector(n); A: matrix(n, n); x' * A * x # trailing comment without newline",
])
def test_separators_and_comments_do_not_change_meaning(program):
    reference = typed("x: vector(n); A: matrix(n, n); x' * A * x")
    t = typed(program)
    assert t.expression == reference.expression
    assert {k: v.shape for k, v in t.symbols.items()} == {k: v.shape for k, v in reference.symbols.items()}


def test_newline_inside_an_expression_ends_the_statement():
    with pytest.raises(ParseError) as info:
        typed("x: vector(n)\nx' *\nx")
    assert info.value.line == 2


def test_comment_hides_the_rest_of_the_line():
    assert ir("x: vector(n); x' * x # + y' * y") == ir("x: vector(n); x' * x")


# --- inference of undeclared names -----------------------------------------------------------

def test_undeclared_lower_case_is_a_vector_and_upper_case_a_matrix():
    sy = typed("x' * A * x").symbols
    assert not sy["x"].declared and not sy["A"].declared
    (xr, xc), (ar, ac) = sy["x"].shape, sy["A"].shape
    assert xc == 1 and not xr.is_int
    assert ar == ac == xr


def test_first_free_dimension_is_called_n():
    sy = typed("x' * A * x").symbols
    assert sy["x"].shape == (n, ONE)
    assert sy["A"].shape == (n, n)


def test_scalar_from_a_product_with_a_matrix():
    sy = typed("c * A").symbols
    assert sy["c"].shape == (ONE, ONE)
    assert sy["A"].shape[0] != 1 and sy["A"].shape[1] != 1


def test_inner_product_of_undeclared_vectors():
    t = typed("x' * y")
    assert t.expression.is_scalar
    assert t.symbols["x"].shape == t.symbols["y"].shape
    assert t.symbols["x"].shape[1] == 1


def test_matrix_vector_product_links_dimensions():
    t = typed("A * x + y")
    a, x, y = (t.symbols[k].shape for k in "Axy")
    assert a[1] == x[0] and a[0] == y[0]
    assert a[0] != a[1]                 # nothing says A is square


def test_trace_makes_an_undeclared_matrix_square():
    sy = typed("tr(A)").symbols
    assert sy["A"].shape[0] == sy["A"].shape[1]


def test_declared_shapes_pin_undeclared_ones():
    sy = typed("X: matrix(m, n); X * w - y").symbols
    assert sy["w"].shape == (n, ONE)
    assert sy["y"].shape == (m, ONE)


def test_inferred_names_avoid_declared_dimension_names():
    sy = typed("A: matrix(n, n); B * A * x").symbols
    assert sy["x"].shape == (n, ONE)
    assert sy["B"].shape[1] == n
    assert sy["B"].shape[0] != n


def test_undeclared_lower_case_used_as_a_matrix_is_an_error_or_a_scalar():
    """'a' defaults to a column: 'a * A' makes it a scalar, never silently a matrix."""
    sy = typed("a * A").symbols
    assert sy["a"].shape == (ONE, ONE)


def test_shapes_reported_by_derive():
    d = derive("X: matrix(m, n); sum(log(1 + exp(-y .* (X * w))))", wrt="w")
    sy = d.typed.symbols
    assert sy["X"].declared and not sy["y"].declared and not sy["w"].declared
    assert sy["y"].shape == (m, ONE)
    assert sy["w"].shape == (n, ONE)
    assert d.shapes == {k: v.shape for k, v in sy.items()}
    assert d.x.shape == (n, ONE)
    assert d.dx.shape == d.x.shape and d.dx2.shape == d.x.shape


def test_variables_table_has_vars_of_the_symbol_shapes():
    t = typed("x: vector(n); S: symmetric(n); x' * S * x")
    assert t.variables["x"] == E.Var("x", (n, ONE))
    assert t.variables["S"] == E.Var("S", (n, n), symmetric=True)


# --- scalar broadcast and constructors -------------------------------------------------------

def test_scalar_plus_vector_broadcasts():
    f = ir("x: vector(n); 1 + exp(x)")
    assert f.shape == (n, ONE)
    assert E.contains(f, lambda e: isinstance(e, E.Ones) and e.shape == (n, ONE))


def test_logistic_loss_broadcasts():
    t = typed("X: matrix(m, n); y: vector(m); w: vector(n); log(1 + exp(-y .* (X * w)))")
    assert t.expression.shape == (m, ONE)
    assert E.contains(t.expression, lambda e: isinstance(e, E.Ones) and e.shape == (m, ONE))


def test_matrix_minus_scalar_broadcasts():
    f = ir("A: matrix(m, n); c: scalar; A - c")
    assert f.shape == (m, n)
    assert E.contains(f, lambda e: isinstance(e, E.Ones) and e.shape == (m, n))


def test_scalar_times_identity_takes_its_size_from_the_sum():
    f = ir("A: matrix(n, n); c: scalar; A + c * I")
    assert f.shape == (n, n)
    assert E.contains(f, lambda e: isinstance(e, E.Identity) and e.n == n)


def test_bare_identity_without_a_size_is_a_shape_error():
    with pytest.raises(ShapeError):
        typed("c: scalar; c * I")


def test_sized_identity():
    assert ir("c: scalar; c * I(n)").shape == (n, n)
    assert ir("c: scalar; c * I(n)") == ir("c: scalar; c * I(n)'")


def test_identity_is_absorbed_in_a_product():
    assert ir("A: matrix(n, n); I * A * I") == ir("A: matrix(n, n); A")


def test_ones_vector_and_matrix():
    assert ir("ones(n)") == E.Ones((n, ONE))
    assert ir("ones(m, n)") == E.Ones((m, n))
    assert ir("x: vector(n); ones(n)' * x").is_scalar


def test_dimension_arguments_may_be_products_and_integers():
    assert ir("ones(m*n)").shape == (m * n, ONE)
    assert ir("I(4)").shape == (Dim(4), Dim(4))
    assert ir("zeros(2, n) + ones(2, n)").shape == (Dim(2), n)


@pytest.mark.parametrize("program", [
    "c: scalar; 1e200 * 1e200 * c",       # folds to inf
    "c: scalar; 1e400 * c",               # the literal is inf
    "c: scalar; (1e300 * 1e300 - 1e300 * 1e300) * c",
])
def test_constants_that_overflow_are_errors(program):
    with pytest.raises(MatcalcError):
        typed(program)


@pytest.mark.parametrize("program", [
    "c: scalar; 0 / 0 * c",               # folds to 0 today: it has no value
    "c: scalar; c / 0",
    "c: scalar; c / (1 - 1)",
    "x: vector(n); x ./ 0",
])
def test_division_by_a_constant_zero_is_an_error(program):
    with pytest.raises(MatcalcError):
        typed(program)


def test_many_undeclared_names_get_dimension_names():
    """Every free dimension gets a name, however many there are (1,010 independent vectors)."""
    t = typed(" + ".join(f"sum(a{i})" for i in range(1010)))
    dims = {t.symbols[f"a{i}"].shape[0] for i in range(1010)}
    assert len(dims) == 1010


# --- constant folding the reader can rely on --------------------------------------------------

@pytest.mark.parametrize("left, right", [
    ("x'' ", "x"),
    ("-(-x)", "x"),
    ("x - x", "zeros(n, 1)"),
    ("0 * x", "zeros(n, 1)"),
    ("2 * x + 3 * x", "5 * x"),
    ("inv(inv(A))", "A"),
    ("A * I", "A"),
    ("A^1", "A"),
    ("(A * B)'", "B' * A'"),
    ("S'", "S"),
    ("A^-1", "inv(A)"),
])
def test_smart_constructors_tidy_the_tree(left, right):
    assert ir(DECL + left) == ir(DECL + right)


# --- round trip: to_text(f) parses back to the same IR -----------------------------------------

ROUND_TRIP = [e for e, _ in OPERATIONS] + [
    "x' * A * x", "-x' * x", "x' * inv(A + c * I) * x", "tr(A * B * A')", "det(A)^2", "c * x + t * y",
    "A - B + I", "kron(I(n), A)", "kron(x, y')", "norm2(C * x - z)^2", "(x' * y)^2", "x' * y * c",
    "c * x' * A", "diag(x) * A * diag(y)", "diag(A * B)", "vec(x * y')", "sum(x .* y)", "0.5 * x' * x",
    "x' * x / 2", "1e-3 * c", "1.5e3 * c + .25 * t", "exp(-c^2 / 2)", "sqrt(x' * x)", "log(det(A))",
    "tr(inv(A)) * c", "abs(c) + sign(t)", "x' * S * x", "S^2", "tr(S * A)", "c", "3", "-c", "-x",
    "1 + exp(x)", "sum(log(1 + exp(-z .* (C * x))))", "(A + B)' * x", "inv(A)'", "A^3 + A'",
    "x ./ y", "1 ./ x", "2 ./ x", "c ./ x", "x ./ c", "A .* B", "A / c", "c / t", "t / c^2",
    "exp(c) * A", "x.^c", "2^c", "c^t", "c^(1/3)", "c^0.5", "-c^2", "(-c)^3", "c - t - c",
    "x - y - x", "1 - c", "c * (1 - t)", "-(x - y)", "A * (x + y)", "(A + B) * (x - y)",
    "ones(n)' * x", "ones(m, n) * x", "z' * C * ones(n)", "A * x - z' * C * ones(n)",
    "ones(n) * ones(n)'", "A + ones(n, n)", "c * ones(n)", "sum(A) * ones(m, n)",
    "commutation(n, n) * vec(A)", "reshape(x, 1, n) * y", "kron(A, B) * vec(A)",
    "x' * (A .* B) * y", "diag(diag(A))", "diag(x)^2", "tr(A)^2 - tr(A^2)", "logdet(S) - tr(S)",
    "sigmoid(C * x)' * z", "relu(C * x)", "step(x) .* x", "tanh(A * tanh(A * x))",
    "(x' * x)^-1", "1 / (x' * x)", "c / (t + 1)", "(c + t) / (c - t)", "x / (1 + c)",
    "0.1 * c + 0.2 * c", "1e200 * 1e-200 * c", "99999999999999999999999 * c", "1e-300 * c", "2.5e300 * c",
    "norm1(A * x - y) + norm2(x)^2 / 2", "adj(A) * x", "I(n) + ones(n, n) / n_",
    # scalar sub-products inside a matrix chain (found by tests/test_fuzz.py)
    "(z * x' * x)' * C", "tr(z * x' * (z * x')')", "tr(z * x' * (z * x')') * A",
]

# names in ROUND_TRIP that DECL does not declare are inferred (n_ above is a scalar)


@pytest.mark.parametrize("expression", ROUND_TRIP)
def test_text_of_f_parses_back_to_the_same_ir(expression):
    t = typed(DECL + expression)
    text = to_text(t.expression)
    declarations = "; ".join(f"{name}: {shape_text(sym)}" for name, sym in t.symbols.items())
    again = typed(declarations + "\n" + text)
    assert again.expression == t.expression, f"{expression!r} printed as {text!r}"
    assert to_text(again.expression) == text



@pytest.mark.parametrize("expression", [
    "x' * A * x", "sum(log(1 + exp(-z .* (C * x))))", "det(A)", "logdet(S)", "x' * S * x",
    "norm2(C * x - z)^2", "tr(A * B * A')", "sum(exp(A * x))", "x' * inv(A) * x", "sigmoid(y' * x)",
])
def test_text_of_gradient_and_hessian_parses_back(expression):
    """The gradient and Hessian print in the input language: they parse, with the shapes they have."""
    wrt = "x" if "x" in expression else ("S" if "S" in expression else "A")
    d = derive(DECL + expression, wrt=wrt, gradient=True, hessian=True)
    declarations = "; ".join(f"{name}: {shape_text(sym)}" for name, sym in d.typed.symbols.items())
    for name in ("gradient", "hessian"):
        result = d.results[name]
        again = typed(declarations + "\n" + result.text())
        assert again.expression.shape == result.expr.shape, (name, result.text())


# --- definitions: name = expression ---------------------------------------------------------

def test_definition_is_the_same_as_writing_it_out():
    defined = typed("X: matrix(m, n); y: vector(m); u = -y .* (X * w); sum(log(1 + exp(u)))")
    inline = typed("X: matrix(m, n); y: vector(m); sum(log(1 + exp(-y .* (X * w))))")
    assert defined.expression == inline.expression
    assert "u" not in defined.variables
    assert defined.symbols["w"].shape == (n, ONE)


def test_definitions_build_on_earlier_definitions():
    assert ir("x: vector(n); A: matrix(n, n); u = A * x; v = u' * u; v^2") == \
        ir("x: vector(n); A: matrix(n, n); ((A * x)' * (A * x))^2")


def test_definition_on_its_own_line_with_comments():
    program = "x: vector(n)\n# residual\nr = x - 1   # broadcast\nr' * r\n"
    assert ir(program) == ir("x: vector(n); (x - 1)' * (x - 1)")


@pytest.mark.parametrize("program", [
    "x: vector(n); u = x' * x; u = 3; u",          # defined twice
    "x: vector(n); x = 2; x",                      # a declared name
    "x: vector(n); I = x; I",                      # the identity
    "t = t; t",                                    # refers to itself
    "x: vector(n); t = t + x; t' * x",
    "a = b; b = a; a",                             # refers to a later definition
    "x: vector(n); x' * x; u = x",                 # after the expression
])
def test_bad_definitions_are_clean_errors(program):
    with pytest.raises(MatcalcError):
        typed(program)


def test_a_definition_is_not_a_variable_to_differentiate_against():
    with pytest.raises(MatcalcError):
        derive("x: vector(n); u = x' * x; u", wrt="u")
