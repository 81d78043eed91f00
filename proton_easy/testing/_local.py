"""Running Artemis from the distribution: `artemis create` then `artemis run` as a child."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ._access import Access
from ._certs import KEYSTORE_PASSWORD_ENV, Certs, make_certs
from ._distribution import artemis_home, java_executable, log
from ._errors import BrokerStartError
from ._tls_config import TLSAcceptors, instance_files

READY_LINE = "AMQ221007"

#: JVM options that halve the broker's start-up CPU (C1 JIT only) at some cost in peak
#: throughput: right for tests and demos, wrong for benchmarks.
QUICK_START_JAVA_OPTIONS = ("-XX:TieredStopAtLevel=1",)
_BIND_FAILED = "AMQ229230"

# Variables of the user's shell that the Artemis launcher would obey instead of the instance.
_LAUNCHER_ENV = (
    "JAVA_ARGS", "JAVA_ARGS_APPEND", "DEBUG_ARGS", "ARTEMIS_INSTANCE", "ARTEMIS_INSTANCE_ETC",
    "ARTEMIS_PROFILE", "ARTEMIS_CLUSTER_PROPS", "ARTEMIS_DATA_DIR", "ARTEMIS_ETC_DIR",
    "ARTEMIS_OOME_DUMP", "LOGGING_ARGS",
)

_ACCEPTORS_RE = re.compile(r"<acceptors>.*?</acceptors>", re.DOTALL)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now.

    Example::

        port = free_port()
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Tell whether a listener could bind ``host:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def acceptors_xml(host: str, amqp_port: int, core_port: int) -> str:
    """The ``<acceptors>`` block: AMQP with queue:// and topic:// prefixes, and CORE.

    The CORE acceptor serves the ``artemis`` command line tools (queue stat, producer...).
    The stock STOMP, MQTT and HornetQ acceptors are left out.
    """
    amqp = (
        f"tcp://{host}:{amqp_port}?tcpSendBufferSize=1048576;tcpReceiveBufferSize=1048576;"
        "protocols=AMQP;useEpoll=true;amqpCredits=1000;amqpLowCredits=300;"
        "amqpMinLargeMessageSize=102400;amqpDuplicateDetection=true;"
        "anycastPrefix=queue://;multicastPrefix=topic://"
    )
    core = (
        f"tcp://{host}:{core_port}?tcpSendBufferSize=1048576;tcpReceiveBufferSize=1048576;"
        "protocols=CORE,AMQP,OPENWIRE;useEpoll=true;amqpCredits=1000;amqpLowCredits=300;"
        "amqpMinLargeMessageSize=102400;amqpDuplicateDetection=true;supportAdvisory=false;"
        "suppressInternalManagementObjects=false"
    )
    return (
        "<acceptors>\n"
        f'         <acceptor name="amqp">{amqp}</acceptor>\n'
        f'         <acceptor name="artemis">{core}</acceptor>\n'
        "      </acceptors>"
    )


def instance_broker_xml(text: str, host: str, amqp_port: int, core_port: int,
                        node: Any = None) -> str:
    """``broker.xml`` as ``artemis create`` wrote it, with :func:`acceptors_xml` on
    ``host`` and, for a cluster or HA node (``_cluster.NodeSpec``), its cluster part.

    Example::

        text = instance_broker_xml(text, "127.0.0.1", 40001, 40002)
    """
    new, count = _ACCEPTORS_RE.subn(acceptors_xml(host, amqp_port, core_port), text, 1)
    if count != 1:
        raise BrokerStartError("no <acceptors> block found in broker.xml")
    return str(node.broker_xml(new, host, amqp_port)) if node is not None else new


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def tail_lines(path: Path, n: int) -> str:
    """Return the last ``n`` lines of a text file ('' when it does not exist)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 256 * 1024))
            data = handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    lines = data.splitlines()
    return "\n".join(lines[-n:]) if n > 0 else ""


