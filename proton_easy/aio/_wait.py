"""How the asyncio face waits: on the same ``concurrent.futures.Future`` objects as the blocking
verbs, and on the jobs' hand-over queues through :class:`Inbox`. The loop thread wakes the event
loop with ``call_soon_threadsafe``, once for all the futures it finished in a row (a
:class:`_Relay` per event loop), not once per future as ``asyncio.wrap_future`` would. No
thread per call; nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import queue
import weakref
from concurrent.futures import Future
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Deque,
    Dict,
    List,
    Optional,
    Protocol,
    Tuple,
    TypeVar,
    Union,
)

from .._driver import Driver, Patience

if TYPE_CHECKING:
    from .._client import Client as _SyncClient

log = logging.getLogger("proton_easy")

T = TypeVar("T")

class Face(Protocol):
    """What the verb modules need of an :class:`~proton_easy.aio.Client` (typed here, so that
    they need not import it): the blocking client it drives, and its close."""

    timeout: float

    def _sync(self) -> _SyncClient: ...

    async def close(self) -> None: ...


class _OneWakeUp:
    """At most one wake-up of an event loop in flight: :meth:`_once` asks the event loop to
    call ``fn`` unless an earlier call is still on its way; ``fn`` resets ``_pending`` first."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending = False

    def _once(self, fn: Callable[[], None]) -> None:
        if self._pending:
            return
        self._pending = True
        try:
            self._loop.call_soon_threadsafe(fn)
        except RuntimeError:  # the event loop is closed: nobody waits any more
            log.debug("event loop closed: wake-up dropped")


class _Relay(_OneWakeUp):
    """Wakes waiters of one event loop when futures finish on other threads: a finished future
    queues its waiter, and the first one queued since the last run asks the event loop, once, to
    wake every waiter queued by then."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._ready: Deque[asyncio.Future[None]] = collections.deque()
        self.patiences = _Patiences(loop)

    def wake_on(self, fut: Future[Any], waiter: asyncio.Future[None]) -> None:
        """Wake ``waiter`` (on the event loop) once ``fut`` is done."""
        fut.add_done_callback(lambda _: self._done(waiter))

    def _done(self, waiter: asyncio.Future[None]) -> None:  # any thread
        self._ready.append(waiter)
        self._once(self._run)  # a run on its way finds this one too

    def _run(self) -> None:
        self._pending = False  # before draining: a waiter queued from now on asks again
        ready = self._ready
        while ready:
            waiter = ready.popleft()
            if not waiter.done():
                waiter.set_result(None)


class _Patiences:
    """The limits of one event loop's waits, on one timer of the event loop (not one per
    wait): each wait is asked again every slice of its :class:`Patience`, and woken (with
    its future not done) once its patience has run out. Waits with the same slice are kept in
    one queue, in the order they are due (no heap: most waits end long before they are asked).

    >>> _relay(asyncio.get_running_loop()).patiences.watch(waiter, patience)   # doctest: +SKIP
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._due: Dict[float, Deque[Tuple[float, asyncio.Future[None], Patience]]] = {}
        self._timer: Optional[asyncio.TimerHandle] = None
        self._at = math.inf

    def watch(self, waiter: asyncio.Future[None], patience: Patience) -> None:
        """Wake ``waiter`` once ``patience`` runs out (nothing happens to a done waiter)."""
        step = patience.slice
        at = self._loop.time() + step
        line = self._due.get(step)
        if line is None:
            line = self._due[step] = collections.deque()
        line.append((at, waiter, patience))
        if at < self._at:
            self._arm(at)

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._at = at
        self._timer = self._loop.call_at(at, self._check)

    def _check(self) -> None:
        self._timer, self._at = None, math.inf
        now = self._loop.time()
        soonest = math.inf
        for step, line in list(self._due.items()):
            again = []
            while line and (line[0][0] <= now or line[0][1].done()):
                _, waiter, patience = line.popleft()
                if waiter.done():
                    continue
                if patience.expired(now):
                    waiter.set_result(None)
                else:  # progress, or a reconnect: the limit has moved on
                    again.append((now + step, waiter, patience))
            line.extend(again)  # (due after everything still queued: its time is the latest)
            if line:
                soonest = min(soonest, line[0][0])
            else:
                del self._due[step]
        if soonest < math.inf:  # (a slice of 0 is asked again at the next run, not here)
            self._arm(soonest)


