"""The ``proton-easy`` command line: send, receive, request, serve, and a local broker.

Option names follow ``cli-proton-python`` (the client Red Hat's AMQ documentation uses), so
``-b host:port/address -c 10 --msg-content "hello %d" --log-msgs dict`` means the same to both.
Each subcommand is one function over the public API; messages go to stdout as ``--log-msgs``
says, a summary (count, seconds, msg/s) to stderr, errors as one line on stderr.

Example::

    proton-easy send -b amqp://admin:admin@localhost:5672/examples -c 10 --msg-content "m%d"
    proton-easy receive -b amqp://admin:admin@localhost:5672/examples -c 0 --log-msgs json
    python -m proton_easy broker           # a local Artemis in the foreground
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, TextIO, Tuple

from . import __version__, _trace
from ._client import Client
from ._errors import AMQPError
from ._message import DELIVERY_DELAY, Message
from ._options import CONNECT_FLOOR, parse_url, redact
from ._tls import TLS
from .handlers._transfer import Receiver, check_receive_options

log = logging.getLogger("proton_easy.cli")

LOG_FORMATS = ("none", "body", "dict", "interop", "json")
_COUNTER_RE = re.compile(r"%[ 0-9]*d")


def default_broker_url() -> str:
    """``$PROTON_EASY_URL`` + ``/examples``, else ``localhost:5672/examples`` (cli's default).

    >>> default_broker_url().endswith("/examples")
    True
    """
    base = os.environ.get("PROTON_EASY_URL") or "localhost:5672"
    return base.rstrip("/") + "/examples"


def resolve_broker_url(text: str, base: Optional[str] = None) -> str:
    """What ``-b`` names: a full ``[amqp[s]://][user:password@]host[:port]/address`` as it is,
    and a bare address (``orders``), ``queue://NAME`` or ``topic://NAME`` relative to
    ``$PROTON_EASY_URL`` (else ``localhost:5672``), which is what ``python -m
    proton_easy.testing run`` sets (``base``, when given, instead).

    >>> resolve_broker_url("queue://orders", base="amqp://u:pw@127.0.0.1:5673")
    'amqp://u:pw@127.0.0.1:5673/queue://orders'
    >>> resolve_broker_url("localhost:5672/examples")
    'localhost:5672/examples'
    """
    relative = text.startswith(("queue://", "topic://")) or not any(
        ch in text for ch in ":/@")
    if not relative or not text:
        return text
    base = base or os.environ.get("PROTON_EASY_URL") or "localhost:5672"
    return base.rstrip("/") + "/" + text


# -- message output (the formats of cli-proton-python's --log-msgs) ---------------------------
def _py(value: Any) -> str:
    """One value the way cli-proton-python prints it: ``'str'``, ``%d``, ``%f``, ``None``."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:d}"
    if isinstance(value, float):
        return f"{value:f}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"'{k}': {_py(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_py(v) for v in value) + "]"
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).replace(b"\0", b"\\0").decode("utf-8", "replace")
    text = str(value).replace("'", "\\'")
    return f"'{text}'"


def _json(value: Any) -> Any:
    """A value made JSON-ready the way cli-proton-python's json format ends up."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(f"{value:f}")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).replace(b"\0", b"\\0").decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    return str(value)


def _ms(seconds: Optional[float]) -> int:
    return int((seconds or 0) * 1000)


def message_fields(msg: Message) -> Dict[str, Any]:
    """The fields of cli-proton-python's ``dict`` format, in its order and units (ms).

    Fields that proton_easy's :class:`~proton_easy.Message` does not carry (expiration,
    first-acquirer, group sequence, ...) show AMQP's defaults, as proton shows them when unset.

    >>> message_fields(Message("hi", ttl=1.5))["ttl"]
    1500
    """
    return {
        "address": msg.address,
        "annotations": msg.annotations or None,
        "content": msg.body,
        "content_encoding": "None",
        "content_type": msg.content_type or "None",
        "correlation_id": msg.correlation_id,
        "creation_time": float(msg.creation_time or 0),
        "delivery_count": msg.delivery_count,
        "durable": bool(msg.durable),
        "expiration": 0,
        "first_acquirer": False,
        "group_id": msg.group_id,
        "group_sequence": 0,
        "id": msg.id,
        "inferred": False,
        "instructions": None,
        "priority": 4 if msg.priority is None else msg.priority,
        "properties": msg.properties or None,
        "reply_to": msg.reply_to,
        "reply_to_group_id": None,
        "subject": msg.subject,
        "ttl": _ms(msg.ttl),
        "user_id": msg.user_id or b"",
    }


def interop_fields(msg: Message) -> Dict[str, Any]:
    """The fields of cli-proton-python's ``interop``/``json`` formats (hyphenated keys, ms).

    >>> interop_fields(Message("hi", id="ID:7"))["id"]
    '7'
    """
    def strip_id(value: Any) -> Any:
        return value[3:] if isinstance(value, str) and value.startswith("ID:") else value

    return {
        "address": msg.address,
        "content": msg.body,
        "content-encoding": None,
        "content-type": msg.content_type or None,
        "correlation-id": strip_id(msg.correlation_id),
        "creation-time": _ms(msg.creation_time),
        "delivery-count": msg.delivery_count,
        "durable": bool(msg.durable),
        "absolute-expiry-time": 0,
        "first-acquirer": False,
        "group-id": msg.group_id,
        "group-sequence": 0,
        "id": strip_id(msg.id),
        "priority": 4 if msg.priority is None else msg.priority,
        "properties": msg.properties or None,
        "reply-to": msg.reply_to,
        "reply-to-group-id": None,
        "subject": msg.subject,
        "ttl": _ms(msg.ttl),
        "user-id": msg.user_id or b"",
    }


def format_message(msg: Message, style: str) -> Optional[str]:
    """Render one message as ``--log-msgs`` says (``None`` for ``none``).

    >>> format_message(Message({"sequence": 1}), "body")
    "{'sequence': 1}"
    >>> format_message(Message("hi"), "json")[:32]
    '{"address": null, "content": "hi'
    """
    if style == "none":
        return None
    if style == "body":
        return str(msg.body)
    if style == "dict":
        return "{" + ", ".join(f"'{k}': {_py(v)}" for k, v in message_fields(msg).items()) + "}"
    fields = interop_fields(msg)
    if style == "interop":
        return "{" + ", ".join(f"'{k}': {_py(v)}" for k, v in fields.items()) + "}"
    if style == "json":
        return json.dumps(_json(fields))
    raise ValueError(f"unknown --log-msgs format {style!r}: use one of {', '.join(LOG_FORMATS)}")


class _Output:
    """Writes messages to stdout; a progress line and the summary to stderr."""

    def __init__(self, verb: str, noun: str, style: str, quiet: bool, stdout: TextIO,
                 stderr: TextIO) -> None:
        self.verb = verb
        self.noun = noun
        self.style = style
        self.quiet = quiet
        self.stdout = stdout
        self.stderr = stderr
        self.count = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._progress: Optional[threading.Thread] = None
        self._progress_shown = False
        if not quiet and _isatty(stderr):
            self._progress = threading.Thread(target=self._show_progress, daemon=True,
                                              name="proton-easy progress")
            self._progress.start()

    def message(self, msg: Message) -> None:
        """Count one message, and print it if ``--log-msgs`` says so (any thread)."""
        text = format_message(msg, self.style)
        with self._lock:
            self.count += 1
            if text is not None:
                if self._progress_shown:  # the next tick draws the progress line again
                    self.stderr.write("\r\x1b[K")
                    self.stderr.flush()
                self.stdout.write(text + "\n")
                self.stdout.flush()

    def _rate(self) -> str:
        seconds = max(time.monotonic() - self.started, 1e-9)
        noun = self.noun
        if self.count != 1:
            noun = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
        return f"{self.count} {noun} in {seconds:.2f} s ({self.count / seconds:.0f} msg/s)"

    def _show_progress(self) -> None:
        if self._stop.wait(1.0):
            return
        while not self._stop.is_set():
            with self._lock:
                self.stderr.write(f"\r{self.verb} {self._rate()}\x1b[K")
                self.stderr.flush()
                self._progress_shown = True
            self._stop.wait(0.5)

    def close(self, summary: bool = True) -> None:
        """Stop the progress line; print the summary line unless quiet."""
        self._stop.set()
        if self._progress is not None:
            self._progress.join(2)
        with self._lock:
            if self._progress_shown:
                self.stderr.write("\r\x1b[K")
            if summary and not self.quiet:
                self.stderr.write(f"{self.verb} {self._rate()}\n")
            self.stderr.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# -- building messages from the command line (cli-proton-python's message options) ----------
def _retype(value: str) -> Any:
    """``~`` values: int, then float, then true/false, else the string."""
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def _name_value(item: str) -> Tuple[str, Any]:
    """``NAME=VALUE`` keeps a string, ``NAME~VALUE`` converts it (int, float, bool), a bare
    ``NAME`` has no value: what cli-proton-python makes of ``-P`` and ``-M``."""
    for sep in ("=", "~"):
        name, found, value = item.partition(sep)
        if found:
            return name, (value if sep == "=" else _retype(value))
    return item, None


def message_factory(args: argparse.Namespace) -> Callable[[int], Message]:
    """Return ``make(n)`` building the n-th (0-based) message from the ``--msg-*`` options.

    A ``%d`` in ``--msg-content`` is replaced by the message's number, from 0.

    >>> args = build_parser(False).parse_args(["send", "--msg-content", "m%d", "-P", "n~1"])
    >>> msg = message_factory(args)(7)
    >>> msg.body, msg.properties, msg.content_type
    ('m7', {'n': 1}, 'text/plain')
    """
    content: Any = args.msg_content
    if content is None and args.msg_content_from_file:
        with open(args.msg_content_from_file, encoding="utf-8") as f:
            content = f.read().rstrip()
    content_type = "text/plain"
    if args.msg_content_list_items:
        content = [_retype(i[1:]) if i.startswith("~") else i
                   for i in args.msg_content_list_items]
        content_type = "amqp/list"
    elif args.msg_content_map_items:
        content = dict(_name_value(i) for i in args.msg_content_map_items)
        content_type = "amqp/map"
    numbered = isinstance(content, str) and _COUNTER_RE.search(content) is not None
    properties = dict(_name_value(p) for p in args.msg_properties)
    fields: Dict[str, Any] = {
        "properties": properties,
        "id": args.msg_id,
        "correlation_id": getattr(args, "msg_correlation_id", None),
        "reply_to": getattr(args, "msg_reply_to", None),
        "subject": args.msg_subject,
        "durable": args.msg_durable,
        "ttl": args.msg_ttl / 1000 if args.msg_ttl is not None else None,
        "priority": args.msg_priority,
        "content_type": args.msg_content_type or content_type,
        "address": args.msg_address,
        "group_id": args.msg_group_id,
        "user_id": args.msg_user_id.encode() if args.msg_user_id is not None else None,
    }
    if getattr(args, "msg_delay", None):  # the broker holds each message this many ms
        fields["annotations"] = {DELIVERY_DELAY: args.msg_delay}
    if numbered:
        try:
            content % 0
        except (TypeError, ValueError) as exc:
            raise ValueError(f"--msg-content {content!r}: {exc}") from None

    def make(n: int) -> Message:
        body = content % n if numbered else content
        return Message(body, **fields)

    return make


# -- connection options ---------------------------------------------------------------------
def connection_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The :class:`~proton_easy.Client` keywords that the ``--conn-*`` and ``-t`` options mean.

    The broker URL is ``-b``: ``[amqp[s]://][user:password@]host[:port]/address``.

    >>> args = build_parser(False).parse_args(["receive", "--conn-reconnect", "false", "-t", "5"])
    >>> connection_options(args)
    {'reconnect': False, 'timeout': 5.0}
    """
    options: Dict[str, Any] = {}
    tls_given = any(getattr(args, name) for name in (
        "conn_ssl_trust_store", "conn_ssl_certificate", "conn_ssl_private_key",
        "conn_ssl_password", "conn_ssl_verify_peer", "conn_ssl_verify_peer_name"))
    if tls_given:
        if args.conn_ssl_private_key and not args.conn_ssl_certificate:
            raise ValueError("--conn-ssl-private-key needs --conn-ssl-certificate")
        verify = "peer-name"
        if args.conn_ssl_verify_peer and not args.conn_ssl_verify_peer_name:
            verify = "peer"
        options["tls"] = TLS(ca=args.conn_ssl_trust_store, cert=args.conn_ssl_certificate,
                             key=args.conn_ssl_private_key, password=args.conn_ssl_password,
                             verify=verify)
    if args.conn_reconnect == "false":
        options["reconnect"] = False
    elif args.conn_reconnect_timeout is not None:
        options["reconnect"] = args.conn_reconnect_timeout
    if args.conn_heartbeat is not None:
        options["heartbeat"] = args.conn_heartbeat
    if args.conn_allowed_mechs:
        options["allowed_mechs"] = args.conn_allowed_mechs
    if args.conn_urls:
        options["urls"] = [u.strip() for u in args.conn_urls.split(",") if u.strip()]
    if args.timeout is not None:  # also bounds connecting (though never under 2 s)
        options["timeout"] = max(args.timeout, CONNECT_FLOOR)
    if getattr(args, "conn_container_id", None):
        options["container_id"] = args.conn_container_id
    return options


def _client(args: argparse.Namespace) -> Client:
    parsed = parse_url(args.broker_url)
    if not parsed.address:
        raise ValueError(f"-b {redact(args.broker_url)!r} names no address: use "
                         "host:port/address, or a bare address (relative to $PROTON_EASY_URL)")
    return Client(args.broker_url, **connection_options(args))


# -- subcommands ----------------------------------------------------------------------------
def cmd_send(args: argparse.Namespace, out: _Output) -> int:
    """``proton-easy send``: send ``-c`` messages (at-least-once unless told otherwise).

    Example::

        main(["send", "-b", "localhost:5672/orders", "-c", "10", "--msg-content", "order %d"])
    """
    make = message_factory(args)

    def messages(count: int) -> Iterator[Message]:
        for n in range(count):
            msg = make(n)
            out.message(msg)
            yield msg

    if args.tx_size and args.link_at_most_once:
        raise ValueError("--tx-size cannot be combined with --link-at-most-once")
    with _client(args) as client:
        if args.tx_size:
            _send_transactional(client, args, messages(args.count))
        else:
            client.send_many(None, messages(args.count), at_most_once=args.link_at_most_once)
    return 0


def _send_transactional(client: Client, args: argparse.Namespace,
                        messages: Iterator[Message]) -> None:
    """``--tx-size N``: transactions of N messages, each ended by ``--tx-action``."""
    last = args.tx_endloop_action or args.tx_action
    with client.transaction(client.default_address) as tx:
        in_batch = 0
        for msg in messages:
            tx.send(msg)
            in_batch += 1
            if in_batch == args.tx_size:
                _end_batch(tx, args.tx_action)
                in_batch = 0
        if in_batch:
            _end_batch(tx, last)


def _end_batch(tx: Any, action: str) -> None:
    if action == "rollback":
        tx.abort()
    else:
        tx.commit()


class _PrintingReceiver(Receiver):
    """The seed's Recv: hands each message to the output (on the client's loop thread)."""

    def __init__(self, out: _Output, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.out = out

    def on_received(self, msg: Message) -> None:
        self.out.message(msg)


def cmd_receive(args: argparse.Namespace, out: _Output) -> int:
    """``proton-easy receive``: ``-c N`` messages (0: all there are, or until ``-t`` idle).

    Example::

        main(["receive", "-b", "localhost:5672/orders", "-c", "0", "--log-msgs", "json"])
    """
    if args.tx_size and (args.link_at_most_once or args.recv_selector):
        raise ValueError("--tx-size cannot be combined with --link-at-most-once or "
                         "--recv-selector")
    subscription = args.durable_subscriber_name
    if subscription is None and (args.link_durable or args.shared_subscriber
                                 or args.subscriber_unsubscribe):
        subscription = parse_url(args.broker_url).address or ""
        subscription = subscription.split("://", 1)[-1]
    if args.tx_size and subscription is not None:
        raise ValueError("--tx-size cannot be combined with subscription options")
    with _client(args) as client:
        if args.tx_size:
            return _receive_transactional(client, args, out)
        drain = args.count == 0 and args.timeout is None
        job = _PrintingReceiver(out, count=args.count, address=client.default_address,
                                selector=args.recv_selector,
                                at_most_once=args.link_at_most_once,
                                timeout=args.timeout, drain=drain,
                                subscription=subscription, durable=args.link_durable,
                                shared=args.shared_subscriber, browse=args.recv_browse)
        check_receive_options(job.address, subscription, args.link_durable,
                              args.shared_subscriber, args.recv_browse,
                              args.link_at_most_once, client.options)
        if args.timeout is not None:
            limit = args.timeout + client.timeout  # the job's own idle timer ends it first
        elif drain:
            limit = client.timeout  # the broker answers a drain at once
        else:
            limit = math.inf  # -c N without -t waits for N messages, like cli-proton-python
        client.run(job, limit, progress=lambda: job.received)
        if args.subscriber_unsubscribe and subscription is not None:
            client.unsubscribe(None, subscription)
    return 0


DRAIN_IDLE = 1.0
"""Seconds without a message that end ``receive -c 0 --tx-size N`` when ``-t`` is not given."""


def _receive_transactional(client: Client, args: argparse.Namespace, out: _Output) -> int:
    """``--tx-size N``: receive in transactions of N messages, each ended by ``--tx-action``.

    Ends after ``-c`` messages, or when a batch stays short for ``-t`` seconds (``-c 0``
    without ``-t``: for :data:`DRAIN_IDLE` seconds); ``-c N`` without ``-t`` waits for N.
    """
    last = args.tx_endloop_action or args.tx_action
    idle = args.timeout if args.timeout is not None else (None if args.count else DRAIN_IDLE)
    received = 0
    with client.transaction(client.default_address) as tx:
        while not args.count or received < args.count:
            wanted = args.tx_size if not args.count else min(args.tx_size,
                                                             args.count - received)
            in_batch, quiet = 0, False
            while in_batch < wanted:
                got = tx.receive(count=wanted - in_batch,
                                 timeout=idle if idle is not None else client.timeout)
                for msg in got:
                    out.message(msg)
                in_batch += len(got)
                if not got and idle is not None:
                    quiet = True
                    break
            received += in_batch
            if in_batch:
                _end_batch(tx, args.tx_action if in_batch == args.tx_size else last)
            if quiet:
                break
    return 0


def cmd_request(args: argparse.Namespace, out: _Output) -> int:
    """``proton-easy request``: send ``-c`` requests one after the other, print each reply.

    Example::

        main(["request", "-b", "localhost:5672/service", "--msg-content", "hello"])
    """
    make = message_factory(args)
    with _client(args) as client:
        for n in range(args.count):
            out.message(client.request(None, make(n), timeout=args.timeout))
    return 0


def cmd_serve(args: argparse.Namespace, out: _Output) -> int:
    """``proton-easy serve``: answer requests (echo, ``--upper``, or ``--msg-content``) until
    ``-c`` were answered, ``-t`` seconds passed without one, or Ctrl-C.

    Example::

        main(["serve", "-b", "localhost:5672/service", "--upper"])
    """
    numbered = args.msg_content is not None and _COUNTER_RE.search(args.msg_content) is not None
    answered = 0

    def respond(msg: Message) -> Any:
        nonlocal answered
        out.message(msg)
        n, answered = answered, answered + 1
        if args.msg_content is not None:
            return args.msg_content % n if numbered else args.msg_content
        if args.upper and isinstance(msg.body, str):
            return msg.body.upper()
        return msg.body

    with _client(args) as client:
        if not args.quiet:
            out.stderr.write(f"serving requests on {client.options.display_url} "
                             "(Ctrl-C stops)\n")
            out.stderr.flush()
        try:
            client.serve(None, respond, count=args.count or None, timeout=args.timeout)
        except KeyboardInterrupt:
            pass  # the usual way to stop a server
    return 0


def cmd_broker(args: argparse.Namespace, out: Optional[_Output]) -> int:
    """``proton-easy broker``: what ``python -m proton_easy.testing broker`` does, by the same
    code; a broker that cannot start is reported with its log tail (exit 1).

    Example::

        main(["broker", "--port", "5672", "--tls"])   # Ctrl-C stops it
    """
    from .testing import BrokerStartError
    from .testing.__main__ import _cmd_broker

    try:
        return _cmd_broker(args)
    except BrokerStartError as exc:
        text = redact(str(exc), args.password).replace(
            "leave port=None to get a free one",
            "use --port 0 (make broker PORT=0) to get a free one")
        sys.stderr.write(f"proton-easy: error: {text}\n")
        return 1


# -- the parser -----------------------------------------------------------------------------
def _common(with_messages: bool, count_default: int, log_default: str,
            reply_fields: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("control options")
    g.add_argument("-b", "--broker-url", default=default_broker_url(), metavar="URL",
                   help="[amqp[s]://][user:password@]host[:port]/address; a bare address is a "
                        "queue, queue://NAME and topic://NAME say which, and alone each is "
                        "relative to $PROTON_EASY_URL (default: $PROTON_EASY_URL/examples, "
                        "else %(default)s)")
    g.add_argument("-c", "--count", type=_non_negative_int, default=count_default,
                   help="number of messages (default %(default)s)")
    g.add_argument("-t", "--timeout", type=_positive_float, default=None, metavar="SECONDS",
                   help="seconds to wait (connecting; receive: without a message) before "
                        "giving up")
    g.add_argument("--log-msgs", choices=LOG_FORMATS, default=log_default,
                   help="how to print messages on stdout (default %(default)s)")
    g.add_argument("-q", "--quiet", action="store_true",
                   help="no summary or progress line on stderr")
    g.add_argument("--debug", action="store_true",
                   help="log what happens and show tracebacks on errors")
    g.add_argument("--trace", action="store_true",
                   help="print every AMQP frame on stderr, passwords and SASL responses "
                        "redacted (also PROTON_EASY_TRACE=1)")

    g = p.add_argument_group("connection options")
    g.add_argument("--conn-urls", metavar="URL,URL", help="failover URLs, comma separated")
    g.add_argument("--conn-reconnect", choices=("true", "false"), default="true",
                   type=str.lower, help="reconnect after a dropped connection (default true)")
    g.add_argument("--conn-reconnect-timeout", type=_positive_float, metavar="SECONDS",
                   help="give up reconnecting after this many seconds (default 60)")
    g.add_argument("--conn-heartbeat", type=_positive_float, metavar="SECONDS",
                   help="idle timeout (heartbeat) in seconds")
    g.add_argument("--conn-allowed-mechs", metavar="MECHS",
                   help='SASL mechanisms, space separated, e.g. "PLAIN" or "EXTERNAL"')
    g.add_argument("--conn-container-id", metavar="ID",
                   help="the AMQP container id (JMS's client id; a durable subscriber needs "
                        "the same one each time)")
    g.add_argument("--conn-ssl-trust-store", metavar="PEM",
                   help="CA certificates to trust (PEM file; default: the system's)")
    g.add_argument("--conn-ssl-certificate", metavar="PEM", help="client certificate (PEM)")
    g.add_argument("--conn-ssl-private-key", metavar="PEM", help="client private key (PEM)")
    g.add_argument("--conn-ssl-password", metavar="PASSWORD", help="the private key's password")
    g.add_argument("--conn-ssl-verify-peer", action="store_true",
                   help="verify the broker's certificate (without its name)")
    g.add_argument("--conn-ssl-verify-peer-name", action="store_true",
                   help="verify the broker's certificate and host name (the default)")

    g = p.add_argument_group("link options")
    x = g.add_mutually_exclusive_group()
    x.add_argument("--link-at-most-once", action="store_true",
                   help="best effort: pre-settled, nothing re-sent")
    x.add_argument("--link-at-least-once", action="store_true",
                   help="reliable: every message confirmed (the default)")

    if with_messages:
        g = p.add_argument_group("message options")
        g.add_argument("--msg-content", metavar="TEXT",
                       help="the body; %%d is replaced by the message's number from 0")
        g.add_argument("--msg-content-from-file", metavar="FILE", help="the body, from a file")
        g.add_argument("-M", "--msg-content-map-item", dest="msg_content_map_items",
                       action="append", default=[], metavar="NAME=VALUE|NAME~VALUE",
                       help="a map body entry, repeatable ('~' converts numbers and booleans)")
        g.add_argument("-L", "--msg-content-list-item", dest="msg_content_list_items",
                       action="append", default=[], metavar="VALUE|~VALUE",
                       help="a list body item, repeatable")
        g.add_argument("-P", "--msg-property", dest="msg_properties", action="append",
                       default=[], metavar="NAME=VALUE|NAME~VALUE",
                       help="an application property, repeatable ('~' converts numbers and "
                            "booleans)")
        g.add_argument("-i", "--msg-id", help="message id")
        g.add_argument("-S", "--msg-subject", help="subject")
        if reply_fields:  # a request gets its own correlation id and reply-to address
            g.add_argument("--msg-correlation-id", help="correlation id")
            g.add_argument("--msg-reply-to", metavar="ADDRESS", help="reply-to address")
        g.add_argument("--msg-durable", type=_yes_no, nargs="?", const=True, default=None,
                       metavar="yes|no", help="durable messages (default: yes when sent "
                       "at-least-once, no at-most-once)")
        g.add_argument("--msg-ttl", type=_non_negative_int, metavar="MS",
                       help="time to live in milliseconds")
        g.add_argument("--msg-priority", type=_non_negative_int, help="priority (0-9)")
        g.add_argument("--msg-content-type", metavar="TYPE",
                       help="content type (default text/plain, amqp/map or amqp/list)")
        g.add_argument("--msg-address", metavar="ADDRESS", help="the message's 'to' field")
        g.add_argument("--msg-group-id", metavar="ID", help="group id")
        g.add_argument("--msg-user-id", metavar="ID", help="user id")
        g.add_argument("--msg-delay", type=_non_negative_int, metavar="MS",
                       help="scheduled delivery: the broker holds each message this many "
                            "milliseconds")
    return p


def _tx_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("transaction options")
    g.add_argument("--tx-size", type=_non_negative_int, default=0, metavar="N",
                   help="transactional: N messages per transaction")
    g.add_argument("--tx-action", choices=("commit", "rollback"), default="commit",
                   help="what ends each full batch (default commit)")
    g.add_argument("--tx-endloop-action", choices=("commit", "rollback"), default=None,
                   help="what ends the last, partial batch (default: --tx-action)")


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text}")
    return value


def _yes_no(text: str) -> bool:
    value = text.strip().lower()
    if value in ("yes", "true", "1", "y"):
        return True
    if value in ("no", "false", "0", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, not {text!r}")


def build_parser(with_broker: bool = True) -> argparse.ArgumentParser:
    """The ``proton-easy`` argument parser (one subparser per subcommand); ``with_broker=False``
    leaves out the options of ``broker`` (which need :mod:`proton_easy.testing`).

    >>> build_parser().parse_args(["send", "-b", "localhost:5672/q", "-c", "3"]).count
    3
    """
    parser = argparse.ArgumentParser(
        prog="proton-easy",
        description="AMQP 1.0 messaging from the command line, with cli-proton-python's "
                    "option names.")
    parser.add_argument("--version", action="version", version=f"proton-easy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("send", parents=[_common(True, 1, "none")],
                       help="send messages", description="Send -c messages to the address "
                       "of -b; each is confirmed by the broker unless --link-at-most-once.")
    _tx_options(p)
    p.set_defaults(func=cmd_send, verb="sent", noun="message")

    p = sub.add_parser("receive", parents=[_common(False, 0, "body")],
                       help="receive messages", description="Receive -c messages from the "
                       "address of -b. -c 0: every message there is now (or, with -t, until "
                       "none came for -t seconds); -c N without -t waits for N messages.")
    p.add_argument("--recv-selector", metavar="SELECTOR",
                   help="JMS selector on application properties, e.g. \"colour = 'green'\"")
    p.add_argument("--recv-browse", action="store_true",
                   help="browse: print the queue's messages without taking them")
    g = p.add_argument_group("subscription options (topic://NAME addresses)")
    g.add_argument("--link-durable", action="store_true",
                   help="durable subscription: kept, with what is published, while away "
                        "(needs --conn-container-id unless shared)")
    g.add_argument("--durable-subscriber-name", metavar="NAME",
                   help="the subscription's name (default: the topic's name)")
    g.add_argument("--shared-subscriber", action="store_true",
                   help="shared subscription: several receivers take turns on it")
    g.add_argument("--subscriber-unsubscribe", action="store_true",
                   help="delete the subscription after receiving")
    _tx_options(p)
    p.set_defaults(func=cmd_receive, verb="received", noun="message")

    p = sub.add_parser("request", parents=[_common(True, 1, "body", reply_fields=False)],
                       help="send requests and print the replies",
                       description="Send -c requests to the address of -b, one after the "
                       "other, each with a fresh correlation id and a reply-to address the "
                       "broker names; print each reply. -t: seconds to wait for each reply.")
    p.set_defaults(func=cmd_request, verb="received", noun="reply")

    p = sub.add_parser("serve", parents=[_common(False, 0, "body")],
                       help="answer requests",
                       description="Answer the requests on the address of -b: to each "
                       "request's reply-to, with its correlation id. The reply echoes the "
                       "request's body unless --upper or --msg-content says otherwise. Stops "
                       "after -c requests (0: no limit), after -t seconds without one, or on "
                       "Ctrl-C. --log-msgs prints the requests.")
    g = p.add_argument_group("reply options")
    x = g.add_mutually_exclusive_group()
    x.add_argument("--upper", action="store_true",
                   help="reply with the request's text upper-cased (the seed's server)")
    x.add_argument("--msg-content", metavar="TEXT",
                   help="reply with this text; %%d is replaced by the request's number from 0")
    p.set_defaults(func=cmd_serve, verb="answered", noun="request")

    p = sub.add_parser("broker", help="run a local Artemis in the foreground (Ctrl-C stops)",
                       description="Run ActiveMQ Artemis in the foreground, as python -m "
                       "proton_easy.testing broker does; print its URL and credentials.")
    p.add_argument("--debug", action="store_true", help="log what happens")
    p.set_defaults(func=cmd_broker, verb=None, noun=None, quiet=True)
    if with_broker:  # importing proton_easy.testing costs time every other command can save
        from .testing.__main__ import _broker_args

        _broker_args(p, port=5672, password="admin", quick=False)
    return parser


# proton_easy's hints name the Python API; the command line's user knows the options instead.
_HINTS = (
    ("pe.TLS(cert=, key=)", "--conn-ssl-certificate and --conn-ssl-private-key"),
    ("pe.TLS(ca=)", "--conn-ssl-trust-store"),
    ("verify='peer-name'", "--conn-ssl-verify-peer-name"),
    ("give the connection a container_id=", "give --conn-container-id"),
    ("subscription='NAME'", "--durable-subscriber-name"),
    ("add durable=True and/or shared=True", "add --link-durable and/or --shared-subscriber"),
    ("browse=True", "--recv-browse"),
    ("at_most_once=True", "--link-at-most-once"),
)


def _one_line(exc: BaseException, args: Optional[argparse.Namespace]) -> str:
    secrets: List[Optional[str]] = []
    if args is not None:
        secrets.append(getattr(args, "conn_ssl_password", None))
        try:
            secrets.append(parse_url(args.broker_url).password)
        except (AttributeError, TypeError, ValueError):
            pass
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
        text = f"{text}: {exc.filename}"
    for api, option in _HINTS:
        text = text.replace(api, option)
    return " ".join(redact(text, *secrets).split())


def main(argv: Optional[Sequence[str]] = None, *, stdout: Optional[TextIO] = None,
         stderr: Optional[TextIO] = None) -> int:
    """Run ``proton-easy`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    0: done; 1: an error (one line on stderr); 2: bad usage; 130: interrupted.

    >>> main(["send", "-b", "localhost:5672/examples", "--msg-content", "hi"])  # doctest: +SKIP
    0
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(with_broker="broker" in argv).parse_args(argv)
    if getattr(args, "broker_url", None):
        args.broker_url = resolve_broker_url(args.broker_url)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s", stream=stderr)
    if getattr(args, "trace", False):
        _trace.enable()
    out: Optional[_Output] = None
    try:
        if args.verb is not None:
            out = _Output(args.verb, args.noun, args.log_msgs, args.quiet, stdout, stderr)
        status: int = args.func(args, out)
        if out is not None:
            out.close()
        return status
    except KeyboardInterrupt:
        if out is not None:
            out.close()
        stderr.write("proton-easy: interrupted\n")
        return 130
    except BrokenPipeError:
        # stdout went away (e.g. piped into head): stop quietly, like other tools
        _silence(stdout)
        if out is not None:
            out.close(summary=False)
        return 0
    except (AMQPError, ValueError, TypeError, OSError) as exc:
        if out is not None:
            out.close(summary=False)
        if args.debug:
            raise
        stderr.write(f"proton-easy: error: {_one_line(exc, args)}\n")
        stderr.flush()
        return 1


def _silence(stream: TextIO) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
