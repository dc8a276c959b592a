#!/usr/bin/env bash
# Create or update .venv with the test extra (pytest, torch CPU, ...) and run the test suite.
# Extra arguments go to pytest (e.g. bash deploy/test.sh -k cli -x). The exit code is pytest's:
# 5 ("no tests collected") is a failure, not a pass.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

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
