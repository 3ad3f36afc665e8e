"""Helpers shared by the benchmark scripts: the matcalc command, timing statistics, tree sizes."""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def matcalc_command() -> list:
    """The installed console script next to this Python, else ``python -m matcalc_cli``."""
    script = Path(sys.executable).with_name("matcalc")
    if script.exists():
        return [str(script)]
    found = shutil.which("matcalc")
    return [found] if found else [sys.executable, "-m", "matcalc_cli"]


def summary(times: list) -> str:
    """min / median / mean / max in milliseconds."""
    ms = [t * 1000 for t in times]
    return (f"min {min(ms):8.1f} ms  median {statistics.median(ms):8.1f} ms  "
            f"mean {statistics.mean(ms):8.1f} ms  max {max(ms):8.1f} ms  (n={len(ms)})")


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def tree_size(e) -> int:
    """Nodes of the expression written out as a tree (shared subtrees counted every time)."""
    sizes: dict = {}
    stack = [(e, False)]
    while stack:
        node, ready = stack.pop()
        if id(node) in sizes:
            continue
        if not ready:
            stack.append((node, True))
            stack.extend((c, False) for c in node.children if id(c) not in sizes)
            continue
        sizes[id(node)] = 1 + sum(sizes[id(c)] for c in node.children)
    return sizes[id(e)]


def dag_size(e) -> int:
    """Distinct nodes (equal subtrees counted once): the memory the IR needs."""
    seen, stack = set(), [e]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(node.children)
    return len(seen)
