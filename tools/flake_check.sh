#!/bin/sh
# Run the tests that depend on timing (PulseAudio, mosquitto restarts, proxies, kill -9) many times in a
# row and count failures; with --hogs, under two busy loops that keep both cores at 100 %.
#   tools/flake_check.sh [--runs N] [--hogs] [pytest selection...]
# Prints one line per run and a summary; exits 1 if any run failed. Logs in runs/flake/.
set -u
cd "$(dirname "$0")/.."
RUNS=20; HOGS=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --hogs) HOGS=1; shift ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || set -- tests/test_microphone.py tests/test_service_mqtt.py \
  tests/test_faults.py::test_queue_directory_full_is_counted_and_nothing_is_lost \
  tests/test_faults.py::test_read_only_queue_directory_falls_back_to_memory \
  tests/test_faults.py::test_capture_command_that_exits_is_restarted_with_backoff
mkdir -p runs/flake
HOG_PIDS=""
if [ "$HOGS" = 1 ]; then
  for _ in 1 2; do sh -c 'while :; do :; done' & HOG_PIDS="$HOG_PIDS $!"; done
fi
stop_hogs() { [ -n "$HOG_PIDS" ] && kill $HOG_PIDS 2>/dev/null; HOG_PIDS=""; }
trap stop_hogs EXIT
trap 'stop_hogs; exit 130' INT TERM
failed=0
i=1
while [ "$i" -le "$RUNS" ]; do
  log=runs/flake/run-$i$( [ "$HOGS" = 1 ] && echo -hogs ).log
  start=$(date +%s)
  if .venv/bin/python -m pytest -q -p no:cacheprovider "$@" > "$log" 2>&1; then r=passed; else r=FAILED; failed=$((failed + 1)); fi
  echo "run $i/$RUNS: $r in $(( $(date +%s) - start )) s: $(tail -1 "$log")"
  i=$((i + 1))
done
echo "flake check: $((RUNS - failed))/$RUNS runs passed$( [ "$HOGS" = 1 ] && echo ' under two CPU hogs' )"
[ "$failed" = 0 ]