def _parent_death_signal() -> Optional[Callable[[], None]]:
    """A preexec function asking Linux to SIGKILL the broker when this process dies.

    Only used from the main thread: Linux sends the signal when the *thread* that forked
    the child exits, so a broker started from a short-lived thread would die with it.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigkill = 1, int(signal.SIGKILL)

    def preexec() -> None:
        prctl(pr_set_pdeathsig, sigkill, 0, 0, 0)

    return preexec


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the broker's process group, then SIGKILL it after ``timeout`` seconds."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("Artemis (pid %s) did not stop in %.0f s: killing it", proc.pid, timeout)
        _kill(proc)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:  # pragma: no cover - the kernel is in trouble
        log.error("Artemis (pid %s) survived SIGKILL for 30 s", proc.pid)


def _cleanup(proc_box: list[Any], remove: Optional[str], timeout: float) -> None:
    """Finalizer: stop a still-running broker and remove its temporary instance folder."""
    proc = proc_box[0] if proc_box else None
    if proc is not None:
        _terminate(proc, timeout)
    if remove:
        shutil.rmtree(remove, ignore_errors=True)


class LocalBackend:
    """One Artemis instance folder and the ``artemis run`` process serving it."""

    kind = "local"

    def __init__(
        self,
        *,
        user: str,
        password: str,
        host: str,
        port: Optional[int],
        queues: Sequence[str],
        java_memory: str,
        java_options: Sequence[str],
        instance_dir: Optional[str],
        stop_timeout: float,
        tls: bool = False,
        allow_anonymous: bool = False,
        cert_hosts: Sequence[str] = (),
        access: Optional[Access] = None,
    ) -> None:
        self.node: Any = None
        """A cluster or HA node's part (``_cluster.NodeSpec``): extra ``artemis create``
        arguments, the broker.xml changes, the log lines that mean ready."""
        self.user = user
        self._password = password
        self._access = access
        self.host = host
        self.port: Optional[int] = port
        self.core_port: Optional[int] = None
        self.tls_port: Optional[int] = None
        self.mutual_tls_port: Optional[int] = None
        self.certs: Optional[Certs] = None
        self._tls = tls
        self._allow_anonymous = allow_anonymous
        self._cert_hosts = tuple(cert_hosts)
        self._fixed_port = port is not None
        self._queues = list(queues)
        self._java_memory = java_memory
        self._java_options = list(java_options)
        self._keep_instance = instance_dir is not None
        self.instance_dir: Optional[Path] = Path(instance_dir) if instance_dir else None
        self._stop_timeout = stop_timeout
        self._created = False
        self._proc_box: list[Any] = []  # [Popen] shared with the finalizer
        self._finalizer: Optional[weakref.finalize[Any, Any]] = None
        self.create_seconds: Optional[float] = None

    # -- state -------------------------------------------------------------------------
    @property
    def _proc(self) -> Optional[subprocess.Popen[bytes]]:
        return self._proc_box[0] if self._proc_box else None

    @property
    def running(self) -> bool:
        proc = self._proc
        return proc is not None and proc.poll() is None

    @property
    def pid(self) -> Optional[int]:
        """The broker's process id while it runs."""
        proc = self._proc
        return proc.pid if self.running and proc is not None else None

    @property
    def log_path(self) -> Optional[Path]:
        return self.instance_dir / "log" / "console.log" if self.instance_dir else None

    def log_tail(self, n: int) -> str:
        path = self.log_path
        return tail_lines(path, n) if path else ""

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, timeout: float) -> None:
        if self.running:
            return
        if self._fixed_port and not self._created and not port_is_free(self.port or 0, self.host):
            raise BrokerStartError(
                f"port {self.host}:{self.port} is already in use; pick another port "
                "or leave port=None to get a free one"
            )
        home = artemis_home()
        java_executable()
        if not self._created:
            self._create(home)
        for attempt in range(3):
            try:
                self._launch(timeout)
                return
            except _PortRace:
                if attempt == 2:
                    raise BrokerStartError(
                        f"Artemis could not bind its ports ({self.port}, {self.core_port})",
                        self.log_tail(40),
                    ) from None
                log.info("a port was taken before Artemis bound it; retrying on new ports")
                self._choose_ports(keep_amqp=self._fixed_port)

    def _create(self, home: Path) -> None:
        if self.instance_dir is None:
            self.instance_dir = Path(tempfile.mkdtemp(prefix="proton-easy-artemis-"))
        self.instance_dir.mkdir(parents=True, exist_ok=True)
        self._ensure_finalizer()
        cmd = [
            str(home / "bin" / "artemis"), "create", str(self.instance_dir),
            "--silent", "--force", "--user", self.user, "--password", self._password,
            "--require-login", "--host", self.host, "--http-host", self.host, "--no-web",
            "--no-fsync", "--mapped", "--no-autotune", "--java-memory", self._java_memory,
            "--no-hornetq-acceptor", "--no-mqtt-acceptor", "--no-stomp-acceptor",
        ]
        if self._queues:
            cmd += ["--queues", ",".join(self._queues)]
        if self.node is not None:
            cmd += self.node.create_args()
        log.info("creating an Artemis instance in %s", self.instance_dir)
        began = time.monotonic()
        proc = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=self._child_env(), check=False,
        )
        self.create_seconds = time.monotonic() - began
        broker_xml = self.instance_dir / "etc" / "broker.xml"
        if proc.returncode != 0 or not broker_xml.is_file():
            tail = "\n".join(proc.stdout.splitlines()[-40:])
            raise BrokerStartError(
                f"`artemis create` failed (exit {proc.returncode}) in {self.instance_dir}", tail
            )
        if self._tls:
            self.certs = make_certs(self.instance_dir / "certs", hosts=self._cert_hosts)
        self._created = True
        self._choose_ports(keep_amqp=self._fixed_port)

    def _ensure_finalizer(self) -> None:
        """Stop the broker (and remove a temporary instance) at garbage collection or exit."""
        if self._finalizer is None or not self._finalizer.alive:
            remove = None if self._keep_instance else str(self.instance_dir)
            self._finalizer = weakref.finalize(
                self, _cleanup, self._proc_box, remove, self._stop_timeout
            )

    def _choose_ports(self, keep_amqp: bool) -> None:
        if not keep_amqp or self.port is None:
            self.port = free_port(self.host)
        taken = {self.port}

        def another() -> int:
            port = free_port(self.host)
            while port in taken:
                port = free_port(self.host)
            taken.add(port)
            return port

        core = self.core_port = another()
        assert self.instance_dir is not None
        broker_xml = self.instance_dir / "etc" / "broker.xml"
        text = broker_xml.read_text(encoding="utf-8")
        new = instance_broker_xml(text, self.host, self.port, core, self.node)
        broker_xml.write_text(new, encoding="utf-8")
        acc = None
        if self._tls:
            assert self.certs is not None
            self.tls_port, self.mutual_tls_port = another(), another()
            acc = TLSAcceptors(
                host=self.host, tls_port=self.tls_port, mutual_tls_port=self.mutual_tls_port,
                keystore=str(self.certs.broker_keystore), truststore=str(self.certs.ca),
                allow_anonymous=self._allow_anonymous,
            )
        files = instance_files(user=self.user, password=self._password, acceptors=acc,
                               allow_anonymous=self._allow_anonymous, access=self._access)
        for name, body in files.items():
            (self.instance_dir / "etc" / name).write_text(body, encoding="utf-8")

    def _child_env(self, run: bool = False) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _LAUNCHER_ENV}
        # `artemis create` is a one-shot JVM: the quick-start options always pay off there
        options = self._java_options if run else QUICK_START_JAVA_OPTIONS
        if options:
            env["JAVA_ARGS_APPEND"] = " ".join(options)
        if run and self.certs is not None:
            # broker.properties says ${PROTON_EASY_KEYSTORE_PASSWORD}: not in any file
            env[KEYSTORE_PASSWORD_ENV] = self.certs.keystore_password
        return env

    def _launch(self, timeout: float) -> None:
        assert self.instance_dir is not None and self.log_path is not None
        log_path = self.log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._ensure_finalizer()
        with open(log_path, "ab") as out:
            out.write(f"=== proton_easy: artemis run ({time.ctime()}) ===\n".encode())
            out.flush()
            offset = out.tell()
            proc = subprocess.Popen(
                [str(self.instance_dir / "bin" / "artemis"), "run"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=str(self.instance_dir), env=self._child_env(run=True),
                start_new_session=True, preexec_fn=_parent_death_signal(),
            )
        self._proc_box[:] = [proc]
        ready = self.node.ready_lines() if self.node is not None else (READY_LINE,)
        log.info("started Artemis (pid %s), waiting for %s", proc.pid, " or ".join(ready))
        deadline = time.monotonic() + timeout
        try:
            while True:
                text = _read_from(log_path, offset)
                if any(line in text for line in ready):
                    log.info("Artemis is ready on %s:%s", self.host, self.port)
                    return
                code = proc.poll()
                if code is not None:
                    text = _read_from(log_path, offset)
                    if any(line in text for line in ready):  # pragma: no cover - died at once
                        break
                    if _BIND_FAILED in text:
                        raise _PortRace()
                    raise BrokerStartError(
                        f"Artemis exited with code {code} before it was ready", self.log_tail(40)
                    )
                if time.monotonic() > deadline:
                    _kill(proc)
                    raise BrokerStartError(
                        f"Artemis was not ready ({' or '.join(ready)}) within {timeout:g} s; "
                        "killed it", self.log_tail(40),
                    )
                time.sleep(0.05)
        except BaseException:
            _kill(proc)
            raise
        raise BrokerStartError("Artemis died right after starting", self.log_tail(40))

    def stop(self, timeout: Optional[float] = None) -> None:
        proc = self._proc
        if proc is not None:
            _terminate(proc, self._stop_timeout if timeout is None else timeout)
        self._proc_box[:] = []
        if self._finalizer is not None:
            self._finalizer()  # removes a temporary instance folder
            self._finalizer = None
        if not self._keep_instance:
            self.instance_dir = None
            self._created = False
            if not self._fixed_port:
                self.port = None
            self.core_port = self.tls_port = self.mutual_tls_port = None
            self.certs = None

    def kill(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise BrokerStartError("kill(): the broker is not running")
        _kill(proc)
        log.info("killed Artemis (pid %s) with SIGKILL; its data is kept", proc.pid)

    def restart(self, timeout: float) -> None:
        if not self._created:
            raise BrokerStartError("restart(): the broker was never started")
        proc = self._proc
        if proc is not None and proc.poll() is None:
            _terminate(proc, self._stop_timeout)
        try:
            self._launch(timeout)
        except _PortRace:
            raise BrokerStartError(
                f"restart(): port {self.port} or {self.core_port} is taken by another process",
                self.log_tail(40),
            ) from None


class _PortRace(Exception):
    """Artemis could not bind a port that was free a moment before."""

