"""A frame trace of proton_easy's own, with secrets taken out.

proton's ``PN_TRACE_FRM=1`` prints every AMQP frame, ``sasl-init`` included, whose PLAIN
``initial-response`` is ``\\0user\\0password`` in clear. This trace uses proton's public
``Transport.tracer`` API instead and redacts SASL initial responses and challenges/responses
(and every password it was told about) before anything is written. Turn it on with
``PROTON_EASY_TRACE=1`` in the environment, ``proton-easy --trace``, or :func:`enable`; frames go
to the ``proton_easy.trace`` logger at INFO (to stderr when logging is not configured).

OpenTelemetry spans and metrics (messages, not frames) are :mod:`proton_easy._otel`'s.

Example::

    PROTON_EASY_TRACE=1 python -c 'import proton_easy as pe; pe.send("amqp://localhost/q", "x")'
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any, Iterable, Optional

log = logging.getLogger("proton_easy.trace")

ENV = "PROTON_EASY_TRACE"
"""The environment variable that turns the trace on (``1``, ``true`` or ``yes``)."""

_forced: Optional[bool] = None
_SASL_SECRET = re.compile(
    r"((?:initial-response|response|challenge)=)(?:b?\"(?:[^\"\\]|\\.)*\"|b'(?:[^'\\]|\\.)*'"
    r"|[^,\]\s]+)")


def enable(on: bool = True) -> None:
    """Turn the trace on (or off) for connections opened from now on, whatever the
    environment says.

    >>> enable(); enabled()
    True
    >>> enable(False); enabled()
    False
    """
    global _forced
    _forced = on
    if on:
        _ensure_output()


def enabled() -> bool:
    """Whether new connections are traced: :func:`enable`'s choice, else ``$PROTON_EASY_TRACE``.

    >>> import os; os.environ.get("PROTON_EASY_TRACE") is None or enabled() in (True, False)
    True
    """
    if _forced is not None:
        return _forced
    return os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes")


def redact_frame(text: str, secrets: Iterable[Optional[str]] = ()) -> str:
    """One trace line with SASL secrets (and each of ``secrets``) replaced by ``<redacted>``.

    >>> redact_frame('FRAME: 0 -> @sasl-init(65) [mechanism=:PLAIN, '
    ...              'initial-response=b"\\\\x00admin\\\\x00pw", hostname="h"]')
    'FRAME: 0 -> @sasl-init(65) [mechanism=:PLAIN, initial-response=<redacted>, hostname="h"]'
    """
    text = _SASL_SECRET.sub(r"\1<redacted>", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def attach(transport: Any, secrets: Iterable[Optional[str]] = ()) -> bool:
    """Trace this proton ``Transport``'s frames if the trace is on; return whether it is.

    >>> from proton import Transport
    >>> enable(False); attach(Transport())
    False
    """
    if not enabled():
        return False
    _ensure_output()
    hidden = tuple(s for s in secrets if s)

    def tracer(_transport: Any, message: str) -> None:
        log.info("%s", redact_frame(message, hidden))

    transport.tracer = tracer
    transport.trace(transport.TRACE_FRM)
    return True


def _ensure_output() -> None:
    """Make the trace visible when the application configured no logging at all."""
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)
    if not log.hasHandlers():
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[proton_easy trace] %(message)s"))
        log.addHandler(handler)
