"""A tour against a real broker: send/receive, request/reply, a transaction.

Run it with ``make demo``, which starts a local Artemis and sets ``PROTON_EASY_URL``
(``amqp://user:password@127.0.0.1:PORT``). By hand::

    python -m proton_easy.testing run -- python examples/demo.py

This first version speaks plain Qpid Proton; the proton_easy one-liners will replace it.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
from typing import List, Optional

from proton import Message
from proton.handlers import MessagingHandler, TransactionHandler
from proton.reactor import Container
from proton.utils import BlockingConnection


def send_and_receive(url: str) -> None:
    """Send three messages to a queue, then receive them."""
    conn = BlockingConnection(url, timeout=10)
    try:
        sender = conn.create_sender("queue://demo")
        for n in range(1, 4):
            sender.send(Message(body={"sequence": n}, durable=True))  # waits for acceptance
        print("sent 3 messages to queue://demo")
        receiver = conn.create_receiver("queue://demo")
        for _ in range(3):
            msg = receiver.receive(timeout=10)
            receiver.accept()
            print(f"  received {msg.body}")
    finally:
        conn.close()


def serve_once(url: str, ready: threading.Event) -> None:
    """A responder: answer one request on queue://demo-requests with its body upper-cased."""
    conn = BlockingConnection(url, timeout=10)
    try:
        receiver = conn.create_receiver("queue://demo-requests")
        ready.set()
        request = receiver.receive(timeout=10)
        receiver.accept()
        reply = Message(body=str(request.body).upper(), correlation_id=request.id)
        conn.create_sender(request.reply_to).send(reply)
    finally:
        conn.close()


def request_reply(url: str) -> None:
    """Send a request with a dynamic reply-to address and wait for the correlated reply."""
    ready = threading.Event()
    responder = threading.Thread(target=serve_once, args=(url, ready), daemon=True)
    responder.start()
    ready.wait(10)
    conn = BlockingConnection(url, timeout=10)
    try:
        replies = conn.create_receiver(None, dynamic=True)
        reply_to = replies.link.remote_source.address
        request_id = str(uuid.uuid4())
        conn.create_sender("queue://demo-requests").send(
            Message(body="hello", id=request_id, reply_to=reply_to)
        )
        reply = replies.receive(timeout=10)
        replies.accept()
        assert reply.correlation_id == request_id, "reply does not match the request"
        print(f"request 'hello' -> reply {reply.body!r} (via {reply_to})")
    finally:
        conn.close()
    responder.join(10)


class TxSend(MessagingHandler, TransactionHandler):
    """Send ``bodies`` inside one local transaction, then commit or abort it."""

    def __init__(self, url: str, address: str, bodies: List[str], commit: bool) -> None:
        super().__init__()
        self.url, self.address, self.bodies, self.commit = url, address, bodies, commit
        self.sender = None
        self.transaction: Optional[object] = None
        self.sent = False
        self.outcome = ""

    def on_start(self, event):  # type: ignore[no-untyped-def]
        conn = event.container.connect(self.url)
        self.sender = event.container.create_sender(conn, self.address)
        event.container.declare_transaction(conn, handler=self)

    def on_transaction_declared(self, event):  # type: ignore[no-untyped-def]
        self.transaction = event.transaction
        self._maybe_send()

    def on_sendable(self, event):  # type: ignore[no-untyped-def]
        self._maybe_send()

    def _maybe_send(self) -> None:
        if self.sent or self.transaction is None or not self.sender.credit:
            return
        for body in self.bodies:
            self.transaction.send(self.sender, Message(body=body, durable=True))
        self.sent = True
        if self.commit:
            self.transaction.commit()
        else:
            self.transaction.abort()

    def on_transaction_committed(self, event):  # type: ignore[no-untyped-def]
        self.outcome = "committed"
        event.connection.close()

    def on_transaction_aborted(self, event):  # type: ignore[no-untyped-def]
        self.outcome = "aborted"
        event.connection.close()


def transaction(url: str) -> None:
    """An aborted transaction delivers nothing; a committed one delivers all its messages."""
    aborted = TxSend(url, "queue://demo-tx", ["lost-1", "lost-2"], commit=False)
    Container(aborted).run()
    committed = TxSend(url, "queue://demo-tx", ["tx-1", "tx-2"], commit=True)
    Container(committed).run()
    print(f"transaction 1 {aborted.outcome}, transaction 2 {committed.outcome}")
    conn = BlockingConnection(url, timeout=10)
    try:
        receiver = conn.create_receiver("queue://demo-tx")
        got = []
        for _ in range(2):
            got.append(receiver.receive(timeout=10).body)
            receiver.accept()
        print(f"  queue://demo-tx holds {got}")
        assert got == ["tx-1", "tx-2"], got
    finally:
        conn.close()


def main() -> int:
    url = os.environ.get("PROTON_EASY_URL")
    if not url:
        print("set PROTON_EASY_URL, or run: make demo", file=sys.stderr)
        return 2
    send_and_receive(url)
    request_reply(url)
    transaction(url)
    print("demo done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
