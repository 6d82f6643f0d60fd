"""A home's non-speech, regenerated from the package registries, and how often it gives emotion events.

    python tools/nonspeech.py make  --out runs/nonspeech [--floor white|brown]   # 44 min of 16 kHz WAVs
    python tools/nonspeech.py score --dir runs/nonspeech [--model M] [--config C.toml]
    python tools/nonspeech.py speech --stream runs/stream-fold0 [...]  # speech segments that pass the gate

`make` writes, from a fixed seed (nothing here is recorded audio, so nothing is committed but this script):
- music: generated MIDI pieces (chords, melody, bass, drums; piano, guitar, strings, organ, brass, choir
  "aahs", flute, saxophone, vibraphone, violin) rendered by fluidsynth with the FluidR3 General MIDI
  sound font (Debian: fluidsynth fluid-soundfont-gm);
- the freedesktop sound theme (Debian: sound-theme-freedesktop: bells, phone, alarm, dialogs; the spoken
  "front left" channel tests are speech and left out), with random pauses;
- household sounds synthesised here: mains hum, fridge, running tap, vacuum cleaner, kettle (rising boil,
  then whistle), door knocks and slams, cutlery clicks, a barking-like harmonic burst, white/pink/brown
  noise at three levels;
- mixtures (music with a vacuum cleaner, a tap with cutlery, ...).
Each file is set to a realistic level for a microphone a few metres away (RMS −45 … −20 dBFS), over
a −60 dBFS pink room floor (`--floor` another colour).

`score` runs the runtime's Pipeline at default settings (or a config's) over every file, as
`ser-edge run` would, and prints per kind: minutes, windows that passed the gate, emotion events
(starts) and events per hour. `speech` runs the same over a CV stream (tools/cv_stream.py make) and
prints the fraction of speech segments with at least one window that reached the model.
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge.audio import read_audio, write_wav  # noqa: E402

RATE = 16000
SOUND_FONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
THEME = Path("/usr/share/sounds/freedesktop/stereo")
ROOM_FLOOR_DBFS = -60.0  # pink noise under everything (the CV stream's pauses are at -60 dBFS too)


def at_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    """Scaled to an RMS of `dbfs` over its louder half (pauses do not count), clipped to ±1."""
    x = np.asarray(x, np.float64)
    blocks = x[: x.size // 1600 * 1600].reshape(-1, 1600)
    e = np.mean(blocks**2, axis=1)
    ref = np.sqrt(np.mean(e[e >= np.median(e)]) + 1e-20)
    return np.clip(x * 10 ** (dbfs / 20) / ref, -1, 1).astype(np.float32)


# ---------------------------------------------------------------- music: MIDI written here, fluidsynth
def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    while n > 0x7F:
        n >>= 7
        out.append(0x80 | (n & 0x7F))
    return bytes(reversed(out))


def midi_file(notes: list[tuple[float, float, int, int, int]], programs: dict[int, int], bpm: float) -> bytes:
    """A type-0 standard MIDI file: notes are (start_beat, length_beats, channel, key, velocity)."""
    tpb = 480
    ev = [(0, bytes([0xFF, 0x51, 0x03]) + int(60e6 / bpm).to_bytes(3, "big"))]
    ev += [(0, bytes([0xC0 | ch, prog])) for ch, prog in programs.items()]
    for start, length, ch, key, vel in notes:
        ev.append((int(start * tpb), bytes([0x90 | ch, key, vel])))
        ev.append((int((start + length) * tpb), bytes([0x80 | ch, key, 0])))
    ev.sort(key=lambda e: (e[0], e[1][0] & 0xF0 == 0x90))  # note-offs before note-ons at one tick
    track, last = b"", 0
    for tick, data in ev:
        track += _vlq(tick - last) + data
        last = tick
    track += b"\x00\xff\x2f\x00"
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, tpb) + b"MTrk" + struct.pack(">I", len(track)) + track


def compose(rng: np.random.Generator, seconds: float, lead: int, chords: int, drums: bool) -> bytes:
    """Chords on a I-V-vi-IV-like progression, a melody on the scale, a bass line, optional drums."""
    bpm = float(rng.uniform(70, 140))
    beats = int(seconds * bpm / 60)
    root = 48 + int(rng.integers(0, 12))
    scale = [0, 2, 4, 5, 7, 9, 11]
    prog = [[0, 4, 7], [7, 11, 14], [9, 12, 16], [5, 9, 12]]
    notes = []
    for bar in range(beats // 4):
        ch = prog[(bar + int(rng.integers(0, 2))) % 4]
        for k in ch:
            notes.append((bar * 4, 4, 1, root + k, 60))
        notes.append((bar * 4, 2, 2, root - 12 + ch[0], 80))
        notes.append((bar * 4 + 2, 2, 2, root - 12 + ch[0] + 7, 70))
        t = bar * 4.0
        while t < bar * 4 + 4:
            d = float(rng.choice([0.5, 0.5, 1, 1, 1.5, 2]))
            if rng.random() > 0.15:
                deg = int(rng.integers(0, 10))
                notes.append((t, d * 0.9, 0, root + 12 + scale[deg % 7] + 12 * (deg // 7), int(rng.integers(70, 110))))
            t += d
        if drums:
            for b in range(4):
                notes.append((bar * 4 + b, 0.25, 9, 36 if b % 2 == 0 else 38, 90))
                notes.append((bar * 4 + b + 0.5, 0.25, 9, 42, 60))
    return midi_file(notes, {0: lead, 1: chords, 2: 33}, bpm)


def render_music(rng, seconds: float, lead: int, chords: int, drums: bool, tmp: Path) -> np.ndarray:
    mid, wav = tmp / "piece.mid", tmp / "piece.wav"
    mid.write_bytes(compose(rng, seconds, lead, chords, drums))
    subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.7", "-r", str(RATE), "-F", str(wav), str(SOUND_FONT), str(mid)],
                   check=True, capture_output=True)
    return read_audio(wav)[: int(seconds * RATE)]


# ---------------------------------------------------------------- household sounds, synthesised
def coloured_noise(rng, n: int, colour: str) -> np.ndarray:
    """white, pink (1/f) or brown (1/f^2) noise, unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / RATE), 1.0)
    spec *= {"white": 1.0, "pink": f**-0.5, "brown": f**-1.0}[colour]
    x = np.fft.irfft(spec, n)
    return x / (np.std(x) + 1e-12)


