"""The benchmark jobs written by hand with plain proton, to compare proton_easy against.

- ``Send`` and ``Recv``: the seed's Examples 3.3/3.12 and 3.4/3.11 (``MessagingHandler``, run
  with ``Container(handler).run()``), ported to Python 3. The only changes: the body is the
  benchmark's payload instead of ``{'sequence': n}``, nothing is printed, and the time the
  connection opened is recorded so that every setup is timed from an open connection.
- ``blocking_send`` and ``blocking_receive``: the same jobs with
  ``proton.utils.BlockingConnection``.

These are copies (benchmarks do not import from ``tests/``). Addresses are ``queue://NAME``,
which the broker's acceptor maps to an anycast queue.
"""

from __future__ import annotations

import time
from typing import Any, Optional, Tuple

from proton import Message
from proton.handlers import MessagingHandler
from proton.reactor import AtMostOnce, Container
from proton.utils import BlockingConnection


class Send(MessagingHandler):
    """Example 3.3 (reliable) and 3.12 (``at_most_once``): send ``messages`` messages."""

    def __init__(self, url: str, messages: int, body: Any, at_most_once: bool = False) -> None:
        super().__init__()
        self.url = url
        self.sent = 0
        self.confirmed = 0
        self.total = messages
        self.body = body
        self.at_most_once = at_most_once
        self.opened_at: Optional[Tuple[float, float]] = None

    def on_start(self, event: Any) -> None:
        event.container.create_sender(self.url, options=AtMostOnce() if self.at_most_once
                                      else None)

    def on_connection_opened(self, event: Any) -> None:
        self.opened_at = now()

    def on_sendable(self, event: Any) -> None:
        while event.sender.credit and self.sent < self.total:
            msg = Message(id=(self.sent + 1), body=self.body)
            event.sender.send(msg)
            self.sent += 1
            if self.at_most_once and self.sent == self.total:  # Example 3.12
                self.confirmed = self.sent
                event.connection.close()

    def on_accepted(self, event: Any) -> None:
        self.confirmed += 1
        if self.confirmed == self.total:
            event.connection.close()

    def on_disconnected(self, event: Any) -> None:
        self.sent = self.confirmed


class Recv(MessagingHandler):
    """Example 3.4 (reliable) and 3.11 (``at_most_once``): receive ``count`` messages."""

    def __init__(self, url: str, count: int, at_most_once: bool = False) -> None:
        super().__init__()
        self.url = url
        self.expected = count
        self.received = 0
        self.at_most_once = at_most_once
        self.opened_at: Optional[Tuple[float, float]] = None

    def on_start(self, event: Any) -> None:
        event.container.create_receiver(self.url, options=AtMostOnce() if self.at_most_once
                                        else None)

    def on_connection_opened(self, event: Any) -> None:
        self.opened_at = now()

    def on_message(self, event: Any) -> None:
        if event.message.id and event.message.id < self.received:
            return  # ignore duplicate message
        if self.expected == 0 or self.received < self.expected:
            self.received += 1
            if self.received == self.expected:
                event.receiver.close()
                event.connection.close()


def now() -> Tuple[float, float]:
    """(wall clock, this process's CPU time), in seconds."""
    return time.perf_counter(), time.process_time()


def since(start: Tuple[float, float]) -> Tuple[float, float]:
    """(wall seconds, CPU seconds) elapsed since ``start`` (a :func:`now`)."""
    wall, cpu = now()
    return wall - start[0], cpu - start[1]


def run_handler(handler: Any) -> Tuple[float, float]:
    """Run a handler to completion; (wall, CPU) seconds from its connection opening to the end.

    The handler sets ``handler.opened_at = now()`` when its connection opens.
    """
    Container(handler).run()
    if handler.opened_at is None:
        raise RuntimeError(f"{type(handler).__name__}: the connection never opened")
    return since(handler.opened_at)


def blocking_send(url: str, address: str, messages: int, body: Any,
                  at_most_once: bool = False) -> Tuple[float, float]:
    """``BlockingSender.send`` per message (it waits for each one to be settled)."""
    conn = BlockingConnection(url, timeout=30)
    started = now()
    try:
        sender = conn.create_sender(address, options=AtMostOnce() if at_most_once else None)
        for n in range(1, messages + 1):
            sender.send(Message(id=n, body=body))
    finally:
        conn.close()
    return since(started)


def blocking_receive(url: str, address: str, count: int,
                     credit: int = 100) -> Tuple[float, float]:
    """``BlockingReceiver.receive`` and ``accept`` per message, with ``credit`` prefetched."""
    conn = BlockingConnection(url, timeout=30)
    started = now()
    try:
        receiver = conn.create_receiver(address, credit=credit)
        for _ in range(count):
            receiver.receive(timeout=30)
            receiver.accept()
    finally:
        conn.close()
    return since(started)
