"""The command-line contract, checked from the outside as an independent checker would: matcalc run
as a program on a real pseudo-terminal, through pdflatex, on batch files of thousands of entries,
and against hand-written code.  One command runs every check and prints what it found:

    python tests/contract_checks.py            # all checks (about 15 min on 2 busy cores)
    python tests/contract_checks.py pty latex  # some of them: pty latex batch numpy errors

The same checks run as slow tests: ``pytest -m slow -s tests/test_contract.py``.  Each check
returns a list of problems (empty when all is well); the corpus is tests/contract_corpus.py.
"""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO)]

from clitools import matcalc_command, run_on_terminal  # noqa: E402
from contract_corpus import BAD, GOOD  # noqa: E402

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
PREAMBLE = "\\documentclass{article}\n\\usepackage{amsmath}\n\\begin{document}\n"


def matcalc(args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(matcalc_command() + list(args), capture_output=True, text=True, env=ENV,
                          timeout=kw.pop("timeout", 300), **kw)


# --- (a) a real terminal ---------------------------------------------------------------------------

def run_pty(args, columns: int, env=None, timeout: float = 120) -> tuple:
    """(exit status, output) of matcalc with stdin, stdout and stderr on a pseudo-terminal."""
    code, output, _ = run_on_terminal(args, columns, env, timeout, stdin_on_terminal=True, base_env=ENV)
    return code, output


TERMINALS = [(40, {}), (80, {"NO_COLOR": ""}), (132, {"TERM": "dumb"}), (80, {})]


def check_pty(step: int = 1) -> list:
    """Every program at 40/80/132 columns, with and without NO_COLOR and TERM=dumb; every bad
    command at 40 and 80: no line wider than the terminal, colour exactly when allowed."""
    from rich.cells import cell_len
    cases = [([p] + shlex.split(o), cols, env) for p, o in GOOD[::step] for cols, env in TERMINALS]
    cases += [(args, cols, env) for args, _, _ in BAD for cols, env in TERMINALS[:2]]
    problems = []

    def one(case):
        args, cols, env = case
        return case, run_pty(args, cols, env)

    with ThreadPoolExecutor(2) as pool:
        for (args, cols, env), (code, out) in pool.map(one, cases):
            plain = ANSI.sub("", out)
            what = []
            coloured = "\x1b" in out
            if coloured and env:
                what.append("escape codes though colour is off")
            if not coloured and not env and code == 0:
                what.append("no colour on a terminal")
            if "\x1b" in plain:
                what.append("a stray escape character")
            wide = [line for line in plain.split("\n") if cell_len(line) > cols]
            if wide:
                what.append(f"{len(wide)} lines wider than {cols}: {wide[0]!r}")
            if "Traceback" in out or code not in (0, 1, 2):
                what.append(f"exit {code} / traceback")
            if what:
                problems.append(f"{shlex.join(args)} at {cols} columns {env}: {'; '.join(what)}")
    return problems


# --- (b) LaTeX through pdflatex ----------------------------------------------------------------------

def compile_problems(text: str) -> list:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "doc.tex").write_text(text, encoding="utf-8")
        done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp,
                              capture_output=True, text=True, timeout=300)
        log = (Path(tmp) / "doc.log").read_text(encoding="latin-1")
    problems = re.findall(r"^! .*", log, re.M) + re.findall(r"^Overfull \\hbox.*", log, re.M)
    return problems or ([f"pdflatex exit {done.returncode}"] if done.returncode else [])


def _inline_layouts(text: str) -> list:
    lines = [line for line in text.splitlines() if line]
    # (not all of them run together as one paragraph: there a few lines with short formulas,
    # which get no breaks of their own, still run up to 21pt long)
    return ["\n\n".join(lines),                                           # a paragraph each
            "\n\n".join(f"We find {line} for every direction." for line in lines)]   # in sentences


