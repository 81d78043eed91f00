"""Handler classes: one class per job, runnable as ``Container(handler).run()`` like the seed.

Each class is small, configured through its constructor and customised by overriding a named
hook. The blocking functions (``proton_easy.send``, ``receive`` ...) drive these very classes on a
:class:`proton_easy.Client`'s connection: one implementation of each job, two ways to drive it.

>>> from proton.reactor import Container
>>> from proton_easy.handlers import Sender
>>> class Send(Sender):
...     def make_message(self, n):
...         return {"sequence": n}
>>> # Container(Send("amqp://localhost:5672/examples", messages=100)).run()

The classes live in private modules of this package, one per concern: ``_job`` (:class:`Job`,
shared helpers), ``_transfer`` (:class:`Sender`, :class:`Receiver`), ``_request_reply``
(:class:`Requester`, :class:`Responder`) and ``_transactions`` (:class:`TxJob`,
:class:`TxSender`, :class:`TxReceiver`). This module is their public home.
"""

# _check_seconds, _Lean and _error_condition: private, imported from this module before the
# split, so still importable here.
from .._engine.disposition import error_condition as _error_condition  # noqa: F401
from ._job import Job, as_message
from ._job import _check_seconds as _check_seconds
from ._job import _Lean as _Lean
from ._request_reply import Requester, Responder
from ._subscriptions import Unsubscriber
from ._transactions import TxJob, TxReceiver, TxSender
from ._transfer import Receiver, Sender

__all__ = ["Job", "Sender", "Receiver", "Requester", "Responder", "TxJob", "TxSender",
           "TxReceiver", "Unsubscriber", "as_message"]
