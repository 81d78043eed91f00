"""The AMQP encoding of the common message, written and read in Python: byte for byte what
proton's ``Message.encode`` writes, and the same plain fields as
:class:`~proton_easy._engine.codec.Reader` reads, without a ``proton.Message`` (a dozen calls
into proton-c per message; requests and replies carry ids, a reply address and application
properties).

:func:`encode_message` covers a header (``durable``, ``priority``, ``ttl``), message annotations
(with a delivery time), the properties of a :class:`~proton_easy.Message` but ``group_id``,
application properties whose keys are str and values str, bytes, int, float, bool, None, UUID
or one of proton's typed numbers and symbols, and any body. :func:`decode_into` reads every
section but an amqp-sequence body or a footer, and every type but arrays, described values,
decimals and chars. Anything else returns None or False: the caller falls back to proton.

>>> from proton_easy import Message
>>> encoded = encode_message(Message("hi", id="1"), durable=False)
>>> bytes(encoded).hex(" ")
'00 53 70 45 00 53 73 c0 04 01 a1 01 31 00 53 77 a1 02 68 69'
>>> class Fields: pass
>>> out = Fields()
>>> decode_into(out, encoded), out.body, out.id
(True, 'hi', '1')
"""

from __future__ import annotations

import struct
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import proton
from proton import byte, float32, int32, short, symbol, timestamp, ubyte, uint, ulong, ushort


def _long_type() -> type:
    """The int subclass proton decodes an AMQP long to (asked of proton's public API)."""
    pm = proton.Message()
    pm.decode(proton.Message(properties={"n": 1}).encode())
    properties: Dict[str, Any] = pm.properties or {}
    return type(properties["n"])


long = _long_type()

_NULL = b"\x40"
_TRUE = b"\x41"
_FALSE = b"\x42"
_HEADER = b"\x00\x53\x70"
_PROPERTIES = b"\x00\x53\x73"
_APPLICATION_PROPERTIES = b"\x00\x53\x74"
_MESSAGE_ANNOTATIONS = b"\x00\x53\x72"
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
_pack_int = struct.Struct(">i").pack
_pack_short = struct.Struct(">h").pack
_pack_ushort = struct.Struct(">H").pack
_pack_float = struct.Struct(">f").pack
_unpack_B = struct.Struct(">B").unpack_from
_unpack_b = struct.Struct(">b").unpack_from
_unpack_h = struct.Struct(">h").unpack_from
_unpack_H = struct.Struct(">H").unpack_from
_unpack_i = struct.Struct(">i").unpack_from
_unpack_I = struct.Struct(">I").unpack_from
_unpack_q = struct.Struct(">q").unpack_from
_unpack_Q = struct.Struct(">Q").unpack_from
_unpack_f = struct.Struct(">f").unpack_from
_unpack_d = struct.Struct(">d").unpack_from


class _Unsupported(Exception):
    """A value this encoder leaves to proton."""


def _sized(short: bytes, long: bytes, data: bytes) -> bytes:
    size = len(data)
    if size < 256:
        return b"".join((short, bytes((size,)), data))
    return b"".join((long, _pack_uint(size), data))


def _string(value: str) -> bytes:
    data = value.encode()
    size = len(data)
    if size < 256:
        return b"\xa1" + bytes((size,)) + data
    return b"".join((b"\xb1", _pack_uint(size), data))


def _binary(value: bytes) -> bytes:
    return _sized(b"\xa0", b"\xb0", value)


def _symbol(value: str) -> bytes:
    return _sized(b"\xa3", b"\xb3", value.encode("ascii"))


def _message_id(value: Any) -> bytes:
    """A message or correlation id as proton writes it (str, ulong, uuid or binary)."""
    kind = type(value)
    if kind is str:
        return _string(value)
    if (kind is int or kind is ulong) and 0 <= value <= _ULONG_MAX:
        return _typed(ulong(value))
    if kind is uuid.UUID:
        raw: bytes = value.bytes
        return b"\x98" + raw
    if kind is bytes:
        return _binary(value)
    raise _Unsupported


def _small_or(short: bytes, long: bytes, pack: Callable[[int], bytes], value: int,
              low: int = 0) -> bytes:
    if low <= value < low + 256:
        return short + bytes((value & 0xFF,))
    return long + pack(value)


