"""Transactional handler classes: :class:`TxJob` and the seed's ``TxSend`` and ``TxRecv`` as
:class:`TxSender` and :class:`TxReceiver` (re-exported by :mod:`proton_easy.handlers`). The
blocking :class:`~proton_easy.Transaction` of :mod:`proton_easy._transaction` drives a
:class:`TxJob`.

>>> from proton_easy.handlers import TxSender
>>> class Send(TxSender):
...     def make_message(self, n):
...         return {"sequence": n}
>>> # Container(Send("amqp://localhost:5672/examples", messages=100, batch_size=10)).run()
"""

from __future__ import annotations

import collections
import itertools
import logging
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Tuple, Union

import proton
from proton import Delivery, Described, Terminus, symbol, ulong
from proton.reactor import LinkOption

from .._engine import raw as _raw
from .._engine.disposition import declared_txn_id
from .._engine.disposition import delivery_outcome as _delivery_outcome
from .._engine.disposition import error_condition as _error_condition  # noqa: F401
from .._errors import (
    ConnectionLost,
    TransactionError,
    delivery_error,
    transaction_error,
)
from .._message import Message
from . import _links
from ._job import Job, _message_source, default_durable, next_encoded

log = logging.getLogger("proton_easy")

_DECLARE = symbol("amqp:declare:list")
_DISCHARGE = symbol("amqp:discharge:list")
_DECLARED = 0x33
_TRANSACTIONAL_STATE = 0x34


_NOT_SENT = object()


class _Coordinator(LinkOption):
    """Makes a sender link a transaction controller: its target is the broker's coordinator."""

    def apply(self, link: Any) -> None:
        link.target.type = Terminus.COORDINATOR
        _links._put_capabilities(link.target.capabilities, ["amqp:local-transactions"])


