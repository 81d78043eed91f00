"""proton_easy.testing: the Artemis broker, its Docker description, and the pytest plugin."""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import List

import pytest
from proton import Message
from proton.utils import BlockingConnection

from proton_easy import testing
from proton_easy.testing import (
    ARTEMIS_VERSION,
    ArtemisBroker,
    BrokerStartError,
    BrokerUnavailable,
    ExternalBroker,
    docker_container_config,
)
from proton_easy.testing import _broker as broker_module
from proton_easy.testing import _docker as docker_module

from . import fake_docker
from .logins import without_user

pytest_plugins = ["pytester"]

# for pytest runs inside a test: no cache, and no warning about proton_easy being imported
_INNER_ARGS = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")


def _send(url: str, address: str, bodies: List[object], durable: bool = True) -> None:
    conn = BlockingConnection(url, timeout=20)
    try:
        sender = conn.create_sender(address)
        for body in bodies:
            sender.send(Message(body=body, durable=durable))  # waits for the broker's accept
    finally:
        conn.close()


def _receive(url: str, address: str, count: int, timeout: float = 10) -> List[object]:
    conn = BlockingConnection(url, timeout=20)
    got: List[object] = []
    try:
        receiver = conn.create_receiver(address)
        for _ in range(count):
            msg = receiver.receive(timeout=timeout)
            receiver.accept()
            got.append(msg.body)
    finally:
        conn.close()
    return got


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


# -- against the session's broker -------------------------------------------------------------
def test_raw_proton_send_then_receive_through_queue_prefix(
    artemis, amqp_url, amqp_address, record_property
):
    # Sent before any receiver exists: queue:// makes the new address anycast, so it waits.
    _send(amqp_url, f"queue://{amqp_address}", ["one", {"two": 2}])
    assert _receive(amqp_url, f"queue://{amqp_address}", 2) == ["one", {"two": 2}]
    assert amqp_url == artemis.url
    if isinstance(artemis, ArtemisBroker):
        record_property("artemis_startup_seconds", artemis.startup_seconds)
        sys.stderr.write(f"\nsession broker ready in {artemis.startup_seconds:.1f} s\n")


def test_amqp_url_and_address_fixtures(artemis, amqp_url, amqp_address, request):
    assert re.fullmatch(r"amqps?://[^/]+:\d+", amqp_url)
    assert amqp_url.endswith(f"{artemis.host}:{artemis.port}")
    assert artemis.address_url(amqp_address) == f"{amqp_url}/{amqp_address}"
    assert re.fullmatch(r"test-test_amqp_url_and_address_fixtures-[0-9a-f]{8}", amqp_address)


def test_wrong_password_is_refused(artemis):
    if not artemis.user:
        pytest.xfail("the external broker's URL has no credentials")
    with pytest.raises(Exception, match="unauthorized|Authentication"):
        BlockingConnection(
            f"amqp://{artemis.user}:wrong@{artemis.host}:{artemis.port}", timeout=10
        )


def test_repr_never_shows_the_password(artemis):
    if artemis.password:
        assert artemis.password not in without_user(repr(artemis), artemis.user)
    broker = ArtemisBroker(mode="local", password="very-secret-pw")
    assert "very-secret-pw" not in repr(broker)
    config = docker_container_config(user="u", password="very-secret-pw")
    assert "very-secret-pw" not in repr(config)


