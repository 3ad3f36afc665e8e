"""Every kind of error a user can cause, as the user sees it.

Each case runs twice: in process through click's CliRunner, and as a real ``matcalc`` subprocess.
Bad input exits with status 1, a bad command line with status 2; the message goes to stderr,
stdout stays empty, and there is never a Python traceback.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from matcalc_cli.cli import main
from clitools import Run, matcalc_command

HERE = Path(__file__).resolve().parent

# the functions the language documents; the "unknown function" hint must name all of them
DOCUMENTED_FUNCTIONS = (
    "tr det logdet inv adj diag vec kron sum norm1 norm2 "
    "exp log sin cos tan tanh arcsin arccos arctan sqrt sigmoid abs sign relu step "
    "ones zeros commutation reshape"
).split()






def run_inprocess(args, stdin=None, env=None) -> Run:
    runner = CliRunner()
    result = runner.invoke(main, list(args), input=stdin, env=env, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {type(result.exception).__name__}: {result.exception}")
    return Run(result.exit_code, result.stdout, result.stderr)


def run_subprocess(args, stdin=None, env=None, timeout=60) -> Run:
    full_env = dict(os.environ)
    full_env.pop("NO_COLOR", None)
    full_env.update(env or {})
    proc = subprocess.run(matcalc_command() + list(args), input=(stdin or "").encode("utf-8"),
                          capture_output=True, timeout=timeout, env=full_env)
    return Run(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))


@pytest.fixture(params=["cli-runner", "subprocess"])
def run(request):
    return run_inprocess if request.param == "cli-runner" else run_subprocess


def failed(r: Run, code: int) -> str:
    """Assert the run failed cleanly with ``code``; returns stderr."""
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    assert "internal error" not in r.stderr
    assert r.code == code, f"exit {r.code}, expected {code}; stderr:\n{r.stderr}"
    assert r.stdout == "", f"stdout should be empty on error, got {r.stdout!r}"
    assert r.stderr.strip(), "an error needs a message"
    return r.stderr


HEADER = re.compile(r"(?P<kind>[a-z ]+error): (?:(?P<file>.*?):)?line (?P<line>\d+), column (?P<col>\d+): (?P<msg>.*)")


@dataclass
class Located:
    kind: str
    line: int
    column: int
    message: str
    shown: str          # the source line as shown (possibly cut around the column)
    under_caret: str    # the character of the shown line above the caret ('' past the end)
    hint: str


def locate(stderr: str) -> Located:
    """Read the message header, the shown source line and the caret under it."""
    lines = stderr.rstrip("\n").split("\n")
    match = HEADER.match(lines[0])
    assert match, f"no 'line L, column C' in the first line: {lines[0]!r}"
    carets = [i for i, text in enumerate(lines) if text.strip() == "^"]
    assert len(carets) == 1, f"expected one caret line:\n{stderr}"
    i = carets[0]
    assert i >= 2, "the caret line follows the source line"
    shown, caret_line = lines[i - 1], lines[i]
    assert shown.startswith("    ") and caret_line.startswith("    ")
    col = caret_line.index("^")
    under = shown[col] if col < len(shown) else ""
    hint = next((t[len("hint: "):] for t in lines if t.startswith("hint: ")), "")
    return Located(match["kind"], int(match["line"]), int(match["col"]), match["msg"], shown, under, hint)


def source_char(program: str, line: int, column: int) -> str:
    text = program.split("\n")[line - 1]
    return text[column - 1] if column - 1 < len(text) else ""


# --- syntax errors: line, column and caret ------------------------------------------------------

SYNTAX_CASES = [
    # (program, line, column, character at the caret)
    ("x: vector(n); x' * * x", 1, 20, "*"),
    ("x: vector(n); x' x", 1, 18, "x"),
    ("x: vector(n); x' * A * x)", 1, 25, ")"),
    ("x: vector(n); x' * [1]", 1, 20, "["),
    ("x: vector(n); x' * $ x", 1, 20, "$"),
    ("x: vector(n); λ * x", 1, 15, "λ"),
    ("x: vector(n); x' * \"x\"", 1, 20, '"'),
    ("x: vector(n);\tx' * * x", 1, 20, "*"),
    ("x: vector(n)\nA: matrix(n, n)\nx' * A * ) x", 3, 10, ")"),
    ("# a comment\n# another\nx: vector(n)\n  x' * @ x", 4, 8, "@"),
    ("x: vector(n)\n\n\nx' *\nx", 4, 5, ""),             # the line ends inside the expression
    ("x: vector(n\nx' * x", 1, 12, ""),
    ("x: vector(n); A: matrix(n n); x' * A * x", 1, 27, "n"),
    ("x: vector(n); x' * A * x; y: vector(n)", 1, 27, "y"),
    ("x: vector(n); x' * x\nx' * x", 2, 1, "x"),
    ("x: vector(n); ((x' * x)", 1, 24, ""),
]


@pytest.mark.parametrize("program, line, column, char", SYNTAX_CASES,
                         ids=[f"case{i}" for i in range(len(SYNTAX_CASES))])
def test_syntax_error_points_at_the_offending_character(run, program, line, column, char):
    err = failed(run([program, "--wrt", "x"]), 1)
    at = locate(err)
    assert at.kind == "syntax error"
    assert (at.line, at.column) == (line, column), err
    assert at.under_caret == char, err
    assert source_char(program, line, column) == char
    # the shown line is the program's line (tabs shown as spaces)
    assert at.shown.strip() == program.split("\n")[line - 1].replace("\t", " ").strip()


def test_caret_on_a_long_line_stays_under_the_character(run):
    program = "x: vector(n); " + " + ".join(["x' * x"] * 60) + " + * x' * x"
    column = program.index("+ *") + 3
    err = failed(run([program]), 1)
    at = locate(err)
    assert at.column == column
    assert at.under_caret == "*"
    assert len(at.shown) < 200, "a long line is shown around the column only"


def test_error_in_a_file_names_the_file(run, tmp_path):
    path = tmp_path / "broken.mc"
    program = "x: vector(n)\nA: matrix(n, n)\nx' * A * * x\n"
    path.write_text(program)
    err = failed(run([f"@{path}", "--wrt", "x"]), 1)
    at = locate(err)
    assert (at.line, at.column) == (3, 10)
    assert at.under_caret == "*"
    assert "broken.mc" in err.split("\n")[0]


def test_error_in_stdin_program(run):
    err = failed(run(["-", "--wrt", "x"], stdin="x: vector(n)\nx' * (x + \n"), 1)
    at = locate(err)
    assert at.line == 2


def test_hint_for_two_operands_in_a_row(run):
    at = locate(failed(run(["x: vector(n); A: matrix(n, n); x' A x"]), 1))
    assert "*" in at.hint


def test_hint_for_array_literals(run):
    at = locate(failed(run(["x: vector(n); x' * [1, 2]"]), 1))
    assert "declare" in at.hint


# --- shape errors: the operator, the operands and their shapes -------------------------------------

SHAPE_CASES = [
    # (program, operator, operand texts, shapes in the message)
    ("x: vector(n); z: vector(m); x + z", "'+'", ["x", "z"], ["n x 1", "m x 1"]),
    ("x: vector(n); z: vector(m); x - z", "'-'", ["x", "z"], ["n x 1", "m x 1"]),
    ("x: vector(n); z: vector(m); x .* z", "'.*'", ["x", "z"], ["n x 1", "m x 1"]),
    ("x: vector(n); z: vector(m); x ./ z", "'./'", ["x", "z"], ["n x 1", "m x 1"]),
    ("x: vector(n); A: matrix(m, m); A * x", "'*'", ["A", "x"], ["m x m", "n x 1"]),
    ("x: vector(n); x' * x'", "'*'", ["x'"], ["1 x n"]),
    ("x: vector(n); A: matrix(n, n); x / A", "'/'", ["A"], ["n x n"]),
    ("C: matrix(m, n); C^2", "'^'", ["C"], ["m x n"]),
    ("x: vector(n); c: scalar; c^x", "'^'", ["x"], ["n x 1"]),
    ("x: vector(n); x .^ x", "'.^'", ["x"], ["n x 1"]),
    ("C: matrix(m, n); tr(C)", "tr", ["C"], ["m x n"]),
    ("C: matrix(m, n); det(C)", "det", ["C"], ["m x n"]),
    ("C: matrix(m, n); inv(C)", "inv", ["C"], ["m x n"]),
    ("C: matrix(m, n); logdet(C)", "logdet", ["C"], ["m x n"]),
    ("C: matrix(m, n); diag(C)", "diag", ["C"], ["m x n"]),
    ("x: vector(n); reshape(x, m, m)", "reshape", ["x"], ["n x 1", "m x m"]),
]


@pytest.mark.parametrize("program, op, operands, shapes", SHAPE_CASES,
                         ids=[c[0].split("; ")[-1] for c in SHAPE_CASES])
def test_shape_error_names_operator_operands_and_shapes(run, program, op, operands, shapes):
    err = failed(run([program]), 1)
    at = locate(err)
    assert at.kind == "shape error"
    message = at.message
    assert op in message, err
    for text in operands:
        assert text in message, err
    for shape in shapes:
        assert shape in message, err
    assert at.under_caret != " "


def test_shape_error_on_a_later_line_points_at_the_operator(run):
    program = "x: vector(n)\nA: matrix(m, m)\ny: vector(n)\nx' * y + x' * A * y"
    at = locate(failed(run([program, "--wrt", "x"]), 1))
    assert at.line == 4
    assert at.under_caret == "*"
    assert "A" in at.message and "m x m" in at.message


def test_matrix_power_needs_an_integer_exponent(run):
    err = failed(run(["A: matrix(n, n); c: scalar; A^c", "--wrt", "A"]), 1)
    assert "integer" in err and ".^" in err


def test_undetermined_identity_size_says_how_to_fix(run):
    err = failed(run(["c: scalar; c * I", "--wrt", "c"]), 1)
    assert "I(n)" in err


# --- name errors ---------------------------------------------------------------------------

def test_unknown_function_lists_the_known_ones(run):
    err = failed(run(["x: vector(n); trace(x * x')", "--wrt", "x"]), 1)
    at = locate(err)
    assert "trace" in at.message
    assert at.under_caret == "t"
    listed = set(re.findall(r"[a-z0-9]+", at.hint))
    missing = [fn for fn in DOCUMENTED_FUNCTIONS if fn not in listed]
    assert not missing, f"the hint does not list {missing}"
    assert "I(n)" in at.hint


def test_calling_a_variable_is_an_unknown_function(run):
    err = failed(run(["x: vector(n); x(1)", "--wrt", "x"]), 1)
    assert "'x'" in err


def test_wrong_number_of_arguments(run):
    for program in ("x: vector(n); kron(x)", "x: vector(n); tr(x, x)", "x: vector(n); reshape(x, n)",
                    "x: vector(n); exp()"):
        err = failed(run([program, "--wrt", "x"]), 1)
        assert "argument" in err, err


def test_declared_twice(run):
    err = failed(run(["x: vector(n); x: vector(m); x' * x", "--wrt", "x"]), 1)
    assert "twice" in err


# --- math errors: what is asked of f does not fit it --------------------------------------------

def test_gradient_of_a_vector_says_to_use_jacobian(run):
    err = failed(run(["x: vector(n); A: matrix(m, n); A * x", "--wrt", "x", "--gradient"]), 1)
    assert "scalar" in err
    assert "--jacobian" in err


def test_hessian_of_a_matrix_says_to_use_jacobian(run):
    err = failed(run(["X: matrix(n, n); X^2", "--wrt", "X", "--hessian"]), 1)
    assert "--jacobian" in err


# --- usage errors (exit 2) ------------------------------------------------------------------

def test_wrt_name_not_in_program(run):
    err = failed(run(["x: vector(n); x' * x", "--wrt", "y"]), 2)
    assert "'y'" in err
    assert "x" in err.split("hint:")[-1], "the names that are there are listed"


def test_wrt_a_dimension_name_is_not_a_variable(run):
    err = failed(run(["x: vector(n); x' * x", "--wrt", "n"]), 2)
    assert "'n'" in err


def test_missing_wrt_when_ambiguous_lists_the_names(run):
    err = failed(run(["x: vector(n); A: matrix(n, n); x' * A * x"]), 2)
    assert "--wrt" in err
    assert "x" in err and "A" in err


def test_no_variable_at_all(run):
    failed(run(["3 * I(2)"]), 2)


@pytest.mark.parametrize("args", [
    ["x' * x", "--bogus"],
    ["x' * x", "--format", "xml"],
    ["x' * x", "--layout", "sideways"],
    ["x' * x", "--symmetric-gradient", "other"],
    ["x' * x", "--verify", "0"],
    ["x' * x", "--verify", "three"],
    ["x' * x", "--wrt"],
    [],
    ["x' * x", "x' * x"],
], ids=["unknown-option", "format", "layout", "symmetric-gradient", "verify-0", "verify-word", "wrt-no-value",
        "no-program", "two-programs"])
def test_bad_command_lines_exit_2(run, args):
    failed(run(args), 2)


def test_missing_file(run, tmp_path):
    err = failed(run([f"@{tmp_path / 'nope.mc'}", "--wrt", "x"]), 2)
    assert "nope.mc" in err


def test_directory_as_file(run, tmp_path):
    err = failed(run([f"@{tmp_path}", "--wrt", "x"]), 2)
    assert str(tmp_path) in err


def test_file_that_is_not_utf8(run, tmp_path):
    path = tmp_path / "latin1.mc"
    path.write_bytes("x: vector(n); x' * x # café".encode("latin-1"))
    err = failed(run([f"@{path}", "--wrt", "x"]), 1)
    assert "UTF-8" in err


# --- empty programs ---------------------------------------------------------------------------

@pytest.mark.parametrize("program", ["", "   ", "\n\n", "# only a comment", ";;", "x: vector(n)"],
                         ids=["empty", "blank", "newlines", "comment", "separators", "declarations-only"])
def test_empty_program_says_there_is_nothing_to_differentiate(run, program):
    err = failed(run([program]), 1)
    first = err.split("\n")[0].lower()
    assert "empty" in first or "no expression" in first, err


def test_empty_stdin(run):
    err = failed(run(["-"], stdin=""), 1)
    first = err.split("\n")[0].lower()
    assert "empty" in first or "no expression" in first, err


# --- limits ---------------------------------------------------------------------------------

def test_too_deep_nesting_is_a_clean_error(run):
    failed(run(["x: scalar; " + "(" * 5000 + "x" + ")" * 5000]), 1)


def test_program_with_a_nul_byte_from_stdin(run):
    err = failed(run(["-"], stdin="x: vector(n); x' *\0 x"), 1)
    assert "U+0000" in err or "\\x00" in err or "NUL" in err.upper()
