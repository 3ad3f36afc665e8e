"""Fuzzing the parser, the pipeline and the command line.

Whatever the input, matcalc ends within a time bound with a result or a clear error: a
``MatcalcError`` through the API, exit status 1 or 2 (and no traceback, no "internal error")
through the command line.

Inputs: random printable and unicode strings, NUL bytes, token soup, mutations of valid programs
(characters and tokens deleted, inserted, swapped, duplicated), random well-typed programs, huge
or deeply nested programs, and adversarial programs (definition chains, towers, huge constants and
dimensions, control characters), each of those within a work budget (``budget.limit``).  The default run is bounded (a few thousand API cases, a few dozen
subprocesses); ``pytest -m slow tests/test_fuzz.py`` runs more, and MATCALC_FUZZ_COUNT sets how many
cases each generator makes (MATCALC_FUZZ_SEED changes the inputs).  The number of inputs tried is
printed for every test.
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from matcalc_cli import derive
from matcalc_cli.budget import SoftTimeout, TimeLimitError, limit, soft_limit
from matcalc_cli.cli import main
from matcalc_cli.errors import MatcalcError
from matcalc_cli.render import documents
from matcalc_cli.render.text import to_text
from matcalc_cli.shapes import check
from matcalc_cli.syntax import parse
from clitools import matcalc_command

SEED = int(os.environ.get("MATCALC_FUZZ_SEED", "20240611"))
COUNT = int(os.environ.get("MATCALC_FUZZ_COUNT", "0"))   # 0: the default sizes below
# the slow run makes this many times more: 33 x 3,050 API cases is over 100,000 inputs
SLOW_FACTOR = int(os.environ.get("MATCALC_FUZZ_SLOW_FACTOR", "33"))

# per-case bounds; a loaded machine may need more: MATCALC_FUZZ_TIME_SCALE=2
TIME_SCALE = float(os.environ.get("MATCALC_FUZZ_TIME_SCALE", "1"))
TIME_BOUND = 5.0 * TIME_SCALE           # seconds, one API case
HUGE_TIME_BOUND = 10.0 * TIME_SCALE     # seconds, one huge input through the API
PROCESS_TIME_BOUND = 30.0 * TIME_SCALE  # seconds, one subprocess (start-up included)
PROCESS_MEMORY = 2 << 30  # bytes of address space a fuzzed subprocess may use

# --- the corpus of valid programs that mutations start from --------------------------------------

CORPUS = [
    "x: vector(n); A: matrix(n, n); x' * A * x",
    "X: matrix(m, n); y: vector(m); w: vector(n); sum(log(1 + exp(-y .* (X * w))))",
    "X: matrix(n, n); det(X)",
    "S: symmetric(n); logdet(S) - tr(S)",
    "X: matrix(m, n); A: matrix(p, m); A * X",
    "X: matrix(n, n); inv(X)",
    "x: vector(n); exp(x)",
    "x' * A * y",
    "c * A",
    "A, B: matrix(m, n); tr(A' * B)",
    "W: matrix(m, n); x: vector(n); b: vector(m); norm2(sigmoid(W * x + b))^2",
    "X: matrix(n, n); X^2 + X'",
    "x: vector(n)\n# comment\nA: matrix(n, n)\nx' * inv(A + 2 * I) * x",
    "z: vector(n); log(sum(exp(z))) - z' * ones(n) / n_",
    "X: matrix(m, n); kron(X, I(2))",
    "x: vector(n); diag(x) * x .^ 2 ./ (1 + x)",
    "A: matrix(n, n); reshape(vec(A), n, n)' * commutation(n, n) * vec(A)",
    "x: vector(n); c: scalar; relu(c * x)' * step(x) + norm1(x) * abs(c)",
    "X: matrix(n, n); adj(X) * tanh(X) .* arctan(X)",
    "x: scalar; sqrt(x)^3 - arcsin(x / 2) + arccos(x / 3) * sin(x) / cos(x) + tan(x)",
]
CORPUS += [
    "X: matrix(m, n); y: vector(m); u = -y .* (X * w); sum(log(1 + exp(u)))",
    "x: vector(n); A: matrix(n, n)\nr = A * x - 1\ns = r' * r\ns^2 + t1",
]
CORPUS += [f"x: vector(n); {fn}(x)' * x" for fn in ("sign", "sigmoid", "log", "sqrt", "exp")]

NAMES = ["x", "y", "z", "w", "A", "B", "X", "S", "c", "t", "n", "m", "I", "lambda", "x_1", "dx", "dX2", "t1", "u"]
FUNCTIONS = ["tr", "det", "logdet", "inv", "adj", "diag", "vec", "kron", "sum", "norm1", "norm2", "exp",
             "log", "sin", "cos", "tan", "tanh", "arcsin", "arccos", "arctan", "sqrt", "sigmoid", "abs",
             "sign", "relu", "step", "I", "ones", "zeros", "commutation", "reshape", "foo"]
TOKENS = (NAMES * 3 + FUNCTIONS + ["(", ")", "(", ")", ",", "+", "-", "*", "/", ".*", "./", "^", ".^", "'", "'",
          ";", "\n", ":", "#", "=", "u =", "t1 =", "0", "1", "2", "-1", "0.5", "1e308", "1e-308", "1e999", ".5", "3.", "vector(n)",
          "matrix(n, n)", "matrix(m, n)", "symmetric(n)", "scalar", "vector", "matrix", "\\\n", " ", "\t"])
TOKEN_RE = re.compile(r"\s+|#[^\n]*|[A-Za-z_][A-Za-z0-9_]*|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+|\.[*/^]|.", re.S)


def case_count(default: int, slow: bool = False) -> int:
    if COUNT:
        return COUNT
    return default * (SLOW_FACTOR if slow else 1)


# --- generators -------------------------------------------------------------------------------

def random_printable(rng: random.Random) -> str:
    alphabet = "abcxyzAXSIn()()'*+-./^,;:#\n\t 0123456789.e[]{}\"=<>!@$%&|~`?\\"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))


def random_unicode(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randint(0, 30)):
        kind = rng.random()
        if kind < 0.3:
            out.append(rng.choice("x'*A+()"))
        elif kind < 0.5:
            out.append(chr(rng.randint(0x80, 0x2FF)))            # Latin-1, combining marks
        elif kind < 0.6:
            out.append(chr(rng.choice([0x0, 0x7, 0x1B, 0x7F, 0x85, 0xA0, 0x2028, 0x2029, 0x200B, 0x200F,
                                       0xFEFF, 0xFFFD, 0xFFFF])))
        elif kind < 0.8:
            cp = rng.randint(0x300, 0x2FFFF)
            if 0xD800 <= cp <= 0xDFFF:
                cp = 0x3BB
            out.append(chr(cp))
        else:
            out.append(rng.choice(["λ", "∑", "ᵀ", "⊗", "∘", "−", "×", "·", "²", "😀", "ｘ", "Ａ", "𝑥"]))
    return "".join(out)


def with_nul(rng: random.Random) -> str:
    program = rng.choice(CORPUS)
    i = rng.randint(0, len(program))
    return program[:i] + "\0" * rng.randint(1, 3) + program[i:]


def token_soup(rng: random.Random) -> str:
    return " ".join(rng.choice(TOKENS) for _ in range(rng.randint(1, 25)))


def mutate_characters(rng: random.Random, program: str) -> str:
    s = list(program)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        i = rng.randrange(len(s) + 1)
        if op == 0 and s:                                   # delete
            del s[min(i, len(s) - 1)]
        elif op == 1:                                       # insert
            s.insert(i, rng.choice("()'*+-./^,;:# \nxA0123456789"))
        elif op == 2 and len(s) > 1:                        # swap two characters
            j = rng.randrange(len(s))
            i = min(i, len(s) - 1)
            s[i], s[j] = s[j], s[i]
        elif op == 3 and s:                                 # replace
            s[min(i, len(s) - 1)] = rng.choice("()'*+-./^,;:# xA1")
        else:                                               # duplicate a slice
            j = rng.randint(i, min(len(s), i + 10))
            s[i:i] = s[i:j]
    return "".join(s)


def mutate_tokens(rng: random.Random, program: str) -> str:
    toks = TOKEN_RE.findall(program)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(5)
        i = rng.randrange(len(toks) + 1)
        if op == 0 and toks:
            del toks[min(i, len(toks) - 1)]
        elif op == 1:
            toks.insert(i, rng.choice(TOKENS))
        elif op == 2 and len(toks) > 1:
            j = rng.randrange(len(toks))
            i = min(i, len(toks) - 1)
            toks[i], toks[j] = toks[j], toks[i]
        elif op == 3 and toks:
            toks[min(i, len(toks) - 1)] = rng.choice(TOKENS)
        else:
            j = rng.randint(i, min(len(toks), i + 6))
            toks[i:i] = toks[i:j]
    return "".join(toks)


# random well-typed programs: expressions built to a shape, over a fixed set of declarations
TYPED_DECLS = "x, y: vector(n); z: vector(m); A, B: matrix(n, n); C: matrix(m, n); S: symmetric(n); c, t: scalar"
LEAVES = {"s": ["c", "t", "2", "0.5", "x' * y", "tr(A)", "sum(C)", "z' * C * x"],
          "v": ["x", "y", "A * x", "C' * z", "ones(n)", "diag(A)"],
          "w": ["z", "C * x", "ones(m)"],
          "M": ["A", "B", "S", "I", "A'", "x * y'"],
          "R": ["C", "z * x'", "ones(m, n)"]}
TRANSPOSED = {"v": "r", "w": "q", "M": "M", "R": "T", "s": "s"}   # r = 1 x n, q = 1 x m, T = n x m


def typed_expression(rng: random.Random, kind: str, depth: int) -> str:
    """Text of a random expression of shape kind: s scalar, v n-vector, w m-vector, M n x n, R m x n,
    r 1 x n, q 1 x m, T n x m."""
    if kind in ("r", "q", "T"):
        base = {"r": "v", "q": "w", "T": "R"}[kind]
        return f"({typed_expression(rng, base, depth)})'"
    if depth <= 0 or rng.random() < 0.2:
        return rng.choice(LEAVES[kind])
    d = depth - 1
    e = lambda k: typed_expression(rng, k, d)
    elementwise = rng.choice(["exp", "sin", "cos", "tanh", "sigmoid", "arctan", "abs", "relu", "sqrt", "log",
                              "step", "sign", "tan", "arcsin", "arccos"])
    common = [
        lambda: f"{e(kind)} + {e(kind)}", lambda: f"{e(kind)} - {e(kind)}", lambda: f"-{e(kind)}",
        lambda: f"{e('s')} * {e(kind)}", lambda: f"{e(kind)} / (2 + {e('s')})", lambda: f"{e(kind)} .* {e(kind)}",
        lambda: f"{elementwise}({e(kind)})", lambda: f"({e(kind)}) .^ 2", lambda: f"{e(kind)} ./ (1 + {e(kind)} .^ 2)",
        lambda: f"{e(kind)} + {e('s')}",
    ]
    specific = {
        "s": [lambda: f"{e('r')} * {e('v')}", lambda: f"tr({e('M')})", lambda: f"det({e('M')})",
              lambda: f"logdet(S + {e('M')} * {e('M')}')", lambda: f"sum({e('R')})", lambda: f"norm2({e('v')})",
              lambda: f"norm1({e('w')})", lambda: f"{e('q')} * {e('R')} * {e('v')}", lambda: f"({e('s')})^2",
              lambda: f"{e('s')}^{e('s')}", lambda: f"{e('v')}' * inv({e('M')}) * {e('v')}"],
        "v": [lambda: f"{e('M')} * {e('v')}", lambda: f"{e('T')} * {e('w')}", lambda: f"diag({e('M')})",
              lambda: f"vec({e('r')})", lambda: f"reshape({e('r')}, n, 1)", lambda: f"diag({e('v')}) * {e('v')}"],
        "w": [lambda: f"{e('R')} * {e('v')}", lambda: f"kron({e('w')}, {e('s')})"],
        "M": [lambda: f"{e('M')} * {e('M')}", lambda: f"inv({e('M')})", lambda: f"{e('M')}'", lambda: f"{e('M')}^2",
              lambda: f"{e('v')} * {e('r')}", lambda: f"diag({e('v')})", lambda: f"{e('T')} * {e('R')}",
              lambda: f"adj({e('M')})", lambda: f"reshape(vec({e('M')}), n, n)", lambda: f"{e('M')}^-1"],
        "R": [lambda: f"{e('R')} * {e('M')}", lambda: f"{e('w')} * {e('r')}", lambda: f"kron({e('q')}', {e('r')})"],
    }
    return rng.choice(common + specific[kind] * 2)()


def typed_program(rng: random.Random) -> str:
    kind = rng.choice("sssvMR")
    if kind == "s" and rng.random() < 0.3:     # with a definition
        u = typed_expression(rng, "v", rng.randint(1, 3))
        return f"{TYPED_DECLS}\nu = {u}\n{typed_expression(rng, kind, rng.randint(1, 3))} + u' * u"
    return f"{TYPED_DECLS}\n{typed_expression(rng, kind, rng.randint(1, 4))}"


# --- running one case under a time bound ------------------------------------------------------

class CaseTimeout(BaseException):
    """Raised by the alarm: a BaseException, so that no ``except Exception`` in matcalc hides it."""


@contextmanager
def time_bound(seconds: float):
    def on_alarm(signum, frame):
        raise CaseTimeout()

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextmanager
def default_recursion_limit():
    """The API must not rely on the command line's raised recursion limit."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


