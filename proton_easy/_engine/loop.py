"""The loop thread: one proton Container per Client, fed work from other threads.

Only an ``EventInjector``'s pipe is safe to use from outside the reactor thread, so every call
from a user thread goes through :meth:`Loop.call` (or :meth:`Loop.post`), which queues a callable
and wakes the reactor through that pipe (:class:`_Waker`); calls queued while a wake-up is pending
share it.

Delivery events, one or more per message, skip proton's generic dispatch when the link's
handler has an ``on_raw_delivery(delivery)`` method (and a Sender's flow events go to its
``on_raw_flow(link)``): see :class:`RawDeliveryCollector`. The loop's IO
(:class:`_LeanIOHandler`) reads, writes and waits for its sockets without proton's
per-change selectable events: a message sent and confirmed makes no proton event object.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import uuid
import weakref
from concurrent.futures import Future
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple, cast

from proton import Collector, Event, Handler, ProtonException
from proton.handlers import IOHandler, OutgoingMessageHandler
from proton.reactor import Container, EventInjector

from . import compat

log = logging.getLogger("proton_easy")
_proton_log = logging.getLogger("proton")  # (where proton's IO handler logs)

_Selectable: Any
try:  # the plain selectable of a connected socket (see _LeanIOHandler)
    from proton._selectable import Selectable as _Selectable
except ImportError:  # pragma: no cover - a proton that moved it: no early writes
    _Selectable = None

_GlobalOverrides: Any
try:  # the container's global handler chain, rebuilt by LoopContainer
    from proton._reactor import GlobalOverrides as _GlobalOverrides
except ImportError:  # pragma: no cover - a proton that moved it: the plain Container then
    _GlobalOverrides = None


def route_error(event: Any, exc: BaseException) -> None:
    """Hand an exception raised while dispatching ``event`` to what the event belongs to: the
    job handling its link (``_fail``), else the connection's handler (``event_error``), else
    the log. The loop thread goes on with the next event either way."""
    for name in ("link", "session", "connection"):
        try:
            endpoint = getattr(event, name, None)
            handler = getattr(endpoint, "handler", None) if endpoint is not None else None
        except Exception:  # noqa: BLE001 - an event without that context
            continue
        if handler is None:
            continue
        if name != "connection" and callable(getattr(handler, "_fail", None)):
            log.debug("error in %s handling %s", type(handler).__name__, event, exc_info=exc)
            try:
                handler._fail(exc)
            except Exception:  # noqa: BLE001
                log.exception("error while failing %s", type(handler).__name__)
            return
        if name == "connection" and callable(getattr(handler, "event_error", None)):
            try:
                handler.event_error(event, exc)
            except Exception:  # noqa: BLE001
                log.exception("error while handling an error of %s", event)
            return
    if getattr(event, "transport", None) is not None and getattr(event, "connection",
                                                                  None) is None:
        # a transport already unbound from its connection: nothing left to tell
        log.debug("error while handling %s (unbound transport)", event, exc_info=exc)
        return
    log.error("error while handling %s", event, exc_info=exc)


class _GuardedEvent(Event):
    """A proton event whose dispatch to a handler cannot raise: errors go to
    :func:`route_error`."""

    def dispatch(self, handler: Handler, type: Any = None) -> None:
        try:
            super().dispatch(handler, type)
        except Exception as exc:  # noqa: BLE001 - the loop thread must go on
            route_error(self, exc)


class _GuardedHandler(Handler):
    """Dispatches every event to ``base``, routing what it raises (:func:`route_error`): the
    container's global handler, where proton's IO handler resolves host names
    (``socket.gaierror`` from ``on_connection_bound``)."""

    def __init__(self, base: Any) -> None:
        self.base = base
        self.handlers: List[Any] = []

    def on_unhandled(self, method: str, event: Any) -> None:
        try:
            event.dispatch(self.base)
        except Exception as exc:  # noqa: BLE001 - the loop thread must go on
            route_error(event, exc)


READS_PER_PASS = 4
"""How many times a pass of the loop reads a socket that keeps filling what the transport takes
(a full read means more is waiting): more per pass, fewer passes per message."""


class _LeanIOHandler(IOHandler):
    """proton's IO handler, minus one event per change of a socket's interest.

    proton's ``IOHandler.update`` (after every read, write, tick and ``PN_TRANSPORT`` event)
    sets what a socket's selectable waits for, then pushes a ``SELECTABLE_UPDATED`` event,
    whose only handling is this handler's ``on_selectable_updated``: telling the selector. Here
    the selector is told at once when the selectable is a connected socket it already holds
    (the selector is read only when the loop is quiesced, after every event); anything else
    (a selectable becoming terminal, one not registered yet) still goes through the event.

    ``PN_TRANSPORT`` events ("the transport has output") of connections whose handlers ignore
    them are not dispatched at all (see :class:`RawDeliveryCollector`): :meth:`flush`, called
    by the collector each time it runs out of events, writes what the connections hold and
    updates every connected socket instead. What a connection has to write is so written as
    soon as the events are processed, before the selector waits: proton would otherwise wait
    for the selector to report the socket writable, one more pass of the loop per message.

    A connected socket the selector reports readable is read at once, rather than through a
    ``SELECTABLE_READABLE`` event whose only handling is this handler's.
    """

    _selector: Any
    dirty = False
    """True when a ``PN_TRANSPORT`` event was dropped since the last :meth:`flush`."""

    def on_reactor_quiesced(self, event: Any) -> None:
        """proton's: wait for the sockets (and timers), then handle what they report."""
        r = event.reactor
        if r.quiesced:
            self.wait(r)

    def wait(self, r: Any) -> None:
        """Wait for the sockets (and timers) of the quiesced reactor ``r``, then handle what
        they report."""
        _ = r.timer_deadline  # (drops cancelled timers)
        readable, writable, expired = self._selector.select(r.timeout)
        now = r.mark()
        for sel in readable:
            if not self._read(sel, now):
                sel.readable()
        for sel in writable:
            sel.writable()
        for sel in expired:
            sel.expired()
        r.yield_()

    def _read(self, sel: Any, now: float) -> bool:
        """What ``on_selectable_readable`` does for a connected socket, without its event;
        False (nothing done) for any other selectable, or when the read ends the socket or
        fails (the event then handles it, as before)."""
        if type(sel) is not _Selectable or sel.is_terminal or getattr(sel, "handler", None):
            return False
        transport = getattr(sel, "_transport", None)
        if transport is None:
            return False
        try:
            capacity = transport.capacity()
        except ProtonException:
            return False  # (the event's handling meets it again, as before)
        if capacity > 0:
            try:
                data = sel.recv(capacity)
            except OSError as exc:  # what proton's on_selectable_readable does
                _proton_log.error("Couldn't recv: %r", exc)
                transport.close_tail()
                data = None
            if data is not None:
                if not data:
                    return False  # end of stream: the event's handling closes the transport
                transport.push(data)
                reads = READS_PER_PASS
                while len(data) == capacity and reads > 1:  # a full read: more is waiting
                    reads -= 1
                    try:
                        capacity = transport.capacity()
                        if capacity <= 0:
                            break
                        data = sel.recv(capacity)
                    except (OSError, ProtonException):
                        break  # drained (would block), or an error the next pass's read meets
                    if not data:
                        break  # end of stream: the next pass's read sees it too
                    transport.push(data)
        self.update(transport, sel, now)
        return True

    def update(self, transport: Any, selectable: Any, now: float) -> None:  # type: ignore[override]
        """What ``IOHandler.update`` does, with the selector told directly when it can be."""
        selector = self._selector
        if (type(selectable) is not _Selectable or selectable.is_terminal
                or selectable not in selector._selectables):
            IOHandler.update(transport, selectable, now)
            return
        try:
            selectable.reading = transport.capacity() > 0
            selectable.writing = transport.pending() > 0
        except ProtonException:
            IOHandler.update(transport, selectable, now)  # proton's way of ending it
            return
        selectable.deadline = transport.tick(now)
        selector.update(selectable)

    def flush(self, now: float) -> None:
        """Write what every connected socket's transport holds, as far as the socket takes it
        without blocking (the rest waits for the socket to be writable, as before), and update
        the selector for those written to, or for all after a ``PN_TRANSPORT`` event was
        dropped (``dirty``)."""
        dirty, self.dirty = self.dirty, False
        for sel in list(self._selector._selectables):
            if type(sel) is not _Selectable or sel.is_terminal or getattr(sel, "handler", None):
                continue  # proton's ConnectSelectable (still connecting), the waker ...
            transport = getattr(sel, "_transport", None)
            if transport is None:
                continue
            try:
                pending = transport.pending()
                if pending > 0:
                    transport.pop(sel.send(transport.peek(pending)))
                elif not dirty:
                    continue
            except Exception:  # noqa: BLE001 - a full socket (BlockingIOError), a closed one:
                pass  # the selector's writable event meets it and handles it, as before
            try:
                self.update(transport, sel, now)
            except Exception:  # noqa: BLE001 - (called between events: nothing may escape)
                log.debug("error updating a socket's selectable", exc_info=True)