class TxJob(Job):
    """What the transactional handler classes share: a session of their own with a transaction
    coordinator on it, and one transaction (a batch) at a time.

    A subclass opens its links on ``self.session`` after ``super().open_links()``, calls
    :meth:`declare`, and once :meth:`on_declared` ran sends with :meth:`tx_send` and accepts
    received messages with :meth:`tx_accept`; :meth:`end_batch` commits or aborts, and
    :meth:`on_discharged` says how the batch ended. Closed here for every subclass: outcomes are
    read from the transactional state the broker answers with, received messages are settled
    after the commit (and released after an abort), a commit waits until every message of its
    batch has an outcome (and aborts instead when one was refused), a refused coordinator fails
    the job with :class:`~proton_easy.TransactionError` rather than closing the connection, and a
    dropped connection is reported through :meth:`on_transaction_lost`.

    >>> class SendTwo(TxJob):
    ...     def open_links(self):
    ...         super().open_links()
    ...         self.sender = self.add_link(self.container.create_sender(self.session, "orders"))
    ...         self.declare()
    ...     def on_declared(self):
    ...         self.tx_send(self.sender, encode("a"))
    ...         self.tx_send(self.sender, encode("b"))
    ...         self.end_batch(commit=True)
    ...     def on_discharged(self, committed, error):
    ...         self._fail(error) if error else self.finish(committed)
    >>> # Container(SendTwo("amqp://localhost:5672")).run()
    """

    def __init__(self, url: Optional[str] = None, *, address: Optional[str] = None,
                 **options: Any) -> None:
        super().__init__(url, address=address, **options)
        self.session: Any = None
        self.coordinator: Any = None
        self.txn_id: Optional[bytes] = None
        self.batch_error: Optional[TransactionError] = None
        self.outcomes = 0
        self._batch_work = 0
        self._declaring: Any = None
        self._declare_wanted = False
        self._ending: Optional[bool] = None
        self._then_declare = False
        # (delivery, is an abort, accepted deliveries, error to report, work in the batch)
        self._discharging: Optional[Tuple[Any, bool, List[Any], Any, int]] = None
        self._tx_sends: Dict[Any, Any] = {}
        self._tx_accepts: List[Any] = []
        self._tx_tags = itertools.count(1)
        self._abort_pending = False

    # -- hooks --------------------------------------------------------------------------------
    def on_declared(self) -> None:
        """Hook: a transaction is declared; work may join it now."""

    def on_declare_failed(self, error: TransactionError) -> None:
        """Hook: the broker refused to declare a transaction. The default fails the job."""
        self._fail(error)

    def on_discharged(self, committed: bool, error: Optional[TransactionError]) -> None:
        """Hook: the batch ended. ``committed`` is True when it happened; ``error`` is set when a
        commit was asked for but the batch did not happen (refused message, refused commit)."""

    def on_transaction_lost(self, lost: int, in_doubt: bool) -> None:
        """Hook: the connection dropped. The broker rolled back the open transaction, in which
        ``lost`` sends and accepts were done; ``in_doubt`` is True when a commit was in flight, so
        that batch may or may not have happened. After a reconnect a transaction is declared
        again if one was open."""

    def on_tx_outcome(self, token: Any, error: Optional[TransactionError]) -> None:
        """Hook: the broker settled a message sent with :meth:`tx_send` (``token`` is what was
        passed there); ``error`` when it was not accepted (the batch will not commit)."""

    @property
    def unsent(self) -> int:
        """Messages the subclass still has to send in this batch before it may commit."""
        return 0

    # -- state --------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """True while a transaction is declared, not ending, and the previous one's discharge
        is settled: new work may join it (:meth:`on_declared` runs when this becomes true)."""
        return (self.txn_id is not None and self._ending is None and self._discharging is None
                and not self.done)

    @property
    def declaring(self) -> bool:
        """True while a declare is in flight or waits for the connection to return."""
        return self._declaring is not None or self._declare_wanted

    @property
    def in_doubt(self) -> int:
        n = len(self._tx_sends)
        if self._discharging is not None and not self._discharging[1]:
            n += self._discharging[4]
        return n

    @property
    def _offline(self) -> bool:
        conn = self._conn
        return conn is not None and conn.ever_opened and not conn.up

    # -- links and control messages -------------------------------------------------------------
    def open_links(self) -> None:
        """Open this job's own session and the coordinator link on it."""
        self.session = self.connection.session()
        self.session.open()
        self.coordinator = self.add_link(self.container.create_sender(
            self.session, None, name=_links.link_name("txn-ctrl", "coordinator"), handler=self,
            options=_Coordinator()))

    def _control(self, body: Any) -> Any:
        dlv = self.coordinator.send(proton.Message(body=body))
        if self._tel is not None:  # a declare or discharge span, until the broker answers
            declare = body.descriptor == _DECLARE
            self._tel.control(self, "declare" if declare else "discharge", dlv,
                              abort=None if declare else bool(body.value[1]))
        return dlv

    def declare(self) -> None:
        """Declare a transaction (after a reconnect if the connection is down); no-op while one
        is declared or being declared."""
        if self.done or self.txn_id is not None or self._declaring is not None:
            return
        if self._offline:
            self._declare_wanted = True
            return
        self._declare_wanted = False
        self._declaring = self._control(Described(_DECLARE, [None]))

    def tx_send(self, sender: Any, payload: bytes, token: Any = None) -> Any:
        """Send encoded message bytes (:func:`~proton_easy._message.encode`) in the transaction."""
        if self.txn_id is None:
            raise RuntimeError("no transaction declared")
        dlv = sender.delivery(str(next(self._tx_tags)))
        sender.stream(payload)
        sender.advance()
        dlv.local.data = [self.txn_id]
        dlv.update(_TRANSACTIONAL_STATE)
        self._tx_sends[dlv] = token
        self._batch_work += 1
        return dlv

    def tx_accept(self, dlv: Any) -> None:
        """Accept a received delivery in the transaction; it is settled once the batch ends."""
        if self.txn_id is None:
            raise RuntimeError("no transaction declared")
        dlv.local.data = [self.txn_id, Described(ulong(int(Delivery.ACCEPTED)), [])]
        dlv.update(_TRANSACTIONAL_STATE)
        self._tx_accepts.append(dlv)
        self._batch_work += 1

    def end_batch(self, commit: bool = True, *, then_declare: bool = False) -> None:
        """Commit (or abort) the current transaction. A commit first waits for the outcome of
        every message sent in it and becomes an abort (reported as an error) if one was refused.
        ``then_declare`` declares the next transaction right behind the discharge."""
        if self.txn_id is None or self._ending is not None:
            raise RuntimeError("no transaction to end")
        self._ending = commit
        self._then_declare = then_declare
        self.try_discharge()

    def try_discharge(self) -> None:
        """Send the discharge once nothing of the batch is outstanding (called on progress)."""
        if self._ending is None or self.txn_id is None or self.done:
            return
        commit = self._ending and self.batch_error is None
        if commit and (self._tx_sends or self.unsent):
            return
        error = self.batch_error if self._ending else None
        txn_id, work = self.txn_id, self._batch_work
        accepts, self._tx_accepts = self._tx_accepts, []
        self._tx_sends.clear()  # an abort does not wait for outcomes: they no longer matter
        self.txn_id, self._ending, self.batch_error, self._batch_work = None, None, None, 0
        dlv = self._control(Described(_DISCHARGE, [txn_id, not commit]))
        self._discharging = (dlv, not commit, accepts, error, work)
        if self._then_declare:
            self.declare()

    # -- outcomes -------------------------------------------------------------------------------
    def on_accepted(self, event: Any) -> None:
        self._guard(self._outcome, event.delivery)

    def on_rejected(self, event: Any) -> None:
        self._guard(self._outcome, event.delivery)

    def on_released(self, event: Any) -> None:
        self._guard(self._outcome, event.delivery)

    def on_settled(self, event: Any) -> None:
        self._guard(self._outcome, event.delivery)
        if event.delivery.link.is_sender:  # a declare or a discharge: settled here before
            event.delivery.abort()  # proton's auto-settle, the way _raw.settle_sent does

    def _outcome(self, dlv: Any) -> None:
        token = self._tx_sends.pop(dlv, _NOT_SENT)
        if token is _NOT_SENT:
            if self._declaring is not None and dlv == self._declaring:
                self._declared(dlv)
            elif self._discharging is not None and dlv == self._discharging[0]:
                self._discharged(dlv)
        else:
            self.outcomes += 1
            state, cond = _delivery_outcome(dlv)
            error = None
            if state != Delivery.ACCEPTED:
                refused = delivery_error(state, cond)
                error = TransactionError(f"a message of the batch was not accepted ({refused}): "
                                         "the batch will be rolled back",
                                         condition=refused.condition,
                                         description=refused.description)
                if self.batch_error is None:
                    self.batch_error = error
            self.on_tx_outcome(token, error)
            self.try_discharge()

    def _declared(self, dlv: Any) -> None:
        self._declaring = None
        txn_id = declared_txn_id(dlv)
        if self._tel is not None:
            self._tel.control_done(self, dlv, declared=txn_id is not None,
                                   error=None if txn_id is not None else "declare refused")
        if txn_id is not None:
            self.txn_id = txn_id
            self._batch_work = 0
            log.debug("transaction declared")
            if self.active:
                self.on_declared()
        else:
            _, cond = _delivery_outcome(dlv)
            self.on_declare_failed(transaction_error(
                "the broker refused to declare a transaction", cond))

    def _discharged(self, dlv: Any) -> None:
        assert self._discharging is not None
        _, fail, accepts, error, _ = self._discharging
        self._discharging = None
        state, cond = _delivery_outcome(dlv)
        committed = state == Delivery.ACCEPTED and not fail
        if self._tel is not None:
            self._tel.control_done(self, dlv, committed=committed, error=(
                "discharge refused" if state != Delivery.ACCEPTED else None))
        for acc in accepts:
            if not committed:
                acc.update(Delivery.RELEASED)  # back on the queue now, not when the link closes
            acc.settle()  # proton 0.40 leaves accepted deliveries unsettled after a commit
        if self._abort_pending:  # the job ends once its open transaction was aborted
            self._end_now()
            return
        if state != Delivery.ACCEPTED:
            if fail:
                log.warning("abort refused by the broker (%s); the batch did not commit", cond)
            else:
                error = transaction_error("commit refused: the batch was rolled back", cond)
        log.debug("transaction %s", "committed" if committed else "rolled back")
        self.on_discharged(committed, error)
        if self.active:  # the next transaction was declared while this one was discharged
            self.on_declared()

    # -- the connection and the links -------------------------------------------------------------
    def _dropped(self) -> None:
        if self._abort_pending:  # the broker aborts it for us
            self._discharging = None
            self._end_now()
            return
        in_doubt = self._discharging is not None and not self._discharging[1]
        lost = self._discharging[4] if in_doubt and self._discharging else self._batch_work
        had_tx = self.txn_id is not None or self._declaring is not None or self._then_declare
        # Forget them: the broker forgot them with the connection. What was sent is aborted,
        # not settled: proton would send one it had not written yet on the next connection
        # (a declare nobody waits for, a message in a transaction that no longer exists).
        sent = list(self._tx_sends)
        for dlv in self._tx_accepts:
            dlv.settle()
        if self._discharging is not None:
            for dlv in self._discharging[2]:
                dlv.settle()
            sent.append(self._discharging[0])
        if self._declaring is not None:
            sent.append(self._declaring)
        self._abort_sent(_raw.delivery_impl(dlv) for dlv in sent)
        self._tx_sends.clear()
        self._tx_accepts = []
        self._discharging = self._declaring = None
        self.txn_id, self._ending, self.batch_error, self._batch_work = None, None, None, 0
        self._declare_wanted = had_tx
        if lost or in_doubt:
            log.warning("connection lost with a transaction open: %s",
                        "the commit's outcome is unknown" if in_doubt
                        else "the broker rolled the batch back")
        self.on_transaction_lost(lost, in_doubt)

    def _reconnected(self) -> None:
        if self._declare_wanted:
            self._declare_wanted = False
            self.declare()

    def on_link_error(self, event: Any) -> None:
        if self.coordinator is not None and event.link == self.coordinator and not self.done:
            self._guard(self._coordinator_gone, event.link.remote_condition)
        else:
            super().on_link_error(event)

    def on_link_ended(self, link: Any) -> None:
        if self.coordinator is not None and link == self.coordinator:
            self._coordinator_gone(None)
        else:
            super().on_link_ended(link)

    def session_ended(self, session: Any, condition: Any) -> None:
        """The broker ended this job's session (refusing transactions, say): no batch can
        happen; the job fails with a :class:`~proton_easy.TransactionError` carrying why."""
        if self.done or session != self.session:
            super().session_ended(session, condition)
            return
        self._gone.extend(lnk for lnk in self._links if lnk.session == session)
        self._fail(transaction_error("the broker ended the transaction's session: "
                                     "no batch can happen", condition))

    def _coordinator_gone(self, condition: Any) -> None:
        self.coordinator.close()
        self._fail(transaction_error(
            "the broker refused the transaction coordinator: no batch can happen", condition))

    def _end(self) -> None:
        if self._abort_pending:
            return  # already ending: waiting for the abort's outcome
        ctl = self.coordinator
        if (self.txn_id is not None and self._discharging is None and not self._offline
                and ctl is not None and not ctl.state & ctl.LOCAL_CLOSED
                and ctl not in self._gone):
            # Abort a transaction left open, and when it holds work wait for the outcome before
            # the links close: Artemis keeps the acknowledgements of a transaction whose
            # consumer link detached before the abort was processed (measured), and would
            # hold an open transaction until the connection closes.
            work = self._batch_work
            dlv = self._control(Described(_DISCHARGE, [self.txn_id, True]))
            if work:
                self._discharging = (dlv, True, self._tx_accepts, None, work)
            self._tx_accepts, self._tx_sends = [], {}
            self.txn_id, self._ending, self._batch_work = None, None, 0
            if work:
                self._abort_pending = True
                self.set_timer("abort", self._abort_timeout, self._end_now)
                return
        super()._end()

    @property
    def _abort_timeout(self) -> float:
        return self.options.timeout if self.options is not None else 10.0

    def _end_now(self) -> None:
        if self._abort_pending:
            self._abort_pending = False
            super()._end()

    def _fail(self, error: BaseException) -> None:
        if not self._abort_pending:  # a job that is ending keeps its first error
            super()._fail(error)

    def _complete(self) -> None:
        session = self.session
        if session is not None and not session.state & session.LOCAL_CLOSED:
            session.close()
        super()._complete()


