"""A server that answers requests (the seed's Example 3.6), subclassing Responder.

Responder takes requests from the address and sends what respond() returns to each request's
reply_to, with its correlation_id, through the broker's anonymous relay when it has one (the
seed's ``relay``), else through a sender per reply address (the seed's ``senders``).
Runs until Ctrl-C.

    python examples/handlers/server.py -a amqp://admin:admin@localhost:5672/examples
"""

import argparse
import os

from proton.reactor import Container

from proton_easy.handlers import Responder


class Server(Responder):
    def respond(self, msg):
        print("Received", msg)
        return msg.body.upper()


parser = argparse.ArgumentParser(description="Answer requests with their text upper-cased.")
parser.add_argument("-a", "--address",
                    default=(os.environ.get("PROTON_EASY_URL") or "localhost:5672") + "/examples",
                    help="address from which requests are taken (default %(default)s)")
opts = parser.parse_args()

print("Listening on", opts.address.rsplit("@", 1)[-1], flush=True)  # no credentials shown
try:
    Container(Server(opts.address)).run()
except KeyboardInterrupt:
    pass
