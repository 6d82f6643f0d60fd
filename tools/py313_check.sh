#!/bin/sh
# Python 3.13 (Pi OS Trixie = Debian 13) with ai-edge-litert, natively on x86 in a Debian 13 chroot:
# builds (and caches) the root, installs this project's wheel (make wheel) and its dependencies, runs
# the installed `ser-edge analyze` on the recording inside the wheel, the edge unit tests that need no
# TensorFlow, and compares the analysis with this machine's run. Needs root (debootstrap, chroot).
set -eu
cd "$(dirname "$0")/.."
R=${PY313_ROOT:-.cache/trixie}
command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
[ -x "$R/usr/bin/python3.13" ] || debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates trixie "$R" >/dev/null
if [ ! -d "$R/whl" ] || [ -z "$(ls "$R/whl")" ]; then
  mkdir -p "$R/whl"
  .venv/bin/pip download -q --only-binary=:all: --python-version 3.13 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d "$R/whl" ai-edge-litert==2.3.0 paho-mqtt pytest hypothesis
fi
rm -f "$R"/whl/ser_edge-*.whl; cp dist/ser_edge-*.whl "$R/whl/"
rm -rf "$R/src"; mkdir -p "$R/src"
cp -r edge tests firmware_config docs pyproject.toml README.md "$R/src/"  # docs: the config reference test reads docs/config.md
mkdir -p "$R/src/data"; cp -r ../shared/data/fixtures "$R/src/data/"
.venv/bin/python -m edge.cli analyze edge/samples/demo.wav > "$R/src/x86.jsonl"
chroot "$R" sh -c 'rm -rf /v && python3 -m venv /v && /v/bin/pip install -q --no-index --find-links /whl ser-edge pytest hypothesis \
  && /v/bin/python -c "import sys, numpy, ai_edge_litert; print(\"python\", sys.version.split()[0], \"numpy\", numpy.__version__)" \
  && cd / && demo=$(/v/bin/python -c "from edge.audio import DEMO_RECORDING as d; print(d)") \
  && echo "installed: $(/v/bin/ser-edge --version) from the wheel; analysing $demo" \
  && /v/bin/ser-edge analyze --clip "$demo" && /v/bin/ser-edge analyze "$demo" > /src/py313.jsonl && cd /src \
  && SER_DATA=/src/data /v/bin/python -m pytest -q -p no:cacheprovider tests/test_features.py tests/test_pipeline.py tests/test_config.py 2>&1 | tail -2'
# tflite-runtime (here) and ai-edge-litert (there) round int8 differently: same top-1, scores within 20 steps
.venv/bin/python tools/compare_analyses.py --name py313-check --steps 20 "$R/src/x86.jsonl" "$R/src/py313.jsonl"
