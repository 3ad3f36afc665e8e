"""The public Python API: ``derive(program, wrt=...)``.  The command line is a thin layer on it.

    >>> from matcalc_cli import derive
    >>> d = derive("x: vector(n); A: matrix(n, n); x' * A * x", wrt="x", hessian=True)
    >>> d.gradient.text()
    "(A + A') * x"
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from . import expr as E
from . import identify
from .differential import differential
from .errors import MathError, UsageError
from .shapes import Typed, check
from .simplify import simplify
from .syntax import parse


@dataclass(frozen=True)
class Result:
    """One result: an expression with what it is."""

    name: str            # differential | gradient | jacobian | hessian | hessian_bilinear
    label: str           # how it is introduced to a person, e.g. "f'(x)[dx]"
    expr: E.Expr
    note: str = ""
    taken: frozenset = frozenset()   # names in use, which shared subexpressions must not take

    def text(self) -> str:
        """The result in the input language; a large one names what it repeats (t1 = ...; ...)."""
        from .render.share import shared_text
        from .render.text import to_text
        return shared_text(self.expr, self.taken, to_text)

    def latex(self) -> str:
        from .render.latex import shared_latex
        return shared_latex(self.expr, self.taken)

    @property
    def shape(self):
        return self.expr.shape


@dataclass
class Derivation:
    """Everything matcalc computed for one program."""

    typed: Typed
    wrt: str
    x: E.Var
    dx: E.Var
    dx2: E.Var
    layout: str
    results: dict = field(default_factory=dict)   # name -> Result, in display order
    steps: list | None = None                     # with derive(..., steps=True): steps.Step list

    @property
    def expression(self) -> E.Expr:
        return self.typed.expression

    @property
    def shapes(self) -> dict:
        return {name: sym.shape for name, sym in self.typed.symbols.items()}

    def __getattr__(self, name):
        results = self.__dict__.get("results", {})
        if name in results:
            return results[name]
        if name in ("differential", "gradient", "jacobian", "hessian", "hessian_bilinear"):
            return None
        raise AttributeError(name)

    def text(self) -> str:
        return "\n".join(f"{r.label} = {r.text()}" for r in self.results.values())

    def latex(self) -> str:
        from .render.latex import document_block
        return document_block(self)


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


def _check_arguments(program, wrt, **options) -> None:
    """Refuse arguments of the wrong type here, naming the parameter, not deep inside."""
    if isinstance(program, (bytes, bytearray)):
        raise TypeError("derive(): program must be a str, not bytes: decode it first "
                        "(program.decode('utf-8'))")
    if not isinstance(program, str):
        raise TypeError(f"derive(): program must be a str (the matcalc program text), "
                        f"not {type(program).__name__}")
    if wrt is not None and not isinstance(wrt, str):
        raise TypeError(f"derive(): wrt must be a variable name (str) or None, not {type(wrt).__name__}")
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


def derive(program: str, wrt: str | None = None, *, gradient: bool = False, jacobian: bool = False,
           hessian: bool = False, layout: str = "numerator",
           symmetric_gradient: str = "frobenius", steps: bool = False) -> Derivation:
    """Parse, shape-check and differentiate ``program`` against ``wrt``.

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
    name = choose_wrt(typed, wrt)
    f = typed.expression
    sym = typed.symbols[name]
    x = typed.variables.get(name) or E.Var(name, sym.shape, sym.symmetric)
    taken = set(typed.symbols)
    dx = E.Var(_fresh_name("d" + name, taken), x.shape, x.symmetric, diff=1)
    dx2 = E.Var(_fresh_name("d" + name + "2", taken | {dx.name}), x.shape, x.symmetric, diff=2)

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

    d = Derivation(typed, name, x, dx, dx2, layout)
    in_use = frozenset(taken | set(typed.definitions) | {dx.name, dx2.name})

    def result(kind, label, expr, note=""):
        return Result(kind, label, expr, note, in_use)

    df = simplify(differential(f, x, dx))
    arg = f"({name})"
    d.results["differential"] = result("differential", f"f'{arg}[{dx.name}]", df)
    G = None
    if gradient or hessian:
        G = identify.gradient(df, x, dx)
    if gradient:
        if x.symmetric and symmetric_gradient == "cookbook":
            d.results["gradient"] = result(
                "gradient", f"cookbook_gradient f{arg}", identify.cookbook_gradient(G),
                note="Matrix Cookbook convention G + G' - I .* G for symmetric X; "
                     "not the gradient under the Frobenius inner product")
        else:
            note = "symmetric gradient: the symmetric G with <G, E> = f'(X)[E] for symmetric E" \
                if x.symmetric else ""
            d.results["gradient"] = result("gradient", f"gradient f{arg}", G, note=note)
    if jacobian:
        J = identify.jacobian(f, df, x, dx, layout)
        note = "numerator layout: vec(df) = J vec(d{0})".format(name) if layout == "numerator" \
            else "denominator layout: vec(df)' = vec(d{0})' J".format(name)
        d.results["jacobian"] = result("jacobian", f"jacobian f{arg}", J, note=note)
    if hessian:
        B = identify.hessian_bilinear(df, x, dx2)
        d.results["hessian_bilinear"] = result("hessian_bilinear", f"f''{arg}[{dx.name}, {dx2.name}]", B)
        H = identify.hessian_matrix(G, x, dx)
        d.results["hessian"] = result("hessian", f"hessian f{arg}", H,
                                      note="vec convention: f''[dx, dx2] = vec(dx)' H vec(dx2)")
    if steps:
        from .steps import derivation_steps
        d.steps = derivation_steps(d)
    return d
