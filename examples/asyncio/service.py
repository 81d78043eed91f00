"""An asyncio request/reply service: a coroutine answers each request (here: its text
upper-cased), and the reply goes to the request's reply_to with its correlation_id.
Runs until Ctrl-C, which puts the request in hand back on the queue.

    python examples/asyncio/service.py -a amqp://admin:admin@localhost:5672/examples
"""

import argparse
import asyncio
import os

import proton_easy as pe
from proton_easy import aio


async def upper(msg: pe.Message) -> str:
    print("Received", msg, flush=True)
    await asyncio.sleep(0)  # e.g. a database or HTTP call of an async service
    return msg.body.upper()


parser = argparse.ArgumentParser(description="Answer requests with their text upper-cased.")
parser.add_argument("-a", "--address",
                    default=(os.environ.get("PROTON_EASY_URL") or "localhost:5672") + "/examples",
                    help="address from which requests are taken (default %(default)s)")
opts = parser.parse_args()

print("Listening on", opts.address.rsplit("@", 1)[-1], flush=True)  # no credentials shown
try:
    asyncio.run(aio.serve(opts.address, upper))
except KeyboardInterrupt:
    pass
