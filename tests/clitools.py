"""Helpers the command-line tests share: how to start matcalc, and what a run gave."""

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path


def matcalc_command() -> list:
    """The installed console script, next to this Python if possible."""
    script = Path(sys.executable).with_name("matcalc")
    if script.exists():
        return [str(script)]
    found = shutil.which("matcalc")
    return [found] if found else [sys.executable, "-m", "matcalc_cli.cli"]


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
