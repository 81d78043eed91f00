"""Round-trip latency of request/reply: proton_easy against a hand-written proton pair.

Runs 1,000 sequential requests (after a warm-up) in each setup and prints p50/p99 in
microseconds:

- ``hand-written pair``: a seed-style client (Example 3.7) against a seed-style server (3.6);
- ``SyncRequestResponse``: ``proton.utils``' blocking client against the hand-written server;
- ``Client.request``: ``proton_easy.Client.request`` against the same hand-written server;
- ``Client.request + Responder``: ``Client.request`` against ``proton_easy.handlers.Responder``
  run like the seed's server (``Container(handler).run()``, the reply sent from the event);
- ``Client.request + serve``: ``Client.request`` against ``proton_easy.Client.serve`` (the
  handler runs in the serving thread: two thread hand-offs per request on the server side).

Each server runs in its own process, so clients and servers do not share a GIL; the setups
take turns request by request, so that a busy machine slows them all alike. Usage::

    python benchmarks/request_reply.py [URL] [-n 1000]

URL defaults to ``$PROTON_EASY_URL``, else ``amqp://admin:admin@localhost:5672``.
``benchmarks/run.py`` (``make bench``) runs this too, through :func:`measure`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from typing import Any, Dict, List, Optional

from proton import Data, Message, symbol
from proton.handlers import MessagingHandler
from proton.reactor import ApplicationEvent, Container, EventInjector, LinkOption
from proton.utils import BlockingConnection, SyncRequestResponse

import proton_easy as pe
from proton_easy.handlers import Responder


class QueueCapability(LinkOption):
    """Tell Artemis the address is a queue (its default for a new address is multicast)."""

    def apply(self, link: Any) -> None:
        terminus = link.source if link.is_receiver else link.target
        terminus.capabilities.put_array(False, Data.SYMBOL)
        terminus.capabilities.enter()
        terminus.capabilities.put_symbol(symbol("queue"))
        terminus.capabilities.exit()


class SeedServer(MessagingHandler):
    """Example 3.6: upper-case each request's body, reply through the anonymous relay."""

    def __init__(self, url: str, address: str) -> None:
        super().__init__()
        self.url = url
        self.address = address
        self.senders: dict = {}
        self.relay: Any = None

    def on_start(self, event: Any) -> None:
        self.container = event.container
        self.conn = event.container.connect(self.url)
        self.receiver = event.container.create_receiver(self.conn, self.address,
                                                        options=QueueCapability())

    def on_connection_opened(self, event: Any) -> None:
        caps = event.connection.remote_offered_capabilities
        if caps and "ANONYMOUS-RELAY" in caps:
            self.relay = self.container.create_sender(self.conn, None)

    def on_link_opened(self, event: Any) -> None:
        if event.link == self.receiver:
            print("ready", flush=True)

    def on_message(self, event: Any) -> None:
        reply_to = event.message.reply_to
        sender = self.relay or self.senders.get(reply_to)
        if not sender:
            sender = self.senders[reply_to] = self.container.create_sender(self.conn, reply_to)
        sender.send(Message(address=reply_to, body=event.message.body.upper(),
                            correlation_id=event.message.correlation_id))


class SeedClient(MessagingHandler):
    """Example 3.7, timing each round trip; a request goes out each time ``go()`` is called."""

    def __init__(self, url: str, address: str, prefetch: int = 10) -> None:
        super().__init__(prefetch=prefetch)
        self.url = url
        self.address = address
        self.injector = EventInjector()
        self.ready = threading.Event()
        self.replied = threading.Event()
        self.latency = 0.0
        self.sent_at = 0.0
        self.n = 0

    def on_start(self, event: Any) -> None:
        event.container.selectable(self.injector)
        self.conn = event.container.connect(self.url)
        self.sender = event.container.create_sender(self.conn, self.address,
                                                    options=QueueCapability())
        self.receiver = event.container.create_receiver(self.conn, None, dynamic=True)

    def on_link_opened(self, event: Any) -> None:
        if event.receiver == self.receiver:
            self.ready.set()

    def go(self) -> float:
        """Send one request (from another thread) and return its round-trip time."""
        self.replied.clear()
        self.injector.trigger(ApplicationEvent("go"))
        if not self.replied.wait(10):
            raise SystemExit("no reply to the hand-written client within 10 s")
        return self.latency

    def on_go(self, event: Any) -> None:
        self.n += 1
        req = Message(reply_to=self.receiver.remote_source.address, body="hello",
                      correlation_id=self.n)
        self.sent_at = time.perf_counter()
        self.sender.send(req)

    def on_message(self, event: Any) -> None:
        self.latency = time.perf_counter() - self.sent_at
        self.replied.set()

    def close(self) -> None:
        """End its connection, and so its container's run (from another thread)."""
        self.injector.trigger(ApplicationEvent("stop"))

    def on_stop(self, event: Any) -> None:
        self.conn.close()
        self.injector.close()


