"""Docker mode against a real engine: the image, the loopback-only ports, the clean-up.

Collected only when brokers run in Docker (see conftest.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any, Callable, Iterator

import pytest

import proton_easy as pe
from proton_easy.testing import ArtemisBroker
from proton_easy.testing import _docker as docker_module
from proton_easy.testing import _image as image_module

from .procs import ROOT, env


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    c = image_module.docker_client()
    yield c
    c.close()


def _ours(client: Any) -> Any:
    return client.containers.list(all=True, filters={"label": docker_module.OWNER_LABEL})


def test_the_image_is_made_once_and_kept(client: Any) -> None:
    first = image_module.ensure_image(client=client)
    image = client.images.get(first)
    if first == image_module.OFFICIAL_IMAGE:  # a registry or a loaded image gave it
        assert first.endswith(":2.40.0")
        return
    assert first.startswith(f"{image_module.LOCAL_REPOSITORY}:2.40.0-")
    # tagged by the hash of its inputs, which also labels it: nothing is rebuilt until they change
    inputs = image.labels[image_module.INPUTS_LABEL]
    assert first.endswith(inputs[:12])
    assert image_module.build_image(client=client) == first
    assert client.images.get(first).id == image.id
    # laid out like the official image
    config = image.attrs["Config"]
    assert config["User"] == "artemis"
    assert config["WorkingDir"] == "/var/lib/artemis-instance"
    assert "/var/lib/artemis-instance" in (config.get("Volumes") or {})
    assert config["Entrypoint"] == ["/docker-run.sh"] and config["Cmd"] == ["run"]
    names = {e.split("=", 1)[0] for e in config["Env"]}
    assert {"ARTEMIS_USER", "ARTEMIS_PASSWORD", "ANONYMOUS_LOGIN", "EXTRA_ARGS"} <= names


def test_a_container_broker_listens_on_the_loopback_only(
        artemis_factory: Callable[..., ArtemisBroker], client: Any) -> None:
    broker = artemis_factory(mode="docker", queues=["orders"], tls=True)
    assert broker.host == "127.0.0.1" and broker.url.startswith("amqp://admin:")
    container = client.containers.get(broker._backend._container.get_wrapped_container().id)
    bindings = container.attrs["HostConfig"]["PortBindings"]
    assert set(bindings) == {"5672/tcp", "5671/tcp", "5673/tcp"}
    published = {port: [(b["HostIp"], int(b["HostPort"])) for b in binds]
                 for port, binds in bindings.items()}
    assert published == {"5672/tcp": [("127.0.0.1", broker.port)],
                         "5671/tcp": [("127.0.0.1", broker.tls_port)],
                         "5673/tcp": [("127.0.0.1", broker.mutual_tls_port)]}
    assert container.labels[docker_module.OWNER_LABEL].split("/")[1] == str(os.getpid())
    # the broker runs as the image's user 1001 in the official image's instance folder
    exit_code, out = container.exec_run(["id", "-u"])
    assert exit_code == 0 and out.decode().strip() == "1001"
    assert "securityDomain=proton-easy-cert" in broker.read_instance_file(
        "etc/broker.properties")  # etc-override reached etc/
    pe.send(broker.address_url("orders"), "plain")
    pe.send(broker.tls_url + "/orders", "tls", tls=broker.client_tls())
    got = pe.receive(broker.address_url("orders"), count=2, timeout=10)
    assert sorted(m.body for m in got) == ["plain", "tls"]
    assert broker.password not in broker.log_tail(400)


_STARTER = textwrap.dedent("""
    import sys
    from proton_easy.testing import ArtemisBroker
    broker = ArtemisBroker(mode="docker", java_options=["-XX:TieredStopAtLevel=1"]).start()
    print(broker._backend._container.get_wrapped_container().id, flush=True)
    if sys.argv[1] == "wait":
        sys.stdin.read()   # killed by the test while waiting here
    # "exit": leave without stop(); the clean-up at exit removes the container
""")


def _start_in_child(how: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", _STARTER, how], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env())
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line:
        proc.kill()
        raise AssertionError(f"the child did not start a broker: {proc.communicate()[1]}")
    return proc, line


def test_containers_of_a_killed_process_are_removed_next_time(client: Any) -> None:
    proc, container_id = _start_in_child("wait")
    assert client.containers.get(container_id).status == "running"
    proc.send_signal(signal.SIGKILL)  # like a killed pytest: no atexit, no finalizer
    proc.wait(timeout=30)
    proc.communicate()
    ids = [c.id for c in _ours(client)]
    assert container_id in ids  # left behind ...
    assert docker_module.remove_stale_containers(client) >= 1  # ... until the next session
    assert container_id not in [c.id for c in _ours(client)]
    # containers of live processes (this one's included) are never taken
    assert docker_module.remove_stale_containers(client) == 0


def test_a_process_that_forgets_stop_leaves_no_container(client: Any) -> None:
    proc, container_id = _start_in_child("exit")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    deadline = time.monotonic() + 10
    while container_id in [c.id for c in _ours(client)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert container_id not in [c.id for c in _ours(client)]


def test_the_image_command_names_the_image_brokers_run(client: Any) -> None:
    out = subprocess.run([sys.executable, "-m", "proton_easy.testing", "image", "--no-pull"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT, env=env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == image_module.ensure_image(client=client, pull=False)
    assert client.images.get(out.stdout.strip())
