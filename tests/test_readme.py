"""Every code block of README.md runs, as written, against a real Artemis.

A block's broker addresses (``localhost:5672``, ``broker.example:5671``) are pointed at this
test's brokers, and nothing else of it is changed; fragments that use a name defined in an
earlier block (``url``, ``key_password``) get it from a short prelude. A block that is not code
to run (a synopsis, the commands that run this very suite) says so in the README itself, on the
line before it: ``<!-- not run: why -->``. A new block that is neither run here nor marked
fails :func:`test_every_block_is_run_or_says_why_not`.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

import proton_easy as pe
from proton_easy.testing import QUICK_START_JAVA_OPTIONS, ArtemisBroker

from .procs import ROOT, popen

README = ROOT / "README.md"
LOCAL = "amqp://admin:admin@localhost:5672"
QUEUES = ("examples", "orders", "shipped", "service")


@dataclass
class Block:
    lang: str
    text: str
    line: int
    not_run: Optional[str]


def blocks() -> List[Block]:
    """The README's fenced code blocks that have a language (python, sh)."""
    found: List[Block] = []
    lines = README.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start, body = i, []
        i += 1
        while not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1
        marker = re.match(r"^<!-- not run: (.+) -->$", lines[start - 1]) if start else None
        if m.group(1):
            found.append(Block(m.group(1), "\n".join(body) + "\n", start + 1,
                               marker.group(1) if marker else None))
    return found


# Each run block, by a line that only it has; its test below.
RUN = {
    "quickstart": "pe.send(url, {\"sequence\": 1})",
    "consume_with": "with pe.consume(url, idle_timeout=5) as messages:",
    "message_fields": "msg = pe.Message({\"id\": 7}",
    "client": "with pe.Client(\"amqp://admin:admin@localhost:5672\", timeout=10) as client:",
    "tls_three_cases": "# 1. Server authentication",
    "tls_test_broker": "with ArtemisBroker(tls=True) as broker:",
    "handler_classes": "class Send(Sender):",
    "request_reply": "pe.serve(\"amqp://admin:admin@localhost:5672/service\"",
    "transactions": "with pe.transaction(\"amqp://admin:admin@localhost:5672/orders\") as tx:",
    "topics": 'prices = "amqp://admin:admin@localhost:5672/topic://prices"',
    "cli": "proton-easy broker &",
    "examples_run": "python -m proton_easy.testing run -- sh -c",
    "plugin_test": "def test_order_is_processed(amqp_url, amqp_address):",
    "broker_outside_pytest": "with ArtemisBroker(queues=[\"orders\"]) as broker:",
    "strict_broker": "def strict_broker(artemis_module_factory):",
    "asyncio": "async def upper(msg):",
    "async_plugin_test": "async def test_order_is_sent(amqp_url, amqp_address):",
    "opentelemetry": "provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))",
}


def block(name: str) -> Block:
    (found,) = [b for b in blocks() if RUN[name] in b.text]
    return found


def test_every_block_is_run_or_says_why_not() -> None:
    for b in blocks():
        claimed = [name for name, key in RUN.items() if key in b.text]
        if b.not_run:
            assert not claimed, f"README.md:{b.line} is marked not run but run by {claimed}"
        else:
            assert len(claimed) == 1, (
                f"README.md:{b.line} ({b.lang}) is run by no test here (or by several: "
                f"{claimed}): add it to RUN, or mark it <!-- not run: why -->")
    assert len(RUN) == len({key for key in RUN.values()})


# -- brokers and running ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def broker(artemis_module_factory: Any) -> ArtemisBroker:
    """The README's broker: admin/admin, reached as localhost:5672 in the blocks."""
    return artemis_module_factory(user="admin", password="admin")


@pytest.fixture(scope="module")
def tls_broker(artemis_module_factory: Any) -> ArtemisBroker:
    """The TLS section's broker: app/secret, reached as broker.example:5671 in the blocks."""
    return artemis_module_factory(user="app", password="secret", tls=True)


def local(text: str, broker: ArtemisBroker) -> str:
    """Point a block at the test broker: ``localhost:5672`` is its AMQP port on 127.0.0.1."""
    return text.replace("@localhost:5672", f"@127.0.0.1:{broker.port}").replace(
        " localhost:5672", f" 127.0.0.1:{broker.port}")


def run_block(name: str, broker: ArtemisBroker, prelude: str = "",
              namespace: Optional[Dict[str, Any]] = None, text: Optional[str] = None) -> \
        Dict[str, Any]:
    b = block(name)
    code = local(text if text is not None else b.text, broker)
    ns: Dict[str, Any] = {"pe": pe, "__name__": f"readme_{name}"}
    ns.update(namespace or {})
    if prelude:
        exec(compile(local(prelude, broker), f"prelude of README.md:{b.line}", "exec"), ns)
    exec(compile(code, f"README.md:{b.line}", "exec"), ns)
    return ns


