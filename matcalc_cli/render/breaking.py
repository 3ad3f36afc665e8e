"""Breaking a long printed expression into lines, for the terminal view and for LaTeX.

A printer that wants its output breakable writes markers into the text it builds (characters from
Unicode's private use area, which no program can contain: names are ASCII):

- ``SUM`` before the operator of a sum's term (`` + b``): a line may end there, and the next line
  starts with the operator;
- ``FACTOR`` between two factors of a product (before the separator, or before an infix operator
  such as ``⊙``): a line may end there;
- ``OPEN`` and ``CLOSE`` around a parenthesised group, parentheses included, so that a break can
  tell how deep it lies and a group that spans lines can change its delimiters (LaTeX's
  ``\\left(`` cannot span lines; ``\\bigl(`` can).

``layout`` then chooses the breaks: the shallowest first, and at one depth a sum's operators
before a product's factors, so a long result breaks after its top-level terms, then between
factors, then inside its longest parenthesised group.  Widths are measured by a function the
caller gives (terminal cells, or an estimate of typeset width).
"""

from __future__ import annotations

from dataclasses import dataclass

SUM = "\ue000"
FACTOR = "\ue001"
OPEN = "\ue002"
CLOSE = "\ue003"
MARKERS = SUM + FACTOR + OPEN + CLOSE


def strip(text: str) -> str:
    """The text with every marker removed: how it reads on one line."""
    return text.translate({ord(c): None for c in MARKERS})


@dataclass
class Token:
    kind: str            # "text" | "sum" | "factor" | "open" | "close"
    text: str = ""
    depth: int = 0       # for breaks: the number of groups around it
    group: int = -1      # for open/close: which group (matching pairs share it)
    width: float | None = None   # of a text token, measured once


def tokenize(marked: str, braces: bool = False) -> list:
    """Tokens of a marked text.  ``braces``: the text is LaTeX, and a line cannot end inside a
    brace group (\\frac{...}{...}, ^{...}): breaks there are dropped."""
    tokens, buf, depth, stack, groups = [], [], 0, [], 0
    brace_depth = 0

    def flush():
        if buf:
            tokens.append(Token("text", "".join(buf)))
            buf.clear()

    i = 0
    while i < len(marked):
        ch = marked[i]
        if ch in (SUM, FACTOR):
            flush()
            if brace_depth == 0:
                tokens.append(Token("sum" if ch == SUM else "factor", depth=depth))
        elif ch == OPEN:
            flush()
            tokens.append(Token("open", group=groups))
            stack.append(groups)
            groups += 1
            depth += 1
        elif ch == CLOSE:
            flush()
            tokens.append(Token("close", group=stack.pop() if stack else -1))
            depth = max(0, depth - 1)
        elif braces and ch == "\\" and i + 1 < len(marked):
            buf.append(marked[i:i + 2])   # \{ and \} are characters, not braces
            i += 1
        else:
            if braces and ch == "{":
                brace_depth += 1
            elif braces and ch == "}":
                brace_depth -= 1
            buf.append(ch)
        i += 1
    flush()
    return tokens


def _rank(t: Token) -> int:
    return 2 * t.depth + (0 if t.kind == "sum" else 1)


def _is_break(t: Token) -> bool:
    return t.kind in ("sum", "factor")


@dataclass
class Line:
    indent: int          # extra indentation of a continuation line, in levels (0 for the first)
    tokens: list


def layout(tokens: list, width: float, measure, first_width: float | None = None) -> list:
    """Lines (``Line``) for ``tokens``: the first at most ``first_width`` wide (default ``width``),
    the others ``width`` minus their indentation, which ``measure`` is also asked for
    (``measure(None, level)`` is the width of ``level`` levels of indentation).  Where no break
    is left a line may stay too wide; the caller folds it as a last resort."""
    first_width = width if first_width is None else first_width
    return _layout(tokens, first_width, width, measure, 1)


