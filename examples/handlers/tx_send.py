"""Sending messages in local transactions (the seed's Example 3.8), subclassing TxSender.

TxSender sends batches of --batch-size messages, each in a transaction that it commits once
the broker took every message of the batch, and declares the next transaction with it.

    python examples/handlers/tx_send.py -a amqp://admin:admin@localhost:5672/examples -m 100
"""

import argparse
import os

from proton.reactor import Container

import proton_easy as pe
from proton_easy.handlers import TxSender


class TxSend(TxSender):
    def make_message(self, n):  # the n-th message, from 1
        return pe.Message({"sequence": n}, id=n)

    def on_all_committed(self):
        print("all messages committed")


parser = argparse.ArgumentParser(description="Send messages transactionally to the supplied "
                                             "address.")
parser.add_argument("-a", "--address",
                    default=(os.environ.get("PROTON_EASY_URL") or "localhost:5672") + "/examples",
                    help="address to which messages are sent (default %(default)s)")
parser.add_argument("-m", "--messages", type=int, default=100,
                    help="number of messages to send (default %(default)s)")
parser.add_argument("-b", "--batch-size", type=int, default=10,
                    help="number of messages in each transaction (default %(default)s)")
opts = parser.parse_args()

try:
    Container(TxSend(opts.address, opts.messages, opts.batch_size)).run()
except KeyboardInterrupt:
    pass
