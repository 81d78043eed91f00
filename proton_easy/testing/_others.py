"""Brokers other than Artemis, for testing code against more than one AMQP 1.0 peer:
ActiveMQ Classic 5.18.3 and Qpid Broker-J 9.2.1, run from Maven Central artifacts.

Both are fetched once with ``mvn`` into :func:`~proton_easy.testing.cache_dir`, listen on a
free port of 127.0.0.1 only, require a login (user ``admin`` and a random password unless
given), keep their data across :meth:`~OtherBroker.restart`, and run as child processes in a
process group of their own.

Example::

    from proton_easy.testing import ClassicBroker, BrokerJ

    with ClassicBroker() as broker:       # ready when the log says the broker started
        pe.send(broker.address_url("orders"), "hi")
        broker.restart()                  # same port, durable messages kept
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Sequence
from xml.sax.saxutils import escape as xml_escape

from ._distribution import _locked, cache_dir, java_executable
from ._errors import BrokerStartError, BrokerUnavailable
from ._local import _parent_death_signal, free_port

log = logging.getLogger("proton_easy.testing")

CLASSIC_VERSION = "5.18.3"
BROKER_J_VERSION = "9.2.1"
_MAVEN_PLUGIN_VERSION = "3.8.1"
_MAVEN_PLUGIN = f"org.apache.maven.plugins:maven-dependency-plugin:{_MAVEN_PLUGIN_VERSION}"

_live: weakref.WeakSet[OtherBroker] = weakref.WeakSet()


def _mvn(args: Sequence[str], what: str, cwd: Optional[Path] = None) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerUnavailable(
            f"{what} is not in the cache ({cache_dir()}) and Maven is not installed to "
            "download it. Install Maven (e.g. `apt-get install maven`).")
    java_executable()
    proc = subprocess.run([mvn, "-B", "-q", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=False,
                          cwd=str(cwd) if cwd else None)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-30:])
        raise BrokerUnavailable(f"Maven could not download {what} (exit {proc.returncode}). "
                                f"Check that Maven Central is reachable.\n{tail}")


def classic_home(fetch: bool = True) -> Path:
    """Return the unpacked ActiveMQ Classic distribution, downloading it first if needed.

    ``$ACTIVEMQ_HOME`` wins when set. The artifact is
    ``org.apache.activemq:apache-activemq:5.18.3:tar.gz:bin`` (about 50 MB).

    Example::

        print(classic_home() / "bin" / "activemq.jar")
    """
    env = os.environ.get("ACTIVEMQ_HOME")
    if env:
        path = Path(env).expanduser()
        if not (path / "bin" / "activemq.jar").is_file():
            raise BrokerUnavailable(f"ACTIVEMQ_HOME={env} holds no bin/activemq.jar")
        return path
    cache = cache_dir()
    home = cache / f"apache-activemq-{CLASSIC_VERSION}"
    if (home / "bin" / "activemq.jar").is_file():
        return home
    if not fetch:
        raise BrokerUnavailable(f"ActiveMQ Classic {CLASSIC_VERSION} is not in {cache}; run "
                                "`python -m proton_easy.testing fetch --brokers all`.")
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".lock"):
        if (home / "bin" / "activemq.jar").is_file():
            return home
        staging = Path(tempfile.mkdtemp(prefix=".dl-", dir=cache))
        try:
            artifact = f"org.apache.activemq:apache-activemq:{CLASSIC_VERSION}:tar.gz:bin"
            _mvn([f"{_MAVEN_PLUGIN}:copy", f"-Dartifact={artifact}",
                  f"-DoutputDirectory={staging}"], f"ActiveMQ Classic {CLASSIC_VERSION}")
            tarball = staging / f"apache-activemq-{CLASSIC_VERSION}-bin.tar.gz"
            with tarfile.open(tarball) as archive:
                if hasattr(tarfile, "data_filter"):
                    archive.extractall(staging, filter="data")
                else:  # pragma: no cover
                    archive.extractall(staging)
            os.rename(staging / home.name, home)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return home


_BROKER_J_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>proton-easy.testing</groupId><artifactId>broker-j</artifactId><version>1</version>
  <dependencies><dependency>
    <groupId>org.apache.qpid</groupId><artifactId>qpid-broker</artifactId>
    <version>{version}</version>
    <exclusions><exclusion><groupId>com.sleepycat</groupId><artifactId>je</artifactId>
    </exclusion></exclusions>
  </dependency></dependencies>
</project>
"""