def _typed(value: Any) -> bytes:
    """A value of one of proton's AMQP types (an int or str subclass) as proton writes it."""
    kind = type(value)
    if kind is symbol:
        return _symbol(value)
    if kind is ulong:
        if value == 0:
            return b"\x44"
        return _small_or(b"\x53", b"\x80", _pack_ulong, value)
    if kind is uint:
        if value == 0:
            return b"\x43"
        return _small_or(b"\x52", b"\x70", _pack_uint, value)
    if kind is int32:
        return _small_or(b"\x54", b"\x71", _pack_int, value, -128)
    if kind is ubyte:
        return b"\x50" + bytes((value,))
    if kind is byte:
        return b"\x51" + bytes((value & 0xFF,))
    if kind is ushort:
        return b"\x60" + _pack_ushort(value)
    if kind is short:
        return b"\x61" + _pack_short(value)
    if kind is timestamp:
        return b"\x83" + _pack_long(value)
    if kind is float32:
        return b"\x72" + _pack_float(value)
    if kind is uuid.UUID:
        raw: bytes = value.bytes
        return b"\x98" + raw
    raise _Unsupported


def _simple(value: Any) -> bytes:
    """An application property's or annotation's value as proton writes it."""
    kind = type(value)
    if kind is str:
        return _string(value)
    if kind is bool:
        return _TRUE if value else _FALSE
    if kind is int:
        if _LONG_MIN <= value <= _LONG_MAX:
            return _small_or(b"\x55", b"\x81", _pack_long, value, -128)  # (small)long
        raise _Unsupported
    if kind is float:
        return b"\x82" + _pack_double(value)
    if value is None:
        return _NULL
    if kind is bytes:
        return _binary(value)
    return _typed(value)


def _map(section: bytes, entries: List[bytes]) -> bytes:
    data = b"".join(entries)
    return b"".join((section, b"\xd1", _pack_uint(len(data) + 4), _pack_uint(len(entries)),
                     data))


_ONE_ANNOTATION: Dict[Tuple[Any, type, Any, type], bytes] = {}
"""Encoded sections of one annotation (a reply's ``x-opt-jms-dest``, say), by key and value
and their types (``byte(0)``, ``0`` and ``False`` are equal keys otherwise)."""


def _annotations(annotations: Dict[Any, Any], delivery_time: Optional[float]) -> bytes:
    if delivery_time is None and len(annotations) == 1:
        (key, value), = annotations.items()
        kind = type(value)
        if kind in _CACHEABLE:
            memo = (key, type(key), value, kind)
            done = _ONE_ANNOTATION.get(memo)
            if done is None:
                done = _annotation_map(annotations, None)
                if len(_ONE_ANNOTATION) < 256:
                    _ONE_ANNOTATION[memo] = done
            return done
    return _annotation_map(annotations, delivery_time)


def _annotation_map(annotations: Dict[Any, Any], delivery_time: Optional[float]) -> bytes:
    entries = []
    for key, value in annotations.items():
        kind = type(key)
        if kind is str or kind is symbol:
            entries.append(_symbol(key))  # proton makes str keys symbols
        elif kind is ulong:
            entries.append(_typed(key))
        else:
            raise _Unsupported
        entries.append(_simple(value))
    if delivery_time is not None:
        entries.append(_symbol("x-opt-delivery-time"))
        entries.append(_simple(int(delivery_time * 1000)))
    return _map(_MESSAGE_ANNOTATIONS, entries)


_CACHEABLE = frozenset((str, symbol, int, bool, byte, ubyte, short, ushort, int32, uint, ulong))
"""Annotation value types that are immutable and hash by value."""


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


_PLAIN_HEADERS = (_HEADER + _EMPTY_LIST, _HEADER + b"\xc0\x02\x01" + _TRUE)
"""The header of a message with no priority or ttl: (not durable, durable)."""


def _header(durable: bool, priority: Optional[int], ttl: Optional[float]) -> bytes:
    if ttl is None and (priority is None or priority == _DEFAULT_PRIORITY):
        return _PLAIN_HEADERS[1 if durable else 0]
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
    mid, corr, created = msg.id, msg.correlation_id, msg.creation_time
    return _PROPERTIES + _list([
        _NULL if mid is None else _message_id(mid),
        _NULL if user_id is None else _binary(user_id),
        _str_field(msg.address),
        _str_field(msg.subject),
        _str_field(msg.reply_to),
        _NULL if corr is None else _message_id(corr),
        _NULL if content_type is None else _symbol(content_type),
        _NULL,  # content-encoding
        _NULL,  # absolute-expiry-time
        _NULL if created is None else _timestamp(created),
    ])


