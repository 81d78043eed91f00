"""Sending reliable messages (the seed's Example 3.3) by subclassing proton_easy.handlers.Sender.

Sender sends within the link credit, counts what the broker confirms, and after a dropped
connection sends again whatever was not confirmed (the seed's ``sent = confirmed``).

    python examples/handlers/send.py -a amqp://admin:admin@localhost:5672/examples -m 100
"""

import argparse
import os

from proton.reactor import Container

import proton_easy as pe
from proton_easy.handlers import Sender


class Send(Sender):
    def make_message(self, n):  # the n-th message, from 1
        return pe.Message({"sequence": n}, id=n)

    def on_all_accepted(self):  # the broker confirmed every message
        print("all messages confirmed")


parser = argparse.ArgumentParser(description="Send messages to the supplied address.")
parser.add_argument("-a", "--address",
                    default=(os.environ.get("PROTON_EASY_URL") or "localhost:5672") + "/examples",
                    help="address to which messages are sent (default %(default)s)")
parser.add_argument("-m", "--messages", type=int, default=100,
                    help="number of messages to send (default %(default)s)")
opts = parser.parse_args()

try:
    Container(Send(opts.address, opts.messages)).run()
except KeyboardInterrupt:
    pass
