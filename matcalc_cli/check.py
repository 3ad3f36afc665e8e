"""``--check``: every result against central finite differences of f at random points.

At each point (dimension sizes distinct small integers, values chosen so that f and every result are
finite and away from kinks and domain edges, see ``numeric.random_point``):

- differential f'(x)[dx]       vs  J vec(dx), J the finite-difference Jacobian, dx a random direction
- gradient G                   vs  the rows of J reshaped like x (sym(G) for a symmetric x; for the
                                   cookbook convention 2 sym(G) - I .* sym(G))
- jacobian                     vs  J (numerator layout) or J' (denominator layout)
- hessian (matrix)             vs  finite differences of the gradient (see below)
- hessian_bilinear f''[dx, dx2] vs vec(dx)' H vec(dx2) for random directions

The finite-difference Hessian differentiates the symbolic gradient (identified afresh from the
differential) when that gradient agrees with the finite-difference gradient at the point, which is
accurate to about 1e-10; otherwise it takes second differences of f.

The error of a result is max|a - b| / max(1, max|b|) over its entries (a the result, b the finite
differences), the largest over the points.  First derivatives pass below 1e-5 and second
derivatives below 1e-4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import numeric as N
from .errors import MatcalcError

TOLERANCE_FIRST = 1e-5
TOLERANCE_SECOND = 1e-4
SECOND_ORDER = ("hessian", "hessian_bilinear")


def relative_error(a, b) -> float:
    """max|a - b| / max(1, max|b|); inf when shapes differ or anything is not finite."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        return math.inf
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return math.inf
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


@dataclass
class ResultCheck:
    name: str
    max_rel_error: float
    tolerance: float
    message: str = ""
    unchecked: bool = False   # f itself was not finite at any point tried: nothing was compared

    @property
    def passed(self) -> bool:
        return not self.unchecked and self.max_rel_error <= self.tolerance

    def line(self) -> str:
        if self.unchecked:
            return f"check {self.name}: UNCHECKED ({self.message})"
        verdict = "PASS" if self.passed else "FAIL"
        text = f"check {self.name}: max relative error {self.max_rel_error:.1e} {verdict}"
        return text + (f" ({self.message})" if self.message else "")

    def to_dict(self) -> dict:
        err = self.max_rel_error
        out = {"name": self.name, "max_rel_error": err if math.isfinite(err) else None,
               "tolerance": self.tolerance, "passed": self.passed}
        if self.unchecked:
            out["unchecked"] = True
        if self.message:
            out["message"] = self.message
        return out


@dataclass
class CheckReport:
    results: list
    sizes: dict
    seed: int
    points: int
    notes: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    def lines(self) -> list:
        return [r.line() for r in self.results]

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "method": "central finite differences at random points",
            "seed": self.seed,
            "points": self.points,
            "sizes": dict(self.sizes),
            "results": [r.to_dict() for r in self.results],
            **({"notes": list(self.notes)} if self.notes else {}),
        }


class _Point:
    """Everything computed at one random point, lazily."""

    def __init__(self, derivation, values, sizes, rng):
        self.d, self.values, self.sizes, self.rng = derivation, values, sizes, rng
        self._J = None
        self._H = None

    @property
    def J(self):
        if self._J is None:
            self._J = N.numeric_jacobian(self.d, self.values, self.sizes)
        return self._J

    def gradient(self):
        return self.J.reshape(N.shape_of(self.d.x, self.sizes), order="F")

    @property
    def H(self):
        if self._H is None:
            self._H = N.numeric_hessian(self.d, self.values, self.sizes, gradient=self._trusted_gradient())
        return self._H

    def _trusted_gradient(self):
        """The symbolic gradient from the differential, if it matches finite differences here."""
        d = self.d
        if "differential" not in d.results or not d.expression.is_scalar:
            return None
        from . import identify
        try:
            G = identify.gradient(d.results["differential"].expr, d.x, d.dx)
            value = N.evaluate(G, self.values, self.sizes)
        except (MatcalcError, NotImplementedError, ValueError, np.linalg.LinAlgError):
            return None
        return G if relative_error(value, self.gradient()) < TOLERANCE_FIRST / 10 else None

    def direction(self, var):
        return N.random_direction(var, self.rng, self.sizes)

    def evaluate(self, e, extra=None):
        env = dict(self.values)
        env.update(extra or {})
        return N.evaluate(e, env, self.sizes)


def _vec(a):
    return np.asarray(a).reshape(-1, 1, order="F")


def _check_differential(p: _Point, result):
    dx = p.direction(p.d.dx)
    expected = (p.J @ _vec(dx)).reshape(N.shape_of(p.d.expression, p.sizes), order="F")
    return p.evaluate(result.expr, {p.d.dx.name: dx}), expected


def _check_gradient(p: _Point, result):
    G = p.gradient()
    if result.label.startswith("cookbook"):
        G = 2 * G - np.diag(np.diag(G))
    return p.evaluate(result.expr), G


def _check_jacobian(p: _Point, result):
    J = p.J.T if p.d.layout == "denominator" else p.J
    return p.evaluate(result.expr), J


def _check_hessian(p: _Point, result):
    return p.evaluate(result.expr), p.H


def _check_bilinear(p: _Point, result):
    dx, dx2 = p.direction(p.d.dx), p.direction(p.d.dx2)
    expected = _vec(dx).T @ p.H @ _vec(dx2)
    return p.evaluate(result.expr, {p.d.dx.name: dx, p.d.dx2.name: dx2}), expected


