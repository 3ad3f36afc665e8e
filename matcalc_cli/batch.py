"""``matcalc batch FILE...``: many programs in one run, one entry per line.

A batch file is UTF-8 text.  ``#`` starts a comment, blank lines are skipped, a line ending in
``\\`` continues on the next line.  A line of declarations only (``x: vector(n); A: matrix(n, n)``)
declares those names for the later entries of its file (a later declaration of a name replaces the
earlier one); every other line is an entry: a program as in single mode, optionally followed by
``|`` and options in command-line syntax (``x' * A * x | --wrt x --hessian --name quad``).

The stages, each a generator so that nothing grows with the number of entries:

    read_entries   files -> Entry (persistent declarations resolved, positions in the file)
    compute        Entry -> Outcome (derived and rendered; in N processes with --jobs N)
    Writer         Outcome -> the output stream, flushed per entry; errors and summary on stderr

Entries are derived and rendered by the same two functions as single mode
(``cli.derive_checked``, ``cli.render``), so an entry's results are the single-mode results.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sys
import textwrap
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import click

from .errors import MatcalcError, MathError, NameLookupError, ParseError, ShapeError, UsageError

NAME = r"[A-Za-z_][A-Za-z0-9_]*"
IDENTIFIER = re.compile(NAME)
DECLARATION = re.compile(rf"\s*({NAME}(?:\s*,\s*{NAME})*)\s*:")   # ':' only occurs in declarations
DEFINITION = re.compile(rf"\s*({NAME})\s*=")
CONTINUATION = re.compile(r"\\[ \t]*\n")
JOINED = re.compile(r"[ \t]*\\[ \t]*\n[ \t]*")              # a continuation, shown as one space
MAX_LINE = 1_000_000            # characters in one line of a batch file (the program limit)

# options that shape the whole output, not one entry: given once, on the command line
DOCUMENT_OPTIONS = ("fmt", "version", "color", "latex_style", "latex_width", "latex_transpose")
KINDS = ((ParseError, "syntax"), (NameLookupError, "syntax"), (ShapeError, "shape"),
         (UsageError, "usage"), (MathError, "math"), (MatcalcError, "math"))
EXTENSION = ".mcb"


# --- reading ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One entry of a batch file, ready to compute anywhere (it pickles to a worker process)."""
    file: str                  # the file as named on the command line ('<stdin>' for '-')
    line: int                  # the line where the entry starts
    lines: tuple               # its physical lines, comments cut off (continuation backslashes kept)
    program: str               # the program, as the parser gets it (continuations kept)
    options: str = ""          # the text after '|'
    options_at: tuple = (0, 0)  # (line, column) in the file of the text after '|'
    prelude: tuple = ()        # persistent declarations it uses: ((text, (line, column)), ...)
    default_name: str = ""
    error: MatcalcError | None = None   # found while reading: a bad declaration line, bad bytes
    done_bytes: int = 0        # bytes of all input read up to the end of this entry (progress)


def read_entries(sources):
    """Entries of every source in order.  ``sources`` is [(display name, binary file, name stem)]."""
    before = 0
    for display, fh, stem in sources:
        declared = {}                       # name -> (text, (line, column)), latest declaration last
        for start, pieces, end in _logical_lines(fh):
            entry = _entry(display, start, pieces, declared, f"{stem}_{start}", before + end)
            if entry is not None:
                yield entry
        before += fh.tell() if fh.seekable() else 0


def _physical_lines(fh):
    """Binary lines without their newline; a line over the limit is cut (and marked by None)."""
    while True:
        raw = fh.readline(MAX_LINE + 2)
        if not raw:
            return
        if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):   # skip the rest of an overlong line
                raw = fh.readline(1 << 20)
            yield None, fh.tell() if fh.seekable() else 0
            continue
        yield raw.rstrip(b"\n").rstrip(b"\r"), fh.tell() if fh.seekable() else 0


