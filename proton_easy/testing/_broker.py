"""ArtemisBroker: a real ActiveMQ Artemis behind one small API, and ExternalBroker."""

from __future__ import annotations

import logging
import os
import re
import secrets
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union, cast
from urllib.parse import quote, unquote, urlsplit

from ._access import Access, PermissionsArg, SettingsArg, UsersArg
from ._certs import DEFAULT_HOSTS, CertificateError, Certs, openssl_executable
from ._distribution import ARTEMIS_VERSION
from ._docker import DockerBackend, docker_available
from ._errors import BrokerUnavailable
from ._local import LocalBackend

if TYPE_CHECKING:
    from .._tls import TLS

log = logging.getLogger("proton_easy.testing")

MODES = ("auto", "local", "docker")
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def resolve_mode(mode: Optional[str] = None) -> str:
    """Turn ``mode`` into ``"local"`` or ``"docker"``.

    An explicit ``"local"`` or ``"docker"`` wins. ``None`` or ``"auto"`` takes
    ``$PROTON_EASY_BROKER`` when set, else ``"docker"`` when a Docker engine answers,
    else ``"local"``.

    Example::

        resolve_mode("local")   # 'local'
        resolve_mode()          # 'docker' on a machine with Docker running
    """
    if mode not in (None, *MODES):
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if mode in (None, "auto"):
        forced = os.environ.get("PROTON_EASY_BROKER", "").strip().lower()
        if forced and forced != "auto":
            if forced not in ("local", "docker"):
                raise ValueError(
                    f"PROTON_EASY_BROKER must be 'local', 'docker' or 'auto', not {forced!r}"
                )
            return forced
        return "docker" if docker_available() else "local"
    assert mode is not None
    return mode


@dataclass(frozen=True)
class StartupRecord:
    """How long one broker took to become ready (kept for the pytest summary).

    Example::

        for rec in STARTUPS:
            print(rec.mode, rec.port, f"{rec.seconds:.1f} s")
    """

    mode: str
    port: int
    seconds: float
    create_seconds: Optional[float]
    restart: bool = False


#: Every start and restart of this process, in order (the pytest plugin prints them).
STARTUPS: List[StartupRecord] = []


