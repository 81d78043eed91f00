"""The per-message fast paths: byte-exact encoding, the raw decoder, Client.send's cached sender
links, batched consume acknowledgements, and the benchmark harness (a smoke run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, List

import proton
import pytest

import proton_easy as pe
from proton_easy._engine import codec, wire
from proton_easy._message import Decoder, Message, decode, encode

BODIES: List[Any] = [
    b"", b"x", b"x" * 255, b"x" * 256, b"\x00\xff" * 5000, "", "h", "é" * 200, "h" * 70000,
    None, 0, -1, 2 ** 62, 1.5, True, False, [], {}, [1, "two", b"3", None],
    {"a": [1, 2.5, None, True], "nested": {"bin": b"xy"}},
]


# -- encoding and decoding ---------------------------------------------------------------------
@pytest.mark.parametrize("durable", [False, True])
@pytest.mark.parametrize("body", BODIES, ids=lambda b: f"{type(b).__name__}-{len(repr(b))}")
def test_plain_bodies_encode_exactly_like_proton(body: Any, durable: bool) -> None:
    assert encode(body, durable) == bytes(proton.Message(body=body, durable=durable).encode())


def test_messages_encode_exactly_like_proton() -> None:
    msg = Message(b"x" * 5000, properties={"colour": "green", "n": 3}, id=7, durable=True,
                  correlation_id="c-1", reply_to="replies", subject="s", ttl=60, priority=9,
                  content_type="text/plain", address="a", user_id=b"u", group_id="g",
                  creation_time=1700000000.5, annotations={"x-opt-a": 1})
    assert encode(msg) == bytes(msg.to_proton().encode())
    assert encode(msg.to_proton()) == bytes(msg.to_proton().encode())


# Messages the Python encoder writes itself (requests, replies, messages with properties),
# and ones it leaves to proton (annotations, a group, a delivery time, types it does not write).
FIELD_MESSAGES: List[Message] = [
    Message("hi"), Message(None, id=5), Message(b"", id=0), Message("x", durable=True),
    Message("x", durable=False), Message("x", priority=4), Message("x", priority=0),
    Message("x", priority=255), Message("x", ttl=0.5), Message("x", ttl=0),
    Message("x", durable=True, ttl=2, priority=7), Message("x", id=255),
    Message("x", id=256), Message("x", id=2 ** 64 - 1), Message("x", id=uuid.UUID(int=1)),
    Message("x", id=b"xy"), Message("x", id="é" * 300), Message("x", correlation_id=300),
    Message("x", reply_to="r" * 300, correlation_id="c"), Message("x", creation_time=0.0),
    Message("x", creation_time=1700000000.5), Message("x", creation_time=-1.0),
    Message("x", content_type="application/json"), Message("x", user_id=b"u" * 300),
    Message("x", subject="s", address="a"), Message({"k": [1, None]}, id="i"),
    Message([1, "two"], properties={"a": 1}), Message(2.5, reply_to="r"),
    Message("x", properties={"a": 0, "b": 2 ** 63 - 1, "c": -(2 ** 63), "d": 128, "e": -128,
                             "f": 127, "g": True, "h": False, "i": None, "j": 1.5,
                             "k": b"bin", "l": "s" * 300}),
    Message("y" * 70000, properties={"p": "q"}, id="big"),
    Message("x", properties={f"k{n}": n for n in range(100)}),
    Message("x", annotations={"x-opt-a": 1}), Message("x", delivery_time=time.time() + 60),
    Message("reply", correlation_id="c", address="r",
            annotations={proton.symbol("x-opt-jms-dest"): proton.byte(0)}),
    Message("x", annotations={"a": 1}, delivery_time=1700000000.5),
    Message("x", annotations={proton.ulong(7): "k"}, id=proton.ulong(300)),
    Message("x", properties={
        "a": proton.ulong(0), "b": proton.ulong(5), "c": proton.ulong(300), "d": proton.uint(0),
        "e": proton.uint(5), "f": proton.uint(300), "g": proton.int32(5), "h": proton.int32(-300),
        "i": proton.int32(200), "j": proton.ubyte(7), "k": proton.byte(-5), "l": proton.short(-2),
        "m": proton.ushort(9), "n": proton.timestamp(5), "o": proton.float32(1.5),
        "p": proton.symbol("s"), "q": uuid.UUID(int=1)}),
]
PROTON_ENCODES: List[Message] = [
    Message("x", group_id="g"), Message("x", id=-1),
    Message("x", annotations={1: "int key"}), Message("x", properties={"c": proton.char("x")}),
    Message("x", id=True), Message("x", properties={"a": 2 ** 63}),
    Message("x", properties={"a": [1]}), Message("x", content_type="é"),
    Message("x", priority=256), Message("x", ttl=-1),
]


@pytest.mark.parametrize("durable", [False, True])
@pytest.mark.parametrize("msg", FIELD_MESSAGES + PROTON_ENCODES, ids=repr)
def test_messages_with_fields_encode_exactly_like_proton(msg: Message, durable: bool) -> None:
    written_here = wire.encode_message(msg, durable, codec.encode_value) is not None
    assert written_here == any(msg is m for m in FIELD_MESSAGES)
    try:
        expected = bytes(msg.to_proton().encode()) if not durable or msg.durable is not None \
            else bytes(Message(**{**_fields(msg), "durable": True}).to_proton().encode())
    except Exception:  # noqa: BLE001 - proton cannot encode it: neither may we
        with pytest.raises(TypeError):
            encode(msg, durable)
        return
    assert encode(msg, durable) == expected


def _fields(msg: Message) -> dict:
    return {name: getattr(msg, name) for name in (
        "properties", "id", "correlation_id", "reply_to", "subject", "durable", "ttl",
        "priority", "content_type", "address", "user_id", "group_id", "creation_time",
        "annotations", "delivery_time")} | {"body": msg.body}


def test_decoder_matches_proton_decoding() -> None:
    messages = [Message(body) for body in BODIES] + [
        Message({"k": b"v"}, properties={"p": b"q", "i": 1}, id=7, correlation_id=b"c",
                durable=True, ttl=5, subject="s", content_type="application/json",
                reply_to="r", address="a", user_id=b"u", group_id="g", creation_time=12.5,
                priority=7, annotations={"x-opt-a": 1}),
        Message("uuid id", id=uuid.UUID(int=5), correlation_id="text"),
    ]
    decoder = Decoder()
    for msg in messages:  # one decoder for all: nothing may leak from one message to the next
        data = encode(msg)
        pm = proton.Message()
        pm.decode(data)
        expected = Message.from_proton(pm)
        got = decoder.decode(data)
        assert got == expected
        assert decoder.decode(bytearray(data)) == decoder.decode(memoryview(data)) == expected
        for name in ("annotations", "delivery_count", "redelivered"):
            assert getattr(got, name) == getattr(expected, name)
        assert type(got.body) is type(expected.body)
    assert decode(encode(None)).body is None


def _proton_encoded(**fields: Any) -> bytes:
    pm = proton.Message(**{k: v for k, v in fields.items()
                           if k not in ("delivery_count", "inferred")})
    pm.delivery_count = fields.get("delivery_count", 0)
    pm.inferred = fields.get("inferred", False)
    return bytes(pm.encode())


# What other clients and brokers send: typed properties and annotations (Qpid JMS, Artemis),
# a data section, a redelivery count, and values only proton reads (arrays, described, char).
FOREIGN: List[bytes] = [
    _proton_encoded(body="x", properties={
        "a": proton.ulong(5), "b": proton.symbol("s"), "c": proton.timestamp(5),
        "d": proton.int32(-3), "e": proton.uint(9), "f": proton.ubyte(1), "g": proton.short(-2),
        "h": proton.float32(1.5), "i": proton.ushort(7), "j": proton.byte(-1),
        "k": uuid.UUID(int=9)}),
    _proton_encoded(body="x", annotations={proton.symbol("x-opt-jms-dest"): proton.byte(0),
                                           proton.symbol("x-opt-jms-msg-type"): proton.byte(5)}),
    _proton_encoded(body={"nested": [1, {"x": None}], "u": uuid.UUID(int=3)}),
    _proton_encoded(body=[], id="a"), _proton_encoded(body={}, subject=""),
    _proton_encoded(body=b"raw", inferred=True), _proton_encoded(body="r", delivery_count=3),
    _proton_encoded(body="x", id=proton.ulong(2 ** 64 - 1), correlation_id=uuid.UUID(int=1)),
    _proton_encoded(body=proton.Array(proton.UNDESCRIBED, proton.Data.INT, 1, 2)),
    _proton_encoded(body=proton.Described(proton.symbol("d"), 5)),
    _proton_encoded(body="x", properties={"c": proton.char("x")}),
]
PROTON_DECODES = FOREIGN[-3:]


def _assert_same_fields(ours: Any, theirs: Any) -> None:
    """Every field proton-c read, read here with the same value and type (a map's keys and
    values too)."""
    for name, value in vars(theirs).items():
        got = getattr(ours, name)
        assert got == value and type(got) is type(value), name
        if isinstance(value, dict):
            assert [(type(k), type(v)) for k, v in got.items()] == \
                [(type(k), type(v)) for k, v in value.items()], name


def test_python_decoder_reads_what_proton_reads() -> None:
    """Field by field and type by type: the Python decoder against proton-c's."""
    datas = [bytes(encode(m)) for m in FIELD_MESSAGES + [Message(b) for b in BODIES]] + FOREIGN
    reader = codec.Reader()

    class Fields:
        pass

    for data in datas:
        ours, theirs = Fields(), Fields()
        reader.read_into(theirs, data)
        read_here = wire.decode_into(ours, data)
        assert read_here == (data not in PROTON_DECODES)
        if not read_here:
            continue
        _assert_same_fields(ours, theirs)


