"""Running Artemis in Docker through testcontainers: the official image, or our own build.

Containers publish their ports on 127.0.0.1 only, and clients connect to 127.0.0.1 (never to
a bridge or gateway address, whatever testcontainers guesses from ``/.dockerenv``). The nodes
of an HA pair or a cluster run on the host's network instead, every acceptor bound to
127.0.0.1 on free ports of the host: what they announce to each other and to clients is
then reachable from the host, and nothing listens beyond loopback. Every
container carries the labels :data:`OWNER_LABEL` (host, process id and process start time of
the Python process that made it) and :data:`SESSION_LABEL`; the containers of processes that
are gone (a killed pytest) are removed when the next process starts its first container, and
a process removes its own at exit. testcontainers' reaper (Ryuk) is used only when its image
is in the engine or can be pulled; otherwise it is disabled and this clean-up is all there is.
"""

from __future__ import annotations

import atexit
import importlib
import io
import logging
import os
import shutil
import socket
import tarfile
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ._access import Access
from ._certs import KEYSTORE_PASSWORD_ENV, Certs, make_certs
from ._errors import BrokerStartError, BrokerUnavailable
from ._image import OFFICIAL_IMAGE, docker_client, ensure_image, image_present, try_pull
from ._local import READY_LINE, free_port, instance_broker_xml
from ._tls_config import (
    CONTAINER_CERTS_DIR,
    CONTAINER_ETC_OVERRIDE,
    CONTAINER_MUTUAL_TLS_PORT,
    CONTAINER_TLS_PORT,
    container_acceptors,
    instance_files,
)

log = logging.getLogger("proton_easy.testing")

#: The official image, on the same version as the local distribution.
DOCKER_IMAGE = OFFICIAL_IMAGE
#: The broker instance inside the container (as in the official image).
CONTAINER_INSTANCE_DIR = "/var/lib/artemis-instance"
#: The only address container ports are published on, and the one clients connect to.
PUBLISH_HOST = "127.0.0.1"
#: ``<host name>/<pid>/<process start time>`` of the process that made the container.
OWNER_LABEL = "org.proton-easy.owner"
#: A random id per Python process (a pytest session), on each of its containers.
SESSION_LABEL = "org.proton-easy.session"
#: Where a shared-store pair's host folder is mounted in both nodes' containers.
CONTAINER_SHARED_DIR = "/var/lib/artemis-shared"
#: The image's user and group id (the official image's too): owner of the files copied in.
CONTAINER_UID = 1001

# A cluster or HA node's container starts twice. The first start creates the instance and
# exits (`artemis version`); then its broker.xml is rewritten (loopback acceptors on the
# node's ports, the cluster connection, the HA policy) and marked, and every later start
# runs the broker.
_NODE_MARK = "proton_easy: cluster node"
_NODE_ENTRYPOINT = [
    "/bin/bash", "-c",
    f"if grep -qs '{_NODE_MARK}' etc/broker.xml; then exec /docker-run.sh run; fi; "
    "exec /docker-run.sh version",
]

# The image runs `artemis create $EXTRA_ARGS` on first start; these match the local path.
_CREATE_ARGS = (
    "--no-web", "--no-fsync", "--mapped", "--no-autotune",
    "--no-hornetq-acceptor", "--no-mqtt-acceptor", "--no-stomp-acceptor",
)
# broker.xml cannot be edited before the image creates it, so the AMQP acceptor's prefixes
# are set through Artemis's `brokerconfig.` system properties (JAVA_ARGS_APPEND is appended
# to the java command line by the instance's bin/artemis).
_PREFIX_PROPERTIES = (
    "-Dbrokerconfig.acceptorConfigurations.amqp.params.anycastPrefix=queue://",
    "-Dbrokerconfig.acceptorConfigurations.amqp.params.multicastPrefix=topic://",
)


