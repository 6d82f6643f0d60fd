#!/bin/sh
# A real Home Assistant against ser-edge (tests/test_homeassistant.py): Home Assistant from PyPI in its own
# venv under Python 3.13 in a Debian 13 root (this machine's Python is older than Home Assistant allows),
# sharing the network with the test mosquitto. Builds and caches the root on first use (~10 min); needs
# root (debootstrap, chroot, mount). HA_VERSION picks the release (default: the newest for Python 3.13).
set -eu
cd "$(dirname "$0")/.."
R=${HA_ROOT:-.cache/ha-trixie}
V=${HA_VERSION:-2026.2.3}
command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
[ -x "$R/usr/bin/python3.13" ] || debootstrap --variant=minbase --include=python3,python3-venv,python3-dev,ca-certificates,build-essential trixie "$R" >/dev/null
cp /etc/resolv.conf "$R/etc/resolv.conf"
# the host's extra certificate authorities (a proxy's), so pip in the root reaches PyPI as the host does
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  cp /usr/local/share/ca-certificates/*.crt "$R/usr/local/share/ca-certificates/"
  chroot "$R" update-ca-certificates >/dev/null 2>&1
fi
if [ ! -x "$R/ha-$V/bin/hass" ]; then
  echo "installing Home Assistant $V into $R/ha-$V"
  chroot "$R" env -u PIP_FIND_LINKS -u PIP_CERT sh -c "python3 -m venv /ha-$V && /ha-$V/bin/pip install -q homeassistant==$V"
  # what the integrations the check loads need at run time (hass would pip-install them on its first start)
  chroot "$R" env -u PIP_FIND_LINKS -u PIP_CERT "/ha-$V/bin/python" - "$V" <<'PY'
import json, subprocess, sys
from importlib.resources import files
reqs = []
for name in ("mqtt", "onboarding", "config", "lovelace", "automation", "http", "api", "frontend"):
    m = json.loads(files("homeassistant.components").joinpath(name, "manifest.json").read_text())
    reqs += m.get("requirements", [])
if reqs:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *reqs], check=True)
PY
  # older releases pin aiodns 3 but not pycares, whose 5.x breaks aiodns 3 at import (hass exits)
  chroot "$R" sh -c "/ha-$V/bin/pip list 2>/dev/null | grep -q '^aiodns  *3\.' && env -u PIP_FIND_LINKS -u PIP_CERT /ha-$V/bin/pip install -q 'pycares<5'" || true
fi
SER_HA_ROOT="$R" SER_HA_VENV="/ha-$V" exec .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_homeassistant.py "$@"