def test_a_cut_message_decodes_as_proton_decodes_it_or_fails() -> None:
    request = bytes(encode(Message({"k": [1, "two"]}, properties={"p": "q"}, id="i",
                                   reply_to="r", durable=True)))
    for data in (request, ARTEMIS_REPLY, bytes(encode(Message(
            "x", properties={"p": "q"}, annotations={"x-opt-a": 1}, durable=True)))):
        Decoder().decode(data)  # its sections whole, seen before
        for end in range(len(data)):
            try:
                expected: Any = Message.from_proton(_decoded(data[:end]))
            except Exception as exc:  # noqa: BLE001 - proton refuses it: so must we
                with pytest.raises(type(exc)):
                    Decoder().decode(data[:end])
                continue
            assert Decoder().decode(data[:end]) == expected


def _decoded(data: bytes) -> proton.Message:
    pm = proton.Message()
    pm.decode(data)
    return pm


# A reply as ActiveMQ Artemis sends it: the same map32 annotations on every message.
ARTEMIS_REPLY = (
    b"\x00SpE\x00Sr\xd1\x00\x00\x00\x16\x00\x00\x00\x02\xa3\x0ex-opt-jms-destQ\x00\x00Ss\xc0;"
    b"\x06@@\xa1$574adc4c-43f4-4db1-acd4-0d53d3e6ee7c@@\xa1\x0e44adeb26cbcf-2\x00Sw\xa1\x05reply")


