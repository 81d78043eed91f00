"""Failover (``urls=``) against real brokers: each URL with its own credentials, errors that
name the URLs tried, and a Client that moves to the next broker when its broker dies."""

from __future__ import annotations

import socket
import threading
from typing import Any
from urllib.parse import quote

import pytest

import proton_easy as pe

from .logins import without_user


def _dead_url() -> str:
    """A URL nobody listens on (a port just freed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"amqp://127.0.0.1:{port}"


def test_each_failover_url_logs_in_with_its_own_credentials(artemis: Any, amqp_address: str
                                                             ) -> None:
    dead = _dead_url().replace("amqp://", "amqp://nobody:wrong@")
    # The first URL's user does not exist anywhere: the live broker must get its own user.
    with pe.Client(urls=[dead, artemis.url], timeout=10) as client:
        client.send(amqp_address, "via the second URL")
        assert repr(client).startswith("<proton_easy.Client amqp://")
        assert f"127.0.0.1:{artemis.port}" in repr(client)
        assert artemis.password not in without_user(repr(client), artemis.user)
    (got,) = pe.receive(artemis.address_url(amqp_address), timeout=5)
    assert got.body == "via the second URL"


def test_an_unreachable_failover_list_names_every_url(caplog: Any) -> None:
    first, second = _dead_url(), _dead_url().replace("amqp://", "amqp://app:s3cret-pw@")
    with pytest.raises(pe.ConnectError) as info:
        pe.Client(urls=[first, second], timeout=10)
    text = str(info.value)
    assert type(info.value) is pe.ConnectError
    assert first in text and second.replace(":s3cret-pw", "") in text
    assert "s3cret-pw" not in text and "s3cret-pw" not in caplog.text


def test_a_wrong_password_on_the_second_url_names_that_url(artemis: Any) -> None:
    wrong = artemis.url.replace(f":{quote(artemis.password, safe='')}@", ":not-the-password@")
    assert wrong != artemis.url
    with pytest.raises(pe.AuthenticationError) as info:
        pe.Client(urls=[_dead_url(), wrong], timeout=10)
    assert f"127.0.0.1:{artemis.port}" in str(info.value)
    assert "not-the-password" not in str(info.value)


def test_client_fails_over_to_the_next_broker_and_loses_nothing(artemis_factory: Any) -> None:
    first, second = artemis_factory(), artemis_factory()
    total = 3000
    halfway = threading.Event()

    def bodies() -> Any:
        for i in range(total):
            if i == total // 2:
                halfway.set()
            yield pe.Message(i, durable=True)

    killer = threading.Thread(target=lambda: halfway.wait(60) and first.kill())
    with pe.Client(urls=[first.url, second.url], timeout=30) as client:
        client.send("failover-q", pe.Message("before", durable=True))
        killer.start()
        assert client.send_many("failover-q", bodies(), timeout=60) == total
        killer.join(60)
        client.send("failover-q", pe.Message("after", durable=True))
        assert f"127.0.0.1:{second.port}" in repr(client)
    on_second = pe.receive(second.address_url("failover-q"), count=2 * total, timeout=10)
    first.restart()
    on_first = pe.receive(first.address_url("failover-q"), count=2 * total, timeout=10)
    bodies_seen = [m.body for m in on_first + on_second]
    # Accepted by the first broker before it died, or re-sent to the second: none lost.
    assert set(bodies_seen) >= set(range(total)) | {"before", "after"}
    assert "after" in [m.body for m in on_second]
    assert any(isinstance(b, int) for b in (m.body for m in on_second))
