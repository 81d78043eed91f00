"""Every example of examples/ runs against Artemis and prints what the seed's version prints.

Each seed example exists twice, as a subclass of a proton_easy.handlers class
(examples/handlers/) and as a script of one-line calls (examples/oneline/). The scenarios run
as subprocesses, all at once, against the session's broker; each test checks one of them.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Tuple

import pytest

import proton_easy as pe

from .procs import ROOT, describe, env, run

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
    server = subprocess.Popen(example(style, "server", "-a", address), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env())
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
def example_runs(amqp_url: str) -> Dict[Tuple[str, str], Results]:
    """Every scenario in both styles, run in parallel against the session's broker."""
    jobs = {(name, style): (fn, style) for name, fn in SCENARIOS.items() for style in STYLES}
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {key: pool.submit(fn, style, amqp_url) for key, (fn, style) in jobs.items()}
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
def test_selector(example_runs: Dict, style: str) -> None:
    (received,) = ok(example_runs["selector", style])
    assert received == ["green 0", "green 2", "green 4"]


@pytest.mark.parametrize("style", STYLES)
def test_transactional_send_then_receive(example_runs: Dict, style: str) -> None:
    sent, received = ok(example_runs["transactions", style])
    assert sent == ["all messages committed"]
    assert received == SEQUENCES


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
    proc = subprocess.Popen(example(style, "receive", "-a", address, "-m", "0"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
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
        assert proc.wait(30) == 0
        assert "Traceback" not in proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert seen == SEQUENCES[:2]
