"""What the sdist and wheel carry: a licence, type information, and what the tests need."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest

from .procs import ROOT


def test_license_is_apache_2_and_declared_by_spdx() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["metadata"]["license"] == "Apache-2.0"
    assert "License ::" not in cfg["metadata"]["classifiers"]  # deprecated with SPDX
    assert "LICENSE" in cfg["metadata"]["license_files"]


def test_py_typed_is_shipped() -> None:
    assert (ROOT / "proton_easy" / "py.typed").exists()
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert "py.typed" in cfg["options.package_data"]["proton_easy"]


def test_sdist_carries_what_its_tests_need() -> None:
    manifest = (ROOT / "MANIFEST.in").read_text().split()
    for needed in ("LICENSE", "Makefile", "examples", "docker", "tests"):
        assert needed in manifest, needed


@pytest.mark.parametrize("when", ["missing", "before"])
def test_missing_build_tools_are_named_in_one_message(tmp_path: Path, when: str) -> None:
    # a PATH with python only: no compiler, no pkg-config; "before" runs up front in make's
    # install step, in a venv without proton (-I -S: this interpreter's proton is not seen)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python").symlink_to(sys.executable)
    proc = subprocess.run([str(bindir / "python"), "-I", "-S",
                           str(ROOT / "tools" / "check_build_deps.py"), when],
                          capture_output=True, text=True, env={"PATH": str(bindir)})
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("proton_easy:") == 1
    assert "a C compiler (gcc)" in proc.stderr and "pkg-config" in proc.stderr
    assert "apt-get install gcc python3-dev pkg-config libssl-dev" in proc.stderr
    assert "dnf install" in proc.stderr and "brew install" in proc.stderr


def test_the_up_front_check_passes_where_proton_is_installed(tmp_path: Path) -> None:
    # this interpreter has proton; no compiler on PATH does not matter then
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "check_build_deps.py"),
                           "before"], capture_output=True, text=True, env={"PATH": str(tmp_path)})
    assert proc.returncode == 0 and not proc.stderr, proc.stderr


def test_make_checks_build_tools_before_installing() -> None:
    makefile = (ROOT / "Makefile").read_text()
    step = makefile.split("$(STAMP): ", 1)[1]
    assert step.index("check_build_deps.py before") < step.index("pip install")

