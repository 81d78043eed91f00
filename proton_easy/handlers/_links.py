"""Link options: routing capabilities, selectors and settlement modes, merged into one attach."""

from __future__ import annotations

import collections
import itertools
import logging
import uuid
import weakref
from typing import Any, Callable, Dict, Generic, Iterator, List, Optional, Tuple, TypeVar

from proton import Data, Described, Link, Terminus, symbol
from proton.reactor import LinkOption

from .. import _otel
from .._engine import raw as _raw
from .._options import split_address

log = logging.getLogger("proton_easy")

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
        subscription_durable: bool = False,
        shared: bool = False,
        global_: bool = False,
        browse: bool = False,
        unspecified_source: bool = False,
    ) -> None:
        self.kind = kind
        self.selector = selector
        self.at_most_once = at_most_once
        self.durable = durable
        self.subscription_durable = subscription_durable
        self.shared = shared
        self.global_ = global_
        self.browse = browse
        self.unspecified_source = unspecified_source

    def apply(self, link: Link) -> None:
        """Called by proton while the link is created."""
        terminus = link.source if link.is_receiver else link.target
        if self.unspecified_source and link.is_receiver:
            # no source at all: "the subscription of this link's name" (JMS's unsubscribe)
            link.source.type = Terminus.UNSPECIFIED
            link.snd_settle_mode = Link.SND_UNSETTLED
            link.rcv_settle_mode = Link.RCV_FIRST
            return
        caps = [self.kind] if self.kind else []
        if self.shared:
            caps.append("shared")
            if self.global_:
                caps.append("global")
        if caps:
            _put_capabilities(terminus.capabilities, caps)
        if self.kind:
            prefix = node_prefix(link.connection, self.kind)
            address = terminus.address
            if prefix and address and not terminus.dynamic and not address.startswith(prefix):
                terminus.address = prefix + address
        if self.kind == "queue" and terminus.address and (link.is_sender or self.durable):
            # the queue a broker creates for this link must outlive the link (and a restart)
            terminus.durability = Terminus.CONFIGURATION
        if self.subscription_durable and link.is_receiver:
            # Qpid JMS's durable subscriber: the broker keeps the subscription queue while the
            # link is detached (not closed) and deletes it when the link is closed
            link.source.durability = Terminus.DELIVERIES
            link.source.expiry_policy = Terminus.EXPIRE_NEVER
            link.source.distribution_mode = Terminus.DIST_MODE_COPY
        if self.browse and link.is_receiver:
            link.source.distribution_mode = Terminus.DIST_MODE_COPY
        if self.selector is not None:
            link.source.filter.put_dict({symbol("selector"): Described(_SELECTOR_DESCRIPTOR,
                                                                        self.selector)})
        if self.at_most_once or (self.browse and link.is_receiver):
            link.snd_settle_mode = Link.SND_SETTLED  # a browser's copies need no outcome
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


# -- one link factory ---------------------------------------------------------------------------
def open_sender(job: Any, address: Optional[str], kind_name: str, *,
                session: Any = None, at_most_once: bool = False, durable: bool = False,
                options: Any = None, handler: Any = None) -> Any:
    """Create a sender link for ``job`` (its handler, unless ``handler`` stands in for it) to
    ``address`` (None: the anonymous relay) on ``session`` (default: the job's connection),
    remembered by the job so that its end closes the link. ``kind_name`` names the link's
    role in its unique name."""
    name, kind = resolve(address)
    return job.add_link(job.container.create_sender(
        session if session is not None else job.connection, name,
        name=link_name(kind_name, name), handler=job if handler is None else handler,
        options=options if options is not None else LinkSetup(
            kind, at_most_once=at_most_once, durable=durable)))


def open_receiver(job: Any, address: Optional[str], kind_name: str, *,
                  session: Any = None, selector: Optional[str] = None,
                  at_most_once: bool = False, dynamic: bool = False,
                  subscription: Optional[Subscription] = None, browse: bool = False) -> Any:
    """Create a receiver link for ``job`` from ``address`` (``dynamic=True``: a temporary queue
    the broker names) on ``session`` (default: the job's connection); see :func:`open_sender`.
    ``subscription`` attaches to a named topic subscription (:class:`Subscription`),
    ``browse=True`` looks at a queue's messages without taking them."""
    name, kind = resolve(address)
    if subscription is not None:
        conn = job.connection
        return job.add_link(job.container.create_receiver(
            session if session is not None else conn, name,
            name=subscription.link_name(conn), handler=job,
            options=LinkSetup(kind, selector=selector, at_most_once=at_most_once,
                              subscription_durable=subscription.durable,
                              shared=subscription.shared, global_=subscription.global_)))
    return job.add_link(job.container.create_receiver(
        session if session is not None else job.connection, name, dynamic=dynamic,
        name=link_name(kind_name, name), handler=job,
        options=LinkSetup(kind, selector=selector, at_most_once=at_most_once, browse=browse)))


# -- topic subscriptions (Qpid JMS's AMQP mapping) ----------------------------------------------
_subscriber_counts: weakref.WeakKeyDictionary[Any, Dict[Tuple[str, str], int]] = \
    weakref.WeakKeyDictionary()


