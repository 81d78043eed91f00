"""The engine's boundary to proton: host names that do not resolve, a loop thread that no
event's error can end, closed Clients whose proton objects are freed, and the transactional
dispositions of both proton layouts.

``nosuchhost.invalid`` is in the ``.invalid`` top-level domain, which never resolves: no
connection to it is ever made.
"""

from __future__ import annotations

import gc
import socket
import weakref
from typing import Any

import pytest

import proton_easy as pe
from proton_easy._engine import compat
from proton_easy._engine.disposition import declared_txn_id, delivery_outcome

UNRESOLVABLE = "amqp://nosuchhost.invalid:5672"


def test_an_unresolvable_host_is_a_connect_error_naming_it() -> None:
    # Before the fix the DNS error killed the loop thread: pe.Timeout ("no answer") after the
    # whole timeout.
    with pytest.raises(pe.ConnectError) as info:
        pe.send(f"{UNRESOLVABLE}/q", "never sent", timeout=30)
    assert type(info.value) is pe.ConnectError
    assert "nosuchhost.invalid" in str(info.value)
    assert "resolve" in str(info.value)


def test_a_client_on_an_unresolvable_host_fails_with_connect_error() -> None:
    with pytest.raises(pe.ConnectError) as info:
        pe.Client(UNRESOLVABLE, timeout=30)
    assert not isinstance(info.value, pe.Timeout)
    assert "nosuchhost.invalid" in str(info.value)


def test_every_host_unresolvable_names_them_all() -> None:
    other = "amqp://other-host.invalid:5673"
    with pytest.raises(pe.ConnectError) as info:
        pe.Client(urls=[UNRESOLVABLE, other], timeout=30)
    text = str(info.value)
    assert not isinstance(info.value, pe.Timeout)
    assert "nosuchhost.invalid" in text and "other-host.invalid" in text


def test_an_unresolvable_failover_url_is_skipped(artemis: Any, amqp_address: str) -> None:
    pe.send(f"{UNRESOLVABLE}/{amqp_address}", "via the second URL",
            urls=[UNRESOLVABLE, artemis.url], timeout=20)
    got = pe.receive(artemis.address_url(amqp_address), count=2, timeout=3)
    assert [m.body for m in got] == ["via the second URL"]


def test_a_client_with_an_unresolvable_url_reconnects_after_a_restart(artemis_factory: Any
                                                                      ) -> None:
    # Before the fix: the first reconnect went through the unresolvable URL, the loop thread
    # died, and every later call raised RuntimeError("the client is closed").
    broker = artemis_factory()
    with pe.Client(urls=[UNRESOLVABLE, broker.url], timeout=30) as client:
        client.send("engine-dns-q", pe.Message("before", durable=True))
        broker.restart()
        client.send("engine-dns-q", pe.Message("after", durable=True))
        got = client.receive("engine-dns-q", count=3, timeout=5)
    assert sorted(m.body for m in got) == ["after", "before"]


def test_a_closed_client_frees_its_connection(artemis: Any, amqp_address: str) -> None:
    # proton keeps each endpoint's Python attributes for as long as the C object lives; they
    # hold the handler, which holds the connection: without the release every closed Client
    # stays in memory. Fails if this proton's layout is one the engine does not know.
    client = pe.Client(artemis.url, timeout=10)
    client.send(amqp_address, "x")
    assert [m.body for m in client.receive(amqp_address, count=1, timeout=5)] == ["x"]
    handler = weakref.ref(client._conn)
    client.close()
    del client
    for _ in range(3):
        gc.collect()
    assert handler() is None


class _Remote:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)
        self.condition = None


class _Dlv:
    def __init__(self, state: int, **fields: Any) -> None:
        self.remote_state = state
        self.remote = _Remote(**fields)


def test_declared_txn_id_in_both_proton_layouts() -> None:
    # proton 0.39/0.40: the declared outcome's fields as data; 0.41: decoded, as .id
    assert declared_txn_id(_Dlv(0x33, data=[memoryview(b"tx-1")])) == b"tx-1"  # type: ignore
    assert declared_txn_id(_Dlv(0x33, id=b"tx-2")) == b"tx-2"  # type: ignore[arg-type]
    assert declared_txn_id(_Dlv(0x25, data=None)) is None  # type: ignore[arg-type]


def test_transactional_outcome_in_both_proton_layouts() -> None:
    from proton import Delivery, Described, ulong

    accepted = Described(ulong(0x24), [])
    old = _Dlv(0x34, data=[b"tx", accepted])
    assert delivery_outcome(old)[0] == Delivery.ACCEPTED  # type: ignore[arg-type]
    new = _Dlv(0x34, id=b"tx", outcome_type=int(Delivery.REJECTED))
    assert delivery_outcome(new)[0] == Delivery.REJECTED  # type: ignore[arg-type]


def test_the_pure_switch_is_honoured() -> None:
    import os

    forced = os.environ.get("PROTON_EASY_PURE_PROTON", "") not in ("", "0")
    assert compat.PURE is forced
    if forced:
        assert not compat.NATIVE and not compat.CONNECTOR_HOOKABLE
    else:
        assert compat.NATIVE  # every supported proton release has the fast path


def test_socket_gaierror_is_what_the_resolver_raises() -> None:
    # the failure the engine translates (no traffic: .invalid never resolves)
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("nosuchhost.invalid", 5672)
