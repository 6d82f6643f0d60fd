#!/bin/sh
# Install ser-edge as a systemd service. Idempotent: run it again to upgrade; an existing
# /etc/ser-edge/ser-edge.toml is kept.
#   sudo ./systemd/install.sh                  install on this machine and start the service
#   ./systemd/install.sh --root DIR [--skip-venv]   install into a directory tree (tests, images)
#   ./systemd/install.sh --wheel FILE.whl       install that wheel (default: dist/, else one built here)
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=""
SKIP_VENV=0
WHEEL=""
PYTHON=${PYTHON:-python3}
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=$(mkdir -p "$2" && cd "$2" && pwd); shift 2 ;;
    --skip-venv) SKIP_VENV=1; shift ;;
    --wheel) WHEEL=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (expected --root DIR, --skip-venv, --wheel FILE)" >&2; exit 2 ;;
  esac
done
if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (sudo), or use --root DIR" >&2; exit 2
fi
OPT="$ROOT/opt/ser-edge"; ETC="$ROOT/etc/ser-edge"; UNIT="$ROOT/etc/systemd/system/ser-edge.service"

say() { echo "ser-edge install: $*"; }

# 1. the service user (audio and gpio groups where they exist)
if [ -z "$ROOT" ]; then
  if ! id ser-edge >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ser-edge
    say "created user ser-edge"
  fi
  for g in audio gpio; do getent group $g >/dev/null && usermod -a -G $g ser-edge; done
fi

# 2. the program, from its wheel (the default model and the demo recording are inside): a venv under
#    /opt/ser-edge; pip picks tflite-runtime (Python <= 3.11) or ai-edge-litert (3.12+) from the
#    package's environment markers. Never TensorFlow: the train extra is not installed.
mkdir -p "$OPT"
if [ "$SKIP_VENV" = 0 ]; then
  [ -x "$OPT/venv/bin/python" ] || "$PYTHON" -m venv "$OPT/venv"
  "$OPT/venv/bin/pip" install -q --upgrade pip
  if [ -z "$WHEEL" ]; then
    WHEEL=$(ls -t "$SRC"/dist/ser_edge-*.whl 2>/dev/null | head -1 || true)
  fi
  if [ -z "$WHEEL" ]; then
    "$OPT/venv/bin/pip" wheel -q --no-deps -w "$OPT/wheels" "$SRC"
    WHEEL=$(ls -t "$OPT"/wheels/ser_edge-*.whl | head -1)
  fi
  # pyaudio builds against portaudio19-dev; without it the service still runs on cmd:/file: sources
  "$OPT/venv/bin/pip" install -q --force-reinstall --no-deps "$WHEEL"
  "$OPT/venv/bin/pip" install -q "$WHEEL[audio,gpio]" || "$OPT/venv/bin/pip" install -q "$WHEEL"
  say "installed $("$OPT/venv/bin/ser-edge" --version) from $(basename "$WHEEL") in $OPT/venv"
fi
cp "$SRC/README.md" "$OPT/README.md"

# 3. the config (kept if present) and the unit
mkdir -p "$ETC" "$(dirname "$UNIT")"
if [ ! -f "$ETC/ser-edge.toml" ]; then
  sed "s|^id = \"\"|id = \"$(hostname -s 2>/dev/null || echo pi)\"|" "$SRC/firmware_config/ser-edge.toml" > "$ETC/ser-edge.toml"
  say "wrote $ETC/ser-edge.toml (edit [mqtt] broker, then: sudo systemctl restart ser-edge)"
else
  say "kept existing $ETC/ser-edge.toml"
fi
[ -f "$ETC/mqtt_password" ] || { : > "$ETC/mqtt_password"; }
chmod 0640 "$ETC/ser-edge.toml"; chmod 0600 "$ETC/mqtt_password"
if [ -z "$ROOT" ]; then chgrp ser-edge "$ETC/ser-edge.toml"; fi
install -m 0644 "$SRC/systemd/ser-edge.service" "$UNIT"

# 4. enable and start
if [ -z "$ROOT" ]; then
  systemctl daemon-reload
  systemctl enable --now ser-edge.service
  say "running: systemctl status ser-edge; logs: journalctl -u ser-edge -f"
else
  say "installed into $ROOT (not enabled)"
fi
