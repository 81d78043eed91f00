"""The broker side of TLS and SASL: Artemis acceptors and JAAS login modules, as file texts.

One rendering serves the three ways proton_easy runs Artemis: the local distribution, the
Docker image through testcontainers, and ``docker/docker-compose.yml`` (whose
``docker/etc-override`` files are these texts; a test keeps them in sync).

Two TLS acceptors are added next to the plain AMQP one:

- ``amqps``: server authentication only (the client checks the broker's certificate).
  SASL ``PLAIN`` against the broker's users (and ``ANONYMOUS`` if the broker allows it).
- ``amqps-mutual``: the client must present a certificate signed by the test CA
  (``needClientAuth``), and authenticates with SASL ``EXTERNAL``: the certificate's subject
  is mapped to a user by ``cert-users.properties``. PLAIN is not offered there: with a
  certificate login module in play a trusted certificate would let any password through,
  and a client that gives a password must be able to rely on it being checked.

The keystore password is never written into these files: Artemis reads it from the
environment variable ``PROTON_EASY_KEYSTORE_PASSWORD`` (``${...}`` in broker.properties).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

from ._access import Access
from ._certs import CLIENT_DN, KEYSTORE_PASSWORD_ENV

_NETTY = "org.apache.activemq.artemis.core.remoting.impl.netty.NettyAcceptorFactory"
_JAAS = "org.apache.activemq.artemis.spi.core.security.jaas"

#: The JAAS domain of the mutual-TLS acceptor (certificate login only).
CERT_DOMAIN = "proton-easy-cert"
#: The user the client certificate logs in as (role ``amq``: may send and consume).
CERT_USER = "proton-easy-client"
#: The role ``artemis create`` gives its user; it may do everything.
ROLE = "amq"

#: Ports of the TLS acceptors inside the Docker container (and in docker-compose.yml).
CONTAINER_TLS_PORT = 5671
CONTAINER_MUTUAL_TLS_PORT = 5673
#: Where the certificates are inside the container.
CONTAINER_CERTS_DIR = "/var/lib/artemis-instance/certs"
CONTAINER_ETC_OVERRIDE = "/var/lib/artemis-instance/etc-override"


@dataclass(frozen=True)
class TLSAcceptors:
    """Where the two TLS acceptors listen and which files they use.

    Example::

        acc = TLSAcceptors(host="127.0.0.1", tls_port=5671, mutual_tls_port=5673,
                           keystore="/certs/broker.p12", truststore="/certs/ca.pem")
        broker_properties(acc)
    """

    host: str
    tls_port: int
    mutual_tls_port: int
    keystore: str
    truststore: str
    allow_anonymous: bool = False


def _escape(value: str) -> str:
    """Escape a value for a Java .properties file (backslashes and leading blanks)."""
    value = value.replace("\\", "\\\\")
    return "\\" + value if value[:1] in (" ", "\t") else value


def broker_properties(acc: TLSAcceptors, *, plain_prefixes: bool = False) -> str:
    """The ``etc/broker.properties`` text adding the ``amqps`` and ``amqps-mutual`` acceptors.

    ``plain_prefixes`` also gives the stock ``amqp`` acceptor the ``queue://`` and
    ``topic://`` prefixes (for the Docker image, whose broker.xml proton_easy does not write).

    Example::

        (instance / "etc" / "broker.properties").write_text(broker_properties(acc))
    """
    lines = [
        "# Made by proton_easy.testing: TLS acceptors next to the plain AMQP one.",
        f"# The keystore password comes from the environment (${{{KEYSTORE_PASSWORD_ENV}}}).",
    ]
    common = {
        "protocols": "AMQP",
        "sslEnabled": "true",
        "keyStorePath": acc.keystore,
        "keyStoreType": "PKCS12",
        "keyStorePassword": f"${{{KEYSTORE_PASSWORD_ENV}}}",
        "anycastPrefix": "queue://",
        "multicastPrefix": "topic://",
    }
    plain_sasl = "PLAIN,ANONYMOUS" if acc.allow_anonymous else "PLAIN"
    acceptors = {
        "amqps": dict(common, port=str(acc.tls_port), saslMechanisms=plain_sasl),
        "amqps-mutual": dict(
            common, port=str(acc.mutual_tls_port), needClientAuth="true",
            trustStorePath=acc.truststore, trustStoreType="PEM", saslMechanisms="EXTERNAL",
            securityDomain=CERT_DOMAIN,
        ),
    }
    for name, params in acceptors.items():
        prefix = f"acceptorConfigurations.{name}"
        lines.append(f"{prefix}.factoryClassName={_NETTY}")
        lines.append(f"{prefix}.params.host={_escape(acc.host)}")
        for key in sorted(params):
            lines.append(f"{prefix}.params.{key}={_escape(params[key])}")
    if plain_prefixes:
        lines.append("acceptorConfigurations.amqp.params.anycastPrefix=queue://")
        lines.append("acceptorConfigurations.amqp.params.multicastPrefix=topic://")
    return "\n".join(lines) + "\n"


def login_config(*, user: str, allow_anonymous: bool = False) -> str:
    """The ``etc/login.config`` text: passwords for the ``activemq`` domain, certificates for
    the mutual-TLS acceptor's domain.

    With ``allow_anonymous`` a client that sends no credentials logs in as ``user``
    (GuestLoginModule, as ``artemis create --allow-anonymous`` does), but with
    ``credentialsInvalidate=true``: a client that sends a password must send the right one.
    (Stock Artemis lets a wrong password through as the guest.)

    Example::

        (instance / "etc" / "login.config").write_text(login_config(user="admin"))
    """
    flag = "sufficient" if allow_anonymous else "required"
    text = (
        "/* Made by proton_easy.testing. */\n"
        "activemq {\n"
        f"   {_JAAS}.PropertiesLoginModule {flag}\n"
        "       debug=false\n"
        "       reload=true\n"
        '       org.apache.activemq.jaas.properties.user="artemis-users.properties"\n'
        '       org.apache.activemq.jaas.properties.role="artemis-roles.properties";\n'
    )
    if allow_anonymous:
        text += (
            f"   {_JAAS}.GuestLoginModule sufficient\n"
            "       debug=false\n"
            "       credentialsInvalidate=true\n"
            f'       org.apache.activemq.jaas.guest.user="{user}"\n'
            f'       org.apache.activemq.jaas.guest.role="{ROLE}";\n'
        )
    text += (
        "};\n\n"
        f"{CERT_DOMAIN} {{\n"
        f"   {_JAAS}.TextFileCertificateLoginModule required\n"
        "       debug=false\n"
        "       reload=true\n"
        '       org.apache.activemq.jaas.textfiledn.user="cert-users.properties"\n'
        '       org.apache.activemq.jaas.textfiledn.role="cert-roles.properties";\n'
        "};\n"
    )
    return text


def etc_files(acc: TLSAcceptors, *, user: str, plain_prefixes: bool = False) -> Dict[str, str]:
    """Every file to put into the instance's ``etc`` folder (name -> text) for TLS.

    Example::

        for name, text in etc_files(acc, user="admin").items():
            (instance / "etc" / name).write_text(text)
    """
    return {
        "broker.properties": broker_properties(acc, plain_prefixes=plain_prefixes),
        "login.config": login_config(user=user, allow_anonymous=acc.allow_anonymous),
        "cert-users.properties": f"{CERT_USER}={CLIENT_DN}\n",
        "cert-roles.properties": f"{ROLE}={CERT_USER}\n",
    }


def instance_files(
    *,
    user: str,
    password: str,
    acceptors: Optional[TLSAcceptors] = None,
    allow_anonymous: bool = False,
    access: Optional[Access] = None,
    plain_prefixes: bool = False,
) -> Dict[str, str]:
    """Every file proton_easy writes into a broker's ``etc`` folder (name -> text): the one
    place that decides them, for the local distribution and for the Docker image alike.

    ``acceptors`` adds the TLS acceptors and the certificate login (:func:`etc_files`);
    ``allow_anonymous`` the guest login; ``access`` (:class:`._access.Access`) its
    permissions and address settings to ``broker.properties``, and, with extra users,
    ``artemis-users.properties`` (``user`` and the extra logins, passwords hashed) and
    ``artemis-roles.properties``. Empty when there is nothing to change: ``artemis create``'s
    files stay.

    Example::

        files = instance_files(user="admin", password="pw",
                               access=Access.build(users={"reader": ("pw2", ["viewer"])}))
        sorted(files)   # ['artemis-roles.properties', 'artemis-users.properties']
    """
    files: Dict[str, str] = {}
    if acceptors is not None:
        files.update(etc_files(acceptors, user=user, plain_prefixes=plain_prefixes))
    elif allow_anonymous:
        files["login.config"] = login_config(user=user, allow_anonymous=True)
    if access:
        extra = access.broker_properties()
        if extra:
            head = files.get("broker.properties", "")
            files["broker.properties"] = head + (
                "# Made by proton_easy.testing: permissions and address settings.\n" + extra)
        if access.users:
            files["artemis-users.properties"] = access.users_properties(user, password)
            files["artemis-roles.properties"] = access.roles_properties(user)
    return files


def container_acceptors(*, allow_anonymous: bool = False) -> TLSAcceptors:
    """The TLS acceptors inside the Docker image: all interfaces, ports 5671 and 5673,
    certificates in :data:`CONTAINER_CERTS_DIR`.

    Example::

        instance_files(user="admin", password="pw", acceptors=container_acceptors())
    """
    return TLSAcceptors(
        host="0.0.0.0", tls_port=CONTAINER_TLS_PORT,
        mutual_tls_port=CONTAINER_MUTUAL_TLS_PORT,
        keystore=f"{CONTAINER_CERTS_DIR}/broker.p12", truststore=f"{CONTAINER_CERTS_DIR}/ca.pem",
        allow_anonymous=allow_anonymous,
    )


def container_etc_files(*, user: str, allow_anonymous: bool = False) -> Dict[str, str]:
    """The ``etc-override`` files for the Docker image (certificates in
    :data:`CONTAINER_CERTS_DIR`, acceptors on all interfaces, ports 5671 and 5673).

    ``docker/etc-override`` in the repository is ``container_etc_files(user="admin")``.

    Example::

        files = container_etc_files(user="admin")
        files["broker.properties"]
    """
    acc = container_acceptors(allow_anonymous=allow_anonymous)
    return etc_files(acc, user=user, plain_prefixes=True)
