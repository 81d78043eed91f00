"""Filtering messages using a selector (the seed's Example 3.10) with one call.

The broker hands out only the messages whose application properties match the JMS
selector; the others stay on the queue for other receivers.

    python examples/oneline/selector.py -a amqp://admin:admin@localhost:5672/examples
"""

import argparse
import os

import proton_easy as pe

parser = argparse.ArgumentParser(description="Receive the green messages of the address.")
parser.add_argument("-a", "--address",
                    default=(os.environ.get("PROTON_EASY_URL") or "localhost:5672") + "/examples",
                    help="address from which messages are received (default %(default)s)")
parser.add_argument("-m", "--messages", type=int, default=0,
                    help="number of messages to receive; 0 receives indefinitely "
                         "(default %(default)s)")
opts = parser.parse_args()

selector = "colour = 'green'"
try:
    if opts.messages:
        messages = pe.receive(opts.address, count=opts.messages, timeout=60, selector=selector)
    else:
        messages = pe.consume(opts.address, idle_timeout=None, selector=selector)
    for msg in messages:
        print(msg.body)
except KeyboardInterrupt:
    pass
