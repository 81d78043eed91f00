"""Scheduled delivery with one call: proton_easy.send_many(..., delay=...).

The broker holds each message for --delay seconds before any receiver gets it (Artemis reads
the x-opt-delivery-delay annotation); pe.Message(delivery_time=...) names an absolute time.

    python examples/oneline/scheduled_send.py -a amqp://admin:admin@localhost:5672/examples
"""

import argparse
import os

import proton_easy as pe

parser = argparse.ArgumentParser()
parser.add_argument("-a", "--address",
                    default=(os.environ.get("PROTON_EASY_URL") or "localhost:5672") + "/examples",
                    help="address to which messages are sent (default %(default)s)")
parser.add_argument("-m", "--messages", type=int, default=10,
                    help="number of messages to send (default %(default)s)")
parser.add_argument("-d", "--delay", type=float, default=5.0,
                    help="seconds the broker holds each message (default %(default)s)")
opts = parser.parse_args()

pe.send_many(opts.address, ({"sequence": n} for n in range(1, opts.messages + 1)),
             delay=opts.delay)
print("all messages scheduled")
