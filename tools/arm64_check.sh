#!/bin/sh
# make arm64-check: run the edge side on arm64 (Debian 12 = Pi OS Bookworm base, Python 3.11,
# tflite-runtime 2.14) under qemu user emulation: install the wheel, run the installed ser-edge, and
# compare its int8 outputs with the x86 run.
# Needs root once (apt-get qemu-user-static debootstrap); the root and wheels are cached in .cache/.
# Timings under emulation are not speeds.
set -eu
cd "$(dirname "$0")/.."
CACHE=${ARM64_CACHE:-.cache/arm64}
ROOT=$CACHE/root; WHEELS=$CACHE/wheels; SITE=$CACHE/site
PY=.venv/bin/python
DATA=${SER_DATA:-$(cd .. && pwd)/shared/data}
command -v qemu-aarch64-static >/dev/null && command -v debootstrap >/dev/null || {
  [ "$(id -u)" = 0 ] || { echo "arm64-check: needs qemu-user-static and debootstrap (sudo apt-get install ...)"; exit 2; }
  apt-get install -y -qq qemu-user-static debootstrap >/dev/null; }
if [ ! -x "$ROOT/usr/bin/python3.11" ]; then
  rm -rf "$ROOT"; mkdir -p "$ROOT"
  debootstrap --foreign --arch=arm64 --variant=minbase --include=python3,libpython3.11,python3-pip bookworm "$ROOT" >/dev/null
  for d in "$ROOT"/var/cache/apt/archives/*.deb; do dpkg -x "$d" "$ROOT"; done
fi
if [ ! -d "$SITE/numpy" ] || [ ! -d "$SITE/pytest" ]; then
  rm -rf "$WHEELS" "$SITE"; mkdir -p "$WHEELS" "$SITE"
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
    --platform manylinux_2_17_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux_2_34_aarch64 \
    -d "$WHEELS" "numpy<2" tflite-runtime==2.14.0 paho-mqtt==2.1.0 \
    pytest==8.3.5 pluggy iniconfig packaging hypothesis attrs sortedcontainers
  for w in "$WHEELS"/*.whl; do $PY -m zipfile -e "$w" "$SITE/"; done
fi
# the project as a user gets it: its wheel (make wheel), installed by the arm64 side's own pip
rm -rf "$SITE"/edge "$SITE"/converter "$SITE"/ser_edge-*.dist-info
qemu-aarch64-static -L "$ROOT" "$ROOT/usr/bin/python3.11" -m pip install -q --no-deps --no-index --break-system-packages \
  --target "$SITE" --upgrade dist/ser_edge-*.whl
DEMO=$SITE/edge/samples/demo.wav
echo "arm64: installed $(PYTHONPATH="$SITE" qemu-aarch64-static -L "$ROOT" "$ROOT/usr/bin/python3.11" "$SITE/bin/ser-edge" --version) from the wheel"
PYTHONPATH="$SITE" qemu-aarch64-static -L "$ROOT" "$ROOT/usr/bin/python3.11" "$SITE/bin/ser-edge" analyze --clip "$DEMO"
rm -rf "$CACHE/src"; mkdir -p "$CACHE/src"; cp -r edge tests firmware_config docs pyproject.toml "$CACHE/src/"  # docs: the config reference test reads docs/config.md
OUT=$CACHE/out; mkdir -p "$OUT"
FILES="edge/samples/demo.wav ../shared/data/fixtures/ravdess/Actor_01/03-01-05-02-01-01-01.wav ../shared/data/fixtures/ravdess/Actor_01/03-01-01-01-01-01-01.wav ../shared/data/fixtures/tess/OAF_angry/OAF_back_angry.wav"
$PY -m edge.cli analyze $FILES > "$OUT/x86.jsonl"
cp $FILES "$OUT/" 2>/dev/null || true
ARMFILES=""; for f in $FILES; do ARMFILES="$ARMFILES $OUT/$(basename $f)"; done
PYTHONPATH="$SITE" qemu-aarch64-static -L "$ROOT" "$ROOT/usr/bin/python3.11" -m edge.cli analyze $ARMFILES > "$OUT/arm64.jsonl"
PYTHONPATH="$SITE" qemu-aarch64-static -L "$ROOT" "$ROOT/usr/bin/python3.11" -c \
  "import platform, tflite_runtime, numpy; print('arm64 side:', platform.machine(), platform.python_version(), 'numpy', numpy.__version__)"
# the edge unit tests that need neither TensorFlow nor python_speech_features, on arm64
(cd "$CACHE/src" && PYTHONPATH="$(cd ../site && pwd)" SER_DATA="$DATA" \
  qemu-aarch64-static -L "$(cd ../root && pwd)" "$(cd ../root && pwd)/usr/bin/python3.11" -m pytest -q \
  -p no:cacheprovider tests/test_pipeline.py tests/test_config.py tests/test_features.py \
  --deselect tests/test_config.py::test_check_config_cli_exit_codes 2>&1 | tail -1)  # that one spawns a process: no binfmt here
$PY tools/compare_analyses.py "$OUT/x86.jsonl" "$OUT/arm64.jsonl"
