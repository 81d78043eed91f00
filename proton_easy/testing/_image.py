"""The Artemis image for Docker mode: the official one when there is one, else our own.

:func:`ensure_image` answers the image to run. In order:

1. ``$PROTON_EASY_DOCKER_IMAGE`` when set (present, or pulled);
2. ``apache/activemq-artemis:<version>`` when the engine has it or can pull it;
3. ``proton-easy/artemis:<version>-<hash>``, built from ``Dockerfile`` and ``docker-run.sh``
   (next to this module; ``docker/`` in the repository holds the same files) and the Artemis
   distribution that local mode uses (fetched once with Maven). The hash covers every input
   (those two files, the distribution's files, the base image's id), so the engine keeps one
   build per set of inputs and nothing is rebuilt until an input changes.

The base of our own image is ``$PROTON_EASY_BASE_IMAGE`` when set (any Debian or Ubuntu image
with Java 17+), else ``proton-easy/base:bookworm-jre17-<hash>``, made without any registry:
``debootstrap --variant=minbase bookworm`` with ``openjdk-17-jre-headless`` and ``libaio1``
from a Debian mirror (``$PROTON_EASY_DEBIAN_MIRROR``, default ``http://deb.debian.org/debian``),
then imported into the engine (needs root and ``debootstrap``; about a minute).
"""

from __future__ import annotations

import hashlib
import importlib
import io
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ._distribution import ARTEMIS_VERSION, _locked, artemis_home, cache_dir
from ._errors import BrokerUnavailable

log = logging.getLogger("proton_easy.testing")

#: The official image, on the same version as the local distribution.
OFFICIAL_IMAGE = f"apache/activemq-artemis:{ARTEMIS_VERSION}"
#: Where our own builds go: ``proton-easy/artemis:<version>-<hash of the inputs>``.
LOCAL_REPOSITORY = "proton-easy/artemis"
#: Our base images: ``proton-easy/base:bookworm-jre17-<hash of the recipe>``.
BASE_REPOSITORY = "proton-easy/base"
#: The label holding the hash of the inputs an image was built from.
INPUTS_LABEL = "org.proton-easy.inputs"

IMAGE_FILES_DIR = Path(__file__).resolve().parent / "image"
_BASE_SUITE = "bookworm"
_BASE_PACKAGES = ("openjdk-17-jre-headless", "libaio1")
_DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Trimmed from the base's file system after debootstrap: caches and documentation.
_BASE_TRIM = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
              "usr/share/info", "usr/share/locale")
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_pull_failed: Dict[str, str] = {}  # image -> why the pull failed (asked once per process)
_build_failed: List[str] = []  # why our build failed, if it did (tried once per process)


def docker_client(timeout: int = 600) -> Any:
    """A docker-py client from the environment (``DOCKER_HOST`` etc.), with a long timeout
    for builds and imports.

    Example::

        client = docker_client()
        client.images.list()
    """
    try:
        docker: Any = importlib.import_module("docker")  # docker-py, no type hints
    except ImportError:
        raise BrokerUnavailable(
            "mode='docker' needs testcontainers: pip install 'testcontainers>=4' "
            "(or pip install 'proton_easy[test]')"
        ) from None
    try:
        return docker.from_env(timeout=timeout)
    except Exception as exc:
        raise BrokerUnavailable(f"no Docker engine answers: {exc}") from exc


def image_present(client: Any, name: str) -> bool:
    """Tell whether the engine has the image ``name`` (no pull).

    Example::

        image_present(docker_client(), "apache/activemq-artemis:2.40.0")
    """
    errors: Any = importlib.import_module("docker.errors")
    try:
        client.images.get(name)
        return True
    except errors.ImageNotFound:
        return False


def try_pull(client: Any, name: str) -> bool:
    """Pull ``name`` unless present; ``False`` when no registry gives it (asked once per
    process: a failed pull is not tried again).

    Example::

        if not try_pull(client, "testcontainers/ryuk:0.8.1"):
            print("no reaper image here")
    """
    if image_present(client, name):
        return True
    if name in _pull_failed:
        return False
    repository, _, tag = name.rpartition(":")
    if not repository or "/" in tag:
        repository, tag = name, "latest"
    try:
        log.info("pulling %s", name)
        client.images.pull(repository, tag=tag)
        return True
    except Exception as exc:  # no registry, no such image, no credentials: all "not here"
        _pull_failed[name] = str(exc)
        log.info("cannot pull %s: %s", name, exc)
        return False


