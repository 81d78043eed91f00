"""proton_easy's own frame trace (secrets redacted) and its logging, against a real broker."""

from __future__ import annotations

import logging
import sys

import pytest

import proton_easy as pe
from proton_easy._trace import redact_frame

from .procs import PROTON_EASY, describe, run

SEND = ("import logging, sys, proton_easy as pe\n"
        "{setup}\n"
        "pe.send(sys.argv[1], 'traced')\n")


def password_of(url: str) -> str:
    return url.split("//", 1)[1].split("@", 1)[0].split(":", 1)[1]


def test_trace_shows_frames_but_no_secret(amqp_url: str, amqp_address: str) -> None:
    proc = run([sys.executable, "-c", SEND.format(setup=""), f"{amqp_url}/{amqp_address}"],
               PROTON_EASY_TRACE="1")
    assert proc.returncode == 0, describe(proc)
    err = proc.stderr
    for frame in ("@sasl-init", "@open", "@attach", "@transfer", "@disposition", "@close"):
        assert frame in err, (frame, err[:2000])
    assert "initial-response=<redacted>" in err
    assert password_of(amqp_url) not in err


def test_cli_trace_flag(amqp_url: str, amqp_address: str) -> None:
    proc = run(PROTON_EASY + ["send", "--trace", "-b", f"{amqp_url}/{amqp_address}"])
    assert proc.returncode == 0, describe(proc)
    assert "@sasl-init" in proc.stderr and "initial-response=<redacted>" in proc.stderr
    assert password_of(amqp_url) not in proc.stderr
    quiet = run(PROTON_EASY + ["receive", "-b", f"{amqp_url}/{amqp_address}", "-c", "1"])
    assert quiet.returncode == 0 and "@sasl-init" not in quiet.stderr, describe(quiet)


def test_debug_logging_is_proton_easy_not_proton_event_dumps(amqp_url: str,
                                                             amqp_address: str) -> None:
    setup = "logging.basicConfig(level=logging.DEBUG, format='%(name)s %(levelname)s %(message)s')"
    proc = run([sys.executable, "-c", SEND.format(setup=setup), f"{amqp_url}/{amqp_address}"])
    assert proc.returncode == 0, describe(proc)
    lines = proc.stderr.splitlines()
    connected = [line for line in lines if line.startswith("proton_easy INFO connected to amqp://")]
    assert len(connected) == 1, proc.stderr
    assert "@127.0.0.1:" in connected[0]
    assert not [line for line in lines if line.startswith("proton ")], proc.stderr
    assert password_of(amqp_url) not in proc.stderr


def test_debug_logging_shows_links_credit_and_a_settlement_summary(
        amqp_url: str, amqp_address: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="proton_easy")
    url = f"{amqp_url}/{amqp_address}"
    assert pe.send_many(url, [f"m{i}" for i in range(5)]) == 5
    assert [m.body for m in pe.receive(url, count=5, timeout=10)] == [f"m{i}" for i in range(5)]
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "proton_easy")
    assert f"sender attached to {amqp_address!r} (at-least-once" in text, text
    assert f"receiver attached to {amqp_address!r}" in text, text
    assert f"granted to the receiver from {amqp_address!r}" in text, text
    assert f"Sender finished: {amqp_address!r}: sent 5, confirmed 5, in doubt 0" in text, text
    assert f"Receiver finished: {amqp_address!r}: received 5" in text, text
    assert f"link to {amqp_address!r} closed" in text, text
    assert password_of(amqp_url) not in caplog.text


def test_proton_logger_can_still_be_asked_for(amqp_url: str, amqp_address: str) -> None:
    setup = ("logging.basicConfig(level=logging.DEBUG, format='%(name)s %(message)s')\n"
             "logging.getLogger('proton').setLevel(logging.DEBUG)")
    proc = run([sys.executable, "-c", SEND.format(setup=setup), f"{amqp_url}/{amqp_address}"])
    assert proc.returncode == 0, describe(proc)
    assert any(line.startswith("proton ") for line in proc.stderr.splitlines())


def test_redact_frame_hides_sasl_responses_and_known_secrets() -> None:
    line = ('FRAME: 0 -> @sasl-init(65) [mechanism=:PLAIN, '
            'initial-response=b"\\x00app\\x00hunter2-pw", hostname="h"]')
    assert redact_frame(line) == ('FRAME: 0 -> @sasl-init(65) [mechanism=:PLAIN, '
                                  'initial-response=<redacted>, hostname="h"]')
    assert redact_frame('@sasl-response(67) [response=b"abc"]') == \
        '@sasl-response(67) [response=<redacted>]'
    assert "k3y-pw" not in redact_frame("something k3y-pw else", ["k3y-pw"])


def test_a_refused_link_is_logged_at_info(amqp_url: str, amqp_address: str,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="proton_easy")
    with pytest.raises(pe.LinkError):
        pe.receive(f"{amqp_url}/{amqp_address}", selector="colour = = 'x", timeout=5)
    refused = [r for r in caplog.records if r.name == "proton_easy" and "refused" in r.message]
    assert refused and refused[0].levelno == logging.INFO, caplog.text
    assert amqp_address in refused[0].message
    connected = [r for r in caplog.records if r.message.startswith("connected to amqp://")]
    assert len(connected) == 1 and password_of(amqp_url) not in caplog.text


def test_failing_over_is_logged_at_info(amqp_url: str, amqp_address: str,
                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="proton_easy")
    dead = "amqp://admin:Dead-Pw-7@127.0.0.1:1"
    pe.send(f"{dead}/{amqp_address}", "via the second", urls=[amqp_url], timeout=10)
    over = [r.message for r in caplog.records if r.message.startswith("failing over from")]
    assert over and "amqp://admin@127.0.0.1:1" in over[0], caplog.text
    assert "Dead-Pw-7" not in caplog.text and password_of(amqp_url) not in caplog.text
    assert [m.body for m in pe.receive(f"{amqp_url}/{amqp_address}", timeout=5)] == [
        "via the second"]
