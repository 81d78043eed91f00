"""Request/reply against a real Artemis: pe.request/serve, Client.request/serve, the handlers.

A handler that raises gets its request rejected: Artemis dead-letters it and the requester gets
no reply, so its ``request`` ends in ``pe.Timeout``. These tests pin that down.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
from proton.reactor import Container

import proton_easy as pe
from proton_easy._request_reply import _Server
from proton_easy.handlers import Requester, Responder

from .seed_peers import SeedClient, SeedServer, run, start


def url_for(amqp_url: str, address: str) -> str:
    return f"{amqp_url}/{address}"


def serving(client: pe.Client, address: str, handler: Callable[[pe.Message], Any],
            **kwargs: Any) -> Callable[[], int]:
    """Run ``client.serve`` in a thread; the result waits for it and returns what it returned."""
    result: List[Any] = []

    def target() -> None:
        try:
            result.append(client.serve(address, handler, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - re-raised by join()
            result.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()

    def join(timeout: float = 30.0) -> int:
        thread.join(timeout)
        assert not thread.is_alive(), f"serve did not return within {timeout} s"
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0]

    return join


# -- interop with the seed's hand-written request/reply peers (Examples 3.6 and 3.7) ---------------
def test_pe_request_against_the_seed_server(amqp_url: str, amqp_address: str) -> None:
    done = start(SeedServer(amqp_url, "queue://" + amqp_address, count=3))
    url = url_for(amqp_url, amqp_address)
    replies = [pe.request(url, text, timeout=10) for text in ("one", "two")]
    replies.append(pe.request(url, pe.Message("three", properties={"k": 1}), timeout=10))
    assert [r.body for r in replies] == ["ONE", "TWO", "THREE"]
    assert all(isinstance(r, pe.Message) for r in replies)
    assert len({r.correlation_id for r in replies}) == 3  # a fresh correlation id each time
    assert done().served == 3


def test_seed_client_against_pe_serve(amqp_url: str, amqp_address: str) -> None:
    requests = ["Twas brillig, and the slithy toves", "Did gire and gymble in the wabe.",
                "All mimsy were the borogroves,", "And the mome raths outgrabe."]
    with pe.Client(amqp_url) as server:
        served = serving(server, amqp_address, lambda msg: msg.body.upper(), count=4)
        client = run(SeedClient(url_for(amqp_url, "queue://" + amqp_address), requests))
        assert served() == 4
    assert client.replies == [(text, text.upper()) for text in requests]


# -- the blocking layer --------------------------------------------------------------------------
def test_concurrent_requests_over_one_client_each_get_their_own_reply(
        amqp_url: str, amqp_address: str) -> None:
    n = 50
    with pe.Client(amqp_url) as server, pe.Client(amqp_url) as client:
        served = serving(server, amqp_address, lambda msg: {"echo": msg.body}, count=n)
        barrier = threading.Barrier(n)

        def ask(i: int) -> pe.Message:
            barrier.wait(10)
            return client.request(amqp_address, {"n": i}, timeout=20)

        with ThreadPoolExecutor(n) as pool:
            replies = list(pool.map(ask, range(n)))
        assert served() == n
    assert [r.body for r in replies] == [{"echo": {"n": i}} for i in range(n)]
    assert len({r.correlation_id for r in replies}) == n
    assert len({r.address for r in replies}) == 1  # one reply queue for the whole client


def test_late_reply_after_a_timeout_does_not_reach_the_next_request(
        amqp_url: str, amqp_address: str) -> None:
    def slow_upper(msg: pe.Message) -> str:
        if msg.body == "slow":
            time.sleep(1.5)
        return msg.body.upper()

    with pe.Client(amqp_url) as server, pe.Client(amqp_url) as client:
        served = serving(server, amqp_address, slow_upper, count=2)
        with pytest.raises(pe.Timeout):
            client.request(amqp_address, "slow", timeout=0.5)
        # The SLOW reply arrives while this request waits: it must be dropped, not returned.
        assert client.request(amqp_address, "fast", timeout=10).body == "FAST"
        assert served() == 2


def test_handler_exception_rejects_the_request_and_serving_goes_on(
        amqp_url: str, amqp_address: str) -> None:
    tag = f"tag-{amqp_address}"

    def handler(msg: pe.Message) -> str:
        if msg.body == "boom":
            raise ValueError("cannot handle boom")
        return msg.body.upper()

    with pe.Client(amqp_url) as server, pe.Client(amqp_url) as client:
        served = serving(server, amqp_address, handler, count=2)
        with pytest.raises(pe.Timeout):  # a rejected request gets no reply
            client.request(amqp_address, pe.Message("boom", properties={"tag": tag}), timeout=1)
        assert client.request(amqp_address, "still here", timeout=10).body == "STILL HERE"
        assert served() == 2
        # The rejected request is not lost: Artemis dead-letters it.
        (dead,) = client.receive("DLQ", count=1, timeout=10, selector=f"tag = '{tag}'")
    assert dead.body == "boom"


def test_request_to_an_address_nobody_serves_times_out_in_time(
        amqp_url: str, amqp_address: str) -> None:
    started = time.monotonic()
    with pytest.raises(pe.Timeout) as info:
        pe.request(url_for(amqp_url, amqp_address), "anyone there?", timeout=1)
    assert isinstance(info.value, TimeoutError)
    assert time.monotonic() - started < 5  # connect + 1 s + close
    with pe.Client(amqp_url) as client:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            client.request(amqp_address, "anyone there?", timeout=0.5)
        assert 0.5 <= time.monotonic() - started < 2


def test_reply_can_be_a_message_with_properties(amqp_url: str, amqp_address: str) -> None:
    def handler(msg: pe.Message) -> pe.Message:
        return pe.Message({"sum": sum(msg.body)}, properties={"status": "ok"}, subject="sum")

    with pe.Client(amqp_url) as server:
        served = serving(server, amqp_address, handler, count=1)
        reply = pe.request(url_for(amqp_url, amqp_address), [1, 2, 3], timeout=10)
        assert served() == 1
    assert reply.body == {"sum": 6}
    assert reply.properties == {"status": "ok"}
    assert reply.subject == "sum"


def test_serve_returns_after_idle_timeout(amqp_url: str, amqp_address: str) -> None:
    started = time.monotonic()
    assert pe.serve(url_for(amqp_url, amqp_address), lambda m: m.body, timeout=1) == 0
    assert 1 <= time.monotonic() - started < 5


@pytest.fixture
def ctrl_c() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt in this test, as it does at a terminal, even when the
    tests run where SIGINT is ignored (a background job of a non-interactive shell, nohup):
    Python then starts with SIG_IGN, and a SIGINT would never reach the code under test."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("needs the main thread for SIGINT")
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def test_ctrl_c_stops_serve_cleanly_and_puts_the_request_in_hand_back(
        amqp_url: str, amqp_address: str, ctrl_c: None) -> None:
    handling = threading.Event()

    def handler(msg: pe.Message) -> str:
        handling.set()
        time.sleep(10)  # Ctrl-C lands here
        return "never"

    def press_ctrl_c() -> None:
        if handling.wait(10):
            time.sleep(0.5)  # let the handler reach its sleep (a signal just before is deferred)
            os.kill(os.getpid(), signal.SIGINT)

    pe.send(url_for(amqp_url, amqp_address), pe.Message("work", reply_to="nobody-listens"))
    threading.Thread(target=press_ctrl_c, daemon=True).start()
    with pe.Client(amqp_url) as client:
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            client.serve(amqp_address, handler, timeout=15)
        assert time.monotonic() - started < 8
        # The server's link is closed and the request went back on the queue, unanswered.
        (back,) = client.receive(amqp_address, count=1, timeout=5)
    assert back.body == "work"


def test_ctrl_c_stops_an_idle_serve_promptly(amqp_url: str, amqp_address: str,
                                            ctrl_c: None) -> None:
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    with pe.Client(amqp_url) as client:
        # a serve the Ctrl-C missed would run forever: closing the client after 10 s ends
        # it with an AMQPError, so the test fails instead of hanging
        watchdog = threading.Timer(10, client.close)
        started = time.monotonic()
        timer.start()
        watchdog.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                client.serve(amqp_address, lambda msg: msg.body)  # no count, no timeout
        finally:
            watchdog.cancel()
        assert time.monotonic() - started < 3
        client.send(amqp_address, "after the server stopped")
        (left,) = client.receive(amqp_address, count=1, timeout=5)  # nobody took it
    assert left.body == "after the server stopped"


@pytest.mark.parametrize("race", ["dropped by the loop", "taken by the server first"])
def test_serve_handles_no_request_from_a_lost_connection_after_the_drop(
        artemis_factory: Any, monkeypatch: pytest.MonkeyPatch, race: str) -> None:
    """Requests taken ahead for the serving thread when the connection drops are not handled
    after it (the broker sends them again: each would be handled twice, its reply sent twice):
    after the drop the handler gets the broker's sequence, one run in order. The second case
    has the serving thread take every queued request before the loop can drop it."""
    if race == "taken by the server first":
        monkeypatch.setattr(_Server, "_release_queued", lambda job: None)
    broker = artemis_factory()
    pe.send_many(broker.address_url("svc-q"),
                 (pe.Message(i, durable=True, reply_to="replies-q") for i in range(40)))
    handled: List[int] = []

    def handler(msg: pe.Message) -> Any:
        handled.append(msg.body)
        if len(handled) == 5:  # more taken ahead and queued: the connection drops now
            broker.kill()
            broker.restart()
        return msg.body

    with pe.Client(broker.url) as client:
        client.serve("svc-q", handler, timeout=5)
    after = handled[5:]
    assert after == list(range(after[0], 40)) and after[0] <= 5, after


def test_close_wakes_threads_waiting_for_replies(amqp_url: str, amqp_address: str) -> None:
    client = pe.Client(amqp_url)
    errors: List[BaseException] = []

    def ask() -> None:
        try:
            client.request(amqp_address, "no one answers", timeout=30)
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    client.close()
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - started < 5
    assert len(errors) == 1 and isinstance(errors[0], pe.AMQPError)
    assert not isinstance(errors[0], pe.Timeout)


def test_close_ends_a_serve_running_in_another_thread(amqp_url: str, amqp_address: str) -> None:
    client = pe.Client(amqp_url)
    served = serving(client, amqp_address, lambda msg: msg.body)
    time.sleep(0.5)
    client.close()
    with pytest.raises(pe.AMQPError):
        served(5)


def test_unencodable_request_is_a_type_error_before_any_io() -> None:
    with pytest.raises(TypeError):  # port 1: had it tried to connect, this were a ConnectError
        pe.request("amqp://127.0.0.1:1/nowhere", {"when": object()}, timeout=1)
    with pytest.raises(ValueError):
        pe.request("amqp://127.0.0.1:1/nowhere", "hello", timeout=-1)


@pytest.mark.parametrize("handler, kwargs, error", [
    ("not callable", {}, TypeError),
    (str, {"count": 0}, ValueError),
    (str, {"timeout": 0}, ValueError),
    (str, {"timeout": "5"}, TypeError),
])
def test_wrong_serve_arguments_fail_before_any_io(handler: Any, kwargs: Dict[str, Any],
                                                 error: type) -> None:
    with pytest.raises(error):
        pe.serve("amqp://127.0.0.1:1/nowhere", handler, **kwargs)


# -- the handler classes, run like the seed's examples ---------------------------------------------
class UpperServer(Responder):
    def respond(self, msg: pe.Message) -> Any:
        return msg.body.upper()


class Collecting(Requester):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pairs: List[Tuple[Any, Any]] = []

    def on_reply(self, request: pe.Message, reply: pe.Message) -> None:
        super().on_reply(request, reply)
        self.pairs.append((request.body, reply.body))


def run_standalone(handler: Any, timeout: float = 30.0) -> Callable[[], Any]:
    errors: List[BaseException] = []

    def target() -> None:
        try:
            Container(handler).run()
        except BaseException as exc:  # noqa: BLE001 - re-raised by join()
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()

    def join() -> Any:
        thread.join(timeout)
        assert not thread.is_alive(), f"{type(handler).__name__} did not finish"
        if errors:
            raise errors[0]
        return handler

    return join


def test_requester_and_responder_subclasses_run_like_the_seed(amqp_url: str,
                                                              amqp_address: str) -> None:
    url = url_for(amqp_url, amqp_address)
    texts = ["Twas brillig", "and the slithy toves", "did gyre", "and gimble"]
    server_done = run_standalone(UpperServer(url, count=len(texts)))
    client = run_standalone(Collecting(url, texts, timeout=10))()
    server = server_done()
    assert sorted(client.pairs) == sorted((t, t.upper()) for t in texts)
    assert [r.body for r in client.result] == [r.body for r in client.replies]
    assert client.error is None and server.error is None
    assert server.result == len(texts)


def test_responder_without_anonymous_relay_replies_through_cached_senders(
        amqp_url: str, amqp_address: str) -> None:
    url = url_for(amqp_url, amqp_address)
    server_done = run_standalone(UpperServer(url, count=4, anonymous_relay=False))
    with pe.Client(amqp_url) as a, pe.Client(amqp_url) as b:  # two reply queues
        bodies = [c.request(amqp_address, t, timeout=10).body
                  for c, t in ((a, "a1"), (b, "b1"), (a, "a2"), (b, "b2"))]
    server = server_done()
    assert bodies == ["A1", "B1", "A2", "B2"]
    assert server.result == 4 and server._relay is None


def test_sender_caches_close_idle_senders_and_keep_working(
        amqp_url: str, amqp_address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from proton_easy.handlers import _request_reply as _rr_handlers

    monkeypatch.setattr(_rr_handlers, "_SENDER_CACHE", 2)
    addresses = [f"{amqp_address}-{i}" for i in range(3)]
    servers = [run_standalone(UpperServer(url_for(amqp_url, a), count=3, anonymous_relay=False))
               for a in addresses]
    with pe.Client(amqp_url) as c1, pe.Client(amqp_url) as c2, pe.Client(amqp_url) as c3:
        bodies = [client.request(address, f"{n}-{address}", timeout=10).body
                  for n, client in enumerate((c1, c2, c3)) for address in addresses]
        assert all(len(c._requests._channel._senders) == 2 for c in (c1, c2, c3))  # one was closed
    assert bodies == [f"{n}-{a}".upper() for n in range(3) for a in addresses]
    assert [done().result for done in servers] == [3, 3, 3]


def test_requester_times_out_when_nobody_answers(amqp_url: str, amqp_address: str) -> None:
    requester = Collecting(url_for(amqp_url, amqp_address), ["hello?"], timeout=0.5)
    started = time.monotonic()
    with pytest.raises(pe.Timeout):
        Container(requester).run()
    assert time.monotonic() - started < 5
    assert requester.pairs == []


def test_requester_times_out_only_the_unanswered_requests_and_goes_on(
        amqp_url: str, amqp_address: str) -> None:
    class Patient(Collecting):
        def __init__(self, url: str) -> None:
            super().__init__(url, ["a", "skip 1", "b", "skip 2", "c"], timeout=1)
            self.timed_out: List[str] = []

        def on_timeout(self, request: pe.Message) -> None:  # no failure: the job goes on
            self.timed_out.append(request.body)
            if request.body == "skip 2":
                self.request("d")  # a request made after the others' waits ended

    def upper_unless_skip(msg: pe.Message) -> str:
        if msg.body.startswith("skip"):
            raise ValueError("not answered")  # rejected: no reply comes
        return str(msg.body.upper())

    url = url_for(amqp_url, amqp_address)
    server_done = run_standalone(Responder(url, upper_unless_skip, count=6))
    requester = run_standalone(Patient(url))()
    assert requester.error is None
    assert requester.timed_out == ["skip 1", "skip 2"]
    assert sorted(requester.pairs) == [("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")]
    assert server_done().result == 6


def test_requester_hook_can_send_follow_up_requests(amqp_url: str, amqp_address: str) -> None:
    class Countdown(Requester):
        def __init__(self, url: str) -> None:
            super().__init__(url, [3], timeout=10)
            self.seen: List[int] = []

        def on_reply(self, request: pe.Message, reply: pe.Message) -> None:
            self.seen.append(reply.body)
            if reply.body > 0:
                self.request(reply.body)  # the job ends once no request is left waiting

    url = url_for(amqp_url, amqp_address)
    server_done = run_standalone(Responder(url, lambda msg: msg.body - 1, count=3))
    countdown = run_standalone(Countdown(url))()
    assert countdown.seen == [2, 1, 0]
    assert server_done().result == 3


@pytest.mark.parametrize("bad", [{"count": 0}, {"count": True}, {"timeout": -1},
                                 {"window": 0}])
def test_responder_rejects_bad_arguments(bad: Dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError)):
        Responder("amqp://localhost/q", **bad)


@pytest.mark.parametrize("requests", ["a string", b"bytes", {"a": 1}, 42])
def test_requester_wants_a_list_of_requests(requests: Optional[Any]) -> None:
    with pytest.raises(TypeError):
        Requester("amqp://localhost/q", requests)


def cut_connection(client: pe.Client) -> None:
    """Fault injection: break the client's TCP connection as a network failure would."""
    def cut() -> None:
        client._conn.proton.transport._selectable._delegate.shutdown(socket.SHUT_RDWR)

    client._loop.call(cut).result(5)


