"""The ceiling: proton's C engine, through the ``send`` and ``receive`` examples Debian ships.

``apt-get install libqpid-proton11-dev libqpid-proton11-dev-examples`` puts the examples'
sources under ``/usr/share/proton/examples/c``. They are compiled once into the cache
(``~/.cache/proton_easy/c-examples``), after three small changes made here, so that they run
the benchmark's job against the benchmark's broker:

- they log in with SASL PLAIN (user and password from the environment, as proton's C API
  allows: ``pn_connection_set_user``/``_password`` and a ``pn_sasl`` allowing PLAIN);
- ``send`` sends the benchmark's body (``PN_BODY_SIZE`` bytes of binary, durable when
  ``PN_DURABLE=1``) instead of a ``{"sequence": n}`` map; ``receive`` prints nothing per
  message (it still decodes each one);
- both print the seconds from the broker's open frame to the last message, so that they are
  timed like every other setup (from an open connection).

:func:`available` says why not when the sources, a compiler or the library are missing; the
benchmark then skips the column with that note.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import time
from pathlib import Path
from typing import Dict, Optional, Tuple
from urllib.parse import unquote, urlsplit

SOURCES = Path("/usr/share/proton/examples/c")
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "proton_easy" / \
    "c-examples"

_INCLUDES = "#include <proton/sasl.h>\n#include <time.h>\n"

_CLOCK = """
static double pe_started = 0;
static double pe_now(void) {
  struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}
"""

_CONNECT = """  {
    pn_connection_t *pe_conn = pn_connection();
    pn_transport_t *pe_t = pn_transport();
    pn_sasl_t *pe_sasl = pn_sasl(pe_t);
    pn_sasl_allowed_mechs(pe_sasl, "PLAIN");
    pn_sasl_set_allow_insecure_mechs(pe_sasl, true);
    pn_connection_set_user(pe_conn, getenv("PN_USER"));
    pn_connection_set_password(pe_conn, getenv("PN_PASSWORD"));
    pn_proactor_connect2(app.proactor, pe_conn, pe_t, addr);
  }
"""

_OPENED = """   case PN_CONNECTION_REMOTE_OPEN:
     pe_started = pe_now();
     break;

   case PN_CONNECTION_INIT: {"""

_SEND_BODY = """  {
    static char *pe_body = NULL;
    static size_t pe_size = 0;
    if (pe_body == NULL) {
      pe_size = getenv("PN_BODY_SIZE") ? (size_t)atoi(getenv("PN_BODY_SIZE")) : 100;
      pe_body = malloc(pe_size);
      memset(pe_body, 'x', pe_size);
    }
    pn_message_set_durable(app->message, getenv("PN_DURABLE") && *getenv("PN_DURABLE") == '1');
    pn_data_put_binary(body, pn_bytes(pe_size, pe_body));
  }
"""


def _patch(name: str, text: str) -> str:
    """The example's source with the benchmark's changes (ValueError if it does not look as
    expected: another proton release)."""
    def sub(pattern: str, repl: str, count: int = 1) -> None:
        nonlocal text
        new, n = re.subn(pattern, lambda _: repl, text, count=count, flags=re.DOTALL)
        if n != count:
            raise ValueError(f"{name}: unexpected source near {pattern!r}")
        text = new

    sub(r"#include <proton/transport.h>\n", "#include <proton/transport.h>\n" + _INCLUDES)
    sub(r"static int exit_code = 0;\n", "static int exit_code = 0;\n" + _CLOCK)
    sub(r"  pn_proactor_connect2\(app\.proactor, NULL, NULL, addr\);\n", _CONNECT)
    sub(r"   case PN_CONNECTION_INIT: \{", _OPENED)
    if name == "send":
        sub(r"  pn_data_put_map\(body\);\n.*?  pn_data_exit\(body\);\n", _SEND_BODY)
        sub(r'printf\("%d messages sent and acknowledged\\n", app->acknowledged\);',
            'printf("%d messages sent and acknowledged in %.6f s\\n", app->acknowledged, '
            "pe_now() - pe_started);")
        text = text.replace("#include <stdio.h>", "#include <stdio.h>\n#include <string.h>", 1)
    else:
        sub(r'    printf\("%s\\n", pn_string_get\(s\)\);\n', "")
        sub(r'printf\("%d messages received\\n", app->received\);',
            'printf("%d messages received in %.6f s\\n", app->received, '
            "pe_now() - pe_started);")
    return text


def _compiled(name: str) -> Path:
    """The example ``name`` (send or receive), compiled into the cache once."""
    CACHE.mkdir(parents=True, exist_ok=True)
    source = (SOURCES / f"{name}.c").read_text()
    exe = CACHE / name
    stamp = CACHE / f"{name}.src"
    patched = _patch(name, source)
    if exe.exists() and stamp.exists() and stamp.read_text() == patched:
        return exe
    c_file = CACHE / f"{name}.c"
    c_file.write_text(patched)
    proc = subprocess.run(["gcc", "-O2", "-o", str(exe), str(c_file), f"-I{SOURCES}",
                           "-lqpid-proton"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"compiling {name}.c failed: {proc.stderr[-400:]}")
    stamp.write_text(patched)
    return exe


def available() -> Tuple[bool, str]:
    """(True, "") when the C examples can run here; else (False, why not)."""
    if not (SOURCES / "send.c").exists() or not (SOURCES / "receive.c").exists():
        return False, ("proton's C examples are not installed (apt-get install "
                       "libqpid-proton11-dev libqpid-proton11-dev-examples)")
    if shutil.which("gcc") is None:
        return False, "no C compiler (gcc) to build proton's C examples"
    try:
        _compiled("send")
        _compiled("receive")
    except (OSError, ValueError, RuntimeError) as exc:
        return False, str(exc)
    return True, ""


def run(name: str, url: str, address: str, n: int, size: int = 100,
        durable: bool = False, timeout: float = 300.0) -> Dict:
    """Run the compiled example against ``url``'s broker: {"seconds", "cpu_seconds", "count"}
    (seconds from the open connection to the last message; CPU of the whole process)."""
    parts = urlsplit(url)
    env = dict(os.environ, PN_USER=unquote(parts.username or ""),
               PN_PASSWORD=unquote(parts.password or ""), PN_BODY_SIZE=str(size),
               PN_DURABLE="1" if durable else "0")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([str(_compiled(name)), parts.hostname or "127.0.0.1",
                           str(parts.port or 5672), address, str(n)], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    match: Optional[re.Match[str]] = re.search(r"(\d+) messages .* in ([0-9.]+) s", proc.stdout)
    if proc.returncode != 0 or match is None:
        return {"error": f"{name} exit {proc.returncode}: {(proc.stderr or proc.stdout)[-300:]}"}
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": float(match.group(2)) or wall, "cpu_seconds": cpu,
            "count": int(match.group(1))}