# -- brokers of their own -----------------------------------------------------------------------
def test_durable_messages_survive_kill_and_restart(artemis_factory):
    broker = artemis_factory(queues=["orders"])  # local, or Docker where it runs
    local = broker.mode == "local"
    port, pid = broker.port, broker.pid
    sys.stderr.write(f"\nown broker ready in {broker.startup_seconds:.1f} s\n")

    # a pre-created anycast queue keeps messages sent to its bare name
    _send(broker.url, "orders", ["o1", "o2"])
    _send(broker.url, "queue://crash", [1, 2, 3])
    broker.kill()
    assert not broker.running
    assert not _port_open(broker.host, port)
    if local:
        with pytest.raises(OSError):
            os.kill(pid, 0)

    broker.restart()
    assert broker.port == port and (broker.pid != pid or not local)
    assert _receive(broker.url, "queue://crash", 3) == [1, 2, 3]
    assert _receive(broker.url, "orders", 2) == ["o1", "o2"]

    # restart while running: a graceful stop, then the same port and data
    _send(broker.url, "queue://graceful", ["kept"])
    broker.restart()
    assert broker.port == port
    assert _receive(broker.url, "queue://graceful", 1) == ["kept"]
    assert "AMQ221007" in broker.log_tail(200)

    instance = broker.instance_dir
    broker.stop()
    assert not broker.running and not _port_open(broker.host, port)
    if local:
        assert instance is not None and not instance.exists()


def test_startup_error_carries_the_log_tail(tmp_path):
    broker = ArtemisBroker(mode="local", java_options=["-XX:+NoSuchJvmOptionForProtonEasy"])
    with pytest.raises(BrokerStartError) as info:
        broker.start()
    message = str(info.value)
    assert "NoSuchJvmOptionForProtonEasy" in message and "before it was ready" in message
    assert "NoSuchJvmOptionForProtonEasy" in info.value.log_tail
    assert not broker.running
    broker.stop()


def test_startup_timeout_kills_the_broker():
    broker = ArtemisBroker(mode="local", startup_timeout=0.5)
    with pytest.raises(BrokerStartError, match="not ready .* within 0.5 s"):
        broker.start()
    assert not broker.running
    broker.stop()


def test_busy_fixed_port_is_reported_before_starting_java():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        began = time.monotonic()
        with pytest.raises(BrokerStartError, match=f"port 127.0.0.1:{port} is already in use"):
            ArtemisBroker(mode="local", port=port).start()
        assert time.monotonic() - began < 2


# -- errors and configuration without a broker --------------------------------------------------
def test_artemis_home_pointing_nowhere_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("ARTEMIS_HOME", str(tmp_path / "nothing-here"))
    broker = ArtemisBroker(mode="local")
    with pytest.raises(BrokerUnavailable, match="ARTEMIS_HOME=.*nothing-here.*no bin/artemis"):
        broker.start()
    assert isinstance(BrokerUnavailable("x"), RuntimeError)


def test_missing_java_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    monkeypatch.setattr("proton_easy.testing._distribution._java_checked", None)
    with pytest.raises(BrokerUnavailable, match="Java 17 or newer: install"):
        ArtemisBroker(mode="local").start()


