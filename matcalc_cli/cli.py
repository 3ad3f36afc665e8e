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
  matcalc "X: symmetric(n); logdet(X)" --gradient --format latex
  matcalc @loss.mc --wrt w --format numpy > loss_grad.py
  matcalc "x: vector(n); W: matrix(n, n); x' * W * x" --wrt x,W --hessian
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
    """The program text and a name for messages: PROGRAM, '-' for stdin, '@file' for a file."""
    if program == "-":
        data = sys.stdin.buffer.read() if sys.stdin is not None else b""
        return _decode(data, "<stdin>"), "<stdin>"
    if program.startswith("@") and len(program) > 1:
        path = program[1:]
        try:
            with open(path, "rb") as fh:
                return _decode(fh.read(), path), path
        except OSError as e:
            raise UsageError(f"cannot read {path}: {e.strerror}") from None
    return program, None


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MatcalcError(f"{name} is not UTF-8 text (byte {e.start})") from None



@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
               epilog=EXAMPLES)
@click.argument("program")
@click.option("--wrt", metavar="NAME[,NAME...]", help="Variable(s) to differentiate against: a name, a comma-separated list (x,W), or 'all'; may be omitted when only one name could be meant.")
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
@click.version_option(__version__, "--version", prog_name="matcalc")
def main(program, wrt, gradient, jacobian, hessian, fmt, layout, symmetric_gradient, check, verify):
    """Differentiate a matrix expression: differential, gradient, Jacobian, Hessian."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))
    source, filename = None, None
    try:
        source, filename = _read_program(program)
        run(source, wrt=wrt, gradient=gradient, jacobian=jacobian, hessian=hessian, fmt=fmt, layout=layout,
            symmetric_gradient=symmetric_gradient, check=check, verify=verify)
    except UsageError as e:
        click.echo(e.render(source, filename), err=True)
        sys.exit(2)
    except MatcalcError as e:
        click.echo(e.render(source, filename), err=True)
        sys.exit(1)
    except RecursionError:
        click.echo("error: the expression is too deeply nested to differentiate", err=True)
        sys.exit(1)
    except MemoryError:
        click.echo("error: the expression is too large to differentiate", err=True)
        sys.exit(1)
    except Exception as e:  # never a traceback: say what happened and how to report it
        click.echo(f"internal error: {type(e).__name__}: {e}\n"
                   "matcalc could not handle this input; please report it with the command line used",
                   err=True)
        sys.exit(1)


def run(source: str, *, wrt, gradient, jacobian, hessian, fmt, layout, symmetric_gradient,
        check=False, verify=None, out=None) -> int:
    """Derive and print; returns the exit status the results call for (1 when a check fails)."""
    from .api import derive
    from .render import documents

    if verify is not None and verify < 1:
        raise UsageError("--verify N needs a positive dimension size")
    derivation = derive(source, wrt=wrt, gradient=gradient, jacobian=jacobian, hessian=hessian,
                        layout=layout, symmetric_gradient=symmetric_gradient)
    reports = {}
    if check:
        from .check import check_derivation
        reports["check"] = check_derivation(derivation)
    if verify is not None:
        from .verify import verify_derivation
        reports["verify"] = verify_derivation(derivation, verify)

    echo = out or click.echo
    note = documents.inferred_shapes_note(derivation)
    if fmt is None:
        fmt = "labelled" if sys.stdout.isatty() else "plain"
    if fmt == "json":
        echo(documents.as_json(derivation, {k: r.to_dict() for k, r in reports.items()}), nl=False)
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
    if failed:
        sys.exit(1)
    return 0


def _echo_reports(echo, reports, prefix: str):
    for report in reports.values():
        for line in report.lines():
            echo(prefix + line)


if __name__ == "__main__":  # pragma: no cover
    main()
