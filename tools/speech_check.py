"""Train and test the voice check (edge/voicing.py): is a loud window a voice, or music, a tap, a dog?

    # real recordings nobody generated, from Debian packages (apt install openttd-opensfx oxygen-sounds
    # gnome-audio sound-icons wesnoth-1.16-music): the held-out test family
    python tools/speech_check.py real --out runs/nonspeech-real
    # the nine numbers of every window the energy gate passes (speech: CV streams; non-speech: dirs)
    python tools/speech_check.py features --model M --out runs/check/feats.npz \\
        --streams runs/stream-fold{0,1,2,3,4} --nonspeech runs/nonspeech runs/nonspeech-seed1 runs/nonspeech-real
    # fit on streams 0-2 and generator seed 1; write the weights the device loads
    python tools/speech_check.py train --features runs/check/feats.npz --out edge/models/speech-check.json

Then measure with the service's own pipeline (tools/nonspeech.py score / speech) on what training did not
see: streams 3-4 (other actors), generator seed 0, and the real recordings (another family altogether).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nonspeech import ROOM_FLOOR_DBFS, at_level, coloured_noise, run  # noqa: E402

from edge.audio import read_audio, write_wav  # noqa: E402
from edge.voicing import NAMES  # noqa: E402

RATE = 16000


# ---------------------------------------------------------------- a test family nobody generated
def _opensfx(path: Path) -> list[np.ndarray]:
    """The WAVs inside OpenTTD's opensfx.cat (a catalogue of RIFF files)."""
    import io

    import soundfile

    data, out, i = path.read_bytes(), [], 0
    while (i := data.find(b"RIFF", i)) >= 0:
        size = int.from_bytes(data[i + 4 : i + 8], "little") + 8
        try:
            x, rate = soundfile.read(io.BytesIO(data[i : i + size]), dtype="float32", always_2d=True)
            from edge.audio import resample

            out.append(resample(x.mean(axis=1), rate, RATE))
        except Exception:  # noqa: BLE001 - a damaged entry is skipped
            pass
        i += 4
    return [x for x in out if x.size >= 3200]


def _string(rng, sounds: list[np.ndarray], seconds: float, level: float) -> np.ndarray:
    """Sounds one after another with 0.5-4 s pauses, each at `level` dBFS, until `seconds`."""
    parts, total = [], 0
    while total < seconds * RATE:
        x = at_level(sounds[rng.integers(len(sounds))], level + rng.uniform(-6, 6))
        gap = np.zeros(int(rng.uniform(0.5, 4.0) * RATE), np.float32)
        parts += [x, gap]
        total += x.size + gap.size
    return np.concatenate(parts)[: int(seconds * RATE)]


def make_real(out: Path, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    made = {}
    music = sorted(Path("/usr/share/games/wesnoth/1.16/data/core/music").glob("*.ogg"))
    for f in music:  # orchestral film-style music, some with choir: 45 s of each, at a radio's level
        x = read_audio(f)
        start = int(min(max(0, x.size - 45 * RATE), 20 * RATE))
        made[f"wesnoth-{f.stem}"] = at_level(x[start : start + 45 * RATE], rng.uniform(-35, -22))
    sfx = _opensfx(Path("/usr/share/games/openttd/baseset/opensfx/opensfx.cat"))
    if sfx:  # engines, horns, machinery, ambience, animals of a transport game
        for k in range(6):
            made[f"opensfx-{k}"] = _string(rng, sfx, 120, -30)
    desktop = [read_audio(f) for f in sorted(Path("/usr/share/sounds").rglob("*")) if f.suffix in (".ogg", ".wav")
               and "freedesktop" not in str(f)]  # the generator already uses the freedesktop theme
    desktop = [x for x in desktop if x.size >= 3200]  # at_level needs a few 100 ms blocks
    if desktop:
        for k in range(3):
            made[f"desktop-{k}"] = _string(rng, desktop, 120, -30)
    for name, x in made.items():
        floor = coloured_noise(rng, x.size, "pink") * 10 ** (ROOM_FLOOR_DBFS / 20)
        write_wav(out / f"{name}.wav", np.clip(x + floor, -1, 1).astype(np.float32))
    minutes = sum(x.size for x in made.values()) / RATE / 60
    print(f"{len(made)} files, {minutes:.1f} min in {out}")
    return {"files": len(made), "minutes": minutes}


# ---------------------------------------------------------------- features of gated windows
def measuring_pipeline(model):
    """The service's pipeline with the voice check measuring but not deciding."""
    from edge.config import defaults
    from edge.service import load_model, make_pipeline

    changes = {"gate": {"voice_check": False}, **({"model": {"path": str(model)}} if model else {})}
    cfg = defaults().with_changes(changes)
    pipe = make_pipeline(load_model(cfg), cfg, wall_start=0.0)
    pipe.measure_voice = True
    return pipe


def features(model, streams: list[Path], nonspeech: list[Path]) -> dict:
    X, y, group, source = [], [], [], []
    for d in streams:
        segs = json.loads((d / "segments.json").read_text())["segments"]
        starts = np.array([s["start_s"] for s in segs])
        ends = np.array([s["end_s"] for s in segs])
        pipe = measuring_pipeline(model)
        w_s = pipe.clf.meta.window_s
        windows, _ = run(pipe, read_audio(d / "stream.wav"))
        for w in windows:
            if w.voice_features is None:
                continue
            overlap = np.clip(np.minimum(ends, w.offset_s) - np.maximum(starts, w.offset_s - w_s), 0, None)
            if overlap.max() >= 0.5:
                X.append(w.voice_features), y.append(1), group.append(f"{d.name}:{int(np.argmax(overlap))}")
            elif overlap.max() == 0:  # the noise between utterances
                X.append(w.voice_features), y.append(0), group.append(f"{d.name}:pause")
            else:
                continue
            source.append(d.name)
    for d in nonspeech:
        for f in sorted(d.glob("*.wav")):
            windows, _ = run(measuring_pipeline(model), read_audio(f))
            for w in windows:
                if w.voice_features is not None:
                    X.append(w.voice_features), y.append(0), group.append(f"{d.name}:{f.stem}"), source.append(d.name)
    return {"X": np.array(X), "y": np.array(y), "group": np.array(group), "source": np.array(source)}


# ---------------------------------------------------------------- the model
def expand(z: np.ndarray) -> np.ndarray:
    return np.hstack([z, z * z, np.ones((len(z), 1))])


def fit_logistic(A: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 4000) -> np.ndarray:
    """Class-balanced logistic regression by gradient descent on a design matrix A (bias column included)."""
    w = np.zeros(A.shape[1])
    weight = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    for _ in range(steps):
        p = 1 / (1 + np.exp(-np.clip(A @ w, -50, 50)))
        w -= 0.5 * (A.T @ ((p - y) * weight) / len(y) + l2 * w)
    return w


def fit(X: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 4000) -> tuple:
    """The voice check: logistic regression on standardised numbers and their squares."""
    mean, std = X.mean(0), X.std(0) + 1e-9
    return mean, std, fit_logistic(expand((X - mean) / std), y, l2, steps)


def probability(X, mean, std, w) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(expand((X - mean) / std) @ w, -50, 50)))