def _width(tokens, measure) -> float:
    """The width of tokens on one line: the sum of their texts' widths, each measured once (a
    long result is measured piece by piece as lines fill, so this must not re-read the text)."""
    total = 0.0
    for t in tokens:
        if t.kind == "text":
            if t.width is None:
                t.width = measure(t.text, 0)
            total += t.width
    return total


def _layout(tokens, first_width, width, measure, level) -> list:
    if _width(tokens, measure) <= first_width:
        return [Line(0, tokens)]
    # a break that starts the tokens is where they were cut off: not a break inside them
    breaks = [t for t in tokens[1:] if _is_break(t)]
    if not breaks:
        return [Line(0, tokens)]
    best = min(_rank(t) for t in breaks)
    chunks, current = [], []
    for i, t in enumerate(tokens):
        if i and _is_break(t) and _rank(t) == best:
            chunks.append(current)
            current = []
        current.append(t)
    chunks.append(current)
    chunks = [c for c in chunks if c]

    # greedy: fill each line with whole chunks; a chunk too wide for a fresh line is broken
    # itself, starting where the current line stands when enough of that line is left
    lines: list = []
    line: list = []
    line_level = 0              # the first line is the caller's; the others are indented
    budget = first_width

    def room(at_level):
        return width - measure(None, at_level)

    after_broken = False        # the current line ends a chunk that was itself broken
    for chunk in chunks:
        # after a broken term, the next term of a sum starts a line of its own; a factor that
        # closes the product (", dx") may follow on the same line
        fits = _width(line + chunk, measure) <= budget
        if after_broken and line and not (fits and chunk[0].kind == "factor"):
            lines.append(Line(line_level, line))
            line, line_level, budget = [], level, room(level)
            fits = _width(chunk, measure) <= budget
        after_broken = False
        if fits:
            line = line + chunk
            continue
        if line and _width(chunk, measure) <= room(level):
            lines.append(Line(line_level, line))
            line, line_level, budget = chunk, level, room(level)
            continue
        used = _width(line, measure) if line else 0
        head = _head(chunk)
        if line and (budget - used < 0.3 * width or _width(line + head, measure) > budget
                     and _width(head, measure) <= room(level)):
            # too little room left, or the chunk's first piece fits only on a line of its own
            lines.append(Line(line_level, line))
            line, line_level, budget, used = [], level, room(level), 0
        inner = _layout(chunk, budget - used, width, measure, level + 1)
        line = line + inner[0].tokens
        if len(inner) == 1:
            continue
        lines.append(Line(line_level, line))
        lines.extend(Line(max(ln.indent, level), ln.tokens) for ln in inner[1:-1])
        # what follows the broken chunk may go on its last line (a closing factor, say)
        line, line_level = inner[-1].tokens, max(inner[-1].indent, level)
        budget = room(line_level)
        after_broken = True
    if line:
        lines.append(Line(line_level, line))
    return lines


def _head(tokens: list) -> list:
    """The tokens up to the first of their own shallowest breaks: what must fit to start them."""
    breaks = [t for t in tokens[1:] if _is_break(t)]
    if not breaks:
        return tokens
    best = min(_rank(t) for t in breaks)
    for i, t in enumerate(tokens):
        if i and _is_break(t) and _rank(t) == best:
            return tokens[:i]
    return tokens


def split_groups(lines: list) -> set:
    """The groups that span more than one line (their delimiters must be able to)."""
    spanning = set()
    opens, closes = {}, {}
    for i, ln in enumerate(lines):
        for t in ln.tokens:
            if t.kind == "open":
                opens[t.group] = i
            elif t.kind == "close":
                closes[t.group] = i
    for g in opens:
        if closes.get(g, opens[g]) != opens[g]:
            spanning.add(g)
    return spanning


def line_text(line: Line, group_text) -> str:
    """A line's text; ``group_text(token)`` gives the text of an open/close token (""
    by default, when the parentheses are part of the text tokens)."""
    out = []
    for t in line.tokens:
        if t.kind == "text":
            out.append(t.text)
        elif t.kind in ("open", "close"):
            out.append(group_text(t))
    return "".join(out)
