"""Client: one connection, one loop thread, the blocking verbs on top of the handler classes."""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import weakref
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, List, Mapping, Optional, Tuple

from . import _otel
from ._consumer import Consumer, ConsumerJob
from ._consumer import consume as _consume
from ._driver import Driver
from ._engine.connection import Connection
from ._engine.loop import Loop
from ._errors import AMQPError, ConnectError
from ._message import Encoded, Message, check_delay, encode
from ._options import CONNECTION_OPTIONS, ConnectionOptions, ConnectOptions
from ._request_reply import Requests
from ._request_reply import serve as _serve
from ._sending import SenderPool
from ._transaction import Transaction
from .handlers._job import Job, _check_seconds, default_durable
from .handlers._subscriptions import Unsubscriber
from .handlers._transfer import Receiver, Sender, check_receive_options

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger("proton_easy")

__all__ = ["Client", "Consumer", "pre_encode", "pre_encode_many"]


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

    def __init__(self, url: Optional[str] = None, **options: Unpack[ConnectOptions]) -> None:
        self._prepare(self._build_options(url, options))
        try:
            self._open().result(self.timeout)
            self._conn.opened.result(timeout=self.timeout)
        except FutureTimeout:
            self._shutdown()
            raise self._no_answer() from None
        except BaseException:
            self._shutdown()
            raise
        self._opened()

    # -- connecting (shared with the asyncio face, which awaits the same futures) -------------
    @staticmethod
    def _build_options(url: Optional[str], options: Mapping[str, Any]) -> ConnectionOptions:
        """The checked connection options (TypeError/ValueError here, before any I/O)."""
        unknown = set(options) - set(CONNECTION_OPTIONS)
        if unknown:
            raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
        return ConnectionOptions.build(url, **options)

    def _prepare(self, options: ConnectionOptions) -> None:
        self.options = options
        self.timeout = self.options.timeout
        self._loop = Loop(f"proton-easy {self.options.display_url}")
        self._conn = Connection(self.options)
        self._driver = Driver(self._loop, self._conn, timeout=self.timeout,
                              name=self.options.display_url)
        self._senders = SenderPool(self._driver)
        self._close_lock = threading.Lock()
        self._requests = Requests(self._driver)

    def _open(self) -> Future[Any]:
        """Start connecting on the loop thread; then ``self._conn.opened`` tells the outcome."""
        return self._loop.call(lambda: self._conn.open(self._loop.container))

    def _no_answer(self) -> ConnectError:
        return ConnectError(f"cannot connect to {self.options.display_urls}: no answer "
                            f"within {self.timeout:g} s")

    def _opened(self) -> None:
        _OPEN_CLIENTS.add(self)

    @property
    def _closed(self) -> bool:
        return self._driver.closed

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

    def run(self, job: Job, timeout: Optional[float] = None, *,
            progress: Optional[Callable[[], int]] = None) -> Any:
        """Run a handler job on this client's connection and wait for its result.

        ``timeout`` bounds the whole job; with ``progress`` (a callable returning a number that
        grows while the job advances) it bounds the time without progress instead. Time spent
        reconnecting does not count. Past it: :class:`~proton_easy.Timeout` (the job is failed,
        its links closed).

        >>> client.run(Receiver(count=1, address="orders"), timeout=5)   # doctest: +SKIP
        [Message(body='hello')]
        """
        return self._driver.run(job, timeout, progress=progress)

    # -- verbs ------------------------------------------------------------------------------
    def send(
        self,
        address: Optional[str],
        message: Any,
        *,
        at_most_once: bool = False,
        durable: Optional[bool] = None,
        timeout: Optional[float] = None,
        delay: Optional[float] = None,
    ) -> None:
        """Send one message; return once the broker accepted it. At-most-once: return once it
        is queued for the connection's loop thread, which writes it out at once (most calls do
        not wait for it; closing the client waits until everything queued is written).

        ``message`` is a plain body or a :class:`~proton_easy.Message`. Raises
        :class:`~proton_easy.Rejected`/:class:`~proton_easy.Released` when not accepted, and
        :class:`~proton_easy.Timeout` when not confirmed within ``timeout`` seconds (not counting
        time spent reconnecting). One sender link per address stays open for these calls,
        shared by all threads; a message not confirmed when the connection drops is sent again.
        ``delay`` (seconds): the broker holds the message that long before delivering it.

        >>> client.send("orders", {"id": 1})   # doctest: +SKIP
        >>> client.send("orders", {"id": 2}, delay=5)   # doctest: +SKIP
        """
        address, payload, limit = self._send_args(address, message, at_most_once, durable,
                                                  timeout, delay)
        self._senders.send(address, payload, at_most_once=at_most_once, timeout=limit)

    def _send_args(self, address: Optional[str], message: Any, at_most_once: bool,
                   durable: Optional[bool], timeout: Optional[float],
                   delay: Optional[float] = None) -> Tuple[str, Encoded, float]:
        """``send``'s checks before any I/O: (address, encoded message, seconds to wait)."""
        address = self._address(address)
        _check_seconds("timeout", timeout)
        tel = _otel.current()
        if tel is None:
            payload = pre_encode(message, default_durable(durable, at_most_once),
                                 delay)  # TypeError/ValueError here
        else:  # a send span, its context in the message
            payload = tel.start_send(self._conn, address, message,
                                     default_durable(durable, at_most_once), delay)
        self._driver.check_open()
        return address, payload, self.timeout if timeout is None else timeout

    def send_many(
        self,
        address: Optional[str],
        messages: Iterable[Any],
        *,
        at_most_once: bool = False,
        durable: Optional[bool] = None,
        timeout: Optional[float] = None,
        delay: Optional[float] = None,
    ) -> int:
        """Send many messages pipelined within the link credit; return how many were accepted.

        Unconfirmed messages are re-sent after a reconnect. ``timeout`` (default: the client's)
        is how long the call may go without progress. ``delay`` (seconds): the broker holds
        each message that long.

        >>> client.send_many("orders", ({"id": i} for i in range(1000)))   # doctest: +SKIP
        1000
        """
        job = self._send_many_job(address, messages, at_most_once, durable, timeout, delay)
        result: int = self._driver.run(job, timeout, progress=lambda: job.confirmed)
        return result

    def _send_many_job(self, address: Optional[str], messages: Iterable[Any],
                       at_most_once: bool, durable: Optional[bool],
                       timeout: Optional[float] = None,
                       delay: Optional[float] = None) -> Sender:
        """``send_many``'s job, after its checks (a list is encoded now: TypeError here)."""
        address = self._address(address)
        _check_seconds("timeout", timeout)
        durable = default_durable(durable, at_most_once)
        tel = _otel.current()
        if tel is None:
            messages, delay = pre_encode_many(messages, durable, delay)
            return Sender(messages=messages, address=address, at_most_once=at_most_once,
                          durable=durable, delay=delay)
        if delay is not None:
            check_delay("delay", delay)
        batch = tel.start_batch(self._conn, address)
        if isinstance(messages, (list, tuple)):
            try:
                messages = [batch.tel.encode_batch(batch, m, durable, delay) for m in messages]
            except BaseException as exc:
                batch.abandon(exc)
                raise
            delay = None  # in the encoded messages already
        job = Sender(messages=messages, address=address, at_most_once=at_most_once,
                     durable=durable, delay=delay)
        batch.bind(job)
        return job

    def receive(
        self,
        address: Optional[str] = None,
        count: int = 1,
        *,
        timeout: Optional[float] = None,
        selector: Optional[str] = None,
        at_most_once: bool = False,
        subscription: Optional[str] = None,
        durable: bool = False,
        shared: bool = False,
    ) -> List[Message]:
        """Receive up to ``count`` messages within ``timeout`` seconds (a shorter list, maybe
        empty, when fewer came). Credit is granted only for ``count``: nothing else is taken off
        the queue. ``selector`` is a JMS selector on application properties.

        On a ``topic://`` address, ``subscription="name"`` receives from a named subscription:
        ``durable=True`` keeps it (and what is published meanwhile) while no one is connected
        (keyed by this client's ``container_id``, which it then needs unless shared),
        ``shared=True`` lets several receivers take turns on it, each message to one of them.

        >>> client.receive("orders", count=10, selector="colour = 'green'")  # doctest: +SKIP
        [Message(body=...), ...]
        >>> client.receive("topic://prices", 10, subscription="audit",
        ...                durable=True)   # doctest: +SKIP
        [Message(body=...), ...]
        """
        address, limit = self._receive_args(address, count, timeout)
        job = Receiver(count=count, address=address, selector=selector,
                       at_most_once=at_most_once, window=count, deadline=limit,
                       subscription=subscription, durable=durable, shared=shared)
        self._check_subscription(job)
        result: List[Message] = self._driver.run(job, limit + self.timeout)
        return result

    def _receive_args(self, address: Optional[str], count: int,
                      timeout: Optional[float]) -> Tuple[str, float]:
        """``receive``'s checks before any I/O: (address, seconds to wait)."""
        address = self._address(address)
        _check_seconds("timeout", timeout)
        check_count(count)
        return address, self.timeout if timeout is None else timeout

    def consume(
        self,
        address: Optional[str] = None,
        *,
        idle_timeout: Optional[float] = -1,
        selector: Optional[str] = None,
        at_most_once: bool = False,
        window: Optional[int] = None,
        subscription: Optional[str] = None,
        durable: bool = False,
        shared: bool = False,
    ) -> Consumer:
        """Iterate over messages as they arrive; each is accepted only after the loop body
        finished with it and asked for the next one. Stops after ``idle_timeout`` seconds
        without a message (default: the client's timeout; None waits forever).

        Leaving the loop early: inside ``with client.consume(...) as messages:`` a ``break``
        accepts the message in hand and an exception puts it back on the queue; a bare ``for``
        loop cannot tell the two apart, so it always puts the message back.
        ``subscription``, ``durable`` and ``shared``: a named topic subscription, as for
        :meth:`receive`.

        ``window`` is the credit (how many messages the broker may send ahead). By default it
        adapts: it starts at 10, so that competing consumers share a queue's messages, and
        doubles up to 1000 each time the loop body has handled everything it was given and
        waits for more; a consumer slower than its messages keeps the credit it has. A number
        fixes it (``window=1``: one message at a time). Messages sent ahead but not handed
        to the loop body go back to the queue when the consumer closes.

        >>> with client.consume("orders", idle_timeout=5) as messages:   # doctest: +SKIP
        ...     for msg in messages:
        ...         if handle(msg.body) == "done":
        ...             break
        """
        address = self._address(address)
        check_receive_options(address, subscription, durable, shared, False, at_most_once,
                              self.options)
        return Consumer(lambda keep: self._consume(address, idle_timeout, selector,
                                                   at_most_once, window, keep,
                                                   subscription, durable, shared))

    def _consume(self, address: Optional[str], idle_timeout: Optional[float],
                 selector: Optional[str], at_most_once: bool, window: Optional[int],
                 keep: List[bool], subscription: Optional[str] = None,
                 durable: bool = False, shared: bool = False) -> Iterator[Message]:
        idle, job = self._consumer_job(address, idle_timeout, selector, at_most_once, window,
                                       subscription=subscription, durable=durable,
                                       shared=shared)
        return _consume(self._driver, job, idle, keep)

    def _consumer_job(self, address: Optional[str], idle_timeout: Optional[float],
                      selector: Optional[str], at_most_once: bool, window: Optional[int],
                      notify: Optional[Callable[[], None]] = None, *,
                      subscription: Optional[str] = None, durable: bool = False,
                      shared: bool = False) -> Tuple[Optional[float], ConsumerJob]:
        """``consume``'s idle limit (``-1``: the client's timeout) and job, after its checks."""
        idle = self.timeout if idle_timeout == -1 else idle_timeout
        job = ConsumerJob(notify=notify, address=self._address(address), selector=selector,
                          at_most_once=at_most_once, window=window,
                          subscription=subscription, durable=durable, shared=shared)
        self._check_subscription(job)
        return idle, job

    def _check_subscription(self, job: Receiver) -> None:
        check_receive_options(job.address, job.subscription, job.subscription_durable,
                              job.shared, job.browse, job.at_most_once, self.options)

    def browse(
        self,
        address: Optional[str] = None,
        count: Optional[int] = None,
        *,
        selector: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> List[Message]:
        """The messages on a queue (at most ``count``; None: every one there is now), without
        taking them: the queue is unchanged afterwards (AMQP distribution mode ``copy``,
        JMS's ``QueueBrowser``). ``selector`` filters them; ``timeout`` bounds the call.

        >>> [m.body for m in client.browse("orders", selector="colour = 'green'")]  # doctest: +SKIP
        [...]
        """
        job, limit = self._browse_job(address, count, selector, timeout)
        result: List[Message] = self._driver.run(job, limit + self.timeout)
        return result

    def _browse_job(self, address: Optional[str], count: Optional[int],
                    selector: Optional[str], timeout: Optional[float]) -> Tuple[Receiver, float]:
        """``browse``'s checks before any I/O, and its job: (job, seconds it may take)."""
        address = self._address(address)
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                                  or count < 1):
            raise ValueError(f"count must be a positive integer or None, not {count!r}")
        _check_seconds("timeout", timeout)
        limit = self.timeout if timeout is None else timeout
        return Receiver(count=count or 0, address=address, selector=selector, browse=True,
                        drain=True, deadline=limit), limit

    def unsubscribe(self, address: Optional[str], subscription: str, *,
                    timeout: Optional[float] = None) -> None:
        """Delete the subscription named ``subscription`` on the topic ``address``, with the
        messages it kept: the broker's queue for it is gone afterwards. A durable subscription
        stays while its receivers come and go; this is how it ends (JMS's ``unsubscribe``).
        :class:`~proton_easy.NotFound` when there is no such subscription for this client
        (its ``container_id``; shared subscriptions made without one are found by name).

        >>> client.unsubscribe("topic://prices", "audit")   # doctest: +SKIP
        """
        address = self._address(address)
        job = Unsubscriber(address=address, subscription=subscription)
        self._driver.run(job, timeout)

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
        self._driver.check_open()
        return self._requests.request(address, message, timeout)

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
        self._driver.check_open()
        return _serve(self._driver, address, handler, count, timeout)

    def transaction(self, address: Optional[str] = None) -> Transaction:
        """A local transaction on this connection, in a session of its own (so several can
        share the client, one per thread). ``address`` is the default for its sends and
        receives. Leaving the ``with`` block commits; an exception aborts and is re-raised.

        >>> with client.transaction("orders") as tx:   # doctest: +SKIP
        ...     tx.send({"id": 1})
        ...     tx.send({"id": 2})
        """
        self._driver.check_open()
        return Transaction(self._driver, address, default_address=self.default_address)

    # -- closing ----------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection gracefully and stop the loop thread (idempotent).

        Clients still open when the interpreter exits are closed then (an ``atexit`` hook),
        so a forgotten Client, or a ``consume`` loop left suspended by Ctrl-C, ends cleanly:
        unsettled messages go back to their queues.
        """
        if not self._begin_close():
            return
        try:
            self._requests.close()  # threads waiting for replies learn why none will come
            self._senders.flush(self.timeout)  # at-most-once messages queued: written first
            self._loop.call(self._senders.close)  # and so do threads waiting in send()
            self._loop.call(self._conn.close).result(self.timeout)
            self._conn.closed.result(self.timeout)
        except (FutureTimeout, RuntimeError, AMQPError):
            log.debug("connection did not close cleanly", exc_info=True)
        finally:
            self._shutdown()

    def _begin_close(self) -> bool:
        """Mark the client closed; False when it already was (or it is too late to close)."""
        with self._close_lock:
            if self._closed:
                return False
            self._driver.closed = True
        _OPEN_CLIENTS.discard(self)
        # too late at finalization: the loop thread is frozen; the broker sees the socket close
        return not sys.is_finalizing()

    def _shutdown(self) -> None:
        self._driver.closed = True
        self._loop.stop()
        if self._loop.finished:
            self._conn.release_proton()


_OPEN_CLIENTS: weakref.WeakSet[Client] = weakref.WeakSet()
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


def check_count(count: Any) -> None:
    """ValueError unless ``count`` is a positive integer (``receive``'s, before any I/O)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, not {count!r}")


def pre_encode(item: Any, durable: bool = False, delay: Optional[float] = None) -> Encoded:
    """Encode a body or message now (TypeError if it cannot be); encoded input passes through.
    ``delay``: seconds the broker holds the message (see :func:`~proton_easy._message.encode`)."""
    if type(item) is Encoded and delay is None:
        return item
    return encode(item, durable, delay)


def pre_encode_many(messages: Iterable[Any], durable: bool,
                    delay: Optional[float]) -> Tuple[Iterable[Any], Optional[float]]:
    """``send_many``'s checks before any I/O: ``delay`` checked, a list or tuple encoded now
    (TypeError here) with the delay in its encoded messages (None comes back then); another
    iterable stays lazy and keeps its ``delay``."""
    if delay is not None:
        check_delay("delay", delay)
    if isinstance(messages, (list, tuple)):
        return [pre_encode(m, durable, delay) for m in messages], None
    return messages, delay
