"""A tour of proton_easy against a real broker: send/receive, request/reply, transactions.

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
    """Send messages to a queue (each accepted by the broker), then receive them."""
    pe.send(f"{url}/demo", {"sequence": 1})
    count = pe.send_many(f"{url}/demo", ({"sequence": n} for n in range(2, 6)))
    print(f"sent 1 + {count} messages to the queue 'demo' (all accepted)")
    for msg in pe.receive(f"{url}/demo", count=5, timeout=5):
        print(f"  received {msg.body}")
    pe.send_many(f"{url}/demo", [pe.Message(c, properties={"colour": c})
                                 for c in ("red", "green", "blue", "green")])
    green = pe.receive(f"{url}/demo", count=10, timeout=2, selector="colour = 'green'")
    print(f"selector colour = 'green' picked {[m.body for m in green]}")
    rest = [m.body for m in pe.consume(f"{url}/demo", idle_timeout=1)]
    print(f"consume drained the rest: {rest}")


def request_reply(url: str) -> None:
    """A responder in a thread upper-cases requests; pe.request waits for the matching reply."""
    with pe.Client(url) as server:
        served = threading.Thread(
            target=server.serve, args=("demo-requests", lambda msg: msg.body.upper()),
            kwargs={"count": 2, "timeout": 10})
        served.start()
        for text in ("Twas brillig, and the slithy toves", "Did gire and gymble in the wabe."):
            reply = pe.request(f"{url}/demo-requests", text, timeout=10)
            print(f"{text} => {reply.body}")
        served.join(15)


def transactions(url: str) -> None:
    """An aborted transaction delivers nothing; a committed one delivers all its messages."""
    try:
        with pe.transaction(f"{url}/demo-tx") as tx:
            tx.send("lost-1")
            tx.send("lost-2")
            raise RuntimeError("changed my mind")
    except RuntimeError:
        print("transaction 1 aborted (an exception left the block)")
    with pe.transaction(f"{url}/demo-tx") as tx:
        tx.send("tx-1")
        tx.send("tx-2")
    print("transaction 2 committed")
    got = [m.body for m in pe.receive(f"{url}/demo-tx", count=10, timeout=2)]
    print(f"  the queue 'demo-tx' holds {got}")
    assert got == ["tx-1", "tx-2"], got


def main() -> int:
    url = os.environ.get("PROTON_EASY_URL")
    if not url:
        print("set PROTON_EASY_URL, or run: make demo", file=sys.stderr)
        return 2
    send_and_receive(url)
    request_reply(url)
    transactions(url)
    print("demo done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
