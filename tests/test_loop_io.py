"""The loop's lean IO: hot-path events handled without proton's event objects, and the cases
that must still take proton's way (handlers that want the events)."""

from __future__ import annotations

import threading
from typing import Any, List

import pytest
from proton import Event, Handler
from proton.handlers import MessagingHandler

import proton_easy as pe
from proton_easy._engine import compat, loop
from proton_easy.handlers import Sender

native = pytest.mark.skipif(not (loop._RAW_FLOW and loop._LEAN_IO),
                            reason="proton's public API only: events go the usual way")


class _FlowCounter(Sender):
    """A Sender subclass that overrides ``on_link_flow``: it must keep getting flow events."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.flows = 0

    def on_link_flow(self, event: Any) -> None:
        self.flows += 1
        super().on_link_flow(event)


def test_a_sender_that_overrides_on_link_flow_still_gets_flow_events(
        amqp_url: str, amqp_address: str) -> None:
    job = _FlowCounter(messages=5, address=amqp_address, durable=False)
    assert not job.raw_flow
    assert Sender(messages=1, address=amqp_address).raw_flow
    with pe.Client(amqp_url) as client:
        assert client.run(job, timeout=10) == 5
        assert len(client.receive(amqp_address, count=5, timeout=10)) == 5
    assert job.flows >= 1


class _WantsTransport(Handler):
    def __init__(self) -> None:
        self.seen = 0

    def on_transport(self, event: Any) -> None:
        self.seen += 1


class _Catches(Handler):
    def on_unhandled(self, method: str, *args: Any) -> None:
        pass


def test_transport_events_are_dropped_only_for_handlers_that_ignore_them() -> None:
    assert loop._ignores_transport({"_handler": MessagingHandler()})
    assert not loop._ignores_transport({"_handler": _WantsTransport()})
    assert not loop._ignores_transport({"_handler": _Catches()})
    parent = MessagingHandler()
    parent.handlers.append(_WantsTransport())
    assert not loop._ignores_transport({"_handler": parent})  # a child that wants them
    assert not loop._ignores_transport({"_handler": MessagingHandler(),
                                        "_overrides": _WantsTransport()})
    assert not loop._ignores_transport(None)
    assert not loop._ignores_transport({})


@native
def test_a_confirmed_send_makes_almost_no_event_objects(amqp_url: str, amqp_address: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    wrapped: List[str] = []
    original = Event.wrap

    def counting_wrap(impl: Any) -> Any:
        if threading.current_thread().name.startswith("proton-easy"):
            wrapped.append(compat.ffi.string(compat.lib.pn_event_type_name(
                compat.lib.pn_event_type(impl))).decode()
                if hasattr(compat.lib, "pn_event_type_name") else "?")
        return original(impl)

    with pe.Client(amqp_url) as client:
        client.send(amqp_address, "first", durable=False)  # the link is attached by now
        monkeypatch.setattr(Event, "wrap", staticmethod(counting_wrap))
        for n in range(50):
            client.send(amqp_address, n, durable=False)
        monkeypatch.setattr(Event, "wrap", staticmethod(original))
        assert len(client.receive(amqp_address, count=51, timeout=10)) == 51
    # proton made about eight per message; the loop's own handling leaves (almost) none
    assert len(wrapped) < 50, wrapped


def test_heartbeats_and_sends_survive_idle_periods(amqp_url: str, amqp_address: str) -> None:
    with pe.Client(amqp_url, heartbeat=1) as client:
        for n in range(3):
            client.send(amqp_address, n, durable=False)
            threading.Event().wait(1.5)  # idle: only heartbeats go both ways meanwhile
        assert client._conn.drops == 0
        got = client.receive(amqp_address, count=3, timeout=10)
    assert [m.body for m in got] == [0, 1, 2]


class _TransportWatcher(MessagingHandler):
    """A user's own handler in the same container, on a connection of its own, that wants
    ``PN_TRANSPORT`` events: the lean IO must not take them away from it."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.transports = 0
        self.opened = False

    def on_start(self, event: Any) -> None:
        self.conn = event.container.connect(self.url)

    def on_transport(self, event: Any) -> None:
        self.transports += 1

    def on_connection_opened(self, event: Any) -> None:
        self.opened = True
        event.connection.close()


def test_handler_classes_in_a_plain_container_lose_nothing_beside_a_handler_of_its_own(
        amqp_url: str, amqp_address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from proton.reactor import Container

    from proton_easy.handlers import Receiver

    wrapped: List[int] = []
    original = Event.wrap

    def counting_wrap(impl: Any) -> Any:
        wrapped.append(1)
        return original(impl)

    monkeypatch.setattr(Event, "wrap", staticmethod(counting_wrap))
    sender = Sender(f"{amqp_url}/{amqp_address}", messages=list(range(200)), durable=False)
    watcher = _TransportWatcher(amqp_url)
    Container(sender, watcher).run()
    sent_events = len(wrapped)
    receiver = Receiver(f"{amqp_url}/{amqp_address}", count=200, timeout=10)
    Container(receiver).run()
    monkeypatch.setattr(Event, "wrap", staticmethod(original))
    assert sender.confirmed == 200
    assert [m.body for m in receiver.messages] == list(range(200))  # all, in order
    assert watcher.opened and watcher.transports > 0  # its own events still reach it
    if loop._RAW_FLOW and loop._LEAN_IO:  # ~8 event objects per message the proton way
        assert sent_events < 200, sent_events


@native
def test_calls_at_rest_run_once_after_the_events_in_hand_and_survive_errors(
        amqp_url: str) -> None:
    """What consume's hand-over relies on: a call made at rest runs on the loop thread after
    the work in hand, once, in order; one that fails is logged and the others still run."""
    ran: List[str] = []
    done = threading.Event()
    with pe.Client(amqp_url) as client:
        loop_ = client._driver.loop

        def in_loop() -> None:
            container = loop_.container
            container.at_rest(lambda: ran.append("first"))
            container.at_rest(lambda: 1 / 0)
            container.at_rest(lambda: (ran.append("third"), done.set()))
            ran.append("work in hand")

        loop_.call(in_loop).result(10)
        assert done.wait(10)
        client.send("at-rest-check", "still working", durable=False)  # the loop goes on
        assert client.receive("at-rest-check", count=1, timeout=10)[0].body == "still working"
    assert ran == ["work in hand", "first", "third"]
