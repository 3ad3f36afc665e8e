"""A work budget for every request: a deadline, and limits on sizes, each refused with a message
that names the limit and says how to go on.

    from matcalc_cli import budget
    with budget.limit(60):             # one request (the CLI does this; a batch does it per entry)
        d = derive(...)

The deadline is enforced two ways.  Long loops call ``budget.check()``, which raises when the
time is up (works in any thread).  In the main thread of a Unix process a timer (SIGALRM) also
interrupts work that does not check, such as one long SymPy call.  Limits nest: ``verify`` gives
its symbolic simplification a shorter deadline inside the request's.

The exception raised inside the block is a BaseException (``_Expired``), so that no
``except Exception`` in a library swallows it; the ``limit`` that owns the deadline turns it into
``TimeLimitError``, a MatcalcError (exit status 1) with the limit in its message.
"""

from __future__ import annotations

import gc
import signal
import threading
import time

from .errors import MatcalcError

DEFAULT_TIMEOUT = 60.0          # seconds per program (the CLI's --timeout)
MAX_INPUT_BYTES = 1_000_000     # a program read from a file or standard input
MAX_DIM_EXPONENT = 64           # n^k in a declaration
MAX_VERIFY_N = 12               # --verify N: dimensions of the explicit symbolic matrices
MAX_VERIFY_DETERMINANT = 4      # --verify: symbolic inverses and determinants of at most 4 x 4
MAX_VERIFY_ENTRIES = 20_000     # entries of the largest explicit matrix --verify would build
MAX_VERIFY_TREE = 600           # nodes of f or a result written out as a tree (SymPy works on trees)
MAX_CHECK_ENTRIES = 4_000_000   # entries of the largest array --check would evaluate
MAX_MEMORY_BYTES = 3 << 30      # memory of the process while deriving (checked as the work goes)


class TimeLimitError(MatcalcError):
    kind = "time limit"


class LimitError(MatcalcError):
    """A size limit: the input or the work it asks for is larger than matcalc handles."""

    kind = "size limit"


class _Expired(BaseException):
    """The deadline of one ``limit`` has passed (carries which one)."""

    def __init__(self, owner, memory: bool = False):
        super().__init__()
        self.owner = owner
        self.memory = memory     # the memory limit, not the deadline


class _Deadline:
    def __init__(self, seconds: float, message):
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.message = message      # (text, hint) of the TimeLimitError; None: a soft limit
        self.fired = False          # its limit has ended: never raised from now on


class _PerThread(threading.local):
    def __init__(self):
        self.active = []        # the deadlines in force in this thread, outermost first


_state = _PerThread()           # the timer (main thread) sees the main thread's deadlines


REFIRE = 1.0   # seconds: an expiry swallowed by a library's ``except BaseException`` fires again


def _fire(deadline: _Deadline, memory: bool = False):
    deadline.at = time.monotonic() + REFIRE
    _arm()          # the timer too: the exception may be swallowed where no check() follows
    raise _Expired(deadline, memory=memory)


def _timer_usable() -> bool:
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        return False
    handler = signal.getsignal(signal.SIGALRM)
    return handler in (signal.SIG_DFL, None, _on_alarm)


_collecting = [False]   # a garbage collection is under way (between its start and stop callbacks)


def _note_collection(phase, info):
    _collecting[0] = phase == "start"


gc.callbacks.append(_note_collection)


def _in_finaliser(frame) -> bool:
    """Whether the signal interrupted a garbage collection (its weakref callbacks and finalisers),
    a gc callback or a ``__del__``: an exception raised there cannot reach the request (Python
    prints it as 'unraisable' and carries on).  gc is imported at the top: an import inside a
    signal handler that interrupted an import breaks the import lock (KeyError in importlib's
    _ModuleLock.acquire)."""
    if _collecting[0]:
        return True
    callbacks = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    while frame is not None:
        if frame.f_code in callbacks or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _on_alarm(signum, frame):
    if _in_finaliser(frame):
        if _timer_usable():     # not here: try again as soon as the finaliser has returned
            signal.setitimer(signal.ITIMER_REAL, 0.005)
        return
    now = time.monotonic()
    for d in _state.active:
        if d.at <= now + 0.001 and not d.fired:
            _fire(d)            # the outermost expired deadline wins
    live = [d for d in _state.active if not d.fired]
    if live and resident_bytes() > MAX_MEMORY_BYTES:
        _fire(live[0], memory=True)
    _arm()