def test_request_in_flight_is_sent_again_after_a_dropped_connection(
        amqp_url: str, amqp_address: str) -> None:
    gate = threading.Event()

    def handler(msg: pe.Message) -> str:
        if msg.body == "slow":
            gate.wait(10)
        return msg.body.upper()

    with pe.Client(amqp_url) as server, pe.Client(amqp_url) as client:
        # one, slow (answered to the lost reply queue), slow again (re-sent), three
        served = serving(server, amqp_address, handler, count=4)
        assert client.request(amqp_address, "one", timeout=10).body == "ONE"
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(client.request, amqp_address, "slow", timeout=20)
            time.sleep(0.5)
            cut_connection(client)  # the reply queue dies with the connection
            time.sleep(0.5)
            gate.set()
            assert slow.result(25).body == "SLOW"  # re-sent with the new reply queue
        assert client.request(amqp_address, "three", timeout=10).body == "THREE"
        assert served() == 4


def test_request_and_serve_recover_after_the_broker_crashed(artemis_factory: Any) -> None:
    broker = artemis_factory()
    with pe.Client(broker.url) as server, pe.Client(broker.url) as client:
        served = serving(server, "service", lambda msg: msg.body * 2, count=2)
        assert client.request("service", 21, timeout=10).body == 42
        broker.kill()
        broker.restart()
        # Both connections come back; the client's reply queue is a new one now.
        assert client.request("service", 50, timeout=30).body == 100
        assert served() == 2


def test_request_and_serve_recover_after_a_graceful_broker_restart(
        artemis_factory: Any) -> None:
    broker = artemis_factory()
    with pe.Client(broker.url) as server, pe.Client(broker.url) as client:
        served = serving(server, "service", lambda msg: msg.body * 2, count=2)
        assert client.request("service", 21, timeout=10).body == 42
        broker.restart()  # a graceful stop, then a start
        assert client.request("service", 50, timeout=20).body == 100
        assert served() == 2
