"""Sending messages in local transactions (the seed's Example 3.8) with one-line calls.

Within ``with pe.transaction(...) as tx``, what tx.send sends is delivered only when its batch
commits: tx.commit() ends a batch and starts the next, leaving the block commits the last one
(and an exception aborts it).

    python examples/oneline/tx_send.py -a amqp://admin:admin@localhost:5672/examples -m 100
"""

import argparse
import os

import proton_easy as pe

parser = argparse.ArgumentParser(description="Send messages transactionally to the supplied "
                                             "address.")
parser.add_argument("-a", "--address",
                    default=(os.environ.get("PROTON_EASY_URL") or "localhost:5672") + "/examples",
                    help="address to which messages are sent (default %(default)s)")
parser.add_argument("-m", "--messages", type=int, default=100,
                    help="number of messages to send (default %(default)s)")
parser.add_argument("-b", "--batch-size", type=int, default=10,
                    help="number of messages in each transaction (default %(default)s)")
opts = parser.parse_args()

with pe.transaction(opts.address) as tx:
    for n in range(1, opts.messages + 1):
        tx.send(pe.Message({"sequence": n}, id=n))
        if n % opts.batch_size == 0:
            tx.commit()
print("all messages committed")