def _arm():
    if not _timer_usable():
        return
    live = [d for d in _state.active if not d.fired]
    if not live:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        return
    signal.signal(signal.SIGALRM, _on_alarm)
    left = min(d.at for d in live) - time.monotonic()
    # wake up at the deadline, and in between to look at the memory
    signal.setitimer(signal.ITIMER_REAL, max(min(left, MEMORY_CHECK_INTERVAL * 2.5), 0.001))


def _default_message(seconds: float) -> tuple:
    return (f"the work took longer than the time limit of {seconds:g} s",
            "raise it with --timeout SECONDS (budget.limit(seconds) in Python), or differentiate a smaller "
            "expression (shorter definition chains, fewer nested calls)")


def _memory_error():
    return refuse(f"the work needs more than {MAX_MEMORY_BYTES >> 20:,} MB of memory",
                  f"{MAX_MEMORY_BYTES >> 20:,} MB",
                  "differentiate a smaller expression (shorter definition chains, fewer nested calls), "
                  "or ask for fewer results (the Hessian is the largest)")


class _Limit:
    """The context of one deadline.  Robust to the timer firing anywhere, also inside the exit of
    an inner limit: leaving a limit drops every deadline pushed after it, and an expiry whose
    own limit was skipped over is converted here as that limit would have."""

    def __init__(self, seconds, message):
        self.seconds, self.message, self.deadline = seconds, message, None

    def __enter__(self):
        if self.seconds is None:
            return None
        self.deadline = _Deadline(self.seconds, self.message)
        _state.active.append(self.deadline)
        _arm()
        return self.deadline

    def __exit__(self, typ, exc, tb):
        if self.deadline is None:
            return False
        active = _state.active
        if self.deadline in active:
            del active[active.index(self.deadline):]   # this one and any inner one left behind
        self.deadline.fired = True                      # over: never raised from now on
        _arm()
        if isinstance(exc, _Expired) and exc.owner not in active:
            owner = exc.owner                           # ours, or an inner one that escaped its exit
            if exc.memory:
                raise _memory_error() from None
            if owner.message is None:
                raise SoftTimeout() from None
            text, hint = owner.message
            raise TimeLimitError(text, hint=hint) from None
        return False


def limit(seconds: float | None = DEFAULT_TIMEOUT, message=None) -> _Limit:
    """Run the block within ``seconds`` (None or 0: no deadline); TimeLimitError when it overruns,
    LimitError when the process holds more than MAX_MEMORY_BYTES meanwhile.

    ``message`` is (text, hint) for the error; by default it names the limit and --timeout."""
    if not seconds or seconds <= 0:
        return _Limit(None, None)
    return _Limit(float(seconds), message or _default_message(float(seconds)))


def soft_limit(seconds: float) -> _Limit:
    """Run the block within ``seconds``; on overrun raise ``SoftTimeout`` (a BaseException) for
    the caller to catch: for work that may stop early and still give an answer."""
    return _Limit(max(float(seconds), 0.001), None)


class SoftTimeout(BaseException):
    """The deadline of a ``soft_limit`` passed."""


_memory_checked = [0.0]      # when the memory was last looked at
MEMORY_CHECK_INTERVAL = 0.2  # seconds


def check() -> None:
    """Raise if a deadline in force has passed (called from long loops, about once per node
    visited; cheap), and, every few thousand calls, if the process holds more memory than
    MAX_MEMORY_BYTES (before the machine starts swapping, not after).  Both only within a
    ``limit``, which turns them into TimeLimitError / LimitError."""
    active = _state.active
    if active:
        now = time.monotonic()
        for d in active:
            if d.at <= now and not d.fired:
                _fire(d)
        if now - _memory_checked[0] > MEMORY_CHECK_INTERVAL:
            _memory_checked[0] = now
            live = [d for d in active if not d.fired]
            if live and resident_bytes() > MAX_MEMORY_BYTES:
                _fire(live[0], memory=True)


