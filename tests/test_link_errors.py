"""pe.NotFound and pe.Unauthorized from a real broker that says no.

One broker serves the module (``artemis_module_factory``): extra logins whose roles may
only consume (``reader``), only send (``writer``), or consume and make reply queues but not
send (``asker``); addresses under ``strict.`` are never created on demand; under ``audit.``
only ``writer`` (and the main user) may do anything.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any, Callable, Dict, List

import pytest
from proton.reactor import Container

import proton_easy as pe
from proton_easy.handlers import Receiver, Requester, Responder, Sender
from proton_easy.testing import ArtemisBroker

from .procs import PROTON_EASY, describe, run_all

PASSWORDS = {name: f"{name}-pw-{secrets.token_hex(6)}" for name in ("reader", "writer", "asker")}


@pytest.fixture(scope="module")
def broker(artemis_module_factory: Callable[..., ArtemisBroker]) -> ArtemisBroker:
    return artemis_module_factory(
        queues=["strict.jobs"],
        users={
            "reader": (PASSWORDS["reader"], "viewer"),
            "writer": (PASSWORDS["writer"], ["producer"]),
            "asker": (PASSWORDS["asker"], ["viewer", "replies"]),
        },
        permissions={
            "#": {"viewer": ["consume", "browse"], "producer": ["send"],
                  "replies": ["createNonDurableQueue", "createAddress"]},
            "audit.#": {"producer": ["send", "consume", "createAddress",
                                     "createDurableQueue"]},
        },
        address_settings={"strict.#": {"autoCreateQueues": False,
                                       "autoCreateAddresses": False}},
    )


def url(broker: ArtemisBroker, user: str, address: str) -> str:
    return f"{broker.url_for(user)}/{address}"


def queue_with(broker: ArtemisBroker, address: str, *bodies: Any) -> str:
    """Create the queue ``address`` (as the main user) holding ``bodies``; return its URL."""
    admin = broker.address_url(address)
    if bodies:
        assert pe.send_many(admin, bodies) == len(bodies)
    else:
        assert pe.receive(admin, timeout=0.2) == []  # attaching creates the queue
    return admin


def bodies(admin_url: str) -> List[Any]:
    return [m.body for m in pe.receive(admin_url, count=100, timeout=1)]


def assert_refused(err: pe.AMQPError, cls: type, address: str, condition: str) -> None:
    """The typed error names the address, carries the broker's condition, shows no password."""
    assert type(err) is cls and isinstance(err, pe.LinkError), repr(err)
    assert err.condition == condition
    assert f"'{address}'" in str(err) and condition in str(err)
    assert err.description and err.description in str(err)
    for text in (str(err), repr(err), err.description):
        for password in PASSWORDS.values():
            assert password not in text


# -- the broker the options made ---------------------------------------------------------------
def test_the_logins_and_their_files(broker: ArtemisBroker) -> None:
    assert broker.users == {broker.user: ("amq",), "reader": ("viewer",),
                            "writer": ("producer",), "asker": ("viewer", "replies")}
    assert broker.url_for(broker.user) == broker.url
    assert broker.url_for("reader") == (
        f"amqp://reader:{PASSWORDS['reader']}@{broker.host}:{broker.port}")
    with pytest.raises(ValueError, match="no login 'ghost'"):
        broker.url_for("ghost")
    # the instance's own files: in its folder locally, inside the container in Docker
    if broker.mode == "local":
        assert broker.instance_dir is not None
        etc = broker.instance_dir / "etc"
        assert broker.read_instance_file("etc/broker.properties") == (
            etc / "broker.properties").read_text()
    users = broker.read_instance_file("etc/artemis-users.properties")
    assert users.count("ENC(1024:") == 4  # the main user and three extra logins, hashed
    roles = broker.read_instance_file("etc/artemis-roles.properties")
    assert "viewer = reader,asker" in roles and f"amq = {broker.user}" in roles
    props = broker.read_instance_file("etc/broker.properties")
    assert 'securityRoles."audit.#".amq.send=true' in props
    assert 'addressSettings."strict.#".autoCreateQueues=false' in props
    secrets_shown = [broker.password, *PASSWORDS.values()]
    for text in (users, roles, props, repr(broker), broker.log_tail(400)):
        assert not [pw for pw in secrets_shown if pw in text]


def test_a_wrong_password_of_an_extra_login_is_refused(broker: ArtemisBroker) -> None:
    with pytest.raises(pe.AuthenticationError) as info:
        pe.send(f"amqp://reader:not-{PASSWORDS['reader']}@{broker.host}:{broker.port}/q", 1)
    assert PASSWORDS["reader"] not in str(info.value)


