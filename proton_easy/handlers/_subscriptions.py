"""Ending a topic subscription: :class:`Unsubscriber`, JMS's ``unsubscribe`` as a handler job.

>>> from proton_easy.handlers import Unsubscriber
>>> # Container(Unsubscriber("amqp://localhost:5672/topic://prices", subscription="audit",
>>> #                        container_id="svc")).run()
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from .._errors import link_error
from ._job import Job
from ._links import LinkSetup, Subscription, check_subscription, resolve

log = logging.getLogger("proton_easy")


class Unsubscriber(Job):
    """Delete the named subscription on a topic, with the messages it kept.

    With a ``container_id`` on the connection (JMS's client id), it attaches to the
    subscription by its link name with no source, as Qpid JMS does (the broker answers
    ``amqp:not-found``, :class:`~proton_easy.NotFound`, when there is none), and closes the
    link, which deletes it. Without one, the subscription is a shared one made without a client
    id (JMS's "global" subscriptions): it attaches as such a subscriber and closes the link; the
    broker deletes it once no other subscriber is attached. That form cannot tell a missing
    subscription from one it deleted.

    >>> job = Unsubscriber(address="topic://prices", subscription="audit")
    >>> # client.run(job)   # or Container(Unsubscriber(url, subscription=...)).run()
    """

    def __init__(self, url: Optional[str] = None, *, subscription: str,
                 address: Optional[str] = None, **options: Any) -> None:
        super().__init__(url, address=address, **options)
        kind = resolve(self.address)[1] if self.address else "topic"
        check_subscription(kind, subscription, False, True, None)
        self.subscription = subscription
        self.link: Any = None

    def open_links(self) -> None:
        name, kind = resolve(self.address)
        client_id = self._conn.options.container_id if self._conn is not None else None
        if client_id:
            self.link = self.add_link(self.container.create_receiver(
                self.connection, None, name=self.subscription, handler=self,
                options=LinkSetup(None, unspecified_source=True)))
            return
        sub = Subscription(self.subscription, durable=True, shared=True, client_id=None)
        self.link = self.add_link(self.container.create_receiver(
            self.connection, name, name=sub.base_name, handler=self,
            options=LinkSetup(kind, subscription_durable=True, shared=True, global_=True)))

    def on_link_opened(self, event: Any) -> None:
        link = event.link
        if link != self.link or self.done:
            return
        source = link.remote_source
        if source is None or not source.address:
            return  # no such subscription: the broker's detach with amqp:not-found follows
        log.debug("deleting subscription %r (queue %s)", self.subscription, source.address)
        self.finish(None)  # closing the link deletes the subscription

    def on_link_error(self, event: Any) -> None:
        """The broker refused the attach: no such subscription (``NotFound``), or not allowed."""
        link = event.link
        if link != self.link or self.done:
            super().on_link_error(event)
            return
        link.close()
        self._fail(link_error(link.remote_condition,
                              f"subscription {self.subscription!r} on {self.address}"))
