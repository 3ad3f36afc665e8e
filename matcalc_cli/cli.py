"""The command line: read a program, derive, render.  Only wiring lives here."""

from __future__ import annotations

import sys

import click

from . import __version__
from .errors import MatcalcError, UsageError

EXAMPLES = """\b
Examples:
  matcalc "x: vector(n); A: matrix(n, n); x' * A * x" --wrt x --hessian
  matcalc "X: matrix(n, n); X^2" --wrt X --jacobian
  matcalc "X: matrix(n, n); det(X)" --gradient --steps
  matcalc "X: symmetric(n); logdet(X)" --gradient --format latex
  matcalc @loss.mc --wrt w --format numpy > loss_grad.py
  echo "A: matrix(n, n); det(A)" | matcalc - --hessian --format json

\b
PROGRAM is declarations, then one expression, separated by ';' or newlines:
  x: vector(n); A: matrix(m, n); S: symmetric(n); c: scalar; ...
Undeclared names are inferred from use (upper case: matrix, lower case: vector).
Definitions name subexpressions: u = X * w; sum(log(1 + exp(-y .* u)))
With no result flag, the differential and the gradient (scalar f) or Jacobian are shown.
A PROGRAM that starts with '-' goes after '--':  matcalc --wrt x -- "-x' * x"
"""

FORMATS = ("plain", "latex", "json", "numpy")


def _read_program(program: str) -> tuple:
    """The program text and a name for messages: PROGRAM, '-' for stdin, '@file' for a file.
    At most budget.MAX_INPUT_BYTES are read, so an endless input (@/dev/zero) is refused."""
    if program == "-":
        data = _read_bounded(sys.stdin.buffer, "<stdin>") if sys.stdin is not None else b""
        return _decode(data, "<stdin>"), "<stdin>"
    if program.startswith("@") and len(program) > 1:
        path = program[1:]
        try:
            with open(path, "rb") as fh:
                return _decode(_read_bounded(fh, path), path), path
        except OSError as e:
            raise UsageError(f"cannot read {path}: {e.strerror}") from None
    return program, None


def _read_bounded(fh, name: str) -> bytes:
    from .budget import MAX_INPUT_BYTES, refuse
    data = fh.read(MAX_INPUT_BYTES + 1)
    if len(data) > MAX_INPUT_BYTES:
        raise refuse(f"{name} is larger than {MAX_INPUT_BYTES:,} bytes", f"{MAX_INPUT_BYTES:,} bytes",
                     "a matcalc program is a few lines; split a generated program into smaller ones")
    return data


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MatcalcError(f"{name} is not UTF-8 text (byte {e.start})") from None


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
               epilog=EXAMPLES)
@click.argument("program")
@click.option("--wrt", metavar="NAME", help="Variable to differentiate against (may be omitted when only one name could be meant).")
@click.option("--gradient", is_flag=True, help="Gradient of a scalar function (df = <G, dX>).")
@click.option("--jacobian", is_flag=True, help="Jacobian of vec(f) against vec(x), in Kronecker form.")
@click.option("--hessian", is_flag=True, help="Second derivative: bilinear form f''(x)[dx, dx2] and Hessian matrix.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Output format (default: a labelled view on a terminal, plain otherwise).")
@click.option("--layout", type=click.Choice(["numerator", "denominator"]), default="numerator", show_default=True,
              help="Jacobian layout: numel(f) x numel(x) (numerator) or its transpose.")
@click.option("--symmetric-gradient", type=click.Choice(["frobenius", "cookbook"]), default="frobenius",
              show_default=True, help="For symmetric variables: the true gradient sym(G), or the Matrix Cookbook's G + G' - I .* G.")
@click.option("--check", is_flag=True, help="Check every result against finite differences at random points (uses NumPy).")
@click.option("--verify", type=int, is_flag=False, flag_value=3, default=None, metavar="[N]",
              help="Check every result symbolically with SymPy, all dimensions set to N (default 3).")
@click.option("--timeout", type=float, default=None, metavar="SECONDS",
              help="Stop with an error after this many seconds (default 60; 0: no limit).")
@click.option("--steps", "show_steps", is_flag=True,
              help="Show the work: the derivation step by step, each step naming its rule.")