def _repeated_sections() -> List[bytes]:
    """Messages whose annotation and application property sections repeat, or nearly."""
    jms = {proton.symbol("x-opt-jms-dest"): proton.byte(0)}
    return [ARTEMIS_REPLY, ARTEMIS_REPLY] + [
        _proton_encoded(body=n, annotations=annotations, properties=properties, durable=True)
        for n in range(3)
        for annotations, properties in (
            (jms, {"colour": "green", "n": proton.int32(1)}),
            ({proton.symbol("x-opt-jms-dest"): proton.byte(1)}, {"colour": "red", "n": 2}),
            (jms, {"nested": [1, "two"], "map": {"k": "v"}}),
            ({}, {}), ({proton.symbol("k" * 300): "v" * 300}, {"big": "v" * 2000}))]


def test_repeated_sections_decode_as_proton_decodes_them() -> None:
    reader, decoder = codec.Reader(), Decoder()

    class Fields:
        pass

    datas = _repeated_sections()
    for data in datas + [bytearray(d) for d in datas] + [memoryview(d) for d in datas]:
        assert decoder.decode(data) == Message.from_proton(_decoded(bytes(data)))
        ours, theirs = Fields(), Fields()
        reader.read_into(theirs, bytes(data))
        assert wire.decode_into(ours, data)
        _assert_same_fields(ours, theirs)


