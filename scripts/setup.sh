#!/usr/bin/env bash
# One set-up path for the README, CI and the tests: system packages, then the virtualenv with weft in it.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(openvswitch-switch openvswitch-common python3-openvswitch iproute2 iputils-ping iperf3
          ethtool tcpdump busybox python3 python3-venv python3-dev procps
          chromium)   # chromium: the dashboard's test drives it headless

if [ "$(id -u)" != 0 ]; then
    echo "setup: run as root (it installs Debian packages and the lab needs root)" >&2
    exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=/usr/bin/python3
stamp=.venv/.weft-installed
want="$(sha256sum setup.cfg pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup: installing weft into .venv"
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
    echo "$want" > "$stamp"
fi
# The `ovs` library from PyPI builds its C JSON parser only against libopenvswitch's headers,
# which Debian does not ship, and falls back to a pure-Python lexer that is a fifth of every
# northbound write and of every southbound update weftd parses. Debian's python3-openvswitch
# has the parser built for this Python: use it when the venv's copy has none, and only if it
# parses correctly (otherwise the pure-Python parser stays).
if ! .venv/bin/python -c "import ovs._json" 2>/dev/null; then
    so=$(ls /usr/lib/python3/dist-packages/ovs/_json.cpython-*.so 2>/dev/null | head -1 || true)
    ovsdir=$(.venv/bin/python -c "import os, ovs; print(os.path.dirname(ovs.__file__))")
    if [ -n "$so" ]; then
        ln -sf "$so" "$ovsdir/"
        if ! .venv/bin/python -c 'import ovs.json as j; assert j.PARSER == j.PARSER_C; assert j.from_string("{\"a\": [1, \"x\"]}") == {"a": [1, "x"]}' 2>/dev/null; then
            rm -f "$ovsdir/$(basename "$so")"
            echo "setup: Debian's C JSON parser does not fit this ovs library; keeping the pure-Python one"
        fi
    fi
fi
# An editable install compiles nothing ahead (a wheel install does), and with
# PYTHONDONTWRITEBYTECODE set nothing is ever cached: every `weft` command would compile its
# modules again (about half of a CLI call's CPU). Compile them once here, as pip would.
.venv/bin/python -m compileall -q -j 0 controller ovsdb flows topology collectors lab decisions >/dev/null || true
echo "setup: ready (.venv/bin/weft)"