_OUTCOME_HOOKS = ("on_accepted", "on_rejected", "on_released", "on_settled", "on_delivery")
_OUTCOMES = frozenset((_raw.ACCEPTED, *_raw.REFUSED))


class _TxSenderLink(proton.Handler):
    """The handler of a transaction's sender link, standing in for its job: the broker's answer
    to each message sent in the transaction goes to the job's :meth:`TxJob._outcome` straight
    from the raw delivery (no proton event objects, no dispatch through the job's
    MessagingHandler children: the hot path of a transactional send); every other event of
    the link (flow, open, close, errors) is dispatched to the job as before. With proton's
    public API only, delivery events take that way too.

    >>> # _links.open_sender(job, "orders", "tx-sender", handler=_TxSenderLink(job))
    """

    def __init__(self, job: TxJob) -> None:
        self.job = job
        self.handlers: List[Any] = []

    def on_raw_delivery(self, dlv: Any) -> None:
        """What proton's OutgoingMessageHandler does with an update, for a raw delivery: the
        outcome (proton 0.40 reads a transactional one as none: then the settlement tells),
        then the settlement, then the local settle."""
        if _raw.incoming(dlv) or not _raw.updated(dlv):
            return
        job = self.job
        settled = _raw.remote_settled(dlv)
        if _raw.remote_state(dlv) in _OUTCOMES or settled:
            job._guard(job._outcome, _raw.wrap(dlv))
        if settled:
            _raw.settle_sent(dlv)

    def on_unhandled(self, method: str, *args: Any) -> None:
        args[0].dispatch(self.job)


