#!/bin/bash
# Entry point of proton_easy's Artemis image (same contract as the official image's):
# on the first start, create the broker instance in the working directory from
# ARTEMIS_USER, ARTEMIS_PASSWORD, ANONYMOUS_LOGIN and EXTRA_ARGS, then copy every file of
# ./etc-override over ./etc; on later starts keep the instance (and its data) as it is.
# Finally run ./bin/artemis with the container's arguments ("run" by default).
# Credentials are never echoed.
set -euo pipefail

if [ ! -f ./etc/broker.xml ]; then
    if [ "${ANONYMOUS_LOGIN,,}" = "true" ]; then
        login=--allow-anonymous
    else
        login=--require-login
    fi
    # EXTRA_ARGS is a list of options: split on white space on purpose
    # shellcheck disable=SC2086
    /opt/activemq-artemis/bin/artemis create --silent "$login" \
        --user "$ARTEMIS_USER" --password "$ARTEMIS_PASSWORD" ${EXTRA_ARGS:-} .
    if [ -d ./etc-override ]; then
        for file in ./etc-override/*; do
            [ -f "$file" ] || continue
            echo "etc-override: $(basename "$file") -> etc/"
            cp "$file" ./etc/
        done
    fi
else
    echo "broker instance found in $(pwd): not creating it again"
fi

exec ./bin/artemis "$@"