def _application_properties(properties: Dict[Any, Any]) -> bytes:
    entries = []
    for key, value in properties.items():
        if type(key) is not str:
            raise _Unsupported
        entries.append(_string(key))
        entries.append(_simple(value))
    return _map(_APPLICATION_PROPERTIES, entries)


def encode_message(msg: Any, durable: bool,
                   body: Optional[Callable[[Any, bytes], Union[bytes, bytearray]]] = None,
                   ) -> Optional[bytes]:
    """The AMQP bytes of a :class:`~proton_easy.Message` (``durable``: the send's default for a
    message whose ``durable`` is None), or None when it needs proton's encoder. A body that is
    not str, bytes or None is written by ``body(value, prefix)`` (None: left to proton)."""
    if msg.group_id is not None:
        return None
    try:
        flag = msg.durable
        head = [_header(bool(flag) if flag is not None else durable, msg.priority, msg.ttl)]
        if msg.annotations or msg.delivery_time is not None:
            head.append(_annotations(msg.annotations, msg.delivery_time))
        head.append(_properties(msg))
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


# -- decoding ---------------------------------------------------------------------------
def _text_of(raw: Any) -> str:
    return bytes(raw).decode()


def _symbol_of(raw: Any) -> symbol:
    return symbol(bytes(raw).decode("ascii"))


_FIXED: Dict[int, Tuple[Callable[[Any, int], Tuple[Any, ...]], int, Callable[[Any], Any]]] = {
    0x55: (_unpack_b, 1, long), 0x81: (_unpack_q, 8, long), 0x82: (_unpack_d, 8, float),
    0x83: (_unpack_q, 8, timestamp), 0x53: (_unpack_B, 1, ulong), 0x80: (_unpack_Q, 8, ulong),
    0x52: (_unpack_B, 1, uint), 0x70: (_unpack_I, 4, uint), 0x54: (_unpack_b, 1, int32),
    0x71: (_unpack_i, 4, int32), 0x50: (_unpack_B, 1, ubyte), 0x51: (_unpack_b, 1, byte),
    0x60: (_unpack_H, 2, ushort), 0x61: (_unpack_h, 2, short), 0x72: (_unpack_f, 4, float32),
    0x56: (_unpack_B, 1, bool),
}
"""Fixed-width types: code -> (unpack, width, the type proton reads it as)."""

_SIZED: Dict[int, Tuple[Callable[[Any, int], Tuple[Any, ...]], int, Callable[[Any], Any]]] = {
    0xa1: (_unpack_B, 1, _text_of), 0xb1: (_unpack_I, 4, _text_of),
    0xa0: (_unpack_B, 1, bytes), 0xb0: (_unpack_I, 4, bytes),
    0xa3: (_unpack_B, 1, _symbol_of), 0xb3: (_unpack_I, 4, _symbol_of),
}
"""Strings, binaries and symbols: code -> (unpack of the size, its width, the type)."""

_CONSTANT: Dict[int, Any] = {0x40: None, 0x41: True, 0x42: False, 0x44: ulong(0), 0x43: uint(0)}


