"""Ctrl-C in a waiting consume: a KeyboardInterrupt, without the queue.Empty it interrupted."""

from __future__ import annotations

import signal
import sys
import time

import proton_easy as pe

from .procs import popen

CONSUME = """
import sys, proton_easy as pe
for msg in pe.consume(sys.argv[1], idle_timeout=None):
    print(msg.body, flush=True)
"""


def test_ctrl_c_in_consume_is_a_plain_keyboard_interrupt(amqp_url: str,
                                                        amqp_address: str) -> None:
    url = f"{amqp_url}/{amqp_address}"
    pe.send(url, "first")
    proc = popen([sys.executable, "-c", CONSUME, url])
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "first"
        # the consumer asked for the next message once the broker has "first" accepted: it
        # is waiting then (a fixed sleep is not enough on a busy machine)
        deadline = time.monotonic() + 20
        while pe.browse(url, timeout=1) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "KeyboardInterrupt" in err, err
    assert "During handling of the above exception" not in err, err
    assert "Empty" not in err, err
    assert pe.receive(url, timeout=1) == []  # "first" was accepted after its loop body
