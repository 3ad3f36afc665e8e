"""The terminal's width, for the pretty view, folded help and errors (no heavy imports: the
--help path uses it)."""

from __future__ import annotations

import os


def terminal_width(stream) -> int:
    """The width of the terminal ``stream`` is on (COLUMNS, or 80, when it cannot tell)."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
        if columns > 0:   # a fresh pseudo-terminal may not know its size yet (0)
            return max(20, columns)
    except (AttributeError, OSError, ValueError):
        pass
    try:
        return max(20, int(os.environ.get("COLUMNS", "")))
    except ValueError:
        return 80