@dataclass(frozen=True)
class DockerConfig:
    """Everything needed to run the Artemis container: image, environment, ports, readiness.

    Example::

        cfg = docker_container_config(user="admin", password="s3cret")
        cfg.image            # 'apache/activemq-artemis:2.40.0'
        cfg.amqp_port        # 5672 inside the container
    """

    image: str
    env: Dict[str, str] = field(default_factory=dict)
    amqp_port: int = 5672
    ports: Tuple[int, ...] = (5672,)
    ready_log_line: str = READY_LINE
    #: container path -> text, copied in before the first start (``etc-override`` files)
    files: Dict[str, str] = field(default_factory=dict)
    tls: bool = False

    def __repr__(self) -> str:  # keep the passwords out of logs and tracebacks
        secret = ("ARTEMIS_PASSWORD", KEYSTORE_PASSWORD_ENV)
        env = {k: ("***" if k in secret else v) for k, v in self.env.items()}
        return (f"DockerConfig(image={self.image!r}, env={env!r}, ports={self.ports!r}, "
                f"files={sorted(self.files)!r})")


def docker_container_config(
    *,
    user: str,
    password: str,
    queues: Sequence[str] = (),
    java_memory: str = "512M",
    java_options: Sequence[str] = (),
    image: str = DOCKER_IMAGE,
    tls: bool = False,
    allow_anonymous: bool = False,
    access: Optional[Access] = None,
) -> DockerConfig:
    """Describe the Artemis container; pure, so it can be checked without a Docker engine.

    The image reads ``ARTEMIS_USER``, ``ARTEMIS_PASSWORD`` and ``ANONYMOUS_LOGIN`` and
    passes ``EXTRA_ARGS`` to ``artemis create``; ``JAVA_ARGS_APPEND`` reaches the broker's
    java command line. Readiness is the log line ``AMQ221007``. With ``tls``,
    ``allow_anonymous`` or ``access`` (extra users, permissions, address settings) the
    ``etc-override`` files of :func:`._tls_config.instance_files` are copied into the
    container, which copies them over its ``etc`` after ``artemis create``; the TLS
    acceptors listen on 5671 (server authentication) and 5673 (client certificates).

    Example::

        cfg = docker_container_config(user="admin", password="s3cret", queues=["orders"])
        assert "--queues orders" in cfg.env["EXTRA_ARGS"]
    """
    extra = list(_CREATE_ARGS) + ["--java-memory", java_memory]
    if queues:
        extra += ["--queues", ",".join(queues)]
    env = {
        "ARTEMIS_USER": user,
        "ARTEMIS_PASSWORD": password,
        "ANONYMOUS_LOGIN": "true" if allow_anonymous else "false",
        "EXTRA_ARGS": " ".join(extra),
        "JAVA_ARGS_APPEND": " ".join((*_PREFIX_PROPERTIES, *java_options)),
    }
    texts = instance_files(
        user=user, password=password,
        acceptors=container_acceptors(allow_anonymous=allow_anonymous) if tls else None,
        allow_anonymous=allow_anonymous, access=access, plain_prefixes=True,
    )
    files = {f"{CONTAINER_ETC_OVERRIDE}/{name}": text for name, text in texts.items()}
    ports: Tuple[int, ...] = (5672,)
    if tls:
        ports = (5672, CONTAINER_TLS_PORT, CONTAINER_MUTUAL_TLS_PORT)
    return DockerConfig(image=image, env=env, ports=ports, files=files, tls=tls)


_docker_answer: Optional[bool] = None


def docker_available(refresh: bool = False) -> bool:
    """Tell whether a Docker engine answers (through the ``docker`` package testcontainers uses).

    The answer is cached for the process; ``refresh=True`` asks again.

    Example::

        mode = "docker" if docker_available() else "local"
    """
    global _docker_answer
    if _docker_answer is not None and not refresh:
        return _docker_answer
    try:
        docker: Any = importlib.import_module("docker")  # installed with testcontainers
    except ImportError:
        _docker_answer = False
        return False
    try:
        client = docker.from_env(timeout=5)
        try:
            _docker_answer = bool(client.ping())
        finally:
            client.close()
    except Exception as exc:  # any failure means "no engine here"
        log.debug("no Docker engine: %s", exc)
        _docker_answer = False
    return _docker_answer