def left_on(broker: ArtemisBroker, queue: str) -> List[Any]:
    return [m.body for m in pe.receive(broker.address_url(queue), count=1000, timeout=1)]


@pytest.fixture
def clean(broker: ArtemisBroker) -> Iterator[None]:
    """Each test starts and ends with the README's queues empty."""
    yield
    for queue in QUEUES:
        left_on(broker, queue)


def shell(script: str, broker: Optional[ArtemisBroker] = None,
          timeout: float = 120) -> subprocess.CompletedProcess:
    bindir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if k != "PROTON_EASY_URL"}
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=timeout)


# -- the blocks -------------------------------------------------------------------------------
def test_quickstart(broker: ArtemisBroker, clean: None, capsys: Any) -> None:
    b = block("quickstart")
    run_block("quickstart", broker, text=b.text.replace("idle_timeout=5", "idle_timeout=2"))
    printed = capsys.readouterr().out.splitlines()
    assert printed == [str({"sequence": n}) for n in range(1, 101)]  # 10 received, 90 consumed
    assert left_on(broker, "examples") == []


def test_consume_as_a_context_manager(broker: ArtemisBroker, clean: None) -> None:
    ns = run_block("consume_with", broker, prelude=(
        "import itertools\n"
        "url = 'amqp://admin:admin@localhost:5672/examples'\n"
        "pe.send_many(url, ['one', 'two', 'three'])\n"))
    assert ns["first_two"] == ["one", "two"]
    assert left_on(broker, "examples") == ["three"]  # both taken, the third left


def test_message_fields_and_selector(broker: ArtemisBroker, clean: None) -> None:
    ns = run_block("message_fields", broker,
                   prelude="url = 'amqp://admin:admin@localhost:5672/examples'\n")
    got = ns["got"]
    assert got.body == {"id": 7} and got.properties == {"colour": "green"}
    assert got.subject == "order" and got.correlation_id == "c-1" and got.durable
    assert left_on(broker, "examples") == []


def test_client(broker: ArtemisBroker, clean: None, capsys: Any) -> None:
    ns = run_block("client", broker)
    assert [m.body for m in ns["orders"]] == [{"id": 1}]
    assert capsys.readouterr().out.splitlines() == [str({"id": 2})]
    assert left_on(broker, "orders") == []


