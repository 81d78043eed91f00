"""Request/reply handler classes: :class:`Requester` and :class:`Responder`, the seed's
request/reply ``Client`` and ``Server`` as classes to subclass (re-exported by
:mod:`proton_easy.handlers`). The blocking ``request`` and ``serve`` of
:mod:`proton_easy._request_reply` drive them.

>>> from proton_easy.handlers import Responder
>>> class Server(Responder):
...     def respond(self, msg):
...         return msg.body.upper()
>>> # Container(Server("amqp://localhost:5672/examples")).run()
"""

from __future__ import annotations

import bisect
import collections
import itertools
import logging
import time
import uuid
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Tuple

from proton import byte, symbol

from .. import _otel
from .._engine import raw as _raw
from .._errors import LinkError, Timeout, delivery_error, link_error
from .._message import Decoder, Message, encode
from .._options import DEFAULT_TIMEOUT
from . import _links
from ._job import Job, _check_seconds, _Lean, _settle, as_message
from ._links import LinkCache

log = logging.getLogger("proton_easy")

_JMS_DEST = symbol("x-opt-jms-dest")  # tells Artemis the routing type of an anonymous-relay send
_SENDER_CACHE = 64  # senders kept open per requester or responder (least recently used closed)
_REFUSAL_GRACE = 1.0  # seconds to wait for the detach that follows a refusing attach
_ROUTES_KEPT = 1024  # reply addresses whose routing a responder remembers
_ACCEPTED = _raw.ACCEPTED
_DEST_QUEUE, _DEST_TOPIC = byte(0), byte(1)


class _Request:
    __slots__ = ("message", "address", "payload")

    def __init__(self, message: Message, address: str, payload: Optional[bytes] = None) -> None:
        self.message = message
        self.address = address
        self.payload = payload  # the message encoded for ``message.reply_to``, when done ahead


