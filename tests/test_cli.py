"""The command-line contract: formats, inputs, options and defaults, as a user and a script see them.

Runs go through click's CliRunner (in process) and through a real ``matcalc`` subprocess.  Numbers
(``matcalc_cli.numeric``) are used where a claim is about values: the denominator layout is the
transpose, each printed line means the same as the derivation's result.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import matcalc_cli
from matcalc_cli import derive
from matcalc_cli.cli import main
from matcalc_cli.numeric import evaluate, random_direction, random_values, dimension_sizes
from matcalc_cli.shapes import check
from matcalc_cli.syntax import parse
from clitools import Run, matcalc_command, run_on_terminal

REPO = Path(__file__).resolve().parent.parent
SAMPLES = sorted((REPO / "samples").glob("*.mc"))
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# the order results are printed in, in every format
ORDER = ("differential", "gradient", "jacobian", "hessian_bilinear", "hessian")






def cli(args, stdin=None, env=None, cwd=None) -> Run:
    runner = CliRunner()
    old = os.getcwd()
    try:
        if cwd:
            os.chdir(cwd)
        result = runner.invoke(main, list(args), input=stdin, env=env, catch_exceptions=True)
    finally:
        os.chdir(old)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {type(result.exception).__name__}: {result.exception}")
    return Run(result.exit_code, result.stdout, result.stderr)


def proc(args, stdin=None, env=None, cwd=None, timeout=120) -> Run:
    full_env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    full_env.update(env or {})
    p = subprocess.run(matcalc_command() + list(args), input=(stdin or "").encode(), capture_output=True,
                       env=full_env, cwd=cwd, timeout=timeout)
    return Run(p.returncode, p.stdout.decode(), p.stderr.decode())


@pytest.fixture(params=["cli-runner", "subprocess"])
def run(request):
    return cli if request.param == "cli-runner" else proc


def ok(r: Run) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    assert r.code == 0, f"exit {r.code}; stderr:\n{r.stderr}"
    return r.stdout


def in_pty(args, env=None, timeout=60) -> str:
    """stdout of a matcalc subprocess whose stdout is a terminal."""
    code, output, err = run_on_terminal(args, env=env, timeout=timeout, stderr_on_terminal=False)
    assert code == 0, err
    return output


# --- programs used across the tests ----------------------------------------------------------------

# (program, wrt, flags): scalar, vector and matrix valued, symmetric, inferred shapes
CASES = [
    ("x: vector(n); A: matrix(n, n); x' * A * x", "x", ["--hessian", "--gradient"]),
    ("X: matrix(m, n); y: vector(m); w: vector(n); sum(log(1 + exp(-y .* (X * w))))", "w", ["--hessian"]),
    ("X: matrix(n, n); det(X)", "X", ["--gradient", "--jacobian", "--hessian"]),
    ("S: symmetric(n); logdet(S)", "S", ["--gradient"]),
    ("X: matrix(m, n); A: matrix(p, m); A * X", "X", ["--jacobian"]),
    ("X: matrix(n, n); inv(X)", "X", []),
    ("x: vector(n); exp(x)", "x", []),
    ("x' * A * y", "A", []),
    ("c: scalar; c * x' * x", "c", ["--gradient", "--hessian"]),
    ("x: scalar; x^x^x^x", "x", ["--hessian"]),
    ("X: matrix(m, n); y: vector(m); u = -y .* (X * w); sum(log(1 + exp(u)))", "w", ["--hessian"]),
]
CASE_IDS = ["quadratic", "logistic", "det", "logdet-sym", "linear-map", "inverse", "exp", "inferred", "scalar-wrt",
            "power-tower", "definition"]


def json_run(program, wrt, flags, runner=cli) -> dict:
    return json.loads(ok(runner([program, "--wrt", wrt, "--format", "json"] + flags)))


def declarations(doc: dict) -> str:
    """The program's declarations and those of the directions dx, dx2, from the JSON shapes."""
    parts = [f"{name}: {s['text']}" for name, s in doc["shapes"].items()]
    x = doc["shapes"][doc["wrt"]]
    parts.append(f"{doc['differential']['direction']}: {x['text']}")
    if "hessian_bilinear" in doc:
        parts.append(f"{doc['hessian_bilinear']['directions'][1]}: {x['text']}")
    return "; ".join(parts)


