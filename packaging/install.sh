#!/usr/bin/env bash
# Install weft on this machine as a service: Debian packages, a virtualenv with weft, the
# `weft` account, /etc/weft with a sample weftd.toml, and the systemd units.
#   sudo bash packaging/install.sh [WHEEL_OR_SOURCE_DIR] [--prefix /opt/weft] [--no-units]
# Then edit /etc/weft/weftd.toml and: systemctl enable --now weftd  (and weft-nb if used)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$(dirname "$here")"
prefix=/opt/weft
units=yes
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="$2"; shift 2 ;;
        --no-units) units=no; shift ;;
        -*) echo "install: unknown option $1" >&2; exit 2 ;;
        *) src="$1"; shift ;;
    esac
done
if [ "$(id -u)" != 0 ]; then
    echo "install: run as root (it installs packages, a system account and units)" >&2
    exit 1
fi

missing=()
for pkg in $(grep -v '^#' "$here/debian-packages.txt"); do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ -x "$prefix/bin/python" ] || python3 -m venv "$prefix"
"$prefix/bin/pip" install -q --disable-pip-version-check "$src"
ln -sf "$prefix/bin/weft" /usr/local/bin/weft       # on PATH, for operators and shell completion
ln -sf "$prefix/bin/weftd" /usr/local/bin/weftd
echo "install: weft installed in $prefix (weft and weftd linked into /usr/local/bin)"

if command -v systemd-sysusers >/dev/null; then
    systemd-sysusers "$here/weft.sysusers"
elif ! getent passwd weft >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/weftd --shell /usr/sbin/nologin weft
fi
install -d -m 0750 -g weft /etc/weft
[ -e /etc/weft/weftd.toml ] || install -m 0640 -g weft "$here/weftd.toml" /etc/weft/weftd.toml

if [ -d /etc/bash_completion.d ]; then
    "$prefix/bin/weft" completion bash > /etc/bash_completion.d/weft
fi
if [ "$units" = yes ]; then
    for unit in weftd.service weft-nb.service; do
        sed -e "s#@WEFTD@#$prefix/bin/weftd#g" -e "s#@PYTHON@#$prefix/bin/python#g" \
            "$here/$unit" > "/etc/systemd/system/$unit"
    done
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
    fi
    echo "install: units weftd.service and weft-nb.service in /etc/systemd/system"
fi
echo "install: next, edit /etc/weft/weftd.toml, check it with" \
     "\`$prefix/bin/weftd --config /etc/weft/weftd.toml --check-config\`, then \`systemctl enable --now weftd\`"
