"""Link options: routing capabilities, selectors and settlement modes, merged into one attach."""

from __future__ import annotations

import itertools
import uuid
from typing import Any, List, Optional

from proton import Data, Described, Link, Terminus, symbol
from proton.reactor import LinkOption

from .._options import split_address

_SELECTOR_DESCRIPTOR = symbol("apache.org:selector-filter:string")
_PREFIX_PROPERTIES = {"queue": symbol("queue-prefix"), "topic": symbol("topic-prefix")}
_link_ids = itertools.count(1)
_PROCESS_ID = uuid.uuid4().hex[:8]


def link_name(kind: str, address: Optional[str]) -> str:
    """A link name unique in this process (proton's default clashes on a second link)."""
    return f"pe-{kind}-{address or 'dynamic'}-{_PROCESS_ID}-{next(_link_ids)}"


def _put_capabilities(data: Data, caps: List[str]) -> None:
    data.put_array(False, Data.SYMBOL)
    data.enter()
    for cap in caps:
        data.put_symbol(symbol(cap))
    data.exit()


def node_prefix(connection: Any, kind: Optional[str]) -> str:
    """The address prefix the broker asked for, in its Open frame, for a ``kind`` of node.

    ActiveMQ Classic sends ``topic-prefix`` (``topic://``) and ``queue-prefix``
    (``queue://``) and ignores terminus capabilities, as Qpid JMS expects; other brokers send
    neither (``""``).

    >>> node_prefix(None, "topic")
    ''
    """
    key = _PREFIX_PROPERTIES.get(kind or "")
    if key is None or connection is None:
        return ""
    try:
        props = connection.remote_properties
    except Exception:  # noqa: BLE001 - no open frame yet
        return ""
    if not isinstance(props, dict):
        return ""
    value = props.get(key)
    return value if isinstance(value, str) else ""


class LinkSetup(LinkOption):
    """Everything our links say at attach time, applied in one go.

    ``kind`` is ``"queue"`` or ``"topic"`` (told to the broker through the terminus
    capabilities, and through the address prefix a broker asks for in its Open frame's
    ``queue-prefix``/``topic-prefix``), ``selector`` a JMS selector expression,
    ``at_most_once`` pre-settles. A queue sender's target is durable (configuration: a
    queue the broker creates for it survives a restart, so durable messages sent there do
    too); a queue receiver's source only with ``durable=True``; topic links never (a durable
    topic source is a durable subscription, which has its own option).
    Merging everything into one option avoids proton's two-``Filter`` malformed attach.

    >>> LinkSetup("topic", selector="colour = 'red'").kind
    'topic'
    """

    def __init__(
        self,
        kind: Optional[str],
        *,
        selector: Optional[str] = None,
        at_most_once: bool = False,
        durable: bool = False,
    ) -> None:
        self.kind = kind
        self.selector = selector
        self.at_most_once = at_most_once
        self.durable = durable

    def apply(self, link: Link) -> None:
        """Called by proton while the link is created."""
        terminus = link.source if link.is_receiver else link.target
        if self.kind:
            _put_capabilities(terminus.capabilities, [self.kind])
            prefix = node_prefix(link.connection, self.kind)
            address = terminus.address
            if prefix and address and not terminus.dynamic and not address.startswith(prefix):
                terminus.address = prefix + address
        if self.kind == "queue" and terminus.address and (link.is_sender or self.durable):
            # the queue a broker creates for this link must outlive the link (and a restart)
            terminus.durability = Terminus.CONFIGURATION
        if self.selector is not None:
            link.source.filter.put_dict({symbol("selector"): Described(_SELECTOR_DESCRIPTOR,
                                                                        self.selector)})
        if self.at_most_once:
            link.snd_settle_mode = Link.SND_SETTLED
        else:
            link.snd_settle_mode = Link.SND_UNSETTLED
            link.rcv_settle_mode = Link.RCV_FIRST


def resolve(address: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """(node name, kind) for an address; None stays None (anonymous relay / dynamic)."""
    if address is None:
        return None, None
    return split_address(address)


def describe(link: Any) -> str:
    """The address of a link, for error texts (``(dynamic)`` for a queue the broker was to
    name, such as a requester's reply queue)."""
    try:
        term = link.target if link.is_sender else link.source
        if term.address:
            return str(term.address)
        return "(dynamic)" if term.dynamic else "?"
    except Exception:  # noqa: BLE001
        return "?"