def result_names(doc: dict) -> list:
    return [k for k in ORDER if k in doc]


# --- plain ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("program, wrt, flags", CASES, ids=CASE_IDS)
def test_plain_is_one_result_per_line_in_order(program, wrt, flags):
    lines = ok(cli([program, "--wrt", wrt, "--format", "plain"] + flags)).splitlines()
    doc = json_run(program, wrt, flags)
    assert lines == [doc[name]["text"] for name in result_names(doc)]


@pytest.mark.parametrize("program, wrt, flags", CASES, ids=CASE_IDS)
def test_plain_lines_reparse_to_the_same_values(program, wrt, flags):
    """Each line, with the declarations prepended, is a matcalc program with the same value."""
    out = ok(cli([program, "--wrt", wrt, "--format", "plain"] + flags))
    doc = json_run(program, wrt, flags)
    decls = declarations(doc)
    d = derive(program, wrt=wrt, **{f.strip("-"): True for f in flags})
    sizes = dimension_sizes(d)
    rng = np.random.default_rng(7)
    values = random_values(d, rng, sizes, signed=False)
    values[d.dx.name] = random_direction(d.dx, rng, sizes)
    values[d.dx2.name] = random_direction(d.dx2, rng, sizes)
    for name, line in zip(result_names(doc), out.splitlines()):
        # matcalc itself reads the line back
        again = cli([f"{decls}\n{line}", "--wrt", wrt, "--format", "json"])
        assert again.code == 0, (line, again.stderr)
        assert json.loads(again.stdout)["expression"]["shape"] == doc[name]["shape"]
        back = check(parse(f"{decls}\n{line}")).expression
        want = evaluate(d.results[name].expr, values, sizes)
        got = evaluate(back, values, sizes)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=f"{name}: {line}")


def test_default_output_off_a_terminal_is_plain(run):
    program = "x: vector(n); A: matrix(n, n); x' * A * x"
    default = ok(run([program, "--wrt", "x"]))
    plain = ok(run([program, "--wrt", "x", "--format", "plain"]))
    assert default == plain
    assert not ANSI.search(default)


def test_inferred_shapes_are_noted_on_stderr_not_stdout(run):
    r = run(["x' * A * x", "--wrt", "x"])
    ok(r)
    assert "inferred" not in r.stdout
    assert "x: vector(n)" in r.stderr and "A: matrix(n, n)" in r.stderr


def test_output_ends_with_a_newline(run):
    for fmt in ("plain", "latex", "json", "numpy"):
        out = ok(run(["x: vector(n); x' * x", "--format", fmt]))
        assert out.endswith("\n") and not out.endswith("\n\n\n")


# --- default results -------------------------------------------------------------------------

@pytest.mark.parametrize("program, wrt, expected", [
    ("x: vector(n); A: matrix(n, n); x' * A * x", "x", ["differential", "gradient"]),
    ("x: vector(n); A: matrix(n, n); x' * A * x", "A", ["differential", "gradient"]),
    ("X: matrix(n, n); det(X)", "X", ["differential", "gradient"]),
    ("x: vector(n); exp(x)", "x", ["differential", "jacobian"]),
    ("X: matrix(n, n); X^2", "X", ["differential", "jacobian"]),
    ("x: vector(n); x'", "x", ["differential", "jacobian"]),
    ("x: vector(n); c: scalar; c * x", "c", ["differential", "jacobian"]),
])
def test_default_results(program, wrt, expected):
    doc = json.loads(ok(cli([program, "--wrt", wrt, "--format", "json"])))
    assert result_names(doc) == expected
    assert len(ok(cli([program, "--wrt", wrt])).splitlines()) == len(expected)


