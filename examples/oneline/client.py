"""A client that sends requests and prints the replies (the seed's Example 3.7), one call each.

Client.request sends one request with a fresh correlation id and a reply_to the broker names,
and returns the reply (pe.Timeout if none comes in time). One Client serves all the requests.

    python examples/oneline/client.py -a amqp://admin:admin@localhost:5672/examples
"""

import argparse
import os

import proton_easy as pe

REQUESTS = ["Twas brillig, and the slithy toves",
            "Did gire and gymble in the wabe.",
            "All mimsy were the borogroves,",
            "And the mome raths outgrabe."]

parser = argparse.ArgumentParser(
    description="Send requests to the supplied address and print responses.")
parser.add_argument("-a", "--address",
                    default=(os.environ.get("PROTON_EASY_URL") or "localhost:5672") + "/examples",
                    help="address to which messages are sent (default %(default)s)")
parser.add_argument("requests", nargs="*", help="the requests (default: a poem)")
opts = parser.parse_args()

with pe.Client(opts.address) as client:
    for text in opts.requests or REQUESTS:
        print(f"{text} => {client.request(None, text).body}")