def test_missing_maven_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("ARTEMIS_HOME", raising=False)
    monkeypatch.setenv("PROTON_EASY_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    with pytest.raises(BrokerUnavailable, match="Install Maven"):
        testing.artemis_home()


def test_docker_container_config_needs_no_engine():
    cfg = docker_container_config(user="app", password="pw", queues=["orders", "jobs"])
    assert cfg.image == f"apache/activemq-artemis:{ARTEMIS_VERSION}"
    assert cfg.env["ARTEMIS_USER"] == "app" and cfg.env["ARTEMIS_PASSWORD"] == "pw"
    assert cfg.env["ANONYMOUS_LOGIN"] == "false"
    extra = cfg.env["EXTRA_ARGS"].split()
    assert extra[extra.index("--queues") + 1] == "orders,jobs"
    assert "--no-web" in extra and "--java-memory" in extra
    assert "anycastPrefix=queue://" in cfg.env["JAVA_ARGS_APPEND"]
    assert "multicastPrefix=topic://" in cfg.env["JAVA_ARGS_APPEND"]
    assert cfg.amqp_port == 5672 and 5672 in cfg.ports
    assert cfg.ready_log_line == "AMQ221007"


def test_docker_mode_without_engine_says_what_to_install(monkeypatch):
    monkeypatch.setattr(docker_module, "docker_available", lambda refresh=False: False)
    broker = ArtemisBroker(mode="docker")
    with pytest.raises(BrokerUnavailable, match="Docker engine|testcontainers"):
        broker.start()


def test_docker_backend_waits_for_the_ready_line_each_start(monkeypatch):
    """The container flow with a stand-in for testcontainers (no engine needed)."""

    FakeContainer = fake_docker.install(monkeypatch)

    broker = ArtemisBroker(mode="docker", user="app", password="pw", queues=["q"])
    broker.start()
    (container,) = FakeContainer.made
    assert container.image == docker_module.DOCKER_IMAGE
    assert container.env == docker_container_config(user="app", password="pw", queues=["q"]).env
    # published on the loopback only, and the URL names 127.0.0.1 whatever testcontainers says
    assert container.ports == {"5672/tcp": ("127.0.0.1", broker.port)}
    assert broker.url == f"amqp://app:pw@127.0.0.1:{broker.port}"
    assert container.kwargs["network"] == "bridge"
    labels = container.kwargs["labels"]
    assert labels[docker_module.OWNER_LABEL].split("/")[1] == str(os.getpid())
    assert labels[docker_module.SESSION_LABEL] == docker_module.SESSION_ID
    broker.kill()
    assert not broker.running
    broker.restart()
    assert broker.running and container.logs.count("AMQ221007") == 2
    broker.stop()
    assert container.wrapped.status == "removed"


def test_mode_selection(monkeypatch):
    monkeypatch.setattr(broker_module, "docker_available", lambda refresh=False: False)
    monkeypatch.delenv("PROTON_EASY_BROKER", raising=False)
    assert testing.resolve_mode() == "local"
    assert testing.resolve_mode("docker") == "docker"
    monkeypatch.setattr(broker_module, "docker_available", lambda refresh=False: True)
    assert testing.resolve_mode("auto") == "docker"
    monkeypatch.setenv("PROTON_EASY_BROKER", "local")
    assert testing.resolve_mode() == "local"
    assert testing.resolve_mode("docker") == "docker"  # an explicit choice wins
    monkeypatch.setenv("PROTON_EASY_BROKER", "kubernetes")
    with pytest.raises(ValueError, match="PROTON_EASY_BROKER"):
        testing.resolve_mode()
    with pytest.raises(ValueError):
        testing.resolve_mode("vm")


def test_bad_arguments_fail_before_any_io():
    with pytest.raises(ValueError, match="queue name"):
        ArtemisBroker(mode="local", queues=["a,b"])
    with pytest.raises(ValueError, match="password"):
        ArtemisBroker(mode="local", password="has space")
    with pytest.raises(RuntimeError, match="start"):
        ArtemisBroker(mode="local").url  # noqa: B018


def test_users_permissions_and_settings_are_checked_before_any_io():
    secret = "pw-never-shown-42"
    bad = [
        (ValueError, "main user", dict(users={"admin": (secret, "x")})),
        (ValueError, "password of user 'r'", dict(users={"r": ("has space", "x")})),
        (ValueError, "password of user 'r'", dict(users={"r": ("", "x")})),
        (TypeError, "password, roles", dict(users={"r": secret})),
        (ValueError, "user 'a=b'", dict(users={"a=b": (secret, "x")})),
        (ValueError, "role 'a,b'", dict(users={"r": (secret, ["a,b"])})),
        (ValueError, "address match 'a b'", dict(permissions={"a b": {"x": "send"}})),
        (ValueError, "unknown permission 'write'", dict(permissions={"#": {"x": "write"}})),
        (TypeError, "map roles", dict(permissions={"#": ["send"]})),
        (ValueError, "did you mean 'autoCreateQueues'",
         dict(address_settings={"#": {"autoCreateQueue": False}})),
        (TypeError, "bool, a number or a string",
         dict(address_settings={"#": {"maxDeliveryAttempts": None}})),
        (ValueError, "one line", dict(address_settings={"#": {"deadLetterAddress": "a\nb"}})),
    ]
    for cls, text, kwargs in bad:
        with pytest.raises(cls, match=re.escape(text)) as info:
            ArtemisBroker(mode="local", user="admin", **kwargs)
        assert secret not in str(info.value) and "has space" not in str(info.value)


def test_access_renders_artemis_configuration():
    import hashlib

    from proton_easy.testing._access import Access

    access = Access.build(
        users={"reader": ("r-pw", "viewer"), "both": ("b-pw", ["viewer", "amq"])},
        permissions={"orders.#": {"viewer": ["consume", "browse", "consume"],
                                  "amq": ["view"]}},
        address_settings={"strict.#": {"auto-create-queues": False, "max_delivery_attempts": 3,
                                       "deadLetterAddress": "DLQ", "IDCacheSize": 10}},
        main_user="admin",
    )
    assert bool(access) and not Access.build()
    assert "r-pw" not in repr(access) and "reader" in repr(access)
    lines = access.broker_properties().splitlines()
    amq = [line for line in lines if line.startswith('securityRoles."orders.#".amq.')]
    assert len(amq) == 11  # every permission of `artemis create`'s amq, plus view
    assert lines[len(amq):] == [
        'securityRoles."orders.#".viewer.consume=true',
        'securityRoles."orders.#".viewer.browse=true',
        'addressSettings."strict.#".autoCreateQueues=false',
        'addressSettings."strict.#".maxDeliveryAttempts=3',
        'addressSettings."strict.#".deadLetterAddress=DLQ',
        'addressSettings."strict.#".IDCacheSize=10',
    ]
    users = access.users_properties("admin", "a-pw").splitlines()[1:]
    assert [line.split(" = ")[0] for line in users] == ["admin", "reader", "both"]
    for line, password in zip(users, ["a-pw", "r-pw", "b-pw"]):
        iterations, salt, digest = line.split(" = ")[1][len("ENC("):-1].split(":")
        assert hashlib.pbkdf2_hmac("sha1", password.encode(), bytes.fromhex(salt),
                                   int(iterations), dklen=64).hex().upper() == digest
    assert access.roles_properties("admin").splitlines()[1:] == [
        "amq = admin,both", "viewer = reader,both"]


def test_docker_container_config_carries_users_and_permissions():
    from proton_easy.testing._access import Access
    from proton_easy.testing._tls_config import CONTAINER_ETC_OVERRIDE, instance_files

    access = Access.build(users={"reader": ("r-secret-pw", ["viewer"])},
                          permissions={"#": {"viewer": ["consume"]}},
                          address_settings={"strict.#": {"autoCreateQueues": False}})
    assert docker_container_config(user="app", password="pw").files == {}
    cfg = docker_container_config(user="app", password="pw", access=access, tls=True)
    names = {path.rsplit("/", 1)[1] for path in cfg.files}
    assert all(path.startswith(CONTAINER_ETC_OVERRIDE + "/") for path in cfg.files)
    assert names == {"broker.properties", "login.config", "cert-users.properties",
                     "cert-roles.properties", "artemis-users.properties",
                     "artemis-roles.properties"}
    props = cfg.files[f"{CONTAINER_ETC_OVERRIDE}/broker.properties"]
    assert "acceptorConfigurations.amqps-mutual.params.port=5673" in props  # TLS kept
    assert 'securityRoles."#".viewer.consume=true' in props
    assert 'addressSettings."strict.#".autoCreateQueues=false' in props
    for text in (repr(cfg), *cfg.files.values()):
        assert "r-secret-pw" not in text
    # the local path gets the very same texts (bar the hashes' random salts)
    local = instance_files(user="app", password="pw", access=access)
    assert set(local) == {"broker.properties", "artemis-users.properties",
                          "artemis-roles.properties"}
    assert local["broker.properties"] == instance_files(
        user="app", password="pw", access=access, plain_prefixes=True)["broker.properties"]
    assert local["artemis-roles.properties"] == cfg.files[
        f"{CONTAINER_ETC_OVERRIDE}/artemis-roles.properties"]


def test_docker_mode_copies_the_access_files_into_the_container(monkeypatch):
    FakeContainer = fake_docker.install(monkeypatch)

    broker = ArtemisBroker(mode="docker", user="app", password="pw",
                           users={"reader": ("r-pw-7", "viewer")},
                           permissions={"#": {"viewer": "consume"}})
    broker.start()
    (container,) = FakeContainer.made
    override = "/var/lib/artemis-instance/etc-override/"
    assert sorted(container.files) == [override + name for name in (
        "artemis-roles.properties", "artemis-users.properties", "broker.properties")]
    users = container.files[override + "artemis-users.properties"].decode()
    assert users.count("ENC(1024:") == 2 and "r-pw-7" not in users
    assert broker.url_for("reader") == f"amqp://reader:r-pw-7@127.0.0.1:{broker.port}"
    assert broker.users == {"app": ("amq",), "reader": ("viewer",)}
    assert "r-pw-7" not in repr(broker)
    broker.stop()
    assert container.wrapped.status == "removed"


def test_external_broker_from_url():
    ext = ExternalBroker("amqp://us%40er:p%3Ass@broker.example:5673/ignored")
    assert (ext.host, ext.port, ext.user, ext.password) == (
        "broker.example", 5673, "us@er", "p:ss",
    )
    assert ext.url == "amqp://us%40er:p%3Ass@broker.example:5673"
    assert ext.address_url("q") == ext.url + "/q"
    assert "p%3Ass" not in repr(ext)
    assert ExternalBroker("amqps://h").port == 5671
    with pytest.raises(RuntimeError):
        ext.kill()


# -- the plugin, in a pytest of its own ---------------------------------------------------------
def test_plugin_uses_an_external_broker_from_the_environment(pytester, monkeypatch):
    monkeypatch.setenv("PROTON_EASY_TEST_URL", "amqp://u:p@example.invalid:5999")
    monkeypatch.setenv("PROTON_EASY_TEST_URL_CHECK", "0")  # no broker there: values only
    pytester.makepyfile(
        """
        def test_fixtures(artemis, amqp_url, amqp_address):
            assert artemis.mode == "external"
            assert (artemis.host, artemis.port, artemis.user) == ("example.invalid", 5999, "u")
            assert amqp_url == "amqp://u:p@example.invalid:5999"
            assert amqp_address.startswith("test-test_fixtures-")
        """
    )
    result = pytester.runpytest_inprocess(*_INNER_ARGS)
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("no_skip", ["", "1"])
def test_skips_fail_the_run_under_proton_easy_no_skip(pytester, monkeypatch, no_skip):
    monkeypatch.setenv("PROTON_EASY_NO_SKIP", no_skip)
    pytester.makepyfile(
        test_a="""
        import pytest

        def test_skipped():
            pytest.skip("no broker here")

        @pytest.mark.xfail(reason="known")
        def test_xfail():
            assert False

        def test_ok():
            pass
        """,
        test_b="""
        import pytest
        pytest.skip("whole module", allow_module_level=True)
        """,
    )
    result = pytester.runpytest_inprocess(*_INNER_ARGS)
    if no_skip:
        result.assert_outcomes(passed=1, failed=1, xfailed=1, skipped=1)
        assert result.ret == pytest.ExitCode.TESTS_FAILED
        result.stdout.fnmatch_lines(["*PROTON_EASY_NO_SKIP=1 makes skips fail*no broker here*"])
    else:
        result.assert_outcomes(passed=1, skipped=2, xfailed=1)
        assert result.ret == pytest.ExitCode.OK


def test_a_skipped_module_alone_fails_the_run_under_no_skip(pytester, monkeypatch):
    monkeypatch.setenv("PROTON_EASY_NO_SKIP", "1")
    pytester.makepyfile(
        test_a="def test_ok():\n    pass\n",
        test_b="import pytest\npytest.skip('whole module', allow_module_level=True)\n",
    )
    result = pytester.runpytest_inprocess(*_INNER_ARGS)
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*PROTON_EASY_NO_SKIP=1 and something was skipped*"])


def test_cli_run_passes_the_url_to_the_command(tmp_path):
    script = tmp_path / "show.py"
    script.write_text(
        "import os\n"
        "from proton import Message\n"
        "from proton.utils import BlockingConnection\n"
        "url = os.environ['PROTON_EASY_URL']\n"
        "c = BlockingConnection(url, timeout=20)\n"
        "c.create_sender('queue://cli').send(Message(body='via cli'))\n"
        "r = c.create_receiver('queue://cli')\n"
        "print('GOT', r.receive(timeout=10).body)\n"
        "r.accept(); c.close()\n"
    )
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "proton_easy.testing", "run", "--", sys.executable, str(script)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout
    assert "GOT via cli" in proc.stdout and "ready at 127.0.0.1:" in proc.stdout


# -- Docker mode's own parts, without an engine ---------------------------------------------
def test_docker_folder_holds_the_image_files_the_package_builds_from():
    from proton_easy.testing._image import IMAGE_FILES_DIR

    folder = Path(__file__).resolve().parent.parent / "docker" / "artemis"
    for name in ("Dockerfile", "docker-run.sh"):
        assert (folder / name).read_bytes() == (IMAGE_FILES_DIR / name).read_bytes(), name
    assert os.access(IMAGE_FILES_DIR / "docker-run.sh", os.X_OK)


def test_only_containers_of_gone_processes_on_this_host_are_stale(monkeypatch):
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    host = socket.gethostname()
    start = docker_module._process_start_time(os.getpid())
    assert docker_module._owner_gone(f"{host}/{child.pid}/1")            # exited
    assert not docker_module._owner_gone(f"{host}/{os.getpid()}/{start}")  # this process
    if start:  # Linux: a reused pid is told apart by its start time
        assert docker_module._owner_gone(f"{host}/{os.getpid()}/{int(start) + 1}")
    assert not docker_module._owner_gone(f"another-host/{child.pid}/1")  # not ours to judge
    assert not docker_module._owner_gone("garbage")


def test_the_reaper_is_disabled_when_its_image_is_not_available(monkeypatch):
    from testcontainers.core.config import testcontainers_config as tc_config

    monkeypatch.delenv("TESTCONTAINERS_RYUK_DISABLED", raising=False)
    monkeypatch.setattr(tc_config, "_ryuk_disabled", False)
    monkeypatch.setattr(docker_module, "image_present", lambda client, name: False)
    monkeypatch.setattr(docker_module, "try_pull", lambda client, name: False)
    assert docker_module.configure_reaper(object()) is False
    assert tc_config.ryuk_disabled is True
    monkeypatch.setattr(tc_config, "_ryuk_disabled", False)
    monkeypatch.setattr(docker_module, "try_pull", lambda client, name: True)
    assert docker_module.configure_reaper(object()) is True
    assert tc_config.ryuk_disabled is False
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")  # the user's word wins
    monkeypatch.setattr(tc_config, "_ryuk_disabled", True)
    assert docker_module.configure_reaper(object()) is False


def test_docker_pause_unpause_and_instance_files(monkeypatch):
    FakeContainer = fake_docker.install(monkeypatch)
    broker = ArtemisBroker(mode="docker", user="app", password="pw",
                           users={"reader": ("r-pw", "viewer")})
    broker.start()
    (container,) = FakeContainer.made
    broker.pause()
    assert container.wrapped.status == "paused" and broker.running
    broker.unpause()
    assert container.wrapped.status == "running"
    roles = broker.read_instance_file("etc-override/artemis-roles.properties")
    assert "viewer = reader" in roles
    broker.stop()


def test_a_failed_image_build_is_not_tried_again_by_each_broker(monkeypatch):
    from proton_easy.testing import _image as image_module

    builds = []

    def failing_build(**kwargs):
        builds.append(kwargs)
        raise BrokerUnavailable("debootstrap failed (exit 1)")

    monkeypatch.setattr(image_module, "_build_failed", [])
    monkeypatch.delenv("PROTON_EASY_DOCKER_IMAGE", raising=False)
    monkeypatch.setattr(image_module, "image_present", lambda client, name: False)
    monkeypatch.setattr(image_module, "try_pull", lambda client, name: False)
    monkeypatch.setattr(image_module, "build_image", failing_build)
    for _ in range(3):
        with pytest.raises(BrokerUnavailable, match="debootstrap failed"):
            image_module.ensure_image(client=object())
    assert len(builds) == 1
