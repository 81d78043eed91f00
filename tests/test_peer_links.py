"""What our links say at attach time, seen by the scripted peer: the address prefixes a broker
asks for in its Open frame (ActiveMQ Classic's ``topic-prefix``/``queue-prefix``), terminus
capabilities, and terminus durability."""

from __future__ import annotations

from typing import Any, Dict, List

import proton_easy as pe

from .amqp_peer import AmqpPeer

CLASSIC_PREFIXES = {"topic-prefix": "topic://", "queue-prefix": "queue://"}


def _termini(peer: AmqpPeer, role: str) -> List[Dict[str, Any]]:
    return [t for t in peer.record.termini if t["role"] == role]


def test_topic_prefix_from_the_open_frame() -> None:
    """A broker that sends ``topic-prefix`` gets ``topic://news`` as the address (a topic
    there), and the ``topic`` capability is still sent for brokers that read that."""
    with AmqpPeer(properties=CLASSIC_PREFIXES) as peer:
        pe.send(peer.url + "/topic://news", "headline", timeout=5)
        assert pe.receive(peer.url + "/topic://news", count=1, timeout=5)[0].body == "headline"
    sender, = _termini(peer, "sender")
    receiver, = _termini(peer, "receiver")
    assert sender["address"] == receiver["address"] == "topic://news"
    assert sender["capabilities"] == receiver["capabilities"] == ["topic"]


def test_queue_prefix_from_the_open_frame() -> None:
    """``queue-prefix`` is put before bare names and ``queue://`` names alike, once."""
    with AmqpPeer(properties=CLASSIC_PREFIXES) as peer:
        pe.send(peer.url + "/orders", "a", timeout=5)
        pe.send(peer.url + "/queue://orders", "b", timeout=5)
        got = pe.receive(peer.url + "/orders", count=2, timeout=5)
        assert [m.body for m in got] == ["a", "b"]
    assert {t["address"] for t in peer.record.termini} == {"queue://orders"}


def test_no_prefix_without_the_open_properties() -> None:
    """Brokers that send no prefixes (Artemis, Broker-J) get the bare name and the
    capability, as before."""
    with AmqpPeer() as peer:
        pe.send(peer.url + "/topic://news", "x", timeout=5)
        pe.send(peer.url + "/orders", "y", timeout=5)
    assert [(t["address"], t["capabilities"]) for t in peer.record.termini] == [
        ("news", ["topic"]), ("orders", ["queue"])]


def test_queue_sender_target_is_durable() -> None:
    """A queue sender's target asks for a durable node (configuration durability), so a
    broker that creates the queue from the link keeps it, and durable messages in it, over a
    restart; a topic sender's target does not."""
    with AmqpPeer() as peer:
        pe.send(peer.url + "/orders", "kept", durable=True, timeout=5)
        with pe.Client(peer.url, timeout=5) as client:
            client.send("orders", "also kept")
            client.send_many("orders", ["many"])
        pe.send(peer.url + "/topic://news", "x", timeout=5)
    durability = [(t["address"], t["durability"]) for t in _termini(peer, "sender")]
    assert ("orders", 1) in durability
    assert all(d == 1 for a, d in durability if a == "orders")
    assert ("news", 0) in durability


def _requests() -> Dict[str, List[Any]]:
    return {"svc": [pe.Message("a", reply_to="replies", correlation_id="c1").to_proton(),
                    pe.Message("b", reply_to="replies", correlation_id="c2").to_proton()]}


def test_serve_replies_through_anonymous_relay_when_offered() -> None:
    """With ANONYMOUS-RELAY offered, serve's replies go out on one anonymous sender."""
    with AmqpPeer(queues=_requests()) as peer:
        assert pe.serve(peer.url + "/svc", lambda m: m.body.upper(), count=2, timeout=5) == 2
        assert peer.bodies("replies") == ["A", "B"]
    assert ("sender", None) in peer.record.attaches
    assert ("sender", "replies") not in peer.record.attaches


def test_serve_replies_without_anonymous_relay() -> None:
    """Without it, serve opens a sender per reply address: the replies arrive all the same."""
    with AmqpPeer(queues=_requests(), anonymous_relay=False) as peer:
        assert pe.serve(peer.url + "/svc", lambda m: m.body.upper(), count=2, timeout=5) == 2
        assert peer.bodies("replies") == ["A", "B"]
    assert ("sender", None) not in peer.record.attaches


def test_failover_server_list_in_open_is_harmless() -> None:
    """A broker that announces a backup in ``failover-server-list`` (as Artemis does in an HA
    pair) is used like any other: the message is sent and received."""
    backup = [{"hostname": "127.0.0.1", "port": 1, "scheme": "amqp"}]
    with AmqpPeer(properties={"failover-server-list": backup}) as peer:
        pe.send(peer.url + "/q", "x", timeout=5)
        assert [m.body for m in pe.receive(peer.url + "/q", timeout=5)] == ["x"]