def _logical_lines(fh):
    """(first line number, [code of each physical line], byte offset at the end) per logical line.

    Comments are cut off; a line whose code ends in a backslash continues on the next one."""
    pieces, start = [], None
    for number, (raw, offset) in enumerate(_physical_lines(fh), 1):
        if raw is None:
            yield number, [ParseError(f"line is longer than {MAX_LINE} characters", 1, 1)], offset
            pieces, start = [], None
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            error = ParseError(f"line is not UTF-8 text (byte {e.start + 1})", 1, e.start + 1)
            yield number, [error], offset
            pieces, start = [], None
            continue
        code = text.split("#", 1)[0].rstrip(" \t\f")
        if start is None:
            start = number
        pieces.append(code)
        if not code.endswith("\\"):
            yield start, pieces, offset
            pieces, start = [], None
    if pieces:
        yield start, pieces, 0


def _entry(display, start, pieces, declared, default_name, done_bytes):
    if isinstance(pieces[0], MatcalcError):
        return Entry(display, start, ("",), "", default_name=default_name, error=pieces[0],
                     done_bytes=done_bytes)
    program_lines, options, options_at = _split_options(pieces, start)
    program = "\n".join(program_lines)
    flat = CONTINUATION.sub(" ", program + "\n")
    statements = [s for s in re.split(r"[;\n]", flat) if s.strip()]
    if not statements and not options.strip():
        return None                                  # blank or comment only
    common = dict(lines=tuple(pieces), options=options, options_at=options_at,
                  default_name=default_name, done_bytes=done_bytes)
    if statements and not options.strip() and all(DECLARATION.match(s) for s in statements):
        error = _declare(program, start, declared)
        if error is None:
            return None
        return Entry(display, start, program=program, error=error, **common)
    if statements and all(DECLARATION.match(s) or DEFINITION.match(s) for s in statements):
        error = ParseError("this line has definitions but no expression; definitions hold for one entry only",
                           1, _first_column(pieces[0]),
                           hint="write them before the expression, on the entry's line: r = A * x - b; norm2(r)^2")
        return Entry(display, start, program=program, error=error, **common)
    own = set()
    for s in statements:
        m = DECLARATION.match(s) or DEFINITION.match(s)
        if m:
            own.update(n.strip() for n in m.group(1).split(","))
    used = set(IDENTIFIER.findall(flat))
    prelude = tuple(d for name, d in declared.items() if name in used and name not in own)
    return Entry(display, start, program=program, prelude=prelude, **common)


def _split_options(pieces, start):
    """The program's physical lines (up to the first '|'), the options text and where it starts."""
    for i, piece in enumerate(pieces):
        bar = piece.find("|")
        if bar >= 0:
            rest = [piece[bar + 1:]] + list(pieces[i + 1:])
            options = " ".join(p[:-1] if p.endswith("\\") else p for p in rest)
            return list(pieces[:i]) + [piece[:bar]], options, (start + i, bar + 2)
    return list(pieces), "", (start, 1)


def _declare(program: str, start: int, declared: dict):
    """Check a declaration line and record its names; the error, if it has one."""
    from .shapes import check
    from .syntax import Declaration, parse

    try:
        parsed = parse(program + "\n1")      # a declaration line has no expression of its own
        check(parsed)
    except MatcalcError as e:
        return e
    for decl in parsed.declarations:
        if isinstance(decl, Declaration):
            for name, (line, column) in decl.names:
                declared.pop(name, None)
                declared[name] = (f"{name}: {_shape_text(decl)}", (start + line - 1, column))
    return None


def _shape_text(decl) -> str:
    dims = ["*".join(str(f) for f in factors) for factors, _pos in decl.dims]
    return decl.kind if not dims else f"{decl.kind}({', '.join(dims)})"


# --- computing ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    """What every entry shares: the format, the per-entry defaults, the document options."""
    fmt: str
    defaults: dict             # per-entry option name -> value given on the command line
    document: dict = field(default_factory=dict)


@dataclass
class Outcome:
    """An entry computed and rendered: what goes to stdout and to stderr."""
    entry: Entry
    name: str
    ok: bool
    text: str                  # this entry's part of the output
    message: str = ""          # the error report for stderr (empty when ok)
    shared: tuple = ()         # ((key, source), ...) written once for all entries (NumPy helpers)


_ENTRY_COMMAND = None


def entry_command() -> click.Command:
    """The options an entry may give after '|': the single-mode options that concern one entry,
    and --name.  Built from the single-mode command, so that a new option is accepted here too."""
    global _ENTRY_COMMAND
    if _ENTRY_COMMAND is None:
        from .cli import main
        params = [p for p in main.params if isinstance(p, click.Option) and p.name not in DOCUMENT_OPTIONS]
        params.append(click.Option(["--name"], metavar="NAME", help="The entry's name."))
        _ENTRY_COMMAND = click.Command("entry", params=params, add_help_option=False)
    return _ENTRY_COMMAND