class Reply:
    """The one result the loop thread hands to one task: a lighter ``concurrent.futures.Future``
    for a caller that only awaits (no condition variable, no callbacks). Set once, on the loop
    thread; the setter wakes the task through its event loop's :class:`_Relay`, with the other
    results set in the same run of the loop thread.

    >>> reply = Reply(asyncio.get_running_loop())   # doctest: +SKIP
    >>> reply.set_result("pong"); await _settled(reply, None); reply.result()   # doctest: +SKIP
    'pong'
    """

    __slots__ = ("waiter", "_relay", "_done", "_result", "_error")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.waiter: asyncio.Future[None] = loop.create_future()
        self._relay = _relay(loop)
        self._done = False
        self._result: Any = None
        self._error: Optional[BaseException] = None

    def done(self) -> bool:
        """True once a result or an error was set."""
        return self._done

    def watch(self, patience: Patience) -> None:
        """Wake the task awaiting :attr:`waiter` once ``patience`` runs out, done or not (on
        the event loop)."""
        self._relay.patiences.watch(self.waiter, patience)

    def cancelled(self) -> bool:
        """Never: the task that awaits it gives up on its own (a Future's signature)."""
        return False

    def set_result(self, result: Any) -> None:
        """Hand over the result (any thread; only the first result or error counts)."""
        if not self._done:
            self._result, self._done = result, True
            self._relay._done(self.waiter)

    def set_exception(self, error: BaseException) -> None:
        """Hand over an error instead (any thread; only the first result or error counts)."""
        if not self._done:
            self._error, self._done = error, True
            self._relay._done(self.waiter)

    def exception(self) -> Optional[BaseException]:
        """The error set, or None (also while not done: call it once done)."""
        return self._error

    def result(self) -> Any:
        """The result, or the error raised (once done)."""
        if not self._done:
            raise asyncio.InvalidStateError("no result yet")
        if self._error is not None:
            raise self._error
        return self._result


Waitable = Union[Future[Any], Reply]
"""What the waits here take: a loop-thread Future, or a :class:`Reply`."""


_RELAYS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Relay] = \
    weakref.WeakKeyDictionary()


_LAST_RELAY: List[Any] = [lambda: None, None]  # (a weak reference to an event loop, its
# relay): the one asked for last, found without the dictionary


def _relay(loop: asyncio.AbstractEventLoop) -> _Relay:
    last = _LAST_RELAY
    if last[0]() is loop:
        return last[1]  # type: ignore[no-any-return]
    relay = _RELAYS.get(loop)
    if relay is None:
        relay = _RELAYS[loop] = _Relay(loop)
    last[:] = [weakref.ref(loop), relay]
    return relay


async def _settled(fut: Waitable, patience: Optional[Patience]) -> bool:
    """Wait until ``fut`` is done (True) or ``patience`` expires (False; None: never).
    Cancelling the caller leaves ``fut`` alone."""
    if fut.done():
        return True
    if type(fut) is Reply:
        waiter = fut.waiter  # woken by the loop thread when the result is set
        relay = fut._relay
    else:
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        relay = _relay(loop)
        relay.wake_on(fut, waiter)  # type: ignore[arg-type]
    if patience is not None:
        relay.patiences.watch(waiter, patience)
    await waiter
    return fut.done()


async def result(fut: Future[T], timeout: Optional[float]) -> T:
    """``fut``'s result within ``timeout`` seconds (None: no limit), else
    :class:`asyncio.TimeoutError`; cancelling the caller leaves ``fut`` alone."""
    patience = None if timeout is None else Patience(
        timeout, None, lambda: False, asyncio.get_running_loop().time())
    if not await _settled(fut, patience):
        raise asyncio.TimeoutError()
    return fut.result()


async def call(driver: Driver, fn: Callable[[], T], timeout: Optional[float] = None) -> T:
    """Run ``fn()`` on the loop thread and return its result (its error is raised here)."""
    fut: Future[T] = driver.loop.call(fn)
    return await result(fut, driver.timeout if timeout is None else timeout)