def check_latex(styles=("align", "inline", "equation", "document"), chunk: int = 10) -> list:
    """Every program in every style compiled with pdflatex + amsmath alone: no error and no
    overfull line (inline: a paragraph per result, and inside sentences)."""
    from click.testing import CliRunner
    from matcalc_cli.cli import main
    if shutil.which("pdflatex") is None:
        return ["pdflatex is not installed"]
    problems = []
    runner = CliRunner()
    for style in styles:
        outputs = []
        for program, options in GOOD:
            r = runner.invoke(main, [program] + shlex.split(options) + ["--format", "latex", "--latex-style", style])
            if r.exit_code:
                problems.append(f"{style}: {program} {options}: exit {r.exit_code}: {r.output[-200:]}")
            else:
                outputs.append((f"{program} | {options}", r.stdout))
        if style == "document":
            docs = [(name, [text]) for name, text in outputs]
        elif style == "inline":
            docs = [(name, [PREAMBLE + t + "\n\\end{document}\n" for t in _inline_layouts(text)]) for name, text in outputs]
        else:
            docs = [(name, [PREAMBLE + text + "\\end{document}\n"]) for name, text in outputs]
        for i in range(0, len(docs), chunk):        # a few programs per run; the culprits one by one
            group = docs[i:i + chunk]
            if style != "document" and not compile_problems(_joined(group)):
                continue
            for name, texts in group:
                for text in texts:
                    found = compile_problems(text)
                    if found:
                        problems.append(f"{style}: {name}: {found[:2]}")
    return problems


def _joined(group) -> str:
    bodies = [t.split("\\begin{document}\n", 1)[1].rsplit("\\end{document}", 1)[0] for _, texts in group for t in texts]
    return PREAMBLE + "\n\n".join(bodies) + "\\end{document}\n"


# --- (c) batch files of thousands of entries -------------------------------------------------------------

BAD_ENTRIES = [
    "x: vector(n); A: matrix(m, n); x' * A * x | --wrt x",
    "x: vector(n); x' * x + | --wrt x",
    "x: vector(n); foo(x) | --wrt x",
    "x: vector(n); x' * x | --wrt x --hesian",
    "X: matrix(m, n); det(X) | --wrt X",
    "x: vectr(n); x' * x",
    "x: vector(n); x' * x | --wrt y",
    "x: vector(n); log(0) * x' * x | --wrt x",
    "x: vector(n); x' * x | --wrt x --name 1bad",
    "x: vector(n); x' * x | --wrt 'x",
]
MATRIX_FUNCTIONS = ("expm", "logm", "sqrtm")


def batch_file(entries: int, seed: int = 0) -> tuple:
    """A batch of ``entries`` entries (about 10% bad, some continued over two lines), and the line
    where each entry starts."""
    rnd = random.Random(seed)
    good = [g for g in GOOD if not any(f in g[0] for f in MATRIX_FUNCTIONS)]
    lines = ["# a generated batch", "X: matrix(m, n); y: vector(m); w: vector(n); lam: scalar"]
    starts = []
    for _ in range(entries):
        r = rnd.random()
        starts.append(len(lines) + 1)
        if r < 0.1:
            lines.append(rnd.choice(BAD_ENTRIES))
        elif r < 0.15:
            lines.append("norm2(X * w - y)^2 + lam * w' * w | --wrt w --hessian")
        elif r < 0.17:
            lines += ["sum(log(1 + exp(-y .* (X * w)))) \\", "  | --wrt w   # continued"]
        else:
            program, options = rnd.choice(good)
            lines.append(f"{program} | {options}")
        if rnd.random() < 0.05:
            lines.append("# a comment")
    return "\n".join(lines) + "\n", starts


