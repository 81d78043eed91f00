"""Sending reliable messages over TLS (the seed's Example 3.5), subclassing Sender.

The seed sets up the container's SSL domain by hand; here the Sender takes a proton_easy.TLS:
the CA to trust, and a client certificate and key when the broker asks for one. The address
must be amqps://.

    python examples/handlers/tls_send.py -a amqps://admin:admin@localhost:5671/examples \\
        --ca ca.pem --cert client.pem --key client-key.pem --key-password secret
"""

import argparse
import os

from proton.reactor import Container

import proton_easy as pe
from proton_easy.handlers import Sender


class Send(Sender):
    def make_message(self, n):
        return pe.Message({"sequence": n}, id=n)

    def on_all_accepted(self):
        print("all messages confirmed")


parser = argparse.ArgumentParser(description="Send messages to the supplied address.")
parser.add_argument("-a", "--address",
                    default=(os.environ.get("PROTON_EASY_URL") or "amqps://localhost:5671")
                    + "/examples",
                    help="address to which messages are sent (default %(default)s)")
parser.add_argument("-m", "--messages", type=int, default=100,
                    help="number of messages to send (default %(default)s)")
parser.add_argument("--ca", help="CA certificate(s) to trust, PEM (default: the system's)")
parser.add_argument("--cert", help="client certificate, PEM (if the broker asks for one)")
parser.add_argument("--key", help="client private key, PEM")
parser.add_argument("--key-password", help="password of the client private key")
parser.add_argument("--verify", choices=["peer-name", "peer"], default="peer-name",
                    help="peer-name: the certificate must be trusted and name the host; "
                         "peer: trusted is enough (default %(default)s)")
opts = parser.parse_args()

tls = pe.TLS(ca=opts.ca, cert=opts.cert, key=opts.key, password=opts.key_password,
             verify=opts.verify)
try:
    Container(Send(opts.address, opts.messages, tls=tls)).run()
except KeyboardInterrupt:
    pass
