"""Which private parts of proton this process may use, and the small accessors built on them.

Every use of ``cproton`` or of an underscore name of proton is detected here (or in the module
that uses it) once, at import; when it is missing, or when the environment variable
``PROTON_EASY_PURE_PROTON=1`` was set before the import, the engine uses proton's public API
instead: slower, never wrong.

>>> from proton_easy._engine import compat
>>> isinstance(compat.NATIVE, bool)
True
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, List, Optional

import proton

log = logging.getLogger("proton_easy")

PURE: bool = os.environ.get("PROTON_EASY_PURE_PROTON", "") not in ("", "0")
"""True when ``PROTON_EASY_PURE_PROTON`` asked for proton's public API only (read at import)."""

PROTON_VERSION = tuple(int(p) for p in proton.VERSION[:2])
"""The (major, minor) version of the proton-c library in use."""

lib: Any = None
ffi: Any = None
_NATIVE_FUNCTIONS = (
    "pn_collector_peek", "pn_collector_pop", "pn_event_type", "pn_event_delivery",
    "pn_delivery_link", "pn_link_attachments", "pn_record_get_py", "pn_delivery",
    "pn_link_send", "pn_link_advance", "pn_link_recv", "pn_link_credit",
    "pn_link_is_receiver", "pn_delivery_readable", "pn_delivery_partial",
    "pn_delivery_pending", "pn_link_remote_snd_settle_mode", "pn_delivery_settle",
    "pn_delivery_settled", "pn_delivery_updated", "pn_delivery_remote_state",
    "pn_delivery_update", "pn_delivery_local", "pn_disposition_set_failed", "pn_incref",
    "pn_decref", "pn_delivery_remote", "pn_disposition_data",
)


def _probe_native() -> bool:
    global lib, ffi
    if PURE:
        return False
    try:
        import cproton  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - every proton release so far has it
        return False
    lib, ffi = getattr(cproton, "lib", None), getattr(cproton, "ffi", None)
    if lib is None or ffi is None:
        return False
    missing = [name for name in _NATIVE_FUNCTIONS if not hasattr(lib, name)]
    if missing:
        log.debug("proton-c functions missing (%s): using proton's public API", missing)
        return False
    probe = proton.Connection()
    return _has_attr(probe, "_impl")


def _has_attr(obj: Any, name: str) -> bool:
    """True if ``obj`` has the attribute itself (in its ``__dict__`` or a slot), whatever its
    ``__getattr__`` would say."""
    try:
        object.__getattribute__(obj, name)
    except AttributeError:
        return False
    return True


NATIVE: bool = _probe_native()
"""True when the engine talks to proton-c directly on the hot path (``cproton``'s cffi ``lib``)."""


def impl(obj: Any) -> Any:
    """The proton-c pointer inside a proton wrapper (``Link``, ``Delivery``, ...); only valid
    when :data:`NATIVE` is true.

    >>> impl(proton.Connection()) is not None or not NATIVE
    True
    """
    return object.__getattribute__(obj, "_impl")


# -- the Python attributes proton keeps per endpoint ------------------------------------------
def _attrs_of(endpoint: Any) -> Optional[dict]:  # type: ignore[type-arg]
    # proton 0.40: ``endpoint.__dict__["_attrs"]``; 0.41: a slot of the same name. Both read
    # the same way through object.__getattribute__.
    if PURE:
        return None
    try:
        attrs = object.__getattribute__(endpoint, "_attrs")
    except AttributeError:
        return None
    return attrs if isinstance(attrs, dict) else None


def release_endpoints(conn: Any) -> bool:
    """Drop the Python attributes proton keeps for a finished connection and its sessions,
    links and transport, so that the objects they reference (handlers, the container) and
    the proton-c objects can be freed. Call it only once the connection's loop has stopped.

    Returns True when the references were dropped (False: proton keeps them in a way this
    does not know, and the objects stay alive until the process ends).

    >>> release_endpoints(proton.Connection())
    True
    """
    endpoints: List[Any] = [conn]
    link = conn.link_head(0)
    while link is not None:
        endpoints.append(link)
        link = link.next(0)
    session = conn.session_head(0)
    while session is not None:
        endpoints.append(session)
        session = session.next(0)
    transport = conn.transport
    if transport is not None:
        endpoints.append(transport)
    done = True
    for endpoint in endpoints:
        attrs = _attrs_of(endpoint)
        if attrs is not None:
            attrs.clear()
            continue
        # public API: the references proton_easy and proton's container put there
        for name in ("handler", "context", "_overrides", "_session_policy", "container"):
            try:
                setattr(endpoint, name, None)
            except (AttributeError, TypeError):  # pragma: no cover - read-only here
                done = False
        if not PURE:
            done = False
    return done