def test_flags_select_results():
    program = "X: matrix(n, n); det(X)"
    for flags, names in [(["--gradient"], ["differential", "gradient"]),
                         (["--jacobian"], ["differential", "jacobian"]),
                         (["--hessian"], ["differential", "hessian_bilinear", "hessian"]),
                         (["--gradient", "--jacobian", "--hessian"], list(ORDER))]:
        doc = json_run(program, "X", flags)
        assert result_names(doc) == names, flags


# --- json ------------------------------------------------------------------------------------

@pytest.mark.parametrize("program, wrt, flags", CASES, ids=CASE_IDS)
def test_json_document(program, wrt, flags):
    doc = json_run(program, wrt, flags)
    assert doc["wrt"] == wrt
    assert set(doc["shapes"]) == set(derive(program, wrt=wrt).typed.symbols)
    for name, shape in doc["shapes"].items():
        assert {"rows", "cols", "text"} <= set(shape)
    requested = {"--gradient": "gradient", "--jacobian": "jacobian", "--hessian": "hessian"}
    for flag in flags:
        assert requested[flag] in doc
    for name in result_names(doc):
        assert isinstance(doc[name]["text"], str) and doc[name]["text"]
        assert isinstance(doc[name]["latex"], str) and doc[name]["latex"]
    assert "differential" in doc and "text" in doc["differential"] and "latex" in doc["differential"]


def test_json_through_a_subprocess_with_stdin():
    doc = json.loads(ok(proc(["-", "--hessian", "--format", "json"], stdin="A: matrix(n, n); det(A)")))
    assert doc["wrt"] == "A"
    assert {"differential", "hessian", "shapes"} <= set(doc)
    assert doc["hessian"]["text"] and doc["hessian"]["latex"]


def test_json_is_the_only_thing_on_stdout_even_with_inferred_shapes(run):
    out = ok(run(["x' * A * x", "--wrt", "x", "--format", "json"]))
    doc = json.loads(out)
    assert doc["shapes"]["A"]["declared"] is False


# --- latex -----------------------------------------------------------------------------------

def _latex_problems(out: str) -> list:
    problems = []
    depth = 0
    for ch in re.sub(r"\\[{}]", "", out):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            problems.append("a '}' closes nothing")
            break
    if depth > 0:
        problems.append("an unclosed '{'")
    begins = re.findall(r"\\begin\{(\w+\*?)\}", out)
    ends = re.findall(r"\\end\{(\w+\*?)\}", out)
    if begins != ends[::-1] and begins != ends:
        problems.append(f"environments {begins} / {ends}")
    for line in out.splitlines():
        s = line.strip()
        if not s or s.startswith("%"):
            continue
        if s.startswith(("matcalc", "shapes:", "hint:", "error")) or " * " in s:
            problems.append(f"not LaTeX: {line!r}")
    if not re.search(r"\\[A-Za-z]+", out):
        problems.append("no LaTeX command at all")
    return problems


@pytest.mark.parametrize("program, wrt, flags", CASES, ids=CASE_IDS)
def test_latex_stdout_is_only_latex(program, wrt, flags):
    r = cli([program, "--wrt", wrt, "--format", "latex"] + flags)
    out = ok(r)
    assert _latex_problems(out) == []
    assert not ANSI.search(out)
    doc = json_run(program, wrt, flags)
    out = _unbroken(out)
    for name in result_names(doc):
        # shared subexpressions ("where t_1 = ...") may be laid out on lines of their own
        main, _, where = _unbroken(doc[name]["latex"]).partition(r" \quad \text{where } ")
        assert main in out, f"the {name} is not in the LaTeX output"
        for definition in filter(None, where.split(r",\ ")):
            assert definition.partition(" = ")[2] in out, f"{definition} of the {name} is not in the output"