def entry_options(entry: Entry, settings: Settings) -> dict:
    """The entry's options: the command line's, overridden by those after '|'."""
    try:
        args = shlex.split(entry.options)
    except ValueError as e:                          # an unclosed quote
        raise UsageError(f"options after '|': {e}").at(entry.options_at) from None
    try:
        ctx = entry_command().make_context("entry", args, default_map=settings.defaults)
    except click.ClickException as e:
        raise UsageError(f"options after '|': {e.format_message()}").at(_option_position(entry, e)) from None
    options = dict(ctx.params)
    name = options.get("name")
    if name is not None and not re.fullmatch(NAME, name):
        raise UsageError(f"--name {name}: a name is a letter or '_' followed by letters, digits and '_'",
                         hint="it names the LaTeX heading and the NumPy functions, e.g. --name ridge_loss"
                         ).at(_option_position(entry, None, "--name"))
    return options


def _option_position(entry, error, token=None):
    """Where in the file an option error is: at the offending option if it can be found."""
    token = token or getattr(error, "option_name", None)
    if token is None and error is not None:
        param = getattr(error, "param", None)
        token = param.opts[0] if param is not None and getattr(param, "opts", None) else None
    line, column = entry.options_at
    if token:
        at = entry.options.find(token)
        if at >= 0:
            return line, column + at             # continuation lines: the first line is close enough
    return line, column + len(entry.options) - len(entry.options.lstrip())


def compute(entry: Entry, settings: Settings) -> Outcome:
    """Derive and render one entry; any error becomes a failed outcome, never an exception."""
    from . import budget
    from .cli import derive_checked, render, time_limit, user_error

    name = entry.default_name
    try:
        if entry.error is not None:
            raise entry.error
        options = entry_options(entry, settings)
        name = options.pop("name", None) or name
        with budget.limit(time_limit(options.pop("timeout", None))):     # a time budget per entry
            derivation, reports = derive_checked(_source(entry), **options)
            text, note = render(derivation, reports, settings.fmt, steps=options.get("steps", False),
                                view=entry_view(settings))
        failed = [kind for kind, report in reports.items() if not report.passed]
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as e:  # every failure is this entry's (a deadline's late signal too)
        error = user_error(e)
        line, column = _file_position(entry, error)
        return _failure(entry, name, settings, error, line, column)
    if failed:
        error = MathError(f"--{failed[0]} failed: a result does not match the function (see the report)")
        return _failure(entry, name, settings, error, entry.line, 1, results=(text, note))
    form = FORMATS[settings.fmt]
    text, shared = form.split(text)
    return Outcome(entry, name, True, form.entry(entry, name, text, note), shared=shared)


def entry_view(settings: Settings):
    """How every entry is shown: the command line's --color and LaTeX options (a document's
    entries are align blocks inside it)."""
    from .cli import View
    doc = settings.document
    style = doc.get("latex_style") or "align"
    return View(doc.get("color") or "auto", "align" if style == "document" else style,
                doc.get("latex_width"), doc.get("latex_transpose") or "top")


def _source(entry: Entry) -> str:
    if not entry.prelude:
        return entry.program
    return "; ".join(text for text, _ in entry.prelude) + "\n" + entry.program


def _file_position(entry: Entry, error: MatcalcError) -> tuple:
    """The error's (line, column) in the batch file."""
    if error.line is None:
        if isinstance(error, UsageError) and entry.options.strip():
            return _option_position(entry, None)
        return entry.line, _first_column(entry.lines[0])
    line, column = error.line, error.column or 1
    if entry.error is None and entry.prelude:
        if line == 1:                                  # in a persistent declaration
            end = 0
            for text, position in entry.prelude:
                end += len(text) + 2
                if column <= end:
                    return position
            return entry.prelude[-1][1]
        line -= 1
    line = min(line, len(entry.lines))
    return entry.line + line - 1, column


def _first_column(text: str) -> int:
    return len(text) - len(text.lstrip()) + 1


