"""Grammar -> syntax tree.  The parser is the stand-alone one generated from the grammar
(``matcalc_cli/_lalr_parser.py``, see build_parser.py); when that is missing or was built from
another grammar, a Lark parser is built once per process and its tables cached on disk."""

from __future__ import annotations

import os
import re
from functools import lru_cache

from .errors import ParseError

MAX_NESTING = 200          # parentheses
MAX_TREE_DEPTH = 600       # syntax tree levels (a function call takes two)
MAX_LENGTH = 1_000_000
MAX_DIM_EXPONENT = 64      # n^k in a declaration (budget.MAX_DIM_EXPONENT)
MAX_DIM_DIGITS = 9         # an integer dimension such as vector(3) is below 10^9


# --- syntax tree ------------------------------------------------------------------------------
# Positions are (line, column), 1-based, of the token that names the node.

class _Node:
    """A frozen record compared by value (what @dataclass(frozen=True) gives, without its start-up
    cost: it compiles several methods per class, a millisecond or so each time matcalc starts)."""

    __slots__ = ()

    def __init__(self, *args, **kwargs):
        names = self.__slots__
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__} takes {len(names)} fields")
        values = dict(zip(names, args))
        for name, value in kwargs.items():
            if name not in names or name in values:
                raise TypeError(f"{type(self).__name__}: unexpected or repeated field {name!r}")
            values[name] = value
        if len(values) != len(names):
            raise TypeError(f"{type(self).__name__}: missing " + ", ".join(n for n in names if n not in values))
        for name in names:
            object.__setattr__(self, name, values[name])

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is frozen")

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other):
        return type(other) is type(self) and other._values() == self._values()

    def __hash__(self):
        return hash((type(self).__name__,) + self._values())

    def __repr__(self):
        return f"{type(self).__name__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"

    def __reduce__(self):   # pickle and copy rebuild through __init__ (attributes cannot be set)
        return type(self), self._values()


class Number(_Node):
    __slots__ = ("text", "pos")


class Name(_Node):
    __slots__ = ("name", "pos")


class Call(_Node):
    __slots__ = ("name", "args", "pos")


class Chain(_Node):
    """A flat left-to-right chain: ``first (op operand)*`` for sums and for products;
    rest is ((op, operand, pos), ...)."""
    __slots__ = ("first", "rest", "pos")


class BinOp(_Node):
    __slots__ = ("op", "left", "right", "pos")


class Neg(_Node):
    __slots__ = ("operand", "pos")


class Transpose(_Node):
    __slots__ = ("operand", "pos")


class Declaration(_Node):
    """names: ((name, pos), ...); kind: scalar | vector | matrix | symmetric; dims: each a tuple
    of factors (str or int), e.g. ("m", "n") for m*n."""
    __slots__ = ("names", "kind", "dims", "pos")


class Definition(_Node):
    """``name = expr``: a name for a subexpression, used by the statements after it."""
    __slots__ = ("name", "expression", "pos")


class Program(_Node):
    """declarations: Declaration and Definition statements, in order."""
    __slots__ = ("declarations", "expression", "source")


# --- parser -----------------------------------------------------------------------------------

def grammar_path() -> str:
    """The grammar ships inside the package (wheel); a source checkout has it in grammar/."""
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.path.join(here, "grammar", "matcalc.lark"),
                      os.path.join(os.path.dirname(here), "grammar", "matcalc.lark")):
        if os.path.exists(candidate):
            return candidate
    raise FileNotFoundError("matcalc.lark not found: the package is incomplete")


_PARSER_OPTIONS = dict(parser="lalr", propagate_positions=False, maybe_placeholders=True)


def _parser():
    """The LALR parser (built once per process)."""
    return _frontend()[0]