def broker_j_home(fetch: bool = True) -> Path:
    """Return a folder whose ``lib/`` holds Qpid Broker-J's jars, downloading them if needed.

    The jars are ``org.apache.qpid:qpid-broker:9.2.1`` and its dependencies, without
    ``com.sleepycat:je`` (Berkeley DB, which this setup does not use: the virtual host is
    Derby). ``$QPID_BROKER_J_HOME`` wins when set.

    Example::

        print(len(list((broker_j_home() / "lib").glob("*.jar"))))
    """
    env = os.environ.get("QPID_BROKER_J_HOME")
    if env:
        path = Path(env).expanduser()
        if not list((path / "lib").glob("qpid-broker-core-*.jar")):
            raise BrokerUnavailable(f"QPID_BROKER_J_HOME={env} holds no lib/qpid-broker-core")
        return path
    cache = cache_dir()
    home = cache / f"qpid-broker-j-{BROKER_J_VERSION}"
    done = home / ".complete"
    if done.is_file():
        return home
    if not fetch:
        raise BrokerUnavailable(f"Qpid Broker-J {BROKER_J_VERSION} is not in {cache}; run "
                                "`python -m proton_easy.testing fetch --brokers all`.")
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".lock"):
        if done.is_file():
            return home
        staging = Path(tempfile.mkdtemp(prefix=".dl-", dir=cache))
        try:
            (staging / "pom.xml").write_text(_BROKER_J_POM.format(version=BROKER_J_VERSION))
            _mvn(["-f", str(staging / "pom.xml"), f"{_MAVEN_PLUGIN}:copy-dependencies",
                  "-DincludeScope=runtime", f"-DoutputDirectory={staging / 'lib'}"],
                 f"Qpid Broker-J {BROKER_J_VERSION}")
            (staging / "pom.xml").unlink()
            (staging / ".complete").write_text(BROKER_J_VERSION)
            shutil.rmtree(home, ignore_errors=True)
            os.rename(staging, home)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return home


