"""The broker matrix: the same user-facing jobs against ActiveMQ Classic, Qpid Broker-J and
Artemis, each a real broker process on a free loopback port.

Each test is one feature; each broker runs it. Where a broker lacks a feature, the test
asserts the typed error a user gets, and its text. README's "Brokers" table comes from a run
of this module (`pytest -v tests/test_brokers.py`).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable, Dict, Iterator, List

import pytest

import proton_easy as pe
from proton_easy.testing import BrokerJ, ClassicBroker

from .procs import PROTON_EASY, describe, run

BROKERS = ["classic", "broker-j", "artemis"]


@pytest.fixture(scope="module", params=BROKERS)
def broker(request: pytest.FixtureRequest,
           artemis_module_factory: Callable[..., Any]) -> Iterator[Any]:
    """One broker of each kind, shared by this module's tests (each uses its own queues)."""
    if request.param == "artemis":
        yield artemis_module_factory()
        return
    made = ClassicBroker() if request.param == "classic" else BrokerJ()
    made.start()
    try:
        yield made
    finally:
        made.stop()


@pytest.fixture
def queue() -> str:
    """A fresh queue name."""
    return f"matrix-{uuid.uuid4().hex[:10]}"


def kind(broker: Any) -> str:
    return {"ClassicBroker": "classic", "BrokerJ": "broker-j"}.get(type(broker).__name__,
                                                                   "artemis")


def test_send_receive(broker: Any, queue: str) -> None:
    url = broker.address_url(queue)
    pe.send(url, {"n": 1})
    pe.send(url, "two")
    assert [m.body for m in pe.receive(url, count=2, timeout=10)] == [{"n": 1}, "two"]
    assert pe.receive(url, timeout=1) == []


def test_send_many_10000(broker: Any, queue: str) -> None:
    url = broker.address_url(queue)
    assert pe.send_many(url, range(10_000), timeout=60) == 10_000
    got: List[Any] = []
    with pe.Client(url, timeout=30) as client:
        while len(got) < 10_000:
            batch = client.receive(count=1000, timeout=10)
            if not batch:
                break
            got.extend(m.body for m in batch)
    assert sorted(got) == list(range(10_000))


def test_consume_with_a_failing_body_gives_the_message_back(broker: Any, queue: str) -> None:
    url = broker.address_url(queue)
    pe.send(url, "fragile")
    with pytest.raises(RuntimeError, match="the loop body failed"):
        for _msg in pe.consume(url, idle_timeout=5):
            raise RuntimeError("the loop body failed")
    again = pe.receive(url, timeout=10)
    assert [m.body for m in again] == ["fragile"]
    if kind(broker) == "classic":
        # Classic puts it back but does not count the failed delivery in the header
        assert (again[0].redelivered, again[0].delivery_count) == (False, 0)
    else:
        assert again[0].redelivered and again[0].delivery_count >= 1


def test_selector(broker: Any, queue: str) -> None:
    url = broker.address_url(queue)
    for colour in ("red", "green", "red"):
        pe.send(url, pe.Message(colour, properties={"colour": colour}))
    green = pe.receive(url, count=3, timeout=3, selector="colour = 'green'")
    assert [m.body for m in green] == ["green"]
    assert [m.body for m in pe.receive(url, count=3, timeout=10)] == ["red", "red"]


def test_at_most_once(broker: Any, queue: str) -> None:
    url = broker.address_url(queue)
    assert pe.send_many(url, range(20), at_most_once=True) == 20
    got = pe.receive(url, count=20, timeout=10, at_most_once=True)
    assert [m.body for m in got] == list(range(20))


def test_request_serve(broker: Any, queue: str) -> None:
    url = broker.address_url(queue)
    served: Dict[str, Any] = {}

    def server() -> None:
        try:
            served["count"] = pe.serve(url, lambda msg: msg.body.upper(), count=2, timeout=20)
        except BaseException as exc:  # noqa: BLE001 - checked below
            served["error"] = exc

    thread = threading.Thread(target=server, daemon=True)
    thread.start()
    try:
        assert pe.request(url, "hello", timeout=15).body == "HELLO"
        assert pe.request(url, "again", timeout=15).body == "AGAIN"
    finally:
        thread.join(30)
    assert served == {"count": 2}


def test_transactions(broker: Any, queue: str) -> None:
    url = broker.address_url(queue)
    with pe.transaction(url) as tx:
        tx.send("a")
        tx.send("b")
    with pytest.raises(ZeroDivisionError):
        with pe.transaction(url) as tx:
            tx.send("aborted")
            1 / 0  # noqa: B018
    with pe.transaction(url) as tx:
        got = tx.receive(count=2, timeout=10)
    assert [m.body for m in got] == ["a", "b"]
    assert pe.receive(url, timeout=1) == []


def test_topic_two_subscribers(broker: Any, queue: str) -> None:
    """Both subscribers get the one message. Broker-J has no topic:// (it would be a queue
    there): its topics are exchanges, ``amq.topic/<routing key>``."""
    topic = f"amq.topic/{queue}" if kind(broker) == "broker-j" else f"topic://{queue}"
    url = broker.address_url(topic)
    results: Dict[int, Any] = {}
    ready = threading.Barrier(3, timeout=30)

    def subscriber(n: int) -> None:
        with pe.Client(url, timeout=15) as client:
            with client.consume(idle_timeout=10) as messages:
                ready.wait()
                results[n] = [m.body for m in messages]

    threads = [threading.Thread(target=subscriber, args=(n,), daemon=True) for n in (1, 2)]
    for thread in threads:
        thread.start()
    ready.wait()
    # a topic keeps nothing for late subscribers: give both receivers' attaches time to
    # reach the broker (a generous margin, not a measurement)
    time.sleep(2)
    pe.send(url, "news")
    for thread in threads:
        thread.join(30)
    assert results == {1: ["news"], 2: ["news"]}


def test_durable_message_survives_a_restart(broker: Any, queue: str) -> None:
    url = broker.address_url(queue)
    pe.send(url, "kept", durable=True)
    broker.restart()
    assert [m.body for m in pe.receive(url, timeout=15)] == ["kept"]


def test_wrong_password(broker: Any, queue: str) -> None:
    bad = f"amqp://{broker.user}:not-the-password@{broker.host}:{broker.port}/{queue}"
    with pytest.raises(pe.AuthenticationError) as info:
        pe.send(bad, "x", timeout=10)
    assert "not-the-password" not in str(info.value)


def test_cli_send_receive(broker: Any, queue: str) -> None:
    url = broker.address_url(queue)
    sent = run(PROTON_EASY + ["send", "-b", url, "-c", "3", "--msg-content", "cli %d"])
    assert sent.returncode == 0, describe(sent)
    got = run(PROTON_EASY + ["receive", "-b", url, "-c", "3", "--log-msgs", "body"])
    assert got.returncode == 0, describe(got)
    assert got.stdout.split("\n")[:3] == ["cli 0", "cli 1", "cli 2"]


def test_one_client_four_threads(broker: Any, queue: str) -> None:
    url = broker.address_url(queue)
    errors: List[BaseException] = []
    with pe.Client(url, timeout=30) as client:
        def work(n: int) -> None:
            try:
                for i in range(100):
                    client.send(None, f"{n}-{i}")
            except BaseException as exc:  # noqa: BLE001 - checked below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert errors == []
        got: List[Any] = []
        while len(got) < 400:
            batch = client.receive(count=400 - len(got), timeout=10)
            if not batch:
                break
            got.extend(m.body for m in batch)
    assert sorted(got) == sorted(f"{n}-{i}" for n in range(4) for i in range(100))
