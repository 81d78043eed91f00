"""A stand-in for testcontainers' DockerContainer: the Docker path of ArtemisBroker, checked
on machines without a Docker engine."""

from __future__ import annotations

import io
import sys
import tarfile
from typing import Any, Dict, List, Tuple


class FakeWrapped:
    """The docker-py container object behind a FakeContainer."""

    def __init__(self, owner: FakeContainer) -> None:
        self.owner, self.status = owner, "created"

    def reload(self) -> None:
        pass

    def kill(self) -> None:
        self.status = "exited"

    def stop(self, timeout: int = 10) -> None:
        self.status = "exited"

    def start(self) -> None:
        self.status = "running"
        self.owner.logs += "AMQ221007: Server is now active\n"

    def pause(self) -> None:
        self.status = "paused"

    def unpause(self) -> None:
        self.status = "running"

    def get_archive(self, path: str) -> Tuple[List[bytes], Dict[str, Any]]:
        """The files copied in, as a tar stream (like docker-py's)."""
        data = self.owner.files[path]
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as tar:
            info = tarfile.TarInfo(path.rsplit("/", 1)[1])
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        return [out.getvalue()], {}


class FakeContainer:
    """Records what the Docker path asks for; each start logs Artemis's ready line."""

    made: List[FakeContainer] = []

    def __init__(self, image: str) -> None:
        self.image = image
        self.env: Dict[str, str] = {}
        self.ports: Dict[str, Any] = {}  # "5672/tcp" -> ("127.0.0.1", host port)
        self.kwargs: Dict[str, Any] = {}
        self.files: Dict[str, bytes] = {}
        self.logs = ""
        self.wrapped = FakeWrapped(self)
        type(self).made.append(self)

    def with_env(self, key: str, value: str) -> FakeContainer:
        self.env[key] = value
        return self

    def with_bind_ports(self, container: int, host: int) -> FakeContainer:
        raise AssertionError("with_bind_ports publishes on every interface")

    def with_kwargs(self, **kwargs: Any) -> FakeContainer:
        self.kwargs = kwargs
        return self

    def with_copy_into_container(self, data: bytes, path: str) -> FakeContainer:
        self.files[path] = data
        return self

    def start(self) -> FakeContainer:
        self.wrapped.start()
        return self

    def get_container_host_ip(self) -> str:  # what testcontainers says where /.dockerenv is
        return "172.17.0.1"

    def get_wrapped_container(self) -> FakeWrapped:
        return self.wrapped

    def get_logs(self) -> Any:  # as if the image echoed the keystore password it was given
        echo = ""
        if "PROTON_EASY_KEYSTORE_PASSWORD" in self.env:
            echo = f"KEYSTORE={self.env['PROTON_EASY_KEYSTORE_PASSWORD']}\n"
        return (echo + self.logs).encode(), b""

    def stop(self) -> None:
        self.wrapped.status = "removed"


class FakeClient:
    """The docker-py client: only closed."""

    def close(self) -> None:
        pass


def install(monkeypatch: Any) -> type[FakeContainer]:
    """Make ArtemisBroker's Docker path use a fresh FakeContainer class (its ``made`` lists
    the containers made) as if an engine answered."""
    from proton_easy.testing import _broker as broker_module
    from proton_easy.testing import _docker as docker_module

    fake = type("FakeContainer", (FakeContainer,), {"made": []})
    module = type(sys)("testcontainers.core.container")
    module.DockerContainer = fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "testcontainers.core.container", module)
    monkeypatch.setattr(docker_module, "docker_available", lambda refresh=False: True)
    monkeypatch.setattr(docker_module, "docker_client", lambda timeout=600: FakeClient())
    monkeypatch.setattr(docker_module, "ensure_image",
                        lambda client=None: docker_module.DOCKER_IMAGE)
    monkeypatch.setattr(docker_module, "_before_first_container", lambda client: None)
    monkeypatch.setattr(broker_module, "STARTUPS", [])  # keep the fake out of the summary
    return fake
