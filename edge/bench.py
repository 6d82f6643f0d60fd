"""ser-edge bench: model latency in the style of TFLite's benchmark_model, then the whole pipeline on
real audio. `--json` prints one document to post from your board (docs/benchmarks.md)."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

from . import __version__
from .audio import DEMO_RECORDING, read_wav
from .config import AdaptationSettings, GateSettings
from .model import DEFAULT_MODEL, Classifier, interpreter_version, load_interpreter_class
from .mqtt import event_payload, state_payload
from .pipeline import Pipeline
from .service import peak_rss_mb, pi_health, rss_mb


def board() -> dict:
    info = {"machine": platform.machine(), "python": platform.python_version(), "runtime": interpreter_version(),
            "ser_edge": __version__}
    try:
        info["board"] = Path("/proc/device-tree/model").read_text().strip("\x00\n")
    except OSError:
        info["board"] = platform.processor() or platform.machine()
    return info


def timed_calls(fn, seconds: float, min_runs: int = 10, max_runs: int = 1000) -> np.ndarray:
    """Milliseconds of each call of fn(): at least min_runs calls, then until `seconds` or max_runs."""
    times = []
    end = time.perf_counter() + seconds
    while len(times) < min_runs or (time.perf_counter() < end and len(times) < max_runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return np.array(times)


def invoke_latency(path: str, threads: int = 1, seconds: float = 3.0) -> dict:
    """Median invoke time of any .tflite file (any inputs, random data; no metadata needed)."""
    Interpreter, name = load_interpreter_class()
    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    rng = np.random.default_rng(0)
    for d in it.get_input_details():
        integer = np.issubdtype(d["dtype"], np.integer)
        x = rng.integers(-20, 20, d["shape"]) if integer else rng.standard_normal(d["shape"])
        it.set_tensor(d["index"], x.astype(d["dtype"]))
    for _ in range(3):
        it.invoke()
    times = timed_calls(it.invoke, seconds, max_runs=200)
    return {"runtime": name, "p50_ms": float(np.median(times)), "runs": len(times)}


def bench_model(path: str, threads: int, seconds: float) -> dict:
    rss0 = rss_mb()
    t0 = time.perf_counter()
    clf = Classifier(path, num_threads=threads)
    init_ms = (time.perf_counter() - t0) * 1000
    x = np.random.default_rng(0).standard_normal((clf.meta.frames, clf.meta.features.num_features))
    t0 = time.perf_counter()
    clf.predict(x)
    first_ms = (time.perf_counter() - t0) * 1000
    warm = timed_calls(lambda: clf.predict(x), 0.0)  # the first ten
    r = timed_calls(lambda: clf.predict(x), min(seconds, 10.0))
    return {"model": str(path), "type": "int8" if clf.is_int8 else "float", "threads": threads,
            "size_bytes": clf.file.size, "init_ms": round(init_ms, 2), "first_ms": round(first_ms, 3),
            "warmup_avg_ms": round(float(np.mean(warm)), 3), "count": len(r), "avg_ms": round(float(r.mean()), 3),
            "min_ms": round(float(r.min()), 3), "max_ms": round(float(r.max()), 3), "std_ms": round(float(r.std()), 3),
            "p50_ms": round(float(np.percentile(r, 50)), 3), "p95_ms": round(float(np.percentile(r, 95)), 3),
            "rss_delta_mb": round(rss_mb() - rss0, 1)}


def bench_pipeline(path: str, threads: int, seconds: float, voice_check: bool = True,
                   voice_groups: bool = False) -> dict:
    """The whole chain on real speech, as fast as possible: front end, gate, inference, smoothing,
    events, and JSON encoding for a null publisher."""
    t_start = time.perf_counter()
    clf = Classifier(path, num_threads=threads)
    pipe = Pipeline(clf, gate=GateSettings(voice_check=voice_check), wall_start=0.0,
                    adaptation=AdaptationSettings(voice_groups=voice_groups))
    speech = read_wav(DEMO_RECORDING)
    reps = int(np.ceil(seconds * 16000 / len(speech)))
    audio = np.tile(speech, reps)[: int(seconds * 16000)]
    chunk = 1600
    first_result = None
    post_ms, sink = [], 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(0, len(audio), chunk):
        out = pipe.push(audio[i:i + chunk])
        t0 = time.perf_counter()
        for e in out.events:
            sink += len(json.dumps(event_payload(e)))
        if out.state_changed:
            sink += len(json.dumps(state_payload(pipe.state)))
        post_ms.append((time.perf_counter() - t0) * 1000)
        if first_result is None and out.windows:
            first_result = time.perf_counter() - t_start
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    audio_s = len(audio) / 16000
    return {"audio_s": audio_s, "windows": pipe.windows_run, "gated": pipe.windows_gated,
            "frontend_ms_per_audio_s": round(pipe.feature_ms_total / audio_s, 3),
            "inference_ms_per_audio_s": round(pipe.inference_ms_total / audio_s, 3),
            "voice_check_ms_per_audio_s": round(pipe.voice_ms_total / audio_s, 3), "voice_check": voice_check,
            "voice_groups": pipe.voice_groups is not None,
            "post_ms_per_audio_s": round(sum(post_ms) / audio_s, 4),
            "rtf": round(wall / audio_s, 5), "cpu_pct_one_core": round(100 * cpu / audio_s, 3),
            "cpu_s_per_hour": round(cpu / audio_s * 3600, 2), "peak_rss_mb": peak_rss_mb(),
            "startup_to_first_result_s": round(first_result or 0.0, 3)}


def main(args) -> int:
    models = args.model or [str(DEFAULT_MODEL)]
    doc = {"board": board(), "health_before": pi_health(), "models": [], "pipeline": None}
    for m in models:
        for t in args.threads:
            doc["models"].append(bench_model(m, t, args.seconds))
    # the whole pipeline for every model, interleaved over `repeats` rounds (a shared machine's load
    # then falls on each alike); the median round of each model is reported
    # (default settings), and the first model once more with voice groups and once without the voice check,
    # to show what each costs
    repeats = 3
    variants = [(m, True, False) for m in models] + [(models[0], True, True), (models[0], False, False)]
    rounds = {v: [] for v in variants}
    for _ in range(repeats):
        for m, check, groups in variants:
            rounds[(m, check, groups)].append(bench_pipeline(m, args.threads[0], args.seconds, voice_check=check,
                                                             voice_groups=groups))
    medians = {}
    for v in variants:
        ordered = sorted(rounds[v], key=lambda r: r["cpu_pct_one_core"])
        medians[v] = {"model": v[0], "rounds": repeats, **ordered[len(ordered) // 2]}
    doc["pipelines"] = [medians[(m, True, False)] for m in models]
    doc["pipeline"] = doc["pipelines"][0]
    doc["pipeline_with_voice_groups"] = medians[(models[0], True, True)]
    doc["pipeline_without_voice_check"] = medians[(models[0], False, False)]
    doc["health_after"] = pi_health()
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    b = doc["board"]
    print(f"board: {b['board']} ({b['machine']}), Python {b['python']}, {b['runtime']}, ser-edge {b['ser_edge']}")
    if doc["health_before"]:
        print(f"health before: {doc['health_before']}")
    for r in doc["models"]:
        print(f"\n{r['model']} ({r['type']}, {r['size_bytes']} bytes), num_threads={r['threads']}")
        print(f"  Initialized session in {r['init_ms']:.2f} ms; first inference {r['first_ms'] * 1000:.0f} us; "
              f"warm-up avg {r['warmup_avg_ms'] * 1000:.0f} us")
        print(f"  count={r['count']} avg={r['avg_ms'] * 1000:.0f} us min={r['min_ms'] * 1000:.0f} us "
              f"max={r['max_ms'] * 1000:.0f} us std={r['std_ms'] * 1000:.0f} us p50={r['p50_ms'] * 1000:.0f} us "
              f"p95={r['p95_ms'] * 1000:.0f} us; memory +{r['rss_delta_mb']} MB RSS")
    ints = [r for r in doc["models"] if r["type"] == "int8"]
    floats = [r for r in doc["models"] if r["type"] == "float"]
    if ints and floats:
        print(f"\nfloat / int8 p50 latency: {floats[0]['p50_ms'] / ints[0]['p50_ms']:.2f}x; "
              f"size {floats[0]['size_bytes'] / ints[0]['size_bytes']:.2f}x")
    for p in doc["pipelines"]:
        print(f"\npipeline with {p['model']} on {p['audio_s']:.0f} s of real speech ({p['windows']} windows run, "
              f"{p['gated']} gated; median of {p['rounds']} interleaved rounds), per second of audio:")
        print(f"  front end {p['frontend_ms_per_audio_s']:.2f} ms, inference {p['inference_ms_per_audio_s']:.2f} ms, "
              f"post-processing+publish {p['post_ms_per_audio_s']:.3f} ms")
        print(f"  {p['cpu_pct_one_core'] / 100:.4f} CPU-s per second of audio; real-time factor {p['rtf']:.4f}; "
              f"CPU {p['cpu_pct_one_core']:.2f} % of one core ({p['cpu_s_per_hour']:.1f} CPU s per hour of audio); "
              f"peak RSS {p['peak_rss_mb']} MB; start-up to first result {p['startup_to_first_result_s']:.3f} s")
    if len(doc["pipelines"]) > 1:
        a, b = doc["pipelines"][0], doc["pipelines"][1]
        print(f"\npipeline CPU, {Path(a['model']).name} / {Path(b['model']).name}: "
              f"{a['cpu_pct_one_core'] / max(b['cpu_pct_one_core'], 1e-9):.2f}x")
    on, off = doc["pipeline_with_voice_groups"], doc["pipeline"]
    if on["voice_groups"]:
        print(f"\nvoice groups ([adaptation] voice_groups): pipeline CPU with / without them: "
              f"{on['cpu_pct_one_core'] / max(off['cpu_pct_one_core'], 1e-9):.2f}x "
              f"({on['cpu_pct_one_core'] / 100:.4f} vs {off['cpu_pct_one_core'] / 100:.4f} CPU-s per second of audio)")
    on, off = doc["pipeline"], doc["pipeline_without_voice_check"]
    print(f"\nvoice check ([gate] voice_check): {on['voice_check_ms_per_audio_s']:.2f} ms per second of speech; "
          f"pipeline CPU with / without it: {on['cpu_pct_one_core'] / max(off['cpu_pct_one_core'], 1e-9):.2f}x "
          f"({on['cpu_pct_one_core'] / 100:.4f} vs {off['cpu_pct_one_core'] / 100:.4f} CPU-s per second of audio)")
    if doc["health_after"]:
        print(f"health after: {doc['health_after']}")
    return 0


if __name__ == "__main__":  # python -m edge.bench MODEL.tflite: its invoke latency as JSON (ser-convert zoo)
    import sys

    print(json.dumps(invoke_latency(sys.argv[1])))