def error_kind(error: MatcalcError) -> str:
    from .cli import InternalError

    if isinstance(error, InternalError):
        return "internal"
    for cls, kind in KINDS:
        if isinstance(error, cls):
            return kind
    return "internal"


def _failure(entry, name, settings, error, line, column, results=None) -> Outcome:
    """A failed entry; ``results`` (text, note) when it was computed but its check failed.
    Control characters in the report are shown as escapes, never sent to a terminal."""
    from .errors import visible

    header = visible(f"{entry.file}:{line}:{column}: error: {error.message}")
    report = [header]
    offset = line - entry.line
    if 0 <= offset < len(entry.lines) and entry.lines[offset].strip():
        text = entry.lines[offset]
        start = max(0, column - 60)
        prefix = "..." if start else ""
        before = visible(text[start:column - 1])
        report += ["    " + prefix + visible(text[start:start + 120]), "    " + " " * (len(prefix) + len(before)) + "^"]
    if error.hint:
        report.append(visible(f"hint: {error.hint}"))
    details = {"kind": error_kind(error), "message": error.message, "line": line, "column": column}
    if error.hint:
        details["hint"] = error.hint
    report = "\n".join(report) + "\n"
    return Outcome(entry, name, False, FORMATS[settings.fmt].failed(entry, name, report, details, results), report)


def compute_serial(entries, settings):
    for entry in entries:
        yield compute(entry, settings)


# worker processes: the settings and the parser are set up once per worker
_WORKER_SETTINGS = None


def _start_worker(settings):
    global _WORKER_SETTINGS
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is the parent's to handle
    _WORKER_SETTINGS = settings
    from .syntax import _parser
    _parser()
    entry_command()


def _compute_chunk(entries):
    return [compute(entry, _WORKER_SETTINGS) for entry in entries]


def compute_parallel(entries, settings, jobs: int, chunk: int = 8):
    """Outcomes in input order, computed by ``jobs`` processes in chunks; at most a few chunks
    per process are read ahead, so memory stays flat however long the input is."""
    import multiprocessing

    from .syntax import _parser
    _parser()                                        # built once here, inherited by forked workers
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    pool = context.Pool(jobs, initializer=_start_worker, initargs=(settings,))
    try:
        pending = deque()
        batch = []
        for entry in entries:
            batch.append(entry)
            if len(batch) == chunk:
                pending.append(pool.apply_async(_compute_chunk, (batch,)))
                batch = []
                while len(pending) > 3 * jobs:
                    yield from pending.popleft().get()
        if batch:
            pending.append(pool.apply_async(_compute_chunk, (batch,)))
        while pending:
            yield from pending.popleft().get()
        pool.close()
    finally:
        pool.terminate()
        pool.join()


# --- output formats -----------------------------------------------------------------------------

class Plain:
    """Each entry's results under a ``# FILE:LINE name`` header; every other line is a result."""
    comment = "# "

    def begin(self, files) -> str:
        return ""

    def end(self, interrupted: bool) -> str:
        return ""

    def header(self, entry, name) -> str:
        return f"# {entry.file}:{entry.line} {name}\n"

    def entry(self, entry, name, text, note) -> str:
        return self.header(entry, name) + text + (f"{self.comment}{note}\n" if note else "")

    def split(self, text: str) -> tuple:
        """The entry's text and the definitions it shares with others (only NumPy modules have any)."""
        return text, ()

    def place(self, outcome, written: dict) -> str:
        return outcome.text

    def failed(self, entry, name, report, details, results) -> str:
        """The entry's header (and results, when only a check failed), and the error's first line."""
        out = self.entry(entry, name, *results) if results else self.header(entry, name)
        return out + self.comment + report.split("\n", 1)[0] + "\n"


class Pretty(Plain):
    """For a person at a terminal: the labelled view, and errors in full (caret and hint)."""
    comment = ""

    def header(self, entry, name) -> str:
        return fit_report(f"── {entry.file}:{entry.line} {name}\n", _view_width())

    def failed(self, entry, name, report, details, results) -> str:
        return ((self.entry(entry, name, *results) if results else self.header(entry, name))
                + fit_report(report, _view_width()))


def _view_width():
    """The terminal's width, when stdout is one (as the results are laid out); piped, the lines
    are left whole for grep."""
    if not sys.stdout.isatty():
        return None
    from .terminal import terminal_width
    return terminal_width(sys.stdout)


