"""Smoothing and event settings, decided on the CV streams without re-running the model.

    # once per recording and model: every window's gate decision, P(voice) and class scores
    python tools/stream_tune.py capture --wav runs/stream-fold0/stream.wav \\
        --model runs/v2g-share/fold0-int8.tflite --out-dir runs/tune
    python tools/stream_tune.py capture --wav runs/nonspeech-real/*.wav --model edge/models/default.tflite \\
        --out-dir runs/tune
    # replay settings over the captures: CV-stream score (tools/cv_stream.py's), speech segments reaching
    # the model (tools/nonspeech.py speech's), non-speech event starts per hour
    python tools/stream_tune.py grid --captures runs/tune/stream-fold0-stream.npz runs/tune/nonspeech-*.npz \\
        --max-per-hour 1
    python tools/stream_tune.py score --captures ... --set alpha=0.3 min_duration_s=0.5 voice_threshold=0.6
    # how far any smoothing could go: each segment's windows pooled by a perfect segmenter
    python tools/stream_tune.py bound --captures runs/tune/stream-fold*-stream.npz

The window scores do not depend on [smoothing] (the gate, the voice check and the device's running
statistics never look at events), so one pass of the real pipeline per stream is enough: `capture`
runs it with default settings, and the replay feeds the stored scores through the pipeline's own
`decide` (edge/pipeline.py), Smoother and EventTracker. `capture` checks the replay of the default
settings gives exactly the pipeline's events, so the replay cannot drift from the runtime.
Besides the fraction of segments right it prints event starts per minute of speech (how busy a
dashboard would be) — a setting that only wins by flickering is no win on a real device.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge.config import SmoothingSettings  # noqa: E402
from edge.pipeline import EventTracker, Smoother, decide  # noqa: E402
from tools.cv_stream import event_spans, response_span, score  # noqa: E402
from tools.nonspeech import pipeline, run, segments_reached  # noqa: E402

# the grid `grid` searches; every other setting stays at its default
GRID = {
    "alpha": [0.3, 0.5, 0.7, 1.0],
    "threshold": [0.15, 0.2, 0.25, 0.35, 0.45],
    "hysteresis": [0.0, 0.05, 0.1],
    "min_duration_s": [0.0, 0.5, 1.0],
    "end_after_s": [1.0, 2.0, 3.0],
}


def capture(wav: Path, model: Path, out: Path, config=None) -> dict:
    """Every window of one recording through the real pipeline (default settings): offsets, class scores
    (NaN where gated), P(voice) (NaN where the energy gate stopped it); a CV stream's segments if any."""
    from edge.audio import read_audio

    seg = wav.parent / "segments.json"
    segments = json.loads(seg.read_text())["segments"] if seg.exists() else []
    pipe = pipeline(model, config)
    windows, events = run(pipe, read_audio(wav))
    n = len(pipe.clf.labels)
    scores = np.array([w.scores if w.scores is not None else np.full(n, np.nan) for w in windows], np.float32)
    cap = {"offsets": np.array([w.offset_s for w in windows]), "scores": scores,
           "voice": np.array([np.nan if w.voice is None else w.voice for w in windows]),
           "labels": np.array(pipe.clf.labels), "window_s": pipe.clf.meta.window_s,
           "segments": json.dumps(segments), "model": str(model),
           "end_s": pipe.offset_s}  # where the source ended: finish() closes the last event there
    # the replay must be the runtime: same events at the pipeline's own settings
    got = [(e.type, e.emotion, round(e.offset_s, 3)) for e in replay(cap, pipe.tracker.s)]
    want = [(e.type, e.emotion, round(e.offset_s, 3)) for e in events]
    if got != want:
        first = next(i for i, (g, w) in enumerate(zip(got + [None], want + [None])) if g != w)
        raise SystemExit(f"{wav}: replay differs from the pipeline at event {first}: {got[first:first + 2]} vs "
                         f"{want[first:first + 2]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **cap)
    return {"windows": len(windows), "speech": int(np.isfinite(scores[:, 0]).sum()), "events": len(events)}


def load(path: Path) -> dict:
    d = np.load(path)
    return {"name": path.stem, "offsets": d["offsets"], "scores": d["scores"], "voice": d["voice"],
            "labels": [str(x) for x in d["labels"]],
            "window_s": float(d["window_s"]), "segments": json.loads(str(d["segments"])), "end_s": float(d["end_s"])}


def replay(cap: dict, s: SmoothingSettings, voice_threshold: float = 0.0) -> list:
    """The pipeline's events for these settings; `voice_threshold` above the capture's gates more windows
    (approximate: the device's running statistics would have learnt a little less speech)."""
    labels = [str(x) for x in cap["labels"]]
    smoother, tracker = Smoother(s, len(labels)), EventTracker(labels, s, 0.0)
    events = []
    for offset, p, v in zip(cap["offsets"], cap["scores"], cap["voice"]):
        speech = not np.isnan(p[0]) and not v < voice_threshold
        events += decide(smoother, tracker, p if speech else None, float(offset))[1]
    return events + tracker.finish(float(cap["end_s"]))


def reached(cap: dict, voice_threshold: float) -> list[bool]:
    """Per segment: a window that reached the model covers it (tools/nonspeech.py speech's rule)."""
    ok = np.isfinite(cap["scores"][:, 0]) & ~(cap["voice"] < voice_threshold)
    return segments_reached(cap["segments"], cap["offsets"][ok], cap["window_s"])


def evaluate(caps: list[dict], s: SmoothingSettings, voice_threshold: float = 0.0) -> dict:
    """Streams (captures with segments): fraction right, share reaching the model, starts per minute of
    speech. Non-speech (without): event starts per hour, over all of them."""
    rows, ns_starts, ns_hours, ns_by = [], 0, 0.0, {}
    for cap in caps:
        ev = replay(cap, s, voice_threshold)
        if not cap["segments"]:
            n = sum(e.type == "start" for e in ev)
            ns_starts += n
            ns_hours += cap["end_s"] / 3600
            if n:
                ns_by[cap["name"]] = n
            continue
        events = [{"type": e.type, "id": e.id, "offset_s": e.offset_s, "event_type": e.emotion} for e in ev]
        r = score(cap["segments"], event_spans(events), cap["window_s"])
        speech_min = sum(g["end_s"] - g["start_s"] for g in cap["segments"]) / 60
        r["starts_per_speech_min"] = sum(e["type"] == "start" for e in events) / speech_min
        r["reached"] = float(np.mean(reached(cap, voice_threshold)))
        rows.append(r)
    out = {}
    if rows:
        out = {"right": float(np.mean([r["fraction_right"] for r in rows])),
               "per_stream": [round(r["fraction_right"], 3) for r in rows],
               "with_event": float(np.mean([r["with_event"] for r in rows])),
               "uar_segments": float(np.mean([r["uar_segments"] for r in rows])),
               "reached": float(np.mean([r["reached"] for r in rows])),
               "starts_per_speech_min": float(np.mean([r["starts_per_speech_min"] for r in rows]))}
    if ns_hours:
        out.update(nonspeech_per_hour=ns_starts / ns_hours, nonspeech_events=ns_starts, nonspeech_by=ns_by)
    return out


def bound(cap: dict) -> dict:
    """What no [smoothing] setting can beat on one CV stream. Per segment, the speech windows that saw it
    (those ending in the score's response span): reached = any window reached the model (gate and voice
    check); each window's top-1 alone; and their mean probability's top-1 (a perfect segmenter that
    knows where each utterance starts and ends, then averages). The events are scored on the same
    spans, so `pooled` is the ceiling of the fraction right for this model on this stream."""
    labels, window_s = cap["labels"], cap["window_s"]
    offsets, scores = cap["offsets"], cap["scores"]
    speech = np.isfinite(scores[:, 0])
    reached, pooled, windows = [], [], []
    for s in cap["segments"]:
        lo, hi = response_span(s, window_s)
        seen = speech & (offsets > lo) & (offsets <= hi)
        y = labels.index(s["label"])
        reached.append(bool(seen.any()))
        pooled.append(bool(seen.any()) and int(np.argmax(scores[seen].mean(axis=0))) == y)
        windows += list(np.argmax(scores[seen], axis=1) == y)
    n_reached = max(1, sum(reached))
    return {"reached": float(np.mean(reached)), "window_right": float(np.mean(windows)),
            "pooled_right": float(np.mean(pooled)), "pooled_right_of_reached": sum(pooled) / n_reached}


def parse_set(items) -> tuple[dict, float]:
    """KEY=VALUE of [smoothing], and [gate] voice_threshold."""
    types = {f.name: f.type for f in fields(SmoothingSettings)}
    out, voice = {}, 0.0
    for item in items or []:
        k, v = item.split("=", 1)
        if k == "voice_threshold":
            voice = float(v)
        elif k not in types:
            raise SystemExit(f"unknown key {k!r}; known: voice_threshold, {', '.join(types)}")
        else:
            out[k] = v if k == "method" else int(v) if k == "windows" else float(v)
    return out, voice


def line(settings: dict, r: dict) -> str:
    parts = []
    if "right" in r:
        parts.append(f"right {r['right']:.3f} {r['per_stream']}  with event {r['with_event']:.2f}  "
                     f"segment UAR {r['uar_segments']:.3f}  reached {r['reached']:.4f}  "
                     f"starts/speech-min {r['starts_per_speech_min']:.1f}")
    if "nonspeech_per_hour" in r:
        parts.append(f"non-speech {r['nonspeech_per_hour']:.1f}/h ({r['nonspeech_events']}: {r['nonspeech_by']})")
    return "  ".join(parts) + f"  {settings}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("capture")
    c.add_argument("--wav", nargs="+", required=True, help="recordings (a CV stream's stream.wav has segments)")
    c.add_argument("--model", required=True)
    c.add_argument("--out-dir", required=True, help="one <folder>-<name>.npz per recording")
    c.add_argument("--config")
    b = sub.add_parser("bound")
    b.add_argument("--captures", nargs="+", required=True, help="CV stream captures")
    for name in ("grid", "score"):
        g = sub.add_parser(name)
        g.add_argument("--captures", nargs="+", required=True, help="CV streams and non-speech recordings")
        g.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="[smoothing] settings and voice_threshold")
        g.add_argument("--top", type=int, default=15)
        g.add_argument("--max-per-hour", type=float, default=1e9, help="grid: non-speech event starts allowed")
        g.add_argument("--min-reached", type=float, default=0.95, help="grid: speech segments reaching the model")
    a = p.parse_args(argv)
    if a.cmd == "capture":
        for w in map(Path, a.wav):
            out = Path(a.out_dir) / f"{w.parent.name}-{w.stem}.npz"
            print(out, json.dumps(capture(w, Path(a.model), out, a.config)), flush=True)
        return 0
    caps = [load(Path(f)) for f in a.captures]
    if a.cmd == "bound":
        rows = [bound(cap) for cap in caps if cap["segments"]]
        for cap, r in zip(caps, rows):
            print(cap["name"], json.dumps({k: round(v, 3) for k, v in r.items()}))
        print("mean", json.dumps({k: round(float(np.mean([r[k] for r in rows])), 3) for k in rows[0]}))
        return 0
    base, voice = parse_set(a.set)
    if a.cmd == "score":
        print(line({**base, "voice_threshold": voice}, evaluate(caps, replace(SmoothingSettings(), **base), voice)))
        return 0
    print("default:", line({}, evaluate(caps, SmoothingSettings(), voice)))
    results = []
    for values in itertools.product(*GRID.values()):
        settings = {**dict(zip(GRID, values)), **base}
        r = evaluate(caps, replace(SmoothingSettings(), **settings), voice)
        if r.get("nonspeech_per_hour", 0) <= a.max_per_hour and r.get("reached", 1) >= a.min_reached:
            results.append((r, settings))
    results.sort(key=lambda r: -r[0]["right"])
    for r, settings in results[: a.top]:
        print(line(settings, r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
