"""Messages as plain Python objects, and their conversion to and from proton's Message."""

from __future__ import annotations

import copy
import threading
from typing import Any, Dict, Optional

import proton
from cproton import ffi, lib, msgid2py
from proton import Data, symbol

_FIELDS = ("id", "correlation_id", "reply_to", "subject", "durable", "ttl", "priority",
           "content_type", "address", "user_id", "group_id", "creation_time")


def plain(value: Any) -> Any:
    """Copy a decoded AMQP value into plain Python: memoryviews become bytes, recursively.

    >>> plain({"a": memoryview(b"x")})
    {'a': b'x'}
    """
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


class Message:
    """An AMQP message with a plain Python body.

    Bodies are ``str``, ``bytes``, ``dict``, ``list``, numbers, ``bool`` or ``None``;
    ``properties`` are the application properties (what selectors filter on). Received messages
    also carry ``delivery_count`` and ``redelivered``.

    >>> msg = Message({"sequence": 1}, properties={"colour": "green"}, durable=True)
    >>> msg.body
    {'sequence': 1}
    """

    __slots__ = ("body", "properties", "annotations", "delivery_count", "redelivered",
                 "delivery_time", *_FIELDS)

    def __init__(
        self,
        body: Any = None,
        *,
        properties: Optional[Dict[str, Any]] = None,
        id: Any = None,
        correlation_id: Any = None,
        reply_to: Optional[str] = None,
        subject: Optional[str] = None,
        durable: Optional[bool] = None,
        ttl: Optional[float] = None,
        priority: Optional[int] = None,
        content_type: Optional[str] = None,
        address: Optional[str] = None,
        user_id: Optional[bytes] = None,
        group_id: Optional[str] = None,
        creation_time: Optional[float] = None,
        annotations: Optional[Dict[Any, Any]] = None,
        delivery_time: Optional[float] = None,
    ) -> None:
        if delivery_time is not None:
            check_delay("delivery_time", delivery_time)
        self.delivery_time = delivery_time
        self.body = body
        self.properties = dict(properties) if properties else {}
        self.id = id
        self.correlation_id = correlation_id
        self.reply_to = reply_to
        self.subject = subject
        self.durable = durable
        self.ttl = ttl
        self.priority = priority
        self.content_type = content_type
        self.address = address
        self.user_id = user_id
        self.group_id = group_id
        self.creation_time = creation_time
        self.annotations = dict(annotations) if annotations else {}
        self.delivery_count = 0
        self.redelivered = False

    def __repr__(self) -> str:
        parts = [f"body={self.body!r}"]
        for name in ("properties", *_FIELDS, "delivery_time"):
            value = getattr(self, name)
            if value not in (None, {}, False):
                parts.append(f"{name}={value!r}")
        return f"Message({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        if bool(self.durable) != bool(other.durable):  # None: "as the send says", else False
            return False
        return all(getattr(self, n) == getattr(other, n)
                   for n in ("body", "properties", *_FIELDS) if n != "durable")

    __hash__ = None  # type: ignore[assignment]

    def to_proton(self) -> proton.Message:
        """Build the equivalent ``proton.Message``."""
        pm = proton.Message(body=self.body)
        for name in _FIELDS:
            value = getattr(self, name)
            if value is not None and value is not False:
                if name == "content_type":
                    value = symbol(value)
                setattr(pm, name, value)
        if self.properties:
            pm.properties = dict(self.properties)
        if self.annotations or self.delivery_time is not None:
            annotations = dict(self.annotations)
            if self.delivery_time is not None:  # Artemis holds the message until then
                annotations[DELIVERY_TIME] = int(self.delivery_time * 1000)
            pm.annotations = annotations
        return pm

    @classmethod
    def from_proton(cls, pm: proton.Message) -> Message:
        """Copy a received ``proton.Message`` into a plain :class:`Message`."""
        msg = cls.__new__(cls)
        msg.body = plain(pm.body)
        props = pm.properties
        msg.properties = plain(dict(props)) if props else {}
        ann = pm.annotations
        msg.annotations = plain(dict(ann)) if ann else {}
        msg.delivery_time = _delivery_time(msg.annotations)
        msg.id = plain(pm.id)
        msg.correlation_id = plain(pm.correlation_id)
        msg.reply_to = pm.reply_to
        msg.subject = pm.subject
        msg.durable = pm.durable
        msg.ttl = pm.ttl or None
        msg.priority = None if pm.priority == 4 else pm.priority  # 4 is AMQP's default
        ctype = pm.content_type
        msg.content_type = None if ctype in (None, "None", "") else str(ctype)
        msg.address = pm.address
        user_id = pm.user_id
        msg.user_id = bytes(user_id) if user_id else None
        msg.group_id = pm.group_id
        msg.creation_time = pm.creation_time or None
        msg.delivery_count = pm.delivery_count
        msg.redelivered = pm.delivery_count > 0
        return msg


