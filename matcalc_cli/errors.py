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

    def render(self, source: str | None = None, filename: str | None = None,
               quote: str = "line") -> str:
        """The message, the offending line and a caret under the column, and the hint.

        ``quote="token"`` shows only the token at the column, not its line: for a file that is
        not a matcalc program (``@/etc/shadow``) a line may be a secret.  Control characters
        (escape sequences too) are shown as visible escapes, never sent to the terminal."""
        where = ""
        if self.line is not None:
            where = f"{filename + ':' if filename else ''}line {self.line}, column {self.column}: "
        elif filename:
            where = f"{filename}: "
        out = [visible(f"{self.kind}: {where}{self.message}")]
        if source is not None and self.line is not None:
            lines = source.split("\n")
            if 0 < self.line <= len(lines):
                text = lines[self.line - 1]
                col = max(1, min(self.column or 1, len(text) + 1))
                if quote == "token":
                    token = _token_at(text, col - 1)
                    out.append("    " + visible(token))
                    out.append("    ^")
                else:
                    # long lines are shown around the column only
                    start = max(0, col - 60)
                    prefix = "..." if start else ""
                    before = visible(text[start:col - 1])
                    shown = visible(text[start:start + 120])
                    out.append("    " + prefix + shown)
                    out.append("    " + " " * (len(prefix) + len(before)) + "^")
        if self.hint:
            out.append(visible(f"hint: {self.hint}"))
        return "\n".join(out)


MAX_QUOTED_TOKEN = 20


def _token_at(text: str, i: int) -> str:
    """The word (letters, digits, '_') or the single character at index i, shortened."""
    if i >= len(text):
        return ""
    j = i
    while j < len(text) and (text[j].isalnum() or text[j] == "_") and text[j].isascii():
        j += 1
    token = text[i:max(j, i + 1)]
    return token if len(token) <= MAX_QUOTED_TOKEN else token[:MAX_QUOTED_TOKEN] + "..."


def visible(text: str) -> str:
    """Text safe to print on a terminal: tabs become spaces, other control and format
    characters (ESC, NUL, bidi overrides, ...) become escapes such as \\x1b."""
    import unicodedata
    out = []
    for ch in text:
        if ch == "\t":
            out.append(" ")
        elif ch == "\n" or (ch.isprintable() or ch == " ") and unicodedata.category(ch) not in ("Cf", "Co"):
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000
                       else f"\\U{code:08x}")
    return "".join(out)


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
