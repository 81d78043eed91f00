"""The handler classes users subclass, run on their own (``Container(job).run()``), against the
same scripted peer behaviours as the blocking verbs in tests/test_peer_faults.py.

The blocking verbs drive these classes on a Client's loop; here they run standalone, with the
connection of their own that a subclass in a service gets. What each test asks for: the job
ends (within the peer test's hang limit), with its result or with the typed error the
blocking verb gives for the same peer behaviour, and nothing the peer saw accepted is missing
from what the job kept. Also the drain faults: a peer that drops the connection when a
receiver drains (browsing drains), which no Artemis does.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List

import pytest
from proton.reactor import Container

import proton_easy as pe
from proton_easy.handlers import (
    Job,
    Receiver,
    Requester,
    Responder,
    Sender,
    TxReceiver,
    TxSender,
)

from .amqp_peer import Fault
from .test_peer_faults import TIMEOUT, _not_a_timeout, _peer, outcome


def run_job(job: Job) -> Any:
    """Run a handler job standalone, as a user would; its result, or the error it ended with
    (``Container.run()`` raises it)."""
    Container(job).run()
    return job.result


def _bodies(messages: List[pe.Message]) -> List[Any]:
    return [m.body for m in messages]


HANDLERS: Dict[str, Callable[[str], Any]] = {
    "Sender": lambda url: run_job(Sender(url, 100)),
    "Receiver": lambda url: _bodies(run_job(Receiver(url, count=5, timeout=TIMEOUT))),
    "Requester": lambda url: _bodies(run_job(Requester(url, ["ping"], timeout=TIMEOUT))),
    "Responder": lambda url: run_job(Responder(url, lambda m: m.body, count=2,
                                               timeout=TIMEOUT)),
    "TxSender": lambda url: run_job(TxSender(url, 4, batch_size=2)),
    "TxReceiver": lambda url: run_job(TxReceiver(url, count=2, batch_size=2,
                                                 timeout=TIMEOUT)),
}
"""Each handler class with the arguments of its blocking verb's test."""

_REQUESTS = {"q": [pe.Message("r1", reply_to="replies").to_proton(),
                   pe.Message("r2", reply_to="replies").to_proton()]}


def _address(name: str) -> str:
    return "svc" if name == "Requester" else "q"


# -- the peer answers a link's close with a detach (closed=false) ------------------------------
@pytest.mark.parametrize("name", ["Sender", "Receiver", "Requester", "Responder"])
def test_close_answered_by_detach_ends_the_handler_with_its_result(name: str) -> None:
    queues = _REQUESTS if name == "Responder" else {"q": ["m1", "m2"]}
    with _peer(on_close="detach", queues=queues,
               responders={"svc": lambda b: f"re: {b}"}) as peer:
        result = outcome(lambda: HANDLERS[name](f"{peer.url}/{_address(name)}"))
        _not_a_timeout(result)
        expected = {"Sender": 100, "Receiver": ["m1", "m2"], "Requester": ["re: ping"],
                    "Responder": 2}[name]
        assert result == expected
        if name == "Receiver":
            assert peer.record.accepted == ["m1", "m2"]


# -- the peer detaches a link (closed=false, no condition) while the handler runs --------------
def test_detach_mid_receive_the_receiver_keeps_what_it_got() -> None:
    with _peer(faults=[Fault(on="deliver", after=2, do="detach", role="receiver")]) as peer:
        result = outcome(lambda: HANDLERS["Receiver"](peer.url + "/q"))
        _not_a_timeout(result)
        assert result == ["m1", "m2"]
        assert set(peer.record.accepted) <= set(result)


def test_detach_mid_send_is_a_link_error_for_the_sender() -> None:
    with _peer(faults=[Fault(on="transfer", after=1, do="detach", role="sender")]) as peer:
        result = outcome(lambda: HANDLERS["Sender"](peer.url + "/q"))
        assert isinstance(result, pe.LinkError), result


def test_detach_of_the_reply_queue_fails_the_requester() -> None:
    with _peer(faults=[Fault(on="attach", do="detach", role="dynamic")],
               responders={"svc": str.upper}) as peer:
        result = outcome(lambda: HANDLERS["Requester"](peer.url + "/svc"))
        assert isinstance(result, pe.LinkError), result


def test_detach_mid_serve_ends_the_responder() -> None:
    with _peer(queues=_REQUESTS,
               faults=[Fault(on="deliver", after=1, do="detach", role="receiver")]) as peer:
        result = outcome(lambda: HANDLERS["Responder"](peer.url + "/q"))
        _not_a_timeout(result)
        accepted = peer.record.accepted
        assert accepted in ([], ["r1"], ["r1", "r2"]), accepted
        assert isinstance(result, pe.LinkError) or result == len(accepted), (result, accepted)