def to_proton(value: Any) -> proton.Message:
    """Turn a body, a :class:`Message` or a ``proton.Message`` into a ``proton.Message``."""
    if isinstance(value, proton.Message):
        return value
    if isinstance(value, Message):
        return value.to_proton()
    return proton.Message(body=value)


class Encoded(bytes):
    """The AMQP encoding of a whole message (as opposed to a ``bytes`` body)."""


# What proton's Message.encode writes before a plain body: an empty (or durable) header, empty
# properties, and the amqp-value section's descriptor. A plain body is appended to these by hand
# (bytes, str) or through one reused pn_data (other values): byte for byte proton's own output,
# without a proton.Message, its four Data wrappers and its 16-byte-and-double encode buffer.
_HEADER = b"\x00SpE"
_DURABLE_HEADER = b"\x00Sp\xc0\x02\x01A"  # list8, size 2, one field: durable=true
_PROPERTIES = b"\x00SsE"
_VALUE = b"\x00Sw"
_PLAIN = _HEADER + _PROPERTIES + _VALUE
_PLAIN_DURABLE = _DURABLE_HEADER + _PROPERTIES + _VALUE
_ENCODE_ERRORS = (KeyError, TypeError, OverflowError, proton.MessageException, AttributeError)

_local = threading.local()  # one scratch pn_data and decoder per thread


def encode(value: Any, durable: bool = False, delay: Optional[float] = None) -> Encoded:
    """Encode a body or message to its AMQP bytes; TypeError if it cannot be encoded.

    ``durable`` marks a plain body durable, and a :class:`Message` whose ``durable`` is None
    (one that says nothing itself). ``delay`` (seconds) asks the broker to hold the message
    that long (the ``x-opt-delivery-delay`` annotation).

    >>> len(encode("hello")) > len(encode("hello", delay=None)) - 1
    True
    """
    if delay is not None:
        check_delay("delay", delay)
        if type(value) is Encoded:
            raise TypeError("delay= cannot be added to a message encoded already")
        msg = copy.copy(value) if isinstance(value, Message) else (
            Message.from_proton(value) if isinstance(value, proton.Message) else Message(value))
        msg.annotations = {**msg.annotations, DELIVERY_DELAY: int(delay * 1000)}
        value = msg
    kind = type(value)
    if kind is bytes or kind is str:
        head = _PLAIN_DURABLE if durable else _PLAIN
        if kind is str:
            data, short, long = value.encode(), b"\xa1", b"\xb1"  # str8-utf8 / str32-utf8
        else:
            data, short, long = value, b"\xa0", b"\xb0"  # vbin8 / vbin32
        size = len(data)
        if size < 256:
            return Encoded(b"".join((head, short, size.to_bytes(1, "big"), data)))
        return Encoded(b"".join((head, long, size.to_bytes(4, "big"), data)))
    try:
        if kind is Message or kind is proton.Message or isinstance(value, (Message,
                                                                           proton.Message)):
            pm = to_proton(value)
            if durable and kind is Message and value.durable is None:
                pm.durable = True
            return _encode_message(pm)
        return _encode_body(value, durable)
    except _ENCODE_ERRORS as exc:
        raise TypeError(f"cannot encode {_describe(value)} as an AMQP message: "
                        f"{type(exc).__name__}: {exc}") from None


def _encode_body(body: Any, durable: bool) -> Encoded:
    head = _PLAIN_DURABLE if durable else _PLAIN
    if body is None:
        return Encoded(head[:-len(_VALUE)])  # proton writes no body section for None
    data = getattr(_local, "data", None)
    if data is None:
        data = _local.data = Data()
    data.clear()
    data.put_object(body)
    impl = data._data
    size = lib.pn_data_encoded_size(impl)
    if size < 0:
        data._check(size)
    buf = bytearray(len(head) + size)
    buf[:len(head)] = head
    written = lib.pn_data_encode(impl, ffi.from_buffer(buf) + len(head), size)
    if written < 0:
        data._check(written)
    return Encoded(buf)


def _encode_message(pm: proton.Message) -> Encoded:
    """proton's Message.encode, with a buffer sized for the message instead of 16 bytes that
    double until the message fits (each try encodes the whole message again)."""
    pm._pre_encode()
    body = pm.body
    size = 1024 + (len(body) if isinstance(body, (bytes, str)) else 0)
    while True:
        buf = bytearray(size)
        err = lib.pn_message_encode_py(pm._msg, ffi.from_buffer(buf), size)
        if err == lib.PN_OVERFLOW:
            size *= 4
            continue
        pm._check(err)
        return Encoded(memoryview(buf)[:err])