class Subscription:
    """A named subscription on a topic, attached the way Qpid JMS attaches it.

    The link name is the subscription name; a durable one has a durable source that never
    expires (the broker keeps it, and its messages, while the link is detached; closing the
    link deletes it). Shared subscriptions carry the ``shared`` source capability and, when the
    connection has no explicit container id (JMS's client id), ``global`` too; their link
    names get JMS's suffixes (``name|2``, ``name|global``, ``name|volatile1`` ...), so that
    several subscribers share one subscription, even on one connection.

    >>> Subscription("audit", durable=True, shared=False, client_id="svc").base_name
    'audit'
    >>> Subscription("audit", durable=True, shared=True, client_id=None).base_name
    'audit|global'
    """

    def __init__(self, name: str, *, durable: bool, shared: bool,
                 client_id: Optional[str]) -> None:
        self.name = name
        self.durable = durable
        self.shared = shared
        self.global_ = shared and not client_id
        self.client_id = client_id

    @property
    def base_name(self) -> str:
        """The link name of the first subscriber on a connection."""
        if self.shared and not self.durable:
            return f"{self.name}|{'global-' if self.global_ else ''}volatile1"
        return f"{self.name}|global" if self.global_ else self.name

    def link_name(self, connection: Any) -> str:
        """The link name of the next subscriber on ``connection`` (unique on it)."""
        if not self.shared:
            return self.name
        counts = _subscriber_counts.setdefault(connection, {})
        key = (self.name, "durable" if self.durable else "volatile")
        n = counts[key] = counts.get(key, 0) + 1
        if not self.durable:
            return f"{self.name}|{'global-' if self.global_ else ''}volatile{n}"
        first = f"{self.name}|global" if self.global_ else self.name
        if n == 1:
            return first
        return f"{first}{n}" if self.global_ else f"{first}|{n}"


def check_subscription(kind: Optional[str], subscription: Optional[str], durable: bool,
                       shared: bool, container_id: Optional[str], *,
                       known_container: bool = True) -> None:
    """ValueError/TypeError for subscription options that cannot work, before any I/O.

    >>> check_subscription("topic", "audit", True, False, "svc")
    >>> check_subscription("queue", "audit", True, False, "svc")
    Traceback (most recent call last):
    ...
    ValueError: subscription= needs a topic address (topic://NAME), not a queue
    """
    if subscription is None:
        if durable or shared:
            raise ValueError("durable=True and shared=True need a subscription name: "
                             "subscription='NAME'")
        return
    if not isinstance(subscription, str):
        raise TypeError("subscription must be a string")
    if not subscription or "|" in subscription:
        raise ValueError(f"subscription name must be non-empty without '|': {subscription!r}")
    if kind != "topic":
        raise ValueError("subscription= needs a topic address (topic://NAME), not a queue")
    if not (durable or shared):
        raise ValueError("subscription= names a durable or shared subscription: "
                         "add durable=True and/or shared=True")
    if durable and not shared and not container_id and known_container:
        raise ValueError("a durable subscription that is not shared is kept per client: "
                         "give the connection a container_id= (JMS's client id), the same "
                         "each time the subscriber comes back")


# -- one credit policy --------------------------------------------------------------------------
def top_up(link: Any, wanted: int, held: int = 0, *, batch: bool = True,
           handle: Any = None) -> int:
    """Grant ``link`` credit so that its credit + the messages ``held`` by the job reach
    ``wanted``; return the credit granted. With ``batch`` credit goes out in batches of half
    of ``wanted`` or more (one flow frame per few messages, not per message). ``handle``: the
    link's ``_raw.link_impl``, when the caller has it (the credit is then read through it:
    cheaper, for a check made per message).

    A receiver's credit still counts the messages proton has queued (it drops as each is
    read, not as it arrives): counted again, a burst that came with a re-attach held the
    credit back, and a receive waiting for its count had nothing left to top it up."""
    if link is None or wanted <= 0:
        return 0
    if handle is None:
        outstanding: int = link.credit + held
    else:
        outstanding = _raw.link_credit(handle) + held
    missing = wanted - outstanding
    if missing <= 0 or (batch and 2 * missing < wanted and outstanding > 0):
        return 0
    link.flow(missing)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("credit %d granted to the receiver from %r", missing, describe(link))
    tel = _otel.current()
    if tel is not None:
        tel.credit.add(missing)
    return missing


# -- one cache of links -------------------------------------------------------------------------
K = TypeVar("K")
V = TypeVar("V")


class LinkCache(Generic[K, V]):
    """At most ``limit`` open links (or link jobs) by key, least recently used first to go.

    Once over the limit, the least recently used entry that ``idle(value)`` says has nothing in
    flight is handed to ``evict(value)`` (which closes it); busy ones stay until a later put.
    Not thread-safe: use it on one thread, or under a lock.

    >>> cache = LinkCache(2, idle=lambda v: True, evict=print)
    >>> for k in "abc":
    ...     cache.put(k, k.upper())
    A
    """

    def __init__(self, limit: int, *, idle: Callable[[V], bool],
                 evict: Callable[[V], None]) -> None:
        self.limit = limit
        self._idle = idle
        self._evict = evict
        self._entries: collections.OrderedDict[K, V] = collections.OrderedDict()

    def get(self, key: K) -> Optional[V]:
        """The entry for ``key`` (now the most recently used), or None."""
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Add or replace the entry for ``key``; evict idle entries beyond the limit."""
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.limit:
            victim = next((k for k, v in self._entries.items()
                           if k != key and self._idle(v)), None)
            if victim is None:
                return
            self._evict(self._entries.pop(victim))

    def pop(self, key: K) -> Optional[V]:
        """Forget the entry for ``key`` (without evicting it); return it."""
        return self._entries.pop(key, None)

    def discard(self, value: V) -> None:
        """Forget every entry holding ``value``."""
        for key in [k for k, v in self._entries.items() if v is value]:
            del self._entries[key]

    def clear(self) -> List[V]:
        """Forget every entry; return them."""
        values = list(self._entries.values())
        self._entries.clear()
        return values

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._entries))

    def __getitem__(self, key: K) -> V:
        return self._entries[key]

    def __contains__(self, key: object) -> bool:
        return key in self._entries
