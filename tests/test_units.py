"""Pure logic without a broker: URL and option parsing, messages, error mapping, backoff."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from proton import Delivery

import proton_easy as pe
from proton_easy import _errors
from proton_easy._message import Message, decode, encode
from proton_easy._options import Backoff, ConnectionOptions, parse_url, redact, split_address


# -- URLs and addresses ------------------------------------------------------------------------
@pytest.mark.parametrize("url, expected", [
    ("amqp://localhost:5672/examples", ("amqp", "localhost", 5672, None, None, "examples")),
    ("localhost:5672/examples", ("amqp", "localhost", 5672, None, None, "examples")),
    ("amqps://u:p%40ss@broker/q", ("amqps", "broker", 5671, "u", "p@ss", "q")),
    ("amqp://h", ("amqp", "h", 5672, None, None, None)),
    ("amqp://h:5672/queue://orders", ("amqp", "h", 5672, None, None, "queue://orders")),
    ("amqp://[::1]:5673/a/b", ("amqp", "[::1]", 5673, None, None, "a/b")),
])
def test_parse_url(url: str, expected: tuple) -> None:
    p = parse_url(url)
    assert (p.scheme, p.host, p.port, p.user, p.password, p.address) == expected


@pytest.mark.parametrize("url", ["http://h/q", "amqp://h:x/q", "amqp://:1", "amqp://h:0",
                                 "amqp://h:65536", ""])
def test_parse_url_rejects(url: str) -> None:
    with pytest.raises(ValueError):
        parse_url(url)


def test_parse_url_type() -> None:
    with pytest.raises(TypeError):
        parse_url(5672)  # type: ignore[arg-type]


def test_split_address() -> None:
    assert split_address("orders") == ("orders", "queue")
    assert split_address("queue://orders") == ("orders", "queue")
    assert split_address("topic://news") == ("news", "topic")
    for bad in ("", "queue://", "topic://"):
        with pytest.raises(ValueError):
            split_address(bad)


def test_default_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROTON_EASY_URL", "amqp://envhost:1234/q")
    opts = ConnectionOptions.build()
    assert opts.urls[0].host == "envhost" and opts.address == "q"
    monkeypatch.delenv("PROTON_EASY_URL")
    assert ConnectionOptions.build().urls[0].connect_url == "amqp://localhost:5672"


# -- secrets -----------------------------------------------------------------------------------
def test_redact_and_reprs_hide_passwords() -> None:
    assert redact("see amqp://bob:hunter2@h:5672/q now") == "see amqp://bob:***@h:5672/q now"
    opts = ConnectionOptions.build("amqp://bob:hunter2@h/q")
    assert "hunter2" not in repr(opts) and "hunter2" not in opts.display_url
    assert "hunter2" not in repr(parse_url("amqp://bob:hunter2@h/q"))
    assert "hunter2" not in str(parse_url("amqp://bob:hunter2@h/q"))
    with pytest.raises(ValueError) as info:
        parse_url("amqp://bob:hunter2@h:bad/q")
    assert "hunter2" not in str(info.value)


def test_credentials_never_fall_back_to_anonymous() -> None:
    kwargs = ConnectionOptions.build("amqp://bob:pw@h/q").connect_kwargs()
    assert "ANONYMOUS" not in kwargs["allowed_mechs"]
    assert kwargs["user"] == "bob" and kwargs["password"] == "pw"
    assert kwargs["urls"] == ["amqp://h:5672"]  # no credentials in what proton logs


def test_explicit_credentials_win_over_url() -> None:
    opts = ConnectionOptions.build("amqp://a:b@h/q", user="c", password="d")
    assert (opts.user, opts.password) == ("c", "d")


def test_tls_options_refuse_clear_text() -> None:
    with pytest.raises(ValueError, match="clear text"):
        ConnectionOptions.build("amqp://h/q", tls=pe.TLS(verify="none"))
    with pytest.raises(TypeError):
        ConnectionOptions.build("amqps://h/q", tls={"ca": "x"})  # type: ignore[arg-type]


def test_tls_validates_files_and_mode(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.pem"):
        pe.TLS(ca=str(tmp_path / "missing.pem"))
    with pytest.raises(ValueError):
        pe.TLS(verify="sometimes")
    assert "secret" not in repr(pe.TLS(password="secret"))


@pytest.mark.parametrize("kwargs", [{"timeout": 0}, {"timeout": -1}, {"heartbeat": 0}])
def test_option_values_checked(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ConnectionOptions.build("amqp://h/q", **kwargs)


def test_option_types_checked() -> None:
    with pytest.raises(TypeError):
        ConnectionOptions.build("amqp://h/q", timeout="10")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ConnectionOptions.build("amqp://h/q", reconnect="yes")  # type: ignore[arg-type]


def test_failover_urls() -> None:
    opts = ConnectionOptions.build(urls=["amqp://a:1/q", "amqp://b:2"])
    assert opts.connect_kwargs()["urls"] == ["amqp://a:1", "amqp://b:2"]
    assert opts.address == "q"


# -- backoff -----------------------------------------------------------------------------------
def test_backoff_before_first_connection_tries_once() -> None:
    b = Backoff(True)
    b.reset()
    assert b.next() == 0.0
    gave_up = []
    b.on_give_up = lambda: gave_up.append(1)
    with pytest.raises(StopIteration):
        b.next()
    assert gave_up == [1]


def test_backoff_is_bounded_and_fresh_for_each_outage() -> None:
    b = Backoff(0.3)
    b.connected = True
    b.reset()
    delays = [b.next() for _ in range(4)]
    assert delays == [0.0, 0.0, 0.1, 0.2]
    time.sleep(0.35)
    with pytest.raises(StopIteration):
        b.next()
    b.stopped = False
    b.reset()  # a new outage after a successful reconnection starts afresh
    assert [b.next(), b.next(), b.next()] == [0.0, 0.0, 0.1]


def test_backoff_stop_ends_retrying() -> None:
    b = Backoff(True)
    b.connected = True
    b.reset()
    b.next()
    b.stopped = True
    with pytest.raises(StopIteration):
        b.next()


# -- messages ----------------------------------------------------------------------------------
def test_message_round_trip_is_plain_python() -> None:
    msg = Message({"k": b"v", "l": [b"x"]}, properties={"p": b"q"}, id=7, correlation_id=b"c",
                  durable=True, ttl=5, subject="s", content_type="application/json")
    back = decode(encode(msg))
    assert back == msg
    assert type(back.body["k"]) is bytes and type(back.body["l"][0]) is bytes
    assert type(back.properties["p"]) is bytes and type(back.correlation_id) is bytes
    assert back.ttl == 5 and back.content_type == "application/json"


def test_unset_content_type_reads_back_as_none() -> None:
    assert decode(encode("x")).content_type is None


def test_unencodable_bodies_are_type_errors() -> None:
    import datetime
    from collections import OrderedDict

    for body in (datetime.datetime.now(), object(), OrderedDict(a=1), 2 ** 64):
        with pytest.raises(TypeError):
            encode(body)


def test_message_repr_is_readable() -> None:
    assert repr(Message("x", subject="s")) == "Message(body='x', subject='s')"


# -- error mapping -----------------------------------------------------------------------------
def cond(name: str, description: str = "") -> SimpleNamespace:
    return SimpleNamespace(name=name, description=description)


def test_transport_errors_map_to_classes() -> None:
    tls = _errors.transport_error(cond("amqp:connection:framing-error",
                                       "SSL Failure: certificate verify failed"), "amqps://h")
    assert isinstance(tls, pe.TLSError) and isinstance(tls, pe.ConnectError)
    auth = _errors.transport_error(cond("amqp:unauthorized-access",
                                        "Authentication failed [mech=PLAIN]"), "amqp://h")
    assert isinstance(auth, pe.AuthenticationError)
    refused = _errors.transport_error(cond("proton.pythonio", "Connection refused"), "amqp://h")
    assert type(refused) is pe.ConnectError
    dropped = _errors.transport_error(cond("amqp:connection:framing-error",
                                           "Expected SASL protocol header: no protocol header "
                                           "found (connection aborted)"), "amqp://h")
    assert type(dropped) is pe.ConnectError


def test_the_wrong_protocol_on_a_port_says_which_scheme_fits() -> None:
    # amqps:// against a plain AMQP port that answers with its AMQP header
    plain = _errors.transport_error(cond("amqp:connection:framing-error",
                                         "SSL Failure: error:0A00010B:SSL routines::wrong "
                                         "version number"), "amqps://h:5672")
    assert isinstance(plain, pe.TLSError)
    assert "does not speak TLS" in str(plain) and "amqp://)" in str(plain)
    # amqp:// against a TLS port that answers with a TLS record (a handshake, or an alert)
    for got in ("SSL/TLS connection ['\\x16\\x03\\x03\\x00']",
                "Unknown protocol ['\\x15\\x03\\x03\\x00\\x02\\x02F']"):
        tls = _errors.transport_error(cond("amqp:connection:framing-error",
                                           f"Expected SASL protocol header got: {got}"),
                                      "amqp://h:5671")
        assert type(tls) is pe.ConnectError, got
        assert "speaks TLS" in str(tls) and "amqps://" in str(tls), got
    other = _errors.transport_error(cond("amqp:connection:framing-error",
                                         "Expected AMQP protocol header got: Unknown protocol "
                                         "['HTTP/1.1']"), "amqp://h")
    assert type(other) is pe.ConnectError and "TLS" not in str(other)


def test_link_errors_map_to_classes() -> None:
    assert isinstance(_errors.link_error(cond("amqp:not-found", "no such queue"), "q"),
                      pe.NotFound)
    unauthorized = _errors.link_error(cond("amqp:unauthorized-access", "nope"), "q")
    assert isinstance(unauthorized, pe.Unauthorized) and isinstance(unauthorized, pe.LinkError)
    other = _errors.link_error(cond("amqp:invalid-field", "bad selector"), "q")
    assert type(other) is pe.LinkError and other.condition == "amqp:invalid-field"
    assert "bad selector" in str(other)


def test_delivery_errors_map_to_classes() -> None:
    rejected = _errors.delivery_error(Delivery.REJECTED, cond("amqp:internal-error", "full"))
    assert isinstance(rejected, pe.Rejected) and rejected.condition == "amqp:internal-error"
    assert isinstance(_errors.delivery_error(Delivery.RELEASED, None), pe.Released)
    assert isinstance(_errors.delivery_error(Delivery.MODIFIED, None), pe.Released)


def test_error_texts_hide_passwords() -> None:
    err = _errors.transport_error(cond("x", "failed for amqp://u:topsecret@h:1"), "amqp://u@h")
    assert "topsecret" not in str(err)


def test_timeout_is_a_builtin_timeout_error() -> None:
    assert issubclass(pe.Timeout, TimeoutError) and issubclass(pe.Timeout, pe.AMQPError)


class _Clock:
    """A container stand-in for Job timers: ``now`` moves only when told, and ``run`` fires the
    tasks that are due, as proton's timer tick does."""

    def __init__(self) -> None:
        self.now = 100.0
        self.tasks: list = []

    def schedule(self, delay: float, handler: object) -> SimpleNamespace:
        task = SimpleNamespace(deadline=self.now + delay, handler=handler, cancelled=False)
        task.cancel = lambda: setattr(task, "cancelled", True)
        self.tasks.append(task)
        return task

    def run(self, until: float) -> None:
        while True:
            due = [t for t in self.tasks if not t.cancelled and t.deadline <= until]
            if not due:
                break
            task = min(due, key=lambda t: t.deadline)
            self.tasks.remove(task)
            self.now = max(self.now, task.deadline)
            task.handler.on_timer_task(None)
        self.now = until


