"""Errors a user can cause.  Each knows where in the program it happened, to show a caret."""

from __future__ import annotations


class MatcalcError(Exception):
    """Bad input (exit status 1).  ``line``/``column`` are 1-based, when known."""

    kind = "error"

    def __init__(self, message: str, line: int | None = None, column: int | None = None,
                 hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.hint = hint

    def at(self, pos) -> "MatcalcError":
        if pos is not None and self.line is None:
            self.line, self.column = pos
        return self

    def render(self, source: str | None = None, filename: str | None = None) -> str:
        """The message, the offending line and a caret under the column, and the hint."""
        where = ""
        if self.line is not None:
            where = f"{filename + ':' if filename else ''}line {self.line}, column {self.column}: "
        elif filename:
            where = f"{filename}: "
        out = [f"{self.kind}: {where}{self.message}"]
        if source is not None and self.line is not None:
            lines = source.split("\n")
            if 0 < self.line <= len(lines):
                text = lines[self.line - 1].replace("\t", " ").replace("\0", " ")
                col = max(1, min(self.column or 1, len(text) + 1))
                # long lines are shown around the column only
                start = max(0, col - 60)
                shown = text[start:start + 120]
                prefix = "..." if start else ""
                out.append("    " + prefix + shown)
                out.append("    " + " " * (len(prefix) + col - 1 - start) + "^")
        if self.hint:
            out.append(f"hint: {self.hint}")
        return "\n".join(out)


class ParseError(MatcalcError):
    kind = "syntax error"


class ShapeError(MatcalcError):
    kind = "shape error"


class NameLookupError(MatcalcError):
    kind = "name error"


class MathError(MatcalcError):
    kind = "math error"


class UsageError(MatcalcError):
    """A problem with how matcalc was called (exit status 2)."""

    kind = "usage error"
