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
from typing import Any, Deque, Dict, Iterable, List, Optional, Union

from proton import Delivery

from .._engine import raw as _raw
from .._errors import delivery_error
from .._message import Decoder, Encoded, Message, encode
from . import _links
from ._job import Job, _Lean, _message_source

log = logging.getLogger("proton_easy")


class Sender(_Lean, Job):
    """Reliable (at-least-once) or best-effort sender: the seed's ``Send`` as a class to subclass.

    ``messages`` is a count (messages made by :meth:`make_message`) or an iterable of bodies or
    :class:`~proton_easy.Message`\\ s. Sends pipeline within the link credit; on a dropped
    connection every unconfirmed message is sent again once it returns (the seed's
    ``sent = confirmed``). The first message the broker does not accept fails the job with
    :class:`~proton_easy.Rejected` or :class:`~proton_easy.Released`.

    >>> class Send(Sender):
    ...     def on_all_accepted(self):
    ...         print("all messages confirmed")
    >>> # Container(Send("amqp://localhost:5672/examples", messages=100)).run()
    """

    def __init__(
        self,
        url: Optional[str] = None,
        messages: Union[int, Iterable[Any]] = 100,
        *,
        address: Optional[str] = None,
        at_most_once: bool = False,
        durable: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(url, address=address, **options)
        self.total, self._items = _message_source(messages, self.make_message)
        self.at_most_once = at_most_once
        self.durable = durable
        self.sent = 0
        self.confirmed = 0
        self.sender: Any = None
        self._exhausted = False
        self._resend: Deque[bytes] = collections.deque()
        self._unsettled: Dict[Any, bytes] = {}  # raw pn_delivery_t -> its encoded message
        self._tags = itertools.count(1)
        self._go_lean()

    def make_message(self, n: int) -> Any:
        """Hook: the n-th message (1-based) when ``messages`` is a count. The seed's default."""
        return Message({"sequence": n}, id=n)

    def on_all_accepted(self) -> None:
        """Hook: every message was accepted (or, at-most-once, sent)."""

    @property
    def in_doubt(self) -> int:
        # sent at least once, outcome unknown (the resend queue holds only such messages)
        return len(self._unsettled) + len(self._resend)

    def open_links(self) -> None:
        name, kind = _links.resolve(self.address)
        setup = _links.LinkSetup(kind, at_most_once=self.at_most_once)
        self.sender = self.add_link(self.container.create_sender(
            self.connection, name, name=_links.link_name("sender", name), handler=self,
            options=setup))
        if self.total == 0:
            self._exhausted = True
            self._check_done()

    def _next_payload(self) -> Optional[bytes]:
        if self._resend:
            return self._resend.popleft()
        if self._exhausted:
            return None
        try:
            item = next(self._items)
        except StopIteration:
            self._exhausted = True
            return None
        if type(item) is Encoded:
            return item
        return encode(item, self.durable)

    def on_link_flow(self, event: Any) -> None:
        link = event.link
        if link.is_sender and link.credit:
            self._guard(self._pump, link)  # make_message and the iterable are user code

    def on_raw_delivery(self, dlv: Any) -> None:
        if not _raw.updated(dlv):
            return
        state = _raw.remote_state(dlv)
        if state == _raw.ACCEPTED:
            if self._unsettled.pop(dlv, None) is not None:
                self.confirmed += 1
        elif state in _raw.REFUSED:
            self._refused(dlv)
        if _raw.remote_settled(dlv):
            _raw.settle_now(dlv)
        if self._exhausted:
            self._guard(self._check_done)  # on_all_accepted is user code

    def _pump(self, sender: Any) -> None:
        link = _raw.link_impl(sender)
        tags = self._tags
        unsettled = self._unsettled
        while _raw.link_credit(link) > 0 and not self.done:
            payload = self._next_payload()
            if payload is None:
                break
            dlv = _raw.send(link, b"%x" % next(tags), payload)
            self.sent += 1
            if self.at_most_once:
                _raw.settle_now(dlv)
                self.confirmed += 1
            else:
                unsettled[dlv] = payload
        self._check_done()

    def _check_done(self) -> None:
        if self._exhausted and not self._unsettled and not self._resend and not self.done:
            self.on_all_accepted()
            self.finish(self.confirmed)

    def _refused(self, dlv: Any) -> None:
        if self._unsettled.pop(dlv, None) is None:
            return
        state = _raw.remote_state(dlv)
        cond = _raw.wrap(dlv).remote.condition if state == _raw.REJECTED else None
        self._fail(delivery_error(state, cond))

    def _dropped(self) -> None:
        # The seed's sent = confirmed: whatever was not confirmed goes out again, in order.
        pending = list(self._unsettled.values())
        self._unsettled.clear()
        self._resend.extendleft(reversed(pending))
        self.sent -= len(pending)
        log.info("connection lost: %d unconfirmed messages will be sent again", len(pending))

    def _reconnected(self) -> None:
        if self.sender is not None and self.sender.credit:
            self._pump(self.sender)


class Receiver(_Lean, Job):
    """Reliable (or best-effort) receiver: the seed's ``Recv`` as a class to subclass.

    Receives ``count`` messages (0: until stopped) from the URL's address, optionally filtered
    by a JMS ``selector`` on application properties, and hands each to :meth:`on_received`. Credit
    is granted only for what is asked (at most ``window`` at a time). With ``dedupe=True``
    messages whose integer ``id`` was already seen are dropped (the seed's duplicate check).
    ``timeout`` ends the job after that many seconds without a message, ``deadline`` after that
    many seconds in all. With ``drain=True`` it ends as soon as the broker has nothing more to
    give (AMQP drain): "take what is there now", as ``cli-proton-python-receiver -c 0`` does.

    >>> class Recv(Receiver):
    ...     def on_received(self, msg):
    ...         print(msg.body)
    >>> # Container(Recv("amqp://localhost:5672/examples", count=100)).run()
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
        **options: Any,
    ) -> None:
        super().__init__(url, address=address, **options)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be a non-negative integer, not {count!r}")
        if selector is not None and not isinstance(selector, str):
            raise TypeError("selector must be a string")
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
        name, kind = _links.resolve(self.address)
        setup = _links.LinkSetup(kind, selector=self.selector, at_most_once=self.at_most_once)
        self.receiver = self.add_link(self.container.create_receiver(
            self.connection, name, name=_links.link_name("receiver", name), handler=self,
            options=setup))
        self._top_up()
        self.set_timer("idle", self.idle_timeout, self._idle)
        self.set_timer("deadline", self.deadline, self._idle)

    def _wanted(self) -> int:
        if self.count:
            return min(self.window, self.count - self.received)
        return self.window

    def _top_up(self) -> None:
        recv = self.receiver
        if recv is None or self.done:
            return
        wanted = self._wanted()
        outstanding = recv.credit + recv.queued
        missing = wanted - outstanding
        if missing <= 0:
            return
        if self.drain:
            recv.drain(missing)  # credit with the drain flag: "send what you have"
        elif 2 * missing >= wanted or outstanding == 0:
            # credit in batches of half the window: a flow frame per few messages, not per one
            recv.flow(missing)

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
            self.on_received(msg)
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
