"""A cache of the parser's tables, safe to load: JSON in a directory only this user can write.

lark's own ``cache=True`` pickles the parser into the shared temporary directory and unpickles
whatever file it finds there under a predictable name, so another local user could plant code.
Here the cache is data (JSON: strings, numbers, lists), read with ``json`` only, from
``$XDG_CACHE_HOME/matcalc`` (else ``~/.cache/matcalc``), which must be a real directory owned by
this user and closed to everyone else (0700).  Anything unexpected means: build the parser in
memory (about 0.05 s) and go on.  Nothing is ever written to the temporary directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat

FORMAT = 1                      # bump when the encoding below changes
MAX_CACHE_BYTES = 2_000_000     # the tables are about 45 kB


def cache_dir() -> str | None:
    """The user's private cache directory for matcalc, or None when there is none to trust."""
    if os.environ.get("MATCALC_NO_CACHE"):
        return None
    base = os.environ.get("XDG_CACHE_HOME")
    if not base or not os.path.isabs(base):
        home = os.path.expanduser("~")
        if not home or home == "~" or not os.path.isabs(home):
            return None
        base = os.path.join(home, ".cache")
    return os.path.join(base, "matcalc")


def _private_dir(create: bool) -> str | None:
    """The cache directory if it is ours and private (created 0700 when asked), else None."""
    if not hasattr(os, "getuid"):
        return None
    path = cache_dir()
    if path is None:
        return None
    if create:
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError:
            return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None     # a symlink, someone else's directory, or open to others: do not use it
    return path


def _file_name(grammar: str) -> str:
    import lark
    key = f"{FORMAT}\0{lark.__version__}\0{grammar}".encode("utf-8")
    return f"parser-{hashlib.sha256(key).hexdigest()[:32]}.json"


# --- JSON encoding of lark's serialized tables ---------------------------------------------------
# The tables hold tuples and dicts with integer keys, which JSON lacks; both are tagged.

def _encode(obj):
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and "__t" not in obj and "__d" not in obj:
            return {k: _encode(v) for k, v in obj.items()}
        return {"__d": [[_encode(k), _encode(v)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__t": [_encode(v) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"cannot cache a {type(obj).__name__}")


def _decode_object(obj: dict):
    """json's object_hook: tagged tuples and integer-keyed dicts back to what lark wrote."""
    if "__t" in obj:
        return tuple(obj["__t"])
    if "__d" in obj:
        return {_hashable(k): v for k, v in obj["__d"]}
    return obj


def _hashable(k):
    if isinstance(k, (list, dict)):
        raise ValueError("unhashable key in the parser cache")
    return k


def load(grammar: str):
    """The cached parser for this grammar, or None (no cache, not ours, stale or damaged)."""
    directory = _private_dir(create=False)
    if directory is None:
        return None
    path = os.path.join(directory, _file_name(grammar))
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_size > MAX_CACHE_BYTES:
            return None
        with os.fdopen(fd, "rb") as fh:
            fd = None
            raw = fh.read(MAX_CACHE_BYTES + 1)
        data, memo = json.loads(raw.decode("utf-8"), object_hook=_decode_object)
        from lark import Lark
        return Lark._load_from_dict(data, memo)
    except Exception:   # a damaged or foreign cache is rebuilt, never trusted
        return None
    finally:
        if fd is not None:
            os.close(fd)


def store(grammar: str, parser) -> None:
    """Write the parser's tables to the private cache, atomically; silently skip on failure."""
    directory = _private_dir(create=True)
    if directory is None:
        return
    try:
        from lark.grammar import Rule
        from lark.lexer import TerminalDef
        text = json.dumps(_encode(parser.memo_serialize([TerminalDef, Rule])), separators=(",", ":"))
    except Exception:
        return
    path = os.path.join(directory, _file_name(grammar))
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
