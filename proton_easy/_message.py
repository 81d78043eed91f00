"""Messages as plain Python objects, and their conversion to and from proton's Message."""

from __future__ import annotations

import copy
import threading
from typing import Any, Dict, List, Optional, Tuple, Union

import proton
from proton import Data, symbol

from ._engine import codec, wire
from ._engine.codec import plain  # noqa: F401 - part of this module's API

_FIELDS = ("id", "correlation_id", "reply_to", "subject", "durable", "ttl", "priority",
           "content_type", "address", "user_id", "group_id", "creation_time")


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
            pm.properties = dict(self.properties)  # type: ignore[assignment]
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
        codec.copy_fields(pm, msg)
        msg.delivery_time = _delivery_time(msg.annotations)
        return msg


Message.__module__ = "proton_easy"  # where users import it from


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

_local = threading.local()  # one decoder per thread


def encode_plain(head: bytes, value: Union[str, bytes]) -> Encoded:
    """A message whose body is a str or bytes: ``head`` (the encoded sections before the body,
    ending with the amqp-value descriptor) and the value, as AMQP str or binary.

    >>> bytes(encode_plain(b"", "hi"))
    b'\\xa1\\x02hi'
    """
    if isinstance(value, str):
        data, short, long = value.encode(), b"\xa1", b"\xb1"  # str8-utf8 / str32-utf8
    else:
        data, short, long = value, b"\xa0", b"\xb0"  # vbin8 / vbin32
    size = len(data)
    if size < 256:
        return Encoded(b"".join((head, short, size.to_bytes(1, "big"), data)))
    return Encoded(b"".join((head, long, size.to_bytes(4, "big"), data)))


def encode(value: Any, durable: bool = False, delay: Optional[float] = None) -> Encoded:
    """Encode a body or message to its AMQP bytes; TypeError if it cannot be encoded.

    ``durable`` marks a plain body durable, and a :class:`Message` whose ``durable`` is None
    (one that says nothing itself). ``delay`` (seconds) asks the broker to hold the message
    that long (the ``x-opt-delivery-delay`` annotation).

    >>> len(encode("hello")) > 0
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
        return encode_plain(_PLAIN_DURABLE if durable else _PLAIN, value)
    try:
        if kind is Message:
            fast = wire.encode_message(value, durable, codec.encode_value)
            if fast is not None:
                return Encoded(fast)
        if kind is Message or kind is proton.Message or isinstance(value, (Message,
                                                                           proton.Message)):
            pm = to_proton(value)
            if durable and kind is Message and value.durable is None:
                pm.durable = True
            return _encode_message(pm)
        return _encode_body(value, durable)
    except RecursionError:
        raise TypeError(f"cannot encode {_describe(value)} as an AMQP message: it is nested "
                        f"deeper than {MAX_DEPTH} levels") from None
    except _ENCODE_ERRORS as exc:
        found = find_unencodable(value)
        if found is not None:
            raise TypeError(f"cannot encode the message: {found}") from None
        raise TypeError(f"cannot encode {_describe(value)} as an AMQP message: "
                        f"{type(exc).__name__}: {exc}") from None


def _encode_body(body: Any, durable: bool) -> Encoded:
    head = _PLAIN_DURABLE if durable else _PLAIN
    if body is None:
        return Encoded(head[:-len(_VALUE)])  # proton writes no body section for None
    return Encoded(codec.encode_value(body, head))


def _encode_message(pm: proton.Message) -> Encoded:
    """proton's Message.encode (with a buffer sized for the message)."""
    return Encoded(codec.encode_message(pm))


MAX_DEPTH = 100
"""How deeply lists and maps may nest in a body (or in properties) for :func:`encode`."""

