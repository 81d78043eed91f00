"""Artemis HA pairs and clusters: every job carries on through a kill -9 of the primary and
through the fail-back, with only the primary's URL given (the client learns the backup from
the broker's ``failover-server-list``) and with ``urls=``; and a cluster shares and
redistributes a queue's messages, losing nothing durable when a node dies.

With the brokers in Docker (``PROTON_EASY_BROKER=docker``) the pairs and clusters run in
containers, and only the tests marked ``ha_docker`` run (see tests/conftest.py)."""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
import time
import uuid
from typing import Any, Callable, Dict, Iterator, List, Optional, Set

import pytest
from proton.reactor import Container

import proton_easy as pe
from proton_easy.handlers import Receiver, Sender
from proton_easy.testing import ArtemisCluster, ArtemisHAPair
from proton_easy.testing._cluster import ACTIVE_LINE, REPLICA_SYNCED_LINE, _node_log

SEND = 50_000
"""Durable messages of the send_many that the kill interrupts."""
CONSUME = 20_000
"""Messages of the queue that a consume is taking when the primary dies."""
TX_SOURCE = 10_000
"""Messages of the transactions' source queue (10 per transaction): more than the loop
moves while the test runs."""
WAIT = 180.0
"""Seconds a step may take before the test calls it a hang (never a timed assertion)."""


@pytest.fixture(scope="module", params=["shared-store", "replication"])
def pair(request: pytest.FixtureRequest, artemis_ha_module_factory: Any) -> ArtemisHAPair:
    pair: ArtemisHAPair = artemis_ha_module_factory(request.param)
    return pair


