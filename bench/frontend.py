"""Front-end benchmark: edge MFCC vs python_speech_features (and librosa if installed), batch and stream.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/frontend.py [--repeats N]

Prints medians and ratios from one run. Real audio: RAVDESS utterances concatenated (../shared/data or
$SER_DATA), else the bundled demo recording.
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edge import features as F  # noqa: E402
from edge.audio import read_audio, read_wav  # noqa: E402


def audio(seconds: float) -> np.ndarray:
    data = Path(os.environ.get("SER_DATA", Path(__file__).resolve().parent.parent.parent / "shared" / "data"))
    files = sorted((data / "ravdess" / "Actor_01").glob("*.flac"))
    parts, total = [], 0
    for f in files:
        x = read_audio(f)
        parts.append(x)
        total += len(x)
        if total >= seconds * 16000:
            break
    if not parts:
        parts = [read_wav(Path(__file__).resolve().parent.parent / "edge/samples/demo.wav")]
    x = np.concatenate(parts)
    while len(x) < seconds * 16000:
        x = np.concatenate((x, x))
    return x[: int(seconds * 16000)].astype(np.float64)


def medians_ms(fns, repeats):
    """Median ms of each function, run in turn within every repetition, so that a busy spell on a shared
    machine slows all of them alike and their ratio holds."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, t in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            t.append((time.perf_counter() - t0) * 1000)
    return [statistics.median(t) for t in times]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=21)
    args = ap.parse_args()
    import python_speech_features as psf

    try:
        import librosa
    except ImportError:
        librosa = None
    threads = os.environ['OPENBLAS_NUM_THREADS']
    print(f"front end, medians of {args.repeats} interleaved runs (ms); OPENBLAS_NUM_THREADS={threads}")
    print(f"{'audio':>6} {'edge':>9} {'psf':>9} {'librosa':>9} {'psf/edge':>9}")
    rows = {}
    for seconds in (1, 3, 60):
        x = audio(seconds)
        reps = args.repeats if seconds < 60 else max(5, args.repeats // 3)
        fns = [lambda x=x: F.mfcc(x), lambda x=x: psf.mfcc(x)]
        if librosa:
            fns.append(lambda x=x: librosa.feature.mfcc(y=x.astype(np.float32), sr=16000, n_mfcc=13, n_fft=512,
                                                        hop_length=160, win_length=400, n_mels=26))
        e, p, lib = (medians_ms(fns, reps) + [float("nan")])[:3]
        rows[seconds] = (e, p, lib)
        print(f"{seconds:>5}s {e:9.2f} {p:9.2f} {lib:9.2f} {p / e:8.2f}x")

    # 60 s analysed with a 2 s window every 0.5 s
    x = audio(60)
    win, hop = 32000, 8000

    def edge_stream():
        s = F.MfccStream(F.FeatureConfig())
        for i in range(0, len(x), 160):  # 10 ms chunks, as a microphone delivers them
            s.push(x[i : i + 160])

    def edge_stream_lazy():
        s = F.MfccStream(F.FeatureConfig())
        for i in range(0, len(x), 160):  # 10 ms chunks; frames computed once per 0.5 s hop
            s.feed(x[i : i + 160])
            if (i + 160) % hop == 0:
                s.compute()

    def psf_windows():
        for start in range(0, len(x) - win + 1, hop):
            psf.mfcc(x[start : start + win])

    reps = max(5, args.repeats // 3)
    es, el, ps = medians_ms([edge_stream, edge_stream_lazy, psf_windows], reps)
    print(f"\n60 s stream, 2 s window every 0.5 s; python_speech_features recomputing each window: {ps:.1f} ms")
    print(f"  edge MfccStream.push per 10 ms chunk (frames at once):   {es:.1f} ms  -> {ps / es:.2f}x cheaper")
    print(f"  edge MfccStream.feed per 10 ms chunk, compute per hop:   {el:.1f} ms  -> {ps / el:.2f}x cheaper")
    print(
        f"batch speed-up over psf: 1 s {rows[1][1] / rows[1][0]:.2f}x, 3 s {rows[3][1] / rows[3][0]:.2f}x, "
        f"60 s {rows[60][1] / rows[60][0]:.2f}x (targets: batch >= 1.5x, stream >= 4x)"
    )


if __name__ == "__main__":
    main()
