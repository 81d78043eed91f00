"""TLS settings: one small value object that becomes a proton SSLDomain (built once per
configuration and kept in a small cache: building one costs tens of milliseconds)."""

from __future__ import annotations

import collections
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Hashable, List, Optional, Tuple, Union

from proton import SSL, SSLDomain, SSLException

from ._errors import TLSError

log = logging.getLogger("proton_easy")

StrPath = Union[str, "os.PathLike[str]"]
"""A file name: a ``str`` or a ``pathlib.Path``."""

_VERIFY = {
    "peer-name": SSLDomain.VERIFY_PEER_NAME,
    "peer": SSLDomain.VERIFY_PEER,
    "none": SSLDomain.ANONYMOUS_PEER,
}


@dataclass(frozen=True)
class TLS:
    """TLS settings for ``amqps://`` connections (TLS options with ``amqp://`` raise ValueError).

    ``ca`` is a PEM file of trusted CAs (default: the system's), ``cert``/``key`` a client
    certificate and its private key (PEM; ``key`` may be left out when ``cert`` holds both),
    ``password`` the key's password, ``verify`` one of ``"peer-name"`` (default: the
    certificate must be trusted and name the URL's host), ``"peer"`` (trusted, any name) or
    ``"none"`` (no verification: only when you mean it). proton matches the host against the
    certificate's DNS names only: connect by name (``amqps://localhost``), not by IP address,
    or use ``verify="peer"``.

    Files are checked when the object is made (FileNotFoundError, PermissionError); an
    unusable file raises :class:`~proton_easy.TLSError` naming it when connecting. The password
    never appears in ``repr``. Connections with the same settings share one proton
    ``SSLDomain`` (see :meth:`domain`); a file replaced on disk is read again. A client
    certificate with no ``user`` authenticates with SASL EXTERNAL where the broker offers
    it; with a ``user``, PLAIN is used unless ``allowed_mechs="EXTERNAL"``.

    >>> tls = TLS(ca="ca.pem", verify="peer")                              # doctest: +SKIP
    >>> tls                                                                # doctest: +SKIP
    TLS(ca='ca.pem', cert=None, key=None, verify='peer')
    >>> client_tls = TLS(ca="ca.pem", cert="me.pem", key="me-key.pem",  # doctest: +SKIP
    ...                  password="kpw")
    >>> pe.send("amqps://localhost:5671/orders", "hi", tls=client_tls)     # doctest: +SKIP
    """

    ca: Optional[StrPath] = None
    cert: Optional[StrPath] = None
    key: Optional[StrPath] = None
    password: Optional[str] = field(default=None, repr=False)
    verify: str = "peer-name"

    def __post_init__(self) -> None:
        if self.verify not in _VERIFY:
            raise ValueError(f"verify must be one of {sorted(_VERIFY)}, not {self.verify!r}")
        if self.key is not None and self.cert is None:
            raise ValueError("a TLS key was given without its certificate (cert=)")
        for name in ("ca", "cert", "key"):
            path = getattr(self, name)
            if path is None:
                continue
            if not isinstance(path, (str, os.PathLike)):
                raise TypeError(f"TLS {name} must be a file path, not {type(path).__name__}")
            path = os.fspath(path)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"TLS {name} file not found: {path}")
            if not os.access(path, os.R_OK):
                raise PermissionError(f"TLS {name} file not readable: {path}")

    def domain(self) -> SSLDomain:
        """The proton client ``SSLDomain`` for these settings, from a small cache shared by
        every connection (thread-safe): built by :meth:`make_domain` the first time, and again
        whenever a file changed (its modification time, size or inode), so that a rotated
        certificate is picked up by the next connection. Do not modify it: it is shared.

        >>> TLS(verify="none").domain() is TLS(verify="none").domain()
        True
        """
        check_ssl_support()
        key = self._cache_key()
        if key is None:  # a file went missing since: make_domain says which
            return self.make_domain()
        with _domains_lock:
            domain = _domains.get(key)
            if domain is not None:
                _domains.move_to_end(key)
                return domain
        start = time.perf_counter()
        domain = self.make_domain()  # outside the lock: tens of ms, and it may raise
        log.debug("TLS settings %r loaded in %.0f ms", self, (time.perf_counter() - start) * 1e3)
        with _domains_lock:
            domain = _domains.setdefault(key, domain)  # another thread may have been first
            _domains.move_to_end(key)
            while len(_domains) > DOMAIN_CACHE_SIZE:
                _domains.popitem(last=False)
        return domain

    def _cache_key(self) -> Optional[Tuple[Hashable, ...]]:
        """What makes two domains the same: mode, verification, each file's path and state,
        and the password as a keyed digest (never the password itself); None if a file
        cannot be examined any more."""
        files: List[Optional[Tuple[str, int, int, int, int]]] = []
        for path in (self.ca, self.cert, self.key):
            if path is None:
                files.append(None)
                continue
            path = os.path.abspath(os.fspath(path))
            try:
                st = os.stat(path)
            except OSError:
                return None
            files.append((path, st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev))
        password = None
        if self.password is not None:
            password = hmac.new(_KEY_SALT, self.password.encode("utf-8"),
                                hashlib.sha256).hexdigest()
        return ("client", self.verify, *files, password)

    def make_domain(self) -> SSLDomain:
        """Build a new proton client ``SSLDomain`` (uncached: connections use :meth:`domain`);
        raise :class:`~proton_easy.TLSError` naming the file that cannot be used (not PEM,
        wrong key password, key not matching).

        >>> TLS(verify="none").make_domain()   # doctest: +ELLIPSIS
        <...SSLDomain object at ...>
        """
        check_ssl_support()
        domain = SSLDomain(SSLDomain.MODE_CLIENT)
        if self.ca:
            try:
                domain.set_trusted_ca_db(os.fspath(self.ca))
            except SSLException:
                raise TLSError(f"TLS ca file {os.fspath(self.ca)} holds no usable PEM "
                               "certificate") from None
        if self.cert:
            cert = os.fspath(self.cert)
            key = os.fspath(self.key) if self.key else cert
            problem = _credentials_problem(cert, key, self.password)
            if problem:
                raise TLSError(problem)
            try:
                # Never None: with no password proton lets OpenSSL prompt on the terminal.
                domain.set_credentials(cert, key, self.password or "")
            except SSLException:
                what = "the password is wrong or " if _is_encrypted(key) else ""
                raise TLSError(f"TLS key file {key} cannot be used with cert file {cert}: "
                               f"{what}the key does not match the certificate") from None
        domain.set_peer_authentication(_VERIFY[self.verify], os.fspath(self.ca) if self.ca
                                       and self.verify != "none" else None)
        return domain


