"""``matcalc batch``: files of programs, one entry per line, as a user and a script see them.

Most runs go through click's CliRunner (in process); what needs a real process (``--jobs``, a
reader that goes away, Ctrl-C, stdin) runs ``matcalc`` as a subprocess.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from matcalc_cli.cli import main
from matcalc_cli.numeric import dimension_sizes, random_values
from matcalc_cli import derive
from clitools import Run, matcalc_command

REPO = Path(__file__).resolve().parent.parent
BATCH_SAMPLES = sorted((REPO / "samples").glob("*.mcb"))
ERROR_LINE = re.compile(r"^(?P<file>[^\n:]+):(?P<line>\d+):(?P<col>\d+): error: (?P<message>.*)$", re.M)


def cli(args, stdin=None) -> Run:
    result = CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {type(result.exception).__name__}: {result.exception}")
    return Run(result.exit_code, result.stdout, result.stderr)


def proc_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def proc(args, stdin=None, timeout=300) -> Run:
    done = subprocess.run(matcalc_command() + list(args), input=stdin, capture_output=True, text=True,
                          timeout=timeout, env=proc_env(), cwd=REPO)
    return Run(done.returncode, done.stdout, done.stderr)


def batch_file(tmp_path, text: str, name: str = "sheet.mcb") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def json_lines(text: str) -> list:
    return [json.loads(line) for line in text.splitlines()]


def errors(stderr: str) -> list:
    """(line, column, message) of every FILE:LINE:COL: error: line."""
    return [(int(m["line"]), int(m["col"]), m["message"]) for m in ERROR_LINE.finditer(stderr)]


BATCH_FIELDS = ("file", "line", "name", "program", "ok")


# --- results are the single-mode results -----------------------------------------------------------

LOSSES = """\
# a small batch
X: matrix(m, n); y: vector(m); w: vector(n); lam: scalar
norm2(X * w - y)^2 | --wrt w --hessian
norm2(X * w - y)^2 + lam * w' * w | --wrt w --gradient --hessian
sum(log(1 + exp(-y .* (X * w)))) | --wrt w
W: matrix(k, n)
tanh(W * w) | --wrt W --layout denominator
S: symmetric(n)
logdet(S) - w' * S * w | --wrt S --symmetric-gradient cookbook --gradient
"""


def test_entries_give_the_single_mode_results(tmp_path):
    path = batch_file(tmp_path, LOSSES)
    r = cli(["batch", path, "--format", "json"])
    assert r.code == 0, r.stderr
    docs = json_lines(r.stdout)
    assert [d["line"] for d in docs] == [3, 4, 5, 7, 9]
    for doc in docs:
        text = LOSSES.splitlines()[doc["line"] - 1]
        options = text.split("|", 1)[1].split()
        single = cli([doc["program"], "--format", "json"] + options)
        assert single.code == 0, single.stderr
        expected = json.loads(single.stdout)
        assert {k: v for k, v in doc.items() if k not in BATCH_FIELDS} == {k: v for k, v in expected.items() if k != "ok"}
        assert expected["ok"] is True     # single mode says ok too
        assert doc["ok"] is True and doc["file"] == path


def test_program_field_holds_the_declarations_it_uses(tmp_path):
    path = batch_file(tmp_path, LOSSES)
    docs = json_lines(cli(["batch", path, "--format", "json"]).stdout)
    assert docs[0]["program"] == "X: matrix(m, n); y: vector(m); w: vector(n); norm2(X * w - y)^2"
    # lam is declared but only the second entry uses it
    assert "lam" not in docs[0]["shapes"] and docs[1]["shapes"]["lam"]["kind"] == "scalar"


def test_plain_output_is_the_single_mode_lines_under_headers(tmp_path):
    path = batch_file(tmp_path, LOSSES)
    r = cli(["batch", path, "--format", "plain"])
    assert r.code == 0
    blocks = re.split(r"^# .*\n", r.stdout, flags=re.M)[1:]
    headers = re.findall(r"^# (.*)$", r.stdout, flags=re.M)
    assert headers[0] == f"{path}:3 sheet_3"
    docs = json_lines(cli(["batch", path, "--format", "json"]).stdout)
    for block, doc in zip(blocks, docs):
        options = LOSSES.splitlines()[doc["line"] - 1].split("|", 1)[1].split()
        assert block == cli([doc["program"], "--format", "plain"] + options).stdout


# --- errors -----------------------------------------------------------------------------------------

def test_a_bad_entry_between_good_ones(tmp_path):
    path = batch_file(tmp_path, "x: vector(n); A: matrix(m, n)\n"
                                "x' * x\n"
                                "\n"
                                "  x' * A * x | --wrt x\n"
                                "norm2(A * x)^2\n")
    r = cli(["batch", path, "--format", "json", "--wrt", "x"])
    assert r.code == 1
    assert errors(r.stderr) == [(4, 6, "cannot multiply x' (1 x n) by A (m x n) with '*': "
                                        "x' has n columns but A has m rows")]
    assert r.stderr.splitlines()[-1] == "2 ok, 1 failed"
    assert "x' * A * x" in r.stderr and "hint: did you mean to transpose the right operand?" in r.stderr
    docs = json_lines(r.stdout)
    assert [d["ok"] for d in docs] == [True, False, True]
    assert docs[1]["error"] == {"kind": "shape", "line": 4, "column": 6, "message": errors(r.stderr)[0][2],
                                "hint": "did you mean to transpose the right operand?"}
    assert "gradient" not in docs[1]


def test_error_messages_use_the_single_mode_words(tmp_path):
    programs = ["x' * * x", "x' * A * x", "foo(x)", "x: vector(n); X: matrix(n, n); x' * X * x", "x' * x"]
    path = batch_file(tmp_path, "\n".join(programs) + "\n")
    r = cli(["batch", path])
    found = errors(r.stderr)
    assert [line for line, _, _ in found] == [1, 2, 3, 4]
    for (line, column, message) in found:
        single = cli([programs[line - 1]])
        assert single.code in (1, 2)
        assert message in single.stderr
        if "column" in single.stderr:          # errors with a place in the program have the same place
            assert f"line 1, column {column}" in single.stderr


@pytest.mark.parametrize("text, kind, line, column", [
    ("x' * (x + \n", "syntax", 1, 10),                      # end of input
    ("x: vector(n); A: matrix(m, n); A * A\n", "shape", 1, 34),
    ("x: vector(n); sqrt(x)\n", "math", 1, 1),              # the gradient needs a scalar
    ("x' * x | --wrt z\n", "usage", 1, 10),
    ("x' * x | --frobnicate\n", "usage", 1, 10),
    ("x' * x | --name 9lives\n", "usage", 1, 10),
])
def test_error_kinds_and_positions(tmp_path, text, kind, line, column):
    path = batch_file(tmp_path, "# first line\n" + text)
    r = cli(["batch", path, "--format", "json", "--gradient"])
    assert r.code == 1
    [doc] = json_lines(r.stdout)
    assert doc["ok"] is False
    assert (doc["error"]["kind"], doc["error"]["line"], doc["error"]["column"]) == (kind, line + 1, column)
    assert errors(r.stderr)[0][:2] == (line + 1, column)


def test_a_bad_declaration_line_is_reported_and_the_rest_goes_on(tmp_path):
    path = batch_file(tmp_path, "x: vector(0)\ny: vector(n)\ny' * y\n")
    r = cli(["batch", path, "--format", "json"])
    assert r.code == 1
    docs = json_lines(r.stdout)
    assert [(d["line"], d["ok"]) for d in docs] == [(1, False), (3, True)]
    assert docs[0]["error"]["message"] == "dimension 0 must be a positive integer"
    assert errors(r.stderr)[0][:2] == (1, 11)


def test_an_entrys_own_definition_takes_the_place_of_a_declaration(tmp_path):
    path = batch_file(tmp_path, "x: vector(n)\nu: vector(n)\nu = 2 * x; u' * x | --wrt x\nu' * x | --wrt x\n")
    docs = json_lines(cli(["batch", path, "--format", "json"]).stdout)
    assert [d["gradient"]["text"] for d in docs] == ["4 * x", "u"]


# --- the file format ------------------------------------------------------------------------------

def test_declarations_persist_and_are_replaced(tmp_path):
    path = batch_file(tmp_path, "x: vector(n); A: matrix(n, n)\n"
                                "x' * A * x | --wrt x\n"
                                "A: symmetric(n)\n"
                                "x' * A * x | --wrt x\n"
                                "x: vector(m); A: matrix(m, m)   # a new declaration line\n"
                                "x' * A * x | --wrt x\n"
                                "A: matrix(p, p); x: vector(p); x' * A * x | --wrt x   # the entry's own\n"
                                "x' * A * x | --wrt x\n")
    docs = json_lines(cli(["batch", path, "--format", "json"]).stdout)
    assert [d["gradient"]["text"] for d in docs] == ["(A + A') * x", "2 * A * x", "(A + A') * x",
                                                      "(A + A') * x", "(A + A') * x"]
    assert [d["shapes"]["A"]["text"] for d in docs] == ["matrix(n, n)", "symmetric(n)", "matrix(m, m)",
                                                         "matrix(p, p)", "matrix(m, m)"]


def test_a_line_of_definitions_only_says_where_definitions_go(tmp_path):
    path = batch_file(tmp_path, "x: vector(n); A: matrix(n, n)\n  r = A * x; s = x' * x\nx' * A * x | --wrt x\n")
    r = cli(["batch", path, "--format", "json"])
    docs = json_lines(r.stdout)
    assert [d["ok"] for d in docs] == [False, True]
    assert (docs[0]["error"]["line"], docs[0]["error"]["column"]) == (2, 3)
    assert "definitions hold for one entry only" in docs[0]["error"]["message"]


def test_declarations_belong_to_their_file(tmp_path):
    first = batch_file(tmp_path, "A: symmetric(n)\nx' * A * x | --wrt x\n", "first.mcb")
    second = batch_file(tmp_path, "x' * A * x | --wrt x\n", "second.mcb")
    docs = json_lines(cli(["batch", first, second, "--format", "json"]).stdout)
    assert [d["gradient"]["text"] for d in docs] == ["2 * A * x", "(A + A') * x"]
    assert [d["name"] for d in docs] == ["first_2", "second_1"]


def test_continuation_lines(tmp_path):
    path = batch_file(tmp_path, "x: vector(n); A: matrix(n, n)\n"
                                "x' * A * x \\\n"
                                "  + 2 * x' * x \\   # a comment after the backslash\n"
                                "  | --wrt x \\\n"
                                "    --hessian\n"
                                "x' * A \\\n"
                                "   * * x\n"
                                "x' * x\n")
    r = cli(["batch", path, "--format", "json"])
    docs = json_lines(r.stdout)
    assert [(d["line"], d["ok"]) for d in docs] == [(2, True), (6, False), (8, True)]
    assert docs[0]["hessian"]["text"] == "A + A' + 4 * I"
    assert docs[0]["program"] == "x: vector(n); A: matrix(n, n); x' * A * x + 2 * x' * x"
    assert (docs[1]["error"]["line"], docs[1]["error"]["column"]) == (7, 6)
    assert errors(r.stderr)[0][:2] == (7, 6)


def test_options_after_the_bar_override_the_defaults(tmp_path):
    path = batch_file(tmp_path, "X: matrix(n, n)\n"
                                "tr(X * X)\n"
                                "tr(X * X) | --hessian --name trace_square\n"
                                "X * X | --jacobian --layout denominator\n")
    docs = json_lines(cli(["batch", path, "--format", "json", "--gradient"]).stdout)
    results = [sorted(k for k in ("gradient", "jacobian", "hessian") if k in d) for d in docs]
    assert results == [["gradient"], ["gradient", "hessian"], []]
    assert docs[1]["name"] == "trace_square"
    assert docs[2]["ok"] is False      # --gradient, the default, needs a scalar function
    only_jacobian = json_lines(cli(["batch", path, "--format", "json"]).stdout)[2]
    assert only_jacobian["layout"] == "denominator"
    assert only_jacobian["jacobian"]["text"] == "kron(I(n), X') + kron(X, I(n))"


def test_entry_names(tmp_path):
    path = batch_file(tmp_path, "x' * x | --name a\nx' * x\nx' * x | --name a\n", "my-sheet.v2.mcb")
    r = cli(["batch", path, "--format", "json"])
    docs = json_lines(r.stdout)
    assert [d["name"] for d in docs] == ["a", "my_sheet_2", "a"]
    assert [d["ok"] for d in docs] == [True, True, False]
    assert "already used" in docs[2]["error"]["message"]
    assert (docs[2]["line"], docs[2]["error"]["line"], docs[2]["error"]["column"]) == (3, 3, 10)
    assert docs[2]["program"] == "x' * x"


def test_standard_input(tmp_path):
    r = cli(["batch", "-", "--format", "json"], stdin="x: vector(n)\nx' * x\nexp(x)\n")
    docs = json_lines(r.stdout)
    assert [(d["file"], d["line"], d["name"]) for d in docs] == [("<stdin>", 2, "stdin_2"), ("<stdin>", 3, "stdin_3")]
    assert r.stderr.endswith("2 ok, 0 failed\n")


def test_bytes_that_are_not_utf8_fail_their_line_only(tmp_path):
    path = tmp_path / "bad.mcb"
    path.write_bytes(b"x' * x\nx' * \xff x\nsum(x)\n")
    r = cli(["batch", str(path), "--format", "json"])
    docs = json_lines(r.stdout)
    assert [d["ok"] for d in docs] == [True, False, True]
    assert (docs[1]["error"]["line"], docs[1]["error"]["column"]) == (2, 6)


# --- formats ----------------------------------------------------------------------------------------

SHEET_ENTRIES = [
    ("x' * A * x", "x"), ("norm2(A * x - b)^2", "x"), ("x' * x", "x"), ("sum(exp(x))", "x"),
    ("log(sum(exp(x)))", "x"), ("b' * x", "x"), ("x' * A' * A * x", "x"), ("sqrt(x' * x)", "x"),
    ("tr(X)", "X"), ("tr(X * X)", "X"), ("tr(X' * X)", "X"), ("det(X)", "X"), ("logdet(X)", "X"),
    ("tr(inv(X))", "X"), ("tr(A * X * B)", "X"), ("norm2(X)^2", "X"), ("sum(X)", "X"),
    ("tr(X^3)", "X"), ("x' * X * x", "X"), ("b' * inv(X) * b", "X"), ("X * X", "X"), ("inv(X)", "X"),
    ("X'", "X"), ("A * X * B", "X"), ("exp(A * x)", "x"), ("A * (x .* x)", "x"), ("tanh(x)", "x"),
    ("kron(X, A)", "X"), ("vec(X * A)", "X"), ("sigmoid(b' * x)", "x"),
]
TYPOS = {7: "x' * A' * A * * x", 21: "tr(X * * X)"}    # entry index -> the same entry with a typo


def exercise_sheet(tmp_path) -> tuple:
    """A 30-entry exercise sheet with two typos; its path and the lines of the two bad entries."""
    lines = ["# Exercise sheet: differentiate each expression", "x, b: vector(n); A, B, X: matrix(n, n)", ""]
    bad = {}
    for i, (program, wrt) in enumerate(SHEET_ENTRIES):
        lines.append(f"{TYPOS.get(i, program)} | --wrt {wrt} --name ex{i + 1}")
        if i in TYPOS:
            bad[len(lines)] = TYPOS[i].index("* *") + 3
        if i % 10 == 9:
            lines.append("")
    return batch_file(tmp_path, "\n".join(lines) + "\n"), bad


@pytest.mark.parametrize("fmt", ["plain", "pretty", "json", "latex", "numpy"])
def test_exercise_sheet_with_two_typos(tmp_path, fmt):
    path, bad = exercise_sheet(tmp_path)
    r = cli(["batch", path, "--format", fmt])
    assert r.code == 1
    assert r.stderr.splitlines()[-1] == "28 ok, 2 failed"
    assert [(line, column) for line, column, _ in errors(r.stderr)] == sorted(bad.items())
    assert all(message == "unexpected '*'" for _, _, message in errors(r.stderr))
    if fmt == "json":
        docs = json_lines(r.stdout)
        assert len(docs) == 30 and sum(d["ok"] for d in docs) == 28
        assert sorted((d["error"]["line"], d["error"]["column"]) for d in docs if not d["ok"]) == sorted(bad.items())
    else:
        for line, column in bad.items():      # every format shows the error where it belongs
            assert f"{path}:{line}:{column}: error: unexpected '*'" in r.stdout


def test_pretty_view_labels_each_result(tmp_path):
    path = batch_file(tmp_path, "x: vector(n); A: matrix(n, n)\nx' * A * x | --wrt x --name quad\n")
    out = cli(["batch", path, "--format", "pretty"]).stdout
    assert f"{path}:2 quad" in out.splitlines()[0]
    assert "∇f(x) = (A + Aᵀ) x" in out     # the Rich view of single mode, per entry


@pytest.fixture
def pdflatex():
    exe = shutil.which("pdflatex")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("pdflatex is missing, and CI must run the LaTeX compile test")
        pytest.skip("pdflatex is not installed")
    return exe


def compile_tex(pdflatex, text: str, tmp_path) -> subprocess.CompletedProcess:
    (tmp_path / "doc.tex").write_text(text, encoding="utf-8")
    return subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_latex_document_compiles(tmp_path, pdflatex):
    path, bad = exercise_sheet(tmp_path)
    r = cli(["batch", path, "--format", "latex", "--latex-style", "document"])
    assert r.code == 1
    assert r.stdout.startswith("\\documentclass") and r.stdout.rstrip().endswith("\\end{document}")
    assert r.stdout.count("\\subsection*") == 30 and r.stdout.count("\\begin{align*}") == 28
    done = compile_tex(pdflatex, r.stdout, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]


def test_latex_fragment_of_the_samples_compiles(tmp_path, pdflatex):
    r = cli(["batch"] + [str(p) for p in BATCH_SAMPLES] + ["--format", "latex"])
    assert "\\documentclass" not in r.stdout
    document = "\\documentclass{article}\n\\usepackage{amsmath}\n\\begin{document}\n" + r.stdout + "\\end{document}\n"
    done = compile_tex(pdflatex, document, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_numpy_module_has_each_entrys_functions(tmp_path):
    path = batch_file(tmp_path, LOSSES)
    out = tmp_path / "losses.py"
    r = cli(["batch", path, "--format", "numpy", "--output", str(out)])
    assert r.code == 0 and r.stdout == ""
    module = load_module(out, "losses")
    docs = json_lines(cli(["batch", path, "--format", "json"]).stdout)
    rng = np.random.default_rng(3)
    for doc in docs:
        options = LOSSES.splitlines()[doc["line"] - 1].split("|", 1)[1].split()
        single = tmp_path / f"single_{doc['name']}.py"
        single.write_text(cli([doc["program"], "--format", "numpy"] + options).stdout)
        reference = load_module(single, f"single_{doc['name']}")
        d = derive(doc["program"], wrt=doc["wrt"])
        values = random_values(d, rng, dimension_sizes(d))
        kwargs = {k: (float(v[0, 0]) if v.shape == (1, 1) else v) for k, v in values.items()}
        for function in ("f", "gradient", "jacobian", "hessian"):
            if hasattr(reference, function):
                got = getattr(module, f"{doc['name']}_{function}")(**kwargs)
                assert np.allclose(got, getattr(reference, function)(**kwargs)), (doc["name"], function)


def test_numpy_module_writes_shared_helpers_once(tmp_path):
    path = batch_file(tmp_path, LOSSES)
    text = cli(["batch", path, "--format", "numpy"]).stdout
    assert text.count("\nimport numpy as np\n") == 1 and text.count("\ndef _out(") == 1
    assert text.count("    def _inputs(") == 5          # it reads the entry's own _VARIABLES: one per entry
    compile(text, "losses.py", "exec")


def test_a_helper_that_differs_stays_inside_its_entry():
    from matcalc_cli.batch import Entry, NumpyModule, Outcome

    writer, written = NumpyModule(), {}
    entry = Entry("f.mcb", 1, ("",), "x' * x")
    first = Outcome(entry, "a", True, "def _a():\n    pass\n", shared=(("_h", "def _h():\n    return 1"),))
    second = Outcome(entry, "b", True, "def _b():\n    pass\n", shared=(("_h", "def _h():\n    return 2"),))
    assert writer.place(first, written) == "\n\ndef _h():\n    return 1\ndef _a():\n    pass\n"
    assert writer.place(second, written) == "def _b():\n    def _h():\n        return 2\n\n    pass\n"


# --- processes, streaming, interruption ---------------------------------------------------------

def big_batch(tmp_path, entries: int) -> str:
    programs = ["x' * A * x | --wrt x --hessian", "norm2(A * x - b)^2 | --wrt x", "logdet(S) | --wrt S",
                "tr(A * X * B * X') | --wrt X --hessian", "inv(X) | --wrt X", "det(X) | --wrt X --hessian",
                "x' * * x", "exp(A * x) | --wrt x", "sum(log(1 + exp(-b .* (X * x)))) | --wrt x"]
    lines = ["x, b: vector(n); A, B, X: matrix(n, n); S: symmetric(n)"]
    lines += [programs[i % len(programs)] for i in range(entries)]
    return batch_file(tmp_path, "\n".join(lines) + "\n", "big.mcb")


def test_jobs_2_gives_the_output_of_jobs_1(tmp_path):
    path = big_batch(tmp_path, 60)
    one = proc(["batch", path, "--format", "json", "--jobs", "1"])
    two = proc(["batch", path, "--format", "json", "--jobs", "2"])
    assert one.code == two.code == 1
    assert one.stdout == two.stdout and one.stderr == two.stderr
    assert len(one.stdout.splitlines()) == 60


def test_the_first_entry_is_written_at_once_and_a_closed_pipe_ends_quietly(tmp_path):
    path = big_batch(tmp_path, 3000)
    p = subprocess.Popen(matcalc_command() + ["batch", path, "--format", "json"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=proc_env(), cwd=REPO)
    first = json.loads(p.stdout.readline())
    assert first["line"] == 2 and first["ok"]
    assert p.poll() is None             # still working on the rest: the entry came out as it was done
    p.stdout.close()                    # what `head -n 1` does
    _, err = p.communicate(timeout=120)
    assert b"Traceback" not in err and b"Error" not in err


def test_head_in_a_shell_pipeline(tmp_path):
    path = big_batch(tmp_path, 2000)
    command = " ".join(matcalc_command()) + f" batch {path} --format json | head -n 2"
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=proc_env(), cwd=REPO,
                          timeout=120)
    assert [d["line"] for d in json_lines(done.stdout)] == [2, 3]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_stops_cleanly_with_what_was_written_intact(tmp_path, jobs):
    path = big_batch(tmp_path, 3000)
    p = subprocess.Popen(matcalc_command() + ["batch", path, "--format", "json", "--jobs", jobs],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=proc_env(), cwd=REPO)
    lines = [p.stdout.readline() for _ in range(5)]
    p.send_signal(signal.SIGINT)
    rest, err = p.stdout.read(), p.stderr.read()    # (communicate would skip what stdout buffered)
    assert p.wait(timeout=120) == 130
    written = b"".join(lines) + rest
    docs = json_lines(written.decode())          # every line a whole object
    assert 5 <= len(docs) < 3000
    assert [d["line"] for d in docs] == list(range(2, 2 + len(docs)))
    text = err.decode()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    assert re.search(r"interrupted: \d+ ok, \d+ failed", text)


# --- the command line -------------------------------------------------------------------------------

def test_usage_errors_exit_2(tmp_path):
    r = cli(["batch", str(tmp_path / "missing.mcb")])
    assert r.code == 2 and "cannot read" in r.stderr and "missing.mcb" in r.stderr
    assert cli(["batch", batch_file(tmp_path, "x' * x\n"), "--frobnicate"]).code == 2
    assert cli(["batch"]).code == 2


def test_help_and_single_mode_stay_as_they_were(tmp_path):
    r = cli(["batch", "--help"])
    assert r.code == 0 and "FILE..." in r.stdout and "--jobs" in r.stdout and "--wrt" in r.stdout
    assert "matcalc batch" in cli(["--help"]).stdout
    assert cli(["--version"]).code == 0
    # a program named batch is still a program, after '--'
    r = cli(["--", "batch"])
    assert r.code == 0 and r.stdout.splitlines() == ["dbatch", "I(n)"]
    r = cli(["--wrt", "x", "--", "-x' * x"])
    assert r.code == 0 and r.stdout.splitlines()[-1] == "-2 * x"


def test_every_batch_sample_runs(tmp_path):
    for sample in BATCH_SAMPLES:
        r = cli(["batch", str(sample), "--format", "json"])
        docs = json_lines(r.stdout)
        failed = [d for d in docs if not d["ok"]]
        if sample.name == "with_errors.mcb":
            assert r.code == 1 and len(failed) == 3, r.stderr
        else:
            assert r.code == 0 and docs and not failed, r.stderr


def test_check_runs_per_entry(tmp_path):
    path = batch_file(tmp_path, "x: vector(n); A: matrix(n, n)\nx' * A * x | --wrt x --check\nexp(x)\n")
    r = cli(["batch", path, "--format", "json"])
    docs = json_lines(r.stdout)
    assert docs[0]["check"]["passed"] is True and "check" not in docs[1]
    plain = cli(["batch", path, "--format", "plain"]).stdout
    assert "# check gradient: max relative error" in plain


def test_progress_bar_only_on_a_terminal(tmp_path):
    import pty
    import threading

    # the entries come through a pipe with a pause: the batch lasts more than a moment on any machine
    path = batch_file(tmp_path, "x: vector(n)\nx' * x\nx' * * x\n")
    master, slave = pty.openpty()
    p = subprocess.Popen(matcalc_command() + ["batch", "-", "--format", "json", "--output", str(tmp_path / "o")],
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=slave, env=proc_env(), cwd=REPO)
    os.close(slave)
    chunks = []

    def drain():
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:                     # the terminal closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    p.stdin.write(b"x: vector(n)\n" + b"x' * x\n" * 3)
    p.stdin.flush()
    time.sleep(2.0)
    p.stdin.write(b"sum(exp(x))\n" * 3 + b"x' * * x\n")
    p.stdin.flush()
    time.sleep(0.5)
    p.stdin.close()
    assert p.wait(timeout=300) == 1
    reader.join(timeout=30)
    os.close(master)
    seen = b"".join(chunks).decode(errors="replace")
    assert "entries" in seen and "\x1b[" in seen          # the bar was drawn, with escape codes
    assert "ok, " in seen and "failed" in seen
    piped = cli(["batch", path, "--format", "json"])      # stderr not a terminal: nothing of it
    assert "\x1b" not in piped.stderr and "entries" not in piped.stderr


def test_a_full_disk_is_a_clear_error(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    path = batch_file(tmp_path, "x' * x\n")
    with open("/dev/full", "w") as full:
        done = subprocess.run(matcalc_command() + ["batch", path], stdout=full, stderr=subprocess.PIPE, text=True,
                              env=proc_env(), cwd=REPO, timeout=120)
    assert done.returncode == 1
    assert "cannot write the output" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_number_of_entries(tmp_path):
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
             "stderr=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")

    def peak(entries: int) -> int:
        path = big_batch(tmp_path, entries)
        done = subprocess.run([sys.executable, "-c", probe] + matcalc_command() + ["batch", path, "--format", "json"],
                              capture_output=True, text=True, env=proc_env(), cwd=REPO, timeout=3600)
        return int(done.stdout)

    assert peak(10_000) <= 1.5 * peak(1_000)
