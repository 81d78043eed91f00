"""What a job hands proton in the instant its connection ends, before the drop is handled.

proton keeps the deliveries it has not written yet and, after a reconnect, writes them on the
next connection. The job sends what was not confirmed again itself, so without care such a
message reaches the broker twice (seen with a scripted peer under load: the backup got
"after" twice). The tests end the transport on the loop thread the way proton does when the
socket ends (tail and head closed), hand the job a message in the same call, and count what
a real Artemis got once the client has reconnected.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any, Callable, TypeVar

import pytest

import proton_easy as pe
from proton_easy._message import encode

T = TypeVar("T")


def _as_the_connection_ends(client: pe.Client, hand_over: Callable[[], T]) -> T:
    """On the loop thread: end the connection's transport as a socket's end does, then
    ``hand_over()`` (before proton reports the drop); its result."""

    def both() -> T:
        transport = client._conn.proton.transport
        transport.close_tail()
        transport.close_head()
        return hand_over()

    result: T = client._driver.call(both)
    return result


def test_a_message_sent_as_the_connection_ends_reaches_the_broker_once(
        artemis: Any, amqp_address: str) -> None:
    with pe.Client(artemis.url, timeout=20) as client:
        client.send(amqp_address, "before")  # the sender link is up
        _, fut = _as_the_connection_ends(client, lambda: client._senders.submit(
            amqp_address, encode("after", True), at_most_once=False))
        fut.result(30)  # confirmed, on the connection made after the drop
        assert client._conn.drops == 1
    got = pe.receive(artemis.address_url(amqp_address), count=10, timeout=3)
    assert [m.body for m in got] == ["before", "after"]


def test_a_message_confirmed_as_the_connection_ends_does_not_come_again_empty(
        artemis: Any, amqp_address: str) -> None:
    """The broker's settlement of "before" is read, and the transport ends before proton wrote
    the local settle (here: the send's linger runs the ending call in between). The unbind
    resets the delivery to "not sent", and a plain settle made proton write it on the next
    connection as a new, empty message (Artemis stored a message without a body)."""
    with pe.Client(artemis.url, timeout=20) as client:
        client.send(amqp_address, "before")
        _as_the_connection_ends(client, lambda: None)
        client.send(amqp_address, "after")  # on the connection made after the drop
        assert client._conn.drops == 1
    got = pe.receive(artemis.address_url(amqp_address), count=10, timeout=3)
    assert [m.body for m in got] == ["before", "after"]


def test_a_request_made_as_the_connection_ends_reaches_the_service_once(
        artemis: Any, amqp_address: str) -> None:
    service = amqp_address
    with pe.Client(artemis.url, timeout=20) as client, pe.Client(artemis.url) as server:
        reply: Future[pe.Message] = Future()
        served = []

        def upper(msg: pe.Message) -> str:
            served.append(msg.body)
            return str(msg.body).upper()

        warm_up: Future[pe.Message] = Future()  # the reply queue and the request link are up
        client._requests.submit(service, "warm-up", 30.0, warm_up)
        assert server.serve(service, upper, count=1, timeout=20) == 1
        assert warm_up.result(30).body == "WARM-UP"
        _as_the_connection_ends(client, lambda: client._requests.submit(
            service, "ping", 30.0, reply))
        assert server.serve(service, upper, count=1, timeout=20) == 1
        assert reply.result(30).body == "PING"
        assert client._conn.drops == 1
    assert served == ["warm-up", "ping"]
    assert pe.receive(artemis.address_url(service), count=10, timeout=2) == []


def test_a_transaction_message_sent_as_the_connection_ends_leaves_the_next_batch_working(
        artemis: Any, amqp_address: str, caplog: Any) -> None:
    """proton wrote the lost batch's message on the next connection, pre-settled, in a
    transaction that connection never declared: Artemis closed the whole connection
    ("AMQ119014: Transaction not found"), and the next batch failed with ConnectionLost.
    And the settlement of the discharge before the drop went out again as an empty message on
    the coordinator, which left proton counting one delivery queued on it for ever: it never
    detached it, and leaving the ``with`` block waited out the client's timeout."""
    caplog.set_level(logging.DEBUG, logger="proton_easy")
    with pe.Client(artemis.url, timeout=20) as client:
        with client.transaction(amqp_address) as tx:
            tx.send("first batch")
            tx.commit()
            _as_the_connection_ends(client, lambda: tx.send("lost with the connection"))
            with pytest.raises(pe.TransactionError, match="rolled the batch back"):
                tx.commit()
            tx.send("next batch")
            tx.commit()
        assert client._conn.drops == 1
    assert "did not close cleanly" not in caplog.text  # its links closed: nothing waited
    got = pe.receive(artemis.address_url(amqp_address), count=10, timeout=3)
    assert [m.body for m in got] == ["first batch", "next batch"]