TLS.__module__ = "proton_easy"  # where users import it from

NO_SSL = (
    "this python-qpid-proton was built without OpenSSL (proton.SSL.present() is False), so "
    "amqps:// cannot work. Install the OpenSSL headers (Debian/Ubuntu: apt-get install "
    "libssl-dev; Fedora/RHEL: dnf install openssl-devel; macOS: brew install openssl@3 and "
    "pkg-config), then rebuild it: pip install --force-reinstall --no-cache-dir "
    "--no-binary python-qpid-proton python-qpid-proton")


def check_ssl_support() -> None:
    """Raise :class:`~proton_easy.TLSError` saying how to rebuild proton when it has no TLS.

    >>> check_ssl_support()   # this proton has OpenSSL
    """
    if not SSL.present():
        raise TLSError(NO_SSL)

DOMAIN_CACHE_SIZE = 16
"""How many TLS configurations keep their ``SSLDomain`` (least recently used first out)."""

_domains: collections.OrderedDict[Tuple[Hashable, ...], SSLDomain] = collections.OrderedDict()
_domains_lock = threading.Lock()
_KEY_SALT = secrets.token_bytes(16)  # per process: a cache key reveals nothing of a password


def clear_domain_cache() -> None:
    """Forget every cached ``SSLDomain`` (connections that use one keep it)."""
    with _domains_lock:
        _domains.clear()


def _pem_text(path: str) -> str:
    with open(path, "rb") as handle:
        return handle.read(1 << 20).decode("ascii", "replace")


def _is_encrypted(path: str) -> bool:
    text = _pem_text(path)
    return "ENCRYPTED PRIVATE KEY-----" in text or "Proc-Type: 4,ENCRYPTED" in text


def _credentials_problem(cert: str, key: str, password: Optional[str]) -> Optional[str]:
    """What is wrong with a certificate/key pair that can be told without OpenSSL, if anything."""
    if "-----BEGIN CERTIFICATE-----" not in _pem_text(cert):
        return f"TLS cert file {cert} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    if "PRIVATE KEY-----" not in _pem_text(key):
        return f"TLS key file {key} holds no PEM private key"
    if _is_encrypted(key) and not password:
        return f"TLS key file {key} is encrypted: give its password (TLS(password=...))"
    return None