# -- transports --------------------------------------------------------------------------------
_MISSING = object()


def _private(obj: Any, name: str) -> Any:
    """An attribute proton keeps on a wrapper, wherever this proton keeps it (in its
    ``__dict__``, a slot, or the wrapper's ``_attrs`` record, reached through its
    ``__getattr__``), or ``_MISSING``."""
    try:
        return getattr(obj, name)
    except AttributeError:
        return _MISSING


def socket_connecting(transport: Any) -> Optional[bool]:
    """True while proton's IO handler is still connecting the socket of ``transport``, False
    once it is connected, None when this proton does not say (then the caller must not wait
    for it)."""
    if PURE:
        return None
    selectable = _private(transport, "_connect_selectable")
    return None if selectable is _MISSING else selectable is not None


def socket_never_opened(transport: Any) -> None:
    """Tell proton's IO handler that ``transport`` has no socket (its attempt ended before
    one was made, as when the host did not resolve), so that the transport's later events
    find what they look for. Nothing to do with proton's public API only (those events then
    raise inside proton, and the loop ignores that)."""
    if PURE:
        return
    try:
        getattr(transport, "_selectable")  # noqa: B009 - a proton-internal attribute
    except AttributeError:
        try:
            transport._selectable = None
        except (AttributeError, TypeError):  # pragma: no cover - a layout without it
            pass


def transport_tls(transport: Any) -> Optional[Any]:
    """The ``SSL`` object of a TLS transport (None: plain, or this proton does not say)."""
    if PURE:
        return None
    ssl = _private(transport, "_ssl")
    return None if ssl is _MISSING else ssl


# -- proton's connector (failover and reconnect of Container.connect) -------------------------
def _connector_hookable() -> bool:
    if PURE:
        return False
    try:
        from proton._reactor import _Connector
    except ImportError:
        return False
    return callable(getattr(_Connector, "_connect", None))


CONNECTOR_HOOKABLE: bool = _connector_hookable()
"""True when each attempt of proton's connector can be hooked (:func:`hook_connector`)."""


def _connector(conn: Any) -> Any:
    """proton's reconnecting connector of ``conn`` (None when it has none)."""
    try:
        return object.__getattribute__(conn, "_overrides")
    except AttributeError:
        return getattr(conn, "_overrides", None)


def hook_connector(conn: Any, before: Callable[[Any, str], None]) -> bool:
    """Have ``before(connector, url)`` called right before proton's connector opens each
    connection attempt of ``conn`` (the proton connection from ``Container.connect``), with
    the URL it is about to try; ``connector.user``, ``.password`` and ``.allowed_mechs`` set
    there are used for that attempt. False if this proton's connector cannot be hooked (the
    caller then sets the credentials itself through the public API)."""
    if PURE:
        return False
    connector = _connector(conn)
    original = getattr(connector, "_connect", None)
    if connector is None or not callable(original):
        return False
    required = ("user", "password", "allowed_mechs")
    if not all(hasattr(connector, name) for name in required):
        return False

    def _connect(connection: Any, url: Any) -> None:
        before(connector, str(url))
        original(connection, url)

    connector._connect = _connect
    return True


def set_connector_urls(conn: Any, urls: List[str]) -> bool:
    """Make proton's connector of ``conn`` try ``urls`` (``scheme://host:port`` each, in
    order) from its next round of reconnect attempts on; False when this proton's connector
    does not take them (then it keeps the URLs given to ``Container.connect``)."""
    if PURE:
        return False
    connector = _connector(conn)
    if connector is None or not hasattr(connector, "address"):
        return False
    values = [proton.Url(u) for u in urls]  # type: ignore[no-untyped-call]

    class _Urls:
        # proton iterates the connector's address anew for each round of attempts
        def __iter__(self) -> Any:
            return iter(values)

    connector.address = _Urls()
    return True
