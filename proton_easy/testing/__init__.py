"""A real ActiveMQ Artemis for tests, demos and benchmarks, and the pytest plugin's parts.

``ArtemisBroker`` runs Artemis 2.40.0 from the distribution (downloaded once with Maven
into ``~/.cache/proton_easy``; Java 17+ needed) or, where a Docker engine answers, in a
container through testcontainers: the official image, or where no registry gives it, an
equivalent image built from the same distribution (``python -m proton_easy.testing image``).

Example::

    from proton_easy.testing import ArtemisBroker

    with ArtemisBroker(queues=["orders"]) as broker:
        run_my_code(broker.url)          # amqp://admin:<password>@127.0.0.1:<port>
        broker.kill()
        broker.restart()                 # same port, durable messages kept

    with ArtemisBroker(tls=True) as broker:  # + test certificates and two TLS acceptors
        pe.send(broker.tls_url + "/orders", "hi", tls=broker.client_tls())

    with ArtemisBroker(users={"reader": ("pw", ["viewer"])},            # a broker that
                       permissions={"#": {"viewer": ["consume"]}}) as broker:   # says no
        pe.send(broker.url_for("reader") + "/orders", "hi")   # raises pe.Unauthorized

``ArtemisHAPair(mode="shared-store" | "replication")`` runs a primary and a backup
(``.primary``, ``.backup``, ``.urls``; kill the primary and the backup takes over, then
``fail_back()``), ``ArtemisCluster(size=2 | 3)`` a symmetric cluster (``.nodes``), each node
on its own free ports of 127.0.0.1, clustered over loopback::

    with ArtemisHAPair(mode="replication") as pair:
        pair.primary.kill(); pair.wait_active(pair.backup); pair.fail_back()

``ClassicBroker`` (ActiveMQ Classic 5.18.3) and ``BrokerJ`` (Qpid Broker-J 9.2.1) run the
other two Apache brokers the same way (start, stop, kill, restart with data kept, ``url``).

The pytest plugin (``proton_easy.testing.plugin``, loaded automatically) provides the
fixtures ``activemq_classic``, ``qpid_broker_j``, ``artemis``, ``amqp_url``,
``amqp_address``, ``artemis_factory``, ``artemis_module_factory``, ``artemis_tls``,
``artemis_ha``, ``artemis_cluster`` and their factories (``artemis_ha_factory``,
``artemis_ha_module_factory``, ``artemis_cluster_factory``, ``artemis_cluster_module_factory``).
:func:`make_certs` makes test certificates
on its own (also ``python -m proton_easy.testing certs DIR``).
"""

from __future__ import annotations

from ._broker import STARTUPS, ArtemisBroker, ExternalBroker, StartupRecord, resolve_mode
from ._certs import CertificateError, Certs, load_certs, make_certs
from ._cluster import HA_MODES, ArtemisCluster, ArtemisHAPair
from ._distribution import ARTEMIS_VERSION, artemis_home, cache_dir, java_executable
from ._docker import DOCKER_IMAGE, DockerConfig, docker_available, docker_container_config
from ._errors import BrokerStartError, BrokerUnavailable
from ._local import QUICK_START_JAVA_OPTIONS, free_port
from ._others import (
    BROKER_J_VERSION,
    CLASSIC_VERSION,
    BrokerJ,
    ClassicBroker,
    OtherBroker,
    broker_j_home,
    classic_home,
)

__all__ = [
    "ARTEMIS_VERSION",
    "BROKER_J_VERSION",
    "CLASSIC_VERSION",
    "BrokerJ",
    "ClassicBroker",
    "OtherBroker",
    "broker_j_home",
    "classic_home",
    "DOCKER_IMAGE",
    "QUICK_START_JAVA_OPTIONS",
    "STARTUPS",
    "ArtemisBroker",
    "ArtemisCluster",
    "ArtemisHAPair",
    "HA_MODES",
    "BrokerStartError",
    "BrokerUnavailable",
    "CertificateError",
    "Certs",
    "DockerConfig",
    "ExternalBroker",
    "StartupRecord",
    "artemis_home",
    "cache_dir",
    "docker_available",
    "docker_container_config",
    "free_port",
    "java_executable",
    "load_certs",
    "make_certs",
    "resolve_mode",
]
