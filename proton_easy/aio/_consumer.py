"""``consume`` and ``receive`` for asyncio, on the blocking layer's
:class:`~proton_easy._consumer.ConsumerJob`: the job holds each delivery unsettled until the
coroutine settles it, so a cancelled task never loses a message it was not handed."""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
from typing import Any, Awaitable, Callable, Dict, List, Optional, Set, Tuple

from proton import Delivery

from .. import _otel
from .._consumer import _END, ConsumerJob
from .._driver import Driver
from .._message import Message
from ._wait import Face, Inbox, result

log = logging.getLogger("proton_easy")

_CLEANUPS: Set[asyncio.Task[None]] = set()  # closes scheduled by __del__, kept alive


class Consumer:
    """What ``aio.consume`` returns: an async iterator over arriving messages and an async
    context manager.

    Each message is accepted when the loop body finished with it and asks for the next. In an
    ``async with`` block, leaving the loop by ``break`` accepts the message in hand and an
    exception (a cancellation too) puts it back on the queue; a bare ``async for`` cannot tell
    the two apart and puts it back. A task cancelled while waiting for the next message loses
    nothing: what arrived but was not handed over goes back to the queue.

    >>> async with aio.consume(url, idle_timeout=5) as messages:   # doctest: +SKIP
    ...     async for msg in messages:
    ...         await handle(msg.body)
    """

    def __init__(self, client: Optional[Face], address: Optional[str], *,
                 idle_timeout: Optional[float], selector: Optional[str], at_most_once: bool,
                 window: Optional[int], connect: Optional[Callable[[], Awaitable[Face]]] = None,
                 subscription: Optional[str] = None, durable: bool = False,
                 shared: bool = False) -> None:
        self._client = client
        self._connect = connect
        self._owns = client is None
        self._args = (address, idle_timeout, selector, at_most_once, window)
        self._subscription: Dict[str, Any] = dict(subscription=subscription, durable=durable,
                                                  shared=shared)
        self._job: Optional[ConsumerJob] = None
        self._driver: Optional[Driver] = None
        self._inbox: Optional[Inbox] = None
        self._fut: Any = None
        self._idle: Optional[float] = None
        self._pending: Optional[Tuple[Message, Any]] = None
        self._proc: Any = None  # with telemetry: the process span of the message in hand
        self._closed = False
        if client is not None:  # wrong arguments fail here, before any I/O
            client._sync()._consumer_job(*self._args, **self._subscription)

    def __aiter__(self) -> Consumer:
        return self

    async def __aenter__(self) -> Consumer:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self.aclose(keep=exc_type is None)

    async def _start(self) -> ConsumerJob:
        if self._client is None:
            assert self._connect is not None
            self._client = await self._connect()
        client = self._client._sync()
        self._inbox = Inbox()
        self._idle, job = client._consumer_job(*self._args, notify=self._inbox.notify,
                                               **self._subscription)
        self._fut = client._driver.start(job)
        self._driver = client._driver
        self._job = job
        return job

    async def __anext__(self) -> Message:
        if self._closed:
            raise StopAsyncIteration
        job = self._job if self._job is not None else await self._start()
        assert self._inbox is not None and self._driver is not None
        driver = self._driver
        acks = job.acks
        if self._pending is not None:  # the loop body is done with it
            if self._proc is not None:
                self._proc, proc = None, self._proc
                proc.end()
            acks.append(self._pending[1])
            self._pending = None
            if len(acks) >= job.ack_batch:
                driver.post(job.accept_acks)
        while True:
            try:
                item: Optional[Tuple[Any, Any]] = job.queue.get_nowait()  # (no wait: no await)
            except queue.Empty:
                if acks:  # about to wait: accept, which also grants credit (and grows the window)
                    driver.post(functools.partial(job.accept_acks, True))
                item = await self._inbox.get(job.queue, self._idle)
            if item is None:
                await self.aclose()
                raise StopAsyncIteration
            msg, dlv = item
            if job.drops == job.taken_drops or not job.stale(msg, dlv, driver.post):
                break  # (else it came on a connection since lost)
        if msg is _END:
            await self.aclose()
            if job.error is not None:
                raise job.error
            raise StopAsyncIteration
        self._pending = (msg, dlv)
        tel = _otel.current()
        if tel is not None:
            self._proc = tel.processing(job, msg, settle_later=True).start()
        return msg  # type: ignore[no-any-return]

    def _settle_posts(self, keep: bool) -> None:
        """Hand the loop what settles this consumer's messages and ends its job."""
        job, client = self._job, self._client
        if self._inbox is not None:
            self._inbox.close()
        if job is None or client is None:
            return
        driver = client._sync()._driver
        if driver.closed:
            return
        pending, self._pending = self._pending, None
        if self._proc is not None:
            self._proc, proc = None, self._proc
            proc.end(outcome="accepted" if keep else "modified")
        if pending is not None and keep:
            job.acks.append(pending[1])  # left an async with block normally
            pending = None
        if job.acks:
            driver.post(job.accept_acks)
        if pending is not None:
            driver.post(functools.partial(job.settle_one, pending[1], Delivery.MODIFIED))
        driver.post(job.finish)

    async def aclose(self, keep: bool = False) -> None:
        """Stop: the message in hand goes back to the queue (accepted instead with
        ``keep=True``, as leaving an ``async with`` block normally does), the receiver closes,
        and a connection of its own (``aio.consume``) is closed.

        >>> await messages.aclose()   # doctest: +SKIP
        """
        if self._closed:
            return
        self._closed = True
        self._settle_posts(keep)
        client = self._client
        try:
            if self._fut is not None and client is not None and not client._sync()._driver.closed:
                try:
                    await result(self._fut, client._sync().timeout)
                except Exception:  # noqa: BLE001 - closing anyway; the job's error was raised
                    log.debug("consumer link did not close cleanly", exc_info=True)
        finally:
            if self._owns and client is not None:
                await client.close()

    def __del__(self) -> None:
        # A bare `async for` left by break, an exception or a cancellation: nothing awaits a
        # close, so hand the loop thread the settlements now (they are only posts).
        if self._closed or self._job is None:
            return
        self._closed = True
        try:
            self._settle_posts(keep=False)
            if self._owns and self._client is not None:
                task = asyncio.get_running_loop().create_task(self._client.close())
                _CLEANUPS.add(task)
                task.add_done_callback(_CLEANUPS.discard)
        except Exception:  # noqa: BLE001 - no running loop: the client closes at exit
            log.debug("consumer cleanup failed", exc_info=True)


