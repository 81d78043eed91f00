"""The AMQP encoding of the common message, written in Python: byte for byte what proton's
``Message.encode`` writes, without building a ``proton.Message`` (a dozen calls into proton-c
per message: requests and replies carry ids, a reply address and application properties).

It covers a header (``durable``, ``priority``, ``ttl``), the properties a message of
:class:`~proton_easy.Message` has but ``group_id``, application properties whose keys are str
and values str, bytes, int, float, bool or None, and any body. Anything else (annotations, a
delivery time, a group, other types) returns None: the caller falls back to proton.

>>> from proton_easy import Message
>>> encoded = encode_message(Message("hi", id="1"), durable=False)
>>> bytes(encoded).hex(" ")
'00 53 70 45 00 53 73 c0 04 01 a1 01 31 00 53 77 a1 02 68 69'
"""

from __future__ import annotations

import struct
import uuid
from typing import Any, Callable, Dict, List, Optional, Union

_NULL = b"\x40"
_TRUE = b"\x41"
_FALSE = b"\x42"
_HEADER = b"\x00\x53\x70"
_PROPERTIES = b"\x00\x53\x73"
_APPLICATION_PROPERTIES = b"\x00\x53\x74"
_VALUE = b"\x00\x53\x77"
_EMPTY_LIST = b"\x45"
_DEFAULT_PRIORITY = 4
_UINT_MAX = 2 ** 32 - 1
_ULONG_MAX = 2 ** 64 - 1
_LONG_MIN, _LONG_MAX = -(2 ** 63), 2 ** 63 - 1

_pack_uint = struct.Struct(">I").pack
_pack_ulong = struct.Struct(">Q").pack
_pack_long = struct.Struct(">q").pack
_pack_double = struct.Struct(">d").pack


class _Unsupported(Exception):
    """A value this encoder leaves to proton."""


def _sized(short: bytes, long: bytes, data: bytes) -> bytes:
    size = len(data)
    if size < 256:
        return b"".join((short, bytes((size,)), data))
    return b"".join((long, _pack_uint(size), data))


def _string(value: str) -> bytes:
    return _sized(b"\xa1", b"\xb1", value.encode())


def _binary(value: bytes) -> bytes:
    return _sized(b"\xa0", b"\xb0", value)


def _symbol(value: str) -> bytes:
    return _sized(b"\xa3", b"\xb3", value.encode("ascii"))


def _message_id(value: Any) -> bytes:
    """A message or correlation id as proton writes it (str, ulong, uuid or binary)."""
    kind = type(value)
    if kind is str:
        return _string(value)
    if kind is int and 0 <= value <= _ULONG_MAX:
        if value == 0:
            return b"\x44"  # ulong0
        if value < 256:
            return b"\x53" + bytes((value,))  # smallulong
        return b"\x80" + _pack_ulong(value)
    if kind is uuid.UUID:
        raw: bytes = value.bytes
        return b"\x98" + raw
    if kind is bytes:
        return _binary(value)
    raise _Unsupported


def _simple(value: Any) -> bytes:
    """An application property's value as proton writes it."""
    kind = type(value)
    if kind is str:
        return _string(value)
    if kind is bool:
        return _TRUE if value else _FALSE
    if kind is int:
        if -128 <= value <= 127:
            return b"\x55" + bytes((value & 0xFF,))  # smalllong
        if _LONG_MIN <= value <= _LONG_MAX:
            return b"\x81" + _pack_long(value)
        raise _Unsupported
    if kind is float:
        return b"\x82" + _pack_double(value)
    if value is None:
        return _NULL
    if kind is bytes:
        return _binary(value)
    raise _Unsupported


