"""The terminal view (``--format pretty``): Unicode notation, labels, breaking at the terminal width,
colour only where it is wanted, errors rendered with the same words as plain mode.

Widths are checked two ways: with Rich's own console (``force_terminal=True, width=...``) and with a
real pseudo-terminal whose size is set (the way a terminal emulator sets it), at 80 and 60 columns.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from functools import lru_cache

import pytest
from rich.cells import cell_len
from rich.console import Console

from matcalc_cli import derive
from matcalc_cli import expr as E
from matcalc_cli.render import breaking, pretty
from matcalc_cli.render.pretty import UnicodePrinter, display_names
from clitools import matcalc_command, run_on_terminal

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

x = E.Var("x", ("n", 1))
A = E.Var("A", ("n", "n"))
X = E.Var("X", ("n", "n"))
B = E.Var("B", ("m", "n"))


def uni(e: E.Expr, names=None) -> str:
    return breaking.strip(UnicodePrinter(names).doprint(e))


# --- notation ------------------------------------------------------------------------------------

@pytest.mark.parametrize("build, expected", [
    (lambda: E.matmul(E.transpose(x), A, x), "xᵀ A x"),
    (lambda: E.matmul(E.add(A, E.transpose(A)), x), "(A + Aᵀ) x"),
    (lambda: E.inverse(X), "X⁻¹"),
    (lambda: E.Inverse(E.Transpose(X, X.shape), X.shape), "X⁻ᵀ"),
    (lambda: E.matpow(X, 3), "X³"),
    (lambda: E.kron(E.identity("n"), X), "Iₙ ⊗ X"),
    (lambda: E.hadamard(x, E.elementwise("exp", x)), "x ⊙ exp(x)"),
    (lambda: E.power(x, E.Num(2)), "x∘²"),
    (lambda: E.trace(E.matmul(A, X)), "tr(A X)"),
    (lambda: E.det(X), "det(X)"),
    (lambda: E.elementwise("sqrt", E.Var("s", (1, 1))), "√s"),
    (lambda: E.norm2(x), "‖x‖"),
    (lambda: E.norm2(B), "‖B‖_F"),
    (lambda: E.norm1(B), "‖vec(B)‖₁"),
    (lambda: E.commutation("m", "n"), "Kₘ,ₙ"),
    (lambda: E.elementwise("sigmoid", x), "σ(x)"),
    (lambda: E.scale(2, E.matmul(E.transpose(B), B)), "2 Bᵀ B"),
])
def test_unicode_notation(build, expected):
    assert uni(build()) == expected


@pytest.mark.parametrize("name, shown", [
    ("alpha", "α"), ("Sigma", "Σ"), ("lambda", "λ"), ("x1", "x₁"), ("x_1", "x₁"), ("theta_0", "θ₀"),
    ("W_out", "W_out"), ("loss", "loss"),
])
def test_names(name, shown):
    assert display_names([name])[name] == shown


def test_distinct_names_stay_distinct():
    names = display_names(["x1", "x_1", "alpha"])
    assert names["x1"] != names["x_1"]
    assert names["alpha"] == "α"


def test_labels_of_every_result():
    d = derive("x: vector(n); A: matrix(n, n); x' * A * x", wrt="x", gradient=True, jacobian=True, hessian=True)
    text = "\n".join(line.plain for line in pretty.derivation_view(d, 100))
    for label in ("f'(x)[dx] = ", "∇f(x) = ", "J = ", "f''(x)[dx, dx2] = ", "∇²f(x) = "):
        assert label in text, label
    assert "shapes  x: vector(n)   A: matrix(n, n)" in text
    assert "f(x) = xᵀ A x" in text
    assert "vec convention" in text   # the conventions, as a footnote


def test_inferred_shapes_are_marked_in_the_header():
    d = derive("A: matrix(n, n); x' * A * x", wrt="x")
    text = "\n".join(line.plain for line in pretty.derivation_view(d, 80))
    assert "x: vector(n) (inferred)" in text


def test_greek_names_in_the_view():
    d = derive("x: vector(n); Sigma: symmetric(n); alpha: scalar; alpha * x' * inv(Sigma) * x", wrt="x")
    text = "\n".join(line.plain for line in pretty.derivation_view(d, 80))
    assert "α" in text and "Σ⁻¹" in text


# --- breaking ------------------------------------------------------------------------------------

LONG = [
    ("x: vector(n); A: matrix(n, n); x' * A * x / (x' * x)", "x"),
    ("x: vector(n); W: matrix(n, n); tanh(x)' * W * tanh(x)", "x"),
    ("x: vector(n); A, B, C: matrix(n, n); b, c: vector(n); "
     "(A * x - b)' * B * (A * x - c) + x' * C * x + (x - b)' * A * (x - c)", "x"),
    ("X: matrix(n, n); det(X)", "X"),
    ("x: scalar; x^x^x^x", "x"),
    ("S: symmetric(n); x, mu: vector(n); -0.5 * logdet(S) - 0.5 * (x - mu)' * inv(S) * (x - mu)", "S"),
]


@lru_cache(maxsize=None)
def _all(program, wrt):
    scalar = derive(program, wrt=wrt).expression.is_scalar
    return derive(program, wrt=wrt, gradient=scalar, jacobian=True, hessian=scalar)


@pytest.mark.parametrize("width", [80, 60, 40])
@pytest.mark.parametrize("program, wrt", LONG, ids=[p[:30] for p, _ in LONG])
def test_no_line_wider_than_the_console(program, wrt, width):
    console = Console(force_terminal=True, width=width, record=True, file=open(os.devnull, "w"),
                      color_system="standard")
    pretty.print_derivation(_all(program, wrt), console)
    text = console.export_text(styles=False)
    lines = text.splitlines()
    assert len(lines) > 4
    assert max(cell_len(line) for line in lines) <= width, "\n" + text


@pytest.mark.parametrize("program, wrt", LONG, ids=[p[:30] for p, _ in LONG])
def test_breaking_only_adds_line_breaks(program, wrt):
    """The broken lines, put together again, are the one-line text: nothing lost or doubled."""
    d = _all(program, wrt)
    printer = UnicodePrinter(pretty.derivation_names(d))
    for r in d.results.values():
        marked = printer.doprint(r.printed)
        lines = pretty.math_lines(marked, 30, 30)
        assert "".join(lines).replace(" ", "") == breaking.strip(marked).replace(" ", "")


def test_long_sum_breaks_before_top_level_operators():
    d = derive("x: vector(n); A, B, C: matrix(n, n); x' * A * x + x' * B * x + x' * C * x", wrt="x", hessian=True)
    printer = UnicodePrinter(pretty.derivation_names(d))
    lines = pretty.math_lines(printer.doprint(d.hessian.printed), 14, 14)
    assert len(lines) > 1
    assert all(line.lstrip().startswith("+") for line in lines[1:]), lines
    assert all(line.startswith("  ") for line in lines[1:])   # continuation lines indented


def test_short_results_stay_on_one_line():
    d = derive("x: vector(n); A: matrix(n, n); x' * A * x", wrt="x", hessian=True)
    lines = [line.plain for line in pretty.derivation_view(d, 60)]
    assert "      f'(x)[dx] = xᵀ (A + Aᵀ) dx" in lines


# --- colour ----------------------------------------------------------------------------------------

class FakeTTY:
    def __init__(self, tty=True):
        self.tty = tty

    def isatty(self):
        return self.tty


def test_colour_choice(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert pretty.wants_colour("auto", FakeTTY(True))
    assert not pretty.wants_colour("auto", FakeTTY(False))
    assert pretty.wants_colour("always", FakeTTY(False))
    assert not pretty.wants_colour("never", FakeTTY(True))
    monkeypatch.setenv("NO_COLOR", "")      # any value, even empty
    assert not pretty.wants_colour("auto", FakeTTY(True))
    assert pretty.wants_colour("always", FakeTTY(True))   # an explicit option wins
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert not pretty.wants_colour("auto", FakeTTY(True))


# --- a real terminal ---------------------------------------------------------------------------------

def run_in_pty(args, columns=80, env=None, timeout=60):
    """(exit code, output) of matcalc with stdout and stderr on a pseudo-terminal of that width."""
    code, output, _ = run_on_terminal(args, columns, env, timeout)
    return code, output


HESSIAN_OF_RAYLEIGH = ["x: vector(n); A: matrix(n, n); x' * A * x / (x' * x)", "--wrt", "x", "--hessian"]


@pytest.mark.parametrize("columns", [80, 60])
def test_terminal_view_fits_and_is_coloured(columns):
    code, out = run_in_pty(HESSIAN_OF_RAYLEIGH, columns)
    assert code == 0, out
    assert ANSI.search(out), "no escape codes on a terminal"
    plain = ANSI.sub("", out)
    assert "∇²f(x) =" in plain
    widths = [cell_len(line) for line in plain.splitlines()]
    assert max(widths) <= columns, plain
    assert max(widths) > columns - 15, "the view should use the width it has"


@pytest.mark.parametrize("env, args", [({"NO_COLOR": "1"}, []), ({"TERM": "dumb"}, []), ({}, ["--color", "never"])])
def test_no_escape_codes_when_colour_is_off(env, args):
    code, out = run_in_pty(HESSIAN_OF_RAYLEIGH + args, 60, env)
    assert code == 0, out
    assert not ANSI.search(out)
    assert max(cell_len(line) for line in out.splitlines()) <= 60


def test_error_on_a_terminal_has_the_same_words_as_plain():
    program = "x: vector(n); A: matrix(m, n); x' * A * x"
    code, out = run_in_pty([program, "--wrt", "x"], 80)
    assert code == 1
    plain = subprocess.run(matcalc_command() + [program, "--wrt", "x"], capture_output=True, text=True)
    assert plain.returncode == 1
    shown = ANSI.sub("", out)
    assert ANSI.search(out), "the error is coloured on a terminal"
    want = plain.stderr.splitlines()
    got = shown.splitlines()
    caret = next(line for line in got if line.strip() == "^")
    at = got.index(caret)
    program_line = got[at - 1]
    assert program_line[caret.index("^")] == "*"   # the caret sits under the column
    # kind, place and message (wrapped at the width), and the hint: the words of plain mode
    assert " ".join(got[:at - 1]).split() == want[0].split()
    assert " ".join(got[at + 1:]).split() == want[-1].split()
    assert want[-1].startswith("hint:")


def test_error_on_a_narrow_terminal_shows_the_column():
    program = "x: vector(n); A: matrix(m, n); b: vector(m); c: vector(m); norm2(A * x - b)^2 + x' * A * x"
    code, out = run_in_pty([program, "--wrt", "x"], 50, {"NO_COLOR": "1"})
    assert code == 1
    lines = out.splitlines()
    assert max(cell_len(line) for line in lines) <= 50
    caret = next(line for line in lines if line.strip() == "^")
    assert lines[lines.index(caret) - 1][caret.index("^")] == "*"


# --- off a terminal ------------------------------------------------------------------------------------

def test_piped_output_is_plain_and_pretty_can_be_forced():
    program = ["x: vector(n); A: matrix(n, n); x' * A * x", "--wrt", "x"]
    piped = subprocess.run(matcalc_command() + program, capture_output=True, text=True)
    assert piped.stdout == "x' * (A + A') * dx\n(A + A') * x\n"
    from click.testing import CliRunner
    from matcalc_cli.cli import main
    forced = CliRunner().invoke(main, program + ["--format", "pretty"], env={"COLUMNS": "70"})
    assert "∇f(x) = (A + Aᵀ) x" in forced.stdout
    assert not ANSI.search(forced.stdout)
    coloured = CliRunner().invoke(main, program + ["--format", "pretty", "--color", "always"])
    assert ANSI.search(coloured.stdout)


def test_piped_one_liner_imports_neither_rich_sympy_nor_numpy():
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "matcalc_cli", "x' * A * x", "--wrt", "x",
                        "--hessian"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    imported = [line.split("|")[-1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")]
    assert imported
    assert [m for m in imported if m.split(".")[0] in ("rich", "sympy", "numpy")] == []


def test_check_reports_in_the_pretty_view():
    from click.testing import CliRunner
    from matcalc_cli.cli import main
    r = CliRunner().invoke(main, ["x: vector(n); x' * x", "--format", "pretty", "--check"])
    assert r.exit_code == 0, r.output
    assert "∇f(x) = 2 x" in r.stdout and "PASS" in r.stdout


def test_view_of_any_rows_with_notes_in_a_column():
    """The view is not tied to a derivation: rows of (label, expression, note) line up, the notes
    (rule names, say) in one dim column beside them."""
    d = derive("x: vector(n); A: matrix(n, n); x' * A * x", wrt="x")
    printer = UnicodePrinter(pretty.derivation_names(d))
    rows = [pretty.Row("df", d.differential.expr, note="product rule"),
            pretty.Row("", d.differential.expr, note="collect terms"),
            pretty.Row("∇f", d.gradient.expr, note="df = ∇fᵀ dx")]
    lines = [t.plain for t in pretty.view(rows, width=60, printer=printer)]
    assert lines[0].startswith("df = xᵀ (A + Aᵀ) dx") and lines[1].startswith("   = xᵀ")
    assert len({line.index(note) for line, note in zip(lines, ("product", "collect", "df ="))}) == 1


README_CAPTURES = [
    (["x: vector(n); A: matrix(n, n); x' * A * x", "--wrt", "x", "--hessian"], "f(x) = xᵀ A x"),
    (["x: vector(n); W: matrix(n, n); tanh(x)' * W * tanh(x)", "--wrt", "x", "--hessian"],
     "f(x) = tanh(x)ᵀ W tanh(x)"),
]


@pytest.mark.parametrize("args, first_line", README_CAPTURES, ids=["xAx", "tanh"])
def test_readme_captures_are_what_a_60_column_terminal_shows(args, first_line):
    from pathlib import Path
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = re.findall(r"```text\n(.*?)```", readme, re.S)
    block = next(b for b in blocks if b.strip().startswith(first_line))
    indent = len(block) - len(block.lstrip(" "))
    shown = "\n".join(line[indent:] for line in block.rstrip().splitlines())
    code, out = run_in_pty(args, 60, {"NO_COLOR": "1"})
    assert code == 0
    assert "\n".join(line.rstrip() for line in out.rstrip().splitlines()) == shown
