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


def run_on_terminal(args, columns: int = 80, env=None, timeout: float = 60, stderr_on_terminal: bool = True,
                    stdin_on_terminal: bool = False, base_env=None) -> tuple:
    """(exit status, terminal output, stderr) of matcalc with stdout on a real pseudo-terminal
    ``columns`` wide (and stderr and stdin too, if asked; else stderr is returned apart).  The
    environment drops NO_COLOR, COLUMNS and LINES and sets TERM=xterm-256color, then ``env``."""
    import fcntl
    import os
    import select
    import struct
    import subprocess
    import termios
    import time
    full = {k: v for k, v in (base_env or os.environ).items() if k not in ("NO_COLOR", "COLUMNS", "LINES")}
    full["TERM"] = "xterm-256color"
    full.update(env or {})
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    p = subprocess.Popen(matcalc_command() + list(args),
                         stdin=slave if stdin_on_terminal else subprocess.DEVNULL, stdout=slave,
                         stderr=slave if stderr_on_terminal else subprocess.PIPE, env=full,
                         start_new_session=stdin_on_terminal)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], min(1.0, timeout))
            if not ready:
                if p.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:          # EIO: the other end is closed
                break
            if not data:
                break
            chunks.append(data)
        else:
            p.kill()
    finally:
        os.close(master)
        p.wait(timeout=timeout)
    err = "" if stderr_on_terminal else p.stderr.read().decode("utf-8", "replace")
    if p.stderr is not None:
        p.stderr.close()
    return p.returncode, b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n"), err
