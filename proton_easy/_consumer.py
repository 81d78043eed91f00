"""``consume`` for the blocking layer: a :class:`~proton_easy.handlers.Receiver` that hands its
messages to the consuming thread, and :class:`Consumer`, the iterator the user holds."""

from __future__ import annotations

import collections
import functools
import logging
import queue
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable, Deque, Iterator, List, Optional, Tuple

from . import _otel
from ._driver import Driver
from ._engine import raw as _raw
from ._errors import AMQPError
from ._handover import DropMarks
from ._message import Message
from .handlers._transfer import Receiver

log = logging.getLogger("proton_easy")

_END = object()


START_WINDOW = 10
"""The credit an adaptive consumer starts with: small, so that competing consumers share."""

MAX_WINDOW = 1000
"""The most credit an adaptive consumer grows to (while its loop body keeps up)."""


class ConsumerJob(Receiver, DropMarks):
    """A receiver that hands messages to a waiting thread instead of a hook.

    Each delivery handed over is held (``_raw.hold``) until the loop settles it for the
    consuming thread, or drops it unseen (after a drop of the connection, or at the end).
    The consuming thread queues the deliveries it finished with in ``acks``; the loop accepts
    them in batches (:meth:`accept_acks`), one wake-up and one write for several.

    ``window=None`` makes the credit adaptive: it starts at :data:`START_WINDOW` and doubles,
    up to ``max_window``, each time the consuming thread has handled everything it was given
    and waits for more (it keeps up with the broker, so credit is what holds it back); a
    consumer slower than its messages keeps the credit it has. A number fixes the credit."""

    def __init__(self, notify: Optional[Callable[[], None]] = None, *,
                 window: Optional[int] = None, max_window: int = MAX_WINDOW,
                 **kwargs: Any) -> None:
        adaptive = window is None
        super().__init__(count=0, window=START_WINDOW if window is None else window, **kwargs)
        self.max_window = max(self.window, max_window) if adaptive else self.window
        self.queue: queue.SimpleQueue[Tuple[Any, Any]] = queue.SimpleQueue()
        self.acks: Deque[Any] = collections.deque()
        self.notify = notify  # called on the loop after each put (the asyncio face's wake-up)
        self.notify_at = 1  # ... once this many are queued (a receive waits for its count)
        self.ended = False  # the end marker is queued (set on the loop, before the put)
        self._staged: List[Tuple[Any, Any]] = []  # arrived in this pass of the loop
        self.ack_batch = max(1, self.window // 2)
        """How many handled messages the consuming thread collects before it hands them to
        the loop (half the credit: the other half keeps the broker sending meanwhile)."""


    def deliver(self, msg: Message, dlv: Any) -> None:
        _raw.hold(dlv)
        staged = self._staged
        staged.append((msg, dlv))
        if len(staged) == 1:  # the consuming thread (or task) wakes once for all the
            self._at_rest(self._hand_over)  # messages of one pass, not once per message

    def _hand_over(self) -> None:
        staged, self._staged = self._staged, []
        put = self.queue.put
        for item in staged:
            put(item)
        if staged and self.notify is not None and (
                self.notify_at == 1 or self.queue.qsize() >= self.notify_at):
            self.notify()

    def settle_one(self, dlv: Any, outcome: int) -> None:
        """Settle one handed-out message and grant credit for more (on the loop)."""
        self._settle(dlv, outcome)
        _raw.release(dlv)
        self.received += 1
        self._top_up()

    def settle_all(self, dlvs: List[Any], outcome: int) -> None:
        """Settle handed-out messages and grant no more credit (on the loop)."""
        for dlv in dlvs:
            self._settle(dlv, outcome)
            _raw.release(dlv)
            self.received += 1

    def accept_acks(self, kept_up: bool = False) -> None:
        """Accept every delivery queued in ``acks`` and grant credit for more (on the loop);
        ``kept_up``: the consuming thread ran out of messages, so an adaptive window grows."""
        if kept_up and self.window < self.max_window:
            self.window = min(self.max_window, 2 * self.window)
            self.ack_batch = max(1, self.window // 2)
        acks, settle = self.acks, self._settle
        if self._tel is not None and acks:  # a settle span for the batch
            self._tel.settle_batch(self, len(acks))
        while acks:
            dlv = acks.popleft()
            settle(dlv, _raw.ACCEPTED)
            _raw.release(dlv)
            self.received += 1
        self._top_up()

    def on_finished(self) -> None:
        self._drop_queued()  # not handed out: the broker gets them back with the link
        self.ended = True
        self.queue.put((_END, None))
        if self.notify is not None:
            self.notify()

    def _dropped(self) -> None:
        # Unsettled messages not yet handed out come again after the reconnect: drop them here
        # rather than hand out copies whose settlement can no longer reach the broker (and
        # ahead of the earlier ones that come again); the taking side skips any it takes
        # meanwhile (see DropMarks). At-most-once messages were settled when sent: the only
        # copies, handed out still.
        if self.at_most_once:
            return
        self._drop_queued()
        self.mark_drop()

    def skipped(self, dlv: Any) -> None:
        """The taking side skipped ``dlv``: release it, grant the credit it held."""
        if dlv is not None:
            _raw.release(dlv)
        self._top_up()

    def _drop_queued(self) -> None:
        staged, self._staged = self._staged, []
        for _, dlv in staged:
            _raw.release(dlv)
        while True:
            try:
                _, dlv = self.queue.get_nowait()
            except queue.Empty:
                return
            if dlv is not None:  # (not a marker)
                _raw.release(dlv)

    def _held(self) -> int:
        return self.queue.qsize() + len(self._staged)


class Consumer(Iterator[Message]):
    """What ``consume`` returns: an iterator over arriving messages and a context manager.

    In a ``with`` block, leaving the loop by ``break`` accepts the message in hand (the loop
    body finished with it) and an exception puts it back on the queue; :meth:`close` (or the
    end of the block) closes the receiver.

    >>> with pe.consume(url, idle_timeout=5) as messages:   # doctest: +SKIP
    ...     first_two = [m.body for m in itertools.islice(messages, 2)]
    """

    def __init__(self, start: Callable[[List[bool]], Iterator[Message]]) -> None:
        self._keep = [False]  # set when the message in hand is to be accepted on close
        self._gen = start(self._keep)

    def __iter__(self) -> Consumer:
        return self

    def __next__(self) -> Message:
        return next(self._gen)

    def close(self) -> None:
        """Stop: the message in hand goes back to the queue (unless leaving a ``with`` block
        normally), and the receiver closes."""
        close = getattr(self._gen, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self._keep[0] = True
        self.close()


def _take(source: queue.SimpleQueue[Tuple[Any, Any]],
          wait: Optional[float]) -> Optional[Tuple[Any, Any]]:
    """The next item of ``source`` within ``wait`` seconds (0: now; None: forever), else None:
    waiting outside an ``except`` block, a Ctrl-C is a plain KeyboardInterrupt, no chain."""
    try:
        return source.get(timeout=wait) if wait != 0 else source.get_nowait()
    except queue.Empty:
        return None


def consume(driver: Driver, job: ConsumerJob, idle: Optional[float],
            keep: List[bool]) -> Iterator[Message]:
    """Run ``job`` and yield its messages in the calling thread until ``idle`` seconds pass
    without one (None: forever), the job ends, or the caller stops iterating."""
    fut = driver.start(job)
    pending: Optional[Tuple[Message, Any]] = None
    acks = job.acks
    kept_up = functools.partial(job.accept_acks, True)
    tel, proc = _otel.current(), None  # with telemetry: a process span around the loop body
    try:
        while True:
            item = _take(job.queue, 0)
            if item is None:
                if acks:  # about to wait: accept what was handled, which also grants credit
                    driver.post(kept_up)
                item = _take(job.queue, idle)  # (Ctrl-C here: a KeyboardInterrupt, no chain)
                if item is None:
                    return
            msg, dlv = item
            if job.drops != job.taken_drops and job.stale(msg, dlv, driver.post):
                continue  # came on a connection since lost
            if msg is _END:
                if job.error is not None:
                    raise job.error
                return
            pending = (msg, dlv)
            if tel is not None:
                proc = tel.processing(job, msg, settle_later=True).start()
            yield msg
            if proc is not None:
                proc.end()
                proc = None
            pending = None
            acks.append(dlv)
            if len(acks) >= job.ack_batch:
                driver.post(job.accept_acks)
    finally:
        if pending is not None and keep[0]:
            acks.append(pending[1])  # left a with block normally: the body is done with it
            pending = None
        if proc is not None:
            proc.end(outcome="modified" if pending is not None else None)
        if not driver.closed:
            if acks:
                driver.post(job.accept_acks)
            if pending is not None:
                driver.post(functools.partial(job.settle_one, pending[1], _raw.MODIFIED))
            try:
                driver.call(job.finish)
                fut.result(driver.timeout)
            except (FutureTimeout, AMQPError, RuntimeError):
                log.debug("consumer link did not close cleanly", exc_info=True)