def check_batch(entries: int = 2000, formats=("json", "plain", "latex", "numpy", "pretty")) -> list:
    """A batch of ``entries`` in every format, with --jobs 1 and 2: every entry reported once, in
    order, each error as FILE:LINE:COL on stderr; JSON Lines parse, the LaTeX document compiles
    with no overfull line, the NumPy module imports and agrees with single-mode modules; --jobs 2
    gives the same output; time and memory are reported."""
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        text, starts = batch_file(entries)
        path = Path(tmp) / "big.mcb"
        path.write_text(text)
        outputs = {}
        for fmt in formats:
            for jobs in ("1", "2") if fmt in ("json", "numpy") else ("1",):
                extra = ["--latex-style", "document"] if fmt == "latex" else []
                started = time.monotonic()
                r = subprocess.run(["/usr/bin/time", "-f", "%M"] + matcalc_command()
                                   + ["batch", str(path), "--format", fmt, "--jobs", jobs] + extra,
                                   capture_output=True, text=True, env=ENV, timeout=3600)
                seconds = time.monotonic() - started
                stderr = r.stderr.splitlines()
                peak = int(stderr[-1]) if stderr and stderr[-1].isdigit() else 0
                print(f"batch {entries} {fmt} --jobs {jobs}: {seconds:.0f} s, peak {peak / 1024:.0f} MB", flush=True)
                outputs[fmt, jobs] = r.stdout
                summary = [line for line in stderr if re.fullmatch(r"\d+ ok, \d+ failed", line)]
                errors = [line for line in stderr if re.match(rf"^{re.escape(str(path))}:\d+:\d+: error: ", line)]
                if r.returncode != 1 or len(summary) != 1:
                    problems.append(f"{fmt} --jobs {jobs}: exit {r.returncode}, summary {summary}")
                    continue
                ok, failed = map(int, re.findall(r"\d+", summary[0]))
                if ok + failed != entries or len(errors) != failed:
                    problems.append(f"{fmt} --jobs {jobs}: {ok} ok + {failed} failed, {len(errors)} errors on stderr, "
                                    f"for {entries} entries")
                error_lines = [int(e.split(":")[1]) for e in errors]
                if error_lines != sorted(error_lines) or not set(error_lines) <= set(starts) | {s + 1 for s in starts}:
                    problems.append(f"{fmt} --jobs {jobs}: errors out of order or at lines where no entry starts")
                problems += _check_format(fmt, r.stdout, path, starts)
        for fmt in ("json", "numpy"):
            if (fmt, "2") in outputs and outputs[fmt, "1"] != outputs[fmt, "2"]:
                problems.append(f"{fmt}: --jobs 2 output differs from --jobs 1")
        if "numpy" in formats and "json" in formats:
            problems += _check_module_against_single_mode(outputs["numpy", "1"], outputs["json", "1"], text)
    return problems


def _check_format(fmt, out, path, starts) -> list:
    if fmt == "json":
        try:
            docs = [json.loads(line) for line in out.splitlines()]
        except ValueError as e:
            return [f"json: a line does not parse: {e}"]
        if [d["line"] for d in docs] != starts:
            return ["json: the objects are not the entries, once each, in order"]
        return [f"json: entry at line {d['line']} has a bad error object" for d in docs
                if not d["ok"] and d["error"]["kind"] not in ("syntax", "shape", "math", "usage")]
    if fmt in ("plain", "pretty", "latex"):
        mark = {"plain": "# ", "pretty": "── ", "latex": "% "}[fmt]
        headers = [int(m) for m in re.findall(rf"^{re.escape(mark + str(path))}:(\d+)\b(?!:)", out, re.M)]
        problems = [] if headers == starts else [f"{fmt}: the headers are not the entries, once each, in order"]
        if fmt == "latex":
            problems += [f"latex document: {p}" for p in compile_problems(out)[:5]]
        return problems
    return []


