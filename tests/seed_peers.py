"""The seed's hand-written proton handlers (Examples 3.3, 3.4, 3.6, 3.7, 3.8, 3.9, 3.11, 3.12),
in Python 3.

Tests use them as real peers that proton_easy must interoperate with. Addresses are given as
``queue://name`` so that Artemis (whose test acceptor strips that prefix) routes them anycast.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from proton import Message, Url
from proton.handlers import MessagingHandler, TransactionHandler
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


class SeedTxSend(MessagingHandler, TransactionHandler):
    """Example 3.8: send ``messages`` sequence dicts in transactions of ``batch_size``."""

    def __init__(self, url: str, messages: int, batch_size: int) -> None:
        super().__init__()
        self.url = Url(url)
        self.current_batch = 0
        self.committed = 0
        self.confirmed = 0
        self.total = messages
        self.batch_size = batch_size

    def on_start(self, event: Any) -> None:
        self.container = event.container
        self.conn = self.container.connect(self.url)
        self.sender = self.container.create_sender(self.conn, self.url.path)
        self.container.declare_transaction(self.conn, handler=self)
        self.transaction = None

    def on_transaction_declared(self, event: Any) -> None:
        self.transaction = event.transaction
        # The one change to the seed: proton hands out the id as a memoryview into the declare
        # delivery, which is freed once settled; keep a copy.
        self.transaction.id = bytes(self.transaction.id)
        self.send()

    def on_sendable(self, event: Any) -> None:
        self.send()

    def send(self) -> None:
        while (self.transaction and self.sender.credit
               and (self.committed + self.current_batch) < self.total):
            seq = self.committed + self.current_batch + 1
            msg = Message(id=seq, body={"sequence": seq})
            self.transaction.send(self.sender, msg)
            self.current_batch += 1
            if self.current_batch == self.batch_size:
                self.transaction.commit()
                self.transaction = None

    def on_accepted(self, event: Any) -> None:
        if event.sender == self.sender:
            self.confirmed += 1

    def on_transaction_committed(self, event: Any) -> None:
        self.committed += self.current_batch
        if self.committed == self.total:
            event.connection.close()
        else:
            self.current_batch = 0
            self.container.declare_transaction(self.conn, handler=self)

    def on_disconnected(self, event: Any) -> None:
        self.current_batch = 0


class SeedTxRecv(MessagingHandler, TransactionHandler):
    """Example 3.9: receive ``messages`` in transactions of ``batch_size``."""

    def __init__(self, url: str, messages: int, batch_size: int) -> None:
        super().__init__(prefetch=0, auto_accept=False)
        self.url = Url(url)
        self.expected = messages
        self.batch_size = batch_size
        self.current_batch = 0
        self.committed = 0
        self.bodies: List[Any] = []

    def on_start(self, event: Any) -> None:
        self.container = event.container
        self.conn = self.container.connect(self.url)
        self.receiver = self.container.create_receiver(self.conn, self.url.path)
        self.container.declare_transaction(self.conn, handler=self)
        self.transaction = None

    def on_message(self, event: Any) -> None:
        self.receiver.flow(self.batch_size)
        self.bodies.append(event.message.body)
        self.transaction.accept(event.delivery)
        self.current_batch += 1
        if self.current_batch == self.batch_size:
            self.transaction.commit()
            self.transaction = None

    def on_transaction_declared(self, event: Any) -> None:
        self.receiver.flow(self.batch_size)
        self.transaction = event.transaction
        self.transaction.id = bytes(self.transaction.id)  # see SeedTxSend

    def on_transaction_committed(self, event: Any) -> None:
        self.committed += self.current_batch
        self.current_batch = 0
        if self.expected == 0 or self.committed < self.expected:
            self.container.declare_transaction(self.conn, handler=self)
        else:
            event.connection.close()

    def on_disconnected(self, event: Any) -> None:
        self.current_batch = 0


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


class SeedServer(MessagingHandler):
    """Example 3.6: answer each request with its body upper-cased, through the anonymous relay
    when the broker offers it, else through a sender per ``reply_to``. Stops after ``count``."""

    def __init__(self, url: str, address: str, count: int) -> None:
        super().__init__()
        self.url = url
        self.address = address
        self.senders: Dict[str, Any] = {}
        self.count = count
        self.served = 0
        self.confirmed = 0
        self.relay: Any = None

    def on_start(self, event: Any) -> None:
        self.container = event.container
        self.conn = event.container.connect(self.url)
        self.receiver = event.container.create_receiver(self.conn, self.address)

    def on_connection_opened(self, event: Any) -> None:
        caps = event.connection.remote_offered_capabilities
        if caps and "ANONYMOUS-RELAY" in caps:
            self.relay = self.container.create_sender(self.conn, None)

    def on_message(self, event: Any) -> None:
        sender = self.relay or self.senders.get(event.message.reply_to)
        if not sender:
            sender = self.container.create_sender(self.conn, event.message.reply_to)
            self.senders[event.message.reply_to] = sender
        sender.send(Message(address=event.message.reply_to, body=event.message.body.upper(),
                            correlation_id=event.message.correlation_id))
        self.served += 1
        if self.served == self.count:
            self.receiver.close()

    def on_accepted(self, event: Any) -> None:
        self.confirmed += 1
        if self.confirmed == self.count:
            event.connection.close()


class SeedClient(MessagingHandler):
    """Example 3.7: send ``requests`` one after another with a dynamic ``reply_to``; keeps the
    (request, reply body) pairs in ``self.replies``."""

    def __init__(self, url: str, requests: List[str]) -> None:
        super().__init__()
        self.url = url
        self.requests = list(requests)
        self.replies: List[Tuple[str, Any]] = []

    def on_start(self, event: Any) -> None:
        self.sender = event.container.create_sender(self.url)
        self.receiver = event.container.create_receiver(self.sender.connection, None,
                                                        dynamic=True)

    def next_request(self) -> None:
        if self.receiver.remote_source.address:
            req = Message(reply_to=self.receiver.remote_source.address, body=self.requests[0])
            self.sender.send(req)

    def on_link_opened(self, event: Any) -> None:
        if event.receiver == self.receiver:
            self.next_request()

    def on_message(self, event: Any) -> None:
        self.replies.append((self.requests.pop(0), event.message.body))
        if self.requests:
            self.next_request()
        else:
            event.connection.close()


def start(handler: MessagingHandler) -> Callable[[float], MessagingHandler]:
    """Run a seed handler in a background thread; call the result to wait for it to finish."""
    errors: List[BaseException] = []

    def target() -> None:
        try:
            Container(handler).run()
        except BaseException as exc:  # noqa: BLE001 - reported by join()
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()

    def join(timeout: float = 30.0) -> MessagingHandler:
        thread.join(timeout)
        assert not thread.is_alive(), f"{type(handler).__name__} did not finish in {timeout} s"
        if errors:
            raise errors[0]
        return handler

    return join
