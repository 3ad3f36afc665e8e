"""What every printer shares: dispatch by node kind (one ``_print_X`` per node), parentheses
decided in one place from a precedence table, the layout of sums, and whether the context fixes
the size of ``I`` and of a broadcast scalar."""

from __future__ import annotations

from .. import expr as E

# precedence, loosest first
ADD, MUL, NEG, POW, POSTFIX, ATOM = range(1, 7)


def shape_free(e: E.Expr) -> bool:
    """Nodes whose printed form does not fix their own shape (I, a broadcast 1, sums of those)."""
    if isinstance(e, (E.Identity, E.Ones)):
        return True
    if isinstance(e, E.Mul):
        return shape_free(e.args[-1])
    if isinstance(e, (E.Add, E.Hadamard)):
        return all(shape_free(a) for a in e.args)
    return False


class Printer:
    # written before the operator of each term after the first: a breakable printer marks
    # there where a long sum may go on to the next line (see ``breaking``)
    term_break = ""

    def __init__(self):
        self.shape_known = [False]  # stack: does the context determine the size of I / ones?

    def precedence(self, e: E.Expr) -> int:
        raise NotImplementedError

    def wrap(self, text: str) -> str:
        return f"({text})"

    def doprint(self, e: E.Expr) -> str:
        E.check_printable(e)
        return self.print(e)

    def print(self, e: E.Expr, known: bool = False) -> str:
        self.shape_known.append(known)
        try:
            return getattr(self, "_print_" + type(e).__name__)(e)
        finally:
            self.shape_known.pop()

    def paren(self, e: E.Expr, level: int, known: bool = False) -> str:
        text = self.print(e, known)
        return self.wrap(text) if self.precedence(e) < level else text

    def _siblings_determine(self, args) -> bool:
        """A sibling that fixes the shape lets I and a broadcast scalar print bare."""
        return self.shape_known[-1] or any(not shape_free(a) for a in args)

    def _print_Add(self, e):
        known = self._siblings_determine(e.args)
        out = []
        for i, term in enumerate(e.args):
            c, body = E.split_coef(term)
            if i > 0 and c < 0:
                level = MUL if not isinstance(body, E.Add) else ATOM
                out.append(self.term_break + " - " + self.paren(E.scale(-c, body), level, known))
            else:
                text = self.paren(term, ADD + 1 if i > 0 else ADD, known)
                out.append((self.term_break + " + " if i > 0 else "") + text)
        return "".join(out)
