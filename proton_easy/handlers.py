"""Handler classes: one class per job, runnable as ``Container(handler).run()`` like the seed.

Each class is small, configured through its constructor and customised by overriding a named
hook. The blocking functions (``proton_easy.send``, ``receive`` ...) drive these very classes on a
:class:`proton_easy.Client`'s connection: one implementation of each job, two ways to drive it.

>>> from proton.reactor import Container
>>> from proton_easy.handlers import Sender
>>> class Send(Sender):
...     def make_message(self, n):
...         return {"sequence": n}
>>> # Container(Send("amqp://localhost:5672/examples", messages=100)).run()
"""

from __future__ import annotations

import collections
import itertools
import logging
from concurrent.futures import Future
from typing import Any, Deque, Dict, Iterable, Iterator, List, Optional, Union

import proton
from proton import Delivery
from proton.handlers import MessagingHandler

from . import _links
from ._connection import Connection
from ._errors import delivery_error, link_error
from ._message import Encoded, Message, encode
from ._options import ConnectionOptions

__all__ = ["Job", "Sender", "Receiver"]

log = logging.getLogger("proton_easy")

_CONNECTION_OPTIONS = ("user", "password", "tls", "reconnect", "heartbeat", "timeout",
                       "allowed_mechs", "urls", "container_id")