def fit_report(report: str, width) -> str:
    """An error report (message, quoted line and caret, hint) with no line wider than ``width``:
    the quoted line is cut around its caret, the other lines are folded.  No width: as it is."""
    if width is None:
        return report
    import textwrap
    from .render.pretty import _around_caret

    lines = report.rstrip("\n").split("\n")
    out = []
    for i, line in enumerate(lines):
        caret_next = i + 1 < len(lines) and lines[i + 1].strip() == "^"
        if line.strip() == "^" and i and out and out[-1] is None:
            out[-1:] = list(_around_caret(lines[i - 1], line, width))
        elif caret_next:
            out.append(None)                        # the quoted line: cut with its caret, next
        elif len(line) <= width:
            out.append(line)
        else:
            out.extend(textwrap.wrap(line, width, subsequent_indent="  ", break_on_hyphens=False))
    return "\n".join(out) + "\n"


class JsonLines(Plain):
    """One object per line: file, line, name, program, ok, then the single-mode fields or error."""

    def _object(self, entry, name, ok) -> dict:
        # the program as derived, on one line: with the file's declarations it uses, so that
        # single mode gives the same results for it
        program = "; ".join([text for text, _ in entry.prelude] + [JOINED.sub(" ", entry.program).strip()])
        return {"file": entry.file, "line": entry.line, "name": name, "program": program, "ok": ok}

    def entry(self, entry, name, text, note) -> str:
        doc = self._object(entry, name, True)
        doc.update(json.loads(text))
        return json.dumps(doc, ensure_ascii=False) + "\n"

    def failed(self, entry, name, report, details, results) -> str:
        doc = self._object(entry, name, False)
        if results is not None:
            doc.update(json.loads(results[0]))
        doc["error"] = details
        return json.dumps(doc, ensure_ascii=False) + "\n"


LATEX_PREAMBLE = "\\documentclass{article}\n\\usepackage{amsmath}\n\\usepackage{amssymb}\n\\begin{document}\n"
TEX_SPECIAL = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
               "^": r"\textasciicircum{}", "_": r"\_", "%": r"\%", "~": r"\textasciitilde{}"}


def tex_escape(text: str) -> str:
    return "".join(TEX_SPECIAL.get(ch, ch) for ch in text)


BREAK_AFTER = set(";,*/+(")


def tex_code(text: str) -> str:
    """``text`` in typewriter type, in a paragraph of its own that breaks at the page's width:
    typewriter spaces do not stretch, so the paragraph is ragged right, and a program's lines
    may also break after ';', ',', '(' and its operators."""
    pieces = []
    for ch, after in zip(text, text[1:] + " "):
        pieces.append(TEX_SPECIAL.get(ch, ch))
        if ch in BREAK_AFTER and after != " ":     # a space is a break already
            pieces.append(r"\allowbreak{}")
    return "{\\raggedright\\noindent\\texttt{" + "".join(pieces) + "}\\par}"


class Latex(Plain):
    """A heading and a block per entry; with ``--latex-style document`` a complete document."""
    comment = "% "

    def __init__(self, document: bool):
        self.document = document

    def begin(self, files) -> str:
        return LATEX_PREAMBLE if self.document else ""

    def end(self, interrupted: bool) -> str:
        return "\\end{document}\n" if self.document else ""

    def header(self, entry, name) -> str:
        program = JOINED.sub(" ", entry.program).strip()
        return f"% {entry.file}:{entry.line}\n\\subsection*{{{tex_escape(name)}}}\n{tex_code(program)}\n"

    def failed(self, entry, name, report, details, results) -> str:
        out = self.entry(entry, name, *results) if results else self.header(entry, name)
        where = f"line {details['line']}, column {details['column']}"
        return (out + f"% {report.split(chr(10), 1)[0]}\n\\noindent\\textbf{{Error}} ({tex_escape(where)}):\n"
                f"{tex_code(details['message'])}\n\n")

    def entry(self, entry, name, text, note) -> str:
        return super().entry(entry, name, text, note) + "\n"