def ensure_image(*, client: Any = None, pull: bool = True, rebuild: bool = False) -> str:
    """Return the name of an Artemis image the engine has, building it if need be.

    ``$PROTON_EASY_DOCKER_IMAGE`` wins; then the official image (present or pulled, unless
    ``pull`` is false); then our own build (see the module's text). ``rebuild=True`` skips the
    official image and builds ours even when a build with the same inputs exists.

    Raises :class:`BrokerUnavailable` when no engine answers or nothing can be had.

    Example::

        image = ensure_image()   # 'apache/activemq-artemis:2.40.0' or 'proton-easy/artemis:...'
    """
    client = client if client is not None else docker_client()
    chosen = os.environ.get("PROTON_EASY_DOCKER_IMAGE", "").strip()
    if chosen:
        if not try_pull(client, chosen):
            raise BrokerUnavailable(
                f"PROTON_EASY_DOCKER_IMAGE={chosen} is neither in the Docker engine nor "
                f"pullable: {_pull_failed.get(chosen, '')}"
            )
        return chosen
    if not rebuild:
        if image_present(client, OFFICIAL_IMAGE) or (pull and try_pull(client, OFFICIAL_IMAGE)):
            return OFFICIAL_IMAGE
        if _build_failed:  # once per process: every later broker start fails at once
            raise BrokerUnavailable(f"{_build_failed} (not tried again in this process)")
    try:
        return build_image(client=client, rebuild=rebuild)
    except BrokerUnavailable as exc:
        _build_failed.append(str(exc))
        raise


def build_image(*, client: Any = None, base_image: Optional[str] = None,
                rebuild: bool = False) -> str:
    """Build (or find already built) our Artemis image; return its tag.

    The tag is ``proton-easy/artemis:<version>-<12 hex>``, the hex being the hash of the
    inputs, which also labels the image (``org.proton-easy.inputs``); the build is also
    tagged ``proton-easy/artemis:<version>``. Concurrent callers wait for each other.

    Example::

        tag = build_image()   # 'proton-easy/artemis:2.40.0-3f2a9c0d1e4b'
    """
    client = client if client is not None else docker_client()
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    home = artemis_home()
    with _locked(cache / ".image.lock"):
        base = base_image or os.environ.get("PROTON_EASY_BASE_IMAGE", "").strip() or None
        if base is None:
            base = ensure_base_image(client)
        elif not try_pull(client, base):
            raise BrokerUnavailable(f"the base image {base} is neither present nor pullable")
        inputs = image_inputs_hash(home, client.images.get(base).id)
        tag = f"{LOCAL_REPOSITORY}:{ARTEMIS_VERSION}-{inputs[:12]}"
        if not rebuild and image_present(client, tag):
            log.debug("image %s is up to date", tag)
            return tag
        log.info("building %s on %s from %s", tag, base, home)
        with tempfile.TemporaryFile(dir=cache) as context:
            _write_context(context, home)
            context.seek(0)
            try:
                image, _ = client.images.build(
                    fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True,
                    buildargs={"BASE_IMAGE": base}, labels={INPUTS_LABEL: inputs},
                    nocache=rebuild,
                )
            except Exception as exc:
                raise BrokerUnavailable(f"could not build {tag}: {_build_log(exc)}") from exc
        image.tag(LOCAL_REPOSITORY, tag=ARTEMIS_VERSION)
        return tag


def image_inputs_hash(home: Path, base_id: str) -> str:
    """SHA-256 over everything our image is made of: the Dockerfile, the entry point, the
    distribution's files (names, sizes, modes) and the base image's id.

    Example::

        image_inputs_hash(artemis_home(), "sha256:...")[:12]
    """
    digest = hashlib.sha256()
    for name in ("Dockerfile", "docker-run.sh"):
        digest.update(name.encode() + b"\0" + (IMAGE_FILES_DIR / name).read_bytes() + b"\0")
    digest.update(f"artemis {ARTEMIS_VERSION}\0base {base_id}\0".encode())
    for rel, size, mode in _tree(home):
        digest.update(f"{rel}\0{size}\0{mode:o}\0".encode())
    return digest.hexdigest()