class Tally:
    """Outcomes of a batch of cases; failures keep the input and what went wrong."""

    def __init__(self, name: str):
        self.name = name
        self.outcomes: Counter = Counter()
        self.failures: list = []
        self.started = time.perf_counter()
        self.last_error = ""

    def add(self, outcome: str, program: str = "", problem: str = ""):
        self.outcomes[outcome] += 1
        if problem:
            self.failures.append((program, problem))

    @property
    def tried(self) -> int:
        return sum(self.outcomes.values())

    def report(self, capsys) -> None:
        elapsed = time.perf_counter() - self.started
        with capsys.disabled():
            print(f"\n[fuzz] {self.name}: {self.tried} inputs in {elapsed:.1f}s "
                  f"({', '.join(f'{k} {v}' for k, v in sorted(self.outcomes.items()))})"
                  + (f" last error: {self.last_error[:100]}" if self.tried == 1 and self.last_error else ""))

    def check(self) -> None:
        if self.failures:
            shortest = sorted(self.failures, key=lambda f: len(f[0]))[:8]
            lines = [f"{len(self.failures)} of {self.tried} inputs failed; the shortest:"]
            for program, problem in shortest:
                shown = program if len(program) < 300 else program[:150] + " ... " + program[-100:]
                lines.append(f"  {shown!r}\n      -> {problem}")
            pytest.fail("\n".join(lines), pytrace=False)


