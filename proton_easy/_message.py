"""Messages as plain Python objects, and their conversion to and from proton's Message."""

from __future__ import annotations

from typing import Any, Dict, Optional

import proton
from proton import symbol

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

    __slots__ = ("body", "properties", "annotations", "delivery_count", "redelivered", *_FIELDS)

    def __init__(
        self,
        body: Any = None,
        *,
        properties: Optional[Dict[str, Any]] = None,
        id: Any = None,
        correlation_id: Any = None,
        reply_to: Optional[str] = None,
        subject: Optional[str] = None,
        durable: bool = False,
        ttl: Optional[float] = None,
        priority: Optional[int] = None,
        content_type: Optional[str] = None,
        address: Optional[str] = None,
        user_id: Optional[bytes] = None,
        group_id: Optional[str] = None,
        creation_time: Optional[float] = None,
        annotations: Optional[Dict[Any, Any]] = None,
    ) -> None:
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
        for name in ("properties", *_FIELDS):
            value = getattr(self, name)
            if value not in (None, {}, False):
                parts.append(f"{name}={value!r}")
        return f"Message({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in ("body", "properties", *_FIELDS))

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
        if self.annotations:
            pm.annotations = dict(self.annotations)
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


def encode(value: Any) -> Encoded:
    """Encode a body or message to its AMQP bytes; TypeError if it cannot be encoded.

    >>> len(encode("hello")) > 0
    True
    """
    try:
        pm = to_proton(value)
        return Encoded(pm.encode())
    except (KeyError, TypeError, OverflowError, proton.MessageException, AttributeError) as exc:
        raise TypeError(f"cannot encode {_describe(value)} as an AMQP message: "
                        f"{type(exc).__name__}: {exc}") from None


def _describe(value: Any) -> str:
    if isinstance(value, Message):
        return f"Message with body of type {type(value.body).__name__}"
    return f"body of type {type(value).__name__}"


def decode(data: bytes) -> Message:
    """Decode AMQP message bytes into a plain :class:`Message`."""
    pm = proton.Message()
    pm.decode(data)
    return Message.from_proton(pm)
