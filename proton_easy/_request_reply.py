"""Request/reply for the blocking layer: ``Client.request`` and ``Client.serve``.

Both drive the handler classes of :mod:`proton_easy.handlers`: requests go through one
long-lived :class:`~proton_easy.handlers.Requester` per client (one dynamic reply queue, replies
matched to waiting threads by correlation id); ``serve`` runs a
:class:`~proton_easy.handlers.Responder` whose handler is called in the serving thread.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

from . import _otel
from ._driver import Driver
from ._errors import AMQPError, Timeout
from ._handover import DropMarks
from ._message import Message, encode
from .handlers._job import _check_seconds
from .handlers._request_reply import Requester, Responder

log = logging.getLogger("proton_easy")

_END = object()
_SLICE = 0.25  # the serving thread waits in slices this long, so Ctrl-C gets through


LINGER = 0.002
"""Seconds the loop thread waits for the call it expects next from another thread: the
serving thread's reply to a request it just handed over (see :meth:`_Server.handle`), or
the next request of a thread that just got its reply (:class:`RequestChannel`), before it
goes back to its other work."""


class ReplyWaiter(Protocol):
    """What a request's reply is handed to on the loop thread: a ``concurrent.futures.Future``
    (the blocking verbs wait on one), or anything with its setters, as the asyncio face's
    lighter :class:`~proton_easy.aio._wait.Reply`."""

    def done(self) -> bool: ...

    def cancelled(self) -> bool: ...

    def set_result(self, result: Any) -> None: ...

    def set_exception(self, exception: BaseException) -> None: ...

    def exception(self) -> Optional[BaseException]: ...


class RequestChannel(Requester):
    """The client's one reply receiver: threads add requests and wait on their own Future.

    Runs until the client closes. A thread that stops waiting (timeout, Ctrl-C) makes the
    channel forget its request, so a late reply is dropped and never reaches another caller.
    With ``linger`` (the loop's), the loop waits up to :data:`LINGER` seconds after giving the
    only waiting caller its reply, for that caller's next request; after a wait nothing came
    to, the next reply is not waited after.
    """

    def __init__(self, linger: Optional[Callable[[float], bool]] = None) -> None:
        super().__init__(None, None, timeout=None, window=None)
        self._waiters: Dict[Any, ReplyWaiter] = {}
        self._linger = linger
        self._quick = True  # the last wait for a next request ended with one
        self._answered: List[Tuple[ReplyWaiter, Message]] = []  # in this pass of the loop

    def submit(self, msg: Message, address: str, waiter: ReplyWaiter,
               payload: Optional[bytes] = None) -> None:
        """Send one request whose reply resolves ``waiter`` (on the loop thread); ``payload`` is
        ``msg`` already encoded for its ``reply_to`` (re-encoded if the reply queue changed)."""
        if self.done:
            waiter.set_exception(self.error or AMQPError("the client's reply receiver is closed"))
            return
        self._waiters[msg.correlation_id] = waiter
        self._submit(msg, address, payload)

    def cancel(self, corr: Any) -> None:
        """Forget a request whose caller gave up (on the loop thread)."""
        self._waiters.pop(corr, None)
        self._forget(corr)

    def on_reply(self, request: Message, reply: Message) -> None:
        waiter = self._waiters.pop(request.correlation_id, None)
        if waiter is None or waiter.done():
            return
        answered = self._answered
        answered.append((waiter, reply))
        if len(answered) == 1:  # the replies of one pass wake their callers together
            self._at_rest(self._hand_over)  # (an event loop once, not once per reply)

    def _hand_over(self) -> None:
        answered, self._answered = self._answered, []
        for waiter, reply in answered:
            if not waiter.done():
                waiter.set_result(reply)
        if answered and self._linger is not None and not self._waiters:
            # the only caller waiting got its reply: a caller making one request after
            # the other makes the next at once, which then needs no wake-up of the loop
            if self._quick:
                self._quick = self._linger(LINGER)
            else:
                self._quick = True  # try again next time

    def on_request_failed(self, request: Message, error: BaseException) -> None:
        waiter = self._waiters.pop(request.correlation_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def on_finished(self) -> None:
        self._hand_over()  # replies read in the pass that ended the channel still count
        error = self.error or AMQPError("the client was closed while waiting for a reply")
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            if not waiter.done():
                waiter.set_exception(error)


class Requests:
    """A client's request/reply: one :class:`RequestChannel`, started on first use (and again
    after it failed), shared by every thread.

    >>> Requests(driver).request("service", "hello", timeout=5).body   # doctest: +SKIP
    'HELLO'
    """

    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._lock = threading.Lock()
        self._channel: Optional[RequestChannel] = None

    def channel(self) -> RequestChannel:
        """The job owning the reply queue, started if needed."""
        channel = self._channel
        if channel is not None and not channel.done:
            return channel  # (the common case, without the lock)
        with self._lock:
            channel = self._channel
            if channel is None or channel.done:
                channel = self._channel = RequestChannel(linger=self._driver.loop.linger)
                self._driver.start(channel)
            return channel

    def request(self, address: str, message: Any, timeout: Optional[float]) -> Message:
        """Send ``message`` to ``address`` and wait up to ``timeout`` seconds for its reply."""
        driver = self._driver
        limit = driver.timeout if timeout is None else timeout
        waiter: Future[Message] = Future()
        forget = self.submit(address, message, limit, waiter)
        try:
            reply: Message = driver.wait(waiter, limit)
            return reply
        except Timeout:
            raise self.timed_out(address, waiter, forget, limit) from None
        except BaseException:
            if not waiter.done():  # interrupted (Ctrl-C): the reply, if any, will be dropped
                forget()
            raise

    def submit(self, address: str, message: Any, limit: float,
               waiter: ReplyWaiter) -> Callable[[], None]:
        """Hand one request to the loop without waiting for it: its reply (or error) goes to
        ``waiter``; returns a function that makes the channel forget the request, for a caller
        that gives up."""
        driver = self._driver
        _check_seconds("timeout", limit)
        channel = self.channel()
        msg = channel._prepare(message, address)  # a private copy, a fresh correlation id
        corr = msg.correlation_id
        msg.reply_to = channel.reply_to  # None until the reply queue exists: the loop re-encodes
        payload = encode(msg)  # here: a TypeError before any I/O, and less work for the loop
        if not driver.post(lambda: channel.submit(msg, address, waiter, payload)):
            raise RuntimeError("the client is closed")

        def forget() -> None:
            driver.post(lambda: channel.cancel(corr))

        return forget

    @staticmethod
    def timed_out(address: str, waiter: ReplyWaiter, forget: Callable[[], None],
                  limit: float) -> BaseException:
        """The error for a request whose wait ran out (the channel forgets it)."""
        if waiter.done() and not waiter.cancelled() and waiter.exception() is not None:
            return waiter.exception()  # type: ignore[return-value]
        forget()
        return Timeout(f"no reply from {address!r} within {limit:g} s")

    def close(self, wait: bool = True) -> None:
        """End the channel: threads still waiting for a reply learn why none will come
        (``wait=False``: hand the loop the end without waiting for it)."""
        with self._lock:
            channel, self._channel = self._channel, None
        if channel is not None:
            if not wait:
                self._driver.post(channel.finish)
                return
            try:
                self._driver.call(channel.finish)
            except (FutureTimeout, RuntimeError):
                pass


class _Server(Responder, DropMarks):
    """A responder that hands each request to the serving thread and replies when told.

    With ``linger`` (the loop's :meth:`~proton_easy._engine.loop.Loop.linger`), the loop
    thread, having handed a request to an idle serving thread, waits up to :data:`LINGER`
    seconds for the reply and sends it at once: one hand-over between threads less per
    request (no wake-up through the pipe and the selector). A handler slower than that
    is no longer waited for, until one answers within it again."""

    def __init__(self, notify: Optional[Callable[[], None]] = None,
                 linger: Optional[Callable[[float], bool]] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.queue: queue.SimpleQueue[Tuple[Any, Any]] = queue.SimpleQueue()
        self.notify = notify  # called on the loop after each put (the asyncio face's wake-up)
        self._linger = linger
        self._quick = True  # the last reply waited for came within LINGER

    def handle(self, msg: Message, dlv: Any) -> None:
        idle = self.queue.empty() and not self.inflight_others(dlv)
        self.queue.put((msg, dlv))
        if self.notify is not None:
            self.notify()
        if self._linger is not None and idle:
            came = self._linger(LINGER if self._quick else 0.0)
            self._quick = came or not self._quick  # a slow one: try again next time

    def inflight_others(self, dlv: Any) -> bool:
        """Whether requests other than ``dlv`` are in the serving thread's hands."""
        return self.inflight > 1

    def _release_queued(self) -> None:
        while True:  # requests taken ahead but not handled go back to the queue
            try:
                _, dlv = self.queue.get_nowait()
            except queue.Empty:
                break
            if dlv is not None:  # (not a marker)
                self.put_back(dlv)

    def stop(self) -> None:
        self._release_queued()
        super().stop()

    def _dropped(self) -> None:
        # Requests queued for the serving thread came on the lost connection: the broker sends
        # them again after the reconnect. Handled now, they would be handled twice, and their
        # settlements would reach no one; the serving thread skips any it takes meanwhile.
        self._release_queued()
        self.mark_drop()
        super()._dropped()

    def skipped(self, dlv: Any) -> None:
        """The serving thread skipped ``dlv`` (a request from a lost connection)."""
        if dlv is not None:
            self.put_back(dlv)

    def on_finished(self) -> None:
        self._release_queued()
        self.queue.put((_END, None))
        if self.notify is not None:
            self.notify()


def check_serve_args(handler: Any, count: Any, timeout: Any) -> None:
    """ValueError/TypeError for arguments ``serve`` cannot take (before any I/O)."""
    if not callable(handler):
        raise TypeError(f"handler must be callable, not {type(handler).__name__}")
    Responder(handler=handler, count=count, timeout=timeout)  # validates the rest


def serve(driver: Driver, address: str, handler: Callable[[Message], Any],
          count: Optional[int], timeout: Optional[float]) -> int:
    """Answer requests on ``address`` with ``handler`` in the calling thread; see Client.serve."""
    check_serve_args(handler, count, timeout)
    job = _Server(handler=handler, address=address, count=count, timeout=timeout,
                  linger=driver.loop.linger)
    done = driver.start(job)
    in_hand: Any = None
    tel = _otel.current()
    try:
        # No `continue` in this loop: on CPython 3.11 a Ctrl-C landing on a `continue` inside
        # a try block can escape the except clause below (seen here), leaving the link open.
        while True:
            try:
                msg, dlv = job.queue.get(timeout=_SLICE)
            except queue.Empty:
                msg = dlv = None
                if driver.closed:
                    raise AMQPError("the client was closed while serving") from None
            if job.drops != job.taken_drops and job.stale(msg, dlv, driver.post):
                msg = None  # came on a connection since lost: skipped
            if msg is _END:
                break
            if msg is not None:
                in_hand = dlv
                try:
                    result, error = (job.respond(msg) if tel is None
                                     else tel.respond(job, msg, job.respond)), None
                except Exception as exc:  # noqa: BLE001 - rejected by the loop, serving goes on
                    result, error = None, exc
                driver.post(functools.partial(job.complete, msg, dlv, result, error))
                in_hand = None
        # (its links close: time spent reconnecting does not count)
        served: int = driver.wait(done, driver.timeout, job=job, what="closing the responder")
        return served
    except BaseException:
        # Ctrl-C (or any error here): the request in hand goes back, the links close.
        if not driver.closed:
            try:
                if in_hand is not None:
                    driver.call(functools.partial(job.put_back, in_hand))
                driver.call(job.stop)
                done.result(driver.timeout)
            except (FutureTimeout, AMQPError, RuntimeError):
                log.debug("responder did not close cleanly", exc_info=True)
        raise
