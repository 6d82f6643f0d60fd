"""The same audio through the seed papers' way of deploying a model, and through ser-edge, in one run.

Seed way: librosa.load (resampling to 22.05 kHz, librosa's default), librosa log-mel features per
window, and Keras `model.predict` per window on a float32 Keras model of the same architecture as ours
(dscnn). ser-edge way: the stdlib WAV reader, the numpy streaming front end, the gate, the int8 TFLite
model, smoothing and events. Each runs in its own fresh process (cold start included).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/compare_seed_pipeline.py [--minutes 5]

Prints CPU seconds per hour of audio, peak RSS, and cold start to first result, with ratios.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def vm_hwm_mb() -> float:
    """Peak RSS of this process image (VmHWM). getrusage's ru_maxrss would include the parent's peak,
    which Linux carries across fork and exec."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_seed(wav: str, t_spawn: float) -> dict:
    import resource

    import numpy as np

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import librosa

    sys.path.insert(0, str(ROOT))
    from converter.architectures import build

    y, sr = librosa.load(wav)  # 22.05 kHz, as the papers' notebooks do
    model = build("dscnn", 198, 40, 8)
    win, hop = int(2.0 * sr), int(0.5 * sr)
    first = None
    n = 0
    for start in range(0, len(y) - win + 1, hop):
        m = librosa.feature.melspectrogram(y=y[start:start + win], sr=sr, n_fft=551, hop_length=int(sr * 0.01),
                                           win_length=551, n_mels=40)
        x = np.log(m + 1e-10).T[:198]
        x = x - x.mean(axis=0)
        model.predict(x[None, ..., None], verbose=0)
        n += 1
        if first is None:
            first = time.time() - t_spawn
            cpu_first, audio_first = time.process_time(), (start + win) / sr
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"steady_cpu_s": time.process_time() - cpu_first, "steady_audio_s": len(y) / sr - audio_first,
            "audio_s": len(y) / sr, "windows": n, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mb": vm_hwm_mb(),
            "first_result_s": first}


def child_edge(wav: str, t_spawn: float) -> dict:
    import resource

    sys.path.insert(0, str(ROOT))
    from edge.audio import iter_wav
    from edge.model import Classifier
    from edge.mqtt import event_payload
    from edge.pipeline import Pipeline

    pipe = Pipeline(Classifier(), wall_start=0.0)
    first = None
    n, samples = 0, 0
    for block in iter_wav(wav, chunk_seconds=0.1):
        out = pipe.push(block)
        samples += len(block)
        for e in out.events:
            json.dumps(event_payload(e))
        n += len(out.windows)
        if first is None and out.windows:
            first = time.time() - t_spawn
            cpu_first, audio_first = time.process_time(), samples / 16000
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"steady_cpu_s": time.process_time() - cpu_first, "steady_audio_s": samples / 16000 - audio_first,
            "audio_s": samples / 16000, "windows": n, "windows_run": pipe.windows_run,
            "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mb": vm_hwm_mb(), "first_result_s": first}


def run_child(mode: str, wav: str) -> dict:
    t = time.time()
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run(
        [sys.executable, __file__, "--child", mode, wav, str(t)], capture_output=True, text=True, env=env
    )
    if r.returncode != 0:
        raise SystemExit(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--child", nargs=3)
    a = ap.parse_args()
    if a.child:
        mode, wav, t = a.child
        print(json.dumps((child_seed if mode == "seed" else child_edge)(wav, float(t))))
        return
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from edge.audio import read_wav, write_wav

    speech = read_wav(ROOT / "edge/samples/demo.wav")
    x = np.tile(speech, int(np.ceil(a.minutes * 60 * 16000 / len(speech))))[: int(a.minutes * 60 * 16000)]
    with tempfile.TemporaryDirectory() as d:
        wav = str(Path(d) / "audio.wav")
        write_wav(wav, x)
        seed = run_child("seed", wav)
        edge = run_child("edge", wav)
    per_hour = lambda r: r["cpu_s"] / r["audio_s"] * 3600
    print(f"{a.minutes:g} min of real speech (the demo recording repeated); each pipeline in a fresh process")
    print(f"{'':28} {'seed (librosa+Keras)':>22} {'ser-edge':>10} {'ratio':>8}")
    steady = lambda r: r["steady_cpu_s"] / r["steady_audio_s"] * 3600
    print(
        f"{'CPU s per hour, with start-up':28} {per_hour(seed):22.1f} {per_hour(edge):10.1f} "
        f"{per_hour(seed) / per_hour(edge):7.1f}x"
    )
    print(
        f"{'CPU s per hour, steady state':28} {steady(seed):22.1f} {steady(edge):10.1f} "
        f"{steady(seed) / steady(edge):7.1f}x"
    )
    print(
        f"{'peak RSS (MB)':28} {seed['peak_rss_mb']:22.1f} {edge['peak_rss_mb']:10.1f} "
        f"{seed['peak_rss_mb'] / edge['peak_rss_mb']:7.1f}x"
    )
    print(
        f"{'cold start to first result (s)':28} {seed['first_result_s']:22.2f} {edge['first_result_s']:10.2f} "
        f"{seed['first_result_s'] / edge['first_result_s']:7.1f}x"
    )
    print(
        f"windows: seed ran the model on all {seed['windows']}; ser-edge on {edge['windows_run']} of {edge['windows']} "
        f"(the rest were silence, gated out)"
    )


if __name__ == "__main__":
    main()