class Job(MessagingHandler):
    """What every handler class shares: its own connection when run standalone, or a place on a
    Client's connection when driven by the blocking layer; completion, errors, clean-up.

    Subclasses open their links in :meth:`open_links` and call :meth:`finish` or ``fail``.
    After ``Container(job).run()`` returns, ``job.error`` holds what went wrong (or None).
    """

    def __init__(
        self,
        url: Optional[str] = None,
        *,
        address: Optional[str] = None,
        prefetch: int = 0,
        auto_accept: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(prefetch=prefetch, auto_accept=auto_accept, auto_settle=True,
                         peer_close_is_error=False)
        unknown = set(options) - set(_CONNECTION_OPTIONS)
        if unknown:
            raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
        self.url = url
        self._options_kwargs = options
        self.options: Optional[ConnectionOptions] = None
        if url is not None or options.get("urls"):
            self.options = ConnectionOptions.build(url, **options)
            address = address or self.options.address
        self.address = address
        self.error: Optional[BaseException] = None
        self.result: Any = None
        self.done = False
        self.container: Any = None
        self.connection: Any = None
        self._conn: Optional[Connection] = None
        self._owns_connection = False
        self._future: Optional[Future] = None
        self._links: List[Any] = []
        self._timers: Dict[str, Any] = {}

    # -- how a job starts ---------------------------------------------------------------------
    def on_start(self, event: Any) -> None:
        """Standalone start (``Container(job).run()``): open our own connection, then the links."""
        if self.options is None:
            self.options = ConnectionOptions.build(None, **self._options_kwargs)
            self.address = self.address or self.options.address
        conn = Connection(self.options)
        conn.open(event.container)
        self._owns_connection = True
        self.start(event.container, conn)

    def start(self, container: Any, conn: Connection, future: Optional[Future] = None) -> None:
        """Run this job on an open (or opening) connection; ``future`` gets the result."""
        self.container = container
        self._conn = conn
        self.connection = conn.proton
        self._future = future
        if conn.failed is not None:
            self._fail(conn.failed)
            return
        conn.add(self)
        self._guard(self.open_links)

    def open_links(self) -> None:
        """Create this job's links (override)."""
        raise NotImplementedError

    def add_link(self, link: Any) -> Any:
        """Remember a link so that finishing the job closes it."""
        self._links.append(link)
        return link

    def set_timer(self, name: str, seconds: Optional[float], callback: Any) -> None:
        """Call ``callback()`` on the loop after ``seconds`` unless the job is done first;
        setting a timer of the same name again replaces it, ``seconds=None`` cancels it."""
        old = self._timers.pop(name, None)
        if old is not None:
            old.cancel()
        if seconds is not None and self.container is not None and not self.done:
            job = self

            class _Tick:
                def on_timer_task(self, event: Any) -> None:
                    if not job.done:
                        job._guard(callback)

            self._timers[name] = self.container.schedule(seconds, _Tick())

    # -- how a job ends -----------------------------------------------------------------------
    def finish(self, result: Any = None) -> None:
        """End the job successfully: close its links (and its connection when standalone)."""
        if self.done:
            return
        self.result = result
        self._end()

    def _fail(self, error: BaseException) -> None:
        if self.done:
            return
        self.error = error
        log.debug("%s failed: %s", type(self).__name__, error)
        self._end()

    def _end(self) -> None:
        self.done = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self.on_finished()
        open_links = [lnk for lnk in self._links if not lnk.state & lnk.LOCAL_CLOSED]
        for link in open_links:
            link.close()
        if self._owns_connection and self._conn is not None:
            self._conn.close()
        if not any(self._awaiting_close()):
            self._complete()

    def _awaiting_close(self) -> Iterator[Any]:
        if self._conn is None or not self._conn.up:
            return iter(())
        return (lnk for lnk in self._links if lnk.state & lnk.REMOTE_ACTIVE)

    def _complete(self) -> None:
        if self._conn is not None:
            self._conn.discard(self)
        fut = self._future
        if fut is not None and not fut.done():
            if self.error is not None:
                fut.set_exception(self.error)
            else:
                fut.set_result(self.result)

    def on_finished(self) -> None:
        """Hook: called once when the job ends, before its links close."""

    def on_link_closed(self, event: Any) -> None:
        if self.done and not any(self._awaiting_close()):
            self._complete()

    def on_link_error(self, event: Any) -> None:
        """A link was refused or closed by the broker: the job fails with a LinkError."""
        link = event.link
        err = link_error(link.remote_condition, _links.describe(link))
        link.close()
        if self.done:
            if not any(self._awaiting_close()):
                self._complete()
            return
        self._fail(err)

    def on_reactor_final(self, event: Any) -> None:
        # Standalone run: make Container(job).run() raise what went wrong.
        if self._owns_connection and self.error is not None:
            raise self.error

    # -- the connection tells the job ----------------------------------------------------------
    @property
    def in_doubt(self) -> int:
        """Deliveries whose outcome is unknown if the connection drops now."""
        return 0

    def _dropped(self) -> None:
        """The connection dropped; proton is reconnecting."""

    def _reconnected(self) -> None:
        """The connection came back; proton re-attached the links."""

    def _guard(self, fn: Any, *args: Any) -> None:
        """Call a hook on the loop thread; an exception fails the job instead of the loop."""
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - a hook error must not break the reactor
            if fn == self._fail:
                log.exception("error while failing %s", type(self).__name__)
                return
            log.debug("%s hook raised", type(self).__name__, exc_info=True)
            self._fail(exc)


class _Lean:
    """Raw-event handling for the hot path: no MessagingHandler child handlers, whose dispatch
    costs more per message than the work itself. Link close is translated here."""

    handlers: List[Any]

    def _go_lean(self) -> None:
        self.handlers = []

    def on_link_remote_close(self, event: Any) -> None:
        link = event.link
        if link.remote_condition is not None:
            self.on_link_error(event)  # type: ignore[attr-defined]
        else:
            if not link.state & link.LOCAL_CLOSED:
                link.close()
            self.on_link_closed(event)  # type: ignore[attr-defined]


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
        if isinstance(messages, bool):
            raise TypeError("messages must be a count or an iterable")
        if isinstance(messages, int):
            if messages < 0:
                raise ValueError("messages must not be negative")
            self.total: Optional[int] = messages
            self._items: Iterator[Any] = (self.make_message(n) for n in range(1, messages + 1))
        else:
            self.total = len(messages) if hasattr(messages, "__len__") else None  # type: ignore
            self._items = iter(messages)
        self.at_most_once = at_most_once
        self.durable = durable
        self.sent = 0
        self.confirmed = 0
        self.sender: Any = None
        self._exhausted = False
        self._resend: Deque[bytes] = collections.deque()
        self._unsettled: Dict[Any, bytes] = {}
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
        if self.durable and not isinstance(item, Message):
            item = Message(item, durable=True)
        return encode(item)

    def on_link_flow(self, event: Any) -> None:
        link = event.link
        if link.is_sender and link.credit:
            self._guard(self._pump, link)  # make_message and the iterable are user code

    def on_delivery(self, event: Any) -> None:
        dlv = event.delivery
        if not dlv.updated:
            return
        state = dlv.remote_state
        if state == Delivery.ACCEPTED:
            if self._unsettled.pop(dlv, None) is not None:
                self.confirmed += 1
        elif state in (Delivery.REJECTED, Delivery.RELEASED, Delivery.MODIFIED):
            self._refused(dlv)
        if dlv.settled:
            dlv.settle()
        self._guard(self._check_done)  # on_all_accepted is user code

    def _pump(self, sender: Any) -> None:
        while sender.credit and not self.done:
            payload = self._next_payload()
            if payload is None:
                break
            dlv = sender.delivery(b"%d" % next(self._tags))
            sender.stream(payload)
            sender.advance()
            self.sent += 1
            if self.at_most_once:
                dlv.settle()
                self.confirmed += 1
            else:
                self._unsettled[dlv] = payload
        self._check_done()

    def _check_done(self) -> None:
        if self._exhausted and not self._unsettled and not self._resend and not self.done:
            self.on_all_accepted()
            self.finish(self.confirmed)

    def _refused(self, dlv: Any) -> None:
        if self._unsettled.pop(dlv, None) is None:
            return
        state = dlv.remote_state
        cond = dlv.remote.condition if state == Delivery.REJECTED else None
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
    many seconds in all.

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
        self.received = 0
        self.messages: List[Message] = []
        self.receiver: Any = None
        self._highest_id = 0
        self._decoder = proton.Message()
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
        missing = self._wanted() - recv.credit - recv.queued
        if missing > 0:
            recv.flow(missing)

    def _idle(self) -> None:
        self.finish(self.messages)

    def on_delivery(self, event: Any) -> None:
        dlv = event.delivery
        link = dlv.link
        if not link.is_receiver or not dlv.readable or dlv.partial:
            return
        data = link.recv(dlv.pending)
        link.advance()
        if link.remote_snd_settle_mode == link.SND_SETTLED:
            dlv.settle()
        decoder = self._decoder
        try:
            decoder.decode(data)
            msg = Message.from_proton(decoder)
        except Exception as exc:  # noqa: BLE001 - an undecodable message is rejected
            log.warning("rejecting a message that cannot be decoded: %s", exc)
            self._settle(dlv, Delivery.REJECTED)
            self._top_up()
            return
        decoder.clear()
        if self.dedupe and isinstance(msg.id, int) and not isinstance(msg.id, bool):
            if msg.id <= self._highest_id:
                self._settle(dlv, Delivery.ACCEPTED)
                self._top_up()
                return
            self._highest_id = msg.id
        self.deliver(msg, dlv)

    def deliver(self, msg: Message, dlv: Any) -> None:
        """Hand one message to :meth:`on_received` and settle it (overridable plumbing)."""
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

    @staticmethod
    def _settle(dlv: Any, outcome: int) -> None:
        if dlv.settled:
            return
        if outcome == Delivery.MODIFIED:
            dlv.local.failed = True
        dlv.update(outcome)
        dlv.settle()

    def _reconnected(self) -> None:
        self._top_up()
