"""Safe and bounded: each command a hostile user tried becomes a test.

- nothing loadable in a shared directory (the parser cache), nothing written to TMPDIR;
- error messages quote no secret line of a file that is not a program, and no raw control
  characters;
- generated code computes what it prints; constants are exact or refused as math errors;
- every request ends within its budget, with a result or an error naming the limit;
- output failures (closed pipe, full disk, closed stdout) and Ctrl-C end cleanly.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import stat
import subprocess
import sys
import time
from fractions import Fraction

import pytest

from matcalc_cli import MathError, derive
from matcalc_cli.budget import (MAX_INPUT_BYTES, MAX_VERIFY_N, LimitError, TimeLimitError, limit)
from matcalc_cli.errors import MatcalcError, UsageError, visible
from matcalc_cli.render.numpy_code import to_numpy_module

from clitools import matcalc_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def matcalc(*args, env=None, timeout=120, **kw):
    full_env = dict(os.environ, PYTHONPATH=ROOT)
    full_env.update(env or {})
    return subprocess.run(matcalc_command() + list(args), capture_output=True, text=True, env=full_env,
                          timeout=timeout, **kw)


def in_process(*args, stdin=None):
    """matcalc run inside this process (click's runner): quicker than a subprocess; the budget's
    timer works here too (the main thread)."""
    from click.testing import CliRunner
    from matcalc_cli.cli import main
    result = CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {type(result.exception).__name__}: {result.exception}")
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def clean_failure(proc, code=1) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    return proc.stderr


# --- the parser cache -------------------------------------------------------------------------------

def test_nothing_is_written_to_the_temporary_directory(tmp_path):
    tmp, cache = tmp_path / "tmp", tmp_path / "cache"
    tmp.mkdir()
    proc = matcalc("x: vector(n); A: matrix(n, n); x' * A * x", "--wrt", "x",
                   env={"TMPDIR": str(tmp), "XDG_CACHE_HOME": str(cache)})
    assert proc.returncode == 0 and not cache.exists()    # the stand-alone parser needs no cache
    for _ in range(2):   # the lark parser: the first run builds and caches, the second loads
        proc = matcalc("x: vector(n); A: matrix(n, n); x' * A * x", "--wrt", "x",
                       env={"TMPDIR": str(tmp), "XDG_CACHE_HOME": str(cache), "MATCALC_LARK_PARSER": "1"})
        assert proc.returncode == 0 and proc.stdout.splitlines()[1] == "(A + A') * x"
    assert list(tmp.iterdir()) == []
    directory = cache / "matcalc"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = list(directory.iterdir())
    assert len(files) == 1 and files[0].suffix == ".json"
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    json.loads(files[0].read_text())   # data, not code


def test_the_parser_never_unpickles_anything(tmp_path):
    code = ("import pickle\n"
            "def refuse(*a, **k):\n    raise SystemExit('pickle used')\n"
            "pickle.load = pickle.loads = refuse\n"
            "from matcalc_cli import derive\n"
            "print(derive(\"x: vector(n); x' * x\", wrt='x').gradient.text())\n")
    for lark_parser in ("", "", "1", "1"):   # the stand-alone parser; lark's, building then loading its cache
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, PYTHONPATH=ROOT, XDG_CACHE_HOME=str(tmp_path),
                                       MATCALC_LARK_PARSER=lark_parser))
        assert proc.returncode == 0 and proc.stdout.strip() == "2 * x", proc.stderr


def test_a_cache_directory_open_to_others_is_not_used(tmp_path):
    shared = tmp_path / "matcalc"
    shared.mkdir()
    shared.chmod(0o777)
    proc = matcalc("x: vector(n); x' * x", env={"XDG_CACHE_HOME": str(tmp_path)})
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1] == "2 * x"
    assert list(shared.iterdir()) == []


def test_a_damaged_cache_is_rebuilt(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path), "MATCALC_LARK_PARSER": "1"}   # the lark parser's cache
    assert matcalc("x: vector(n); x' * x", env=env).returncode == 0
    (cached,) = (tmp_path / "matcalc").iterdir()
    cached.write_text('{"__t": [1, 2]}')
    proc = matcalc("x: vector(n); x' * x", env=env)
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1] == "2 * x"


# --- error messages -----------------------------------------------------------------------------------

def test_a_file_that_is_not_a_program_has_no_line_quoted(tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$s3cretHASHvalue:19000:0:99999:7:::\ndaemon:*:19000\n")
    err = clean_failure(in_process(f"@{secret}"))
    assert "s3cretHASHvalue" not in err and "19000" not in err
    assert "line 1, column 6" in err


def test_control_characters_are_shown_escaped(tmp_path):
    program = tmp_path / "esc.mc"
    program.write_text("x: vector(n) # title\x1b]0;owned\x07\nx' * y\x1b[2J + 1\n")
    for args in ([f"@{program}"], ["x: vector(n); x\x1b[2J"]):
        err = clean_failure(in_process(*args))
        assert "\x1b" not in err and "\x07" not in err
        assert "\\x1b" in err
    assert visible("a\x00b\u202ec\td") == "a\\x00b\\u202ec d"


def test_generated_docstring_escapes_control_characters():
    d = derive("x: vector(n) # NUL \x00 ESC \x1b[2J \"\"\" \\\nx' * x", wrt="x")
    code = to_numpy_module(d)
    assert "\x00" not in code and "\x1b" not in code
    compile(code, "generated.py", "exec")


# --- constants ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("program", [
    "x: scalar; 1e200^2 * x", "x: scalar; (1e200)^2 * x", "x: scalar; x / 1e-320",
    "x: scalar; 1 / 1e-320 * x", "x: scalar; 1e-400 * x", "x: scalar; 1e-200 * 1e-200 * x",
    "x: scalar; log(0) * x", "x: scalar; sqrt(-1) * x", "x: scalar; 0^-1 * x", "x: scalar; log(-2) * x",
    "x: scalar; arcsin(2) * x", "x: scalar; (-8)^(1/3) * x", "x: scalar; 2^5000 * x", "x: scalar; 1e99999999 * x",
])
def test_undefined_or_out_of_range_constants_are_refused(program):
    with pytest.raises(MatcalcError) as info:
        derive(program, wrt="x")
    assert info.value.line == 1


def _module(program, **kw):
    spec = importlib.util.spec_from_loader("generated", loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(to_numpy_module(derive(program, wrt="x", **kw)), module.__dict__)
    return module


def test_generated_code_computes_the_big_exponent_it_prints():
    d = derive("x: scalar; x^(2^70)", wrt="x")
    assert d.gradient.text() == f"{2 ** 70} * x^{2 ** 70 - 1}"
    assert _module("x: scalar; x^(2^70)").gradient(x=1.0) == float(2 ** 70)


def test_generated_code_computes_the_big_coefficient_it_prints():
    assert _module("x: scalar; 2^80 * x").gradient(x=0.5) == float(2 ** 80)
    assert _module("x: scalar; 1e-300 * x").gradient(x=2.0) == 1e-300


def test_constants_are_exact():
    d = derive("x: scalar; 1e200 * 1e-200 * 0.1 * 0.1 * x", wrt="x")
    assert d.gradient.text() == "0.01"
    assert derive("x: scalar; 1e-300 * x", wrt="x").gradient.expr.value == Fraction(1, 10 ** 300)


def test_a_variable_and_a_dimension_of_the_same_name_are_refused():
    with pytest.raises(MatcalcError, match="both as a variable and as a dimension"):
        derive("m: scalar; x: vector(n); m * ones(m)' * ones(m) * x' * x", wrt="x")


# --- the front end ---------------------------------------------------------------------------------------

def test_a_definition_cannot_be_declared():
    with pytest.raises(MatcalcError, match="'y' is already declared"):
        derive("y = x; y: matrix(n, n); tr(y)", wrt="x")


def test_a_declaration_after_a_definition_that_uses_the_name():
    assert derive("y = x' * x; x: vector(n); y", wrt="x").gradient.text() == "2 * x"


def test_a_sum_of_many_undeclared_names():
    program = " + ".join(f"c{i}" for i in range(150))
    d = derive(program, wrt="c0")
    assert d.jacobian.text() == "I(n)"


def test_a_lower_case_factor_before_a_row_vector_is_a_scalar():
    d = derive("norm2(A * x - b)^2 + lambda * x' * x", wrt="x", gradient=True, hessian=True)
    assert d.shapes["lambda"] == derive("lambda: scalar; lambda", wrt="lambda").shapes["lambda"]
    assert d.hessian.text() == "2 * (A' * A + lambda * I)"


def test_a_shape_error_names_the_inferred_shapes():
    with pytest.raises(MathError, match=r"inferred shapes x: scalar; y: vector\(n\)"):
        derive("x * y", wrt="x", hessian=True)


# --- the Python API --------------------------------------------------------------------------------------

@pytest.mark.parametrize("program, match", [(None, "program must be a str"), (b"x' * x", "not bytes"),
                                            (3, "program must be a str")])
def test_derive_names_a_bad_program_argument(program, match):
    with pytest.raises(TypeError, match=match):
        derive(program)


@pytest.mark.parametrize("kwargs, match", [({"wrt": 3}, "wrt must be"), ({"gradient": "yes"}, "gradient must"),
                                           ({"layout": None}, "layout must be")])
def test_derive_names_a_bad_option(kwargs, match):
    with pytest.raises(TypeError, match=match):
        derive("x: vector(n); x' * x", **kwargs)


@pytest.mark.parametrize("n, error", [("3", TypeError), (None, TypeError), (True, TypeError), (0, UsageError),
                                      (MAX_VERIFY_N + 1, UsageError)])
def test_verify_names_a_bad_size(n, error):
    from matcalc_cli.verify import verify_derivation
    with pytest.raises(error, match="n|N"):
        verify_derivation(derive("x: vector(n); x' * x"), n)


def test_verify_needs_a_derivation():
    from matcalc_cli.verify import verify_derivation
    with pytest.raises(TypeError, match="derivation must be a Derivation"):
        verify_derivation("x' * x")


# --- budgets and limits -------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["x: vector(n); x' * x", "--verify", "99999999999999999999"], "between 1 and"),
    (["X: matrix(n,n); inv(X)", "--verify", "10"], "inverses or determinants"),
    (["X: matrix(n,n); det(X)", "--hessian", "--verify", "50"], "between 1 and"),
    (["x: vector(n^99999999); x' * x"], "the limit is n^64"),
    (["x: vector(99999999999); x' * x"], "the limit is 999,999,999"),
    (["x: vector(100000); x' * x", "--check"], "the limit is 4,000,000 entries"),
    (["x: vector(1000); x' * x", "--verify"], "the limit is 20,000 entries"),
    (["@/dev/zero"], f"larger than {MAX_INPUT_BYTES:,} bytes"),
])
def test_requests_beyond_a_limit_are_refused_naming_it(args, message):
    proc = in_process(*args)
    assert proc.returncode in (1, 2)
    assert message in clean_failure(proc, proc.returncode)
    assert "hint:" in proc.stderr


def test_endless_standard_input_is_refused():
    proc = in_process("-", stdin="x" * (MAX_INPUT_BYTES + 10))
    assert "larger than" in clean_failure(proc)


def _chain(n, name="Y"):
    # expressions are shared process-wide (memoised per node): a test that needs seconds of work
    # uses its own name, so that no earlier test has done part of it
    return (f"{name}0: matrix(n, n); " + "; ".join(f"{name}{i} = {name}{i - 1} * {name}{i - 1}' + {name}{i - 1}"
                                                  for i in range(1, n + 1)) + f"; tr({name}{n})")


@pytest.mark.parametrize("program, flags", [
    (_chain(40), ["--hessian"]),
    (_chain(40), ["--jacobian"]),
    ("y0: vector(n); " + "; ".join(f"y{i} = exp(y{i - 1}) + y{i - 1} .* y{i - 1}" for i in range(1, 61))
     + "; sum(y60)", ["--hessian"]),
    ("y0: scalar; " + "; ".join(f"y{i} = sin(y{i - 1}) + y{i - 1}" for i in range(1, 31)) + "; y30",
     ["--verify"]),
    ("X: matrix(n, n); tr(" + "inv(X + " * 40 + "X" + ")" * 41, ["--hessian"]),
    ("X: matrix(n, n); " + ", ".join(f"A{i}" for i in range(64)) + ": matrix(n, n); tr("
     + " * ".join(f"A{i} * X" for i in range(64)) + ")", ["--hessian", "--wrt", "X"]),
])
def test_definition_chains_end_within_the_time_limit(program, flags):
    proc = in_process(program, *flags, "--timeout", "2", "--format", "json")
    if proc.returncode == 0:
        json.loads(proc.stdout)
    else:
        assert "time limit" in clean_failure(proc) or "size limit" in proc.stderr or "too large" in proc.stderr


def test_a_time_limit_in_the_api_is_an_error_naming_it():
    with pytest.raises(TimeLimitError, match="time limit of 0.5 s"):
        with limit(0.5):
            derive(_chain(40, "Ytime"))   # the gradient of a 40-deep chain: seconds of work


def test_limits_nest_and_leave_no_timer_behind():
    with limit(30):
        with limit(20):
            derive("x: vector(n); x' * x")
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None)


# --- output failures and Ctrl-C ----------------------------------------------------------------------

def test_a_closed_pipe_ends_quietly():
    proc = subprocess.Popen(matcalc_command() + ["x: vector(n); A: matrix(n, n); x' * A * x", "--wrt", "x", "--hessian"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    proc.stdout.close()   # the reader has gone, as in '| true'
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert err.strip() == "", err


def test_a_full_disk_is_a_clear_error():
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    with open("/dev/full", "w") as full:
        proc = subprocess.run(matcalc_command() + ["x: vector(n); x' * x"], stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))
    assert "No space left on device" in proc.stderr and proc.returncode == 1
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr


@pytest.mark.parametrize("fmt", ["plain", "json"])
def test_a_closed_stdout_is_a_clear_error(fmt):
    proc = subprocess.run(matcalc_command() + ["x: vector(n); x' * x", "--format", fmt],
                          stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=ROOT), preexec_fn=lambda: os.close(1))
    assert proc.returncode == 1
    assert "standard output is closed" in proc.stderr and "Traceback" not in proc.stderr


def test_ctrl_c_exits_130_with_one_line():
    # seconds of work that no size estimate refuses: the Hessian of a product of 32 factors
    slow = "X: matrix(n, n); tr(" + " * ".join(f"A{i} * X" for i in range(16)) + ")"
    proc = subprocess.Popen(matcalc_command() + [slow, "--wrt", "X", "--hessian", "--timeout", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip() == "matcalc: interrupted"


# --- --check and --verify in restricted domains ---------------------------------------------------------

@pytest.mark.parametrize("program, wrt", [
    ("x: vector(n); sum(log(-x))", "x"), ("x: scalar; sqrt(x - 1)", "x"), ("X: matrix(n, n); logdet(-X)", "X"),
    ("A: matrix(k, m); X: matrix(m, m); det(A * X * A')", "X"),
])
def test_check_finds_points_in_the_domain(program, wrt):
    from matcalc_cli.check import check_derivation
    report = check_derivation(derive(program, wrt=wrt, hessian=program.startswith("x: scalar")))
    assert report.passed and not any(r.unchecked for r in report.results), report.lines()


def test_check_says_when_no_point_works():
    from matcalc_cli.check import check_derivation
    report = check_derivation(derive("x: scalar; log(-x^2 - 1)", wrt="x"))
    assert all(r.unchecked for r in report.results)
    assert "UNCHECKED" in report.lines()[0] and "no point found" in report.lines()[0]
    assert "FAIL" not in report.lines()[0] and not report.passed   # nothing confirmed


def test_verify_the_cookbook_gradient_by_its_own_convention():
    from matcalc_cli.verify import verify_derivation
    d = derive("X: symmetric(n); A: matrix(n, n); tr(A * X) + logdet(X)", wrt="X", gradient=True,
               symmetric_gradient="cookbook")
    assert verify_derivation(d).passed


def test_verify_says_undefined_rather_than_not_equal():
    from matcalc_cli.verify import verify_derivation
    lines = verify_derivation(derive("X: matrix(n, n); logdet(X - X')")).lines()
    assert all("NOT equal" not in line for line in lines)
    assert any("undefined at the sample points" in line for line in lines)


def test_verify_of_an_identically_zero_determinant_has_no_internal_error():
    proc = in_process("X: matrix(n,n); det(X - X')", "--hessian", "--verify")
    assert proc.returncode in (0, 1) and "internal error" not in proc.stderr and "NOT equal" not in proc.stdout


def test_work_beyond_the_memory_limit_is_refused(monkeypatch):
    from matcalc_cli import budget
    monkeypatch.setattr(budget, "MAX_MEMORY_BYTES", 1 << 20)   # 1 MB: any derivation is beyond it
    with pytest.raises(LimitError, match="MB of memory"):
        with limit(60):
            derive(_chain(12), hessian=True)


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_a_bad_timeout_is_a_usage_error(value):
    assert "--timeout" in clean_failure(in_process("x: vector(n); x' * x", "--timeout", value), 2)


def test_a_time_limit_in_another_thread_is_checked_as_the_work_goes():
    from concurrent.futures import ThreadPoolExecutor

    def entry():
        with limit(1):
            derive(_chain(40, "Ythread"))   # the gradient of a 40-deep chain: seconds of work

    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(TimeLimitError):
            pool.submit(entry).result(timeout=120)


def test_a_deadline_never_fires_inside_a_gc_callback():
    """An exception raised in a gc callback cannot reach the request (Python reports it as
    'unraisable'); the deadline waits until the callback has returned, then fires."""
    import gc
    import sys
    unraisable = []

    def slow_callback(phase, info):
        if phase == "start":
            end = time.monotonic() + 0.3
            while time.monotonic() < end:   # a busy finaliser, as in a library's gc hook
                pass

    old_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    gc.callbacks.append(slow_callback)
    try:
        with pytest.raises(TimeLimitError):
            with limit(0.1):
                gc.collect()
                give_up = time.monotonic() + 5
                while time.monotonic() < give_up:   # work after the callback: the deadline fires here
                    time.sleep(0.01)
    finally:
        gc.callbacks.remove(slow_callback)
        sys.unraisablehook = old_hook
    assert unraisable == []
