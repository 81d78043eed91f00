"""Sending best-effort messages (the seed's Example 3.12), subclassing Sender.

at_most_once=True pre-settles every message: nothing waits for the broker's confirmation,
so on_all_accepted means "all sent" here.

    python examples/handlers/best_effort_send.py -a amqp://admin:admin@localhost:5672/examples
"""

import argparse
import os

from proton.reactor import Container

import proton_easy as pe
from proton_easy.handlers import Sender


class Send(Sender):
    def make_message(self, n):
        return pe.Message({"sequence": n}, id=n)

    def on_all_accepted(self):
        print("all messages sent")


parser = argparse.ArgumentParser(description="Send messages to the supplied address.")
parser.add_argument("-a", "--address",
                    default=(os.environ.get("PROTON_EASY_URL") or "localhost:5672") + "/examples",
                    help="address to which messages are sent (default %(default)s)")
parser.add_argument("-m", "--messages", type=int, default=100,
                    help="number of messages to send (default %(default)s)")
opts = parser.parse_args()

try:
    Container(Send(opts.address, opts.messages, at_most_once=True)).run()
except KeyboardInterrupt:
    pass