def test_a_re_armed_timer_fires_once_at_its_last_due_time() -> None:
    from proton_easy.handlers import Job

    clock, fired = _Clock(), []
    job = Job("amqp://127.0.0.1:1")
    job.container = clock
    job.set_timer("idle", 5, lambda: fired.append(("first", clock.now)))
    for step in range(1, 4):  # re-armed later and later: still one pending task
        clock.now = 100.0 + step
        job.set_timer("idle", 5, lambda: fired.append(("last", clock.now)))
    assert len([t for t in clock.tasks if not t.cancelled]) == 1
    clock.run(107.9)
    assert fired == []
    clock.run(120)
    assert fired == [("last", 108.0)]
    job.set_timer("idle", 5, lambda: fired.append(("again", clock.now)))  # after it fired
    job.set_timer("idle", 1, lambda: fired.append(("sooner", clock.now)))  # earlier: replaced
    clock.run(130)
    assert fired[1:] == [("sooner", 121.0)]
    job.set_timer("idle", 5, lambda: fired.append(("cancelled", clock.now)))
    job.set_timer("idle", None, None)
    job.set_timer("other", 5, lambda: fired.append(("done", clock.now)))
    job.done = True  # a job that ended calls no timer
    clock.run(200)
    assert fired[1:] == [("sooner", 121.0)]
