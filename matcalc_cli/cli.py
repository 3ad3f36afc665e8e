"""The command line: read a program, derive, render.  Only wiring lives here."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import click

from . import __version__
from .errors import MatcalcError, UsageError
from .terminal import terminal_width

EXAMPLES = """\b
Examples:
  matcalc "x: vector(n); A: matrix(n, n); x' * A * x" --wrt x --hessian
  matcalc "X: matrix(n, n); X^2" --wrt X --jacobian
  matcalc "X: matrix(n, n); det(X)" --gradient --steps
  matcalc "X: symmetric(n); logdet(X)" --gradient --format latex
  matcalc "X: matrix(n, n); det(X)" --hessian --format latex --latex-style document > det.tex
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
Many programs in one run, from files of one program per line: see 'matcalc batch --help'.
"""

FORMATS = ("plain", "pretty", "latex", "json", "numpy")


def _read_program(program: str) -> tuple:
    """The program text and a name for messages: PROGRAM, '-' for stdin, '@file' for a file.
    At most budget.MAX_INPUT_BYTES are read, so an endless input (@/dev/zero) is refused."""
    if program == "-":
        data = _read_bounded(sys.stdin.buffer, "<stdin>") if sys.stdin is not None else b""
        return _decode(data, "<stdin>"), "<stdin>"
    if program.strip() == "@":
        raise UsageError("'@' needs a file name: @FILE reads the program from FILE",
                         hint="e.g. matcalc @samples/quadratic_form.mc; '-' reads standard input")
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
        raise MatcalcError(f"{name} is not UTF-8 text (byte {e.start})",
                           hint="a program is text: declarations and an expression, e.g. x: vector(n); x' * x") from None


def _shown(e: click.ClickException) -> str:
    """What click prints for its exception."""
    import io
    buffer = io.StringIO()
    e.show(file=buffer)
    return buffer.getvalue()


def echo_folded(text: str, err: bool = True):
    """Text for stderr (or stdout), its lines folded to the terminal's width when it is one."""
    click.echo(fit_to_terminal(text, sys.stderr if err else sys.stdout), nl=False, err=err)


