"""OpenTelemetry traces and metrics (the ``otel`` extra: ``pip install 'proton_easy[otel]'``).

Nothing here imports OpenTelemetry until an application has imported it and configured a
tracer or meter provider (or called :func:`instrument`): :func:`current` is the one check the
rest of the package makes, once per call or job (and a type check per message where a span
waits for an outcome), and it returns None otherwise.

Trace context travels in the message, where both conventions in use for AMQP look for it:

- application properties ``traceparent`` and ``tracestate`` (the W3C *Trace Context: AMQP*
  draft, which Azure's SDKs and OpenTelemetry's JMS instrumentation follow: a JMS property of
  that name is an AMQP application property), and
- the message annotation ``x-opt-qpid-tracestate``, a map holding the same two keys: what
  Qpid JMS's own tracing (``jms.tracing=opentracing``) injects and extracts.

On receive the context is read from the annotations (``traceparent``, then the
``x-opt-qpid-tracestate`` map) and then from the application properties, as the W3C draft
says. A malformed value is ignored: the span starts a new trace.

>>> instrument(tracer_provider=None); current() is not None     # doctest: +SKIP
True
"""

from __future__ import annotations

import collections
import copy
import logging
import sys
import time
import weakref
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import urlsplit

import proton
from proton import symbol

from ._engine import codec
from ._message import _VALUE, Encoded, Message, encode, encode_plain

log = logging.getLogger("proton_easy")

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
QPID_ANNOTATION = symbol("x-opt-qpid-tracestate")
"""The message annotation Qpid JMS's tracing keeps the trace context in (a map of strings)."""

_METRIC_KEYS = ("messaging.system", "messaging.operation.name", "messaging.destination.name",
                "server.address")
_CACHED = 1024  # attribute sets kept per Telemetry (addresses x operations x brokers)

_MODULES = sys.modules
_state: Optional[Telemetry] = None
_explicit = False  # instrument()/uninstrument() decided: no more looking at the globals


