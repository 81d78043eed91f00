"""Local transactions for asyncio: ``async with aio.transaction(url) as tx``, on the blocking
:class:`~proton_easy.Transaction`'s job and steps, with its waits awaited."""

from __future__ import annotations

import logging
from typing import Any, List, Optional

from .._errors import Timeout
from .._message import Message
from .._transaction import Transaction as _Transaction
from ._wait import Face, result, wait

log = logging.getLogger("proton_easy")


class Transaction:
    """A local transaction, awaited: a batch of sends and receives that happens whole or not
    at all. Same semantics and errors as :class:`proton_easy.Transaction`: leaving the
    ``async with`` block commits, an exception (a cancellation too) aborts the batch and is
    re-raised; :meth:`commit` and :meth:`abort` end the current batch and start the next.

    >>> async with aio.transaction("amqp://localhost:5672/orders") as tx:   # doctest: +SKIP
    ...     for msg in await tx.receive(count=10, timeout=5):
    ...         await tx.send(msg.body, address="shipped")
    """

    def __init__(self, client: Face, address: Optional[str] = None, *,
                 owns_client: bool = False) -> None:
        sync = client._sync()
        self._client = client
        self._owns = owns_client
        self._tx = _Transaction(sync._driver, address, default_address=sync.default_address)
        self._driver = sync._driver

    def __repr__(self) -> str:
        return repr(self._tx).replace("proton_easy.Transaction", "proton_easy.aio.Transaction")

    @property
    def address(self) -> Optional[str]:
        """The default address of :meth:`send` and :meth:`receive`."""
        return self._tx.address

    async def __aenter__(self) -> Transaction:
        try:
            await wait(self._driver, self._tx._begin(), None, what="declaring a transaction")
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            commit = self._tx._exit_commits(exc_type)
            if commit is not None:
                try:
                    await self._end(commit, then_declare=False)
                except Exception:  # noqa: BLE001 - the original error is what matters
                    if commit:
                        raise
                    log.debug("abort after an error in the transaction block failed",
                              exc_info=True)
        finally:
            await self.close()

    async def send(self, message: Any, address: Optional[str] = None, *,
                   durable: Optional[bool] = None) -> None:
        """Send a message in the current batch; delivered only if the batch commits.

        >>> await tx.send({"order": 1}, address="orders")   # doctest: +SKIP
        """
        fut = self._tx._send(message, address, durable)
        if fut is not None:
            await wait(self._driver, fut, None, what="sending in a transaction",
                       progress=lambda: self._tx._job.outcomes)

    async def receive(self, count: int = 1, timeout: Optional[float] = None,
                      address: Optional[str] = None) -> List[Message]:
        """Receive up to ``count`` messages in the current batch within ``timeout`` seconds;
        taken off the queue only if the batch commits.

        >>> msgs = await tx.receive(count=10, timeout=5)   # doctest: +SKIP
        """
        fut, limit = self._tx._receive(count, timeout, address)
        got: List[Message] = await wait(self._driver, fut, limit,
                                        what="receiving in a transaction")
        return got

    async def commit(self) -> None:
        """Commit the current batch and start the next one (TransactionError: it did not
        happen).

        >>> await tx.commit()   # doctest: +SKIP
        """
        self._tx._check()
        await self._end(True, then_declare=True)

    async def abort(self) -> None:
        """Abort the current batch and start the next one.

        >>> await tx.abort()   # doctest: +SKIP
        """
        self._tx._check()
        await self._end(False, then_declare=True)

    async def close(self) -> None:
        """End the transaction without committing (an open batch is aborted) and, for
        ``aio.transaction``, close its connection. Idempotent; ``async with`` does this.

        >>> await tx.close()   # doctest: +SKIP
        """
        try:
            fut = self._tx._finish_job()
            if fut is not None:
                try:
                    await result(fut, self._tx.timeout)
                except Exception:  # noqa: BLE001 - closing anyway
                    log.debug("transaction links did not close cleanly", exc_info=True)
        finally:
            if self._owns:
                await self._client.close()

    async def _end(self, commit: bool, then_declare: bool) -> None:
        fut = self._tx._end_op(commit, then_declare)
        try:
            await wait(self._driver, fut, None, what="commit" if commit else "abort",
                       progress=lambda: self._tx._job.outcomes)
        except Timeout as exc:
            raise self._tx._end_timed_out(commit, exc) from None
