"""TLS settings: one small value object that becomes a proton SSLDomain."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from proton import SSLDomain, SSLException

_VERIFY = {
    "peer-name": SSLDomain.VERIFY_PEER_NAME,
    "peer": SSLDomain.VERIFY_PEER,
    "none": SSLDomain.ANONYMOUS_PEER,
}


@dataclass(frozen=True)
class TLS:
    """TLS settings for ``amqps://`` connections.

    ``ca`` is a PEM file of trusted CAs (default: the system's), ``cert``/``key`` a client
    certificate and its private key (PEM), ``password`` the key's password, ``verify`` one of
    ``"peer-name"`` (default: the certificate must be trusted and name the host), ``"peer"``
    (trusted, any name) or ``"none"`` (no verification: only when you mean it).

    >>> tls = TLS(ca="ca.pem", verify="peer")
    >>> tls
    TLS(ca='ca.pem', cert=None, key=None, verify='peer')
    """

    ca: Optional[str] = None
    cert: Optional[str] = None
    key: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    verify: str = "peer-name"

    def __post_init__(self) -> None:
        if self.verify not in _VERIFY:
            raise ValueError(f"verify must be one of {sorted(_VERIFY)}, not {self.verify!r}")
        if (self.cert is None) != (self.key is None) and self.key is not None:
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

    def make_domain(self) -> SSLDomain:
        """Build the proton client ``SSLDomain`` (raises ValueError naming a bad file)."""
        from ._errors import TLSError

        domain = SSLDomain(SSLDomain.MODE_CLIENT)
        try:
            if self.ca:
                domain.set_trusted_ca_db(os.fspath(self.ca))
            if self.cert:
                domain.set_credentials(os.fspath(self.cert), os.fspath(self.key or self.cert),
                                       self.password)
        except SSLException as exc:
            raise TLSError(f"unusable TLS files (ca={self.ca}, cert={self.cert}, "
                           f"key={self.key}): {exc}") from None
        domain.set_peer_authentication(_VERIFY[self.verify], os.fspath(self.ca) if self.ca
                                       and self.verify != "none" else None)
        return domain
