"""``make bench``: proton_easy against the same jobs written by hand, on one local Artemis.

Each figure stands next to the same job written with proton's ``MessagingHandler`` (the seed's
examples, see ``handwritten.py``), where it has one, ``proton.utils.BlockingConnection``, and,
when Debian's examples are installed, proton's C engine (``cengine.py``), the ceiling.
Every setup runs in a worker process of its own (no shared GIL, its own peak RSS); the setups
of a group take turns, round after round, so that a busy machine slows them all alike, and the
best round counts. Printed: msg/s, ratios, client CPU per message, latency p50/p99, peak RSS,
threads sharing one Client (1, 4, 16: msg/s and p99), and the goals' table: per-call jobs
next to their peers; written: ``bench-results.json``. Benchmarks report; they never fail on a
slow figure.

Usage::

    python benchmarks/run.py                 # full run, a few minutes; starts its own Artemis
    python benchmarks/run.py --quick         # smoke run with tiny counts
    python benchmarks/run.py --url amqp://admin:admin@localhost:5672   # a broker you run
    python benchmarks/run.py --only send,receive --rounds 5
    python benchmarks/run.py --only otel --sizes 100   # tracing off / no-op / in-memory (only
                                                       # when asked for)

Without ``--url`` a local Artemis is started through ``proton_easy.testing`` with the stock JVM
options (not the quick-start ones the test fixtures use), warmed up, and stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import cengine  # noqa: E402 - benchmarks/ is not a package
import handwritten  # noqa: E402
import proton  # noqa: E402
import request_reply  # noqa: E402
import transactions  # noqa: E402
from handwritten import now, since  # noqa: E402
from proton.reactor import Container  # noqa: E402

import proton_easy as pe  # noqa: E402
from proton_easy import aio, handlers  # noqa: E402

SIZES = (100, 10 * 1024)
GROUPS = ("send", "send-amo", "receive", "asyncio", "memory", "latency", "transactions",
          "scaling", "perf", "failover", "otel")
OPT_IN = ("otel",)  # run only when named in --only


# =============================================================================================
# The trials. Each runs in a worker process and returns {"seconds", "cpu_seconds", "count"}:
# wall and CPU time from an open connection to the end of the job (connection closed).
# =============================================================================================
DURABLE: Optional[bool] = (None if os.environ.get("PROTON_EASY_BENCH_DURABLE", "default")
                           == "default" else False)
"""What proton_easy's setups send: their default (durable when at-least-once), or, with
``--non-durable``, non-durable messages like the hand-written peers and the figures measured
before durability became the default."""

def payload(size: int) -> bytes:
    """The body of every benchmark message: ``size`` bytes."""
    return b"x" * size


def _queue_url(url: str, address: str) -> str:
    return f"{url}/queue://{address}"


def _result(times: Any, count: int, **extra: Any) -> Dict:
    return {"seconds": times[0], "cpu_seconds": times[1], "count": count, **extra}


def trial_hand_send(url: str, address: str, n: int, size: int, at_most_once: bool) -> Dict:
    send = handwritten.Send(_queue_url(url, address), n, payload(size), at_most_once)
    return _result(handwritten.run_handler(send), send.confirmed)


def trial_blocking_send(url: str, address: str, n: int, size: int, at_most_once: bool) -> Dict:
    times = handwritten.blocking_send(url, "queue://" + address, n, payload(size),
                                      at_most_once)
    return _result(times, n)


def trial_c_send(url: str, address: str, n: int, size: int, at_most_once: bool) -> Dict:
    """proton's C engine: the ``send`` example (benchmarks/cengine.py), at-least-once, with
    the durability proton_easy's setups use."""
    return cengine.run("send", url, "queue://" + address, n, size, durable=DURABLE is None)


def trial_c_recv(url: str, address: str, n: int, size: int) -> Dict:
    """proton's C engine: the ``receive`` example (credit for all ``n`` at once)."""
    return cengine.run("receive", url, "queue://" + address, n, size)


def trial_pe_send_many(url: str, address: str, n: int, size: int, at_most_once: bool) -> Dict:
    body = payload(size)
    client = pe.Client(url)
    started = now()
    try:
        count = client.send_many(address, itertools.repeat(body, n), at_most_once=at_most_once,
                                 durable=DURABLE)
    finally:
        client.close()
    return _result(since(started), count)


def trial_pe_send(url: str, address: str, n: int, size: int, at_most_once: bool) -> Dict:
    body = payload(size)
    client = pe.Client(url)
    started = now()
    try:
        for _ in range(n):
            client.send(address, body, at_most_once=at_most_once, durable=DURABLE)
    finally:
        client.close()
    return _result(since(started), n)


# -- OpenTelemetry: the same trials with tracing off, on with a no-op exporter, on in memory --
_OTEL_MODE = ["off"]
_OTEL_MEMORY: List[Any] = []  # the in-memory exporter and metric reader of this worker


def _otel(mode: str) -> None:
    """Set this worker's telemetry (once: a worker runs one setup): ``off`` (no provider, as
    in an application without OpenTelemetry), ``noop`` (the SDK, a batch processor and an
    exporter that drops everything), ``memory`` (the SDK's in-memory span exporter and
    metric reader, cleared before each trial)."""
    if mode == "off" or _OTEL_MODE[0] == mode:
        for item in _OTEL_MEMORY:
            getattr(item, "clear", lambda: None)()
        return
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    meters = None
    if mode == "noop":
        provider.add_span_processor(BatchSpanProcessor(Drop()))
    else:
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        reader = InMemoryMetricReader()
        meters = MeterProvider(metric_readers=[reader])
        _OTEL_MEMORY[:] = [exporter, reader]
    pe.instrument(tracer_provider=provider, meter_provider=meters)
    _OTEL_MODE[0] = mode


def _with_otel(trial: Callable[..., Dict], mode: str) -> Callable[..., Dict]:
    def run(**kwargs: Any) -> Dict:
        _otel(mode)
        return trial(**kwargs)

    return run


class _Timed:
    """Mixin for proton_easy's handler classes: note when the job's connection opened."""

    opened_at: Optional[Any] = None

    def start(self, container: Any, conn: Any, future: Any = None) -> None:
        def opened(_: Any) -> None:
            self.opened_at = now()

        conn.opened.add_done_callback(opened)
        super().start(container, conn, future)  # type: ignore[misc]


class _TimedSender(_Timed, handlers.Sender):
    pass


class _TimedReceiver(_Timed, handlers.Receiver):
    def on_received(self, msg: Any) -> None:  # like the seed's Recv: keep nothing
        pass


def trial_pe_handler_send(url: str, address: str, n: int, size: int,
                          at_most_once: bool) -> Dict:
    job = _TimedSender(f"{url}/{address}", itertools.repeat(payload(size), n),
                       at_most_once=at_most_once, durable=DURABLE)
    times = handwritten.run_handler(job)
    if job.error is not None:
        raise job.error
    return _result(times, job.confirmed)


def trial_hand_recv(url: str, address: str, n: int, size: int) -> Dict:
    recv = handwritten.Recv(_queue_url(url, address), n)
    return _result(handwritten.run_handler(recv), recv.received)


def trial_blocking_recv(url: str, address: str, n: int, size: int) -> Dict:
    return _result(handwritten.blocking_receive(url, "queue://" + address, n), n)


