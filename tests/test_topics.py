"""Topics done properly, against Artemis: durable and shared subscriptions (Qpid JMS's AMQP
mapping, checked against Artemis's own JMS client), unsubscribe, browsing, scheduled delivery,
message groups and priority.

Every test runs on one broker of this module (one test restarts it); the broker's queues are
read through its management address, so "the subscription is gone" means the broker says so.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List

import pytest

import proton_easy as pe
from proton_easy.handlers import Receiver, Unsubscriber
from proton_easy.testing import ArtemisBroker
from proton_easy.testing._distribution import artemis_home

NOWHERE = "amqp://admin:pw@127.0.0.1:1"  # nothing listens: an argument check that did I/O fails


@pytest.fixture(scope="module")
def broker(artemis_module_factory: Any) -> ArtemisBroker:
    b: ArtemisBroker = artemis_module_factory()
    return b


def manage(broker: ArtemisBroker, resource: str, **props: str) -> Any:
    """Ask the broker's management address; the decoded JSON answer (raises if it failed)."""
    msg = pe.Message("[]", properties={"_AMQ_ResourceName": resource, **props})
    reply = pe.request(broker.url + "/activemq.management", msg, timeout=10)
    assert reply.properties.get("_AMQ_OperationSucceeded"), reply.body
    return json.loads(reply.body)[0]


def queue_names(broker: ArtemisBroker) -> List[str]:
    names: List[str] = manage(broker, "broker", _AMQ_OperationName="getQueueNames")
    return names


def consumers_on(broker: ArtemisBroker, queue: str) -> int:
    try:
        return int(manage(broker, f"queue.{queue}", _AMQ_Attribute="consumerCount"))
    except AssertionError:
        return 0  # not created yet


def wait_for_consumers(broker: ArtemisBroker, queue: str, n: int, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while consumers_on(broker, queue) < n:
        assert time.monotonic() < deadline, f"{queue} never had {n} consumers"
        time.sleep(0.1)


def bodies(messages: List[pe.Message]) -> List[Any]:
    return [m.body for m in messages]


# -- durable subscriptions ---------------------------------------------------------------------
def test_durable_subscriber_gets_what_was_published_while_away(broker: ArtemisBroker) -> None:
    topic = broker.url + "/topic://prices-durable"
    # subscribe (nothing there yet), then go away: the link is detached, not closed
    assert pe.receive(topic, timeout=0.2, subscription="audit", durable=True,
                      container_id="auditor") == []
    assert "auditor.audit" in queue_names(broker)   # Artemis's name: client id . subscription
    assert pe.send_many(topic, list(range(100))) == 100
    got = pe.receive(topic, 100, timeout=10, subscription="audit", durable=True,
                     container_id="auditor")
    assert bodies(got) == list(range(100))            # all of them, in order
    # consume too, and a Client that comes back twice on one connection
    pe.send_many(topic, ["a", "b"])
    with pe.Client(broker.url, container_id="auditor") as client:
        with client.consume("topic://prices-durable", idle_timeout=2, subscription="audit",
                            durable=True) as messages:
            assert [m.body for m in messages] == ["a", "b"]
        client.send("topic://prices-durable", "c")
        assert bodies(client.receive("topic://prices-durable", 5, timeout=1,
                                     subscription="audit", durable=True)) == ["c"]
        client.unsubscribe("topic://prices-durable", "audit")


def test_plain_topic_receiver_still_misses_what_it_was_not_there_for(
        broker: ArtemisBroker) -> None:
    topic = broker.url + "/topic://prices-plain"
    assert pe.receive(topic, timeout=0.2) == []
    pe.send(topic, "nobody listens")
    assert pe.receive(topic, timeout=0.5) == []


def test_unsubscribe_deletes_the_subscription_and_its_messages(broker: ArtemisBroker) -> None:
    topic = broker.url + "/topic://prices-unsub"
    pe.receive(topic, timeout=0.2, subscription="gone", durable=True, container_id="u1")
    pe.send_many(topic, [1, 2, 3])
    assert "u1.gone" in queue_names(broker)
    pe.unsubscribe(topic, "gone", container_id="u1")
    assert "u1.gone" not in queue_names(broker)       # the broker's queue is gone
    with pytest.raises(pe.NotFound, match="gone"):
        pe.unsubscribe(topic, "gone", container_id="u1")
    # subscribing again starts afresh: the three messages went with the old one
    assert pe.receive(topic, 3, timeout=0.5, subscription="gone", durable=True,
                      container_id="u1") == []
    pe.unsubscribe(topic, "gone", container_id="u1")
    # the handler style, run like the seed's handlers
    from proton.reactor import Container
    pe.receive(topic, timeout=0.2, subscription="h", durable=True, container_id="u2")
    assert "u2.h" in queue_names(broker)
    Container(Unsubscriber(topic, subscription="h", container_id="u2")).run()
    assert "u2.h" not in queue_names(broker)


# -- shared subscriptions ----------------------------------------------------------------------
def _collect(url: str, out: List[Any], errors: List[BaseException], **kwargs: Any) -> None:
    try:
        with pe.Client(url) as client:
            for msg in client.consume("topic://work-shared", idle_timeout=3, **kwargs):
                out.append(msg.body)
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)