class PipelinedSeedClient(SeedClient):
    """Example 3.7 grown to ``n`` requests a batch: :meth:`batch` sends them one after the
    other (each once the last was answered) or all at once, and returns the seconds the batch
    took. The hand-written peer of ``aio.request`` from ``n`` tasks at once."""

    def __init__(self, url: str, address: str, n: int) -> None:
        super().__init__(url, address, prefetch=2 * n)
        self.n = n
        self.finished = threading.Event()
        self.together = False
        self.sent = self.got = 0
        self.started = self.seconds = 0.0

    def batch(self, together: bool) -> float:
        """Send a batch (from another thread); its seconds, from first send to last reply."""
        self.together = together
        self.finished.clear()
        self.injector.trigger(ApplicationEvent("batch"))
        if not self.finished.wait(30):
            raise SystemExit("the pipelined hand-written client got no replies within 30 s")
        return self.seconds

    def _send(self) -> None:
        self.sent += 1
        self.sender.send(Message(reply_to=self.receiver.remote_source.address,
                                 body="x" * 100, correlation_id=self.sent))

    def on_batch(self, event: Any) -> None:
        self.got = 0
        self.started = time.perf_counter()
        for _ in range(self.n if self.together else 1):
            self._send()

    def on_message(self, event: Any) -> None:
        self.got += 1
        if self.got == self.n:
            self.seconds = time.perf_counter() - self.started
            self.finished.set()
        elif not self.together:
            self._send()


def start_server(kind: str, url: str, address: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, __file__, url, "--serve", kind, "--address",
                             address], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    timer = threading.Timer(30, proc.kill)  # a server that never gets ready must not hang us
    timer.start()
    line = proc.stdout.readline()
    timer.cancel()
    if line.strip() != "ready":
        proc.kill()
        raise SystemExit(f"the {kind} server did not start")
    return proc


class ReadyResponder(Responder):
    """proton_easy's Responder, saying "ready" once its receiver is attached."""

    def on_link_remote_open(self, event: Any) -> None:  # a lean handler: raw events
        if event.link == self.receiver:
            print("ready", flush=True)


def serve(kind: str, url: str, address: str) -> None:
    if kind == "seed":
        Container(SeedServer(url, address)).run()
        return
    if kind in ("responder", "responder-100"):  # -100: credit for 100 requests at once
        window = 100 if kind == "responder-100" else 10
        Container(ReadyResponder(f"{url}/{address}", lambda msg: msg.body.upper(),
                                 window=window)).run()
        return
    with pe.Client(url) as client:
        print("ready", flush=True)  # requests wait in the queue until serve's link is up
        client.serve(address, lambda msg: msg.body.upper())


def timed_request(client: pe.Client, address: str) -> float:
    started = time.perf_counter()
    reply = client.request(address, "hello", timeout=10)
    latency = time.perf_counter() - started
    assert reply.body == "HELLO", reply
    return latency


def timed_call(rr: SyncRequestResponse) -> float:
    started = time.perf_counter()
    reply = rr.call(Message(body="hello"))
    latency = time.perf_counter() - started
    assert reply.body == "HELLO", reply
    return latency


SETUPS = ("hand-written pair", "SyncRequestResponse", "Client.request",
          "Client.request + Responder", "Client.request + serve")


def percentiles(latencies: List[float]) -> Dict[str, float]:
    """p50 and p99 of some latencies (seconds), in microseconds."""
    micros = sorted(x * 1e6 for x in latencies)
    return {"p50_us": statistics.median(micros),
            "p99_us": micros[min(len(micros) - 1, int(len(micros) * 0.99))],
            "requests": len(micros)}


def measure(url: str, n: int = 1000, warmup: int = 100) -> Dict[str, List[float]]:
    """Round-trip latencies (seconds) of ``n`` requests per setup (see :data:`SETUPS`)."""
    addresses = {kind: f"bench-rr-{kind}-{uuid.uuid4().hex[:8]}"
                 for kind in ("seed", "pe", "responder")}
    servers = [start_server(kind, url, address) for kind, address in addresses.items()]
    seed = SeedClient(url, addresses["seed"])
    thread = threading.Thread(target=Container(seed).run, daemon=True)
    thread.start()
    results: Dict[str, List[float]] = {name: [] for name in SETUPS}
    blocking = None
    try:
        if not seed.ready.wait(10):
            raise SystemExit("the hand-written client could not attach")
        blocking = BlockingConnection(url, timeout=10)
        rr = SyncRequestResponse(blocking, "queue://" + addresses["seed"])
        with pe.Client(url) as client:
            setups = (
                ("hand-written pair", seed.go),
                ("SyncRequestResponse", lambda: timed_call(rr)),
                ("Client.request", lambda: timed_request(client, addresses["seed"])),
                ("Client.request + Responder",
                 lambda: timed_request(client, addresses["responder"])),
                ("Client.request + serve", lambda: timed_request(client, addresses["pe"])))
            for i in range(n + warmup):
                for name, timed in setups:
                    latency = timed()
                    if i >= warmup:
                        results[name].append(latency)
    finally:
        if blocking is not None:
            blocking.close()
        seed.close()
        thread.join(10)
        for server in servers:
            server.terminate()
            server.wait(10)
    return results


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url", nargs="?", default=os.environ.get(
        "PROTON_EASY_URL", "amqp://admin:admin@localhost:5672"))
    parser.add_argument("-n", type=int, default=1000, help="requests per setup (1000)")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--serve", choices=["seed", "pe", "responder", "responder-100"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.url, args.address)
        return

    print(f"{args.n} sequential requests per setup, after {args.warmup} warm-up requests; "
          "the setups take turns request by request, so machine load hits all alike")
    results = measure(args.url, args.n, args.warmup)
    base = percentiles(results["hand-written pair"])["p50_us"]
    for name in SETUPS:
        stats = percentiles(results[name])
        ratio = f"   p50 = {stats['p50_us'] / base:.2f}x hand-written" if name != SETUPS[0] \
            else ""
        print(f"{name:<28} p50 {stats['p50_us']:8.0f} us   p99 {stats['p99_us']:8.0f} us{ratio}")


if __name__ == "__main__":
    main()