class ArtemisBroker:
    """A real ActiveMQ Artemis 2.40.0 for tests and demos, local or in Docker.

    The local path creates an instance in a temporary folder (``artemis create``), puts the
    AMQP acceptor and the core acceptor on free ports of 127.0.0.1, and runs
    ``artemis run`` as a child process; it is ready when the log says ``AMQ221007``.
    Login is required (``user``/``password``; a random password by default). Addresses
    are auto-created with Artemis's default routing type (MULTICAST); the AMQP acceptor
    maps ``queue://NAME`` to anycast and ``topic://NAME`` to multicast, and ``queues``
    pre-creates anycast queues. Messages are persisted (mapped journal, no fsync: durable
    messages survive :meth:`kill`, not a power cut).

    With ``tls=True`` it also makes test certificates (:attr:`certs`: a CA, a broker
    certificate for ``cert_hosts``, a client certificate) and listens on two TLS acceptors:
    :attr:`tls_url` (server authentication, SASL PLAIN with ``user``/``password``) and
    :attr:`mutual_tls_url` (the client certificate is required and logs in with SASL
    EXTERNAL). :meth:`client_tls` gives the matching :class:`proton_easy.TLS`.

    ``users``, ``permissions`` and ``address_settings`` set up a broker that says no: extra
    logins with roles of their own, what those roles may do on which addresses, and
    addresses that are not created on demand. :meth:`url_for` gives an extra login's URL.

    Example::

        with ArtemisBroker(queues=["orders"]) as broker:
            print(broker.url)                    # amqp://admin:...@127.0.0.1:40123
            print(broker.address_url("orders"))  # ...:40123/orders
            broker.kill()                        # SIGKILL, data kept
            broker.restart()                     # same port, same data

        with ArtemisBroker(tls=True) as broker:
            pe.send(broker.tls_url + "/orders", "hi", tls=broker.client_tls())
            pe.send(broker.mutual_tls_url + "/orders", "hi",
                    tls=broker.client_tls(client_cert=True))

        with ArtemisBroker(users={"reader": ("pw", ["viewer"])},
                           permissions={"#": {"viewer": ["consume", "browse"]}}) as broker:
            pe.send(broker.address_url("orders"), "hi")            # admin: allowed
            pe.send(broker.url_for("reader") + "/orders", "hi")    # pe.Unauthorized
    """

    def __init__(
        self,
        *,
        mode: Optional[str] = None,
        user: str = "admin",
        password: Optional[str] = None,
        port: Optional[int] = None,
        queues: Sequence[str] = (),
        host: str = "127.0.0.1",
        startup_timeout: float = 60.0,
        stop_timeout: float = 30.0,
        java_memory: str = "512M",
        java_options: Sequence[str] = (),
        instance_dir: Union[str, os.PathLike[str], None] = None,
        tls: bool = False,
        allow_anonymous: bool = False,
        cert_hosts: Optional[Sequence[str]] = None,
        users: UsersArg = None,
        permissions: PermissionsArg = None,
        address_settings: SettingsArg = None,
    ) -> None:
        """Describe a broker; nothing starts before :meth:`start`.

        Args:
            mode: ``"local"``, ``"docker"`` or ``"auto"``/``None`` (see :func:`resolve_mode`).
            user: the login to create.
            password: its password; random when ``None``. Never shown by ``repr``.
            port: the AMQP port; a free one when ``None``.
            queues: anycast queues to create up front (names of letters, digits, ``._-``).
            host: the local address to listen on (local mode).
            startup_timeout: seconds to wait for ``AMQ221007`` on each start or restart.
            stop_timeout: seconds a graceful stop may take before SIGKILL.
            java_memory: the broker's heap (``-Xms``/``-Xmx``).
            java_options: extra JVM options for the broker, e.g.
                :data:`QUICK_START_JAVA_OPTIONS` (what the pytest fixtures use).
            instance_dir: keep the instance in this folder (kept after :meth:`stop`) instead
                of a temporary one (removed by :meth:`stop`).
            tls: also listen on two TLS acceptors with generated certificates (needs the
                ``openssl`` command): :attr:`tls_url`, :attr:`mutual_tls_url`, :attr:`certs`.
            allow_anonymous: let clients without credentials in (SASL ANONYMOUS, acting as
                ``user``). A client that sends a password must still send the right one.
            cert_hosts: the names and IP addresses the broker certificate is valid for
                (default ``localhost`` and ``127.0.0.1``, plus ``host`` if it is neither).
            users: extra logins, ``{login: (password, roles)}``; ``roles`` is a role name or
                a list of them. ``user`` itself has role ``amq``: every permission,
                everywhere. An extra login may do only what ``permissions`` grants its roles
                (nothing, by default). Passwords are stored hashed and never shown.
            permissions: ``{address match: {role: permissions}}``, what each role may do on
                the addresses a match covers. A match is an address name or a pattern with
                Artemis's wildcards, ``#`` (any number of words) and ``*`` (one word), words
                being separated by ``.``: ``"#"`` is every address, ``"orders.#"``
                ``orders`` and everything under it. Permissions are Artemis's: ``send``,
                ``consume``, ``browse``, ``createAddress``, ``deleteAddress``,
                ``createDurableQueue``, ``deleteDurableQueue``, ``createNonDurableQueue``,
                ``deleteNonDurableQueue``, ``manage``, ``view``, ``edit``. Artemis uses the
                most specific match only, so a role granted something on ``"orders.#"`` and
                on ``"#"`` needs both listed in the first; role ``amq`` keeps every permission
                on each match. Receiving from or sending to an address that does not exist
                yet also needs ``createAddress`` and ``createDurableQueue`` (auto-creation);
                a requester's reply queue ``createNonDurableQueue``, ``createAddress`` and
                ``consume``.
            address_settings: ``{address match: {setting: value}}``, Artemis address settings
                (``autoCreateQueues``, ``autoCreateAddresses``, ``maxDeliveryAttempts``,
                ``deadLetterAddress`` ...; ``auto-create-queues`` as in broker.xml works
                too); values are bools, numbers or strings. They are merged with those of
                less specific matches. An unknown setting is a ``ValueError``.

        Example::

            broker = ArtemisBroker(mode="local", user="app", password="pw", queues=["jobs"])
            tls_broker = ArtemisBroker(tls=True, cert_hosts=["localhost", "broker.test"])
            strict = ArtemisBroker(
                queues=["jobs"],
                users={"reader": ("pw", "viewer"), "writer": ("pw", ["sender"])},
                permissions={"jobs": {"viewer": ["consume", "browse"], "sender": "send"}},
                address_settings={"#": {"autoCreateQueues": False,
                                        "autoCreateAddresses": False}},
            )
        """
        if not user or any(ch.isspace() for ch in user):
            raise ValueError("user must be non-empty and contain no whitespace")
        if password is not None and (not password or any(ch.isspace() for ch in password)):
            raise ValueError("password must be non-empty and contain no whitespace")
        for name in queues:
            if not isinstance(name, str) or not _QUEUE_NAME.match(name):
                raise ValueError(
                    f"queue name {name!r}: use letters, digits, '_', '.', '-' (not first)"
                )
        if startup_timeout <= 0:
            raise ValueError("startup_timeout must be positive")
        if cert_hosts is None:
            cert_hosts = DEFAULT_HOSTS + ((host,) if host not in (*DEFAULT_HOSTS, "0.0.0.0")
                                          else ())
        cert_hosts = tuple(cert_hosts)
        if tls and (not cert_hosts or not all(isinstance(h, str) and h for h in cert_hosts)):
            raise ValueError(f"cert_hosts must be non-empty host names, not {cert_hosts!r}")
        self._access = Access.build(users=users, permissions=permissions,
                                    address_settings=address_settings, main_user=user)
        self.tls = bool(tls)
        self.allow_anonymous = bool(allow_anonymous)
        self.cert_hosts = cert_hosts
        self.mode = resolve_mode(mode)
        self.startup_timeout = float(startup_timeout)
        self._password = password if password is not None else secrets.token_hex(12)
        self._lock = threading.RLock()
        self.startup_seconds: Optional[float] = None
        self._backend: Any
        if self.mode == "docker":
            self._backend = DockerBackend(
                user=user, password=self._password, port=port, queues=queues,
                java_memory=java_memory, java_options=java_options, stop_timeout=stop_timeout,
                tls=self.tls, allow_anonymous=self.allow_anonymous, cert_hosts=cert_hosts,
                access=self._access,
            )
        else:
            self._backend = LocalBackend(
                user=user, password=self._password, host=host, port=port, queues=queues,
                java_memory=java_memory, java_options=java_options,
                instance_dir=os.fspath(instance_dir) if instance_dir is not None else None,
                stop_timeout=stop_timeout, tls=self.tls,
                allow_anonymous=self.allow_anonymous, cert_hosts=cert_hosts,
                access=self._access,
            )

    # -- connection details ------------------------------------------------------------
    @property
    def user(self) -> str:
        """The login name."""
        return cast("str", self._backend.user)

    @property
    def password(self) -> str:
        """The login password."""
        return self._password

    @property
    def host(self) -> str:
        """The address clients connect to (``127.0.0.1`` locally)."""
        return cast("str", self._backend.host)

    @property
    def port(self) -> int:
        """The AMQP port (known once started)."""
        if self._backend.port is None:
            raise RuntimeError("the broker has no port yet: call start() first")
        return int(self._backend.port)

    @property
    def core_port(self) -> Optional[int]:
        """The CORE/OpenWire acceptor's port, for the ``artemis`` command line tools (local)."""
        return cast("Optional[int]", self._backend.core_port)

    @property
    def url(self) -> str:
        """``amqp://user:password@host:port``, credentials URL-quoted, no path.

        Example::

            BlockingConnection(broker.url)
        """
        return (
            f"amqp://{quote(self.user, safe='')}:{quote(self._password, safe='')}"
            f"@{self.host}:{self.port}"
        )

    def address_url(self, name: str) -> str:
        """Return :attr:`url` + ``"/"`` + ``name``.

        Example::

            pe.send(broker.address_url("orders"), {"id": 1})
        """
        return f"{self.url}/{name}"

    @property
    def users(self) -> Dict[str, Tuple[str, ...]]:
        """Every login and its roles: ``user`` with ``("amq",)``, then the extra ``users``.

        Example::

            broker.users   # {'admin': ('amq',), 'reader': ('viewer',)}
        """
        return {self.user: ("amq",), **self._access.users}

    def url_for(self, user: str) -> str:
        """:attr:`url` with another login's credentials (``user`` or one of ``users``).

        Example::

            pe.receive(broker.url_for("reader") + "/orders")
        """
        if user == self.user:
            return self.url
        try:
            password = self._access.password(user)
        except KeyError:
            raise ValueError(f"no login {user!r} on this broker (it has "
                             f"{', '.join(map(repr, self.users))})") from None
        return f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@{self.host}:{self.port}"

    # -- TLS -----------------------------------------------------------------------------
    def _tls_value(self, value: Any, what: str) -> Any:
        if not self.tls:
            raise RuntimeError(f"{what}: this broker has no TLS acceptors "
                               "(ArtemisBroker(tls=True))")
        if value is None:
            raise RuntimeError(f"{what}: the broker is not started: call start() first")
        return value

    @property
    def tls_port(self) -> int:
        """The port of the ``amqps`` acceptor (server authentication, SASL PLAIN).

        Example::

            f"amqps://localhost:{broker.tls_port}"
        """
        return int(self._tls_value(self._backend.tls_port, "tls_port"))

    @property
    def mutual_tls_port(self) -> int:
        """The port of the ``amqps-mutual`` acceptor (client certificate required).

        Example::

            f"amqps://localhost:{broker.mutual_tls_port}"
        """
        return int(self._tls_value(self._backend.mutual_tls_port, "mutual_tls_port"))

    @property
    def tls_host(self) -> str:
        """The host name to use in ``amqps://`` URLs: one the certificate names.

        ``localhost`` for a broker on the loopback interface, since proton checks the
        certificate's DNS names and not its IP addresses (``verify="peer-name"``).

        Example::

            broker.tls_host   # 'localhost'
        """
        host = self.host
        return "localhost" if host in ("127.0.0.1", "0.0.0.0", "::1", "localhost") else host

    @property
    def tls_url(self) -> str:
        """``amqps://user:password@localhost:tls_port``: TLS with server authentication only;
        the client logs in with SASL PLAIN.

        Example::

            pe.send(broker.tls_url + "/orders", "hi", tls=broker.client_tls())
        """
        return (
            f"amqps://{quote(self.user, safe='')}:{quote(self._password, safe='')}"
            f"@{self.tls_host}:{self.tls_port}"
        )

    @property
    def mutual_tls_url(self) -> str:
        """``amqps://localhost:mutual_tls_port``, no credentials: the client must present a
        certificate signed by :attr:`certs` ``.ca``, and logs in with SASL EXTERNAL as the user
        the certificate maps to (any other SASL mechanism is refused there).

        Example::

            pe.send(broker.mutual_tls_url + "/orders", "hi",
                    tls=broker.client_tls(client_cert=True))
        """
        return f"amqps://{self.tls_host}:{self.mutual_tls_port}"

    @property
    def certs(self) -> Certs:
        """The generated certificates: ``ca``, ``client_cert``, ``client_key``,
        ``client_key_password``, ``broker_cert``, ``broker_keystore`` ... (see
        :class:`~proton_easy.testing.Certs`). They change with every fresh start.

        Example::

            pe.TLS(ca=broker.certs.ca)
        """
        return cast("Certs", self._tls_value(self._backend.certs, "certs"))

    def client_tls(self, client_cert: bool = False, verify: str = "peer-name") -> TLS:
        """A :class:`proton_easy.TLS` trusting this broker's CA; with ``client_cert`` also
        presenting the client certificate (for :attr:`mutual_tls_url`).

        Example::

            pe.receive(broker.tls_url + "/orders", tls=broker.client_tls())
        """
        from .._tls import TLS

        certs = self.certs
        if not client_cert:
            return TLS(ca=str(certs.ca), verify=verify)
        return TLS(ca=str(certs.ca), cert=str(certs.client_cert), key=str(certs.client_key),
                   password=certs.client_key_password, verify=verify)

    @property
    def running(self) -> bool:
        """Whether the broker process (or container) is alive."""
        return cast("bool", self._backend.running)

    @property
    def pid(self) -> Optional[int]:
        """The local broker's process id while it runs (``None`` in Docker)."""
        return cast("Optional[int]", self._backend.pid)

    @property
    def instance_dir(self) -> Optional[Path]:
        """The local instance folder (``etc/broker.xml``, ``data/``, ``log/``)."""
        return cast("Optional[Path]", self._backend.instance_dir)

    @property
    def log_path(self) -> Optional[Path]:
        """The local broker's console log file (``None`` in Docker)."""
        return cast("Optional[Path]", self._backend.log_path)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> ArtemisBroker:
        """Start the broker and wait until it is ready; return ``self``. No-op when running.

        Raises :class:`BrokerStartError` (with the log tail) when it does not get ready in
        ``startup_timeout`` seconds or exits, and :class:`BrokerUnavailable` when Java,
        Maven or Docker is missing (or, with ``tls=True``, the ``openssl`` command).

        Example::

            broker = ArtemisBroker().start()
        """
        with self._lock:
            if self._backend.running:
                return self
            if self.tls:
                try:
                    openssl_executable()
                except CertificateError as exc:
                    raise BrokerUnavailable(f"tls=True: {exc}") from None
            began = time.monotonic()
            self._backend.start(self.startup_timeout)
            self._record(time.monotonic() - began, restart=False)
            return self

    def stop(self) -> None:
        """Stop gracefully (SIGTERM, then SIGKILL after ``stop_timeout``) and clean up.

        A temporary instance folder is removed; a later :meth:`start` begins afresh.
        Safe to call twice, and called at interpreter exit for brokers left running.

        Example::

            broker.stop()
        """
        with self._lock:
            self._backend.stop()

    def kill(self) -> None:
        """Kill the broker abruptly (SIGKILL; container kill in Docker). Data is kept.

        Example::

            broker.kill(); broker.restart()
        """
        with self._lock:
            self._backend.kill()

    def restart(self) -> None:
        """Start again on the same ports with the same data, after :meth:`kill` or while
        running (then it stops gracefully first). Waits until ready.

        Example::

            broker.restart()
        """
        with self._lock:
            began = time.monotonic()
            self._backend.restart(self.startup_timeout)
            self._record(time.monotonic() - began, restart=True)

    def pause(self) -> None:
        """Freeze the broker without killing it: SIGSTOP locally, ``docker pause`` in Docker.
        Connections stay open and get no answers until :meth:`unpause` (or :meth:`kill`).

        Example::

            broker.pause(); ...; broker.unpause()
        """
        with self._lock:
            if self.mode == "docker":
                self._backend.pause()
            elif self.pid is None:
                raise RuntimeError("pause(): the broker is not running")
            else:
                os.kill(self.pid, signal.SIGSTOP)

    def unpause(self) -> None:
        """Let a broker stopped by :meth:`pause` run on (SIGCONT locally, ``docker unpause``).

        Example::

            broker.unpause()
        """
        with self._lock:
            if self.mode == "docker":
                self._backend.unpause()
            elif self.pid is None:
                raise RuntimeError("unpause(): the broker is not running")
            else:
                os.kill(self.pid, signal.SIGCONT)

    def read_instance_file(self, path: str) -> str:
        """The text of a file of the broker instance, ``path`` relative to the instance
        folder (``etc/broker.properties``, ``log/artemis.log``), locally or in the container.

        Example::

            broker.read_instance_file("etc/artemis-roles.properties")
        """
        if self.mode == "docker":
            return bytes(self._backend.read_file(path)).decode("utf-8")
        if self.instance_dir is None:
            raise RuntimeError("read_instance_file(): the broker was never started")
        return (self.instance_dir / path).read_text(encoding="utf-8")

    def log_tail(self, n: int = 50) -> str:
        """Return the last ``n`` lines of the broker's log (console output).

        Example::

            print(broker.log_tail(20))
        """
        return cast("str", self._backend.log_tail(n))

    def _record(self, seconds: float, restart: bool) -> None:
        create = None if restart else self._backend.create_seconds
        self.startup_seconds = seconds
        STARTUPS.append(StartupRecord(self.mode, self.port, seconds, create, restart))
        log.info(
            "Artemis %s (%s) %s on port %s in %.1f s",
            ARTEMIS_VERSION, self.mode, "restarted" if restart else "ready", self.port, seconds,
        )

    def __enter__(self) -> ArtemisBroker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        port = self._backend.port
        where = f"{self.host}:{port}" if port else "not started"
        tls = ", tls=True" if self.tls else ""
        return (
            f"ArtemisBroker(mode={self.mode!r}, user={self.user!r}, at={where!r}{tls}, "
            f"running={self.running})"
        )