async def wait(driver: Driver, fut: Waitable, timeout: Optional[float] = None, *,
               progress: Optional[Callable[[], int]] = None, job: Any = None,
               what: Optional[str] = None) -> Any:
    """:meth:`Driver.wait <proton_easy._driver.Driver.wait>`, awaited: at most ``timeout``
    seconds (default: the driver's), or that long without progress; time spent reconnecting
    does not count. Past the limit: :class:`~proton_easy.Timeout`, after failing ``job``."""
    patience = Patience(driver.timeout if timeout is None else timeout, progress,
                        lambda: driver.reconnecting, asyncio.get_running_loop().time())
    if await _settled(fut, patience):
        return fut.result()
    limit = patience.limit
    in_doubt = 0
    if job is not None:
        try:  # read on the loop thread: the job's books change there
            in_doubt = await call(driver, lambda: int(job.in_doubt))
        except Exception:  # noqa: BLE001 - the loop is gone: nothing more is known
            in_doubt = 0
    raise driver.timeout_error(job, limit, what, in_doubt)


class Inbox(_OneWakeUp):
    """Waits on a job's hand-over queue (a ``queue.SimpleQueue`` the loop thread fills) from
    the event loop: the job calls :meth:`notify` on the loop thread after each put, which wakes
    the waiting coroutine with ``call_soon_threadsafe`` (at most one wake-up in flight, and
    none while no coroutine waits: a busy one finds the item when it looks). The limit of a
    wait is one timer, moved on by the next wait rather than made anew for each.

    >>> inbox = Inbox()                                    # doctest: +SKIP
    >>> job = ConsumerJob(notify=inbox.notify, address="orders")   # doctest: +SKIP
    >>> item = await inbox.get(job.queue, timeout=5)       # doctest: +SKIP
    """

    def __init__(self) -> None:
        super().__init__(asyncio.get_running_loop())
        self._waiter: Optional[asyncio.Future[None]] = None
        self._deadline = math.inf  # the waiting coroutine's
        self._timer: Optional[asyncio.TimerHandle] = None
        self._timer_at = math.inf

    def notify(self) -> None:
        """Wake the waiting coroutine, if one waits (called on the loop thread, after a put)."""
        if self._waiter is not None:  # (set before the waiter looks again: see until)
            self._once(self._wake)  # a wake-up on its way runs after this put

    def _wake(self) -> None:
        self._pending = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        """Cancel the limit's timer: no more waits come (the job's consumer is done)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf

    def _time_up(self) -> None:
        self._timer, self._timer_at = None, math.inf
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # nobody waits: the next wait sets its own limit
        if self._loop.time() >= self._deadline:
            waiter.set_result(None)
        elif self._deadline < math.inf:  # a later wait moved the limit on
            self._arm(self._deadline)

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._time_up)

    async def until(self, ready: Callable[[], bool], timeout: Optional[float]) -> bool:
        """Wait until ``ready()`` (checked after each wake-up), at most ``timeout`` seconds
        (None: forever); its last answer. A job that wakes the inbox only when the wait may be
        over (``notify_at``) costs one wake-up for many puts.

        >>> await inbox.until(lambda: job.queue.qsize() >= 10, timeout=5)   # doctest: +SKIP
        True
        """
        loop = self._loop
        deadline = math.inf if timeout is None else loop.time() + timeout
        while not ready():
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiter = waiter
            if ready():  # look again once armed: a put before this line woke nobody
                self._waiter = None
                return True
            if deadline <= loop.time():
                self._waiter = None
                return False
            self._deadline = deadline
            if deadline < self._timer_at:  # (a later one: the timer, when it fires, moves on)
                self._arm(deadline)
            try:
                await waiter
            finally:
                self._waiter = None
        return True

    async def get(self, q: queue.SimpleQueue[Tuple[Any, Any]],
                  timeout: Optional[float]) -> Optional[Tuple[Any, Any]]:
        """The next item of ``q``, or None when ``timeout`` seconds (None: forever) pass
        without one. Cancelling the caller takes nothing off ``q``."""
        got: List[Tuple[Any, Any]] = []

        def taken() -> bool:
            try:
                got.append(q.get_nowait())
            except queue.Empty:
                return False
            return True

        return got[0] if await self.until(taken, timeout) else None
