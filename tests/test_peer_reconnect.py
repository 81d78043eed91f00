"""Reconnecting against a peer that drops every connection right after it opens: the backoff
must not start afresh on each reopen, and a few fruitless reconnections end the job with
pe.ConnectionLost carrying the drop's condition (issue: 63 reconnects in 2 s, then ``[]``)."""

from __future__ import annotations

import threading
from typing import Any, Dict, List

import pytest
from proton import symbol

import proton_easy as pe

from .amqp_peer import AmqpPeer, Fault

LIMIT = 30.0
"""Seconds after which a call that has not returned is a hang (its own timeout is 10 s)."""


def _call(fn: Any) -> Any:
    box: Dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(LIMIT)
    assert not thread.is_alive(), f"still running after {LIMIT:g} s"
    return box.get("error", box.get("result"))


@pytest.mark.parametrize("job", ["receive", "consume"])
def test_drop_at_every_attach_is_connection_lost(job: str) -> None:
    """The peer drops the socket whenever the receiver attaches (as a broker does that
    cannot take a selector): receive and consume(idle_timeout=None) raise
    pe.ConnectionLost after a few reconnections, instead of returning [] or never ending."""
    def run() -> List[Any]:
        url = peer.url + "/q"
        if job == "receive":
            return pe.receive(url, count=1, timeout=10)
        with pe.consume(url, idle_timeout=None, timeout=10) as messages:
            return [m.body for m in messages]

    with AmqpPeer(queues={"q": ["m"]},
                  faults=[Fault(on="attach", do="drop", role="receiver")]) as peer:
        result = _call(run)
        assert isinstance(result, pe.ConnectionLost), result
        assert "right after opening" in str(result)
        assert result.condition == "amqp:connection:framing-error"
        # the first connection, then a few reconnections with growing delays
        assert peer.connections <= 5
        assert peer.bodies("q") == ["m"]  # nothing taken


def test_drops_after_useful_work_keep_reconnecting() -> None:
    """A connection that did work before it dropped starts a fresh backoff: a peer that drops
    the connection after every 50th message (four times) still gets all 300 messages of a
    send_many, each once or more, and the call returns 300."""
    fault = Fault(on="transfer", after=50, do="drop", times=4)
    with AmqpPeer(faults=[fault]) as peer:
        result = _call(lambda: pe.send_many(peer.url + "/q", range(300), timeout=10))
        assert result == 300
        assert set(peer.bodies("q")) == set(range(300))
        assert peer.connections == 5


def test_backoff_does_not_start_afresh_after_fruitless_connections() -> None:
    """Without the network: after a connection that did nothing, proton's reset() on the next
    open keeps the growing delays, and three such attempts in a row give up."""
    from proton_easy._options import MAX_FRUITLESS_RECONNECTS, Backoff

    useful = {"last": True}
    b = Backoff(True)
    b.useful = lambda: useful["last"]
    b.connected = True
    b.reset()
    gave_up: List[int] = []
    b.on_give_up = lambda: gave_up.append(1)
    assert b.next() == 0.0  # the connection drops: reconnect at once
    useful["last"] = False
    delays = []
    for _ in range(MAX_FRUITLESS_RECONNECTS):
        b.attempt_failed()
        b.reset()  # the broker opened again...
        try:
            delays.append(b.next())  # ...and dropped again
        except StopIteration:
            break
    assert delays == [0.0, 0.1]
    assert b.fruitless and gave_up == [1]


def test_a_broker_that_names_no_peer_leaves_the_learned_backup() -> None:
    """A broker's Open names its backup; after a reconnect its Open names no one (an Artemis
    primary right after a fail-back, its backup not yet back as a replica): the backup
    learned before is kept, and when the broker is gone for good the client goes there."""
    with AmqpPeer() as backup:
        listed = [{"network-host": "127.0.0.1", "port": backup.port, "scheme": "amqp"}]
        primary = AmqpPeer(properties={"failover-server-list": listed},
                           faults=[Fault(on="transfer", do="drop", after=2, times=1)])
        with primary, pe.Client(primary.url, timeout=10) as client:
            client.send("warm-up", "x")                # learned: the backup
            # from now on its Open names no one (and says something else, as Artemis does)
            primary.properties = {symbol("product"): "scripted"}
            client.send("q", "dropped, then re-sent")  # reconnects to the primary
            primary.stop()
            assert _call(lambda: client.send("q", "after")) is None  # on the backup
        assert backup.bodies("q") == ["after"]