def instrument(tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Trace and measure with these providers (None: OpenTelemetry's global ones), whether or
    not a global provider is configured. Needs the ``otel`` extra.

    >>> from opentelemetry.sdk.trace import TracerProvider   # doctest: +SKIP
    >>> pe.instrument(tracer_provider=TracerProvider())      # doctest: +SKIP
    """
    global _state, _explicit
    _state = Telemetry(tracer_provider, meter_provider)
    _explicit = True


def uninstrument(auto: bool = False) -> None:
    """No spans and no metrics from now on, even with a global provider configured;
    ``auto=True`` goes back to the default (spans and metrics once a global provider is set).

    >>> uninstrument(); current() is None
    True
    >>> uninstrument(auto=True)
    """
    global _state, _explicit
    _state = None
    _explicit = not auto


def current() -> Optional[Telemetry]:
    """The telemetry in use, or None: the one cheap check of the off path.

    >>> uninstrument(); current() is None
    True
    >>> uninstrument(auto=True)
    """
    tel = _state
    if tel is not None or _explicit:
        return tel
    if "opentelemetry" not in _MODULES:  # (any OpenTelemetry import brings its package)
        return None
    return _discover()


def context_now() -> Any:
    """The calling thread's trace context when telemetry is on (None when off): what a job
    made here continues, though it runs on a loop thread.

    >>> uninstrument(); context_now() is None
    True
    >>> uninstrument(auto=True)
    """
    tel = current()
    return None if tel is None else tel._context.get_current()


def _discover() -> Optional[Telemetry]:
    """A Telemetry on the global providers once the application configured one of them."""
    global _state
    trace = _MODULES.get("opentelemetry.trace")  # (only what the application imported)
    metrics = _MODULES.get("opentelemetry.metrics")
    traced = trace is not None and hasattr(trace, "ProxyTracerProvider") and not isinstance(
        trace.get_tracer_provider(), trace.ProxyTracerProvider)
    metered = metrics is not None and hasattr(metrics, "get_meter_provider") and type(
        metrics.get_meter_provider()).__name__ not in ("_ProxyMeterProvider", "NoOpMeterProvider")
    if not (traced or metered):
        return None
    _state = Telemetry(None, None)
    return _state


class Traced(Encoded):
    """An encoded message whose send span waits for its outcome (:meth:`done`)."""

    span: Any = None
    tel: Any = None
    attrs: Any = None
    start = 0.0

    def done(self, error: Optional[BaseException] = None) -> None:
        """End the send span with the broker's outcome (``error`` None: accepted)."""
        span, self.span = self.span, None
        if span is not None:
            self.tel.end_send(span, self.attrs, self.start, error)

    def done_future(self, fut: Any) -> None:
        """:meth:`done` with a Future's outcome (a done callback)."""
        error = None if fut.cancelled() else fut.exception()
        if fut.cancelled():
            error = _Cancelled("the send was cancelled")
        self.done(error)


class _Cancelled(Exception):
    pass


def _system(product: Optional[str]) -> str:
    name = (product or "").lower()
    if "artemis" in name or "activemq" in name:
        return "activemq"
    return name or "amqp"


def _outcome(error: Optional[BaseException]) -> str:
    if error is None:
        return "accepted"
    name = type(error).__name__
    return {"Rejected": "rejected", "Released": "released"}.get(name, "failed")


def _body_size(body: Any) -> Optional[int]:
    if isinstance(body, (bytes, bytearray, memoryview)):
        return len(body)
    if isinstance(body, str):
        return len(body.encode("utf-8", "replace"))
    return None


class Telemetry:
    """Spans and instruments of proton_easy on one tracer and one meter provider.

    >>> tel = Telemetry(None, None)   # doctest: +SKIP
    """

    def __init__(self, tracer_provider: Any, meter_provider: Any) -> None:
        from opentelemetry import context, metrics, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        from . import __version__

        self._trace = trace
        self._context = context
        self._propagator = TraceContextTextMapPropagator()
        self.tracer = trace.get_tracer("proton_easy", __version__, tracer_provider)
        meter = metrics.get_meter("proton_easy", __version__, meter_provider=meter_provider)
        self.sent = meter.create_counter(
            "messaging.client.sent.messages", unit="{message}",
            description="Messages sent, by outcome (proton_easy.outcome)")
        self.consumed = meter.create_counter(
            "messaging.client.consumed.messages", unit="{message}",
            description="Messages received and handed to the application")
        self.settled = meter.create_counter(
            "proton_easy.settled.messages", unit="{message}",
            description="Received messages settled, by outcome (proton_easy.outcome)")
        self.duration = meter.create_histogram(
            "messaging.client.operation.duration", unit="s",
            description="Duration of send (until the broker's outcome), process, declare "
                        "and discharge")
        self.lag = meter.create_histogram(
            "proton_easy.consume.lag", unit="s",
            description="From a message's creation time to its hand-over to the application")
        self.reconnects = meter.create_counter(
            "proton_easy.reconnects", unit="{reconnect}",
            description="Connections re-established after a drop")
        self.failovers = meter.create_counter(
            "proton_easy.failovers", unit="{failover}",
            description="Connections made to another URL of the failover list than "
                        "the one before (at the first connect: than the first)")
        self.credit = meter.create_counter(
            "proton_easy.credit.granted", unit="{message}",
            description="Link credit granted to brokers by receivers")
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self._bases: Dict[Any, Dict[str, Any]] = {}
        self._metrics: Dict[Any, Dict[str, Any]] = {}
        meter.create_observable_gauge(
            "proton_easy.in_doubt", callbacks=[self._observe_in_doubt], unit="{delivery}",
            description="Deliveries whose outcome is unknown if the connection drops now, "
                        "over the jobs of every connection")

    # -- attributes ----------------------------------------------------------------------------
    def base(self, conn: Any, operation: str, address: Optional[str]) -> Dict[str, Any]:
        """The attributes every span and measurement of a connection's operation carries (a
        dict of the caller's own)."""
        key = (getattr(conn, "product", None), getattr(conn, "current_url", None), operation,
               address)
        attrs = self._bases.get(key)
        if attrs is None:
            attrs = self._base(conn, operation, address)
            if len(self._bases) < _CACHED:
                self._bases[key] = attrs
        return dict(attrs)

    @staticmethod
    def _base(conn: Any, operation: str, address: Optional[str]) -> Dict[str, Any]:
        attrs: Dict[str, Any] = {
            "messaging.system": _system(getattr(conn, "product", None)),
            "messaging.operation.name": operation,
        }
        if operation in ("send", "receive", "process", "settle"):
            attrs["messaging.operation.type"] = operation
        if address:
            attrs["messaging.destination.name"] = address
        url = getattr(conn, "current_url", None)
        if url:
            try:
                parts = urlsplit(url)  # the display URL: no password in it
                if parts.hostname:
                    attrs["server.address"] = parts.hostname
                if parts.port:
                    attrs["server.port"] = parts.port
            except ValueError:
                pass
        return attrs

    @staticmethod
    def _message_attrs(attrs: Dict[str, Any], msg: Message) -> Dict[str, Any]:
        attrs = dict(attrs)
        if msg.id is not None:
            attrs["messaging.message.id"] = str(msg.id)
        if msg.correlation_id is not None:
            attrs["messaging.message.conversation_id"] = str(msg.correlation_id)
        size = _body_size(msg.body)
        if size is not None:
            attrs["messaging.message.body.size"] = size
        return attrs

    def _metric_attrs(self, attrs: Dict[str, Any]) -> Dict[str, Any]:
        """The attributes of a span that its measurements carry too (shared: do not change)."""
        get = attrs.get
        key = tuple(get(name) for name in _METRIC_KEYS)
        metric = self._metrics.get(key)
        if metric is None:
            metric = {name: value for name, value in zip(_METRIC_KEYS, key) if value is not None}
            if len(self._metrics) < _CACHED:
                self._metrics[key] = metric
        return metric

    # -- trace context in messages ------------------------------------------------------------
    def inject(self, msg: Message, ctx: Any = None) -> None:
        """Write the current (or ``ctx``'s) trace context into a private message copy."""
        carrier: Dict[str, str] = {}
        self._propagator.inject(carrier, context=ctx)
        if not carrier:
            return
        msg.properties = {**msg.properties, **carrier}
        msg.annotations = {**msg.annotations, QPID_ANNOTATION: dict(carrier)}
        if msg.creation_time is None:
            msg.creation_time = time.time()

    def extract(self, msg: Message) -> Any:
        """The context a received message carries (an empty one when none, or malformed)."""
        carrier: Dict[str, str] = {}
        try:
            for source in (msg.annotations, msg.annotations.get(QPID_ANNOTATION),
                           msg.properties):
                if isinstance(source, dict) and isinstance(source.get(TRACEPARENT), str):
                    carrier[TRACEPARENT] = source[TRACEPARENT]
                    state = source.get(TRACESTATE)
                    if isinstance(state, str):
                        carrier[TRACESTATE] = state
                    break
            return self._propagator.extract(carrier)
        except Exception:  # noqa: BLE001 - a broken context is no reason to fail a message
            log.debug("ignoring a malformed trace context", exc_info=True)
            return self._context.Context()

    # -- sending --------------------------------------------------------------------------------
    def start_send(self, conn: Any, address: str, item: Any, durable: bool,
                   delay: Optional[float] = None) -> Traced:
        """Start a send span in the calling thread and encode ``item`` carrying its context."""
        attrs = self.base(conn, "send", address)
        msg = None if type(item) is Encoded or type(item) is Traced else _copy(item)
        if msg is not None:
            attrs = self._message_attrs(attrs, msg)
        span = self.tracer.start_span(f"send {address}", kind=self._trace.SpanKind.PRODUCER,
                                      attributes=attrs)
        if msg is not None:
            self.inject(msg, self._trace.set_span_in_context(span))
            payload = Traced(encode(msg, durable, delay))
        else:
            payload = Traced(item)
        attrs["messaging.message.envelope.size"] = len(payload)
        span.set_attribute("messaging.message.envelope.size", len(payload))
        payload.span, payload.tel, payload.attrs = span, self, attrs
        payload.start = time.monotonic()
        return payload

    def end_send(self, span: Any, attrs: Dict[str, Any], start: float,
                 error: Optional[BaseException]) -> None:
        """End a send span (and count the message) with its outcome."""
        outcome = _outcome(error)
        span.set_attribute("proton_easy.outcome", outcome)
        metric = self._metric_attrs(attrs)
        if error is not None:
            self._error(span, error)
        self.duration.record(time.monotonic() - start,
                             {**metric, **({"error.type": type(error).__name__} if error else {})})
        self.sent.add(1, {**metric, "proton_easy.outcome": outcome})
        span.end()

    def encode_batch(self, batch: Batch, item: Any, durable: bool,
                     delay: Optional[float] = None) -> Encoded:
        """Encode one message of a batch (``send_many``, a handler Sender) carrying the batch
        span's context; encoded input passes through."""
        kind = type(item)
        if kind is Encoded or kind is Traced:
            return item  # type: ignore[no-any-return]
        if delay is None and kind in _PLAIN_KINDS:
            fast = batch.encode_plain(item, durable)  # the batch's sections, then the body
            if fast is not None:
                return fast
        msg = _copy(item)
        self.inject(msg, batch.ctx)
        return encode(msg, durable, delay)

    def encode_current(self, item: Any, durable: bool) -> Encoded:
        """Encode ``item`` carrying the calling thread's trace context (a transaction's send,
        whose batch has its declare and discharge spans)."""
        msg = _copy(item)
        self.inject(msg)
        return encode(msg, durable)

    def next_encoded(self, job: Any) -> Optional[Encoded]:
        """A handler Sender's next message, encoded with its batch span's context (None: no
        more)."""
        item = next(job._items, _NONE)
        if item is _NONE:
            return None
        return self.encode_batch(job._otel_span, item, job.durable, job.delay)

    def start_batch(self, conn: Any, address: Optional[str], parent: Any = None) -> Batch:
        """Start the send span of a batch (``send_many``, a Sender with a count or an iterable)
        in the calling thread; bind it to the job with :meth:`Batch.bind`."""
        attrs = self.base(conn, "send", address)
        span = self.tracer.start_span(f"send {address or ''}".rstrip(), context=parent,
                                      kind=self._trace.SpanKind.PRODUCER, attributes=attrs)
        return Batch(self, span, self._trace.set_span_in_context(span), attrs)

    # -- jobs -----------------------------------------------------------------------------------
    def job_started(self, job: Any) -> None:
        """A job starts on its connection (on the loop): remember the telemetry, open a batch
        span for a sender with a count or an iterable."""
        job._tel = self
        if job._conn is not None:
            self._connections.add(job._conn)
        if job._otel_batch and job._otel_span is None and not job.open_ended:
            job._otel_span = self.start_batch(job._conn, job.address, job._otel_parent)

    def end_batch(self, job: Any, batch: Batch) -> None:
        """A batch's job ended: end its span with its count and outcome."""
        span, error = batch.span, job.error
        metric = self._metric_attrs(batch.attrs)
        sent = getattr(job, "sent", 0)
        confirmed = getattr(job, "confirmed", 0)
        span.set_attribute("messaging.batch.message_count", sent)
        if confirmed:
            self.sent.add(confirmed, {**metric, "proton_easy.outcome": "accepted"})
        if error is not None:
            self.sent.add(max(0, sent - confirmed), {**metric,
                                                     "proton_easy.outcome": _outcome(error)})
            self._error(span, error)
        self.duration.record(time.monotonic() - batch.start, metric)
        span.end()

    # -- receiving ------------------------------------------------------------------------------
    def _consumer_span(self, operation: str, job: Any, msg: Message,
                       address: Optional[str] = None) -> Any:
        attrs = self._message_attrs(self.base(job._conn, operation,
                                              address or job.address), msg)
        parent = self.extract(msg)
        metric = self._metric_attrs(attrs)
        self.consumed.add(1, metric)
        if msg.creation_time:
            self.lag.record(max(0.0, time.time() - msg.creation_time), metric)
        name = f"{operation} {attrs.get('messaging.destination.name', '')}".rstrip()
        span = self.tracer.start_span(name, context=parent, kind=self._trace.SpanKind.CONSUMER,
                                      attributes=attrs)
        return span, metric

    def received(self, job: Any, msg: Message, address: Optional[str] = None) -> None:
        """One message taken by a receive (no processing of ours follows): a receive span,
        a child of the context the message carries."""
        self._consumer_span("receive", job, msg, address)[0].end()

    def deliver(self, job: Any, msg: Message, hook: Callable[[Message], Any]) -> None:
        """Hand a message to a Receiver's ``on_received``: a process span around a hook a
        subclass wrote, a receive span when the default hook only collects it."""
        if type(job).on_received.__qualname__ == "Receiver.on_received":
            span, metric = self._consumer_span("receive", job, msg)
            span.end()
            hook(msg)
            self.settled.add(1, {**metric, "proton_easy.outcome": "accepted"})
            return
        with self.processing(job, msg):
            hook(msg)

    def processing(self, job: Any, msg: Message, settle_later: bool = False) -> _Processing:
        """A process span, current while the application handles ``msg`` (a context manager;
        or :meth:`_Processing.start` and :meth:`_Processing.end` across calls);
        ``settle_later``: a consumer settles it afterwards (:meth:`settle_batch`)."""
        return _Processing(self, job, msg, settle_later)

    def respond(self, job: Any, msg: Message, respond: Callable[[Message], Any]) -> Any:
        """Call a responder's ``respond`` inside a process span; its reply carries the span's
        context."""
        proc = self.processing(job, msg).start()
        try:
            result = proc.reply(respond(msg))
        except BaseException as exc:
            proc.end(exc, "rejected")
            raise
        proc.end()
        return result

    # -- request/reply ------------------------------------------------------------------------
    def start_request(self, job: Any, msg: Message, address: Optional[str]) -> None:
        """A request's send span (started in the calling thread), its context in ``msg``."""
        attrs = self._message_attrs(self.base(job._conn, "send", address), msg)
        span = self.tracer.start_span(f"send {address or ''}".rstrip(),
                                      kind=self._trace.SpanKind.PRODUCER, attributes=attrs)
        self.inject(msg, self._trace.set_span_in_context(span))
        requests = job.__dict__.setdefault("_otel_requests", {})
        requests[msg.correlation_id] = (self, span, attrs, time.monotonic())

    # -- transactions ---------------------------------------------------------------------------
    def control(self, job: Any, operation: str, dlv: Any, abort: Optional[bool] = None) -> None:
        """A transaction's declare or discharge (``abort``: a rollback asked for) went out:
        its span starts."""
        attrs = self.base(job._conn, operation, None)
        if abort is not None:
            attrs["proton_easy.transaction.abort"] = abort
        span = self.tracer.start_span(operation, context=job._otel_parent,
                                      kind=self._trace.SpanKind.CLIENT, attributes=attrs)
        job.__dict__.setdefault("_otel_controls", {})[dlv] = (span, attrs, time.monotonic())

    def control_done(self, job: Any, dlv: Any, **result: Any) -> None:
        """The broker answered a declare or discharge: its span ends."""
        entry = job.__dict__.get("_otel_controls", {}).pop(dlv, None)
        if entry is None:
            return
        span, attrs, start = entry
        for key, value in result.items():
            if value is not None:
                span.set_attribute(f"proton_easy.transaction.{key}", value)
        if result.get("error") is not None:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, result["error"]))
        self.duration.record(time.monotonic() - start, self._metric_attrs(attrs))
        span.end()

    def _observe_in_doubt(self, options: Any) -> Any:
        from opentelemetry.metrics import Observation

        total = 0
        for conn in list(self._connections):
            try:  # (read from the collecting thread: the books are plain counts)
                total += sum(job.in_doubt for job in list(conn.jobs))
            except RuntimeError:  # the set changed meanwhile: counted at the next collection
                continue
        return [Observation(total)]

    def settle_batch(self, job: Any, count: int) -> None:
        """A consumer accepts ``count`` messages its application finished with (on the loop):
        a settle span, a child of the last one's process span, linked to each."""
        contexts = job.__dict__.get("_otel_settling")
        links: List[Any] = []
        while contexts and len(links) < count:
            links.append(self._trace.Link(contexts.popleft()))
        attrs = self.base(job._conn, "settle", job.address)
        attrs["messaging.batch.message_count"] = count
        attrs["proton_easy.outcome"] = "accepted"
        parent = self._trace.set_span_in_context(
            self._trace.NonRecordingSpan(links[-1].context)) if links else None
        self.tracer.start_span(f"settle {job.address or ''}".rstrip(), context=parent,
                               kind=self._trace.SpanKind.CLIENT, attributes=attrs,
                               links=links).end()

    # -- the connection -------------------------------------------------------------------------
    def reconnected(self, conn: Any) -> None:
        """A dropped connection came back."""
        self.reconnects.add(1, {"messaging.system": _system(getattr(conn, "product", None))})

    def failed_over(self, conn: Any) -> None:
        """A connection attempt moved to another URL of the failover list."""
        self.failovers.add(1, {"messaging.system": _system(getattr(conn, "product", None))})

    def _error(self, span: Any, error: BaseException) -> None:
        span.set_attribute("error.type", type(error).__name__)
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR,
                                           f"{type(error).__name__}: {error}"))


