"""The package is typed for its users: a checker sees the connection options with their types
(``tls="not-a-TLS"`` is an error) and the verbs' return types."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SNIPPET = '''
import proton_easy as pe
from proton_easy.handlers import Receiver

client = pe.Client("amqp://localhost:5672", timeout=5, tls="not-a-TLS")
pe.send("amqp://localhost:5672/q", "x", heartbeat="often")
Receiver("amqp://localhost:5672/q", count=1, reconnect=True, urls=["amqp://b:5672"])
n: int = client.send_many("q", ["a"])
bodies = [m.body for m in client.receive("q", count=2)]
wrong: str = client.send_many("q", ["a"])
'''


def test_a_type_checker_sees_the_options_and_the_results(tmp_path: Path) -> None:
    src = tmp_path / "user_code.py"
    src.write_text(SNIPPET)
    proc = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                           "--follow-imports=silent", str(src)],
                          capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    lines = sorted({int(line.split(":")[1]) for line in errors})
    # line 5: tls is not a TLS; line 6: heartbeat is not a number; line 10: int is not str.
    # Lines 7-9 are correct and must pass.
    assert lines == [5, 6, 10], proc.stdout