def tx_sender_handler(job: TxJob) -> Any:
    """The handler for a sender link of ``job``'s transactions: a :class:`_TxSenderLink`,
    unless the job's class overrides one of proton's outcome hooks (then the job itself, and
    the hooks are called as before)."""
    cls = type(job)
    if any(getattr(cls, hook, None) is not getattr(TxJob, hook, None) for hook in _OUTCOME_HOOKS):
        return job
    return _TxSenderLink(job)


class TxOutbox:
    """One transactional sender link and the encoded messages waiting for it, each with a token
    (what :meth:`TxJob.on_tx_outcome` is told). Used by :class:`TxSender` and by the blocking
    :class:`~proton_easy.Transaction`: one way to feed a transaction.

    >>> # outbox = TxOutbox(job, _links.open_sender(job, "orders", "tx-sender",
    >>> #                                            session=job.session))
    >>> # outbox.queue.append((encode("a"), None)); outbox.pump(lambda: job.active)
    """

    __slots__ = ("job", "link", "queue")

    def __init__(self, job: TxJob, link: Any) -> None:
        self.job = job
        self.link = link
        self.queue: Deque[Tuple[bytes, Any]] = collections.deque()

    def pump(self, may_send: Callable[[], bool], limit: Optional[int] = None) -> int:
        """Send queued messages in the current transaction while the link has credit and
        ``may_send()``; at most ``limit``. Returns how many went out."""
        sent, queue, link = 0, self.queue, self.link
        while queue and link.credit and may_send() and (limit is None or sent < limit):
            payload, token = queue.popleft()
            self.job.tx_send(link, payload, token=token)
            sent += 1
        return sent


