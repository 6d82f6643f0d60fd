#!/bin/bash
# A crop recipe's speaker-independent CV, one fold per core, each process single-threaded:
#
#   tools/cv_parallel.sh RUN_DIR [ser-convert evaluate arguments...]
#   tools/cv_parallel.sh runs/v2g-share --corpora ravdess tess --steps-per-epoch 200 \
#       --set mixup=0 spec_augment=false stats_jitter=0.05 clean_fraction=0.6 \
#       'corpus_share=[["ravdess",0.85],["tess",0.15]]'
#
# Why: with TensorFlow's and OpenBLAS's default thread pools, two trainings on two cores took 42-73 min
# per fold; with one thread per library and one process pinned per core, 4.5-5.5 min (docs/RESULTS.md
# section 10). FOLDS (default 5) and CORES (default: all) can be set in the environment. Each fold
# logs to RUN_DIR/foldK.log; the run's cv.json / cv.md pool whatever folds have finished.
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir=$1
shift
folds=${FOLDS:-5}
# getconf, not nproc: nproc counts OMP_NUM_THREADS=1 (set by callers for one thread) as one core
cores=${CORES:-$(getconf _NPROCESSORS_ONLN)}
bin=${SER_CONVERT:-.venv/bin/ser-convert}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 TF_NUM_INTEROP_THREADS=1 TF_NUM_INTRAOP_THREADS=1
mkdir -p "$run_dir"
worker() {  # core $1 runs folds $1, $1 + cores, ...
    local core=$1 k
    shift
    for ((k = core; k < folds; k += cores)); do
        echo "core $core: fold $k -> $run_dir/fold$k.log"
        taskset -c "$core" "$bin" evaluate --recipe v2 --run-dir "$run_dir" --only-folds "$k" "$@" \
            > "$run_dir/fold$k.log" 2>&1 || { echo "fold $k failed: see $run_dir/fold$k.log"; return 1; }
    done
}
pids=()
for ((c = 0; c < cores && c < folds; c++)); do
    worker "$c" "$@" &
    pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
[ -f "$run_dir/cv.md" ] && head -20 "$run_dir/cv.md"
exit $status
