"""The driver: what the blocking layer holds of a connection, and the one way it waits.

Every blocking verb starts a handler job on the loop thread and waits for it through
:class:`Driver`: :meth:`Driver.start` hands the job to the loop, :meth:`Driver.wait` waits for
its Future with a deadline (or a no-progress limit) and, past it, fails the job with
:class:`~proton_easy.Timeout` saying how many deliveries are in doubt. The request/reply,
transaction, consume and send modules take a Driver, never a Client.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable, Optional, TypeVar

from ._engine.connection import Connection
from ._engine.loop import Loop
from ._errors import Timeout

T = TypeVar("T")

_SLICE = 1.0
"""Seconds between looks at a waiting job's progress and at the connection's state."""


class Patience:
    """The limit a wait keeps: ``limit`` seconds, or with ``progress`` (a callable returning a
    number that grows while the job advances) that long without progress; time spent
    reconnecting does not count. Both the blocking and the asyncio waits ask it after each
    slice of waiting.

    >>> patience = Patience(5.0, None, lambda: False, now=0.0)
    >>> patience.expired(4.0), patience.expired(5.0)
    (False, True)
    """

    __slots__ = ("limit", "_progress", "_reconnecting", "_last", "_since")

    def __init__(self, limit: float, progress: Optional[Callable[[], int]],
                 reconnecting: Callable[[], bool], now: float) -> None:
        self.limit = limit
        self._progress = progress
        self._reconnecting = reconnecting
        self._last = progress() if progress is not None else 0
        self._since = now

    @property
    def slice(self) -> float:
        """How long to wait before asking again."""
        return min(_SLICE, self.limit)

    def expired(self, now: float) -> bool:
        """True once the limit has passed with neither progress nor a reconnect since."""
        value = self._progress() if self._progress is not None else self._last
        if value != self._last or self._reconnecting():
            self._last, self._since = value, now
            return False
        return now - self._since >= self.limit


class Driver:
    """One connection's loop thread and connection, as the blocking verbs see them.

    ``timeout`` is the default limit of every wait; ``name`` names the connection in errors
    (a URL without its password).

    >>> driver = Driver(loop, conn, timeout=10.0, name="amqp://localhost:5672")  # doctest: +SKIP
    >>> driver.run(Receiver(count=1, address="orders"))                          # doctest: +SKIP
    [Message(body='hello')]
    """

    def __init__(self, loop: Loop, conn: Connection, *, timeout: float, name: str) -> None:
        self.loop = loop
        self.conn = conn
        self.timeout = timeout
        self.name = name
        self.closed = False

    # -- the loop thread -----------------------------------------------------------------------
    def call(self, fn: Callable[[], T], timeout: Optional[float] = None) -> T:
        """Run ``fn()`` on the loop thread and return its result (its error is raised here)."""
        result: T = self.loop.call(fn).result(self.timeout if timeout is None else timeout)
        return result

    def post(self, fn: Callable[[], Any]) -> bool:
        """Run ``fn()`` on the loop thread without waiting; False if the loop has stopped."""
        return self.loop.post(fn)

    def check_open(self) -> None:
        """RuntimeError when the client is closed."""
        if self.closed:
            raise RuntimeError("the client is closed")

    # -- jobs ----------------------------------------------------------------------------------
    def start(self, job: Any) -> Future[Any]:
        """Start a handler job on this connection; the Future gets its result or error."""
        self.check_open()
        fut: Future[Any] = Future()
        loop, conn = self.loop, self.conn
        if not loop.post(lambda: job.start(loop.container, conn, fut)):
            raise RuntimeError("the client is closed")
        return fut

    def run(self, job: Any, timeout: Optional[float] = None, *,
            progress: Optional[Callable[[], int]] = None) -> Any:
        """Start ``job`` and wait for its result: see :meth:`wait`."""
        return self.wait(self.start(job), timeout, progress=progress, job=job)

    @property
    def reconnecting(self) -> bool:
        """True while a dropped connection is being re-opened (it was open once, has not failed
        and was not closed): waits stop their clocks meanwhile, the reconnect being bounded by
        its own limit."""
        conn = self.conn
        return (conn.ever_opened and not conn.up and conn.failed is None
                and not conn.closed.done())

    def wait(self, fut: Future[Any], timeout: Optional[float] = None, *,
             progress: Optional[Callable[[], int]] = None, job: Any = None,
             what: Optional[str] = None) -> Any:
        """Wait for ``fut``: at most ``timeout`` seconds (default: the driver's), or, with
        ``progress`` (a callable returning a number that grows while the job advances), at most
        that long without progress. Time spent reconnecting does not count.

        Past the limit: :class:`~proton_easy.Timeout`, after failing ``job`` (if given) with it,
        so that its links close and what it holds goes back to the broker.
        """
        patience = Patience(self.timeout if timeout is None else timeout, progress,
                            lambda: self.reconnecting, time.monotonic())
        while True:
            try:
                return fut.result(patience.slice)
            except FutureTimeout:
                if patience.expired(time.monotonic()):
                    break
        raise self._timed_out(job, patience.limit, what) from None

    def _timed_out(self, job: Any, limit: float, what: Optional[str]) -> Timeout:
        in_doubt = 0
        if job is not None:
            try:  # read on the loop thread: the job's books change there
                in_doubt = self.call(lambda: job.in_doubt)
            except Exception:  # noqa: BLE001 - the loop is gone: nothing more is known
                in_doubt = 0
        return self.timeout_error(job, limit, what, in_doubt)

    def timeout_error(self, job: Any, limit: float, what: Optional[str],
                      in_doubt: int) -> Timeout:
        """The :class:`~proton_easy.Timeout` of a wait past its limit, after failing ``job`` (if
        given) with it; ``in_doubt`` is the job's count, read on the loop thread."""
        what = what or (type(job).__name__ if job is not None else "the call")
        err = Timeout(f"{what} on {self.name} did not complete within {limit:g} s "
                      f"({in_doubt} deliveries in doubt)")
        if job is not None:
            self.post(lambda: job._fail(err))
        return err