class Requester(_Lean, Job):
    """Sends requests and matches their replies: the seed's request/reply ``Client`` as a class.

    Replies come back through a dynamic receiver (the broker names a temporary queue, which
    becomes each request's ``reply_to``). Each request gets a fresh ``correlation_id`` (and that
    as its ``id`` when unset) and each reply is matched to its request by it, so replies may come
    in any order; a reply that no request waits for any more is dropped.

    ``requests`` (bodies or Messages) go to the URL's address, at most ``window`` awaiting a reply
    at a time; the job ends when all are answered (``result``: the replies). With
    ``requests=None`` it runs until :meth:`finish`, and :meth:`request` adds requests from the
    loop thread (from a hook, say). ``timeout``: seconds to wait for each reply (None: forever).
    Hooks: :meth:`on_reply`, :meth:`on_timeout`, :meth:`on_request_failed`. Requests still
    waiting when the connection drops are sent again once it is back (to the new reply queue):
    a server may see a request twice, as with ``send``.

    >>> class Client(Requester):
    ...     def on_reply(self, request, reply):
    ...         print(f"{request.body} => {reply.body}")
    >>> # Container(Client("amqp://localhost:5672/examples", ["Twas brillig", "and the"])).run()
    """

    def __init__(
        self,
        url: Optional[str] = None,
        requests: Optional[Iterable[Any]] = None,
        *,
        address: Optional[str] = None,
        timeout: Optional[float] = DEFAULT_TIMEOUT,
        window: Optional[int] = 100,
        **options: Any,
    ) -> None:
        super().__init__(url, address=address, **options)
        if requests is not None and (isinstance(requests, (str, bytes, dict, Message))
                                     or not hasattr(requests, "__iter__")):
            raise TypeError("requests must be an iterable of bodies or messages, "
                            f"not {type(requests).__name__}")
        _check_seconds("timeout", timeout)
        if window is not None and (isinstance(window, bool) or not isinstance(window, int)
                                   or window < 1):
            raise ValueError(f"window must be a positive integer or None, not {window!r}")
        self.reply_timeout = timeout
        self.window = window
        self.reply_to: Optional[str] = None
        self.receiver: Any = None
        self.sender: Any = None
        self.replies: List[Message] = []
        self._finite = requests is not None
        self._given: Optional[Iterator[Any]] = iter(requests) if requests is not None else None
        self._unsent: Dict[Any, _Request] = {}
        self._pending: Dict[Any, _Request] = {}
        self._outgoing: Dict[Any, Any] = {}
        self._senders: LinkCache[str, Any] = LinkCache(
            _SENDER_CACHE, idle=lambda lnk: lnk is not self.sender and not lnk.unsettled,
            evict=self._close_sender)
        self._sender_addresses: Dict[Any, str] = {}
        self._last_sender: Optional[Tuple[str, Any]] = None  # (address, raw handle) sent to last
        self._deadlines: Deque[Tuple[float, str]] = collections.deque()  # (due, corr), in order
        self._prefix = uuid.uuid4().hex[:12]
        self._ids = itertools.count(1)
        self._tags = itertools.count(1)
        self._decoder = Decoder()
        self._go_lean()

    # -- hooks ----------------------------------------------------------------------------------
    def on_reply(self, request: Message, reply: Message) -> None:
        """Hook: the reply to ``request`` arrived. The default keeps it in ``self.replies``."""
        self.replies.append(reply)

    def on_timeout(self, request: Message) -> None:
        """Hook: no reply to ``request`` within ``timeout``. The default fails the job with
        :class:`~proton_easy.Timeout`."""
        self._fail(Timeout(f"no reply to request {request.correlation_id!r} on "
                           f"{self.address!r} within {self.reply_timeout:g} s"))

    def on_request_failed(self, request: Message, error: BaseException) -> None:
        """Hook: the broker refused ``request`` (or the link for its address). The default fails
        the job with that error."""
        self._fail(error)

    # -- requests -------------------------------------------------------------------------------
    def next_correlation_id(self) -> str:
        """A correlation id never used before by this requester (safe from any thread)."""
        return f"{self._prefix}-{next(self._ids)}"

    def request(self, message: Any, address: Optional[str] = None) -> Message:
        """Send one more request (on the loop thread, e.g. from a hook); returns it as a
        :class:`~proton_easy.Message` carrying its ``correlation_id``.

        >>> class Ping(Requester):
        ...     def on_reply(self, request, reply):
        ...         if reply.body < 10:
        ...             self.request(reply.body + 1)   # the job ends when none is left
        """
        address = address or self.address
        if not address:
            raise ValueError("no address given and none in the URL's path")
        msg = self._prepare(message, address)
        self._submit(msg, address)
        return msg

    def _prepare(self, message: Any, address: Optional[str] = None) -> Message:
        msg = as_message(message)
        msg.correlation_id = self.next_correlation_id()
        if msg.id is None:
            msg.id = msg.correlation_id
        tel = _otel.current()
        if tel is not None:  # a send span (in the calling thread), its context in msg
            tel.start_request(self, msg, address or self.address)
        return msg

    def _submit(self, msg: Message, address: str, payload: Optional[bytes] = None) -> None:
        corr = msg.correlation_id
        req = _Request(msg, address, payload)
        if self.reply_timeout is not None:
            self._arm(corr)
        if (self._unsent or self._given is not None or self.reply_to is None or self.done
                or (self.window is not None and len(self._pending) >= self.window)):
            self._unsent[corr] = req
            self._send_unsent()
            return
        self._send(req)  # (nothing queued ahead of it: straight out)
        self._check_done()

    # -- reply timeouts: one timer for all, requests in the order they were made -----------------
    def _clock(self) -> float:
        now = getattr(self.container, "now", None)
        return now if isinstance(now, float) else time.monotonic()

    def _arm(self, corr: str) -> None:
        """Start the wait for the reply to ``corr`` (``reply_timeout`` seconds from now)."""
        timeout: float = self.reply_timeout  # type: ignore[assignment]
        due = self._clock() + timeout
        deadlines = self._deadlines
        if deadlines and due < deadlines[-1][0]:  # (a timeout shortened since: kept in order)
            bisect.insort(deadlines, (due, corr))
        else:
            deadlines.append((due, corr))
        if deadlines[0][1] == corr or "replies" not in self._timers:
            self.set_timer("replies", timeout, self._expire_due)

    def _waiting(self, corr: str) -> bool:
        return corr in self._pending or corr in self._unsent

    def _prune(self) -> None:
        """Drop the deadlines of requests at the head that wait no more (answered, failed)."""
        deadlines = self._deadlines
        while deadlines and not self._waiting(deadlines[0][1]):
            deadlines.popleft()

    def _expire_due(self) -> None:
        deadlines = self._deadlines
        now = self._clock()
        while deadlines and not self.done:
            due, corr = deadlines[0]
            if due > now:
                self.set_timer("replies", due - now, self._expire_due)
                return
            deadlines.popleft()
            self._expire(corr)

    def open_links(self) -> None:
        self._last_sender = None
        self.receiver = _links.open_receiver(self, None, "replies", dynamic=True)
        self._top_up()
        if self.address:
            self.sender = self._sender_for(self.address)

    def _sender_for(self, address: str) -> Any:
        self._last_sender = None
        sender = self._senders.get(address)
        if sender is None:
            sender = _links.open_sender(self, address, "requests")
            self._sender_addresses[sender] = address
            self._senders.put(address, sender)
        return sender

    def _close_sender(self, sender: Any) -> None:
        self._last_sender = None
        self._sender_addresses.pop(sender, None)
        self._links.remove(sender)
        sender.close()

    def _top_up(self) -> None:
        if not self.done:
            self._grant(self.receiver, self.window or 100)  # (a flow per few replies)

    def _send_unsent(self) -> None:
        if self.reply_to is None or self.done:
            return
        if not self._unsent and self._given is None:  # (per reply: nothing to send)
            self._check_done()
            return
        while self.window is None or len(self._pending) < self.window:
            if self._unsent:
                req = self._unsent.pop(next(iter(self._unsent)))
            elif self._given is not None:
                item = next(self._given, _END_OF_REQUESTS)
                if item is _END_OF_REQUESTS:
                    self._given = None
                    break
                msg = self._prepare(item)
                if self.reply_timeout is not None:
                    self._arm(msg.correlation_id)
                req = _Request(msg, self.address or "")
            else:
                break
            self._send(req)
            if self.done:
                return
        self._check_done()

    def _send(self, req: _Request) -> None:
        msg = req.message
        payload = req.payload
        address = req.address
        last = self._last_sender
        try:
            if payload is None or msg.reply_to != self.reply_to:
                msg.reply_to = self.reply_to
                payload = encode(msg)
            if last is not None and last[0] == address:
                handle = last[1]  # (the most recently used already: no cache look-up)
            else:
                handle = _raw.link_impl(self._sender_for(address))
                self._last_sender = (address, handle)
        except (TypeError, ValueError) as exc:
            self._request_failed(req, exc)
            return
        corr = msg.correlation_id
        self._outgoing[_raw.send(handle, b"%d" % next(self._tags), payload)] = corr
        self._pending[corr] = req
        if "_otel_requests" in self.__dict__:
            _otel.request_sent(self, corr)

    def _check_done(self) -> None:
        if (self._finite and self._given is None and not self._unsent and not self._pending
                and not self.done):
            self.finish(self.replies)

    def _request_failed(self, req: _Request, error: BaseException) -> None:
        self._guard(self.on_request_failed, req.message, error)

    def _expire(self, corr: Any) -> None:
        req = self._pending.pop(corr, None) or self._unsent.pop(corr, None)
        if req is not None:
            self.on_timeout(req.message)
            self._send_unsent()

    def _forget(self, corr: Any) -> None:
        """Stop waiting for the reply to one request (its reply will be dropped)."""
        self._pending.pop(corr, None)
        self._unsent.pop(corr, None)
        if "_otel_requests" in self.__dict__:  # never sent: its span ends here
            _otel.request_sent(self, corr, Timeout("the caller stopped waiting"))
        self._send_unsent()

    # -- proton events (raw: see _Lean) ---------------------------------------------------------
    def on_link_remote_open(self, event: Any) -> None:
        super().on_link_remote_open(event)
        link = event.link
        if link.state & link.LOCAL_ACTIVE:
            self._guard(self._link_opened, link)

    def _link_opened(self, link: Any) -> None:
        if link != self.receiver:
            return
        address = link.remote_source.address
        if not address:
            # A broker that refuses the reply queue (the user may not create one) attaches with
            # no source and detaches right after, saying why: let that detach fail the job with
            # its typed error (on_link_error). Only a broker that never says why gets this one.
            if not link.state & link.REMOTE_CLOSED:
                self.set_timer("no reply address", _REFUSAL_GRACE, lambda: self._fail(
                    LinkError("the broker gave the dynamic reply receiver no address")))
            return
        self.reply_to = address
        log.debug("replies come to %s", address)
        self._send_unsent()

    def on_raw_delivery(self, dlv: Any) -> None:
        if _raw.incoming(dlv):  # a reply
            data = _raw.receive(dlv)
            if data is not None:
                self._guard(self._replied, dlv, data)
            return
        if _raw.updated(dlv):  # the broker's answer to a request we sent
            state = _raw.remote_state(dlv)
            if state == _raw.ACCEPTED:
                self._outgoing.pop(dlv, None)
            elif state in _raw.REFUSED:
                self._guard(self._refused, dlv)
            if _raw.remote_settled(dlv):
                _raw.settle_sent(dlv)

    def _replied(self, dlv: Any, data: bytearray) -> None:
        try:
            reply = self._decoder.decode(data)
        finally:
            _raw.settle(dlv, _ACCEPTED)
            self._top_up()
        if self.done:
            return
        corr = reply.correlation_id
        try:
            req = self._pending.pop(corr, None) or self._unsent.pop(corr, None)
        except TypeError:  # an unhashable correlation id is none of ours
            req = None
        if req is None:
            log.debug("dropping a reply that no request waits for (correlation id %r)", corr)
            return
        if self._deadlines:
            self._prune()
        if self._tel is not None:  # a receive span, in the trace the reply came with
            self._tel.received(self, reply, self.reply_to)
        self.on_reply(req.message, reply)
        self._send_unsent()

    def _refused(self, dlv: Any) -> None:
        corr = self._outgoing.pop(dlv, None)
        req = self._pending.pop(corr, None) if corr is not None else None
        if req is None:
            return
        state = _raw.remote_state(dlv)
        cond = _raw.remote_condition(dlv) if state == _raw.REJECTED else None
        self._request_failed(req, delivery_error(state, cond))
        self._send_unsent()

    def on_link_error(self, event: Any) -> None:
        link = event.link
        if link not in self._sender_addresses or self.done:
            super().on_link_error(event)
            return
        # A refused request sender fails the requests for its address, not the whole job.
        link.close()
        self._sender_lost(link, link_error(link.remote_condition, _links.describe(link)))

    def on_link_ended(self, link: Any) -> None:
        if link in self._sender_addresses:
            self._sender_lost(link, LinkError(f"the broker ended the link to "
                                              f"{_links.describe(link)!r} without a reason"))
        else:
            super().on_link_ended(link)

    def _sender_lost(self, link: Any, err: BaseException) -> None:
        self._last_sender = None
        address = self._sender_addresses.pop(link)
        self._senders.pop(address)
        if link is self.sender:
            self.sender = None
        for book in (self._pending, self._unsent):
            for corr, req in list(book.items()):
                if req.address == address and not self.done:
                    del book[corr]
                    self._request_failed(req, err)
        self._send_unsent()

    @property
    def in_doubt(self) -> int:
        return len(self._outgoing)

    def _dropped(self) -> None:
        self.reply_to = None  # the temporary reply queue is gone with the connection
        if self._pending:
            log.info("connection lost: %d requests will be sent again", len(self._pending))
        self._unsent = {**self._pending, **self._unsent}
        self._pending = {}
        self._abort_sent(self._outgoing)  # sent again by the job: not by proton too
        self._outgoing.clear()

    def _reconnected(self) -> None:
        self._top_up()