class TxInbox:
    """One transactional receiver link and the messages that arrived on it before a
    transaction could take them: held, then taken in order by the next transaction that has
    room (:meth:`take_held`). Credit covers what is wanted, held messages included. Used by
    :class:`TxReceiver` and by the blocking :class:`~proton_easy.Transaction`.

    >>> # inbox = TxInbox(_links.open_receiver(job, "orders", "tx-receiver",
    >>> #                                      session=job.session))
    >>> # inbox.top_up(10)
    """

    __slots__ = ("link", "held")

    def __init__(self, link: Any) -> None:
        self.link = link
        self.held: Deque[Tuple[Any, Message]] = collections.deque()

    def take_held(self, room: Callable[[], bool],
                  take: Callable[[Any, Message], None]) -> None:
        """Hand held messages to ``take(delivery, message)`` while ``room()``."""
        while self.held and room():
            dlv, msg = self.held.popleft()
            take(dlv, msg)

    def top_up(self, wanted: int) -> None:
        """Credit for ``wanted`` messages in all, counting those already held or on their way."""
        _links.top_up(self.link, wanted, len(self.held), batch=False)

    def release_held(self) -> None:
        """Give held messages back to the broker (released: delivered again, not counted)."""
        for dlv, _ in self.held:
            _settle_now(dlv, Delivery.RELEASED)
        self.held.clear()