@pytest.mark.parametrize("name", ["TxSender", "TxReceiver"])
def test_detach_of_the_coordinator_is_a_transaction_error_for_tx_handlers(name: str) -> None:
    with _peer(faults=[Fault(on="attach", do="detach", role="coordinator")]) as peer:
        result = outcome(lambda: HANDLERS[name](peer.url + "/q"))
        assert isinstance(result, pe.TransactionError), result
        assert peer.record.accepted == [] and peer.record.received == []


# -- the peer ends the session with an error condition -----------------------------------------
@pytest.mark.parametrize("name", ["Sender", "Receiver", "Responder"])
def test_session_ended_with_error_is_a_link_error_for_handlers(name: str) -> None:
    fault = Fault(on="attach", do="end", condition="amqp:not-implemented",
                  description="no links here")
    with _peer(faults=[fault]) as peer:
        result = outcome(lambda: HANDLERS[name](peer.url + "/q"))
        assert isinstance(result, pe.LinkError), result
        assert result.condition == "amqp:not-implemented"
        assert "no links here" in str(result)


def test_refused_dynamic_reply_queue_fails_the_requester() -> None:
    with _peer(dynamic=False, responders={"svc": str.upper}) as peer:
        result = outcome(lambda: HANDLERS["Requester"](peer.url + "/svc"))
        assert isinstance(result, pe.LinkError), result
        assert result.condition == "amqp:not-implemented"


@pytest.mark.parametrize("name", ["TxSender", "TxReceiver"])
def test_refused_transactions_are_a_transaction_error_for_tx_handlers(name: str) -> None:
    with _peer() as peer:
        result = outcome(lambda: HANDLERS[name](peer.url + "/q"))
        assert isinstance(result, pe.TransactionError), result
        assert result.condition == "amqp:not-implemented"
        assert peer.record.received == [] and peer.record.accepted == []


# -- the peer closes the connection -------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_connection_closed_without_a_reason_fails_every_handler(name: str) -> None:
    with _peer(faults=[Fault(on="attach", do="close_connection")]) as peer:
        result = outcome(lambda: HANDLERS[name](f"{peer.url}/{_address(name)}"))
        _not_a_timeout(result)
        assert isinstance(result, pe.ConnectionLost), result
        assert "closed the connection" in str(result)


def test_a_sender_refused_by_the_peer_fails_with_the_refusal() -> None:
    with _peer(settle="reject") as peer:
        result = outcome(lambda: HANDLERS["Sender"](peer.url + "/q"))
        assert isinstance(result, pe.Rejected), result


# -- drain: browsing asks the peer to drain its credit ------------------------------------------
def test_drop_on_drain_browse_is_connection_lost_or_the_messages_not_a_hang() -> None:
    """The peer cuts the socket when the browser drains (once): browse comes back within its
    timeout, with the queue's messages after the reconnect or with pe.ConnectionLost; browsing
    takes nothing, so the queue still holds both."""
    with _peer(faults=[Fault(on="drain", do="drop", times=1)]) as peer:
        result = outcome(lambda: _bodies(pe.browse(peer.url + "/q", timeout=TIMEOUT)))
        _not_a_timeout(result)
        assert peer.record.drains >= 1
        assert result == ["m1", "m2"] or isinstance(result, pe.ConnectionLost), result
        assert peer.bodies("q") == ["m1", "m2"]


def test_drop_on_drain_receiver_handler_without_reconnect_is_connection_lost() -> None:
    """A draining Receiver handler (``drain=True``) whose peer cuts the socket at the drain,
    with reconnect off: pe.ConnectionLost, not a hang; what it took before is in its
    ``messages``."""
    with _peer(faults=[Fault(on="drain", do="drop")]) as peer:
        job = Receiver(peer.url + "/q", count=5, drain=True, timeout=TIMEOUT, reconnect=False)
        result = outcome(lambda: run_job(job))
        _not_a_timeout(result)
        assert peer.record.drains >= 1
        assert isinstance(result, pe.ConnectionLost), result
        assert set(peer.record.accepted) <= set(_bodies(job.messages))


def test_a_broker_that_cannot_browse_fails_the_browse_and_keeps_every_message() -> None:
    """A peer that attaches a browser without distribution-mode copy would hand out the
    messages themselves: browse and a browsing Receiver fail with pe.LinkError saying so,
    before settling anything, and the queue keeps both messages."""
    with _peer(browsing=False) as peer:
        result = outcome(lambda: pe.browse(peer.url + "/q", timeout=TIMEOUT))
        assert isinstance(result, pe.LinkError), result
        assert "distribution-mode copy" in str(result)
        job = Receiver(peer.url + "/q", count=0, browse=True, drain=True, timeout=TIMEOUT)
        assert isinstance(outcome(lambda: run_job(job)), pe.LinkError)
        assert peer.record.accepted == []
        assert peer.bodies("q") == ["m1", "m2"]
