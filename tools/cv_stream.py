"""The CV stream: what a device hears, built from one fold's held-out speakers, and its score.

    python tools/cv_stream.py make  --fold 0 --out runs/stream-fold0      # WAV + segments.json
    python tools/cv_stream.py score --stream runs/stream-fold0 --model runs/v2/fold0-int8.tflite

`make` puts the fold's held-out RAVDESS utterances in a random order with 1-4 s of low noise between
them (one long recording, like a room with a few people talking now and then); `segments.json` holds
each utterance's span and label. `score` runs the real service on it
(`ser-edge run --source file:... --speed 0 --no-mqtt --print-events`) and counts the speech segments
whose covering event has the right label: the event that overlaps the segment's response span most,
where the response span is the segment shifted by the time windows take to see it (a window ends up to
one window length after the speech it covers). A segment with no event counts as wrong.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from converter.corpora import load_corpora  # noqa: E402
from converter.dataset import speaker_folds  # noqa: E402
from edge.audio import read_audio, write_wav  # noqa: E402

RATE = 16000


def make(fold: int, out: Path, data_dir=None, seed: int = 0, k: int = 5, noise_dbfs: float = -60.0) -> dict:
    utts = [u for u in load_corpora(data_dir, ("ravdess",))]
    speakers = np.array([u.speaker for u in utts])
    genders = np.array([u.gender for u in utts])
    held_out = speaker_folds(speakers, genders, k, seed)[fold]
    mine = [u for u in utts if u.speaker in held_out]
    rng = np.random.default_rng(seed + 1000 * fold)
    order = rng.permutation(len(mine))
    noise_rms = 10 ** (noise_dbfs / 20)
    parts, segments, t = [], [], 0
    for i in order:
        gap = rng.uniform(1.0, 4.0)
        parts.append(rng.standard_normal(int(gap * RATE)) * noise_rms)
        t += len(parts[-1])
        x = read_audio(mine[i].path)
        x = x + rng.standard_normal(len(x)) * noise_rms
        segments.append({"start_s": t / RATE, "end_s": (t + len(x)) / RATE, "label": mine[i].label,
                         "speaker": mine[i].speaker, "path": Path(mine[i].path).name})
        parts.append(x)
        t += len(x)
    parts.append(rng.standard_normal(3 * RATE) * noise_rms)
    audio = np.concatenate(parts).astype(np.float32)
    out.mkdir(parents=True, exist_ok=True)
    write_wav(out / "stream.wav", audio)
    doc = {"fold": fold, "held_out": held_out, "seed": seed, "noise_dbfs": noise_dbfs,
           "seconds": len(audio) / RATE, "segments": segments}
    (out / "segments.json").write_text(json.dumps(doc, indent=1))
    return doc


def run_service(stream: Path, model: Path, state_dir: Path, config: str | None = None) -> list[dict]:
    cmd = [str(ROOT / ".venv" / "bin" / "ser-edge"), "run", "--source", f"file:{stream / 'stream.wav'}",
           "--speed", "0", "--no-mqtt", "--print-events", "--model", str(model), "--state-dir", str(state_dir)]
    conf = state_dir / "stream.toml"  # the old recipe's fold models exist only as float
    conf.write_text("[model]\nrequire_int8 = false\n" + (Path(config).read_text() if config else ""))
    cmd += ["--config", str(conf)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise SystemExit(f"ser-edge failed ({r.returncode}): {r.stderr[-2000:]}")
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def event_spans(events: list[dict]) -> list[tuple[float, float, str]]:
    """(start offset, end offset, emotion) of each event, from its start and end messages."""
    starts, spans = {}, []
    for e in events:
        if e["type"] == "start":
            starts[e["id"]] = e["offset_s"]
        elif e["type"] == "end" and e["id"] in starts:
            spans.append((starts.pop(e["id"]), e["offset_s"], e["event_type"]))
    return spans


def response_span(segment: dict, window_s: float) -> tuple[float, float]:
    """Where the windows that saw a segment end: from 0.5 s into it to half a window after it."""
    return segment["start_s"] + 0.5, segment["end_s"] + window_s / 2


def score(segments: list[dict], spans, window_s: float) -> dict:
    right = covered = 0
    per_label: dict[str, list[int]] = {}
    for s in segments:
        lo, hi = response_span(s, window_s)
        best, best_overlap = None, 0.0
        for a, b, emotion in spans:
            overlap = min(b, hi) - max(a, lo)
            if overlap > best_overlap:
                best, best_overlap = emotion, overlap
        covered += best is not None
        ok = best == s["label"]
        right += ok
        per_label.setdefault(s["label"], [0, 0])
        per_label[s["label"]][0] += ok
        per_label[s["label"]][1] += 1
    n = len(segments)
    return {"segments": n, "right": right, "fraction_right": right / n, "with_event": covered / n,
            "per_label": {k: round(v[0] / v[1], 3) for k, v in sorted(per_label.items())},
            "uar_segments": float(np.mean([v[0] / v[1] for v in per_label.values()]))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--fold", type=int, required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--data")
    s = sub.add_parser("score")
    s.add_argument("--stream", required=True)
    s.add_argument("--model", required=True)
    s.add_argument("--config", help="TOML with other settings (say [smoothing]) to score them")
    s.add_argument("--out", help="also write the result JSON here")
    a = p.parse_args(argv)
    if a.cmd == "make":
        doc = make(a.fold, Path(a.out), a.data)
        print(f"{a.out}/stream.wav: {doc['seconds']:.0f} s, {len(doc['segments'])} segments, "
              f"speakers {doc['held_out']}")
        return 0
    stream = Path(a.stream)
    doc = json.loads((stream / "segments.json").read_text())
    from edge.model import Classifier

    window_s = Classifier(a.model).meta.window_s
    state = stream / ("state-" + Path(a.model).stem)
    state.mkdir(exist_ok=True)
    for f in state.glob("*"):
        f.unlink() if f.is_file() else None  # a fresh device every time
    events = run_service(stream, Path(a.model), state, a.config)
    result = {
        "model": a.model,
        "fold": doc["fold"],
        "config": Path(a.config).read_text() if a.config else "",
        **score(doc["segments"], event_spans(events), window_s),
        "events": len(event_spans(events)),
    }
    print(json.dumps(result))
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
