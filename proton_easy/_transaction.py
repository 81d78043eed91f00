"""Local transactions as a context manager: ``with pe.transaction(url) as tx: ...``.

The work is done by :class:`_TxContext`, a :class:`~proton_easy.handlers.TxJob` running on the
loop thread: its sends go through the same :class:`~proton_easy.handlers.TxOutbox` as
``TxSender``'s, its receives through the same :class:`~proton_easy.handlers.TxInbox` as
``TxReceiver``'s. :class:`Transaction` hands it operations through its :class:`Driver` and
waits for them there.
"""

from __future__ import annotations

import collections
import logging
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable, Deque, Dict, List, Optional, Protocol, Tuple

from . import _otel
from ._driver import Driver
from ._errors import AMQPError, ConnectionLost, Timeout, TransactionError, link_error
from ._message import Encoded, Message, encode
from .handlers import _links
from .handlers._job import default_durable, resolve
from .handlers._transactions import TxInbox, TxJob, TxOutbox, tx_sender_handler


class _Closable(Protocol):
    def close(self) -> None: ...

log = logging.getLogger("proton_easy")

_WINDOW = 1000
"""Sends in flight (not yet settled by the broker) before ``Transaction.send`` waits."""


def _lost_error() -> TransactionError:
    return TransactionError("connection lost during the transaction: the broker rolled the "
                            "batch back (none of it happened)")


class _Source:
    """One receiving link of a transaction and the receive waiting on it."""

    __slots__ = ("address", "inbox", "want", "got", "fut")

    def __init__(self, address: str, inbox: TxInbox) -> None:
        self.address = address
        self.inbox = inbox
        self.want = 0
        self.got: List[Message] = []
        self.fut: Optional[Future[Any]] = None


_LINGER = 0.002
"""Seconds the loop waits, after a commit or abort returned to its caller, for that caller's
next operation (see :class:`_TxContext`)."""


