"""Test collection: the real-engine Docker tests run where the brokers run in Docker."""

from __future__ import annotations

from typing import Any, List

from proton_easy.testing import resolve_mode

# test_docker.py talks to a Docker engine: it is collected when the session's brokers run
# in Docker (PROTON_EASY_BROKER=docker, or an engine answers), and not collected otherwise,
# so that a machine without Docker neither skips nor fails it.
collect_ignore: List[str] = [] if resolve_mode() == "docker" else ["test_docker.py"]


def pytest_collection_modifyitems(config: Any, items: List[Any]) -> None:
    """With the brokers in Docker, test_ha.py runs its tests marked ``ha_docker`` only: a
    kill -9 of each kind of pair with the backup learned, serve through a kill, a cluster's
    redistribution (``ha_docker(modes=[...])``: for those pair modes only). The others (the
    ``urls=`` variants, the cluster's other jobs) do not depend on where the nodes run more
    than these do, and run on the local distribution."""
    if resolve_mode() != "docker":
        return
    kept, dropped = [], []
    for item in items:
        (dropped if _ha_local_only(item) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def _ha_local_only(item: Any) -> bool:
    if not item.nodeid.split("::")[0].endswith("test_ha.py"):
        return False
    marker = item.get_closest_marker("ha_docker")
    if marker is None:
        return True
    modes = marker.kwargs.get("modes")
    callspec = getattr(item, "callspec", None)
    mode = callspec.params.get("pair") if callspec is not None else None
    return modes is not None and mode not in modes
