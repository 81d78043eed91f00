"""URL parsing, connection options and secret redaction: pure logic, no I/O."""

from __future__ import annotations

import ipaddress
import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypedDict, Union
from urllib.parse import unquote

from ._errors import redact
from ._tls import TLS

__all__ = ["ConnectionOptions", "ParsedURL", "parse_url", "redact", "split_address"]

DEFAULT_URL = "amqp://localhost:5672"
DEFAULT_TIMEOUT = 10.0
"""Seconds a blocking call waits by default (connecting, sending, a request's reply)."""
CONNECT_FLOOR = 2.0
"""Seconds connecting may take even when a call's own timeout is shorter (a short receive,
"what is there now", must not fail because opening the connection took longer)."""
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


MAX_SECONDS = 1e9
"""The largest timeout accepted (about 31 years): anything longer is a mistake, not a wait."""
MIN_HEARTBEAT = 0.1
"""The smallest heartbeat (idle timeout) accepted, in seconds: shorter ones drop a healthy
connection at the first scheduling hiccup."""
MAX_HEARTBEAT = 4_000_000.0
"""The largest heartbeat accepted, in seconds (AMQP's idle timeout is 32-bit milliseconds)."""
MAX_HOST_LENGTH = 253
"""The longest host name DNS allows."""

_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_AUTHORITY = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*://)?([^/]*)")


def safe_url(url: str) -> str:
    """A URL as it may be shown in an error when it cannot be parsed: the user stays, but
    everything from the first ``:`` after it to the last ``@`` (the password, wherever it ends)
    is hidden, and a very long text is cut.

    >>> safe_url("amqp://admin:p@ss@host:5672/q")
    'amqp://admin:***@host:5672/q'
    """
    text = str(url)
    if "@" in text:
        scheme, sep, rest = text.partition("://")
        if not sep or text.find("://") + 1 != text.find("/"):  # no scheme: "://" in the path
            scheme, sep, rest = "", "", text
        user = rest.split(":", 1)[0] if ":" in rest.rpartition("@")[0] else ""
        if "@" in user or "/" in user:
            user = ""
        userinfo = f"{user}:***@" if user else "***@"
        text = (f"{scheme}://" if sep else "") + userinfo + rest.rpartition("@")[2]
    text = _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
    return text if len(text) <= 120 else text[:100] + f"... ({len(text)} characters)"


