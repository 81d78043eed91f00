"""Filtering messages using a selector (the seed's Example 3.10), subclassing Receiver.

The broker hands out only the messages whose application properties match the JMS
selector; the others stay on the queue for other receivers.

    python examples/handlers/selector.py -a amqp://admin:admin@localhost:5672/examples
"""

import argparse
import os

from proton.reactor import Container

from proton_easy.handlers import Receiver


class Recv(Receiver):
    def on_received(self, msg):
        print(msg.body)


parser = argparse.ArgumentParser(description="Receive the green messages of the address.")
parser.add_argument("-a", "--address",
                    default=(os.environ.get("PROTON_EASY_URL") or "localhost:5672") + "/examples",
                    help="address from which messages are received (default %(default)s)")
parser.add_argument("-m", "--messages", type=int, default=0,
                    help="number of messages to receive; 0 receives indefinitely "
                         "(default %(default)s)")
opts = parser.parse_args()

try:
    Container(Recv(opts.address, count=opts.messages, selector="colour = 'green'")).run()
except KeyboardInterrupt:
    pass
