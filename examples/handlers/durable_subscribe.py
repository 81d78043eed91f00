"""A durable topic subscription, subscribing with handlers.Receiver.

The broker keeps the subscription, and what is published to the topic, while the subscriber
is away; it is keyed by the container id (JMS's client id), so come back with the same one.
--unsubscribe deletes it afterwards (handlers.Unsubscriber).

    python examples/handlers/durable_subscribe.py -a amqp://admin:admin@localhost:5672/topic://news
"""

import argparse
import os

from proton.reactor import Container

from proton_easy.handlers import Receiver, Unsubscriber


class Recv(Receiver):
    def on_received(self, msg):
        print(msg.body)


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

Container(Recv(opts.address, count=opts.messages, timeout=opts.timeout,
               subscription=opts.subscription, durable=True,
               container_id=opts.client_id)).run()
if opts.unsubscribe:
    Container(Unsubscriber(opts.address, subscription=opts.subscription,
                           container_id=opts.client_id)).run()