def _unbroken(latex: str) -> str:
    """Long results are continued on lines of their own: joined back, with the delimiters that span
    lines as \\left( ... \\right) and without the thin spaces a line break drops."""
    latex = re.sub(r"\s*\\\\\n\s*&(\\quad)*\s*(\{\}\s*)?", " ", latex)
    latex = re.sub(r"\\[bB]igl\(", r"\\left(", latex)
    latex = re.sub(r"\\[bB]igr\)", r"\\right)", latex)
    return re.sub(r"\s*\\,\s*", " ", latex)


def test_latex_through_a_subprocess(tmp_path):
    r = proc(["x' * A * x", "--wrt", "x", "--format", "latex", "--hessian"])
    out = ok(r)
    assert _latex_problems(out) == []
    assert "inferred" in r.stderr and "inferred" not in out


# --- numpy -----------------------------------------------------------------------------------

NUMPY_CASES = CASES + [
    ("lambda: scalar; x: vector(n); lambda * x' * x", "x", ["--hessian", "--gradient"]),
    ("np: scalar; vars: vector(n); def: matrix(n, n); np * vars' * def * vars", "vars", ["--gradient"]),
]


@pytest.mark.parametrize("program, wrt, flags", NUMPY_CASES, ids=CASE_IDS + ["keyword-name", "shadowing-names"])
def test_numpy_output_is_valid_python(program, wrt, flags):
    out = ok(cli([program, "--wrt", wrt, "--format", "numpy"] + flags))
    module = ast.parse(out)
    compile(module, "<matcalc numpy>", "exec")
    functions = {node.name for node in module.body if isinstance(node, ast.FunctionDef)}
    doc = json_run(program, wrt, flags)
    for name in result_names(doc):
        assert name in functions, f"no function for the {name}"
    assert "f" in functions


def test_numpy_module_with_shadowing_names_computes_f():
    program = "np: scalar; vars: vector(n); def: matrix(n, n); np * vars' * def * vars"
    namespace: dict = {}
    exec(compile(ok(cli([program, "--wrt", "vars", "--format", "numpy"])), "<matcalc>", "exec"), namespace)
    v = np.array([1.0, 2.0, 3.0])
    D = np.arange(9.0).reshape(3, 3)
    assert namespace["f"](**{"np": 2.0, "vars": v, "def": D}) == pytest.approx(2.0 * v @ D @ v)


def test_numpy_through_a_subprocess():
    out = ok(proc(["X: matrix(m, n); A: matrix(p, m); A * X", "--wrt", "X", "--format", "numpy"]))
    compile(out, "<matcalc numpy>", "exec")


# --- inputs: inline, stdin, @file -------------------------------------------------------------

def test_stdin_and_file_give_the_same_output_as_inline(run, tmp_path):
    program = "# a comment\nx: vector(n)\nA: matrix(n, n)\nx' * A * x\n"
    path = tmp_path / "quad.mc"
    path.write_text(program)
    inline = ok(run([program, "--wrt", "x", "--hessian"]))
    assert ok(run(["-", "--wrt", "x", "--hessian"], stdin=program)) == inline
    assert ok(run([f"@{path}", "--wrt", "x", "--hessian"])) == inline
    assert ok(run(["--hessian", "--wrt", "x", f"@{path}"])) == inline


def test_file_relative_to_the_working_directory(run, tmp_path):
    (tmp_path / "f.mc").write_text("x: vector(n); x' * x")
    assert ok(run(["@f.mc"], cwd=tmp_path)) == ok(run(["x: vector(n); x' * x"]))


def test_file_with_windows_line_endings_and_bom_free_utf8(run, tmp_path):
    path = tmp_path / "crlf.mc"
    path.write_bytes(b"# caf\xc3\xa9\r\nx: vector(n)\r\nx' * x\r\n")
    assert ok(run([f"@{path}"])) == ok(run(["x: vector(n); x' * x"]))


def test_program_starting_with_a_minus_after_double_dash(run):
    out = ok(run(["--wrt", "x", "--", "-x' * x"]))
    d = derive("-x' * x", wrt="x")
    assert out.splitlines() == [d.differential.text(), d.gradient.text()]


# --- --version and --help ---------------------------------------------------------------------