def test_tls_three_cases(tls_broker: ArtemisBroker, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    certs = tls_broker.certs
    shutil.copy(certs.ca, tmp_path / "ca.pem")
    shutil.copy(certs.client_cert, tmp_path / "client-cert.pem")
    shutil.copy(certs.client_key, tmp_path / "client-key.pem")
    monkeypatch.chdir(tmp_path)  # the block names ca.pem, client-cert.pem, client-key.pem
    text = block("tls_three_cases").text.replace(
        "amqps://app:secret@broker.example:5671", f"amqps://app:secret@localhost:"
                                                  f"{tls_broker.tls_port}").replace(
        "amqps://broker.example:5671", f"amqps://localhost:{tls_broker.mutual_tls_port}")
    run_block("tls_three_cases", tls_broker, text=text,
              namespace={"key_password": certs.client_key_password})
    got = pe.receive(tls_broker.address_url("orders"), count=10, timeout=2)
    assert [m.body for m in got] == [{"id": 1}] * 3


def test_tls_test_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    quick = functools.partial(ArtemisBroker, java_options=QUICK_START_JAVA_OPTIONS)
    ns: Dict[str, Any] = {"pe": pe, "ArtemisBroker": quick}
    b = block("tls_test_broker")
    exec(compile(b.text, f"README.md:{b.line}", "exec"), ns)
    assert not ns["broker"].running


def test_handler_classes(broker: ArtemisBroker, clean: None, capsys: Any) -> None:
    run_block("handler_classes", broker)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "all messages confirmed"
    assert printed[1:] == [str({"sequence": n}) for n in range(1, 101)]


def test_request_reply(broker: ArtemisBroker, clean: None) -> None:
    # The block's server runs until Ctrl-C: it runs here as a process of its own, and gets one.
    text = local(block("request_reply").text, broker)
    server, client = text.split("# client:", 1)
    proc = popen([sys.executable, "-c", server])
    try:
        run_block("request_reply", broker, text="# client:" + client)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err, err  # what the README says


def test_transactions(broker: ArtemisBroker, clean: None) -> None:
    run_block("transactions", broker, prelude=(
        "pe.send_many('amqp://admin:admin@localhost:5672/orders', range(10))\n"))
    assert left_on(broker, "shipped") == list(range(10))
    assert left_on(broker, "orders") == ["a"]  # "b" was aborted


def test_topics(broker: ArtemisBroker, clean: None, capsys: Any) -> None:
    run_block("topics", broker)
    assert capsys.readouterr().out == ""  # nothing was published on the topic
    assert left_on(broker, "orders") == []  # both messages are held by the broker
    got = pe.receive(broker.address_url("orders"), timeout=8)
    assert [m.body for m in got] == ["later"]  # after its 5 s; "at nine" waits till tomorrow


def test_cli(broker: ArtemisBroker, clean: None) -> None:
    lines = local(block("cli").text, broker).splitlines()
    assert lines[0].startswith("proton-easy broker &")  # the test's broker stands in for it
    script = "set -e\n" + "\n".join(lines[1:]) + "\nkill $!\n"
    proc = shell(script)
    out = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stderr
    received = [json.loads(line)["content"] for line in out if line.startswith("{")]
    assert received == ["order 0", "order 1", "order 2"], proc.stdout  # receive --log-msgs json
    assert out[-1] == "HELLO" and "hello" in out, proc.stdout  # the reply; serve's log of it


def test_examples_run_against_a_broker_of_their_own() -> None:
    proc = shell(block("examples_run").text, timeout=180)
    assert proc.returncode == 0, proc.stderr
    bodies = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert bodies == [str({"sequence": n}) for n in range(1, 6)], proc.stdout


def test_plugin_examples(broker: ArtemisBroker, tmp_path: Path) -> None:
    # The testing plugin's blocks are pytest tests: they run in a pytest of their own (the
    # session broker is this one, through PROTON_EASY_TEST_URL; the strict broker is started).
    source = block("plugin_test").text + "\n\n" + block("strict_broker").text
    (tmp_path / "test_readme_plugin.py").write_text(source)
    env = {k: v for k, v in os.environ.items() if k != "PROTON_EASY_URL"}
    env["PROTON_EASY_TEST_URL"] = broker.url
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout, proc.stdout


def test_asyncio(broker: ArtemisBroker, clean: None, capsys: Any) -> None:
    run_block("asyncio", broker)
    printed = capsys.readouterr().out.splitlines()
    assert printed == [str({"sequence": n}) for n in range(21, 101)]  # 10 received, 10 consumed
    assert left_on(broker, "examples") == ["a", "b"]


def test_plugin_async_example(broker: ArtemisBroker, tmp_path: Path) -> None:
    (tmp_path / "test_readme_async.py").write_text(block("async_plugin_test").text)
    env = {k: v for k, v in os.environ.items() if k != "PROTON_EASY_URL"}
    env["PROTON_EASY_TEST_URL"] = broker.url
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout, proc.stdout


def test_opentelemetry(broker: ArtemisBroker, clean: None) -> None:
    # in a process of its own: the block sets OpenTelemetry's global tracer provider
    out = subprocess.run([sys.executable, "-c", local(block("opentelemetry").text, broker)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    decoder, text, spans = json.JSONDecoder(), out.stdout, []
    while text.strip():
        text = text.lstrip()
        if text.startswith("{"):
            span, end = decoder.raw_decode(text)
            spans.append(span)
            text = text[end:]
        else:
            line, _, text = text.partition("\n")
            assert line == "shipping {'order': 1}"
    assert sorted(s["name"] for s in spans) == ["checkout", "process orders", "send orders",
                                                "settle orders", "ship"]
    assert len({s["context"]["trace_id"] for s in spans}) == 1


def test_broker_outside_pytest(capsys: Any) -> None:
    quick = functools.partial(ArtemisBroker, java_options=QUICK_START_JAVA_OPTIONS)
    b = block("broker_outside_pytest")
    text = b.text.replace("from proton_easy.testing import ArtemisBroker\n", "")
    ns: Dict[str, Any] = {"ArtemisBroker": quick}
    exec(compile(text, f"README.md:{b.line}", "exec"), ns)
    out = capsys.readouterr().out
    assert re.match(r"amqp://admin:\S+@127\.0\.0\.1:\d+\n", out), out
    assert "AMQ221007" in out or "Server is now active" in out  # the log tail
    assert not ns["broker"].running


def test_blocks_say_nothing_that_needs_a_placeholder() -> None:
    for b in blocks():
        if not b.not_run:
            assert "..." not in textwrap.dedent(b.text).replace("# ...", ""), (
                f"README.md:{b.line} has a placeholder (...): it cannot run")