def api_case(tally: Tally, program: str, rng: random.Random | None = None, bound: float = TIME_BOUND,
             flags: dict | None = None, deadline: float | None = None) -> None:
    """derive() ends in time with a Derivation (whose results print) or a MatcalcError.  With a
    ``deadline`` the case runs under a work budget (budget.limit), as one entry of a batch does."""
    start = time.perf_counter()
    try:
        # with a work budget, its timer interrupts the work at the deadline; the case's own bound
        # then runs on the same timer (budget.soft_limit), so the two do not compete for SIGALRM
        outer = time_bound(bound) if deadline is None else soft_limit(bound)
        with default_recursion_limit(), outer, limit(deadline):
            wrt = None
            try:
                typed = check(parse(program))
            except MatcalcError as e:
                tally.add("parse/shape error")
                tally.last_error = f"{type(e).__name__}: {e.message}"
                return
            names = list(typed.variables) or list(typed.symbols)
            if len(names) > 1:
                wrt = rng.choice(names) if rng is not None else ("x" if "x" in names else names[0])
            if flags is None:
                flags = {}
                if rng is not None:
                    flags = {k: rng.random() < 0.4 for k in ("gradient", "jacobian", "hessian")}
            d = derive(program, wrt=wrt, **flags)
            for result in d.results.values():
                result.text()
            documents.plain(d)
            documents.as_json(d)
            tally.add("derived")
    except TimeLimitError as e:
        tally.add("time limit")
        tally.last_error = f"{type(e).__name__}: {e.message}"
    except MatcalcError as e:
        tally.add("clean error")
        tally.last_error = f"{type(e).__name__}: {e.message}"
    except (CaseTimeout, SoftTimeout):
        tally.add("TIMEOUT", program, f"no answer within {bound:.0f}s")
    except BaseException as e:  # noqa: BLE001 - anything else is the finding
        if isinstance(e, KeyboardInterrupt):
            raise
        where = traceback.extract_tb(e.__traceback__)[-1]
        tally.add("CRASH", program, f"{type(e).__name__}: {str(e)[:200]} "
                                    f"(at {Path(where.filename).name}:{where.lineno})")
    finally:
        elapsed = time.perf_counter() - start
        if elapsed > bound * 1.5:   # the alarm could not interrupt a long C call
            tally.add("SLOW", program, f"took {elapsed:.1f}s")


