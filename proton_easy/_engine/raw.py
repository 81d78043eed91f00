"""The per-message hot path in raw proton-c calls.

proton's Python API wraps every delivery in a ``Delivery`` object (a reference count, a record
lookup, an attribute dict) and reaches each field through one or two Python calls. On the hot
path the handler classes keep the raw ``pn_delivery_t`` pointer instead: it hashes and compares
by address, so it keys the unsettled map directly. A pointer is valid while proton holds the
delivery: until it is settled on both sides, or for as long as :func:`hold` keeps it.
Everything here runs on the thread that owns the connection.
"""

from __future__ import annotations

from typing import Any, Optional

from cproton import ffi, lib
from proton import Delivery

ACCEPTED = lib.PN_ACCEPTED
REJECTED = lib.PN_REJECTED
RELEASED = lib.PN_RELEASED
MODIFIED = lib.PN_MODIFIED
REFUSED = (REJECTED, RELEASED, MODIFIED)

link_credit = lib.pn_link_credit
updated = lib.pn_delivery_updated
remote_state = lib.pn_delivery_remote_state
remote_settled = lib.pn_delivery_settled
settle_now = lib.pn_delivery_settle


def send(link: Any, tag: bytes, payload: bytes) -> Any:
    """Send one encoded message on a sender link (``link._impl``); return its delivery."""
    dlv = lib.pn_delivery(link, (len(tag), ffi.from_buffer(tag)))
    lib.pn_link_send(link, ffi.from_buffer(payload), len(payload))
    lib.pn_link_advance(link)
    return dlv


def receive(dlv: Any) -> Optional[bytearray]:
    """The bytes of a complete incoming message, taken off its link; None when the delivery
    is not a complete incoming message (an outgoing one, or more frames still to come).
    A pre-settled (at-most-once) delivery is settled here as well."""
    link = lib.pn_delivery_link(dlv)
    if not lib.pn_link_is_receiver(link) or not lib.pn_delivery_readable(dlv) \
            or lib.pn_delivery_partial(dlv):
        return None
    size = lib.pn_delivery_pending(dlv)
    data = bytearray(size)
    got = lib.pn_link_recv(link, ffi.from_buffer(data), size)
    lib.pn_link_advance(link)
    if lib.pn_link_remote_snd_settle_mode(link) == lib.PN_SND_SETTLED:
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


def hold(dlv: Any) -> None:
    """Keep a delivery alive after its event (until :func:`release`)."""
    lib.pn_incref(dlv)


def release(dlv: Any) -> None:
    """Undo :func:`hold`."""
    lib.pn_decref(dlv)


def wrap(dlv: Any) -> Delivery:
    """proton's ``Delivery`` object for a raw delivery (off the hot path: errors, conditions)."""
    return Delivery.wrap(dlv)


def link_impl(link: Any) -> Any:
    """The raw ``pn_link_t`` of a proton ``Link`` (what :func:`send` and :func:`link_credit`
    take)."""
    return link._impl


def delivery_impl(dlv: Delivery) -> Any:
    """The raw ``pn_delivery_t`` of a proton ``Delivery`` (what :func:`settle` takes)."""
    return dlv._impl