def _process_start_time(pid: int) -> str:
    """The start time of process ``pid`` in clock ticks since boot (Linux), else ``""``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()
    except (OSError, IndexError):
        return ""


def _owner_id(pid: Optional[int] = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}/{pid}/{_process_start_time(pid)}"


#: This process's session id, on every container it makes (``org.proton-easy.session``).
SESSION_ID = uuid.uuid4().hex
_OWNER = _owner_id()
_cleanup_lock = threading.Lock()
_stale_checked = False
_atexit_registered = False


def container_labels() -> Dict[str, str]:
    """The labels on every container this process makes.

    Example::

        container_labels()   # {'org.proton-easy.owner': 'box/4242/98765', ...}
    """
    return {OWNER_LABEL: _OWNER, SESSION_LABEL: SESSION_ID}


def _owner_gone(owner: str) -> bool:
    """Whether the process named by an owner label is gone (on this host; another host's
    containers are never touched)."""
    host, _, rest = owner.partition("/")
    pid_text, _, started = rest.partition("/")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        pass
    return bool(started) and _process_start_time(pid) != started  # the pid was reused


def _remove_containers(client: Any, containers: List[Any], why: str) -> int:
    removed = 0
    for container in containers:
        try:
            container.remove(force=True, v=True)
            removed += 1
            log.info("removed %s Artemis container %s", why, container.short_id)
        except Exception as exc:  # already gone, or the engine is going away
            log.debug("could not remove container %s: %s", container.short_id, exc)
    return removed


def remove_stale_containers(client: Any = None) -> int:
    """Remove the containers (and their volumes) of processes on this host that are gone,
    e.g. a pytest killed before it could clean up; return how many were removed.

    Called by the first container start of each process; safe to call any time.

    Example::

        remove_stale_containers()   # 0 when every earlier run cleaned up
    """
    client = client if client is not None else docker_client(timeout=60)
    stale = [c for c in client.containers.list(all=True, filters={"label": OWNER_LABEL})
             if _owner_gone(c.labels.get(OWNER_LABEL, ""))]
    return _remove_containers(client, stale, "stale")


def remove_own_containers(client: Any = None) -> int:
    """Remove every container this process made that is still there; return how many.

    Registered with :mod:`atexit` by the first container start.

    Example::

        remove_own_containers()
    """
    client = client if client is not None else docker_client(timeout=60)
    mine = client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={_OWNER}"})
    return _remove_containers(client, mine, "left-over")


def _at_exit() -> None:
    try:
        remove_own_containers()
    except Exception as exc:  # the engine may be gone at exit
        log.debug("clean-up at exit: %s", exc)


def _before_first_container(client: Any) -> None:
    """Once per process: remove stale containers, register the clean-up at exit, and decide
    on testcontainers' reaper."""
    global _stale_checked, _atexit_registered
    with _cleanup_lock:
        if _stale_checked:
            return
        _stale_checked = True
        try:
            remove_stale_containers(client)
        except Exception as exc:
            log.warning("could not look for stale Artemis containers: %s", exc)
        if not _atexit_registered:
            atexit.register(_at_exit)
            _atexit_registered = True
        configure_reaper(client)


def configure_reaper(client: Any) -> bool:
    """Disable testcontainers' reaper (Ryuk) when its image is neither in the engine nor
    pullable, unless ``TESTCONTAINERS_RYUK_DISABLED`` says what to do; return whether it is
    used. Our own clean-up (labels, stale removal, removal at exit) runs either way.

    Example::

        configure_reaper(docker_client())   # False where no registry is reachable
    """
    from testcontainers.core.config import testcontainers_config as tc_config

    if os.environ.get("TESTCONTAINERS_RYUK_DISABLED", "").strip():
        return not tc_config.ryuk_disabled
    if tc_config.ryuk_disabled:
        return False
    if image_present(client, tc_config.ryuk_image) or try_pull(client, tc_config.ryuk_image):
        return True
    log.info("testcontainers' reaper image %s is not available: reaper disabled, "
             "proton_easy removes its containers itself", tc_config.ryuk_image)
    tc_config.ryuk_disabled = True
    return False


def publish(container: Any, container_port: int, host_port: int) -> None:
    """Publish ``container_port`` on ``127.0.0.1:host_port`` only (testcontainers'
    ``with_bind_ports`` binds every interface).

    Example::

        publish(DockerContainer(image), 5672, free_port())
    """
    container.ports[f"{container_port}/tcp"] = (PUBLISH_HOST, host_port)