class NumpyModule(Plain):
    """One module: each entry's single-mode module inside a function of its own (so that its
    definitions stay apart), whose public functions are exported as ``<name>_<function>``.
    Imports and helpers that do not depend on an entry are written once, at module level."""
    comment = "# "

    def begin(self, files) -> str:
        from . import __version__
        return (f'"""NumPy functions for the entries of {", ".join(files)} '
                f"(generated by matcalc {__version__} batch).\n\n"
                "Each entry NAME gives NAME_f(**vars) and one function per result it asked for\n"
                "(NAME_differential, NAME_gradient, NAME_jacobian, NAME_hessian_bilinear, NAME_hessian),\n"
                "each taking the entry's variables as keyword arguments, as in single-mode modules.\n"
                '"""\n')

    def header(self, entry, name) -> str:
        return f"\n\n# --- {entry.file}:{entry.line} {name} " + "-" * max(3, 80 - len(entry.file) - len(name)) + "\n"

    def split(self, text: str) -> tuple:
        return shared_definitions(text)

    def entry(self, entry, name, text, note) -> str:
        functions = re.findall(r"^def ([A-Za-z][A-Za-z0-9_]*)\(", text, flags=re.M)
        body = textwrap.indent(text.strip("\n") + "\n", "    ")
        if note:
            body = f"    # {note}\n" + body
        exported = ", ".join(f"{name}_{f}" for f in functions)
        return (self.header(entry, name) + f"def _{name}():\n" + body
                + f"\n    return {', '.join(functions)}\n\n\n{exported} = _{name}()\n")

    def place(self, outcome, written: dict) -> str:
        """The outcome's text, after the shared definitions not written yet; one that differs from
        what was written under its name stays inside the entry's function."""
        before, inside = [], []
        for key, source in outcome.shared:
            if key not in written:
                written[key] = source
                before.append(source)
            elif written[key] != source:
                inside.append(source)
        text = outcome.text
        if inside:
            opening = f"def _{outcome.name}():\n"
            text = text.replace(opening, opening + textwrap.indent("\n\n".join(inside) + "\n\n", "    "), 1)
        if not before:
            return text
        imports = [b for b in before if b.startswith(("import ", "from "))]
        functions = [b for b in before if b not in imports]
        return "".join(f"\n{b}\n" for b in imports) + "".join(f"\n\n{b}\n" for b in functions) + text


def shared_definitions(text: str) -> tuple:
    """Split a single-mode module: ((key, source) of its imports and of the private helper
    functions that use no definition of their own module but other such helpers), and the rest."""
    import ast

    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    defined = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name):
            defined.add(node.target.id)
    helpers = {node.name: node for node in tree.body
               if isinstance(node, ast.FunctionDef) and node.name.startswith("_") and not node.decorator_list}
    uses = {name: {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} for name, node in helpers.items()}
    changed = True
    while changed:                       # keep only helpers whose every module name is a kept helper
        changed = False
        for name in list(helpers):
            if uses[name] & (defined - set(helpers)):
                del helpers[name]
                changed = True
    shared, skip = [], set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) or (isinstance(node, ast.FunctionDef)
                                                               and node.name in helpers):
            source = "".join(lines[node.lineno - 1:node.end_lineno]).rstrip("\n")
            shared.append((source if not isinstance(node, ast.FunctionDef) else node.name, source))
            skip.update(range(node.lineno - 1, node.end_lineno))
    rest = "".join(line for i, line in enumerate(lines) if i not in skip)
    return re.sub(r"\n{3,}", "\n\n", rest), tuple(shared)     # nested in a function: one blank line


def writer_for(settings: Settings):
    if settings.fmt == "latex":
        return Latex(settings.document.get("latex_style") == "document")
    return FORMATS[settings.fmt]


FORMATS = {"plain": Plain(), "pretty": Pretty(), "json": JsonLines(), "latex": Latex(False),
           "numpy": NumpyModule()}


# --- running ------------------------------------------------------------------------------------

