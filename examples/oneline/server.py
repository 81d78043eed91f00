"""A server that answers requests (the seed's Example 3.6) with one call: proton_easy.serve.

serve calls the function for each request (in this thread) and sends what it returns to the
request's reply_to, with its correlation_id. Runs until Ctrl-C.

    python examples/oneline/server.py -a amqp://admin:admin@localhost:5672/examples
"""

import argparse
import os

import proton_easy as pe


def respond(msg):
    print("Received", msg)
    return msg.body.upper()


parser = argparse.ArgumentParser(description="Answer requests with their text upper-cased.")
parser.add_argument("-a", "--address",
                    default=(os.environ.get("PROTON_EASY_URL") or "localhost:5672") + "/examples",
                    help="address from which requests are taken (default %(default)s)")
opts = parser.parse_args()

print("Listening on", opts.address.rsplit("@", 1)[-1], flush=True)  # no credentials shown
try:
    pe.serve(opts.address, respond)
except KeyboardInterrupt:
    pass
