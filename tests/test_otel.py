"""OpenTelemetry: spans that cross the broker in one trace, and metrics, against a real Artemis.

Each test traces into the SDK's in-memory exporter (``pe.instrument``), so nothing here
depends on a global provider; one subprocess checks the global one, another that proton_easy
imports no OpenTelemetry when none is configured.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any, Callable, Iterator, List

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from proton.reactor import Container

import proton_easy as pe
from proton_easy import _otel, aio
from proton_easy.handlers import Receiver, Responder, Sender, TxSender

from .procs import ROOT
from .test_failover import _dead_url
from .test_topics import artemis_cli


class Traces:
    """The spans and metrics of one test."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.tracer = self.provider.get_tracer("test")

    def spans(self, name_prefix: str = "", *, count: int = 0,
              timeout: float = 5) -> List[ReadableSpan]:
        """The finished spans whose names start with ``name_prefix`` (waiting up to
        ``timeout`` for at least ``count`` of them: some end on the loop thread)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [s for s in self.exporter.get_finished_spans()
                     if s.name.startswith(name_prefix)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def one(self, name_prefix: str) -> ReadableSpan:
        (span,) = self.spans(name_prefix, count=1)
        return span

    def metric(self, name: str) -> List[Any]:
        data = self.reader.get_metrics_data()
        points: List[Any] = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        points.extend(metric.data.data_points)
        return points


@pytest.fixture
def traces() -> Iterator[Traces]:
    t = Traces()
    pe.instrument(tracer_provider=t.provider, meter_provider=t.meters)
    try:
        yield t
    finally:
        pe.uninstrument(auto=True)


def parent_of(span: ReadableSpan) -> Any:
    return span.parent.span_id if span.parent is not None else None


def trace_of(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


def id_of(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


# -- send / consume ---------------------------------------------------------------------------
def test_send_and_consume_are_one_trace_across_the_broker(traces: Traces, amqp_url: str,
                                                         amqp_address: str) -> None:
    url = f"{amqp_url}/{amqp_address}"
    with traces.tracer.start_as_current_span("checkout") as checkout:
        pe.send(url, pe.Message("order 1", id="m-1"))
    with pe.consume(url, idle_timeout=5) as messages:
        msg = next(messages)
        with traces.tracer.start_as_current_span("handle order"):
            pass
    assert msg.body == "order 1"

    send = traces.one("send ")
    process = traces.one("process ")
    handle = traces.one("handle order")
    assert send.name == f"send {amqp_address}" and send.kind == SpanKind.PRODUCER
    assert process.name == f"process {amqp_address}" and process.kind == SpanKind.CONSUMER
    # one trace: checkout -> send -> (broker) -> process -> the loop body's own span
    assert trace_of(send) == trace_of(process) == trace_of(handle) == \
        checkout.get_span_context().trace_id
    assert parent_of(send) == checkout.get_span_context().span_id
    assert parent_of(process) == id_of(send)
    assert parent_of(handle) == id_of(process)
    for span, operation in ((send, "send"), (process, "process")):
        attrs = span.attributes or {}
        assert attrs["messaging.system"] == "activemq"
        assert attrs["messaging.operation.type"] == operation
        assert attrs["messaging.destination.name"] == amqp_address
        assert attrs["messaging.message.id"] == "m-1"
        assert attrs["messaging.message.body.size"] == len("order 1")
        assert attrs["server.address"] == "127.0.0.1"
        assert attrs["proton_easy.outcome"] == "accepted"
    assert "admin" not in str(dict(send.attributes or {}))  # no credentials in attributes
    settle = traces.one("settle ")  # the acceptance, sent after the loop body
    assert settle.kind == SpanKind.CLIENT and parent_of(settle) == id_of(process)
    assert [link.context.span_id for link in settle.links] == [id_of(process)]
    assert (settle.attributes or {})["messaging.batch.message_count"] == 1


def test_at_most_once_sends_on_a_client_are_traced_too(traces: Traces, amqp_url: str,
                                                      amqp_address: str) -> None:
    # an at-most-once Client.send need not wait for the loop; with tracing its span still ends
    # once the message is written, and its consumer continues the trace
    with pe.Client(amqp_url) as client, traces.tracer.start_as_current_span("publish") as top:
        for n in range(3):
            client.send(amqp_address, f"m{n}", at_most_once=True)
    got = pe.receive(f"{amqp_url}/{amqp_address}", count=3, timeout=5)
    assert [m.body for m in got] == ["m0", "m1", "m2"]
    sends = traces.spans("send ", count=3)
    assert {parent_of(s) for s in sends} == {top.get_span_context().span_id}
    receives = traces.spans("receive ", count=3)
    assert {trace_of(s) for s in receives} == {top.get_span_context().trace_id}


def test_the_context_travels_where_both_conventions_look(traces: Traces, amqp_url: str,
                                                         amqp_address: str) -> None:
    url = f"{amqp_url}/{amqp_address}"
    pe.send(url, "hello")
    pe.uninstrument()  # receive without telemetry: the message as any consumer sees it
    (msg,) = pe.receive(url, timeout=5)
    send = traces.one("send ")
    assert send.context is not None
    flags = int(send.context.trace_flags)
    traceparent = f"00-{trace_of(send):032x}-{id_of(send):016x}-{flags:02x}"
    assert msg.properties["traceparent"] == traceparent           # W3C AMQP draft, JMS props
    assert msg.annotations["x-opt-qpid-tracestate"] == {"traceparent": traceparent}  # Qpid JMS
    assert msg.creation_time is not None  # the consume lag is measured from it


def test_a_qpid_jms_style_context_is_continued(traces: Traces, amqp_url: str,
                                               amqp_address: str) -> None:
    # What Qpid JMS's tracing writes: only the x-opt-qpid-tracestate annotation
    url = f"{amqp_url}/{amqp_address}"
    trace_id, span_id = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331
    tp = f"00-{trace_id:032x}-{span_id:016x}-01"
    pe.uninstrument()
    pe.send(url, pe.Message("from jms", annotations={"x-opt-qpid-tracestate": {
        "traceparent": tp, "tracestate": "vendor=1"}}))
    pe.instrument(tracer_provider=traces.provider, meter_provider=traces.meters)
    pe.receive(url, timeout=5)
    receive = traces.one("receive ")
    assert trace_of(receive) == trace_id and parent_of(receive) == span_id
    assert receive.parent is not None and receive.parent.trace_state.get("vendor") == "1"


def test_qpid_jms_takes_traced_messages_and_its_own_start_new_traces(
        traces: Traces, artemis: Any, amqp_address: str) -> None:
    # Artemis's JMS client (Qpid JMS, tracing not configured) takes what proton_easy sent
    # with the context in an application property and an annotation map
    url = f"{artemis.url}/{amqp_address}"
    pe.send_many(url, ["for jms 1", "for jms 2"])
    out = artemis_cli(artemis, "consumer", "--destination", f"queue://{amqp_address}",
                      "--message-count", "2", "--receive-timeout", "10000", "--verbose")
    assert "Consumed: 2 messages" in out and "Received for jms 2" in out
    # and what it sends, carrying no context, starts a trace here without errors
    artemis_cli(artemis, "producer", "--destination", f"queue://{amqp_address}",
                "--message-count", "1")
    assert len(pe.receive(url, timeout=10)) == 1
    assert traces.one("receive ").parent is None


# -- send_many / receive ------------------------------------------------------------------------
def test_send_many_is_one_batch_span_that_each_receive_continues(
        traces: Traces, amqp_url: str, amqp_address: str) -> None:
    url = f"{amqp_url}/{amqp_address}"
    assert pe.send_many(url, ["a", "b", "c"]) == 3
    assert [m.body for m in pe.receive(url, count=3, timeout=5)] == ["a", "b", "c"]
    batch = traces.one("send ")
    assert (batch.attributes or {})["messaging.batch.message_count"] == 3
    receives = traces.spans("receive ", count=3)
    assert len(receives) == 3
    for span in receives:
        assert trace_of(span) == trace_of(batch) and parent_of(span) == id_of(batch)
        assert (span.attributes or {})["messaging.operation.type"] == "receive"
    points = traces.metric("messaging.client.sent.messages")
    assert sum(p.value for p in points
               if p.attributes.get("proton_easy.outcome") == "accepted") == 3
    assert sum(p.value for p in traces.metric("messaging.client.consumed.messages")) == 3
    assert sum(p.count for p in traces.metric("proton_easy.consume.lag")) == 3
    assert [p.value for p in traces.metric("proton_easy.in_doubt")] == [0]
    assert sum(p.value for p in traces.metric("proton_easy.credit.granted")) >= 3


def test_send_many_from_a_generator_on_a_client(traces: Traces, amqp_url: str,
                                                amqp_address: str) -> None:
    with pe.Client(amqp_url) as client:
        assert client.send_many(amqp_address, (f"m{i}" for i in range(5))) == 5
        got = client.receive(amqp_address, count=5, timeout=5)
    assert len(got) == 5
    batch = traces.one("send ")
    assert (batch.attributes or {})["messaging.batch.message_count"] == 5
    assert {trace_of(s) for s in traces.spans("receive ", count=5)} == {trace_of(batch)}


# -- request / serve ----------------------------------------------------------------------------
def test_request_and_serve_are_one_connected_trace(traces: Traces, amqp_url: str,
                                                   amqp_address: str) -> None:
    url = f"{amqp_url}/{amqp_address}"
    server = threading.Thread(target=pe.serve, args=(url, lambda m: m.body.upper()),
                              kwargs={"count": 1, "timeout": 10})
    server.start()
    with traces.tracer.start_as_current_span("caller") as caller:
        reply = pe.request(url, "hello", timeout=10)
    server.join(10)
    assert reply.body == "HELLO"
    send = traces.one(f"send {amqp_address}")
    process = traces.one("process ")
    receive = traces.one("receive ")  # the reply, on the requester's reply queue
    tid = caller.get_span_context().trace_id
    assert trace_of(send) == trace_of(process) == trace_of(receive) == tid
    assert parent_of(send) == caller.get_span_context().span_id
    assert parent_of(process) == id_of(send)
    assert parent_of(receive) == id_of(process)


# -- handler classes ----------------------------------------------------------------------------
def test_handler_classes_make_the_same_spans(traces: Traces, amqp_url: str,
                                             amqp_address: str) -> None:
    url = f"{amqp_url}/{amqp_address}"
    seen: List[Any] = []

    class Recv(Receiver):
        def on_received(self, msg: pe.Message) -> None:
            seen.append(trace.get_current_span().get_span_context().trace_id)

    with traces.tracer.start_as_current_span("producer job") as job:
        Container(Sender(url, messages=2)).run()
    Container(Recv(url, count=2, timeout=5)).run()
    batch = traces.one("send ")
    assert parent_of(batch) == job.get_span_context().span_id
    assert (batch.attributes or {})["messaging.batch.message_count"] == 2
    processes = traces.spans("process ", count=2)
    assert [parent_of(s) for s in processes] == [id_of(batch)] * 2
    assert seen == [trace_of(batch)] * 2  # the hook runs inside its process span


def test_a_responder_class_continues_the_requests_trace(traces: Traces, amqp_url: str,
                                                        amqp_address: str) -> None:
    url = f"{amqp_url}/{amqp_address}"
    responder = Responder(url, handler=lambda m: m.body * 2, count=1, timeout=10)
    server = threading.Thread(target=Container(responder).run)
    server.start()
    with pe.Client(amqp_url) as client:
        assert client.request(amqp_address, "ab", timeout=10).body == "abab"
    server.join(10)
    send, process, receive = (traces.one(p) for p in ("send ", "process ", "receive "))
    assert parent_of(process) == id_of(send) and parent_of(receive) == id_of(process)


# -- asyncio ------------------------------------------------------------------------------------
def test_asyncio_verbs_make_the_same_spans(traces: Traces, amqp_url: str,
                                           amqp_address: str) -> None:
    async def main() -> List[Any]:
        async with aio.Client(amqp_url) as client:
            await client.send(amqp_address, "x")
            await client.send_many(amqp_address, ["y", "z"])
            got = await client.receive(amqp_address, count=1, timeout=5)
            async with client.consume(amqp_address, idle_timeout=5) as messages:
                async for msg in messages:
                    got.append(msg)
                    if len(got) == 3:
                        break
            return [m.body for m in got]

    assert asyncio.run(main()) == ["x", "y", "z"]
    send_one, batch = traces.spans("send ", count=2)
    assert (batch.attributes or {})["messaging.batch.message_count"] == 2
    assert parent_of(traces.one("receive ")) == id_of(send_one)
    assert [parent_of(s) for s in traces.spans("process ", count=2)] == [id_of(batch)] * 2
    assert traces.spans("settle ", count=1)  # the consumer's acceptance


def test_asyncio_request_and_serve_are_one_trace(traces: Traces, amqp_url: str,
                                                 amqp_address: str) -> None:
    async def main() -> Any:
        async with aio.Client(amqp_url) as server, aio.Client(amqp_url) as client:
            async def upper(msg: pe.Message) -> str:
                await asyncio.sleep(0)
                return str(msg.body).upper()

            serving = asyncio.create_task(server.serve(amqp_address, upper, count=1))
            with traces.tracer.start_as_current_span("caller"):
                reply = await client.request(amqp_address, "hi", timeout=10)
            await serving
            return reply.body

    assert asyncio.run(main()) == "HI"
    send, process, receive = (traces.one(p) for p in ("send ", "process ", "receive "))
    assert trace_of(send) == trace_of(process) == trace_of(receive) == trace_of(
        traces.one("caller"))
    assert parent_of(process) == id_of(send) and parent_of(receive) == id_of(process)


# -- transactions -------------------------------------------------------------------------------
def test_transactions_have_declare_and_discharge_spans(traces: Traces, amqp_url: str,
                                                       amqp_address: str) -> None:
    url = f"{amqp_url}/{amqp_address}"
    with traces.tracer.start_as_current_span("batch") as batch:
        with pe.transaction(url) as tx:
            tx.send("a")
            tx.send("b")
    assert [m.body for m in pe.receive(url, count=2, timeout=5)] == ["a", "b"]
    declare = traces.spans("declare", count=1)[0]
    discharge = traces.spans("discharge", count=1)[0]
    assert declare.kind == SpanKind.CLIENT
    assert parent_of(declare) == parent_of(discharge) == batch.get_span_context().span_id
    assert (declare.attributes or {})["proton_easy.transaction.declared"] is True
    assert (discharge.attributes or {})["proton_easy.transaction.committed"] is True
    assert (discharge.attributes or {})["proton_easy.transaction.abort"] is False
    # the messages carry the caller's context: their consumers continue its trace
    receives = traces.spans("receive ", count=2)
    assert [parent_of(s) for s in receives] == [batch.get_span_context().span_id] * 2


# -- metrics of the connection ------------------------------------------------------------------
def test_failovers_are_counted(traces: Traces, artemis: Any, amqp_address: str) -> None:
    with pe.Client(urls=[_dead_url(), artemis.url], timeout=10) as client:
        client.send(amqp_address, "via the second URL")
    assert sum(p.value for p in traces.metric("proton_easy.failovers")) == 1
    assert pe.receive(artemis.address_url(amqp_address), timeout=5)[0].body == "via the second URL"


# -- what must never break ----------------------------------------------------------------------
def test_a_message_without_context_starts_a_new_trace(traces: Traces, amqp_url: str,
                                                      amqp_address: str) -> None:
    url = f"{amqp_url}/{amqp_address}"
    pe.uninstrument()
    pe.send(url, "untraced")
    pe.instrument(tracer_provider=traces.provider, meter_provider=traces.meters)
    with pe.consume(url, idle_timeout=5) as messages:
        assert next(messages).body == "untraced"
    process = traces.one("process ")
    assert process.parent is None  # a root span: a new trace


@pytest.mark.parametrize("traceparent", [
    "garbage", "00-zzzz-xx-01", "00-00000000000000000000000000000000-0000000000000000-01",
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", ""])
def test_a_malformed_traceparent_is_ignored(traces: Traces, amqp_url: str, amqp_address: str,
                                            traceparent: str) -> None:
    url = f"{amqp_url}/{amqp_address}"
    pe.uninstrument()
    pe.send(url, pe.Message("odd", properties={"traceparent": traceparent,
                                               "tracestate": "=,="},
                            annotations={"x-opt-qpid-tracestate": {"traceparent": 7}}))
    pe.instrument(tracer_provider=traces.provider, meter_provider=traces.meters)
    assert [m.body for m in pe.receive(url, timeout=5)] == ["odd"]
    assert traces.one("receive ").parent is None


def test_extract_never_raises() -> None:
    tel = _otel.Telemetry(TracerProvider(), None)
    odd: List[Callable[[], pe.Message]] = [
        lambda: pe.Message(annotations={"traceparent": b"\x00"}),
        lambda: pe.Message(annotations={"x-opt-qpid-tracestate": ["not", "a", "map"]}),
        lambda: pe.Message(properties={"traceparent": None}),
        lambda: pe.Message(properties={"traceparent": "00-" + "a" * 500}),
    ]
    for make in odd:
        ctx = tel.extract(make())
        assert not trace.get_current_span(ctx).get_span_context().is_valid


def test_a_batch_encodes_its_shared_sections_once_and_bodies_as_before() -> None:
    from proton_easy._message import decode

    tel = _otel.Telemetry(TracerProvider(), None)
    batch = tel.start_batch(None, "q")
    bodies: List[Any] = ["short", "long " * 100, b"\x00bin", {"a": [1, 2.5, None]}, 7, True]
    for durable in (True, False):
        for body in bodies:
            msg = decode(tel.encode_batch(batch, body, durable))
            assert msg.body == body and bool(msg.durable) == durable
            assert msg.properties["traceparent"].split("-")[1] == f"{trace_of(batch.span):032x}"
            assert msg.annotations["x-opt-qpid-tracestate"] == {
                "traceparent": msg.properties["traceparent"]}
    with pytest.raises(TypeError, match="datetime"):
        import datetime
        tel.encode_batch(batch, {"at": datetime.datetime.now()}, True)


def test_a_batch_that_cannot_be_encoded_ends_its_span_with_the_error(
        traces: Traces, amqp_url: str, amqp_address: str) -> None:
    with pe.Client(amqp_url) as client, pytest.raises(TypeError):
        client.send_many(amqp_address, ["fine", object()])
    batch = traces.one("send ")
    assert (batch.attributes or {})["error.type"] == "TypeError"
    assert batch.status.status_code == trace.StatusCode.ERROR


# -- off, and on by the global provider -------------------------------------------------------
def test_the_otel_extra_is_declared_and_the_tests_install_the_sdk() -> None:
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    extras = cfg["options.extras_require"]
    assert extras["otel"].split() == ["opentelemetry-api>=1.20"]
    assert {"opentelemetry-api>=1.20", "opentelemetry-sdk>=1.20"} <= set(extras["test"].split())

def _python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_without_a_provider_nothing_of_opentelemetry_is_imported(amqp_url: str,
                                                                 amqp_address: str) -> None:
    out = _python(f"""
        import sys
        import proton_easy as pe
        url = "{amqp_url}/{amqp_address}"
        pe.send(url, "x"); pe.send_many(url, ["y"]); pe.receive(url, count=2, timeout=5)
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
    """)
    assert out.strip() == "[]"


def test_a_global_tracer_provider_is_used_without_asking(amqp_url: str,
                                                         amqp_address: str) -> None:
    out = _python(f"""
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter)
        import proton_easy as pe
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        url = "{amqp_url}/{amqp_address}"
        pe.send(url, "x"); pe.receive(url, timeout=5)
        spans = exporter.get_finished_spans()
        print(sorted(s.name.split()[0] for s in spans), len({{s.context.trace_id for s in spans}}))
    """)
    assert out.strip() == "['receive', 'send'] 1"


def test_a_tx_sender_with_a_count_is_one_batch_span_its_consumers_continue(
        traces: Traces, amqp_url: str, amqp_address: str) -> None:
    url = f"{amqp_url}/{amqp_address}"
    job = TxSender(url, 4, batch_size=2)
    Container(job).run()
    assert job.committed == 4
    assert len(pe.receive(url, count=4, timeout=5)) == 4
    batch = traces.one("send ")
    assert (batch.attributes or {})["messaging.batch.message_count"] == 4
    assert len(traces.spans("declare", count=2)) >= 2   # one per batch of two
    receives = traces.spans("receive ", count=4)
    assert {trace_of(s) for s in receives} == {trace_of(batch)}
    assert [parent_of(s) for s in receives] == [id_of(batch)] * 4