@lru_cache(maxsize=1)
def _frontend():
    """(the LALR parser, a namespace with the Token and Unexpected* classes of its runtime).

    The stand-alone module, when it was generated from this very grammar: no ``import lark``, the
    tables are literals of a compiled module.  Else lark's parser, loaded from the user's private
    cache or built (and cached) here.  Nothing loadable is kept in a shared directory: the cache
    holds the parse tables as JSON (data, never code) in a directory only this user can write, and
    is keyed by a hash of the grammar and the lark version, so an edited grammar or a new lark
    rebuilds it."""
    with open(grammar_path(), encoding="utf-8") as fh:
        grammar = fh.read()
    standalone = _standalone_for(grammar)
    if standalone is not None:
        return standalone.Lark_StandAlone(), standalone
    import types

    import lark
    from lark import Lark, exceptions

    from . import parser_cache
    parser = parser_cache.load(grammar)
    if parser is None:
        parser = Lark(grammar, **_PARSER_OPTIONS)
        parser_cache.store(grammar, parser)
    runtime = types.SimpleNamespace(Token=lark.Token, **{name: getattr(exceptions, name) for name in (
        "UnexpectedCharacters", "UnexpectedEOF", "UnexpectedInput", "UnexpectedToken")})
    return parser, runtime


def _standalone_for(grammar: str):
    """The generated parser module if it was built from ``grammar``, else None."""
    if os.environ.get("MATCALC_LARK_PARSER"):   # to test (and compare with) the lark path
        return None
    try:
        from . import _lalr_parser
    except ImportError:
        return None
    return _lalr_parser if getattr(_lalr_parser, "GRAMMAR", None) == grammar else None


def _check_limits(text: str) -> None:
    if len(text) > MAX_LENGTH:
        raise ParseError(f"program is {len(text)} characters long; the limit is {MAX_LENGTH}")
    depth, line, col = 0, 1, 0
    for ch in text:
        col += 1
        if ch == "\n":
            line, col = line + 1, 0
        elif ch == "(":
            depth += 1
            if depth > MAX_NESTING:
                raise ParseError(f"parentheses nested more than {MAX_NESTING} deep", line, col,
                                 hint="split the expression or remove redundant parentheses")
        elif ch == ")":
            depth = max(0, depth - 1)


def parse(text: str) -> Program:
    """Parse a program into declarations and one expression, or raise ParseError."""
    runtime = _frontend()[1]
    UnexpectedCharacters, UnexpectedEOF = runtime.UnexpectedCharacters, runtime.UnexpectedEOF
    UnexpectedInput, UnexpectedToken = runtime.UnexpectedInput, runtime.UnexpectedToken

    _check_limits(text)
    if not re.sub(r"#[^\n]*", "", text).strip(" \t\r\n\f;"):
        raise ParseError("the program is empty: there is no expression to differentiate", 1, 1,
                         hint="write declarations and an expression, e.g. x: vector(n); x' * x")
    try:
        tree = _parser().parse(text)
    except UnexpectedCharacters as e:
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else ""
        shown = repr(ch) if ch.isprintable() and ch not in " \t" else f"U+{ord(ch):04X}" if ch else "end of input"
        raise ParseError(f"unexpected character {shown}", e.line, e.column,
                         hint=_hint_for_character(ch)) from None
    except UnexpectedToken as e:
        tok = e.token
        if tok.type == "$END":
            line, col = _end_position(text)
            raise ParseError("unexpected end of input", line, col,
                             hint="the expression is incomplete (a missing operand or ')'?)") from None
        raise ParseError(f"unexpected {_describe_token(tok)}", tok.line, tok.column,
                         hint=_hint_for_token(tok, e.expected)) from None
    except UnexpectedEOF:
        line, col = _end_position(text)
        raise ParseError("unexpected end of input", line, col) from None
    except UnexpectedInput as e:  # pragma: no cover - other lark errors
        raise ParseError(str(e).split("\n")[0], getattr(e, "line", None), getattr(e, "column", None)) from None
    return _build_program(tree, text)


def _end_position(text: str):
    lines = text.rstrip().split("\n") if text.strip() else [""]
    return len(lines), len(lines[-1]) + 1


def _describe_token(tok) -> str:
    value = str(tok)
    if tok.type in ("_SEP",):
        return "end of statement" if value != "\n" else "end of line"
    return f"'{value}'"


