"""``serve`` for asyncio: the blocking layer's responder job, its handler called (and awaited,
when it is a coroutine function) on the event loop."""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Callable, Optional

from .. import _otel
from .._errors import AMQPError
from .._message import Message
from .._request_reply import _END, _Server, check_serve_args
from ._wait import Face, Inbox, result

log = logging.getLogger("proton_easy")

_SLICE = 1.0  # seconds between looks at whether the client was closed meanwhile


async def serve(client: Face, address: Optional[str], handler: Callable[[Message], Any],
                count: Optional[int], timeout: Optional[float]) -> int:
    """``Client.serve`` awaited: see :meth:`proton_easy.aio.Client.serve`."""
    sync = client._sync()
    address = sync._address(address)
    sync._driver.check_open()
    check_serve_args(handler, count, timeout)
    driver = sync._driver
    inbox = Inbox()
    job = _Server(notify=inbox.notify, handler=handler, address=address, count=count,
                  timeout=timeout, linger=driver.loop.linger)
    done = driver.start(job)
    in_hand: Any = None
    tel = _otel.current()
    try:
        while True:
            item = await inbox.get(job.queue, _SLICE)
            if item is None:
                if driver.closed:
                    raise AMQPError("the client was closed while serving")
                continue
            msg, dlv = item
            if job.drops != job.taken_drops and job.stale(msg, dlv, driver.post):
                continue  # came on a connection since lost
            if msg is _END:
                break
            in_hand = dlv
            proc = tel.processing(job, msg).start() if tel is not None else None
            try:
                reply = job.respond(msg)
                if inspect.isawaitable(reply):
                    reply = await reply
                if proc is not None:  # the reply carries the process span's context
                    reply = proc.reply(reply)
                error: Optional[BaseException] = None
            except Exception as exc:  # noqa: BLE001 - rejected by the loop, serving goes on
                reply, error = None, exc
            if proc is not None:
                proc.end(error, "rejected" if error is not None else None)
            driver.post(functools.partial(job.complete, msg, dlv, reply, error))
            in_hand = None
        served: int = await result(done, driver.timeout)
        return served
    except BaseException:
        # cancelled (or any error here): the request in hand goes back, the links close
        if not driver.closed:
            if in_hand is not None:
                driver.post(functools.partial(job.put_back, in_hand))
            driver.post(job.stop)
            try:
                await result(done, driver.timeout)
            except Exception:  # noqa: BLE001 - the original error is what matters
                log.debug("responder did not close cleanly", exc_info=True)
        raise
    finally:
        inbox.close()