# --- adversarial programs: what a hostile user tries ------------------------------------------

CONTROL = [chr(c) for c in range(32) if chr(c) not in "\n"] + ["\x7f", "\u202e", "\u2028", "\ufeff"]
HUGE_CONSTANTS = ["1e308", "1e-308", "2.2e-308", "1e309", "1e-400", "1e200^2", "(1e200)^2", "2^70", "2^1024",
                  "2^-1080", "10^400", "1e99999999", "9" * 400, "0.5^2000", "1 / 1e-320", "(2^70)^2", "0^-1",
                  "0^0", "(-8)^(1/3)", "log(0)", "sqrt(-1)", "arcsin(2)", "log(1)", "exp(0)", "1.000001^100000",
                  "2^0.5", "1e-300 * 1e-300", "1e300 * 1e300 / 1e300"]
HUGE_DIMS = ["n^64", "n^65", "n^99999999", "999999999", "99999999999", "0", "n*m*p*q*r*s", "n^2*m^3",
             "1000", "100000"]


def _chain_program(rng: random.Random, depth: int) -> str:
    kind = rng.choice(["matrix", "vector", "scalar"])
    if kind == "matrix":
        step = rng.choice(["{p} * {p}' + {p}", "inv({p}) + {p}", "{p} * X + X * {p}", "{p} .* {p} - {p}'",
                           "exp({p}) + {p}"])
        head, last = "X: matrix(n, n); Y0 = X", rng.choice(["tr({p})", "sum({p})", "logdet({p})", "{p}"])
    elif kind == "vector":
        step = rng.choice(["exp({p}) + {p} .* {p}", "A * {p} + {p}", "sin({p}) .* {p}", "{p} ./ (1 + {p} .* {p})"])
        head, last = "x: vector(n); A: matrix(n, n); Y0 = x", rng.choice(["sum({p})", "{p}' * {p}", "{p}"])
    else:
        step = rng.choice(["sin({p}) + {p}", "{p} * {p} + x", "exp({p}) / (1 + {p}^2)", "{p}^{p}"])
        head, last = "x: scalar; Y0 = x", "{p}"
    defs = [f"Y{i} = " + step.format(p=f"Y{i - 1}") for i in range(1, depth + 1)]
    return "; ".join([head] + defs + [last.format(p=f"Y{depth}")])


