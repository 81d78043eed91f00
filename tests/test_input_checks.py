"""Pure logic, no broker: bad input refused before any I/O, error texts that say what happened,
and the model modules' import graph."""

from __future__ import annotations

import ast
import datetime
import pathlib
import pickle
import socket
import threading
import time
from types import SimpleNamespace
from typing import Any, Iterator, List

import pytest

import proton_easy as pe
from proton_easy import _errors
from proton_easy._message import encode
from proton_easy._options import ConnectionOptions, parse_url

PACKAGE = pathlib.Path(pe.__file__).parent
SECRET = "Sup3r-s3cret"


def cond(name: str, description: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, description=description)


# -- bad input: ValueError / TypeError at once -------------------------------------------------
@pytest.mark.parametrize("url, fragment", [
    ("amqp://[::1/probe", "IPv6"),
    ("amqp://[::zz]:5672/q", "IPv6"),
    ("amqp://ho\x00st:5672/q", "control character"),
    ("amqp://ho\nst:5672/q", "control character"),
    ("amqp://" + "h" * 100_000 + ":5672/q", "too long"),
])
def test_malformed_hosts_are_refused_up_front(url: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment) as info:
        pe.send(url, "x", timeout=30)
    assert len(str(info.value)) < 400  # a 100,000-character host is not echoed


@pytest.mark.parametrize("password", ["Xq7@Zk9", "Xq7/Zk9", "Xq7#Zk9", "Xq7@Zk9/Wm3#"])
def test_raw_specials_in_a_password_are_refused_without_echoing_it(password: str) -> None:
    url = f"amqp://admin:{password}@broker.example:5672/q"
    with pytest.raises(ValueError, match="percent-encode") as info:
        parse_url(url)
    text = str(info.value)
    assert "password=" in text and "amqp://admin:***@" in text
    for piece in password.replace("@", " ").replace("/", " ").replace("#", " ").split():
        assert piece not in text


def test_a_percent_encoded_password_and_an_at_in_the_address_still_parse() -> None:
    parsed = parse_url("amqp://admin:p%40s%2Fs%23@localhost:5672/orders@eu")
    assert parsed.password == "p@s/s#"
    assert parsed.address == "orders@eu"
    assert parse_url("amqp://[::1]:5673/q").host == "[::1]"


