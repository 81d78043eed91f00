"""An asyncio requester: sends every line as a request at once, from one task each, over one
connection, and prints each reply next to its request.

    python examples/asyncio/client.py -a amqp://admin:admin@localhost:5672/examples
"""

import argparse
import asyncio
import os

from proton_easy import aio

REQUESTS = ["Twas brillig, and the slithy toves", "Did gire and gymble in the wabe.",
            "All mimsy were the borogroves,", "And the mome raths outgrabe."]


async def main(url: str) -> None:
    async with aio.Client(url) as client:
        replies = await asyncio.gather(*(client.request(None, text, timeout=30)
                                         for text in REQUESTS))
    for text, reply in zip(REQUESTS, replies):
        print(f"{text} => {reply.body}")


parser = argparse.ArgumentParser(description="Send requests concurrently, print the replies.")
parser.add_argument("-a", "--address",
                    default=(os.environ.get("PROTON_EASY_URL") or "localhost:5672") + "/examples",
                    help="address to which requests are sent (default %(default)s)")
asyncio.run(main(parser.parse_args().address))
