"""Receiving messages in local transactions (the seed's Example 3.9) with one-line calls.

What tx.receive returns leaves the queue only when its batch commits (an abort would put it
back): one tx.commit() per batch of --batch-size messages.

    python examples/oneline/tx_receive.py -a amqp://admin:admin@localhost:5672/examples
"""

import argparse
import os

import proton_easy as pe

parser = argparse.ArgumentParser()
parser.add_argument("-a", "--address",
                    default=(os.environ.get("PROTON_EASY_URL") or "localhost:5672") + "/examples",
                    help="address from which messages are received (default %(default)s)")
parser.add_argument("-m", "--messages", type=int, default=100,
                    help="number of messages to receive; 0 receives indefinitely "
                         "(default %(default)s)")
parser.add_argument("-b", "--batch-size", type=int, default=10,
                    help="number of messages in each transaction (default %(default)s)")
opts = parser.parse_args()

received = 0
try:
    with pe.transaction(opts.address) as tx:
        while opts.messages == 0 or received < opts.messages:
            wanted = opts.batch_size
            if opts.messages:
                wanted = min(wanted, opts.messages - received)
            for msg in tx.receive(count=wanted, timeout=60):
                print(msg.body)
                received += 1
            tx.commit()
except KeyboardInterrupt:
    pass
