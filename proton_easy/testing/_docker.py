"""Running Artemis in Docker: the official image through testcontainers."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple

from ._access import Access
from ._certs import KEYSTORE_PASSWORD_ENV, Certs, make_certs
from ._distribution import ARTEMIS_VERSION
from ._errors import BrokerStartError, BrokerUnavailable
from ._local import READY_LINE, free_port
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
DOCKER_IMAGE = f"apache/activemq-artemis:{ARTEMIS_VERSION}"

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
        import docker  # installed with testcontainers
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


class DockerBackend:
    """One Artemis container. ``kill``/``restart`` are container kill/stop and start."""

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
        image: str = DOCKER_IMAGE,
        tls: bool = False,
        allow_anonymous: bool = False,
        cert_hosts: Sequence[str] = (),
        access: Optional[Access] = None,
    ) -> None:
        self.user = user
        self._password = password
        self.host = "127.0.0.1"
        self.port: Optional[int] = port
        self.core_port: Optional[int] = None
        self.tls_port: Optional[int] = None
        self.mutual_tls_port: Optional[int] = None
        self.certs: Optional[Certs] = None
        self._cert_hosts = tuple(cert_hosts)
        self._certs_dir: Optional[str] = None
        self._fixed_port = port is not None
        self._config = docker_container_config(
            user=user, password=password, queues=queues, java_memory=java_memory,
            java_options=java_options, image=image, tls=tls, allow_anonymous=allow_anonymous,
            access=access,
        )
        self._stop_timeout = stop_timeout
        self._container: Any = None
        self.create_seconds: Optional[float] = None
        self.instance_dir = None
        self.log_path = None

    @property
    def running(self) -> bool:
        if self._container is None:
            return False
        try:
            wrapped = self._container.get_wrapped_container()
            wrapped.reload()
            return wrapped.status == "running"
        except Exception:
            return False

    @property
    def pid(self) -> Optional[int]:
        return None

    def _logs(self) -> str:
        if self._container is None:
            return ""
        try:
            out, err = self._container.get_logs()
        except Exception as exc:  # container gone
            return f"(no container logs: {exc})"
        return (out or b"").decode("utf-8", "replace") + (err or b"").decode("utf-8", "replace")

    def log_tail(self, n: int) -> str:
        # some versions of the image's entry script echo the `artemis create` arguments
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
        cfg = self._config
        if self.port is None:
            self.port = free_port()
        container = DockerContainer(cfg.image)
        for key, value in cfg.env.items():
            container.with_env(key, value)
        container.with_bind_ports(cfg.amqp_port, self.port)
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
                f"could not start the {cfg.image} container: {exc}", tail
            ) from exc
        self._container = container
        host = container.get_container_host_ip()
        self.host = "127.0.0.1" if host in ("localhost", "0.0.0.0") else host
        try:
            self._wait_ready(1, timeout - (time.monotonic() - began))
        except BaseException:
            self._remove()
            raise

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
        container.with_bind_ports(CONTAINER_TLS_PORT, self.tls_port)
        container.with_bind_ports(CONTAINER_MUTUAL_TLS_PORT, self.mutual_tls_port)

    def _wait_ready(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + max(timeout, 1.0)
        while True:
            if self._logs().count(READY_LINE) >= count:
                return
            if not self.running:
                time.sleep(0.5)  # let the last log lines arrive
                if self._logs().count(READY_LINE) >= count:
                    return
                raise BrokerStartError(
                    "the Artemis container exited before it was ready", self.log_tail(40)
                )
            if time.monotonic() > deadline:
                raise BrokerStartError(
                    f"the Artemis container was not ready ({READY_LINE}) within {timeout:g} s",
                    self.log_tail(40),
                )
            time.sleep(0.25)

    def _remove(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            try:
                container.stop()
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
                self._container.get_wrapped_container().stop(
                    timeout=int(self._stop_timeout if timeout is None else timeout)
                )
            except Exception as exc:
                log.debug("container stop: %s", exc)
        self._remove()
        if not self._fixed_port:
            self.port = None

    def kill(self) -> None:
        if not self.running:
            raise BrokerStartError("kill(): the broker is not running")
        self._container.get_wrapped_container().kill()

    def restart(self, timeout: float) -> None:
        if self._container is None:
            raise BrokerStartError("restart(): the broker was never started")
        seen = self._logs().count(READY_LINE)
        wrapped = self._container.get_wrapped_container()
        if self.running:
            wrapped.stop(timeout=int(self._stop_timeout))
        wrapped.start()
        self._wait_ready(seen + 1, timeout)