CHECKS = {
    "differential": _check_differential,
    "gradient": _check_gradient,
    "jacobian": _check_jacobian,
    "hessian": _check_hessian,
    "hessian_bilinear": _check_bilinear,
}


def check_derivation(derivation, seed: int = 0, points: int = 3, sizes: dict | None = None) -> CheckReport:
    """Compare every result of ``derivation`` with finite differences at ``points`` random points.

    Points are drawn where f and the results are finite and away from kinks and domain edges;
    when the first dimension sizes admit no such point (det(A * X * A') with A k x m needs
    k <= m) other assignments of the sizes are tried.  A result is UNCHECKED, not FAIL, when f
    itself was not finite at any point tried (nothing was compared: not passed, not failed)."""
    from .budget import check as within_budget
    _check_size(derivation, sizes)
    rng = np.random.default_rng(seed)
    sizes, found = _sizes_with_clean_point(derivation, sizes, rng)
    errors = {name: 0.0 for name in derivation.results}
    messages: dict = {}
    notes: list = []
    f_finite_somewhere = False
    with np.errstate(all="ignore"):
        for _ in range(points):
            within_budget()
            values = N.random_point(derivation, rng, sizes)
            problems = N.point_problems(derivation, values, sizes)
            if problems:
                note = "no clean point found: " + "; ".join(sorted(set(problems))[:3])
                if note not in notes:
                    notes.append(note)
            p = _Point(derivation, values, sizes, rng)
            f_finite = _finite_at(p)
            f_finite_somewhere = f_finite_somewhere or f_finite
            for name, result in derivation.results.items():
                within_budget()
                rule = CHECKS.get(name)
                if rule is None:
                    messages[name] = "no numeric check for this result"
                    errors[name] = math.inf
                    continue
                if not f_finite:
                    continue   # nothing to compare with at this point
                try:
                    actual, expected = rule(p, result)
                    err = relative_error(actual, expected)
                except (NotImplementedError, ValueError, KeyError, np.linalg.LinAlgError) as e:
                    err = math.inf
                    messages[name] = f"cannot evaluate: {e}"
                if not math.isfinite(err) and name not in messages:
                    messages[name] = "not finite at the points tried" if not problems else notes[-1]
                errors[name] = max(errors[name], err) if not math.isnan(err) else math.inf
    if not f_finite_somewhere:
        at_sizes = f" (sizes {', '.join(f'{k}={v}' for k, v in sizes.items())})" if sizes else ""
        why = (f"f is not finite at any point tried{at_sizes}: no point found where it and its "
               "finite differences are defined; its domain may be empty or tiny")
        checks = [ResultCheck(name, math.inf, TOLERANCE_SECOND if name in SECOND_ORDER else TOLERANCE_FIRST,
                              why, unchecked=True) for name in derivation.results]
        return CheckReport(checks, sizes, seed, points, notes)
    checks = [ResultCheck(name, errors[name], TOLERANCE_SECOND if name in SECOND_ORDER else TOLERANCE_FIRST,
                          messages.get(name, "")) for name in derivation.results]
    if not found:
        notes.append("no dimension sizes tried gave a point where f and every result are finite")
    return CheckReport(checks, sizes, seed, points, notes)


def _finite_at(p: _Point) -> bool:
    """Whether f and its finite-difference Jacobian are finite at the point."""
    try:
        value = p.evaluate(p.d.expression)
        return bool(np.all(np.isfinite(value)) and np.all(np.isfinite(p.J)))
    except (NotImplementedError, ValueError, KeyError, np.linalg.LinAlgError, ZeroDivisionError,
            OverflowError):
        return False


def _size_candidates(derivation, sizes):
    """The default sizes, then the same values in other orders (the first few permutations)."""
    import itertools
    first = N.dimension_sizes(derivation, sizes)
    yield first
    free = [s for s in first if s not in (sizes or {})]
    if len(free) < 2:
        return
    values = [first[s] for s in free]
    orders = itertools.islice(itertools.permutations(values), 1, 24)
    for order in itertools.chain([tuple(reversed(values))], orders):
        candidate = dict(first)
        candidate.update(zip(free, order))
        yield candidate


def _sizes_with_clean_point(derivation, sizes, rng):
    """(sizes, True) for the first assignment with a clean random point, else (default, False)."""
    from .budget import check as within_budget
    first, seen = None, set()
    for candidate in _size_candidates(derivation, sizes):
        key = tuple(sorted(candidate.items()))
        if key in seen:
            continue
        seen.add(key)
        first = first or candidate
        within_budget()
        with np.errstate(all="ignore"):
            values = N.random_point(derivation, np.random.default_rng(rng.integers(1 << 30)), candidate)
            if not N.point_problems(derivation, values, candidate):
                return candidate, True
    return first, False


def _check_size(derivation, sizes) -> None:
    """Refuse, before any work, arrays too large to evaluate (a Jacobian of vector(10^6))."""
    from .budget import MAX_CHECK_ENTRIES, refuse
    sizes = N.dimension_sizes(derivation, sizes)
    numel = lambda e: N.shape_of(e, sizes)[0] * N.shape_of(e, sizes)[1]
    n_x, n_f = numel(derivation.x), numel(derivation.expression)
    largest = max([n_f * n_x, n_x * n_x] + [numel(r.expr) for r in derivation.results.values()]
                  + [numel(v.shape) for v in derivation.typed.symbols.values()])
    if largest > MAX_CHECK_ENTRIES:
        raise refuse(f"--check would evaluate arrays of {largest:,} entries",
                     f"{MAX_CHECK_ENTRIES:,} entries",
                     "--check works at small sizes: declare dimensions by name (vector(n)), "
                     "not as large numbers")
