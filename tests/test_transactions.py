"""Local transactions against a real Artemis: the context manager, TxSender/TxReceiver, the
seed's hand-written TxSend/TxRecv, and a broker killed in the middle of a transaction."""

from __future__ import annotations

import threading
import time
from typing import Any, List

import pytest

import proton_easy as pe
from proton_easy.handlers import TxReceiver, TxSender, _error_condition

from .seed_peers import SeedTxRecv, SeedTxSend, run


def url_for(amqp_url: str, address: str) -> str:
    return f"{amqp_url}/{address}"


def bodies(url: str, count: int = 100, timeout: float = 1.0) -> List[Any]:
    """Everything on the queue now (taken off it)."""
    return [m.body for m in pe.receive(url, count=count, timeout=timeout)]


def run_job(job: Any, timeout: float = 30.0) -> Any:
    """Container(job).run() in a thread, so that a hang fails the test instead of blocking it."""
    return run(job, timeout)


# -- the context manager: commit, abort, batches ---------------------------------------------
def test_committed_batch_is_delivered_whole_and_only_at_commit(amqp_url: str,
                                                               amqp_address: str) -> None:
    url = url_for(amqp_url, amqp_address)
    with pe.transaction(url) as tx:
        for n in range(20):
            tx.send({"n": n})
        # Not committed yet: nothing may be visible to another consumer.
        assert bodies(url, timeout=0.5) == []
    assert bodies(url, count=30) == [{"n": n} for n in range(20)]


def test_exception_aborts_the_batch_and_is_reraised(amqp_url: str, amqp_address: str) -> None:
    url = url_for(amqp_url, amqp_address)
    with pytest.raises(KeyError, match="boom"):
        with pe.transaction(url) as tx:
            for n in range(10):
                tx.send(n)
            raise KeyError("boom")
    assert bodies(url, timeout=0.5) == []


def test_abort_delivers_nothing(amqp_url: str, amqp_address: str) -> None:
    url = url_for(amqp_url, amqp_address)
    with pe.transaction(url) as tx:
        for n in range(10):
            tx.send(n)
        tx.abort()
    assert bodies(url, timeout=0.5) == []


def test_aborted_receive_leaves_every_message_on_the_queue(amqp_url: str,
                                                           amqp_address: str) -> None:
    url = url_for(amqp_url, amqp_address)
    pe.send_many(url, [f"m{n}" for n in range(10)])
    with pe.transaction(url) as tx:
        got = tx.receive(count=10, timeout=10)
        assert [m.body for m in got] == [f"m{n}" for n in range(10)]
        tx.abort()
    with pytest.raises(RuntimeError):
        with pe.transaction(url) as tx:
            assert len(tx.receive(count=4, timeout=10)) == 4
            raise RuntimeError("handler failed")
    again = pe.receive(url, count=20, timeout=2)
    assert sorted(m.body for m in again) == [f"m{n}" for n in range(10)]
    assert all(m.redelivered for m in again if m.body in {"m0", "m1", "m2", "m3"})


def test_committed_receive_takes_only_what_it_received(amqp_url: str, amqp_address: str) -> None:
    url = url_for(amqp_url, amqp_address)
    pe.send_many(url, list(range(10)))
    with pe.transaction(url) as tx:
        assert [m.body for m in tx.receive(count=4, timeout=10)] == [0, 1, 2, 3]
    assert bodies(url) == [4, 5, 6, 7, 8, 9]


def test_receive_times_out_with_what_came(amqp_url: str, amqp_address: str) -> None:
    url = url_for(amqp_url, amqp_address)
    pe.send_many(url, ["only"])
    with pe.transaction(url) as tx:
        start = time.monotonic()
        got = tx.receive(count=5, timeout=1.0)
        elapsed = time.monotonic() - start
        assert [m.body for m in got] == ["only"]
        assert 0.8 <= elapsed < 5
        assert tx.receive(count=1, timeout=0.3) == []
    assert bodies(url, timeout=0.5) == []


def test_commit_and_abort_in_the_middle_act_on_their_batch_only(amqp_url: str,
                                                                amqp_address: str) -> None:
    url = url_for(amqp_url, amqp_address)
    with pe.transaction(url) as tx:
        tx.send("a1")
        tx.send("a2")
        tx.commit()
        # The first batch is visible as soon as commit() returns.
        assert bodies(url, timeout=5, count=2) == ["a1", "a2"]
        tx.send("b1")
        tx.send("b2")
        tx.abort()
        tx.send("c1")
    assert bodies(url) == ["c1"]


