"""proton_easy for asyncio: the verbs of :mod:`proton_easy`, awaited, with the same names,
options, errors and semantics, on the same connection loop and handler jobs.

Waiting never blocks the event loop: each verb hands its job to the connection's loop thread,
as the blocking verbs do, and awaits the job's Future; the loop thread wakes the event loop with
``call_soon_threadsafe``, once for the futures it finished in a row and for the messages that
``consume``, ``receive`` and ``serve`` take.
``asyncio.timeout``/``wait_for`` work on every verb, as do the ``timeout=`` options.

>>> from proton_easy import aio
>>> async def main(url):
...     await aio.send(url, {"sequence": 1})
...     async for msg in aio.consume(url, idle_timeout=5):
...         print(msg.body)
...     async with aio.Client(url) as client:
...         reply = await client.request("service", "hi")
"""

from ._api import (
    browse,
    consume,
    receive,
    request,
    send,
    send_many,
    serve,
    transaction,
    unsubscribe,
)
from ._client import Client
from ._consumer import Consumer
from ._transaction import Transaction

__all__ = [
    "Client",
    "Consumer",
    "Transaction",
    "browse",
    "consume",
    "receive",
    "request",
    "send",
    "send_many",
    "serve",
    "transaction",
    "unsubscribe",
]