def test_repeated_sections_are_each_messages_own() -> None:
    decoder = Decoder()
    green = encode(Message("x", properties={"colour": "green"}, annotations={"x-opt-a": 1}))
    red = encode(Message("x", properties={"colour": "red"}, annotations={"x-opt-a": 2}))
    for data in (green, red):  # the first message read with these sections, then the next
        first = decoder.decode(data)
        first.properties["colour"] = "blue"
        first.annotations["x-opt-a"] = 3
        assert decoder.decode(data) == decode(data) == Message.from_proton(_decoded(data))
    for _ in range(3):
        assert decoder.decode(green).properties == {"colour": "green"}
        assert decoder.decode(red).properties == {"colour": "red"}
        assert decoder.decode(green).annotations == {"x-opt-a": 1}
        assert decoder.decode(red).annotations == {"x-opt-a": 2}
    first = decoder.decode(green)
    first.properties["colour"] = "blue"
    first.annotations["x-opt-b"] = 3
    second = decoder.decode(green)
    assert second.properties == {"colour": "green"} and second.annotations == {"x-opt-a": 1}
    assert second.properties is not first.properties
    reply = decoder.decode(ARTEMIS_REPLY)
    reply.annotations.clear()
    assert decoder.decode(ARTEMIS_REPLY).annotations == {proton.symbol("x-opt-jms-dest"): 0}


def test_a_map_with_a_nested_value_is_read_anew_each_time() -> None:
    decoder = Decoder()
    data = _proton_encoded(body="x", properties={"list": [1, "two"], "map": {"k": "v"}},
                           annotations={proton.symbol("x-opt-l"): [proton.byte(1)]})
    for _ in range(3):
        msg = decoder.decode(data)
        assert msg == Message.from_proton(_decoded(data))
        assert msg.properties == {"list": [1, "two"], "map": {"k": "v"}}
        assert msg.annotations == {"x-opt-l": [1]}
        msg.properties["list"].append(3)
        msg.properties["map"]["k"] = "changed"
        msg.annotations["x-opt-l"].clear()


def test_unencodable_values_still_raise_type_error() -> None:
    with pytest.raises(TypeError):
        encode(Message(object()))
    with pytest.raises(TypeError):
        encode({"k": 2 ** 64})


# -- Client.send's sender links ----------------------------------------------------------------
def test_client_send_keeps_one_link_per_address_and_mode(amqp_url: str,
                                                          amqp_address: str) -> None:
    with pe.Client(amqp_url) as client:
        for i in range(5):
            client.send(amqp_address, i)
        link = client._senders._links[(amqp_address, False)]
        for i in range(5, 10):
            client.send(amqp_address, i)
        client.send(amqp_address, 10, at_most_once=True)
        assert client._senders._links[(amqp_address, False)] is link
        assert len(client._senders._links) == 2
        got = client.receive(amqp_address, count=11, timeout=10)
    assert [m.body for m in got] == list(range(11))


def test_threads_share_one_sender_link(amqp_url: str, amqp_address: str) -> None:
    errors: List[BaseException] = []
    with pe.Client(amqp_url) as client:
        def worker(k: int) -> None:
            try:
                for i in range(20):
                    client.send(amqp_address, {"thread": k, "i": i})
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        assert len(client._senders._links) == 1
        assert len(client.receive(amqp_address, count=120, timeout=10)) == 120


