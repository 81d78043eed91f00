"""One-line helpers: each opens a Client, does one job, closes it (requests' ``api.py`` model).

Every helper takes the connection options of :class:`~proton_easy.Client` as keywords: ``user``,
``password``, ``tls``, ``reconnect``, ``heartbeat``, ``timeout``, ``allowed_mechs``, ``urls``,
``container_id``. The URL's path names the address: ``amqp://host:5672/orders``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, List, Optional

from . import _otel
from ._client import Client, pre_encode, pre_encode_many
from ._consumer import Consumer
from ._message import Message, encode
from ._options import (
    CONNECT_FLOOR,
    DEFAULT_TIMEOUT,
    CallOptions,
    ConnectionOptions,
    ConnectOptions,
    check_seconds,
)
from ._request_reply import check_serve_args
from ._transaction import Transaction
from .handlers._job import as_message, default_durable
from .handlers._links import check_subscription, resolve
from .handlers._transfer import check_receive_options

if TYPE_CHECKING:
    from typing_extensions import Unpack

_LEAST = 0.05
"""Seconds a job still gets when connecting used up (nearly) all of the call's timeout."""


def _cap_connect(timeout: Optional[float], options: Any) -> None:
    """Connecting takes at most ``timeout`` seconds (or the connection ``timeout``, whichever
    is shorter)."""
    check_seconds("timeout", timeout, allow_none=True)
    if timeout is not None:
        options["timeout"] = min(timeout, options.get("timeout") or DEFAULT_TIMEOUT)


class _Budget:
    """One call's timeout, shared by its connecting and its job: ``pe.receive(url,
    timeout=3)`` connects within 3 s and receives for what is left of them (a timeout under
    2 s still gives connecting 2 s)."""

    def __init__(self, timeout: Optional[float], options: Any) -> None:
        check_seconds("timeout", timeout, allow_none=True)
        if timeout is not None:
            # connecting gets at least CONNECT_FLOOR: a short receive ("what is there now")
            # must not fail because opening a connection took longer than the wait itself
            connect = max(timeout, CONNECT_FLOOR)
            options["timeout"] = min(connect, options.get("timeout") or connect)
        self.total = timeout
        self._start = time.monotonic()

    def left(self) -> Optional[float]:
        """What remains of the timeout (None when the call was given none)."""
        if self.total is None:
            return None
        return max(_LEAST, self.total - (time.monotonic() - self._start))


def send(url: Optional[str], message: Any, *, at_most_once: bool = False,
         durable: Optional[bool] = None, delay: Optional[float] = None,
         **options: Unpack[ConnectOptions]) -> None:
    """Send one message and wait until the broker accepted it; ``delay`` (seconds): the broker
    holds it that long before delivering it.

    >>> import proton_easy as pe
    >>> pe.send("amqp://localhost:5672/examples", {"sequence": 1})   # doctest: +SKIP
    >>> pe.send("amqp://localhost:5672/examples", "later", delay=5)  # doctest: +SKIP
    """
    payload = pre_encode(message, default_durable(durable, at_most_once),
                         delay)  # TypeError/ValueError here
    if _otel.current() is not None:  # the client encodes it again, with the trace context
        payload, durable_, delay_ = message, durable, delay
    else:
        durable_, delay_ = None, None
    budget = _Budget(options.pop("timeout", None), options)
    with Client(url, **options) as client:
        client.send(None, payload, at_most_once=at_most_once, timeout=budget.left(),
                    durable=durable_, delay=delay_)


def send_many(url: Optional[str], messages: Iterable[Any], *, at_most_once: bool = False,
              durable: Optional[bool] = None, delay: Optional[float] = None,
              **options: Unpack[ConnectOptions]) -> int:
    """Send many messages, pipelined; return the number accepted (re-sent after a reconnect).
    ``delay`` (seconds): the broker holds each message that long.

    >>> pe.send_many("amqp://localhost:5672/examples", range(100))   # doctest: +SKIP
    100
    """
    encoded, encoded_delay = pre_encode_many(messages, default_durable(durable, at_most_once),
                                             delay)  # TypeError/ValueError here
    if _otel.current() is None:  # (else the client encodes them with the trace context)
        messages, delay = encoded, encoded_delay
    budget = _Budget(options.pop("timeout", None), options)
    with Client(url, **options) as client:
        return client.send_many(None, messages, at_most_once=at_most_once, durable=durable,
                                delay=delay, timeout=budget.left())


def receive(url: Optional[str], count: int = 1, *, timeout: Optional[float] = None,
            selector: Optional[str] = None, at_most_once: bool = False,
            subscription: Optional[str] = None, durable: bool = False, shared: bool = False,
            **options: Unpack[CallOptions]) -> List[Message]:
    """Receive up to ``count`` messages within ``timeout`` seconds; maybe fewer, maybe none.
    ``subscription``/``durable``/``shared``: a named topic subscription (see
    :meth:`Client.receive`).

    ``timeout`` (default: the connection ``timeout``, 10) bounds the whole call, connecting
    included.

    >>> pe.receive("amqp://localhost:5672/examples", count=10, timeout=5)   # doctest: +SKIP
    [Message(body={'sequence': 1}), ...]
    >>> pe.receive("amqp://localhost:5672/topic://prices", 10, subscription="audit",
    ...            durable=True, container_id="auditor")   # doctest: +SKIP
    [Message(body=...), ...]
    """
    _check_receive(url, subscription, durable, shared, False, at_most_once, options)
    budget = _Budget(timeout, options)
    with Client(url, **options) as client:
        return client.receive(None, count, timeout=budget.left(), selector=selector,
                              at_most_once=at_most_once, subscription=subscription,
                              durable=durable, shared=shared)


