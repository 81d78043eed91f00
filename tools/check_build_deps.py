"""Say, in one message, what a machine lacks to compile python-qpid-proton (which has no wheel
on PyPI for 0.40), and whether the installed proton has TLS.

Run by ``make venv`` before installing (``before``), when installing failed (``missing``),
and after it succeeded (``ssl``).

Example::

    python tools/check_build_deps.py before    # exit 1 and the list (unless proton is there)
    python tools/check_build_deps.py missing   # exit 1 and the list, or exit 0
    python tools/check_build_deps.py ssl       # a warning when proton has no OpenSSL
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from typing import List

INSTALL = """\
  Debian/Ubuntu: sudo apt-get install gcc python3-dev pkg-config libssl-dev
  Fedora/RHEL:   sudo dnf install gcc python3-devel pkgconf-pkg-config openssl-devel
  macOS:         xcode-select --install; brew install pkg-config openssl@3
  (optional, for SASL mechanisms beyond ANONYMOUS, PLAIN and EXTERNAL: libsasl2-dev /
  cyrus-sasl-devel)"""


def missing() -> List[str]:
    """What compiling proton needs that this machine lacks."""
    lacks = []
    if not (shutil.which("gcc") or shutil.which("cc") or shutil.which("clang")):
        lacks.append("a C compiler (gcc)")
    include = sysconfig.get_paths().get("include") or ""
    if not os.path.exists(os.path.join(include, "Python.h")):
        lacks.append(f"the Python headers (Python.h, in {include or 'the include path'})")
    if not shutil.which("pkg-config"):
        lacks.append("pkg-config")
    elif subprocess.run(["pkg-config", "--exists", "openssl"]).returncode != 0:
        lacks.append("the OpenSSL headers (without them proton builds with TLS stubbed out)")
    return lacks


def _proton_installed() -> bool:
    try:
        import proton  # noqa: F401
    except ImportError:
        return False
    return True


def _report(lacks: List[str], before: bool) -> int:
    """Print the one message naming what is missing; exit status 1 (0 when nothing is)."""
    if not lacks:
        return 0
    what = ("python-qpid-proton is compiled from source when it is installed" if before
            else "installing python-qpid-proton failed: it is compiled from source")
    hint = ("\n  (pip has a wheel of it cached already? PROTON_EASY_SKIP_BUILD_CHECK=1 skips "
            "this check)" if before else "")
    print(f"proton_easy: {what} (there is no wheel on PyPI), and this machine lacks "
          f"{', '.join(lacks)}.\nInstall them, then run make again:\n{INSTALL}{hint}",
          file=sys.stderr)
    return 1


def main(argv: List[str]) -> int:
    """``before``: up front, print what compiling proton would need and is missing (exit 1),
    unless proton is installed already or ``PROTON_EASY_SKIP_BUILD_CHECK=1`` (a wheel of it in
    pip's cache); ``missing``: the same after a failed install; ``ssl``: warn when the
    installed proton has no TLS."""
    what = argv[0] if argv else "missing"
    if what == "before":
        if os.environ.get("PROTON_EASY_SKIP_BUILD_CHECK") == "1" or _proton_installed():
            return 0
        return _report(missing(), before=True)
    if what == "ssl":
        import proton

        if not proton.SSL.present():
            print("proton_easy: WARNING: python-qpid-proton was built without OpenSSL: "
                  "amqps:// will raise proton_easy.TLSError. Install the OpenSSL headers and "
                  "rebuild it:\n" + INSTALL + "\n  then: make clean venv (or pip install "
                  "--force-reinstall --no-cache-dir --no-binary python-qpid-proton "
                  "python-qpid-proton)", file=sys.stderr)
        return 0
    return _report(missing(), before=False)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
