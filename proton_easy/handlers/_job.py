"""The base of every handler class: :class:`Job`, the raw-event mix-in :class:`_Lean`, and the
small helpers the handler modules share (message sources, settling, argument checks).

The public names are re-exported by :mod:`proton_easy.handlers`.

>>> from proton_easy.handlers import Job
>>> class Noop(Job):
...     def open_links(self):
...         self.finish("nothing to do")
>>> # Container(Noop("amqp://localhost:5672")).run()
"""

from __future__ import annotations

import copy
import logging
from concurrent.futures import Future, InvalidStateError
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    FrozenSet,
    Iterable,
    Iterator,
    List,
    Optional,
    Tuple,
    Union,
)

import proton
from proton import Delivery
from proton.handlers import MessagingHandler

from .. import _otel
from .._engine import raw as _raw
from .._engine.connection import Connection
from .._engine.loop import use_raw_deliveries
from .._errors import LinkError, link_error
from .._message import Encoded, Message, encode
from .._options import CONNECTION_OPTIONS, ConnectionOptions, ConnectOptions, check_seconds
from . import _links

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger("proton_easy")



class Job(MessagingHandler):
    """What every handler class shares: its own connection when run standalone, or a place on a
    Client's connection when driven by the blocking layer; completion, errors, clean-up.

    Subclasses open their links in :meth:`open_links` and call :meth:`finish` or ``fail``.
    With OpenTelemetry configured, a job's messages get spans (see :mod:`proton_easy._otel`).
    After ``Container(job).run()`` returns, ``job.error`` holds what went wrong (or None).

    >>> from proton.reactor import Container
    >>> class Attach(Job):
    ...     # finish as soon as the broker attached a sender to the address
    ...     def open_links(self):
    ...         self.add_link(self.container.create_sender(self.connection, self.address,
    ...                                                    handler=self))
    ...     def on_link_opened(self, event):
    ...         self.finish("attached")
    >>> job = Attach("amqp://localhost:5672/examples")
    >>> # Container(job).run(); job.result == "attached"; job.error is None
    """

    _tel: Any = None  # the telemetry in use (set when the job starts), None: off
    _otel_span: Any = None  # a span that ends with the job (a batch's send)
    _otel_batch = False  # a job whose messages form one batch (a Sender with a count)

    def __init__(
        self,
        url: Optional[str] = None,
        *,
        address: Optional[str] = None,
        prefetch: int = 0,
        auto_accept: bool = False,
        **options: Unpack[ConnectOptions],
    ) -> None:
        super().__init__(prefetch=prefetch, auto_accept=auto_accept, auto_settle=True,
                         peer_close_is_error=False)
        unknown = set(options) - set(CONNECTION_OPTIONS)
        if unknown:
            raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
        self.url = url
        self._options_kwargs = options
        self.options: Optional[ConnectionOptions] = None
        if url is not None or options.get("urls"):
            self.options = ConnectionOptions.build(url, **options)
            address = address or self.options.address
        self.address = address
        self.error: Optional[BaseException] = None
        self.result: Any = None
        self.done = False
        self.container: Any = None
        self.connection: Any = None
        self._conn: Optional[Connection] = None
        self._owns_connection = False
        self._future: Optional[Future[Any]] = None
        self._links: List[Any] = []
        self._gone: List[Any] = []  # links the broker ended without closing them
        self._timers: Dict[str, Any] = {}
        self._otel_parent = _otel.context_now()  # the trace this job was made in, if on

    # -- how a job starts ---------------------------------------------------------------------
    def on_start(self, event: Any) -> None:
        """Standalone start (``Container(job).run()``): open our own connection, then the links."""
        if self.options is None:
            self.options = ConnectionOptions.build(None, **self._options_kwargs)
            self.address = self.address or self.options.address
        use_raw_deliveries(event.container)
        conn = Connection(self.options)
        conn.open(event.container)
        self._owns_connection = True
        self.start(event.container, conn)

    def start(self, container: Any, conn: Connection, future: Optional[Future[Any]] = None) -> None:
        """Run this job on an open (or opening) connection; ``future`` gets the result."""
        self.container = container
        self._conn = conn
        self.connection = conn.proton
        self._future = future
        if conn.failed is not None:
            self._fail(conn.failed)
            return
        conn.attach_job(self)
        tel = _otel.current()
        if tel is not None:
            tel.job_started(self)
        self._guard(self.open_links)

    def open_links(self) -> None:
        """Create this job's links (override)."""
        raise NotImplementedError

    def add_link(self, link: Any) -> Any:
        """Remember a link so that finishing the job closes it."""
        self._links.append(link)
        return link

    def _at_rest(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` once the loop has processed the events it read (before it writes and
        waits for its sockets): once for what one pass brought, say, a hand-over to another
        thread that wakes it once. At once under a container without that call."""
        at_rest = getattr(self.container, "at_rest", None)
        if at_rest is None:
            fn()
        else:
            at_rest(fn)

    def set_timer(self, name: str, seconds: Optional[float], callback: Any) -> None:
        """Call ``callback()`` on the loop after ``seconds`` unless the job is done first;
        setting a timer of the same name again replaces it, ``seconds=None`` cancels it."""
        timers = self._timers
        timer = timers.get(name)
        container = self.container
        if seconds is None or container is None or self.done:
            if timer is not None:
                del timers[name]
                timer.cancel()
            return
        now = getattr(container, "now", None)
        due = now + seconds if isinstance(now, float) else None
        if (timer is not None and due is not None and timer.armed and timer.fires_at is not None
                and timer.fires_at <= due):
            # Re-armed later (an idle timer, per message): its task fires first and waits out
            # the rest then; a proton task per call would cost far more, and pile up until due.
            timer.due, timer.callback = due, callback
            return
        if timer is not None:
            timer.cancel()
        timers[name] = _Timer(self, container, seconds, due, callback)

    # -- how a job ends -----------------------------------------------------------------------
    def finish(self, result: Any = None) -> None:
        """End the job successfully: close its links (and its connection when standalone)."""
        if self.done:
            return
        self.result = result
        self._end()

    def _fail(self, error: BaseException) -> None:
        if self.done:
            return
        self.error = error
        log.debug("%s failed: %s", type(self).__name__, error)
        self._end()

    def _end(self) -> None:
        self.done = True
        log.debug("%s %s: %s", type(self).__name__,
                  "failed" if self.error is not None else "finished", self.summary())
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self.on_finished()
        if self._otel_span is not None or self._tel is not None:
            _otel.job_ended(self)
        open_links = [lnk for lnk in self._links if not lnk.state & lnk.LOCAL_CLOSED]
        for link in open_links:
            self.end_link(link)
        if self._owns_connection and self._conn is not None:
            self._conn.close()
        if not any(self._awaiting_close()):
            self._complete()

    def end_link(self, link: Any) -> None:
        """How the job's end ends one of its open links: closed (a receiver of a durable
        subscription detaches instead, which keeps the subscription)."""
        link.close()

    def _awaiting_close(self) -> Iterator[Any]:
        if self._conn is None or not self._conn.up:
            return iter(())
        held = self._held_back
        return (lnk for lnk in self._links
                if lnk.state & lnk.REMOTE_ACTIVE and lnk not in self._gone
                and (not held or _raw.link_impl(lnk) not in held))

    _held_back: FrozenSet[Any] = frozenset()
    """Handles of links whose detach proton holds back (see :meth:`_abort_sent`)."""

    def _abort_sent(self, deliveries: Iterable[Any]) -> None:
        """At a drop: abort the job's outgoing deliveries that the broker did not settle
        (:func:`~proton_easy._engine.raw.abort`: proton must not write them on the next
        connection, the job sends them again). A link that had one proton had not written is
        not waited for when the job ends: proton never sends its detach."""
        held = {link for link in map(_raw.abort, deliveries) if link is not None}
        if held:
            self._held_back = self._held_back | held

    def _complete(self) -> None:
        if self._conn is not None:
            self._conn.detach_job(self)
        fut = self._future
        if fut is not None and not fut.done():
            if self.error is not None:
                fut.set_exception(self.error)
            else:
                fut.set_result(self.result)

    def on_finished(self) -> None:
        """Hook: called once when the job ends, before its links close."""

    def summary(self) -> str:
        """What the job did, in one line, for the DEBUG log at its end: its address and the
        counters it keeps (sent, confirmed, received, served, committed), and what is in doubt.

        >>> job = Job(address="q"); job.summary()
        "'q': in doubt 0"
        """
        counts = [f"{name} {getattr(self, name)}" for name in _COUNTERS
                  if isinstance(getattr(self, name, None), int)]
        counts.append(f"in doubt {self.in_doubt}")
        return f"{self.address or '(no address)'!r}: {', '.join(counts)}"

    # -- links attached and detached, at DEBUG ----------------------------------------------------
    def on_link_remote_open(self, event: Any) -> None:
        """The broker attached one of the job's links (logged at DEBUG with its credit)."""
        link = event.link
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s attached to %r (%s, credit %d)", type(self).__name__,
                      "sender" if link.is_sender else "receiver", _links.describe(link),
                      "at-most-once" if link.snd_settle_mode == link.SND_SETTLED
                      else "at-least-once", link.credit)

    def on_link_closed(self, event: Any) -> None:
        link = event.link
        _log_detached(link, "closed")
        if not self.done and link in self._links and link not in self._gone:
            self._gone.append(link)  # closed under a running job: the job cannot go on with it
            self._guard(self.on_link_ended, link)
        if self.done and not any(self._awaiting_close()):
            self._complete()

    def on_link_error(self, event: Any) -> None:
        """A link was refused or closed by the broker: the job fails with a LinkError."""
        link = event.link
        err = link_error(link.remote_condition, _links.describe(link))
        link.close()
        if self.done:
            if not any(self._awaiting_close()):
                self._complete()
            return
        self._fail(err)

    # -- the broker ends a link or a session ------------------------------------------------
    def on_link_remote_detach(self, event: Any) -> None:
        """The broker detached a link without closing it (some brokers always do)."""
        self._link_gone(event, detached=True)

    def on_link_closing(self, event: Any) -> None:
        """The broker closed a link without an error."""
        self._link_gone(event)

    def _link_gone(self, event: Any, detached: bool = False) -> None:
        link = event.link
        if link.remote_condition is not None:
            self.on_link_error(event)
            return
        if link in self._gone:
            return
        _log_detached(link, "detached by the broker" if detached else "closed by the broker")
        self._gone.append(link)
        if not link.state & link.LOCAL_CLOSED:
            if detached:
                link.detach()
            else:
                link.close()
        if not self.done:
            self._guard(self.on_link_ended, link)
        if self.done and not any(self._awaiting_close()):
            self._complete()

    def on_link_ended(self, link: Any) -> None:
        """Hook: the broker ended one of this job's links without an error (a detach, or a
        close it did not explain). The default fails the job with a
        :class:`~proton_easy.LinkError`; a receiving job ends with what it has instead."""
        self._fail(LinkError(f"the broker ended the link to {_links.describe(link)!r} "
                             "without giving a reason"))

    def session_ended(self, session: Any, condition: Any) -> None:
        """The broker ended a session that carries links of this job (the connection tells the
        job; ``condition`` is the broker's reason, or None). The job fails with a
        :class:`~proton_easy.LinkError` carrying it."""
        if self.done:
            self._gone.extend(lnk for lnk in self._links if lnk.session == session)
            if not any(self._awaiting_close()):
                self._complete()
            return
        self._gone.extend(lnk for lnk in self._links if lnk.session == session)
        err = link_error(condition, self.address or "(dynamic)") if condition is not None \
            else LinkError(f"the broker ended the session of the links to {self.address!r}")
        self._fail(err)

    def uses_session(self, session: Any) -> bool:
        """True when one of this job's links is on ``session``."""
        return any(lnk.session == session for lnk in self._links)

    def on_reactor_final(self, event: Any) -> None:
        # Standalone run: make Container(job).run() raise what went wrong.
        if self._owns_connection and self.error is not None:
            raise self.error

    # -- the connection tells the job ----------------------------------------------------------
    @property
    def in_doubt(self) -> int:
        """Deliveries whose outcome is unknown if the connection drops now."""
        return 0

    def _dropped(self) -> None:
        """The connection dropped; proton is reconnecting."""

    def _reconnected(self) -> None:
        """The connection came back; proton re-attached the links."""

    def _dropped_after_end(self) -> None:
        """The connection dropped while this ended job waited for its links to close: they
        went with the connection (proton does not attach closed links again), so it is done."""
        if self.done:
            self._complete()

    def _guard(self, fn: Any, *args: Any) -> None:
        """Call a hook on the loop thread; an exception fails the job instead of the loop."""
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - a hook error must not break the reactor
            if fn == self._fail:
                log.exception("error while failing %s", type(self).__name__)
                return
            log.debug("%s hook raised", type(self).__name__, exc_info=True)
            self._fail(exc)


class _Timer:
    """A job's named timer (see :meth:`Job.set_timer`): a proton task that calls ``callback``
    at ``due`` (the container's clock), or at its own deadline when ``due`` is unknown."""

    __slots__ = ("job", "container", "due", "fires_at", "callback", "task", "armed")

    def __init__(self, job: Job, container: Any, seconds: float, due: Optional[float],
                 callback: Any) -> None:
        self.job = job
        self.container = container
        self.due = due
        self.fires_at = due  # the task's deadline
        self.callback = callback
        self.armed = True
        self.task = container.schedule(seconds, self)

    def cancel(self) -> None:
        self.armed = False
        self.task.cancel()

    def on_timer_task(self, event: Any) -> None:
        if not self.armed or self.job.done:
            return
        container = self.container
        now = container.now
        if self.due is not None and self.due > now:  # re-armed since it was scheduled
            self.fires_at = self.due
            self.task = container.schedule(self.due - now, self)
            return
        self.armed = False
        self.job._guard(self.callback)


def _message_source(messages: Union[int, Iterable[Any]],
                    make_message: Any) -> Tuple[Optional[int], Iterator[Any]]:
    """(total or None, iterator of messages) for a count (made by ``make_message(n)``, 1-based)
    or an iterable of bodies/messages."""
    if isinstance(messages, bool):
        raise TypeError("messages must be a count or an iterable")
    if isinstance(messages, int):
        if messages < 0:
            raise ValueError("messages must not be negative")
        return messages, (make_message(n) for n in range(1, messages + 1))
    total = len(messages) if hasattr(messages, "__len__") else None  # type: ignore[arg-type]
    return total, iter(messages)


_MESSAGING_HOOKS = ("on_accepted", "on_rejected", "on_released", "on_settled", "on_message")


_COUNTERS = ("sent", "confirmed", "received", "served", "committed")
"""The counters a job's end-of-job DEBUG summary reports (those the job has)."""


def _log_detached(link: Any, how: str) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s link to %r %s", "sender" if link.is_sender else "receiver",
                  _links.describe(link), how)


class _HookEvent:
    """What a proton ``MessagingHandler`` hook overridden on a lean job is called with: the
    attributes of proton's event that such hooks read."""

    def __init__(self, job: Any, dlv: Any, message: Any = None) -> None:
        self.delivery = dlv if isinstance(dlv, Delivery) else _raw.wrap(dlv)
        self.link = self.delivery.link
        self.connection = job.connection
        self.container = job.container
        self.message = message


def next_encoded(items: Iterator[Any], durable: bool,
                 delay: Optional[float] = None) -> Optional[bytes]:
    """The next message of a message source, encoded (encoded ones pass through); None once
    the source is exhausted. ``delay``: see :func:`~proton_easy._message.encode`."""
    try:
        item = next(items)
    except StopIteration:
        return None
    return item if type(item) is Encoded else encode(item, durable, delay)


class _Lean:
    """Raw-event handling for the hot path: no MessagingHandler child handlers, whose dispatch
    costs more per message than the work itself. Link close is translated here.

    A class that defines ``on_raw_delivery(dlv)`` gets delivery events there, with the raw
    ``pn_delivery_t`` (see :mod:`proton_easy._engine.raw`): straight from a Client's loop, which
    skips proton's event objects for them, or through ``on_delivery`` under a plain
    ``Container``. Such a class and its subclasses must not override ``on_delivery``.

    proton's own hooks (``on_accepted``, ``on_rejected``, ``on_released``, ``on_settled``,
    ``on_message``) overridden by a subclass are still called, with an event carrying
    ``delivery``, ``link``, ``connection``, ``container`` (and ``message``, a
    :class:`~proton_easy.Message`): only then does a message cost the extra objects."""

    _hooks: FrozenSet[str] = frozenset()
    _credit_of: Any = None  # the receiver link whose raw handle is _credit_handle
    _credit_handle: Any = None

    def _grant(self, recv: Any, wanted: int, held: int = 0) -> int:
        """:func:`_links.top_up` for ``recv``, its credit and queue read through its raw handle
        (found once per link: this runs per message)."""
        if recv is None:
            return 0
        if self._credit_of is not recv:
            self._credit_of, self._credit_handle = recv, _raw.link_impl(recv)
        return _links.top_up(recv, wanted, held, handle=self._credit_handle)

    def _go_lean(self) -> None:
        self.handlers.clear()  # type: ignore[attr-defined]
        cls = type(self)
        self._hooks = frozenset(name for name in _MESSAGING_HOOKS
                                if getattr(cls, name) is not getattr(MessagingHandler, name))

    def _emit(self, name: str, dlv: Any, message: Any = None) -> None:
        """Call proton's hook ``name`` if a subclass overrides it."""
        if name in self._hooks:
            self._guard(getattr(self, name),  # type: ignore[attr-defined]
                        _HookEvent(self, dlv, message))

    def on_delivery(self, event: Any) -> None:
        self.on_raw_delivery(_raw.delivery_impl(event.delivery))  # type: ignore[attr-defined]

    def on_link_remote_close(self, event: Any) -> None:
        link = event.link
        if link.remote_condition is not None:
            self.on_link_error(event)  # type: ignore[attr-defined]
        elif link.state & link.LOCAL_CLOSED:
            self.on_link_closed(event)  # type: ignore[attr-defined]
        else:
            self._link_gone(event)  # type: ignore[attr-defined]


def as_message(value: Any) -> Message:
    """A private :class:`~proton_easy.Message` for a body or message (the caller's is not changed).

    >>> as_message("hello").body
    'hello'
    """
    if isinstance(value, Message):
        return copy.copy(value)
    if isinstance(value, proton.Message):
        return Message.from_proton(value)
    return Message(value)


def _settle(dlv: Any, outcome: int, error: Optional[BaseException] = None) -> None:
    """Settle an incoming delivery (a handle of :mod:`proton_easy._engine.raw`) with
    ``outcome``; ``error`` goes into a rejection's condition."""
    if error is not None:
        _raw.set_condition(dlv, "amqp:internal-error", f"{type(error).__name__}: {error}")
    _raw.settle(dlv, outcome)


def resolve(fut: Future[Any], error: Optional[BaseException] = None, result: Any = None) -> None:
    """Tell a waiting thread (which may have given up and cancelled ``fut`` meanwhile)."""
    try:
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)
    except InvalidStateError:
        pass


def default_durable(durable: Optional[bool], at_most_once: bool) -> bool:
    """Whether messages are durable: as asked, else at-least-once ones are (a message the
    broker accepted survives its restart) and at-most-once ones are not.

    >>> default_durable(None, at_most_once=False), default_durable(False, at_most_once=False)
    (True, False)
    """
    return (not at_most_once) if durable is None else bool(durable)


def _check_seconds(name: str, value: Optional[float]) -> None:
    """A duration option: a finite, positive number of seconds, or None (no limit)."""
    check_seconds(name, value, allow_none=True)
