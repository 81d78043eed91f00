"""Transactional delivery states, read the way this proton release allows.

proton 0.39 and 0.40 expose a received disposition's fields as ``dlv.remote.data`` (the
described list, decoded); proton's development branch (0.41) decodes ``declared`` and
``transactional-state`` natively and offers ``dlv.remote.id`` (and ``outcome_type``) instead,
without ``data``. Both layouts are detected per delivery; the fast path (walking the encoded
state in place, about 6 us instead of 39 us) is used only where ``cproton`` allows it.

>>> from proton_easy._engine.disposition import DECLARED, TRANSACTIONAL_STATE
>>> hex(DECLARED), hex(TRANSACTIONAL_STATE)
('0x33', '0x34')
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from proton import Condition, Data, Delivery, Described

from . import compat

DECLARED = 0x33
TRANSACTIONAL_STATE = 0x34

_OUTCOME_CODES: Dict[Any, int] = {
    0x24: int(Delivery.ACCEPTED), "amqp:accepted:list": int(Delivery.ACCEPTED),
    0x25: int(Delivery.REJECTED), "amqp:rejected:list": int(Delivery.REJECTED),
    0x26: int(Delivery.RELEASED), "amqp:released:list": int(Delivery.RELEASED),
    0x27: int(Delivery.MODIFIED), "amqp:modified:list": int(Delivery.MODIFIED),
}
_ACCEPTED_KEYS = (0x24, "amqp:accepted:list")


def _remote_data(dlv: Any) -> Optional[Any]:
    """The peer's disposition fields as a list (0.39/0.40), or None where proton has no
    ``data`` for it (0.41 decodes the standard states itself)."""
    remote = dlv.remote
    try:
        return getattr(remote, "data", None)
    except Exception:  # noqa: BLE001 - a proton that cannot decode it: not this layout
        return None


def declared_txn_id(dlv: Delivery) -> Optional[bytes]:
    """The transaction id of a ``declared`` outcome, as bytes; None when the declare was not
    answered with ``declared`` (refused, or no outcome yet).

    >>> # txn_id = declared_txn_id(event.delivery)
    """
    if dlv.remote_state != DECLARED:
        return None
    remote = dlv.remote
    txn_id = getattr(remote, "id", None)  # proton 0.41: decoded natively
    if txn_id is None:
        data = _remote_data(dlv)
        txn_id = data[0] if isinstance(data, list) and data else None
    return None if txn_id is None else bytes(txn_id)  # a copy: proton's memoryview dies


def error_condition(value: Any) -> Optional[Condition]:
    """The condition inside a rejected outcome's fields (``[error]``), or None.

    >>> error_condition([["amqp:internal-error", "boom"]]).description
    'boom'
    """
    # rejected = [error]; error = Described(0x1d, [condition, description, info])
    try:
        err = value[0]
        fields: Any = err.value if isinstance(err, Described) else err
        return Condition(str(fields[0]), str(fields[1]) if len(fields) > 1 and fields[1] else None)
    except (IndexError, TypeError, AttributeError, KeyError):
        return None


def _outcome_descriptor(dlv: Any) -> Any:
    # Walks [txn-id, outcome] in place instead of decoding the whole state (once per
    # transactional send). Anything unexpected falls back to the full decode.
    if not compat.NATIVE:
        return None
    try:
        remote = compat.impl(dlv.remote)
        data = Data(compat.lib.pn_disposition_data(remote))
        data.rewind()
        if not (data.next() and data.type() == Data.LIST):
            return None
        data.enter()
        if not (data.next() and data.next() and data.type() == Data.DESCRIBED):
            return None
        data.enter()
        data.next()
        kind = data.type()
        if kind == Data.ULONG:
            return int(data.get_ulong())
        return str(data.get_symbol()) if kind == Data.SYMBOL else None
    except Exception:  # noqa: BLE001 - the full decode decides
        return None


def delivery_outcome(dlv: Delivery) -> Tuple[int, Optional[Condition]]:
    """The outcome of a sent delivery and its condition, also when the broker wrapped it in a
    transactional state (0x34), which proton 0.40 does not look into (``on_accepted`` never
    fires for it). Returns ``(Delivery.ACCEPTED, None)``, ``(Delivery.REJECTED, condition)``
    ...; 0 when the broker gave no outcome.

    >>> # state, condition = delivery_outcome(event.delivery)
    """
    state = dlv.remote_state
    if state != TRANSACTIONAL_STATE:
        cond = dlv.remote.condition if state == Delivery.REJECTED else None
        return int(state), cond
    if _outcome_descriptor(dlv) in _ACCEPTED_KEYS:
        return int(Delivery.ACCEPTED), None  # the common case, read without decoding it all
    data = _remote_data(dlv)
    if data is None:
        # proton 0.41: the outcome's type only (its condition is not exposed there)
        kind = getattr(dlv.remote, "outcome_type", None)
        return (int(kind), None) if kind else (0, None)
    inner = data[1] if isinstance(data, list) and len(data) > 1 else None
    if not isinstance(inner, Described):
        return 0, None
    descriptor = inner.descriptor
    key = str(descriptor) if isinstance(descriptor, str) else int(descriptor)  # type: ignore[arg-type]
    code = int(_OUTCOME_CODES.get(key, 0))
    return code, error_condition(inner.value) if code == Delivery.REJECTED else None
