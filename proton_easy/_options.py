"""URL parsing, connection options and secret redaction: pure logic, no I/O."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union
from urllib.parse import unquote

from ._tls import TLS

DEFAULT_URL = "amqp://localhost:5672"
DEFAULT_TIMEOUT = 10.0
"""Seconds a blocking call waits by default (connecting, sending, a request's reply)."""
DEFAULT_RECONNECT = 60.0
"""Seconds a dropped connection keeps trying to come back before the call fails."""
HANDSHAKE_TIMEOUT = 5.0
"""Seconds a new connection's server has, once the socket is connected, to answer the TLS
handshake (``amqps://``) or the AMQP protocol header: a server that stays silent is taken to
speak another protocol on that port (TLS on a plain port, or the reverse) and the connection
fails then, without waiting for the whole timeout. A real broker answers in milliseconds;
the margin is for a cold JVM's first TLS handshake on a busy machine."""

_URL_RE = re.compile(
    r"^(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?"
    r"(?:(?P<user>[^:@/]*)(?::(?P<password>[^@/]*))?@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^:/@\[\]]*)"
    r"(?::(?P<port>[^/]*))?"
    r"(?:/(?P<path>.*))?$"
)
_SECRET_IN_URL = re.compile(r"(amqps?://[^:@/\s]*:)[^@/\s]*@")


def redact(text: str, *secrets: Optional[str]) -> str:
    """Hide passwords in a URL-bearing text: ``amqp://u:pw@h`` becomes ``amqp://u:***@h``.

    >>> redact("amqp://guest:s3cret@host:5672/q")
    'amqp://guest:***@host:5672/q'
    """
    text = _SECRET_IN_URL.sub(r"\1***@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class ParsedURL:
    """One broker URL taken apart; ``address`` is the path (the node name) or None."""

    scheme: str
    host: str
    port: int
    user: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    address: Optional[str] = None

    @property
    def connect_url(self) -> str:
        """The URL proton connects to: scheme, host and port, no credentials, no path."""
        return f"{self.scheme}://{self.host}:{self.port}"

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        path = f"/{self.address}" if self.address else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}{path}"


def parse_url(url: str) -> ParsedURL:
    """Parse ``[amqp[s]://][user[:password]@]host[:port][/address]``; raise ValueError if malformed.

    The seed's scheme-less form ``localhost:5672/examples`` means ``amqp://``.

    >>> parse_url("amqp://localhost/examples").address
    'examples'
    """
    if not isinstance(url, str):
        raise TypeError(f"URL must be a str, not {type(url).__name__}")
    m = _URL_RE.match(url.strip())
    if not m or not m.group("host"):
        raise ValueError(f"malformed AMQP URL: {redact(url)!r}")
    scheme = (m.group("scheme") or "amqp").lower()
    if scheme not in ("amqp", "amqps"):
        raise ValueError(f"unsupported URL scheme {scheme!r} in {redact(url)!r}: "
                         "use amqp:// or amqps://")
    port_text = m.group("port")
    if port_text in (None, ""):
        port = 5671 if scheme == "amqps" else 5672
    else:
        if port_text == "amqp":
            port = 5672
        elif port_text == "amqps":
            port = 5671
        elif not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"invalid port {port_text!r} in {redact(url)!r}")
        else:
            port = int(port_text)
    user = unquote(m.group("user")) if m.group("user") else None
    password = unquote(m.group("password")) if m.group("password") is not None else None
    address = m.group("path") or None
    return ParsedURL(scheme, m.group("host"), port, user, password, address)


def default_url() -> str:
    """The URL used when none is given: ``$PROTON_EASY_URL``, else ``amqp://localhost:5672``."""
    return os.environ.get("PROTON_EASY_URL") or DEFAULT_URL


