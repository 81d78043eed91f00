"""One AMQP connection and the jobs running on it: opening, failover, reconnect, failure."""

from __future__ import annotations

import logging
import socket
import time
from concurrent.futures import Future
from typing import Any, Callable, List, Optional, Protocol, Set, Tuple

from proton.handlers import EndpointStateHandler, MessagingHandler

from .. import _options, _otel, _trace
from .._errors import (
    AMQPError,
    AuthenticationError,
    ConnectError,
    ConnectionLost,
    TLSError,
    connection_error,
    transport_error,
)
from .._options import Backoff, ConnectionOptions, ParsedURL, learned_peers
from . import compat

log = logging.getLogger("proton_easy")

_SOCKET_POLL = 0.1
"""Seconds between looks at a connection attempt whose socket is not connected yet."""
USEFUL_SECONDS = 2.0
"""A connection that stayed open this long before it dropped did useful work."""
USEFUL_FRAMES = 32
"""... and so did one that received this many frames after its open (transfers, dispositions,
flow): more than opening a session and attaching a link takes."""


class JobLike(Protocol):
    """What a connection needs of a job running on it (``handlers.Job`` is one)."""

    @property
    def in_doubt(self) -> int:
        """Deliveries whose outcome is unknown if the connection drops now."""

    def _dropped(self) -> None: ...

    def _reconnected(self) -> None: ...

    def _dropped_after_end(self) -> None: ...

    def _fail(self, error: BaseException) -> None: ...

    def _guard(self, fn: Callable[..., Any], *args: Any) -> None: ...

    def uses_session(self, session: Any) -> bool: ...

    def session_ended(self, session: Any, condition: Any) -> None: ...