class _TxContext(TxJob):
    """The job behind a :class:`Transaction`: its own session, one link per address, and the
    operations handed over by the user's thread (each resolves a Future).

    With ``linger`` (the loop's), the loop waits up to :data:`_LINGER` seconds after a
    discharge resolved its caller's wait, for the caller's next operation (the next batch's
    first send, or the close), which then needs no wake-up of the loop; after a wait nothing
    came to, the next discharge is not waited after."""

    def __init__(self, linger: Optional[Callable[[float], bool]] = None) -> None:
        super().__init__(None)
        self._linger = linger
        self._quick = True
        self._targets: Dict[str, TxOutbox] = {}
        self._outboxes: Dict[str, TxOutbox] = {}  # by link name
        self._sources: Dict[str, _Source] = {}
        self._by_link: Dict[str, _Source] = {}
        self._queued: List[Tuple[Future[Any], Callable[[], None]]] = []
        self._batch_futs: List[Future[Any]] = []
        self._discharge_fut: Optional[Future[Any]] = None
        self._discharge_commit = False

    def open_links(self) -> None:
        super().open_links()  # the session and its coordinator; the first op declares

    # -- operations (run on the loop thread) ----------------------------------------------------
    def run_op(self, fut: Future[Any], fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(fut, *args)
        except Exception as exc:  # noqa: BLE001 - handed to the waiting thread
            if not fut.done():
                fut.set_exception(exc)

    def _when_declared(self, fut: Future[Any], fn: Callable[[], None]) -> None:
        if self.done:
            fut.set_exception(self._final_error())
        elif self.batch_error is not None:
            fut.set_exception(self.batch_error)
        elif self.active:
            fn()
        else:
            self._queued.append((fut, fn))
            self.declare()

    def op_begin(self, fut: Future[Any]) -> None:
        self._when_declared(fut, lambda: fut.set_result(None))

    def op_send(self, fut: Future[Any], address: str, payload: bytes) -> None:
        self._when_declared(fut, lambda: self._send(fut, address, payload))

    def op_receive(self, fut: Future[Any], address: str, count: int, timeout: float) -> None:
        self._when_declared(fut, lambda: self._receive(fut, address, count, timeout))

    def op_discharge(self, fut: Future[Any], commit: bool, then_declare: bool) -> None:
        if self.done:
            fut.set_exception(self._final_error())
        elif self.txn_id is None and not self._queued:
            # Nothing declared: the batch is empty, or it was lost with the connection.
            error, self.batch_error = self.batch_error, None
            if error is not None and commit:
                fut.set_exception(error)
            else:
                fut.set_result(None)
            if then_declare:
                self.declare()
        elif not self.active:
            self._queued.append((fut, lambda: self._discharge(fut, commit, then_declare)))
            self.declare()
        else:
            self._discharge(fut, commit, then_declare)

    def _discharge(self, fut: Future[Any], commit: bool, then_declare: bool) -> None:
        if self._batch_work == 0 and self.batch_error is None and not self.unsent:
            fut.set_result(None)  # an empty batch: keep its transaction for the next one
            return
        if not commit:
            for box in self._targets.values():
                for _, f in box.queue:
                    resolve(f)
                box.queue.clear()
        self._discharge_fut, self._discharge_commit = fut, commit
        self.end_batch(commit, then_declare=then_declare)

    # -- sending --------------------------------------------------------------------------------
    def _target(self, address: str) -> TxOutbox:
        box = self._targets.get(address)
        if box is None:
            link = _links.open_sender(self, address, "tx-sender", session=self.session,
                                      handler=tx_sender_handler(self))
            box = self._targets[address] = self._outboxes[link.name] = TxOutbox(self, link)
        return box

    def _send(self, fut: Future[Any], address: str, payload: bytes) -> None:
        box = self._target(address)
        box.queue.append((payload, fut))
        self._batch_futs.append(fut)
        self._pump(box)

    @property
    def unsent(self) -> int:
        return sum(len(box.queue) for box in self._targets.values())

    def _pump(self, box: TxOutbox) -> None:
        # sends made before a commit go out while it waits (``_ending`` True), not after abort
        box.pump(lambda: self.txn_id is not None and self._ending is not False)
        self.try_discharge()

    def on_sendable(self, event: Any) -> None:
        box = self._outboxes.get(event.link.name)
        if box is not None:
            self._guard(self._pump, box)

    def on_tx_outcome(self, token: Any, error: Optional[TransactionError]) -> None:
        if token is not None:
            resolve(token, error)

    # -- receiving ------------------------------------------------------------------------------
    def _source(self, address: str) -> _Source:
        src = self._sources.get(address)
        if src is None:
            link = _links.open_receiver(self, address, "tx-receiver", session=self.session)
            src = self._sources[address] = self._by_link[link.name] = _Source(address,
                                                                             TxInbox(link))
        return src

    def _receive(self, fut: Future[Any], address: str, count: int, timeout: float) -> None:
        src = self._source(address)
        if src.fut is not None:
            raise RuntimeError(f"a receive from {address!r} is already waiting")
        src.fut, src.want, src.got = fut, count, []
        src.inbox.take_held(lambda: src.fut is not None, lambda d, m: self._take(src, d, m))
        if src.fut is None:
            return
        src.inbox.top_up(count - len(src.got))
        self.set_timer(f"receive {address}", timeout, lambda: self._receive_done(src))

    def on_message(self, event: Any) -> None:
        self._guard(self._arrived, event.link, event.delivery, Message.from_proton(event.message))

    def _arrived(self, link: Any, dlv: Any, msg: Message) -> None:
        src = self._by_link.get(link.name)
        if src is None:
            return
        if src.fut is not None and self.active:
            self._take(src, dlv, msg)
        else:
            src.inbox.held.append((dlv, msg))  # arrived late: kept for the next receive

    def _take(self, src: _Source, dlv: Any, msg: Message) -> None:
        self.tx_accept(dlv)
        src.got.append(msg)
        if len(src.got) >= src.want:
            self._receive_done(src)

    def _receive_done(self, src: _Source) -> None:
        fut, got = src.fut, src.got
        src.fut, src.got = None, []
        self.set_timer(f"receive {src.address}", None, None)
        if fut is not None:
            resolve(fut, None, got)

    # -- endings --------------------------------------------------------------------------------
    def on_discharged(self, committed: bool, error: Optional[TransactionError]) -> None:
        for fut in self._batch_futs:
            resolve(fut, None)
        self._batch_futs = []
        done, self._discharge_fut = self._discharge_fut, None
        if done is not None:
            resolve(done, error)
            if self._linger is not None:
                if self._quick:
                    self._quick = self._linger(_LINGER)
                else:
                    self._quick = True  # try again next time

    def on_declared(self) -> None:
        queued, self._queued = self._queued, []
        for i, (fut, fn) in enumerate(queued):
            if not self.active:  # an earlier operation ended the batch: wait for the next
                self._queued = queued[i:] + self._queued
                self.declare()
                return
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - handed to the waiting thread
                if not fut.done():
                    fut.set_exception(exc)

    def on_declare_failed(self, error: TransactionError) -> None:
        queued, self._queued = self._queued, []
        if queued:
            self.batch_error = error  # the batch being built cannot happen
        for fut, _ in queued:
            resolve(fut, error)

    def on_transaction_lost(self, lost: int, in_doubt: bool) -> None:
        error = _lost_error()
        fut, self._discharge_fut = self._discharge_fut, None
        if fut is not None:
            if in_doubt:
                resolve(fut, ConnectionLost(
                    "connection lost while the commit was in flight: whether the batch "
                    "happened is unknown", in_doubt=lost))
            elif not self._discharge_commit:
                resolve(fut, None)  # an abort: the batch is gone either way
            else:
                resolve(fut, error)
        elif (lost or self.unsent or self._queued or self._batch_futs
              or any(src.fut is not None for src in self._sources.values())):
            self.batch_error = error  # the batch in progress did not happen
        self._fail_batch(error, queued=True)

    def _fail_batch(self, error: BaseException, queued: bool) -> None:
        for f in self._batch_futs:
            resolve(f, error)
        self._batch_futs = []
        for box in self._targets.values():
            for _, f in box.queue:
                resolve(f, error)
            box.queue.clear()
        for src in self._sources.values():
            if src.fut is not None:
                resolve(src.fut, error)
                src.fut, src.got = None, []
            src.inbox.held.clear()
        if queued:
            waiting, self._queued = self._queued, []
            for f, _ in waiting:
                resolve(f, error)

    def on_link_error(self, event: Any) -> None:
        link = event.link
        if self.done or (self.coordinator is not None and link == self.coordinator):
            super().on_link_error(event)
            return
        self._guard(self._link_refused, link)

    def _link_refused(self, link: Any) -> None:
        refused = link_error(link.remote_condition, _links.describe(link))
        link.close()
        box = self._outboxes.pop(link.name, None)
        self._targets = {a: b for a, b in self._targets.items() if b is not box}
        unsent = box.queue if box is not None else None
        src = self._by_link.pop(link.name, None)
        if src is not None:
            self._sources.pop(src.address, None)
        error = TransactionError(f"{refused}: the batch will be rolled back",
                                 condition=refused.condition, description=refused.description)
        error.__cause__ = refused
        if self.txn_id is not None or self._queued:
            self.batch_error = self.batch_error or error
        for dlv in [d for d in self._tx_sends if d.link.name == link.name]:
            resolve(self._tx_sends.pop(dlv), error)
        for _, f in unsent or ():
            resolve(f, error)
        if src is not None and src.fut is not None:
            resolve(src.fut, error)
            src.fut = None
        self.try_discharge()

    def _final_error(self) -> BaseException:
        return self.batch_error or self.error or RuntimeError("the transaction is closed")

    def on_finished(self) -> None:
        error = self._final_error()
        fut, self._discharge_fut = self._discharge_fut, None
        if fut is not None:
            resolve(fut, error)
        self._fail_batch(error, queued=True)
        for src in self._sources.values():
            src.inbox.release_held()


class Transaction:
    """A local transaction: a batch of sends and receives that happens whole or not at all.

    Get one from :func:`proton_easy.transaction` or :meth:`proton_easy.Client.transaction` and
    use it as a context manager. Leaving the block normally commits; an exception aborts the
    batch and is re-raised. :meth:`commit` and :meth:`abort` inside the block end the current
    batch and start the next one (a JMS transacted session). Each transaction has a session of
    its own, so several can share one :class:`~proton_easy.Client` (one per thread: a
    Transaction itself is not thread-safe).

    Errors: :class:`~proton_easy.TransactionError` means the batch did not happen (a message or
    the commit was refused, or the connection dropped and the broker rolled the batch back); once
    a batch failed, every send and receive raises it until ``commit()`` or ``abort()`` starts the
    next batch. :class:`~proton_easy.ConnectionLost` from a commit means the connection dropped
    while the commit was in flight: the batch may or may not have happened.
    :class:`~proton_easy.Timeout` from a commit means the same and leaves the transaction closed.

    >>> with pe.transaction("amqp://admin:admin@localhost:5672/orders") as tx:  # doctest: +SKIP
    ...     for msg in tx.receive(count=10, timeout=5):
    ...         tx.send(msg.body, address="shipped")
    """

    def __init__(self, driver: Driver, address: Optional[str] = None, *,
                 default_address: Optional[str] = None,
                 close_with: Optional[_Closable] = None) -> None:
        if address is not None:
            _links.resolve(address)  # validates
        self._driver = driver
        self.address = address or default_address
        self.timeout = driver.timeout
        self._close_with = close_with
        self._job = _TxContext(linger=getattr(driver.loop, "linger", None))
        self._job_fut: Future[Any] = Future()
        self._window: Deque[Future[Any]] = collections.deque()
        self._state = "new"  # new -> open -> closed
        self._broken: Optional[str] = None

    def __repr__(self) -> str:
        return f"<proton_easy.Transaction {self._driver.name} {self._state}>"

    # -- context manager --------------------------------------------------------------------------
    def __enter__(self) -> Transaction:
        fut = self._begin()
        try:
            self._wait(fut, "declaring a transaction")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            commit = self._exit_commits(exc_type)
            if commit is not None:
                try:
                    self._end(commit=commit, then_declare=False)
                except Exception:  # noqa: BLE001 - the original error is what matters
                    if commit:
                        raise
                    log.debug("abort after an error in the transaction block failed",
                              exc_info=True)
        finally:
            self.close()

    # -- the batch --------------------------------------------------------------------------------
    def send(self, message: Any, address: Optional[str] = None, *,
             durable: Optional[bool] = None) -> None:
        """Send a message in the current batch; it is delivered only if the batch commits.

        ``message`` is a plain body or a :class:`~proton_easy.Message`; ``address`` defaults to
        the transaction's (the URL's path). Sends are pipelined: the call returns before the
        broker confirmed, and the commit waits for every confirmation.

        >>> tx.send({"order": 1}, address="orders")   # doctest: +SKIP
        """
        fut = self._send(message, address, durable)
        if fut is not None:
            self._wait(fut, "sending in a transaction", progress=lambda: self._job.outcomes)

    def receive(self, count: int = 1, timeout: Optional[float] = None,
                address: Optional[str] = None) -> List[Message]:
        """Receive up to ``count`` messages in the current batch within ``timeout`` seconds
        (default: the client's timeout); a shorter list, maybe empty, when fewer came. They are
        taken off the queue only if the batch commits; an abort puts them back.

        >>> msgs = tx.receive(count=10, timeout=5)   # doctest: +SKIP
        """
        fut, limit = self._receive(count, timeout, address)
        got: List[Message] = self._wait(fut, "receiving in a transaction", limit=limit)
        return got

    def commit(self) -> None:
        """Commit the current batch and start the next one.

        Raises :class:`~proton_easy.TransactionError` if the batch did not happen (then the
        next batch starts all the same).

        >>> tx.commit()   # doctest: +SKIP
        """
        self._check()
        self._end(commit=True, then_declare=True)

    def abort(self) -> None:
        """Abort the current batch (nothing sent in it is delivered, everything received in it
        goes back to its queue) and start the next one.

        >>> tx.abort()   # doctest: +SKIP
        """
        self._check()
        self._end(commit=False, then_declare=True)

    def close(self) -> None:
        """End the transaction context without committing (an open batch is aborted) and, for
        :func:`proton_easy.transaction`, close its connection. Idempotent; ``with`` does this.

        >>> tx.close()   # doctest: +SKIP
        """
        if self._state == "closed":
            return
        started = self._state == "open"
        self._state = "closed"
        try:
            if started and not self._driver.closed:
                try:
                    self._driver.call(self._job.finish)
                    self._job_fut.result(self.timeout)
                except (FutureTimeout, AMQPError, RuntimeError):
                    log.debug("transaction links did not close cleanly", exc_info=True)
        finally:
            if self._close_with is not None:
                self._close_with.close()

    # -- the steps of each verb, without their waits (the asyncio face awaits the same futures) --
    def _begin(self) -> Future[Any]:
        if self._state != "new":
            raise RuntimeError("a Transaction can be entered only once")
        self._state = "open"
        try:
            self._job_fut = self._driver.start(self._job)
            return self._submit(self._job.op_begin)
        except BaseException:
            self.close()
            raise

    def _exit_commits(self, exc_type: Any) -> Optional[bool]:
        """How leaving the block ends the batch: commit (True), abort (False) or neither."""
        if self._broken or self._state != "open":
            return None  # already reported; closing aborts whatever the broker still holds
        return exc_type is None

    def _send(self, message: Any, address: Optional[str],
              durable: Optional[bool]) -> Optional[Future[Any]]:
        """Submit one send; a Future to wait for when the window of sends in flight is full."""
        self._check()
        address = self._address(address)
        if type(message) is not Encoded:
            tel = _otel.current()
            message = (encode(message, default_durable(durable, at_most_once=False))
                       if tel is None else  # carrying the caller's trace context
                       tel.encode_current(message, default_durable(durable, at_most_once=False)))
        while self._window and self._window[0].done():
            self._window.popleft().result()  # raises if the batch failed
        self._window.append(self._submit(self._job.op_send, address, message))
        if len(self._window) > _WINDOW:
            return self._window.popleft()
        return None

    def _receive(self, count: int, timeout: Optional[float],
                 address: Optional[str]) -> Tuple[Future[Any], float]:
        """Submit one receive: its Future and how long to wait for it."""
        self._check()
        address = self._address(address)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive integer, not {count!r}")
        limit = self.timeout if timeout is None else timeout
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit < 0:
            raise ValueError(f"timeout must be a number of seconds, not {timeout!r}")
        fut = self._submit(self._job.op_receive, address, count, float(limit))
        return fut, limit + self.timeout

    def _finish_job(self) -> Optional[Future[Any]]:
        """Close's first step: the job's Future to wait for, or None when nothing runs."""
        if self._state == "closed":
            return None
        started = self._state == "open"
        self._state = "closed"
        if not started or self._driver.closed:
            return None
        self._driver.post(self._job.finish)
        return self._job_fut

    def _end_op(self, commit: bool, then_declare: bool) -> Future[Any]:
        fut = self._submit(self._job.op_discharge, commit, then_declare)
        self._window.clear()  # the discharge settles (or fails) every send of the batch
        return fut

    def _end_timed_out(self, commit: bool, exc: Timeout) -> Timeout:
        what = "commit" if commit else "abort"
        self._broken = f"the {what} timed out; whether the batch happened is unknown"
        return Timeout(f"{exc}; whether the batch happened is unknown")

    # -- plumbing ---------------------------------------------------------------------------------
    def _check(self) -> None:
        if self._state != "open":
            raise RuntimeError("use the transaction inside its with block" if self._state == "new"
                               else "the transaction is closed")
        if self._broken:
            raise RuntimeError(f"the transaction can no longer be used: {self._broken}")

    def _address(self, address: Optional[str]) -> str:
        address = address or self.address
        if not address:
            raise ValueError("no address given and none in the URL's path")
        _links.resolve(address)
        return address

    def _submit(self, op: Callable[..., None], *args: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        if not self._driver.post(lambda: self._job.run_op(fut, op, *args)):
            resolve(fut, RuntimeError("the client is closed"))
        return fut

    def _end(self, commit: bool, then_declare: bool) -> None:
        fut = self._end_op(commit, then_declare)
        try:
            self._wait(fut, "commit" if commit else "abort", progress=lambda: self._job.outcomes)
        except Timeout as exc:
            raise self._end_timed_out(commit, exc) from None

    def _wait(self, fut: Future[Any], what: str, *, limit: Optional[float] = None,
              progress: Optional[Callable[[], int]] = None) -> Any:
        return self._driver.wait(fut, limit, progress=progress, what=what)