class OtherBroker:
    """What :class:`ClassicBroker` and :class:`BrokerJ` share: a local Java broker process
    on a free loopback port, with a login, data kept across :meth:`restart`.

    Example::

        with ClassicBroker() as broker:
            print(broker.url)      # amqp://admin:<password>@127.0.0.1:<port>
    """

    name: ClassVar[str] = "broker"
    version: ClassVar[str] = ""
    ready_pattern: ClassVar[str] = ""
    failed_pattern: ClassVar[str] = r"(?!x)x"

    def __init__(self, *, user: str = "admin", password: Optional[str] = None,
                 port: Optional[int] = None, host: str = "127.0.0.1",
                 startup_timeout: float = 60.0, stop_timeout: float = 20.0,
                 java_memory: str = "256M", instance_dir: Optional[str] = None) -> None:
        self.user = user
        self.password = password or secrets.token_urlsafe(12)
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.java_memory = java_memory
        self._own_dir = instance_dir is None
        self.instance = Path(instance_dir or tempfile.mkdtemp(prefix=f"pe-{self.name}-"))
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._prepared = False
        self.startup_seconds: Optional[float] = None
        self._log_file = self.instance / "broker.log"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} user={self.user!r} {state}>"

    # -- addresses ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``amqp://user:password@host:port``, no path."""
        return f"amqp://{self.user}:{self.password}@{self.host}:{self.port}"

    def address_url(self, name: str) -> str:
        """The URL of one address: ``url + "/" + name``."""
        return f"{self.url}/{name}"

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    # -- to be provided by each broker -------------------------------------------------------
    def _prepare(self) -> None:
        """Write the instance's configuration (once)."""
        raise NotImplementedError

    def _command(self) -> List[str]:
        raise NotImplementedError

    def _env(self) -> Dict[str, str]:
        return dict(os.environ)

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> OtherBroker:
        """Start the broker and wait until its log says it is ready; raise BrokerStartError
        (with the log tail) if it does not get there within ``startup_timeout``."""
        if self.running:
            return self
        if not self._prepared:
            self._prepare()
            self._prepared = True
        began = time.monotonic()
        offset = self._log_file.stat().st_size if self._log_file.exists() else 0
        with open(self._log_file, "ab") as out:
            self._proc = subprocess.Popen(
                self._command(), stdout=out, stderr=subprocess.STDOUT, cwd=str(self.instance),
                env=self._env(), start_new_session=True, preexec_fn=_parent_death_signal())
        _live.add(self)
        ready, failed = re.compile(self.ready_pattern), re.compile(self.failed_pattern)
        deadline = began + self.startup_timeout
        while True:
            text = self._log_file.read_bytes()[offset:].decode("utf-8", "replace")
            if ready.search(text):
                break
            if failed.search(text) or self._proc.poll() is not None:
                tail = self.log_tail()
                self._terminate(signal.SIGKILL)
                raise BrokerStartError(f"{type(self).__name__} did not start", tail)
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self._terminate(signal.SIGKILL)
                raise BrokerStartError(f"{type(self).__name__} was not ready within "
                                       f"{self.startup_timeout:g} s", tail)
            time.sleep(0.1)
        self.startup_seconds = time.monotonic() - began
        log.info("%s ready on %s:%s in %.1f s", self.name, self.host, self.port,
                 self.startup_seconds)
        return self

    def _terminate(self, sig: int) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def restart(self) -> OtherBroker:
        """Stop gracefully and start again: same port, same data."""
        self._terminate(signal.SIGTERM)
        return self.start()

    def kill(self) -> None:
        """SIGKILL the broker (its persistent messages stay on disk)."""
        self._terminate(signal.SIGKILL)

    def stop(self) -> None:
        """Stop the broker and remove its instance folder (when this object made it)."""
        self._terminate(signal.SIGTERM)
        _live.discard(self)
        if self._own_dir:
            shutil.rmtree(self.instance, ignore_errors=True)
            self._prepared = False

    def log_tail(self, lines: int = 50) -> str:
        """The last ``lines`` lines of the broker's output."""
        try:
            text = self._log_file.read_text("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> OtherBroker:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


_CLASSIC_XML = """<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans
    http://www.springframework.org/schema/beans/spring-beans.xsd
    http://activemq.apache.org/schema/core
    http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="proton-easy"
          dataDirectory="{data}" useJmx="false" advisorySupport="false"
          schedulerSupport="true" persistent="true">
    <destinationPolicy><policyMap><policyEntries>
      <policyEntry queue="&gt;"><deadLetterStrategy>
        <individualDeadLetterStrategy queuePrefix="DLQ." useQueueForQueueMessages="true"/>
      </deadLetterStrategy></policyEntry>
    </policyEntries></policyMap></destinationPolicy>
    <persistenceAdapter><kahaDB directory="{data}/kahadb"/></persistenceAdapter>
    <plugins>
      <simpleAuthenticationPlugin anonymousAccessAllowed="false">
        <users>
          <authenticationUser username="{user}" password="{password}" groups="admins"/>
        </users>
      </simpleAuthenticationPlugin>
    </plugins>
    <systemUsage><systemUsage>
      <memoryUsage><memoryUsage percentOfJvmHeap="50"/></memoryUsage>
      <storeUsage><storeUsage limit="2 gb"/></storeUsage>
      <tempUsage><tempUsage limit="1 gb"/></tempUsage>
    </systemUsage></systemUsage>
    <transportConnectors>
      <transportConnector name="amqp"
        uri="amqp://{host}:{port}?maximumConnections=1000&amp;wireFormat.maxFrameSize=104857600"/>
    </transportConnectors>
  </broker>
</beans>
"""


class ClassicBroker(OtherBroker):
    """ActiveMQ Classic 5.18.3 with only its AMQP connector, on 127.0.0.1, login required.

    KahaDB persistence in the instance folder (kept by :meth:`restart`), no web console,
    no JMX. Classic advertises ``topic-prefix`` and ``queue-prefix`` in its Open frame
    (``topic://``, ``queue://``) and ignores terminus capabilities.

    Example::

        with ClassicBroker() as broker:
            pe.send(broker.address_url("orders"), "hi")
    """

    name = "activemq-classic"
    version = CLASSIC_VERSION
    ready_pattern = rf"Apache ActiveMQ {re.escape(CLASSIC_VERSION)} \(.*\) started"
    failed_pattern = r"Failed to start Apache ActiveMQ"

    def _prepare(self) -> None:
        home = classic_home()
        self._home = home
        conf = self.instance / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        for name in ("log4j2.properties", "java.security", "login.config"):
            src = home / "conf" / name
            if src.is_file():
                shutil.copy(src, conf / name)
        (self.instance / "data").mkdir(exist_ok=True)
        (self.instance / "tmp").mkdir(exist_ok=True)
        (conf / "activemq.xml").write_text(_CLASSIC_XML.format(
            data=xml_escape(str(self.instance / "data")), user=xml_escape(self.user),
            password=xml_escape(self.password, {'"': "&quot;"}), host=self.host,
            port=self.port))

    def _command(self) -> List[str]:
        home, inst = classic_home(fetch=False), self.instance
        return [
            java_executable(), f"-Xmx{self.java_memory}", "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true", f"-Djava.io.tmpdir={inst / 'tmp'}",
            f"-Dactivemq.classpath={inst / 'conf'}", f"-Dactivemq.home={home}",
            f"-Dactivemq.base={inst}", f"-Dactivemq.conf={inst / 'conf'}",
            f"-Dactivemq.data={inst / 'data'}",
            f"-Dlog4j.configurationFile={inst / 'conf' / 'log4j2.properties'}",
            "-jar", str(home / "bin" / "activemq.jar"), "start",
            f"xbean:file:{inst / 'conf' / 'activemq.xml'}",
        ]


class BrokerJ(OtherBroker):
    """Qpid Broker-J 9.2.1: AMQP 1.0 only, on 127.0.0.1, PLAIN login over plain TCP
    (``secureOnlyMechanisms: []``), one Derby virtual host that creates queues on first use.

    Ready when the log says ``BRK-1004`` (the port opens earlier than that).

    Example::

        with BrokerJ() as broker:
            pe.send(broker.address_url("orders"), "hi")
    """

    name = "qpid-broker-j"
    version = BROKER_J_VERSION
    ready_pattern = r"BRK-1004"
    failed_pattern = r"BRK-1016|Exception during startup|Error: "

    def _prepare(self) -> None:
        import json

        broker_j_home()
        auto = [{"pattern": ".*", "createdOnPublish": True, "createdOnConsume": True,
                 "nodeType": "queue", "attributes": {}}]
        host = {"type": "DERBY", "nodeAutoCreationPolicies": auto}
        config = {
            "name": "proton-easy", "modelVersion": "9.0",
            "authenticationproviders": [{
                "name": "plain", "type": "Plain", "secureOnlyMechanisms": [],
                "users": [{"name": self.user, "type": "managed", "password": self.password}],
            }],
            "ports": [{
                "name": "AMQP", "port": self.port, "bindingAddress": self.host,
                "protocols": ["AMQP_1_0"], "authenticationProvider": "plain",
                "virtualhostaliases": [
                    {"name": "nameAlias", "type": "nameAlias"},
                    {"name": "defaultAlias", "type": "defaultAlias"},
                    {"name": "hostnameAlias", "type": "hostnameAlias"},
                ],
            }],
            "virtualhostnodes": [{
                "name": "default", "type": "DERBY", "defaultVirtualHostNode": "true",
                "virtualHostInitialConfiguration": json.dumps(host),
            }],
            "brokerloggers": [{
                "name": "console", "type": "Console",
                "brokerloginclusionrules": [
                    {"name": "Root", "type": "NameAndLevel", "level": "WARN",
                     "loggerName": "ROOT"},
                    {"name": "Operational", "type": "NameAndLevel", "level": "INFO",
                     "loggerName": "qpid.message.*"},
                ],
            }],
        }
        (self.instance / "work").mkdir(parents=True, exist_ok=True)
        # the password is in this file, readable by its owner only
        path = self.instance / "initial-config.json"
        path.write_text(json.dumps(config, indent=1))
        path.chmod(0o600)

    def _env(self) -> Dict[str, str]:
        env = dict(os.environ)
        env["QPID_WORK"] = str(self.instance / "work")
        return env

    def _command(self) -> List[str]:
        home, inst = broker_j_home(fetch=False), self.instance
        return [
            java_executable(), f"-Xmx{self.java_memory}", "-XX:TieredStopAtLevel=1",
            f"-Djava.io.tmpdir={inst / 'work'}", f"-DQPID_WORK={inst / 'work'}",
            "-cp", f"{home / 'lib'}/*", "org.apache.qpid.server.Main",
            "--store-type", "JSON", "--store-path", str(inst / "work" / "config.json"),
            "--initial-config-path", str(inst / "initial-config.json"),
        ]


def _stop_all() -> None:
    for broker in list(_live):
        try:
            broker.stop()
        except Exception:  # noqa: BLE001 - at exit, best effort
            log.debug("could not stop %r", broker, exc_info=True)


import atexit  # noqa: E402 - registered after the classes it stops

atexit.register(_stop_all)