def entry_options(source: str, line: int) -> list:
    """The options after '|' of the entry starting at ``line`` (continued lines joined), --name dropped."""
    lines = source.split("\n")[line - 1:]
    text = lines[0]
    for more in lines[1:]:
        if not text.split("#")[0].rstrip().endswith("\\"):
            break
        text = text.split("#")[0].rstrip()[:-1] + " " + more
    options = shlex.split(text.split("#")[0].split("|", 1)[1]) if "|" in text else []
    if "--name" in options:
        at = options.index("--name")
        del options[at:at + 2]
    return options


def _check_module_against_single_mode(module_text: str, json_lines: str, source: str, sample: int = 25) -> list:
    """The batch module's functions against single-mode modules of the same programs (with the
    entries' options), at random points."""
    import numpy as np
    from matcalc_cli import derive
    from matcalc_cli.numeric import dimension_sizes, random_point
    module = types.ModuleType("batch_module")
    exec(compile(module_text, "batch_module", "exec"), module.__dict__)
    docs = [json.loads(line) for line in json_lines.splitlines()]
    problems, rnd = [], random.Random(1)
    for doc in rnd.sample([d for d in docs if d["ok"]], sample):
        r = matcalc([doc["program"], "--format", "numpy"] + entry_options(source, doc["line"]))
        single = types.ModuleType("single")
        exec(compile(r.stdout, "single", "exec"), single.__dict__)
        derivation = derive(doc["program"], wrt=doc["wrt"])
        symbols = derivation.typed.symbols
        point = random_point(derivation, np.random.default_rng(3), dimension_sizes(derivation))
        args = {}
        for name, value in point.items():
            value = np.asarray(value, dtype=float)
            rows, cols = symbols[name].shape
            args[name] = float(value.reshape(-1)[0]) if (rows, cols) == (1, 1) else \
                value.reshape(-1) if cols == 1 else value
        names = ["f", "gradient", "jacobian", "hessian"] + [n for n in vars(single) if re.match(
            r"(gradient|jacobian|hessian)_", n) and not n.startswith("hessian_bilinear")]
        for fname in names:
            if hasattr(single, fname):
                a = getattr(single, fname)(**args)
                b = getattr(module, f"{doc['name']}_{fname}")(**args)
                if not np.allclose(a, b, rtol=1e-12, atol=1e-12, equal_nan=True):
                    problems.append(f"numpy: {doc['name']}_{fname} differs from single mode ({doc['program']})")
    return problems


# --- (d) generated NumPy code against hand-written closed forms -----------------------------------------

