"""Sending and receiving handler classes: :class:`Sender` and :class:`Receiver`, the seed's
``Send`` and ``Recv`` as classes to subclass (re-exported by :mod:`proton_easy.handlers`).

>>> from proton_easy.handlers import Receiver
>>> class Recv(Receiver):
...     def on_received(self, msg):
...         print(msg.body)
>>> # Container(Recv("amqp://localhost:5672/examples", count=100)).run()
"""

from __future__ import annotations

import collections
import itertools
import logging
from concurrent.futures import Future
from typing import Any, Deque, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from proton import Delivery, Terminus

from .._engine import raw as _raw
from .._errors import AMQPError, LinkError, delivery_error
from .._message import Decoder, Message, check_delay
from . import _links
from ._job import Job, _Lean, _message_source, default_durable, next_encoded, resolve

log = logging.getLogger("proton_easy")

_Entry = Tuple[bytes, Any, bool]  # encoded message, its token, sent before


class Sender(_Lean, Job):
    """Reliable (at-least-once) or best-effort sender: the seed's ``Send`` as a class to subclass.

    ``messages`` is a count (messages made by :meth:`make_message`) or an iterable of bodies or
    :class:`~proton_easy.Message`\\ s; ``None`` keeps the sender open for messages handed to
    :meth:`submit` until :meth:`end_input` (what ``Client.send`` does with one Sender per
    address). Sends pipeline within the link credit; on a dropped connection every unconfirmed
    message is sent again once it returns (the seed's ``sent = confirmed``). With a count or an
    iterable, the first message the broker does not accept fails the job with
    :class:`~proton_easy.Rejected` or :class:`~proton_easy.Released`; submitted messages each
    learn their own outcome (:meth:`on_outcome`) and the link stays. At-least-once messages are
    durable unless ``durable=False`` (or a :class:`~proton_easy.Message` says otherwise).
    ``delay`` (seconds) asks the broker to hold each message that long (scheduled delivery).

    With OpenTelemetry configured, the messages of a count or an iterable form one batch:
    one ``send`` span, whose context each message carries.

    >>> class Send(Sender):
    ...     def on_all_accepted(self):
    ...         print("all messages confirmed")
    >>> # Container(Send("amqp://localhost:5672/examples", messages=100)).run()
    """

    _otel_batch = True

    def __init__(
        self,
        url: Optional[str] = None,
        messages: Union[int, Iterable[Any], None] = 100,
        *,
        address: Optional[str] = None,
        at_most_once: bool = False,
        durable: Optional[bool] = None,
        delay: Optional[float] = None,
        **options: Any,
    ) -> None:
        super().__init__(url, address=address, **options)
        if delay is not None:
            check_delay("delay", delay)
        self.delay = delay
        if messages is None:
            self.total: Optional[int] = None
            self._items: Iterator[Any] = iter(())
        else:
            self.total, self._items = _message_source(messages, self.make_message)
        self.open_ended = messages is None
        self.at_most_once = at_most_once
        self.durable = default_durable(durable, at_most_once)
        self.sent = 0
        self.confirmed = 0
        self.sender: Any = None
        self._exhausted = False
        self._waiting: Deque[_Entry] = collections.deque()  # submitted or re-sent, in order
        self._unsettled: Dict[Any, _Entry] = {}  # raw pn_delivery_t -> its entry
        self._tags = itertools.count(1)
        self._go_lean()

    def make_message(self, n: int) -> Any:
        """Hook: the n-th message (1-based) when ``messages`` is a count. The seed's default."""
        return Message({"sequence": n}, id=n)

    def on_all_accepted(self) -> None:
        """Hook: every message was accepted (or, at-most-once, sent)."""

    def on_outcome(self, token: Any, error: Optional[BaseException]) -> None:
        """Hook: the broker settled the message submitted with ``token`` (``error`` None when it
        accepted it; at-most-once: the message was sent). The default resolves ``token`` when it
        is a :class:`concurrent.futures.Future`."""
        if isinstance(token, Future):
            resolve(token, error)

    @property
    def in_doubt(self) -> int:
        # sent at least once, outcome unknown (waiting entries sent before count too)
        return len(self._unsettled) + sum(1 for entry in self._waiting if entry[2])

    @property
    def idle(self) -> bool:
        """Nothing waiting to be sent and nothing awaiting the broker's outcome."""
        return not self._waiting and not self._unsettled

    def open_links(self) -> None:
        self.sender = _links.open_sender(self, self.address, "sender",
                                         at_most_once=self.at_most_once, durable=self.durable)
        self._check_done()

    # -- feeding it (on the loop thread) ----------------------------------------------------
    def submit(self, payload: bytes, token: Any = None) -> None:
        """Send one more encoded message (:func:`~proton_easy._message.encode`); its outcome
        goes to :meth:`on_outcome` with ``token``."""
        if self.done:
            self.on_outcome(token, self.error or AMQPError("the sender is closed"))
            return
        self._waiting.append((payload, token, False))
        if self.sender is not None:
            self._pump(self.sender)

    def withdraw(self, token: Any) -> bool:
        """Drop a submitted message not sent yet (one already sent stays in doubt); True if it
        had never been sent (waiting to be re-sent after a reconnect does not count)."""
        never_sent = any(e[1] is token and not e[2] for e in self._waiting)
        self._waiting = collections.deque(e for e in self._waiting if e[1] is not token)
        self._check_done()
        return never_sent

    def end_input(self) -> None:
        """No more messages: the job ends once every message sent has its outcome."""
        self._exhausted = True
        self._check_done()

    def _next_entry(self) -> Optional[_Entry]:
        if self._waiting:
            return self._waiting.popleft()
        if self._exhausted or self.open_ended:
            return None
        payload = (next_encoded(self._items, self.durable, self.delay) if self._otel_span is None
                   else self._otel_span.tel.next_encoded(self))
        if payload is None:
            self._exhausted = True
            return None
        return (payload, None, False)

    # -- proton events ------------------------------------------------------------------------
    def on_link_flow(self, event: Any) -> None:
        link = event.link
        if link.is_sender and link.credit:
            self._guard(self._pump, link)  # make_message and the iterable are user code

    @property
    def raw_flow(self) -> bool:
        """True when a Client's loop may hand this job's flow events to :meth:`on_raw_flow`
        (False when a subclass overrides ``on_link_flow``)."""
        return type(self).on_link_flow is Sender.on_link_flow

    def on_raw_flow(self, link: Any) -> None:
        """``on_link_flow`` for the raw ``pn_link_t`` of the sender link (see
        :mod:`proton_easy._engine.raw`)."""
        if _raw.link_credit(link) > 0:
            self._guard(self._pump_link, link)

    def on_raw_delivery(self, dlv: Any) -> None:
        if not _raw.updated(dlv):
            return
        state = _raw.remote_state(dlv)
        if state == _raw.ACCEPTED:
            entry = self._unsettled.pop(dlv, None)
            if entry is not None:
                self.confirmed += 1
                if entry[1] is not None:
                    self._guard(self.on_outcome, entry[1], None)
                if self._hooks:
                    self._emit("on_accepted", dlv)
        elif state in _raw.REFUSED:
            self._refused(dlv)
        if _raw.remote_settled(dlv):
            if self._hooks:
                self._emit("on_settled", dlv)
            _raw.settle_sent(dlv)
        self._guard(self._check_done)  # on_all_accepted is user code

    def _pump(self, sender: Any) -> None:
        self._pump_link(_raw.link_impl(sender))

    def _pump_link(self, link: Any) -> None:
        tags = self._tags
        unsettled = self._unsettled
        while _raw.link_credit(link) > 0 and not self.done:
            entry = self._next_entry()
            if entry is None:
                break
            token = entry[1]
            if token is not None and isinstance(token, Future) and token.done():
                continue  # its caller gave up before it went out
            dlv = _raw.send(link, b"%x" % next(tags), entry[0])
            self.sent += 1
            if self.at_most_once:
                _raw.settle_now(dlv)
                self.confirmed += 1
                if token is not None:
                    self.on_outcome(token, None)
            else:
                unsettled[dlv] = (entry[0], token, True)
        self._check_done()

    def _check_done(self) -> None:
        if self._exhausted and self.idle and not self.done:
            self.on_all_accepted()
            self.finish(self.confirmed)

    def _refused(self, dlv: Any) -> None:
        entry = self._unsettled.pop(dlv, None)
        if entry is None:
            return
        state = _raw.remote_state(dlv)
        cond = _raw.wrap(dlv).remote.condition if state == _raw.REJECTED else None
        error = delivery_error(state, cond)
        if self._hooks:
            self._emit("on_rejected" if state == _raw.REJECTED else "on_released", dlv)
        if entry[1] is not None:
            self._guard(self.on_outcome, entry[1], error)
        if not self.open_ended:
            self._fail(error)

    def _dropped(self) -> None:
        # The seed's sent = confirmed: whatever was not confirmed goes out again, first and in
        # order, once the connection is back.
        pending = list(self._unsettled.values())
        self._abort_sent(self._unsettled)  # proton must not send them after the reconnect
        self._unsettled.clear()
        self._waiting.extendleft(reversed(pending))
        self.sent -= len(pending)
        if pending:
            log.info("connection lost: %d unconfirmed messages will be sent again",
                     len(pending))

    def _reconnected(self) -> None:
        if self.sender is not None and self.sender.credit:
            self._pump(self.sender)

    def on_finished(self) -> None:
        # Submitted messages still waiting or in flight learn that they were not confirmed.
        entries = [*self._unsettled.values(), *self._waiting]
        if not any(entry[1] is not None for entry in entries):
            return
        error = self.error or AMQPError("the sender closed before the message was confirmed")
        self._unsettled.clear()
        self._waiting.clear()
        for entry in entries:
            if entry[1] is not None:
                self._guard(self.on_outcome, entry[1], error)