DELIVERY_TIME = symbol("x-opt-delivery-time")
"""The message annotation with the absolute time (ms since the epoch) Artemis holds it until."""
DELIVERY_DELAY = symbol("x-opt-delivery-delay")
"""The message annotation with the milliseconds Artemis holds a message before delivering it."""


def check_delay(name: str, value: Any) -> None:
    """TypeError/ValueError unless ``value`` is a non-negative, finite number of seconds.

    >>> check_delay("delay", 2.5)
    >>> check_delay("delay", -1)
    Traceback (most recent call last):
    ...
    ValueError: delay must be a non-negative number of seconds, not -1
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    if not 0 <= value < float("inf"):
        raise ValueError(f"{name} must be a non-negative number of seconds, not {value!r}")


def _delivery_time(annotations: Dict[Any, Any]) -> Optional[float]:
    value = annotations.get(DELIVERY_TIME)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value / 1000.0
    return None


def _describe(value: Any) -> str:
    if isinstance(value, Message):
        return f"Message with body of type {type(value.body).__name__}"
    return f"body of type {type(value).__name__}"


def _string(ptr: Any) -> Optional[str]:
    return None if ptr == ffi.NULL else ffi.string(ptr).decode("utf8")


class Decoder:
    """Turns AMQP message bytes into plain :class:`Message` objects.

    One proton message is reused for every decode, and its fields are read straight from
    proton-c: no ``proton.Message`` properties, no Data wrappers made per message. Not
    thread-safe: one per receiving link (or per thread).

    >>> Decoder().decode(encode("hello")).body
    'hello'
    """

    def __init__(self) -> None:
        self._pm = proton.Message()  # owns the pn_message_t (freed with it)
        msg = self._msg = self._pm._msg
        # These pointers live as long as msg; proton-c fills them lazily when they are asked for.
        self._body = Data(lib.pn_message_body(msg))
        self._properties = Data(lib.pn_message_properties(msg))
        self._annotations = Data(lib.pn_message_annotations(msg))

    def decode(self, data: Any) -> Message:
        """Decode one message (``data``: bytes, bytearray or memoryview)."""
        msg = self._msg
        self._pm._check(lib.pn_message_decode(msg, ffi.from_buffer(data), len(data)))
        out = Message.__new__(Message)
        out.body = self._value(self._body, lib.pn_message_body(msg))
        props = self._value(self._properties, lib.pn_message_properties(msg))
        out.properties = dict(props) if props else {}
        ann = self._value(self._annotations, lib.pn_message_annotations(msg))
        out.annotations = dict(ann) if ann else {}
        out.delivery_time = _delivery_time(out.annotations) if ann else None
        out.id = plain(msgid2py(lib.pn_message_get_id(msg)))
        out.correlation_id = plain(msgid2py(lib.pn_message_get_correlation_id(msg)))
        out.reply_to = _string(lib.pn_message_get_reply_to(msg))
        out.subject = _string(lib.pn_message_get_subject(msg))
        out.durable = bool(lib.pn_message_is_durable(msg))
        out.ttl = lib.pn_message_get_ttl(msg) / 1000.0 or None
        priority = lib.pn_message_get_priority(msg)
        out.priority = None if priority == 4 else priority  # 4 is AMQP's default
        ctype = _string(lib.pn_message_get_content_type(msg))
        out.content_type = None if ctype in (None, "None", "") else ctype
        out.address = _string(lib.pn_message_get_address(msg))
        user_id = lib.pn_message_get_user_id(msg)
        out.user_id = ffi.unpack(user_id.start, user_id.size) if user_id.size else None
        out.group_id = _string(lib.pn_message_get_group_id(msg))
        out.creation_time = lib.pn_message_get_creation_time(msg) / 1000.0 or None
        count = lib.pn_message_get_delivery_count(msg)
        out.delivery_count = count
        out.redelivered = count > 0
        lib.pn_message_clear(msg)  # a next message without some section must not see this one's
        return out

    @staticmethod
    def _value(data: Data, impl: Any) -> Any:
        """The value in ``data`` (whose pointer is ``impl``: asking for it decodes it)."""
        lib.pn_data_rewind(impl)
        if not lib.pn_data_next(impl):
            return None
        kind = lib.pn_data_type(impl)
        if kind == lib.PN_BINARY:
            value = lib.pn_data_get_binary(impl)
            return ffi.unpack(value.start, value.size)
        if kind == lib.PN_STRING:
            value = lib.pn_data_get_string(impl)
            return ffi.unpack(value.start, value.size).decode("utf8")
        return plain(data.get_object())


def decode(data: bytes) -> Message:
    """Decode AMQP message bytes into a plain :class:`Message`."""
    decoder = getattr(_local, "decoder", None)
    if decoder is None:
        decoder = _local.decoder = Decoder()
    return decoder.decode(data)
