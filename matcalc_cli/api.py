"""The public Python API: ``derive(program, wrt=...)``.  The command line is a thin layer on it.

    >>> from matcalc_cli import derive
    >>> d = derive("x: vector(n); A: matrix(n, n); x' * A * x", wrt="x", hessian=True)
    >>> d.gradient.text()
    "(A + A') * x"
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace

from . import expr as E
from . import identify
from .differential import differential_all
from .errors import MathError, UsageError
from .shapes import Typed, check
from .simplify import simplify
from .syntax import parse


@dataclass(frozen=True)
class Result:
    """One result: an expression with what it is.

    ``wrt`` names the variables the result belongs to: (x,) for a gradient or Jacobian, (x, W)
    for the Hessian block H[x, W], () for a differential in every direction.  ``key`` is its
    name in ``Derivation.results``: the kind alone ("gradient") when there is one variable,
    "gradient[x]", "hessian[x, W]" when there are several."""

    name: str            # differential | gradient | jacobian | hessian | hessian_bilinear
    label: str           # how it is introduced to a person, e.g. "f'(x)[dx]"
    expr: E.Expr
    note: str = ""
    taken: frozenset = frozenset()   # names in use, which shared subexpressions must not take
    wrt: tuple = ()
    key: str = ""
    shown: E.Expr | None = None      # the printed form, when it differs from ``expr``

    def __post_init__(self):
        if not self.key:
            object.__setattr__(self, "key", self.name)

    @property
    def printed(self) -> E.Expr:
        """What is printed: ``expr``, or the form people write when that holds only for invertible
        matrices (det(X) * inv(X')); ``expr`` itself, which the generated code and --check
        evaluate, is valid wherever the derivative exists."""
        return self.expr if self.shown is None else self.shown

    def text(self) -> str:
        """The result in the input language; a large one names what it repeats (t1 = ...; ...)."""
        from .render.share import shared_text
        from .render.text import to_text
        return shared_text(self.printed, self.taken, to_text)

    def latex(self, style: str | None = None) -> str:
        """The result in LaTeX: a math fragment; with ``style`` "inline" as $...$, with
        "equation" in an equation* (a long result broken across lines)."""
        from .render.latex import result_latex, shared_latex
        if style is None:
            return shared_latex(self.printed, self.taken)
        return result_latex(self, style)

    def _repr_latex_(self) -> str:
        """Jupyter shows the result typeset."""
        return "$\\displaystyle " + self.latex() + "$"

    @property
    def shape(self):
        return self.expr.shape


@dataclass(frozen=True)
class Variable:
    """A variable differentiated against, with its directions: dx (first) and dx2 (second)."""

    x: E.Var
    dx: E.Var
    dx2: E.Var

    @property
    def name(self) -> str:
        return self.x.name


# single-variable attributes, and what to use instead when there are several variables
_SINGLE = {"x": "variables[i].x", "dx": "variables[i].dx", "dx2": "variables[i].dx2",
           "gradient": "gradients[name]", "jacobian": "jacobians[name]", "hessian": "hessians[a, b]"}
RESULT_KINDS = ("differential", "gradient", "jacobian", "hessian", "hessian_bilinear")


@dataclass
class Derivation:
    """Everything matcalc computed for one program.

    Against one variable: ``x``, ``dx``, ``dx2`` and the results as attributes (``d.gradient``).
    Against several: ``variables`` in --wrt order, and ``gradients``, ``jacobians`` (by name),
    ``hessians`` (by pair of names); every format iterates over ``results`` (key -> Result)."""

    typed: Typed
    wrt: str                      # "x", or "x,W" for several variables
    variables: tuple              # Variable, in --wrt order
    layout: str
    results: dict = field(default_factory=dict)   # key -> Result, in display order
    parts: dict = field(default_factory=dict)     # name -> Result: the differential's part in each direction
    steps: list | None = None                     # with derive(..., steps=True): steps.Step list

    @property
    def expression(self) -> E.Expr:
        return self.typed.expression

    @property
    def shapes(self) -> dict:
        return {name: sym.shape for name, sym in self.typed.symbols.items()}

    @property
    def several(self) -> bool:
        return len(self.variables) > 1

    @property
    def wrts(self) -> tuple:
        return tuple(v.name for v in self.variables)

    @property
    def directions(self) -> list:
        """(direction, variable) for every direction: the first ones, then the second ones."""
        return [(v.dx, v.x) for v in self.variables] + [(v.dx2, v.x) for v in self.variables]

    def differential_part(self, name: str) -> Result:
        """The part of the differential in the direction of variable ``name`` (all of it for one variable)."""
        return self.parts[name] if self.several else self.results["differential"]

    def blocks(self, kind: str) -> dict:
        """The results of one kind by the variables they belong to: {("x",): ..., ("W",): ...}."""
        return {r.wrt: r for r in self.results.values() if r.name == kind}

    @property
    def gradients(self) -> dict:
        return {wrt[0]: r for wrt, r in self.blocks("gradient").items()}

    @property
    def jacobians(self) -> dict:
        return {wrt[0]: r for wrt, r in self.blocks("jacobian").items()}

    @property
    def hessians(self) -> dict:
        return self.blocks("hessian")

    def __getattr__(self, name):
        variables = self.__dict__.get("variables", ())
        results = self.__dict__.get("results", {})
        if name in _SINGLE and len(variables) > 1:
            raise AttributeError(f"{name}: the derivation is against several variables "
                                 f"({', '.join(v.name for v in variables)}); use .{_SINGLE[name]}")
        if name in ("x", "dx", "dx2") and variables:
            return getattr(variables[0], name)
        if name in results:
            return results[name]
        if name in RESULT_KINDS:
            return None
        raise AttributeError(name)

    def text(self) -> str:
        return "\n".join(f"{r.label} = {r.text()}" for r in self.results.values())

    def latex(self, style: str = "align", width=None, transpose: str = "top") -> str:
        """The ``--format latex`` output: ``style`` align, inline, equation or document;
        ``width`` the line width (characters, or a length such as "8.5cm"); ``transpose`` top, T
        or prime."""
        from .render.latex import LatexOptions, render_latex
        return render_latex(self, LatexOptions.parse(style, width, transpose))

    def _repr_latex_(self) -> str:
        """Jupyter shows the results typeset, in one align* block."""
        from .render.latex import notebook_latex
        return notebook_latex(self)


def choose_wrt(typed: Typed, wrt: str | None) -> str:
    names = list(typed.variables)
    if wrt is not None:
        if wrt in typed.definitions:
            raise UsageError(f"--wrt {wrt}: '{wrt}' is a definition, not a variable",
                             hint="differentiate against a variable: " + (", ".join(names) or "none"))
        if wrt not in typed.symbols:
            raise UsageError(f"--wrt {wrt}: there is no '{wrt}' in the program",
                             hint="names in the program: " + (", ".join(names) or "none"))
        return wrt
    if len(names) == 1:
        return names[0]
    if not names:
        raise UsageError("the expression has no variable to differentiate against")
    raise UsageError("say which variable to differentiate against with --wrt",
                     hint="names in the program: " + ", ".join(names))


def choose_wrts(typed: Typed, wrt) -> list:
    """The variables asked for, in order: ``wrt`` is a name, "x,W", "all" (every variable of the
    expression, in declaration order), a list of names, or None (the only variable)."""
    if wrt is None:
        return [choose_wrt(typed, None)]
    if isinstance(wrt, str):
        if wrt.strip() == "all" and "all" not in typed.symbols:
            names = [n for n in typed.symbols if n in typed.variables]
            if not names:
                raise UsageError("--wrt all: the expression has no variable to differentiate against")
            return names
        wrt = wrt.split(",") if "," in wrt else [wrt]
    names = [n.strip() for n in wrt]
    if not names or any(not n for n in names):
        raise UsageError(f"--wrt {','.join(names)}: an empty name in the list",
                         hint="separate names with commas, as in --wrt x,W")
    for n in names:
        if names.count(n) > 1:
            raise UsageError(f"--wrt {','.join(names)}: '{n}' is asked for twice")
    return [choose_wrt(typed, n) for n in names]


def _check_arguments(program, wrt, **options) -> None:
    """Refuse arguments of the wrong type here, naming the parameter, not deep inside."""
    if isinstance(program, (bytes, bytearray)):
        raise TypeError("derive(): program must be a str, not bytes: decode it first "
                        "(program.decode('utf-8'))")
    if not isinstance(program, str):
        raise TypeError(f"derive(): program must be a str (the matcalc program text), "
                        f"not {type(program).__name__}")
    if wrt is not None and not isinstance(wrt, str) and not (
            isinstance(wrt, (list, tuple)) and all(isinstance(n, str) for n in wrt)):
        raise TypeError(f"derive(): wrt must be a variable name (str), a list of names or None, "
                        f"not {type(wrt).__name__}")
    for name in ("gradient", "jacobian", "hessian"):
        if not isinstance(options[name], bool):
            raise TypeError(f"derive(): {name} must be True or False, not {options[name]!r}")
    for name in ("layout", "symmetric_gradient"):
        if not isinstance(options[name], str):
            raise TypeError(f"derive(): {name} must be a str, not {type(options[name]).__name__}")


def _inferred_shapes(typed: Typed) -> str:
    """' (with inferred shapes x: vector(n); ...)' when names were not declared, else ''."""
    from .render.documents import shape_text
    inferred = [f"{n}: {shape_text(s)}" for n, s in typed.symbols.items() if not s.declared]
    return f" (with inferred shapes {'; '.join(inferred)})" if inferred else ""


def _fresh_name(base: str, taken) -> str:
    name, i = base, 1
    while name in taken:
        name = f"{base}_{i}"
        i += 1
    return name


def derive(program: str, wrt=None, *, gradient: bool = False, jacobian: bool = False,
           hessian: bool = False, layout: str = "numerator",
           symmetric_gradient: str = "frobenius", steps: bool = False) -> Derivation:
    """Parse, shape-check and differentiate ``program`` against ``wrt``: one variable ("x"), or
    several ("x,W", ["x", "W"], "all") differentiated together.

    With no result asked for, the natural derivative comes with the differential: the gradient
    of a scalar function, the Jacobian of any other.  ``steps=True`` also records the derivation
    step by step (``Derivation.steps``, see ``matcalc_cli.steps``)."""
    _check_arguments(program, wrt, gradient=gradient, jacobian=jacobian, hessian=hessian,
                     layout=layout, symmetric_gradient=symmetric_gradient)
    if layout not in ("numerator", "denominator"):
        raise UsageError(f"unknown layout {layout!r}: use numerator or denominator")
    if symmetric_gradient not in ("frobenius", "cookbook"):
        raise UsageError(f"unknown symmetric gradient convention {symmetric_gradient!r}")
    # trees are at most a few hundred levels deep (syntax.MAX_TREE_DEPTH); stages recurse on them
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))
    typed = check(parse(program))
    names = choose_wrts(typed, wrt)
    f = typed.expression

    if not (gradient or jacobian or hessian):
        gradient, jacobian = f.is_scalar, not f.is_scalar
    inferred = _inferred_shapes(typed)
    if gradient and not f.is_scalar:
        raise MathError(f"the gradient needs a scalar function, but the expression is "
                        f"{f.rows} x {f.cols}{inferred}",
                        hint="use --jacobian for a vector or matrix valued function"
                             + ("; declare the names whose inferred shape is not meant" if inferred else ""))
    if hessian and not f.is_scalar:
        raise MathError(f"the Hessian needs a scalar function, but the expression is {f.rows} x {f.cols}"
                        f"{inferred}", hint="use --jacobian; the Hessian of each entry is not computed"
                        + ("; declare the names whose inferred shape is not meant" if inferred else ""))

    taken = set(typed.symbols)
    variables = []
    for name in names:
        sym = typed.symbols[name]
        x = typed.variables.get(name) or E.Var(name, sym.shape, sym.symmetric)
        dx = E.Var(_fresh_name("d" + name, taken), x.shape, x.symmetric, diff=1)
        taken.add(dx.name)
        dx2 = E.Var(_fresh_name("d" + name + "2", taken), x.shape, x.symmetric, diff=2)
        taken.add(dx2.name)
        variables.append(Variable(x, dx, dx2))
    d = Derivation(typed, ",".join(names), tuple(variables), layout)
    in_use = frozenset(taken | set(typed.definitions))
    flags = (gradient, jacobian, hessian)
    _Deriver(d, in_use, symmetric_gradient).run(*flags)
    _evaluate_det_and_adj_everywhere(d, in_use, symmetric_gradient, flags)
    if steps:
        from .steps import derivation_steps
        d.steps = derivation_steps(d)
    return d


def _evaluate_det_and_adj_everywhere(d: Derivation, in_use: frozenset, symmetric_gradient: str,
                                     flags: tuple) -> None:
    """det and adj, differentiated above as the reference text writes them (through inv, for
    invertible matrices), are differentiated again as the polynomials they are, for every
    variable and every block alike (differential, its parts, gradients, Jacobians, the second
    differential, each Hessian block H[x, W]): that form, valid at every point, becomes
    ``Result.expr`` (what --check, --verify and the generated code evaluate); the inv form stays
    what is printed, labelled, unless an inverted matrix is singular for every value."""
    inverted = []
    for v in d.variables:
        inverted += [a for a in identify.inverted_arguments(d.expression, v.x) if a not in inverted]
    if not inverted:
        return
    exact = Derivation(d.typed, d.wrt, d.variables, d.layout)
    _Deriver(exact, in_use, symmetric_gradient, everywhere=True).run(*flags)
    from .render.text import to_text
    label = ("as written, valid for invertible " + ", ".join(to_text(a) for a in inverted)
             + "; the generated code and --check use a form valid at every point (adj)")

    def valid_everywhere(r: Result, expr: E.Expr) -> Result:
        shown = identify.printed_form(r.expr, expr, inverted)
        if shown is expr:
            return replace(r, expr=expr)
        return replace(r, expr=expr, shown=shown, note="; ".join(filter(None, [r.note, label])))

    d.results = {key: valid_everywhere(r, exact.results[key].expr) for key, r in d.results.items()}
    d.parts = {name: valid_everywhere(r, exact.parts[name].expr) for name, r in d.parts.items()}


class _Deriver:
    """Fills a Derivation: one differential in every direction, split by direction; gradients and
    Jacobians from the parts; the second differential and the Hessian blocks from the gradients."""

    def __init__(self, d: Derivation, in_use: frozenset, symmetric_gradient: str,
                 everywhere: bool = False):
        """``everywhere``: differentiate det and adj as polynomials (Jacobi's formula, the
        adjugate's own derivatives), valid at singular matrices; else as the reference text does."""
        self.d, self.in_use, self.symmetric_gradient = d, in_use, symmetric_gradient
        self.everywhere = everywhere
        names = ", ".join(d.wrts)
        self.args = f"({names})"
        self.several = d.several

    def add(self, kind: str, label: str, expr: E.Expr, note: str = "", wrt: tuple = ()):
        key = f"{kind}[{', '.join(wrt)}]" if self.several and wrt else kind
        self.d.results[key] = Result(kind, label, expr, note, self.in_use, wrt, key)

    def label(self, what: str, wrt: tuple) -> str:
        """"gradient f(x)" for one variable; "gradient[x] f(x, W)" for several."""
        return f"{what}[{', '.join(wrt)}] f{self.args}" if self.several else f"{what} f{self.args}"

    def run(self, gradient: bool, jacobian: bool, hessian: bool):
        d, variables = self.d, self.d.variables
        f = d.expression
        # one pass over f in every direction; split, each part brought to canonical form alone
        parts = identify.split_by_direction(differential_all(f, {v.x: v.dx for v in variables},
                                                             self.everywhere),
                                            [v.dx for v in variables])
        df = parts[0]
        dxs = ", ".join(v.dx.name for v in variables)
        if self.several:
            for v, part in zip(variables, parts):
                # the part in dx is the differential with every other direction zero: f'(x, W)[dx, 0]
                only = ", ".join(w.dx.name if w is v else "0" for w in variables)
                d.parts[v.name] = Result("differential", f"f'{self.args}[{only}]",
                                         part, "", self.in_use, (v.name,), f"differential[{v.name}]")
            # shown as the sum of the parts, each in its canonical form
            df = E.add(*parts)
        self.add("differential", f"f'{self.args}[{dxs}]", df)
        G = {}
        if hessian:   # refused before any of the work, when too large
            identify.check_differential(df, [v.x for v in variables], "the second differential",
                                        identify.HESSIAN_HINT)
        if gradient or hessian:
            G = {v.name: identify.gradient(part, v.x, v.dx) for v, part in zip(variables, parts)}
        if gradient:
            for v in variables:
                self.add_gradient(v, G[v.name])
        if jacobian:
            for v, part in zip(variables, parts):
                J = identify.jacobian(f, part, v.x, v.dx, d.layout)
                note = "numerator layout: vec(df) = J vec(d{0})".format(v.name) if d.layout == "numerator" \
                    else "denominator layout: vec(df)' = vec(d{0})' J".format(v.name)
                self.add("jacobian", self.label("jacobian", (v.name,)), J, note, (v.name,))
        if hessian:
            self.add_hessian(df, G)

    def add_gradient(self, v: Variable, G: E.Expr):
        wrt = (v.name,)
        if v.x.symmetric and self.symmetric_gradient == "cookbook":
            label = self.label("gradient", wrt).replace("gradient", "cookbook_gradient", 1)
            self.add("gradient", label, identify.cookbook_gradient(G),
                     "Matrix Cookbook convention G + G' - I .* G for symmetric X; "
                     "not the gradient under the Frobenius inner product", wrt)
        else:
            note = "symmetric gradient: the symmetric G with <G, E> = f'(X)[E] for symmetric E" \
                if v.x.symmetric else ""
            self.add("gradient", self.label("gradient", wrt), G, note, wrt)

    def add_hessian(self, df: E.Expr, G: dict):
        variables = self.d.variables
        second = differential_all(df, {v.x: v.dx2 for v in variables}, self.everywhere)
        identify.check_step(second, "the second differential before simplification", identify.HESSIAN_HINT)
        B = simplify(second)
        if self.several:
            first = ", ".join(v.dx.name for v in variables)
            second = ", ".join(v.dx2.name for v in variables)
            self.add("hessian_bilinear", f"f''{self.args}[({first}), ({second})]", B)
        else:
            v = variables[0]
            self.add("hessian_bilinear", f"f''{self.args}[{v.dx.name}, {v.dx2.name}]", B)
        for i, v in enumerate(variables):
            later = variables[i:]
            blocks = identify.hessian_blocks(G[v.name], v.x, [(w.x, w.dx) for w in later],
                                             self.everywhere)
            for w, H in zip(later, blocks):
                if not self.several:
                    note = "vec convention: f''[dx, dx2] = vec(dx)' H vec(dx2)"
                elif w is v:
                    note = (f"vec convention: f'' contains "
                            f"vec({v.dx.name})' H[{v.name}, {v.name}] vec({v.dx2.name})")
                else:
                    note = (f"numel({v.name}) x numel({w.name}): f'' contains "
                            f"vec({v.dx.name})' H[{v.name}, {w.name}] vec({w.dx2.name}) and its transpose; "
                            f"H[{w.name}, {v.name}] = H[{v.name}, {w.name}]'")
                self.add("hessian", self.label("hessian", (v.name, w.name)), H, note, (v.name, w.name))