def trial_pe_receive(url: str, address: str, n: int, size: int) -> Dict:
    client = pe.Client(url)
    started = now()
    try:
        got = client.receive(address, count=n, timeout=60)
    finally:
        client.close()
    return _result(since(started), len(got))


def trial_pe_consume(url: str, address: str, n: int, size: int) -> Dict:
    client = pe.Client(url)
    started = now()
    count = 0
    try:
        for _ in client.consume(address, idle_timeout=30):
            count += 1
            if count == n:
                break
    finally:
        client.close()
    return _result(since(started), count)


async def _timed_aio(url: str, verb: Callable[[aio.Client], Awaitable[int]]) -> Dict:
    """Time ``verb(client)`` and the client's close, as the blocking trials time their verb
    and ``Client.close()`` (both connect before the clock starts)."""
    client = aio.Client(url)
    await client.connect()
    started = now()
    try:
        count = await verb(client)
    finally:
        await client.close()
    return _result(since(started), count)


def trial_aio_send_many(url: str, address: str, n: int, size: int, at_most_once: bool) -> Dict:
    body = payload(size)

    async def verb(client: aio.Client) -> int:
        return await client.send_many(address, itertools.repeat(body, n),
                                      at_most_once=at_most_once, durable=DURABLE)

    return asyncio.run(_timed_aio(url, verb))


def trial_aio_receive(url: str, address: str, n: int, size: int) -> Dict:
    async def verb(client: aio.Client) -> int:
        return len(await client.receive(address, count=n, timeout=60))

    return asyncio.run(_timed_aio(url, verb))


def trial_aio_consume(url: str, address: str, n: int, size: int) -> Dict:
    async def verb(client: aio.Client) -> int:
        count = 0
        async with client.consume(address, idle_timeout=30) as messages:
            async for _ in messages:
                count += 1
                if count == n:
                    break
        return count

    return asyncio.run(_timed_aio(url, verb))


def trial_aio_requests(url: str, address: str, n: int, size: int, repeats: int = 20) -> Dict:
    """``n`` requests at once from as many tasks on one ``aio.Client``, against ``n`` one after
    the other: awaited one by one on that client (the goal's "sequential"), and blocking
    ``Client.request`` calls; and the hand-written proton client's own pair (one by one, all
    at once: what the machine allows a client that costs next to nothing). They take turns,
    ``repeats`` times after one untimed turn (credit windows grown, code paths and the broker
    warm), and each keeps its best time, as the throughput groups keep their best round (one
    batch of 100 takes milliseconds, so a single one mostly measures whatever else the
    machine did then). A ``handlers.Responder`` with credit for 100 requests, in a process of
    its own, answers all of them (benchmarks/request_reply.py)."""
    body = "x" * size
    server = request_reply.start_server("responder-100", url, address)
    hand = request_reply.PipelinedSeedClient(url, address, n)
    thread = threading.Thread(target=Container(hand).run, daemon=True)
    thread.start()
    best: Dict[str, float] = {}

    def keep(turn: int, key: str, seconds: float) -> None:
        if turn:
            best[key] = min(best.get(key, math.inf), seconds)

    try:
        if not hand.ready.wait(30):
            raise SystemExit("the pipelined hand-written client did not start")

        async def turns() -> None:
            with pe.Client(url) as one_by_one:
                async with aio.Client(url) as client:
                    one_by_one.request(address, body, timeout=30)  # the reply queues exist
                    await client.request(address, body, timeout=30)
                    for turn in range(repeats + 1):  # (the first turn warms up, untimed)
                        # (blocking calls in a coroutine: nothing else runs on this event loop)
                        started = time.perf_counter()
                        for _ in range(n):
                            one_by_one.request(address, body, timeout=30)
                        keep(turn, "blocking_sequential_seconds", time.perf_counter() - started)
                        started = time.perf_counter()
                        for _ in range(n):
                            await client.request(address, body, timeout=30)
                        keep(turn, "sequential_seconds", time.perf_counter() - started)
                        started = time.perf_counter()
                        await asyncio.gather(*(client.request(address, body, timeout=30)
                                               for _ in range(n)))
                        keep(turn, "concurrent_seconds", time.perf_counter() - started)
                        keep(turn, "hand_sequential_seconds", hand.batch(together=False))
                        keep(turn, "hand_concurrent_seconds", hand.batch(together=True))
                    # where the CPU goes while batches of concurrent requests follow each other
                    batches = 5 * max(repeats, 4)
                    before = _cpu_readings(server.pid)
                    for _ in range(batches):
                        await asyncio.gather(*(client.request(address, body, timeout=30)
                                               for _ in range(n)))
                    cpu.update(_cpu_split(before, _cpu_readings(server.pid), batches * n))

        cpu: Dict[str, float] = {}
        asyncio.run(turns())
    finally:
        hand.close()
        thread.join(30)
        server.terminate()
        server.wait(30)
    return {"seconds": best["concurrent_seconds"], "cpu_seconds": 0.0, "count": n, **best,
            **cpu}


CPU_KEYS = ("cpu_client_us", "cpu_server_us", "cpu_rest_us", "cores", "machine_busy")
"""What :func:`_cpu_split` measures of concurrent requests."""


def _cpu_line(reqs: Dict[str, float]) -> str:
    return (f"client {reqs['cpu_client_us']:.0f} us, server {reqs['cpu_server_us']:.0f} us, "
            f"the rest of the machine (the broker) {reqs['cpu_rest_us']:.0f} us; "
            f"{reqs['machine_busy']:.0%} of {reqs['cores']:.0f} cores busy")


