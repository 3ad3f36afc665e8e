"""Every example in README.md is run as shown: the console sessions, the table of results, the
language example and the Python API example.  A README that drifts from the tool fails here."""

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from matcalc_cli import derive
from matcalc_cli.syntax import parse

from clitools import matcalc_command

README = Path(__file__).resolve().parent.parent / "README.md"
TEXT = README.read_text(encoding="utf-8")


def _blocks(kind: str) -> list:
    """The bodies of the fenced blocks whose fence names ``kind`` ("" for a bare fence)."""
    out, body, current = [], None, None
    for line in TEXT.splitlines():
        if line.startswith("```"):
            if body is None:
                body, current = [], line[3:].strip()
            else:
                if current == kind:
                    out.append("\n".join(body) + "\n")
                body = None
        elif body is not None:
            body.append(line)
    return out


def _sessions() -> list:
    """(command line, expected output lines) for each '$ matcalc ...' in a console block."""
    out = []
    for block in _blocks("console"):
        command, expected = None, []
        for line in block.splitlines():
            if line.startswith("$ "):
                if command:
                    out.append((command, expected))
                command, expected = line[2:], []
            elif command is not None:
                expected.append(line)
        if command:
            out.append((command, expected))
    return out


def _normalise(lines) -> list:
    # the size of a finite-difference error depends on rounding: compare its presence, not digits
    return [re.sub(r"max relative error \S+", "max relative error E", line) for line in lines]


@pytest.mark.parametrize("command, expected", _sessions(), ids=lambda v: v if isinstance(v, str) else None)
def test_console_session_prints_what_the_readme_shows(command, expected):
    argv = shlex.split(command)
    assert argv[0] == "matcalc"
    env = dict(os.environ, PYTHONPATH=str(README.parent))
    proc = subprocess.run(matcalc_command() + argv[1:], capture_output=True, text=True, env=env, timeout=120,
                          cwd=README.parent)
    shown = proc.stdout.splitlines() + [line for line in proc.stderr.splitlines()
                                        if not line.startswith("matcalc: inferred shapes")]
    assert _normalise(shown) == _normalise(expected), proc.stderr


def _table_rows() -> list:
    rows = []
    for line in TEXT.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| `") else []
        if len(cells) == 3 and cells[1].startswith("`"):
            rows.append(tuple(cells))
    return rows


@pytest.mark.parametrize("program, wrt, results", _table_rows())
def test_table_of_results_is_what_matcalc_prints(program, wrt, results):
    parts = re.findall(r"`([^`]*)`", program)
    source = "; ".join(reversed(parts)) if len(parts) > 1 else parts[0]   # "logdet(X)", "X: symmetric(n)"
    wrt = wrt.strip("`")
    claims = re.findall(r"(gradient|Hessian|Jacobian) `([^`]*)`|`f''\[[^\]]*\] = ([^`]*)`", results)
    assert claims, results
    d = derive(source, wrt=wrt, gradient=True, hessian=any(c[0] == "Hessian" or c[2] for c in claims)) \
        if any(c[0] in ("gradient", "Hessian") or c[2] for c in claims) else derive(source, wrt=wrt, jacobian=True)
    for kind, text, bilinear in claims:
        if bilinear:
            assert d.hessian_bilinear.text() == bilinear
        else:
            assert {"gradient": d.gradient, "Hessian": d.hessian, "Jacobian": d.jacobian}[kind].text() == text


def test_language_example_parses_and_derives():
    block = next(b for b in _blocks("") if "c * x' * S * x" in b)
    program = re.sub(r"#[^\n]*", "", block)
    parse(program)
    assert derive(program, wrt="x", gradient=True).gradient.text()


@pytest.mark.parametrize("block", _blocks("python"))
def test_python_example_runs_as_shown(block):
    namespace: dict = {}
    code, claims = [], []
    for line in block.splitlines():
        stmt, _, comment = line.partition("  #")
        code.append(stmt)
        if comment.strip().startswith('"'):
            claims.append((stmt.strip(), comment.strip()))
    exec("\n".join(code), namespace)
    for expression, value in claims:
        assert eval(expression, namespace) == value[1:-1]