def _settle_now(dlv: Any, outcome: int) -> None:
    if not dlv.settled:
        dlv.update(outcome)
    dlv.settle()


class TxSender(TxJob):
    """Sends messages in transactions of ``batch_size``: the seed's ``TxSend`` as a class.

    ``messages`` is a count (messages made by :meth:`make_message`) or an iterable of bodies or
    :class:`~proton_easy.Message`\\ s. A batch is committed once the broker took each of its
    messages, and the next transaction is declared together with that commit. If the connection
    drops, the broker rolled back the batch in progress: it is sent again in a new transaction
    once the connection returns. If it drops while a commit is in flight the job fails with
    :class:`~proton_easy.ConnectionLost` (that batch may or may not have happened). A refused
    message or commit fails the job with :class:`~proton_easy.TransactionError`: that batch did
    not happen, ``committed`` counts the messages that did.

    >>> class Send(TxSender):
    ...     def make_message(self, n):
    ...         return {"sequence": n}
    >>> # Container(Send("amqp://localhost:5672/examples", messages=100, batch_size=10)).run()
    """

    _otel_batch = True  # with OpenTelemetry: one send span whose context its messages carry
    open_ended = False

    def __init__(
        self,
        url: Optional[str] = None,
        messages: Union[int, Iterable[Any]] = 100,
        batch_size: int = 10,
        *,
        address: Optional[str] = None,
        durable: Optional[bool] = None,
        **options: Any,
    ) -> None:
        super().__init__(url, address=address, **options)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
        self.total, self._items = _message_source(messages, self.make_message)
        self.batch_size = batch_size
        self.durable = default_durable(durable, at_most_once=False)
        self.delay: Optional[float] = None
        self.sent = 0
        self.committed = 0
        self.sender: Any = None
        self._outbox: Optional[TxOutbox] = None
        self._batch: List[bytes] = []
        self._committing: List[bytes] = []
        self._replay: Deque[bytes] = collections.deque()
        self._next: Optional[bytes] = None
        self._exhausted = False

    def make_message(self, n: int) -> Any:
        """Hook: the n-th message (1-based) when ``messages`` is a count. The seed's default."""
        return Message({"sequence": n}, id=n)

    def on_all_committed(self) -> None:
        """Hook: every message was committed."""

    def open_links(self) -> None:
        super().open_links()
        self.sender = _links.open_sender(self, self.address, "tx-sender", session=self.session,
                                         handler=tx_sender_handler(self),
                                         durable=self.durable)
        self._outbox = TxOutbox(self, self.sender)
        if not self._has_more():
            self.finish(0)
        else:
            self.declare()

    def _has_more(self) -> bool:
        if self._replay or self._next is not None:
            return True
        if self._exhausted:
            return False
        self._next = (next_encoded(self._items, self.durable) if self._otel_span is None
                      else self._otel_span.tel.next_encoded(self))  # with its batch's context
        if self._next is None:
            self._exhausted = True
            return False
        return True

    def _take(self) -> Optional[bytes]:
        if not self._has_more():
            return None
        if self._replay:
            return self._replay.popleft()
        item, self._next = self._next, None
        return item

    def on_declared(self) -> None:
        self._pump()

    def on_sendable(self, event: Any) -> None:
        if self.sender is not None and event.link == self.sender:
            self._guard(self._pump)

    def _pump(self) -> None:
        outbox = self._outbox
        if outbox is None:
            return
        # one message at a time into the outbox: the source is read only as credit allows
        while (self.active and self.sender.credit and len(self._batch) < self.batch_size
               and self.batch_error is None):
            payload = self._take()
            if payload is None:
                break
            outbox.queue.append((payload, None))
            outbox.pump(lambda: self.active, limit=1)
            self._batch.append(payload)
            self.sent += 1
        if self.active and self._batch and (len(self._batch) >= self.batch_size
                                            or self.batch_error is not None
                                            or not self._has_more()):
            self._committing, self._batch = self._batch, []
            self.end_batch(commit=True,
                           then_declare=self.batch_error is None and self._has_more())

    def on_discharged(self, committed: bool, error: Optional[TransactionError]) -> None:
        if error is not None or not committed:
            self._fail(error or TransactionError("batch rolled back"))
            return
        self.committed += len(self._committing)
        self._committing = []
        if not self._batch and not self._has_more():
            self.on_all_committed()
            self.finish(self.committed)

    def on_transaction_lost(self, lost: int, in_doubt: bool) -> None:
        if in_doubt:
            n = len(self._committing)
            self._fail(ConnectionLost(f"connection lost while committing a batch of {n} "
                                      "messages: whether it happened is unknown", in_doubt=n))
            return
        again = self._committing + self._batch
        self._replay.extendleft(reversed(again))
        self.sent -= len(again)
        self._committing, self._batch = [], []
        if again:
            log.info("batch of %d messages rolled back by the broker; it will be sent again",
                     len(again))