def test_receive_batches_commit_and_abort_independently(amqp_url: str,
                                                        amqp_address: str) -> None:
    url = url_for(amqp_url, amqp_address)
    pe.send_many(url, ["m1", "m2", "m3", "m4"])
    with pe.transaction(url) as tx:
        assert [m.body for m in tx.receive(count=2, timeout=10)] == ["m1", "m2"]
        tx.commit()
        assert [m.body for m in tx.receive(count=2, timeout=10)] == ["m3", "m4"]
        tx.abort()
    assert sorted(bodies(url)) == ["m3", "m4"]


def test_receive_and_send_in_one_batch_forward_exactly_once(amqp_url: str,
                                                           amqp_address: str) -> None:
    inbox, outbox = amqp_address + "-in", amqp_address + "-out"
    pe.send_many(url_for(amqp_url, inbox), [{"order": n} for n in range(5)])
    with pe.Client(amqp_url) as client:
        with pytest.raises(ValueError):
            with client.transaction(inbox) as tx:
                for msg in tx.receive(count=5, timeout=10):
                    tx.send(msg.body, address=outbox)
                raise ValueError("crash before commit")
        assert client.receive(outbox, count=5, timeout=0.5) == []
        with client.transaction(inbox) as tx:
            for msg in tx.receive(count=5, timeout=10):
                tx.send(msg.body, address=outbox)
        assert client.receive(inbox, count=5, timeout=0.5) == []
        got = client.receive(outbox, count=10, timeout=2)
        assert sorted(m.body["order"] for m in got) == [0, 1, 2, 3, 4]


def test_big_batch_beyond_the_send_window(amqp_url: str, amqp_address: str) -> None:
    url = url_for(amqp_url, amqp_address)
    with pe.transaction(url) as tx:
        for n in range(2500):
            tx.send(n)
    got = pe.receive(url, count=2500, timeout=20)
    assert [m.body for m in got] == list(range(2500))


def test_two_transactions_on_one_client_do_not_collide(amqp_url: str, amqp_address: str) -> None:
    first, second = amqp_address + "-1", amqp_address + "-2"
    with pe.Client(amqp_url) as client:
        with client.transaction(first) as t1, client.transaction(second) as t2:
            for n in range(5):
                t1.send(f"one-{n}")
                t2.send(f"two-{n}")
            t2.abort()  # must not touch t1's batch
            t2.send("two-late")
        assert [m.body for m in client.receive(first, count=10, timeout=2)] == [
            f"one-{n}" for n in range(5)]
        assert [m.body for m in client.receive(second, count=10, timeout=2)] == ["two-late"]