def closed_forms(rng):
    """(program, wrt, arguments, {function: hand-written value}) for everyday derivatives."""
    import numpy as np
    from scipy.linalg import expm

    n, m, k = 4, 5, 3

    def spd(size):
        a = rng.standard_normal((size, size))
        return a @ a.T + size * np.eye(size)

    def sig(u):
        return 1 / (1 + np.exp(-u))

    def softmax(z):
        e = np.exp(z - z.max())
        return e / e.sum()

    A, B = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    x, a, c, mu = (rng.standard_normal(n) for _ in range(4))
    X = rng.standard_normal((n, n)) + 3 * np.eye(n)
    D, b, S = rng.standard_normal((m, n)), rng.standard_normal(m), spd(n)
    labels = np.sign(rng.standard_normal(m))
    z, t, W = rng.standard_normal(k), np.eye(k)[1], rng.standard_normal((k, n))
    M, U, V = rng.standard_normal((m, k)), rng.standard_normal((m, 2)), rng.standard_normal((k, 2))
    lam = 0.7
    inv = np.linalg.inv
    p = sig(D @ x)

    def unit(j, shape):
        return np.eye(shape[0] * shape[1])[j].reshape(shape, order="F")

    return [
        ("x: vector(n); A: matrix(n, n); x' * A * x", "x", dict(x=x, A=A), {"gradient": (A + A.T) @ x, "hessian": A + A.T}),
        ("x: vector(n); A: matrix(m, n); b: vector(m); norm2(A * x - b)^2", "x", dict(x=x, A=D, b=b),
         {"gradient": 2 * D.T @ (D @ x - b), "hessian": 2 * D.T @ D}),
        ("x: vector(n); A: matrix(m, n); b: vector(m); lam: scalar; norm2(A * x - b)^2 + lam * x' * x", "x",
         dict(x=x, A=D, b=b, lam=lam), {"gradient": 2 * D.T @ (D @ x - b) + 2 * lam * x,
                                         "hessian": 2 * D.T @ D + 2 * lam * np.eye(n)}),
        ("X: matrix(m, n); y: vector(m); w: vector(n); sum(log(1 + exp(-y .* (X * w))))", "w", dict(X=D, y=labels, w=x),
         {"gradient": -D.T @ (labels * sig(-labels * (D @ x))), "hessian": D.T @ np.diag(p * (1 - p)) @ D}),
        ("z, t: vector(k); log(sum(exp(z))) - t' * z", "z", dict(z=z, t=t),
         {"gradient": softmax(z) - t, "hessian": np.diag(softmax(z)) - np.outer(softmax(z), softmax(z))}),
        ("X: matrix(n, n); logdet(X)", "X", dict(X=S), {"gradient": inv(S).T}),
        ("X: matrix(n, n); det(X)", "X", dict(X=X), {"gradient": np.linalg.det(X) * inv(X).T}),
        ("X: matrix(n, n); A: matrix(n, n); B: matrix(n, n); tr(A * X * B)", "X", dict(X=X, A=A, B=B), {"gradient": A.T @ B.T}),
        ("X: matrix(n, n); A: matrix(n, n); tr(X' * A * X)", "X", dict(X=X, A=A), {"gradient": (A + A.T) @ X}),
        ("X: matrix(n, n); A: matrix(n, n); tr(A * inv(X))", "X", dict(X=X, A=A), {"gradient": -(inv(X) @ A @ inv(X)).T}),
        ("a, b: vector(n); X: matrix(n, n); a' * X * b", "X", dict(a=a, b=c, X=X), {"gradient": np.outer(a, c)}),
        ("x: vector(n); norm2(x)", "x", dict(x=x), {"gradient": x / np.linalg.norm(x),
                                                   "hessian": (np.eye(n) - np.outer(x, x) / (x @ x)) / np.linalg.norm(x)}),
        ("x: vector(n); sum(exp(x))", "x", dict(x=x), {"gradient": np.exp(x), "hessian": np.diag(np.exp(x))}),
        ("x: vector(n); A: matrix(n, n); x' * A * x / (x' * x)", "x", dict(x=x, A=A),
         {"gradient": ((A + A.T) @ x - 2 * (x @ A @ x) / (x @ x) * x) / (x @ x)}),
        ("M: matrix(m, k); U: matrix(m, r); V: matrix(k, r); norm2(M - U * V')^2", "U", dict(M=M, U=U, V=V),
         {"gradient": -2 * (M - U @ V.T) @ V}),
        ("x, mu: vector(n); S: symmetric(n); -logdet(S) / 2 - (x - mu)' * inv(S) * (x - mu) / 2", "mu",
         dict(x=x, mu=mu, S=S), {"gradient": np.linalg.solve(S, x - mu), "hessian": -inv(S)}),
        ("x, mu: vector(n); S: symmetric(n); -logdet(S) / 2 - (x - mu)' * inv(S) * (x - mu) / 2", "S",
         dict(x=x, mu=mu, S=S), {"gradient": (inv(S) @ np.outer(x - mu, x - mu) @ inv(S) - inv(S)) / 2}),
        ("X: matrix(n, n); tr(expm(X))", "X", dict(X=A / 3), {"gradient": expm(A / 3).T}),
        ("X: matrix(n, n); inv(X)", "X", dict(X=X), {"jacobian": -np.kron(inv(X).T, inv(X))}),
        ("X: matrix(n, n); X^2", "X", dict(X=X), {"jacobian": np.kron(np.eye(n), X) + np.kron(X.T, np.eye(n))}),
        ("W: matrix(k, n); x: vector(n); log(sum(exp(W * x)))", "W", dict(W=W, x=x), {"gradient": np.outer(softmax(W @ x), x)}),
        ("X: symmetric(n); logdet(X)", "X", dict(X=S), {"gradient": inv(S)}),
        ("x: vector(n); sum(tanh(x))", "x", dict(x=x), {"gradient": 1 - np.tanh(x) ** 2,
                                                       "hessian": np.diag(-2 * np.tanh(x) * (1 - np.tanh(x) ** 2))}),
        ("x: vector(n); A: matrix(m, n); tanh(A * x)", "x", dict(x=x, A=D), {"jacobian": np.diag(1 - np.tanh(D @ x) ** 2) @ D}),
        ("X: matrix(m, n); X * X'", "X", dict(X=D), {"jacobian": np.column_stack(
            [(unit(j, (m, n)) @ D.T + D @ unit(j, (m, n)).T).reshape(-1, order="F") for j in range(m * n)])}),
    ]


