"""``Client.send``'s sender links: one per (address, at_most_once), kept open and shared.

Attaching and detaching a link for every ``Client.send`` costs two round trips on top of the
message's own. A :class:`SenderLink` stays attached instead; threads hand it encoded messages,
each with its own Future, resolved by that message's outcome. :class:`SenderCache` keeps at most
``limit`` of them, closing the least recently used one once it has nothing in flight.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
from concurrent.futures import Future, InvalidStateError
from typing import TYPE_CHECKING, Any, Deque, Dict, List, Optional, Tuple

from ._engine import raw as _raw
from ._errors import AMQPError, LinkError, delivery_error
from .handlers import _links
from .handlers._job import Job, _Lean

if TYPE_CHECKING:
    from ._client import Client

log = logging.getLogger("proton_easy")

_Entry = Tuple[bytes, Future, bool]  # encoded message, its caller's Future, sent before


def _resolve(fut: Future, error: Optional[BaseException]) -> None:
    """Tell a waiting caller (who may have given up and cancelled the Future meanwhile)."""
    try:
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)
    except InvalidStateError:
        pass


class SenderLink(_Lean, Job):
    """One sender link kept open on a Client's connection for its ``send`` calls.

    Messages go out in the order they were submitted, as credit allows. At-least-once, each
    Future resolves when the broker settles its message: None when accepted, a
    :class:`~proton_easy.DeliveryError` otherwise (for that message only; the link stays).
    At-most-once, it resolves once the message is handed to the connection (pre-settled: the loop
    writes it out at once, and a graceful close flushes it). After a reconnect, unconfirmed
    messages go out again first. When the link fails (refused, closed by the broker, connection
    lost) every waiting Future gets the error, and the cache opens a new link for the next send.
    Runs on the loop thread, except :meth:`submit`'s caller's side.
    """

    def __init__(self, address: str, at_most_once: bool) -> None:
        super().__init__(None, address=address)
        self.at_most_once = at_most_once
        self.sender: Any = None
        self.retired = False
        self._waiting: Deque[_Entry] = collections.deque()
        self._unsettled: Dict[Any, _Entry] = {}  # raw pn_delivery_t -> entry
        self._tags = itertools.count(1)
        self._go_lean()

    def __repr__(self) -> str:
        mode = "at-most-once" if self.at_most_once else "at-least-once"
        return f"<SenderLink {self.address!r} {mode}>"

    @property
    def in_doubt(self) -> int:
        return len(self._unsettled) + sum(1 for entry in self._waiting if entry[2])

    @property
    def idle(self) -> bool:
        """Nothing waiting and nothing in flight."""
        return not self._waiting and not self._unsettled

    def open_links(self) -> None:
        name, kind = _links.resolve(self.address)
        setup = _links.LinkSetup(kind, at_most_once=self.at_most_once)
        self.sender = self.add_link(self.container.create_sender(
            self.connection, name, name=_links.link_name("sender", name), handler=self,
            options=setup))

    # -- from the Client (on the loop thread) ------------------------------------------------
    def submit(self, payload: bytes, fut: Future) -> None:
        """Queue one encoded message; ``fut`` learns its outcome."""
        if self.done:
            _resolve(fut, self.error or AMQPError("the sender link is closed"))
            return
        self._waiting.append((payload, fut, False))
        self._pump()

    def withdraw(self, fut: Future) -> None:
        """The caller gave up: a message not yet sent is dropped (one in flight stays in doubt)."""
        self._waiting = collections.deque(e for e in self._waiting if e[1] is not fut)
        self._retire_if_idle()

    def retire(self) -> None:
        """Close the link once nothing is waiting or in flight (the cache let go of it)."""
        self.retired = True
        self._retire_if_idle()

    def _retire_if_idle(self) -> None:
        if self.retired and self.idle and not self.done:
            self.finish()

    # -- proton events ------------------------------------------------------------------------
    def on_link_flow(self, event: Any) -> None:
        self._pump()

    def _pump(self) -> None:
        link = self.sender
        if link is None or self.done or not self._waiting:
            return
        impl = _raw.link_impl(link)
        waiting, tags = self._waiting, self._tags
        while waiting and _raw.link_credit(impl) > 0:
            entry = waiting.popleft()
            payload, fut = entry[0], entry[1]
            if fut.done():
                continue  # its caller gave up before it went out
            dlv = _raw.send(impl, b"%x" % next(tags), payload)
            if self.at_most_once:
                _raw.settle_now(dlv)
                _resolve(fut, None)
            else:
                self._unsettled[dlv] = (payload, fut, True)
        self._retire_if_idle()

    def on_raw_delivery(self, dlv: Any) -> None:
        if not _raw.updated(dlv):
            return
        state = _raw.remote_state(dlv)
        if state == _raw.ACCEPTED or state in _raw.REFUSED:
            entry = self._unsettled.pop(dlv, None)
            if entry is not None:
                if state == _raw.ACCEPTED:
                    _resolve(entry[1], None)
                else:
                    cond = _raw.wrap(dlv).remote.condition if state == _raw.REJECTED else None
                    _resolve(entry[1], delivery_error(state, cond))
        if _raw.remote_settled(dlv):
            _raw.settle_now(dlv)
        self._retire_if_idle()

    def on_link_closed(self, event: Any) -> None:
        if not self.done:  # closed by the broker without an error
            self._fail(LinkError(f"the broker closed the sender link to {self.address!r}"))
        super().on_link_closed(event)

    # -- the connection tells the job ---------------------------------------------------------
    def _dropped(self) -> None:
        # Whatever was not confirmed goes out again, first and in order, once the link is back.
        pending = list(self._unsettled.values())
        self._unsettled.clear()
        self._waiting.extendleft(reversed(pending))

    def _reconnected(self) -> None:
        self._pump()

    def on_finished(self) -> None:
        error = self.error or AMQPError("the client was closed before the message was confirmed")
        entries: List[_Entry] = [*self._unsettled.values(), *self._waiting]
        self._unsettled.clear()
        self._waiting.clear()
        for entry in entries:
            _resolve(entry[1], error)


class SenderCache:
    """The sender links of one Client, at most ``limit`` of them (least recently used first
    to go). Thread-safe."""

    def __init__(self, client: Client, limit: int = 32) -> None:
        self._client = client
        self._limit = limit
        self._links: collections.OrderedDict[Tuple[str, bool], SenderLink] = \
            collections.OrderedDict()
        self._lock = threading.Lock()

    def submit(self, address: str, at_most_once: bool, payload: bytes, fut: Future) -> SenderLink:
        """Hand one encoded message to the link for (address, at_most_once), opening it first
        if needed; ``fut`` learns its outcome. Returns the link."""
        loop = self._client._loop
        key = (address, at_most_once)
        with self._lock:  # posts in here keep each link's start before its first submit
            link = self._links.get(key)
            if link is None or link.done:
                link = self._links[key] = SenderLink(address, at_most_once)
                conn = self._client._conn
                loop.post(lambda: link.start(loop.container, conn))
                while len(self._links) > self._limit:
                    _, old = self._links.popitem(last=False)
                    loop.post(old.retire)
            else:
                self._links.move_to_end(key)
            if not loop.post(lambda: link.submit(payload, fut)):
                raise RuntimeError("the client is closed")
        return link

    def close(self) -> None:
        """Finish every link (their waiting callers get an error); call on the loop thread."""
        with self._lock:
            links = list(self._links.values())
            self._links.clear()
        for link in links:
            link.finish()