def _tower_program(rng: random.Random, depth: int) -> str:
    return rng.choice([
        "x: scalar; " + "^".join(["x"] * depth),
        "x: scalar; " + "exp(" * depth + "x" + ")" * depth,
        "X: matrix(n, n); tr(" + "inv(X + " * depth + "X" + ")" * (depth + 1),
        "X: matrix(n, n); " + ", ".join(f"A{i}" for i in range(depth)) + ": matrix(n, n); tr("
        + " * ".join(f"A{i} * X" for i in range(depth)) + ")",
        "x: vector(n); " + " + ".join(f"c{i} * x' * x" for i in range(depth * 4)),
        " + ".join(f"c{i}" for i in range(depth * 4)),
        "X: matrix(n, n); det(" + "X * " * depth + "X)",
    ])


def _constant_program(rng: random.Random) -> str:
    c = rng.choice(HUGE_CONSTANTS)
    return rng.choice([f"x: scalar; {c} * x", f"x: scalar; x / ({c})", f"x: scalar; x^({c})",
                       f"x: vector(n); ({c}) * x' * x", f"x: scalar; ({c})^x", f"x: scalar; exp({c} * x)"])


def _dimension_program(rng: random.Random) -> str:
    d = rng.choice(HUGE_DIMS)
    return rng.choice([f"x: vector({d}); x' * x", f"A: matrix({d}, n); x: vector(n); sum(A * x)",
                       f"x: vector(n); ones({d})' * ones({d}) * x' * x", f"S: symmetric({d}); logdet(S)",
                       f"m: scalar; x: vector(n); m * ones(m)' * ones(m) * x' * x", f"x: vector(n); I({d}) * x"])


def _control_program(rng: random.Random) -> str:
    program = list(rng.choice(CORPUS))
    for _ in range(rng.randint(1, 4)):
        program.insert(rng.randrange(len(program) + 1), rng.choice(CONTROL))
    text = "".join(program)
    return text if rng.random() < 0.5 else f"# {rng.choice(CONTROL)}\x1b[2J comment\n" + text


def adversarial_program(rng: random.Random) -> str:
    """Definition chains, towers, huge constants and dimensions, control characters."""
    kind = rng.random()
    if kind < 0.3:
        return _chain_program(rng, rng.choice([2, 5, 10, 20, 40, 60]))
    if kind < 0.45:
        return _tower_program(rng, rng.choice([3, 8, 20, 40, 64]))
    if kind < 0.65:
        return _constant_program(rng)
    if kind < 0.8:
        return _dimension_program(rng)
    return _control_program(rng)


# --- API-level fuzzing ----------------------------------------------------------------------