def fit_to_terminal(text: str, stream) -> str:
    """``text`` with every line wider than the terminal ``stream`` is on folded (continuation
    lines indented); unchanged when ``stream`` is not a terminal."""
    if stream is None or not stream.isatty():
        return text
    import textwrap
    width = terminal_width(stream)
    folded = []
    for line in text.rstrip("\n").split("\n"):
        if len(line) <= width:
            folded.append(line)
            continue
        indent = " " * min(len(line) - len(line.lstrip(" ")) + 2, width // 2)
        folded.extend(textwrap.wrap(line, width, subsequent_indent=indent, break_on_hyphens=False))
    return "\n".join(folded) + "\n"


class FittingCommand(click.Command):
    """A command whose --help fits the terminal: click wraps its paragraphs, but keeps the
    examples' lines as they are, however narrow the terminal."""

    def get_help(self, ctx) -> str:
        return fit_to_terminal(super().get_help(ctx), sys.stdout).rstrip("\n")


class SingleOrBatch(FittingCommand):
    """``matcalc PROGRAM ...``, or ``matcalc batch FILE ...`` when the first argument is ``batch``
    (the program ``batch`` itself is ``matcalc -- batch``)."""

    def main(self, args=None, prog_name=None, **extra):
        args = sys.argv[1:] if args is None else list(args)
        if args[:1] == ["batch"]:
            from .batch import batch_command
            command, args, prog_name = batch_command(self), args[1:], f"{prog_name or 'matcalc'} batch"
        else:
            command = super()
        if not extra.pop("standalone_mode", True):
            return command.main(args, prog_name=prog_name, standalone_mode=False, **extra)
        try:
            status = command.main(args, prog_name=prog_name, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            click.echo("matcalc: interrupted", err=True)
            sys.exit(130)
        except click.ClickException as e:     # a usage error: click's words, fitted to a terminal
            echo_folded(_shown(e), err=True)
            sys.exit(e.exit_code)
        except BrokenPipeError:               # --help | head -1: the reader has gone
            _silence_stdout()
            sys.exit(0)
        except OSError as e:                  # --help > /dev/full
            _silence_stdout()
            click.echo(f"error: cannot write the output: {e.strerror or e}", err=True)
            sys.exit(1)
        sys.exit(status or 0)

    def format_usage(self, ctx, formatter):
        super().format_usage(ctx, formatter)
        formatter.write_usage(ctx.command_path, "batch [OPTIONS] FILE...", prefix="       ")


@click.command(cls=SingleOrBatch, epilog=EXAMPLES,
               context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("program")
@click.option("--wrt", metavar="NAME[,NAME...]", help="Variable(s) to differentiate against: a name, a comma-separated list (x,W), or 'all'; may be omitted when only one name could be meant.")
@click.option("--gradient", is_flag=True, help="Gradient of a scalar function (df = <G, dX>).")
@click.option("--jacobian", is_flag=True, help="Jacobian of vec(f) against vec(x), in Kronecker form.")
@click.option("--hessian", is_flag=True, help="Second derivative: bilinear form f''(x)[dx, dx2] and Hessian matrix.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Output format (default: pretty on a terminal, plain otherwise).")
@click.option("--color", "color", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True,
              help="Colour in the pretty view (auto: on a terminal, unless NO_COLOR is set or TERM=dumb).")
@click.option("--latex-style", type=click.Choice(["align", "inline", "equation", "document"]), default="align",
              show_default=True, help="LaTeX: one align* block, $...$ lines, an equation* per result, or a whole document.")
@click.option("--latex-width", metavar="WIDTH", default=None,
              help="LaTeX: line width for breaking long results, in characters (60) or cm (8.5cm); default: an article page.")
@click.option("--latex-transpose", type=click.Choice(["top", "T", "prime"]), default="top", show_default=True,
              help="LaTeX: the transpose as A^{\\top}, A^{\\mathsf{T}} or A'.")
@click.option("--layout", type=click.Choice(["numerator", "denominator"]), default="numerator", show_default=True,
              help="Jacobian layout: numel(f) x numel(x) (numerator) or its transpose.")
@click.option("--symmetric-gradient", type=click.Choice(["frobenius", "cookbook"]), default="frobenius",
              show_default=True, help="For symmetric variables: the true gradient sym(G), or the Matrix Cookbook's G + G' - I .* G.")
@click.option("--check", is_flag=True, help="Check every result against finite differences at random points (uses NumPy).")
@click.option("--verify", type=int, is_flag=False, flag_value=3, default=None, metavar="[N]",
              help="Check every result symbolically with SymPy, all dimensions set to N (default 3).")
@click.option("--timeout", type=float, default=None, metavar="SECONDS",
              help="Stop with an error after this many seconds (default 60; 0: no limit).")
@click.option("--steps", is_flag=True,
              help="Show the work: the derivation step by step, each step naming its rule.")
@click.version_option(__version__, "--version", prog_name="matcalc")
def main(program, fmt, timeout, color, latex_style, latex_width, latex_transpose, **options):
    """Differentiate a matrix expression: differential, gradient, Jacobian, Hessian."""
    from . import budget
    from .errors import ParseError

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))
    source, filename = None, None
    if not _stdout_usable():
        click.echo("error: standard output is closed: there is nowhere to write the results", err=True)
        sys.exit(1)
    try:
        with budget.limit(time_limit(timeout)):
            source, filename = _read_program(program)
            view = View(color, latex_style, latex_width, latex_transpose)
            status = run(source, fmt=fmt, view=view, **options)
        sys.stdout.flush()
    except KeyboardInterrupt:
        click.echo("matcalc: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        _silence_stdout()    # the reader has gone (| head -c1): nothing more to say
        sys.exit(0)
    except OSError as e:
        if e.filename is not None or getattr(e, "errno", None) is None:
            raise_internal(e)
        _silence_stdout()
        click.echo(f"error: cannot write the results: {e.strerror}", err=True)
        sys.exit(1)
    except Exception as e:  # never a traceback: say what happened (MemoryError, RecursionError too)
        error = user_error(e)
        # a file that does not parse may not be a matcalc program at all: quote only the token
        quote = "token" if filename is not None and isinstance(error, ParseError) else "line"
        _echo_error(error, source, filename, fmt, color, quote)
        if fmt == "json":     # a program reading stdout gets an object it can parse, saying what failed
            try:
                click.echo(json_error(error))
                sys.stdout.flush()
            except (OSError, ValueError):   # the reader went away or the disk is full: the error is said
                _silence_stdout()
        sys.exit(2 if isinstance(error, UsageError) else 1)
    sys.exit(status)


def json_error(error: MatcalcError) -> str:
    """``--format json`` when the program fails: ``ok`` false and the error's ``kind`` (syntax,
    shape, math, usage, internal), ``message``, ``line`` and ``column`` (null when it has no place)
    and ``hint`` when there is one: the fields of a failed batch entry."""
    import json
    from . import __version__
    from .batch import error_kind
    details = {"kind": error_kind(error), "message": error.message, "line": error.line, "column": error.column}
    if error.hint:
        details["hint"] = error.hint
    return json.dumps({"matcalc_version": __version__, "ok": False, "error": details}, indent=2, ensure_ascii=False)


def raise_internal(e: BaseException):
    click.echo(InternalError(f"{type(e).__name__}: {e}").render(), err=True)
    sys.exit(1)


def time_limit(timeout) -> float:
    """--timeout in seconds (None: the default, 0: no limit); a usage error unless a number >= 0."""
    from . import budget

    if timeout is None:
        return budget.DEFAULT_TIMEOUT
    if not 0 <= timeout < float("inf"):
        raise UsageError(f"--timeout {timeout}: give a number of seconds >= 0 (0: no time limit)")
    return timeout


def user_error(e: BaseException) -> MatcalcError:
    """Any failure as an error a user can read: matcalc's own, or what went wrong and how to report it."""
    if isinstance(e, MatcalcError):
        return e
    if isinstance(e, RecursionError):
        return MatcalcError("the expression is too deeply nested to differentiate")
    if isinstance(e, MemoryError):
        return MatcalcError("the expression is too large to differentiate")
    return InternalError(f"{type(e).__name__}: {e}")


class InternalError(MatcalcError):
    kind = "internal error"

    def render(self, source=None, filename=None, quote="line") -> str:
        from .errors import visible
        return (visible(f"internal error: {self.message}") + "\n"
                "matcalc could not handle this input; please report it with the command line used")


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


def derive_checked(source: str, *, check=False, verify=None, **options):
    """Derive ``source`` with ``options`` (derive's keywords) and run the checks asked for:
    the derivation and its reports ({"check": ..., "verify": ...})."""
    from .api import derive
    from .budget import MAX_VERIFY_N

    if verify is not None and not 1 <= verify <= MAX_VERIFY_N:
        raise UsageError(f"--verify {verify}: N must be between 1 and {MAX_VERIFY_N}",
                         hint="explicit symbolic matrices grow as N^2 symbols and their inverses and "
                              "determinants much faster; --check tests numerically at any size")
    derivation = derive(source, **options)
    reports = {}
    if verify is not None:
        from .budget import check_verify_request
        check_verify_request(derivation, verify)   # refuse before SymPy is even imported
    if check:
        from .check import check_derivation
        reports["check"] = check_derivation(derivation)
        if options.get("steps"):
            from .steps import check_steps
            reports["check"].results.append(check_steps(derivation))
    if verify is not None:
        from .verify import verify_derivation
        reports["verify"] = verify_derivation(derivation, verify)
    return derivation, reports


def _echo_error(e: MatcalcError, source, filename, fmt, color, quote="line"):
    """On a terminal the pretty view renders errors too (same words, no line wider than the
    terminal; coloured only for the pretty view: --format latex/json/... asked for no colour);
    otherwise plain text."""
    if sys.stderr.isatty() and not isinstance(e, InternalError):
        from .render import pretty
        colour = color if fmt in (None, "pretty") else "never"
        pretty.print_error(e, pretty.make_console(sys.stderr, colour), source, filename, quote)
    else:
        click.echo(e.render(source, filename, quote=quote), err=True)


@dataclass(frozen=True)
class View:
    """How results are shown (not what is computed): colour of the pretty view, LaTeX style."""
    color: str = "auto"
    latex_style: str = "align"
    latex_width: str | None = None
    latex_transpose: str = "top"


def default_format() -> str:
    return "pretty" if sys.stdout.isatty() else "plain"


def render(derivation, reports: dict, fmt: str, steps: bool = False, view: View = View()) -> tuple:
    """One derivation in one format: (the text for stdout, a note for stderr or None).

    The single place where formats are dispatched; ``matcalc batch`` renders its entries here too."""
    from .render import documents

    note = documents.inferred_shapes_note(derivation)
    if fmt == "json":   # ok: the exit status is 0 (every --check/--verify passed)
        extra = {"ok": all(r.passed for r in reports.values())}
        extra.update((k, r.to_dict()) for k, r in reports.items())
        if steps:
            from .render.steps import as_json
            extra["steps"] = as_json(derivation.steps)
        return documents.as_json(derivation, extra), None
    head = ""
    if steps and fmt == "pretty":
        return _pretty(derivation, reports, view, steps=True), None
    if steps:      # the derivation in place of the bare results (its chains end with them)
        head = _steps_text(derivation, fmt, view)
        if fmt == "latex" and view.latex_style == "inline":   # running text: reports to stderr
            lines = [f"% {line}" for r in reports.values() for line in r.lines()]
            return head, "\n".join(filter(None, [note] + lines)) or None
        if fmt == "latex" and view.latex_style == "document":
            end = "\\end{document}\n"
            return head[:-len(end)] + _report_lines(reports, "% ") + end, note
        if fmt != "numpy":
            prefix = {"latex": "% ", "plain": "# "}.get(fmt, "")
            return head + _report_lines(reports, prefix), note
    if fmt == "latex":
        from .render.latex import LatexOptions, render_latex
        options = LatexOptions.parse(view.latex_style, view.latex_width, view.latex_transpose)
        lines = [line for r in reports.values() for line in r.lines()]
        if options.style == "inline":   # spliced into running text: the reports go to stderr
            note = "\n".join(filter(None, [note] + [f"% {line}" for line in lines])) or None
            return render_latex(derivation, options), note
        return render_latex(derivation, options, lines), note
    if fmt == "numpy":
        from .render.numpy_code import to_numpy_module
        text, prefix = to_numpy_module(derivation), "# "
    elif fmt == "pretty":
        return _pretty(derivation, reports, view), None
    else:
        text, prefix = documents.plain(derivation), "# "
    return head + text + _report_lines(reports, prefix), note


def _pretty(derivation, reports: dict, view: View, steps: bool = False) -> str:
    """The Rich view, rendered into text (colour and width decided by the real stdout)."""
    import io
    from .render import pretty
    buffer = io.StringIO()
    colour = "always" if pretty.wants_colour(view.color, sys.stdout) else "never"
    console = pretty.make_console(buffer, colour, pretty.terminal_width(sys.stdout))
    show = pretty.print_steps if steps else pretty.print_derivation
    show(derivation, console, [line for r in reports.values() for line in r.lines()])
    return buffer.getvalue()


def run(source: str, *, fmt=None, out=None, view: View = View(), **options) -> int:
    """Derive and print; returns the exit status the results call for (1 when a check fails)."""
    derivation, reports = derive_checked(source, **options)
    text, note = render(derivation, reports, fmt or default_format(), steps=options.get("steps", False), view=view)
    if out is not None:
        out(text, nl=False)
    else:   # escape codes only come from the pretty view when colour is wanted: keep them
        click.echo(text, nl=False, color=True)
    if note:
        click.echo(note if note.startswith("%") else f"matcalc: {note}", err=True)
    return 1 if any(not r.passed for r in reports.values()) else 0


def _report_lines(reports: dict, prefix: str) -> str:
    return "".join(f"{prefix}{line}\n" for report in reports.values() for line in report.lines())


def _steps_text(derivation, fmt, view: View = View()) -> str:
    """--steps: the derivation step by step; with --format numpy, as comment lines before the module."""
    from .render import steps as render_steps
    steps = derivation.steps
    if fmt == "latex":
        from .render.latex import LatexOptions
        options = LatexOptions.parse(view.latex_style, view.latex_width, view.latex_transpose)
        return render_steps.latex(steps, options, {d.name: x.name for d, x in derivation.directions})
    if fmt == "numpy":
        return "".join("# " + line + "\n" for line in render_steps.plain(steps).splitlines())
    return render_steps.plain(steps)


if __name__ == "__main__":  # pragma: no cover
    main()
