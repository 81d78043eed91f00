"""Receiving best-effort messages (the seed's Example 3.11), subclassing Receiver.

at_most_once=True makes the link pre-settled: nothing is acknowledged, and a message in
flight when the connection drops is lost.

    python examples/handlers/best_effort_receive.py -a amqp://admin:admin@localhost:5672/examples
"""

import argparse
import os

from proton.reactor import Container

from proton_easy.handlers import Receiver


class Recv(Receiver):
    def on_received(self, msg):
        print(msg.body)


parser = argparse.ArgumentParser()
parser.add_argument("-a", "--address",
                    default=(os.environ.get("PROTON_EASY_URL") or "localhost:5672") + "/examples",
                    help="address from which messages are received (default %(default)s)")
parser.add_argument("-m", "--messages", type=int, default=100,
                    help="number of messages to receive; 0 receives indefinitely "
                         "(default %(default)s)")
opts = parser.parse_args()

try:
    Container(Recv(opts.address, count=opts.messages, at_most_once=True, dedupe=True)).run()
except KeyboardInterrupt:
    pass