def _value(data: bytes, pos: int) -> Tuple[Any, int]:
    """One AMQP value at ``pos``, typed as proton's Data.get_object types it; and the next pos."""
    code = data[pos]
    pos += 1
    if code == 0xa1:  # str8: the most common by far
        end = pos + 1 + data[pos]
        if end > len(data):
            raise _Unsupported  # cut short
        return data[pos + 1:end].decode(), end
    if code == 0xa0:  # vbin8: a bytes body
        end = pos + 1 + data[pos]
        if end > len(data):
            raise _Unsupported  # cut short
        return bytes(data[pos + 1:end]), end
    if code == 0x45:  # list0: the empty properties of a message without ids
        return [], pos
    if code in _CONSTANT:  # null, true, false (a durable header's first field) ...
        return _CONSTANT[code], pos
    sized = _SIZED.get(code)
    if sized is not None:
        unpack, width, kind = sized
        start = pos + width
        end = start + unpack(data, pos)[0]
        if end > len(data):
            raise _Unsupported  # cut short
        return kind(data[start:end]), end
    fixed = _FIXED.get(code)
    if fixed is not None:
        unpack, width, kind = fixed
        return kind(unpack(data, pos)[0]), pos + width
    if code == 0x98:
        return uuid.UUID(bytes=bytes(data[pos:pos + 16])), pos + 16
    if code == 0x45:
        return [], pos
    if code == 0xc0 or code == 0xc1:  # list8, map8: size, count
        end, count, pos = pos + 1 + data[pos], data[pos + 1], pos + 2
    elif code == 0xd0 or code == 0xd1:  # list32, map32
        end, count, pos = pos + 4 + _unpack_I(data, pos)[0], _unpack_I(data, pos + 4)[0], pos + 8
    else:
        raise _Unsupported  # arrays, described values, decimals, chars: proton reads them
    if code == 0xc0 or code == 0xd0:
        items = []
        for _ in range(count):
            item, pos = _value(data, pos)
            items.append(item)
        result: Any = items
    else:
        result = {}
        for _ in range(count // 2):
            key, pos = _value(data, pos)
            result[key], pos = _value(data, pos)
    if pos != end:
        raise _Unsupported  # sizes that do not add up: let proton say what is wrong
    return result, pos


def _read_id(value: Any) -> Any:
    """What proton's ``msgid2py`` makes of an id: ulong as int, str, bytes, UUID; else None."""
    kind = type(value)
    if kind is str or kind is bytes or kind is uuid.UUID or value is None:
        return value
    if kind is ulong:
        return int(value)
    if (kind is long or kind is int32) and value >= 0:
        return int(value)
    return None


def _text(value: Any) -> Optional[str]:
    if value is None or type(value) is str:
        return value
    raise _Unsupported


_COPIED = 4096
"""A bytearray up to this size is read as bytes (copied once); a longer one as it is."""


def decode_into(out: Any, data: Any) -> bool:
    """Decode ``data`` onto ``out``'s fields as :class:`~proton_easy._engine.codec.Reader` does;
    False (``out`` half written) when the message needs proton's decoder."""
    if type(data) is not bytes and (type(data) is not bytearray or len(data) <= _COPIED):
        data = bytes(data)  # (bytes slice cheaper; a memoryview slice has no decode)
    try:
        return _decode_into(out, data)
    except (_Unsupported, IndexError, TypeError, ValueError, struct.error, UnicodeError):
        return False


_NO_HEADER = (False, None, None, 0, False)
"""The header fields of a message without a header (or with an empty one)."""

_SECTIONS: Dict[bytes, Any] = {}
"""Header, message annotation and application property sections read before (their bytes) ->
the header's fields, or the map (copied for each message): a stream of messages mostly repeats
one or two of each (durable or not, the same priority and time to live, a reply's
``x-opt-jms-dest``)."""

_SECTIONS_KEPT = 64
_SECTION_KEPT_SIZE = 1024

_SCALARS = frozenset((type(None), bool, str, bytes, symbol, uuid.UUID, float, long, timestamp,
                      ulong, uint, int32, ubyte, byte, ushort, short, float32))
"""The immutable types of the values :func:`_value` reads: a map of only these can be kept."""


def _header_fields(value: Any) -> Optional[Tuple[Any, ...]]:
    """The fields (durable, priority, ttl, delivery_count, redelivered) of a header section's
    value, as proton reads them; None when proton must read it."""
    if value is None or value == []:
        return _NO_HEADER
    if type(value) is not list:
        return None
    value = value + [None] * 5
    fields = []
    for field, kind, default in ((value[0], bool, False), (value[1], ubyte, 4),
                                 (value[2], uint, 0), (value[4], uint, 0)):
        if field is None:
            field = default  # null: the field's default
        elif type(field) is not kind:
            return None
        fields.append(field)
    durable, priority, ttl, count = fields  # (read once per header seen: see _SECTIONS)
    return (durable, None if priority == 4 else int(priority), ttl / 1000.0 or None,
            int(count), count > 0)


def _section(data: bytes, pos: int) -> Tuple[Any, int]:
    """The header's fields or the map of the section at ``pos``, kept in :data:`_SECTIONS` when
    it can be; and the next pos. None for a header proton must read."""
    kind = data[pos + 3]
    if kind == 0xc0 or kind == 0xc1:  # list8, map8
        stop = pos + 5 + data[pos + 4]
    elif kind == 0xd0 or kind == 0xd1:  # list32, map32
        stop = pos + 8 + _unpack_I(data, pos + 4)[0]
    else:
        stop = pos + 4  # list0, null, or what _value reads or refuses
    key = bytes(data[pos:stop])
    seen = _SECTIONS.get(key)
    if seen is not None and stop <= len(data):
        return (seen if type(seen) is tuple else dict(seen)), stop
    value, end = _value(data, pos + 3)
    if data[pos + 2] == 0x70:
        value = _header_fields(value)
        kept = value is not None
    else:  # message annotations, application properties
        kept = type(value) is dict and _SCALARS.issuperset(map(type, value.values()))
    if kept and end == stop and stop - pos <= _SECTION_KEPT_SIZE:
        if len(_SECTIONS) >= _SECTIONS_KEPT:
            _SECTIONS.clear()
        _SECTIONS[key] = value if type(value) is tuple else dict(value)
    return value, end


def _fields(data: bytes, pos: int) -> Tuple[Any, int]:
    """The value of a properties section at ``pos`` (a list8 of mostly nulls and str8s read
    here, anything else by :func:`_value`); and the next pos."""
    if data[pos] != 0xc0:
        return _value(data, pos)
    end = pos + 2 + data[pos + 1]
    count = data[pos + 2]
    pos += 3
    fields: List[Any] = []
    for _ in range(count):
        code = data[pos]
        if code == 0x40:
            fields.append(None)
            pos += 1
        elif code == 0xa1:
            stop = pos + 2 + data[pos + 1]
            if stop > len(data):
                raise _Unsupported  # cut short
            fields.append(data[pos + 2:stop].decode())
            pos = stop
        else:
            field, pos = _value(data, pos)
            fields.append(field)
    if pos != end:
        raise _Unsupported  # sizes that do not add up: let proton say what is wrong
    return fields, pos


def _decode_into(out: Any, data: Any) -> bool:
    end = len(data)
    pos = 0
    header: Any = _NO_HEADER
    props: Any = None
    app: Any = None
    ann: Any = None
    body: Any = None
    has_body = False
    while pos < end:
        if data[pos] != 0 or data[pos + 1] != 0x53:
            return False
        code = data[pos + 2]
        if code == 0x73:
            props, pos = _fields(data, pos + 3)
            continue
        if code == 0x70 and data[pos + 3] == 0x45:  # an empty header: a message not durable
            header = _NO_HEADER
            pos += 4
            continue
        if code == 0x70 or code == 0x72 or code == 0x74:  # most likely seen before
            value, pos = _section(data, pos)
            if code == 0x70:
                if value is None:
                    return False
                header = value
            elif code == 0x72:
                ann = value
            else:
                app = value
            continue
        value, pos = _value(data, pos + 3)
        if code == 0x77 or code == 0x75:  # amqp-value, data
            if has_body or (code == 0x75 and type(value) is not bytes):
                return False
            body, has_body = value, True
        elif code != 0x71:  # delivery annotations: not kept (nor by proton's Message fields)
            return False  # amqp-sequence, footer, or something else
    if pos != end:
        return False
    out.body = body
    if app is not None and type(app) is not dict or ann is not None and type(ann) is not dict:
        return False
    out.properties = app or {}
    out.annotations = ann or {}
    out.durable, out.priority, out.ttl, out.delivery_count, out.redelivered = header
    if props is not None and type(props) is not list:
        return False
    if not props:  # no properties (or an empty list): every field null
        out.id = out.user_id = out.address = out.subject = out.reply_to = None
        out.correlation_id = out.content_type = out.creation_time = out.group_id = None
        return True
    fields: List[Any] = props
    if len(fields) < 13:
        fields = fields + [None] * (13 - len(fields))
    out.id = _read_id(fields[0])
    user_id = fields[1]
    if user_id is not None and type(user_id) is not bytes:
        return False
    out.user_id = user_id or None
    out.address = _text(fields[2])
    out.subject = _text(fields[3])
    out.reply_to = _text(fields[4])
    out.correlation_id = _read_id(fields[5])
    ctype = fields[6]
    if ctype is not None and type(ctype) is not symbol:
        return False
    out.content_type = None if ctype in (None, "None", "") else str(ctype)
    created = fields[9]
    if created is not None and type(created) is not timestamp:
        return False
    out.creation_time = (created or 0) / 1000.0 or None
    out.group_id = _text(fields[10])
    return True


__all__ = ["encode_message", "decode_into"]
