"""Which loggers say what, and proton's own kept quiet unless asked for.

- ``proton_easy``: the library's lifecycle. INFO: connected to which URL (password never
  shown), reconnected, failing over to the next URL, a link refused; WARNING: a connection
  lost, reconnecting. DEBUG: connection attempts ended and why, TLS settings loaded, links
  attached (with their credit) and detached, credit granted to receivers, a summary of each
  job's settlements when it ends (sent, confirmed, received, in doubt), links that did not
  close cleanly.
- ``proton_easy.trace``: AMQP frames with secrets redacted, only with ``PROTON_EASY_TRACE=1``
  (or ``proton-easy --trace``), at INFO.
- ``proton_easy.cli``: the command line.
- ``proton``: python-qpid-proton's own logger. It dumps every reactor event at DEBUG (more than
  a hundred lines for one ``pe.send``) and logs the connection URL with its password at INFO,
  so proton_easy sets it to WARNING when it is imported, unless a level was already set on it.
  To see it anyway, after importing proton_easy: ``logging.getLogger("proton").setLevel(
  logging.DEBUG)``.

Example::

    import logging, proton_easy as pe
    logging.basicConfig(level=logging.INFO)   # "connected to amqp://admin@localhost:5672/q"
    pe.send("amqp://admin:admin@localhost:5672/q", "hi")
"""

from __future__ import annotations

import logging

LOGGERS = ("proton_easy", "proton_easy.trace", "proton_easy.cli")
"""The loggers proton_easy writes to."""

PROTON_LOGGER = "proton"
"""python-qpid-proton's logger (its event dumps, its connection URL with the password)."""


def quiet_proton() -> None:
    """Set proton's logger to WARNING unless a level was set on it already.

    >>> quiet_proton(); logging.getLogger("proton").level >= logging.WARNING
    True
    """
    logger = logging.getLogger(PROTON_LOGGER)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)


quiet_proton()  # on import of proton_easy