def band(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(x.size, 1 / RATE)
    spec[(f < lo) | (f > hi)] = 0
    return np.fft.irfft(spec, x.size)


def harmonic(f0, n: int, partials=(1.0, 0.5, 0.3, 0.2), jitter=0.0, rng=None) -> np.ndarray:
    f = np.full(n, float(f0)) if np.isscalar(f0) else f0
    if jitter and rng is not None:
        f = f * (1 + jitter * np.cumsum(rng.standard_normal(n)) / np.sqrt(n))
    phase = 2 * np.pi * np.cumsum(f) / RATE
    return sum(a * np.sin((k + 1) * phase) for k, a in enumerate(partials))


def bursts(rng, seconds: float, make_one, gap=(0.3, 4.0)) -> np.ndarray:
    out = np.zeros(int(seconds * RATE))
    t = float(rng.uniform(0, gap[1]))
    while t < seconds:
        b = make_one()
        i = int(t * RATE)
        out[i : i + b.size] += b[: max(0, out.size - i)]
        t += b.size / RATE + float(rng.uniform(*gap))
    return out


def decay(n: int, tau_s: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (tau_s * RATE))


def household(rng, kind: str, seconds: float) -> np.ndarray:
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    if kind == "hum":  # mains transformer: 50 Hz and harmonics, a little wander
        return harmonic(50, n, (1, 0.6, 0.4, 0.3, 0.2, 0.1), 0.001, rng)
    if kind == "fridge":  # compressor: 100 Hz hum + low rumble, cycling on and off
        on = (np.sin(2 * np.pi * t / 40) > -0.3).astype(float)
        return on * (harmonic(100, n, (1, 0.3, 0.2)) + 0.5 * band(coloured_noise(rng, n, "brown"), 20, 400))
    if kind == "tap":  # running water: band noise with fast random flutter
        flutter = 1 + 0.3 * band(rng.standard_normal(n), 2, 30) / 0.1
        return band(coloured_noise(rng, n, "white"), 800, 7000) * np.clip(flutter, 0.2, 2)
    if kind == "vacuum":  # motor whine with harmonics over broadband roar, switched on and off
        whine = harmonic(np.full(n, 230.0) * (1 + 0.01 * np.sin(2 * np.pi * 0.2 * t)), n, (1, 0.7, 0.5, 0.4, 0.3))
        on = (np.sin(2 * np.pi * t / 30) > -0.6).astype(float)
        return on * (0.5 * whine + coloured_noise(rng, n, "pink"))
    if kind == "kettle":  # boil rising over 50 s, whistle sweeping up, then quiet
        out = np.zeros(n)
        for s0 in range(0, int(seconds), 70):
            m = min(n, int((s0 + 60) * RATE)) - int(s0 * RATE)
            if m <= 0:
                break
            tt = np.arange(m) / RATE
            boil = band(coloured_noise(rng, m, "pink"), 100, 5000) * np.clip(tt / 50, 0, 1) ** 2
            f = np.where(tt > 50, 1800 + 60 * (tt - 50), 1800)
            whistle = (tt > 50) * np.clip((tt - 50) / 2, 0, 1) * harmonic(f, m, (1, 0.2))
            out[int(s0 * RATE) : int(s0 * RATE) + m] = boil + 0.8 * whistle
        return out
    if kind == "door":  # knocks (three quick thumps) and slams (one loud low burst with a rattle)
        def one():
            if rng.random() < 0.5:
                k = band(rng.standard_normal(int(0.08 * RATE)), 60, 800) * decay(int(0.08 * RATE), 0.015)
                gap = np.zeros(int(0.15 * RATE))
                return np.concatenate([k, gap, k, gap, k])
            m = int(0.6 * RATE)
            return band(rng.standard_normal(m), 40, 2000) * decay(m, 0.08) * 3
        return bursts(rng, seconds, one, (1.0, 8.0))
    if kind == "cutlery":  # metal on porcelain: inharmonic high partials, very short
        def one():
            m = int(0.15 * RATE)
            f = rng.uniform(2500, 6000)
            return sum(np.sin(2 * np.pi * f * r * np.arange(m) / RATE) for r in (1, 1.47, 2.09)) * decay(m, 0.03)
        return bursts(rng, seconds, one, (0.1, 1.5))
    if kind == "bark":  # a dog-like bark: short harmonic burst, falling pitch, noisy onset
        def one():
            m = int(rng.uniform(0.15, 0.3) * RATE)
            f = np.linspace(rng.uniform(500, 800), rng.uniform(300, 450), m)
            env = np.sin(np.pi * np.arange(m) / m) ** 0.5
            b = env * (harmonic(f, m, (1, 0.8, 0.6, 0.4, 0.3)) + 0.3 * band(rng.standard_normal(m), 500, 4000))
            return np.concatenate([b, np.zeros(int(0.12 * RATE)), b * 0.8])
        return bursts(rng, seconds, one, (0.4, 5.0))
    if kind in ("white", "pink", "brown"):
        return coloured_noise(rng, n, kind)
    raise ValueError(kind)


def theme_sounds(rng, seconds: float) -> np.ndarray:
    files = sorted(p for p in THEME.glob("*.oga") if not p.name.startswith("audio-channel"))
    clips = [read_audio(p) for p in files]
    return bursts(rng, seconds, lambda: clips[int(rng.integers(0, len(clips)))], (1.0, 6.0))


# (name, kind, seconds, level dBFS); music rows: (name, "music", seconds, level, lead, chords, drums)
PLAN = [
    ("music-piano", "music", 120, -26, 0, 0, False), ("music-guitar", "music", 120, -28, 24, 25, True),
    ("music-strings", "music", 120, -26, 40, 48, False), ("music-organ", "music", 90, -28, 19, 16, False),
    ("music-brass", "music", 90, -24, 56, 61, True), ("music-choir", "music", 120, -26, 52, 53, False),
    ("music-flute", "music", 90, -28, 73, 0, False), ("music-sax", "music", 90, -24, 65, 4, True),
    ("music-vibes", "music", 90, -30, 11, 88, False), ("music-pop", "music", 120, -22, 80, 29, True),
    ("theme", "theme", 180, -26),
    ("hum", "hum", 90, -45), ("fridge", "fridge", 120, -40), ("tap", "tap", 120, -30),
    ("vacuum", "vacuum", 120, -20), ("kettle", "kettle", 140, -28), ("door", "door", 120, -24),
    ("cutlery", "cutlery", 90, -30), ("bark", "bark", 90, -22),
    ("noise-white-45", "white", 40, -45), ("noise-pink-35", "pink", 40, -35), ("noise-brown-25", "brown", 40, -25),
]
MIXES = [("mix-music-vacuum", ["music-pop", "vacuum"], [0, -4]), ("mix-tap-cutlery", ["tap", "cutlery"], [0, 0]),
         ("mix-piano-hum-door", ["music-piano", "hum", "door"], [0, -15, -2]),
         ("mix-choir-fridge-kettle", ["music-choir", "fridge", "kettle"], [0, -10, -3])]


def make(out: Path, seed: int = 0, floor_colour: str = "pink") -> dict:
    if not shutil.which("fluidsynth") or not SOUND_FONT.exists():
        sys.exit("nonspeech: needs fluidsynth and fluid-soundfont-gm (apt-get install fluidsynth fluid-soundfont-gm)")
    if not THEME.is_dir():
        sys.exit("nonspeech: needs sound-theme-freedesktop (apt-get install sound-theme-freedesktop)")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    made = {}
    with tempfile.TemporaryDirectory() as tmp:
        for row in PLAN:
            name, kind, seconds, level = row[:4]
            if kind == "music":
                x = render_music(rng, seconds, *row[4:], Path(tmp))
            elif kind == "theme":
                x = theme_sounds(rng, seconds)
            else:
                x = household(rng, kind, seconds)
            made[name] = at_level(x, level)
    for name, parts, gains in MIXES:
        n = min(made[p].size for p in parts)
        made[name] = np.clip(sum(made[p][:n] * 10 ** (g / 20) for p, g in zip(parts, gains)), -1, 1).astype(np.float32)
    for name, x in made.items():  # a room is never digitally silent: its floor, as in the CV stream
        floor = coloured_noise(rng, x.size, floor_colour) * 10 ** (ROOM_FLOOR_DBFS / 20)
        write_wav(out / f"{name}.wav", np.clip(x + floor, -1, 1).astype(np.float32))
    total = sum(x.size for x in made.values()) / RATE / 60
    print(f"{len(made)} files, {total:.1f} min in {out}")
    return {"files": len(made), "minutes": total}


# ---------------------------------------------------------------- scoring with the runtime's own pipeline
def pipeline(model=None, config=None):
    """The pipeline `ser-edge run` builds from this config (default settings without one)."""
    from edge import config as C
    from edge.service import load_model, make_pipeline

    cfg = C.load(config)
    if model:
        cfg = cfg.with_changes({"model": {"path": str(model)}})
    return make_pipeline(load_model(cfg), cfg, wall_start=0.0)


def run(pipe, x: np.ndarray):
    """(windows, events) of one recording, pushed in 100 ms chunks as a source would."""
    windows, events = [], []
    for i in range(0, x.size, 1600):
        o = pipe.push(x[i : i + 1600])
        windows += o.windows
        events += o.events
    o = pipe.finish()
    return windows + o.windows, events + o.events


def score(d: Path, model=None, config=None) -> dict:
    rows, total = {}, {"minutes": 0.0, "windows": 0, "passed": 0, "events": 0}
    for f in sorted(d.glob("*.wav")):
        x = read_audio(f)
        windows, events = run(pipeline(model, config), x)
        r = {"minutes": x.size / RATE / 60, "windows": len(windows),
             "passed": sum(w.speech for w in windows), "events": sum(e.type == "start" for e in events),
             "labels": sorted({e.emotion for e in events if e.type == "start"})}
        rows[f.stem] = r
        for k in total:
            total[k] += r[k]
    total["events_per_hour"] = total["events"] / (total["minutes"] / 60)
    total["passed_fraction"] = total["passed"] / max(1, total["windows"])
    return {"files": rows, "total": total}


def speech(stream: Path, model=None, config=None) -> dict:
    """Fraction of the stream's speech segments with a window that reached the model (its span overlaps
    the segment by ≥ 0.5 s or by half the segment)."""
    segments = json.loads((stream / "segments.json").read_text())["segments"]
    pipe = pipeline(model, config)
    windows, _ = run(pipe, read_audio(stream / "stream.wav"))
    ok = sum(segments_reached(segments, [w.offset_s for w in windows if w.speech], pipe.clf.meta.window_s))
    return {"segments": len(segments), "reached_model": ok, "fraction": ok / max(1, len(segments))}


def segments_reached(segments: list[dict], passed_ends, window_s: float) -> list[bool]:
    """Per segment: a window that reached the model (given by its end offset) overlaps it by >= 0.5 s or
    by half the segment."""
    spans = [(t - window_s, t) for t in passed_ends]
    out = []
    for s in segments:
        need = min(0.5, (s["end_s"] - s["start_s"]) / 2)
        out.append(any(min(b, s["end_s"]) - max(a, s["start_s"]) >= need for a, b in spans))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--out", required=True)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--floor", default="pink", choices=("white", "pink", "brown"),
                   help="the room floor's colour (the voice check was fitted over all three)")
    s = sub.add_parser("score")
    s.add_argument("--dir", required=True)
    sp = sub.add_parser("speech")
    sp.add_argument("--stream", required=True)
    for q in (s, sp):
        q.add_argument("--model")
        q.add_argument("--config")
        q.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if a.cmd == "make":
        make(Path(a.out), a.seed, a.floor)
        return 0
    if a.cmd == "score":
        r = score(Path(a.dir), a.model, a.config)
        if a.json:
            print(json.dumps(r))
            return 0
        print(f"{'file':26s} {'min':>5s} {'windows':>8s} {'passed':>7s} {'events':>7s}  labels")
        for name, x in r["files"].items():
            print(f"{name:26s} {x['minutes']:5.1f} {x['windows']:8d} {x['passed']:7d} {x['events']:7d}  "
                  f"{' '.join(x['labels'])}")
        t = r["total"]
        print(
            f"{'total':26s} {t['minutes']:5.1f} {t['windows']:8d} {t['passed']:7d} {t['events']:7d}  "
            f"= {t['events_per_hour']:.1f} events per hour, {t['passed_fraction']:.1%} of windows passed the gate"
        )
        return 0
    r = speech(Path(a.stream), a.model, a.config)
    print(
        json.dumps(r)
        if a.json
        else f"{r['reached_model']}/{r['segments']} speech segments reached the model ({r['fraction']:.1%})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