GENERATORS = {
    "printable": lambda rng: random_printable(rng),
    "unicode": lambda rng: random_unicode(rng),
    "nul": lambda rng: with_nul(rng),
    "token-soup": lambda rng: token_soup(rng),
    "char-mutation": lambda rng: mutate_characters(rng, rng.choice(CORPUS)),
    "token-mutation": lambda rng: mutate_tokens(rng, rng.choice(CORPUS)),
    "typed": lambda rng: typed_program(rng),
    "adversarial": lambda rng: adversarial_program(rng),
}
DEFAULT_COUNTS = {"printable": 400, "unicode": 300, "nul": 100, "token-soup": 500, "char-mutation": 600,
                  "token-mutation": 600, "typed": 500, "adversarial": 50}
DEADLINE = 2.0 * TIME_SCALE   # the work budget of one adversarial case: a result or a time-limit error


def _fuzz_api(generator: str, capsys, slow: bool):
    rng = random.Random(f"{SEED}:{generator}")
    tally = Tally(f"api/{generator}" + (" (slow)" if slow else ""))
    make = GENERATORS[generator]
    deadline = DEADLINE if generator == "adversarial" else None
    for _ in range(case_count(DEFAULT_COUNTS[generator], slow)):
        api_case(tally, make(rng), rng, deadline=deadline)
    tally.report(capsys)
    assert tally.tried >= 1
    tally.check()


@pytest.mark.parametrize("generator", list(GENERATORS))
def test_fuzz_api(generator, capsys):
    _fuzz_api(generator, capsys, slow=False)


@pytest.mark.slow
@pytest.mark.parametrize("generator", list(GENERATORS))
def test_fuzz_api_long(generator, capsys):
    _fuzz_api(generator, capsys, slow=True)


def test_mutations_do_produce_valid_and_invalid_programs(capsys):
    """The mutation fuzzer is only useful if it reaches both sides of the parser."""
    rng = random.Random(SEED)
    tally = Tally("api/mutation-mix")
    for _ in range(200):
        api_case(tally, mutate_tokens(rng, rng.choice(CORPUS)), rng)
    tally.report(capsys)
    assert tally.outcomes["derived"] > 10
    assert tally.outcomes["parse/shape error"] > 10


# --- round trip of random well-typed programs ------------------------------------------------

def test_fuzz_text_round_trip(capsys):
    """to_text(f) of random well-typed programs parses back to the same IR."""
    rng = random.Random(f"{SEED}:round-trip")
    tally = Tally("api/round-trip")
    for _ in range(case_count(400)):
        program = typed_program(rng)
        try:
            with default_recursion_limit(), time_bound(TIME_BOUND):
                typed = check(parse(program))
                text = to_text(typed.expression)
                back = check(parse(TYPED_DECLS + "\n" + text)).expression
        except MatcalcError:
            tally.add("clean error")
            continue
        except CaseTimeout:
            tally.add("TIMEOUT", program, "round trip too slow")
            continue
        except Exception as e:  # noqa: BLE001
            tally.add("CRASH", program, f"{type(e).__name__}: {e}")
            continue
        if back == typed.expression:
            tally.add("same")
        else:
            tally.add("DIFFERENT", program, f"printed as {text!r}, parsed back as {to_text(back)!r}")
    tally.report(capsys)
    assert tally.outcomes["same"] > 100
    tally.check()


# --- huge and deeply nested inputs --------------------------------------------------------------

