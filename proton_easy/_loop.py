"""The loop thread: one proton Container per Client, fed work from other threads.

Only ``EventInjector.trigger`` is safe to call from outside the reactor thread, so every call
from a user thread goes through :meth:`Loop.call`, which queues a callable and wakes the reactor.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import uuid
from concurrent.futures import Future
from typing import Any, Callable, Deque, Optional

from proton._reactor import GlobalOverrides
from proton.handlers import MessagingHandler
from proton.reactor import ApplicationEvent, Container, EventInjector

log = logging.getLogger("proton_easy")

_WAKEUP = "proton_easy_wakeup"


class LoopContainer(Container):
    """A Container without the two SSL domains proton builds eagerly (~100 ms per Container).

    TLS connections always get their own domain from :class:`proton_easy.TLS`.
    """

    def __init__(self, *handlers: Any) -> None:
        super().__init__(*handlers, impl=None)  # "impl" skips Container's eager set-up ...
        self.ssl = None  # ... which is redone here, minus the SSL domains
        self.global_handler = GlobalOverrides(self.global_handler)
        self.trigger = None
        self.container_id = str(uuid.uuid4())
        self.allow_insecure_mechs = True
        self.allowed_mechs = None
        self.sasl_enabled = True
        self.user = None
        self.password = None


class _LoopHandler(MessagingHandler):
    """The container's own handler: runs queued calls on the reactor thread."""

    def __init__(self, loop: Loop) -> None:
        super().__init__(prefetch=0, auto_accept=False, auto_settle=False)
        self.loop = loop

    def on_proton_easy_wakeup(self, event: Any) -> None:
        self.loop._drain()

    def on_reactor_init(self, event: Any) -> None:
        self.loop._started.set()


class Loop:
    """A proton Container running in a daemon thread.

    >>> loop = Loop("example")
    >>> loop.call(lambda: 1 + 1).result(timeout=5)
    2
    >>> loop.stop()
    """

    def __init__(self, name: str = "proton-easy") -> None:
        self._calls: Deque[tuple[Callable[[], Any], Optional[Future]]] = collections.deque()
        self._handler = _LoopHandler(self)
        self.container = LoopContainer(self._handler)
        self._injector = EventInjector()
        self.container.selectable(self._injector)
        self._started = threading.Event()
        self._stopped = False
        self._lock = threading.Lock()  # guards the injector's pipe against closing mid-write
        self._wakeup_pending = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def in_loop(self) -> bool:
        """True when called from the loop thread itself."""
        return threading.current_thread() is self._thread

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn()`` on the loop thread; the returned Future holds its result or error."""
        fut: Future = Future()
        if self.in_loop and not self._stopped:
            self._invoke(fn, fut)
            return fut
        with self._lock:
            if self._stopped:
                fut.set_exception(RuntimeError("the client is closed"))
                return fut
            self._calls.append((fn, fut))
            if not self._wakeup_pending:  # one wakeup drains every call queued until then
                self._wakeup_pending = True
                self._injector.trigger(ApplicationEvent(_WAKEUP))
        return fut

    def _invoke(self, fn: Callable[[], Any], fut: Optional[Future]) -> None:
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            if fut is not None and not fut.done():
                fut.set_exception(exc)
            else:
                log.exception("error in a proton_easy loop call")
        else:
            if fut is not None and not fut.done():
                fut.set_result(result)

    def _drain(self) -> None:
        self._wakeup_pending = False  # before draining: a call queued from now on wakes again
        while self._calls:
            fn, fut = self._calls.popleft()
            self._invoke(fn, fut)

    def _run(self) -> None:
        try:
            self.container.run()
        except BaseException:  # noqa: BLE001 - a loop must never die silently
            log.exception("proton_easy loop thread crashed")
        finally:
            with self._lock:
                self._stopped = True
                for fd in self._injector.pipe:  # proton never closes the injector's pipe
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            while self._calls:
                _, fut = self._calls.popleft()
                if fut is not None and not fut.done():
                    fut.set_exception(RuntimeError("the client is closed"))

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the container and join the thread (idempotent)."""
        if not self._stopped and self._thread.is_alive():
            def _shutdown() -> None:
                self._injector.close()
                self.container.stop()

            with self._lock:
                if not self._stopped:
                    self._calls.append((_shutdown, None))
                    self._injector.trigger(ApplicationEvent(_WAKEUP))
            if not self.in_loop:
                self._thread.join(timeout)
        self._stopped = True
