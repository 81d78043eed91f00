"""Receiving messages in local transactions (the seed's Example 3.9), subclassing TxReceiver.

TxReceiver accepts each message in the current transaction and commits every --batch-size
messages; credit is granted only for the batch in progress.

    python examples/handlers/tx_receive.py -a amqp://admin:admin@localhost:5672/examples
"""

import argparse
import os

from proton.reactor import Container

from proton_easy.handlers import TxReceiver


class TxRecv(TxReceiver):
    def on_received(self, msg):
        print(msg.body)


parser = argparse.ArgumentParser()
parser.add_argument("-a", "--address",
                    default=(os.environ.get("PROTON_EASY_URL") or "localhost:5672") + "/examples",
                    help="address from which messages are received (default %(default)s)")
parser.add_argument("-m", "--messages", type=int, default=100,
                    help="number of messages to receive; 0 receives indefinitely "
                         "(default %(default)s)")
parser.add_argument("-b", "--batch-size", type=int, default=10,
                    help="number of messages in each transaction (default %(default)s)")
opts = parser.parse_args()

try:
    Container(TxRecv(opts.address, count=opts.messages, batch_size=opts.batch_size)).run()
except KeyboardInterrupt:
    pass