def _huge_inputs() -> dict:
    sum_terms = " + ".join(f"{i % 7 + 1} * x' * a{i}" for i in range(2000))
    return {
        "5000 nested parentheses": "x: scalar; " + "(" * 5000 + "x" + ")" * 5000,
        "190 nested parentheses": "x: scalar; " + "(" * 190 + "x" + ")" * 190,
        "5000 unclosed parentheses": "x: scalar; " + "(" * 5000 + "x",
        "5000 closing parentheses": "x: scalar; x" + ")" * 5000,
        "200 nested function calls": "x: scalar; " + "exp(" * 200 + "x" + ")" * 200,
        "40 nested function calls": "x: scalar; " + "sin(" * 40 + "x" + ")" * 40,
        "2,000-term sum of distinct terms": "x: vector(n); " + sum_terms,
        "2,000-term sum of equal terms": "x: vector(n); " + " + ".join(["x' * x"] * 2000),
        "2,000-factor product": "x: scalar; " + " * ".join(["x"] * 2000),
        "2,000 matrix factors": "x: vector(n); A: matrix(n, n); x' * " + "A * " * 2000 + "x",
        "10,000 unary minuses": "x: scalar; " + "-" * 10000 + "x",
        "10,000 unary minuses with spaces": "x: scalar; " + "- " * 10000 + "x",
        "100 KB line": "x: vector(n); " + " + ".join(["x' * x"] * 11000),
        "100 KB comment": "x: vector(n); x' * x # " + "c" * 100_000,
        "100 KB name": "x: vector(n); x' * x + 0 * " + "a" * 100_000 + "' * x",
        "100 KB number": "x: scalar; " + "9" * 100_000 + " * x",
        "100 KB of whitespace and separators": "x: vector(n)" + " ;\n\t" * 25_000 + "x' * x",
        "5,000 transposes": "x: vector(n); x" + "'" * 5000 + " * x",
        "5,001 transposes": "x: vector(n); x" + "'" * 5001 + " * x",
        "151 transposes": "x: vector(n); x" + "'" * 151 + " * x",
        "1,000 declarations": "".join(f"a{i}: vector(n); " for i in range(1000)) + "x: vector(n); x' * a999",
        "1,000 names in one declaration": ", ".join(f"a{i}" for i in range(1000)) + ": vector(n); a0' * a999",
        "1,000 undeclared names": "x: vector(n); " + " + ".join(f"x' * A{i} * x" for i in range(1000)),
        "1,010 independent undeclared vectors": "x: vector(n); x' * x + " + " + ".join(f"sum(a{i})" for i in range(1010)),
        "trace of a 1,000-matrix chain": "X: matrix(n, n); tr(" + " * ".join(f"A{i}" for i in range(1000)) + " * X)",
        "power tower of 150": "x: scalar; " + "^".join(["x"] * 150),
        "power tower of 12 with Hessian": "x: scalar; " + "^".join(["x"] * 12),
        "40 nested inverses": "X: matrix(n, n); tr(" + "inv(" * 40 + "X" + ")" * 40 + ")",
        "matrix power 64": "X: matrix(n, n); tr(X^64)",
        "matrix power 10^9": "X: matrix(n, n); tr(X^1000000000)",
        "elementwise power 10^9": "x: vector(n); sum(x .^ 1000000000)",
        "1,000 Hadamard factors": "x: vector(n); sum(" + " .* ".join(["x"] * 1000) + ")",
        "200 nested sums": "x: vector(n); " + "sum(" * 200 + "x" + ")" * 200,
        "huge dimension product": "A: matrix(" + "*".join(["n"] * 500) + ", 3); sum(A)",
        "huge integer dimension": "x: vector(99999999999999999999); x' * x",
        "1e308 squared": "c: scalar; 1e308 * 1e308 * c",
        "1 MB program": "x: vector(n); " + "+".join(["x'*x"] * 260_000),
    }


HUGE = _huge_inputs()
HESSIAN_CASES = {"power tower of 12 with Hessian", "40 nested function calls", "2,000-factor product"}


@pytest.mark.parametrize("name", list(HUGE))
def test_huge_input_through_the_api(name, capsys):
    tally = Tally(f"api/huge: {name}")
    flags = {"hessian": True} if name in HESSIAN_CASES else {}
    api_case(tally, HUGE[name], bound=HUGE_TIME_BOUND, flags=flags)
    tally.report(capsys)
    tally.check()


# --- the command line, in process ----------------------------------------------------------

def cli_case(tally: Tally, args: list, stdin=None) -> None:
    runner = CliRunner()
    old = sys.getrecursionlimit()
    try:
        with time_bound(TIME_BOUND):
            # the work budget is what keeps a hostile program within the bound: give it one
            result = runner.invoke(main, args + ["--timeout", f"{DEADLINE:g}"], input=stdin,
                                   catch_exceptions=True)
    except CaseTimeout:
        tally.add("TIMEOUT", repr(args), f"no answer within {TIME_BOUND:.0f}s")
        return
    finally:
        sys.setrecursionlimit(old)
    program = args[0] if args else ""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        tally.add("CRASH", program, f"uncaught {type(result.exception).__name__}: {result.exception}")
    elif result.exit_code not in (0, 1, 2):
        tally.add("BAD EXIT", program, f"exit status {result.exit_code}")
    elif "Traceback" in result.stderr or "internal error" in result.stderr:
        tally.add("INTERNAL", program, result.stderr.strip()[-300:])
    elif result.exit_code != 0 and not result.stderr.strip():
        tally.add("SILENT", program, f"exit {result.exit_code} without a message")
    elif result.exit_code == 0 and not result.stdout.strip():
        tally.add("EMPTY", program, "exit 0 without output")
    else:
        tally.add(f"exit {result.exit_code}")


FORMAT_ARGS = [[], ["--format", "json"], ["--format", "latex"], ["--format", "numpy"], ["--hessian"],
               ["--jacobian", "--layout", "denominator"], ["--gradient", "--symmetric-gradient", "cookbook"]]