class Progress:
    """A Rich progress bar on stderr, only on a terminal and only once a batch takes a moment."""

    DELAY = 1.0

    def __init__(self, total_bytes, enabled: bool):
        self.total = total_bytes
        self.enabled = enabled
        self.started = time.monotonic()
        self.bar = None
        self.count = 0

    def advance(self, outcome: Outcome):
        self.count += 1
        if not self.enabled:
            return
        if self.bar is None:
            if time.monotonic() - self.started < self.DELAY:
                return
            from rich.console import Console
            from rich.progress import BarColumn, Progress as Bar, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            self.bar = Bar(TextColumn("batch"), BarColumn(), TextColumn("{task.fields[count]} entries"),
                           TimeElapsedColumn(), TimeRemainingColumn(),
                           console=Console(file=sys.stderr), transient=True)
            self.task = self.bar.add_task("batch", total=self.total, count=0)
            self.bar.start()
        self.bar.update(self.task, completed=outcome.entry.done_bytes if self.total else None, count=self.count)

    def say(self, text: str):
        if sys.stderr.isatty():
            from .terminal import terminal_width
            text = fit_report(text, terminal_width(sys.stderr))
        if self.bar is not None:
            from rich.text import Text
            self.bar.console.print(Text(text.rstrip("\n")), soft_wrap=True)
        else:
            sys.stderr.write(text)
            sys.stderr.flush()

    def stop(self):
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _write(out, text: str):
    """Write one entry's output whole: Ctrl-C waits until it is out."""
    if not text:
        return
    blocked = hasattr(signal, "pthread_sigmask")
    if blocked:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        out.write(text)
        out.flush()
    finally:
        if blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def open_sources(files):
    """(display name, binary file, default-name stem) per FILE; a missing file is a usage error."""
    sources, stems = [], {}
    for f in files:
        if f == "-":
            fh, display, stem = sys.stdin.buffer, "<stdin>", "stdin"
        else:
            try:
                fh = open(f, "rb")
            except OSError as e:
                for _, opened, _ in sources:
                    if opened is not sys.stdin.buffer:
                        opened.close()
                raise UsageError(f"cannot read {f}: {e.strerror}") from None
            display = f
            stem = re.sub(r"\W", "_", Path(f).name.split(".")[0], flags=re.ASCII) or "entry"
            if not re.match(NAME, stem):
                stem = "e" + stem
        stems[stem] = stems.get(stem, 0) + 1
        if stems[stem] > 1:                 # the same stem twice: default names stay apart
            stem = f"{stem}_{stems[stem]}"
        sources.append((display, fh, stem))
    return sources


def _total_bytes(sources):
    total = 0
    for _, fh, _ in sources:
        try:
            if not fh.seekable():
                return None
            total += os.fstat(fh.fileno()).st_size
        except (OSError, ValueError):
            return None
    return total


def run_batch(sources, settings: Settings, jobs: int, out) -> int:
    """Run a batch: outputs to ``out``, errors and the summary to stderr.  The exit status."""
    writer = writer_for(settings)
    on_terminal = out is sys.stdout and sys.stdout.isatty()
    show_bar = sys.stderr.isatty() and not on_terminal
    # the pretty view shows errors in full: on the same terminal, once is enough
    errors_in_view = settings.fmt == "pretty" and on_terminal and sys.stderr.isatty()
    progress = Progress(_total_bytes(sources), show_bar)
    entries = read_entries(sources)
    outcomes = compute_serial(entries, settings) if jobs == 1 else compute_parallel(entries, settings, jobs)
    counts = {True: 0, False: 0}
    names, written = set(), {}
    try:
        _write(out, writer.begin([display for display, _, _ in sources]))
        for outcome in outcomes:
            if outcome.ok:
                if outcome.name in names:
                    outcome = _duplicate(outcome, settings)
                names.add(outcome.name)
            counts[outcome.ok] += 1
            _write(out, writer.place(outcome, written))
            if outcome.message and not errors_in_view:
                progress.say(outcome.message)
            progress.advance(outcome)
        _write(out, writer.end(False))
    except KeyboardInterrupt:
        outcomes.close()
        progress.stop()
        _write(out, writer.end(True))
        sys.stderr.write(f"matcalc: interrupted: {counts[True]} ok, {counts[False]} failed\n")
        return 130
    except BrokenPipeError:                          # the reader went away (| head): stop quietly
        outcomes.close()
        progress.stop()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        return 0
    finally:
        for _, fh, _ in sources:
            if fh is not sys.stdin.buffer:
                fh.close()
    progress.stop()
    sys.stderr.write(f"{counts[True]} ok, {counts[False]} failed\n")
    return 1 if counts[False] else 0


