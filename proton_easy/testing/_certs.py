"""Test certificates for TLS brokers: a CA, a broker certificate and a client certificate.

Made with the ``openssl`` command line (present on Debian, Ubuntu, macOS and in most CI
images), so proton_easy needs no crypto package. This module uses the standard library only
and runs as a script too, which is how ``docker/make-certs.sh`` uses it without proton_easy
installed::

    python -m proton_easy.testing certs DIR        # proton_easy installed
    python proton_easy/testing/_certs.py DIR       # from a checkout, stdlib only

Files written to ``DIR``:

==========================  ============================================================
``ca.pem``                  the test CA: what clients trust (``pe.TLS(ca=...)``)
``ca-key.pem``              the CA's private key (kept to sign more certificates)
``broker-cert.pem``         the broker's certificate (subjectAltName: ``hosts``)
``broker-key.pem``          its private key (not encrypted; also inside ``broker.p12``)
``broker.p12``              PKCS12 keystore of the broker (key, certificate, CA chain)
``broker.env``              ``PROTON_EASY_KEYSTORE_PASSWORD=...``: the keystore's password
``client-cert.pem``         a client certificate, ``CN=proton-easy-client``
``client-key.pem``          its private key, encrypted with the client key password
``client-key-password.txt`` that password
==========================  ============================================================

The broker trusts ``ca.pem`` as a PEM trust store (``trustStoreType=PEM``). Passwords are
random, stored in files readable by the owner only, and never printed.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

log = logging.getLogger("proton_easy.testing")

#: The hosts the broker certificate names by default (subjectAltName DNS and IP entries).
DEFAULT_HOSTS: Tuple[str, ...] = ("localhost", "127.0.0.1")
#: The client certificate's subject; the brokers map it to a user for SASL EXTERNAL.
CLIENT_DN = "CN=proton-easy-client"
#: The environment variable holding the broker keystore's password (see ``broker.env``).
KEYSTORE_PASSWORD_ENV = "PROTON_EASY_KEYSTORE_PASSWORD"

_OPENSSL_TIMEOUT = 30.0
_DAYS_CA = 3650
_DAYS_LEAF = 825

_FILES = {
    "ca": "ca.pem",
    "ca_key": "ca-key.pem",
    "broker_cert": "broker-cert.pem",
    "broker_key": "broker-key.pem",
    "broker_keystore": "broker.p12",
    "broker_env": "broker.env",
    "client_cert": "client-cert.pem",
    "client_key": "client-key.pem",
    "client_key_password_file": "client-key-password.txt",
}


class CertificateError(RuntimeError):
    """Certificates could not be made (``openssl`` missing or failing) or read back.

    Example::

        try:
            make_certs("certs")
        except CertificateError as exc:
            print(exc)   # says how to install openssl
    """


@dataclass(frozen=True)
class Certs:
    """The paths (and passwords) of a set of test certificates made by :func:`make_certs`.

    ``repr`` shows the paths, never the passwords.

    Example::

        certs = make_certs("certs")
        tls = pe.TLS(ca=certs.ca, cert=certs.client_cert, key=certs.client_key,
                     password=certs.client_key_password)
    """

    directory: Path
    ca: Path
    ca_key: Path
    broker_cert: Path
    broker_key: Path
    broker_keystore: Path
    broker_env: Path
    client_cert: Path
    client_key: Path
    client_key_password_file: Path
    keystore_password: str = field(repr=False)
    client_key_password: str = field(repr=False)
    hosts: Tuple[str, ...] = DEFAULT_HOSTS
    client_dn: str = CLIENT_DN


def openssl_executable() -> str:
    """Return the ``openssl`` command's path, or raise :class:`CertificateError` saying how
    to install it.

    Example::

        subprocess.run([openssl_executable(), "version"], check=True, timeout=10)
    """
    found = shutil.which(os.environ.get("OPENSSL", "openssl"))
    if not found:
        raise CertificateError(
            "the `openssl` command is needed to make test certificates and was not found "
            "on PATH: install it (Debian/Ubuntu: apt-get install openssl; macOS: it is "
            "preinstalled) or set $OPENSSL to its path"
        )
    return found


def _san(hosts: Sequence[str]) -> str:
    entries = []
    for host in hosts:
        try:
            ipaddress.ip_address(host)
            entries.append(f"IP:{host}")
        except ValueError:
            entries.append(f"DNS:{host}")
    return ", ".join(entries)


def _config(hosts: Sequence[str]) -> str:
    """An openssl configuration of our own: the system's openssl.cnf plays no part."""
    return f"""\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[broker_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = {_san(hosts)}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _run(args: List[str], env: Dict[str, str]) -> None:
    cmd = [openssl_executable(), *args]
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env=env, timeout=_OPENSSL_TIMEOUT, check=False,
        )
    except subprocess.TimeoutExpired:
        raise CertificateError(
            f"`openssl {args[0]}` did not finish in {_OPENSSL_TIMEOUT:g} s") from None
    if proc.returncode != 0:
        raise CertificateError(
            f"`openssl {' '.join(args[:2])}` failed (exit {proc.returncode}):\n{proc.stdout}"
        )


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def make_certs(
    directory: Union[str, os.PathLike[str]],
    *,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    keystore_password: Optional[str] = None,
    client_key_password: Optional[str] = None,
) -> Certs:
    """Make a CA, a broker certificate for ``hosts`` and a client certificate in ``directory``.

    EC P-256 keys (fast to make); the CA is valid for 10 years, the others for 825 days.
    Passwords are random unless given; they reach ``openssl`` through its environment, never
    its command line. Existing files of the same names are replaced.

    Example::

        certs = make_certs(tmp_path, hosts=["localhost", "127.0.0.1", "broker.example"])
        certs.ca, certs.broker_keystore, certs.client_cert
    """
    hosts = tuple(hosts)
    if not hosts or any(not h or any(c in h for c in " ,\n/") for h in hosts):
        raise ValueError(f"hosts must be non-empty host names or IP addresses, not {hosts!r}")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    keystore_password = keystore_password or secrets.token_hex(16)
    client_key_password = client_key_password or secrets.token_hex(16)
    env = dict(os.environ, PE_KEYSTORE_PW=keystore_password, PE_CLIENT_PW=client_key_password)
    env.pop("OPENSSL_CONF", None)
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    # Made in a private (0700) folder next to the destination, then moved into place once
    # the keys are 0600: no moment where another user could read a key.
    with tempfile.TemporaryDirectory(prefix=".certs-", dir=folder) as work:
        paths = {name: Path(work) / file for name, file in _FILES.items()}
        cnf = os.path.join(work, "openssl.cnf")
        Path(cnf).write_text(_config(hosts), encoding="utf-8")
        broker_csr, client_csr = os.path.join(work, "broker.csr"), os.path.join(work, "client.csr")

        def sign(csr: str, ext: str, out: Path) -> None:
            _run(["x509", "-req", "-in", csr, "-CA", str(paths["ca"]),
                  "-CAkey", str(paths["ca_key"]), "-set_serial", str(secrets.randbits(62) + 1),
                  "-days", str(_DAYS_LEAF), "-sha256", "-extfile", cnf, "-extensions", ext,
                  "-out", str(out)], env)

        _run(["req", "-x509", "-config", cnf, "-extensions", "ca_ext", *newkey, "-nodes",
              "-keyout", str(paths["ca_key"]), "-out", str(paths["ca"]), "-sha256",
              "-days", str(_DAYS_CA), "-subj", "/O=proton_easy/CN=proton_easy test CA"], env)
        _run(["req", "-new", "-config", cnf, *newkey, "-nodes",
              "-keyout", str(paths["broker_key"]), "-out", broker_csr,
              "-subj", f"/O=proton_easy/CN={hosts[0]}"], env)
        sign(broker_csr, "broker_ext", paths["broker_cert"])
        _run(["pkcs12", "-export", "-in", str(paths["broker_cert"]),
              "-inkey", str(paths["broker_key"]), "-certfile", str(paths["ca"]),
              "-name", "broker", "-out", str(paths["broker_keystore"]),
              "-passout", "env:PE_KEYSTORE_PW"], env)
        _run(["req", "-new", "-config", cnf, *newkey, "-passout", "env:PE_CLIENT_PW",
              "-keyout", str(paths["client_key"]), "-out", client_csr,
              "-subj", "/" + CLIENT_DN], env)
        sign(client_csr, "client_ext", paths["client_cert"])
        for name in ("ca_key", "broker_key", "client_key", "broker_keystore"):
            os.chmod(paths[name], 0o600)
        for name in ("ca", "broker_cert", "client_cert"):
            os.chmod(paths[name], 0o644)
        _write_secret(paths["broker_env"], f"{KEYSTORE_PASSWORD_ENV}={keystore_password}\n")
        _write_secret(paths["client_key_password_file"], client_key_password + "\n")
        for name, file in _FILES.items():
            os.replace(paths[name], folder / file)
    paths = {name: folder / file for name, file in _FILES.items()}
    log.info("made test certificates for %s in %s", ", ".join(hosts), folder)
    return Certs(directory=folder, keystore_password=keystore_password,
                 client_key_password=client_key_password, hosts=hosts, **paths)  # type: ignore[arg-type]


def load_certs(directory: Union[str, os.PathLike[str]]) -> Certs:
    """Read back a directory written by :func:`make_certs` (passwords from their files).

    Example::

        certs = load_certs("docker/certs")
        pe.TLS(ca=certs.ca)
    """
    folder = Path(directory)
    paths = {name: folder / file for name, file in _FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise CertificateError(f"not a certificate folder made by make_certs: missing {missing}")
    env_line = paths["broker_env"].read_text(encoding="utf-8").strip()
    prefix = KEYSTORE_PASSWORD_ENV + "="
    if not env_line.startswith(prefix):
        raise CertificateError(f"{paths['broker_env']} does not set {KEYSTORE_PASSWORD_ENV}")
    client_pw = paths["client_key_password_file"].read_text(encoding="utf-8").strip()
    return Certs(directory=folder, keystore_password=env_line[len(prefix):],
                 client_key_password=client_pw, hosts=_cert_hosts(paths["broker_cert"]),
                 **paths)  # type: ignore[arg-type]


def _cert_hosts(cert: Path) -> Tuple[str, ...]:
    """The DNS names and IP addresses in a certificate's subjectAltName, in order."""
    proc = subprocess.run(
        [openssl_executable(), "x509", "-in", str(cert), "-noout", "-text"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=_OPENSSL_TIMEOUT,
        check=False,
    )
    lines = proc.stdout.splitlines()
    for i, line in enumerate(lines[:-1]):
        if "Subject Alternative Name" in line:
            entries = [e.strip() for e in lines[i + 1].split(",")]
            return tuple(e.split(":", 1)[1] for e in entries
                         if e.startswith(("DNS:", "IP Address:")))
    raise CertificateError(f"{cert} has no subjectAltName")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``_certs.py DIR [HOST ...]``: make certificates in DIR; print the files, not secrets.

    Example::

        main(["certs", "localhost", "127.0.0.1"])
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        print("usage: make-certs DIR [HOST ...]   (default hosts: localhost 127.0.0.1)",
              file=sys.stderr)
        return 2
    try:
        certs = make_certs(args[0], hosts=args[1:] or DEFAULT_HOSTS)
    except (CertificateError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"test certificates for {', '.join(certs.hosts)} in {certs.directory}:")
    print(f"  CA (trust this):        {certs.ca}")
    print(f"  broker keystore:        {certs.broker_keystore} (password in {certs.broker_env})")
    print(f"  client certificate:     {certs.client_cert} ({certs.client_dn})")
    print(f"  client key:             {certs.client_key} "
          f"(password in {certs.client_key_password_file})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
