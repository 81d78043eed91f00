"""Artemis HA pairs and clusters: several ArtemisBrokers that know each other, on loopback.

In Docker mode each node is a container on the host's network, its acceptors on 127.0.0.1
(see :meth:`._docker.DockerBackend._as_node`): the nodes and their clients meet on the
host's loopback exactly as local nodes do.

Each node is an :class:`~proton_easy.testing.ArtemisBroker` on its own free ports of
127.0.0.1, made a cluster member by :class:`NodeSpec`: ``artemis create --clustered``, a
cluster connection with *static* connectors to the other nodes (no UDP discovery: two pairs
on one machine never join each other), a cluster user and password of its own, and an HA
policy. The connector a node announces to its cluster (and so, through Artemis's
``failover-server-list``, to its AMQP clients) is its AMQP acceptor, which then speaks CORE
too (cluster bridges and replication use it).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ._access import SettingsArg
from ._broker import ArtemisBroker, resolve_mode
from ._docker import CONTAINER_SHARED_DIR
from ._errors import BrokerStartError
from ._local import free_port

log = logging.getLogger("proton_easy.testing")

#: The HA modes of :class:`ArtemisHAPair`.
HA_MODES = ("shared-store", "replication")

ACTIVE_LINE = "AMQ221007"
"""A primary (or a cluster node) serves clients: ``Server is now active``."""
BACKUP_ACTIVE_LINE = "AMQ221010"
"""A backup took over: ``Backup Server is now active``."""
SHARED_STORE_STANDBY_LINE = "AMQ221109"
"""A shared-store backup waits for its primary to fail (``Backup Server is started``)."""
REPLICA_SYNCED_LINE = "AMQ221024"
"""A replicating backup holds a full copy of its primary's journal (``synchronized``)."""
BRIDGE_LINE = "AMQ221027"
"""A cluster bridge to another node is connected."""
ANNOUNCED_LINE = "AMQ221031"
"""A backup announced itself to its primary (which from then on names it to its clients)."""
REPLICA_STANDBY_LINES = (REPLICA_SYNCED_LINE, ANNOUNCED_LINE)
"""A replicating backup is ready to take over: synchronized, or announced."""

_SECTION = r"\s*<{0}>.*?</{0}>\s*?\n"