def test_a_sender_link_closed_under_the_client_is_replaced(amqp_url: str,
                                                            amqp_address: str) -> None:
    with pe.Client(amqp_url) as client:
        client.send(amqp_address, "first")
        link = client._senders._links[(amqp_address, False)]
        client._loop.call(link.sender.close).result(5)  # the broker answers with a detach
        deadline = time.monotonic() + 10
        while not link.done and time.monotonic() < deadline:
            time.sleep(0.05)
        assert link.done
        client.send(amqp_address, "second")  # on a new link
        assert client._senders._links[(amqp_address, False)] is not link
        assert [m.body for m in client.receive(amqp_address, count=2, timeout=10)] \
            == ["first", "second"]


def test_least_recently_used_sender_links_are_closed(amqp_url: str, amqp_address: str) -> None:
    with pe.Client(amqp_url) as client:
        client._senders._links.limit = 2
        for k in range(4):
            client.send(f"{amqp_address}-{k}", k)
        assert [key[0] for key in client._senders._links] == [f"{amqp_address}-2",
                                                               f"{amqp_address}-3"]
        for k in range(4):
            assert [m.body for m in client.receive(f"{amqp_address}-{k}", timeout=5)] == [k]


def test_send_on_a_closed_client_raises(amqp_url: str,
                                                            amqp_address: str) -> None:
    client = pe.Client(amqp_url)
    client.send(amqp_address, "x")
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.send(amqp_address, "y")


def test_client_send_waits_out_a_broker_restart(artemis_factory: Any) -> None:
    broker = artemis_factory()
    with pe.Client(broker.url, timeout=10) as client:
        client.send("restart-send-q", pe.Message(0, durable=True))
        broker.kill()

        def restart() -> None:
            time.sleep(1)
            broker.restart()

        restarter = threading.Thread(target=restart)
        restarter.start()
        try:  # waits while the client reconnects (not counted in the timeout), then sends
            client.send("restart-send-q", pe.Message(1, durable=True), timeout=10)
        finally:
            restarter.join(60)
        got = client.receive("restart-send-q", count=2, timeout=10)
    assert [m.body for m in got] == [0, 1]


def test_a_closed_client_is_freed(amqp_url: str, amqp_address: str) -> None:
    import gc
    import weakref

    client = pe.Client(amqp_url)
    client.send(amqp_address, "x")
    assert [m.body for m in client.receive(amqp_address, timeout=5)] == ["x"]
    container = weakref.ref(client._loop.container)
    connection = weakref.ref(client._conn)
    client.close()
    del client
    gc.collect()
    assert container() is None and connection() is None


# -- consume's batched acknowledgements --------------------------------------------------------
def test_consume_accepts_what_was_handled_when_the_loop_is_left(amqp_url: str,
                                                                 amqp_address: str) -> None:
    url = f"{amqp_url}/{amqp_address}"
    pe.send_many(url, range(30))
    handled = []
    for msg in pe.consume(url, idle_timeout=5):  # default window 10: acks go in batches of 5
        if msg.body == 12:
            break  # 12 goes back; 0-11 were handled and must not come again
        handled.append(msg.body)
    assert handled == list(range(12))
    rest = pe.receive(url, count=30, timeout=2)
    assert sorted(m.body for m in rest) == list(range(12, 30))


def _spy_on_consumer_jobs(client: pe.Client) -> List[Any]:
    """The ConsumerJobs the client's consume calls make, in order."""
    jobs: List[Any] = []
    make = client._consumer_job

    def spy(*args: Any, **kwargs: Any) -> Any:
        idle, job = make(*args, **kwargs)
        jobs.append(job)
        return idle, job

    client._consumer_job = spy  # type: ignore[method-assign]
    return jobs


def test_consume_window_grows_and_what_was_sent_ahead_goes_back(amqp_url: str,
                                                                  amqp_address: str) -> None:
    pe.send_many(f"{amqp_url}/{amqp_address}", range(300), durable=False)
    with pe.Client(amqp_url) as client:
        jobs = _spy_on_consumer_jobs(client)
        fixed = client.consume(amqp_address, idle_timeout=5, window=3)
        assert next(fixed).body == 0
        fixed.close()                       # 0 goes back (a bare iterator), so do 1 and 2
        with client.consume(amqp_address, idle_timeout=5) as messages:   # adaptive
            handled = []
            for msg in messages:
                handled.append(msg.body)
                if len(handled) == 150:
                    break                   # 0-149 accepted; what came ahead goes back
        assert jobs[0].window == 3
        assert jobs[1].window > 10          # it grew while the loop body kept up
        assert handled == list(range(150))
        rest = client.receive(amqp_address, count=300, timeout=5)
    assert sorted(m.body for m in rest) == list(range(150, 300))


