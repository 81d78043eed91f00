"""AMQP encoding and decoding of message bodies and whole messages.

With ``cproton`` (:data:`~proton_easy._engine.compat.NATIVE`) values are encoded through one
reused ``pn_data_t`` into a buffer of the right size, and messages are decoded by reading each
field straight from proton-c. Otherwise the same results come from proton's public
``Data.encode``, ``Message.encode`` and ``Message.decode``. The common message is encoded and
decoded in Python by :mod:`proton_easy._engine.wire`; what it does not cover comes here.

>>> reader = Reader()
>>> class Fields: pass
>>> out = Fields()
>>> reader.read_into(out, proton.Message(body="hi", subject="s").encode())
>>> out.body, out.subject
('hi', 's')
"""

from __future__ import annotations

import threading
from typing import Any, Optional, Union

import proton
from proton import Data

from . import compat

_local = threading.local()  # one scratch pn_data per thread

_NATIVE_ENCODE = (compat.NATIVE and all(hasattr(compat.lib, name) for name in (
    "pn_data_encoded_size", "pn_data_encode", "pn_message_encode_py", "PN_OVERFLOW"))
    and all(hasattr(proton.Message, name) for name in ("_pre_encode", "_check"))
    and hasattr(Data, "_check"))
_NATIVE_DECODE = compat.NATIVE and all(hasattr(compat.lib, name) for name in (
    "pn_message_decode", "pn_message_body", "pn_message_get_id", "pn_message_clear",
    "pn_data_get_binary"))


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


def copy_fields(pm: proton.Message, out: Any) -> None:
    """Set the plain fields of a decoded ``proton.Message`` on ``out`` (``body``,
    ``properties``, ``id`` ..., ``delivery_count``, ``redelivered``): what
    :meth:`Reader.read_into` sets."""
    out.body = plain(pm.body)
    props = pm.properties
    out.properties = plain(dict(props)) if props else {}
    ann = pm.annotations
    out.annotations = plain(dict(ann)) if ann else {}
    out.id = plain(pm.id)
    out.correlation_id = plain(pm.correlation_id)
    out.reply_to = pm.reply_to
    out.subject = pm.subject
    out.durable = pm.durable
    out.ttl = pm.ttl or None
    out.priority = None if pm.priority == 4 else pm.priority  # 4 is AMQP's default
    ctype = pm.content_type
    out.content_type = None if ctype in (None, "None", "") else str(ctype)
    out.address = pm.address
    user_id = pm.user_id
    out.user_id = bytes(user_id) if user_id else None
    out.group_id = pm.group_id
    out.creation_time = pm.creation_time or None
    out.delivery_count = pm.delivery_count
    out.redelivered = pm.delivery_count > 0


def encode_value(value: Any, prefix: bytes = b"") -> Union[bytes, bytearray]:
    """``prefix`` followed by the AMQP encoding of one value (a body), in one buffer.

    >>> bytes(encode_value("a"))
    b'\\xa1\\x01a'
    """
    data = getattr(_local, "data", None)
    if data is None:
        data = _local.data = Data()
    data.clear()
    data.put_object(value)
    if not _NATIVE_ENCODE:
        return prefix + data.encode()
    lib, ffi = compat.lib, compat.ffi
    impl = data._data
    size = lib.pn_data_encoded_size(impl)
    if size < 0:
        data._check(size)
    head = len(prefix)
    buf = bytearray(head + size)
    buf[:head] = prefix
    written = lib.pn_data_encode(impl, ffi.from_buffer(buf) + head, size)
    if written < 0:
        data._check(written)
    return buf


def encode_message(pm: proton.Message) -> Union[bytes, memoryview]:
    """The AMQP encoding of a whole ``proton.Message``: proton's ``Message.encode``, natively
    with a buffer sized for the message instead of 16 bytes that double until the message
    fits (each try encodes the whole message again).

    >>> len(encode_message(proton.Message(body="x"))) > 0
    True
    """
    if not _NATIVE_ENCODE:
        return pm.encode()
    lib, ffi = compat.lib, compat.ffi
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
        return memoryview(buf)[:err]


def _string(ptr: Any) -> Optional[str]:
    return None if ptr == compat.ffi.NULL else compat.ffi.string(ptr).decode("utf8")


