"""Client: one connection, one loop thread, the blocking verbs on top of the handler classes."""

from __future__ import annotations

import atexit
import collections
import logging
import queue
import sys
import threading
import time
import weakref
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable, Deque, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from ._engine import raw as _raw
from ._engine.connection import Connection
from ._engine.loop import Loop
from ._errors import AMQPError, ConnectError, Timeout
from ._message import Encoded, Message, encode
from ._options import ConnectionOptions
from ._request_reply import RequestChannel
from ._request_reply import request as _request
from ._request_reply import serve as _serve
from ._sender_cache import SenderCache
from ._tls import TLS
from ._transaction import Transaction
from .handlers._job import Job
from .handlers._transfer import Receiver, Sender

log = logging.getLogger("proton_easy")

_END = object()


class Client:
    """A connection to a broker that any number of threads may share.

    One loop thread owns the connection (heartbeats are answered while your code is busy); each
    verb hands the loop a handler job and waits for it with a deadline. Addresses are queue names,
    ``queue://name`` or ``topic://name``. Close it, or use it as a context manager.

    Connection options (the same on every entry point): ``user``, ``password``, ``tls``
    (a :class:`~proton_easy.TLS`), ``reconnect`` (True: up to 60 s per outage; False; or seconds),
    ``heartbeat`` (idle timeout in seconds), ``timeout`` (default seconds for every blocking
    call, 10), ``allowed_mechs`` (SASL mechanisms, space separated), ``urls`` (failover list),
    ``container_id``. Without a URL, ``$PROTON_EASY_URL`` or ``amqp://localhost:5672``.

    >>> with Client("amqp://admin:admin@localhost:5672") as client:   # doctest: +SKIP
    ...     client.send("orders", {"id": 1})
    ...     [m.body for m in client.receive("orders", count=1)]
    [{'id': 1}]
    """

    def __init__(
        self,
        url: Optional[str] = None,
        *,
        user: Optional[str] = None,
        password: Optional[str] = None,
        tls: Optional[TLS] = None,
        reconnect: Union[bool, float] = True,
        heartbeat: Optional[float] = None,
        timeout: Optional[float] = None,
        allowed_mechs: Optional[str] = None,
        urls: Optional[Sequence[str]] = None,
        container_id: Optional[str] = None,
    ) -> None:
        self.options = ConnectionOptions.build(
            url, user=user, password=password, tls=tls, reconnect=reconnect,
            heartbeat=heartbeat, timeout=timeout, allowed_mechs=allowed_mechs, urls=urls,
            container_id=container_id)
        self.timeout = self.options.timeout
        self._closed = False
        self._lock = threading.Lock()
        self._requests: Optional[RequestChannel] = None
        self._senders = SenderCache(self)
        self._loop = Loop(f"proton-easy {self.options.display_url}")
        self._conn = Connection(self.options)
        try:
            self._loop.call(lambda: self._conn.open(self._loop.container)).result(self.timeout)
            self._conn.opened.result(timeout=self.timeout)
        except FutureTimeout:
            self._shutdown()
            raise ConnectError(f"cannot connect to {self.options.display_urls}: no answer "
                               f"within {self.timeout:g} s") from None
        except BaseException:
            self._shutdown()
            raise
        _OPEN_CLIENTS.add(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<proton_easy.Client {self._conn.current_url} {state}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def default_address(self) -> Optional[str]:
        """The address in the URL's path, used when a verb is given none."""
        return self.options.address

    # -- plumbing ---------------------------------------------------------------------------
    def _address(self, address: Optional[str]) -> str:
        address = address or self.default_address
        if not address:
            raise ValueError("no address given and none in the URL's path")
        return address

    def run(self, job: Job, timeout: Optional[float] = None, *, progress: Any = None) -> Any:
        """Run a handler job on this client's connection and wait for its result.

        ``timeout`` bounds the whole job; with ``progress`` (a callable returning a number that
        grows while the job advances) it bounds the time without progress instead.
        """
        if self._closed:
            raise RuntimeError("the client is closed")
        fut: Future = Future()
        self._loop.call(lambda: job.start(self._loop.container, self._conn, fut))
        limit = self.timeout if timeout is None else timeout
        try:
            if progress is None:
                return fut.result(limit)
            last, since = progress(), time.monotonic()
            while True:
                try:
                    return fut.result(min(1.0, limit))
                except FutureTimeout:
                    now, value = time.monotonic(), progress()
                    reconnecting = not self._conn.up and self._conn.failed is None
                    if value != last or reconnecting:
                        last, since = value, now
                    elif now - since >= limit:
                        raise
        except FutureTimeout:
            err = Timeout(f"{type(job).__name__} on {self.options.display_url} did not "
                          f"complete within {limit:g} s ({job.in_doubt} deliveries in doubt)")
            self._loop.call(lambda: job._fail(err))
            raise err from None

    def _call(self, fn: Any) -> Any:
        return self._loop.call(fn).result(self.timeout)

    # -- verbs ------------------------------------------------------------------------------
    def send(
        self,
        address: Optional[str],
        message: Any,
        *,
        at_most_once: bool = False,
        durable: bool = False,
        timeout: Optional[float] = None,
    ) -> None:
        """Send one message; return once the broker accepted it (at-most-once: once it is
        handed to the connection, which writes it out at once; closing the client flushes it).

        ``message`` is a plain body or a :class:`~proton_easy.Message`. Raises
        :class:`~proton_easy.Rejected`/:class:`~proton_easy.Released` when not accepted, and
        :class:`~proton_easy.Timeout` when not confirmed within ``timeout`` seconds (not counting
        time spent reconnecting). One sender link per address stays open for these calls,
        shared by all threads; a message not confirmed when the connection drops is sent again.

        >>> client.send("orders", {"id": 1})   # doctest: +SKIP
        """
        address = self._address(address)
        payload = pre_encode(message, durable)  # a TypeError before any I/O
        if self._closed:
            raise RuntimeError("the client is closed")
        fut: Future = Future()
        link = self._senders.submit(address, at_most_once, payload, fut)
        limit = self.timeout if timeout is None else timeout
        since = time.monotonic()
        while True:
            try:
                return fut.result(min(1.0, limit))
            except FutureTimeout:
                now = time.monotonic()
                if not self._conn.up and self._conn.failed is None:  # reconnecting
                    since = now
                elif now - since >= limit and fut.cancel():
                    break
        self._loop.post(lambda: link.withdraw(fut))
        raise Timeout(f"send to {address!r} on {self.options.display_url} was not confirmed "
                      f"within {limit:g} s (it may still arrive)")

    def send_many(
        self,
        address: Optional[str],
        messages: Iterable[Any],
        *,
        at_most_once: bool = False,
        durable: bool = False,
        timeout: Optional[float] = None,
    ) -> int:
        """Send many messages pipelined within the link credit; return how many were accepted.

        Unconfirmed messages are re-sent after a reconnect. ``timeout`` (default: the client's)
        is how long the call may go without progress.

        >>> client.send_many("orders", ({"id": i} for i in range(1000)))   # doctest: +SKIP
        1000
        """
        address = self._address(address)
        if isinstance(messages, (list, tuple)):
            messages = [pre_encode(m, durable) for m in messages]
        job = Sender(messages=messages, address=address, at_most_once=at_most_once,
                     durable=durable)
        return self.run(job, timeout, progress=lambda: job.confirmed)

    def receive(
        self,
        address: Optional[str] = None,
        count: int = 1,
        *,
        timeout: Optional[float] = None,
        selector: Optional[str] = None,
        at_most_once: bool = False,
    ) -> List[Message]:
        """Receive up to ``count`` messages within ``timeout`` seconds (a shorter list, maybe
        empty, when fewer came). Credit is granted only for ``count``: nothing else is taken off
        the queue. ``selector`` is a JMS selector on application properties.

        >>> client.receive("orders", count=10, selector="colour = 'green'")  # doctest: +SKIP
        [Message(body=...), ...]
        """
        address = self._address(address)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive integer, not {count!r}")
        limit = self.timeout if timeout is None else timeout
        job = Receiver(count=count, address=address, selector=selector,
                       at_most_once=at_most_once, window=count, deadline=limit)
        return self.run(job, limit + self.timeout)

    def consume(
        self,
        address: Optional[str] = None,
        *,
        idle_timeout: Optional[float] = -1,
        selector: Optional[str] = None,
        at_most_once: bool = False,
        window: int = 10,
    ) -> Consumer:
        """Iterate over messages as they arrive; each is accepted only after the loop body
        finished with it and asked for the next one. Stops after ``idle_timeout`` seconds
        without a message (default: the client's timeout; None waits forever).

        Leaving the loop early: inside ``with client.consume(...) as messages:`` a ``break``
        accepts the message in hand and an exception puts it back on the queue; a bare ``for``
        loop cannot tell the two apart, so it always puts the message back.

        >>> with client.consume("orders", idle_timeout=5) as messages:   # doctest: +SKIP
        ...     for msg in messages:
        ...         if handle(msg.body) == "done":
        ...             break
        """
        address = self._address(address)
        return Consumer(lambda keep: self._consume(address, idle_timeout, selector,
                                                   at_most_once, window, keep))

    def _consume(self, address: Optional[str], idle_timeout: Optional[float],
                 selector: Optional[str], at_most_once: bool, window: int,
                 keep: List[bool]) -> Iterator[Message]:
        idle = self.timeout if idle_timeout == -1 else idle_timeout
        job = _Consumer(address=self._address(address), selector=selector,
                        at_most_once=at_most_once, window=window)
        return _consume(self, job, idle, keep)

    def request(
        self,
        address: Optional[str],
        message: Any,
        *,
        timeout: Optional[float] = None,
    ) -> Message:
        """Send a request and return its reply (a :class:`~proton_easy.Message`).

        The reply comes to this client's one dynamic reply queue and is matched by a fresh
        correlation id, so any number of threads may call this at once. Raises
        :class:`~proton_easy.Timeout` when no reply comes within ``timeout`` seconds (default: the
        client's); a reply that comes later is dropped. A request the server rejected (its
        handler raised) gets no reply: that is a Timeout too.

        >>> client.request("service", {"op": "sum", "args": [1, 2]}).body  # doctest: +SKIP
        3
        """
        address = self._address(address)
        if self._closed:
            raise RuntimeError("the client is closed")
        return _request(self, address, message, timeout)

    def serve(
        self,
        address: Optional[str],
        handler: Callable[[Message], Any],
        count: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> int:
        """Answer requests on ``address``: ``handler(msg)`` returns the reply's body (or a
        :class:`~proton_easy.Message`), sent to the request's ``reply_to`` with its
        ``correlation_id``. The handler runs in the calling thread. A handler that raises gets
        that request rejected (dead-lettered; the requester gets no reply) and serving goes on.
        Returns the number of requests handled after ``count`` of them, or after ``timeout``
        seconds without one (both None: until Ctrl-C, which puts the request in hand back,
        closes the link and propagates ``KeyboardInterrupt``).

        >>> client.serve("service", lambda msg: msg.body.upper(), count=10)  # doctest: +SKIP
        10
        """
        address = self._address(address)
        if self._closed:
            raise RuntimeError("the client is closed")
        return _serve(self, address, handler, count, timeout)

    def _request_channel(self) -> RequestChannel:
        """The job owning this client's reply queue, started on first use (and after a failure)."""
        with self._lock:
            channel = self._requests
            if channel is None or channel.done:
                channel = self._requests = RequestChannel()
                self._loop.call(lambda: channel.start(self._loop.container, self._conn))
            return channel

    def transaction(self, address: Optional[str] = None) -> Transaction:
        """A local transaction on this connection, in a session of its own (so several can
        share the client, one per thread). ``address`` is the default for its sends and
        receives. Leaving the ``with`` block commits; an exception aborts and is re-raised.

        >>> with client.transaction("orders") as tx:   # doctest: +SKIP
        ...     tx.send({"id": 1})
        ...     tx.send({"id": 2})
        """
        if self._closed:
            raise RuntimeError("the client is closed")
        return Transaction(self, address)

    # -- closing ----------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection gracefully and stop the loop thread (idempotent).

        Clients still open when the interpreter exits are closed then (an ``atexit`` hook),
        so a forgotten Client, or a ``consume`` loop left suspended by Ctrl-C, ends cleanly:
        unsettled messages go back to their queues.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            channel = self._requests
        _OPEN_CLIENTS.discard(self)
        if sys.is_finalizing():
            return  # too late: the loop thread is frozen; the broker sees the socket close
        try:
            if channel is not None:  # threads waiting for replies learn why none will come
                self._loop.call(channel.finish)
            self._loop.call(self._senders.close)  # and so do threads waiting in send()
            self._loop.call(self._conn.close).result(self.timeout)
            self._conn.closed.result(self.timeout)
        except (FutureTimeout, RuntimeError, AMQPError):
            log.debug("connection did not close cleanly", exc_info=True)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        self._closed = True
        self._loop.stop()
        if self._loop.finished:
            self._conn.release()


_OPEN_CLIENTS: weakref.WeakSet = weakref.WeakSet()
"""Every Client not closed yet, for :func:`_close_open_clients`."""


@atexit.register
def _close_open_clients() -> None:
    # atexit runs while the loop threads (daemons) still run: after it, during finalization,
    # a Client closed by the garbage collector (a suspended consume generator in a global)
    # would wait for a frozen thread and then abort the interpreter inside proton.
    for client in list(_OPEN_CLIENTS):
        try:
            client.close()
        except Exception:  # noqa: BLE001 - exiting anyway
            log.debug("closing a client at exit failed", exc_info=True)


def pre_encode(item: Any, durable: bool = False) -> Encoded:
    """Encode a body or message now (TypeError if it cannot be); encoded input passes through."""
    if type(item) is Encoded:
        return item
    return encode(item, durable)


class _Consumer(Receiver):
    """A receiver that hands messages to a waiting thread instead of a hook.

    Each delivery handed over is held (``_raw.hold``) until the loop settles it for the
    consuming thread, or drops it unseen (after a drop of the connection, or at the end).
    The consuming thread queues the deliveries it finished with in ``acks``; the loop accepts
    them in batches (:meth:`accept_acks`), one wake-up and one write for several."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(count=0, **kwargs)
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.acks: Deque[Any] = collections.deque()

    def deliver(self, msg: Message, dlv: Any) -> None:
        _raw.hold(dlv)
        self.queue.put((msg, dlv))

    def settle(self, dlv: Any, outcome: int) -> None:
        """Settle one handed-out message and grant credit for more (on the loop)."""
        self._settle(dlv, outcome)
        _raw.release(dlv)
        self.received += 1
        self._top_up()

    def accept_acks(self) -> None:
        """Accept every delivery queued in ``acks`` and grant credit for more (on the loop)."""
        acks, settle = self.acks, self._settle
        while acks:
            dlv = acks.popleft()
            settle(dlv, _raw.ACCEPTED)
            _raw.release(dlv)
            self.received += 1
        self._top_up()

    def on_finished(self) -> None:
        self._drop_queued()  # not handed out: the broker gets them back with the link
        self.queue.put((_END, None))

    def _dropped(self) -> None:
        # Unsettled messages not yet handed out come again after the reconnect: drop them here
        # rather than hand out copies whose settlement can no longer reach the broker.
        self._drop_queued()

    def _drop_queued(self) -> None:
        while True:
            try:
                msg, dlv = self.queue.get_nowait()
            except queue.Empty:
                return
            if msg is not _END:
                _raw.release(dlv)

    def _top_up(self) -> None:
        recv = self.receiver
        if recv is None or self.done:
            return
        outstanding = recv.credit + recv.queued + self.queue.qsize()
        missing = self.window - outstanding
        # credit in batches of half the window: one flow frame per few messages, not per message
        if missing > 0 and (2 * missing >= self.window or outstanding == 0):
            recv.flow(missing)


class Consumer(Iterator[Message]):
    """What ``consume`` returns: an iterator over arriving messages and a context manager.

    In a ``with`` block, leaving the loop by ``break`` accepts the message in hand (the loop
    body finished with it) and an exception puts it back on the queue; :meth:`close` (or the
    end of the block) closes the receiver.

    >>> with pe.consume(url, idle_timeout=5) as messages:   # doctest: +SKIP
    ...     first_two = [m.body for m in itertools.islice(messages, 2)]
    """

    def __init__(self, start: Any) -> None:
        self._keep = [False]  # set when the message in hand is to be accepted on close
        self._gen: Iterator[Message] = start(self._keep)

    def __iter__(self) -> Consumer:
        return self

    def __next__(self) -> Message:
        return next(self._gen)

    def close(self) -> None:
        """Stop: the message in hand goes back to the queue (unless leaving a ``with`` block
        normally), and the receiver closes."""
        self._gen.close()  # type: ignore[attr-defined]

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self._keep[0] = True
        self.close()


def _take(source: queue.SimpleQueue, wait: Optional[float]) -> Optional[Tuple[Any, Any]]:
    """The next item of ``source`` within ``wait`` seconds (0: now; None: forever), else None."""
    try:
        return source.get(timeout=wait) if wait != 0 else source.get_nowait()
    except queue.Empty:
        return None


def _consume(client: Client, job: _Consumer, idle: Optional[float],
             keep: List[bool]) -> Iterator[Message]:
    fut: Future = Future()
    loop = client._loop
    loop.call(lambda: job.start(loop.container, client._conn, fut))
    pending: Optional[Tuple[Message, Any]] = None
    acks, batch = job.acks, max(1, job.window // 2)
    try:
        while True:
            item = _take(job.queue, 0)
            if item is None:
                if acks:  # about to wait: accept what was handled, which also grants credit
                    loop.post(job.accept_acks)
                item = _take(job.queue, idle)  # (Ctrl-C here: a KeyboardInterrupt, no chain)
                if item is None:
                    return
            msg, dlv = item
            if msg is _END:
                if job.error is not None:
                    raise job.error
                return
            pending = (msg, dlv)
            yield msg
            pending = None
            acks.append(dlv)
            if len(acks) >= batch:
                loop.post(job.accept_acks)
    finally:
        if pending is not None and keep[0]:
            acks.append(pending[1])  # left a with block normally: the body is done with it
            pending = None
        if acks and not client._closed:
            loop.post(job.accept_acks)
        if pending is not None and not client._closed:
            client._loop.post(lambda d=pending[1]: job.settle(d, _raw.MODIFIED))
        if not client._closed:
            client._loop.call(job.finish)
            try:
                fut.result(client.timeout)
            except (FutureTimeout, AMQPError):
                log.debug("consumer link did not close cleanly", exc_info=True)