def test_transactions_in_threads_share_a_client(amqp_url: str, amqp_address: str) -> None:
    errors: List[BaseException] = []

    def worker(client: pe.Client, n: int, commit: bool) -> None:
        try:
            with client.transaction(amqp_address) as tx:
                for i in range(50):
                    tx.send({"worker": n, "i": i})
                if not commit:
                    tx.abort()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with pe.Client(amqp_url) as client:
        threads = [threading.Thread(target=worker, args=(client, n, n % 2 == 0))
                   for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        got = client.receive(amqp_address, count=300, timeout=2)
    workers = sorted({m.body["worker"] for m in got})
    assert workers == [0, 2]
    assert len(got) == 100
    for n in (0, 2):
        assert [m.body["i"] for m in got if m.body["worker"] == n] == list(range(50))


# -- failures: TransactionError means the batch did not happen --------------------------------
def test_refused_commit_raises_transaction_error_and_nothing_happens(amqp_url: str,
                                                                     amqp_address: str) -> None:
    # Artemis refuses the commit of a batch holding a duplicate of a message it already routed
    # (duplicate detection on _AMQ_DUPL_ID).
    url = url_for(amqp_url, amqp_address)
    pe.send(url, pe.Message("first", properties={"_AMQ_DUPL_ID": "dup-1"}))
    with pytest.raises(pe.TransactionError) as info:
        with pe.transaction(url) as tx:
            tx.send("y")
            tx.send(pe.Message("again", properties={"_AMQ_DUPL_ID": "dup-1"}))
    assert "commit refused" in str(info.value)
    assert "Duplicate" in (info.value.description or "")
    assert bodies(url) == ["first"]


def test_after_a_refused_commit_the_next_batch_works(amqp_url: str, amqp_address: str) -> None:
    url = url_for(amqp_url, amqp_address)
    pe.send(url, pe.Message("first", properties={"_AMQ_DUPL_ID": "dup-2"}))
    with pe.transaction(url) as tx:
        tx.send("lost-1")
        tx.send(pe.Message("dup", properties={"_AMQ_DUPL_ID": "dup-2"}))
        with pytest.raises(pe.TransactionError):
            tx.commit()
        tx.send("next")
    assert bodies(url) == ["first", "next"]


def test_transaction_needs_its_with_block_and_an_address(amqp_url: str) -> None:
    with pe.Client(amqp_url) as client:
        tx = client.transaction("somewhere")
        with pytest.raises(RuntimeError):
            tx.send("x")
        with client.transaction() as tx:
            with pytest.raises(ValueError):
                tx.send("no address")
            with pytest.raises(ValueError):
                tx.receive(count=0, address="q")
        with pytest.raises(RuntimeError):
            tx.send("after the block")


def test_broker_killed_mid_transaction(artemis_factory: Any) -> None:
    """SIGKILL with a batch open: the caller gets TransactionError at once; after the restart
    none of the batch was delivered, every message it received is back, and the same
    transaction context carries on with the next batch."""
    broker = artemis_factory()
    inbox, outbox = broker.url + "/killed-in", broker.url + "/killed-out"
    pe.send_many(inbox, [{"n": n} for n in range(5)], durable=True)
    with pe.transaction(inbox, timeout=10) as tx:
        assert len(tx.receive(count=5, timeout=10)) == 5
        for n in range(20):
            tx.send({"out": n}, address="killed-out", durable=True)
        time.sleep(0.5)  # let the broker take the sends into the transaction
        broker.kill()
        killed = time.monotonic()
        with pytest.raises(pe.TransactionError) as info:
            time.sleep(0.3)
            tx.send({"out": "after"}, address="killed-out", durable=True)
            tx.commit()
        assert time.monotonic() - killed < 5  # an error, not a hang
        assert "rolled the batch back" in str(info.value)
        # A failed batch keeps raising until commit() or abort() ends it (commit() did, if it
        # was the call that raised); then the next batch starts.
        tx.abort()
        broker.restart()
        tx.send({"out": "next batch"}, address="killed-out", durable=True)
    assert bodies(outbox, count=50) == [{"out": "next batch"}]
    assert sorted(b["n"] for b in bodies(inbox, count=50)) == [0, 1, 2, 3, 4]


def test_connection_lost_while_the_commit_is_in_flight_is_in_doubt(artemis_factory: Any) -> None:
    """The broker freezes after the batch reached it, then dies while the commit is on its way:
    the caller gets ConnectionLost (not TransactionError: the batch may have happened), and the
    batch is atomic after the restart: all of it or none."""
    broker = artemis_factory()
    url = broker.url + "/in-doubt"
    with pytest.raises(pe.ConnectionLost) as info:
        with pe.transaction(url, timeout=10) as tx:
            for n in range(5):
                tx.send(n, durable=True)
            time.sleep(0.5)  # every send settled: only the discharge remains
            broker.pause()  # SIGSTOP locally, docker pause in a container
            killer = threading.Timer(1.0, broker.kill)
            killer.start()
            try:
                tx.commit()
            finally:
                killer.join()
    assert not isinstance(info.value, pe.TransactionError)
    assert info.value.in_doubt == 5
    assert "unknown" in str(info.value)
    broker.restart()
    assert bodies(url, count=10) in ([], [0, 1, 2, 3, 4])


# -- the handler classes, run like the seed ----------------------------------------------------
def test_tx_sender_and_tx_receiver_subclasses(amqp_url: str, amqp_address: str) -> None:
    url = url_for(amqp_url, amqp_address)

    class Send(TxSender):
        def make_message(self, n: int) -> Any:
            return {"sequence": n, "text": f"message {n}"}

        def on_all_committed(self) -> None:
            self.done_called = True

    class Recv(TxReceiver):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.seen: List[int] = []

        def on_received(self, msg: pe.Message) -> None:
            self.seen.append(msg.body["sequence"])

    sender = run_job(Send(url, messages=35, batch_size=10))
    assert sender.error is None and sender.committed == 35 and sender.done_called
    receiver = run_job(Recv(url, count=35, batch_size=10))
    assert receiver.error is None
    assert receiver.seen == list(range(1, 36))
    assert receiver.committed == 35
    assert bodies(url, timeout=0.5) == []


def test_tx_receiver_idle_timeout_commits_the_partial_batch(amqp_url: str,
                                                            amqp_address: str) -> None:
    url = url_for(amqp_url, amqp_address)
    pe.send_many(url, list(range(7)))
    receiver = run_job(TxReceiver(url, count=0, batch_size=5, timeout=1.0))
    assert [m.body for m in receiver.messages] == list(range(7))
    assert receiver.committed == 7
    assert bodies(url, timeout=0.5) == []


def test_tx_receiver_hook_error_rolls_back_its_batch_only(amqp_url: str,
                                                          amqp_address: str) -> None:
    url = url_for(amqp_url, amqp_address)
    pe.send_many(url, list(range(10)))

    class Picky(TxReceiver):
        def on_received(self, msg: pe.Message) -> None:
            if msg.body == 6:
                raise ValueError("cannot handle 6")
            super().on_received(msg)

    with pytest.raises(ValueError, match="cannot handle 6"):
        run_job(Picky(url, count=10, batch_size=4))
    # The first batch (0-3) committed; the second (4, 5 accepted, 6 refused) rolled back.
    assert sorted(bodies(url)) == [4, 5, 6, 7, 8, 9]


def test_tx_sender_refused_commit_fails_the_job(amqp_url: str, amqp_address: str) -> None:
    url = url_for(amqp_url, amqp_address)
    pe.send(url, pe.Message("first", properties={"_AMQ_DUPL_ID": "dup-3"}))
    items = [pe.Message(n) for n in range(6)]
    items[4] = pe.Message(4, properties={"_AMQ_DUPL_ID": "dup-3"})
    with pytest.raises(pe.TransactionError):
        run_job(TxSender(url, messages=items, batch_size=3))
    # Batch 0-2 committed; batch 3-5 (with the duplicate) did not happen.
    assert bodies(url) == ["first", 0, 1, 2]


# -- interop with the seed's hand-written TxSend and TxRecv ----------------------------------
def test_seed_tx_send_feeds_pe_transaction(amqp_url: str, amqp_address: str) -> None:
    seed = run(SeedTxSend(url_for(amqp_url, "queue://" + amqp_address), 30, 10))
    assert seed.committed == 30
    with pe.transaction(url_for(amqp_url, amqp_address)) as tx:
        got = tx.receive(count=30, timeout=10)
    assert [m.body for m in got] == [{"sequence": n} for n in range(1, 31)]
    assert [m.id for m in got] == list(range(1, 31))
    assert bodies(url_for(amqp_url, amqp_address), timeout=0.5) == []


def test_pe_transaction_feeds_seed_tx_recv(amqp_url: str, amqp_address: str) -> None:
    url = url_for(amqp_url, amqp_address)
    with pe.transaction(url) as tx:
        tx.send("aborted")
        tx.abort()
        for n in range(10):
            tx.send({"sequence": n})
    # The seed's TxRecv over-grants credit and crashes on a message that arrives between two
    # transactions: give it exactly one batch.
    seed = run(SeedTxRecv(url_for(amqp_url, "queue://" + amqp_address), 10, 10))
    assert seed.bodies == [{"sequence": n} for n in range(10)]
    assert seed.committed == 10
    assert bodies(url, timeout=0.5) == []


def test_tx_sender_feeds_seed_tx_recv_and_seed_tx_send_feeds_tx_receiver(
        amqp_url: str, amqp_address: str) -> None:
    run_job(TxSender(url_for(amqp_url, amqp_address), messages=10, batch_size=5))
    seed = run(SeedTxRecv(url_for(amqp_url, "queue://" + amqp_address), 10, 10))
    assert seed.bodies == [{"sequence": n} for n in range(1, 11)]
    run(SeedTxSend(url_for(amqp_url, "queue://" + amqp_address), 20, 5))
    receiver = run_job(TxReceiver(url_for(amqp_url, amqp_address), count=20, batch_size=7))
    assert [m.body["sequence"] for m in receiver.messages] == list(range(1, 21))


def test_rejected_outcome_inside_a_transactional_state_keeps_the_broker_condition() -> None:
    # Artemis (default configuration) never refuses a transactional send, so this reads the
    # structure a broker sends -- @rejected(37) [@error(29) [condition, description]] -- as
    # proton decodes it.
    from proton import Data, Described, symbol, ulong

    data = Data()
    data.put_object([b"txn", Described(ulong(0x25), [
        Described(ulong(0x1D), [symbol("amqp:resource-limit-exceeded"), "address full", None])])])
    data.rewind()
    data.next()
    _, rejected = data.get_object()
    cond = _error_condition(rejected.value)
    assert cond is not None
    assert (cond.name, cond.description) == ("amqp:resource-limit-exceeded", "address full")
