"""Browsing a queue (JMS's QueueBrowser) with one call.

Prints the messages on the queue without taking them: the queue is unchanged afterwards.

    python examples/oneline/browse.py -a amqp://admin:admin@localhost:5672/examples
"""

import argparse
import os

import proton_easy as pe

parser = argparse.ArgumentParser()
parser.add_argument("-a", "--address",
                    default=(os.environ.get("PROTON_EASY_URL") or "localhost:5672") + "/examples",
                    help="queue to browse (default %(default)s)")
parser.add_argument("-m", "--messages", type=int, default=0,
                    help="at most this many; 0: all there are (default %(default)s)")
parser.add_argument("--selector", help="only those matching this JMS selector")
opts = parser.parse_args()

for msg in pe.browse(opts.address, opts.messages or None, selector=opts.selector):
    print(msg.body)
