"""Running the command line and the examples as real subprocesses, several at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PROTON_EASY = [sys.executable, "-m", "proton_easy"]


def env(**extra: str) -> Dict[str, str]:
    """The test's environment without PROTON_EASY_URL (every command names its broker)."""
    e = {k: v for k, v in os.environ.items() if k != "PROTON_EASY_URL"}
    e.update(extra)
    return e


def run(cmd: Sequence[str], *, timeout: float = 60, input: Optional[str] = None,
        **extra_env: str) -> subprocess.CompletedProcess:
    """Run one command to completion; stdout and stderr captured as text."""
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                          env=env(**extra_env), cwd=ROOT, input=input)


def popen(cmd: Sequence[str], **kwargs: object) -> subprocess.Popen:
    """Start a command in the background, stdout and stderr piped as text. SIGINT is reset to
    its default in the child, so Ctrl-C tests work even under a shell that ignores it (as
    non-interactive shells do for background jobs)."""
    return subprocess.Popen(list(cmd), stdout=kwargs.pop("stdout", subprocess.PIPE),
                            stderr=kwargs.pop("stderr", subprocess.PIPE), text=True, env=env(),
                            cwd=ROOT, preexec_fn=_default_sigint, **kwargs)  # type: ignore


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_all(cmds: Sequence[Sequence[str]],
            timeout: float = 60) -> List[subprocess.CompletedProcess]:
    """Run independent commands in parallel; results in the same order."""
    with ThreadPoolExecutor(max_workers=max(1, len(cmds))) as pool:
        return list(pool.map(lambda c: run(c, timeout=timeout), cmds))


def cli_proton(tool: str) -> str:
    """The path of cli-proton-python's ``sender`` or ``receiver`` console script."""
    path = BIN / f"cli-proton-python-{tool}"
    assert path.exists(), f"{path} is missing: pip install -e '.[test]' installs it"
    return str(path)


def describe(proc: subprocess.CompletedProcess) -> str:
    """A failed command's output, for assertion messages."""
    return (f"exit {proc.returncode}: {' '.join(map(str, proc.args))}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