# -- Unauthorized ----------------------------------------------------------------------------
def test_send_without_permission_is_unauthorized(broker: ArtemisBroker, amqp_address: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    admin = queue_with(broker, amqp_address, "kept")
    caplog.set_level(logging.DEBUG, logger="proton_easy")
    with pytest.raises(pe.Unauthorized) as info:
        pe.send(url(broker, "reader", amqp_address), "refused")
    assert_refused(info.value, pe.Unauthorized, amqp_address, "amqp:unauthorized-access")
    assert "SEND" in str(info.value)
    with pytest.raises(pe.Unauthorized):
        pe.send_many(url(broker, "reader", amqp_address), ["a", "b"])
    assert not [pw for pw in PASSWORDS.values() if pw in caplog.text]
    assert bodies(admin) == ["kept"]


def test_receive_without_permission_is_unauthorized(broker: ArtemisBroker,
                                                    amqp_address: str) -> None:
    admin = queue_with(broker, amqp_address, "kept")
    with pytest.raises(pe.Unauthorized) as info:
        pe.receive(url(broker, "writer", amqp_address), timeout=5)
    assert_refused(info.value, pe.Unauthorized, amqp_address, "amqp:unauthorized-access")
    assert "CONSUME" in str(info.value)
    with pytest.raises(pe.Unauthorized):
        next(iter(pe.consume(url(broker, "writer", amqp_address), idle_timeout=5)))
    assert bodies(admin) == ["kept"]  # nothing was taken off the queue


def test_a_refused_link_leaves_the_client_usable(broker: ArtemisBroker,
                                                 amqp_address: str) -> None:
    admin = queue_with(broker, amqp_address, "first", "second")
    with pe.Client(broker.url_for("reader"), timeout=10) as client:
        for _ in range(2):  # a refused link is not cached: the second send asks again
            with pytest.raises(pe.Unauthorized) as info:
                client.send(amqp_address, "refused")
            assert_refused(info.value, pe.Unauthorized, amqp_address,
                           "amqp:unauthorized-access")
        with pytest.raises(pe.Unauthorized):
            client.send_many(amqp_address, ["a", "b"])
        assert [m.body for m in client.receive(amqp_address, timeout=5)] == ["first"]
        with pytest.raises(pe.Unauthorized):
            client.send(amqp_address, "refused", at_most_once=True)
        assert [m.body for m in client.receive(amqp_address, timeout=5)] == ["second"]
        assert client._conn.up and client._conn.drops == 0
    with pe.Client(broker.url_for("writer"), timeout=10) as client:
        with pytest.raises(pe.Unauthorized):
            client.receive(amqp_address, timeout=5)
        with pytest.raises(pe.Unauthorized), client.consume(amqp_address,
                                                           idle_timeout=5) as messages:
            next(messages)
        client.send(amqp_address, "third")
        assert client.send_many(amqp_address, ["fourth", "fifth"]) == 2
        assert client._conn.up and client._conn.drops == 0
    assert bodies(admin) == ["third", "fourth", "fifth"]


def test_request_and_serve_without_permission(broker: ArtemisBroker, amqp_address: str) -> None:
    admin = queue_with(broker, amqp_address)
    with pytest.raises(pe.Unauthorized) as info:  # the reply queue is allowed, the send is not
        pe.request(url(broker, "asker", amqp_address), "question", timeout=5)
    assert_refused(info.value, pe.Unauthorized, amqp_address, "amqp:unauthorized-access")
    with pytest.raises(pe.Unauthorized) as info:
        pe.serve(url(broker, "writer", amqp_address), lambda msg: msg.body, timeout=5)
    assert_refused(info.value, pe.Unauthorized, amqp_address, "amqp:unauthorized-access")
    with pe.Client(broker.url_for("asker"), timeout=10) as client:
        with pytest.raises(pe.Unauthorized):
            client.request(amqp_address, "question", timeout=5)
        pe.send(broker.address_url(amqp_address), "after")
        assert [m.body for m in client.receive(amqp_address, timeout=5)] == ["after"]
    assert bodies(admin) == []


def test_a_refused_reply_queue_carries_the_brokers_condition(broker: ArtemisBroker,
                                                             amqp_address: str) -> None:
    # writer may send but not create the temporary reply queue: the broker attaches with no
    # source and detaches with its reason, which is what the caller gets.
    queue_with(broker, amqp_address)
    with pytest.raises(pe.LinkError) as info:
        pe.request(url(broker, "writer", amqp_address), "question", timeout=5)
    err = info.value
    assert err.condition is not None and "(dynamic)" in str(err)
    assert "CREATE_NON_DURABLE_QUEUE" in str(err) and err.description in str(err)


def test_refusals_reported_as_internal_errors_are_unauthorized(broker: ArtemisBroker,
                                                               amqp_address: str) -> None:
    # Artemis 2.40 says amqp:internal-error when a missing permission stops it creating an
    # address or a temporary queue for a link ("AMQ229032 ... does not have permission").
    errors = []
    for call in (lambda: pe.send(url(broker, "reader", amqp_address), "new address"),
                 lambda: pe.request(url(broker, "writer", amqp_address), "q", timeout=5)):
        with pytest.raises(pe.LinkError) as info:
            call()
        errors.append(info.value)
    assert [type(err) for err in errors] == [pe.Unauthorized, pe.Unauthorized], errors


def test_the_most_specific_match_decides(broker: ArtemisBroker, amqp_address: str) -> None:
    audit = f"audit.{amqp_address}"
    pe.send(url(broker, "writer", audit), "by writer")  # may create and send under audit.#
    with pytest.raises(pe.Unauthorized):  # viewer's consume on "#" does not reach audit.#
        pe.receive(url(broker, "reader", audit), timeout=5)
    pe.send(broker.address_url(audit), "by admin")  # role amq keeps every permission
    assert [m.body for m in pe.receive(url(broker, "writer", audit), count=2, timeout=5)] == [
        "by writer", "by admin"]


HANDLERS: Dict[str, Callable[[str], Any]] = {
    "Sender": lambda u: Sender(u, messages=1),
    "Receiver": lambda u: Receiver(u, count=1),
    "Requester": lambda u: Requester(u, ["question"], timeout=5),
    "Responder": lambda u: Responder(u, count=1),
}


@pytest.mark.parametrize(("kind", "user"), [
    ("Sender", "reader"), ("Receiver", "writer"), ("Requester", "asker"),
    ("Responder", "writer"),
])
def test_handler_classes_standalone_raise_unauthorized(broker: ArtemisBroker,
                                                       amqp_address: str, kind: str,
                                                       user: str) -> None:
    queue_with(broker, amqp_address)
    handler = HANDLERS[kind](url(broker, user, amqp_address))
    with pytest.raises(pe.Unauthorized) as info:
        Container(handler).run()
    assert handler.error is info.value
    assert_refused(info.value, pe.Unauthorized, amqp_address, "amqp:unauthorized-access")


def test_a_refused_transaction_link_is_a_transaction_error(broker: ArtemisBroker,
                                                           amqp_address: str) -> None:
    admin = queue_with(broker, amqp_address, "kept")
    with pytest.raises(pe.TransactionError) as info:
        with pe.transaction(url(broker, "writer", amqp_address)) as tx:
            tx.receive()
    assert info.value.condition == "amqp:unauthorized-access"
    assert PASSWORDS["writer"] not in str(info.value)
    assert bodies(admin) == ["kept"]


# -- NotFound --------------------------------------------------------------------------------
def test_missing_queue_without_auto_create_is_not_found(broker: ArtemisBroker,
                                                        amqp_address: str) -> None:
    missing = f"strict.{amqp_address}"
    with pytest.raises(pe.NotFound) as info:
        pe.receive(broker.address_url(missing), timeout=5)
    assert_refused(info.value, pe.NotFound, missing, "amqp:not-found")
    with pytest.raises(pe.NotFound) as info:
        pe.send(broker.address_url(missing), "lost?")
    assert_refused(info.value, pe.NotFound, missing, "amqp:not-found")
    with pe.Client(broker.url, timeout=10) as client:
        with pytest.raises(pe.NotFound):
            client.send(missing, "refused")
        with pytest.raises(pe.NotFound):  # at-most-once: a new link's first call waits for it
            client.send(missing, "refused", at_most_once=True)
        with pytest.raises(pe.NotFound):
            client.receive(missing, timeout=5)
        with pytest.raises(pe.NotFound):
            client.request(missing, "question", timeout=5)
        client.send("strict.jobs", f"{amqp_address} ok")  # an existing queue still works
        got = client.receive("strict.jobs", timeout=5)
        assert [m.body for m in got] == [f"{amqp_address} ok"]
        assert client._conn.up and client._conn.drops == 0
    with pytest.raises(pe.NotFound):  # it was not created by any of the attempts
        pe.receive(broker.address_url(missing), timeout=5)


@pytest.mark.parametrize("kind", sorted(HANDLERS))
def test_handler_classes_standalone_raise_not_found(broker: ArtemisBroker, amqp_address: str,
                                                    kind: str) -> None:
    missing = f"strict.{amqp_address}"
    handler = HANDLERS[kind](broker.address_url(missing))
    with pytest.raises(pe.NotFound) as info:
        Container(handler).run()
    assert handler.error is info.value
    assert_refused(info.value, pe.NotFound, missing, "amqp:not-found")


# -- the command line ------------------------------------------------------------------------
def test_cli_refusals_are_one_line_errors(broker: ArtemisBroker, amqp_address: str) -> None:
    admin = queue_with(broker, amqp_address, "kept")
    missing = f"strict.{amqp_address}"
    results = run_all([
        PROTON_EASY + ["send", "-b", url(broker, "reader", amqp_address), "-t", "10"],
        PROTON_EASY + ["receive", "-b", url(broker, "writer", amqp_address), "-t", "10"],
        PROTON_EASY + ["send", "-b", broker.address_url(missing), "-t", "10"],
    ])
    for proc, condition, address in zip(
            results, ["unauthorized-access"] * 2 + ["not-found"],
            [amqp_address, amqp_address, missing]):
        assert proc.returncode == 1, describe(proc)
        assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1, describe(proc)
        assert proc.stderr.startswith(f"proton-easy: error: link to '{address}' refused: "
                                      f"[amqp:{condition}]"), describe(proc)
        assert not [pw for pw in (broker.password, *PASSWORDS.values()) if pw in proc.stderr]
    assert bodies(admin) == ["kept"]