async def receive(client: Face, address: Optional[str], count: int, *,
                  timeout: Optional[float], selector: Optional[str],
                  at_most_once: bool, subscription: Optional[str] = None,
                  durable: bool = False, shared: bool = False) -> List[Message]:
    """``Client.receive`` awaited: see :meth:`proton_easy.aio.Client.receive`."""
    sync = client._sync()
    address, limit = sync._receive_args(address, count, timeout)
    driver = sync._driver
    inbox = Inbox()
    _, job = sync._consumer_job(address, None, selector, at_most_once, window=count,
                                notify=inbox.notify, subscription=subscription,
                                durable=durable, shared=shared)
    job.notify_at = count  # one wake-up: when all are in, at the end, or at the deadline
    driver.start(job)
    got: List[Tuple[Message, Any]] = []
    clock = asyncio.get_running_loop().time
    deadline = clock() + limit
    try:
        try:
            while (not await _wait_and_take(job, got, count, driver, inbox, deadline - clock())
                   and clock() < deadline):
                job.notify_at = count - len(got)  # (messages that came on a lost connection
                # were skipped: the rest, sent again after the reconnect, within the time left)
        finally:
            inbox.close()
    except BaseException:
        # cancelled (or failed): nothing was handed over, so everything goes back
        driver.post(functools.partial(_settle_and_finish, job, got, Delivery.RELEASED))
        raise
    driver.post(functools.partial(_settle_and_finish, job, got, Delivery.ACCEPTED))
    tel = _otel.current()
    if tel is not None:  # a receive span for each message, in the trace it came with
        for msg, _ in got:
            tel.received(job, msg)
    return [m for m, _ in got]


async def _wait_and_take(job: ConsumerJob, got: List[Tuple[Message, Any]], count: int,
                         driver: Driver, inbox: Inbox, limit: float) -> bool:
    """``receive``'s wait (at most ``limit`` seconds) for ``count`` messages in all, then what
    came taken into ``got``; False when some of it came on a connection since lost (skipped:
    the rest may come again within the time left)."""
    await inbox.until(lambda: job.ended or job.queue.qsize() >= count - len(got), max(0, limit))
    skipped = False
    while len(got) < count:
        try:
            item = job.queue.get_nowait()
        except queue.Empty:
            break
        msg, dlv = item
        if job.drops != job.taken_drops and job.stale(msg, dlv, driver.post):
            skipped = True
            continue
        if msg is _END:
            if job.error is not None:
                raise job.error
            return True
        got.append(item)
    return len(got) >= count or not skipped


def _settle_and_finish(job: ConsumerJob, got: List[Tuple[Message, Any]], outcome: int) -> None:
    # on the loop thread: settle what the receive took, then close the link (what is still
    # queued, not handed over, goes back to the broker with it)
    job.settle_all([dlv for _, dlv in got], outcome)
    job.finish()
