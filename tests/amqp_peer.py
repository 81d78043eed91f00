"""A scripted AMQP 1.0 peer for tests, in the spirit of Qpid JMS's ``TestAmqpPeer``.

It is a small broker built on proton's own engine (a server-side ``Transport`` and
``Connection`` driven over a socket): queues in memory, dynamic nodes, anonymous relay,
browsing (a ``copy`` source gets copies), and faults a test asks for: detach without
``closed=true``, end a session or close the connection with a condition, refuse an attach,
never settle, settle late, drop the socket after N transfers, drop on drain, withhold
ANONYMOUS-RELAY, refuse dynamic nodes or transactions with ``amqp:not-implemented``, send
``topic-prefix``/``queue-prefix``/``failover-server-list`` in its Open properties.

It listens on a free port of 127.0.0.1, runs in a thread of its own and stops by itself
(after ``lifetime`` seconds at the latest, or when the ``with`` block ends).

Example::

    with AmqpPeer(faults=[Fault(on="attach", do="end", role="sender",
                                condition="amqp:not-implemented")]) as peer:
        with pytest.raises(pe.LinkError):
            pe.send(peer.url + "/q", "hi", timeout=5)
    assert peer.connections == 1
"""

from __future__ import annotations

import collections
import itertools
import logging
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Optional, Tuple

from proton import (
    Collector,
    Condition,
    Connection,
    Delivery,
    Endpoint,
    Event,
    Message,
    Terminus,
    Transport,
    symbol,
)

log = logging.getLogger("tests.amqp_peer")

_ACTIONS = ("detach", "close", "end", "close_connection", "drop", "ignore")
_TRIGGERS = ("open", "attach", "transfer", "deliver", "drain", "close")
_ROLES = ("sender", "receiver", "coordinator", "dynamic")


@dataclass
class Fault:
    """One scripted misbehaviour: *when* ``on`` happens, the peer does ``do``.

    - ``on``: ``"open"`` (the client's Open arrived), ``"attach"`` (a link attached),
      ``"transfer"`` (a message arrived from the client, or ``after`` of them),
      ``"deliver"`` (the peer sent the client its ``after``-th message on a link),
      ``"drain"`` (the client asked for a drain), ``"close"`` (the client closed a link).
    - ``do``: ``"detach"`` (detach the link without ``closed=true``), ``"close"`` (close the
      link; at attach that is a refused attach), ``"end"`` (end the session),
      ``"close_connection"``, ``"drop"`` (cut the socket, no close frame), ``"ignore"``
      (say nothing: a close or a transfer is never answered).
    - ``condition``/``description``: the error condition sent with the detach, end or close.
    - ``role`` limits it to the client's ``"sender"``s, ``"receiver"``s, the transaction
      ``"coordinator"`` or ``"dynamic"`` receivers; ``address`` to one address.
    - ``after``: for ``on="transfer"`` and ``"deliver"``, fire at the after-th message
      (1 = the first).
    - ``times``: fire at most that many times (None: every time).

    Example::

        Fault(on="transfer", after=3, do="detach")   # detach after the 3rd message arrived
    """

    on: str
    do: str
    condition: Optional[str] = None
    description: str = ""
    role: Optional[str] = None
    address: Optional[str] = None
    after: int = 1
    times: Optional[int] = None
    fired: int = 0

    def __post_init__(self) -> None:
        if self.on not in _TRIGGERS:
            raise ValueError(f"on must be one of {_TRIGGERS}, not {self.on!r}")
        if self.do not in _ACTIONS:
            raise ValueError(f"do must be one of {_ACTIONS}, not {self.do!r}")
        if self.role is not None and self.role not in _ROLES:
            raise ValueError(f"role must be one of {_ROLES}, not {self.role!r}")


@dataclass
class _Conn:
    sock: socket.socket
    transport: Any
    connection: Any
    collector: Any
    transfers: int = 0
    deliveries: int = 0
    dropped: bool = False