def _hint_for_character(ch: str) -> str | None:
    if ch == "@":
        return "a matrix product is written with '*' (A * x); '.*' is the elementwise product"
    if ch in "[]{}":
        return "matcalc has no array literals; declare shapes such as 'A: matrix(n, n)'"
    if ch == '"':
        return "there are no strings; transpose is written with a single quote: x'"
    if not ch.isascii():
        return "names use ASCII letters, digits and '_' (write lambda, not the Greek letter)"
    return None


SHAPE_KINDS = ("scalar", "vector", "matrix", "symmetric")


def _hint_for_token(tok, expected) -> str | None:
    expected = set(expected or ())
    if tok.type == "NAME" and "VECTOR" in expected:       # a misspelt shape: x: vectr(n)
        import difflib
        close = difflib.get_close_matches(str(tok), SHAPE_KINDS, n=1)
        known = "a shape is scalar, vector(d), matrix(d1, d2) or symmetric(d)"
        return f"did you mean '{close[0]}'? {known}" if close else known
    if tok.type == "RPAR" and expected == {"COMMA"}:      # matrix(n)
        return "matrix takes two dimensions, rows and columns: matrix(m, n) (a column vector is vector(n))"
    if tok.type == "COMMA" and expected == {"RPAR"}:      # vector(n, m), symmetric(n, n)
        return "vector(d) and symmetric(d) take one dimension; a rectangular matrix is matrix(m, n)"
    if tok.type == "_SEP" and "RPAR" in expected:
        return "a '(' is not closed before the end of the statement"
    if tok.type == "RPAR":
        return "a ')' without a matching '(' or with nothing before it"
    if tok.type == "STAR" and "NAME" in expected:         # x ** 2, x * * y
        return "'*' needs an operand on each side; a power is written x^2 (x.^2 elementwise)"
    if tok.type == "EQUAL":
        return ("there are no comparisons or assignments inside an expression; "
                "a definition names a subexpression on its own statement: r = A * x - b; norm2(r)^2")
    if tok.type in ("NAME", "NUMBER", "LPAR") and expected == {"_SEP"}:   # x: vector(n) x' * x
        return "separate statements with ';' or a new line: x: vector(n); x' * x"
    if tok.type in ("MUL_OP", "POW_OP", "STAR") or (tok.type == "ADD_OP" and str(tok) == "+"):
        return f"'{tok}' needs an operand on each side"
    if tok.type in ("NAME", "NUMBER", "LPAR") and ("MUL_OP" in expected or "ADD_OP" in expected):
        return "two operands in a row: use '*' for products (x' * A * x)"
    if tok.type == "COLON":
        return "a declaration reads 'x: vector(n)' and must come before the expression"
    return None


def _short_token(tok, limit: int = 20) -> str:
    text = str(tok)
    return text if len(text) <= limit else text[:limit] + "..."


def _pos(tok) -> tuple:
    return (tok.line, tok.column)


def _build_program(tree, text: str) -> Program:
    """Turn lark's tree into the syntax tree, iteratively over statements."""
    declarations, expressions = [], []
    for stmt in tree.children:
        kind = getattr(stmt, "data", None)
        if kind == "declaration":
            if expressions:
                break
            declarations.append(_declaration(stmt))
        elif kind == "definition":
            if expressions:
                break
            name = stmt.children[0]
            declarations.append(Definition(str(name), _expression(stmt.children[1]), _pos(name)))
        else:
            expressions.append(stmt)
    if not expressions:
        line, col = _end_position(text)
        raise ParseError("the program has no expression to differentiate", line, col,
                         hint="end the program with an expression, e.g. x: vector(n); x' * x")
    if len(expressions) > 1:
        line, col = _first_position(expressions[1])
        raise ParseError("a program has exactly one expression, after the declarations", line, col,
                         hint="separate declarations with ';' and write one expression last")
    expr_tree = expressions[0]
    last = tree.children[-1]
    if last is not expr_tree:
        line, col = _first_position(last)
        raise ParseError("declarations and definitions must come before the expression", line, col)
    return Program(tuple(declarations), _expression(expr_tree), text)


