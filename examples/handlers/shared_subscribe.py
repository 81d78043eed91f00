"""A shared topic subscription, subscribing with handlers.Receiver.

Every subscriber of the same shared subscription takes its turn: each message published to
the topic goes to one of them. Run several at once; --durable keeps the subscription while
none of them is there.

    python examples/handlers/shared_subscribe.py -a amqp://admin:admin@localhost:5672/topic://jobs
"""

import argparse
import os

from proton.reactor import Container

from proton_easy.handlers import Receiver


class Recv(Receiver):
    def on_received(self, msg):
        print(msg.body)


parser = argparse.ArgumentParser()
parser.add_argument("-a", "--address",
                    default=(os.environ.get("PROTON_EASY_URL") or "localhost:5672")
                    + "/topic://jobs", help="topic to subscribe to (default %(default)s)")
parser.add_argument("-m", "--messages", type=int, default=0,
                    help="number of messages to receive; 0: until -t (default %(default)s)")
parser.add_argument("-t", "--timeout", type=float, default=2.0,
                    help="stop after this many seconds without a message (default %(default)s)")
parser.add_argument("-s", "--subscription", default="workers", help="subscription name")
parser.add_argument("--durable", action="store_true", help="keep it while no one is there")
opts = parser.parse_args()

Container(Recv(opts.address, count=opts.messages, timeout=opts.timeout,
               subscription=opts.subscription, shared=True, durable=opts.durable)).run()