def test_version(run):
    out = ok(run(["--version"]))
    assert matcalc_cli.__version__ in out
    assert "matcalc" in out


def _help_examples(text: str) -> list:
    return [line.strip() for line in text.splitlines() if re.match(r"\s+(echo .*\| )?matcalc ", line)]


def test_help_shows_examples(run):
    out = ok(run(["--help"]))
    assert "Examples" in out
    assert len(_help_examples(out)) >= 3
    for option in ("--wrt", "--gradient", "--jacobian", "--hessian", "--format", "--layout"):
        assert option in out


def test_every_example_in_help_runs(tmp_path):
    (tmp_path / "loss.mc").write_text("X: matrix(m, n); y: vector(m); w: vector(n)\nnorm2(X * w - y)^2\n")
    examples = _help_examples(ok(cli(["--help"])))
    assert examples
    for example in examples:
        stdin = None
        if "|" in example:
            left, example = example.split("|", 1)
            stdin = shlex.split(left)[1] + "\n"
        example = example.split(">")[0]
        args = shlex.split(example)[1:]
        r = cli(args, stdin=stdin, cwd=tmp_path)
        assert r.code == 0, f"{example}: {r.stderr}"
        assert r.stdout.strip()


# --- --layout --------------------------------------------------------------------------------

@pytest.mark.parametrize("program, wrt", [
    ("X: matrix(m, n); A: matrix(p, m); A * X", "X"),
    ("X: matrix(n, n); inv(X)", "X"),
    ("x: vector(n); A: matrix(n, n); x' * A * x", "x"),
    ("X: matrix(m, n); X'", "X"),
    ("S: symmetric(n); S^2", "S"),
    ("x: vector(n); C: matrix(m, n); exp(C * x)", "x"),
])
def test_denominator_layout_transposes_the_jacobian(program, wrt):
    num = json_run(program, wrt, ["--jacobian"])
    den = json_run(program, wrt, ["--jacobian", "--layout", "denominator"])
    assert den["layout"] == "denominator" and num["layout"] == "numerator"
    assert den["jacobian"]["shape"] == num["jacobian"]["shape"][::-1]
    assert "denominator" in den["jacobian"].get("note", "")
    d = derive(program, wrt=wrt, jacobian=True)
    sizes = dimension_sizes(d)
    values = random_values(d, np.random.default_rng(3), sizes, signed=False)
    decls = declarations(num)
    j_num = evaluate(check(parse(decls + "\n" + num["jacobian"]["text"])).expression, values, sizes)
    j_den = evaluate(check(parse(decls + "\n" + den["jacobian"]["text"])).expression, values, sizes)
    np.testing.assert_allclose(j_den, j_num.T, rtol=1e-10, atol=1e-12)
    # the differential does not depend on the layout
    assert den["differential"] == num["differential"]


def test_layout_in_plain_output_through_subprocess():
    program = "X: matrix(m, n); A: matrix(p, m); A * X"
    num = ok(proc([program, "--wrt", "X", "--jacobian"])).splitlines()
    den = ok(proc([program, "--wrt", "X", "--jacobian", "--layout", "denominator"])).splitlines()
    assert num[0] == den[0] and num[1] != den[1]


# --- --symmetric-gradient ----------------------------------------------------------------------

SYM = "S: symmetric(n); A: matrix(n, n); tr(A * S) + logdet(S)"


def test_cookbook_gradient_is_labelled_in_json():
    doc = json_run(SYM, "S", ["--gradient", "--symmetric-gradient", "cookbook"])
    assert "cookbook" in doc["gradient"].get("note", "").lower()
    plain = json_run(SYM, "S", ["--gradient"])
    assert "cookbook" not in plain["gradient"].get("note", "").lower()


def test_cookbook_gradient_is_labelled_on_a_terminal():
    out = in_pty([SYM, "--wrt", "S", "--gradient", "--symmetric-gradient", "cookbook"], env={"NO_COLOR": "1"})
    assert "cookbook" in out.lower()
    frob = in_pty([SYM, "--wrt", "S", "--gradient"], env={"NO_COLOR": "1"})
    assert "cookbook" not in frob.lower()


