"""Syntax tree -> shape-checked expression IR.

Two passes.  The first infers a shape for every subexpression by unification over dimension
monomials: declared names have fixed shapes, undeclared names and ``I`` get unknown dimensions
that their uses pin down.  The second pass builds the IR from the solved shapes through the smart
constructors of ``expr``.  Unknowns that use leaves open get readable names (n, m, p, ...), and an
undeclared name defaults to a column vector (lower case) or a matrix (upper case).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from fractions import Fraction
from math import gcd

from . import expr as E
from . import syntax as S
from .dims import Dim, ONE
from .errors import MathError, NameLookupError, ParseError, ShapeError

MATRIX_FUNCTIONS = ("tr", "det", "logdet", "inv", "adj", "diag", "vec", "kron", "sum", "norm1", "norm2")
CONSTRUCTORS = ("I", "ones", "zeros", "commutation", "reshape")
# expm, logm, sqrtm, their Frechet derivatives dexpm, d2expm, ... and Jacobians jexpm, ...
PRIMARY_FUNCTIONS = tuple(E.matfun_names())
KNOWN_FUNCTIONS = MATRIX_FUNCTIONS + E.ELEMENTWISE + CONSTRUCTORS + PRIMARY_FUNCTIONS
_HIGHER_ORDER = {n for n, (kind, _, k) in E.matfun_names().items() if kind == "d" and k > 2}
PREFERRED_DIM_NAMES = ("n", "m", "p", "q", "r", "s", "k", "l", "d", "t")

CONSTRUCTOR_USES = {
    "I": "I(n) is the n x n identity (I alone takes its size from use)",
    "ones": "ones(n) is a vector of ones, ones(m, n) a matrix of ones",
    "zeros": "zeros(n) is a vector of zeros, zeros(m, n) a matrix of zeros",
    "commutation": "commutation(m, n) is the matrix K with K * vec(X) = vec(X') for X m x n",
    "reshape": "reshape(v, m, n) turns v (of m*n entries) into an m x n matrix, column by column",
}


def _square_hint(name: str, arg: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", arg):
        return f"declare {arg} square (matrix(n, n)), or take {name} of a square product such as {arg}' * {arg}"
    return "a square matrix has as many rows as columns: declare the operands' shapes so that it has"


@dataclass
class Symbol:
    """What the program says about a name: its shape, and whether it was declared."""
    name: str
    shape: tuple
    declared: bool
    symmetric: bool = False
    pos: tuple | None = None


@dataclass
class Typed:
    """The result of shape checking: the IR and the symbol table (resolved)."""
    expression: E.Expr
    symbols: dict                      # name -> Symbol, in order of first appearance
    source: str = ""
    variables: dict = field(default_factory=dict)   # name -> E.Var
    definitions: dict = field(default_factory=dict)  # name -> E.Expr, for 'name = expr' statements


# --- unification --------------------------------------------------------------------------------

class Unifier:
    """Dimensions with unknowns ("?1", "?2", ...) and the equations between them."""

    def __init__(self):
        self.bindings: dict = {}
        self.pending: list = []
        self.counter = 0

    def fresh(self) -> Dim:
        self.counter += 1
        return Dim.of(f"?{self.counter}")

    def resolve(self, d: Dim) -> Dim:
        """d with every bound unknown replaced, to the end of its chain of bindings (however long:
        a sum of 2,000 undeclared names binds ?1 to ?2 to ... ?2000).  Chains are shortened as
        they are followed, so that each link is walked once."""
        if not any(s in self.bindings for s in d.symbols):
            return d
        mapping = {}
        for s in d.symbols:
            if s in self.bindings:
                value = self._follow(s)
                mapping[s] = value
        return d.substitute(mapping)

    def _follow(self, sym: str) -> Dim:
        chain = []
        value = self.bindings[sym]
        # single-unknown links are followed iteratively (no recursion on long chains)
        while value.coef == 1 and len(value.factors) == 1 and value.factors[0][1] == 1 \
                and value.factors[0][0] in self.bindings:
            chain.append(sym)
            sym = value.factors[0][0]
            value = self.bindings[sym]
        value = self.resolve(value)
        for s in chain + [sym]:
            self.bindings[s] = value
        return value

    def snapshot(self):
        return dict(self.bindings), list(self.pending)

    def rollback(self, snap):
        self.bindings, self.pending = dict(snap[0]), list(snap[1])

    def unify(self, a: Dim, b: Dim) -> bool:
        if not self._unify_one(a, b):
            return False
        return self._retry_pending()

    def _retry_pending(self) -> bool:
        progress = True
        while progress and self.pending:
            progress = False
            waiting, self.pending = self.pending, []
            for a, b in waiting:
                before = len(self.bindings)
                if not self._unify_one(a, b):
                    return False
                progress = progress or len(self.bindings) > before
        return True

    def _unify_one(self, a: Dim, b: Dim) -> bool:
        a, b = _cancel(self.resolve(a), self.resolve(b))
        if a == b:
            return True
        for x, y in ((a, b), (b, a)):
            if x.coef == 1 and len(x.factors) == 1 and x.factors[0][1] == 1:
                sym = x.factors[0][0]
                if sym.startswith("?") and sym not in y.symbols:
                    self.bindings[sym] = y
                    return True
        if any(s.startswith("?") for s in a.symbols | b.symbols):
            self.pending.append((a, b))
            return True
        return False

    def is_one(self, d: Dim) -> bool:
        return self.resolve(d) == 1


def _cancel(a: Dim, b: Dim):
    """Divide out common factors: n*p = n*q becomes p = q."""
    pa, pb = dict(a.factors), dict(b.factors)
    for sym in set(pa) & set(pb):
        common = min(pa[sym], pb[sym])
        pa[sym] -= common
        pb[sym] -= common
    g = gcd(a.coef, b.coef) or 1
    return (Dim(a.coef // g, tuple(sorted((s, p) for s, p in pa.items() if p))),
            Dim(b.coef // g, tuple(sorted((s, p) for s, p in pb.items() if p))))


# --- pass 1: inference --------------------------------------------------------------------------

class _Inference:
    def __init__(self, program: S.Program):
        self.program = program
        self.u = Unifier()
        self.symbols: dict = {}
        self.shapes: dict = {}        # id(syntax node) -> shape with unknowns
        self.identity_sizes: dict = {}  # id(Name 'I' node) -> Dim
        self.rigid_dims: set = set()
        self.definitions: dict = {}     # name -> syntax Definition

    # shapes -------------------------------------------------------------------------------
    def resolved(self, shape):
        return (self.u.resolve(shape[0]), self.u.resolve(shape[1]))

    def show(self, shape) -> str:
        r, c = self.resolved(shape)
        return f"{_dim_text(r)} x {_dim_text(c)}"

    def definitely_scalar(self, shape) -> bool:
        return self.u.is_one(shape[0]) and self.u.is_one(shape[1])

    def _collapses(self, x: Dim, y: Dim) -> bool:
        x, y = self.u.resolve(x), self.u.resolve(y)
        unknown = lambda d: any(s.startswith("?") for s in d.symbols)
        return (x == 1 and unknown(y)) or (y == 1 and unknown(x))

    def _open_lowercase(self, node, shape) -> bool:
        """An undeclared lower-case name whose length nothing has fixed yet."""
        if not isinstance(node, S.Name) or not node.name[:1].islower():
            return False
        sym = self.symbols.get(node.name)
        rows = self.u.resolve(shape[0])
        return (sym is not None and not sym.declared and self.u.is_one(shape[1])
                and rows.coef == 1 and len(rows.factors) == 1 and rows.factors[0][0].startswith("?"))

    def try_unify(self, *pairs) -> bool:
        snap = self.u.snapshot()
        for a, b in pairs:
            if not self.u.unify(a, b):
                self.u.rollback(snap)
                return False
        return True

    # declarations --------------------------------------------------------------------------
    def declare(self, decl: S.Declaration):
        dims = []
        for factors, _pos in decl.dims:
            d = Dim(1)
            for f in factors:
                if isinstance(f, int):
                    if f <= 0:
                        raise ShapeError(f"dimension {f} must be a positive integer").at(_pos)
                    d = d * Dim(f)
                else:
                    d = d * Dim.of(f)
                    self.rigid_dims.add(f)
            dims.append(d)
        shape = {"scalar": lambda: (ONE, ONE), "vector": lambda: (dims[0], ONE),
                 "matrix": lambda: (dims[0], dims[1]), "symmetric": lambda: (dims[0], dims[0])}[decl.kind]()
        for name, pos in decl.names:
            if name == "I":
                raise NameLookupError("'I' is the identity matrix and cannot be declared", *pos,
                                      hint="choose another name")
            if name in self.symbols:
                raise NameLookupError(f"'{name}' is declared twice", *pos,
                                      hint="declare each name once; to change its shape, edit the first declaration")
            self.symbols[name] = Symbol(name, shape, True, decl.kind == "symmetric", pos)

    def define(self, definition: S.Definition):
        name, pos = definition.name, definition.pos
        if name == "I":
            raise NameLookupError("'I' is the identity matrix and cannot be defined", *pos,
                                  hint="choose another name")
        if name in self.definitions:
            raise NameLookupError(f"'{name}' is defined twice", *pos)
        if name in self.symbols:
            what = "declared" if self.symbols[name].declared else "used"
            raise NameLookupError(f"'{name}' is already {what} as a variable; a definition needs a new name",
                                  *pos)
        self.infer(definition.expression)
        if name in self.symbols:  # the expression used the name being defined
            raise NameLookupError(f"the definition of '{name}' uses '{name}' itself", *pos,
                                  hint="a definition can only use names declared or defined before it")
        self.definitions[name] = definition

    # expressions ---------------------------------------------------------------------------
    def infer(self, node):
        shape = getattr(self, "_infer_" + type(node).__name__)(node)
        self.shapes[id(node)] = shape
        return shape

    def _infer_Number(self, node):
        return (ONE, ONE)

    def _infer_Name(self, node):
        if node.name == "I":
            n = self.u.fresh()
            self.identity_sizes[id(node)] = n
            return (n, n)
        if node.name in self.definitions:
            return self.shapes[id(self.definitions[node.name].expression)]
        sym = self.symbols.get(node.name)
        if sym is None:
            # undeclared: a matrix if it starts upper-case, else a column vector; uses decide the rest
            shape = (self.u.fresh(), self.u.fresh() if node.name[0].isupper() else ONE)
            sym = self.symbols[node.name] = Symbol(node.name, shape, False, False, node.pos)
        return sym.shape

    def _infer_Neg(self, node):
        return self.infer(node.operand)

    def _infer_Transpose(self, node):
        r, c = self.infer(node.operand)
        return (c, r)

    def _infer_Chain(self, node):
        shape = self.infer(node.first)
        left = node.first
        for op, operand, pos in node.rest:
            shape = self.binary(op, left, shape, operand, self.infer(operand), pos)
            left = S.BinOp(op, left, operand, pos)
        return shape

    def _infer_BinOp(self, node):
        a = self.infer(node.left)
        b = self.infer(node.right)
        return self.binary(node.op, node.left, a, node.right, b, node.pos)

    def binary(self, op, left, a, right, b, pos):
        if op in ("+", "-", ".*", "./"):
            if self.definitely_scalar(a) and not self.definitely_scalar(b):
                return b
            if self.definitely_scalar(b) and not self.definitely_scalar(a):
                return a
            if self.try_unify((a[0], b[0]), (a[1], b[1])):
                return a
            verb = {"+": "add", "-": "subtract", ".*": "multiply elementwise", "./": "divide elementwise"}[op]
            raise ShapeError(
                f"cannot {verb} {_src(left)} ({self.show(a)}) and {_src(right)} ({self.show(b)}) with '{op}': "
                "the shapes differ", *pos,
                hint="operands of '+', '-', '.*', './' need the same shape (or one of them a scalar)")
        if op == "*":
            if self.definitely_scalar(a):
                return b
            if self.definitely_scalar(b):
                return a
            # an undeclared lower-case name before a row vector is a scalar factor, as in
            # 'lambda * x' * x' (a penalty), not the left half of an outer product
            if self._open_lowercase(left, a) and self.u.is_one(b[0]) and not self.u.is_one(b[1]) \
                    and self.try_unify((a[0], ONE)):
                return b
            # a product that would force an unknown dimension to 1 is less likely meant than a
            # scalar factor: 'c * A' with c undeclared is a scalar times A, not a row of A
            if not self._collapses(a[1], b[0]) and self.try_unify((a[1], b[0])):
                return (a[0], b[1])
            if self.try_unify((a[0], ONE), (a[1], ONE)):
                return b
            if self.try_unify((b[0], ONE), (b[1], ONE)):
                return a
            if self.try_unify((a[1], b[0])):
                return (a[0], b[1])
            ra, ca = self.resolved(a)
            rb, cb = self.resolved(b)
            raise ShapeError(
                f"cannot multiply {_src(left)} ({self.show(a)}) by {_src(right)} ({self.show(b)}) with '*': "
                f"{_src(left)} has {_dim_text(ca)} columns but {_src(right)} has {_dim_text(rb)} rows", *pos,
                hint=_multiply_hint(ra, ca, rb, cb))
        if op == "/":
            if not self.try_unify((b[0], ONE), (b[1], ONE)):
                raise ShapeError(
                    f"cannot divide by {_src(right)} ({self.show(b)}): '/' divides by a scalar", *pos,
                    hint="use './' for elementwise division, or inv(...) for a matrix inverse")
            return a
        if op in ("^", ".^"):
            if not self.try_unify((b[0], ONE), (b[1], ONE)):
                raise ShapeError(f"the exponent {_src(right)} ({self.show(b)}) of '{op}' must be a scalar", *pos)
            if op == "^" and not self.definitely_scalar(a):
                if not self.try_unify((a[0], a[1])):
                    raise ShapeError(
                        f"'^' raises a square matrix or a scalar to a power, but {_src(left)} is {self.show(a)}",
                        *pos, hint="use '.^' for an elementwise power")
            return a
        raise AssertionError(op)  # pragma: no cover

    def _infer_Call(self, node):
        name, args = node.name, node.args
        if name not in KNOWN_FUNCTIONS:
            raise NameLookupError(
                f"unknown function '{name}'", *node.pos,
                hint="known functions: " + ", ".join(sorted(set(KNOWN_FUNCTIONS) - {"I"} - _HIGHER_ORDER))
                + ", and I(n)")
        if name in CONSTRUCTORS:
            return self._constructor(node)
        if name in PRIMARY_FUNCTIONS:
            return self._primary_function(node)
        expected = 2 if name == "kron" else 1
        if len(args) != expected:
            raise ParseError(f"{name} takes {expected} argument{'s' if expected > 1 else ''}, "
                             f"got {len(args)}", *node.pos,
                             hint="write kron(A, B)" if name == "kron" else f"write {name}(X) with one argument")
        shapes = [self.infer(a) for a in args]
        a = shapes[0]
        if name in ("tr", "det", "logdet", "inv", "adj"):
            if not self.try_unify((a[0], a[1])):
                raise ShapeError(f"{name} needs a square matrix, but {_src(args[0])} is {self.show(a)}",
                                 *node.pos, hint=_square_hint(name, _src(args[0])))
            return (ONE, ONE) if name in ("tr", "det", "logdet") else a
        if name == "diag":
            if self.u.is_one(a[1]) or self.u.is_one(a[0]):
                n = a[0] if self.u.is_one(a[1]) else a[1]
                return (n, n)
            if not self.try_unify((a[0], a[1])):
                raise ShapeError(f"diag takes a vector or a square matrix, but {_src(args[0])} is "
                                 f"{self.show(a)}", *node.pos)
            return (a[0], ONE)
        if name == "vec":
            return (a[0] * a[1], ONE)
        if name in ("sum", "norm1", "norm2"):
            return (ONE, ONE)
        if name == "kron":
            b = shapes[1]
            return (a[0] * b[0], a[1] * b[1])
        return a  # elementwise

    def _primary_function(self, node):
        """expm(X) ...; dexpm(X, E), d2expm(X, E1, E2) ...; jexpm(X), jexpm(X, E1) ... (X square,
        every direction shaped like X)."""
        name, args = node.name, node.args
        kind, fn, order = E.matfun_names()[name]
        arity = {"f": (1,), "d": (order + 1,), "j": tuple(range(1, E.MAX_FRECHET_ORDER + 1))}[kind]
        if len(args) not in arity:
            want = " to ".join(str(a) for a in (arity[0], arity[-1]) if a) if kind == "j" else str(arity[0])
            raise ParseError(f"{name} takes {want} argument{'s' if arity[-1] > 1 else ''}, got {len(args)}",
                             *node.pos, hint=_PRIMARY_HINT[kind].format(fn=fn))
        shapes = [self.infer(a) for a in args]
        a = shapes[0]
        if not self.try_unify((a[0], a[1])):
            twin = {"expm": "exp", "logm": "log", "sqrtm": "sqrt"}[fn]
            what = {"expm": "exponential", "logm": "logarithm", "sqrtm": "square root"}[fn]
            raise ShapeError(f"{name} is the matrix {what} and needs a square matrix, but {_src(args[0])} "
                             f"is {self.show(a)}", *node.pos,
                             hint=f"for the {what} of each entry use {twin}({_src(args[0])})")
        for arg, shape in zip(args[1:], shapes[1:]):
            if not self.try_unify((shape[0], a[0]), (shape[1], a[1])):
                raise ShapeError(f"the direction {_src(arg)} ({self.show(shape)}) of {name} must have the shape "
                                 f"of {_src(args[0])} ({self.show(a)})", *node.pos)
        return (a[0] * a[0], a[1] * a[1]) if kind == "j" else a

    def _constructor(self, node):
        name, args = node.name, node.args
        arity = {"I": (1,), "ones": (1, 2), "zeros": (1, 2), "commutation": (2,), "reshape": (3,)}[name]
        if len(args) not in arity:
            raise ParseError(f"{name} takes {' or '.join(map(str, arity))} argument(s), got {len(args)}",
                             *node.pos, hint=CONSTRUCTOR_USES[name])
        if name == "reshape":
            a = self.infer(args[0])
            rows, cols = self.dim_argument(args[1]), self.dim_argument(args[2])
            if not self.try_unify((a[0] * a[1], rows * cols)):
                raise ShapeError(f"cannot reshape {_src(args[0])} ({self.show(a)}) to "
                                 f"{_dim_text(rows)} x {_dim_text(cols)}: the number of entries differs",
                                 *node.pos)
            return (rows, cols)
        dims = [self.dim_argument(a) for a in args]
        if name == "I":
            return (dims[0], dims[0])
        if name == "commutation":
            return (dims[0] * dims[1], dims[0] * dims[1])
        return (dims[0], dims[1] if len(dims) > 1 else ONE)

    def dim_argument(self, node) -> Dim:
        """A dimension written as an argument: n, 3, m*n."""
        if isinstance(node, S.Number) and node.text.isdigit() and int(node.text) > 0:
            if len(node.text.lstrip("0")) > S.MAX_DIM_DIGITS:
                raise ParseError(f"dimension {_short(node.text, 20)} is too large: the limit is "
                                 f"{10 ** S.MAX_DIM_DIGITS - 1:,}", *node.pos,
                                 hint="use a dimension name such as n for a large size")
            return Dim(int(node.text))
        if isinstance(node, S.Name) and node.name != "I":
            self.rigid_dims.add(node.name)
            return Dim.of(node.name)
        if isinstance(node, S.Chain) and all(op == "*" for op, _, _ in node.rest):
            d = self.dim_argument(node.first)
            for _, operand, _ in node.rest:
                d = d * self.dim_argument(operand)
            return d
        if isinstance(node, S.BinOp) and node.op == "^" and isinstance(node.right, S.Number) \
                and node.right.text.isdigit():
            base = self.dim_argument(node.left)
            if len(node.right.text) > 4 or int(node.right.text) > S.MAX_DIM_EXPONENT:
                raise ParseError(f"dimension power {_short(node.right.text, 20)} is too large: the limit "
                                 f"is {S.MAX_DIM_EXPONENT}", *node.right.pos,
                                 hint="name the dimension instead, e.g. ones(N)")
            d = Dim(1)
            for _ in range(int(node.right.text)):
                d = d * base
            return d
        raise ParseError(f"expected a dimension (a name such as n, a positive integer, or a product m*n), "
                         f"got {_src(node)}", *_position(node))


_PRIMARY_HINT = {
    "f": "{fn}(X) takes one square matrix",
    "d": "d{fn}(X, E) is the Frechet derivative of {fn} at X in the direction E; d2{fn}(X, E1, E2) the second",
    "j": "j{fn}(X) is the matrix of E -> d{fn}(X, E); j{fn}(X, E1) that of E -> d2{fn}(X, E1, E)",
}


def _multiply_hint(ra, ca, rb, cb) -> str:
    if ca == cb and ra != rb:
        return "did you mean to transpose the right operand?"
    if ra == rb:
        return "did you mean to transpose the left operand (x' * y)?"
    return "'*' is the matrix product; use '.*' for the elementwise product"


def _dim_text(d: Dim) -> str:
    text = str(d)
    return "?" if text.startswith("?") else text


def _position(node):
    pos = getattr(node, "pos", None)
    return pos if pos else (None, None)


def _src(node, limit: int = 40) -> str:
    """Print a syntax node back, short, to name an operand in an error message."""
    text = _syntax_text(node, limit * 2)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _syntax_text(node, budget: int) -> str:
    if budget <= 0:
        return "..."
    if isinstance(node, S.Number):
        return node.text
    if isinstance(node, S.Name):
        return node.name
    if isinstance(node, S.Call):
        return f"{node.name}(" + ", ".join(_syntax_text(a, budget // 2) for a in node.args) + ")"
    if isinstance(node, S.Transpose):
        inner = _syntax_text(node.operand, budget - 1)
        return inner + "'" if isinstance(node.operand, (S.Name, S.Call, S.Transpose)) else f"({inner})'"
    if isinstance(node, S.Neg):
        return "-" + _syntax_text(node.operand, budget - 1)
    if isinstance(node, S.BinOp):
        sep = f" {node.op} " if node.op in ("+", "-", "*", "/", ".*", "./") else node.op
        return _syntax_text(node.left, budget // 2) + sep + _syntax_text(node.right, budget // 2)
    if isinstance(node, S.Chain):
        out = _syntax_text(node.first, budget // 2)
        for op, operand, _ in node.rest:
            if len(out) > budget:
                return out + " ..."
            out += f" {op} " + _syntax_text(operand, budget // 2)
        return "(" + out + ")" if any(op in "+-" for op, _, _ in node.rest) else out
    return "?"


# --- pass 2: IR -----------------------------------------------------------------------------

def check(program: S.Program) -> Typed:
    """Shape-check a parsed program and build its IR."""
    inf = _Inference(program)
    # declarations hold for the whole program, wherever they stand ('y = x' * x; x: vector(n); y');
    # definitions are read in order, each using the names before it
    for statement in program.declarations:
        if isinstance(statement, S.Declaration):
            inf.declare(statement)
    for statement in program.declarations:
        if isinstance(statement, S.Definition):
            inf.define(statement)
    inf.infer(program.expression)
    _check_names_apart(inf)
    names = _name_free_dims(inf)
    _refuse_open_products(inf, names, program)
    builder = _Builder(inf, names)
    expression = builder.build(program.expression)
    definitions = {name: builder.build_definition(name) for name in inf.definitions}
    return Typed(expression, builder.symbols, program.source, builder.variables, definitions)


def _refuse_open_products(inf: _Inference, names: dict, program) -> None:
    """An equation between products of unknown dimensions (p*r = m*n, from x' * kron(A, B) * x)
    has no single solution that shapes can record; say which dimensions must agree rather than
    go on with shapes that are only right when they do."""
    open_equations = []
    for a, b in inf.u.pending:
        a, b = _cancel(inf.u.resolve(a), inf.u.resolve(b))
        if a != b:
            open_equations.append((a.substitute(names), b.substitute(names), a.symbols | b.symbols))
    if not open_equations:
        return
    a, b, unknowns = open_equations[0]
    involved = [name for name, sym in inf.symbols.items()
                if any(unknowns & d.symbols for d in inf.resolved(sym.shape))]
    shapes = ", ".join(f"{name}: {_dim_text(inf.resolved(inf.symbols[name].shape)[0].substitute(names))} x "
                       f"{_dim_text(inf.resolved(inf.symbols[name].shape)[1].substitute(names))}"
                       for name in involved)
    raise ShapeError(f"the shapes fit only if {_dim_text(a)} = {_dim_text(b)} (with {shapes}): "
                     "an equation between products of dimensions, which matcalc does not solve",
                     hint="declare " + (", ".join(involved) or "the names") +
                          " with dimensions that make the products equal").at(_position(program.expression))


def _check_names_apart(inf: _Inference) -> None:
    """A name is a variable or a dimension, not both: in 'm: scalar; ones(m)' the size of ones(m)
    and the value of m would be one argument of the generated code, and m = 2.5 no size."""
    dims = set(inf.rigid_dims)
    for sym in inf.symbols.values():
        for d in inf.resolved(sym.shape):
            dims |= {s for s in d.symbols if not s.startswith("?")}
    for name, sym in inf.symbols.items():
        if name in dims:
            raise NameLookupError(f"'{name}' is used both as a variable and as a dimension", *(sym.pos or ()),
                                  hint=f"rename one of them, e.g. the dimension '{name}' to '{name}_' or "
                                       f"'N{name}'")


def _name_free_dims(inf: _Inference) -> dict:
    """Give every unknown dimension that use left open a readable name."""
    used = set(inf.rigid_dims) | set(inf.symbols)   # a dimension never takes a variable's name
    for sym in inf.symbols.values():
        for d in inf.resolved(sym.shape):
            used |= {s for s in d.symbols if not s.startswith("?")}
    names: dict = {}
    pool = (n for n in itertools.chain(PREFERRED_DIM_NAMES, (f"n{i}" for i in itertools.count(1)))
            if n not in used)
    # unknowns of undeclared names, in order of first appearance, get names
    for sym in inf.symbols.values():
        for d in inf.resolved(sym.shape):
            for s in sorted(d.symbols):
                if s.startswith("?") and s not in names:
                    names[s] = Dim.of(next(pool))
    return names


class _Builder:
    def __init__(self, inf: _Inference, free_names: dict):
        self.inf = inf
        self.free_names = free_names
        self.symbols: dict = {}
        self.variables: dict = {}
        self.defined: dict = {}   # name -> IR of its definition, built once (shared in the tree)
        for name, sym in inf.symbols.items():
            shape = tuple(self.dim(d) for d in sym.shape)
            self.symbols[name] = Symbol(name, shape, sym.declared, sym.symmetric, sym.pos)

    def dim(self, d: Dim, pos=None) -> Dim:
        d = self.inf.u.resolve(d).substitute(self.free_names)
        if any(s.startswith("?") for s in d.symbols):
            raise ShapeError("cannot tell the size here from how it is used", *(pos or (None, None)),
                             hint="write the size explicitly, e.g. I(n) instead of I")
        return d

    def var(self, name: str) -> E.Var:
        if name not in self.variables:
            sym = self.symbols[name]
            self.variables[name] = E.Var(name, sym.shape, sym.symmetric)
        return self.variables[name]

    def build(self, node) -> E.Expr:
        try:
            return getattr(self, "_build_" + type(node).__name__)(node)
        except MathError as e:   # a constant out of range or undefined: point at where it is made
            raise e.at(getattr(node, "pos", None))

    def _build_Number(self, node):
        text = node.text
        out_of_range = ParseError(f"number {_short(text)} is out of range: numbers are at most about "
                                  "1.8e308 and, unless 0, at least about 2.2e-308 in size", *node.pos,
                                  hint="rescale the constants in the expression")
        # exact (0.1 * 0.1 is 0.01, 1e-400 is not 0); an exponent far outside the range of doubles
        # is refused before 10^exponent is ever formed
        exponent = text.lower().split("e")[1] if "e" in text.lower() else "0"
        if len(exponent.lstrip("+-0")) > 5 or abs(int(exponent)) > 400 + len(text):
            raise out_of_range
        try:
            return E.Num(Fraction(text))
        except (MathError, ValueError):   # ValueError: more digits than Python converts
            raise out_of_range from None

    def _build_Name(self, node):
        if node.name == "I":
            return E.identity(self.dim(self.inf.identity_sizes[id(node)], node.pos))
        if node.name in self.inf.definitions:
            return self.build_definition(node.name)
        return self.var(node.name)

    def build_definition(self, name: str) -> E.Expr:
        if name not in self.defined:
            self.defined[name] = self.build(self.inf.definitions[name].expression)
        return self.defined[name]

    def _build_Neg(self, node):
        return E.neg(self.build(node.operand))

    def _build_Transpose(self, node):
        return E.transpose(self.build(node.operand))

    def _build_Chain(self, node):
        if node.rest[0][0] in ("+", "-"):
            # a sum is built in one go: folding term by term would rebuild it at every '+'
            terms = [self.build(node.first)]
            for op, operand, _pos in node.rest:
                t = self.build(operand)
                terms.append(t if op == "+" else E.neg(t))
            shape = next((t.shape for t in terms if not t.is_scalar), terms[0].shape)
            return E.add(*[E.mul(t, E.Ones(shape)) if t.shape != shape else t for t in terms])
        result = self.build(node.first)
        for op, operand, pos in node.rest:
            result = self.binary(op, result, self.build(operand), pos)
        return result

    def _build_BinOp(self, node):
        return self.binary(node.op, self.build(node.left), self.build(node.right), node.pos)

    def binary(self, op, a: E.Expr, b: E.Expr, pos) -> E.Expr:
        if op in ("+", "-"):
            a, b = _broadcast(a, b)
            return E.add(a, b) if op == "+" else E.sub(a, b)
        if op == "*":
            return E.mul(a, b) if (a.is_scalar or b.is_scalar) else E.matmul(a, b)
        if op in ("/", "./") and E.is_zero(b):
            raise MathError("division by zero", *pos)
        if op == "/":
            return E.mul(a, E.power(b, E.Num(-1)))
        if op == ".*":
            return E.mul(a, b) if (a.is_scalar or b.is_scalar) else E.hadamard(a, b)
        if op == "./":
            inv_b = E.power(b, E.Num(-1))
            return E.mul(a, inv_b) if (a.is_scalar or b.is_scalar) else E.hadamard(a, inv_b)
        if op == ".^":
            return E.power(a, b)
        if op == "^":
            if a.is_scalar:
                return E.power(a, b)
            k = int(b.value) if isinstance(b, E.Num) and float(b.value).is_integer() else None
            if k is None:
                raise ShapeError("a matrix power needs an integer exponent such as 2 or -1", *pos,
                                 hint="use '.^' for an elementwise power, or a scalar base")
            if abs(k) > 64:
                raise ShapeError(f"matrix power {k} is too large (at most 64)", *pos)
            return E.matpow(a, k)
        raise AssertionError(op)  # pragma: no cover

    def _build_Call(self, node):
        name = node.name
        if name in CONSTRUCTORS:
            return self._build_constructor(node)
        args = [self.build(a) for a in node.args]
        a = args[0]
        simple = {"tr": E.trace, "det": E.det, "logdet": E.logdet, "inv": E.inverse, "adj": E.adj,
                  "vec": E.vec, "sum": E.sum_, "norm1": E.norm1, "norm2": E.norm2}
        if name in simple:
            return simple[name](a)
        if name == "diag":
            if a.cols == 1 or a.rows == 1:
                return E.diag(E.vec(a))
            return E.diag_part(a)
        if name == "kron":
            return E.kron(a, args[1])
        if name in PRIMARY_FUNCTIONS:
            kind, fn, _ = E.matfun_names()[name]
            if kind == "f":
                return E.matfun(fn, a)
            return (E.frechet if kind == "d" else E.frechet_matrix)(fn, a, args[1:])
        return E.elementwise(name, a)

    def _build_constructor(self, node):
        name = node.name
        if name == "reshape":
            arg = self.build(node.args[0])
            rows = self.dim(self.inf.dim_argument(node.args[1]))
            cols = self.dim(self.inf.dim_argument(node.args[2]))
            return E.reshape(arg, rows, cols)
        dims = [self.dim(self.inf.dim_argument(a)) for a in node.args]
        if name == "I":
            return E.identity(dims[0])
        if name == "commutation":
            return E.commutation(dims[0], dims[1])
        shape = (dims[0], dims[1] if len(dims) > 1 else ONE)
        return E.ones(shape) if name == "ones" else E.zero(shape)


def _short(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _broadcast(a: E.Expr, b: E.Expr):
    """A scalar added to a matrix is added to every entry."""
    if a.shape == b.shape:
        return a, b
    if a.is_scalar:
        return E.mul(a, E.Ones(b.shape)), b
    if b.is_scalar:
        return a, E.mul(b, E.Ones(a.shape))
    raise AssertionError("shapes were checked")  # pragma: no cover