def _check_receive(url: Optional[str], subscription: Optional[str], durable: bool,
                   shared: bool, browse: bool, at_most_once: bool, options: Any) -> None:
    """Subscription and browse options that cannot work: ValueError before connecting."""
    parsed = ConnectionOptions.build(url, **options)
    check_receive_options(parsed.address, subscription, durable, shared, browse, at_most_once,
                          parsed)


def browse(url: Optional[str], count: Optional[int] = None, *,
           selector: Optional[str] = None, timeout: Optional[float] = None,
           **options: Unpack[CallOptions]) -> List[Message]:
    """The messages on the URL's queue (at most ``count``; None: all there are now), without
    taking them: the queue is unchanged afterwards. ``selector`` filters them.

    >>> len(pe.browse("amqp://localhost:5672/orders"))   # doctest: +SKIP
    50
    """
    _check_receive(url, None, False, False, True, False, options)
    budget = _Budget(timeout, options)
    with Client(url, **options) as client:
        return client.browse(None, count, selector=selector, timeout=budget.left())


def unsubscribe(url: Optional[str], subscription: str,
                **options: Unpack[ConnectOptions]) -> None:
    """Delete the subscription ``subscription`` on the URL's topic (and what it kept);
    :class:`~proton_easy.NotFound` when there is none. Give the ``container_id`` the
    subscriber used.

    >>> pe.unsubscribe("amqp://localhost:5672/topic://prices", "audit",
    ...                container_id="auditor")   # doctest: +SKIP
    """
    parsed = ConnectionOptions.build(url, **options)
    check_subscription(resolve(parsed.address)[1] if parsed.address else None, subscription,
                       False, True, None)
    with Client(url, **options) as client:
        client.unsubscribe(None, subscription)


def consume(url: Optional[str], *, idle_timeout: Optional[float] = -1,
            selector: Optional[str] = None, at_most_once: bool = False,
            subscription: Optional[str] = None, durable: bool = False, shared: bool = False,
            **options: Unpack[ConnectOptions]) -> Consumer:
    """Iterate over messages; each is accepted after the loop body finished with it, and put back
    on the queue if the body raised. Stops after ``idle_timeout`` seconds without a message.
    Also a context manager: inside ``with``, a ``break`` accepts the message in hand.

    >>> for msg in pe.consume("amqp://localhost:5672/examples", idle_timeout=5):  # doctest: +SKIP
    ...     print(msg.body)
    """
    if idle_timeout != -1:
        check_seconds("idle_timeout", idle_timeout, allow_none=True)
    _Budget(options.pop("timeout", None), options)  # checked before any I/O
    _check_receive(url, subscription, durable, shared, False, at_most_once, options)

    def run(keep: List[bool]) -> Iterator[Message]:
        with Client(url, **options) as client:
            yield from client._consume(None, idle_timeout, selector, at_most_once, None, keep,
                                       subscription, durable, shared)

    return Consumer(run)


def request(url: Optional[str], message: Any, *, timeout: Optional[float] = None,
            **options: Unpack[CallOptions]) -> Message:
    """Send a request to the URL's address and return the reply (a :class:`Message`).

    The reply comes to a dynamic queue the broker names, matched by a fresh correlation id.
    Raises :class:`~proton_easy.Timeout` (a ``TimeoutError``) when none comes within ``timeout``
    seconds (default: the connection ``timeout``, 10), which bound the whole call, connecting
    included.

    >>> pe.request("amqp://localhost:5672/service", "hello", timeout=5).body  # doctest: +SKIP
    'HELLO'
    """
    encode(as_message(message))  # a TypeError before any I/O
    budget = _Budget(timeout, options)
    with Client(url, **options) as client:
        return client.request(None, message, timeout=budget.left())


def serve(url: Optional[str], handler: Callable[[Message], Any], count: Optional[int] = None,
          timeout: Optional[float] = None, **options: Unpack[CallOptions]) -> int:
    """Answer requests on the URL's address with ``handler(msg)`` (returns a body or a
    :class:`Message`); return the number handled after ``count`` requests or ``timeout`` idle
    seconds (both None: it serves until stopped). A handler that raises gets that request
    rejected; serving goes on. Ctrl-C puts the request in hand back, closes the link and raises
    ``KeyboardInterrupt`` (catch it to stop quietly). Connecting takes at most ``timeout``
    seconds too (or the connection ``timeout``, whichever is shorter).

    >>> pe.serve("amqp://localhost:5672/service", lambda msg: msg.body.upper())  # doctest: +SKIP
    """
    check_serve_args(handler, count, timeout)  # wrong arguments fail before any I/O
    _cap_connect(timeout, options)
    with Client(url, **options) as client:
        return client.serve(None, handler, count=count, timeout=timeout)


def transaction(url: Optional[str] = None, **options: Unpack[ConnectOptions]) -> Transaction:
    """A local transaction on a connection of its own, for a ``with`` block: leaving the block
    commits, an exception aborts the batch and is re-raised; ``tx.commit()`` and ``tx.abort()``
    end the current batch and start the next. A :class:`~proton_easy.TransactionError` means the
    batch did not happen. The URL's path is the default address of ``tx.send``/``tx.receive``.

    >>> with pe.transaction("amqp://localhost:5672/examples") as tx:   # doctest: +SKIP
    ...     tx.send({"sequence": 1})
    ...     tx.send({"sequence": 2})
    """
    _Budget(options.pop("timeout", None), options)  # checked before any I/O
    client = Client(url, **options)
    return Transaction(client._driver, default_address=client.default_address,
                       close_with=client)
