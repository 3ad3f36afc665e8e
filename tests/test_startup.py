"""Start-up: the plain path imports neither SymPy, NumPy nor rich, and `--version` / `--help`
import none of the pipeline (no parser, no differentiation)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("sympy", "numpy", "rich")

PROBE = """
import json, sys
sys.argv = ["matcalc"] + json.loads(sys.argv[1])
from matcalc_cli.cli import main
try:
    main()
except SystemExit:
    pass
sys.stdout.flush()
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def imported(args: list) -> set:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True,
                       env=env, timeout=120)
    return set(json.loads(p.stderr.strip().splitlines()[-1]))


def top_level(modules: set) -> set:
    return {m.split(".")[0] for m in modules}


@pytest.mark.parametrize("args", [["x' * A * x", "--wrt", "x"],
                                  ["x: vector(n); A: matrix(n, n); x' * A * x", "--wrt", "x", "--hessian"],
                                  ["X: matrix(n, n); det(X)", "--format", "json"]])
def test_plain_path_imports_no_heavy_module(args):
    assert not top_level(imported(args)) & set(HEAVY)


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_version_and_help_import_none_of_the_pipeline(flag):
    modules = imported([flag])
    assert not top_level(modules) & (set(HEAVY) | {"lark"})
    assert not {"matcalc_cli.api", "matcalc_cli.syntax", "matcalc_cli.expr"} & modules


def test_plain_path_uses_the_standalone_parser_not_lark():
    """The parse tables come from the generated module: no `import lark` (nor its grammar compiler)."""
    assert "lark" not in top_level(imported(["x: vector(n); A: matrix(n, n); x' * A * x", "--wrt", "x"]))


def test_standalone_parser_is_built_from_the_grammar():
    from matcalc_cli import _lalr_parser, syntax
    with open(syntax.grammar_path(), encoding="utf-8") as fh:
        grammar = fh.read()
    assert _lalr_parser.GRAMMAR == grammar, \
        "grammar/matcalc.lark changed: run `python -m matcalc_cli.build_parser` to regenerate the parser"


@pytest.mark.parametrize("program", ["x: vector(n); A: matrix(n, n); x' * A * x",
                                     "X: matrix(n, n); u = X * X; tr(u) # note",
                                     "x: vector(n); x' * * x", "x: vector(n); (x' * x", "x: vector(n); x ! x"])
def test_standalone_and_lark_parsers_agree(program):
    """The same syntax tree, or the same error (message and position), from either parser."""
    def run(lark_parser: bool):
        env = dict(os.environ, PYTHONPATH=str(REPO))
        env.pop("MATCALC_LARK_PARSER", None)
        if lark_parser:
            env["MATCALC_LARK_PARSER"] = "1"
        code = ("import sys\nfrom matcalc_cli.syntax import parse\nfrom matcalc_cli.errors import MatcalcError\n"
                "try:\n    print(repr(parse(sys.argv[1])))\nexcept MatcalcError as e:\n    print(e)\n"
                "print(sorted(m for m in sys.modules if m.split('.')[0] == 'lark')[:1])")
        return subprocess.run([sys.executable, "-c", code, program], capture_output=True, text=True,
                              env=env, timeout=120).stdout
    standalone, with_lark = run(False), run(True)
    assert standalone.splitlines()[:-1] == with_lark.splitlines()[:-1]
    assert standalone.splitlines()[-1] == "[]" and with_lark.splitlines()[-1] == "['lark']"