_NONE = object()
_PLAIN_KINDS = (str, bytes, int, float, bool, dict, list)


def request_sent(job: Any, corr: Any, error: Optional[BaseException] = None) -> None:
    """A request is on the wire (or, with ``error``, never will be): its send span ends.

    >>> class Job: pass
    >>> request_sent(Job(), "c-1")   # no span for it: nothing to do
    """
    entry = job.__dict__.get("_otel_requests", {}).pop(corr, None)
    if entry is not None:
        tel, span, attrs, start = entry
        metric = tel._metric_attrs(attrs)
        tel.sent.add(1, {**metric, "proton_easy.outcome": _outcome(error) if error else "sent"})
        tel.duration.record(time.monotonic() - start, metric)
        if error is not None:
            tel._error(span, error)
        span.end()


def job_ended(job: Any) -> None:
    """A job ended: its batch span ends, and so do the spans of requests it never sent and of
    transaction controls the broker never answered.

    >>> class Job: _otel_span = None; error = None
    >>> job_ended(Job())
    """
    batch, job._otel_span = job._otel_span, None
    if batch is not None:
        batch.tel.end_batch(job, batch)
    error = job.error or _Cancelled("the job ended first")
    for corr in list(job.__dict__.get("_otel_requests", ())):
        request_sent(job, corr, error)
    controls = job.__dict__.get("_otel_controls")
    while controls:
        _, (span, _attrs, _start) = controls.popitem()
        span.set_status(_status_error(str(error)))
        span.end()


