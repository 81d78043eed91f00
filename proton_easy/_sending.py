"""``Client.send``: one open-ended :class:`~proton_easy.handlers.Sender` per (address,
at-most-once), kept attached and shared by every thread of the Client.

Attaching and detaching a link for every ``send`` costs two round trips on top of the message's
own; a Sender left open does not. Each call hands the Sender its encoded message with a Future
as the token (:meth:`~proton_easy.handlers.Sender.submit`), which the message's outcome resolves.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Tuple

from . import _otel
from ._driver import Driver
from ._errors import Timeout
from .handlers._links import LinkCache
from .handlers._transfer import Sender

_Key = Tuple[str, bool]


class SenderPool:
    """The Senders of one Client, at most ``limit`` of them, least recently used first to go.
    Thread-safe.

    >>> pool = SenderPool(driver)                                   # doctest: +SKIP
    >>> pool.send("orders", encode({"id": 1}), at_most_once=False)  # doctest: +SKIP
    """

    def __init__(self, driver: Driver, limit: int = 32) -> None:
        self._driver = driver
        self._lock = threading.Lock()
        self._links: LinkCache[_Key, Sender] = LinkCache(
            limit, idle=lambda s: s.idle, evict=self._retire)

    def _retire(self, sender: Sender) -> None:
        self._driver.post(sender.end_input)  # it ends once nothing is in flight

    def send(self, address: str, payload: bytes, *, at_most_once: bool,
             timeout: float) -> None:
        """Send one encoded message and wait for its outcome: see ``Client.send``."""
        fut: Future[None] = Future()
        sender = self._submit(address, at_most_once, payload, fut)
        try:
            self._driver.wait(fut, timeout)
        except Timeout:
            self.timed_out(address, sender, fut, timeout)

    def submit(self, address: str, payload: bytes, *,
               at_most_once: bool) -> Tuple[Sender, Future[None]]:
        """Hand one encoded message to the address's Sender without waiting: (the Sender, the
        Future its outcome resolves). The asyncio face awaits that Future."""
        fut: Future[None] = Future()
        return self._submit(address, at_most_once, payload, fut), fut

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
                fut: Future[None]) -> Sender:
        driver = self._driver
        if type(payload) is _otel.Traced:  # its send span ends with the outcome
            fut.add_done_callback(payload.done_future)
        key = (address, at_most_once)
        with self._lock:  # posts in here keep each Sender's start before its first submit
            sender = self._links.get(key)
            if sender is None or sender.done:
                sender = Sender(messages=None, address=address, at_most_once=at_most_once)
                driver.start(sender)
                self._links.put(key, sender)
            if not driver.post(lambda: sender.submit(payload, fut)):
                raise RuntimeError("the client is closed")
        return sender

    def close(self) -> None:
        """Finish every Sender (their waiting callers get an error); call on the loop thread."""
        with self._lock:
            senders = self._links.clear()
        for sender in senders:
            sender.finish()
