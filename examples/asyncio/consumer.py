"""An asyncio consumer: ``async for`` over the messages of a queue, each accepted once the
loop body finished with it (and put back on the queue if the body raised).

Stops after -m messages, or after -t seconds without one.

    python examples/asyncio/consumer.py -a amqp://admin:admin@localhost:5672/examples -m 10
"""

import argparse
import asyncio
import os

from proton_easy import aio


async def main(address: str, count: int, idle: float) -> None:
    seen = 0
    async with aio.consume(address, idle_timeout=idle) as messages:
        async for msg in messages:
            await asyncio.sleep(0)  # the work of an async service goes here
            print(msg.body, flush=True)
            seen += 1
            if seen == count:
                break  # inside async with: the message in hand is accepted


parser = argparse.ArgumentParser(description="Consume messages with asyncio.")
parser.add_argument("-a", "--address",
                    default=(os.environ.get("PROTON_EASY_URL") or "localhost:5672") + "/examples",
                    help="address from which messages are consumed (default %(default)s)")
parser.add_argument("-m", "--messages", type=int, default=100,
                    help="number of messages to consume; 0 consumes until idle (default 100)")
parser.add_argument("-t", "--idle-timeout", type=float, default=5.0,
                    help="seconds without a message before stopping (default 5)")
opts = parser.parse_args()
asyncio.run(main(opts.address, opts.messages, opts.idle_timeout))