def _tree(root: Path) -> Iterator[Tuple[str, int, int]]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            st = path.lstat()
            yield path.relative_to(root).as_posix(), st.st_size, st.st_mode & 0o777


def _write_context(fileobj: Any, home: Path) -> None:
    """The build context: Dockerfile, docker-run.sh, and the distribution as ``artemis/``."""

    def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = 0  # the content decides, not when the distribution was unpacked
        return info

    with tarfile.open(fileobj=fileobj, mode="w") as tar:
        for name, mode in (("Dockerfile", 0o644), ("docker-run.sh", 0o755)):
            data = (IMAGE_FILES_DIR / name).read_bytes()
            info = owned_by_root(tarfile.TarInfo(name))
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
        tar.add(str(home), arcname="artemis", filter=owned_by_root)


def _build_log(exc: Exception) -> str:
    lines = [str(exc)]
    for chunk in getattr(exc, "build_log", None) or []:
        if isinstance(chunk, dict) and chunk.get("stream"):
            lines.append(str(chunk["stream"]).rstrip())
    return "\n".join(lines[-30:])


def base_recipe_hash() -> str:
    """SHA-256 of what our base image is made of (suite, variant, packages).

    Example::

        f"proton-easy/base:bookworm-jre17-{base_recipe_hash()[:12]}"
    """
    recipe = f"debootstrap minbase {_BASE_SUITE} {' '.join(_BASE_PACKAGES)} trim {_BASE_TRIM}"
    return hashlib.sha256(recipe.encode()).hexdigest()


def ensure_base_image(client: Any) -> str:
    """Return our base image's tag, making it with ``debootstrap`` when the engine lacks it.

    Needs root, ``debootstrap`` and a reachable Debian mirror; raises
    :class:`BrokerUnavailable` saying what else would do otherwise.

    Example::

        ensure_base_image(docker_client())   # 'proton-easy/base:bookworm-jre17-...'
    """
    recipe = base_recipe_hash()
    tag = f"{BASE_REPOSITORY}:{_BASE_SUITE}-jre17-{recipe[:12]}"
    if image_present(client, tag):
        return tag
    debootstrap = shutil.which("debootstrap")
    hint = (f"either make {OFFICIAL_IMAGE} available to the engine (docker pull or load), "
            "set PROTON_EASY_DOCKER_IMAGE to an equivalent image, or set "
            "PROTON_EASY_BASE_IMAGE to a Debian or Ubuntu image with Java 17+")
    if debootstrap is None or os.geteuid() != 0:
        raise BrokerUnavailable(
            f"the Artemis image must be built here and its base image {tag} is missing; "
            f"making it needs root and debootstrap (apt-get install debootstrap), or {hint}"
        )
    mirror = os.environ.get("PROTON_EASY_DEBIAN_MIRROR", "").strip() or _DEFAULT_MIRROR
    cache = cache_dir()
    work = Path(tempfile.mkdtemp(prefix=".base-", dir=cache))
    try:
        root = work / "root"
        cmd: List[str] = [debootstrap, "--variant=minbase",
                          f"--include={','.join(_BASE_PACKAGES)}", _BASE_SUITE, str(root),
                          mirror]
        log.info("making the base image %s with debootstrap from %s (about a minute)",
                 tag, mirror)
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, check=False)
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.splitlines()[-20:])
            raise BrokerUnavailable(f"debootstrap failed (exit {proc.returncode}); {hint}\n"
                                    f"{tail}")
        for rel in _BASE_TRIM:
            target = root / rel
            if target.is_dir():
                for child in target.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
        archive = work / "root.tar"
        subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(archive), "."],
                       check=True)
        repository, _, version = tag.partition(":")
        client.api.import_image_from_file(
            str(archive), repository=repository, tag=version,
            changes=[f"ENV PATH={_PATH}", "ENV LANG=C.UTF-8", 'CMD ["bash"]',
                     f"LABEL {INPUTS_LABEL}={recipe}"],
        )
        if not image_present(client, tag):
            raise BrokerUnavailable(f"importing {tag} into the engine failed")
        return tag
    finally:
        shutil.rmtree(work, ignore_errors=True)