@click.version_option(__version__, "--version", prog_name="matcalc")
def main(program, wrt, gradient, jacobian, hessian, fmt, layout, symmetric_gradient, check, verify, timeout,
         show_steps):
    """Differentiate a matrix expression: differential, gradient, Jacobian, Hessian."""
    from . import budget
    from .errors import ParseError, visible

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))
    source, filename = None, None
    if not _stdout_usable():
        click.echo("error: standard output is closed: there is nowhere to write the results", err=True)
        sys.exit(1)
    if timeout is not None and not 0 <= timeout < float("inf"):
        click.echo(f"usage error: --timeout {timeout}: give a number of seconds >= 0 (0: no time limit)",
                   err=True)
        sys.exit(2)
    try:
        with budget.limit(budget.DEFAULT_TIMEOUT if timeout is None else timeout):
            source, filename = _read_program(program)
            status = run(source, wrt=wrt, gradient=gradient, jacobian=jacobian, hessian=hessian, fmt=fmt,
                         layout=layout, symmetric_gradient=symmetric_gradient, check=check, verify=verify,
                         steps=show_steps)
        sys.stdout.flush()
    except UsageError as e:
        click.echo(e.render(source, filename), err=True)
        sys.exit(2)
    except MatcalcError as e:
        # a file that does not parse may not be a matcalc program at all: quote only the token
        quote = "token" if filename is not None and isinstance(e, ParseError) else "line"
        click.echo(e.render(source, filename, quote=quote), err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("matcalc: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        _silence_stdout()    # the reader has gone (| head -c1): nothing more to say
        sys.exit(0)
    except OSError as e:
        if e.filename is None and getattr(e, "errno", None) is not None:
            _silence_stdout()
            click.echo(f"error: cannot write the results: {e.strerror}", err=True)
            sys.exit(1)
        _internal_error(e)
    except RecursionError:
        click.echo("error: the expression is too deeply nested to differentiate", err=True)
        sys.exit(1)
    except MemoryError:
        click.echo("error: the expression is too large to differentiate", err=True)
        sys.exit(1)
    except Exception as e:  # never a traceback: say what happened and how to report it
        _internal_error(e)
    sys.exit(status)


def _internal_error(e: BaseException):
    from .errors import visible
    click.echo(visible(f"internal error: {type(e).__name__}: {e}") + "\n"
               "matcalc could not handle this input; please report it with the command line used",
               err=True)
    sys.exit(1)


def _stdout_usable() -> bool:
    """False when stdout was closed (Python sets sys.stdout to None when fd 1 is closed)."""
    import io
    if sys.stdout is None:
        return False
    try:
        sys.stdout.fileno()
    except io.UnsupportedOperation:   # an in-memory stream (tests): usable
        return True
    except (OSError, ValueError, AttributeError):
        return False
    return not sys.stdout.closed


def _silence_stdout():
    """Point stdout at /dev/null, so that the interpreter's last flush does not fail again."""
    import os
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def run(source: str, *, wrt, gradient, jacobian, hessian, fmt, layout, symmetric_gradient,
        check=False, verify=None, out=None, steps=False) -> int:
    """Derive and print; returns the exit status the results call for (1 when a check fails)."""
    from .api import derive
    from .render import documents

    from .budget import MAX_VERIFY_N
    if verify is not None and not 1 <= verify <= MAX_VERIFY_N:
        raise UsageError(f"--verify {verify}: N must be between 1 and {MAX_VERIFY_N}",
                         hint="explicit symbolic matrices grow as N^2 symbols and their inverses and "
                              "determinants much faster; --check tests numerically at any size")
    derivation = derive(source, wrt=wrt, gradient=gradient, jacobian=jacobian, hessian=hessian,
                        layout=layout, symmetric_gradient=symmetric_gradient, steps=steps)
    reports = {}
    if verify is not None:
        from .budget import check_verify_request
        check_verify_request(derivation, verify)   # refuse before SymPy is even imported
    if check:
        from .check import check_derivation
        reports["check"] = check_derivation(derivation)
        if steps:
            from .steps import check_steps
            reports["check"].results.append(check_steps(derivation))
    if verify is not None:
        from .verify import verify_derivation
        reports["verify"] = verify_derivation(derivation, verify)

    echo = out or click.echo
    note = documents.inferred_shapes_note(derivation)
    if fmt is None:
        fmt = "labelled" if sys.stdout.isatty() else "plain"
    if steps and fmt == "labelled":
        echo(f"shapes: {documents.declarations_text(derivation)}")
    if steps and fmt != "json":
        _echo_steps(echo, derivation.steps, fmt)
    if fmt == "json":
        extra = {k: r.to_dict() for k, r in reports.items()}
        if steps:
            from .render.steps import as_json
            extra["steps"] = as_json(derivation.steps)
        echo(documents.as_json(derivation, extra), nl=False)
    elif steps and fmt != "numpy":
        _echo_reports(echo, reports, "% " if fmt == "latex" else "# " if fmt == "plain" else "")
    elif fmt == "latex":
        from .render.latex import document_block
        echo(document_block(derivation), nl=False)
        _echo_reports(echo, reports, "% ")
    elif fmt == "numpy":
        from .render.numpy_code import to_numpy_module
        echo(to_numpy_module(derivation), nl=False)
        _echo_reports(echo, reports, "# ")
    elif fmt == "labelled":
        echo(documents.labelled(derivation), nl=False)
        _echo_reports(echo, reports, "")
    else:
        echo(documents.plain(derivation), nl=False)
        _echo_reports(echo, reports, "# ")
    if note and fmt in ("plain", "latex", "numpy"):
        click.echo(f"matcalc: {note}", err=True)
    failed = any(not r.passed for r in reports.values())
    return 1 if failed else 0


def _echo_steps(echo, steps, fmt):
    """--steps: the derivation in place of the bare results (its chains end with them); with
    --format numpy, as comment lines before the module."""
    from .render import steps as render_steps
    if fmt == "latex":
        echo(render_steps.latex(steps), nl=False)
    elif fmt == "numpy":
        echo("".join("# " + line + "\n" for line in render_steps.plain(steps).splitlines()), nl=False)
    elif fmt == "labelled":   # a terminal: as wide as it is
        import shutil
        echo(render_steps.plain(steps, max(60, shutil.get_terminal_size((render_steps.WIDTH, 24)).columns)), nl=False)
    else:
        echo(render_steps.plain(steps), nl=False)


def _echo_reports(echo, reports, prefix: str):
    for report in reports.values():
        for line in report.lines():
            echo(prefix + line)


if __name__ == "__main__":  # pragma: no cover
    main()
