"""pytest plugin: a real Artemis broker as fixtures (loaded through the ``pytest11`` entry point).

Fixtures:

- ``artemis`` (session): a started :class:`~proton_easy.testing.ArtemisBroker`, shared by
  the session (JVM options :data:`~proton_easy.testing.QUICK_START_JAVA_OPTIONS`); or,
  when ``PROTON_EASY_TEST_URL`` is set, an :class:`~proton_easy.testing.ExternalBroker`
  for that URL (nothing is started).
- ``amqp_url`` (session): the broker's URL with credentials and no path.
- ``amqp_address`` (function): a queue name unique to the test,
  ``test-<test name>-<8 hex>``.
- ``artemis_factory`` (function): ``artemis_factory(**kwargs)`` starts another
  ``ArtemisBroker(**kwargs)`` (for kill/restart tests); all are stopped at teardown.
- ``artemis_module_factory`` (module): the same for module-scoped fixtures; its brokers are
  stopped when the module's tests are done (e.g. one broker with ``users``/``permissions``
  for a whole module).
- ``artemis_tls`` (session): a started ``ArtemisBroker(tls=True)``: generated certificates
  (``.certs``), ``.tls_url`` (server authentication, SASL PLAIN), ``.mutual_tls_url``
  (client certificate, SASL EXTERNAL), ``.client_tls()``. Always a broker of its own, also
  when ``PROTON_EASY_TEST_URL`` is set (it needs the certificates it made).

- ``artemis_ha`` (session): a started :class:`~proton_easy.testing.ArtemisHAPair`
  (shared store); ``artemis_ha_factory`` (function) and ``artemis_ha_module_factory``
  (module) start pairs of any mode.
- ``artemis_cluster`` (session): a started :class:`~proton_easy.testing.ArtemisCluster` of
  two nodes; ``artemis_cluster_factory`` and ``artemis_cluster_module_factory`` likewise.

- ``activemq_classic`` / ``qpid_broker_j`` (session): a started
  :class:`~proton_easy.testing.ClassicBroker` / :class:`~proton_easy.testing.BrokerJ`.

A broker that cannot start makes the fixture raise: tests error, they are never skipped.
With ``PROTON_EASY_NO_SKIP=1`` any skipped test fails the run (CI uses it, so a
silently skipped integration test cannot pass unnoticed).

Example::

    def test_roundtrip(amqp_url, amqp_address):
        send_and_receive(f"{amqp_url}/{amqp_address}")
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from typing import Any, Callable, Generator, Iterator, List, Optional, Union

import pytest

from ._broker import STARTUPS, ArtemisBroker, ExternalBroker, _redact
from ._cluster import ArtemisCluster, ArtemisHAPair
from ._distribution import ARTEMIS_VERSION
from ._local import QUICK_START_JAVA_OPTIONS

BrokerLike = Union[ArtemisBroker, ExternalBroker]


class SecretURL(str):
    """A URL string whose ``repr`` hides its password: pytest's failure reports (which show
    fixture values and locals by ``repr``) never print a real password, while the value itself,
    in f-strings, concatenation and calls, is the whole URL.

    Example::

        url = SecretURL("amqp://admin:s3cret@127.0.0.1:5672")
        repr(url)          # "'amqp://admin:***@127.0.0.1:5672'"
        url + "/orders"    # 'amqp://admin:s3cret@127.0.0.1:5672/orders' (a plain str)
    """

    def __repr__(self) -> str:
        return repr(_redact(str.__str__(self)))


def _check_external(url: str) -> None:
    """Fail the whole run once, up front, when ``PROTON_EASY_TEST_URL`` names no usable broker
    (rather than every test that uses it, each after its timeout).
    ``PROTON_EASY_TEST_URL_CHECK=0`` skips the check (for testing the fixtures themselves)."""
    import proton_easy as pe

    if os.environ.get("PROTON_EASY_TEST_URL_CHECK", "").strip().lower() in ("0", "false", "no"):
        return

    try:
        with pe.Client(url, timeout=10, reconnect=False):
            pass
    except (pe.AMQPError, ValueError, TypeError) as exc:
        pytest.exit(f"PROTON_EASY_TEST_URL={_redact(url)}: {exc}: no test was run against "
                    "it; start that broker, fix the URL, or unset the variable to let the "
                    "plugin start one", returncode=pytest.ExitCode.USAGE_ERROR)


def _no_skip() -> bool:
    return os.environ.get("PROTON_EASY_NO_SKIP", "").strip().lower() in ("1", "true", "yes")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "broker: needs a real Artemis broker")


@pytest.fixture(scope="session")
def artemis() -> Iterator[BrokerLike]:
    """The session's broker: started once, stopped at the end of the session.

    Example::

        def test_it(artemis):
            connect(artemis.url)
    """
    url = os.environ.get("PROTON_EASY_TEST_URL")
    if url:
        external = ExternalBroker(url)
        _check_external(external.url)
        yield external
        return
    broker = ArtemisBroker(java_options=QUICK_START_JAVA_OPTIONS)
    broker.start()  # raises BrokerStartError with the log tail: the tests error, not skip
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def artemis_tls() -> Iterator[ArtemisBroker]:
    """The session's TLS broker: ``ArtemisBroker(tls=True)``, started once.

    Example::

        def test_tls(artemis_tls):
            pe.send(artemis_tls.tls_url + "/q", "hi", tls=artemis_tls.client_tls())
            pe.send(artemis_tls.mutual_tls_url + "/q", "hi",
                    tls=artemis_tls.client_tls(client_cert=True))
    """
    broker = ArtemisBroker(tls=True, java_options=QUICK_START_JAVA_OPTIONS)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _started(broker: Any) -> Iterator[Any]:
    """Start ``broker`` for a fixture and stop it afterwards (also when the start failed)."""
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def activemq_classic() -> Iterator[Any]:
    """A started ActiveMQ Classic 5.18.3 (AMQP on 127.0.0.1, login required), for the session.

    Example::

        def test_it(activemq_classic):
            pe.send(activemq_classic.address_url("orders"), "hi")
    """
    from ._others import ClassicBroker

    yield from _started(ClassicBroker())


@pytest.fixture(scope="session")
def qpid_broker_j() -> Iterator[Any]:
    """A started Qpid Broker-J 9.2.1 (AMQP 1.0 on 127.0.0.1, PLAIN login), for the session.

    Example::

        def test_it(qpid_broker_j):
            pe.send(qpid_broker_j.address_url("orders"), "hi")
    """
    from ._others import BrokerJ

    yield from _started(BrokerJ())


@pytest.fixture(scope="session")
def amqp_url(artemis: BrokerLike) -> str:
    """``amqp://user:password@host:port`` of the session's broker (no path), as a
    :class:`SecretURL`: its ``repr`` (in failure reports) hides the password.

    Example::

        def test_it(amqp_url):
            BlockingConnection(amqp_url)
    """
    return SecretURL(artemis.url)


@pytest.fixture
def amqp_address(request: pytest.FixtureRequest) -> str:
    """A queue name unique to this test: ``test-<sanitised test name>-<8 hex digits>``.

    Example::

        def test_it(amqp_url, amqp_address):
            send(f"{amqp_url}/queue://{amqp_address}", "hi")
    """
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-._")[:60]
    return f"test-{name or 'x'}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def _broker_factory() -> Iterator[Callable[..., ArtemisBroker]]:
    """A function starting ``ArtemisBroker(**kwargs)``; every broker it started is stopped
    when the block ends."""
    started: List[ArtemisBroker] = []

    def factory(**kwargs: Any) -> ArtemisBroker:
        kwargs.setdefault("java_options", QUICK_START_JAVA_OPTIONS)
        broker = ArtemisBroker(**kwargs)
        started.append(broker)
        broker.start()
        return broker

    try:
        yield factory
    finally:
        for broker in reversed(started):
            broker.stop()


@pytest.fixture
def artemis_factory() -> Iterator[Callable[..., ArtemisBroker]]:
    """Start extra brokers: ``artemis_factory(**ArtemisBroker kwargs)`` returns a started one.

    ``java_options`` defaults to :data:`~proton_easy.testing.QUICK_START_JAVA_OPTIONS`.
    Every broker it started is stopped (and its temporary folder removed) at teardown.

    Example::

        def test_crash(artemis_factory):
            broker = artemis_factory(queues=["jobs"])
            broker.kill()
            broker.restart()
    """
    with _broker_factory() as factory:
        yield factory


@pytest.fixture(scope="module")
def artemis_module_factory() -> Iterator[Callable[..., ArtemisBroker]]:
    """:func:`artemis_factory` for a module-scoped fixture: the brokers it starts are stopped
    when the test module ends, so one broker (about 5 s to start) serves the module's tests.

    Example::

        @pytest.fixture(scope="module")
        def strict_broker(artemis_module_factory):
            return artemis_module_factory(
                queues=["jobs"], users={"reader": ("pw", ["viewer"])},
                permissions={"#": {"viewer": ["consume", "browse"]}})

        def test_reader_may_not_send(strict_broker):
            with pytest.raises(pe.Unauthorized):
                pe.send(strict_broker.url_for("reader") + "/jobs", "hi")
    """
    with _broker_factory() as factory:
        yield factory


@contextlib.contextmanager
def _group_factory(kind: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """A function starting ``kind(*args, **kwargs)`` (a pair or a cluster); every one it
    started is stopped when the block ends."""
    started: List[Any] = []

    def factory(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("java_options", QUICK_START_JAVA_OPTIONS)
        group = kind(*args, **kwargs)
        started.append(group)
        group.start()
        return group

    try:
        yield factory
    finally:
        for group in reversed(started):
            group.stop()


@pytest.fixture(scope="session")
def artemis_ha() -> Iterator[ArtemisHAPair]:
    """The session's HA pair: a started ``ArtemisHAPair(mode="shared-store")`` (primary and
    backup on loopback). A test that kills a node should call ``fail_back()`` at its end.

    Example::

        def test_survives_failover(artemis_ha):
            with pe.Client(artemis_ha.url) as client:     # learns the backup
                client.send("orders", "a")
                artemis_ha.primary.kill()
                client.send("orders", "b")                # on the backup
            artemis_ha.fail_back()
    """
    yield from _started(ArtemisHAPair(java_options=QUICK_START_JAVA_OPTIONS))


@pytest.fixture(scope="session")
def artemis_cluster() -> Iterator[ArtemisCluster]:
    """The session's cluster: a started ``ArtemisCluster(size=2)`` (message load balancing
    on demand, redistribution).

    Example::

        def test_redistribution(artemis_cluster):
            first, second = artemis_cluster.nodes
            pe.send(first.address_url("jobs"), "a")
            assert [m.body for m in pe.receive(second.address_url("jobs"))] == ["a"]
    """
    yield from _started(ArtemisCluster(java_options=QUICK_START_JAVA_OPTIONS))


@pytest.fixture
def artemis_ha_factory() -> Iterator[Callable[..., ArtemisHAPair]]:
    """Start HA pairs: ``artemis_ha_factory(mode="replication", **kwargs)`` returns a started
    :class:`~proton_easy.testing.ArtemisHAPair`; all are stopped at teardown.

    Example::

        def test_replica(artemis_ha_factory):
            pair = artemis_ha_factory("replication", queues=["jobs"])
    """
    with _group_factory(ArtemisHAPair) as factory:
        yield factory


@pytest.fixture(scope="module")
def artemis_ha_module_factory() -> Iterator[Callable[..., ArtemisHAPair]]:
    """:func:`artemis_ha_factory` for module-scoped fixtures (a pair takes 10-20 s to start).

    Example::

        @pytest.fixture(scope="module", params=["shared-store", "replication"])
        def pair(request, artemis_ha_module_factory):
            return artemis_ha_module_factory(request.param)
    """
    with _group_factory(ArtemisHAPair) as factory:
        yield factory


@pytest.fixture
def artemis_cluster_factory() -> Iterator[Callable[..., ArtemisCluster]]:
    """Start clusters: ``artemis_cluster_factory(size=3, **kwargs)`` returns a started
    :class:`~proton_easy.testing.ArtemisCluster`; all are stopped at teardown.

    Example::

        def test_three(artemis_cluster_factory):
            cluster = artemis_cluster_factory(size=3)
    """
    with _group_factory(ArtemisCluster) as factory:
        yield factory


@pytest.fixture(scope="module")
def artemis_cluster_module_factory() -> Iterator[Callable[..., ArtemisCluster]]:
    """:func:`artemis_cluster_factory` for module-scoped fixtures.

    Example::

        @pytest.fixture(scope="module")
        def cluster(artemis_cluster_module_factory):
            return artemis_cluster_module_factory(size=2, queues=["jobs"])
    """
    with _group_factory(ArtemisCluster) as factory:
        yield factory


def pytest_assertrepr_compare(config: pytest.Config, op: str, left: object,
                              right: object) -> Optional[List[str]]:
    """A failed comparison with a :class:`SecretURL` explains itself by ``repr`` (password
    hidden), not by pytest's text diff of the two strings (which would show it)."""
    if isinstance(left, SecretURL) or isinstance(right, SecretURL):
        return [f"{left!r} {op} {right!r}",
                "(a URL with credentials: its password is not shown)"]
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """Under ``PROTON_EASY_NO_SKIP=1``, report a skipped test as failed."""
    outcome = yield
    if not _no_skip():
        return
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, and PROTON_EASY_NO_SKIP=1 makes skips fail: {reason}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under ``PROTON_EASY_NO_SKIP=1``, fail the run if anything (e.g. a module) was skipped."""
    if not _no_skip() or exitstatus != 0:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Print how long each broker of the session took to start, and the skip policy verdict."""
    if STARTUPS:
        terminalreporter.section("proton_easy: Artemis startup times")
        for rec in STARTUPS:
            what = "restart" if rec.restart else "start"
            create = ""
            if rec.create_seconds is not None:
                create = f" (of which artemis create {rec.create_seconds:.1f} s)"
            terminalreporter.write_line(
                f"Artemis {ARTEMIS_VERSION} {rec.mode} {what} on port {rec.port}: "
                f"ready in {rec.seconds:.1f} s{create}"
            )
    url = os.environ.get("PROTON_EASY_TEST_URL")
    if url:
        terminalreporter.write_line(f"proton_easy: tests used the broker at {_redact(url)}")
    if _no_skip() and terminalreporter.stats.get("skipped"):
        terminalreporter.write_line(
            "proton_easy: PROTON_EASY_NO_SKIP=1 and something was skipped: the run fails",
            red=True,
        )