def _lean_io_available() -> bool:
    selector = getattr(IOHandler(), "_selector", None)
    return (_Selectable is not None and isinstance(getattr(selector, "_selectables", None), set)
            and callable(getattr(selector, "update", None)))


_LEAN_IO = _lean_io_available()
"""True when proton's IO handler has the selector :class:`_LeanIOHandler` relies on."""


_RAW_COLLECTOR = compat.NATIVE and hasattr(Collector(), "_impl") and hasattr(Event, "wrap")


class RawDeliveryCollector(Collector):
    """proton's event collector, with a short cut for delivery events (and guarded events).

    For every event proton wraps the delivery, link, session, connection and transport in
    Python objects, looks for the handler, then dispatches to it and to the global handler
    (which ignores deliveries). A delivery event whose link handler has an
    ``on_raw_delivery(delivery)`` method is instead handed the raw ``pn_delivery_t`` pointer
    here and popped, in order with every other event, before proton's loop sees it. Other
    events are dispatched as :class:`_GuardedEvent`\\ s. Used only when
    :data:`~proton_easy._engine.compat.NATIVE`.
    """

    guard_events = False
    """True: events are dispatched as :class:`_GuardedEvent` and a raw delivery handler's error
    fails its job (a Client's loop); False: errors propagate, so that a plain
    ``Container(job).run()`` raises them as before."""

    io: Optional[_LeanIOHandler] = None
    """A Client's loop: its IO handler, which :meth:`peek` asks to write and update the
    sockets each time it runs out of events; ``PN_TRANSPORT`` events of connections whose
    handlers ignore them are then dropped (see :class:`_LeanIOHandler`)."""

    reactor: Optional[Callable[[], Any]] = None
    """With ``io``: a weak reference to the container (whose clock the IO updates read)."""

    _raw_links: Optional[Dict[Any, Tuple[Any, Any]]] = None
    """Receiving links (``pn_link_t`` pointers, each with a reference taken) -> their handler
    and its ``on_raw_delivery``: found once per link, not per message. A link is forgotten when
    it is closed or detached here (or freed), so neither it nor its job is kept longer than
    that; at most :data:`_RAW_LINKS_KEPT` are kept (all are forgotten when there are more)."""

    _rest: Optional[List[Callable[[], None]]] = None

    def at_rest(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` once the events in hand are processed, before the loop writes and
        waits for its sockets: once for all that happened meanwhile (a consumer's wake-up
        for every message read in one pass, say)."""
        if self._rest is None:
            self._rest = []
        self._rest.append(fn)

    def _run_at_rest(self) -> None:
        rest, self._rest = self._rest, None
        for fn in rest or ():
            try:
                fn()
            except Exception:  # noqa: BLE001 - the loop thread must go on
                log.exception("error in a call made at the end of the loop's events")

    def _now(self) -> float:
        reactor = self.reactor() if self.reactor is not None else None
        return float(reactor.now) if reactor is not None else time.time()

    def _keep_link(self, links: Dict[Any, Tuple[Any, Any]], link: Any,
                   found: Tuple[Any, Any]) -> None:
        lib = compat.lib
        if not _KEEP_LINKS or lib.pn_link_state(link) & _PN_LOCAL_CLOSED:
            return  # (closed here already: nothing more is read from it)
        if len(links) >= _RAW_LINKS_KEPT:
            self._forget_links(links)
        lib.pn_incref(link)  # (its pointer cannot be reused for another link while kept)
        links[link] = found

    @staticmethod
    def _forget_links(links: Dict[Any, Tuple[Any, Any]], link: Any = None) -> None:
        """Forget ``link`` (every link when None) and release its reference."""
        lib = compat.lib
        if link is not None:
            if links.pop(link, None) is not None:
                lib.pn_decref(link)
            return
        for kept in list(links):
            del links[kept]
            lib.pn_decref(kept)

    def peek(self) -> Optional[Event]:
        wrap = _guarded if self.guard_events else _unguarded
        lib, ffi = compat.lib, compat.ffi
        impl = self._impl
        links = self._raw_links
        if links is None:
            links = self._raw_links = {}
        while True:
            event = lib.pn_collector_peek(impl)
            if event == ffi.NULL:
                if self._rest:
                    self._run_at_rest()
                io = self.io
                if io is None:
                    return None
                io.flush(self._now())  # (may make events: a flow, a transport)
                event = lib.pn_collector_peek(impl)
                if event == ffi.NULL:
                    return None
            kind = lib.pn_event_type(event)
            if kind == _PN_DELIVERY:
                dlv = lib.pn_event_delivery(event)
                link = lib.pn_delivery_link(dlv)
                found = links.get(link)
                if found is None:
                    attrs = _attachments(lib.pn_link_attachments(link))
                    handler = None if attrs is None else attrs.get("_handler")
                    raw = getattr(handler, "on_raw_delivery", None)
                    if raw is None:
                        return wrap(Event.wrap(event))  # type: ignore[no-untyped-call, no-any-return]
                    self._keep_link(links, link, (handler, raw))
                else:
                    handler, raw = found
                arg = dlv
            elif kind == _PN_LINK_FLOW and _RAW_FLOW:
                link = lib.pn_event_link(event)
                record = lib.pn_record_get_py(lib.pn_link_attachments(link))
                handler = None if record == ffi.NULL else ffi.from_handle(record).get("_handler")
                sender = lib.pn_link_is_sender(link)
                raw = getattr(handler, "on_raw_flow", None) if sender else None
                if raw is None or not getattr(handler, "raw_flow", False):
                    if not _ignores_flow(handler, link, bool(sender)):
                        return wrap(Event.wrap(event))  # type: ignore[no-untyped-call, no-any-return]
                    lib.pn_collector_pop(impl)  # (its dispatch would call nothing)
                    continue
                arg = link
            elif kind == _PN_TRANSPORT and self.io is not None and _RAW_FLOW:
                conn = lib.pn_event_connection(event)
                if conn == ffi.NULL or not _ignores_transport(
                        _attachments(lib.pn_connection_attachments(conn))):
                    return wrap(Event.wrap(event))  # type: ignore[no-untyped-call, no-any-return]
                self.io.dirty = True  # (the next flush updates the sockets)
                lib.pn_collector_pop(impl)
                continue
            else:
                if links and kind in _LINK_ENDS:
                    self._forget_links(links, lib.pn_event_link(event))
                return wrap(Event.wrap(event))  # type: ignore[no-untyped-call, no-any-return]
            try:
                raw(arg)
            except Exception as exc:  # noqa: BLE001 - the loop thread must go on
                fail = getattr(handler, "_fail", None)
                if not self.guard_events:
                    raise
                if callable(fail):
                    fail(exc)
                else:
                    log.exception("error in a raw event handler")
            finally:
                lib.pn_collector_pop(impl)


_PN_DELIVERY = getattr(compat.lib, "PN_DELIVERY", None)
_PN_LINK_FLOW = getattr(compat.lib, "PN_LINK_FLOW", None)
_PN_TRANSPORT = getattr(compat.lib, "PN_TRANSPORT", None)
_PN_LOCAL_CLOSED = getattr(compat.lib, "PN_LOCAL_CLOSED", None)
_LINK_ENDS = frozenset(getattr(compat.lib, name, None) for name in (
    "PN_LINK_LOCAL_CLOSE", "PN_LINK_LOCAL_DETACH", "PN_LINK_FINAL")) - {None}
"""The events after which :class:`RawDeliveryCollector` forgets a link."""
_RAW_LINKS_KEPT = 64
_KEEP_LINKS = len(_LINK_ENDS) == 3 and _PN_LOCAL_CLOSED is not None and all(
    hasattr(compat.lib, name) for name in ("pn_event_link", "pn_link_state"))
"""True when :class:`RawDeliveryCollector` can tell a link's end, and so keep links."""
_RAW_FLOW = _RAW_COLLECTOR and _PN_LINK_FLOW is not None and _PN_TRANSPORT is not None and all(
    hasattr(compat.lib, name) for name in ("pn_event_link", "pn_link_is_sender",
                                           "pn_event_connection", "pn_connection_attachments"))
"""True when flow and transport events can be read raw (see :class:`RawDeliveryCollector`)."""


def _attachments(record: Any) -> Any:
    """The attributes proton keeps in an endpoint's record (a dict), or None."""
    ffi = compat.ffi
    record = compat.lib.pn_record_get_py(record)
    return None if record == ffi.NULL else ffi.from_handle(record)


_QUIET: Dict[Tuple[Any, ...], bool] = {}


def _all_quiet(parts: List[Any], method: str, receiver: bool = False) -> bool:
    """:func:`_quiet` for each handler of ``parts`` (None ones left out), remembered by the
    handlers' types and their children's (the answer per event would cost more than the
    event)."""
    key = (method, receiver) + tuple(type(h) for h in parts) + tuple(
        type(c) for h in parts if h is not None for c in getattr(h, "handlers", ()))
    quiet = _QUIET.get(key)
    if quiet is None:
        quiet = _QUIET[key] = all(_quiet(h, method, receiver) for h in parts if h is not None)
    return quiet


def _ignores_transport(attrs: Any) -> bool:
    """True when a ``PN_TRANSPORT`` event of the connection with these attributes would do
    nothing but proton's IO update: neither its handler (with its children) nor proton's
    reconnecting connector has an ``on_transport`` or an ``on_unhandled`` of its own."""
    if attrs is None:
        return False
    handler = attrs.get("_handler")
    if handler is None:
        return False
    return _all_quiet([handler, attrs.get("_overrides")], "on_transport")


def _quiet(handler: Any, method: str = "on_transport", receiver: bool = False) -> bool:
    """True when dispatching an event to ``handler`` calls no ``method`` (nor any
    ``on_unhandled`` of its own) on it or on its children. (proton's OutgoingMessageHandler,
    a child of every MessagingHandler, takes a ``receiver`` link's ``on_link_flow`` to do
    nothing: it acts on sender links only.)"""
    if getattr(handler, method, None) is not None and not (
            receiver and method == "on_link_flow" and type(handler) is OutgoingMessageHandler):
        return False
    if getattr(type(handler), "on_unhandled", Handler.on_unhandled) is not Handler.on_unhandled:
        return False
    return all(_quiet(child, method, receiver) for child in getattr(handler, "handlers", ()))


def _ignores_flow(handler: Any, link: Any, sender: bool) -> bool:
    """True when a ``PN_LINK_FLOW`` event of ``link`` (a ``pn_link_t``), whose handler is
    ``handler``, would call nothing: neither the handler (with its children), nor the
    connection's overrides, nor proton's IO handler takes it. A receiver's job raises one
    each time it grants credit, and brokers answer a sender's messages with flow frames."""
    if handler is None:
        return False
    lib = compat.lib
    attrs = _attachments(lib.pn_connection_attachments(
        lib.pn_session_connection(lib.pn_link_session(link))))
    overrides = attrs.get("_overrides") if attrs is not None else None
    return _all_quiet([handler, overrides], "on_link_flow", receiver=not sender)


def _ignores_quiesced(root: Any) -> bool:
    """True when the handlers under a container's root handler take no ``REACTOR_QUIESCED``
    (so that only the IO handler does: see :class:`_InlineQuiesced`)."""
    # (its children as parts too: the answer is remembered by two levels of types)
    return _all_quiet([root, *getattr(root, "handlers", ())], "on_reactor_quiesced")


def _guarded(event: Any) -> Any:
    """``event`` dispatched through :class:`_GuardedEvent` (an application event unchanged)."""
    if type(event) is Event:
        event.__class__ = _GuardedEvent
    return event


def _unguarded(event: Any) -> Any:
    return event


class _LoopCollector(RawDeliveryCollector):
    """The collector of a Client's loop: no event's error escapes it (and, with ``io``, see
    :class:`_LeanIOHandler`)."""

    guard_events = True


def use_raw_deliveries(container: Any) -> None:
    """Give a plain proton ``Container`` the short cuts of a Client's loop (for the handler
    classes run as ``Container(handler).run()``): the delivery and flow short cuts of
    :class:`RawDeliveryCollector`, and proton's IO handler as a :class:`_LeanIOHandler`. Other
    handlers' events are dispatched as before (a connection whose handler takes
    ``PN_TRANSPORT`` events still gets them). A no-op where the short cuts are not available,
    and for a container that has them already."""
    if not _RAW_COLLECTOR:
        return
    collector = getattr(container, "_collector", None)
    if type(collector) is not Collector:
        return
    collector.__class__ = RawDeliveryCollector  # same state, methods more
    raw = cast(RawDeliveryCollector, collector)
    overrides = getattr(container, "global_handler", None)
    io = getattr(overrides, "base", None) if (
        _GlobalOverrides is not None and type(overrides) is _GlobalOverrides) else None
    if _LEAN_IO and type(io) is IOHandler:
        io.__class__ = _LeanIOHandler  # same state, leaner updates (and flush)
        raw.io = cast(_LeanIOHandler, io)
        raw.reactor = weakref.ref(container)
        if type(container) is Container:
            container.__class__ = _PlainContainer  # same state, quiesced inline
            cast(_PlainContainer, container)._lean_io = raw.io


_LEAN_CONTAINER = _RAW_COLLECTOR and _GlobalOverrides is not None


class _InlineQuiesced:
    """For a container whose IO handler is a :class:`_LeanIOHandler`: the reactor's
    "quiesced" (pushed by ``process`` when it has run out of events, right before it returns)
    is not an event when the IO handler is its only taker; the IO handler waits for the
    sockets right here. (A mixin: proton finds ``event.container`` by a class named
    Container or a direct base so named.)"""

    _lean_io: Optional[_LeanIOHandler] = None

    def _inline_quiesced(self) -> bool:
        """True when no handler but the IO handler takes the quiesced event."""
        return _ignores_quiesced(self.handler)  # type: ignore[attr-defined]

    def _waited(self, error: Exception) -> None:
        """What becomes of an error of the IO handler's wait: raised, as the event would."""
        raise error

    def push_event(self, obj: Any, etype: Any) -> None:
        """proton's, except for the reactor's quiesced (see the class)."""
        io = self._lean_io
        if (io is None or etype is not Event.REACTOR_QUIESCED or obj is not self
                or not self._inline_quiesced()):
            super().push_event(obj, etype)  # type: ignore[misc]
            return
        try:
            io.wait(self)
        except Exception as exc:  # noqa: BLE001 - handed on
            self._waited(exc)


class _PlainContainer(_InlineQuiesced, Container):
    """What :func:`use_raw_deliveries` makes of a plain proton ``Container`` (same state)."""


class LoopContainer(_InlineQuiesced, Container):
    """The loop's Container: natively without the two SSL domains proton builds eagerly
    (~100 ms per Container), and with a :class:`RawDeliveryCollector`; with proton's public
    API only, a plain Container. Either way its global handler (proton's IO) is guarded.

    TLS connections get the (cached) domain of their :class:`proton_easy.TLS`.
    """

    def __init__(self, *handlers: Any) -> None:
        self._lean_io: Optional[_LeanIOHandler] = None
        if not _LEAN_CONTAINER:
            super().__init__(*handlers)
            self.global_handler = _GuardedHandler(self.global_handler)
            return
        super().__init__(*handlers, impl=None)  # "impl" skips Container's eager set-up ...
        self._collector = _LoopCollector()  # (nothing was collected yet)
        self.ssl = None  # type: ignore[assignment]  # ... which is redone here, minus the SSL domains
        io = self.global_handler
        if _LEAN_IO and type(io) is IOHandler:
            io.__class__ = _LeanIOHandler  # same state, leaner updates (and flush)
            self._collector.io = cast(_LeanIOHandler, io)
            self._collector.reactor = weakref.ref(self)
        self.global_handler = _GuardedHandler(_GlobalOverrides(io))
        self._lean_io = self._collector.io
        self.trigger = None
        self.container_id = str(uuid.uuid4())
        self.allow_insecure_mechs = True
        self.allowed_mechs = None
        self.sasl_enabled = True
        self.user = None
        self.password = None

    def at_rest(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` on the loop thread once the events in hand are processed (see
        :meth:`RawDeliveryCollector.at_rest`); at once with proton's public API only."""
        collector = self._collector
        if isinstance(collector, RawDeliveryCollector):
            collector.at_rest(fn)
            return
        try:
            fn()
        except Exception:  # noqa: BLE001 - the loop thread must go on
            log.exception("error in a call made at the end of the loop's events")

    def _inline_quiesced(self) -> bool:
        return True  # the loop's own handlers take no quiesced

    def _waited(self, error: Exception) -> None:
        log.exception("error while waiting for the connections' sockets")  # the loop goes on


class _LoopHandler(Handler):
    """The container's own handler: runs queued calls on the reactor thread. Every reactor and
    I/O event passes through it, so it has no child handlers to dispatch them to."""

    def __init__(self, loop: Loop) -> None:
        self.handlers: List[Any] = []
        self.loop = loop

    def on_reactor_init(self, event: Any) -> None:
        self.loop._started.set()


class _Waker(EventInjector):
    """The loop's wake-up pipe: when it is readable the loop runs the queued calls right there
    (rather than through an ApplicationEvent per wake-up, dispatched like any other event)."""

    def __init__(self, loop: Loop) -> None:
        super().__init__()
        self._loop = loop
        self._shut = False

    def close(self) -> None:
        """Close the injector (from the loop thread)."""
        self._shut = True
        super().close()

    def wake(self) -> None:
        """Wake the loop (from any thread)."""
        os.write(self.pipe[1], b"!")

    def on_selectable_readable(self, event: Any) -> None:
        os.read(self.pipe[0], 512)
        self._loop._drain()
        if self._shut:
            sel = event.context
            sel.terminate()
            sel.update()


class Loop:
    """A proton Container running in a daemon thread.

    >>> loop = Loop("example")
    >>> loop.call(lambda: 1 + 1).result(timeout=5)
    2
    >>> loop.stop()
    """

    def __init__(self, name: str = "proton-easy") -> None:
        self._calls: Deque[tuple[Callable[[], Any], Optional[Future[Any]]]] = collections.deque()
        self._wakeup_pending = False  # a wake-up is on its way: later calls need no other
        self._handler = _LoopHandler(self)
        self.container = LoopContainer(self._handler)
        self._injector = _Waker(self)
        self.container.selectable(self._injector)
        self._started = threading.Event()
        self._stopped = False
        self._lock = threading.Lock()  # guards the injector's pipe against closing mid-write
        self._lingering = False  # the loop waits in linger(): calls wake it without the pipe
        self._linger_cond = threading.Condition(self._lock)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def finished(self) -> bool:
        """True once the loop thread has ended (nothing runs on its proton objects any more)."""
        return not self._thread.is_alive()

    @property
    def in_loop(self) -> bool:
        """True when called from the loop thread itself."""
        return threading.current_thread() is self._thread

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn()`` on the loop thread; the returned Future holds its result or error."""
        fut: Future[Any] = Future()
        if self.in_loop and not self._stopped:
            self._invoke(fn, fut)
            return fut
        if not self._queue(fn, fut):
            fut.set_exception(RuntimeError("the client is closed"))
        return fut

    def post(self, fn: Callable[[], Any]) -> bool:
        """Run ``fn()`` on the loop thread without waiting for it (errors are logged);
        False if the loop has stopped. Cheaper than :meth:`call`: no Future."""
        if self.in_loop and not self._stopped:
            self._invoke(fn, None)
            return True
        return self._queue(fn, None)

    def _queue(self, fn: Callable[[], Any], fut: Optional[Future[Any]]) -> bool:
        with self._lock:
            if self._stopped:
                return False
            self._calls.append((fn, fut))
            if self._lingering:
                self._linger_cond.notify()
            elif not self._wakeup_pending:
                self._wakeup_pending = True
                self._injector.wake()
        return True

    def _invoke(self, fn: Callable[[], Any], fut: Optional[Future[Any]]) -> None:
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            if fut is not None and not fut.done():
                fut.set_exception(exc)
            else:
                log.exception("error in a proton_easy loop call")
        else:
            if fut is not None and not fut.done():
                fut.set_result(result)

    def linger(self, seconds: float) -> bool:
        """On the loop thread: wait up to ``seconds`` for a call from another thread (one
        expected at once, such as a reply being made) and run the calls queued; True if one
        came. The call then runs without a trip through the wake-up pipe and the selector.
        Only for short waits: the connection's other events wait meanwhile."""
        with self._lock:
            if not self._calls and not self._stopped:
                self._lingering = True
                try:
                    self._linger_cond.wait(seconds)
                finally:
                    self._lingering = False
            came = bool(self._calls)
        while self._calls:
            fn, fut = self._calls.popleft()
            self._invoke(fn, fut)
        return came

    def _drain(self) -> None:
        with self._lock:
            self._wakeup_pending = False  # calls queued from now on send a wake-up of their own
        while self._calls:
            fn, fut = self._calls.popleft()
            self._invoke(fn, fut)

    def _run(self) -> None:
        try:
            self.container.run()
        except BaseException:  # noqa: BLE001 - a loop must never die silently
            log.exception("proton_easy loop thread crashed")
        finally:
            with self._lock:
                self._stopped = True
                for fd in self._injector.pipe:  # proton never closes the injector's pipe
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            while self._calls:
                _, fut = self._calls.popleft()
                if fut is not None and not fut.done():
                    fut.set_exception(RuntimeError("the client is closed"))

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the container and join the thread (idempotent)."""
        if not self._stopped and self._thread.is_alive():
            def _shutdown() -> None:
                self._injector.close()
                self.container.stop()

            self._queue(_shutdown, None)
            if not self.in_loop:
                self._thread.join(timeout)
        self._stopped = True
