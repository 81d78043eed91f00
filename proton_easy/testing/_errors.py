"""The two exceptions of :mod:`proton_easy.testing`."""

from __future__ import annotations


class BrokerStartError(RuntimeError):
    """The broker did not start (or restart); the message ends with the broker's log tail.

    ``log_tail`` holds the same tail on its own (an empty string when no broker process
    ever ran).

    Example::

        try:
            broker.start()
        except BrokerStartError as exc:
            print(exc.log_tail)
    """

    def __init__(self, message: str, log_tail: str = "") -> None:
        self.log_tail = log_tail
        if log_tail:
            message = f"{message}\n--- broker log (last lines) ---\n{log_tail.rstrip()}"
        super().__init__(message)


class BrokerUnavailable(BrokerStartError):
    """Something the broker needs is missing: Java, Maven, Docker, or a valid ARTEMIS_HOME.

    The message says what to install or set. It is a :class:`BrokerStartError`, so one
    ``except BrokerStartError`` catches both.

    Example::

        try:
            ArtemisBroker(mode="docker").start()
        except BrokerUnavailable as exc:
            print("cannot run a broker here:", exc)
    """