def test_two_shared_subscribers_split_the_messages(broker: ArtemisBroker) -> None:
    got: Dict[str, List[Any]] = {"a": [], "b": []}
    errors: List[BaseException] = []
    threads = [threading.Thread(target=_collect, args=(broker.url, got[k], errors),
                                kwargs={"subscription": "workers", "shared": True})
               for k in got]
    for t in threads:
        t.start()
    # no client id: a "global" shared volatile subscription, as Qpid JMS names it
    wait_for_consumers(broker, "workers:shared-volatile:global", 2)
    assert pe.send_many(broker.url + "/topic://work-shared", list(range(1000))) == 1000
    for t in threads:
        t.join(60)
    assert not errors
    both = got["a"] + got["b"]
    assert sorted(both) == list(range(1000))          # none lost, none doubled
    assert got["a"] and got["b"]                       # each took its turns
    assert got["a"] == sorted(got["a"]) and got["b"] == sorted(got["b"])


def test_shared_durable_subscription_survives_its_subscribers_and_a_restart(
        broker: ArtemisBroker) -> None:
    topic = broker.url + "/topic://events-shared"
    with pe.Client(broker.url) as one, pe.Client(broker.url) as two:
        for client in (one, two):  # two subscribers attach, then both leave
            assert client.receive("topic://events-shared", timeout=0.2, subscription="keep",
                                  durable=True, shared=True) == []
    assert "keep:global" in queue_names(broker)
    assert pe.send_many(topic, [{"n": n} for n in range(20)]) == 20   # durable by default
    broker.restart()
    first = pe.receive(topic, 10, timeout=10, subscription="keep", durable=True, shared=True)
    second = pe.receive(topic, 10, timeout=10, subscription="keep", durable=True, shared=True)
    assert bodies(first) + bodies(second) == [{"n": n} for n in range(20)]
    pe.unsubscribe(topic, "keep")
    assert "keep:global" not in queue_names(broker)


def test_shared_durable_with_a_client_id_and_two_subscribers_on_one_connection(
        broker: ArtemisBroker) -> None:
    with pe.Client(broker.url, container_id="svc") as client:
        assert client.receive("topic://events-svc", timeout=0.2, subscription="s",
                              durable=True, shared=True) == []   # made; kept once it leaves
        c1 = client.consume("topic://events-svc", idle_timeout=2, subscription="s",
                            durable=True, shared=True, window=1)
        c2 = client.consume("topic://events-svc", idle_timeout=2, subscription="s",
                            durable=True, shared=True, window=1)
        client.send_many("topic://events-svc", ["x", "y"])
        got = [next(c1).body, next(c2).body]   # link names s and s|2: one subscription
        c1.close()
        c2.close()
        assert sorted(got) == ["x", "y"]
        assert "svc.s" in queue_names(broker)
        client.unsubscribe("topic://events-svc", "s")
    assert "svc.s" not in queue_names(broker)


