"""Running Artemis in Docker: the official image through testcontainers."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple

from ._distribution import ARTEMIS_VERSION
from ._errors import BrokerStartError, BrokerUnavailable
from ._local import READY_LINE, free_port

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

    def __repr__(self) -> str:  # keep the password out of logs and tracebacks
        env = {k: ("***" if k == "ARTEMIS_PASSWORD" else v) for k, v in self.env.items()}
        return f"DockerConfig(image={self.image!r}, env={env!r}, ports={self.ports!r})"


def docker_container_config(
    *,
    user: str,
    password: str,
    queues: Sequence[str] = (),
    java_memory: str = "512M",
    java_options: Sequence[str] = (),
    image: str = DOCKER_IMAGE,
) -> DockerConfig:
    """Describe the Artemis container; pure, so it can be checked without a Docker engine.

    The image reads ``ARTEMIS_USER``, ``ARTEMIS_PASSWORD`` and ``ANONYMOUS_LOGIN`` and
    passes ``EXTRA_ARGS`` to ``artemis create``; ``JAVA_ARGS_APPEND`` reaches the broker's
    java command line. Readiness is the log line ``AMQ221007``.

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
        "ANONYMOUS_LOGIN": "false",
        "EXTRA_ARGS": " ".join(extra),
        "JAVA_ARGS_APPEND": " ".join((*_PREFIX_PROPERTIES, *java_options)),
    }
    return DockerConfig(image=image, env=env)


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
    ) -> None:
        self.user = user
        self._password = password
        self.host = "127.0.0.1"
        self.port: Optional[int] = port
        self.core_port: Optional[int] = None
        self._fixed_port = port is not None
        self._config = docker_container_config(
            user=user, password=password, queues=queues, java_memory=java_memory,
            java_options=java_options, image=image,
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
        lines = self._logs().replace(self._password, "***").splitlines()
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