@pytest.mark.parametrize("kwargs, error, fragment", [
    ({"timeout": float("inf")}, ValueError, "finite"),
    ({"timeout": float("nan")}, ValueError, "finite"),
    ({"timeout": 1e300}, ValueError, "at most"),
    ({"timeout": 0}, ValueError, "positive"),
    ({"timeout": "5"}, TypeError, "number"),
    ({"heartbeat": 1e-9}, ValueError, "at least"),
    ({"heartbeat": float("inf")}, ValueError, "finite"),
    ({"reconnect": float("nan")}, ValueError, "finite"),
])
def test_bad_durations_are_refused_up_front(kwargs: Any, error: type, fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        ConnectionOptions.build("amqp://localhost:5672/q", **kwargs)


@pytest.mark.parametrize("call", [
    lambda: pe.receive("amqp://localhost:1/q", timeout=float("inf")),
    lambda: pe.receive("amqp://localhost:1/q", timeout=float("nan")),
    lambda: pe.request("amqp://localhost:1/q", "x", timeout=float("inf")),
    lambda: pe.send("amqp://localhost:1/q", "x", timeout=float("nan")),
    lambda: pe.consume("amqp://localhost:1/q", idle_timeout=float("inf")),
    lambda: pe.serve("amqp://localhost:1/q", str, timeout=float("nan")),
    lambda: pe.send("amqp://localhost:1/q", "x", heartbeat=1e-9),
])
def test_helpers_refuse_bad_durations_before_connecting(call: Any) -> None:
    # port 1 on localhost: nothing listens there; a refusal would be a ConnectError instead
    with pytest.raises(ValueError):
        call()


def _nested(depth: int) -> List[Any]:
    value: List[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def test_a_body_nested_1000_deep_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="nested deeper than"):
        pe.send("amqp://localhost:1/q", _nested(1000))
    with pytest.raises(TypeError, match="nested deeper than"):
        encode(pe.Message({"a": _nested(1000)}))
    assert len(encode(_nested(50))) > 50  # reasonable nesting still works


@pytest.mark.parametrize("body, where, what", [
    ({"at": datetime.datetime(2024, 5, 1)}, "body['at']", "a datetime"),
    ({"a": [1, {"b": {1, 2}}]}, "body['a'][1]['b']", "a set"),
    ([0, 2 ** 64], "body[1]", "an int out of the 64-bit range"),
    (pe.Message("ok", properties={"when": datetime.date(2024, 5, 1)}),
     "properties['when']", "a date"),
    (object(), "body", "an object"),
])
def test_encode_errors_name_the_value_and_its_path(body: Any, where: str, what: str) -> None:
    with pytest.raises(TypeError) as info:
        encode(body)
    text = str(info.value)
    assert f"{where} is {what}" in text
    assert "use " in text  # and what to use instead
    assert info.value.__cause__ is None and info.value.__suppress_context__


# -- error texts -------------------------------------------------------------------------------
def test_public_classes_say_proton_easy() -> None:
    for name in ("AMQPError", "ConnectError", "AuthenticationError", "TLSError", "Timeout",
                 "ConnectionLost", "LinkError", "NotFound", "Unauthorized", "DeliveryError",
                 "Rejected", "Released", "TransactionError", "TLS", "Message"):
        cls = getattr(pe, name)
        assert cls.__module__ == "proton_easy", name
    err = pickle.loads(pickle.dumps(pe.ConnectError("x")))
    assert type(err) is pe.ConnectError


def test_refused_asks_whether_a_broker_runs_there() -> None:
    err = _errors.transport_error(cond("proton.pythonio", "Connection refused to all addresses"),
                                  "amqp://admin@locahost:56191/q")
    assert type(err) is pe.ConnectError
    assert str(err).endswith("is a broker running at locahost:56191?")


def test_login_hints() -> None:
    wrong = _errors.transport_error(cond("amqp:unauthorized-access",
                                         "Authentication failed [mech=PLAIN]"),
                                    "amqp://admin@h:5672", "PLAIN")
    assert isinstance(wrong, pe.AuthenticationError)
    assert "user name and password" in str(wrong) and "percent-encoded" in str(wrong)
    tls_only = _errors.transport_error(cond("amqp:unauthorized-access",
                                            "Authentication failed [mech=none]"),
                                       "amqp://admin@h:5672", "PLAIN")
    assert "only over TLS" in str(tls_only) and "amqps://" in str(tls_only)
    over_tls = _errors.transport_error(cond("amqp:unauthorized-access",
                                            "Authentication failed [mech=none]"),
                                       "amqps://admin@h:5671", "PLAIN")
    assert "only over TLS" not in str(over_tls)
    assert "allowed_mechs='EXTERNAL'" in str(over_tls)


def test_a_user_without_a_password_is_refused_up_front() -> None:
    # proton sends PLAIN only with a password: it would fail with "no mechanism" instead
    with pytest.raises(ValueError, match="without a password"):
        ConnectionOptions.build("amqp://admin@localhost:5672/q")
    with pytest.raises(ValueError, match="without a password"):
        ConnectionOptions.build("amqp://localhost:5672/q", user="admin")
    ConnectionOptions.build("amqps://localhost/q", user="admin", allowed_mechs="ANONYMOUS")


# -- the connect phase is bounded by the call's timeout -----------------------------------------
@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections and never says a word."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: List[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    srv.close()


def test_receive_connects_within_its_own_timeout(silent_server: int) -> None:
    url = f"amqp://admin:{SECRET}@127.0.0.1:{silent_server}/q"
    start = time.monotonic()
    with pytest.raises(pe.ConnectError) as info:
        pe.receive(url, timeout=3)
    elapsed = time.monotonic() - start
    # the silent server would hold the socket for the 10 s default (or the 5 s handshake
    # deadline): the call's own 3 s is what bounds it
    assert elapsed < 4.9, elapsed
    assert "within 3 s" in str(info.value)


def test_a_short_receive_still_gets_time_to_connect(silent_server: int) -> None:
    # connecting gets 2 s even when the receive waits less ("what is there now")
    url = f"amqp://admin:{SECRET}@127.0.0.1:{silent_server}/q"
    with pytest.raises(pe.ConnectError) as info:
        pe.receive(url, timeout=0.2)
    assert "within 2 s" in str(info.value)
    assert SECRET not in str(info.value)


# -- no import cycle between the model modules ----------------------------------------------------
MODEL = ("_errors", "_options", "_tls", "_message")


def _package_imports(module: str) -> set:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):  # every import, also inside functions and TYPE_CHECKING
        if isinstance(node, ast.ImportFrom) and node.level >= 1:
            name = node.module or ""
            if name:
                found.add(name.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("proton_easy"):
            found.add((node.module or "").split(".")[1] if "." in (node.module or "") else "")
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names
                         if a.name.startswith("proton_easy."))
    return found


def test_errors_imports_nothing_from_the_package() -> None:
    assert _package_imports("_errors") == set()


def test_no_import_cycle_between_the_model_modules() -> None:
    graph = {m: _package_imports(m) & set(MODEL) for m in MODEL}

    def reaches(start: str, goal: str, seen: set) -> bool:
        for nxt in graph[start]:
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = [m for m in MODEL if reaches(m, m, {m})]
    assert cycles == [], graph


# -- TLS on a proton built without OpenSSL -------------------------------------------------------
def test_tls_on_a_proton_without_ssl_is_a_tls_error_saying_how_to_rebuild(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import proton

    from proton_easy import _tls

    monkeypatch.setattr(proton.SSL, "present", staticmethod(lambda: False))
    _tls.clear_domain_cache()
    for tls in (pe.TLS(verify="none"), pe.TLS()):
        with pytest.raises(pe.TLSError, match="built without OpenSSL") as info:
            tls.domain()
        assert "libssl-dev" in str(info.value) and "--no-binary" in str(info.value)
    with pytest.raises(pe.TLSError, match="built without OpenSSL"):
        pe.send("amqps://127.0.0.1:1/q", "x", tls=pe.TLS(verify="none"))