def split_address(address: str) -> Tuple[str, Optional[str]]:
    """Split ``queue://x`` / ``topic://x`` / ``x`` into (name, kind); a bare name is a queue.

    >>> split_address("topic://news")
    ('news', 'topic')
    """
    if not isinstance(address, str) or not address:
        raise ValueError(f"address must be a non-empty string, not {address!r}")
    for kind in ("queue", "topic"):
        prefix = kind + "://"
        if address.startswith(prefix):
            name = address[len(prefix):]
            if not name:
                raise ValueError(f"empty {kind} name in address {address!r}")
            return name, kind
    return address, "queue"


@dataclass
class ConnectionOptions:
    """Everything needed to open (and re-open) one connection; the same on every entry point."""

    urls: List[ParsedURL]
    user: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    tls: Optional[TLS] = None
    reconnect: Union[bool, float] = True
    heartbeat: Optional[float] = None
    timeout: float = DEFAULT_TIMEOUT
    allowed_mechs: Optional[str] = None
    container_id: Optional[str] = None

    @classmethod
    def build(
        cls,
        url: Optional[str] = None,
        *,
        user: Optional[str] = None,
        password: Optional[str] = None,
        tls: Optional[TLS] = None,
        reconnect: Union[bool, float] = True,
        heartbeat: Optional[float] = None,
        timeout: Optional[float] = None,
        allowed_mechs: Optional[str] = None,
        urls: Optional[Sequence[str]] = None,
        container_id: Optional[str] = None,
    ) -> ConnectionOptions:
        """Validate every option before any I/O; raise ValueError or TypeError on bad input."""
        raw = [url] if url else []
        raw += list(urls or [])
        if not raw:
            raw = [default_url()]
        parsed = [parse_url(u) for u in raw]
        if tls is not None and not isinstance(tls, TLS):
            raise TypeError(f"tls must be a proton_easy.TLS, not {type(tls).__name__}")
        if tls is not None:
            clear = [str(p) for p in parsed if p.scheme != "amqps"]
            if clear:
                raise ValueError(f"TLS options given but {clear[0]!r} is not amqps://: "
                                 "refusing to connect in clear text")
        timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        _check_seconds("timeout", timeout)
        if heartbeat is not None:
            _check_seconds("heartbeat", heartbeat)
        if not isinstance(reconnect, (bool, int, float)):
            raise TypeError("reconnect must be True, False or a number of seconds")
        if reconnect is not False and reconnect is not True:
            _check_seconds("reconnect", reconnect)
        for p in parsed:
            if p.password is not None and p.user is None:
                raise ValueError(f"a password was given without a user in {str(p)!r}")
        if password is not None and user is None and parsed[0].user is None:
            # proton would quietly log in ANONYMOUS and never send it
            raise ValueError("a password was given without a user: give user= too")
        first = parsed[0]
        user = user if user is not None else first.user
        password = password if password is not None else first.password
        return cls(
            urls=parsed,
            user=user,
            password=password,
            tls=tls,
            reconnect=reconnect,
            heartbeat=heartbeat,
            timeout=float(timeout),
            allowed_mechs=allowed_mechs,
            container_id=container_id,
        )

    @property
    def address(self) -> Optional[str]:
        """The address named in the first URL's path, if any."""
        return self.urls[0].address

    @property
    def display_url(self) -> str:
        """The first URL without its password, for messages and logs."""
        return str(self.urls[0])

    @property
    def display_urls(self) -> str:
        """Every URL without passwords ("a or b"), for an error after trying them all."""
        return " or ".join(dict.fromkeys(str(u) for u in self.urls))

    def credentials(self, url: ParsedURL) -> Dict[str, Any]:
        """SASL settings for one URL: its own ``user:password`` if it names a user, else
        ``user=``/``password=`` (or the first URL's). Given credentials are always used: the
        mechanisms are limited to PLAIN (proton would pick ANONYMOUS or EXTERNAL first)."""
        user, password = (url.user, url.password) if url.user else (self.user, self.password)
        mechs = self.allowed_mechs
        if user is not None:
            mechs = mechs or "PLAIN"
        elif mechs is None and (self.tls is None or self.tls.cert is None):
            # Nothing to authenticate with: EXTERNAL (proton's first choice) needs a client
            # certificate, PLAIN a user.
            mechs = "ANONYMOUS"
        return {"user": user, "password": (password or "") if user is not None else None,
                "allowed_mechs": mechs}

    def connect_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments for ``proton.reactor.Container.connect`` (secrets included).

        They hold the first URL's credentials; :class:`~proton_easy._engine.connection.Connection`
        swaps in each URL's own before proton tries it. No ``sni``: proton then checks each
        broker's certificate against that broker's own host name.
        """
        kwargs: Dict[str, Any] = {
            "urls": [u.connect_url for u in self.urls],
            "reconnect": Backoff(self.reconnect),
            "allow_insecure_mechs": True,
        }
        if self.heartbeat:
            kwargs["heartbeat"] = self.heartbeat
        creds = self.credentials(self.urls[0])
        if creds["user"] is not None:
            kwargs["user"] = creds["user"]
            kwargs["password"] = creds["password"]
        if creds["allowed_mechs"]:
            kwargs["allowed_mechs"] = creds["allowed_mechs"]
        if any(u.scheme == "amqps" for u in self.urls):
            kwargs["ssl_domain"] = (self.tls or TLS()).domain()
        if self.container_id:
            kwargs["container_id"] = self.container_id
        return kwargs


def _check_seconds(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, not {value!r}")


MAX_FRUITLESS_RECONNECTS = 3
"""Reconnections in a row that did no useful work (see :class:`Backoff`) before giving up."""


class Backoff:
    """Reconnect delays that start fresh after a connection that did useful work.

    Before the first connection every URL is tried once (an unreachable broker fails fast). After
    a drop, retries go on with delays 0, 0.1, 0.2 ... up to 2 s, for ``budget`` seconds at most
    (``True`` means 60 s; ``False`` disables reconnecting). ``stop()`` ends all retrying (used
    for failures that a retry cannot mend: TLS, authentication).

    proton calls :meth:`reset` whenever a connection opens. The delays and the deadline start
    afresh only if the connection before did useful work (``useful()`` says so; the owner of
    the connection sets it): a broker that drops every connection right after it opens
    (a selector it cannot take, a drain it crashes on) sees growing delays within one deadline,
    and after :data:`MAX_FRUITLESS_RECONNECTS` such attempts in a row (each reported through
    :meth:`attempt_failed`) the backoff gives up (``fruitless`` is then True). Attempts that
    find no broker at all (connection refused while it restarts) do not count: the budget
    bounds those.

    >>> b = Backoff(True)
    >>> b.reset(); b.next()
    0.0
    """

    def __init__(self, budget: Union[bool, float]) -> None:
        self.budget = DEFAULT_RECONNECT if budget is True else float(budget or 0)
        self.connected = False
        self.stopped = False
        self.fruitless = False
        """True once the backoff gave up because reconnections kept doing nothing."""
        self.useful: Callable[[], bool] = lambda: True
        """Whether the connection that dropped last did useful work (set by its owner)."""
        self._fruitless_opens = 0
        self._deadline = 0.0
        self._delay = 0.0
        self._first = True
        self.on_give_up: Optional[Callable[[], None]] = None

    def reset(self) -> None:
        """Called by proton whenever a connection (re)opens, and at the first attempt: start
        afresh, unless the last connection did nothing useful before it dropped."""
        if self.useful():
            self._fruitless_opens = 0
            self._first = True
            self._delay = 0.0

    def attempt_failed(self) -> None:
        """A connection was made and dropped before it did any useful work."""
        self._fruitless_opens += 1

    def next(self) -> float:
        """The delay before the next attempt; StopIteration gives up."""
        if self._first:
            self._first = False
            self._deadline = time.monotonic() + self.budget
            return 0.0
        if self._fruitless_opens >= MAX_FRUITLESS_RECONNECTS and not self.stopped:
            self.fruitless = True
        if (self.stopped or self.fruitless or not self.connected or not self.budget
                or time.monotonic() >= self._deadline):
            self.stopped = True
            if self.on_give_up is not None:
                self.on_give_up()
            raise StopIteration
        delay = self._delay
        self._delay = min(2.0, (self._delay * 2) or 0.1)
        return delay
