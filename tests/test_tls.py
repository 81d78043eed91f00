"""TLS and SASL against a real Artemis: the seed's three TLS cases, PLAIN over TLS, EXTERNAL,
and every failure typed, prompt and free of secrets.

Brokers: the plugin's ``artemis_tls`` (certificates for localhost/127.0.0.1, an ``amqps``
acceptor with SASL PLAIN and an ``amqps-mutual`` one that requires a client certificate and
offers SASL EXTERNAL only), and ``odd_broker`` below (anonymous clients allowed, and a
certificate naming only ``broker.invalid``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest
from proton import Message, SSLDomain
from proton.handlers import MessagingHandler
from proton.reactor import Container

import proton_easy as pe
from proton_easy._options import HANDSHAKE_TIMEOUT
from proton_easy.handlers import Receiver, Sender
from proton_easy.testing import QUICK_START_JAVA_OPTIONS, ArtemisBroker, make_certs

from . import fake_docker
from .seed_peers import run

#: A failure must be reported this fast: no retry loop, no waiting for a timeout.
PROMPT = 5.0
#: A server that answers nothing is given up on after HANDSHAKE_TIMEOUT: that, plus slack.
SILENT = HANDSHAKE_TIMEOUT + 3.0


@pytest.fixture(scope="module")
def odd_broker() -> Iterator[ArtemisBroker]:
    """Lets clients without credentials in, and has a TLS certificate for another host name."""
    broker = ArtemisBroker(tls=True, allow_anonymous=True, cert_hosts=["broker.invalid"],
                           java_options=QUICK_START_JAVA_OPTIONS)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def without_credentials(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"


def with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    creds, hostport = rest.rsplit("@", 1)
    return f"{scheme}://{creds.split(':', 1)[0]}:{password}@{hostport}"


def fails_promptly(exc_type: type, call: Callable[[], Any], within: float = PROMPT
                   ) -> BaseException:
    """Run ``call``; it must raise ``exc_type`` within ``within`` seconds."""
    start = time.monotonic()
    with pytest.raises(exc_type) as info:
        call()
    elapsed = time.monotonic() - start
    assert elapsed < within, f"{exc_type.__name__} took {elapsed:.1f} s"
    return info.value


def texts_of(err: BaseException) -> str:
    """Everything a user could see of an error: message, repr, condition, description."""
    return " ".join(str(x) for x in (err, repr(err), getattr(err, "condition", ""),
                                     getattr(err, "description", "")))


# -- the seed's three cases ----------------------------------------------------------------------
def test_server_authentication_verifies_ca_and_host_name(artemis_tls: ArtemisBroker,
                                                         amqp_address: str) -> None:
    url = f"{artemis_tls.tls_url}/{amqp_address}"  # amqps://admin:pw@localhost:port
    assert url.startswith("amqps://") and "@localhost:" in url
    tls = pe.TLS(ca=str(artemis_tls.certs.ca))  # verify="peer-name" is the default
    pe.send(url, {"sequence": 1}, tls=tls)
    pe.send(url, {"sequence": 2}, tls=pe.TLS(ca=artemis_tls.certs.ca, verify="peer"))
    got = pe.receive(url, count=2, timeout=10, tls=tls)
    assert [m.body for m in got] == [{"sequence": 1}, {"sequence": 2}]


def test_verify_peer_accepts_the_ip_address_peer_name_needs_the_dns_name(
        artemis_tls: ArtemisBroker, amqp_address: str) -> None:
    # The certificate names localhost (DNS) and 127.0.0.1 (IP); proton's peer-name check only
    # matches DNS names, so by IP address it takes verify="peer" (documented in pe.TLS).
    by_ip = f"{artemis_tls.tls_url.replace('@localhost:', '@127.0.0.1:')}/{amqp_address}"
    pe.send(by_ip, "by ip", tls=artemis_tls.client_tls(verify="peer"))
    err = fails_promptly(pe.TLSError, lambda: pe.send(by_ip, "x", tls=artemis_tls.client_tls()))
    assert "certificate verify failed" in str(err) and "IP addresses" in str(err)
    assert [m.body for m in pe.receive(by_ip, timeout=10,
                                       tls=artemis_tls.client_tls(verify="peer"))] == ["by ip"]


def test_server_and_client_authentication(artemis_tls: ArtemisBroker, amqp_address: str) -> None:
    url = f"{artemis_tls.mutual_tls_url}/{amqp_address}"  # no credentials in the URL
    certs = artemis_tls.certs
    tls = pe.TLS(ca=str(certs.ca), cert=str(certs.client_cert), key=str(certs.client_key),
                 password=certs.client_key_password)
    pe.send(url, "with a client certificate", tls=tls)  # no user: SASL EXTERNAL
    with pe.Client(url, tls=tls, allowed_mechs="EXTERNAL") as client:
        client.send(None, "EXTERNAL asked for")
        got = client.receive(None, count=2, timeout=10)
    assert [m.body for m in got] == ["with a client certificate", "EXTERNAL asked for"]
    # the same acceptor refuses a client without a certificate, during the handshake
    err = fails_promptly(pe.TLSError, lambda: pe.send(url, "x", tls=artemis_tls.client_tls()))
    assert "client certificate" in str(err)


def test_no_verification_only_when_explicitly_asked(artemis_tls: ArtemisBroker,
                                                    amqp_address: str) -> None:
    url = f"{artemis_tls.tls_url}/{amqp_address}"
    pe.send(url, "unverified", tls=pe.TLS(verify="none"))  # no CA given at all
    # amqps:// without TLS options verifies against the system CAs, which never signed it
    err = fails_promptly(pe.TLSError, lambda: pe.send(url, "x"))
    assert "certificate verify failed" in str(err)
    assert [m.body for m in pe.receive(url, timeout=10, tls=pe.TLS(verify="none"))] == [
        "unverified"]


def test_seed_example_3_5_handler_against_the_mutual_acceptor(artemis_tls: ArtemisBroker,
                                                              amqp_address: str) -> None:
    # The seed's raw proton code (Example 3.5: set_trusted_ca_db, VERIFY_PEER,
    # set_credentials) works with the broker and certificates proton_easy.testing makes.
    certs = artemis_tls.certs

    class Send(MessagingHandler):
        def __init__(self, url: str) -> None:
            super().__init__()
            self.url = url
            self.sent = self.confirmed = 0

        def on_start(self, event: Any) -> None:
            event.container.ssl.client.set_trusted_ca_db(str(certs.ca))
            event.container.ssl.client.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
            event.container.ssl.client.set_credentials(str(certs.client_cert),
                                                       str(certs.client_key),
                                                       certs.client_key_password)
            event.container.create_sender(self.url)

        def on_sendable(self, event: Any) -> None:
            if event.sender.credit and not self.sent:
                event.sender.send(Message(body={"sequence": 1}))
                self.sent = 1

        def on_accepted(self, event: Any) -> None:
            self.confirmed += 1
            event.connection.close()

    send = run(Send(f"{artemis_tls.mutual_tls_url}/queue://{amqp_address}"))
    assert send.confirmed == 1
    got = pe.receive(f"{artemis_tls.tls_url}/{amqp_address}", timeout=10,
                     tls=artemis_tls.client_tls())
    assert [m.body for m in got] == [{"sequence": 1}]


# -- SASL ----------------------------------------------------------------------------------------
def test_plain_over_tls_wrong_password_is_an_authentication_error(
        artemis_tls: ArtemisBroker) -> None:
    bad = with_password(artemis_tls.tls_url, "wrong-Pa55word") + "/q"
    err = fails_promptly(pe.AuthenticationError,
                         lambda: pe.send(bad, "x", tls=artemis_tls.client_tls()))
    assert "mech=PLAIN" in str(err)
    assert "wrong-Pa55word" not in texts_of(err)


def test_given_credentials_are_never_replaced_by_the_client_certificate(
        artemis_tls: ArtemisBroker) -> None:
    # The mutual acceptor offers EXTERNAL only. proton would pick EXTERNAL whenever it is
    # offered and leave the password unused; proton_easy sends the credentials it was given
    # (PLAIN) or fails, and says how to log in with the certificate instead.
    tls = artemis_tls.client_tls(client_cert=True)
    err = fails_promptly(pe.AuthenticationError, lambda: pe.send(
        artemis_tls.mutual_tls_url + "/q", "x", tls=tls, user=artemis_tls.user,
        password=artemis_tls.password))
    assert "allowed_mechs='EXTERNAL'" in str(err)
    assert artemis_tls.password not in texts_of(err)


def test_anonymous_broker_still_checks_the_credentials_given(odd_broker: ArtemisBroker,
                                                             amqp_address: str) -> None:
    plain = f"{odd_broker.url}/{amqp_address}"
    anonymous = without_credentials(plain)
    pe.send(anonymous, "anonymous is allowed here")  # nothing given: SASL ANONYMOUS
    pe.send(plain, "right password")
    for url, tls in ((plain, None), (f"{odd_broker.tls_url}/{amqp_address}",
                                     odd_broker.client_tls(verify="peer"))):
        # had proton fallen back to ANONYMOUS, this would have been let in
        err = fails_promptly(pe.AuthenticationError,
                             lambda u=url, t=tls: pe.send(with_password(u, "Not-The-Pw"), "x",
                                                          tls=t))
        assert "mech=PLAIN" in str(err) and "Not-The-Pw" not in texts_of(err)
    assert sorted(m.body for m in pe.receive(anonymous, count=2, timeout=10)) == [
        "anonymous is allowed here", "right password"]


def test_a_password_without_a_user_is_refused_before_any_io() -> None:
    with pytest.raises(ValueError, match="without a user") as info:
        pe.send("amqps://localhost:1/q", "x", password="Lonely-Pw")
    assert "Lonely-Pw" not in str(info.value)


# -- failures: typed, prompt, naming the file ---------------------------------------------------
def test_wrong_host_name_is_a_tls_error(odd_broker: ArtemisBroker, amqp_address: str) -> None:
    url = f"{odd_broker.tls_url}/{amqp_address}"  # localhost; the certificate says broker.invalid
    assert "@localhost:" in url and odd_broker.certs.hosts == ("broker.invalid",)
    err = fails_promptly(pe.TLSError, lambda: pe.send(url, "x", tls=odd_broker.client_tls()))
    assert err.condition == "amqp:connection:framing-error"
    assert "certificate verify failed" in str(err) and "host" in str(err)
    # trusted CA, wrong name: verify="peer" lets it through, so the name was the only problem
    pe.send(url, "trusted, any name", tls=odd_broker.client_tls(verify="peer"))


def test_untrusted_ca_is_a_tls_error(artemis_tls: ArtemisBroker, tmp_path: Path) -> None:
    other = make_certs(tmp_path / "other")  # a CA that did not sign the broker's certificate
    err = fails_promptly(pe.TLSError, lambda: pe.send(artemis_tls.tls_url + "/q", "x",
                                                      tls=pe.TLS(ca=str(other.ca))))
    assert "certificate verify failed" in str(err) and "trusted CA" in str(err)
    with pytest.raises(pe.TLSError):
        pe.Client(artemis_tls.tls_url, tls=pe.TLS(ca=str(other.ca), verify="peer"))


def test_missing_and_unreadable_files_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-cert.pem"
    with pytest.raises(FileNotFoundError, match="no-such-cert.pem"):
        pe.TLS(cert=str(missing), key=str(missing))
    with pytest.raises(FileNotFoundError, match="no-such-ca.pem"):
        pe.send("amqps://localhost:1/q", "x", tls=pe.TLS(ca=str(tmp_path / "no-such-ca.pem")))
    locked = tmp_path / "locked-key.pem"
    locked.write_text("-----BEGIN PRIVATE KEY-----\n")
    locked.chmod(0)
    if os.geteuid() != 0:  # root reads any file
        with pytest.raises(PermissionError, match="locked-key.pem"):
            pe.TLS(cert=str(locked), key=str(locked))


def test_unusable_files_are_tls_errors_naming_the_file(artemis_tls: ArtemisBroker,
                                                       tmp_path: Path) -> None:
    certs = artemis_tls.certs
    junk = tmp_path / "junk.pem"
    junk.write_text("this is not PEM\n")
    url = artemis_tls.mutual_tls_url + "/q"
    cert, key, pw = str(certs.client_cert), str(certs.client_key), certs.client_key_password
    cases = [
        (pe.TLS(ca=str(junk)), "junk.pem"),
        (pe.TLS(ca=str(certs.ca), cert=str(junk), key=key, password=pw), "junk.pem"),
        (pe.TLS(ca=str(certs.ca), cert=cert, key=str(junk), password=pw), "junk.pem"),
        (pe.TLS(ca=str(certs.ca), cert=cert, key=key, password="Wrong-Key-Pw"), "client-key.pem"),
        (pe.TLS(ca=str(certs.ca), cert=cert, key=str(certs.broker_key)), "broker-key.pem"),
        # an encrypted key and no password: an error, never OpenSSL's pass-phrase prompt
        (pe.TLS(ca=str(certs.ca), cert=cert, key=key), "encrypted"),
    ]
    for tls, named in cases:
        err = fails_promptly(pe.TLSError, lambda t=tls: pe.send(url, "x", tls=t))
        assert named in str(err), str(err)
        assert pw not in texts_of(err) and "Wrong-Key-Pw" not in texts_of(err)
    # standalone handlers (Container(job).run()) raise the same error
    with pytest.raises(pe.TLSError, match="junk.pem"):
        Container(Sender(url, messages=1, tls=pe.TLS(ca=str(junk)))).run()


# -- the wrong protocol on a port: prompt, typed, no retry -----------------------------------------
def test_amqps_on_a_plain_port_is_a_prompt_tls_error(artemis_tls: ArtemisBroker) -> None:
    # Artemis's plain acceptor holds the socket open, silent, when a TLS ClientHello comes:
    # without the handshake deadline this waited for the whole timeout (20 s here).
    url = artemis_tls.url.replace("amqp://", "amqps://", 1) + "/q"  # the plain port
    tls = artemis_tls.client_tls(verify="peer")  # the URL says 127.0.0.1
    err = fails_promptly(pe.TLSError, lambda: pe.send(url, "x", tls=tls, timeout=20),
                         SILENT)
    assert "did not answer the TLS handshake" in str(err) and "TLS port" in str(err)
    assert f"amqps://{artemis_tls.user}@127.0.0.1:{artemis_tls.port}/q" in str(err)
    assert artemis_tls.password not in texts_of(err)
    # a Client that would reconnect for a minute fails just as fast: a retry cannot mend it
    fails_promptly(pe.TLSError, lambda: pe.Client(url, tls=tls, timeout=20, reconnect=60),
                   SILENT)
    # and a handler class run standalone (no timeout of its own) does not hang either
    start = time.monotonic()
    send = Sender(url, messages=1, tls=tls)
    with pytest.raises(pe.TLSError, match="TLS handshake"):
        Container(send).run()
    assert time.monotonic() - start < SILENT and send.confirmed == 0


def test_amqp_on_a_tls_port_is_a_prompt_connect_error(artemis_tls: ArtemisBroker,
                                                      amqp_address: str) -> None:
    # Artemis's TLS acceptor reads the AMQP header as the start of a TLS record and waits for
    # the rest (its own handshake timeout is 10 s): the server answers nothing.
    plain_to_tls = (f"amqp://{artemis_tls.user}:{artemis_tls.password}"
                    f"@localhost:{artemis_tls.tls_port}/{amqp_address}")
    for url in (plain_to_tls, f"amqp://localhost:{artemis_tls.mutual_tls_port}/q"):
        err = fails_promptly(pe.ConnectError, lambda u=url: pe.send(u, "x", timeout=20),
                             SILENT)
        assert type(err) is pe.ConnectError  # not TLSError: no TLS was asked for
        assert "did not answer the AMQP protocol header" in str(err)
        assert "amqps://" in str(err) and artemis_tls.password not in texts_of(err)
    # an attempt ended that way moves on to the next failover URL, which works
    start = time.monotonic()
    with pe.Client(urls=[plain_to_tls, f"{artemis_tls.url}/{amqp_address}"],
                   timeout=20) as client:
        client.send(None, "through the second URL")
        assert [m.body for m in client.receive(None, timeout=10)] == ["through the second URL"]
    assert time.monotonic() - start < SILENT + 5


def test_a_tls_port_that_does_not_speak_amqp_is_a_prompt_connect_error(tmp_path: Path) -> None:
    # Not Artemis: a TLS server that completes the handshake, then says nothing (as a TLS
    # port of another protocol might).
    import socket
    import ssl

    certs = make_certs(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certs.broker_cert), str(certs.broker_key))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    done = threading.Event()

    def serve() -> None:
        sock, _ = listener.accept()
        with context.wrap_socket(sock, server_side=True):  # the handshake, then silence
            done.wait(30)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        err = fails_promptly(pe.ConnectError, lambda: pe.send(
            f"amqps://localhost:{port}/q", "x", tls=pe.TLS(ca=str(certs.ca)), timeout=20),
            SILENT)
        assert type(err) is pe.ConnectError
        assert "answered the TLS handshake but not the AMQP protocol header" in str(err)
    finally:
        done.set()
        server.join(10)
        listener.close()


# -- one SSLDomain per TLS configuration ---------------------------------------------------------
def test_connections_share_the_tls_domain_until_a_file_changes(
        artemis_tls: ArtemisBroker, amqp_address: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from proton_easy import _tls

    built: List[pe.TLS] = []
    make_domain = pe.TLS.make_domain

    def counting(self: pe.TLS) -> SSLDomain:
        built.append(self)
        return make_domain(self)

    monkeypatch.setattr(pe.TLS, "make_domain", counting)
    _tls.clear_domain_cache()
    certs = artemis_tls.certs
    cert = tmp_path / "client-cert.pem"
    cert.write_bytes(certs.client_cert.read_bytes())
    url = f"{artemis_tls.mutual_tls_url}/{amqp_address}"
    for n in range(3):  # equal settings, new TLS objects each time: one domain
        pe.send(url, n, tls=pe.TLS(ca=str(certs.ca), cert=str(cert), key=str(certs.client_key),
                                   password=certs.client_key_password))
    assert len(built) == 1
    # a rotated certificate (the file replaced) is read again by the next connection
    rotated = tmp_path / "new-cert.pem"
    rotated.write_bytes(certs.client_cert.read_bytes() + b"\n")
    os.replace(rotated, cert)
    tls = pe.TLS(ca=str(certs.ca), cert=str(cert), key=str(certs.client_key),
                 password=certs.client_key_password)
    pe.send(url, 3, tls=tls)
    assert len(built) == 2
    # a different password is another configuration (here a wrong one: an error, not cached)
    with pytest.raises(pe.TLSError, match="password"):
        pe.send(url, "x", tls=pe.TLS(ca=str(certs.ca), cert=str(cert),
                                     key=str(certs.client_key), password="Other-Key-Pw"))
    assert len(built) == 3
    pe.send(url, 4, tls=tls)
    assert len(built) == 3
    assert [m.body for m in pe.receive(url, count=5, timeout=10, tls=tls)] == [0, 1, 2, 3, 4]


def test_tls_domain_cache_is_bounded_thread_safe_and_keeps_no_password(tmp_path: Path) -> None:
    from proton_easy import _tls

    certs = make_certs(tmp_path)
    _tls.clear_domain_cache()
    tls = pe.TLS(ca=str(certs.ca), cert=str(certs.client_cert), key=str(certs.client_key),
                 password=certs.client_key_password)
    got: List[SSLDomain] = []
    threads = [threading.Thread(target=lambda: got.append(tls.domain())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(got) == 8 and len({id(d) for d in got}) == 1  # one domain for all of them
    assert tls.domain() is got[0]
    assert tls.make_domain() is not got[0]  # make_domain builds a new one, for its caller
    # the key of the cache: paths and file states, the password only as a keyed digest
    key_text = repr(list(_tls._domains))
    assert str(certs.client_key) in key_text and certs.client_key_password not in key_text
    assert pe.TLS(ca=str(certs.ca), verify="peer").domain() is not pe.TLS(ca=str(certs.ca)).domain()
    for n in range(_tls.DOMAIN_CACHE_SIZE + 5):  # bounded: the least recently used goes first
        folder = tmp_path / f"ca{n}"
        folder.mkdir()
        ca = folder / "ca.pem"
        ca.write_bytes(certs.ca.read_bytes())
        pe.TLS(ca=str(ca)).domain()
    assert len(_tls._domains) == _tls.DOMAIN_CACHE_SIZE
    assert tls.domain() is not got[0]  # evicted, then built again
    _tls.clear_domain_cache()


def test_tls_options_with_an_amqp_url_raise_value_error(artemis_tls: ArtemisBroker) -> None:
    tls = artemis_tls.client_tls()
    with pytest.raises(ValueError, match="clear text"):
        pe.send(artemis_tls.url + "/q", "x", tls=tls)
    with pytest.raises(ValueError, match="clear text"):
        pe.Client(urls=[artemis_tls.tls_url, artemis_tls.url], tls=tls)  # failover too
    with pytest.raises(ValueError, match="clear text"):
        Sender(artemis_tls.url + "/q", tls=tls)


def test_failover_checks_each_brokers_own_host_name(artemis_tls: ArtemisBroker,
                                                    amqp_address: str) -> None:
    # The first URL's host is not in the broker certificate: were its name used for the
    # second URL too (proton's sni= applies to every URL), verification would fail there.
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        dead = f"amqps://127.0.0.2:{s.getsockname()[1]}"
    tls = artemis_tls.client_tls()
    with pe.Client(urls=[dead, artemis_tls.tls_url], tls=tls, timeout=10) as client:
        client.send(amqp_address, "verified against 127.0.0.1")
        (got,) = client.receive(amqp_address, timeout=5)
    assert got.body == "verified against 127.0.0.1"


# -- secrets -------------------------------------------------------------------------------------
def test_secrets_never_appear_in_logs_reprs_or_errors(artemis_tls: ArtemisBroker,
                                                      amqp_address: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="proton")
    caplog.set_level(logging.DEBUG, logger="proton_easy")
    certs = artemis_tls.certs
    secrets = [artemis_tls.password, certs.client_key_password, certs.keystore_password,
               "Wrong-Pw-42"]
    url = f"{artemis_tls.tls_url}/{amqp_address}"  # the password is in the URL
    client_tls = artemis_tls.client_tls(client_cert=True)
    seen: List[str] = [repr(client_tls), repr(certs), repr(artemis_tls)]
    with pe.Client(url, tls=artemis_tls.client_tls()) as client:
        client.send(None, "secretive")
        seen += [repr(client), repr(client.options), client.options.display_url]
    with pe.Client(without_credentials(url), user=artemis_tls.user,
                   password=artemis_tls.password, tls=artemis_tls.client_tls()) as client:
        seen.append(repr(client))
        assert [m.body for m in client.receive(None, timeout=10)] == ["secretive"]
    pe.send(f"{artemis_tls.mutual_tls_url}/{amqp_address}", "by certificate", tls=client_tls)
    for call in (lambda: pe.send(with_password(url, "Wrong-Pw-42"), "x",
                                 tls=artemis_tls.client_tls()),
                 lambda: pe.send(url, "x", tls=pe.TLS(ca=str(certs.ca), cert=str(certs.client_cert),
                                                      key=str(certs.client_key),
                                                      password="Wrong-Pw-42"))):
        with pytest.raises(pe.ConnectError) as info:
            call()
        seen.append(texts_of(info.value))
    assert "Connecting to" in caplog.text  # proton's own INFO line was captured ...
    assert "localhost" in caplog.text
    for text in [caplog.text, *seen]:
        for secret in secrets:
            assert secret not in text  # ... and none of them carries a secret


# -- every entry point ---------------------------------------------------------------------------
def test_every_entry_point_takes_the_tls_option(artemis_tls: ArtemisBroker,
                                                amqp_address: str) -> None:
    url = f"{artemis_tls.mutual_tls_url}/{amqp_address}"
    tls = artemis_tls.client_tls(client_cert=True)
    pe.send(url, 1, tls=tls)
    assert pe.send_many(url, [2, 3], tls=tls) == 2
    send = Sender(url, messages=[4, 5], tls=tls)
    Container(send).run()
    assert send.confirmed == 2
    with pe.Client(url, tls=tls) as client:
        client.send(None, 6)
    assert [m.body for m in pe.receive(url, count=2, timeout=10, tls=tls)] == [1, 2]
    recv = Receiver(url, count=2, tls=tls)
    Container(recv).run()
    assert [m.body for m in recv.messages] == [3, 4]
    assert [m.body for m in pe.consume(url, idle_timeout=2, tls=tls)] == [5, 6]
    served: List[int] = []
    server = threading.Thread(target=lambda: served.append(pe.serve(
        url, lambda msg: msg.body.upper(), count=1, timeout=20, tls=tls)), daemon=True)
    server.start()
    assert pe.request(url, "hello", timeout=10, tls=tls).body == "HELLO"
    server.join(20)
    assert served == [1]
    with pe.transaction(url, tls=tls) as tx:
        tx.send("in a transaction")
    with pe.transaction(url, tls=tls) as tx:
        assert [m.body for m in tx.receive(count=1, timeout=10)] == ["in a transaction"]


def test_artemis_tls_fixture(artemis_tls: ArtemisBroker) -> None:
    certs = artemis_tls.certs
    assert artemis_tls.tls and artemis_tls.running
    assert artemis_tls.tls_url.endswith(f"@localhost:{artemis_tls.tls_port}")
    assert artemis_tls.mutual_tls_url == f"amqps://localhost:{artemis_tls.mutual_tls_port}"
    assert certs.hosts == ("localhost", "127.0.0.1")
    for path in (certs.ca, certs.client_cert, certs.client_key, certs.broker_cert,
                 certs.broker_keystore):
        assert path.is_file()
    assert certs.client_key.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert certs.client_key_password_file.read_text().strip() == certs.client_key_password
    plain = ArtemisBroker(mode="local")
    with pytest.raises(RuntimeError, match="tls=True"):
        _ = plain.tls_url


# -- pure logic and files, no broker -------------------------------------------------------------
@pytest.mark.parametrize("kwargs, cert, expected", [
    ({"user": "app", "password": "pw"}, False, "PLAIN"),           # credentials are used
    ({"user": "app", "password": "pw"}, True, "PLAIN"),            # ... not the certificate
    ({}, False, "ANONYMOUS"),                                       # nothing to log in with
    ({}, True, None),                                               # proton: EXTERNAL first
    ({"allowed_mechs": "EXTERNAL"}, True, "EXTERNAL"),              # passed through
    ({"user": "app", "password": "pw", "allowed_mechs": "EXTERNAL"}, True, "EXTERNAL"),
])
def test_sasl_mechanisms_follow_what_was_given(kwargs: dict, cert: bool, expected: Any,
                                               tmp_path: Path) -> None:
    from proton_easy._options import ConnectionOptions

    tls = None
    if cert:
        certs = make_certs(tmp_path)
        tls = pe.TLS(ca=str(certs.ca), cert=str(certs.client_cert), key=str(certs.client_key),
                     password=certs.client_key_password)
    opts = ConnectionOptions.build("amqps://broker.example/q", tls=tls, **kwargs)
    connect = opts.connect_kwargs()
    assert connect.get("allowed_mechs") == expected
    assert "sni" not in connect  # proton checks each URL's own host name
    assert connect["urls"] == ["amqps://broker.example:5671"]  # proton logs this: no secrets


def test_make_certs_cli_and_docker_script(tmp_path: Path) -> None:
    import subprocess
    import sys

    from proton_easy.testing import load_certs

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-m", "proton_easy.testing", "certs",
                          str(tmp_path / "cli"), "localhost", "broker.example"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    cli = load_certs(tmp_path / "cli")
    assert cli.hosts == ("localhost", "broker.example")
    assert str(cli.ca) in out and str(cli.client_key_password_file) in out
    assert cli.client_key_password not in out and cli.keystore_password not in out
    san = subprocess.run(["openssl", "x509", "-in", str(cli.broker_cert), "-noout", "-text"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert "DNS:localhost" in san and "DNS:broker.example" in san
    # docker/make-certs.sh runs the same code with the system's python3, proton_easy not needed
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    out = subprocess.run([str(root / "docker" / "make-certs.sh"), str(tmp_path / "docker")],
                         capture_output=True, text=True, timeout=60, check=True, env=env).stdout
    made = load_certs(tmp_path / "docker")
    assert made.client_key_password not in out and made.keystore_password not in out
    assert (made.broker_keystore.stat().st_mode & 0o777) == 0o644  # the container reads it
    assert (made.broker_env.stat().st_mode & 0o777) == 0o600
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(made.ca), str(made.broker_cert),
                             str(made.client_cert)], capture_output=True, text=True, timeout=30)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_missing_openssl_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    from proton_easy.testing import BrokerUnavailable, CertificateError

    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    monkeypatch.delenv("OPENSSL", raising=False)
    with pytest.raises(CertificateError, match="apt-get install openssl"):
        make_certs(tmp_path / "certs")
    with pytest.raises(BrokerUnavailable, match="openssl"):
        ArtemisBroker(mode="local", tls=True).start()


def test_docker_files_match_what_artemis_broker_uses() -> None:
    from proton_easy.testing import DOCKER_IMAGE
    from proton_easy.testing._tls_config import (
        CONTAINER_CERTS_DIR,
        CONTAINER_ETC_OVERRIDE,
        container_etc_files,
    )

    docker = Path(__file__).resolve().parent.parent / "docker"
    expected = container_etc_files(user="admin")
    on_disk = {p.name: p.read_text() for p in (docker / "etc-override").iterdir()}
    assert on_disk == expected, "regenerate docker/etc-override from container_etc_files()"
    compose = (docker / "docker-compose.yml").read_text()
    assert f"image: {DOCKER_IMAGE}\n" in compose
    for port in (5672, 5671, 5673):
        assert f'"127.0.0.1:{port}:{port}"' in compose
    assert f"./etc-override:{CONTAINER_ETC_OVERRIDE}:ro" in compose
    assert f"./certs/broker.p12:{CONTAINER_CERTS_DIR}/broker.p12:ro" in compose
    assert f"./certs/ca.pem:{CONTAINER_CERTS_DIR}/ca.pem:ro" in compose
    assert "certs/broker.env" in compose  # the keystore password, as an environment variable


def test_docker_mode_copies_the_tls_files_into_the_container(monkeypatch: Any) -> None:
    """The Docker flow with a stand-in for testcontainers (no engine here)."""
    from proton_easy.testing import docker_container_config

    FakeContainer = fake_docker.install(monkeypatch)

    broker = ArtemisBroker(mode="docker", user="app", password="pw", tls=True)
    broker.start()
    (container,) = FakeContainer.made
    certs = broker.certs
    assert container.ports == {"5672/tcp": ("127.0.0.1", broker.port),
                               "5671/tcp": ("127.0.0.1", broker.tls_port),
                               "5673/tcp": ("127.0.0.1", broker.mutual_tls_port)}
    assert len({broker.port, broker.tls_port, broker.mutual_tls_port}) == 3
    assert container.env["PROTON_EASY_KEYSTORE_PASSWORD"] == certs.keystore_password
    assert container.files["/var/lib/artemis-instance/certs/broker.p12"] == \
        certs.broker_keystore.read_bytes()
    assert container.files["/var/lib/artemis-instance/certs/ca.pem"] == certs.ca.read_bytes()
    override = "/var/lib/artemis-instance/etc-override/"
    assert {p[len(override):] for p in container.files if p.startswith(override)} == {
        "broker.properties", "login.config", "cert-users.properties", "cert-roles.properties"}
    assert broker.tls_url == f"amqps://app:pw@localhost:{broker.tls_port}"
    assert "AMQ221007" in broker.log_tail() and certs.keystore_password not in broker.log_tail()
    assert "KEYSTORE=***" in broker.log_tail()
    config = docker_container_config(user="app", password="pw", tls=True)
    assert config.files.keys() == {p for p in container.files if p.startswith(override)}
    folder = certs.directory
    broker.stop()
    assert container.wrapped.status == "removed" and not folder.exists()
    anonymous = docker_container_config(user="app", password="pw", allow_anonymous=True)
    assert anonymous.env["ANONYMOUS_LOGIN"] == "true"
    assert "credentialsInvalidate=true" in anonymous.files[override + "login.config"]