def _user_part(url: str) -> str:
    """``scheme://user`` of an ambiguous URL, for its error: what comes before the first ``:``
    of the part after the scheme (never any of the password)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "amqp", url
    return f"{scheme}://{rest.split(':', 1)[0].split('@', 1)[0][:64]}"


def _ambiguous(url: str) -> bool:
    """True when the URL's password seems to hold a raw ``@``, ``/``, ``:`` or ``#``, which a
    parser would read as part of the host (and show in errors, and try to connect to)."""
    rest = url.partition("://")[2] or url
    if "@" not in rest:
        return False
    if "#" in rest.rpartition("@")[0]:
        return True  # a raw "#" starts a URL's fragment: it cannot be before the host
    authority = rest.split("/", 1)[0]
    ats = authority.count("@")
    if ats > 1:
        return True  # which "@" ends the password?
    if ats == 1:
        return False
    # "user:pa/ss@host": the authority ends at that "/", making the host "user" and the port
    # "pa". (An address may hold an "@"; then the authority is a plain host:port.)
    if ":" in authority:
        port = authority.rsplit(":", 1)[1]
        return not (port.isdigit() or port in ("", "amqp", "amqps"))
    return False


def _check_host(host: str, url: str) -> None:
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"invalid IPv6 address {host!r} in {redact(url)!r}") from None
        return
    if len(host) > MAX_HOST_LENGTH:
        raise ValueError(f"host name too long ({len(host)} characters; DNS allows "
                         f"{MAX_HOST_LENGTH}) in {safe_url(url)!r}")
    if "[" in host or "]" in host:
        raise ValueError(f"malformed IPv6 address in {safe_url(url)!r}: write it as "
                         "amqp://[::1]:5672")


def parse_url(url: str) -> ParsedURL:
    """Parse ``[amqp[s]://][user[:password]@]host[:port][/address]``; raise ValueError if malformed.

    The seed's scheme-less form ``localhost:5672/examples`` means ``amqp://``. A password holding
    ``@``, ``/``, ``:`` or ``#`` must be percent-encoded (``urllib.parse.quote(pw, safe="")``),
    or given as ``password=``; an ambiguous URL is refused without showing the password.
    Control characters, spaces, over-long host names and broken IPv6 literals are refused too,
    all before any I/O.

    >>> parse_url("amqp://localhost/examples").address
    'examples'
    >>> parse_url("amqp://app:p%40ss@localhost").password
    'p@ss'
    """
    if not isinstance(url, str):
        raise TypeError(f"URL must be a str, not {type(url).__name__}")
    url = url.strip()
    if _CONTROL.search(url):
        raise ValueError(f"URL holds a control character or a space: {safe_url(url)!r}: "
                         "percent-encode it")
    if _ambiguous(url):
        raise ValueError(
            f"ambiguous URL {_user_part(url)}:***@...: its password seems to hold a raw "
            "'@', '/', ':' or '#'; percent-encode it (urllib.parse.quote(password, safe='')) "
            "or pass it as password=")
    # "://" names a scheme only where it holds the URL's first "/" (the seed's scheme-less
    # "localhost:5672/topic://prices" has one in its path)
    has_scheme = "://" in url and url.find("://") + 1 == url.find("/")
    if has_scheme and not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", url):
        raise ValueError(f"malformed AMQP URL: {safe_url(url)!r}")
    authority = _AUTHORITY.match(url)
    if authority and authority.group(1).count("[") != authority.group(1).count("]"):
        raise ValueError(f"malformed IPv6 address in {safe_url(url)!r}: write it as "
                         "amqp://[::1]:5672")
    m = _URL_RE.match(url)
    if m and m.group("scheme") is None and has_scheme:
        m = None  # the scheme's "//" was read as a path: "amqp://[::zz]" is not host "amqp"
    if not m or not m.group("host"):
        if authority and "[" in authority.group(1):
            raise ValueError(f"malformed IPv6 address in {safe_url(url)!r}: write it as "
                             "amqp://[::1]:5672")
        raise ValueError(f"malformed AMQP URL: {safe_url(url)!r}")
    scheme = (m.group("scheme") or "amqp").lower()
    if scheme not in ("amqp", "amqps"):
        raise ValueError(f"unsupported URL scheme {scheme!r} in {redact(url)!r}: "
                         "use amqp:// or amqps://")
    _check_host(m.group("host"), url)
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
    learn_failover: bool = True

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
        learn_failover: bool = True,
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
            _check_seconds("heartbeat", heartbeat, minimum=MIN_HEARTBEAT,
                           maximum=MAX_HEARTBEAT)
        if not isinstance(learn_failover, bool):
            raise TypeError(f"learn_failover must be True or False, not {learn_failover!r}")
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
        options = cls(
            urls=parsed,
            user=user,
            password=password,
            tls=tls,
            reconnect=reconnect,
            heartbeat=heartbeat,
            timeout=float(timeout),
            allowed_mechs=allowed_mechs,
            container_id=container_id,
            learn_failover=learn_failover,
        )
        for p in parsed:
            creds = options.credentials(p)
            if (creds["user"] is not None and not creds["password"]
                    and (creds["allowed_mechs"] or "").split() == ["PLAIN"]):
                # proton sends PLAIN only with a password: the broker would see no mechanism
                raise ValueError(
                    f"user {creds['user']!r} was given without a password (for {str(p)!r}): "
                    "SASL PLAIN needs one: give password= or put it in the URL; to log in "
                    "with a client certificate, give no user, or allowed_mechs='EXTERNAL'")
        return options

    def secrets(self) -> List[str]:
        """Every password these options hold (for redaction; never for display).

        >>> ConnectionOptions.build("amqp://u:pw@h/q").secrets()
        ['pw']
        """
        found = [self.password] + [u.password for u in self.urls]
        if self.tls is not None:
            found.append(self.tls.password)
        return [s for s in dict.fromkeys(found) if s]

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


def learned_peers(properties: Any, via: ParsedURL) -> List[ParsedURL]:
    """The failover peers a broker names in its Open frame's ``failover-server-list``
    connection property (Artemis, read by Qpid JMS too): a list of maps with
    ``network-host``, ``port`` and ``scheme``. Each peer gets the user and password of
    ``via``, the URL that connection was made with; entries that cannot be used are left
    out: malformed ones, and plain ``amqp`` peers learned over ``amqps`` (no silent step
    down to clear text).

    >>> via = parse_url("amqps://app:pw@broker-a:5671")
    >>> [str(p) for p in learned_peers({"failover-server-list": [
    ...     {"network-host": "broker-b", "port": 5671, "scheme": "amqps"}]}, via)]
    ['amqps://app@broker-b:5671']
    """
    if not isinstance(properties, dict):
        return []
    entries = None
    for key, value in properties.items():
        if str(key) == "failover-server-list":
            entries = value
    if not isinstance(entries, (list, tuple)):
        return []
    peers: List[ParsedURL] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        fields = {str(k): v for k, v in entry.items()}
        host, port = fields.get("network-host") or fields.get("hostname"), fields.get("port")
        scheme = str(fields.get("scheme") or via.scheme).lower()
        if scheme not in ("amqp", "amqps") or not isinstance(host, str) or not host:
            continue
        if scheme == "amqp" and via.scheme == "amqps":
            continue
        try:
            number = int(port) if port is not None else (5671 if scheme == "amqps" else 5672)
        except (TypeError, ValueError):
            continue
        if not 0 < number < 65536 or _CONTROL.search(host) or "/" in host or "@" in host:
            continue
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 address
        peers.append(ParsedURL(scheme, host, number, via.user, via.password))
    return peers


def check_seconds(name: str, value: Any, *, allow_none: bool = False,
                  minimum: float = 0.0, maximum: float = MAX_SECONDS) -> None:
    """Refuse a duration that is not a finite number of seconds in ``(minimum, maximum]``.

    TypeError for a non-number (``True`` included), ValueError for zero, negative, NaN,
    infinite or absurdly large values; ``None`` passes only with ``allow_none``.

    >>> check_seconds("timeout", 5)
    >>> check_seconds("timeout", float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: timeout must be a finite number of seconds, not inf
    """
    kind = type(value)
    if (kind is float or kind is int) and minimum <= value <= maximum and value > 0:
        return  # (the common case; NaN, inf and the rest are told apart below)
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    if not math.isfinite(value):
        hint = " (None waits forever)" if allow_none else ""
        raise ValueError(f"{name} must be a finite number of seconds, not {value!r}{hint}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum:g} s, not {value!r}")
    if value > maximum:
        raise ValueError(f"{name} must be at most {maximum:g} s, not {value!r}")


_check_seconds = check_seconds


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


class CallOptions(TypedDict, total=False):
    """The connection options of a one-line call that has a ``timeout`` of its own (``receive``,
    ``request``, ``serve``: there ``timeout`` bounds the whole call): :class:`ConnectOptions`
    without ``timeout``."""

    user: Optional[str]
    password: Optional[str]
    tls: Optional[TLS]
    reconnect: Union[bool, float]
    heartbeat: Optional[float]
    allowed_mechs: Optional[str]
    urls: Optional[Sequence[str]]
    container_id: Optional[str]
    learn_failover: bool


class ConnectOptions(CallOptions, total=False):
    """The connection options that every entry point takes as keywords (``pe.send``,
    ``pe.Client``, the handler classes ...): one list, so a type checker sees each of them,
    with its type, everywhere.

    >>> opts: ConnectOptions = {"user": "admin", "timeout": 5.0}
    >>> sorted(opts)
    ['timeout', 'user']
    """

    timeout: Optional[float]


CONNECTION_OPTIONS = (*CallOptions.__annotations__, "timeout")
"""The names of :class:`ConnectOptions`, for checking keywords at run time."""