def _status_error(text: str) -> Any:
    from opentelemetry import trace

    return trace.Status(trace.StatusCode.ERROR, text)


class Batch:
    """The send span of a batch, and the context its messages carry."""

    def __init__(self, tel: Telemetry, span: Any, ctx: Any, attrs: Dict[str, Any]) -> None:
        self.tel = tel
        self.span = span
        self.ctx = ctx
        self.attrs = attrs
        self.start = time.monotonic()
        self._prefixes: Dict[bool, bytes] = {}

    def encode_plain(self, body: Any, durable: bool) -> Optional[Encoded]:
        """A plain body encoded after the sections every message of this batch shares (its
        trace context, and the batch's creation time): None if it cannot be (the caller's
        ``encode`` then says why)."""
        prefix = self._prefixes.get(durable)
        if prefix is None:
            carrier: Dict[str, str] = {}
            self.tel._propagator.inject(carrier, context=self.ctx)
            pm = proton.Message()
            pm.durable = durable
            pm.creation_time = time.time()
            if carrier:
                pm.properties = dict(carrier)  # type: ignore[assignment]
                pm.annotations = {QPID_ANNOTATION: dict(carrier)}  # type: ignore[dict-item]
            prefix = self._prefixes[durable] = bytes(codec.encode_message(pm)) + _VALUE
        kind = type(body)
        if kind is str or kind is bytes:
            return encode_plain(prefix, body)
        try:
            return Encoded(codec.encode_value(body, prefix))
        except Exception:  # noqa: BLE001 - encode() gives the full reason
            return None

    def bind(self, job: Any) -> None:
        """The job (a Sender) whose end ends this span."""
        job._otel_span = self

    def abandon(self, error: BaseException) -> None:
        """End the span of a batch that never started (its messages could not be encoded)."""
        self.tel._error(self.span, error)
        self.span.end()


