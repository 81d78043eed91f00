"""proton_easy: AMQP 1.0 messaging with Qpid Proton, as easy as requests made HTTP.

>>> import proton_easy as pe
>>> pe.send("amqp://admin:admin@localhost:5672/examples", {"sequence": 1})   # doctest: +SKIP
>>> [m.body for m in pe.receive("amqp://admin:admin@localhost:5672/examples")]  # doctest: +SKIP
[{'sequence': 1}]
"""

from . import _logging  # noqa: F401  (quiets proton's own logger: see proton_easy._logging)
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
from ._client import Client, Consumer
from ._errors import (
    AMQPError,
    AuthenticationError,
    ConnectError,
    ConnectionLost,
    DeliveryError,
    LinkError,
    NotFound,
    Rejected,
    Released,
    Timeout,
    TLSError,
    TransactionError,
    Unauthorized,
)
from ._message import Message
from ._options import DEFAULT_TIMEOUT
from ._otel import instrument, uninstrument
from ._tls import TLS
from ._transaction import Transaction

__version__ = "0.1.0"

__all__ = [
    "AMQPError",
    "AuthenticationError",
    "Client",
    "ConnectError",
    "ConnectionLost",
    "Consumer",
    "DEFAULT_TIMEOUT",
    "DeliveryError",
    "LinkError",
    "Message",
    "NotFound",
    "Rejected",
    "Released",
    "TLS",
    "TLSError",
    "Timeout",
    "Transaction",
    "TransactionError",
    "Unauthorized",
    "browse",
    "consume",
    "instrument",
    "receive",
    "request",
    "send",
    "send_many",
    "serve",
    "transaction",
    "uninstrument",
    "unsubscribe",
]
