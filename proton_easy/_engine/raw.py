"""The per-message hot path: deliveries as handles, reached through the functions here only.

proton's Python API wraps every delivery in a ``Delivery`` object (a reference count, a record
lookup, an attribute dict) and reaches each field through one or two Python calls. When the
engine may talk to proton-c directly (:data:`~proton_easy._engine.compat.NATIVE`), the handler
classes keep the raw ``pn_delivery_t`` pointer instead: it hashes and compares by address, so
it keys the unsettled map directly. A pointer is valid while proton holds the delivery: until
it is settled on both sides, or for as long as :func:`hold` keeps it.

Otherwise (a proton without ``cproton``'s cffi functions, or ``PROTON_EASY_PURE_PROTON=1``) the
handles are proton's own ``Delivery`` and ``Link`` objects, and every function below does the
same through proton's public API. Job code is the same in both modes: it gets its handles from
:func:`link_impl` and :func:`delivery_impl` and passes them only to the functions here.

Everything here runs on the thread that owns the connection.

>>> from proton_easy._engine import raw
>>> from proton import Delivery
>>> raw.ACCEPTED == Delivery.ACCEPTED
True
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Callable, Deque, Optional

from proton import Condition, Delivery, Link

from . import compat

ACCEPTED = int(Delivery.ACCEPTED)
REJECTED = int(Delivery.REJECTED)
RELEASED = int(Delivery.RELEASED)
MODIFIED = int(Delivery.MODIFIED)
REFUSED = (REJECTED, RELEASED, MODIFIED)

NATIVE = compat.NATIVE
"""True: handles are proton-c pointers; False: proton's ``Delivery``/``Link`` objects."""

link_credit: Callable[[Any], int]
incoming: Callable[[Any], bool]
updated: Callable[[Any], bool]
remote_state: Callable[[Any], int]
remote_settled: Callable[[Any], bool]
settle_now: Callable[[Any], None]
settle_sent: Callable[[Any], None]

if NATIVE:
    lib, ffi = compat.lib, compat.ffi
    _SND_SETTLED = lib.PN_SND_SETTLED

    link_credit = lib.pn_link_credit

    def incoming(dlv: Any) -> bool:
        """True for a delivery that came in (on a receiver link), False for one sent."""
        return bool(lib.pn_link_is_receiver(lib.pn_delivery_link(dlv)))

    updated = lib.pn_delivery_updated
    remote_state = lib.pn_delivery_remote_state
    remote_settled = lib.pn_delivery_settled
    settle_now = lib.pn_delivery_settle

    def link_impl(link: Any) -> Any:
        """The handle of a proton ``Link`` for the functions here (its pointer)."""
        return compat.impl(link)

    def delivery_impl(dlv: Delivery) -> Any:
        """The handle of a proton ``Delivery`` for the functions here (its pointer)."""
        return compat.impl(dlv)

    def send(link: Any, tag: bytes, payload: bytes) -> Any:
        """Send one encoded message on a sender link (:func:`link_impl`); return its delivery."""
        dlv = lib.pn_delivery(link, (len(tag), ffi.from_buffer(tag)))
        lib.pn_link_send(link, ffi.from_buffer(payload), len(payload))
        lib.pn_link_advance(link)
        return dlv

    def receive(dlv: Any) -> Optional[bytearray]:
        """The bytes of a complete incoming message, taken off its link; None when the delivery
        is not a complete incoming message (an outgoing one, or more frames still to come).
        A pre-settled (at-most-once) delivery is settled here as well."""
        # (readable: the current delivery of a receiver link, in every proton-c release)
        if not lib.pn_delivery_readable(dlv) or lib.pn_delivery_partial(dlv):
            return None
        link = lib.pn_delivery_link(dlv)
        size = lib.pn_delivery_pending(dlv)
        data = bytearray(size)
        got = lib.pn_link_recv(link, ffi.from_buffer(data), size)
        lib.pn_link_advance(link)
        if lib.pn_link_remote_snd_settle_mode(link) == _SND_SETTLED:
            lib.pn_delivery_settle(dlv)
        if 0 <= got < size:
            del data[got:]
        return data

    def settle(dlv: Any, outcome: int) -> None:
        """Settle an incoming delivery with ``outcome`` (``MODIFIED`` counts a failed delivery);
        a delivery the sender settled already is left alone."""
        if lib.pn_delivery_settled(dlv):
            return
        if outcome == MODIFIED:
            lib.pn_disposition_set_failed(lib.pn_delivery_local(dlv), True)
        lib.pn_delivery_update(dlv, outcome)
        lib.pn_delivery_settle(dlv)

    def abort(dlv: Any) -> Optional[Any]:
        """Give up an outgoing delivery whose connection dropped: proton settles it and never
        sends it (its job sends the message again itself). Without this, proton sends one it
        had not written yet on the next connection after the reconnect: twice in all.

        Returns the handle of its link when proton had not written all of it: proton then
        counts it queued on the link for ever, and holds that link's detach back."""
        unwritten = lib.pn_delivery_pending(dlv) > 0
        lib.pn_delivery_abort(dlv)
        return lib.pn_delivery_link(dlv) if unwritten else None

    settle_sent = lib.pn_delivery_abort
    """Settle here an outgoing delivery the broker settled. For a delivery written already an
    abort is the same settle; but when the connection ended before proton wrote that settle,
    proton keeps the delivery to write on the next connection, and the reconnect's unbind
    has reset it to "not sent": a plain settle would then go out as a new, empty message."""

    def hold(dlv: Any) -> None:
        """Keep a delivery alive after its event (until :func:`release`)."""
        lib.pn_incref(dlv)

    def release(dlv: Any) -> None:
        """Undo :func:`hold`."""
        lib.pn_decref(dlv)

    def wrap(dlv: Any) -> Delivery:
        """proton's ``Delivery`` object for a handle (off the hot path: errors, conditions)."""
        return Delivery.wrap(dlv)  # type: ignore[no-any-return, no-untyped-call]

