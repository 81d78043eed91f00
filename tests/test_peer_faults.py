"""Every job against a peer that ends its links or sessions in ways Artemis never does.

The scripted peer (tests/amqp_peer.py) detaches links without ``closed=true``, ends sessions
with an error condition, and closes connections with a condition. What each test asks for:
the job ends well within its timeout, never with ``pe.Timeout``, with its result (a receive
returns what it got; nothing the peer saw accepted is missing from it) or with a typed error
(``pe.LinkError`` / ``pe.TransactionError``) that carries the peer's condition.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, List

import pytest

import proton_easy as pe

from .amqp_peer import AmqpPeer, Fault

TIMEOUT = 4.0
"""Each job's own timeout: a job that waits for a close that never comes fails with Timeout."""
HANG_LIMIT = TIMEOUT + 6.0
"""A job still running this long after it started does not honour its timeout at all."""


def outcome(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a thread; return its result or the exception it raised.

    A call that has not returned after HANG_LIMIT seconds (its timeout plus a margin) fails
    the test: that is a hang past the timeout, not a slow answer.
    """
    box: Dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(HANG_LIMIT)
    if thread.is_alive():
        pytest.fail(f"the call was still running {HANG_LIMIT:g} s after it started "
                    f"(its timeout is {TIMEOUT:g} s)")
    if "error" in box:
        return box["error"]
    return box["result"]


def _consume(url: str) -> List[Any]:
    with pe.consume(url, idle_timeout=None, timeout=TIMEOUT) as messages:
        return [m.body for m in messages]


def _transaction(url: str) -> str:
    with pe.transaction(url, timeout=TIMEOUT) as tx:
        tx.send("in a transaction")
    return "committed"


JOBS: Dict[str, Callable[[str], Any]] = {
    "send": lambda url: pe.send(url, "one", timeout=TIMEOUT),
    "send_many": lambda url: pe.send_many(url, range(100), timeout=TIMEOUT),
    "receive": lambda url: [m.body for m in pe.receive(url, count=5, timeout=TIMEOUT)],
    "consume": _consume,
    "request": lambda url: pe.request(url, "ping", timeout=TIMEOUT).body,
    "serve": lambda url: pe.serve(url, lambda m: m.body, count=2, timeout=TIMEOUT),
    "transaction": _transaction,
}


def _peer(**kwargs: Any) -> AmqpPeer:
    kwargs.setdefault("queues", {"q": ["m1", "m2"]})
    return AmqpPeer(lifetime=60, **kwargs)


def _not_a_timeout(result: Any) -> None:
    assert not isinstance(result, pe.Timeout), f"the job waited out its timeout: {result!r}"
    assert not isinstance(result, BaseException) or isinstance(result, pe.AMQPError), (
        f"an untyped error: {result!r}")


# -- the peer answers a link's close with a detach (closed=false) ------------------------------
@pytest.mark.parametrize("job", ["send", "send_many", "receive", "request", "serve"])
def test_close_answered_by_detach_ends_the_job_with_its_result(job: str) -> None:
    """Some brokers answer every link close with a plain detach: the job has done its work
    and must return its result, not wait for a ``closed=true`` that never comes."""
    with _peer(on_close="detach", responders={"svc": lambda b: f"re: {b}"}) as peer:
        address = "svc" if job == "request" else "q"
        result = outcome(lambda: JOBS[job](f"{peer.url}/{address}"))
        _not_a_timeout(result)
        expected = {"send": None, "send_many": 100, "receive": ["m1", "m2"],
                    "request": "re: ping", "serve": 2}[job]
        assert result == expected
        if job in ("receive", "serve"):
            assert peer.record.accepted == ["m1", "m2"]


def test_close_answered_by_detach_consume_with_idle_timeout() -> None:
    """consume(idle_timeout=1) ends after its idle second, with both messages, although the
    peer answers the link's close with a detach."""
    with _peer(on_close="detach") as peer:
        def run() -> List[Any]:
            with pe.consume(peer.url + "/q", idle_timeout=1, timeout=TIMEOUT) as messages:
                return [m.body for m in messages]
        result = outcome(run)
        _not_a_timeout(result)
        assert result == ["m1", "m2"]
        assert peer.record.accepted == ["m1", "m2"]


# -- the peer detaches a link (closed=false, no condition) while the job runs ------------------
def test_detach_mid_receive_returns_what_it_got() -> None:
    """The link ends after two of five messages: receive returns those two at once, and every
    message the peer saw accepted is in what it returned (nothing accepted and lost)."""
    with _peer(faults=[Fault(on="deliver", after=2, do="detach", role="receiver")]) as peer:
        result = outcome(lambda: JOBS["receive"](peer.url + "/q"))
        _not_a_timeout(result)
        assert isinstance(result, list), result
        assert set(peer.record.accepted) <= set(result)
        assert result == ["m1", "m2"]


def test_detach_mid_consume_ends_the_iteration() -> None:
    """consume(idle_timeout=None) on a link that the peer detaches after two messages: the
    loop ends (normally or with pe.LinkError) instead of waiting forever. It gets the messages
    it took before the detach was seen; one that arrived but was not handed over yet cannot be
    accepted on the detached link, so it is not handed over (the broker keeps it): every
    message the peer saw accepted was seen by the loop, and the loop saw them in order."""
    seen: List[Any] = []

    def run() -> Any:
        with pe.consume(peer.url + "/q", idle_timeout=None, timeout=TIMEOUT) as messages:
            for msg in messages:
                seen.append(msg.body)
        return seen

    with _peer(faults=[Fault(on="deliver", after=2, do="detach", role="receiver")]) as peer:
        result = outcome(run)
        _not_a_timeout(result)
        assert seen in ([], ["m1"], ["m1", "m2"]), seen
        assert set(peer.record.accepted) <= set(seen)


@pytest.mark.parametrize("job", ["send", "send_many"])
def test_detach_mid_send_is_a_link_error(job: str) -> None:
    """The peer detaches the sender's link when the first message arrives, before settling
    it: the send cannot be confirmed, which is a pe.LinkError at once, not a Timeout."""
    with _peer(faults=[Fault(on="transfer", after=1, do="detach", role="sender")]) as peer:
        result = outcome(lambda: JOBS[job](peer.url + "/q"))
        assert isinstance(result, pe.LinkError), result
        assert peer.record.received[:1] in (["one"], [0])


def test_detach_of_the_reply_queue_fails_the_request() -> None:
    """The peer detaches the requester's dynamic reply receiver: pe.LinkError at once."""
    with _peer(faults=[Fault(on="attach", do="detach", role="dynamic")],
               responders={"svc": str.upper}) as peer:
        result = outcome(lambda: JOBS["request"](peer.url + "/svc"))
        assert isinstance(result, pe.LinkError), result


def test_detach_mid_serve_ends_serve() -> None:
    """serve(count=2) whose request link the peer detaches after the first request: serve
    ends at once (pe.LinkError, or the count it answered, which is what the peer saw
    accepted)."""
    with _peer(queues={"q": [pe.Message("r1", reply_to="replies").to_proton(),
                             pe.Message("r2", reply_to="replies").to_proton()]},
               faults=[Fault(on="deliver", after=1, do="detach", role="receiver")]) as peer:
        result = outcome(lambda: JOBS["serve"](peer.url + "/q"))
        _not_a_timeout(result)
        # what serve says it answered is what the peer saw accepted; the rest went back
        accepted = peer.record.accepted
        assert accepted in ([], ["r1"], ["r1", "r2"]), accepted
        assert isinstance(result, pe.LinkError) or result == len(accepted), (result, accepted)


def test_detach_of_the_coordinator_is_a_transaction_error() -> None:
    """The peer detaches the transaction coordinator link: pe.TransactionError at once."""
    with _peer(faults=[Fault(on="attach", do="detach", role="coordinator")]) as peer:
        result = outcome(lambda: _transaction(peer.url + "/q"))
        assert isinstance(result, pe.TransactionError), result


# -- the peer ends the session with an error condition -----------------------------------------
@pytest.mark.parametrize("job", ["send", "send_many", "receive", "consume", "serve"])
def test_session_ended_with_error_is_a_link_error(job: str) -> None:
    """The peer answers the attach by ending the session with amqp:not-implemented: the job
    fails at once with pe.LinkError carrying that condition (not a Timeout, no hang)."""
    fault = Fault(on="attach", do="end", condition="amqp:not-implemented",
                  description="no links here")
    with _peer(faults=[fault]) as peer:
        result = outcome(lambda: JOBS[job](peer.url + "/q"))
        assert isinstance(result, pe.LinkError), result
        assert result.condition == "amqp:not-implemented"
        assert "no links here" in str(result)


def test_refused_dynamic_reply_queue_fails_the_request() -> None:
    """A peer without dynamic nodes ends the session with amqp:not-implemented when the
    requester asks for its reply queue: pe.LinkError carrying it, not "no reply"."""
    with _peer(dynamic=False, responders={"svc": str.upper}) as peer:
        result = outcome(lambda: JOBS["request"](peer.url + "/svc"))
        assert isinstance(result, pe.LinkError), result
        assert result.condition == "amqp:not-implemented"


def test_refused_transactions_are_a_transaction_error() -> None:
    """A peer without transactions ends the coordinator's session with amqp:not-implemented:
    pe.TransactionError carrying it, and nothing was sent outside the transaction."""
    with _peer() as peer:
        result = outcome(lambda: _transaction(peer.url + "/q"))
        assert isinstance(result, pe.TransactionError), result
        assert result.condition == "amqp:not-implemented"
        assert "in a transaction" not in peer.record.received


def test_session_ended_mid_send_many_is_a_link_error() -> None:
    """The session ends with amqp:internal-error at the 10th of 100 messages: pe.LinkError
    carrying it, at once."""
    fault = Fault(on="transfer", after=10, do="end", condition="amqp:internal-error",
                  description="disk full")
    with _peer(faults=[fault]) as peer:
        result = outcome(lambda: JOBS["send_many"](peer.url + "/q"))
        assert isinstance(result, pe.LinkError), result
        assert result.condition == "amqp:internal-error"


def test_connection_closed_with_condition_fails_send() -> None:
    """The peer closes the connection with a condition when the link attaches: pe.send fails
    with a typed error naming it, never hangs past its timeout (it used to hang for good)."""
    fault = Fault(on="attach", do="close_connection", condition="amqp:internal-error",
                  description="shutting down")
    with _peer(faults=[fault]) as peer:
        result = outcome(lambda: JOBS["send"](peer.url + "/q"))
        _not_a_timeout(result)
        assert isinstance(result, pe.AMQPError), result
        assert "shutting down" in str(result)


@pytest.mark.parametrize("job", ["send", "send_many", "receive", "consume", "request",
                                 "serve", "transaction"])
def test_connection_closed_without_a_reason_fails_every_job(job: str) -> None:
    """The peer closes the connection (no condition) when the link attaches: proton does not
    reconnect after a close, so every job fails at once with pe.ConnectionLost instead of
    taking the closed connection for one that is coming back."""
    with _peer(faults=[Fault(on="attach", do="close_connection")]) as peer:
        result = outcome(lambda: JOBS[job](peer.url + "/q"))
        _not_a_timeout(result)
        assert isinstance(result, pe.ConnectionLost), result
        assert "closed the connection" in str(result)


def test_a_send_many_timeout_counts_what_is_in_doubt() -> None:
    """A peer that never settles: send_many times out (no progress) and says that every
    message it sent is in doubt, not "0 deliveries in doubt"."""
    with _peer(settle="never") as peer:
        result = outcome(lambda: pe.send_many(peer.url + "/q", range(100), timeout=2))
        assert isinstance(result, pe.Timeout), result
        assert "(100 deliveries in doubt)" in str(result), result


def test_a_long_burst_cut_by_a_dropped_socket_hands_over_whole_messages_in_order() -> None:
    """The peer writes 300 messages of 2 KB (many socket reads, more than a pass of the loop
    reads at once) and cuts the socket right after: the end of the stream is seen, whatever
    read it falls in (consume ends at its idle timeout after the reconnect, no hang, no
    untyped error), and what was handed over is whole and in order."""
    bodies = [f"{n:04d}" + "x" * 2000 for n in range(300)]
    seen: List[Any] = []
    with _peer(queues={"q": bodies},
               faults=[Fault(on="deliver", after=300, do="drop", times=1)]) as peer:
        def run() -> int:
            with pe.Client(peer.url, timeout=TIMEOUT) as client, \
                    client.consume("q", idle_timeout=2, window=300) as messages:
                for msg in messages:
                    seen.append(msg.body)
            return len(seen)

        result = outcome(run)
        _not_a_timeout(result)
        assert isinstance(result, int), result
        assert peer.record.opens >= 2  # the cut was seen: the client connected again
    assert seen == bodies[:len(seen)]
    assert set(peer.record.accepted) <= set(seen)
