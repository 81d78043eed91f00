"""The seed's hand-written proton handlers (Examples 3.3, 3.4, 3.11, 3.12), ported to Python 3.

Tests use them as real peers that proton_easy must interoperate with. Addresses are given as
``queue://name`` so that Artemis (whose test acceptor strips that prefix) routes them anycast.
"""

from __future__ import annotations

import threading
from typing import Any, List, Optional

from proton import Message
from proton.handlers import MessagingHandler
from proton.reactor import AtMostOnce, Container, Selector


class SeedSend(MessagingHandler):
    """Example 3.3 (and 3.12 with ``at_most_once``): send ``messages`` sequence dicts."""

    def __init__(self, url: str, messages: int, at_most_once: bool = False,
                 properties: Optional[List[dict]] = None) -> None:
        super().__init__()
        self.url = url
        self.sent = 0
        self.confirmed = 0
        self.total = messages
        self.at_most_once = at_most_once
        self.properties = properties

    def on_start(self, event: Any) -> None:
        opts = AtMostOnce() if self.at_most_once else None
        event.container.create_sender(self.url, options=opts)

    def on_sendable(self, event: Any) -> None:
        while event.sender.credit and self.sent < self.total:
            msg = Message(id=(self.sent + 1), body={"sequence": (self.sent + 1)})
            if self.properties:
                msg.properties = self.properties[self.sent]
            event.sender.send(msg)
            self.sent += 1
            if self.at_most_once and self.sent == self.total:
                event.connection.close()

    def on_accepted(self, event: Any) -> None:
        self.confirmed += 1
        if self.confirmed == self.total:
            event.connection.close()

    def on_disconnected(self, event: Any) -> None:
        self.sent = self.confirmed


class SeedRecv(MessagingHandler):
    """Example 3.4 (and 3.11 with ``at_most_once``, 3.10 with ``selector``)."""

    def __init__(self, url: str, count: int, at_most_once: bool = False,
                 selector: Optional[str] = None) -> None:
        super().__init__()
        self.url = url
        self.expected = count
        self.received = 0
        self.bodies: List[Any] = []
        self.at_most_once = at_most_once
        self.selector = selector

    def on_start(self, event: Any) -> None:
        opts = []
        if self.at_most_once:
            opts.append(AtMostOnce())
        if self.selector:
            opts.append(Selector(self.selector))
        event.container.create_receiver(self.url, options=opts or None)

    def on_message(self, event: Any) -> None:
        if event.message.id and event.message.id < self.received:
            return
        if self.expected == 0 or self.received < self.expected:
            self.bodies.append(event.message.body)
            self.received += 1
            if self.received == self.expected:
                event.receiver.close()
                event.connection.close()


def run(handler: MessagingHandler, timeout: float = 30.0) -> MessagingHandler:
    """Run a seed handler to completion (in a thread, so a hang fails the test) and return it."""
    errors: List[BaseException] = []

    def target() -> None:
        try:
            Container(handler).run()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{type(handler).__name__} did not finish in {timeout} s"
    if errors:
        raise errors[0]
    return handler