def _list(fields: List[bytes]) -> bytes:
    """A described section's list, trailing nulls left out (as proton-c does)."""
    while fields and fields[-1] is _NULL:
        fields.pop()
    if not fields:
        return _EMPTY_LIST
    data = b"".join(fields)
    count = len(fields)
    if len(data) + 1 < 256:
        return b"".join((b"\xc0", bytes((len(data) + 1, count)), data))
    return b"".join((b"\xd0", _pack_uint(len(data) + 4), _pack_uint(count), data))


def _header(durable: bool, priority: Optional[int], ttl: Optional[float]) -> bytes:
    fields = [_TRUE if durable else _NULL, _NULL, _NULL]
    if priority is not None and priority != _DEFAULT_PRIORITY:
        if type(priority) is not int or not 0 <= priority <= 255:
            raise _Unsupported
        fields[1] = b"\x50" + bytes((priority,))
    if ttl is not None:
        millis = int(ttl * 1000)
        if not 0 <= millis <= _UINT_MAX:
            raise _Unsupported
        if millis:
            fields[2] = b"\x70" + _pack_uint(millis)
    return _HEADER + _list(fields)


def _optional(encode: Callable[[Any], bytes], value: Any) -> bytes:
    return _NULL if value is None else encode(value)


def _timestamp(seconds: Any) -> bytes:
    if type(seconds) not in (int, float):
        raise _Unsupported
    millis = int(seconds * 1000)
    if not millis:
        return _NULL
    if not _LONG_MIN <= millis <= _LONG_MAX:
        raise _Unsupported
    return b"\x83" + _pack_long(millis)


def _str_field(value: Any) -> bytes:
    if value is None:
        return _NULL
    if type(value) is not str:
        raise _Unsupported
    return _string(value)


def _properties(msg: Any) -> bytes:
    user_id = msg.user_id
    if user_id is not None and type(user_id) is not bytes:
        raise _Unsupported
    content_type = msg.content_type
    if content_type is not None and type(content_type) is not str:
        raise _Unsupported
    return _PROPERTIES + _list([
        _optional(_message_id, msg.id),
        _optional(_binary, user_id),
        _str_field(msg.address),
        _str_field(msg.subject),
        _str_field(msg.reply_to),
        _optional(_message_id, msg.correlation_id),
        _optional(_symbol, content_type),
        _NULL,  # content-encoding
        _NULL,  # absolute-expiry-time
        _optional(_timestamp, msg.creation_time),
    ])


def _application_properties(properties: Dict[Any, Any]) -> bytes:
    entries = []
    for key, value in properties.items():
        if type(key) is not str:
            raise _Unsupported
        entries.append(_string(key))
        entries.append(_simple(value))
    data = b"".join(entries)
    return b"".join((_APPLICATION_PROPERTIES, b"\xd1", _pack_uint(len(data) + 4),
                     _pack_uint(len(entries)), data))


def encode_message(msg: Any, durable: bool,
                   body: Optional[Callable[[Any, bytes], Union[bytes, bytearray]]] = None,
                   ) -> Optional[bytes]:
    """The AMQP bytes of a :class:`~proton_easy.Message` (``durable``: the send's default for a
    message whose ``durable`` is None), or None when it needs proton's encoder. A body that is
    not str, bytes or None is written by ``body(value, prefix)`` (None: left to proton)."""
    if msg.annotations or msg.delivery_time is not None or msg.group_id is not None:
        return None
    try:
        flag = msg.durable
        head = [_header(bool(flag) if flag is not None else durable, msg.priority, msg.ttl),
                _properties(msg)]
        if msg.properties:
            head.append(_application_properties(msg.properties))
    except (_Unsupported, TypeError, ValueError, OverflowError, UnicodeError):
        return None
    value = msg.body
    kind = type(value)
    if value is None:
        return b"".join(head)
    if kind is str:
        head += (_VALUE, _string(value))
        return b"".join(head)
    if kind is bytes:
        head += (_VALUE, _binary(value))
        return b"".join(head)
    if body is None:
        return None
    head.append(_VALUE)
    return bytes(body(value, b"".join(head)))


__all__ = ["encode_message"]