class _Processing:
    """A process span made current while the application handles one message."""

    def __init__(self, tel: Telemetry, job: Any, msg: Message, settle_later: bool = False) -> None:
        self._settle_later = settle_later
        self._tel = tel
        self._job = job
        self._msg = msg
        self._span: Any = None
        self._token: Any = None
        self._ctx: Any = None
        self._metric: Dict[str, Any] = {}
        self._start = 0.0

    def start(self) -> _Processing:
        """Start the span and make it current."""
        tel = self._tel
        self._span, self._metric = tel._consumer_span("process", self._job, self._msg)
        self._ctx = tel._trace.set_span_in_context(self._span)
        self._token = tel._context.attach(self._ctx)
        self._start = time.monotonic()
        return self

    def reply(self, result: Any) -> Any:
        """``result`` as a reply that carries this span's context (when the request asks for
        a reply)."""
        if not self._msg.reply_to:
            return result
        try:
            reply = _copy(result)
        except TypeError:
            return result
        self._tel.inject(reply, self._ctx)
        return reply

    def end(self, error: Optional[BaseException] = None, outcome: Optional[str] = None) -> None:
        """End the span (``error``: what the handling raised); the message was settled with
        ``outcome`` (accepted unless an error says modified)."""
        span, self._span = self._span, None
        if span is None:
            return
        tel = self._tel
        if self._token is not None:
            token, self._token = self._token, None
            if tel._context.get_current() is self._ctx:
                tel._context.detach(token)
        outcome = outcome or ("accepted" if error is None else "modified")
        span.set_attribute("proton_easy.outcome", outcome)
        if error is not None:
            span.record_exception(error)
            tel._error(span, error)
        tel.settled.add(1, {**self._metric, "proton_easy.outcome": outcome})
        if outcome == "accepted" and self._settle_later:  # the consumer's settle span links it
            self._job.__dict__.setdefault("_otel_settling", collections.deque()).append(
                span.get_span_context())
        tel.duration.record(time.monotonic() - self._start, self._metric)
        span.end()

    def __enter__(self) -> _Processing:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.end(exc)


def _copy(item: Any) -> Message:
    """A private Message for a body or message (the caller's is not changed)."""
    if isinstance(item, Message):
        return copy.copy(item)
    if isinstance(item, proton.Message):
        return Message.from_proton(item)
    return Message(item)