@dataclass
class PeerRecord:
    """What the peer saw: every number a test asserts on."""

    opens: int = 0
    attaches: List[Tuple[str, Optional[str]]] = field(default_factory=list)
    received: List[Any] = field(default_factory=list)
    """Bodies the client sent (in arrival order), including transfers the peer never settled."""
    accepted: List[Any] = field(default_factory=list)
    """Bodies the peer delivered that the client accepted."""
    returned: List[Any] = field(default_factory=list)
    """Bodies the client released, modified or rejected (back on their queue)."""
    drains: int = 0
    termini: List[Dict[str, Any]] = field(default_factory=list)
    """Per attach, the client's terminus: role, address, capabilities, durability."""
    open_times: List[float] = field(default_factory=list)
    client_properties: List[Dict[Any, Any]] = field(default_factory=list)


class AmqpPeer:
    """A scripted AMQP peer on a free port of 127.0.0.1, running in its own thread.

    ``queues`` pre-loads messages (``{address: [body or proton.Message, ...]}``).
    ``settle``: how transfers from the client are answered: ``"accept"`` (at once),
    ``"never"``, ``"late"`` (accept after ``settle_delay`` seconds), ``"reject"``,
    ``"release"``. ``anonymous_relay`` offers ANONYMOUS-RELAY; ``dynamic`` allows dynamic
    nodes (else a dynamic attach is refused: the session ends with ``amqp:not-implemented``);
    ``transactions=False`` refuses a coordinator the same way (the peer never supports them).
    ``properties`` go into the Open frame. ``responders`` map an address to a function that
    answers each request sent there (its ``reply_to`` gets the reply, with the correlation id).
    ``faults`` are :class:`Fault` s. ``on_close`` says how a client's link close is answered:
    ``"close"`` (a detach with ``closed=true``) or ``"detach"`` (without). ``browsing=False``:
    a ``copy`` source is answered without it, and its receiver takes the messages (a broker
    that cannot browse).

    Example::

        with AmqpPeer(queues={"q": ["a", "b"]}, on_close="detach") as peer:
            assert [m.body for m in pe.receive(peer.url + "/q", count=2)] == ["a", "b"]
    """

    def __init__(
        self,
        *,
        queues: Optional[Dict[str, List[Any]]] = None,
        settle: str = "accept",
        settle_delay: float = 1.0,
        anonymous_relay: bool = True,
        dynamic: bool = True,
        properties: Optional[Dict[str, Any]] = None,
        responders: Optional[Dict[str, Any]] = None,
        faults: Optional[List[Fault]] = None,
        on_close: str = "close",
        browsing: bool = True,
        credit: int = 100,
        lifetime: float = 120.0,
    ) -> None:
        if settle not in ("accept", "never", "late", "reject", "release"):
            raise ValueError(f"unknown settle mode {settle!r}")
        if on_close not in ("close", "detach"):
            raise ValueError(f"on_close must be 'close' or 'detach', not {on_close!r}")
        self.queues: Dict[str, Deque[Message]] = collections.defaultdict(collections.deque)
        for address, items in (queues or {}).items():
            for item in items:
                self.queues[address].append(item if isinstance(item, Message)
                                            else Message(body=item))
        self.settle = settle
        self.settle_delay = settle_delay
        self.anonymous_relay = anonymous_relay
        self.dynamic = dynamic
        self.properties = {symbol(k): v for k, v in (properties or {}).items()}
        self.responders = dict(responders or {})
        self.faults = list(faults or [])
        self.on_close = on_close
        self.browsing = browsing
        self.credit = credit
        self.lifetime = lifetime
        self.record = PeerRecord()
        self._lock = threading.Lock()
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self._server.setblocking(False)
        self.port: int = self._server.getsockname()[1]
        self._conns: List[_Conn] = []
        self._late: List[Tuple[float, Any]] = []
        self._browsed: Dict[Any, int] = {}  # browser link -> messages it was shown
        self._sent: Dict[Any, List[Any]] = {}  # link -> deliveries the peer sent on it
        self._dynamic_ids = itertools.count(1)
        self._tags = itertools.count(1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"amqp-peer-{self.port}",
                                        daemon=True)
        self.error: Optional[BaseException] = None

    # -- the face a test sees ---------------------------------------------------------------
    @property
    def url(self) -> str:
        """``amqp://127.0.0.1:<port>`` (no credentials: the peer takes ANONYMOUS)."""
        return f"amqp://127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        """How many AMQP connections were opened to this peer."""
        return self.record.opens

    def start(self) -> AmqpPeer:
        """Start serving (``with`` does it)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every socket; re-raise what broke the peer itself."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        if self.error is not None:
            raise AssertionError(f"the scripted peer failed: {self.error!r}") from self.error

    def __enter__(self) -> AmqpPeer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def bodies(self, address: str) -> List[Any]:
        """The bodies waiting on ``address`` now."""
        with self._lock:
            return [m.body for m in self.queues.get(address, ())]

    # -- the loop -----------------------------------------------------------------------------
    def _run(self) -> None:
        deadline = time.monotonic() + self.lifetime
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                socks = [self._server] + [c.sock for c in self._conns]
                readable, _, _ = select.select(socks, [], [], 0.02)
                if self._server in readable:
                    self._accept()
                for conn in list(self._conns):
                    if conn.sock in readable:
                        self._read(conn)
                self._settle_late()
                for conn in list(self._conns):
                    self._process(conn)
                    self._write(conn)
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            log.exception("scripted peer failed")
            self.error = exc
        finally:
            for conn in self._conns:
                conn.sock.close()
            self._conns.clear()
            self._server.close()

    def _accept(self) -> None:
        try:
            sock, _ = self._server.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        transport = Transport(Transport.SERVER)
        sasl = transport.sasl()
        sasl.allowed_mechs("ANONYMOUS")
        connection = Connection()
        collector = Collector()
        connection.collect(collector)
        transport.bind(connection)
        self._conns.append(_Conn(sock, transport, connection, collector))

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            conn.transport.close_tail()
            self._drop(conn)
            return
        capacity = conn.transport.capacity()
        if capacity < 0:
            self._drop(conn)
            return
        conn.transport.push(data)

    def _write(self, conn: _Conn) -> None:
        if conn.dropped:
            return
        while True:
            pending = conn.transport.pending()
            if pending <= 0:
                break
            chunk = conn.transport.peek(min(pending, 65536))
            try:
                sent = conn.sock.send(chunk)
            except BlockingIOError:
                select.select([], [conn.sock], [], 1.0)
                continue
            except OSError:
                self._drop(conn)
                return
            conn.transport.pop(sent)
        if pending < 0 or conn.transport.closed:
            self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        if conn.dropped:
            return
        conn.dropped = True
        try:
            conn.sock.close()
        finally:
            if conn in self._conns:
                self._conns.remove(conn)

    # -- faults -------------------------------------------------------------------------------
    def _fault(self, on: str, link: Any = None, count: int = 0) -> Optional[Fault]:
        for fault in self.faults:
            if fault.on != on or (fault.times is not None and fault.fired >= fault.times):
                continue
            if link is not None and not self._matches(fault, link):
                continue
            if on in ("transfer", "deliver") and count != fault.after:
                continue
            fault.fired += 1
            return fault
        return None

    @staticmethod
    def _role(link: Any) -> str:
        if link.is_receiver and link.remote_target.type == Terminus.COORDINATOR:
            return "coordinator"
        if link.is_sender and link.remote_source.dynamic:
            return "dynamic"
        return "sender" if link.is_receiver else "receiver"  # the client's view

    def _matches(self, fault: Fault, link: Any) -> bool:
        if fault.role is not None and fault.role != self._role(link):
            return False
        return fault.address is None or fault.address == self._address(link)

    @staticmethod
    def _address(link: Any) -> Optional[str]:
        term = link.target if link.is_receiver else link.source
        address: Optional[str] = term.address
        return address

    def _apply(self, fault: Fault, conn: _Conn, link: Any = None, session: Any = None) -> None:
        cond = Condition(fault.condition, fault.description) if fault.condition else None
        log.debug("peer fault: %s", fault)
        if fault.do == "drop":
            self._write(conn)  # what was said so far (the open, say) goes out first
            self._drop(conn)
        elif fault.do == "close_connection":
            if cond is not None:
                conn.connection.condition = cond
            conn.connection.close()
        elif fault.do == "end":
            session = session or link.session
            if cond is not None:
                session.condition = cond
            session.close()
        elif fault.do in ("detach", "close") and link is not None:
            if cond is not None:
                link.condition = cond
            if fault.do == "detach":
                link.detach()
            else:
                link.close()

    # -- events -------------------------------------------------------------------------------
    def _process(self, conn: _Conn) -> None:
        while not conn.dropped:
            event = conn.collector.peek()
            if event is None:
                return
            try:
                self._dispatch(conn, event)
            finally:
                conn.collector.pop()

    def _dispatch(self, conn: _Conn, event: Any) -> None:
        kind = event.type
        if kind == Event.CONNECTION_REMOTE_OPEN:
            self._on_open(conn)
        elif kind == Event.SESSION_REMOTE_OPEN:
            session = event.session
            if session.state & Endpoint.LOCAL_UNINIT:
                session.open()
        elif kind == Event.LINK_REMOTE_OPEN:
            self._on_attach(conn, event.link)
        elif kind == Event.LINK_FLOW:
            link = event.link
            if link.is_sender and link.state & Endpoint.LOCAL_ACTIVE:
                self._pump(conn, link)
        elif kind == Event.DELIVERY:
            self._on_delivery(conn, event.delivery)
        elif kind in (Event.LINK_REMOTE_CLOSE, Event.LINK_REMOTE_DETACH):
            self._on_link_close(conn, event.link, kind == Event.LINK_REMOTE_CLOSE)
        elif kind == Event.SESSION_REMOTE_CLOSE:
            if event.session.state & Endpoint.LOCAL_ACTIVE:
                event.session.close()
        elif kind == Event.CONNECTION_REMOTE_CLOSE:
            if conn.connection.state & Endpoint.LOCAL_ACTIVE:
                conn.connection.close()
        elif kind == Event.TRANSPORT_CLOSED:
            self._drop(conn)

    def _on_open(self, conn: _Conn) -> None:
        connection = conn.connection
        self.record.opens += 1
        self.record.open_times.append(time.monotonic())
        self.record.client_properties.append(dict(connection.remote_properties or {}))
        caps = [symbol("SHARED-SUBS")]
        if self.anonymous_relay:
            caps.append(symbol("ANONYMOUS-RELAY"))
        connection.offered_capabilities = caps
        if self.properties:
            connection.properties = self.properties
        connection.container = "scripted-peer"
        fault = self._fault("open")
        if fault is not None and fault.do in ("close_connection", "drop"):
            if fault.do == "close_connection":
                connection.open()
            self._apply(fault, conn)
            return
        connection.open()

    def _on_attach(self, conn: _Conn, link: Any) -> None:
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        if not self.browsing:  # a broker without browsing answers with its default mode
            link.source.distribution_mode = Terminus.DIST_MODE_UNSPECIFIED
        role = self._role(link)
        self.record.attaches.append((role, self._address(link)))
        remote = link.remote_target if link.is_receiver else link.remote_source
        caps = remote.capabilities
        caps.rewind()
        caps.next()
        self.record.termini.append({
            "role": role, "address": remote.address,
            "capabilities": [str(c) for c in (caps.get_object() or [])],
            "durability": remote.durability,
        })
        refuse = None
        if role == "coordinator":
            refuse = "amqp:not-implemented", "transactions are not supported by this peer"
        elif role == "dynamic" and not self.dynamic:
            refuse = "amqp:not-implemented", "dynamic nodes are not supported by this peer"
        elif role == "dynamic":
            link.source.address = f"dynamic-{next(self._dynamic_ids)}"
        elif role == "sender" and link.remote_target.address is None and not self.anonymous_relay:
            refuse = "amqp:not-implemented", "anonymous relay is not supported by this peer"
        fault = self._fault("attach", link)
        if fault is not None:
            if fault.do in ("detach", "close"):
                link.open()  # refuse the attach: attach, then detach at once
            self._apply(fault, conn, link)
            return
        if refuse is not None:
            link.session.condition = Condition(*refuse)
            link.session.close()
            return
        link.open()
        if link.is_receiver:
            link.flow(self.credit)
        else:
            self._pump(conn, link)

    def _pump(self, conn: _Conn, link: Any) -> None:
        if link.drain_mode and link.credit:
            fault = self._fault("drain", link)
            self.record.drains += 1
            if fault is not None:
                self._apply(fault, conn, link)
                return
        address = self._address(link)
        browsing = link.source.distribution_mode == Terminus.DIST_MODE_COPY
        with self._lock:
            queue = self.queues[address] if address is not None else collections.deque()
            while link.credit > 0 and (queue if not browsing
                                       else self._browsed.get(link, 0) < len(queue)):
                if browsing:  # a browser gets copies: the queue keeps its messages
                    seen = self._browsed.get(link, 0)
                    msg, self._browsed[link] = queue[seen], seen + 1
                else:
                    msg = queue.popleft()
                dlv = link.delivery(str(next(self._tags)))
                dlv.peer_message = msg
                self._sent.setdefault(link, []).append(dlv)
                link.send(msg.encode())
                link.advance()
                conn.deliveries += 1
                fault = self._fault("deliver", link, conn.deliveries)
                if fault is not None:
                    self._apply(fault, conn, link)
                    return
        if link.drain_mode:
            link.drained()

    def _on_delivery(self, conn: _Conn, dlv: Any) -> None:
        link = dlv.link
        if link.is_sender:  # the client settled one of ours
            if not dlv.updated:
                return
            msg = getattr(dlv, "peer_message", None)
            if msg is not None:
                if dlv.remote_state == Delivery.ACCEPTED:
                    self.record.accepted.append(msg.body)
                elif dlv.remote_state in (Delivery.RELEASED, Delivery.MODIFIED,
                                          Delivery.REJECTED):
                    self.record.returned.append(msg.body)
                    with self._lock:
                        self.queues[self._address(link) or ""].appendleft(msg)
            dlv.settle()
            return
        if not dlv.readable or dlv.partial:
            return
        data = link.recv(dlv.pending)
        link.advance()
        msg = Message()
        msg.decode(data)
        conn.transfers += 1
        self.record.received.append(msg.body)
        fault = self._fault("transfer", link, conn.transfers)
        if fault is not None and fault.do == "ignore":
            return
        target = self._address(link) or msg.address
        if fault is None or fault.do != "drop":
            with self._lock:
                responder = self.responders.get(target or "")
                if responder is not None and msg.reply_to:
                    reply = Message(body=responder(msg.body),
                                    correlation_id=msg.correlation_id or msg.id)
                    self.queues[msg.reply_to].append(reply)
                elif target is not None and self.settle not in ("reject", "release"):
                    self.queues[target].append(msg)
        if fault is not None:
            self._apply(fault, conn, link)
            if fault.do in ("drop", "close_connection", "end", "detach", "close"):
                return
        self._answer(dlv)
        for other in self._links(conn):  # a queue that got a message may feed a receiver
            if other.is_sender and other.state & Endpoint.LOCAL_ACTIVE:
                self._pump(conn, other)
        if link.credit < self.credit // 2:
            link.flow(self.credit - link.credit)

    @staticmethod
    def _links(conn: _Conn) -> List[Any]:
        links = []
        link = conn.connection.link_head(0)
        while link is not None:
            links.append(link)
            link = link.next(0)
        return links

    def _answer(self, dlv: Any) -> None:
        if self.settle == "never":
            return
        if self.settle == "late":
            self._late.append((time.monotonic() + self.settle_delay, dlv))
            return
        outcome = {"accept": Delivery.ACCEPTED, "reject": Delivery.REJECTED,
                   "release": Delivery.RELEASED}[self.settle]
        dlv.update(outcome)
        dlv.settle()

    def _settle_late(self) -> None:
        now = time.monotonic()
        due = [d for t, d in self._late if t <= now]
        self._late = [(t, d) for t, d in self._late if t > now]
        for dlv in due:
            try:
                if dlv.link.state & Endpoint.LOCAL_ACTIVE:
                    dlv.update(Delivery.ACCEPTED)
                    dlv.settle()
            except Exception:  # noqa: BLE001 - the connection may be gone
                log.debug("late settle failed", exc_info=True)

    def _on_link_close(self, conn: _Conn, link: Any, closed: bool) -> None:
        if not link.state & Endpoint.LOCAL_ACTIVE:
            return
        if link.source.distribution_mode != Terminus.DIST_MODE_COPY:
            # as a broker does: what the client never settled goes back on the queue, in order
            unsettled = [d.peer_message for d in self._sent.pop(link, [])
                         if not d.remote_state and not d.settled]
            with self._lock:
                self.queues[self._address(link) or ""].extendleft(reversed(unsettled))
        fault = self._fault("close", link)
        if fault is not None:
            if fault.do != "ignore":
                self._apply(fault, conn, link)
            return
        if self.on_close == "detach" or not closed:
            link.detach()
        else:
            link.close()


__all__ = ["AmqpPeer", "Fault", "PeerRecord"]
