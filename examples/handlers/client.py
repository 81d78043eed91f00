"""A client that sends requests and prints the replies (the seed's Example 3.7), subclassing
Requester.

Requester receives the replies on a dynamic queue the broker names (each request's reply_to)
and matches them to the requests by correlation id; window=1 sends the next request once the
reply to the previous one came, as the seed does.

    python examples/handlers/client.py -a amqp://admin:admin@localhost:5672/examples
"""

import argparse
import os

from proton.reactor import Container

from proton_easy.handlers import Requester


class Client(Requester):
    def on_reply(self, request, reply):
        print(f"{request.body} => {reply.body}")


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

Container(Client(opts.address, opts.requests or REQUESTS, window=1)).run()