def check_numpy() -> list:
    """Generated modules' gradients, Jacobians, Hessians and hvp against hand-written closed forms."""
    import numpy as np
    rng = np.random.default_rng(1)
    problems = []
    for i, (program, wrt, args, expected) in enumerate(closed_forms(rng)):
        r = matcalc([program, "--wrt", wrt, "--format", "numpy"] + [f"--{what}" for what in expected])
        if r.returncode:
            problems.append(f"{program}: exit {r.returncode}: {r.stderr[-200:]}")
            continue
        module = types.ModuleType(f"generated_{i}")
        exec(compile(r.stdout, module.__name__, "exec"), module.__dict__)
        for what, value in expected.items():
            got = np.asarray(getattr(module, what)(**args))
            if got.shape != np.shape(value) or not np.allclose(got, value, rtol=1e-7, atol=1e-9):
                problems.append(f"{program} --wrt {wrt}: {what} {got.shape} differs from the closed form {np.shape(value)}")
        if "hessian" in expected:
            v = rng.standard_normal(np.shape(args[wrt]))
            H = np.asarray(expected["hessian"])
            want = (H @ v.reshape(-1, order="F")).reshape(np.shape(v), order="F")
            if not np.allclose(module.hvp(**args, v=v), want, rtol=1e-7, atol=1e-9):
                problems.append(f"{program} --wrt {wrt}: hvp differs from H v")
    return problems


# --- errors: exit status, words, no traceback ------------------------------------------------------------

def check_errors() -> list:
    """Every good program exits 0; every bad command exits as expected with a clear message."""
    problems = []
    with ThreadPoolExecutor(2) as pool:
        for (program, options), r in zip(GOOD, pool.map(lambda g: matcalc([g[0]] + shlex.split(g[1])), GOOD)):
            if r.returncode or "Traceback" in r.stderr:
                problems.append(f"{program} {options}: exit {r.returncode}: {r.stderr[-300:]}")
        for (args, status, word), r in zip(BAD, pool.map(lambda b: matcalc(b[0], stdin=subprocess.DEVNULL), BAD)):
            if r.returncode != status or word.lower() not in r.stderr.lower() or "Traceback" in r.stderr or r.stdout:
                problems.append(f"{shlex.join(args)}: exit {r.returncode} (expected {status}), stderr {r.stderr[-300:]!r}")
    return problems


CHECKS = {"errors": check_errors, "numpy": check_numpy, "pty": check_pty, "latex": check_latex, "batch": check_batch}


def main(names) -> int:
    found = 0
    for name in names or list(CHECKS):
        started = time.monotonic()
        problems = CHECKS[name]()
        print(f"{name}: {len(problems)} problems ({time.monotonic() - started:.0f} s)", flush=True)
        for p in problems:
            print("  " + p)
        found += len(problems)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
