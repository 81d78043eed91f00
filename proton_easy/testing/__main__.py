"""Command line: ``python -m proton_easy.testing fetch|image|broker|run|certs``.

- ``fetch``: download and unpack Artemis into the cache if needed; print its folder.
  ``--brokers all`` (or ``classic,broker-j``) fetches ActiveMQ Classic and Qpid Broker-J too.
- ``image``: make the Artemis image available to the Docker engine (the official one if
  present or pullable, else our own build from the distribution); print its name.
  ``--build`` always uses our own (rebuilt only when its inputs changed), ``--rebuild``
  rebuilds it anyway, ``--no-pull`` never asks a registry.
- ``broker``: run a local Artemis in the foreground, print its URL and credentials;
  Ctrl-C stops it. ``--tls`` adds the TLS acceptors and prints the certificates' paths.
- ``run -- CMD ...``: start a broker, run CMD with ``PROTON_EASY_URL`` and
  ``PROTON_EASY_TEST_URL`` set to its URL, stop the broker, exit with CMD's status.
- ``certs DIR [HOST ...]``: make a test CA, broker and client certificates in DIR (what
  ``docker/make-certs.sh`` does); prints paths, never passwords.

Example::

    python -m proton_easy.testing image
    python -m proton_easy.testing broker --port 5672 --user admin --password admin --tls
    python -m proton_easy.testing run -- python examples/demo.py
    python -m proton_easy.testing certs ./certs localhost 127.0.0.1 broker.example
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from typing import List, Optional

from ._broker import ArtemisBroker
from ._certs import main as certs_main
from ._distribution import ARTEMIS_VERSION, artemis_home
from ._errors import BrokerStartError
from ._local import QUICK_START_JAVA_OPTIONS


def _queues(text: str) -> List[str]:
    return [q for q in (part.strip() for part in text.split(",")) if q]


def _broker_args(
    parser: argparse.ArgumentParser, port: Optional[int], password: str, quick: bool
) -> None:
    parser.add_argument(
        "--mode", choices=("auto", "local", "docker"), default="local",
        help="where to run Artemis (default: local)",
    )
    parser.add_argument(
        "--port", type=int, default=port,
        help=f"AMQP port; 0 for a free one (default: {port or 'a free one'})",
    )
    parser.add_argument("--user", default="admin", help="login (default: admin)")
    parser.add_argument("--password", default=None, help=f"password (default: {password})")
    parser.add_argument(
        "--queues", type=_queues, default=[], help="comma-separated anycast queues to create"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="startup timeout, seconds")
    default = " ".join(QUICK_START_JAVA_OPTIONS) if quick else "none"
    parser.add_argument(
        "--java-option", dest="java_options", action="append", default=None, metavar="OPT",
        help=f"a JVM option for the broker, repeatable; write --java-option=-XX:... "
        f"(default: {default})",
    )
    parser.add_argument(
        "--tls", action="store_true",
        help="also listen on TLS acceptors with generated certificates (needs openssl)",
    )
    parser.add_argument(
        "--allow-anonymous", action="store_true",
        help="let clients without credentials in (a given password is still checked)",
    )
    parser.set_defaults(default_java_options=QUICK_START_JAVA_OPTIONS if quick else ())


def _make_broker(args: argparse.Namespace, default_password: Optional[str]) -> ArtemisBroker:
    return ArtemisBroker(
        mode=args.mode, user=args.user,
        password=args.password if args.password is not None else default_password,
        port=args.port or None, queues=args.queues, startup_timeout=args.timeout,
        java_options=(
            args.java_options if args.java_options is not None else args.default_java_options
        ),
        tls=args.tls, allow_anonymous=args.allow_anonymous,
    )


def _cmd_fetch(args: argparse.Namespace) -> int:
    from ._others import broker_j_home, classic_home

    wanted = {b.strip() for b in args.brokers.split(",") if b.strip()}
    if "all" in wanted:
        wanted = {"artemis", "classic", "broker-j"}
    unknown = wanted - {"artemis", "classic", "broker-j"}
    if unknown:
        print(f"unknown broker(s): {', '.join(sorted(unknown))} "
              "(artemis, classic, broker-j or all)", file=sys.stderr)
        return 2
    if "artemis" in wanted:
        print(artemis_home())
    if "classic" in wanted:
        print(classic_home())
    if "broker-j" in wanted:
        print(broker_j_home())
    return 0


def _cmd_image(args: argparse.Namespace) -> int:
    from ._image import build_image, docker_client, ensure_image

    client = docker_client()
    try:
        if args.build or args.rebuild:
            print(build_image(client=client, rebuild=args.rebuild))
        else:
            print(ensure_image(client=client, pull=not args.no_pull))
    finally:
        client.close()
    return 0


def _cmd_broker(args: argparse.Namespace) -> int:
    broker = _make_broker(args, default_password="admin")
    stop_requested = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, on_term)
    began = time.monotonic()
    broker.start()
    print(f"Artemis {ARTEMIS_VERSION} ({broker.mode}) ready in {time.monotonic() - began:.1f} s")
    print(f"  URL:      {broker.url}")
    print(f"  host:     {broker.host}")
    print(f"  port:     {broker.port}")
    print(f"  user:     {broker.user}")
    print(f"  password: {broker.password}")
    if broker.log_path:
        print(f"  log:      {broker.log_path}")
    if broker.tls:
        certs = broker.certs
        print(f"  TLS URL:  {broker.tls_url}   (server authentication, SASL PLAIN)")
        print(f"  mTLS URL: {broker.mutual_tls_url}   (client certificate, SASL EXTERNAL)")
        print(f"  CA:          {certs.ca}")
        print(f"  client cert: {certs.client_cert}")
        print(f"  client key:  {certs.client_key} "
              f"(password in {certs.client_key_password_file})")
    print("Press Ctrl-C to stop.", flush=True)
    try:
        while not stop_requested:
            if not broker.running:
                print("Artemis stopped by itself:\n" + broker.log_tail(30), file=sys.stderr)
                broker.stop()
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    print("stopping Artemis...", flush=True)
    broker.stop()
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("run: give a command after --", file=sys.stderr)
        return 2
    with _make_broker(args, default_password=None) as broker:
        print(f"Artemis {ARTEMIS_VERSION} ({broker.mode}) ready at "
              f"{broker.host}:{broker.port} in {broker.startup_seconds:.1f} s", flush=True)
        env = dict(os.environ, PROTON_EASY_URL=broker.url, PROTON_EASY_TEST_URL=broker.url)
        try:
            return subprocess.call(command, env=env)
        except KeyboardInterrupt:
            return 130
        finally:
            print("stopping Artemis...", flush=True)


def _cmd_certs(args: argparse.Namespace) -> int:
    return certs_main([args.directory, *args.hosts])


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m proton_easy.testing``; returns the exit status.

    Example::

        main(["fetch"])
    """
    parser = argparse.ArgumentParser(
        prog="python -m proton_easy.testing",
        description=f"Fetch and run ActiveMQ Artemis {ARTEMIS_VERSION} for proton_easy.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_fetch = sub.add_parser("fetch", help="download and unpack Artemis into the cache")
    p_fetch.add_argument(
        "--brokers", default="artemis",
        help="comma-separated: artemis, classic (ActiveMQ Classic), broker-j (Qpid "
        "Broker-J), or all (default: artemis)")
    p_fetch.set_defaults(func=_cmd_fetch)
    p_image = sub.add_parser("image", help="make the Artemis image available to Docker")
    p_image.add_argument("--build", action="store_true",
                         help="use our own build even where the official image is available")
    p_image.add_argument("--rebuild", action="store_true",
                         help="build our own image again even if its inputs did not change")
    p_image.add_argument("--no-pull", action="store_true", help="never pull from a registry")
    p_image.set_defaults(func=_cmd_image)
    p_broker = sub.add_parser("broker", help="run Artemis in the foreground (Ctrl-C stops)")
    _broker_args(p_broker, port=5672, password="admin", quick=False)
    p_broker.set_defaults(func=_cmd_broker)
    p_run = sub.add_parser("run", help="run a command against a fresh broker")
    _broker_args(p_run, port=None, password="a random one", quick=True)
    p_run.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    p_run.set_defaults(func=_cmd_run)
    p_certs = sub.add_parser("certs", help="make test certificates (CA, broker, client)")
    p_certs.add_argument("directory", help="folder to write them to (created if missing)")
    p_certs.add_argument("hosts", nargs="*", metavar="HOST",
                         help="names/IPs of the broker certificate (default: localhost "
                              "127.0.0.1)")
    p_certs.set_defaults(func=_cmd_certs)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except BrokerStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
