"""Browsing a queue (JMS's QueueBrowser) with handlers.Receiver(browse=True).

Prints the messages on the queue without taking them: the queue is unchanged afterwards.
drain=True stops as soon as the broker has shown every message there is now.

    python examples/handlers/browse.py -a amqp://admin:admin@localhost:5672/examples
"""

import argparse
import os

from proton.reactor import Container

from proton_easy.handlers import Receiver


class Browse(Receiver):
    def on_received(self, msg):
        print(msg.body)


parser = argparse.ArgumentParser()
parser.add_argument("-a", "--address",
                    default=(os.environ.get("PROTON_EASY_URL") or "localhost:5672") + "/examples",
                    help="queue to browse (default %(default)s)")
parser.add_argument("-m", "--messages", type=int, default=0,
                    help="at most this many; 0: all there are (default %(default)s)")
parser.add_argument("--selector", help="only those matching this JMS selector")
opts = parser.parse_args()

Container(Browse(opts.address, count=opts.messages, selector=opts.selector, browse=True,
                 drain=True)).run()
