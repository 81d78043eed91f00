"""A tour against a real broker: send/receive, request/reply, a transaction, in one-line calls.

Run it with ``make demo``, which starts a local Artemis and sets ``PROTON_EASY_URL``
(``amqp://user:password@127.0.0.1:PORT``). By hand::

    python -m proton_easy.testing run -- python examples/demo.py
"""

from __future__ import annotations

import os
import sys
import threading

import proton_easy as pe


def send_and_receive(url: str) -> None:
    """Send three messages to a queue, then receive them."""
    pe.send_many(f"{url}/demo", [pe.Message({"sequence": n}, durable=True) for n in (1, 2, 3)])
    print("sent 3 messages to the queue demo")
    for msg in pe.receive(f"{url}/demo", count=3, timeout=10):
        print(f"  received {msg.body}")


def request_reply(url: str) -> None:
    """A responder in a thread answers one request with its body upper-cased."""
    server = threading.Thread(
        target=pe.serve, args=(f"{url}/demo-requests", lambda msg: msg.body.upper()),
        kwargs={"count": 1, "timeout": 10}, daemon=True)
    server.start()
    reply = pe.request(f"{url}/demo-requests", "hello", timeout=10)
    print(f"request 'hello' -> reply {reply.body!r}")
    server.join(10)


def transaction(url: str) -> None:
    """An aborted batch delivers nothing; a committed one delivers all its messages."""
    with pe.transaction(f"{url}/demo-tx") as tx:
        tx.send("lost-1")
        tx.send("lost-2")
        tx.abort()
        tx.send("tx-1")
        tx.send("tx-2")
    print("transaction 1 aborted, transaction 2 committed")
    got = [msg.body for msg in pe.receive(f"{url}/demo-tx", count=2, timeout=10)]
    print(f"  the queue demo-tx holds {got}")
    assert got == ["tx-1", "tx-2"], got


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
