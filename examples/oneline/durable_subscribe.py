"""A durable topic subscription with one call.

The broker keeps the subscription, and what is published to the topic, while the subscriber
is away; it is keyed by the container id (JMS's client id), so come back with the same one.
--unsubscribe deletes it afterwards (proton_easy.unsubscribe).

    python examples/oneline/durable_subscribe.py -a amqp://admin:admin@localhost:5672/topic://news
"""

import argparse
import os

import proton_easy as pe

parser = argparse.ArgumentParser()
parser.add_argument("-a", "--address",
                    default=(os.environ.get("PROTON_EASY_URL") or "localhost:5672")
                    + "/topic://news", help="topic to subscribe to (default %(default)s)")
parser.add_argument("-m", "--messages", type=int, default=0,
                    help="number of messages to receive; 0: until -t (default %(default)s)")
parser.add_argument("-t", "--timeout", type=float, default=2.0,
                    help="stop after this many seconds without a message (default %(default)s)")
parser.add_argument("-s", "--subscription", default="news-reader", help="subscription name")
parser.add_argument("-c", "--client-id", default="reader-1", help="container id (client id)")
parser.add_argument("--unsubscribe", action="store_true", help="delete the subscription after")
opts = parser.parse_args()

with pe.consume(opts.address, idle_timeout=opts.timeout, subscription=opts.subscription,
                durable=True, container_id=opts.client_id) as messages:
    for n, msg in enumerate(messages, 1):
        print(msg.body)
        if n == opts.messages:
            break
if opts.unsubscribe:
    pe.unsubscribe(opts.address, opts.subscription, container_id=opts.client_id)
