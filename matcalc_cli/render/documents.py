"""Whole-derivation outputs: plain lines and JSON (the terminal view is ``pretty``, LaTeX documents
``latex``).

The per-expression printers live in ``text`` and ``latex``; this module arranges their output.
"""

from __future__ import annotations


from .. import __version__
from ..dims import Dim

# the order results appear in, in every format; with several variables, the results of one kind
# follow the --wrt order (Hessian blocks row by row: H[x, x], H[x, W], H[W, W])
ORDER = ("differential", "gradient", "jacobian", "hessian_bilinear", "hessian")


def ordered_results(derivation):
    return sorted((r for r in derivation.results.values() if r.name in ORDER), key=lambda r: ORDER.index(r.name))


def dim_value(d: Dim):
    return d.coef if d.is_int else str(d)


def shape_text(sym) -> str:
    """How a name's shape is declared in the language: vector(n), matrix(m, n), symmetric(n)."""
    r, c = sym.shape
    if sym.symmetric:
        return f"symmetric({r})"
    if r == 1 and c == 1:
        return "scalar"
    if c == 1:
        return f"vector({r})"
    return f"matrix({r}, {c})"


def declarations_text(derivation) -> str:
    return "; ".join(f"{name}: {shape_text(sym)}" for name, sym in derivation.typed.symbols.items())


def inferred_shapes_note(derivation) -> str | None:
    """A line naming the shapes matcalc inferred, so that nothing is guessed silently."""
    inferred = [f"{n}: {shape_text(s)}" for n, s in derivation.typed.symbols.items() if not s.declared]
    if not inferred:
        return None
    return "inferred shapes: " + "; ".join(inferred)


def plain(derivation) -> str:
    """One result per line, in the input language, in the order of ORDER."""
    return "\n".join(r.text() for r in ordered_results(derivation)) + "\n"


def _result_json(r, extra=None) -> dict:
    out = {"text": r.text(), "latex": r.latex(), "shape": [dim_value(r.shape[0]), dim_value(r.shape[1])]}
    if r.note:
        out["note"] = r.note
    if extra:
        out.update(extra)
    return out


def as_json(derivation, extra: dict | None = None) -> str:
    f = derivation.expression
    doc = {
        "matcalc_version": __version__,
        "wrt": list(derivation.wrts) if derivation.several else derivation.wrt,
        "layout": derivation.layout,
        "shapes": {
            name: {
                "kind": "symmetric" if sym.symmetric else
                        ("scalar" if sym.shape == (1, 1) else "vector" if sym.shape[1] == 1 else "matrix"),
                "rows": dim_value(sym.shape[0]),
                "cols": dim_value(sym.shape[1]),
                "declared": sym.declared,
                "text": shape_text(sym),
            }
            for name, sym in derivation.typed.symbols.items()
        },
        "expression": {"text": _expr_text(f, derivation), "latex": _expr_latex(f, derivation),
                       "shape": [dim_value(f.shape[0]), dim_value(f.shape[1])]},
    }
    doc.update(_several_json(derivation) if derivation.several else _single_json(derivation))
    if extra:
        doc.update(extra)
    import json   # only here: the plain path does not load it

    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _single_json(derivation) -> dict:
    doc = {"differential": _result_json(derivation.results["differential"], {"direction": derivation.dx.name})}
    results = derivation.results
    if "gradient" in results:
        doc["gradient"] = _result_json(results["gradient"])
    if "jacobian" in results:
        doc["jacobian"] = _result_json(results["jacobian"])
    if "hessian" in results:
        bilinear = _result_json(results["hessian_bilinear"],
                                {"directions": [derivation.dx.name, derivation.dx2.name]})
        doc["hessian"] = _result_json(results["hessian"], {"bilinear": bilinear})
        doc["hessian_bilinear"] = bilinear
    return doc


def _several_json(derivation) -> dict:
    """Several variables: gradient, jacobian by variable name, hessian by "x,W" (the blocks H[x, W]
    with x before or equal to W in --wrt order; H[W, x] is the transpose)."""
    variables = derivation.variables
    first = {v.name: v.dx.name for v in variables}
    doc = {"differential": _result_json(derivation.results["differential"], {
        "directions": first,
        "parts": {name: _result_json(r) for name, r in derivation.parts.items()}})}
    for kind in ("gradient", "jacobian", "hessian"):
        blocks = derivation.blocks(kind)
        if blocks:
            doc[kind] = {",".join(wrt): _result_json(r) for wrt, r in blocks.items()}
    if "hessian_bilinear" in derivation.results:
        doc["hessian_bilinear"] = _result_json(derivation.results["hessian_bilinear"], {
            "directions": [first, {v.name: v.dx2.name for v in variables}]})
    return doc


def _expr_text(e, derivation):
    # written like the results: what a definition chain repeats is named (t1 = ...; ...)
    from .share import shared_text
    from .text import to_text
    return shared_text(e, set(derivation.typed.symbols) | set(derivation.typed.definitions), to_text)


def _expr_latex(e, derivation):
    from .latex import shared_latex
    return shared_latex(e, set(derivation.typed.symbols) | set(derivation.typed.definitions))