def test_cookbook_gradient_is_2g_minus_its_diagonal():
    """Cookbook G_c = G + G' - I .* G for the unconstrained G; the Frobenius one is (G + G')/2."""
    frob = json_run(SYM, "S", ["--gradient"])
    book = json_run(SYM, "S", ["--gradient", "--symmetric-gradient", "cookbook"])
    d = derive(SYM, wrt="S")
    sizes = dimension_sizes(d)
    values = random_values(d, np.random.default_rng(5), sizes, signed=False)
    decls = declarations(frob)
    F = evaluate(check(parse(decls + "\n" + frob["gradient"]["text"])).expression, values, sizes)
    C = evaluate(check(parse(decls + "\n" + book["gradient"]["text"])).expression, values, sizes)
    np.testing.assert_allclose(C, 2 * F - np.diag(np.diag(F)), rtol=1e-10, atol=1e-12)


# --- terminals and colour ---------------------------------------------------------------------

def test_terminal_gets_the_pretty_view():
    out = ANSI.sub("", in_pty(["x: vector(n); A: matrix(n, n); x' * A * x", "--wrt", "x"]))
    assert "∇f(x) = (A + Aᵀ) x" in out
    assert "shapes" in out


def test_no_color_on_a_terminal_has_no_escape_codes():
    out = in_pty(["x: vector(n); A: matrix(n, n); x' * A * x", "--wrt", "x", "--hessian"], env={"NO_COLOR": "1"})
    assert not ANSI.search(out)
    assert "A + Aᵀ" in out


def test_explicit_format_on_a_terminal_is_that_format():
    out = in_pty(["x: vector(n); x' * x", "--format", "plain"])
    assert out == ok(cli(["x: vector(n); x' * x", "--format", "plain"]))


# --- startup: a plain one-liner stays light -----------------------------------------------------

HEAVY = ("sympy", "numpy")


def test_plain_one_liner_does_not_import_sympy_or_numpy():
    code = (
        "import sys\n"
        "from matcalc_cli.cli import main\n"
        "try:\n"
        "    main([\"x' * A * x\", '--wrt', 'x', '--hessian'])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print('HEAVY:', ','.join(heavy))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    line = p.stdout.strip().splitlines()[-1]
    assert line == "HEAVY:", line


@pytest.mark.parametrize("fmt", ["plain", "json", "latex"])
def test_importtime_shows_no_heavy_module(fmt):
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "matcalc_cli", "x' * x", "--wrt", "x",
                        "--format", fmt], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    imported = [line.split("|")[-1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")]
    assert imported, "no -X importtime output"
    heavy = [name for name in imported if name.split(".")[0] in HEAVY]
    assert heavy == [], heavy


# --- samples --------------------------------------------------------------------------------

def _sample_command(path: Path) -> str:
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("#").strip())
    commands = [h for h in header if h.startswith("matcalc ")]
    assert len(commands) == 1, f"{path.name}: one command line in the header, found {commands}"
    return commands[0]


def test_there_are_samples():
    assert len(SAMPLES) >= 5


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_sample_header_and_command(path):
    text = path.read_text()
    assert text.startswith("#"), "a sample starts with comment lines"
    command = _sample_command(path)
    assert f"@samples/{path.name}" in command
    args = shlex.split(command)[1:]
    r = cli(args + ["--format", "json"], cwd=REPO)
    doc = json.loads(ok(r))
    assert doc["differential"]["text"]
    # and it is right: every result checked against finite differences
    r = cli(args + ["--check"], cwd=REPO)
    assert r.code == 0, r.stdout + r.stderr
    assert "FAIL" not in r.stdout


def test_a_sample_through_a_subprocess():
    command = _sample_command(REPO / "samples" / "quadratic_form.mc")
    out = ok(proc(shlex.split(command)[1:], cwd=REPO))
    assert out.splitlines()[-1] == "A + A'"
