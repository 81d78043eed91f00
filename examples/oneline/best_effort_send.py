"""Sending best-effort messages (the seed's Example 3.12) with one call.

at_most_once=True pre-settles every message: send_many returns once they are on the wire,
without waiting for the broker's confirmation.

    python examples/oneline/best_effort_send.py -a amqp://admin:admin@localhost:5672/examples
"""

import argparse
import os

import proton_easy as pe

parser = argparse.ArgumentParser(description="Send messages to the supplied address.")
parser.add_argument("-a", "--address",
                    default=(os.environ.get("PROTON_EASY_URL") or "localhost:5672") + "/examples",
                    help="address to which messages are sent (default %(default)s)")
parser.add_argument("-m", "--messages", type=int, default=100,
                    help="number of messages to send (default %(default)s)")
opts = parser.parse_args()

messages = (pe.Message({"sequence": n}, id=n) for n in range(1, opts.messages + 1))
pe.send_many(opts.address, messages, at_most_once=True)
print("all messages sent")