else:
    _SND_SETTLED_PY = Link.SND_SETTLED

    def link_credit(link: Any) -> int:
        return int(link.credit)

    def incoming(dlv: Any) -> bool:
        return bool(dlv.link.is_receiver)

    def updated(dlv: Any) -> bool:
        return bool(dlv.updated)

    def remote_state(dlv: Any) -> int:
        return int(dlv.remote_state)

    def remote_settled(dlv: Any) -> bool:
        return bool(dlv.settled)

    def settle_now(dlv: Any) -> None:
        dlv.settle()

    def link_impl(link: Any) -> Any:
        """The handle of a proton ``Link`` for the functions here (the link itself)."""
        return link

    def delivery_impl(dlv: Delivery) -> Any:
        """The handle of a proton ``Delivery`` for the functions here (the delivery itself)."""
        return dlv

    def send(link: Any, tag: bytes, payload: bytes) -> Any:
        """Send one encoded message on a sender link (:func:`link_impl`); return its delivery."""
        dlv = link.delivery(tag)
        link.stream(bytes(payload))
        link.advance()
        return dlv

    def receive(dlv: Any) -> Optional[bytearray]:
        """The bytes of a complete incoming message, taken off its link; None when the delivery
        is not a complete incoming message (an outgoing one, or more frames still to come).
        A pre-settled (at-most-once) delivery is settled here as well."""
        link = dlv.link
        if not link.is_receiver or not dlv.readable or dlv.partial:
            return None
        data = bytearray(link.recv(dlv.pending) or b"")
        link.advance()
        if link.remote_snd_settle_mode == _SND_SETTLED_PY:
            dlv.settle()
        return data

    def settle(dlv: Any, outcome: int) -> None:
        """Settle an incoming delivery with ``outcome`` (``MODIFIED`` counts a failed delivery);
        a delivery the sender settled already is left alone."""
        if dlv.settled:
            return
        if outcome == MODIFIED:
            dlv.local.failed = True
        dlv.update(outcome)
        dlv.settle()

    def abort(dlv: Any) -> Optional[Any]:
        """Give up an outgoing delivery whose connection dropped (see the native one)."""
        unwritten = dlv.pending > 0
        dlv.abort()
        return dlv.link if unwritten else None

    def settle_sent(dlv: Any) -> None:
        """Settle here an outgoing delivery the broker settled (see the native one)."""
        dlv.abort()

    # A ``Delivery`` frees its proton-c object when its last reference goes, on whichever
    # thread drops it; proton-c's reference counts are not thread-safe. A consuming thread
    # holds the deliveries handed to it (and the last few it finished with), so released
    # deliveries are kept here, on the loop thread, until far more have been released since.
    _loop_local = threading.local()  # one list per loop thread
    _KEEP_RELEASED = 4096

    def hold(dlv: Any) -> None:
        """Keep a delivery alive after its event (the handle itself does)."""

    def release(dlv: Any) -> None:
        """Undo :func:`hold` (on the loop thread): the last reference goes there, later."""
        released: Optional[Deque[Any]] = getattr(_loop_local, "released", None)
        if released is None:
            released = _loop_local.released = collections.deque()
        released.append(dlv)
        if len(released) > 2 * _KEEP_RELEASED:
            for _ in range(_KEEP_RELEASED):
                released.popleft()

    def wrap(dlv: Any) -> Delivery:
        """proton's ``Delivery`` object for a handle (off the hot path: errors, conditions)."""
        return dlv  # type: ignore[no-any-return]


def remote_condition(dlv: Any) -> Optional[Condition]:
    """The condition the peer gave with its outcome of a delivery (a rejection's reason)."""
    cond = wrap(dlv).remote.condition
    return cond if isinstance(cond, Condition) else None


def set_condition(dlv: Any, name: str, description: str) -> None:
    """Give the outcome of an incoming delivery a condition (a rejection's reason), before
    :func:`settle`."""
    wrap(dlv).local.condition = Condition(name, description)


__all__ = ["ACCEPTED", "REJECTED", "RELEASED", "MODIFIED", "REFUSED", "NATIVE", "link_credit",
           "updated", "remote_state", "remote_settled", "settle_now",
           "link_impl", "delivery_impl", "send", "receive", "settle", "hold", "release", "wrap",
           "remote_condition", "set_condition", "incoming"]
