"""The exception tree of proton_easy, and the one place where proton's conditions become it.

Every error the library raises on purpose is an :class:`AMQPError`; arguments that are wrong before
any I/O raise the builtin ``ValueError`` or ``TypeError`` instead.

This module imports nothing from the rest of the package (every other module may import it).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Optional

__all__ = [
    "AMQPError",
    "ConnectError",
    "AuthenticationError",
    "TLSError",
    "ConnectionLost",
    "Timeout",
    "LinkError",
    "NotFound",
    "Unauthorized",
    "DeliveryError",
    "Rejected",
    "Released",
    "TransactionError",
    "redact",
]

log = logging.getLogger("proton_easy")

_SECRET_IN_URL = re.compile(r"(amqps?://[^:@/\s]*:)[^@/\s]*@")


def redact(text: str, *secrets: Optional[str]) -> str:
    """Hide passwords in a URL-bearing text: ``amqp://u:pw@h`` becomes ``amqp://u:***@h``.

    The user stays visible (it says who tried); the password never does. Each of ``secrets``
    is also replaced wherever it appears.

    >>> redact("amqp://guest:s3cret@host:5672/q")
    'amqp://guest:***@host:5672/q'
    >>> redact("login with key k3y failed", "k3y")
    'login with key *** failed'
    >>> redact("cannot connect to amqp://admin@h: admin refused", "admin")
    'cannot connect to amqp://admin@h: *** refused'
    """
    text = _SECRET_IN_URL.sub(r"\1***@", text)
    hidden = [secret for secret in secrets if secret]
    if not hidden:
        return text
    # A URL's user stays visible even when it equals a secret (admin:admin): the rule is
    # "show the user, never the password", the same in every message.
    pieces = _URL_USER.split(text)
    for i in range(0, len(pieces), 2):
        for secret in hidden:
            pieces[i] = pieces[i].replace(secret, "***")
    return "".join(pieces)


_URL_USER = re.compile(r"(amqps?://[^:@/\s]*(?=[:@]))")


class AMQPError(Exception):
    """Base class of every error proton_easy raises on purpose.

    ``condition`` is the AMQP error condition name (``"amqp:not-found"``) when the peer sent one,
    ``description`` its text.
    """

    def __init__(
        self,
        message: str,
        *,
        condition: Optional[str] = None,
        description: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.condition = condition
        self.description = description


class ConnectError(AMQPError):
    """The connection could not be established: refused, DNS failure, no route, timed out."""


class AuthenticationError(ConnectError):
    """SASL authentication or login was refused by the broker."""


class TLSError(ConnectError):
    """The TLS handshake or certificate verification failed, the server did not answer the
    handshake (not a TLS port), or the TLS set-up is unusable."""


class ConnectionLost(AMQPError):
    """An established connection dropped and was not recovered.

    ``in_doubt`` counts the deliveries whose outcome is unknown (sent but not confirmed).
    """

    def __init__(self, message: str, *, in_doubt: int = 0, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.in_doubt = in_doubt


class Timeout(AMQPError, TimeoutError):
    """A blocking call did not complete within its timeout (also a builtin ``TimeoutError``)."""


class LinkError(AMQPError):
    """The broker refused or closed a sender or receiver link (bad address, selector, ...)."""


class NotFound(LinkError):
    """The address does not exist and the broker will not create it."""


class Unauthorized(LinkError):
    """The user may not send to or receive from this address."""


class DeliveryError(AMQPError):
    """A sent message was not accepted by the broker."""


class Rejected(DeliveryError):
    """The broker rejected the message (its condition says why)."""


class Released(DeliveryError):
    """The broker released or modified the message without accepting it."""


class TransactionError(AMQPError):
    """A transaction could not be declared or discharged: none of its batch happened."""


_LINK_ERRORS = {
    "amqp:not-found": NotFound,
    "amqp:unauthorized-access": Unauthorized,
    "amqp:resource-deleted": NotFound,
}


def _condition_parts(condition: Any) -> tuple[Optional[str], Optional[str]]:
    if condition is None:
        return None, None
    name = getattr(condition, "name", None)
    description = getattr(condition, "description", None)
    return (str(name) if name is not None else None,
            str(description) if description is not None else None)


def _text(what: str, name: Optional[str], description: Optional[str]) -> str:
    parts = [what]
    if name:
        parts.append(f"[{name}]")
    if description:
        parts.append(redact(description))
    return ": ".join([parts[0], " ".join(parts[1:])]) if len(parts) > 1 else parts[0]


# Artemis refuses a link it may not create an address or queue for with amqp:internal-error
# ("AMQ229032: User: x does not have permission='CREATE_ADDRESS' ..."; AMQ229213 likewise).
_PERMISSION_DENIED = re.compile(r"\bAMQ229(?:032|213)\b|does not have permission")


def link_error(condition: Any, address: Optional[str]) -> LinkError:
    """Translate a link's remote close condition into a :class:`LinkError` subclass.

    >>> from types import SimpleNamespace as Cond
    >>> type(link_error(Cond(name="amqp:not-found", description="no such queue"), "q")).__name__
    'NotFound'
    """
    name, description = _condition_parts(condition)
    cls = _LINK_ERRORS.get(name or "", LinkError)
    if (cls is LinkError and name == "amqp:internal-error"
            and _PERMISSION_DENIED.search(description or "")):
        cls = Unauthorized
    what = f"link to {address!r} refused" if address else "link refused"
    err = cls(_text(what, name, description), condition=name, description=description)
    log.info("%s", err)
    return err


_NO_CLIENT_CERT = "the broker wants a client certificate that it trusts: pe.TLS(cert=, key=)"
_TLS_HINTS = (
    ("certificate verify failed",
     "the broker's certificate is not signed by a trusted CA, that is the one in "
     "pe.TLS(ca=) or else the system's, or it does not name the URL's host; proton matches "
     "DNS names only, not IP addresses, with verify='peer-name'"),
    ("alert bad certificate", _NO_CLIENT_CERT),
    ("alert certificate required", _NO_CLIENT_CERT),
    ("alert unknown ca", "the broker does not trust the CA of the client certificate"),
    ("wrong version number", "the port does not speak TLS: is it a plain AMQP port? "
     "(that takes amqp://)"),
)
_SPEAKS_TLS = "the port speaks TLS: is it a TLS port? (that takes amqps:// and tls=pe.TLS(...))"
# what proton says when a plain (amqp://) connection gets TLS records instead of an AMQP header
_TLS_ANSWERS = ("got: ssl/tls", "['\\x15\\x03", "['\\x16\\x03")


def _mechanism_hint(mechs: Optional[str], url: str) -> str:
    hint = "the broker offers no SASL mechanism allowed here"
    if mechs == "ANONYMOUS":
        return hint + " (ANONYMOUS, since no user was given): give user= and password="
    if mechs == "PLAIN":
        hint += " (PLAIN, since a user was given)"
        if not url.startswith("amqps://"):
            hint += ("; some brokers (Qpid Broker-J by default) offer PLAIN only over TLS: "
                     "try amqps:// and tls=pe.TLS(...)")
        return hint + ("; to log in with a client certificate, give no user, or "
                       "allowed_mechs='EXTERNAL'")
    return hint + (f" ({mechs})" if mechs else "")


_WRONG_LOGIN = ("the broker refused this user name and password: check both (a password "
                "written in the URL must have @ : / # % percent-encoded, or pass it as "
                "password=)")
_HOST_PORT = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/]*@)?([^/]+)")


def _refused_hint(url: str) -> str:
    m = _HOST_PORT.match(url)
    where = f" at {m.group(1)}" if m else ""
    return f"is a broker running{where}?"


def transport_error(condition: Any, url: str, mechs: Optional[str] = None) -> ConnectError:
    """Translate a transport (socket, SASL or TLS) failure into a :class:`ConnectError`.

    ``mechs`` is the SASL mechanisms the client allowed, to explain a failed negotiation.

    >>> from types import SimpleNamespace as Cond
    >>> err = transport_error(Cond(name="proton.pythonio", description="Connection refused"),
    ...                       "amqp://admin@localhost:5672/q")
    >>> str(err)
    'cannot connect to amqp://admin@localhost:5672/q: [proton.pythonio] Connection refused: is a broker running at localhost:5672?'
    """  # noqa: E501
    name, description = _condition_parts(condition)
    text = (description or "").lower()
    cls: type[ConnectError] = ConnectError
    hint = ""
    if text.startswith("ssl failure") or "certificate" in text or "handshake" in text:
        cls = TLSError
        hint = next((h for key, h in _TLS_HINTS if key in text), "")
    elif name == "amqp:unauthorized-access" or "authentication failed" in text:
        cls = AuthenticationError
        if "mech=none" in text:
            hint = _mechanism_hint(mechs, url)
        elif "mech=plain" in text:
            hint = _WRONG_LOGIN
    elif "protocol header got:" in text and any(key in text for key in _TLS_ANSWERS):
        hint = _SPEAKS_TLS
    elif "connection refused" in text:
        hint = _refused_hint(url)
    message = _text(f"cannot connect to {url}", name, description)
    return cls(f"{message}: {hint}" if hint else message,
               condition=name, description=description)


def connection_error(condition: Any, url: str) -> AMQPError:
    """Translate a connection closed by the broker into an error."""
    name, description = _condition_parts(condition)
    if name == "amqp:unauthorized-access":
        return AuthenticationError(_text(f"login refused by {url}", name, description),
                                   condition=name, description=description)
    return ConnectionLost(_text(f"connection to {url} closed by the broker", name, description),
                          condition=name, description=description)


_REJECTED = 0x25  # proton.Delivery.REJECTED: the AMQP outcome codes
_MODIFIED = 0x27  # proton.Delivery.MODIFIED


def delivery_error(state: Any, condition: Any) -> DeliveryError:
    """Translate a non-accepted outcome of a sent message into a :class:`DeliveryError`.

    ``state`` is the outcome code (``proton.Delivery.REJECTED``, ``RELEASED``, ``MODIFIED``).

    >>> type(delivery_error(0x25, None)).__name__
    'Rejected'
    """
    name, description = _condition_parts(condition)
    if state == _REJECTED:
        return Rejected(_text("message rejected", name, description),
                        condition=name, description=description)
    what = "message modified" if state == _MODIFIED else "message released"
    return Released(_text(what, name, description), condition=name, description=description)


def transaction_error(what: str, condition: Any = None) -> TransactionError:
    """Translate a refused declare, discharge or coordinator into a :class:`TransactionError`."""
    name, description = _condition_parts(condition)
    return TransactionError(_text(what, name, description), condition=name,
                            description=description)


# Public classes say where users import them from: ``proton_easy.ConnectError``, not the
# private module they happen to live in (tracebacks, reprs, pickles).
for _cls in (AMQPError, ConnectError, AuthenticationError, TLSError, ConnectionLost, Timeout,
             LinkError, NotFound, Unauthorized, DeliveryError, Rejected, Released,
             TransactionError):
    _cls.__module__ = "proton_easy"
del _cls