# -- the handler style --------------------------------------------------------------------------
def test_receiver_handler_with_a_durable_subscription(broker: ArtemisBroker) -> None:
    from proton.reactor import Container

    url = broker.url + "/topic://handler-durable"
    first = Receiver(url, count=1, timeout=0.3, subscription="h", durable=True,
                     container_id="hc")
    Container(first).run()
    pe.send_many(url, ["p", "q"])
    again = Receiver(url, count=2, subscription="h", durable=True, container_id="hc")
    Container(again).run()
    assert bodies(again.messages) == ["p", "q"]
    pe.unsubscribe(url, "h", container_id="hc")


# -- browsing ------------------------------------------------------------------------------------
def test_browse_looks_without_taking(broker: ArtemisBroker) -> None:
    queue = broker.url + "/browse-me"
    msgs = [pe.Message(n, properties={"even": n % 2 == 0}) for n in range(50)]
    assert pe.send_many(queue, msgs) == 50
    assert bodies(pe.browse(queue)) == list(range(50))
    assert bodies(pe.browse(queue, 5)) == list(range(5))
    assert bodies(pe.browse(queue, selector="even = true")) == list(range(0, 50, 2))
    with pe.Client(broker.url) as client:
        assert len(client.browse("browse-me")) == 50
    from proton.reactor import Container
    browser = Receiver(queue, count=0, browse=True, drain=True)
    Container(browser).run()
    assert len(browser.messages) == 50
    assert bodies(pe.receive(queue, 50, timeout=10)) == list(range(50))  # all still there
    assert pe.browse(queue) == []


# -- scheduled delivery --------------------------------------------------------------------------
def test_delay_holds_the_message(broker: ArtemisBroker) -> None:
    queue = broker.url + "/later"
    sent = time.monotonic()
    pe.send(queue, "in two seconds", delay=2)
    assert pe.receive(queue, timeout=1.5) == []        # not before 2 s
    got = pe.receive(queue, timeout=10)
    assert bodies(got) == ["in two seconds"]
    assert time.monotonic() - sent >= 2.0 - 0.05


def test_delivery_time_and_send_many_delay(broker: ArtemisBroker) -> None:
    queue = broker.url + "/later-many"
    with pe.Client(broker.url) as client:
        client.send("later-many", pe.Message("at", delivery_time=time.time() + 2))
        client.send_many("later-many", ["d1", "d2"], delay=2)
        client.send("later-many", "now")
        assert bodies(client.receive("later-many", 4, timeout=1)) == ["now"]
        assert sorted(bodies(client.receive("later-many", 3, timeout=10))) == ["at", "d1", "d2"]
    assert pe.receive(queue, timeout=0.2) == []


# -- groups and priority -------------------------------------------------------------------------
def test_group_goes_to_one_consumer_while_it_lives(broker: ArtemisBroker) -> None:
    got: Dict[str, List[pe.Message]] = {"a": [], "b": []}
    errors: List[BaseException] = []

    def collect(key: str) -> None:
        try:
            with pe.Client(broker.url) as client:
                got[key].extend(client.consume("grouped", idle_timeout=3, window=1))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    pe.send(broker.url + "/grouped", "warm-up")        # creates the anycast queue
    assert bodies(pe.receive(broker.url + "/grouped")) == ["warm-up"]
    threads = [threading.Thread(target=collect, args=(k,)) for k in got]
    for t in threads:
        t.start()
    wait_for_consumers(broker, "grouped", 2)
    msgs = [pe.Message(f"{g}{n}", group_id=g) for n in range(10) for g in ("red", "blue")]
    assert pe.send_many(broker.url + "/grouped", msgs) == 20
    for t in threads:
        t.join(60)
    assert not errors
    for key, messages in got.items():
        for group in ("red", "blue"):
            mine = [m.body for m in messages if m.group_id == group]
            other = [m.body for k, ms in got.items() if k != key for m in ms
                     if m.group_id == group]
            assert not (mine and other), f"group {group} went to both consumers"
    assert sorted(m.body for ms in got.values() for m in ms) == sorted(m.body for m in msgs)