@dataclass
class NodeSpec:
    """What makes one Artemis instance a member of a pair or cluster (used by the backends).

    ``role`` is ``"primary"``, ``"backup"`` or ``"node"`` (a cluster member without HA);
    ``ha`` is ``"shared-store"``, ``"replication"`` or None; ``peers`` the ``(host, port)``
    of the other nodes' announced acceptors; ``data_dir`` the shared store (shared-store),
    as the node sees it, and ``host_data_dir`` the host folder mounted there (Docker).

    Example::

        spec = NodeSpec(role="backup", ha="replication", cluster_name="pair-1a2b",
                        cluster_user="cluster", cluster_password="pw",
                        peers=[("127.0.0.1", 41001)])
        spec.ready_lines()   # ('AMQ221024', 'AMQ221031', 'AMQ221010', 'AMQ221007')
    """

    role: str
    ha: Optional[str]
    cluster_name: str
    cluster_user: str
    cluster_password: str = field(repr=False)
    peers: List[Tuple[str, int]] = field(default_factory=list)
    data_dir: Optional[str] = None
    host_data_dir: Optional[str] = None
    announce: Optional[Tuple[str, int]] = None
    """The host and port announced to the cluster and to clients (default: the acceptor's)."""

    def create_args(self) -> List[str]:
        """Extra ``artemis create`` arguments (the cluster login, the shared store)."""
        args = ["--clustered", "--cluster-user", self.cluster_user,
                "--cluster-password", self.cluster_password]
        if self.ha == "shared-store" and self.data_dir:
            args += ["--data", self.data_dir]
        return args

    def ha_policy_xml(self) -> str:
        """The ``<ha-policy>`` element for this node (empty for a plain cluster node)."""
        if self.ha is None:
            return ""
        kind = "shared-store" if self.ha == "shared-store" else "replication"
        if self.role == "primary":
            inner = ("<failover-on-shutdown>true</failover-on-shutdown>"
                     if self.ha == "shared-store"
                     else "<check-for-active-server>true</check-for-active-server>")
            body = f"<primary>{inner}</primary>"
        else:
            inner = "<allow-failback>true</allow-failback><restart-backup>true</restart-backup>"
            if self.ha == "shared-store":
                inner += "<failover-on-shutdown>true</failover-on-shutdown>"
            body = f"<backup>{inner}</backup>"
        return f"<ha-policy><{kind}>{body}</{kind}></ha-policy>"

    def broker_xml(self, text: str, host: str, port: int) -> str:
        """``broker.xml`` as ``artemis create`` wrote it, made this node's."""
        ahost, aport = self.announce or (host, port)
        # the AMQP acceptor is the announced one: cluster bridges and replication speak CORE
        text = re.sub(r'(<acceptor name="amqp">[^<]*?protocols=)AMQP;', r"\1AMQP,CORE;", text,
                      count=1)
        connectors = [f'<connector name="self">tcp://{ahost}:{aport}</connector>']
        connectors += [f'<connector name="peer{i}">tcp://{h}:{p}</connector>'
                       for i, (h, p) in enumerate(self.peers)]
        block = "<connectors>" + "".join(connectors) + "</connectors>"
        text, n = re.subn(r"<connectors>.*?</connectors>", block, text, count=1,
                          flags=re.DOTALL)
        if not n:
            text = text.replace("<acceptors>", block + "\n      <acceptors>", 1)
        for name in ("broadcast-groups", "discovery-groups", "cluster-connections",
                     "ha-policy"):
            text = re.sub(_SECTION.format(name), "\n", text, flags=re.DOTALL)
        statics = "".join(f"<connector-ref>peer{i}</connector-ref>"
                          for i in range(len(self.peers)))
        cluster = (
            f'<cluster-connections><cluster-connection name="{self.cluster_name}">'
            "<connector-ref>self</connector-ref>"
            "<retry-interval>200</retry-interval><reconnect-attempts>-1</reconnect-attempts>"
            "<message-load-balancing>ON_DEMAND</message-load-balancing><max-hops>1</max-hops>"
            f"<static-connectors>{statics}</static-connectors>"
            "</cluster-connection></cluster-connections>"
        )
        extra = cluster + self.ha_policy_xml()
        return text.replace("<security-settings>", extra + "\n      <security-settings>", 1)

    def ready_lines(self) -> Tuple[str, ...]:
        """The log lines that end a start or restart of this node."""
        if self.role == "backup":
            standby = ((SHARED_STORE_STANDBY_LINE,) if self.ha == "shared-store"
                       else REPLICA_STANDBY_LINES)
            return (*standby, BACKUP_ACTIVE_LINE, ACTIVE_LINE)
        return (ACTIVE_LINE,)


def _node_log(broker: ArtemisBroker) -> str:
    backend: Any = broker._backend
    if broker.mode == "docker":
        return str(backend._logs())
    path = broker.log_path
    if path is None:
        return ""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