class Reader:
    """Decodes AMQP message bytes onto an object's plain fields (see :func:`copy_fields`).

    One proton message is reused for every decode; natively its fields are read straight from
    proton-c (no ``proton.Message`` properties, no Data wrappers per message). Not
    thread-safe: one per receiving link (or per thread).

    >>> class Fields: pass
    >>> out = Fields()
    >>> Reader().read_into(out, proton.Message(body=b"x").encode())
    >>> out.body
    b'x'
    """

    def __init__(self) -> None:
        self._pm = proton.Message()  # owns the pn_message_t (freed with it)
        self._native = _NATIVE_DECODE and hasattr(self._pm, "_msg")
        if self._native:
            import cproton  # type: ignore[import-untyped]

            self._msgid2py = cproton.msgid2py
            lib = compat.lib
            msg = self._msg = self._pm._msg
            # These pointers live as long as msg; proton-c fills them lazily when asked for.
            self._body = Data(lib.pn_message_body(msg))
            self._properties = Data(lib.pn_message_properties(msg))
            self._annotations = Data(lib.pn_message_annotations(msg))
            self._calls = (  # looked up once: read_into calls each once per message
                lib.pn_message_decode, lib.pn_message_body, lib.pn_message_properties,
                lib.pn_message_annotations, lib.pn_message_get_id,
                lib.pn_message_get_correlation_id,
                lib.pn_message_get_reply_to, lib.pn_message_get_subject,
                lib.pn_message_is_durable, lib.pn_message_get_ttl, lib.pn_message_get_priority,
                lib.pn_message_get_content_type, lib.pn_message_get_address,
                lib.pn_message_get_user_id, lib.pn_message_get_group_id,
                lib.pn_message_get_creation_time, lib.pn_message_get_delivery_count,
                lib.pn_message_clear)
            self._data_calls = (lib.pn_data_rewind, lib.pn_data_next, lib.pn_data_type,
                                lib.pn_data_get_binary, lib.pn_data_get_string, lib.PN_BINARY,
                                lib.PN_STRING)

    def read_into(self, out: Any, data: Any) -> None:
        """Decode one message (``data``: bytes, bytearray or memoryview) onto ``out``."""
        if not self._native:
            pm = self._pm
            pm.clear()
            pm.decode(bytes(data))
            copy_fields(pm, out)
            return
        (decode, body, properties, annotations, get_id, get_correlation_id, get_reply_to,
         get_subject, is_durable, get_ttl, get_priority, get_content_type, get_address,
         get_user_id, get_group_id,
         get_creation_time, get_delivery_count, clear) = self._calls
        ffi, msgid2py, value, string, msg = compat.ffi, self._msgid2py, self._value, _string, \
            self._msg
        self._pm._check(decode(msg, ffi.from_buffer(data), len(data)))
        out.body = value(self._body, body(msg))  # (asking for a section decodes it)
        props = value(self._properties, properties(msg))
        out.properties = dict(props) if props else {}
        ann = value(self._annotations, annotations(msg))
        out.annotations = dict(ann) if ann else {}
        msg_id = msgid2py(get_id(msg))
        out.id = None if msg_id is None else plain(msg_id)
        msg_id = msgid2py(get_correlation_id(msg))
        out.correlation_id = None if msg_id is None else plain(msg_id)
        out.reply_to = string(get_reply_to(msg))
        out.subject = string(get_subject(msg))
        out.durable = bool(is_durable(msg))
        out.ttl = get_ttl(msg) / 1000.0 or None
        priority = get_priority(msg)
        out.priority = None if priority == 4 else priority  # 4 is AMQP's default
        ctype = string(get_content_type(msg))
        out.content_type = None if ctype in (None, "None", "") else ctype
        out.address = string(get_address(msg))
        user_id = get_user_id(msg)
        out.user_id = ffi.unpack(user_id.start, user_id.size) if user_id.size else None
        out.group_id = string(get_group_id(msg))
        out.creation_time = get_creation_time(msg) / 1000.0 or None
        count = get_delivery_count(msg)
        out.delivery_count = count
        out.redelivered = count > 0
        clear(msg)  # a next message without some section must not see this one's

    def _value(self, data: Data, impl: Any) -> Any:
        """The value in ``data`` (whose pointer is ``impl``: asking for it decodes it)."""
        rewind, next_, type_, get_binary, get_string, binary, string = self._data_calls
        rewind(impl)
        if not next_(impl):
            return None
        kind = type_(impl)
        if kind == binary:
            value = get_binary(impl)
            return compat.ffi.unpack(value.start, value.size)
        if kind == string:
            value = get_string(impl)
            return compat.ffi.unpack(value.start, value.size).decode("utf8")
        return plain(data.get_object())
