"""Sending reliable messages (the seed's Example 3.3) with one call: proton_easy.send_many.

send_many pipelines the messages within the link credit and returns once the broker
confirmed every one (it raises otherwise).

    python examples/oneline/send.py -a amqp://admin:admin@localhost:5672/examples -m 100
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
pe.send_many(opts.address, messages)
print("all messages confirmed")