class _Nodes:
    """What a pair and a cluster share: making, starting, stopping and watching nodes."""

    def __init__(self, *, broker_mode: Optional[str], user: str, password: Optional[str],
                 queues: Sequence[str], startup_timeout: float, java_memory: str,
                 java_options: Sequence[str], address_settings: SettingsArg) -> None:
        self.broker_mode = resolve_mode(broker_mode)
        self._user = user
        self._password = password if password is not None else secrets.token_hex(12)
        self._queues = tuple(queues)
        self._startup_timeout = float(startup_timeout)
        self._java_memory = java_memory
        self._java_options = tuple(java_options)
        self._address_settings = address_settings
        self._cluster_name = f"pe-{secrets.token_hex(4)}"
        self._cluster_password = secrets.token_hex(12)
        self._shared: Optional[str] = None
        self._nodes: List[ArtemisBroker] = []

    def _make(self, specs: Sequence[Callable[[List[Tuple[str, int]]], NodeSpec]],
              settings: SettingsArg = None) -> List[ArtemisBroker]:
        ports = [free_port() for _ in specs]
        while len(set(ports)) < len(ports):
            ports = [free_port() for _ in specs]
        nodes = []
        for i, make_spec in enumerate(specs):
            peers = [("127.0.0.1", p) for j, p in enumerate(ports) if j != i]
            broker = ArtemisBroker(
                mode=self.broker_mode, user=self._user, password=self._password,
                port=ports[i], queues=self._queues, startup_timeout=self._startup_timeout,
                java_memory=self._java_memory, java_options=self._java_options,
                address_settings=settings if settings is not None else self._address_settings,
            )
            spec = make_spec(peers)
            broker._backend.node = spec
            nodes.append(broker)
        return nodes

    def _spec(self, role: str, ha: Optional[str]
              ) -> Callable[[List[Tuple[str, int]]], NodeSpec]:
        data_dir, host_data_dir = self._shared, None
        if self._shared is not None and self.broker_mode == "docker":
            # one host folder, mounted at the same path in both nodes' containers
            data_dir, host_data_dir = CONTAINER_SHARED_DIR, self._shared

        def make(peers: List[Tuple[str, int]]) -> NodeSpec:
            return NodeSpec(role=role, ha=ha, cluster_name=self._cluster_name,
                            cluster_user="cluster", cluster_password=self._cluster_password,
                            peers=peers, data_dir=data_dir, host_data_dir=host_data_dir)
        return make

    @staticmethod
    def mark(node: ArtemisBroker) -> int:
        """Where the node's log ends now (for :meth:`wait_for`)."""
        return len(_node_log(node))

    @staticmethod
    def wait_for(node: ArtemisBroker, lines: Sequence[str], since: int, timeout: float,
                 count: int = 1) -> str:
        """Wait until ``node``'s log, from ``since`` on, holds one of ``lines`` (``count``
        times); return the line seen."""
        deadline = time.monotonic() + timeout
        while True:
            text = _node_log(node)[since:]
            for line in lines:
                if text.count(line) >= count:
                    return line
            if time.monotonic() > deadline:
                raise BrokerStartError(f"{node!r} did not log {' or '.join(lines)} within "
                                       f"{timeout:g} s", node.log_tail(40))
            time.sleep(0.1)

    def _stop_all(self, order: Sequence[ArtemisBroker]) -> None:
        errors: List[BaseException] = []
        for node in order:
            try:
                node.stop()
            except Exception as exc:  # noqa: BLE001 - stop the others too
                errors.append(exc)
        if self._shared is not None:
            shutil.rmtree(self._shared, ignore_errors=True)
            self._shared = None
        if errors:
            raise errors[0]

    @property
    def user(self) -> str:
        """The login of every node."""
        return self._user

    @property
    def password(self) -> str:
        """The password of every node (never shown by ``repr``)."""
        return self._password


