"""``Client.send``: one open-ended :class:`~proton_easy.handlers.Sender` per (address,
at-most-once), kept attached and shared by every thread of the Client.

Attaching and detaching a link for every ``send`` costs two round trips on top of the message's
own; a Sender left open does not. Each call hands the Sender its encoded message with a Future
as the token (:meth:`~proton_easy.handlers.Sender.submit`), which the message's outcome resolves.

An at-least-once call waits for that Future (the broker's outcome). An at-most-once call has no
outcome to wait for: it queues the message for the loop thread and returns, without waiting for
the loop to take it (a round trip between threads costs more than the message). It still waits
for the first message of a new link (so that a refused link raises in the call that opened it)
and for every :data:`AMO_WAIT_EVERY`-th message, so that threads sending faster than the
connection can write hold a bounded number of messages in memory, and every call stays bounded
by its timeout; closing the Client waits until the last one is written (:meth:`SenderPool.flush`).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from . import _otel
from ._driver import Driver
from ._errors import Timeout
from .handlers._links import LinkCache
from .handlers._transfer import Sender

log = logging.getLogger("proton_easy")

_Key = Tuple[str, bool]

AMO_WAIT_EVERY = 64
"""An at-most-once ``send`` waits for the loop thread to write its message once per this many
calls on one link (the others return as soon as the message is queued)."""


LINGER = 0.001
"""Seconds the loop thread waits, after it told the one caller waiting on a Sender its
message's outcome, for that caller's next message (see :class:`_PooledSender`)."""


class _PooledSender(Sender):
    """A ``Client.send`` Sender: once the broker accepted the only message in flight, the loop
    waits up to :data:`LINGER` seconds for the next one (a thread sending one message per call
    sends the next at once), so that it arrives without a trip through the wake-up pipe and the
    selector. After a wait that nothing came to, the next outcome is not waited for."""

    def __init__(self, *, linger: Optional[Callable[[float], bool]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._linger = linger
        self._quick = True  # the last wait ended with a call

    def on_outcome(self, token: Any, error: Optional[BaseException]) -> None:
        super().on_outcome(token, error)
        if (self._linger is not None and token is not None and error is None
                and not self.at_most_once and self.idle and not self.done):
            if self._quick:
                self._quick = self._linger(LINGER)
            else:
                self._quick = True  # try again next time


class SenderPool:
    """The Senders of one Client, at most ``limit`` of them, least recently used first to go.
    Thread-safe.

    Messages from user threads queue per Sender (``_pending``); the first of a batch posts one
    call to the loop thread, which hands the Sender everything queued by then: one wake-up and
    one call for as many messages as the callers managed to queue meanwhile.

    >>> pool = SenderPool(driver)                                   # doctest: +SKIP
    >>> pool.send("orders", encode({"id": 1}), at_most_once=False)  # doctest: +SKIP
    """

    def __init__(self, driver: Driver, limit: int = 32) -> None:
        self._driver = driver
        self._lock = threading.RLock()  # (re-entered when a send comes from the loop thread)
        self._links: LinkCache[_Key, Sender] = LinkCache(
            limit, idle=lambda s: s.idle, evict=self._retire)
        self._amo_count = 0  # at-most-once sends handed over (every AMO_WAIT_EVERY-th waits)
        self._amo_senders: Set[Sender] = set()  # at-most-once Senders used since opened
        self._pending: Dict[Sender, List[Tuple[bytes, Any]]] = {}  # queued, not handed over
        self._linger: Optional[Callable[[float], bool]] = getattr(driver.loop, "linger", None)

    def _retire(self, sender: Sender) -> None:  # (under the lock)
        self._amo_senders.discard(sender)
        self._driver.post(sender.end_input)  # it ends once nothing is in flight

    def send(self, address: str, payload: bytes, *, at_most_once: bool,
             timeout: float) -> None:
        """Send one encoded message and wait for its outcome (at-most-once: see the module's
        docstring): see ``Client.send``."""
        sender, fut = self._submit(address, at_most_once, payload, None)
        if fut is None:
            return
        try:
            self._driver.wait(fut, timeout)
        except Timeout:
            self.timed_out(address, sender, fut, timeout)

    def flush(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until every at-most-once message handed over has
        been written to the connection (or its Sender failed): before the Client closes."""
        with self._lock:
            senders = list(self._amo_senders)
        if not senders:
            return
        deadline = time.monotonic() + timeout

        def unwritten() -> bool:  # on the loop thread, after every call queued before it
            return any(not s.done and not s.idle for s in senders)

        try:
            while self._driver.call(unwritten, timeout):
                if time.monotonic() >= deadline:
                    log.debug("at-most-once messages not written within %g s", timeout)
                    return
                time.sleep(0.005)
        except (FutureTimeout, RuntimeError):
            log.debug("at-most-once messages not flushed", exc_info=True)

    def submit(self, address: str, payload: bytes, *,
               at_most_once: bool) -> Tuple[Sender, Future[None]]:
        """Hand one encoded message to the address's Sender without waiting: (the Sender, the
        Future its outcome resolves). The asyncio face awaits that Future."""
        fut: Future[None] = Future()
        sender, _ = self._submit(address, at_most_once, payload, fut)
        return sender, fut

    def timed_out(self, address: str, sender: Sender, fut: Future[None],
                  timeout: float) -> None:
        """A wait for ``fut`` ran out: return if the outcome came in the last instant, else
        withdraw the message (if not sent yet) and raise :class:`~proton_easy.Timeout`."""
        if not fut.cancel() and fut.done():
            return fut.result()
        self._driver.post(lambda: sender.withdraw(fut))
        raise Timeout(f"send to {address!r} on {self._driver.name} was not confirmed "
                      f"within {timeout:g} s (it may still arrive)") from None

    def _submit(self, address: str, at_most_once: bool, payload: bytes,
                fut: Optional[Future[None]]) -> Tuple[Sender, Optional[Future[None]]]:
        """Queue one message for its Sender; (the Sender, the Future to wait for). Without a
        Future given: one is made unless it is an at-most-once message that need not wait."""
        driver = self._driver
        if type(payload) is _otel.Traced:  # its send span ends with the outcome
            if fut is None:
                fut = Future()
            fut.add_done_callback(payload.done_future)
        key = (address, at_most_once)
        with self._lock:  # posts in here keep each Sender's start before its first submit
            sender = self._links.get(key)
            first = sender is None or sender.done
            if sender is None or sender.done:
                if sender is not None:
                    self._amo_senders.discard(sender)
                sender = _PooledSender(messages=None, address=address,
                                       at_most_once=at_most_once, linger=self._linger)
                driver.start(sender)
                self._links.put(key, sender)
            if fut is None:
                if at_most_once:
                    self._amo_count += 1
                    if first or self._amo_count % AMO_WAIT_EVERY == 0:
                        fut = Future()
                    self._amo_senders.add(sender)
                else:
                    fut = Future()
            batch = self._pending.get(sender)
            if batch is not None:
                batch.append((payload, fut))  # a call to hand it over is on its way
            else:
                self._pending[sender] = [(payload, fut)]
                if not driver.post(functools.partial(self._hand_over, sender)):
                    del self._pending[sender]
                    raise RuntimeError("the client is closed")
        return sender, fut

    def _hand_over(self, sender: Sender) -> None:
        """Give ``sender`` every message queued for it (on the loop thread)."""
        with self._lock:
            batch = self._pending.pop(sender, ())
        submit = sender.submit
        for payload, token in batch:
            submit(payload, token)

    def close(self) -> None:
        """Finish every Sender (their waiting callers get an error); call on the loop thread."""
        with self._lock:
            senders = self._links.clear()
            self._amo_senders.clear()
        for sender in senders:
            sender.finish()
