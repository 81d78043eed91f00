"""Receiving reliable messages (the seed's Example 3.4) with one call.

proton_easy.receive returns up to ``count`` messages (credit is granted for no more, so nothing
else leaves the queue); proton_easy.consume iterates for as long as messages come.

    python examples/oneline/receive.py -a amqp://admin:admin@localhost:5672/examples -m 100
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
        messages = pe.receive(opts.address, count=opts.messages, timeout=60)
    else:
        messages = pe.consume(opts.address, idle_timeout=None)  # accepted one by one
    for msg in messages:
        print(msg.body)
except KeyboardInterrupt:
    pass