class DockerBackend:
    """One Artemis container. ``kill``/``restart`` are container kill/stop and start;
    ``pause``/``unpause`` freeze and thaw it (the Docker form of SIGSTOP/SIGCONT)."""

    kind = "docker"

    def __init__(
        self,
        *,
        user: str,
        password: str,
        port: Optional[int],
        queues: Sequence[str],
        java_memory: str,
        java_options: Sequence[str],
        stop_timeout: float,
        image: Optional[str] = None,
        tls: bool = False,
        allow_anonymous: bool = False,
        cert_hosts: Sequence[str] = (),
        access: Optional[Access] = None,
    ) -> None:
        self.user = user
        self._password = password
        self.host = PUBLISH_HOST
        self.port: Optional[int] = port
        self.core_port: Optional[int] = None
        self.tls_port: Optional[int] = None
        self.mutual_tls_port: Optional[int] = None
        self.certs: Optional[Certs] = None
        self._cert_hosts = tuple(cert_hosts)
        self._certs_dir: Optional[str] = None
        self._fixed_port = port is not None
        self._image = image  # None: ensure_image() at the first start
        self._config = docker_container_config(
            user=user, password=password, queues=queues, java_memory=java_memory,
            java_options=java_options, image=image or DOCKER_IMAGE, tls=tls,
            allow_anonymous=allow_anonymous, access=access,
        )
        self._stop_timeout = stop_timeout
        self._container: Any = None
        self.create_seconds: Optional[float] = None
        self.instance_dir = None
        self.log_path = None
        self.node: Any = None
        """A cluster or HA node's part (``_cluster.NodeSpec``): the container then runs on
        the host's network with its acceptors on 127.0.0.1 only (see :meth:`_as_node`)."""

    def _status(self) -> str:
        if self._container is None:
            return "removed"
        try:
            wrapped = self._container.get_wrapped_container()
            wrapped.reload()
            return str(wrapped.status)
        except Exception:
            return "removed"

    @property
    def running(self) -> bool:
        # a paused broker is alive, like a local one stopped with SIGSTOP
        return self._status() in ("running", "paused")

    @property
    def pid(self) -> Optional[int]:
        return None

    @property
    def image(self) -> Optional[str]:
        """The image the container runs (known once started, unless given)."""
        return self._image

    def _logs(self) -> str:
        if self._container is None:
            return ""
        try:
            if self.node is not None:  # one stream in time order: offsets into it hold
                both = self._container.get_wrapped_container().logs()
                return bytes(both).decode("utf-8", "replace")
            out, err = self._container.get_logs()
        except Exception as exc:  # container gone
            return f"(no container logs: {exc})"
        return (out or b"").decode("utf-8", "replace") + (err or b"").decode("utf-8", "replace")

    def _ready_lines(self) -> Tuple[str, ...]:
        return tuple(self.node.ready_lines()) if self.node is not None else (READY_LINE,)

    def _ready_counts(self) -> Dict[str, int]:
        text = self._logs()
        return {line: text.count(line) for line in self._ready_lines()}

    def log_tail(self, n: int) -> str:
        # an image's entry script might echo the `artemis create` arguments
        text = self._logs().replace(self._password, "***")
        if self.certs is not None:
            text = text.replace(self.certs.keystore_password, "***")
        lines = text.splitlines()
        return "\n".join(lines[-n:]) if n > 0 else ""

    def start(self, timeout: float) -> None:
        if self._container is not None:
            return
        try:
            from testcontainers.core.container import DockerContainer
        except ImportError:
            raise BrokerUnavailable(
                "mode='docker' needs testcontainers: pip install 'testcontainers>=4' "
                "(or pip install 'proton_easy[test]')"
            ) from None
        if not docker_available():
            raise BrokerUnavailable(
                "mode='docker' needs a running Docker engine, and none answers here: "
                "install and start Docker (or set DOCKER_HOST), or use mode='local' "
                "(Java 17+ and Maven)"
            )
        client = docker_client()
        try:
            _before_first_container(client)
            if self._image is None:
                self._image = ensure_image(client=client)
        finally:
            client.close()
        cfg = self._config
        if self.port is None:
            self.port = free_port()
        container = DockerContainer(self._image)
        for key, value in cfg.env.items():
            container.with_env(key, value)
        if self.node is not None:
            self._as_node(container)
        else:
            publish(container, cfg.amqp_port, self.port)
            # the default bridge, said explicitly: testcontainers would otherwise look for
            # the network of "the container we run in" wherever /.dockerenv exists
            container.with_kwargs(labels=container_labels(), network="bridge")
        if cfg.files and not hasattr(container, "with_copy_into_container"):
            raise BrokerUnavailable(
                "tls, allow_anonymous, users, permissions or address_settings in Docker mode "
                "needs a newer testcontainers "
                "(DockerContainer.with_copy_into_container): pip install -U testcontainers"
            )
        for path, text in cfg.files.items():
            container.with_copy_into_container(text.encode("utf-8"), path)
        if cfg.tls:
            try:
                self._add_tls(container)
            except BaseException:
                self._remove()  # removes the certificates again
                raise
        began = time.monotonic()
        try:
            container.start()
        except Exception as exc:
            self._container = container
            tail = self.log_tail(40)
            self._remove()
            raise BrokerStartError(
                f"could not start the {self._image} container: {exc}", tail
            ) from exc
        self._container = container
        self.host = PUBLISH_HOST  # never the address testcontainers would guess
        try:
            baseline = {line: 0 for line in self._ready_lines()}
            if self.node is not None:
                self._configure_node(timeout - (time.monotonic() - began))
                baseline = self._ready_counts()
                container.get_wrapped_container().start()
            self._wait_ready(baseline, timeout - (time.monotonic() - began))
        except BaseException:
            self._remove()
            raise

    def _as_node(self, container: Any) -> None:
        """Make ``container`` a cluster or HA node: on the host's network (what a node
        announces to the others and, in ``failover-server-list``, to clients is then
        ``127.0.0.1:port`` of this host, as in local mode) with every acceptor bound to
        127.0.0.1 on free ports of the host; the shared store mounted, if any."""
        node = self.node
        core = free_port()
        while core == self.port:
            core = free_port()
        self.core_port = core
        container.with_env("EXTRA_ARGS", " ".join(
            (self._config.env["EXTRA_ARGS"], *node.create_args())))
        container.with_kwargs(labels=container_labels(), network_mode="host",
                              entrypoint=list(_NODE_ENTRYPOINT))
        if node.host_data_dir is not None and node.data_dir is not None:
            container.with_volume_mapping(node.host_data_dir, node.data_dir, "rw")

    def _configure_node(self, timeout: float) -> None:
        """The node container's first start created the instance: rewrite its broker.xml."""
        wrapped = self._container.get_wrapped_container()
        began = time.monotonic()
        try:
            status = wrapped.wait(timeout=max(timeout, 1.0))
        except Exception as exc:
            raise BrokerStartError(f"the Artemis instance was not created within "
                                   f"{timeout:g} s: {exc}", self.log_tail(40)) from None
        self.create_seconds = time.monotonic() - began
        if status.get("StatusCode") != 0:
            raise BrokerStartError("`artemis create` failed in the container",
                                   self.log_tail(40))
        assert self.port is not None and self.core_port is not None
        text = self.read_file("etc/broker.xml").decode("utf-8")
        text = instance_broker_xml(text, PUBLISH_HOST, self.port, self.core_port, self.node)
        self._write_file("etc/broker.xml", f"{text.rstrip()}\n<!-- {_NODE_MARK} -->\n")

    def _write_file(self, path: str, text: str) -> None:
        """Write ``path`` (relative to the instance folder) into the container, as its user."""
        data = text.encode("utf-8")
        full = PurePosixPath(CONTAINER_INSTANCE_DIR) / path.lstrip("/")
        info = tarfile.TarInfo(full.name)
        info.size, info.mode, info.uid, info.gid = len(data), 0o644, CONTAINER_UID, CONTAINER_UID
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            tar.addfile(info, io.BytesIO(data))
        if not self._container.get_wrapped_container().put_archive(str(full.parent),
                                                                   archive.getvalue()):
            raise BrokerStartError(f"could not write {path} into the container")

    def _add_tls(self, container: Any) -> None:
        """Make certificates, copy the broker's into the container, publish the TLS ports."""
        self._certs_dir = tempfile.mkdtemp(prefix="proton-easy-certs-")
        self.certs = make_certs(self._certs_dir, hosts=self._cert_hosts)
        container.with_env(KEYSTORE_PASSWORD_ENV, self.certs.keystore_password)
        for local, name in ((self.certs.broker_keystore, "broker.p12"),
                            (self.certs.ca, "ca.pem")):
            container.with_copy_into_container(local.read_bytes(),
                                               f"{CONTAINER_CERTS_DIR}/{name}")
        taken = {self.port}
        for attr in ("tls_port", "mutual_tls_port"):
            port = free_port()
            while port in taken:
                port = free_port()
            taken.add(port)
            setattr(self, attr, port)
        assert self.tls_port is not None and self.mutual_tls_port is not None
        publish(container, CONTAINER_TLS_PORT, self.tls_port)
        publish(container, CONTAINER_MUTUAL_TLS_PORT, self.mutual_tls_port)

    def _wait_ready(self, baseline: Dict[str, int], timeout: float) -> None:
        """Wait until one of the ready lines is in the logs more often than in ``baseline``
        (their counts before this start)."""
        deadline = time.monotonic() + max(timeout, 1.0)

        def ready() -> bool:
            return any(n > baseline.get(line, 0) for line, n in self._ready_counts().items())

        while True:
            if ready():
                return
            if not self.running:
                time.sleep(0.5)  # let the last log lines arrive
                if ready():
                    return
                raise BrokerStartError(
                    "the Artemis container exited before it was ready", self.log_tail(40)
                )
            if time.monotonic() > deadline:
                lines = " or ".join(self._ready_lines())
                raise BrokerStartError(
                    f"the Artemis container was not ready ({lines}) within {timeout:g} s",
                    self.log_tail(40),
                )
            time.sleep(0.25)

    def _remove(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            try:
                container.stop()  # testcontainers: remove, force, with its volumes
            except Exception as exc:
                log.warning("could not remove the Artemis container: %s", exc)
        self.tls_port = self.mutual_tls_port = None
        self.certs = None
        if self._certs_dir is not None:
            shutil.rmtree(self._certs_dir, ignore_errors=True)
            self._certs_dir = None

    def stop(self, timeout: Optional[float] = None) -> None:
        if self._container is not None:
            try:
                wrapped = self._container.get_wrapped_container()
                if self._status() == "paused":
                    wrapped.unpause()
                wrapped.stop(timeout=int(self._stop_timeout if timeout is None else timeout))
            except Exception as exc:
                log.debug("container stop: %s", exc)
        self._remove()
        if not self._fixed_port:
            self.port = None

    def kill(self) -> None:
        if not self.running:
            raise BrokerStartError("kill(): the broker is not running")
        self._container.get_wrapped_container().kill()  # also kills a paused container

    def pause(self) -> None:
        if self._status() != "running":
            raise BrokerStartError("pause(): the broker is not running")
        self._container.get_wrapped_container().pause()

    def unpause(self) -> None:
        if self._status() != "paused":
            raise BrokerStartError("unpause(): the broker is not paused")
        self._container.get_wrapped_container().unpause()

    def read_file(self, path: str) -> bytes:
        """The bytes of ``path`` (relative to the instance folder) inside the container."""
        if self._container is None:
            raise BrokerStartError("read_instance_file(): the broker was never started")
        wrapped = self._container.get_wrapped_container()
        full = f"{CONTAINER_INSTANCE_DIR}/{path.lstrip('/')}"
        try:
            chunks, _ = wrapped.get_archive(full)
        except Exception as exc:
            raise FileNotFoundError(f"{path} in the broker's container: {exc}") from None
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            member = next((m for m in tar.getmembers() if m.isfile()), None)
            handle = tar.extractfile(member) if member is not None else None
            if handle is None:
                raise IsADirectoryError(f"{path} in the broker's container is not a file")
            return handle.read()

    def restart(self, timeout: float) -> None:
        if self._container is None:
            raise BrokerStartError("restart(): the broker was never started")
        baseline = self._ready_counts()
        wrapped = self._container.get_wrapped_container()
        if self._status() == "paused":
            wrapped.unpause()
        if self.running:
            wrapped.stop(timeout=int(self._stop_timeout))
        wrapped.start()
        self._wait_ready(baseline, timeout)