class ArtemisHAPair(_Nodes):
    """A primary and a backup Artemis (2.40.0): kill the primary and the backup takes over.

    ``mode="shared-store"``: both nodes use one journal folder (the backup holds the lock
    once the primary is gone); ``mode="replication"``: the backup keeps a copy of the
    primary's journal over the network. Each node listens on its own free ports of
    127.0.0.1, and the two form a cluster over loopback (static connectors, no multicast
    discovery), in local mode or in Docker (``broker_mode``). The backup fails back
    (``allow-failback``): once the primary runs again (a replicating primary first
    synchronizes from the active backup), the backup hands back and waits again. Clients
    connected to the primary learn the backup's address from its Open frame
    (``failover-server-list``); :attr:`urls` lists both.

    :attr:`primary` and :attr:`backup` are :class:`ArtemisBroker` objects: ``kill()``,
    ``restart()``, ``url``, ``address_url()``, ``log_tail()``. :meth:`wait_active` waits
    for a node to serve, :meth:`fail_back` brings the pair back to its start.

    Example::

        with ArtemisHAPair(mode="replication", queues=["orders"]) as pair:
            pe.send(pair.primary.address_url("orders"), "hi")
            pair.primary.kill()                 # SIGKILL
            pair.wait_active(pair.backup)       # AMQ221010
            pe.receive(pair.backup.address_url("orders"))   # [Message('hi')]
            pair.fail_back()                    # primary active again, backup waiting
    """

    def __init__(
        self,
        mode: str = "shared-store",
        *,
        broker_mode: Optional[str] = None,
        user: str = "admin",
        password: Optional[str] = None,
        queues: Sequence[str] = (),
        startup_timeout: float = 90.0,
        java_memory: str = "512M",
        java_options: Sequence[str] = (),
        address_settings: SettingsArg = None,
    ) -> None:
        """Describe the pair; nothing starts before :meth:`start`.

        Args:
            mode: ``"shared-store"`` or ``"replication"``.
            broker_mode: where the nodes run: ``"local"``, ``"docker"`` or
                ``None``/``"auto"`` (as :func:`resolve_mode` says). In Docker each node is a
                container on the host's network with every acceptor bound to 127.0.0.1 on
                free ports of the host, so that what the nodes announce to each other and to
                clients (``127.0.0.1:port``) is reachable from the host, as in local mode;
                a shared store is a host folder mounted in both containers.
            user, password: the login on both nodes (a random password by default).
            queues: anycast queues to create up front on both nodes.
            startup_timeout: seconds each node may take to get ready (on each (re)start).
            java_memory, java_options, address_settings: as for :class:`ArtemisBroker`.

        Example::

            pair = ArtemisHAPair(mode="shared-store", broker_mode="local")
        """
        if mode not in HA_MODES:
            raise ValueError(f"mode must be one of {HA_MODES}, not {mode!r}")
        super().__init__(broker_mode=broker_mode, user=user, password=password, queues=queues,
                         startup_timeout=startup_timeout, java_memory=java_memory,
                         java_options=java_options, address_settings=address_settings)
        self.mode = mode
        if mode == "shared-store":
            self._shared = tempfile.mkdtemp(prefix="proton-easy-shared-store-")
            if self.broker_mode == "docker":
                os.chmod(self._shared, 0o777)  # noqa: S103 - the containers' user writes it
        self._settled: Dict[int, int] = {}
        self.primary, self.backup = self._make(
            [self._spec("primary", mode), self._spec("backup", mode)])

    def _standby_lines(self) -> Tuple[str, ...]:
        # announced: the primary knows its backup, and names it in its Open frames
        return (ANNOUNCED_LINE,)

    @property
    def urls(self) -> List[str]:
        """``[primary.url, backup.url]``: the failover list for ``urls=``.

        Example::

            pe.Client(urls=pair.urls)
        """
        return [self.primary.url, self.backup.url]

    @property
    def url(self) -> str:
        """The primary's URL (a client given only this learns the backup from the broker)."""
        return self.primary.url

    def start(self) -> ArtemisHAPair:
        """Start the primary, then the backup; return once the backup stands by and has
        announced itself to the primary (``AMQ221031``; a replica is synchronized by then).

        Example::

            pair = ArtemisHAPair().start()
        """
        try:
            self.primary.start()
            since = self.mark(self.backup)
            self.backup.start()
            self.wait_for(self.backup, self._standby_lines(), since, self._startup_timeout)
        except BaseException:
            self.stop()
            raise
        self._settle()
        return self

    def _settle(self) -> None:
        # from here on, a takeover line in a node's log is news
        self._settled = {id(node): self.mark(node) for node in (self.primary, self.backup)}

    def wait_active(self, node: ArtemisBroker, timeout: float = 60.0) -> None:
        """Wait until ``node`` serves clients: the backup after its primary died (``AMQ221010``,
        or ``AMQ221007`` for a replica), or the primary after it came back.

        Example::

            pair.primary.kill(); pair.wait_active(pair.backup)
        """
        # (a replicating backup that takes over says AMQ221007, as a primary does)
        lines = (BACKUP_ACTIVE_LINE, ACTIVE_LINE) if node is self.backup else (ACTIVE_LINE,)
        self.wait_for(node, lines, self._settled.get(id(node), 0), timeout)

    def fail_back(self, timeout: float = 120.0) -> None:
        """Bring the pair back to how it started: the primary running and active, the backup
        running and standing by. Restarts whichever node is down (the primary first, which
        takes over from an active backup: fail-back).

        Example::

            pair.primary.kill(); ...; pair.fail_back()
        """
        since = self.mark(self.backup)
        if not self.primary.running:
            self.primary.restart()  # ready (AMQ221007) once the backup handed back
        if not self.backup.running:
            since = self.mark(self.backup)
            self.backup.restart()
        self.wait_for(self.backup, self._standby_lines(), since, timeout)
        self._settle()

    def stop(self) -> None:
        """Stop the backup, then the primary, and remove their data.

        Example::

            pair.stop()
        """
        self._stop_all([self.backup, self.primary])

    def __enter__(self) -> ArtemisHAPair:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (f"ArtemisHAPair(mode={self.mode!r}, broker_mode={self.broker_mode!r}, "
                f"primary={self.primary!r}, backup={self.backup!r})")