class Receiver(_Lean, Job):
    """Reliable (or best-effort) receiver: the seed's ``Recv`` as a class to subclass.

    Receives ``count`` messages (0: until stopped) from the URL's address, optionally filtered
    by a JMS ``selector`` on application properties, and hands each to :meth:`on_received`. Credit
    is granted only for what is asked (at most ``window`` at a time). With ``dedupe=True``
    messages whose integer ``id`` was already seen are dropped (the seed's duplicate check).
    ``timeout`` ends the job after that many seconds without a message, ``deadline`` after that
    many seconds in all. With ``drain=True`` it ends as soon as the broker has nothing more to
    give (AMQP drain): "take what is there now", as ``cli-proton-python-receiver -c 0`` does.

    On a ``topic://`` address, ``subscription="name"`` receives from a named subscription, as
    Qpid JMS attaches one: ``durable=True`` keeps it while no one is connected (keyed by the
    connection's ``container_id`` unless shared; the link detaches at the end, which keeps it),
    ``shared=True`` lets several receivers take turns on it. ``browse=True`` looks at a
    queue's messages without taking them (distribution mode ``copy``; with ``drain=True``:
    the messages there are now).

    >>> class Recv(Receiver):
    ...     def on_received(self, msg):
    ...         print(msg.body)
    >>> # Container(Recv("amqp://localhost:5672/examples", count=100)).run()
    >>> # Container(Recv("amqp://localhost:5672/topic://news", subscription="reader",
    >>> #                durable=True, container_id="reader-1", timeout=5)).run()
    """

    def __init__(
        self,
        url: Optional[str] = None,
        count: int = 0,
        *,
        address: Optional[str] = None,
        selector: Optional[str] = None,
        at_most_once: bool = False,
        dedupe: bool = False,
        window: int = 100,
        timeout: Optional[float] = None,
        deadline: Optional[float] = None,
        drain: bool = False,
        subscription: Optional[str] = None,
        durable: bool = False,
        shared: bool = False,
        browse: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(url, address=address, **options)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be a non-negative integer, not {count!r}")
        if selector is not None and not isinstance(selector, str):
            raise TypeError("selector must be a string")
        check_receive_options(self.address, subscription, durable, shared, browse,
                              at_most_once, self.options)
        self.subscription = subscription
        self.subscription_durable = durable
        self.shared = shared
        self.browse = browse
        if window < 1:
            raise ValueError("window must be at least 1")
        self.count = count
        self.selector = selector
        self.at_most_once = at_most_once
        self.dedupe = dedupe
        self.window = window
        self.idle_timeout = timeout
        self.deadline = deadline
        self.drain = drain
        self._drained_at: Optional[int] = None
        self.received = 0
        self.messages: List[Message] = []
        self.receiver: Any = None
        self._highest_id = 0
        self._decoder = Decoder()
        self._go_lean()

    def on_received(self, msg: Message) -> None:
        """Hook: one message arrived. The default keeps it in ``self.messages``."""
        self.messages.append(msg)

    def open_links(self) -> None:
        sub = None
        if self.subscription is not None:
            client_id = self._conn.options.container_id if self._conn is not None else None
            kind = _links.resolve(self.address)[1]
            _links.check_subscription(kind, self.subscription, self.subscription_durable,
                                      self.shared, client_id)
            sub = _links.Subscription(self.subscription, durable=self.subscription_durable,
                                      shared=self.shared, client_id=client_id)
        self.receiver = _links.open_receiver(self, self.address, "receiver",
                                             selector=self.selector,
                                             at_most_once=self.at_most_once,
                                             subscription=sub, browse=self.browse)
        self._top_up()
        self.set_timer("idle", self.idle_timeout, self._idle)
        self.set_timer("deadline", self.deadline, self._idle)

    def end_link(self, link: Any) -> None:
        if link == self.receiver and self.subscription is not None and self.subscription_durable:
            link.detach()  # a detach keeps the durable subscription; a close would delete it
        else:
            link.close()

    def _wanted(self) -> int:
        if self.count:
            left = self.count - self.received
            return left if left < self.window else self.window  # (min(): slower, per message)
        return self.window

    def _held(self) -> int:
        """Messages taken off the link but not settled yet (none here; consumers hold some)."""
        return 0

    def _top_up(self) -> None:
        recv = self.receiver
        if recv is None or self.done:
            return
        if self.drain:
            missing = self._wanted() - recv.credit  # (which counts what proton queued)
            if missing > 0:
                recv.drain(missing)  # credit with the drain flag: "send what you have"
        else:  # (per message: credit and queue read through the link's raw handle)
            self._grant(recv, self._wanted(), self._held())

    def on_link_remote_open(self, event: Any) -> None:
        super().on_link_remote_open(event)
        link = event.link
        if (self.browse and link == self.receiver and link.remote_source.address
                and link.remote_source.distribution_mode != Terminus.DIST_MODE_COPY):
            # The broker attached without distribution-mode copy: what it sends would be taken
            # off the queue, not shown. Nothing has arrived yet (the attach comes first); fail
            # before anything is settled, so the queue keeps every message.
            self._fail(LinkError(f"the broker does not browse {self.address!r}: it attached "
                                 "without distribution-mode copy, so reading would take the "
                                 "messages off the queue"))

    def on_link_ended(self, link: Any) -> None:
        if link == self.receiver:
            self.finish(self.messages)  # ended early: the job ends with what it has
        else:
            super().on_link_ended(link)

    def session_ended(self, session: Any, condition: Any) -> None:
        if not self.done and condition is None and self.uses_session(session):
            self._gone.append(self.receiver)
            self.finish(self.messages)
            return
        super().session_ended(session, condition)

    def on_link_flow(self, event: Any) -> None:
        # With drain, the broker answers a flow it cannot fill by using up the credit: nothing
        # is available (transfers come before that flow frame). Artemis answers so whenever
        # nothing is deliverable at that instant (e.g. before a new consumer is fully set up):
        # believe it when it says so twice with no message in between.
        link = event.link
        if not self.drain or self.done or link.credit or link.queued or link != self.receiver:
            return
        if self._drained_at == self.received:
            self.finish(self.messages)
        else:
            self._drained_at = self.received
            link.drain(self._wanted())

    def _idle(self) -> None:
        self.finish(self.messages)

    def on_raw_delivery(self, dlv: Any) -> None:
        if self.done:
            return  # arrived after the end: left unsettled, the broker has it back at the close
        data = _raw.receive(dlv)
        if data is None:
            return
        try:
            msg = self._decoder.decode(data)
        except Exception as exc:  # noqa: BLE001 - an undecodable message is rejected
            log.warning("rejecting a message that cannot be decoded: %s", exc)
            self._settle(dlv, Delivery.REJECTED)
            self._top_up()
            return
        if self.dedupe and isinstance(msg.id, int) and not isinstance(msg.id, bool):
            if msg.id <= self._highest_id:
                self._settle(dlv, Delivery.ACCEPTED)
                self._top_up()
                return
            self._highest_id = msg.id
        self.deliver(msg, dlv)

    def deliver(self, msg: Message, dlv: Any) -> None:
        """Hand one message to :meth:`on_received` and settle it (overridable plumbing; ``dlv``
        is a raw ``pn_delivery_t``, valid until this returns unless held: see ``_raw.hold``)."""
        try:
            if self._hooks:
                self._emit("on_message", dlv, msg)
            if self._tel is None:
                self.on_received(msg)
            else:
                self._tel.deliver(self, msg, self.on_received)
        except Exception as exc:  # noqa: BLE001 - the message goes back, the job fails
            self._settle(dlv, Delivery.MODIFIED)
            self._fail(exc)
            return
        self._settle(dlv, Delivery.ACCEPTED)
        self.received += 1
        if self.count and self.received >= self.count:
            self.finish(self.messages)
            return
        self._top_up()
        if self.idle_timeout is not None:
            self.set_timer("idle", self.idle_timeout, self._idle)

    _settle = staticmethod(_raw.settle)

    def _reconnected(self) -> None:
        self._top_up()


def check_receive_options(address: Optional[str], subscription: Optional[str], durable: bool,
                          shared: bool, browse: bool, at_most_once: bool,
                          options: Any = None) -> None:
    """ValueError/TypeError for receive options that cannot work together, before any I/O
    (``options``: the connection's, when known, to check a durable subscription's container
    id).

    >>> check_receive_options("topic://news", "audit", False, True, False, False)
    >>> check_receive_options("orders", None, False, False, True, True)
    Traceback (most recent call last):
    ...
    ValueError: browse=True cannot be combined with at_most_once=True
    """
    if browse:
        if at_most_once:
            raise ValueError("browse=True cannot be combined with at_most_once=True")
        if subscription is not None or durable or shared:
            raise ValueError("browse=True looks at a queue: it takes no subscription options")
        if address is not None and _links.resolve(address)[1] == "topic":
            raise ValueError("browse=True needs a queue address: a topic keeps no messages "
                             "to look at")
    kind = _links.resolve(address)[1] if address is not None else "topic"
    container_id = getattr(options, "container_id", None)
    _links.check_subscription(kind, subscription, durable, shared, container_id,
                              known_container=options is not None)