_INSTEAD = {
    "datetime": "a number (dt.timestamp()), a str (dt.isoformat()) or "
                "proton.timestamp(milliseconds)",
    "date": "a str (d.isoformat())",
    "time": "a str (t.isoformat())",
    "timedelta": "a number of seconds (td.total_seconds())",
    "Decimal": "a str or a float",
    "set": "a list", "frozenset": "a list",
    "OrderedDict": "a dict (dict(value))", "defaultdict": "a dict (dict(value))",
    "bytearray": "bytes (bytes(value))",
    "Path": "a str (str(path))", "PosixPath": "a str (str(path))",
    "WindowsPath": "a str (str(path))",
    "complex": "two floats",
}
_CONTAINERS = (dict, list, tuple)


def _unencodable_leaf(value: Any) -> Optional[str]:
    """Why a single (non-container) value cannot be encoded, or None if it can."""
    kind = type(value)
    if kind is int and not -(2 ** 63) <= value < 2 ** 63:
        return (f"an int out of the 64-bit range ({value.bit_length()} bits); use a str, or "
                "proton.ulong for 2**63 to 2**64 - 1")
    if kind in Data.put_mappings or kind in (dict, list, tuple):
        return None
    name = kind.__name__
    instead = _INSTEAD.get(name, "str, bytes, int, float, bool, None, or a list or dict of "
                                 "these")
    article = "an" if name[:1].lower() in "aeiou" else "a"
    return f"{article} {name}, which AMQP has no type for; use {instead}"


def find_unencodable(value: Any) -> Optional[str]:
    """Name the first part of a body (or :class:`Message`) that cannot be encoded and why:
    ``body["at"] is a datetime ...``; None when nothing wrong is found. Iterative, so a
    deeply nested body is reported, not a RecursionError.

    >>> import datetime
    >>> find_unencodable({"at": datetime.datetime(2024, 1, 1)})   # doctest: +ELLIPSIS
    "body['at'] is a datetime, which AMQP has no type for; use a number (dt.timestamp())..."
    """
    roots: List[Tuple[str, Any]] = []
    if isinstance(value, Message):
        roots = [("body", value.body), ("properties", value.properties),
                 ("annotations", value.annotations)]
    elif isinstance(value, proton.Message):
        return None
    else:
        roots = [("body", value)]
    for root, item in roots:
        stack = [(root, item, 0)]
        while stack:
            path, current, depth = stack.pop()
            if depth > MAX_DEPTH:
                return f"{root} is nested deeper than {MAX_DEPTH} levels (at {path})"
            kind = type(current)
            if kind is dict:
                for key, sub in reversed(list(current.items())):
                    problem = _unencodable_leaf(key) if type(key) not in _CONTAINERS else (
                        f"a {type(key).__name__}, which cannot be a map key")
                    if problem:
                        return f"a key of {path} ({key!r:.40}) is {problem}"
                    stack.append((f"{path}[{key!r:.40}]", sub, depth + 1))
            elif kind is list or kind is tuple:
                for index in range(len(current) - 1, -1, -1):
                    stack.append((f"{path}[{index}]", current[index], depth + 1))
            else:
                problem = _unencodable_leaf(current)
                if problem:
                    return f"{path} is {problem}"
    return None


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


class Decoder:
    """Turns AMQP message bytes into plain :class:`Message` objects.

    The common message is read in Python (:func:`proton_easy._engine.wire.decode_into`);
    what that does not read (arrays, described values, an amqp-sequence body ...) goes to
    :class:`~proton_easy._engine.codec.Reader`, which reuses one proton message and reads its
    fields straight from proton-c. Not thread-safe: one per receiving link (or per thread).

    >>> Decoder().decode(encode("hello")).body
    'hello'
    """

    def __init__(self) -> None:
        self._reader = codec.Reader()

    def decode(self, data: Any) -> Message:
        """Decode one message (``data``: bytes, bytearray or memoryview)."""
        out = Message.__new__(Message)
        if not wire.decode_into(out, data):  # what Python does not read, proton does
            self._reader.read_into(out, data)
        out.delivery_time = _delivery_time(out.annotations) if out.annotations else None
        return out


def decode(data: bytes) -> Message:
    """Decode AMQP message bytes into a plain :class:`Message`."""
    decoder = getattr(_local, "decoder", None)
    if decoder is None:
        decoder = _local.decoder = Decoder()
    return decoder.decode(data)
