"""Receiving best-effort messages (the seed's Example 3.11) with one call.

at_most_once=True makes the link pre-settled: nothing is acknowledged, and a message in
flight when the connection drops is lost.

    python examples/oneline/best_effort_receive.py -a amqp://admin:admin@localhost:5672/examples
"""

import argparse
import os

import proton_easy as pe

parser = argparse.ArgumentParser()
parser.add_argument("-a", "--address",
                    default=(os.environ.get("PROTON_EASY_URL") or "localhost:5672") + "/examples",
                    help="address from which messages are received (default %(default)s)")
parser.add_argument("-m", "--messages", type=int, default=100,
                    help="number of messages to receive; 0 receives indefinitely "
                         "(default %(default)s)")
opts = parser.parse_args()

try:
    if opts.messages:
        messages = pe.receive(opts.address, count=opts.messages, timeout=60, at_most_once=True)
    else:
        messages = pe.consume(opts.address, idle_timeout=None, at_most_once=True)
    for msg in messages:
        print(msg.body)
except KeyboardInterrupt:
    pass
