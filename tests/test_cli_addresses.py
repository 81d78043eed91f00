"""The command line as a new user meets it: addresses relative to $PROTON_EASY_URL, one rule for
showing URLs in errors (the user, never the password), hints in option words."""

from __future__ import annotations

import socket
import subprocess

import proton_easy as pe

from .procs import PROTON_EASY, ROOT, describe, run


def test_bare_and_prefixed_addresses_are_relative_to_proton_easy_url(
        amqp_url: str, amqp_address: str) -> None:
    sent = run(PROTON_EASY + ["send", "-b", amqp_address, "--msg-content", "bare"],
               PROTON_EASY_URL=amqp_url)
    assert sent.returncode == 0, describe(sent)
    sent = run(PROTON_EASY + ["send", "-b", f"queue://{amqp_address}", "--msg-content",
                              "prefixed"], PROTON_EASY_URL=amqp_url)
    assert sent.returncode == 0, describe(sent)
    got = run(PROTON_EASY + ["receive", "-b", f"queue://{amqp_address}", "-c", "2", "-t", "5"],
              PROTON_EASY_URL=amqp_url)
    assert got.returncode == 0, describe(got)
    assert got.stdout.splitlines() == ["bare", "prefixed"]
    assert pe.receive(f"{amqp_url}/{amqp_address}", timeout=1) == []


def test_errors_show_the_user_never_the_password() -> None:
    # user and password alike ("admin:admin"): the user is still shown, the same way each time
    for url in ("admin:admin@127.0.0.1:1/q", "amqp://admin:admin@127.0.0.1:1/q"):
        proc = run(PROTON_EASY + ["send", "-b", url, "-t", "5"])
        assert proc.returncode == 1, describe(proc)
        assert "cannot connect to amqp://admin@127.0.0.1:1/q" in proc.stderr, proc.stderr
        assert "is a broker running at 127.0.0.1:1?" in proc.stderr, proc.stderr
        assert "***@" not in proc.stderr and "admin:admin" not in proc.stderr
    proc = run(PROTON_EASY + ["send", "-b", "amqp://admin:Xy7@Qz9@127.0.0.1:1/q"])
    assert proc.returncode == 1 and "percent-encode" in proc.stderr, describe(proc)
    assert "amqp://admin:***@" in proc.stderr
    assert "Xy7" not in proc.stderr and "Qz9" not in proc.stderr


def test_a_taken_port_gets_a_hint_in_command_line_words() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        proc = run(PROTON_EASY + ["broker", "--port", str(port)])
    finally:
        taken.close()
    assert proc.returncode == 1, describe(proc)
    assert "--port 0" in proc.stderr and "make broker PORT=0" in proc.stderr, proc.stderr
    assert "port=None" not in proc.stderr


def test_make_broker_passes_port() -> None:
    dry = subprocess.run(["make", "-n", "broker", "PORT=0"], capture_output=True, text=True,
                         cwd=ROOT)
    assert dry.returncode == 0, dry.stderr
    assert "proton_easy broker --port 0" in dry.stdout
