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

The classes live in private modules, one per concern: :mod:`proton_easy._job` (:class:`Job`,
shared helpers), :mod:`proton_easy._transfer` (:class:`Sender`, :class:`Receiver`),
:mod:`proton_easy._rr_handlers` (:class:`Requester`, :class:`Responder`) and
:mod:`proton_easy._tx_handlers` (:class:`TxJob`, :class:`TxSender`, :class:`TxReceiver`).
This module is their public home.
"""

# _check_seconds, _Lean and _error_condition: private, imported from this module before the
# split, so still importable here.
from ._job import Job, as_message
from ._job import _check_seconds as _check_seconds
from ._job import _Lean as _Lean
from ._rr_handlers import Requester, Responder
from ._transfer import Receiver, Sender
from ._tx_handlers import TxJob, TxReceiver, TxSender
from ._tx_handlers import _error_condition as _error_condition

__all__ = ["Job", "Sender", "Receiver", "Requester", "Responder", "TxJob", "TxSender",
           "TxReceiver", "as_message"]
