"""Transactional send throughput: proton_easy next to the seed's hand-written TxSend.

Sends ``-n`` messages in transactions of 10 and of 100 with

- ``seed TxSend``: the seed's Example 3.8 ported to Python 3 (below; its sender link says
  ``queue`` so that Artemis keeps the messages on a queue),
- ``proton_easy.handlers.TxSender`` run as ``Container(h).run()``,
- ``pe.transaction``: ``tx.send`` in a loop and ``tx.commit()`` every batch,

and prints messages per second (median of ``--repeat`` runs; the setups take turns, so that a
busy machine slows them all alike). Every run checks that all its messages arrived, then
drains its queue. Not a test. Usage::

    python benchmarks/transactions.py [URL] [-n 5000] [--repeat 5]

URL defaults to ``$PROTON_EASY_URL``, else ``amqp://admin:admin@localhost:5672``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from typing import Any, Callable, Dict, List, Optional

from proton import Data, Message, Url, symbol
from proton.handlers import MessagingHandler, TransactionHandler
from proton.reactor import Container, LinkOption

import proton_easy as pe
from proton_easy.handlers import TxSender


class QueueCapability(LinkOption):
    """Tell Artemis the address is a queue (its default for a new address is multicast)."""

    def apply(self, link: Any) -> None:
        terminus = link.source if link.is_receiver else link.target
        terminus.capabilities.put_array(False, Data.SYMBOL)
        terminus.capabilities.enter()
        terminus.capabilities.put_symbol(symbol("queue"))
        terminus.capabilities.exit()


class SeedTxSend(MessagingHandler, TransactionHandler):
    """The seed's Example 3.8, in Python 3 (``body``: what to send instead of the seed's
    ``{'sequence': n}``)."""

    def __init__(self, url: str, messages: int, batch_size: int, body: Any = None) -> None:
        super().__init__()
        self.body = body
        self.url = Url(url)
        self.current_batch = 0
        self.committed = 0
        self.confirmed = 0
        self.total = messages
        self.batch_size = batch_size

    def on_start(self, event: Any) -> None:
        self.container = event.container
        self.conn = self.container.connect(self.url)
        self.sender = self.container.create_sender(self.conn, self.url.path,
                                                   options=QueueCapability())
        self.container.declare_transaction(self.conn, handler=self)
        self.transaction = None

    def on_transaction_declared(self, event: Any) -> None:
        self.transaction = event.transaction
        self.transaction.id = bytes(self.transaction.id)  # proton's memoryview outlives its data
        self.send()

    def on_sendable(self, event: Any) -> None:
        self.send()

    def send(self) -> None:
        while (self.transaction and self.sender.credit
               and (self.committed + self.current_batch) < self.total):
            seq = self.committed + self.current_batch + 1
            msg = Message(id=seq, body={"sequence": seq} if self.body is None else self.body)
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


def seed_txsend(url: str, address: str, messages: int, batch: int) -> None:
    handler = SeedTxSend(f"{url}/{address}", messages, batch)
    Container(handler).run()
    assert handler.committed == messages, handler.committed


def pe_txsender(url: str, address: str, messages: int, batch: int) -> None:
    job = TxSender(f"{url}/{address}", messages=messages, batch_size=batch)
    Container(job).run()
    assert job.committed == messages, job.committed


def pe_transaction(url: str, address: str, messages: int, batch: int) -> None:
    with pe.transaction(f"{url}/{address}") as tx:
        for n in range(1, messages + 1):
            tx.send(pe.Message({"sequence": n}, id=n))
            if n % batch == 0:
                tx.commit()


CONTENDERS: Dict[str, Callable[[str, str, int, int], None]] = {
    "seed TxSend (hand-written)": seed_txsend,
    "pe TxSender (Container.run)": pe_txsender,
    "pe.transaction (context)": pe_transaction,
}


def measure(fn: Callable[[str, str, int, int], None], url: str, messages: int,
            batch: int) -> float:
    address = f"bench-tx-{uuid.uuid4().hex[:8]}"
    start = time.perf_counter()
    fn(url, address, messages, batch)
    elapsed = time.perf_counter() - start
    with pe.Client(url) as client:  # check, and drain the queue
        got = len(client.receive(address, count=messages, timeout=60))
        got += len(client.receive(address, count=1, timeout=0.5))
    if got != messages:
        raise SystemExit(f"{fn.__name__}: {got} messages arrived, {messages} sent")
    return messages / elapsed


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="transactional send: proton_easy vs the seed")
    parser.add_argument("url", nargs="?", default=os.environ.get(
        "PROTON_EASY_URL", "amqp://admin:admin@localhost:5672"),
        help="broker URL with credentials, no path")
    parser.add_argument("-n", "--messages", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batches", default="10,100")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    url = args.url
    measure(pe_txsender, url, 500, 50)  # warm up the broker's JIT
    print(f"transactional send, {args.messages} messages of ~30 bytes, "
          f"median of {args.repeat} runs (msg/s)")
    rates: Dict[tuple, List[float]] = {}
    for _ in range(args.repeat):  # interleaved, so that drift hits every contender alike
        for batch in batches:
            for name, fn in CONTENDERS.items():
                rates.setdefault((name, batch), []).append(
                    measure(fn, url, args.messages, batch))
    print(f"{'':30}" + "".join(f"{'batch ' + str(b):>12}" for b in batches))
    for name in CONTENDERS:
        print(f"{name:30}" + "".join(
            f"{statistics.median(rates[name, batch]):12.0f}" for batch in batches))


if __name__ == "__main__":
    main()