_END_OF_REQUESTS = object()


class Responder(_Lean, Job):
    """Answers requests: the seed's request/reply ``Server`` as a class to subclass.

    Takes requests from the URL's address and calls :meth:`respond` for each (by default the
    ``handler`` given, else an echo of the body). What it returns (a body or a Message) goes to
    the request's ``reply_to`` with the request's ``correlation_id`` (its ``id`` when that is
    unset, as JMS requesters expect). Replies go through one anonymous-relay sender when the
    broker offers ``ANONYMOUS-RELAY`` (``anonymous_relay=False`` forbids it), else through a
    sender per reply address, cached like the seed's. A request is accepted once its reply is
    sent; one whose handler raised is rejected with the error's text (the broker dead-letters it
    and the requester gets no reply) and serving goes on. Ends after ``count`` requests, or after
    ``timeout`` seconds without one (both None: runs until stopped); ``result`` is the number of
    requests handled. At most ``window`` requests are taken from the queue ahead.

    >>> class Server(Responder):
    ...     def respond(self, msg):
    ...         return msg.body.upper()
    >>> # Container(Server("amqp://localhost:5672/examples")).run()
    """

    def __init__(
        self,
        url: Optional[str] = None,
        handler: Optional[Callable[[Message], Any]] = None,
        *,
        address: Optional[str] = None,
        count: Optional[int] = None,
        timeout: Optional[float] = None,
        window: int = 10,
        anonymous_relay: Optional[bool] = None,
        **options: Any,
    ) -> None:
        super().__init__(url, address=address, **options)
        if handler is not None and not callable(handler):
            raise TypeError(f"handler must be callable, not {type(handler).__name__}")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                                  or count < 1):
            raise ValueError(f"count must be a positive integer or None, not {count!r}")
        _check_seconds("timeout", timeout)
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive integer, not {window!r}")
        self.handler = handler
        self.count = count
        self.idle_timeout = timeout
        self.window = window
        self.anonymous_relay = anonymous_relay
        self.served = 0
        self.inflight = 0
        self.receiver: Any = None
        self.stopping = False
        self._relay: Any = None
        self._reply_senders: LinkCache[str, Any] = LinkCache(
            _SENDER_CACHE, idle=lambda lnk: not lnk.unsettled, evict=self._close_reply_sender)
        self._reply_links: Dict[Any, Optional[str]] = {}
        self._replies: Dict[Any, str] = {}
        self._routes: Dict[str, Tuple[Optional[str], byte]] = {}  # reply_to: (name, JMS dest)
        self._relay_handle: Any = None
        self._tags = itertools.count(1)
        self._decoder = Decoder()
        self._go_lean()

    def respond(self, msg: Message) -> Any:
        """Hook: the reply (a body or a Message) to one request. The default calls ``handler``,
        or echoes the body when there is none. Raising rejects the request."""
        if self.handler is not None:
            return self.handler(msg)
        return msg.body

    def open_links(self) -> None:
        if not self.address:
            raise ValueError("no address to serve: give one or put it in the URL's path")
        self.receiver = _links.open_receiver(self, self.address, "responder")
        self._top_up()
        self.set_timer("idle", self.idle_timeout, self._idle)

    def _top_up(self) -> None:
        if self.done or self.stopping:
            return
        wanted = self.window
        if self.count is not None:
            wanted = min(wanted, self.count - self.served)
        self._grant(self.receiver, wanted, self.inflight)  # (a flow per few requests)

    def _idle(self) -> None:
        if self.inflight:
            self.set_timer("idle", self.idle_timeout, self._idle)
        else:
            self.stop()

    def stop(self) -> None:
        """Take no more requests; end (``result``: requests handled) once the broker has the
        replies already sent, so that none is lost with the closing link (at most ``timeout``
        seconds of the connection, 10 by default). Call it on the loop thread.

        >>> class Once(Responder):
        ...     def respond(self, msg):
        ...         if msg.body == "bye":
        ...             self.stop()
        ...         return msg.body
        """
        if self.stopping or self.done:
            return
        self.stopping = True
        self.set_timer("idle", None, None)
        if self.receiver is not None:
            self.receiver.close()  # what was taken ahead goes back to the queue
        if self._replies or self.inflight:  # wait for the requests in hand and their replies
            limit = self.options.timeout if self.options is not None else DEFAULT_TIMEOUT
            self.set_timer("drain", limit, lambda: self.finish(self.served))
        else:
            self.finish(self.served)

    # -- proton events (raw: see _Lean) ---------------------------------------------------------
    def on_raw_delivery(self, dlv: Any) -> None:
        if _raw.incoming(dlv):  # a request
            if self.stopping or self.done:
                return  # its receiver is closing: left unsettled, the broker has it back
            data = _raw.receive(dlv)
            if data is not None:
                self._guard(self._arrived, dlv, data)
            return
        if _raw.updated(dlv):  # the broker's answer to a reply we sent
            if _raw.remote_state(dlv) in _raw.REFUSED:
                self._reply_refused(dlv)
            if _raw.remote_settled(dlv):
                self._reply_settled(dlv)
                _raw.settle_sent(dlv)

    def _arrived(self, dlv: Any, data: bytearray) -> None:
        try:
            msg = self._decoder.decode(data)
        except Exception as exc:  # noqa: BLE001 - an undecodable request is rejected
            log.warning("rejecting a request that cannot be decoded: %s", exc)
            _settle(dlv, _raw.REJECTED, exc)
            self._top_up()
            return
        _raw.hold(dlv)  # until it is settled (it may outlive its connection in a handler)
        self.inflight += 1
        self.handle(msg, dlv)

    def handle(self, msg: Message, dlv: Any) -> None:
        """Plumbing: call :meth:`respond` and :meth:`complete` (the blocking ``serve`` overrides
        this to run the handler in the calling thread instead of the loop)."""
        try:
            result = (self.respond(msg) if self._tel is None
                      else self._tel.respond(self, msg, self.respond))
        except Exception as exc:  # noqa: BLE001 - the request is rejected, serving goes on
            self.complete(msg, dlv, error=exc)
            return
        self.complete(msg, dlv, result)

    def complete(self, msg: Message, dlv: Any, result: Any = None,
                 error: Optional[BaseException] = None) -> None:
        """Reply to one handled request and settle it (on the loop thread)."""
        if self.done:
            self._settle_held(dlv, _raw.RELEASED)
            return
        self.inflight -= 1
        if error is None:
            try:
                self.send_reply(msg, result)
            except Exception as exc:  # noqa: BLE001 - e.g. a reply that cannot be encoded
                error = exc
        if error is not None:
            log.warning("request %r on %r rejected: %s: %s", msg.correlation_id or msg.id,
                        self.address, type(error).__name__, error, exc_info=error)
            self._settle_held(dlv, _raw.REJECTED, error)
        else:
            _raw.settle(dlv, _ACCEPTED)
            _raw.release(dlv)
        self.served += 1
        if self.stopping:
            if not self._replies and not self.inflight:
                self.finish(self.served)
            return
        if self.count is not None and self.served >= self.count:
            self.stop()
            return
        self._top_up()
        if self.idle_timeout is not None or "idle" in self._timers:
            self.set_timer("idle", self.idle_timeout, self._idle)

    def put_back(self, dlv: Any) -> None:
        """Put one request back on the queue unanswered (on the loop thread)."""
        if not self.done:
            self.inflight -= 1
        self._settle_held(dlv, _raw.RELEASED)
        if not self.stopping:
            self._top_up()

    @staticmethod
    def _settle_held(dlv: Any, outcome: int, error: Optional[BaseException] = None) -> None:
        _settle(dlv, outcome, error)
        _raw.release(dlv)

    def send_reply(self, request: Message, result: Any) -> None:
        """Send ``result`` (a body or Message) to the request's ``reply_to``."""
        reply_to = request.reply_to
        if not reply_to:
            log.warning("request %r on %r has no reply_to: handled, no reply sent",
                        request.correlation_id or request.id, self.address)
            return
        reply = as_message(result)
        if reply.correlation_id is None:
            reply.correlation_id = (request.correlation_id if request.correlation_id is not None
                                    else request.id)
        if self._use_relay():
            route = self._routes.get(reply_to)
            if route is None:
                route = self._route(reply_to)
            reply.address = route[0]
            annotations = reply.annotations
            reply.annotations = {**annotations, _JMS_DEST: route[1]} if annotations \
                else {_JMS_DEST: route[1]}
            handle = self._relay_handle
            if handle is None:
                handle = self._relay_handle = _raw.link_impl(self._relay_sender())
        else:
            reply.address = reply_to
            handle = _raw.link_impl(self._reply_sender(reply_to))
        dlv = _raw.send(handle, b"%d" % next(self._tags), encode(reply))
        self._replies[dlv] = reply_to

    def _route(self, reply_to: str) -> Tuple[Optional[str], byte]:
        """(node name, JMS destination type) of a reply address, for the anonymous relay."""
        name, kind = _links.resolve(reply_to)
        if len(self._routes) >= _ROUTES_KEPT:
            self._routes.clear()
        route = self._routes[reply_to] = (name, _DEST_TOPIC if kind == "topic" else _DEST_QUEUE)
        return route

    def _use_relay(self) -> bool:
        if self.anonymous_relay is not None:
            return self.anonymous_relay
        return self._conn is not None and "ANONYMOUS-RELAY" in self._conn.offered_capabilities

    def _relay_sender(self) -> Any:
        if self._relay is None:
            self._relay = _links.open_sender(self, None, "replies-relay")
            self._reply_links[self._relay] = None
        return self._relay

    def _reply_sender(self, reply_to: str) -> Any:
        sender = self._reply_senders.get(reply_to)
        if sender is None:
            sender = _links.open_sender(self, reply_to, "reply")
            self._reply_links[sender] = reply_to
            self._reply_senders.put(reply_to, sender)
        return sender

    def _close_reply_sender(self, sender: Any) -> None:
        self._reply_links.pop(sender, None)
        self._links.remove(sender)
        sender.close()

    def _reply_refused(self, dlv: Any) -> None:
        reply_to = self._replies.get(dlv)
        if reply_to is not None:
            log.warning("the reply to %s was not accepted by the broker (%s)", reply_to,
                        _raw.wrap(dlv).remote_state)

    def _reply_settled(self, dlv: Any) -> None:
        if (self._replies.pop(dlv, None) is not None and self.stopping and not self._replies
                and not self.inflight):
            self._guard(self.finish, self.served)

    def on_link_error(self, event: Any) -> None:
        link = event.link
        if link not in self._reply_links or self.done:
            super().on_link_error(event)
            return
        link.close()
        self._reply_link_lost(link, link_error(link.remote_condition, _links.describe(link)))

    def on_link_ended(self, link: Any) -> None:
        if link in self._reply_links:
            self._reply_link_lost(link, "ended by the broker")
        elif link == self.receiver:
            self.stop()  # nothing more to serve: the replies already sent still count
        else:
            super().on_link_ended(link)

    def _reply_link_lost(self, link: Any, err: Any) -> None:
        # A reply address that went away (its requester left) is no reason to stop serving.
        reply_to = self._reply_links.pop(link)
        log.warning("cannot send replies to %s: %s", reply_to or "the anonymous relay", err)
        if reply_to is None:
            self._relay = self._relay_handle = None
            self.anonymous_relay = False
        elif reply_to in self._reply_senders and self._reply_senders[reply_to] == link:
            self._reply_senders.pop(reply_to)

    @property
    def in_doubt(self) -> int:
        return len(self._replies)

    def _dropped(self) -> None:
        # Replies the broker had not settled went with the connection; their requests were
        # accepted, so they do not come again: a responder that is stopping waits no more.
        if self._replies:
            log.info("connection lost: %d replies unconfirmed (their requesters time out)",
                     len(self._replies))
            self._replies.clear()
        if self.stopping and not self.inflight and not self.done:
            self._guard(self.finish, self.served)

    def _reconnected(self) -> None:
        self._top_up()
