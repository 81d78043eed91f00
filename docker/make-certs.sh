#!/bin/sh
# Make the test certificates docker-compose.yml uses, in ./certs (or DIR):
#   ./make-certs.sh [DIR [HOST ...]]        default hosts: localhost 127.0.0.1
# ca.pem (trust this), broker.p12 + broker.env (keystore and its password), client-cert.pem,
# client-key.pem + client-key-password.txt. Passwords are random and never printed.
#
# One implementation: proton_easy/testing/_certs.py (standard-library Python and the openssl
# command; proton_easy itself need not be installed), the same code ArtemisBroker(tls=True)
# and `python -m proton_easy.testing certs` use.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/certs"}
[ $# -gt 0 ] && shift
"${PYTHON:-python3}" "$here/../proton_easy/testing/_certs.py" "$out" "$@"
# The container runs Artemis as uid 1001: it must be able to read the keystore, which is
# protected by its random password (broker.env stays readable by you only).
chmod 644 "$out/broker.p12"
