"""Transactional send throughput: proton_easy next to the seed's hand-written TxSend (not a test).

Sends ``--messages`` messages in transactions of 10 and of 100 with

- the seed's ``TxSend`` (Example 3.8, ported to Python 3: ``tests/seed_peers.py``),
- ``proton_easy.handlers.TxSender`` run as ``Container(h).run()``,
- ``pe.transaction`` (``tx.send`` in a loop, ``tx.commit()`` every batch),

and prints messages per second (median of ``--repeat`` runs). Every run checks that all its
messages arrived, then drains its queue.

    python benchmarks/transactions.py --url amqp://admin:admin@localhost:5672
    python benchmarks/transactions.py            # starts a local Artemis (proton_easy.testing)

The broker must route ``queue://NAME`` anycast (the seed's sender has no capabilities):
``proton_easy.testing``'s broker does, or give the acceptor
``anycastPrefix=queue://;multicastPrefix=topic://``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proton.reactor import Container  # noqa: E402

import proton_easy as pe  # noqa: E402
from proton_easy.handlers import TxSender  # noqa: E402
from tests.seed_peers import SeedTxSend  # noqa: E402


def seed_txsend(url: str, address: str, messages: int, batch: int) -> None:
    handler = SeedTxSend(f"{url}/queue://{address}", messages, batch)
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("PROTON_EASY_URL"),
                        help="broker URL with credentials, no path (default: $PROTON_EASY_URL, "
                             "else a local Artemis is started)")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batches", default="10,100")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]

    broker: Any = None
    url = args.url
    if not url:
        from proton_easy.testing import ArtemisBroker  # starts Artemis 2.40 locally

        broker = ArtemisBroker().start()
        url = broker.url
    try:
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
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
