"""Every example of examples/ runs against Artemis and prints what the seed's version prints.

Each seed example exists twice, as a subclass of a proton_easy.handlers class
(examples/handlers/) and as a script of one-line calls (examples/oneline/). The scenarios run
as subprocesses, all at once, against the session's broker; each test checks one of them.
"""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Tuple

import pytest

import proton_easy as pe

from .procs import ROOT, describe, popen, run

STYLES = ("handlers", "oneline")
SEQUENCES = [f"{{'sequence': {n}}}" for n in range(1, 11)]


def example(style: str, name: str, *args: str) -> List[str]:
    return [sys.executable, str(ROOT / "examples" / style / f"{name}.py"), *args]


Results = List[subprocess.CompletedProcess]


def send_then_receive(style: str, base: str) -> Results:
    """Examples 3.3 and 3.4: 10 reliable messages, then receive them."""
    address = f"{base}/ex-send-{style}"
    return [run(example(style, "send", "-a", address, "-m", "10")),
            run(example(style, "receive", "-a", address, "-m", "10"))]


def best_effort(style: str, base: str) -> Results:
    """Examples 3.12 and 3.11: 10 pre-settled messages, then receive them pre-settled."""
    address = f"{base}/ex-best-effort-{style}"
    return [run(example(style, "best_effort_send", "-a", address, "-m", "10")),
            run(example(style, "best_effort_receive", "-a", address, "-m", "10"))]


def selector(style: str, base: str) -> Results:
    """Example 3.10: only the green messages come out."""
    address = f"{base}/ex-selector-{style}"
    colours = ["green", "red", "green", "blue", "green"]
    pe.send_many(address, [pe.Message(f"{c} {n}", properties={"colour": c})
                           for n, c in enumerate(colours)])
    return [run(example(style, "selector", "-a", address, "-m", "3"))]


def server_and_client(style: str, base: str) -> Results:
    """Examples 3.6 and 3.7: the server upper-cases what the client sends; Ctrl-C stops it."""
    address = f"{base}/ex-service-{style}"
    server = popen(example(style, "server", "-a", address))
    try:
        assert server.stdout is not None
        listening = server.stdout.readline()  # printed before it connects: ready enough, as
        client = run(example(style, "client", "-a", address))  # requests wait in the queue
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    return [subprocess.CompletedProcess(server.args, server.returncode, listening + out, err),
            client]


def transactions(style: str, base: str) -> Results:
    """Examples 3.8 and 3.9: 10 messages in transactions of 4, then received in batches of 4."""
    address = f"{base}/ex-tx-{style}"
    return [run(example(style, "tx_send", "-a", address, "-m", "10", "-b", "4")),
            run(example(style, "tx_receive", "-a", address, "-m", "10", "-b", "4"))]


def tls_send(style: str, broker: Any) -> Results:
    """Example 3.5: over TLS, trusting the test CA; then with a client certificate (EXTERNAL)."""
    certs = broker.certs
    server_auth = [run(example(style, "tls_send", "-a", f"{broker.tls_url}/ex-tls-{style}",
                               "-m", "5", "--ca", str(certs.ca)))]
    mutual = [run(example(style, "tls_send", "-a", f"{broker.mutual_tls_url}/ex-mtls-{style}",
                          "-m", "5", "--ca", str(certs.ca), "--cert", str(certs.client_cert),
                          "--key", str(certs.client_key), "--key-password",
                          certs.client_key_password))]
    return server_auth + mutual


def default_address(style: str, base: str) -> Results:
    """With no -a, the examples use $PROTON_EASY_URL + "/examples"."""
    return [run(example(style, "send", "-m", "2"), PROTON_EASY_URL=base),
            run(example(style, "receive", "-m", "2"), PROTON_EASY_URL=base)]


SCENARIOS: Dict[str, Callable[[str, str], Results]] = {
    "send_then_receive": send_then_receive,
    "best_effort": best_effort,
    "selector": selector,
    "server_and_client": server_and_client,
    "transactions": transactions,
}


@pytest.fixture(scope="module")
def example_runs(amqp_url: str, artemis_tls: Any) -> Dict[Tuple[str, str], Results]:
    """Every scenario in both styles, run in parallel against the session's brokers."""
    jobs: Dict[Tuple[str, str], Callable[[], Results]] = {}
    for style in STYLES:
        for name, fn in SCENARIOS.items():
            jobs[name, style] = functools.partial(fn, style, amqp_url)
        jobs["tls_send", style] = functools.partial(tls_send, style, artemis_tls)
    jobs["demo", "-"] = lambda: [run([sys.executable, str(ROOT / "examples" / "demo.py")],
                                     PROTON_EASY_URL=amqp_url)]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {key: pool.submit(job) for key, job in jobs.items()}
        return {key: fut.result() for key, fut in futures.items()}