def _last_start(node: ArtemisBroker) -> int:
    text = _node_log(node)
    return max(0, text.rfind("=== proton_easy: artemis run"))


class ArtemisCluster(_Nodes):
    """A symmetric cluster of 2 or 3 Artemis nodes: messages are load-balanced between the
    nodes where a queue has consumers (``ON_DEMAND``) and redistributed to a node whose
    consumers wait while another has none (redistribution delay 0).

    Every node is an :class:`ArtemisBroker` (:attr:`nodes`) on its own free ports of
    127.0.0.1; the nodes connect to each other over loopback (static connectors). A queue
    exists on every node that has been used for it: a producer on node 0 and a consumer on
    node 1 of the same queue exchange messages through the cluster.

    Example::

        with ArtemisCluster(size=3) as cluster:
            pe.send_many(cluster.nodes[0].address_url("jobs"), range(100))
            got = pe.receive(cluster.nodes[1].address_url("jobs"), count=100)
            cluster.nodes[2].kill(); cluster.nodes[2].restart()
    """

    def __init__(
        self,
        size: int = 2,
        *,
        broker_mode: Optional[str] = None,
        user: str = "admin",
        password: Optional[str] = None,
        queues: Sequence[str] = (),
        startup_timeout: float = 90.0,
        java_memory: str = "512M",
        java_options: Sequence[str] = (),
        address_settings: SettingsArg = None,
    ) -> None:
        """Describe the cluster; nothing starts before :meth:`start`.

        Args:
            size: 2 or 3 nodes.
            broker_mode, user, password, queues, startup_timeout, java_memory,
                java_options: as for :class:`ArtemisHAPair`.
            address_settings: as for :class:`ArtemisBroker`; ``redistributionDelay`` is 0
                on every address unless given.

        Example::

            cluster = ArtemisCluster(size=3, broker_mode="local")
        """
        if isinstance(size, bool) or not isinstance(size, int) or not 2 <= size <= 3:
            raise ValueError(f"size must be 2 or 3, not {size!r}")
        settings = dict(address_settings or {})
        every = dict(settings.get("#", {}))
        every.setdefault("redistributionDelay", 0)
        settings["#"] = every
        super().__init__(broker_mode=broker_mode, user=user, password=password, queues=queues,
                         startup_timeout=startup_timeout, java_memory=java_memory,
                         java_options=java_options, address_settings=settings)
        self.size = size
        self.nodes: List[ArtemisBroker] = self._make(
            [self._spec("node", None) for _ in range(size)], settings)

    @property
    def urls(self) -> List[str]:
        """Every node's URL, in order.

        Example::

            pe.Client(urls=cluster.urls)
        """
        return [node.url for node in self.nodes]

    def start(self) -> ArtemisCluster:
        """Start every node; return once each has its cluster bridges to all the others.

        Example::

            cluster = ArtemisCluster().start()
        """
        try:
            marks = [self.mark(node) for node in self.nodes]
            for node in self.nodes:
                node.start()
            for node, since in zip(self.nodes, marks):
                self.wait_for(node, (BRIDGE_LINE,), since, self._startup_timeout,
                              count=self.size - 1)
        except BaseException:
            self.stop()
            raise
        return self

    def restart_node(self, index: int, timeout: float = 60.0) -> None:
        """Restart node ``index`` (after a kill, or while running) and wait until it is
        connected to the others again.

        Example::

            cluster.nodes[1].kill(); cluster.restart_node(1)
        """
        node = self.nodes[index]
        since = self.mark(node)
        node.restart()
        self.wait_for(node, (BRIDGE_LINE,), since, timeout, count=self.size - 1)

    def stop(self) -> None:
        """Stop every node.

        Example::

            cluster.stop()
        """
        self._stop_all(list(reversed(self.nodes)))

    def __enter__(self) -> ArtemisCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (f"ArtemisCluster(size={self.size}, broker_mode={self.broker_mode!r}, "
                f"nodes={self.nodes!r})")


__all__ = ["HA_MODES", "ArtemisCluster", "ArtemisHAPair", "NodeSpec"]