def test_higher_priority_first_when_messages_wait(broker: ArtemisBroker) -> None:
    queue = broker.url + "/prioritised"
    order = [3, 9, 0, 5, 7, 1]
    pe.send_many(queue, [pe.Message(f"p{p}", priority=p) for p in order])
    got = pe.receive(queue, len(order), timeout=10)
    assert bodies(got) == [f"p{p}" for p in sorted(order, reverse=True)]


# -- interop with Artemis's own JMS client (Qpid JMS) -------------------------------------------
def artemis_cli(broker: ArtemisBroker, *args: str, timeout: float = 120) -> str:
    """Run the distribution's ``bin/artemis`` JMS client (Qpid JMS) against ``broker``."""
    exe = str(artemis_home() / "bin" / "artemis")
    proc = subprocess.run([exe, *args, "--protocol", "amqp", "--silent",
                           "--url", f"amqp://{broker.host}:{broker.port}",
                           "--user", broker.user, "--password", broker.password],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def jms_subscription(topic: str) -> str:
    """The subscription name ``artemis consumer --durable`` uses (its thread's name)."""
    return f"Consumer {topic}, thread=0"


def test_jms_durable_subscription_seen_by_proton_easy(broker: ArtemisBroker) -> None:
    topic = "interop-jms-made"
    sub = jms_subscription(topic)
    # JMS subscribes durably and takes one message, then leaves (its subscription stays)
    jms = threading.Thread(target=lambda: out.append(artemis_cli(
        broker, "consumer", "--destination", f"topic://{topic}", "--durable",
        "--clientID", "jms-client", "--message-count", "1", "--receive-timeout", "30000")))
    out: List[str] = []
    jms.start()
    wait_for_consumers(broker, f"jms-client.{sub}", 1, limit=60)
    pe.send(broker.url + f"/topic://{topic}", "for jms")
    jms.join(90)
    assert out and "Consumed: 1 messages" in out[0]
    pe.send_many(broker.url + f"/topic://{topic}", [f"while away {n}" for n in range(5)])
    got = pe.receive(broker.url + f"/topic://{topic}", 5, timeout=10, subscription=sub,
                     durable=True, container_id="jms-client")
    assert bodies(got) == [f"while away {n}" for n in range(5)]
    pe.unsubscribe(broker.url + f"/topic://{topic}", sub, container_id="jms-client")
    assert f"jms-client.{sub}" not in queue_names(broker)


def test_proton_easy_durable_subscription_seen_by_jms(broker: ArtemisBroker) -> None:
    topic = "interop-pe-made"
    sub = jms_subscription(topic)
    url = broker.url + f"/topic://{topic}"
    assert pe.receive(url, timeout=0.2, subscription=sub, durable=True,
                      container_id="pe-client") == []
    pe.send_many(url, [f"kept {n}" for n in range(5)])
    out = artemis_cli(broker, "consumer", "--destination", f"topic://{topic}", "--durable",
                      "--clientID", "pe-client", "--message-count", "5",
                      "--receive-timeout", "10000", "--break-on-null", "--verbose")
    assert "Consumed: 5 messages" in out
    assert [f"Received kept {n}" in out for n in range(5)] == [True] * 5
    # JMS accepted them: nothing left for proton_easy
    assert pe.receive(url, timeout=0.5, subscription=sub, durable=True,
                      container_id="pe-client") == []
    pe.unsubscribe(url, sub, container_id="pe-client")


# -- bad input: ValueError before any I/O ---------------------------------------------------------
@pytest.mark.parametrize("call", [
    lambda: pe.receive(NOWHERE + "/orders", subscription="s", durable=True, container_id="c"),
    lambda: pe.receive(NOWHERE + "/topic://t", shared=True),
    lambda: pe.receive(NOWHERE + "/topic://t", durable=True),
    lambda: pe.receive(NOWHERE + "/topic://t", subscription="s"),
    lambda: pe.receive(NOWHERE + "/topic://t", subscription="s", durable=True),
    lambda: pe.consume(NOWHERE + "/topic://t", subscription="a|b", shared=True),
    lambda: pe.consume(NOWHERE + "/orders", subscription="s", shared=True),
    lambda: pe.send(NOWHERE + "/orders", "x", delay=-1),
    lambda: pe.send_many(NOWHERE + "/orders", ["x"], delay=float("nan")),
    lambda: pe.Message("x", delivery_time=-5),
    lambda: pe.browse(NOWHERE + "/topic://t"),
    lambda: Receiver(NOWHERE + "/orders", browse=True, at_most_once=True),
    lambda: Receiver(NOWHERE + "/topic://t", subscription="s", durable=True),
    lambda: Receiver(NOWHERE + "/orders", subscription="s", shared=True),
    lambda: pe.unsubscribe(NOWHERE + "/orders", "s"),
])
def test_bad_input_is_a_value_error_before_any_io(call: Any) -> None:
    with pytest.raises(ValueError):
        call()


@pytest.mark.parametrize("call", [
    lambda: pe.send(NOWHERE + "/orders", "x", delay="soon"),  # type: ignore[arg-type]
    lambda: pe.receive(NOWHERE + "/topic://t", subscription=7,  # type: ignore[arg-type]
                       shared=True),
])
def test_bad_types_are_type_errors_before_any_io(call: Any) -> None:
    with pytest.raises(TypeError):
        call()


def test_link_names_follow_qpid_jms() -> None:
    """The names Qpid JMS gives its subscription links, which Artemis turns into queue names."""
    from proton_easy.handlers._links import Subscription

    conn = type("Conn", (), {})()  # stands for one connection: names are unique on it
    names = {
        "durable, client id": Subscription("s", durable=True, shared=False, client_id="c"),
        "shared durable, client id": Subscription("s", durable=True, shared=True,
                                                  client_id="c"),
        "shared durable, global": Subscription("g", durable=True, shared=True,
                                               client_id=None),
        "shared volatile, client id": Subscription("v", durable=False, shared=True,
                                                   client_id="c"),
        "shared volatile, global": Subscription("w", durable=False, shared=True,
                                                client_id=None),
    }
    got = {k: [sub.link_name(conn), sub.link_name(conn)] for k, sub in names.items()}
    assert got == {
        "durable, client id": ["s", "s"],
        "shared durable, client id": ["s", "s|2"],
        "shared durable, global": ["g|global", "g|global2"],
        "shared volatile, client id": ["v|volatile1", "v|volatile2"],
        "shared volatile, global": ["w|global-volatile1", "w|global-volatile2"],
    }
    assert [s.global_ for s in names.values()] == [False, False, True, False, True]


def test_durable_without_container_id_has_a_hint() -> None:
    with pytest.raises(ValueError, match="container_id"):
        pe.receive(NOWHERE + "/topic://t", subscription="s", durable=True)


# -- the command line ----------------------------------------------------------------------------
def test_command_line_subscriptions_browse_and_delay(broker: ArtemisBroker) -> None:
    from .procs import PROTON_EASY, describe, run

    base = broker.url.split("://", 1)[1]
    sub = ["--link-durable", "--durable-subscriber-name", "cli", "--conn-container-id", "cli-c"]

    def ok(*args: str) -> List[str]:
        proc = run([*PROTON_EASY, *args, "-q"])
        assert proc.returncode == 0, describe(proc)
        lines: List[str] = proc.stdout.splitlines()
        return lines

    assert ok("receive", "-b", f"{base}/topic://cli-topic", "-c", "0", "-t", "0.3", *sub) == []
    ok("send", "-b", f"{base}/topic://cli-topic", "-c", "3", "--msg-content", "m%d")
    assert ok("receive", "-b", f"{base}/topic://cli-topic", "-c", "3", *sub,
              "--subscriber-unsubscribe") == ["m0", "m1", "m2"]
    assert "cli-c.cli" not in queue_names(broker)
    ok("send", "-b", f"{base}/cli-queue", "-c", "2", "--msg-content", "q%d")
    assert ok("receive", "-b", f"{base}/cli-queue", "--recv-browse") == ["q0", "q1"]
    assert ok("receive", "-b", f"{base}/cli-queue") == ["q0", "q1"]
    # a wide margin: the receiving process starts (about a second on a busy machine) inside it
    ok("send", "-b", f"{base}/cli-queue", "--msg-content", "late", "--msg-delay", "6000")
    assert ok("receive", "-b", f"{base}/cli-queue", "-c", "0", "-t", "1.5") == []
    assert ok("receive", "-b", f"{base}/cli-queue", "-c", "1", "-t", "10") == ["late"]
    proc = run([*PROTON_EASY, "receive", "-b", f"{base}/topic://cli-topic", "--link-durable"])
    assert proc.returncode == 1 and "--conn-container-id" in proc.stderr, describe(proc)


# -- the examples, in both styles ------------------------------------------------------------------
def _examples(style: str, base: str) -> Dict[str, List[Any]]:
    """Run this style's topic examples one after the other; each one's stdout lines."""
    from .procs import ROOT, describe, run

    def ex(name: str, *args: str) -> List[str]:
        proc = run([sys.executable, str(ROOT / "examples" / style / f"{name}.py"), *args])
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, describe(proc)
        lines: List[str] = proc.stdout.splitlines()
        return lines

    out: Dict[str, List[Any]] = {}
    topic = f"{base}/topic://ex-news-{style}"
    client = ["-s", "reader", "-c", f"ex-{style}"]
    out["subscribe"] = ex("durable_subscribe", "-a", topic, "-t", "0.3", *client)
    pe.send_many(topic, [f"news {n}" for n in range(3)])
    out["durable"] = ex("durable_subscribe", "-a", topic, "-m", "3", *client, "--unsubscribe")
    jobs = f"{base}/topic://ex-jobs-{style}"
    workers = ["-s", f"workers-{style}"]  # without a client id the name is broker-wide
    out["shared-subscribe"] = ex("shared_subscribe", "-a", jobs, "-t", "0.3", "--durable",
                                 *workers)
    pe.send_many(jobs, [f"job {n}" for n in range(4)])
    out["shared"] = ex("shared_subscribe", "-a", jobs, "-m", "4", "--durable", *workers)
    pe.unsubscribe(jobs, f"workers-{style}")
    queue = f"{base}/ex-browse-{style}"
    pe.send_many(queue, [pe.Message(f"b{n}", properties={"n": n}) for n in range(4)])
    out["browse"] = ex("browse", "-a", queue)
    out["browse-selected"] = ex("browse", "-a", queue, "--selector", "n >= 2", "-m", "1")
    out["after-browse"] = [m.body for m in pe.receive(queue, 10, timeout=1)]
    later = f"{base}/ex-later-{style}"
    out["scheduled"] = ex("scheduled_send", "-a", later, "-m", "2", "-d", "3")
    out["too-soon"] = [m.body for m in pe.receive(later, 2, timeout=0.5)]
    out["later"] = [m.body for m in pe.receive(later, 2, timeout=10)]
    return out


@pytest.fixture(scope="module")
def example_runs(broker: ArtemisBroker) -> Dict[str, Dict[str, List[Any]]]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {style: pool.submit(_examples, style, broker.url)
                   for style in ("handlers", "oneline")}
        return {style: fut.result() for style, fut in futures.items()}


@pytest.mark.parametrize("style", ["handlers", "oneline"])
def test_examples(example_runs: Dict[str, Dict[str, List[Any]]], style: str,
                  broker: ArtemisBroker) -> None:
    out = example_runs[style]
    assert out["subscribe"] == []
    assert out["durable"] == ["news 0", "news 1", "news 2"]
    assert f"ex-{style}.reader" not in queue_names(broker)   # --unsubscribe deleted it
    assert out["shared-subscribe"] == []
    assert out["shared"] == [f"job {n}" for n in range(4)]
    assert out["browse"] == ["b0", "b1", "b2", "b3"]
    assert out["browse-selected"] == ["b2"]
    assert out["after-browse"] == ["b0", "b1", "b2", "b3"]
    assert out["scheduled"] == ["all messages scheduled"]
    assert out["too-soon"] == []
    assert out["later"] == [{"sequence": 1}, {"sequence": 2}]


# -- the same options through proton_easy.aio ----------------------------------------------------
async def test_aio_durable_subscription_keeps_what_was_published_and_unsubscribe_ends_it(
        broker: ArtemisBroker) -> None:
    from proton_easy import aio

    topic = broker.url + "/topic://aio-durable"
    assert await aio.receive(topic, timeout=0.2, subscription="audit", durable=True,
                             container_id="aio-auditor") == []
    assert await aio.send_many(topic, [{"n": n} for n in range(5)]) == 5  # while away
    async with aio.Client(broker.url, container_id="aio-auditor") as client:
        got = [m.body async for m in client.consume("topic://aio-durable", idle_timeout=2,
                                                    subscription="audit", durable=True)]
        assert got == [{"n": n} for n in range(5)]
        assert "aio-auditor.audit" in queue_names(broker)
        await client.unsubscribe("topic://aio-durable", "audit")
    assert "aio-auditor.audit" not in queue_names(broker)
    with pytest.raises(pe.NotFound):
        await aio.unsubscribe(topic, "audit", container_id="aio-auditor")


async def test_aio_shared_subscribers_split_the_messages(broker: ArtemisBroker) -> None:
    from proton_easy import aio

    topic = broker.url + "/topic://aio-shared"

    async def collect() -> List[Any]:
        return [m.body async for m in aio.consume(topic, idle_timeout=3, subscription="w",
                                                  shared=True)]

    tasks = [asyncio.create_task(collect()) for _ in range(2)]
    deadline = time.monotonic() + 30
    while consumers_on(broker, "w:shared-volatile:global") < 2:
        assert time.monotonic() < deadline, "the two shared subscribers never attached"
        await asyncio.sleep(0.1)
    assert await aio.send_many(topic, list(range(200))) == 200
    a, b = await asyncio.gather(*tasks)
    assert sorted(a + b) == list(range(200)) and a and b   # none lost, none doubled, shared


async def test_aio_browse_delay_and_options_checked_before_io(broker: ArtemisBroker) -> None:
    from proton_easy import aio

    queue = broker.url + "/aio-browse"
    assert await aio.send_many(queue, [pe.Message(n, properties={"even": n % 2 == 0})
                                       for n in range(10)]) == 10
    assert bodies(await aio.browse(queue)) == list(range(10))
    async with aio.Client(broker.url) as client:
        assert bodies(await client.browse("aio-browse", 3)) == [0, 1, 2]
        assert bodies(await client.browse("aio-browse", selector="even = true")) == \
            list(range(0, 10, 2))
        assert bodies(await client.receive("aio-browse", 10, timeout=10)) == list(range(10))
        await client.send("aio-browse", "later", delay=1.5)
        await client.send_many("aio-browse", ["later too"], delay=1.5)
        await client.send("aio-browse", "now")
        assert bodies(await client.receive("aio-browse", 3, timeout=1)) == ["now"]
        assert sorted(bodies(await client.receive("aio-browse", 2, timeout=10))) == \
            ["later", "later too"]
    with pytest.raises(ValueError):   # a subscription needs a topic: no I/O to find out
        await aio.receive(NOWHERE + "/plain-queue", subscription="s")
    with pytest.raises(ValueError):
        aio.consume(NOWHERE + "/topic://t", subscription="s", durable=True)  # no container_id
    with pytest.raises(ValueError):
        await aio.send(NOWHERE + "/q", "x", delay=-1)
