"""The one-line helpers, awaited: each opens an :class:`~proton_easy.aio.Client`, does one job
and closes it, with the checks of :mod:`proton_easy._api` before any I/O."""

from __future__ import annotations

from typing import Any, Callable, Iterable, List, Optional

from .. import _otel
from .._api import _check_receive
from .._client import check_count, pre_encode, pre_encode_many
from .._message import Message, encode
from .._options import ConnectionOptions
from .._request_reply import check_serve_args
from ..handlers._job import _check_seconds, as_message, default_durable
from ..handlers._links import check_subscription, resolve
from ._client import Client
from ._consumer import Consumer
from ._transaction import Transaction


async def send(url: Optional[str], message: Any, *, at_most_once: bool = False,
               durable: Optional[bool] = None, delay: Optional[float] = None,
               **options: Any) -> None:
    """Send one message and return once the broker accepted it; see :func:`proton_easy.send`.
    ``delay`` (seconds): the broker holds it that long before delivering it.

    >>> await aio.send("amqp://localhost:5672/examples", {"sequence": 1})   # doctest: +SKIP
    >>> await aio.send("amqp://localhost:5672/examples", "later", delay=5)  # doctest: +SKIP
    """
    payload: Any = pre_encode(message, default_durable(durable, at_most_once),
                              delay)  # TypeError/ValueError here
    send_delay = None
    if _otel.current() is not None:  # the client encodes it again, with the trace context
        payload, send_delay = message, delay
    async with Client(url, **options) as client:
        await client.send(None, payload, at_most_once=at_most_once, durable=durable,
                          delay=send_delay)


async def send_many(url: Optional[str], messages: Iterable[Any], *, at_most_once: bool = False,
                    durable: Optional[bool] = None, delay: Optional[float] = None,
                    **options: Any) -> int:
    """Send many messages, pipelined; return the number accepted. See
    :func:`proton_easy.send_many`. ``delay`` (seconds): the broker holds each that long.

    >>> await aio.send_many("amqp://localhost:5672/examples", range(100))   # doctest: +SKIP
    100
    """
    encoded, encoded_delay = pre_encode_many(messages, default_durable(durable, at_most_once),
                                             delay)  # TypeError/ValueError here
    if _otel.current() is None:  # (else the client encodes them with the trace context)
        messages, delay = encoded, encoded_delay
    async with Client(url, **options) as client:
        return await client.send_many(None, messages, at_most_once=at_most_once,
                                      durable=durable, delay=delay)


async def receive(url: Optional[str], count: int = 1, *, timeout: Optional[float] = None,
                  selector: Optional[str] = None, at_most_once: bool = False,
                  subscription: Optional[str] = None, durable: bool = False,
                  shared: bool = False, **options: Any) -> List[Message]:
    """Receive up to ``count`` messages within ``timeout`` seconds; see
    :func:`proton_easy.receive` (``subscription``/``durable``/``shared``: a named topic
    subscription). Cancelled, it puts what it had received back on the queue.

    >>> await aio.receive("amqp://localhost:5672/examples", count=10, timeout=5)  # doctest: +SKIP
    [Message(body={'sequence': 1}), ...]
    """
    check_count(count)
    _check_receive(url, subscription, durable, shared, False, at_most_once, options)
    async with Client(url, **options) as client:
        return await client.receive(None, count, timeout=timeout, selector=selector,
                                    at_most_once=at_most_once, subscription=subscription,
                                    durable=durable, shared=shared)


