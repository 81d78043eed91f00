"""Receiving reliable messages (the seed's Example 3.4) by subclassing handlers.Receiver.

Each message is accepted after on_received returns; dedupe=True drops a message whose
sequential id was already seen (the seed's duplicate check).

    python examples/handlers/receive.py -a amqp://admin:admin@localhost:5672/examples -m 100
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
    Container(Recv(opts.address, count=opts.messages, dedupe=True)).run()
except KeyboardInterrupt:
    pass