def _cpu_readings(server_pid: int) -> Optional[Dict[str, float]]:
    """CPU seconds so far: this process, the server process, and the whole machine (every
    core, from /proc/stat), with the wall clock; None where /proc cannot tell."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(f) for f in stat.readline().split()[1:]]
        with open(f"/proc/{server_pid}/stat") as proc:
            own = proc.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    busy = sum(fields[:8]) - fields[3] - fields[4]  # (all but idle and iowait)
    return {"wall": time.perf_counter(), "client": time.process_time(),
            "server": (int(own[11]) + int(own[12])) / tick, "machine": busy / tick}


def _cpu_split(before: Optional[Dict[str, float]], after: Optional[Dict[str, float]],
               requests: int) -> Dict[str, float]:
    """CPU microseconds per request of the client, the server and the rest of the machine
    (the broker, mostly) between two readings, the share of the machine's cores busy, and the
    number of cores."""
    if before is None or after is None:
        return {}
    d = {k: after[k] - before[k] for k in after}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
    rest = max(0.0, d["machine"] - d["client"] - d["server"])
    return {"cpu_client_us": d["client"] / requests * 1e6,
            "cpu_server_us": d["server"] / requests * 1e6,
            "cpu_rest_us": rest / requests * 1e6, "cores": float(cores),
            "machine_busy": d["machine"] / (d["wall"] * cores)}


def trial_scaling(url: str, address: str, n: int, size: int, threads: int, verb: str) -> Dict:
    """``threads`` threads sharing one Client, ``n`` calls in all: ``Client.send`` per
    message (``verb`` "send": at-least-once, "send-amo": at-most-once) or ``Client.request``
    ("request", answered by a ``handlers.Responder`` with credit for 100 in its own
    process). Per-call latencies give p50/p99."""
    body = "x" * size
    server = request_reply.start_server("responder-100", url, address) \
        if verb == "request" else None
    per_thread = max(1, n // threads)
    latencies: List[List[float]] = [[] for _ in range(threads)]
    errors: List[BaseException] = []
    try:
        with pe.Client(url, timeout=60) as client:
            if server is not None:
                client.request(address, body, timeout=30)  # reply queue and server ready
            else:
                client.send(address, body, at_most_once=verb == "send-amo", durable=DURABLE)

            def work(k: int) -> None:
                mine = latencies[k]
                try:
                    for _ in range(per_thread):
                        began = time.perf_counter()
                        if server is not None:
                            client.request(address, body, timeout=30)
                        else:
                            client.send(address, body, at_most_once=verb == "send-amo",
                                        durable=DURABLE)
                        mine.append(time.perf_counter() - began)
                except BaseException as exc:  # noqa: BLE001 - reported
                    errors.append(exc)

            pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
            started = now()
            for t in pool:
                t.start()
            for t in pool:
                t.join()
            times = since(started)
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
    if errors:
        raise errors[0]
    flat = sorted(x for mine in latencies for x in mine)
    stats = request_reply.percentiles(flat)
    return _result(times, len(flat), p50_us=stats["p50_us"], p99_us=stats["p99_us"])


def trial_pe_handler_recv(url: str, address: str, n: int, size: int) -> Dict:
    job = _TimedReceiver(f"{url}/{address}", count=n)
    times = handwritten.run_handler(job)
    if job.error is not None:
        raise job.error
    return _result(times, job.received)


class _TimedSeedTxSend(transactions.SeedTxSend):
    opened_at: Optional[Any] = None

    def on_connection_opened(self, event: Any) -> None:
        self.opened_at = now()


class _TimedTxSender(_Timed, handlers.TxSender):
    pass


def trial_hand_tx(url: str, address: str, n: int, size: int, batch: int) -> Dict:
    send = _TimedSeedTxSend(_queue_url(url, address), n, batch, payload(size))
    return _result(handwritten.run_handler(send), send.committed)


def trial_pe_tx_handler(url: str, address: str, n: int, size: int, batch: int) -> Dict:
    job = _TimedTxSender(f"{url}/{address}", itertools.repeat(payload(size), n), batch,
                         durable=DURABLE)
    times = handwritten.run_handler(job)
    if job.error is not None:
        raise job.error
    return _result(times, job.committed)


def trial_pe_transaction(url: str, address: str, n: int, size: int, batch: int) -> Dict:
    body = payload(size)
    client = pe.Client(url)
    started = now()
    try:
        with client.transaction(address) as tx:  # commit() starts the next batch
            for k in range(1, n // batch * batch + 1):
                tx.send(body, durable=DURABLE)
                if k % batch == 0 and k < n // batch * batch:
                    tx.commit()
    finally:  # leaving the block commits the last batch
        client.close()
    return _result(since(started), n // batch * batch)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_kb() -> int:
    """This process's peak RSS since it started (``VmHWM``; ``ru_maxrss`` would count the memory
    of the parent it was forked from)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def trial_pe_consume_memory(url: str, address: str, n: int, size: int) -> Dict:
    """Consume ``n`` messages, sampling RSS; the baseline is taken after the first 5%."""
    client = pe.Client(url)
    started = now()
    count, baseline, peak = 0, 0, 0
    warm = max(1, n // 20)
    try:
        for _ in client.consume(address, idle_timeout=60):
            count += 1
            if count % 1000 == 0 or count == warm:
                rss = _rss_bytes()
                if count == warm:
                    baseline = rss
                peak = max(peak, rss)
            if count == n:
                break
    finally:
        client.close()
    end = _rss_bytes()
    return _result(since(started), count, rss_baseline=baseline,
                   rss_peak_after_baseline=max(peak, end), rss_end=end)


def _non_durable(trial: Callable[..., Dict]) -> Callable[..., Dict]:
    """``trial`` with proton_easy sending non-durable messages, as the peers do (what the
    like-with-like rows of a default run measure)."""
    def run(**kwargs: Any) -> Dict:
        global DURABLE
        saved, DURABLE = DURABLE, False
        try:
            return trial(**kwargs)
        finally:
            DURABLE = saved
    return run


TRIALS: Dict[str, Callable[..., Dict]] = {
    name[len("trial_"):]: fn for name, fn in globals().items() if name.startswith("trial_")
}
TRIALS.update({f"{name}_nd": _non_durable(TRIALS[name]) for name in ("pe_send", "pe_transaction")})
TRIALS.update({f"otel_{job}_{mode}": _with_otel(TRIALS[f"pe_{job}"], mode)
               for job in ("send_many", "send", "consume") for mode in ("off", "noop", "memory")})


# =============================================================================================
# Worker processes: one per setup and body size, fed trials one line of JSON at a time.
# =============================================================================================
def worker_main() -> None:
    """Run trials read from stdin (JSON lines); answer each with one JSON line on stdout."""
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing else may write to the answer channel
    for line in sys.stdin:
        spec = json.loads(line)
        try:
            result = TRIALS[spec["trial"]](**spec["kwargs"])
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            result = {"error": f"{type(exc).__name__}: {exc}",
                      "traceback": traceback.format_exc()}
        result["max_rss_kb"] = peak_rss_kb()
        out.write(json.dumps(result) + "\n")
        out.flush()


class Worker:
    """A worker process (started lazily) for one setup."""

    def __init__(self) -> None:
        self.proc: Optional[subprocess.Popen] = None

    def run(self, trial: str, timeout: float = 300.0, **kwargs: Any) -> Dict:
        if self.proc is None:
            self.proc = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--worker"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"trial": trial, "kwargs": kwargs}) + "\n")
        self.proc.stdin.flush()
        answer: List[str] = []
        reader = threading.Thread(target=lambda: answer.append(self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(timeout)
        if not answer or not answer[0]:
            self.close(kill=True)
            return {"error": f"no answer from the worker within {timeout:g} s"}
        return json.loads(answer[0])

    def close(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.proc = None


# =============================================================================================
# The harness
# =============================================================================================
@dataclass
class Setup:
    """One way of doing a group's job."""

    key: str
    label: str
    trial: str
    slow: bool = False  # one round trip per message: run with fewer messages
    baseline: Optional[str] = None  # "hand" or "blocking" for the reference rows


@dataclass
class Cell:
    """One setup at one body size: its trials and what they add up to."""

    group: str
    setup: Setup
    size: int
    n: int
    trials: List[Dict] = field(default_factory=list)

    @property
    def good(self) -> List[Dict]:
        return [t for t in self.trials if "error" not in t and t.get("count")]

    @property
    def best_rate(self) -> Optional[float]:
        rates = [t["count"] / t["seconds"] for t in self.good]
        return max(rates) if rates else None

    @property
    def cpu_us(self) -> Optional[float]:
        costs = [t["cpu_seconds"] / t["count"] * 1e6 for t in self.good]
        return min(costs) if costs else None

    @property
    def peak_rss_mb(self) -> Optional[float]:
        values = [t["max_rss_kb"] for t in self.trials if "max_rss_kb" in t]
        return max(values) / 1024 if values else None

    def as_json(self) -> Dict:
        return {"group": self.group, "setup": self.setup.key, "label": self.setup.label,
                "size": self.size, "messages": self.n, "best_msg_per_s": self.best_rate,
                "client_cpu_us_per_msg": self.cpu_us, "peak_rss_mb": self.peak_rss_mb,
                "trials": self.trials}


SEND_SETUPS = [
    Setup("hand", "hand-written MessagingHandler (seed 3.3)", "hand_send", baseline="hand"),
    Setup("blocking", "BlockingConnection, send() per message", "blocking_send", slow=True,
          baseline="blocking"),
    Setup("pe_send_many", "proton_easy Client.send_many", "pe_send_many"),
    Setup("pe_handler", "proton_easy handlers.Sender", "pe_handler_send"),
    Setup("pe_send", "proton_easy Client.send per message", "pe_send", slow=True),
]
SEND_AMO_SETUPS = [  # at-most-once sends per call are fast: the full count for them too
    Setup("hand", "hand-written MessagingHandler (seed 3.12)", "hand_send", baseline="hand"),
    Setup("blocking", "BlockingConnection, send() per message", "blocking_send",
          baseline="blocking"),
    Setup("pe_send_many", "proton_easy Client.send_many", "pe_send_many"),
    Setup("pe_handler", "proton_easy handlers.Sender", "pe_handler_send"),
    Setup("pe_send", "proton_easy Client.send per message", "pe_send"),
]
C_SEND_SETUP = Setup("c", "proton C engine (send example)", "c_send", baseline="c")
C_RECEIVE_SETUP = Setup("c", "proton C engine (receive example)", "c_recv", baseline="c")
SCALING_THREADS = (1, 4, 16)
SCALING_VERBS = ("send", "send-amo", "request")
TX_SETUPS = [
    Setup("hand", "hand-written TxSend (seed 3.8)", "hand_tx", baseline="hand"),
    Setup("pe_transaction", "proton_easy Client.transaction", "pe_transaction"),
    Setup("pe_handler", "proton_easy handlers.TxSender", "pe_tx_handler"),
]
LIKE_WITH_LIKE = {  # run when proton_easy sends durable messages (its default), peers not
    "send": Setup("pe_send_nd", "proton_easy Client.send per message, non-durable",
                  "pe_send_nd", slow=True),
    "tx": Setup("pe_transaction_nd", "proton_easy Client.transaction, non-durable",
                "pe_transaction_nd"),
}
"""The rows that compare proton_easy with its non-durable peers like with like, in a run
where proton_easy's other rows send durable messages."""


def like_with_like(kind: str) -> List[Setup]:
    """The like-with-like setup of a group (``kind``: "send" or "tx"), if this run needs it."""
    return [LIKE_WITH_LIKE[kind]] if DURABLE is None else []
RECEIVE_SETUPS = [
    Setup("hand", "hand-written MessagingHandler (seed 3.4)", "hand_recv", baseline="hand"),
    Setup("blocking", "BlockingConnection, receive()+accept()", "blocking_recv", slow=True,
          baseline="blocking"),
    Setup("pe_receive", "proton_easy Client.receive", "pe_receive"),
    Setup("pe_consume", "proton_easy Client.consume", "pe_consume"),
    Setup("pe_handler", "proton_easy handlers.Receiver", "pe_handler_recv"),
]


ASYNC_SEND_SETUPS = [
    Setup("pe_send_many", "proton_easy Client.send_many (blocking)", "pe_send_many",
          baseline="blocking"),
    Setup("aio_send_many", "proton_easy aio.Client.send_many", "aio_send_many"),
]
ASYNC_RECEIVE_SETUPS = [
    Setup("pe_receive", "proton_easy Client.receive (blocking)", "pe_receive",
          baseline="blocking"),
    Setup("aio_receive", "proton_easy aio.Client.receive", "aio_receive"),
    Setup("pe_consume", "proton_easy Client.consume (blocking)", "pe_consume"),
    Setup("aio_consume", "proton_easy aio.Client.consume", "aio_consume"),
]
OTEL_SETUPS = [
    Setup(f"{job}_{mode}", f"{label}, tracing {what}", f"otel_{job}_{mode}",
          slow=job == "send", baseline="hand" if mode == "off" else None)
    for job, label in (("send_many", "Client.send_many"), ("send", "Client.send"),
                       ("consume", "Client.consume"))
    for mode, what in (("off", "off"), ("noop", "on, no-op exporter"),
                       ("memory", "on, in-memory exporter"))
]
ASYNC_SIZES = (100,)
ASYNC_RECEIVE_MESSAGES = 10000  # as many as the receive group takes: throughput, not set-up
ASYNC_REQUESTS = 100


@dataclass
class Config:
    """Message counts per trial, rounds, sizes."""

    rounds: int
    fast: Dict[int, int]  # body size -> messages for pipelined setups
    slow: Dict[int, int]  # body size -> messages for one-round-trip-per-message setups
    memory_messages: int
    latency_requests: int
    latency_warmup: int
    tx_messages: int
    perf_seconds: int
    warmup_messages: int
    scaling_calls: Dict[str, int]  # verb -> calls in all, per thread count

    @classmethod
    def full(cls) -> Config:
        return cls(rounds=3, fast={100: 10000, 10240: 4000}, slow={100: 600, 10240: 400},
                   memory_messages=200_000, latency_requests=1000, latency_warmup=100,
                   tx_messages=2000, perf_seconds=10, warmup_messages=30000,
                   scaling_calls={"send": 1600, "send-amo": 16000, "request": 1600})

    @classmethod
    def quick(cls) -> Config:
        return cls(rounds=1, fast={100: 200, 10240: 100}, slow={100: 20, 10240: 20},
                   memory_messages=2000, latency_requests=20, latency_warmup=5,
                   tx_messages=200, perf_seconds=0, warmup_messages=0,
                   scaling_calls={"send": 32, "send-amo": 64, "request": 32})


class Bench:
    """Runs the groups against one broker and collects what they measured."""

    def __init__(self, url: str, config: Config, sizes: Sequence[int]) -> None:
        self.url = url
        self.config = config
        self.sizes = list(sizes)
        self.cells: List[Cell] = []
        self.titles: Dict[str, str] = {}
        self.rounds_of: Dict[str, int] = {}  # group -> its rounds
        self.extra: Dict[str, Any] = {}
        self.notes: Dict[str, str] = {}  # setup key -> why it was left out of this run
        self.run_id = uuid.uuid4().hex[:6]
        self._names = itertools.count(1)

    def address(self, kind: str) -> str:
        return f"bench-{self.run_id}-{kind}-{next(self._names)}"

    def prefill(self, address: str, n: int, size: int) -> None:
        with pe.Client(self.url, timeout=60) as client:
            client.send_many(address, itertools.repeat(payload(size), n), timeout=120,
                             durable=DURABLE)

    def drop(self, address: str) -> None:
        """Delete a queue and whatever is left on it, through Artemis's management address
        (left alone, the messages of every send trial would fill the broker's heap)."""
        op = pe.Message(json.dumps([address, True, True]), properties={
            "_AMQ_ResourceName": "broker", "_AMQ_OperationName": "destroyQueue"})
        try:
            with pe.Client(self.url, timeout=30) as client:
                reply = client.request("activemq.management", op, timeout=30)
            if not reply.properties.get("_AMQ_OperationSucceeded"):
                print(f"  (could not delete queue {address}: {reply.body})", flush=True)
        except pe.AMQPError as exc:
            print(f"  (could not delete queue {address}: {exc})", flush=True)

    def warm_up(self) -> None:
        """Push messages through the broker first, so that its JIT has compiled the paths."""
        n = self.config.warmup_messages
        if not n:
            return
        address = self.address("warmup")
        with pe.Client(self.url, timeout=60) as client:
            for size in self.sizes:
                client.send_many(address, itertools.repeat(payload(size), n // 2), timeout=120,
                                 durable=DURABLE)
                client.send_many(address, itertools.repeat(payload(size), n // 4),
                                 at_most_once=True, timeout=120)
                got = 0
                for _ in client.consume(address, idle_timeout=5, window=100):
                    got += 1
                    if got == n // 2 + n // 4:
                        break
        self.drop(address)

    # -- throughput groups -------------------------------------------------------------------
    def throughput(self, group: str, title: str, setups: Sequence[Setup],
                   counts: Optional[Dict[int, int]] = None, *,
                   sizes: Optional[Sequence[int]] = None, receiving: bool = False,
                   rounds: Optional[int] = None, **kwargs: Any) -> None:
        """Run each setup at each body size, taking turns, ``rounds`` times (default: the
        config's)."""
        self.titles[group] = title
        rounds = self.rounds_of[group] = self.config.rounds if rounds is None else rounds
        receiving = receiving or group == "receive"
        for size in self.sizes if sizes is None else sizes:
            cells = [Cell(group, s, size, counts[size] if counts else
                          (self.config.slow if s.slow else self.config.fast)[size])
                     for s in setups]
            self.cells.extend(cells)
            workers = {c.setup.key: Worker() for c in cells}
            try:
                for rnd in range(rounds):
                    shift = rnd % len(cells)
                    for cell in cells[shift:] + cells[:shift]:
                        address = self.address(group)
                        if receiving:
                            self.prefill(address, cell.n, size)
                        result = workers[cell.setup.key].run(
                            cell.setup.trial, url=self.url, address=address, n=cell.n,
                            size=size, **kwargs)
                        self.drop(address)
                        cell.trials.append(result)
                        _progress(cell, result)
            finally:
                for worker in workers.values():
                    worker.close()

    # -- asyncio ---------------------------------------------------------------------------------
    def asyncio_face(self) -> None:
        """proton_easy.aio against the blocking verbs (100 B only, to keep the run short), and
        ``ASYNC_REQUESTS`` concurrent requests from tasks against as many sequential ones."""
        sizes = [s for s in ASYNC_SIZES if s in self.sizes] or self.sizes[:1]
        # (short trials, judged against each other: more rounds than the other groups, so
        # that one slow moment of the broker decides less)
        rounds = self.config.rounds * 5 // 3
        self.throughput("aio-send", "asyncio: send_many, at-least-once, vs the blocking verb",
                        ASYNC_SEND_SETUPS, sizes=sizes, rounds=rounds, at_most_once=False)
        n = min(ASYNC_RECEIVE_MESSAGES, self.config.fast[sizes[0]])
        self.throughput("aio-receive", "asyncio: receive and consume, vs the blocking verbs",
                        ASYNC_RECEIVE_SETUPS, counts={s: n for s in sizes}, sizes=sizes,
                        receiving=True, rounds=rounds)
        n = min(ASYNC_REQUESTS, max(10, self.config.latency_requests))
        worker = Worker()
        trials = []
        try:
            for _ in range(self.config.rounds):
                address = self.address("aio-requests")
                trials.append(worker.run("aio_requests", url=self.url, address=address,
                                         n=n, size=100))
                self.drop(address)
        finally:
            worker.close()
        good = [t for t in trials if "error" not in t]
        if not good:
            self.extra["aio_requests"] = trials[0] if trials else {"error": "no trial"}
            print(f"  aio requests: {self.extra['aio_requests'].get('error')}", flush=True)
            return
        keys = ("sequential_seconds", "blocking_sequential_seconds", "concurrent_seconds",
                "hand_sequential_seconds", "hand_concurrent_seconds")
        best = {k: min(t[k] for t in good) for k in keys}
        # the CPU per request, the cheapest round's: what a client that cost nothing would
        # still leave to the server and the broker on these cores
        costed = [t for t in good if "cpu_client_us" in t]
        if costed:
            cheapest = min(costed, key=lambda t: t["cpu_server_us"] + t["cpu_rest_us"])
            best.update({k: cheapest[k] for k in CPU_KEYS})
            best["free_client_seconds"] = ((cheapest["cpu_server_us"] + cheapest["cpu_rest_us"])
                                           * n / cheapest["cores"] / 1e6)
        self.extra["aio_requests"] = {"requests": n, **best,
                                      "speedup": best["sequential_seconds"]
                                      / best["concurrent_seconds"]}
        print(f"  aio requests: {n} awaited one by one {best['sequential_seconds'] * 1000:.0f} "
              f"ms (blocking {best['blocking_sequential_seconds'] * 1000:.0f} ms), {n} "
              f"concurrent tasks {best['concurrent_seconds'] * 1000:.1f} ms; hand-written "
              f"client {best['hand_sequential_seconds'] * 1000:.0f} ms one by one, "
              f"{best['hand_concurrent_seconds'] * 1000:.1f} ms at once", flush=True)
        if "free_client_seconds" in best:
            print(f"  aio requests, CPU per request: {_cpu_line(best)}", flush=True)

    # -- request/reply -------------------------------------------------------------------------
    def latency(self) -> None:
        """Request/reply round trips (benchmarks/request_reply.py), setups taking turns."""
        print("  request/reply: "
              f"{self.config.latency_requests} sequential requests per setup...", flush=True)
        try:
            results = request_reply.measure(self.url, self.config.latency_requests,
                                            self.config.latency_warmup)
        except (SystemExit, Exception) as exc:  # noqa: BLE001 - reported, not fatal
            self.extra["latency"] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"  request/reply: {self.extra['latency']['error']}", flush=True)
            return
        base = request_reply.percentiles(results[request_reply.SETUPS[0]])
        stats = {}
        for name in request_reply.SETUPS:
            row = request_reply.percentiles(results[name])
            row["p50_vs_hand"] = row["p50_us"] / base["p50_us"]
            stats[name] = row
        self.extra["latency"] = stats

    # -- memory ------------------------------------------------------------------------------
    def memory(self) -> None:
        n = self.config.memory_messages
        address = self.address("memory")
        filler = threading.Thread(target=self.prefill, args=(address, n, 100), daemon=True)
        filler.start()  # the consumer follows the producer
        worker = Worker()
        try:
            result = worker.run("pe_consume_memory", timeout=900, url=self.url,
                                address=address, n=n, size=100)
        finally:
            worker.close()
            filler.join(120)
            self.drop(address)
        self.extra["memory"] = result
        if "error" in result:
            print(f"  memory: {result['error']}", flush=True)
        else:
            growth = (result["rss_peak_after_baseline"] - result["rss_baseline"]) / 2**20
            print(f"  memory: consumed {result['count']:,} messages, RSS growth "
                  f"{growth:.1f} MB after the first 5%", flush=True)

    # -- OpenTelemetry ---------------------------------------------------------------------------
    def otel(self) -> None:
        """Each job with tracing off, on with a no-op exporter, on with the in-memory one
        ("vs hand": against the same job with tracing off)."""
        for job in ("send_many", "send", "consume"):
            setups = [s for s in OTEL_SETUPS if s.key.rsplit("_", 1)[0] == job]
            kwargs: Dict[str, Any] = {} if job == "consume" else {"at_most_once": False}
            self.throughput(f"otel-{job}", f"OpenTelemetry: {job} (vs hand: vs tracing off)",
                            setups, receiving=job == "consume", **kwargs)

    # -- threads sharing one Client --------------------------------------------------------------
    def scaling(self) -> None:
        """1, 4 and 16 threads sharing one Client: per-call send and request, msg/s and p99
        (100 B; the best of the rounds by msg/s)."""
        table: Dict[str, Dict[int, Dict]] = {}
        worker = Worker()
        try:
            for verb in SCALING_VERBS:
                for threads in SCALING_THREADS:
                    best: Optional[Dict] = None
                    for _ in range(self.config.rounds):
                        address = self.address("scaling")
                        result = worker.run("scaling", url=self.url, address=address,
                                            n=self.config.scaling_calls[verb], size=100,
                                            threads=threads, verb=verb)
                        self.drop(address)
                        if "error" in result:
                            best = best or result
                            continue
                        if best is None or "error" in best or \
                                result["count"] / result["seconds"] > \
                                best["count"] / best["seconds"]:
                            best = result
                    assert best is not None
                    table.setdefault(verb, {})[threads] = best
                    text = (f"ERROR {best['error']}" if "error" in best else
                            f"{best['count'] / best['seconds']:>9,.0f} msg/s, "
                            f"p99 {best['p99_us']:,.0f} us")
                    print(f"  scaling   {verb:<9} {threads:>2} thread(s)  {text}", flush=True)
        finally:
            worker.close()
        self.extra["scaling"] = {verb: {str(k): v for k, v in rows.items()}
                                 for verb, rows in table.items()}

    # -- Artemis's own client ----------------------------------------------------------------
    def artemis_perf(self) -> None:
        seconds = self.config.perf_seconds
        if not seconds:
            return
        address = self.address("perf")
        self.extra["artemis_perf"] = artemis_perf(self.url, address, seconds)
        self.drop(address)
        result = self.extra["artemis_perf"]
        if "error" in result:
            print(f"  artemis perf client: {result['error']}", flush=True)
        else:
            print(f"  artemis perf client: {result['msg_per_s']:,.0f} msg/s", flush=True)


def _progress(cell: Cell, result: Dict) -> None:
    if "error" in result:
        text = f"ERROR {result['error']}"
    else:
        text = f"{result['count'] / result['seconds']:>9,.0f} msg/s"
    print(f"  {cell.group:<9} {_size(cell.size):>6}  {cell.setup.label:<44} {text}", flush=True)


def artemis_perf(url: str, queue: str, seconds: int, size: int = 100) -> Dict:
    """Run ``artemis perf client`` (Qpid JMS over AMQP) against the broker; its msg/s."""
    from urllib.parse import unquote, urlsplit

    from proton_easy.testing import artemis_home

    try:
        home = artemis_home(fetch=False)
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        return {"error": f"no Artemis distribution: {exc}"}
    parts = urlsplit(url)
    report = tempfile.NamedTemporaryFile(prefix="artemis-perf-", suffix=".json", delete=False)
    report.close()
    cmd = [str(home / "bin" / "artemis"), "perf", "client", "--protocol", "amqp",
           "--url", f"amqp://{parts.hostname}:{parts.port}",
           "--user", unquote(parts.username or ""), "--password", unquote(parts.password or ""),
           "--max-pending", "100", "--duration", str(seconds), "--message-size", str(size),
           "--silent", "--json", report.name, f"queue://{queue}"]
    shown = " ".join("***" if i and cmd[i - 1] == "--password" else part
                     for i, part in enumerate(cmd))
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=seconds + 120, check=False)
        with open(report.name) as handle:
            samples = json.load(handle)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "command": shown}
    finally:
        os.unlink(report.name)
    summary = next((s for s in samples if s.get("sampleType") == "summary"), None)
    if proc.returncode != 0 or summary is None:
        return {"error": f"exit {proc.returncode}: {proc.stdout[-500:]}", "command": shown}
    return {"command": shown.replace(str(home), "$ARTEMIS_HOME"), "message_size": size,
            "duration_s": seconds, "msg_per_s": summary["totalReceived"] / seconds,
            "sent": summary["totalSent"], "received": summary["totalReceived"],
            "transfer_us_p50": summary["totalTransferTime"]["50"] / 1000,
            "transfer_us_p99": summary["totalTransferTime"]["99"] / 1000}


# =============================================================================================
# Reporting
# =============================================================================================
def _size(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 and size % 1024 == 0 else f"{size} B"


def _fmt(value: Optional[float], spec: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, spec) + suffix


def summarize(bench: Bench) -> List[Dict]:
    """Ratios of each proton_easy setup against the hand-written ones of its group."""
    rows = []
    for cell in bench.cells:
        refs = {c.setup.baseline: c.best_rate for c in bench.cells
                if c.group == cell.group and c.size == cell.size and c.setup.baseline}
        rate = cell.best_rate
        row = cell.as_json()
        row.pop("trials")
        for ref, ref_rate in refs.items():
            row[f"vs_{ref}"] = rate / ref_rate if rate and ref_rate else None
        rows.append(row)
    return rows


def print_report(bench: Bench, rows: List[Dict]) -> None:
    rounds = bench.config.rounds
    print()
    print("msg/s: best round; vs hand / vs Blocking / vs C: ratio of msg/s to the hand-written "
          "MessagingHandler / BlockingConnection /\nproton C engine setup of the same run; "
          "CPU us/msg: the client process's CPU time (all threads) per message;\npeak RSS: "
          "the client process's.\n")
    header = (f"{'setup':<44} {'body':>6} {'msg/s':>9} {'vs hand':>8} {'vs Blocking':>11} "
              f"{'vs C':>6} {'CPU us/msg':>10} {'peak RSS':>9}")
    for group, title in bench.titles.items():
        group_rows = [r for r in rows if r["group"] == group]
        if not group_rows:
            continue
        print(f"== {title}: best of {bench.rounds_of.get(group, rounds)} round(s)")
        print(header)
        for row in group_rows:
            print(f"{row['label']:<44} {_size(row['size']):>6} "
                  f"{_fmt(row['best_msg_per_s'], ',.0f'):>9} "
                  f"{_fmt(row.get('vs_hand'), '.2f', 'x'):>8} "
                  f"{_fmt(row.get('vs_blocking'), '.2f', 'x'):>11} "
                  f"{_fmt(row.get('vs_c'), '.2f', 'x'):>6} "
                  f"{_fmt(row['client_cpu_us_per_msg'], '.0f'):>10} "
                  f"{_fmt(row['peak_rss_mb'], '.0f', ' MB'):>9}")
        print()
    latency = bench.extra.get("latency")
    if latency and "error" not in latency:
        print(f"== request/reply round trip ({bench.config.latency_requests} sequential "
              "requests per setup, taking turns; servers in their own processes)")
        print(f"{'setup (client + server)':<44} {'p50 us':>9} {'p99 us':>9} {'p50 vs hand':>12}")
        for name, row in latency.items():
            print(f"{name:<44} {row['p50_us']:>9,.0f} {row['p99_us']:>9,.0f} "
                  f"{row['p50_vs_hand']:>11.2f}x")
        print()
    memory = bench.extra.get("memory")
    if memory and "error" not in memory:
        growth = (memory["rss_peak_after_baseline"] - memory["rss_baseline"]) / 2**20
        print(f"== memory: Client.consume of {memory['count']:,} messages (100 B): RSS "
              f"{memory['rss_baseline'] / 2**20:.0f} MB after the first 5%, peak "
              f"{memory['rss_peak_after_baseline'] / 2**20:.0f} MB, growth {growth:.1f} MB; "
              f"{memory['count'] / memory['seconds']:,.0f} msg/s")
    reqs = bench.extra.get("aio_requests")
    if reqs and "error" not in reqs:
        ms = {k: v * 1000 for k, v in reqs.items() if k.endswith("_seconds")}
        print(f"== asyncio: {reqs['requests']} requests from as many tasks on one aio.Client "
              f"took {ms['concurrent_seconds']:,.1f} ms; the same number awaited one after "
              f"the other {ms['sequential_seconds']:,.0f} ms ({reqs['speedup']:.1f}x), "
              f"blocking Client.request calls {ms['blocking_sequential_seconds']:,.0f} ms "
              f"({ms['blocking_sequential_seconds'] / ms['concurrent_seconds']:.1f}x)\n"
              f"   the hand-written proton client, same server: "
              f"{ms['hand_concurrent_seconds']:,.1f} ms at once, "
              f"{ms['hand_sequential_seconds']:,.0f} ms one by one "
              f"({ms['hand_sequential_seconds'] / ms['hand_concurrent_seconds']:.1f}x)")
        if "free_client_seconds" in reqs:
            print(f"   CPU per request while batches of them follow each other: "
                  f"{_cpu_line(reqs)}\n"
                  f"   a client costing nothing would leave the server and the broker "
                  f"{ms['free_client_seconds']:,.1f} ms of these cores' work per batch: at "
                  f"best {ms['sequential_seconds'] / ms['free_client_seconds']:.1f}x")
    scaling = bench.extra.get("scaling")
    if scaling:
        print("\n== threads sharing one Client (100 B, per-call latency; best of "
              f"{rounds} round(s) by msg/s)")
        print(f"{'verb':<34} " + " ".join(f"{f'{t} thr msg/s':>13} {'p99 us':>8}"
                                           for t in SCALING_THREADS))
        labels = {"send": "Client.send, at-least-once", "send-amo": "Client.send, at-most-once",
                  "request": "Client.request (handlers.Responder)"}
        for verb, cols in scaling.items():
            cells = []
            for t in SCALING_THREADS:
                r = cols.get(str(t), {})
                ok = "error" not in r and r.get("count")
                cells.append(f"{_fmt(r['count'] / r['seconds'] if ok else None, ',.0f'):>13} "
                             f"{_fmt(r.get('p99_us') if ok else None, ',.0f'):>8}")
            print(f"{labels.get(verb, verb):<34} " + " ".join(cells))
    print_goals(bench, rows)
    perf = bench.extra.get("artemis_perf")
    if perf and "error" not in perf:
        print(f"== the broker's own ceiling: artemis perf client (Qpid JMS, AMQP, "
              f"--max-pending 100, {perf['message_size']} B, {perf['duration_s']} s): "
              f"{perf['msg_per_s']:,.0f} msg/s, transfer p50 {perf['transfer_us_p50']:,.0f} us")


def _row(rows: List[Dict], group: str, setup: str, size: int = 100) -> Optional[Dict]:
    return next((r for r in rows if r["group"] == group and r["setup"] == setup
                 and r["size"] == size), None)


def goals(bench: Bench, rows: List[Dict]) -> List[Dict]:
    """The figures the performance and asyncio issues ask for, from this run: each job next to
    its peer, with the ratio, the goal, the client's CPU per message and its peak RSS."""
    out: List[Dict] = []

    def add(job: str, group: str, setup: str, peer_label: str, peer: str,
            goal: Optional[float], peer_group: Optional[str] = None) -> None:
        mine, ref = _row(rows, group, setup), _row(rows, peer_group or group, peer)
        if mine is None:
            return
        rate, ref_rate = mine["best_msg_per_s"], ref["best_msg_per_s"] if ref else None
        out.append({"job": job, "msg_per_s": rate, "peer": peer_label, "peer_msg_per_s":
                    ref_rate, "ratio": rate / ref_rate if rate and ref_rate else None,
                    "goal": "-" if goal is None else f">= {goal:g}x",
                    "met": None if goal is None else bool(rate and ref_rate
                                                          and rate / ref_rate >= goal),
                    "cpu_us_per_msg": mine["client_cpu_us_per_msg"],
                    "peak_rss_mb": mine["peak_rss_mb"],
                    "note": None if ref is not None else bench.notes.get(peer, "not run")})

    add("Client.send per call, at-most-once", "send-amo", "pe_send",
        "BlockingConnection send()", "blocking", 1.0)
    durable = DURABLE is None  # proton_easy's own rows send durable messages, the peers not
    add("Client.send per call, at-least-once", "send", "pe_send_nd" if durable else "pe_send",
        "BlockingConnection send()", "blocking", 1.2)
    if durable:
        add("  the same, durable (the default)", "send", "pe_send",
            "BlockingConnection send()", "blocking", None)
    add("Client.consume", "receive", "pe_consume", "Client.receive", "pe_receive", 0.6)
    add("Client.consume", "receive", "pe_consume", "BlockingConnection", "blocking", 3.0)
    add("Client.transaction, batches of 10", "tx-10",
        "pe_transaction_nd" if durable else "pe_transaction", "hand-written TxSend", "hand", 1.1)
    if durable:
        add("  the same, durable (the default)", "tx-10", "pe_transaction",
            "hand-written TxSend", "hand", None)
    add("Client.send_many", "send", "pe_send_many", "C engine send", "c", 0.6)
    add("Client.receive", "receive", "pe_receive", "C engine receive", "c", 0.5)
    latency = bench.extra.get("latency")
    if latency and "error" not in latency:
        mine = latency.get("Client.request + serve")
        hand = latency.get(request_reply.SETUPS[0])
        if mine and hand:
            ratio = mine["p50_us"] / hand["p50_us"]
            out.append({"job": "Client.request + Client.serve, p50 us", "msg_per_s":
                        mine["p50_us"], "peer": "hand-written pair", "peer_msg_per_s":
                        hand["p50_us"], "ratio": ratio, "goal": "<= 1.05x",
                        "met": ratio <= 1.05, "cpu_us_per_msg": None, "peak_rss_mb": None,
                        "note": None})
    # the asyncio issue's: each async verb within 10% of its blocking one, in the same run
    add("aio.send_many", "aio-send", "aio_send_many", "Client.send_many", "pe_send_many", 0.9)
    add("aio.receive", "aio-receive", "aio_receive", "Client.receive", "pe_receive", 0.9)
    add("aio.consume", "aio-receive", "aio_consume", "Client.consume", "pe_consume", 0.9)
    reqs = bench.extra.get("aio_requests")
    if reqs and "error" not in reqs:
        n = reqs["requests"]
        ms = {k: v * 1000 for k, v in reqs.items() if k.endswith("_seconds")}

        def req_row(job: str, value: float, peer: str, peer_value: float,
                    goal: Optional[float]) -> None:
            out.append({"job": job, "msg_per_s": value, "peer": peer,
                        "peer_msg_per_s": peer_value, "ratio": peer_value / value,
                        "goal": "-" if goal is None else f">= {goal:g}x",
                        "met": None if goal is None else peer_value / value >= goal,
                        "cpu_us_per_msg": None, "peak_rss_mb": None, "note": None})

        req_row(f"{n} aio.request tasks at once, ms", ms["concurrent_seconds"],
                f"{n} awaited one by one", ms["sequential_seconds"], 10)
        req_row("  the same, ms", ms["concurrent_seconds"],
                f"{n} blocking Client.request", ms["blocking_sequential_seconds"], None)
        req_row(f"  hand-written client, {n} at once, ms", ms["hand_concurrent_seconds"],
                "its own, one by one", ms["hand_sequential_seconds"], None)
        if "free_client_seconds" in ms:
            req_row(f"  a client costing nothing, {n}, ms", ms["free_client_seconds"],
                    f"{n} awaited one by one", ms["sequential_seconds"], None)
    return out


def print_goals(bench: Bench, rows: List[Dict]) -> None:
    table = goals(bench, rows)
    bench.extra["goals"] = table
    if not table:
        return
    print("\n== the goals, from this run (100 B; CPU and RSS: the proton_easy client's)")
    if DURABLE is None:
        print("   (proton_easy sends durable messages, its default, and so does the C engine "
              "here; the hand-written and\n   BlockingConnection peers send non-durable ones, "
              "so the send and transaction goals are judged\n   on proton_easy's non-durable "
              "rows, like with like; its durable rows are shown under them)")
    else:
        print("   (--non-durable: proton_easy sends non-durable messages, as its peers do)")
    print(f"{'job':<38} {'value':>9} {'peer':<26} {'peer':>9} {'ratio':>7} {'goal':>8} "
          f"{'met':>4} {'CPU us':>7} {'RSS MB':>7}")
    for r in table:
        num = ',.1f' if r['job'].endswith(', ms') else ',.0f'  # (a batch's ms: 6.2, not 6)
        print(f"{r['job']:<38} {_fmt(r['msg_per_s'], num):>9} {r['peer']:<26} "
              f"{_fmt(r['peer_msg_per_s'], num):>9} {_fmt(r['ratio'], '.2f', 'x'):>7} "
              f"{r['goal']:>8} {('-' if r['met'] is None else 'yes' if r['met'] else 'no'):>4} "
              f"{_fmt(r['cpu_us_per_msg'], '.0f'):>7} {_fmt(r['peak_rss_mb'], '.0f'):>7}"
              + (f"  ({r['note']})" if r.get("note") else ""))


def machine_info() -> Dict:
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "proton": getattr(proton, "VERSION", None),
            "proton_easy": pe.__version__}
    try:
        info["loadavg_start"] = os.getloadavg()
    except OSError:
        pass
    return info


# =============================================================================================
def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="an already-running broker: amqp://user:pw@host:port "
                        "(default: start a local Artemis)")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny counts, 1 round")
    parser.add_argument("--non-durable", action="store_true",
                        help="proton_easy sends non-durable messages, like the hand-written "
                        "peers (default: its own default, durable when at-least-once)")
    parser.add_argument("--rounds", type=int, help="rounds per group (full: 3)")
    parser.add_argument("--only", help=f"comma-separated groups: {','.join(GROUPS)} "
                        f"({', '.join(OPT_IN)}: only when named here)")
    parser.add_argument("--sizes", help="comma-separated body sizes in bytes (100,10240)")
    parser.add_argument("--perf-seconds", type=int,
                        help="duration of artemis perf client, 0 to skip (full: 10)")
    parser.add_argument("--json", default="bench-results.json", help="where to write results")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main()
        return 0
    if args.non_durable:  # the workers (processes of their own) read it at import
        os.environ["PROTON_EASY_BENCH_DURABLE"] = "no"
        global DURABLE
        DURABLE = False  # (and the report says so)

    config = Config.quick() if args.quick else Config.full()
    if args.rounds:
        config.rounds = args.rounds
    if args.perf_seconds is not None:
        config.perf_seconds = args.perf_seconds
    groups = args.only.split(",") if args.only else [g for g in GROUPS if g not in OPT_IN]
    unknown = set(groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown group(s): {', '.join(sorted(unknown))}")
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(SIZES)
    config.fast = {s: config.fast.get(s, config.fast[100]) for s in sizes}
    config.slow = {s: config.slow.get(s, config.slow[100]) for s in sizes}

    began = time.monotonic()
    info = machine_info()  # the load average before the run
    broker = None
    url = args.url
    if url is None:
        from proton_easy.testing import ArtemisBroker

        print("starting a local Artemis (stock JVM options)...", flush=True)
        broker = ArtemisBroker(java_options=())
        broker.start()
        url = broker.url
    c_ok, c_why = cengine.available()
    if not c_ok:
        print(f"(no C engine column: {c_why})", flush=True)
    try:
        bench = Bench(url, config, sizes)
        if not c_ok:
            bench.notes["c"] = c_why
        bench.warm_up()
        if "send" in groups:
            bench.throughput("send", "send, at-least-once",
                             SEND_SETUPS + like_with_like("send")
                             + ([C_SEND_SETUP] if c_ok else []), at_most_once=False)
        if "send-amo" in groups:
            bench.throughput("send-amo", "send, at-most-once", SEND_AMO_SETUPS,
                             at_most_once=True)
        if "receive" in groups:
            bench.throughput("receive", "receive (at-least-once, queue filled beforehand)",
                             RECEIVE_SETUPS + ([C_RECEIVE_SETUP] if c_ok else []))
        if "asyncio" in groups:
            bench.asyncio_face()
        if "transactions" in groups:
            for batch in (10, 100):
                bench.throughput(f"tx-{batch}", f"transactional send, batches of {batch}",
                                 TX_SETUPS + like_with_like("tx"),
                                 counts={s: config.tx_messages for s in sizes},
                                 batch=batch)
        if "latency" in groups:
            bench.latency()
        if "scaling" in groups:
            bench.scaling()
        if "memory" in groups:
            bench.memory()
        if "perf" in groups:
            bench.artemis_perf()
        if "otel" in groups:
            bench.otel()
    finally:
        if broker is not None:
            broker.stop()
    if "failover" in groups:  # HA pairs of its own (the single broker is stopped by now)
        import failover

        print("\nfailover time: kill -9 of the primary until the backup accepts a send",
              flush=True)
        bench.extra["failover"] = [failover.measure(mode, 1 if args.quick else 5)
                                   for mode in ("shared-store", "replication")]
        for r in bench.extra["failover"]:
            print(f"  {r['mode']:<13} p50 {r['p50_s']:.2f} s, max {r['max_s']:.2f} s "
                  f"over {r['kills']} kills", flush=True)
    rows = summarize(bench)
    print_report(bench, rows)
    try:
        info["loadavg_end"] = os.getloadavg()
    except OSError:
        pass
    results = {"machine": info, "broker": "local Artemis, stock JVM options" if broker else
               "external", "command": " ".join([os.path.basename(sys.executable),
                                                "benchmarks/run.py", *(argv or sys.argv[1:])]),
               "config": config.__dict__, "seconds": time.monotonic() - began,
               "results": rows, "cells": [c.as_json() for c in bench.cells], **bench.extra}
    with open(args.json, "w") as handle:
        json.dump(results, handle, indent=1)
    print(f"\nwrote {args.json} ({time.monotonic() - began:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