def resident_bytes() -> int:
    """The memory this process holds now (Linux: /proc/self/statm), 0 where unknown."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


try:
    import os as _os
    _PAGE = _os.sysconf("SC_PAGE_SIZE")
except (AttributeError, ValueError, OSError):   # pragma: no cover - not a POSIX system
    _PAGE = 4096


def remaining() -> float | None:
    """Seconds left before the nearest deadline, or None when there is none."""
    if not _state.active:
        return None
    return min(d.at for d in _state.active) - time.monotonic()


def refuse(what: str, limit_text: str, hint: str):
    """A LimitError that names the limit and how to go on."""
    return LimitError(f"{what}; the limit is {limit_text}", hint=hint)


def check_verify_request(derivation, n) -> None:
    """Refuse a --verify N whose explicit symbolic matrices would be too large, before any of
    them is built (and before SymPy is imported): bad arguments, N beyond MAX_VERIFY_N, matrices
    of more than MAX_VERIFY_ENTRIES entries, inverses or determinants beyond
    MAX_VERIFY_DETERMINANT (a symbolic k x k determinant has k! terms)."""
    from . import expr as E
    from .api import Derivation
    from .errors import UsageError
    if not isinstance(derivation, Derivation):
        raise TypeError(f"verify_derivation(): derivation must be a Derivation (from derive()), "
                        f"not {type(derivation).__name__}")
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"verify_derivation(): n (the dimension size) must be an int, not {n!r}")
    if not 1 <= n <= MAX_VERIFY_N:
        raise UsageError(f"--verify {n}: N must be between 1 and {MAX_VERIFY_N}",
                         hint="explicit symbolic matrices grow as N^2 symbols and their inverses and "
                              "determinants much faster; --check tests numerically at any size")

    def numel(shape) -> int:
        total = 1
        for d in shape:
            total *= _size_at(d, n)
        return min(total, 10 ** 12)

    n_x = max(numel(v.x.shape) for v in derivation.variables)   # the largest variable
    n_f = numel(derivation.expression.shape)
    roots = [derivation.expression] + [r.expr for r in derivation.results.values()]
    largest = max([n_f * n_x, n_x * n_x] + [numel(e.shape) for e in roots]
                  + [numel(sym.shape) for sym in derivation.typed.symbols.values()])
    biggest = max((_size_at(node.arg.rows, n) for node in E.walk(*roots)
                   if isinstance(node, (E.Inverse, E.Det, E.LogDet, E.Adj)) and not node.arg.is_scalar),
                  default=0)
    # with matrix functions --verify works with numbers (verify_matfun): no symbolic determinants
    numbers_only = any(isinstance(node, (E.MatFun, E.Frechet, E.FrechetMatrix)) for node in E.walk(*roots))
    if biggest > MAX_VERIFY_DETERMINANT and not numbers_only:
        raise refuse(f"--verify {n} would build symbolic inverses or determinants of "
                     f"{biggest:,} x {biggest:,} matrices",
                     f"{MAX_VERIFY_DETERMINANT} x {MAX_VERIFY_DETERMINANT}",
                     "use --verify 3 (dimensions without a fixed size), or check numerically with --check")
    # SymPy differentiates and evaluates expressions written out as trees: a definition chain,
    # small as a DAG, is exponentially large there
    written = [("f", derivation.expression)] + [(r.key, r.printed) for r in derivation.results.values()]
    name, tree = max(written, key=lambda item: E.tree_size(item[1]))
    if E.tree_size(tree) > MAX_VERIFY_TREE:
        raise refuse(f"--verify would give SymPy {'f' if name == 'f' else 'the ' + name} written out as a "
                     f"tree of {E.tree_size(tree):,} nodes (it repeats shared subexpressions)",
                     f"{MAX_VERIFY_TREE:,} nodes",
                     "check numerically with --check, which evaluates the shared expression, "
                     "or verify a shorter definition chain")
    if largest > MAX_VERIFY_ENTRIES:
        raise refuse(f"--verify {n} would build symbolic matrices of {largest:,} entries",
                     f"{MAX_VERIFY_ENTRIES:,} entries",
                     "use a smaller N, name large dimensions (vector(n), not vector(1000)), "
                     "or check numerically with --check")


def _size_at(d, n: int) -> int:
    """A dimension with every symbol set to n, capped at 10^12 (n^64 is never multiplied out)."""
    import math
    from .dims import Dim
    d = Dim.of(d)
    digits = sum(p for _s, p in d.factors) * math.log10(max(n, 1)) + math.log10(max(d.coef, 1))
    if digits > 12:
        return 10 ** 12
    return d.evaluate({s: n for s in d.symbols})
