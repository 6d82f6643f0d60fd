#!/bin/sh
# Remove ser-edge. Keeps /etc/ser-edge (config, password) and /var/lib/ser-edge (undelivered queue)
# unless --purge is given.
#   sudo ./systemd/uninstall.sh [--purge]      |      ./systemd/uninstall.sh --root DIR [--purge]
set -eu
ROOT=""; PURGE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=$(cd "$2" && pwd); shift 2 ;;
    --purge) PURGE=1; shift ;;
    *) echo "uninstall.sh: unknown option $1 (expected --root DIR, --purge)" >&2; exit 2 ;;
  esac
done
if [ -z "$ROOT" ]; then
  [ "$(id -u)" = 0 ] || { echo "uninstall.sh: run as root (sudo), or use --root DIR" >&2; exit 2; }
  systemctl disable --now ser-edge.service 2>/dev/null || true
fi
rm -f "$ROOT/etc/systemd/system/ser-edge.service"
rm -rf "$ROOT/opt/ser-edge"
if [ "$PURGE" = 1 ]; then
  rm -rf "$ROOT/etc/ser-edge" "$ROOT/var/lib/ser-edge" "$ROOT/var/lib/private/ser-edge"
  [ -z "$ROOT" ] && userdel ser-edge 2>/dev/null || true
  echo "ser-edge uninstall: removed everything, config and queue included"
else
  echo "ser-edge uninstall: removed; kept $ROOT/etc/ser-edge and the queue in $ROOT/var/lib/ser-edge (use --purge)"
fi
[ -z "$ROOT" ] && systemctl daemon-reload || true