def ok(results: Results) -> List[str]:
    """Assert every step exited 0 without a traceback; return each step's stdout lines."""
    for proc in results:
        assert proc.returncode == 0, describe(proc)
        assert "Traceback" not in proc.stderr, describe(proc)
    return [proc.stdout.splitlines() for proc in results]


@pytest.mark.parametrize("style", STYLES)
def test_send_then_receive(example_runs: Dict, style: str) -> None:
    sent, received = ok(example_runs["send_then_receive", style])
    assert sent == ["all messages confirmed"]
    assert received == SEQUENCES


@pytest.mark.parametrize("style", STYLES)
def test_best_effort_send_then_receive(example_runs: Dict, style: str) -> None:
    sent, received = ok(example_runs["best_effort", style])
    assert sent == ["all messages sent"]
    assert received == SEQUENCES


@pytest.mark.parametrize("style", STYLES)
def test_tls_send(example_runs: Dict, style: str, artemis_tls: Any) -> None:
    server_auth, mutual = ok(example_runs["tls_send", style])
    assert server_auth == mutual == ["all messages confirmed"]
    for base, name in ((artemis_tls.tls_url, "tls"), (artemis_tls.mutual_tls_url, "mtls")):
        tls = artemis_tls.client_tls(client_cert=name == "mtls")
        got = pe.receive(f"{base}/ex-{name}-{style}", count=5, timeout=10, tls=tls)
        assert [m.body for m in got] == [{"sequence": n} for n in range(1, 6)]


@pytest.mark.parametrize("style", STYLES)
def test_selector(example_runs: Dict, style: str) -> None:
    (received,) = ok(example_runs["selector", style])
    assert received == ["green 0", "green 2", "green 4"]


@pytest.mark.parametrize("style", STYLES)
def test_transactional_send_then_receive(example_runs: Dict, style: str) -> None:
    sent, received = ok(example_runs["transactions", style])
    assert sent == ["all messages committed"]
    assert received == SEQUENCES


def test_demo(example_runs: Dict) -> None:
    """examples/demo.py, what `make demo` runs."""
    (out,) = ok(example_runs["demo", "-"])
    assert out[0] == "sent 3 messages to the queue demo"
    assert "request 'hello' -> reply 'HELLO'" in out
    assert "  the queue demo-tx holds ['tx-1', 'tx-2']" in out
    assert out[-1] == "demo done"


POEM = ["Twas brillig, and the slithy toves", "Did gire and gymble in the wabe.",
        "All mimsy were the borogroves,", "And the mome raths outgrabe."]


@pytest.mark.parametrize("style", STYLES)
def test_server_and_client(example_runs: Dict, style: str, amqp_url: str) -> None:
    server, client = ok(example_runs["server_and_client", style])
    assert client == [f"{line} => {line.upper()}" for line in POEM]
    host_port = amqp_url.rsplit("@", 1)[1]
    assert server[0] == f"Listening on {host_port}/ex-service-{style}"
    assert len(server) == 1 + len(POEM)
    for line, request in zip(server[1:], POEM):
        assert line.startswith("Received Message(body=" + repr(request))


def test_default_address_comes_from_proton_easy_url(amqp_url: str) -> None:
    for style in STYLES:
        sent, received = ok(default_address(style, amqp_url))
        assert sent == ["all messages confirmed"]
        assert received == SEQUENCES[:2]


@pytest.mark.parametrize("style", STYLES)
def test_receive_runs_until_ctrl_c_with_zero(amqp_url: str, amqp_address: str,
                                             style: str) -> None:
    """-m 0 receives indefinitely, like the seed; Ctrl-C ends it quietly."""
    address = f"{amqp_url}/{amqp_address}"
    pe.send_many(address, [{"sequence": n} for n in (1, 2)])
    proc = popen(example(style, "receive", "-a", address, "-m", "0"))
    seen: List[str] = []
    both = threading.Event()

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            seen.append(line.rstrip("\n"))
            if len(seen) == 2:
                both.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert both.wait(30), seen
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(15) == 0
            assert "Traceback" not in proc.stderr.read()  # type: ignore[union-attr]
        except subprocess.TimeoutExpired:
            # Python drops a KeyboardInterrupt that lands in a destructor ("Exception ignored
            # in ..."), rarely, on a busy machine: a second Ctrl-C ends it, as for a user
            proc.send_signal(signal.SIGINT)
            assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert seen == SEQUENCES[:2]