def segments_reached(p, y, group, threshold) -> float:
    reached: dict = {}
    for pi, yi, g in zip(p, y, group):
        if yi == 1:
            reached[g] = reached.get(g, False) or pi >= threshold
    return float(np.mean(list(reached.values()))) if reached else float("nan")


def train(feats: Path, out: Path, train_streams: list[str], train_nonspeech: list[str], keep: float,
          train_groups: str = "", threshold: float = 0.0) -> dict:
    import re

    d = np.load(feats)
    X, y, group, source = d["X"], d["y"], d["group"], d["source"]
    tr = np.isin(source, train_streams + train_nonspeech)
    if train_groups:  # part of a source, e.g. every other music track of the real recordings
        tr |= np.array([bool(re.fullmatch(train_groups, g)) for g in group])
    mean, std, w = fit(X[tr], y[tr])
    p = probability(X, mean, std, w)
    # the highest threshold that still lets `keep` of the training streams' speech segments through
    if not threshold:
        threshold = max(t for t in np.arange(0.05, 0.96, 0.01) if segments_reached(p[tr], y[tr], group[tr], t) >= keep)
    report = {}
    for s in sorted(set(source)):
        for part, m in (("trained on", (source == s) & tr), ("held out", (source == s) & ~tr)):
            if m.any():
                report[f"{s} ({part})"] = _scores(p, y, group, m, threshold)
    doc = {"names": list(NAMES), "mean": mean.tolist(), "std": std.tolist(), "weights": w.tolist(),
           "threshold": round(float(threshold), 2),
           "trained_on": {"speech": train_streams, "nonspeech": train_nonspeech, "groups": train_groups,
                          "windows": int(tr.sum()), "speech_windows": int((y[tr] == 1).sum())},
           "note": "windows the energy gate passed; " + (f"threshold set to {threshold}" if threshold else
                                                           f"threshold keeps >= {100 * keep:.0f} % of speech segments")}
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({"threshold": doc["threshold"], "per_source": report}, indent=1))
    return report


def _scores(p, y, group, m, threshold) -> dict:
    return {"windows": int(m.sum()),
            "speech_segments_reached": segments_reached(p[m], y[m], group[m], threshold) if (m & (y == 1)).any()
            else None,
            "nonspeech_windows_passed": float((p[m & (y == 0)] >= threshold).mean()) if (m & (y == 0)).any()
            else None}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("real")
    r.add_argument("--out", required=True)
    f = sub.add_parser("features")
    f.add_argument("--model")
    f.add_argument("--out", required=True)
    f.add_argument("--streams", nargs="*", default=[])
    f.add_argument("--nonspeech", nargs="*", default=[])
    t = sub.add_parser("train")
    t.add_argument("--features", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--train-streams", nargs="+", default=["stream-fold0", "stream-fold1", "stream-fold2"])
    t.add_argument("--train-nonspeech", nargs="+", default=["nonspeech-seed1"])
    t.add_argument("--keep", type=float, default=0.98, help="share of training speech segments to keep")
    t.add_argument("--train-groups", default="", help="regex of window groups (source:file) also trained on")
    t.add_argument("--threshold", type=float, default=0.0, help="P(voice) threshold (default: from --keep)")
    a = p.parse_args(argv)
    if a.cmd == "real":
        make_real(Path(a.out))
    elif a.cmd == "features":
        d = features(a.model, [Path(s) for s in a.streams], [Path(s) for s in a.nonspeech])
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        np.savez(a.out, **d)
        print(f"{len(d['y'])} windows ({int(d['y'].sum())} speech) -> {a.out}")
    else:
        train(Path(a.features), Path(a.out), a.train_streams, a.train_nonspeech, a.keep, a.train_groups, a.threshold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