def consume(url: Optional[str], *, idle_timeout: Optional[float] = -1,
            selector: Optional[str] = None, at_most_once: bool = False,
            subscription: Optional[str] = None, durable: bool = False, shared: bool = False,
            **options: Any) -> Consumer:
    """Iterate with ``async for`` over messages, each accepted after the loop body finished
    with it and put back on the queue if the body raised (or its task was cancelled); stops
    after ``idle_timeout`` seconds without one. Also an async context manager: inside
    ``async with``, a ``break`` accepts the message in hand. See :func:`proton_easy.consume`
    (``subscription``/``durable``/``shared`` as for :func:`receive`).

    >>> async for msg in aio.consume("amqp://localhost:5672/examples", idle_timeout=5):
    ...     print(msg.body)   # doctest: +SKIP
    """
    client = Client(url, **options)  # ValueError/TypeError here, before any I/O
    _check_receive(url, subscription, durable, shared, False, at_most_once, options)

    async def connect() -> Client:
        return await client.connect()

    return Consumer(None, None, idle_timeout=idle_timeout, selector=selector,
                    at_most_once=at_most_once, window=None, connect=connect,
                    subscription=subscription, durable=durable, shared=shared)


async def browse(url: Optional[str], count: Optional[int] = None, *,
                 selector: Optional[str] = None, timeout: Optional[float] = None,
                 **options: Any) -> List[Message]:
    """The messages on the URL's queue (at most ``count``; None: all there are now), without
    taking them; see :func:`proton_easy.browse`.

    >>> len(await aio.browse("amqp://localhost:5672/orders"))   # doctest: +SKIP
    50
    """
    _check_receive(url, None, False, False, True, False, options)
    async with Client(url, **options) as client:
        return await client.browse(None, count, selector=selector, timeout=timeout)


async def unsubscribe(url: Optional[str], subscription: str, **options: Any) -> None:
    """Delete the subscription ``subscription`` on the URL's topic (and what it kept); see
    :func:`proton_easy.unsubscribe`.

    >>> await aio.unsubscribe("amqp://localhost:5672/topic://prices", "audit",
    ...                       container_id="auditor")   # doctest: +SKIP
    """
    parsed = ConnectionOptions.build(url, **options)
    check_subscription(resolve(parsed.address)[1] if parsed.address else None, subscription,
                       False, True, None)
    async with Client(url, **options) as client:
        await client.unsubscribe(None, subscription)


async def request(url: Optional[str], message: Any, *, timeout: Optional[float] = None,
                  **options: Any) -> Message:
    """Send a request to the URL's address and return the reply; see
    :func:`proton_easy.request`.

    >>> (await aio.request("amqp://localhost:5672/service", "hello")).body  # doctest: +SKIP
    'HELLO'
    """
    encode(as_message(message))  # a TypeError before any I/O
    _check_seconds("timeout", timeout)
    async with Client(url, **options) as client:
        return await client.request(None, message, timeout=timeout)


async def serve(url: Optional[str], handler: Callable[[Message], Any],
                count: Optional[int] = None, timeout: Optional[float] = None,
                **options: Any) -> int:
    """Answer requests on the URL's address with ``handler(msg)`` (a function or a coroutine
    function); return the number handled. See :func:`proton_easy.serve`.

    >>> async def upper(msg):
    ...     return msg.body.upper()
    >>> await aio.serve("amqp://localhost:5672/service", upper)   # doctest: +SKIP
    """
    check_serve_args(handler, count, timeout)  # wrong arguments fail before any I/O
    async with Client(url, **options) as client:
        return await client.serve(None, handler, count=count, timeout=timeout)


class transaction:  # noqa: N801 - a verb, like proton_easy.transaction
    """A local transaction on a connection of its own, for ``async with``: leaving the block
    commits, an exception aborts and is re-raised. See :func:`proton_easy.transaction`.

    >>> async with aio.transaction("amqp://localhost:5672/examples") as tx:   # doctest: +SKIP
    ...     await tx.send({"sequence": 1})
    """

    def __init__(self, url: Optional[str] = None, **options: Any) -> None:
        self._client = Client(url, **options)  # ValueError/TypeError here, before any I/O
        self._tx: Optional[Transaction] = None

    async def __aenter__(self) -> Transaction:
        await self._client.connect()
        try:
            self._tx = Transaction(self._client, owns_client=True)
        except BaseException:
            await self._client.close()
            raise
        return await self._tx.__aenter__()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._tx is not None:
            await self._tx.__aexit__(exc_type, exc, tb)