def _first_position(node):
    Token = _frontend()[1].Token

    stack = [node]
    while stack:
        n = stack.pop(0)
        if isinstance(n, Token):
            return n.line, n.column
        if n is not None:
            stack[0:0] = list(n.children)
    return None, None


def _declaration(node) -> Declaration:
    names = []
    type_node = None
    for child in node.children:
        if getattr(child, "type", None) == "NAME":
            names.append((str(child), _pos(child)))
        else:
            type_node = child
    kind = type_node.data.replace("_type", "")
    dims = []
    kw = type_node.children[0]
    for dim_node in type_node.children[1:]:
        factors = []
        for t in dim_node.children:
            if getattr(t, "data", None) == "dim_power":   # n^2 is n*n
                name, power = t.children
                if len(str(power)) > 4 or int(power) > MAX_DIM_EXPONENT:
                    raise ParseError(f"dimension power {_short_token(power)} is too large: the limit is "
                                     f"{name}^{MAX_DIM_EXPONENT}", *_pos(power),
                                     hint="name the dimension instead, e.g. vector(N) with N standing "
                                          f"for {name}^k")
                factors.extend([str(name)] * int(power))
            else:
                if t.type == "INT" and len(str(t).lstrip("0")) > MAX_DIM_DIGITS:
                    raise ParseError(f"dimension {_short_token(t)} is too large: the limit is "
                                     f"{10 ** MAX_DIM_DIGITS - 1:,}", *_pos(t),
                                     hint="use a dimension name such as n for a large size")
                factors.append(int(t) if t.type == "INT" else str(t))
        first = dim_node.children[0]
        dims.append((tuple(factors), _pos(first.children[0] if hasattr(first, "children") else first)))
    return Declaration(tuple(names), kind, tuple(dims), _pos(kw))


def _expression(root):
    """Convert an expression subtree with an explicit stack (no recursion limit issues)."""
    Token = _frontend()[1].Token

    # post-order traversal with an explicit stack; depth is bounded so later stages may recurse
    out, depth = {}, {}
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if isinstance(node, Token):
            out[id(node)] = node
            depth[id(node)] = 0
            continue
        if not done:
            stack.append((node, True))
            for c in node.children:
                if c is not None:
                    stack.append((c, False))
            continue
        d = 1 + max((depth[id(c)] for c in node.children if c is not None), default=0)
        if d > MAX_TREE_DEPTH:
            line, col = _first_position(node)
            raise ParseError(f"expression nested more than {MAX_TREE_DEPTH} levels deep", line, col,
                             hint="simplify the expression: long chains of unary minus or transposes nest too")
        depth[id(node)] = d
        out[id(node)] = _convert(node, [out[id(c)] if c is not None else None for c in node.children])
    return out[id(root)]


def _convert(node, kids):
    Token = _frontend()[1].Token

    data = node.data
    if data == "number":
        tok = kids[0]
        return Number(str(tok), _pos(tok))
    if data == "name":
        tok = kids[0]
        return Name(str(tok), _pos(tok))
    if data == "call":
        tok, args = kids[0], kids[1]
        if args is None:
            args = []
        elif not isinstance(args, list):  # a single argument is inlined by the grammar
            args = [args]
        return Call(str(tok), tuple(args), _pos(tok))
    if data == "arguments":
        return list(kids)
    if data in ("sum", "product"):
        if len(kids) == 1:
            return kids[0]
        rest = tuple((str(kids[i]), kids[i + 1], _pos(kids[i])) for i in range(1, len(kids), 2))
        return Chain(kids[0], rest, _node_pos(kids[0]))
    if data == "pow":
        base, op, exponent = kids
        return BinOp(str(op), base, exponent, _pos(op))
    if data == "neg":
        operand = kids[0]
        return Neg(operand, _node_pos(operand))
    if data == "pos":
        return kids[0]
    if data == "transpose":
        return Transpose(kids[0], _node_pos(kids[0]))
    if isinstance(node, Token):  # pragma: no cover
        return node
    raise AssertionError(f"unknown syntax node {data}")


def _node_pos(n):
    return getattr(n, "pos", (None, None))
