"""The proton-easy command line against a real Artemis, and against cli-proton-python's clients.

cli-proton-python (raw proton) attaches without a queue capability: it is given ``queue://NAME``,
which the test broker's acceptor maps to the anycast queue NAME that proton-easy uses.
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import threading
import time
from typing import Any, Iterator, List

import pytest

import proton_easy as pe
from proton_easy.cli import format_message
from proton_easy.testing import QUICK_START_JAVA_OPTIONS

from .procs import BIN, PROTON_EASY, cli_proton, describe, popen, run, run_all

# The same message options, understood the same way by both command lines.
MESSAGE_OPTIONS = ["--msg-content", "hello %d", "-P", "colour=green", "-P", "n~3",
                   "--msg-durable", "yes", "--msg-ttl", "60000", "--msg-id", "abc",
                   "--msg-correlation-id", "cid", "--msg-reply-to", "rq", "-S", "greeting"]


def url(amqp_url: str, address: str) -> str:
    return f"{amqp_url}/{address}"


def lines(text: str) -> List[str]:
    return text.splitlines()


# -- the output formats, against cli-proton-python's own formatter (no broker) ------------------
@pytest.mark.parametrize("body", [
    "it's", 42, 2.5, None, True, ["a", 1, [2.0]], {"k": "v", "n": {"m": 1}},
])
def test_log_formats_match_cli_proton_python(body: object) -> None:
    import proton
    from cli_proton_python.formatter import Formatter

    wire = proton.Message(body=body, id="ID:m-1", correlation_id="c", subject="s",
                          reply_to="r", durable=True, ttl=1.5, priority=7,
                          properties={"colour": "green", "n": 3, "x": 2.5})
    wire.content_type = "text/plain"
    wire.group_id = "g"
    wire.address = "q"
    received = proton.Message()
    received.decode(wire.encode())  # what a receiver gets
    msg = pe.Message.from_proton(received)
    theirs = Formatter(received)
    assert format_message(msg, "dict") == theirs.print_message_as_dict()
    assert format_message(msg, "interop") == theirs.print_message_as_interop()
    assert json.loads(format_message(msg, "json")) == json.loads(
        theirs.print_message_as_json())
    assert format_message(msg, "body") == str(received.body)
    assert format_message(msg, "none") is None


def test_docstring_examples() -> None:
    import doctest

    import proton_easy.cli

    assert doctest.testmod(proton_easy.cli).failed == 0


def test_log_formats_print_binary_bodies() -> None:
    # cli-proton-python itself fails on them (proton 0.40 decodes binary as a memoryview)
    msg = pe.Message(b"bin\x00ary", user_id=b"me")
    assert "'content': 'bin\\0ary'" in format_message(msg, "dict")
    assert json.loads(format_message(msg, "json"))["user-id"] == "me"


# -- interop with cli-proton-python ---------------------------------------------------------
def test_send_feeds_cli_proton_python_receiver(amqp_url: str, amqp_address: str) -> None:
    ours, theirs = amqp_address + "-pe", amqp_address + "-cli"
    sent = run_all([
        PROTON_EASY + ["send", "-b", url(amqp_url, ours), "-c", "3", *MESSAGE_OPTIONS],
        [cli_proton("sender"), "-b", url(amqp_url, "queue://" + theirs), "-c", "3",
         *MESSAGE_OPTIONS],
    ])
    for proc in sent:
        assert proc.returncode == 0, describe(proc)
    got = run_all([
        [cli_proton("receiver"), "-b", url(amqp_url, "queue://" + q), "-c", "3",
         "--log-msgs", "json"] for q in (ours, theirs)
    ])
    for proc in got:
        assert proc.returncode == 0, describe(proc)
    from_us = [json.loads(line) for line in lines(got[0].stdout)]
    from_them = [json.loads(line) for line in lines(got[1].stdout)]
    assert [m["content"] for m in from_us] == ["hello 0", "hello 1", "hello 2"]
    for m in from_us:
        assert m["properties"] == {"colour": "green", "n": 3}
        assert (m["id"], m["correlation-id"], m["reply-to"], m["subject"]) == (
            "abc", "cid", "rq", "greeting")
        assert (m["durable"], m["ttl"], m["content-type"]) == (True, 60000, "text/plain")
    # what cli-proton-python's receiver prints is the same whichever client sent it
    assert from_us == from_them


def test_cli_proton_python_sender_feeds_receive(amqp_url: str, amqp_address: str) -> None:
    queues = [f"{amqp_address}-{n}" for n in range(4)]
    sent = run_all([[cli_proton("sender"), "-b", url(amqp_url, "queue://" + q), "-c", "4",
                     *MESSAGE_OPTIONS] for q in queues])
    for proc in sent:
        assert proc.returncode == 0, describe(proc)
    got = run_all([
        PROTON_EASY + ["receive", "-b", url(amqp_url, queues[0]), "-c", "4", "--log-msgs",
                       "dict"],
        [cli_proton("receiver"), "-b", url(amqp_url, "queue://" + queues[1]), "-c", "4",
         "--log-msgs", "dict"],
        PROTON_EASY + ["receive", "-b", url(amqp_url, queues[2]), "-c", "4", "--log-msgs",
                       "json"],
        [cli_proton("receiver"), "-b", url(amqp_url, "queue://" + queues[3]), "-c", "4",
         "--log-msgs", "json"],
    ])
    for proc in got:
        assert proc.returncode == 0, describe(proc)
    assert len(lines(got[0].stdout)) == 4
    assert "'content': 'hello 3'" in got[0].stdout
    # proton-easy prints exactly what cli-proton-python prints, in both formats
    assert got[0].stdout == got[1].stdout
    assert got[2].stdout == got[3].stdout
    assert [json.loads(line)["content"] for line in lines(got[2].stdout)] == [
        f"hello {n}" for n in range(4)]


# -- receive --------------------------------------------------------------------------------
def test_receive_selector_with_json_output(amqp_url: str, amqp_address: str) -> None:
    target = url(amqp_url, amqp_address)
    pe.send_many(target, [pe.Message(f"{c}-{n}", properties={"colour": c, "n": n})
                          for n, c in enumerate(["green", "red", "green", "blue", "green"])])
    proc = run(PROTON_EASY + ["receive", "-b", target, "--recv-selector", "colour = 'green'",
                              "--log-msgs", "json"])
    assert proc.returncode == 0, describe(proc)
    got = [json.loads(line) for line in lines(proc.stdout)]
    assert [m["content"] for m in got] == ["green-0", "green-2", "green-4"]
    assert [m["properties"] for m in got] == [{"colour": "green", "n": n} for n in (0, 2, 4)]
    # the others stay on the queue
    assert [m.body for m in pe.receive(target, count=2, timeout=5)] == ["red-1", "blue-3"]


def test_receive_count_zero_takes_what_is_there_and_exits(amqp_url: str,
                                                          amqp_address: str) -> None:
    target = url(amqp_url, amqp_address)
    pe.send_many(target, range(250))
    start = time.monotonic()
    proc = run(PROTON_EASY + ["receive", "-b", target, "-c", "0"])
    assert proc.returncode == 0, describe(proc)
    assert lines(proc.stdout) == [str(n) for n in range(250)]
    assert time.monotonic() - start < 15
    empty = run(PROTON_EASY + ["receive", "-b", target, "-c", "0"])
    assert (empty.returncode, empty.stdout) == (0, ""), describe(empty)
    assert "received 0 messages" in empty.stderr


def test_receive_stops_after_timeout_without_messages(amqp_url: str, amqp_address: str) -> None:
    target = url(amqp_url, amqp_address)
    pe.send_many(target, ["a", "b", "c"])
    start = time.monotonic()
    proc = run(PROTON_EASY + ["receive", "-b", target, "-c", "10", "-t", "1.5"])
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, describe(proc)
    assert lines(proc.stdout) == ["a", "b", "c"]
    assert 1.5 <= elapsed < 12
    assert re.search(r"^received 3 messages in [0-9.]+ s \([0-9]+ msg/s\)$", proc.stderr, re.M)


def test_receive_count_takes_only_that_many(amqp_url: str, amqp_address: str) -> None:
    target = url(amqp_url, amqp_address)
    pe.send_many(target, range(10))
    proc = run(PROTON_EASY + ["receive", "-b", target, "-c", "4", "--log-msgs", "none"])
    assert (proc.returncode, proc.stdout) == (0, ""), describe(proc)
    assert "received 4 messages" in proc.stderr
    assert [m.body for m in pe.receive(target, count=6, timeout=5)] == list(range(4, 10))


# -- send -----------------------------------------------------------------------------------
def test_send_message_options_and_summary(amqp_url: str, amqp_address: str) -> None:
    target = url(amqp_url, amqp_address)
    proc = run(PROTON_EASY + ["send", "-b", target, "-c", "2", "-M", "name=widget", "-M",
                              "qty~7", "--msg-priority", "7", "--msg-group-id", "g1",
                              "--log-msgs", "body"])
    assert proc.returncode == 0, describe(proc)
    assert lines(proc.stdout) == ["{'name': 'widget', 'qty': 7}"] * 2
    assert re.search(r"^sent 2 messages in [0-9.]+ s \([0-9]+ msg/s\)$", proc.stderr, re.M)
    got = pe.receive(target, count=2, timeout=5)
    assert [m.body for m in got] == [{"name": "widget", "qty": 7}] * 2
    assert (got[0].priority, got[0].group_id, got[0].content_type) == (7, "g1", "amqp/map")
    quiet = run(PROTON_EASY + ["send", "-b", target, "-q", "-L", "a", "-L", "~2"])
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", ""), describe(quiet)
    assert pe.receive(target, timeout=5)[0].body == ["a", 2]


def test_at_most_once_both_ways(amqp_url: str, amqp_address: str) -> None:
    target = url(amqp_url, amqp_address)
    proc = run(PROTON_EASY + ["send", "-b", target, "-c", "20", "--link-at-most-once",
                              "--msg-content", "m%d"])
    assert proc.returncode == 0, describe(proc)
    got = run(PROTON_EASY + ["receive", "-b", target, "-c", "20", "-t", "10",
                             "--link-at-most-once"])
    assert got.returncode == 0, describe(got)
    assert lines(got.stdout) == [f"m{n}" for n in range(20)]


# -- transactions ---------------------------------------------------------------------------
def drain(target: str) -> List[str]:
    """Everything on the queue now, through `proton-easy receive -c 0`."""
    proc = run(PROTON_EASY + ["receive", "-b", target, "-c", "0", "-q"])
    assert proc.returncode == 0, describe(proc)
    return lines(proc.stdout)


def test_transactional_send(amqp_url: str, amqp_address: str) -> None:
    target = url(amqp_url, amqp_address)
    committed, rolled_back = run_all([
        PROTON_EASY + ["send", "-b", target, "-c", "10", "--tx-size", "4", "--msg-content",
                       "m%d"],
        PROTON_EASY + ["send", "-b", target, "-c", "5", "--tx-size", "5", "--tx-action",
                       "rollback", "--msg-content", "lost %d"],
    ])
    assert committed.returncode == 0, describe(committed)
    assert "sent 10 messages" in committed.stderr
    assert rolled_back.returncode == 0, describe(rolled_back)
    # the last, partial batch (m8, m9) is committed too: --tx-endloop-action follows --tx-action
    assert drain(target) == [f"m{n}" for n in range(10)]
    partial = run(PROTON_EASY + ["send", "-b", target, "-c", "3", "--tx-size", "2",
                                 "--tx-endloop-action", "rollback", "--msg-content", "p%d"])
    assert partial.returncode == 0, describe(partial)
    assert drain(target) == ["p0", "p1"]


def test_transactional_receive(amqp_url: str, amqp_address: str) -> None:
    target = url(amqp_url, amqp_address)
    pe.send_many(target, [f"m{n}" for n in range(10)])
    first = run(PROTON_EASY + ["receive", "-b", target, "-c", "4", "--tx-size", "2"])
    assert first.returncode == 0, describe(first)
    assert lines(first.stdout) == ["m0", "m1", "m2", "m3"]
    undone = run(PROTON_EASY + ["receive", "-b", target, "-c", "3", "--tx-size", "3",
                                "--tx-action", "rollback"])
    assert undone.returncode == 0, describe(undone)
    assert lines(undone.stdout) == ["m4", "m5", "m6"]
    # committed receives are gone, rolled-back ones are back (c 0: until a batch stays short)
    rest = run(PROTON_EASY + ["receive", "-b", target, "-c", "0", "--tx-size", "4"])
    assert rest.returncode == 0, describe(rest)
    assert sorted(lines(rest.stdout)) == [f"m{n}" for n in range(4, 10)]
    assert drain(target) == []


def test_cli_proton_python_transactional_sender_feeds_receive(amqp_url: str,
                                                            amqp_address: str) -> None:
    sent = run([cli_proton("sender"), "-b", url(amqp_url, "queue://" + amqp_address), "-c", "6",
                "--tx-size", "3", "--msg-content", "tx %d"])
    assert sent.returncode == 0, describe(sent)
    got = run(PROTON_EASY + ["receive", "-b", url(amqp_url, amqp_address), "-c", "6",
                             "--tx-size", "3", "-t", "10"])
    assert got.returncode == 0, describe(got)
    assert lines(got.stdout) == [f"tx {n}" for n in range(6)]


# -- TLS ------------------------------------------------------------------------------------
def tls_options(broker: Any, client_cert: bool = False) -> List[str]:
    """The same --conn-ssl-* options for both command lines."""
    certs = broker.certs
    options = ["--conn-ssl-trust-store", str(certs.ca)]
    if client_cert:
        options += ["--conn-ssl-certificate", str(certs.client_cert), "--conn-ssl-private-key",
                    str(certs.client_key), "--conn-ssl-password", certs.client_key_password]
    return options


def test_tls_both_ways_with_cli_proton_python(artemis_tls: Any, amqp_address: str) -> None:
    base = artemis_tls.tls_url
    options = tls_options(artemis_tls) + ["--conn-ssl-verify-peer",
                                          "--conn-ssl-verify-peer-name"]
    ours, theirs = amqp_address + "-pe", amqp_address + "-cli"
    sent = run_all([
        PROTON_EASY + ["send", "-b", f"{base}/{ours}", "-c", "2", "--msg-content", "tls %d",
                       *options],
        [cli_proton("sender"), "-b", f"{base}/queue://{theirs}", "-c", "2", "--msg-content",
         "tls %d", *options],
    ])
    for proc in sent:
        assert proc.returncode == 0, describe(proc)
    got = run_all([
        [cli_proton("receiver"), "-b", f"{base}/queue://{ours}", "-c", "2", "--log-msgs", "body",
         *options],
        PROTON_EASY + ["receive", "-b", f"{base}/{theirs}", "-c", "2", "-t", "10", *options],
    ])
    for proc in got:
        assert proc.returncode == 0, describe(proc)
        assert lines(proc.stdout) == ["tls 0", "tls 1"]


def test_mutual_tls_with_client_certificate(artemis_tls: Any, amqp_address: str) -> None:
    target = f"{artemis_tls.mutual_tls_url}/{amqp_address}"  # no user: SASL EXTERNAL
    options = tls_options(artemis_tls, client_cert=True)
    sent = run(PROTON_EASY + ["send", "-b", target, "-c", "2", "--msg-content", "mtls %d",
                              *options])
    assert sent.returncode == 0, describe(sent)
    got = run([cli_proton("receiver"), "-b", f"{artemis_tls.mutual_tls_url}/queue://"
               f"{amqp_address}", "-c", "2", "--log-msgs", "body", "--conn-allowed-mechs",
               "EXTERNAL", *options])
    assert got.returncode == 0, describe(got)
    assert lines(got.stdout) == ["mtls 0", "mtls 1"]
    assert artemis_tls.certs.client_key_password not in sent.stderr + got.stderr


def test_tls_failures_are_one_line_in_option_names(artemis_tls: Any, amqp_address: str) -> None:
    password = artemis_tls.certs.client_key_password
    untrusted, no_cert, bad_password = run_all([
        PROTON_EASY + ["send", "-b", f"{artemis_tls.tls_url}/{amqp_address}", "-t", "10"],
        PROTON_EASY + ["send", "-b", f"{artemis_tls.mutual_tls_url}/{amqp_address}", "-t", "10",
                       *tls_options(artemis_tls)],
        PROTON_EASY + ["send", "-b", f"{artemis_tls.mutual_tls_url}/{amqp_address}", "-t", "10",
                       *tls_options(artemis_tls, client_cert=True)[:-1], "wrong-" + password],
    ])
    for proc in (untrusted, no_cert, bad_password):
        assert proc.returncode == 1 and len(lines(proc.stderr)) == 1, describe(proc)
        assert proc.stderr.startswith("proton-easy: error: ")
        assert password not in proc.stderr and artemis_tls.password not in proc.stderr
    assert "certificate verify failed" in untrusted.stderr
    assert "--conn-ssl-trust-store" in untrusted.stderr  # the hint names the CLI's options
    assert "--conn-ssl-certificate" in no_cert.stderr
    assert "password is wrong" in bad_password.stderr


# -- request and serve ---------------------------------------------------------------------
def test_request_and_serve(amqp_url: str, amqp_address: str) -> None:
    service = url(amqp_url, amqp_address)
    server = popen(PROTON_EASY + ["serve", "-b", service, "-c", "3", "--upper"])
    try:
        proc = run(PROTON_EASY + ["request", "-b", service, "-c", "3", "--msg-content",
                                  "hello %d", "-t", "20"])
        assert proc.returncode == 0, describe(proc)
        assert lines(proc.stdout) == ["HELLO 0", "HELLO 1", "HELLO 2"]
        assert "received 3 replies in" in proc.stderr
        out, err = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0, err
    assert lines(out) == ["hello 0", "hello 1", "hello 2"]  # the requests, as --log-msgs body
    assert "answered 3 requests in" in err and "amqp://admin@" in err
    assert amqp_url.split(":")[2].split("@")[0] not in err  # no password


def test_serve_answers_cli_proton_python(amqp_url: str, amqp_address: str) -> None:
    service, replies = amqp_address, amqp_address + "-replies"
    server = popen(PROTON_EASY + ["serve", "-b", url(amqp_url, service), "-c", "2",
                                  "--msg-content", "reply %d", "--log-msgs", "none", "-q"])
    try:
        sent = run([cli_proton("sender"), "-b", url(amqp_url, "queue://" + service), "-c", "2",
                    "--msg-content", "request %d", "--msg-correlation-id", "corr-7",
                    "--msg-reply-to", "queue://" + replies])
        assert sent.returncode == 0, describe(sent)
        assert server.wait(30) == 0, server.stderr.read()  # type: ignore[union-attr]
    finally:
        if server.poll() is None:
            server.kill()
    got = run([cli_proton("receiver"), "-b", url(amqp_url, "queue://" + replies), "-c", "2",
               "--log-msgs", "json", "-t", "10"])
    assert got.returncode == 0, describe(got)
    answers = [json.loads(line) for line in lines(got.stdout)]
    assert [(m["content"], m["correlation-id"]) for m in answers] == [
        ("reply 0", "corr-7"), ("reply 1", "corr-7")]


def test_serve_stops_on_ctrl_c_and_request_times_out(amqp_url: str, amqp_address: str) -> None:
    service = url(amqp_url, amqp_address)
    start = time.monotonic()
    lonely = run(PROTON_EASY + ["request", "-b", service + "-nobody", "-t", "1.5"])
    assert time.monotonic() - start < 10
    assert lonely.returncode == 1 and len(lines(lonely.stderr)) == 1, describe(lonely)
    assert "no reply from" in lonely.stderr
    server = popen(PROTON_EASY + ["serve", "-b", service])
    try:
        answer = run(PROTON_EASY + ["request", "-b", service, "--msg-content", "echo me"])
        assert (answer.returncode, answer.stdout) == (0, "echo me\n"), describe(answer)
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0 and "Traceback" not in err, err
    assert out == "echo me\n" and "answered 1 request in" in err


def test_failover_urls(amqp_url: str, amqp_address: str) -> None:
    # -b names the address and the credentials; its dead broker is skipped for --conn-urls
    credentials = amqp_url.split("//", 1)[1].rsplit("@", 1)[0]
    proc = run(PROTON_EASY + ["send", "-b", f"amqp://{credentials}@127.0.0.1:1/{amqp_address}",
                              "--conn-urls", f"amqp://127.0.0.1:1,{amqp_url}",
                              "--conn-heartbeat", "5", "--msg-content", "via failover"])
    assert proc.returncode == 0, describe(proc)
    assert [m.body for m in pe.receive(url(amqp_url, amqp_address), timeout=5)] == [
        "via failover"]


# -- errors ---------------------------------------------------------------------------------
def test_unreachable_broker_is_one_line_and_non_zero(amqp_url: str) -> None:
    dead = "amqp://admin:s3cr3t-pw@127.0.0.1:1/q"
    start = time.monotonic()
    results = run_all([PROTON_EASY + ["send", "-b", dead, "-t", "5"],
                       PROTON_EASY + ["receive", "-b", dead, "-t", "5"]])
    assert time.monotonic() - start < 5 + 5  # within the timeout (plus interpreter start-up)
    for proc in results:
        assert proc.returncode == 1, describe(proc)
        assert proc.stdout == ""
        assert len(lines(proc.stderr)) == 1, describe(proc)
        assert proc.stderr.startswith("proton-easy: error: cannot connect to amqp://admin@")
        assert "Traceback" not in proc.stderr
        assert "s3cr3t-pw" not in proc.stderr


def test_wrong_password_and_bad_selector_are_one_line_errors(amqp_url: str,
                                                            amqp_address: str) -> None:
    host = amqp_url.rsplit("@", 1)[1]
    results = run_all([
        PROTON_EASY + ["send", "-b", f"amqp://admin:wrong-pw-123@{host}/{amqp_address}"],
        PROTON_EASY + ["receive", "-b", url(amqp_url, amqp_address),
                       "--recv-selector", "colour = = 'x"],
    ])
    login, selector = results
    assert login.returncode == 1 and len(lines(login.stderr)) == 1, describe(login)
    assert "Authentication failed" in login.stderr and "wrong-pw-123" not in login.stderr
    assert selector.returncode == 1 and len(lines(selector.stderr)) == 1, describe(selector)
    assert "refused" in selector.stderr and "Traceback" not in selector.stderr


def test_debug_shows_the_traceback() -> None:
    proc = run(PROTON_EASY + ["send", "-b", "amqp://127.0.0.1:1/q", "--debug"])
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "ConnectError" in proc.stderr


def test_usage_errors_exit_2() -> None:
    for args in (["send", "-c", "-1"], ["receive", "--log-msgs", "xml"], ["nonsense"],
                 ["send", "--link-at-most-once", "--link-at-least-once"]):
        proc = run(PROTON_EASY + args)
        assert proc.returncode == 2, describe(proc)
        assert "usage: proton-easy" in proc.stderr


def test_tls_options_with_a_clear_text_url_are_refused(amqp_url: str, amqp_address: str,
                                                       tmp_path: object) -> None:
    proc = run(PROTON_EASY + ["send", "-b", url(amqp_url, amqp_address),
                              "--conn-ssl-verify-peer"])
    assert proc.returncode == 1, describe(proc)
    assert "is not amqps://" in proc.stderr


# -- the terminal ---------------------------------------------------------------------------
def test_progress_line_when_stderr_is_a_terminal(amqp_url: str, amqp_address: str) -> None:
    controller, terminal = pty.openpty()
    try:
        proc = popen(PROTON_EASY + ["receive", "-b", url(amqp_url, amqp_address), "-c", "5",
                                    "-t", "2.5"], stderr=terminal)
        os.close(terminal)
        terminal = -1
        proc.communicate(timeout=30)
        seen = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    assert proc.returncode == 0
    text = seen.decode()
    assert "\rreceived 0 messages in" in text  # the live line, rewritten in place
    assert "received 0 messages in" in text.splitlines()[-1]  # then the summary


def test_console_script_is_installed() -> None:
    proc = run([str(BIN / "proton-easy"), "--version"])
    assert (proc.returncode, proc.stdout.strip()) == (0, f"proton-easy {pe.__version__}")


# -- proton-easy broker ---------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def broker_process(request: pytest.FixtureRequest) -> Iterator[subprocess.Popen]:
    """Starts `proton-easy broker` early, so that Artemis boots while the other tests run."""
    wanted = any(item.name == "test_broker_command_runs_artemis_until_ctrl_c"
                 for item in request.session.items)
    if not wanted:
        yield None  # type: ignore[misc]
        return
    cmd = PROTON_EASY + ["broker", "--port", "0", "--password", "cli-broker-pw"]
    cmd += [f"--java-option={opt}" for opt in QUICK_START_JAVA_OPTIONS]
    proc = popen(cmd, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_broker_command_runs_artemis_until_ctrl_c(broker_process: subprocess.Popen) -> None:
    output: List[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in broker_process.stdout:  # type: ignore[union-attr]
            output.append(line)
            if line.startswith("Press Ctrl-C"):
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    assert ready.wait(180), "".join(output)
    text = "".join(output)
    broker_url = re.search(r"URL: +(\S+)", text).group(1)  # type: ignore[union-attr]
    assert re.search(r"user: +admin$", text, re.M) and "password: cli-broker-pw" in text
    pe.send(broker_url + "/cli-broker", "through the CLI's broker")
    assert pe.receive(broker_url + "/cli-broker", timeout=10)[0].body == (
        "through the CLI's broker")
    broker_process.send_signal(signal.SIGINT)
    assert broker_process.wait(60) == 0
    time.sleep(0.2)
    assert "stopping Artemis" in "".join(output)
