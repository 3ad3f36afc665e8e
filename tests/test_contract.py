"""The command-line contract as an outside checker sees it: regression tests for what the contract
checks found (fast, in the default suite), and the checks themselves as slow tests
(``pytest -m slow -s tests/test_contract.py``; the driver is tests/contract_checks.py).

Each fast test names the bug it keeps fixed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.cells import cell_len

from clitools import matcalc_command
from matcalc_cli.batch import tex_code
from matcalc_cli.cli import main
from matcalc_cli.errors import ParseError
from matcalc_cli.syntax import parse
from test_pretty import ANSI, run_in_pty

TESTS = Path(__file__).resolve().parent


# --- syntax errors say how to fix them ---------------------------------------------------------------
# Found: these mistakes got a caret but no hint.

@pytest.mark.parametrize("program, column, hint", [
    ("x: vectr(n); x' * x", 4, "did you mean 'vector'?"),
    ("x: shape(n); x", 4, "a shape is scalar, vector(d), matrix(d1, d2) or symmetric(d)"),
    ("x: matrix(n); x", 12, "matrix takes two dimensions"),
    ("x: vector(n, m); x", 12, "vector(d) and symmetric(d) take one dimension"),
    ("x: vector(n); x ** 2", 18, "a power is written x^2"),
    ("x: vector(n); x' * * x", 20, "'*' needs an operand on each side"),
    ("x: vector(n); x' * x == 1", 22, "there are no comparisons"),
    ("x: vector(n); x' @ x", 18, "written with '*'"),
    ("x: vector(n) x' * x", 14, "separate statements with ';'"),
])
def test_syntax_errors_have_hints(program, column, hint):
    with pytest.raises(ParseError) as info:
        parse(program)
    assert (info.value.line, info.value.column) == (1, column)
    assert hint in (info.value.hint or ""), info.value.hint


# --- nothing on a terminal is wider than the terminal --------------------------------------------------
# Found: click's usage errors ("Error: No such option ...", "Try ... for help."), the examples of
# --help, and errors under --format latex/json/... were printed unfolded on a 40-column terminal.

def widest(text: str) -> int:
    """The widest line of terminal output; a progress bar redrawn in place ends a line too."""
    lines = re.split(r"\n|\r|\x1b\[2K", text)
    return max(cell_len(ANSI.sub("", line)) for line in lines)


@pytest.mark.parametrize("args", [
    ["x: vector(n); x' * x", "--wrt", "x", "--hesian"],
    ["x: vector(n); x' * x", "--wrt", "x", "--format", "xml"],
    ["x: vector(n); x' * x", "--format", "latex", "--latex-width", "wide"],
    ["x: vector(n); A: matrix(m, n); x' * A * x", "--wrt", "x", "--format", "numpy"],
    ["--help"],
    ["batch", "--help"],
    ["batch", "--bogus", "f.mcb"],
    # --steps on a terminal was laid out at least 60 wide, its shapes and --check lines unfolded
    ["x, mu: vector(n); S: symmetric(n); -logdet(S) / 2 - (x - mu)' * inv(S) * (x - mu) / 2", "--wrt", "mu",
     "--steps", "--check"],
])
def test_messages_fit_a_narrow_terminal(args):
    code, out = run_in_pty(args, columns=40)
    assert code in (0, 1, 2) and "Traceback" not in out, out
    assert widest(out) <= 40, out


def test_errors_under_a_machine_format_are_not_coloured_on_a_terminal():
    code, out = run_in_pty(["x: vector(n); A: matrix(m, n); x' * A * x", "--wrt", "x", "--format", "latex"])
    assert code == 1 and "cannot multiply" in out and "^" in out
    assert not ANSI.search(out), out


def test_usage_errors_keep_clicks_words_and_status():
    r = CliRunner().invoke(main, ["x: vector(n); x' * x", "--wrt", "x", "--hesian"])
    assert r.exit_code == 2 and "No such option '--hesian'" in r.output


def test_help_is_unchanged_off_a_terminal():
    r = subprocess.run(matcalc_command() + ["--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert """matcalc "x: vector(n); A: matrix(n, n); x' * A * x" --wrt x --hessian""" in r.stdout


# --- batch LaTeX stays inside the page ---------------------------------------------------------------
# Found: each entry's program and each error message were one \texttt line, which cannot break:
# a 2,000-entry document had 378 overfull lines.

def test_code_in_batch_latex_can_break():
    text = tex_code("x, mu: vector(n); S: symmetric(n); -logdet(S)/2 - (x-mu)'*inv(S)*(x-mu)/2")
    assert text.startswith("{\\raggedright") and text.endswith("\\par}")
    assert "\\allowbreak{}" in text and "\\_" not in text
    assert "\\allowbreak{} " not in text        # a space breaks already
    assert tex_code("a_b #1") == "{\\raggedright\\noindent\\texttt{a\\_b \\#1}\\par}"


def test_batch_latex_document_of_long_programs_has_no_overfull_line(tmp_path):
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        pytest.skip("pdflatex is not installed")
    (tmp_path / "long.mcb").write_text(
        "x, mu: vector(n); S: symmetric(n); X: matrix(m, n); y: vector(m); w: vector(n); lam: scalar\n"
        "-logdet(S) / 2 - (x - mu)' * inv(S) * (x - mu) / 2 + norm2(X * w - y)^2 + lam * w' * w | --wrt mu\n"
        "M: matrix(p, q); U: matrix(p, r); V: matrix(q, r); lam: scalar; norm2(M - U * V')^2 + lam * (norm2(U)^2 + norm2(V)^2) | --wrt V\n"
        "x: vector(n); x' * x | --wrt x --name 1bad_name_that_is_long_enough_to_make_the_error_message_run_past\n")
    r = subprocess.run(matcalc_command() + ["batch", "long.mcb", "--format", "latex", "--latex-style", "document",
                                            "-o", "long.tex"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "2 ok, 1 failed" in r.stderr, r.stderr
    done = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "long.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    log = (tmp_path / "long.log").read_text(encoding="latin-1")
    assert done.returncode == 0, log[-2000:]
    assert "Overfull" not in log, re.findall(r"Overfull.*\n.*", log)


# --- the same input gives the same output --------------------------------------------------------------
# Found: a NumPy module's order of sizes came from a set, so it changed with the hash seed, and
# `matcalc batch --format numpy --jobs 2` differed from --jobs 1.

def test_numpy_module_does_not_depend_on_the_hash_seed():
    program = ["X: matrix(m, n); inv(X' * X) * X'", "--wrt", "X", "--jacobian", "--format", "numpy"]
    outputs = set()
    for seed in ("1", "2", "5"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        r = subprocess.run(matcalc_command() + program, capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 0, r.stderr
        outputs.add(r.stdout)
    assert len(outputs) == 1


# --- batch on a terminal ---------------------------------------------------------------------------------
# Found: `matcalc batch` on a 40-column terminal printed its errors (and on stderr, with stdout
# redirected, their reports) 119 columns wide.

SAMPLE_WITH_ERRORS = str(TESTS.parent / "samples" / "with_errors.mcb")


@pytest.mark.parametrize("extra", [[], ["--format", "json", "--output", os.devnull]])
def test_batch_fits_a_narrow_terminal(extra):
    code, out = run_in_pty(["batch", SAMPLE_WITH_ERRORS] + extra, columns=40)
    assert code == 1 and "2 ok, 3 failed" in out, out
    assert widest(out) <= 40, out
    plain = ANSI.sub("", out)
    # the quoted entry and its caret stay together, the caret under the offending column
    lines = plain.split("\n")
    quoted = lines.index("    w' * X * w | --wrt w")
    assert lines[quoted + 1] == "       ^"


def test_fit_report_cuts_the_quoted_line_around_its_caret():
    from matcalc_cli.batch import fit_report
    report = ("f.mcb:3:70: error: cannot multiply a by b\n    " + "x" * 69 + "y" + "z" * 50 + "\n"
              + " " * 73 + "^\nhint: a hint long enough to be folded at forty columns, twice over\n")
    fitted = fit_report(report, 40).rstrip("\n").split("\n")
    assert all(len(line) <= 40 for line in fitted)
    snippet = next(line for line in fitted if "xyz" in line)
    caret = fitted[fitted.index(snippet) + 1]
    assert snippet[caret.index("^")] == "y"
    assert fitted[-2].startswith("hint: ") and fitted[-1].startswith("  ")


# --- JSON a program can rely on ---------------------------------------------------------------------
# Found: with --format json a failed run wrote nothing on stdout (the error only on stderr), so a
# program parsing the output got no JSON to parse.

@pytest.mark.parametrize("args, status, kind, where", [
    (["x: vector(n); foo(x)"], 1, "syntax", (1, 15)),
    (["x: vector(n); A: matrix(m, n); x' * A * x", "--wrt", "x"], 1, "shape", (1, 35)),
    (["x: vector(n); x' * x", "--wrt", "y"], 2, "usage", (None, None)),
    (["x: vector(n); log(0) * x' * x"], 1, "math", (1, 15)),
])
def test_json_errors_are_json_on_stdout(args, status, kind, where):
    import json
    r = subprocess.run(matcalc_command() + args + ["--format", "json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == status
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["error"]["kind"] == kind
    assert (doc["error"]["line"], doc["error"]["column"]) == where
    assert doc["error"]["message"] in r.stderr          # the person reading stderr sees it too


def test_json_results_say_ok():
    import json
    r = CliRunner().invoke(main, ["x: vector(n); x' * x", "--format", "json", "--check"])
    assert r.exit_code == 0 and json.loads(r.stdout)["ok"] is True


# --- batch options reach every entry -------------------------------------------------------------------
# Found: `matcalc batch` accepted --latex-style equation/inline, --latex-transpose, --latex-width and
# --color but rendered every entry with the defaults (align, ^{\top}, no colour).

def batch_run(args, tmp_path, text="X: matrix(n, n); det(X) | --gradient\n"):
    (tmp_path / "one.mcb").write_text(text)
    return subprocess.run(matcalc_command() + ["batch", "one.mcb"] + args, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)


def test_batch_latex_options_reach_the_entries(tmp_path):
    r = batch_run(["--format", "latex", "--latex-style", "equation", "--latex-transpose", "prime"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "\\begin{equation*}" in r.stdout and "align*" not in r.stdout and "X^{\\prime}" in r.stdout
    r = batch_run(["--format", "latex", "--latex-style", "inline", "--latex-transpose", "T"], tmp_path)
    assert "$\\nabla f(X) = \\det(X) \\, X^{-\\mathsf{T}}$" in r.stdout.splitlines()


def test_batch_refuses_a_bad_latex_width_at_once(tmp_path):
    r = batch_run(["--format", "latex", "--latex-width", "3"], tmp_path)
    assert r.returncode == 2 and "--latex-width 3" in r.stderr and r.stdout == ""


def test_batch_colour_follows_the_option(tmp_path):
    r = batch_run(["--format", "pretty", "--color", "always"], tmp_path)
    assert r.returncode == 0 and ANSI.search(r.stdout)
    r = batch_run(["--format", "pretty"], tmp_path)
    assert r.returncode == 0 and not ANSI.search(r.stdout)


# --- reading the program ---------------------------------------------------------------------------------
# Found: a bare '@' was parsed as a program (with a hint about matrix products); a binary file got
# no hint.

def test_bare_at_sign_is_a_usage_error():
    r = CliRunner().invoke(main, ["@"])
    assert r.exit_code == 2 and "@FILE" in r.output and "matrix product" not in r.output


def test_binary_program_file_says_what_a_program_is(tmp_path):
    (tmp_path / "bin.mc").write_bytes(b"\x7fELF\x02\x01\x01\x00\xff\xfe")
    r = CliRunner().invoke(main, [f"@{tmp_path / 'bin.mc'}"])
    assert r.exit_code == 1 and "is not UTF-8 text" in r.output and "hint:" in r.output


# --- inline LaTeX breaks in running text ----------------------------------------------------------------
# Found: a long inline result on its own paragraph (no \emergencystretch) was set as one line up to
# 51pt too wide: a line ending at a bare \allowbreak has no stretch, so TeX took no break at all.

def test_long_inline_results_break_without_slack(tmp_path):
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        pytest.skip("pdflatex is not installed")
    body = []
    for args in (["X: symmetric(n); norm2(logm(X))^2", "--gradient", "--hessian"],
                 ["W: matrix(k, d); h: vector(d); t: vector(k); log(sum(exp(W * h))) - t' * W * h", "--wrt", "W",
                  "--hessian"]):
        r = CliRunner().invoke(main, args + ["--format", "latex", "--latex-style", "inline"])
        assert r.exit_code == 0, r.output
        body += [line for line in r.stdout.splitlines() if line]
    (tmp_path / "inline.tex").write_text("\\documentclass{article}\n\\usepackage{amsmath}\n\\begin{document}\n"
                                         + "\n\n".join(body) + "\n\\end{document}\n")
    done = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "inline.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    log = (tmp_path / "inline.log").read_text(encoding="latin-1")
    assert done.returncode == 0 and "Overfull" not in log, re.findall(r"Overfull.*\n.*", log)


# --- the contract checks themselves (slow: pytest -m slow -s tests/test_contract.py) ----------------------

@pytest.mark.slow
@pytest.mark.parametrize("check", ["errors", "numpy", "pty", "latex", "batch"])
def test_contract_check(check):
    import contract_checks
    problems = contract_checks.CHECKS[check]()
    assert problems == [], "\n".join(problems)


# --- shape and arity errors say how to fix them -------------------------------------------------------------
# Found: these errors had a caret but no hint.

@pytest.mark.parametrize("program, hint", [
    ("X: matrix(m, n); det(X)", "declare X square (matrix(n, n)), or take det of a square product such as X' * X"),
    ("X: matrix(m, n); A: matrix(n, n); tr(X * A)", "a square matrix has as many rows as columns"),
    ("x: vector(n); kron(x)", "write kron(A, B)"),
    ("x: vector(n); diag(x, x)", "write diag(X) with one argument"),
    ("x: vector(n); ones(n, n, n)", "ones(n) is a vector of ones, ones(m, n) a matrix of ones"),
    ("x: vector(n); x: scalar; x", "declare each name once"),
])
def test_shape_errors_have_hints(program, hint):
    r = CliRunner().invoke(main, [program])
    assert r.exit_code == 1 and f"hint: {hint}" in r.output, r.output


# --- --help and --version on a full disk -------------------------------------------------------------------
# Found: `matcalc --help > /dev/full` (and --version, batch --help) ended in a traceback.

@pytest.mark.parametrize("args", [["--help"], ["--version"], ["batch", "--help"]])
def test_help_and_version_on_a_full_disk(args):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with open("/dev/full", "w") as full:
        r = subprocess.run(matcalc_command() + args, stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "cannot write the output" in r.stderr
