"""Finding, downloading and unpacking the Artemis distribution, and finding Java.

The distribution is the Maven Central artifact ``org.apache.activemq:apache-artemis``
(``tar.gz``, classifier ``bin``), fetched with the ordinary ``mvn`` client and unpacked
into a cache folder shared by every checkout and virtualenv of the machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Iterator, Optional

from ._errors import BrokerUnavailable

log = logging.getLogger("proton_easy.testing")

#: The one Artemis version this module runs, locally and in Docker.
ARTEMIS_VERSION = "2.40.0"

_TARBALL = f"apache-artemis-{ARTEMIS_VERSION}-bin.tar.gz"
_TARBALL_SHA512 = (
    "270a00dc3028fb3b93c6aa09aa3e40fbe76015029e5308e0aac241589299a72d"
    "ac9bb50a10e7e86ad66185e2d8bc7224626810df12f1ee05694322054ad32700"
)
_MAVEN_ARTIFACT = f"org.apache.activemq:apache-artemis:{ARTEMIS_VERSION}:tar.gz:bin"
_MAVEN_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy"
_MIN_JAVA = 17


def cache_dir() -> Path:
    """Return the folder that holds the downloaded and unpacked Artemis distribution.

    ``$PROTON_EASY_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/proton_easy``, else
    ``~/.cache/proton_easy``.

    Example::

        >>> cache_dir().name
        'proton_easy'
    """
    explicit = os.environ.get("PROTON_EASY_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(base).expanduser() / "proton_easy"


def _valid_home(path: Path) -> bool:
    return (path / "bin" / "artemis").is_file() and (path / "lib").is_dir()


def artemis_home(fetch: bool = True) -> Path:
    """Return an Artemis installation folder, downloading it first if needed.

    ``$ARTEMIS_HOME`` wins when set (and must hold ``bin/artemis``). Otherwise the
    distribution is looked up in :func:`cache_dir`; when absent and ``fetch`` is true it
    is downloaded with Maven, checked against a pinned SHA-512 and unpacked. Concurrent
    callers (pytest-xdist workers, two checkouts) are serialised by a file lock, and the
    unpacked folder appears atomically (unpacked aside, then renamed).

    Raises :class:`BrokerUnavailable` when ``$ARTEMIS_HOME`` is wrong, or when the
    download is needed but Maven is missing or fails.

    Example::

        home = artemis_home()
        print(home / "bin" / "artemis")
    """
    env_home = os.environ.get("ARTEMIS_HOME")
    if env_home:
        path = Path(env_home).expanduser()
        if not _valid_home(path):
            raise BrokerUnavailable(
                f"ARTEMIS_HOME={env_home} does not hold an Artemis distribution "
                f"(no bin/artemis there). Point it at an unpacked "
                f"apache-artemis-{ARTEMIS_VERSION} folder, or unset it to let proton_easy "
                f"download Artemis {ARTEMIS_VERSION} into {cache_dir()}."
            )
        return path
    cache = cache_dir()
    home = cache / f"apache-artemis-{ARTEMIS_VERSION}"
    if _valid_home(home):
        return home
    if not fetch:
        raise BrokerUnavailable(
            f"Artemis {ARTEMIS_VERSION} is not in {cache}; run "
            f"`python -m proton_easy.testing fetch` or set ARTEMIS_HOME."
        )
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".lock"):
        if _valid_home(home):  # another process finished while we waited
            return home
        tarball = _download(cache)
        _unpack(tarball, cache, home)
    return home


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (a no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sha512(path: Path) -> str:
    digest = hashlib.sha512()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(cache: Path) -> Path:
    """Return the checked tarball in ``cache/dl``, fetching it with Maven when absent."""
    dl = cache / "dl"
    dl.mkdir(parents=True, exist_ok=True)
    tarball = dl / _TARBALL
    if tarball.is_file():
        if _sha512(tarball) == _TARBALL_SHA512:
            return tarball
        log.warning("discarding %s: its SHA-512 does not match", tarball)
        tarball.unlink()
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerUnavailable(
            f"Artemis {ARTEMIS_VERSION} is not in the cache ({cache}) and Maven is not "
            f"installed to download it. Install Maven (e.g. `apt-get install maven`, "
            f"`brew install maven`), or unpack apache-artemis-{ARTEMIS_VERSION}-bin.tar.gz "
            f"yourself and set ARTEMIS_HOME to that folder."
        )
    java_executable()  # Maven needs Java too: say so clearly before Maven does
    staging = Path(tempfile.mkdtemp(prefix=".dl-", dir=dl))
    try:
        cmd = [
            mvn, "-B", "-q", _MAVEN_PLUGIN,
            f"-Dartifact={_MAVEN_ARTIFACT}", f"-DoutputDirectory={staging}",
        ]
        log.info("downloading Artemis %s with Maven into %s", ARTEMIS_VERSION, dl)
        proc = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
        )
        (dl / "mvn.log").write_text(proc.stdout)
        fetched = staging / _TARBALL
        if proc.returncode != 0 or not fetched.is_file():
            tail = "\n".join(proc.stdout.splitlines()[-30:])
            raise BrokerUnavailable(
                f"Maven could not download {_MAVEN_ARTIFACT} (exit {proc.returncode}). "
                f"Check that Maven Central is reachable, or set ARTEMIS_HOME to an unpacked "
                f"apache-artemis-{ARTEMIS_VERSION}.\n{tail}"
            )
        if _sha512(fetched) != _TARBALL_SHA512:
            raise BrokerUnavailable(f"{_TARBALL} from Maven has an unexpected SHA-512")
        os.replace(fetched, tarball)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tarball


def _unpack(tarball: Path, cache: Path, home: Path) -> None:
    """Unpack ``tarball`` beside ``home`` and rename it into place atomically."""
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache))
    try:
        log.info("unpacking %s into %s", tarball.name, home)
        with tarfile.open(tarball) as archive:
            if hasattr(tarfile, "data_filter"):
                archive.extractall(staging, filter="data")
            else:  # pragma: no cover - Python without extraction filters
                archive.extractall(staging)
        unpacked = staging / home.name
        if not _valid_home(unpacked):
            raise BrokerUnavailable(f"{tarball} does not contain {home.name}/bin/artemis")
        try:
            os.rename(unpacked, home)
        except OSError:
            if not _valid_home(home):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


_java_checked: Optional[str] = None


def java_executable() -> str:
    """Return the ``java`` that Artemis will use, checking that it is Java 17 or newer.

    Follows the Artemis launcher: ``$JAVA_HOME/bin/java`` when ``JAVA_HOME`` is set,
    else ``java`` on ``PATH``. Raises :class:`BrokerUnavailable` saying what to install.

    Example::

        print(java_executable())   # e.g. /usr/bin/java
    """
    global _java_checked
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if _java_checked is not None and _java_checked == java:
        return java
    hint = (
        f"Artemis {ARTEMIS_VERSION} needs Java {_MIN_JAVA} or newer: install a JDK or JRE "
        f"(e.g. `apt-get install openjdk-17-jre-headless`), or use Docker "
        f"(ArtemisBroker(mode='docker'))."
    )
    if not java or not os.access(java, os.X_OK):
        where = f"JAVA_HOME={java_home} has no bin/java" if java_home else "no java on PATH"
        raise BrokerUnavailable(f"{where}. {hint}")
    try:
        out = subprocess.run(
            [java, "-version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=60, check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerUnavailable(f"cannot run {java} -version ({exc}). {hint}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if match:
        major = int(match.group(1))
        if major == 1 and match.group(2):  # "1.8.0_292"
            major = int(match.group(2))
        if major < _MIN_JAVA:
            raise BrokerUnavailable(f"{java} is Java {major}. {hint}")
    else:
        log.warning("could not read the Java version from: %s", out.strip()[:200])
    _java_checked = java
    return java