def test_consume_with_a_fixed_window_keeps_it(amqp_url: str, amqp_address: str) -> None:
    pe.send_many(f"{amqp_url}/{amqp_address}", range(40), durable=False)
    with pe.Client(amqp_url) as client:
        jobs = _spy_on_consumer_jobs(client)
        with client.consume(amqp_address, idle_timeout=5, window=4) as messages:
            got = [m.body for _, m in zip(range(40), messages)]
        assert (jobs[0].window, jobs[0].max_window) == (4, 4)
    assert got == list(range(40))


def test_at_most_once_sends_are_all_written_before_close(amqp_url: str,
                                                         amqp_address: str) -> None:
    client = pe.Client(amqp_url)
    for i in range(1000):                   # most calls return before the loop has the message
        client.send(amqp_address, i, at_most_once=True)
    client.close()                          # waits until everything queued is written
    got = pe.receive(f"{amqp_url}/{amqp_address}", count=1000, timeout=10)
    assert [m.body for m in got] == list(range(1000))


def test_threads_share_at_most_once_sends(amqp_url: str, amqp_address: str) -> None:
    errors: List[BaseException] = []
    with pe.Client(amqp_url) as client:
        def worker(k: int) -> None:
            try:
                for i in range(200):
                    client.send(amqp_address, {"thread": k, "i": i}, at_most_once=True)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
    got = pe.receive(f"{amqp_url}/{amqp_address}", count=1600, timeout=10)
    by_thread: dict = {}
    for m in got:
        by_thread.setdefault(m.body["thread"], []).append(m.body["i"])
    assert {k: v for k, v in by_thread.items()} == {k: list(range(200)) for k in range(8)}


def test_loop_linger_runs_a_call_from_another_thread() -> None:
    from proton_easy._engine.loop import Loop

    loop = Loop("linger-test")
    try:
        ran: List[str] = []
        went = threading.Event()

        def on_loop() -> bool:
            threading.Thread(target=lambda: (went.wait(5), loop.post(
                lambda: ran.append("posted")))).start()
            went.set()
            came = loop.linger(5.0)       # returns as soon as the call came, and ran it
            ran.append("after")
            return came

        assert loop.call(on_loop).result(10) is True
        assert ran == ["posted", "after"]
        assert loop.call(lambda: loop.linger(0.0)).result(10) is False   # nothing queued
    finally:
        loop.stop()


# -- the benchmark harness -------------------------------------------------------------------
def test_benchmark_harness_smoke_run(amqp_url: str, tmp_path: Path) -> None:
    """``benchmarks/run.py --quick`` runs every group with tiny counts (nothing is timed)."""
    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "run.py"), "--quick", "--url", amqp_url,
         "--sizes", "100", "--json", str(out)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stdout[-3000:]
    results = json.loads(out.read_text())
    groups = {row["group"] for row in results["results"]}
    assert groups == {"send", "send-amo", "receive", "aio-send", "aio-receive", "tx-10",
                      "tx-100"}
    assert all(row["best_msg_per_s"] for row in results["results"]), proc.stdout[-3000:]
    assert set(results["latency"]) >= {"hand-written pair", "Client.request + serve"}
    assert results["memory"]["count"] > 0
    assert results["aio_requests"]["concurrent_seconds"] > 0
    assert results["aio_requests"]["hand_concurrent_seconds"] > 0
    reqs = results["aio_requests"]  # the CPU split of the concurrent requests, and its bound
    assert reqs["cpu_client_us"] > 0 and reqs["cpu_server_us"] > 0, reqs
    assert 0 < reqs["free_client_seconds"] and 0 < reqs["machine_busy"] <= 1.05, reqs