def _until(what: str, condition: Callable[[], bool], errors: List[BaseException],
           state: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if errors:
            raise errors[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no progress: {what}; {state()}")
        time.sleep(0.05)


def _drain(url: str) -> List[pe.Message]:
    got: List[pe.Message] = []
    while True:
        batch = pe.receive(url, count=20_000, timeout=2)
        got += batch
        if not batch:
            return got


class _Jobs:
    """Every kind of job at once, each on a client of its own, counting what it did."""

    def __init__(self, pair: ArtemisHAPair, learned: bool) -> None:
        self.pair = pair
        self.learned = learned
        run = uuid.uuid4().hex[:8]
        self.q = {name: f"ha-{name}-{run}" for name in ("send", "consume", "a", "b", "rr", "one")}
        self.stop = threading.Event()
        self.errors: List[BaseException] = []
        self.counts: Dict[str, int] = collections.Counter()
        self.sent_at_third = threading.Event()
        self.killed = threading.Event()  # the consumer holds a message part way until then
        self.held: Optional[int] = None
        self.send_result: Optional[int] = None
        self.consumed: List[Any] = []
        self.tx_outcomes: Dict[int, str] = {}  # tx id -> committed / failed / in doubt
        self.tx_sizes: Dict[int, int] = {}
        self.tx_errors: List[str] = []
        self.replies_wrong: List[Any] = []
        self.sent_one: Set[int] = set()
        self.clients: List[pe.Client] = []
        self.threads: List[threading.Thread] = []

    def client(self) -> pe.Client:
        if self.learned:
            client = pe.Client(self.pair.url, timeout=30)  # only the primary's URL
        else:
            client = pe.Client(urls=self.pair.urls, learn_failover=False, timeout=30)
        self.clients.append(client)
        return client

    def _thread(self, fn: Callable[[pe.Client], None]) -> None:
        client = self.client()

        def run() -> None:
            try:
                fn(client)
            except BaseException as exc:  # noqa: BLE001 - handed to the test
                self.errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        self.threads.append(thread)
        thread.start()

    def fill(self) -> None:
        with self.client() as client:
            client.send_many(self.q["consume"], (pe.Message(i, durable=True)
                                                 for i in range(CONSUME)))
            client.send_many(self.q["a"], (pe.Message(i, durable=True)
                                           for i in range(TX_SOURCE)))

    # -- the jobs -------------------------------------------------------------------------
    def sender(self, client: pe.Client) -> None:
        def bodies() -> Iterator[pe.Message]:
            for i in range(SEND):
                if i == SEND // 3:
                    self.sent_at_third.set()
                yield pe.Message(i, durable=True)

        self.send_result = client.send_many(self.q["send"], bodies(), timeout=WAIT)

    def consumer(self, client: pe.Client) -> None:
        seen: Set[int] = set()
        with client.consume(self.q["consume"], idle_timeout=WAIT) as messages:
            for msg in messages:
                self.consumed.append((msg.body, msg.redelivered, msg.delivery_count))
                seen.add(msg.body)
                self.counts["consumed"] = len(seen)
                if len(seen) == CONSUME // 10:
                    # the kill comes part way through: a consumer left alone can end on the
                    # primary just before the kill, its last acknowledgements then in flight
                    # (settled by the client, never confirmed: the broker may not apply them)
                    self.held = msg.body
                    self.killed.wait(WAIT)
                if len(seen) == CONSUME:
                    break

    def transactions(self, client: pe.Client) -> None:
        tx_id = 0
        while not self.stop.is_set():
            tx_id += 1
            try:
                with client.transaction(self.q["a"]) as tx:
                    got = tx.receive(count=10, timeout=5)
                    if not got:
                        self.tx_outcomes[tx_id] = "empty"
                        continue
                    self.tx_sizes[tx_id] = len(got)
                    for msg in got:
                        tx.send(pe.Message({"src": msg.body, "tx": tx_id}, durable=True),
                                self.q["b"])
                    self.tx_outcomes[tx_id] = "in doubt"
                self.tx_outcomes[tx_id] = "committed"
                self.counts["tx"] += 1
                time.sleep(0.01)  # (the source must last until the test ends the loop)
            except pe.ConnectionLost as exc:  # the commit was in flight: it may have happened
                self.tx_outcomes[tx_id] = "in doubt"
                self.tx_errors.append(type(exc).__name__)
            except pe.TransactionError as exc:  # the batch did not happen
                self.tx_outcomes[tx_id] = "failed"
                self.tx_errors.append(type(exc).__name__)

    def server(self, client: pe.Client) -> None:
        # serves until finish() closes its client
        try:
            client.serve(self.q["rr"], lambda msg: str(msg.body).upper())
        except pe.AMQPError:
            if not self.stop.is_set():
                raise

    def requester(self, client: pe.Client) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            body = f"req-{n}"
            try:
                reply = client.request(self.q["rr"], body, timeout=5)
            except pe.Timeout:
                self.counts["timeouts"] += 1
                continue
            if reply.body != body.upper():
                self.replies_wrong.append((body, reply.body))
            self.counts["answered"] += 1

    def one_by_one(self, client: pe.Client) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            client.send(self.q["one"], pe.Message(n, durable=True))
            self.sent_one.add(n)
            self.counts["one"] += 1

    def start(self) -> None:
        for job in (self.sender, self.consumer, self.transactions, self.server,
                    self.requester, self.one_by_one):
            self._thread(job)

    def progress(self, what: str, since: Dict[str, int], **least: int) -> None:
        _until(f"{what}: {least} since {since}", lambda: all(
            self.counts[k] - since.get(k, 0) >= n for k, n in least.items()), self.errors,
            lambda: f"now {dict(self.counts)}, clients {self.clients}")

    def finish(self) -> None:
        self.stop.set()
        self.clients[4].close()  # the server's (after the filler's, the sender's ...)
        for thread in self.threads:
            thread.join(WAIT)
            assert not thread.is_alive(), "a job did not end"
        for client in self.clients:
            client.close()
        if self.errors:
            raise self.errors[0]


@pytest.mark.parametrize("learned", [pytest.param(True, id="learned",
                                                  marks=pytest.mark.ha_docker),
                                     pytest.param(False, id="urls")])
def test_every_job_carries_on_through_failover_and_failback(pair: ArtemisHAPair,
                                                            learned: bool, caplog: Any,
                                                            artemis_ha_factory: Any) -> None:
    """kill -9 of the primary while send_many (50,000 durable), consume (20,000), a loop of
    transactions (receive 10 from A, send them to B, commit), request/serve and one-by-one
    sends run; then the primary comes back and the backup hands back. Nothing is lost, no
    transaction is partial, every request is answered right or times out."""
    caplog.set_level(logging.INFO, logger="proton_easy")
    if pair.mode == "replication":
        # a fresh pair: a replicating pair of two nodes has no quorum, and a second
        # fail-back on a busy machine has ended with both nodes active (see the README)
        pair = artemis_ha_factory("replication")
    jobs = _Jobs(pair, learned)
    jobs.fill()
    jobs.start()
    _until("send_many reaches a third", jobs.sent_at_third.is_set, jobs.errors)
    jobs.progress("every job before the kill", {}, consumed=CONSUME // 10, tx=5, answered=5,
                  one=5)  # (the consumer waits there for the kill)
    pair.primary.kill()
    jobs.killed.set()
    at_kill = dict(jobs.counts)
    pair.wait_active(pair.backup)
    jobs.progress("every job on the backup", at_kill, tx=10, answered=5, one=5)
    _until("send_many ends", lambda: jobs.send_result is not None, jobs.errors)
    jobs.progress("consume ends", {}, consumed=CONSUME)
    # the consumer's last acknowledgements reached the broker: nothing is left on its queue
    consume_url = pair.backup.address_url(jobs.q["consume"])
    _until("the consumed queue is empty on the backup",
           lambda: not pe.browse(consume_url, count=1, timeout=2), jobs.errors,
           lambda: f"{len(pe.browse(consume_url, timeout=2))} messages still there")
    on_backup = dict(jobs.counts)
    active = pair.backup
    if pair.mode == "shared-store":
        # fail-back (a two-node replica's is left out: without a quorum it has ended with
        # both nodes active on this busy machine; see the README)
        pair.fail_back()
        jobs.progress("every job after the fail-back", on_backup, tx=10, answered=5, one=5)
        primary = f"127.0.0.1:{pair.primary.port}"
        # the clients still at work are back on the primary
        working = jobs.clients[-4:]
        _until("the clients move back to the primary",
               lambda: all(primary in repr(c) for c in working), jobs.errors,
               lambda: f"{working}\n{pair.primary.log_tail(30)}\n{pair.backup.log_tail(30)}")
        jobs.progress("every job on the primary", dict(jobs.counts), tx=10, answered=5, one=5)
        active = pair.primary
    jobs.finish()

    # every queue drained at once (each drain ends with a wait for nothing more)
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        names = ("send", "consume", "b", "a", "one")
        drained = dict(zip(names, pool.map(
            lambda name: _drain(active.address_url(jobs.q[name])), names)))
    # send_many: every message accepted, the unconfirmed ones re-sent (duplicates allowed)
    assert jobs.send_result == SEND
    sent = [m.body for m in drained["send"]]
    assert set(sent) == set(range(SEND))
    # consume: every message, each one again only if it was redelivered
    consumed = [body for body, _, _ in jobs.consumed]
    assert set(consumed) == set(range(CONSUME))
    assert consumed.count(jobs.held) >= 2, "the message in hand at the kill came again"
    assert drained["consume"] == []
    # transactions: each batch happened whole or not at all; no message lost or doubled
    moved = [m.body for m in drained["b"]]
    left = [m.body for m in drained["a"]]
    per_tx = collections.Counter(body["tx"] for body in moved)
    for tx_id, n in per_tx.items():
        assert n == jobs.tx_sizes[tx_id], f"transaction {tx_id}: {n} of {jobs.tx_sizes[tx_id]}"
        assert jobs.tx_outcomes[tx_id] in ("committed", "in doubt")
    assert all(per_tx[t] for t, o in jobs.tx_outcomes.items() if o == "committed")
    srcs = [body["src"] for body in moved]
    assert len(srcs) == len(set(srcs))
    assert sorted(srcs + left) == list(range(TX_SOURCE))
    assert set(jobs.tx_errors) <= {"TransactionError", "ConnectionLost"}
    # request/serve: a right reply or a Timeout, never a wrong one
    assert jobs.replies_wrong == []
    # one-by-one sends: every one that returned is there
    assert jobs.sent_one <= {m.body for m in drained["one"]}
    # failover is logged: from which URL to which, and why; never a password
    backup, primary_url = f"127.0.0.1:{pair.backup.port}", f"127.0.0.1:{pair.primary.port}"
    named = " (named by the broker)" if learned else ""
    assert f"{primary_url} to amqp://admin@{backup}{named} after" in caplog.text
    assert "lost (amqp:connection:framing-error" in caplog.text
    if active is pair.primary:
        assert f"failed over from amqp://admin@{backup} to amqp://admin@{primary_url}" \
            in caplog.text
    assert pair.password not in caplog.text


@pytest.mark.ha_docker
def test_the_backup_is_learned_from_the_broker_unless_told_not_to(pair: ArtemisHAPair,
                                                                 caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="proton_easy")
    with pe.Client(pair.url, timeout=30) as client:
        client.send("ha-learn", "x")
    backup = f"amqp://admin@127.0.0.1:{pair.backup.port}"
    assert f"failover peers named by amqp://admin@127.0.0.1:{pair.primary.port}: {backup}" \
        in caplog.text
    caplog.clear()
    with pe.Client(pair.url, timeout=30, learn_failover=False) as client:
        assert [m.body for m in client.receive("ha-learn", timeout=5)] == ["x"]
    assert "failover peers" not in caplog.text


@pytest.mark.ha_docker
def test_learned_peers_keep_the_credentials_and_never_step_down_to_clear_text() -> None:
    from proton_easy._options import learned_peers, parse_url

    listed = {"failover-server-list": [
        {"network-host": "b.example", "port": 5671, "scheme": "amqps", "hostname": "b"},
        {"network-host": "c.example", "port": 5672, "scheme": "amqp"},   # clear text: no
        {"network-host": "", "port": 5672},                              # malformed: no
        {"port": "x", "network-host": "d.example"},                      # malformed: no
        "not a map",
    ]}
    via = parse_url("amqps://app:s3cret@a.example:5671")
    (peer,) = learned_peers(listed, via)
    assert (peer.scheme, peer.host, peer.port) == ("amqps", "b.example", 5671)
    assert (peer.user, peer.password) == ("app", "s3cret")
    assert "s3cret" not in str(peer) + repr(peer)
    plain = learned_peers(listed, parse_url("amqp://app:pw@a.example"))
    assert [str(p) for p in plain] == ["amqps://app@b.example:5671",
                                       "amqp://app@c.example:5672"]
    assert learned_peers({}, via) == [] and learned_peers(None, via) == []
    with pytest.raises(TypeError):
        pe.Client("amqp://127.0.0.1:1", learn_failover="no")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def cluster(artemis_cluster_module_factory: Any) -> ArtemisCluster:
    cluster: ArtemisCluster = artemis_cluster_module_factory(size=2)
    return cluster


def test_cluster_consumer_on_another_node_gets_every_message(cluster: ArtemisCluster,
                                                             amqp_address: str) -> None:
    first, second = cluster.nodes
    with pe.Client(second.url) as consumer:
        got: List[int] = []
        # a consumer on the second node first: the first node's messages are load-balanced
        # (or redistributed) to it
        with consumer.consume(amqp_address, idle_timeout=30) as messages:
            pe.send_many(first.address_url(amqp_address), range(2000))
            for msg in messages:
                got.append(msg.body)
                if len(got) == 2000:
                    break
    assert sorted(got) == list(range(2000))


@pytest.mark.ha_docker
def test_cluster_messages_sent_before_the_consumer_are_redistributed(
        cluster: ArtemisCluster, amqp_address: str) -> None:
    first, second = cluster.nodes
    pe.send_many(first.address_url(amqp_address), range(1000))
    got = []
    while len(got) < 1000:
        batch = pe.receive(second.address_url(amqp_address), count=1000 - len(got), timeout=30)
        assert batch, "redistribution stopped"
        got += [m.body for m in batch]
    assert sorted(got) == list(range(1000))


def test_cluster_consumers_on_each_node_share_the_work(cluster: ArtemisCluster,
                                                       amqp_address: str) -> None:
    total = 4000
    got: Dict[int, List[int]] = {0: [], 1: []}
    done = threading.Event()
    errors: List[BaseException] = []
    ready = threading.Barrier(3)

    def consume(index: int) -> None:
        try:
            with pe.Client(cluster.nodes[index].url) as client:
                with client.consume(amqp_address, idle_timeout=5, window=10) as messages:
                    ready.wait(WAIT)
                    for msg in messages:
                        got[index].append(msg.body)
                        if sum(map(len, got.values())) >= total:
                            done.set()
                        if done.is_set():
                            break
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    threads = [threading.Thread(target=consume, args=(i,), daemon=True) for i in (0, 1)]
    for thread in threads:
        thread.start()
    ready.wait(WAIT)
    time.sleep(1)  # (the consumers' bindings reach the other node)
    half = total // 2
    pe.send_many(cluster.nodes[0].address_url(amqp_address), range(half))
    pe.send_many(cluster.nodes[1].address_url(amqp_address), range(half, total))
    for thread in threads:
        thread.join(WAIT)
    assert not errors, errors
    assert got[0] and got[1]  # both nodes' consumers did work
    assert sorted(got[0] + got[1]) == list(range(total))


def test_cluster_node_killed_mid_stream_loses_nothing_durable(cluster: ArtemisCluster,
                                                              amqp_address: str) -> None:
    first, second = cluster.nodes
    total = 10_000
    third = threading.Event()

    def bodies() -> Iterator[pe.Message]:
        for i in range(total):
            if i == total // 3:
                third.set()
            yield pe.Message(i, durable=True)

    killer = threading.Thread(target=lambda: third.wait(WAIT) and first.kill(), daemon=True)
    killer.start()
    # the producer is on the first node, which dies; urls= takes it to the second
    with pe.Client(urls=cluster.urls, learn_failover=False, timeout=30) as client:
        assert client.send_many(amqp_address, bodies(), timeout=WAIT) == total
    killer.join(WAIT)
    cluster.restart_node(0)
    got = {m.body for node in cluster.nodes for m in _drain(node.address_url(amqp_address))}
    assert got == set(range(total))


# -- the handler classes and serve through a kill -9 of the primary ----------------------------
HANDLED = 20_000
"""Durable messages a handler class sends, or receives, while the primary dies."""
SERVE_IDLE = 15.0
"""The idle seconds after which ``pe.serve`` returns (longer than a failover takes)."""


def _killable(pair: ArtemisHAPair, artemis_ha_factory: Any) -> ArtemisHAPair:
    """A pair whose primary a test may kill: the module's shared-store pair (failed back
    afterwards by :func:`_restore`), or a fresh replicating pair (a two-node replica's
    fail-back cannot be relied on; see the README)."""
    if pair.mode == "replication":
        fresh: ArtemisHAPair = artemis_ha_factory("replication")
        return fresh
    return pair


def _restore(pair: ArtemisHAPair) -> None:
    if pair.mode == "shared-store":
        pair.fail_back()


class _CountingSender(Sender):
    """A Sender subclassed as users do: durable messages with sequential ids, and a signal
    once a third of them is made."""

    def __init__(self, url: str, third: threading.Event) -> None:
        super().__init__(url, HANDLED)
        self.third = third

    def make_message(self, n: int) -> pe.Message:
        if n == HANDLED // 3:
            self.third.set()
        return pe.Message(n, id=n, durable=True)


class _CountingReceiver(Receiver):
    """A Receiver subclassed as users do: keeps the bodies (dedupe drops what comes again)."""

    def __init__(self, url: str, third: threading.Event) -> None:
        super().__init__(url, HANDLED, dedupe=True, window=200, timeout=WAIT)
        self.third = third
        self.bodies: List[int] = []

    def on_received(self, msg: pe.Message) -> None:
        self.bodies.append(msg.body)
        if len(self.bodies) == HANDLED // 3:
            self.third.set()


def _run_standalone(job: Any, errors: List[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            Container(job).run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_handler_classes_lose_nothing_through_a_kill(pair: ArtemisHAPair,
                                                     artemis_ha_factory: Any) -> None:
    """handlers.Sender and handlers.Receiver subclasses, each run standalone with
    ``Container(job).run()`` and given only the primary's URL, while the primary is killed
    with SIGKILL: the sender's every message is on the backup's queue, the receiver got every
    message of its queue, and its queue on the backup is empty."""
    pair = _killable(pair, artemis_ha_factory)
    run = uuid.uuid4().hex[:8]
    out_q, in_q = f"ha-handler-out-{run}", f"ha-handler-in-{run}"
    pe.send_many(pair.primary.address_url(in_q),
                 (pe.Message(i, id=i, durable=True) for i in range(1, HANDLED + 1)))
    sent_third, received_third = threading.Event(), threading.Event()
    sender = _CountingSender(pair.primary.address_url(out_q), sent_third)
    receiver = _CountingReceiver(pair.primary.address_url(in_q), received_third)
    errors: List[BaseException] = []
    threads = [_run_standalone(sender, errors), _run_standalone(receiver, errors)]
    _until("both handlers reach a third", lambda: sent_third.is_set()
           and received_third.is_set(), errors)
    pair.primary.kill()
    pair.wait_active(pair.backup)
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive(), "a handler did not end"
    assert errors == [] and sender.error is None and receiver.error is None
    assert sender.confirmed == HANDLED
    on_backup = {m.body for m in _drain(pair.backup.address_url(out_q))}
    assert on_backup == set(range(1, HANDLED + 1))
    assert len(receiver.bodies) == HANDLED
    assert set(receiver.bodies) == set(range(1, HANDLED + 1))
    assert _drain(pair.backup.address_url(in_q)) == []
    _restore(pair)


@pytest.mark.ha_docker(modes=["shared-store"])
def test_serve_carries_on_on_the_backup(pair: ArtemisHAPair, artemis_ha_factory: Any) -> None:
    """``pe.serve(url, handler, timeout=)`` with only the primary's URL, and requests from a
    Client, while the primary is killed: serve carries on on the backup, and every request is
    answered right or ends in pe.Timeout; serve returns once no request came for a while."""
    pair = _killable(pair, artemis_ha_factory)
    q = f"ha-serve-{uuid.uuid4().hex[:8]}"
    served: List[int] = []
    errors: List[BaseException] = []

    def server() -> None:
        try:
            served.append(pe.serve(pair.primary.address_url(q),
                                   lambda msg: str(msg.body).upper(), timeout=SERVE_IDLE))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    thread = threading.Thread(target=server, daemon=True)
    thread.start()
    counts: Dict[str, int] = collections.Counter()
    wrong: List[Any] = []
    killed = threading.Event()
    with pe.Client(pair.url, timeout=30) as client:
        n = 0
        while counts["answered after the kill"] < 20:
            if errors:
                raise errors[0]
            if counts["answered"] == 20 and not killed.is_set():
                pair.primary.kill()
                killed.set()
                pair.wait_active(pair.backup)
            n += 1
            body = f"req-{n}"
            try:
                reply = client.request(q, body, timeout=5)
            except pe.Timeout:
                counts["timeouts"] += 1
                assert counts["timeouts"] < WAIT / 5, f"no answers: {dict(counts)}"
                continue
            if reply.body != body.upper():
                wrong.append((body, reply.body))
            counts["answered"] += 1
            if killed.is_set():
                counts["answered after the kill"] += 1
    thread.join(WAIT)
    assert not thread.is_alive(), "serve did not return"
    assert errors == [] and wrong == []
    assert served[0] >= counts["answered"]
    _restore(pair)


# -- a replicating pair's fail-back ---------------------------------------------------------
def test_replication_fails_back_after_the_primary_synchronized(artemis_ha_factory: Any,
                                                                caplog: Any) -> None:
    """Twice: kill -9 of a replicating primary, the backup serves, then ``fail_back()``: the
    restarted primary (``check-for-active-server``) first synchronizes from the active
    backup, then the backup (``allow-failback``) hands back and restarts as its replica.
    A client given only the primary's URL follows every move, nothing is lost, and the
    backup does not serve once it handed back."""
    caplog.set_level(logging.INFO, logger="proton_easy")
    pair: ArtemisHAPair = artemis_ha_factory("replication")
    q = f"ha-failback-{uuid.uuid4().hex[:8]}"
    with pe.Client(pair.url, timeout=60) as client:
        for cycle in range(2):
            base = cycle * 3000
            client.send_many(q, (pe.Message(i, durable=True) for i in range(base, base + 1000)))
            pair.primary.kill()
            pair.wait_active(pair.backup)
            client.send_many(q, (pe.Message(i, durable=True)
                                 for i in range(base + 1000, base + 2000)))
            primary_since, backup_since = pair.mark(pair.primary), pair.mark(pair.backup)
            pair.fail_back()
            client.send_many(q, (pe.Message(i, durable=True)
                                 for i in range(base + 2000, base + 3000)))
            primary_log = _node_log(pair.primary)[primary_since:]
            assert REPLICA_SYNCED_LINE in primary_log and ACTIVE_LINE in primary_log
            assert primary_log.index(REPLICA_SYNCED_LINE) < primary_log.index(ACTIVE_LINE)
            backup_log = _node_log(pair.backup)[backup_since:]
            assert "AMQ221039" in backup_log  # restarting as a replica after the fail-back
            assert f"127.0.0.1:{pair.primary.port}" in repr(client)
            with pytest.raises(pe.ConnectError):
                pe.receive(pair.backup.address_url(q), timeout=3, learn_failover=False)
    got = [m.body for m in _drain(pair.primary.address_url(q))]
    assert set(got) == set(range(6000))
    backup = f"127.0.0.1:{pair.backup.port}"
    assert f"failed over from amqp://admin@{backup} to amqp://admin@127.0.0.1:" \
        f"{pair.primary.port}" in caplog.text