def test_fuzz_cli_in_process(capsys):
    rng = random.Random(f"{SEED}:cli")
    tally = Tally("cli-runner")
    makers = list(GENERATORS.values())
    for _ in range(case_count(300)):
        program = rng.choice(makers)(rng)
        args = [program] + rng.choice(FORMAT_ARGS)
        if rng.random() < 0.5:
            args += ["--wrt", rng.choice(NAMES)]
        if rng.random() < 0.2:
            cli_case(tally, ["-"] + args[1:], stdin=program)
        else:
            cli_case(tally, args)
    tally.report(capsys)
    tally.check()


# --- the command line, as a subprocess -------------------------------------------------------



def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (PROCESS_MEMORY, PROCESS_MEMORY))


def process_case(args: list, stdin: bytes | None = None):
    """(outcome, problem) for one subprocess run."""
    start = time.perf_counter()
    try:
        budget = ["--timeout", f"{PROCESS_TIME_BOUND / 2:g}"]    # within the bound, start-up included
        p = subprocess.run(matcalc_command() + args + budget, input=stdin or b"", capture_output=True,
                           timeout=PROCESS_TIME_BOUND, preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired:
        return "TIMEOUT", f"no answer within {PROCESS_TIME_BOUND:.0f}s"
    elapsed = time.perf_counter() - start
    err = p.stderr.decode("utf-8", "replace")
    if p.returncode not in (0, 1, 2):
        return "BAD EXIT", f"exit status {p.returncode}: {err[-300:]}"
    if "Traceback" in err or "internal error" in err:
        return "INTERNAL", err.strip()[-300:]
    if p.returncode != 0 and not err.strip():
        return "SILENT", f"exit {p.returncode} without a message"
    if p.returncode == 0 and "--format" in args and "json" in args:
        try:
            json.loads(p.stdout)
        except ValueError:
            return "BAD JSON", p.stdout[:200].decode("utf-8", "replace")
    return f"exit {p.returncode}", f"{elapsed:.1f}s"


def _process_cases(rng: random.Random, count: int) -> list:
    """(label, args, stdin bytes) for subprocess runs: some of every kind, huge ones included."""
    cases = []
    makers = list(GENERATORS.items())
    for i in range(count):
        name, make = makers[i % len(makers)]
        program = make(rng)
        extra = rng.choice(FORMAT_ARGS) + (["--wrt", rng.choice(NAMES)] if rng.random() < 0.5 else [])
        if "\0" in program or i % 5 == 0:      # NUL cannot be an argument: send it on stdin
            cases.append((name + " (stdin)", ["-"] + extra, program.encode("utf-8", "surrogatepass")))
        else:
            cases.append((name, [program] + extra, None))
    cases.append(("invalid UTF-8 on stdin", ["-"], b"x: vector(n); x' * \xff\xfe x"))
    cases.append(("binary garbage on stdin", ["-"], bytes(rng.randrange(256) for _ in range(2000))))
    for name in ("5000 nested parentheses", "10,000 unary minuses", "2,000-term sum of distinct terms",
                 "1 MB program", "power tower of 150", "5,000 transposes", "1,000 declarations"):
        cases.append((f"huge: {name} (stdin)", ["-", "--wrt", "x"], HUGE[name].encode()))
    cases.append(("huge: 100 KB line (argv)", [HUGE["100 KB line"]], None))
    cases.append(("power tower of 60 with Hessian", ["x: scalar; " + "^".join(["x"] * 60), "--hessian"], None))
    cases.append(("self-referential definition", ["x: vector(n); t = t + x; t' * x"], None))
    return cases


def _fuzz_processes(capsys, count: int, label: str):
    rng = random.Random(f"{SEED}:process")
    tally = Tally(label)
    cases = _process_cases(rng, count)
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda c: process_case(c[1], c[2]), cases))
    for (name, args, stdin), (outcome, problem) in zip(cases, outcomes):
        program = stdin.decode("utf-8", "replace") if stdin is not None else (args[0] if args else "")
        if outcome.startswith("exit"):
            tally.add(outcome)
        else:
            tally.add(outcome, f"[{name}] {program}", problem)
    tally.report(capsys)
    tally.check()


def test_fuzz_subprocess(capsys):
    _fuzz_processes(capsys, case_count(21), "subprocess")


@pytest.mark.slow
def test_fuzz_subprocess_long(capsys):
    _fuzz_processes(capsys, case_count(21, slow=True), "subprocess (slow)")
