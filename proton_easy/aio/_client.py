"""``aio.Client``: the blocking :class:`proton_easy.Client`'s connection, loop thread and jobs,
with every verb awaited instead of waited for."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Callable, Generator, Iterable, List, Optional

from .._client import Client as _SyncClient
from .._driver import Patience
from .._errors import AMQPError, Timeout
from .._message import Message
from .._options import ConnectOptions
from .._request_reply import Requests
from ..handlers._subscriptions import Unsubscriber
from ..handlers._transfer import Sender
from . import _consumer, _serve
from ._consumer import Consumer
from ._transaction import Transaction
from ._wait import Reply, call, result, wait

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger("proton_easy")


def _cancelled(text: str, in_doubt: int) -> asyncio.CancelledError:
    """The CancelledError a cancelled send raises: its text says what became of the message(s);
    ``in_doubt`` is how many were sent without a known outcome (as on ConnectionLost)."""
    err = asyncio.CancelledError(text)
    err.in_doubt = in_doubt  # type: ignore[attr-defined]
    log.info("%s", text)
    return err


class Client:
    """A connection to a broker for asyncio code: the verbs of :class:`proton_easy.Client`,
    awaited, with the same names, options, errors and semantics. Any number of tasks may share
    one. Connecting never blocks the event loop: ``async with`` (or ``await``) connects.

    Connection options are those of :class:`proton_easy.Client` (``user``, ``password``,
    ``tls``, ``reconnect``, ``heartbeat``, ``timeout``, ``allowed_mechs``, ``urls``,
    ``container_id``); wrong ones raise ValueError/TypeError here, before any I/O.

    >>> async with aio.Client("amqp://admin:admin@localhost:5672") as client:  # doctest: +SKIP
    ...     await client.send("orders", {"id": 1})
    ...     [m.body for m in await client.receive("orders", count=1)]
    [{'id': 1}]
    """

    def __init__(self, url: Optional[str] = None, **options: Unpack[ConnectOptions]) -> None:
        self.options = _SyncClient._build_options(url, options)
        self.timeout = self.options.timeout
        self._client: Optional[_SyncClient] = None
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._client is not None else "new"
        return f"<proton_easy.aio.Client {self.options.display_url} {state}>"

    @property
    def default_address(self) -> Optional[str]:
        """The address in the URL's path, used when a verb is given none."""
        return self.options.address

    # -- connecting and closing ----------------------------------------------------------------
    async def connect(self) -> Client:
        """Connect (once; ``async with`` and ``await client`` call this). Raises what
        :class:`proton_easy.Client` raises: ConnectError, AuthenticationError, TLSError.

        >>> client = await aio.Client(url).connect()   # doctest: +SKIP
        """
        if self._closed:
            raise RuntimeError("the client is closed")
        if self._client is not None:
            return self
        client = _SyncClient.__new__(_SyncClient)
        client._prepare(self.options)  # starts the loop thread; connects on it, below
        try:
            await result(client._open(), self.timeout)
            await result(client._conn.opened, self.timeout)
        except asyncio.TimeoutError:
            client._shutdown()
            raise client._no_answer() from None
        except BaseException:
            client._shutdown()
            raise
        client._opened()
        self._client = client
        return self

    def __await__(self) -> Generator[Any, None, Client]:
        return self.connect().__await__()

    async def __aenter__(self) -> Client:
        return await self.connect()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection gracefully and stop its loop thread (idempotent). Tasks still
        waiting in a verb get an error, as threads do with :meth:`proton_easy.Client.close`.

        >>> await client.close()   # doctest: +SKIP
        """
        self._closed = True
        client = self._client
        if client is None or not client._begin_close():
            return
        try:
            client._requests.close(wait=False)
            client._loop.post(client._senders.close)
            await call(client._driver, client._conn.close, self.timeout)
            await result(client._conn.closed, self.timeout)
        except (asyncio.TimeoutError, RuntimeError, AMQPError):
            log.debug("connection did not close cleanly", exc_info=True)
        finally:
            client._shutdown()  # the loop thread has nothing left to do: it ends at once

    def _sync(self) -> _SyncClient:
        """The blocking client whose connection and jobs this one drives."""
        if self._client is None:
            raise RuntimeError("the client is closed" if self._closed else
                               "connect first: async with aio.Client(...) as client")
        return self._client

    async def run(self, job: Any, timeout: Optional[float] = None, *,
                  progress: Optional[Callable[[], int]] = None) -> Any:
        """Run a handler job on this client's connection and await its result; see
        :meth:`proton_easy.Client.run`.

        >>> await client.run(Receiver(count=1, address="orders"), timeout=5)  # doctest: +SKIP
        """
        driver = self._sync()._driver
        return await wait(driver, driver.start(job), timeout, progress=progress, job=job)

    # -- verbs ---------------------------------------------------------------------------------
    async def send(self, address: Optional[str], message: Any, *, at_most_once: bool = False,
                   durable: Optional[bool] = None, timeout: Optional[float] = None,
                   delay: Optional[float] = None) -> None:
        """Send one message; return once the broker accepted it. See
        :meth:`proton_easy.Client.send`.

        Cancelled (a task's ``cancel()``, ``asyncio.timeout``, ``wait_for``), it raises
        ``CancelledError`` whose text says what became of the message: accepted (or refused)
        before the cancellation came, not sent (and never will be), or sent with its outcome
        unknown; ``in_doubt`` on the error is 1 then, else 0.

        ``delay`` (seconds): the broker holds the message that long before delivering it.

        >>> await client.send("orders", {"id": 1})   # doctest: +SKIP
        """
        sync = self._sync()
        address, payload, limit = sync._send_args(address, message, at_most_once, durable,
                                                  timeout, delay)
        sender, fut = sync._senders.submit(address, payload, at_most_once=at_most_once)
        try:
            await wait(sync._driver, fut, limit)
        except Timeout:
            sync._senders.timed_out(address, sender, fut, limit)
        except asyncio.CancelledError:
            raise await self._send_cancelled(address, sender, fut) from None

    async def _send_cancelled(self, address: str, sender: Sender,
                              fut: Future[None]) -> BaseException:
        if not fut.cancel() and fut.done():  # cancel: the Sender skips it if not sent yet
            error = fut.exception()  # the broker's answer came first
            if error is None:
                return _cancelled(f"send to {address!r} cancelled after the broker accepted "
                                  "the message", 0)
            return _cancelled(f"send to {address!r} cancelled after the broker refused the "
                              f"message: {type(error).__name__}: {error}", 0)
        try:
            never_sent = await call(self._sync()._driver, lambda: sender.withdraw(fut))
        except Exception:  # noqa: BLE001 - the loop is gone: the outcome cannot be known
            never_sent = False
        if never_sent:
            return _cancelled(f"send to {address!r} cancelled before the message was sent: "
                              "it will not be sent", 0)
        return _cancelled(f"send to {address!r} cancelled after the message was sent: the "
                          "broker may have it (1 delivery in doubt)", 1)

    async def send_many(self, address: Optional[str], messages: Iterable[Any], *,
                        at_most_once: bool = False, durable: Optional[bool] = None,
                        timeout: Optional[float] = None, delay: Optional[float] = None) -> int:
        """Send many messages pipelined; return how many were accepted. See
        :meth:`proton_easy.Client.send_many`. Cancelled, it stops sending and raises
        ``CancelledError`` saying how many were accepted and how many are in doubt
        (``in_doubt`` on the error). ``delay`` (seconds): the broker holds each message that
        long.

        >>> await client.send_many("orders", ({"id": i} for i in range(1000)))  # doctest: +SKIP
        1000
        """
        sync = self._sync()
        driver = sync._driver
        job = sync._send_many_job(address, messages, at_most_once, durable, delay=delay)
        fut = driver.start(job)
        try:
            count: int = await wait(driver, fut, timeout, progress=lambda: job.confirmed,
                                    job=job)
            return count
        except asyncio.CancelledError:
            def stop() -> tuple[int, int]:
                books = (job.confirmed, job.in_doubt)
                job._fail(AMQPError("send_many was cancelled"))
                return books

            try:
                accepted, in_doubt = await call(driver, stop)
            except Exception:  # noqa: BLE001 - the loop is gone
                accepted, in_doubt = job.confirmed, job.sent - job.confirmed
            raise _cancelled(f"send_many to {job.address!r} cancelled: {accepted} accepted, "
                             f"{in_doubt} in doubt, the rest not sent", in_doubt) from None

    async def receive(self, address: Optional[str] = None, count: int = 1, *,
                      timeout: Optional[float] = None, selector: Optional[str] = None,
                      at_most_once: bool = False, subscription: Optional[str] = None,
                      durable: bool = False, shared: bool = False) -> List[Message]:
        """Receive up to ``count`` messages within ``timeout`` seconds; see
        :meth:`proton_easy.Client.receive` (``subscription``/``durable``/``shared``: a named
        topic subscription). They are accepted when handed over: a cancelled call puts every
        message it had received back on the queue.

        >>> await client.receive("orders", count=10, timeout=2)   # doctest: +SKIP
        [Message(body=...), ...]
        >>> await client.receive("topic://prices", 10, subscription="audit",
        ...                      durable=True)   # doctest: +SKIP
        [Message(body=...), ...]
        """
        return await _consumer.receive(self, address, count, timeout=timeout,
                                       selector=selector, at_most_once=at_most_once,
                                       subscription=subscription, durable=durable,
                                       shared=shared)

    def consume(self, address: Optional[str] = None, *, idle_timeout: Optional[float] = -1,
                selector: Optional[str] = None, at_most_once: bool = False,
                window: Optional[int] = None, subscription: Optional[str] = None,
                durable: bool = False,
                shared: bool = False) -> Consumer:
        """Iterate (``async for``) over messages as they arrive; each is accepted after the loop
        body finished with it. See :meth:`proton_easy.Client.consume` and
        :class:`~proton_easy.aio.Consumer`; ``subscription``/``durable``/``shared`` as for
        :meth:`receive`.

        >>> async with client.consume("orders", idle_timeout=5) as messages:  # doctest: +SKIP
        ...     async for msg in messages:
        ...         print(msg.body)
        """
        return Consumer(self, address, idle_timeout=idle_timeout, selector=selector,
                        at_most_once=at_most_once, window=window, subscription=subscription,
                        durable=durable, shared=shared)

    async def browse(self, address: Optional[str] = None, count: Optional[int] = None, *,
                     selector: Optional[str] = None,
                     timeout: Optional[float] = None) -> List[Message]:
        """The messages on a queue (at most ``count``; None: every one there is now), without
        taking them; see :meth:`proton_easy.Client.browse`.

        >>> [m.body for m in await client.browse("orders")]   # doctest: +SKIP
        """
        sync = self._sync()
        job, limit = sync._browse_job(address, count, selector, timeout)
        result_: List[Message] = await self.run(job, limit + sync.timeout)
        return result_

    async def unsubscribe(self, address: Optional[str], subscription: str, *,
                          timeout: Optional[float] = None) -> None:
        """Delete the subscription ``subscription`` on the topic ``address`` and what it kept;
        see :meth:`proton_easy.Client.unsubscribe`.

        >>> await client.unsubscribe("topic://prices", "audit")   # doctest: +SKIP
        """
        sync = self._sync()
        await self.run(Unsubscriber(address=sync._address(address), subscription=subscription),
                       sync.timeout if timeout is None else timeout)

    async def request(self, address: Optional[str], message: Any, *,
                      timeout: Optional[float] = None) -> Message:
        """Send a request and return its reply; see :meth:`proton_easy.Client.request`. Any
        number of tasks may await requests at once; a cancelled one's late reply is dropped.

        >>> (await client.request("service", "hi", timeout=5)).body   # doctest: +SKIP
        'HI'
        """
        sync = self._sync()
        address = sync._address(address)
        driver = sync._driver
        driver.check_open()
        limit = driver.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        waiter = Reply(loop)
        forget = sync._requests.submit(address, message, limit, waiter)
        try:
            if not waiter.done():  # (wait()'s, without its coroutines: this runs per request)
                waiter.watch(Patience(limit, None, lambda: driver.reconnecting, loop.time()))
                await waiter.waiter
        except BaseException:
            if not waiter.done():
                forget()
            raise
        if not waiter.done():
            raise Requests.timed_out(address, waiter, forget, limit)
        reply: Message = waiter.result()
        return reply

    async def serve(self, address: Optional[str], handler: Callable[[Message], Any],
                    count: Optional[int] = None, timeout: Optional[float] = None) -> int:
        """Answer requests on ``address`` with ``handler(msg)``, a function or a coroutine
        function (awaited), run on the event loop one request at a time; see
        :meth:`proton_easy.Client.serve`. Cancelled, it puts the request in hand back.

        >>> async def upper(msg):
        ...     return msg.body.upper()
        >>> await client.serve("service", upper, count=10)   # doctest: +SKIP
        10
        """
        return await _serve.serve(self, address, handler, count, timeout)

    def transaction(self, address: Optional[str] = None) -> Transaction:
        """A local transaction in a session of its own, for ``async with``; see
        :meth:`proton_easy.Client.transaction`.

        >>> async with client.transaction("orders") as tx:   # doctest: +SKIP
        ...     await tx.send({"id": 1})
        """
        self._sync()._driver.check_open()
        return Transaction(self, address)
