"""Test collection: the real-engine Docker tests run where the brokers run in Docker."""

from __future__ import annotations

from typing import List

from proton_easy.testing import resolve_mode

# test_docker.py talks to a Docker engine: it is collected when the session's brokers run
# in Docker (PROTON_EASY_BROKER=docker, or an engine answers), and not collected otherwise,
# so that a machine without Docker neither skips nor fails it.
collect_ignore: List[str] = [] if resolve_mode() == "docker" else ["test_docker.py"]
