"""What a job hands to another thread (or task) across a drop of the connection.

A consumer or a server job queues what arrives for the thread that takes it. When the
connection drops, what is queued came on the lost connection: its settlement can no longer
reach the broker, which sends it again after the reconnect. The loop drops what is queued,
but the taking thread may take some of it meanwhile; :class:`DropMarks` tells it where that
ends, so that nothing from a lost connection is handed out after the drop.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

DROPPED = object()
"""Queued after a drop of the connection: what is ahead of it came on the lost one."""


class DropMarks:
    """A mixin for a job with a hand-over ``queue`` of ``(item, delivery)`` pairs.

    On the loop, :meth:`mark_drop` (in the job's ``_dropped``, after it dropped what was
    queued) counts the drop and queues a marker. The taking side, while ``drops !=
    taken_drops``, asks :meth:`stale` of each pair it takes: True means skip it.

    >>> while True:                                            # doctest: +SKIP
    ...     msg, dlv = job.queue.get()
    ...     if job.drops != job.taken_drops and job.stale(msg, dlv, loop.post):
    ...         continue  # came on a connection since lost
    ...     handle(msg)
    """

    queue: Any
    drops = 0
    """Drops of the connection so far (counted on the loop)."""
    taken_drops = 0
    """Drops whose marker the taking side has taken."""

    def mark_drop(self) -> None:
        """On the loop: the connection dropped; what was queued until now is stale."""
        self.drops += 1
        self.queue.put((DROPPED, None))

    def stale(self, item: Any, dlv: Any, post: Callable[[Callable[[], None]], Any]) -> bool:
        """On the taking side, for what it just took while ``drops != taken_drops``: True when
        that is to be skipped, a delivery that came on a lost connection or a drop's marker.
        The loop is told through ``post`` (:meth:`skipped`). An ``item`` that is the job's end
        marker (``dlv`` None) is never stale."""
        if item is DROPPED:
            self.taken_drops += 1
        elif dlv is None:
            return False
        post(functools.partial(self.skipped, dlv))
        return True

    def skipped(self, dlv: Any) -> None:
        """On the loop: the taking side skipped ``dlv`` (None: a marker) (override)."""
        raise NotImplementedError