class Connection(MessagingHandler):
    """Owns one proton connection and tells its jobs when it opens, drops, returns or fails.

    Reconnecting is proton's (links re-attach by themselves); what proton does not do, this
    does: a fresh, bounded backoff for each outage, no retry after a TLS or login failure,
    typed errors, and telling each job so that a sender can re-send what was in doubt.

    Until the connection first opens, a server that does not answer at all within
    :data:`~proton_easy._options.HANDSHAKE_TIMEOUT` seconds of the socket connecting (no
    TLS handshake, no AMQP header) ends the attempt: a port speaking the other protocol
    (``amqps://`` on a plain port: :class:`TLSError`; ``amqp://`` on a TLS port:
    :class:`ConnectError`) would otherwise hold the socket open until the whole timeout.
    """

    def __init__(self, options: ConnectionOptions) -> None:
        super().__init__(prefetch=0, auto_accept=False, auto_settle=False)
        # Links have handlers of their own: of MessagingHandler's children, only the one that
        # names connection events is needed here (every transport event passes through them).
        children: Any = self.handlers
        self.handlers = [h for h in children if isinstance(h, EndpointStateHandler)]
        self.options = options
        self.jobs: Set[JobLike] = set()
        self.proton: Any = None
        self.opened: Future[Any] = Future()
        self.closed: Future[Any] = Future()
        self.ever_opened = False
        self.up = False
        self.drops = 0
        self.failed: Optional[AMQPError] = None
        self._last_error: Optional[ConnectError] = None
        self._backoff: Optional[Backoff] = None
        self._mechs: Optional[str] = None
        self.offered_capabilities: tuple[str, ...] = ()
        self.product: Optional[str] = None
        """What the broker calls itself in its Open frame (``product``), once connected."""
        self.current_url = options.display_url
        """The URL being tried or connected to, without its password."""
        self._container: Any = None
        self._attempt = 0  # counts transports bound (connection attempts)
        self._handshake_task: Any = None
        self._aborted: Optional[ConnectError] = None  # why this attempt was ended here
        self._opened_at = 0.0
        self._opened_transport: Any = None
        self._frames_at_open = 0
        self._last_useful = True  # the connection that dropped last did useful work
        self._judged = 0  # the attempt whose drop was judged last
        self._drop_condition: Optional[Tuple[str, str]] = None  # the last drop: name, text
        self._opened_attempt = 0  # the attempt that opened last
        self._own_credentials = False  # set per attempt here (proton's connector not hooked)
        self._url_index = 0  # with _own_credentials: the URL of the current attempt
        self._unresolved: Set[str] = set()  # URLs whose host did not resolve since the open
        self.learned: List[ParsedURL] = []
        """Failover peers the brokers named (``failover-server-list``), after ``urls=``."""
        self._learning = False  # learn_failover and proton's connector can take the URLs
        self._tls_ok = any(u.scheme == "amqps" for u in options.urls)
        self._why = ""  # why the last connection ended, for the failover log line
        self._why_attempt = ""  # ... and why the last attempt after it failed
        self._dropped_url: Optional[str] = None  # the URL of the connection that dropped
        self._switched_first = False  # the first connection went to a URL after the first
        self._dropped_at = 0.0

    # -- driving ----------------------------------------------------------------------------
    def open(self, container: Any) -> Any:
        """Start connecting (on the loop thread); returns the proton connection."""
        kwargs = self.options.connect_kwargs()
        self._mechs = kwargs.get("allowed_mechs")
        self._backoff = kwargs["reconnect"]
        self._backoff.on_give_up = self._gave_up
        self._backoff.useful = lambda: self._last_useful
        self._container = container
        self._learning = self.options.learn_failover and compat.CONNECTOR_HOOKABLE
        several = len(self.options.urls) > 1 or self._learning
        self._own_credentials = several and not compat.CONNECTOR_HOOKABLE
        if self._own_credentials:
            for name in ("user", "password", "allowed_mechs"):
                kwargs.pop(name, None)
        self.proton = container.connect(handler=self, **kwargs)
        if self._own_credentials:
            self._url_index = 0
            self._use_url(self.options.urls[0])
        elif several and not compat.hook_connector(self.proton, self._before_attempt):
            self._learning = False
            if len(self.options.urls) > 1:
                log.warning("proton's connector could not be hooked: every failover URL gets "
                            "the first URL's credentials")
        if self.options.learn_failover and not self._learning:
            log.debug("failover peers named by the broker are not followed: this proton's "
                      "connector does not take new URLs (urls= still works)")
        return self.proton

    @property
    def failover_urls(self) -> List[ParsedURL]:
        """Every URL a reconnect tries, in order: ``urls=`` (the URL first), then the learned."""
        return [*self.options.urls, *self.learned]

    def _learn(self, connection: Any) -> None:
        """Take the failover peers the broker just named (each open): they replace those
        learned before, and the URL this connection was made with stays among them. A broker
        that names none leaves them as they were: its backup may not have announced itself
        yet (an Artemis primary just after a fail-back names no one until its backup is back
        as a replica), and the backup learned before is still where the next failover goes."""
        current = next((u for u in self.failover_urls if str(u) == self.current_url), None)
        if current is None:
            return
        try:
            properties = connection.remote_properties
        except Exception:  # noqa: BLE001 - undecodable properties: nothing to learn
            properties = None
        named = learned_peers(properties, current)
        given = {(u.host, u.port) for u in self.options.urls}
        learned: List[ParsedURL] = []
        seen = set(given)
        peers = named or self.learned  # naming none is no news: keep what was learned
        for peer in ([current] if (current.host, current.port) not in given else []) + peers:
            if (peer.host, peer.port) in seen or (peer.scheme == "amqps" and not self._tls_ok):
                continue
            seen.add((peer.host, peer.port))
            learned.append(peer)
        if [str(u) for u in learned] != [str(u) for u in self.learned]:
            if named or self.learned:
                log.info("failover peers named by %s: %s", self.current_url,
                         ", ".join(str(u) for u in named) or "none")
            self.learned = learned
            compat.set_connector_urls(self.proton, [u.connect_url for u in self.failover_urls])

    def _before_attempt(self, connector: Any, url: str) -> None:
        # proton gives every failover URL the same user and password, and names none of them
        # in its errors: set that URL's own credentials first, and remember which URL it is.
        parsed = next((u for u in self.failover_urls if u.connect_url == url), None)
        if parsed is not None:
            if str(parsed) != self.current_url:
                log.info("failing over from %s to %s", self.current_url, parsed)
                if not self.ever_opened:
                    self._switched_first = True
            self.current_url = str(parsed)
            creds = self.options.credentials(parsed)
            connector.user, connector.password = creds["user"], creds["password"]
            connector.allowed_mechs = self._mechs = creds["allowed_mechs"]

    def _use_url(self, url: ParsedURL) -> None:
        # The public-API way (proton's connector not hooked): proton's connector tries the
        # URLs in order, from the first again after each open, and leaves the connection's
        # user and password alone when it has none of its own; the mechanisms are set on the
        # transport when it is bound (before the socket connects).
        self.current_url = str(url)
        creds = self.options.credentials(url)
        self._mechs = creds["allowed_mechs"]
        conn = self.proton
        if conn is not None:
            conn.user = creds["user"]
            conn.password = creds["password"]

    def attach_job(self, job: JobLike) -> None:
        """Register a job to hear about drops, returns and failure (raises the connection's
        error if it failed already).

        >>> # conn.attach_job(job)  (on the loop thread)
        """
        if self.failed is not None:
            raise self.failed
        self.jobs.add(job)

    def detach_job(self, job: JobLike) -> None:
        """Forget a finished job."""
        self.jobs.discard(job)

    def close(self) -> None:
        """Close gracefully; ``closed`` resolves when the broker answered or the link is gone."""
        self._cancel_handshake_check()
        if self._backoff is not None:
            self._backoff.stopped = True
        if self.proton is not None and not self.closed.done():
            if self.up:
                self.proton.close()
            else:
                self.proton.close()
                self._resolve(self.closed, None)
        else:
            self._resolve(self.closed, None)

    def release_proton(self) -> bool:
        """Let a finished connection's proton objects be freed (call once its loop stopped);
        False if this proton keeps them in a way the engine does not know.

        proton keeps each endpoint's Python attributes alive for as long as the C object lives,
        and those attributes (the handler, the container) hold Python wrappers that keep the C
        objects alive: without this, every closed Client would keep its whole connection, with
        its buffers and handlers, for the life of the process.
        """
        conn, self.proton = self.proton, None
        self.jobs.clear()
        self._cancel_handshake_check()
        self._container = None
        if conn is None:
            return True
        return compat.release_endpoints(conn)

    # -- the handshake deadline -------------------------------------------------------------
    def _watch_handshake(self, transport: Any, delay: float, armed: bool) -> None:
        attempt = self._attempt
        connection = self

        class _Check:
            def on_timer_task(self, event: Any) -> None:
                connection._handshake_task = None
                connection._check_handshake(attempt, transport, armed)

        self._cancel_handshake_check()
        self._handshake_task = self._container.schedule(delay, _Check())

    def _cancel_handshake_check(self) -> None:
        task, self._handshake_task = self._handshake_task, None
        if task is not None:
            task.cancel()

    def _check_handshake(self, attempt: int, transport: Any, armed: bool) -> None:
        """Watch one attempt: once its socket is connected the server has HANDSHAKE_TIMEOUT
        seconds (``armed``) to answer something; if it said nothing, end the attempt."""
        if (attempt != self._attempt or self.ever_opened or self.failed is not None
                or self.closed.done() or transport.closed):
            return  # this attempt is over, or it worked
        if transport.frames_input:
            return  # the server speaks AMQP (SASL or the open): slow perhaps, not wrong
        if compat.socket_connecting(transport):
            # the socket is still connecting (proton's IO handler): no server to blame yet;
            # the call's timeout bounds that part
            self._watch_handshake(transport, _SOCKET_POLL, armed=False)
            return
        if not armed:  # the socket is connected: the server's time starts now
            self._watch_handshake(transport, _options.HANDSHAKE_TIMEOUT, armed=True)
            return
        url, seconds = self.current_url, _options.HANDSHAKE_TIMEOUT
        ssl = compat.transport_tls(transport)
        err: ConnectError
        if ssl is None and self.current_url.startswith("amqps:"):
            # this proton does not show the TLS layer: say what is known
            err = TLSError(f"cannot connect to {url}: the server did not complete the TLS "
                           f"handshake or the AMQP protocol header within {seconds:g} s: is "
                           "this a TLS port? (a plain AMQP port takes amqp://)")
        elif ssl is not None and not ssl.cipher_name():
            err = TLSError(f"cannot connect to {url}: the server did not answer the TLS "
                           f"handshake within {seconds:g} s: is this a TLS port? (a plain "
                           "AMQP port takes amqp://)")
        elif ssl is not None:
            err = ConnectError(f"cannot connect to {url}: the server answered the TLS "
                               "handshake but not the AMQP protocol header within "
                               f"{seconds:g} s: is this an AMQP port?")
        else:
            err = ConnectError(f"cannot connect to {url}: the server did not answer the AMQP "
                               f"protocol header within {seconds:g} s: is this a TLS port? "
                               "(a TLS port takes amqps:// and tls=pe.TLS(...))")
        self._abort(transport, err)

    def _abort(self, transport: Any, err: ConnectError) -> None:
        """End this connection attempt with ``err``: proton then tries the next URL, if any,
        or gives up (never after a TLSError, which a retry cannot mend)."""
        log.debug("connection attempt ended: %s", err)
        if isinstance(err, TLSError) and self._backoff is not None:
            self._backoff.stopped = True
        specific = (TLSError, AuthenticationError)
        if isinstance(err, specific) or not isinstance(self._last_error, specific):
            self._last_error = err
        self._aborted = err
        transport.close_tail()
        transport.close_head()

    # -- proton events ----------------------------------------------------------------------
    def on_connection_bound(self, event: Any) -> None:
        # A transport is bound for every connection attempt (the first, each failover URL,
        # each reconnect); only the attempts before the first open are watched.
        self._attempt += 1
        self._aborted = None
        _trace.attach(event.transport, self.options.secrets())  # PROTON_EASY_TRACE=1
        if self._own_credentials and self._mechs and event.transport is not None:
            event.transport.sasl().allowed_mechs(self._mechs)
        if self.ever_opened or self._container is None:
            return
        # (proton's IO handler opens the socket after this event: look shortly after)
        self._watch_handshake(event.transport, _SOCKET_POLL, armed=False)

    def on_connection_opened(self, event: Any) -> None:
        self._cancel_handshake_check()
        caps = event.connection.remote_offered_capabilities or ()
        self.offered_capabilities = tuple(str(c) for c in caps)
        props = event.connection.remote_properties
        product = props.get("product") if isinstance(props, dict) else None
        self.product = str(product) if product is not None else None
        reopened = self.ever_opened
        self.ever_opened = True
        self._opened_at = time.monotonic()
        self._opened_transport = event.transport
        self._opened_attempt = self._attempt
        self._frames_at_open = _frames_input(event.transport)
        self.up = True
        if self._learning:
            self._learn(event.connection)
        if self._backoff is not None:
            self._backoff.connected = True
        if not reopened:
            log.info("connected to %s", self.current_url)
        failed_over = False
        if reopened and self._dropped_url not in (None, self.current_url):
            parsed = next((u for u in self.learned if str(u) == self.current_url), None)
            named = " (named by the broker)" if parsed is not None else ""
            log.info("failed over from %s to %s%s after %.1f s: %s", self._dropped_url,
                     self.current_url, named, time.monotonic() - self._dropped_at,
                     "; ".join(w for w in (self._why, self._why_attempt) if w)
                     or "connection lost")
            failed_over = True
        elif reopened:
            log.info("reconnected to %s", self.current_url)
        else:
            failed_over = self._switched_first
        tel = _otel.current()
        if tel is not None and failed_over:
            tel.failed_over(self)
        self._why = self._why_attempt = ""
        self._dropped_url = None
        if reopened:
            tel = _otel.current()
            if tel is not None:
                tel.reconnected(self)
            for job in list(self.jobs):
                job._guard(job._reconnected)
        self._resolve(self.opened, self)

    def _judge_attempt(self, transport: Any, cond: Any) -> None:
        """After a drop: did that connection do useful work? A drop before any (or a socket
        that a broker accepted and cut at once) counts towards giving up."""
        if self._attempt == self._judged:
            return  # proton reports a drop twice
        self._judged = self._attempt
        if cond is not None:
            self._drop_condition = (cond.name, cond.description)
        if not self.ever_opened or self._backoff is None:
            return
        try:
            heard = int(transport.frames_input) if transport is not None else 0
        except Exception:  # noqa: BLE001 - a freed transport
            heard = 0
        if not heard:
            return  # no broker answered (refused, unreachable, restarting): the budget bounds it
        useful = False
        if self._opened_attempt == self._attempt and transport is not None:
            frames = _frames_input(transport) - self._frames_at_open
            useful = (time.monotonic() - self._opened_at >= USEFUL_SECONDS
                      or frames >= USEFUL_FRAMES)
        self._opened_transport = None
        self._last_useful = useful
        if not useful:
            log.debug("connection to %s dropped before doing any work", self.current_url)
            self._backoff.attempt_failed()

    def on_transport_error(self, event: Any) -> None:
        if self._aborted is not None:
            return  # ended by _abort, which knows better why than the cut transport does
        cond = event.transport.condition
        err = transport_error(cond, self.current_url, self._mechs)
        if isinstance(err, (TLSError, AuthenticationError)) and self._backoff is not None:
            self._backoff.stopped = True  # a retry cannot mend these
        specific = (TLSError, AuthenticationError)
        if isinstance(err, specific) or not isinstance(self._last_error, specific):
            self._last_error = err
        if self.ever_opened and not self.up and self.current_url == self._dropped_url:
            self._why_attempt = str(err)  # the old URL's broker is gone: part of the why
        log.debug("transport error: %s", err)

    def on_connection_error(self, event: Any) -> None:
        err = connection_error(event.connection.remote_condition, self.current_url)
        self._fail(err)

    def on_transport_tail_closed(self, event: Any) -> None:
        # The peer closed its side of the socket (a broker shutting down gracefully): proton
        # would keep the half-closed transport until its next write fails, and reconnect only
        # then. Closing our side too makes the drop, and the reconnect, immediate.
        transport = event.transport
        if transport is not None and not transport.closed:
            transport.close_head()

    def on_connection_remote_open(self, event: Any) -> None:
        # proton's connector starts from the first URL again after an open
        self._url_index = -1
        self._unresolved.clear()

    def on_transport_closed(self, event: Any) -> None:
        # (before proton's connector, which opens the next attempt right after this)
        if self._own_credentials:
            urls = self.options.urls
            self._url_index = (self._url_index + 1) % len(urls)
            self._use_url(urls[self._url_index])

    def event_error(self, event: Any, exc: BaseException) -> None:
        """An exception was raised while this connection's ``event`` was dispatched (by proton
        itself: a host name that does not resolve raises from its IO handler). A failed
        connection attempt ends that attempt (proton tries the next URL, or reconnects);
        anything else fails the connection and its jobs. Never raises."""
        transport = event.transport
        if self._aborted is not None and transport is not None and transport.closed:
            # proton's IO handler, on the events of an attempt ended before its socket existed
            log.debug("ignored on an ended connection attempt: %r", exc)
            return
        if isinstance(exc, OSError) and not self.up and not self.closed.done():
            url = self.current_url
            if isinstance(exc, socket.gaierror):
                host = _host_of(self.options, url)
                reason = exc.strerror or str(exc)
                err = ConnectError(f"cannot connect to {url}: cannot resolve host {host!r} "
                                   f"({reason})")
                self._unresolved.add(url)
            else:
                err = ConnectError(f"cannot connect to {url}: {exc.strerror or exc}")
            if transport is not None and not transport.closed:
                compat.socket_never_opened(transport)
                self._abort(transport, err)
            else:
                self._last_error = err
            every = {str(u) for u in self.options.urls}
            if not self.ever_opened and every <= self._unresolved:
                # no URL's host resolves: retrying cannot help before one does
                if len(every) > 1:
                    err = ConnectError(f"cannot connect to any of {self.options.display_urls} "
                                       f"(last error: {err})")
                self._fail(err)
            return
        log.error("error while handling %s of the connection to %s", event, self.current_url,
                  exc_info=exc)
        self._fail(ConnectError(f"connection to {self.current_url} failed: "
                                f"{type(exc).__name__}: {exc}"))

    def on_disconnected(self, event: Any) -> None:
        transport = event.transport
        self._judge_attempt(transport, transport.condition if transport is not None else None)
        if not self.up:
            return  # proton reports a drop twice
        self.up = False
        self.drops += 1
        if self.closed.done() or (self._backoff is not None and self._backoff.stopped):
            return
        cond = transport.condition if transport is not None else None
        self._dropped_url, self._dropped_at = self.current_url, time.monotonic()
        self._why = (f"connection to {self.current_url} lost"
                     + (f" ({cond.name}: {cond.description})" if cond is not None else ""))
        log.warning("connection to %s lost; reconnecting", self.current_url)
        for job in list(self.jobs):
            job._guard(job._dropped)
            job._guard(job._dropped_after_end)

    def on_connection_closed(self, event: Any) -> None:
        self.up = False
        self._resolve(self.closed, None)

    def on_connection_closing(self, event: Any) -> None:
        # The broker closed the connection without an error while we had it open: proton does
        # not reconnect after that, so every job fails now rather than wait for its timeout.
        self._fail(ConnectionLost(f"the broker at {self.current_url} closed the connection "
                                  "without giving a reason", in_doubt=sum(
                                      job.in_doubt for job in self.jobs)))

    def on_session_remote_close(self, event: Any) -> None:
        # A broker may end a session, with or without a reason, to refuse what its links ask
        # for (dynamic nodes, transactions): the jobs with links on it are told; they fail.
        session = event.session
        condition = session.remote_condition
        if not session.state & session.LOCAL_CLOSED:
            session.close()
        if condition is None and self.closed.done():
            return
        for job in list(self.jobs):
            if job.uses_session(session):
                job._guard(job.session_ended, session, condition)

    def on_link_error(self, event: Any) -> None:  # links always have their own handler
        pass

    # -- failure ----------------------------------------------------------------------------
    def _gave_up(self) -> None:
        if self.ever_opened and not isinstance(self._last_error, (TLSError,
                                                                  AuthenticationError)):
            in_doubt = sum(job.in_doubt for job in self.jobs)
            why, condition, description = "", None, None
            if self._backoff is not None and self._backoff.fruitless:
                why = (f"; {_options.MAX_FRUITLESS_RECONNECTS} reconnections in a row "
                       "dropped right after opening, before doing any work")
                if self._drop_condition is not None:
                    condition, description = self._drop_condition
                    why += f" ({condition}: {description})"
            err: AMQPError = ConnectionLost(
                f"connection to {self.options.display_urls} lost and not recovered{why} "
                f"({in_doubt} deliveries in doubt)", in_doubt=in_doubt,
                condition=condition, description=description)
        else:
            last = self._last_error
            err = last or ConnectError(f"cannot connect to {self.options.display_urls}")
            if type(last) is ConnectError and len(self.options.urls) > 1:
                err = ConnectError(f"cannot connect to any of {self.options.display_urls} "
                                   f"(last error: {last})", condition=last.condition,
                                   description=last.description)
        self._fail(err)

    def _fail(self, err: AMQPError) -> None:
        if self.failed is not None:
            return
        self.failed = err
        self._cancel_handshake_check()
        self.up = False
        if self._backoff is not None:
            self._backoff.stopped = True
        for job in list(self.jobs):
            job._guard(job._fail, err)
        self.jobs.clear()
        self._resolve(self.opened, err)
        if self.proton is not None:
            self.proton.close()
        self._resolve(self.closed, None)

    def made_progress(self) -> None:
        """Tell the connection it did useful work (a delivery settled, a message received):
        its next drop then starts a fresh reconnect backoff, however soon it comes."""
        self._opened_at = 0.0

    @staticmethod
    def _resolve(fut: Future[Any], value: Any) -> None:
        if fut.done():
            return
        if isinstance(value, BaseException):
            fut.set_exception(value)
        else:
            fut.set_result(value)


def _frames_input(transport: Any) -> int:
    try:
        return int(transport.frames_input + transport.frames_output) if transport is not None else 0
    except Exception:  # noqa: BLE001 - a freed transport
        return 0


def _host_of(options: ConnectionOptions, url: str) -> str:
    """The host of the URL (of ``options``) printed as ``url``."""
    for parsed in options.urls:
        if str(parsed) == url:
            return parsed.host
    return url
