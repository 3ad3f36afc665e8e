"""Dimensions: monomials over dimension symbols, such as ``n``, ``3``, ``m*n`` or ``n^2``.

Kronecker products and vec multiply dimensions, so a dimension is a product of symbols with an
integer coefficient, not just a symbol.  Dimensions are immutable and hashable.
"""

from __future__ import annotations


class Dim:
    __slots__ = ("coef", "factors", "_hash")

    def __init__(self, coef: int = 1, factors: tuple = ()):
        self.coef = coef
        self.factors = factors  # sorted tuple of (symbol, power), powers > 0
        self._hash = hash((coef, factors))

    @staticmethod
    def of(value) -> "Dim":
        if isinstance(value, Dim):
            return value
        if isinstance(value, int):
            return Dim(value)
        return Dim(1, ((value, 1),))

    def __mul__(self, other: "Dim") -> "Dim":
        other = Dim.of(other)
        powers = dict(self.factors)
        for sym, p in other.factors:
            powers[sym] = powers.get(sym, 0) + p
        return Dim(self.coef * other.coef, tuple(sorted(powers.items())))

    __rmul__ = __mul__

    def __eq__(self, other) -> bool:
        if isinstance(other, int):
            return not self.factors and self.coef == other
        return isinstance(other, Dim) and self.coef == other.coef and self.factors == other.factors

    def __hash__(self) -> int:
        return self._hash

    @property
    def is_int(self) -> bool:
        return not self.factors

    @property
    def symbols(self) -> set:
        return {s for s, _ in self.factors}

    def substitute(self, mapping: dict) -> "Dim":
        """Replace symbols by dimensions (mapping: symbol -> Dim)."""
        result = Dim(self.coef)
        for sym, p in self.factors:
            value = mapping.get(sym, Dim.of(sym))
            for _ in range(p):
                result = result * value
        return result

    def evaluate(self, values: dict) -> int:
        out = self.coef
        for sym, p in self.factors:
            out *= values[sym] ** p
        return out

    def __str__(self) -> str:
        parts = [] if (self.coef == 1 and self.factors) else [str(self.coef)]
        for sym, p in self.factors:
            parts.append(sym if p == 1 else f"{sym}^{p}")
        return "*".join(parts)

    def __repr__(self) -> str:
        return f"Dim({self})"


ONE = Dim(1)
