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