class ExternalBroker:
    """A broker that runs elsewhere, described by its URL (``PROTON_EASY_TEST_URL``).

    It has the connection attributes of :class:`ArtemisBroker`; ``start``/``stop`` do
    nothing and ``kill``/``restart`` raise, since this process does not own the broker.

    Example::

        broker = ExternalBroker("amqp://admin:admin@broker.example:5672")
        broker.address_url("orders")   # 'amqp://admin:admin@broker.example:5672/orders'
    """

    mode = "external"

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
            raise ValueError(f"not an amqp:// or amqps:// URL: {_redact(url)}")
        self.scheme = parts.scheme
        self.host: str = parts.hostname
        self.port: int = parts.port or (5671 if parts.scheme == "amqps" else 5672)
        self.user: Optional[str] = unquote(parts.username) if parts.username else None
        self.password: Optional[str] = unquote(parts.password) if parts.password else None
        netloc = parts.netloc.rsplit("@", 1)[-1]
        creds = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        self.url = f"{parts.scheme}://{creds}{netloc}"
        self.running = True
        self.core_port: Optional[int] = None

    def address_url(self, name: str) -> str:
        """Return :attr:`url` + ``"/"`` + ``name``.

        Example::

            ExternalBroker("amqp://h:5672").address_url("q")   # 'amqp://h:5672/q'
        """
        return f"{self.url}/{name}"

    def start(self) -> ExternalBroker:
        """Do nothing (the broker is not ours); return ``self``."""
        return self

    def stop(self) -> None:
        """Do nothing (the broker is not ours)."""

    def kill(self) -> None:
        """Refuse: an external broker cannot be killed from here."""
        raise RuntimeError("an external broker (PROTON_EASY_TEST_URL) cannot be killed")

    def restart(self) -> None:
        """Refuse: an external broker cannot be restarted from here."""
        raise RuntimeError("an external broker (PROTON_EASY_TEST_URL) cannot be restarted")

    def log_tail(self, n: int = 50) -> str:
        """Return ``""``: the log of an external broker is not visible."""
        return ""

    def __repr__(self) -> str:
        return f"ExternalBroker({_redact(self.url)!r})"


def _redact(url: str) -> str:
    """Hide the password of a URL: ``amqp://u:***@h:p``."""
    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)
