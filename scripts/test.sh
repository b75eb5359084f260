#!/usr/bin/env bash
# One-command test runner: installs what the tests need on a fresh Debian machine, then lints and tests.
# Usage: bash scripts/test.sh [pytest args...]     e.g. bash scripts/test.sh -m "not slow" -x
# The tests start their own redis-server and brokers on free ports; no system service is used.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
fi

apt_updated=0
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: apt-get not available; cannot install $*" >&2
        return 1
    fi
    if [ "$apt_updated" -eq 0 ]; then
        $SUDO apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@"
}

python3 -m pip install -q -e '.[test]'

if ! command -v redis-server >/dev/null 2>&1; then
    apt_install redis-server
    # the tests start their own servers on free ports; a service apt may have started is not needed
    $SUDO service redis-server stop >/dev/null 2>&1 || true
fi
# tests/ha starts its own redis-sentinel processes (Debian ships the binary in its own package)
command -v redis-sentinel >/dev/null 2>&1 || { apt_install redis-sentinel; $SUDO service redis-sentinel stop >/dev/null 2>&1 || true; }

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ] \
        || ! command -v mosquitto_pub >/dev/null 2>&1 || ! command -v mosquitto_sub >/dev/null 2>&1; then
    # optional: the tests that need mosquitto skip when it is missing
    if apt_install mosquitto mosquitto-clients; then
        $SUDO service mosquitto stop >/dev/null 2>&1 || true
    else
        echo "test.sh: mosquitto could not be installed; tests that need it will be skipped" >&2
    fi
fi

if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    # tests/api/test_docs_page.py loads the admin API's /docs in a real headless browser; skipped without one
    apt_install chromium || echo "test.sh: chromium could not be installed; the browser tests will be skipped" >&2
fi

ruff check .
# types (strict, [tool.mypy] in pyproject.toml) and layer contracts ([tool.importlinter]) fail the run
python3 -m mypy
lint-imports

set +e
python3 -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "test.sh: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