def _duplicate(outcome: Outcome, settings: Settings) -> Outcome:
    """A name given twice would make the second entry's functions replace the first's."""
    error = UsageError(f"--name {outcome.name}: the name is already used by an earlier entry",
                       hint="give each entry its own --name")
    entry = outcome.entry
    line, column = _option_position(entry, None, "--name") if "--name" in entry.options else (entry.line, 1)
    return _failure(entry, outcome.name, settings, error, line, column)


# --- the command --------------------------------------------------------------------------------

BATCH_HELP = """Derive every entry of batch files (one program per line; '-' reads standard input).

\b
A batch file (extension .mcb) is UTF-8 text:
  # a comment; blank lines are skipped; a line ending in '\\' continues on the next
  x: vector(n); A: matrix(n, n)             declarations only: for every later entry
  x' * A * x | --wrt x --hessian --name quad   an entry, with its own options after '|'
  y: vector(m); norm2(A * x - y)^2          an entry with declarations of its own

The options are the defaults of every entry; an entry's options after '|' override them
(--name NAME names it in LaTeX headings and NumPy functions).  A bad entry is reported on
stderr as FILE:LINE:COL: error: message and the others are still computed; a summary
('12 ok, 1 failed') ends the run.  Exit status: 0, 1 when an entry failed, 2 for usage errors.
"""

BATCH_EXAMPLES = """\b
Examples:
  matcalc batch samples/ml_losses.mcb
  matcalc batch samples/*.mcb --format json --jobs 2 > results.jsonl
  matcalc batch sheet.mcb --format latex --output sheet.tex
  matcalc batch losses.mcb --format numpy --output losses_grad.py
"""


def batch_command(single: click.Command) -> click.Command:
    """``matcalc batch``: the single-mode options (as every entry's defaults), files, --jobs, --output."""
    shared = [p for p in single.params if isinstance(p, click.Option) and p.name != "version"]
    extra = [
        click.Option(["--jobs", "-j"], type=click.IntRange(min=0), default=1, show_default=True, metavar="N",
                     help="Compute entries in N processes (0: one per CPU); the output is the same."),
        click.Option(["--output", "-o"], type=click.Path(dir_okay=False, writable=True), default=None,
                     help="Write the output to FILE instead of standard output."),
    ]
    names = {p.name for p in shared}
    if "latex_style" not in names:
        extra.append(click.Option(["--latex-style"], type=click.Choice(["align", "document"]), default="align",
                                  show_default=True,
                                  help="LaTeX: a fragment to \\input (align), or a document that compiles as is."))
    arguments = [click.Argument(["files"], nargs=-1, required=True, metavar="FILE...")]
    from .cli import FittingCommand
    return FittingCommand("batch", params=arguments + shared + extra, callback=_batch_main,
                         help=BATCH_HELP, epilog=BATCH_EXAMPLES,
                         context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})


def _batch_main(files, jobs, output, **options):
    from .cli import default_format, time_limit

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))
    fmt = options.pop("fmt", None)
    if fmt is None:
        fmt = default_format() if output is None else "plain"
    document = {k: options.pop(k) for k in list(options) if k in DOCUMENT_OPTIONS}
    settings = Settings(fmt, options, document)
    jobs = jobs or os.cpu_count() or 1
    out = sys.stdout
    try:
        time_limit(options.get("timeout"))       # a bad default is a usage error of the whole run
        if fmt == "latex":                       # so is a bad --latex-width
            from .render.latex import LatexOptions
            LatexOptions.parse(entry_view(settings).latex_style, document.get("latex_width"),
                               document.get("latex_transpose") or "top")
        sources = open_sources(files)           # every input is readable before the output is made
        if output is not None:
            try:
                out = open(output, "w", encoding="utf-8")
            except OSError as e:
                raise UsageError(f"cannot write {output}: {e.strerror}") from None
        status = run_batch(sources, settings, jobs, out)
    except UsageError as e:
        click.echo(e.render(), err=True)
        sys.exit(2)
    except KeyboardInterrupt:                    # before the first entry: nothing was written
        click.echo("matcalc: interrupted", err=True)
        sys.exit(130)
    except OSError as e:                         # writing failed (a full disk): no traceback
        click.echo(f"error: cannot write the output: {e.strerror or e}", err=True)
        sys.exit(1)
    finally:
        if out is not sys.stdout:
            out.close()
    sys.exit(status)