class TxReceiver(TxJob):
    """Receives messages in transactions of ``batch_size``: the seed's ``TxRecv`` as a class.

    Receives ``count`` messages (0: until stopped or idle) from the URL's address, optionally
    filtered by a JMS ``selector``, accepting each in the current transaction and committing
    every ``batch_size``. Each message goes to :meth:`on_received`; the default keeps it in
    ``self.messages``. A batch whose transaction was rolled back (connection lost) is received
    again, so :meth:`on_received` may see a message twice; ``self.messages`` keeps only one copy.
    ``timeout`` commits what was received and ends the job after that many seconds without a
    message. Credit is granted only for the batch in progress.

    >>> class Recv(TxReceiver):
    ...     def on_received(self, msg):
    ...         print(msg.body)
    >>> # Container(Recv("amqp://localhost:5672/examples", count=100, batch_size=10)).run()
    """

    def __init__(
        self,
        url: Optional[str] = None,
        count: int = 100,
        batch_size: int = 10,
        *,
        address: Optional[str] = None,
        selector: Optional[str] = None,
        timeout: Optional[float] = None,
        **options: Any,
    ) -> None:
        super().__init__(url, address=address, **options)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be a non-negative integer, not {count!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
        if selector is not None and not isinstance(selector, str):
            raise TypeError("selector must be a string")
        self.count = count
        self.batch_size = batch_size
        self.selector = selector
        self.idle_timeout = timeout
        self.received = 0
        self.committed = 0
        self.messages: List[Message] = []
        self.receiver: Any = None
        self._in_batch = 0
        self._committing = 0
        self._mark = 0
        self._inbox: Optional[TxInbox] = None
        self._stopping = False

    def on_received(self, msg: Message) -> None:
        """Hook: one message arrived in the current transaction. The default keeps it in
        ``self.messages``."""
        self.messages.append(msg)

    def open_links(self) -> None:
        super().open_links()
        self.receiver = _links.open_receiver(self, self.address, "tx-receiver",
                                             session=self.session, selector=self.selector)
        self._inbox = TxInbox(self.receiver)
        self.declare()
        self.set_timer("idle", self.idle_timeout, self._idle)

    def _remaining(self) -> int:
        if not self.count:
            return self.batch_size
        return self.count - self.committed - self._committing - self._in_batch

    def _top_up(self) -> None:
        if self._inbox is None or not self.active or self._stopping:
            return
        self._inbox.top_up(min(self.batch_size - self._in_batch, self._remaining()))

    def on_declared(self) -> None:
        self._mark = len(self.messages)
        if self._inbox is not None:
            self._inbox.take_held(lambda: self.active and self._room(), self._take)
        self._top_up()

    def _room(self) -> bool:
        return (not self._stopping and self._in_batch < self.batch_size
                and self._remaining() > 0)

    def on_message(self, event: Any) -> None:
        self._guard(self._arrived, event.delivery, Message.from_proton(event.message))

    def _arrived(self, dlv: Any, msg: Message) -> None:
        if self.active and self._room():
            self._take(dlv, msg)
        elif self._inbox is not None:
            self._inbox.held.append((dlv, msg))  # taken in the next transaction

    def _take(self, dlv: Any, msg: Message) -> None:
        self.on_received(msg)  # before the accept: if it raises, the message was not taken
        self.tx_accept(dlv)
        self._in_batch += 1
        self.received += 1
        if self.idle_timeout is not None:
            self.set_timer("idle", self.idle_timeout, self._idle)
        if self._in_batch >= self.batch_size or self._remaining() <= 0:
            self._commit(then_declare=self._remaining() > 0)
        else:
            self._top_up()

    def _commit(self, then_declare: bool) -> None:
        self._committing, self._in_batch = self._in_batch, 0
        self.end_batch(commit=True, then_declare=then_declare and not self._stopping)

    def _idle(self) -> None:
        self._stopping = True
        if self.active and self._in_batch:
            self._commit(then_declare=False)
        elif self._discharging is None and self._ending is None:
            self.finish(self.messages)

    def on_discharged(self, committed: bool, error: Optional[TransactionError]) -> None:
        if error is not None or not committed:
            del self.messages[self._mark:]
            self._fail(error or TransactionError("batch rolled back"))
            return
        self.committed += self._committing
        self._committing = 0
        if self._stopping or (self.count and self.committed >= self.count):
            self.finish(self.messages)

    def on_transaction_lost(self, lost: int, in_doubt: bool) -> None:
        if in_doubt:
            n = self._committing
            self._fail(ConnectionLost(f"connection lost while committing a batch of {n} "
                                      "received messages: whether it happened is unknown",
                                      in_doubt=n))
            return
        del self.messages[self._mark:]  # those come again
        self.received -= self._in_batch + self._committing
        self._in_batch = self._committing = 0
        if self._inbox is not None:
            self._inbox.held.clear()  # deliveries of the old connection
        if self._stopping:
            self.finish(self.messages)

    def _end(self) -> None:
        if self._inbox is not None:
            self._inbox.release_held()
        super()._end()
