"""Whole-utterance features, computed once and cached: the raw material of crop training.

For every utterance we keep the log-mel frames of the whole recording (through edge.features, the
code the device runs) in several copies:

    copy 0            the clean recording
    copy 1            the same through a 4 kHz low-pass (the channel-shift evaluation; never trained on)
    copies 2 .. 1+n   waveform-augmented versions (other microphone, room, noise, speed, level)

Training then cuts windows out of these at any alignment, every epoch anew, instead of a fixed few
windows per utterance: a device's sliding window can sit anywhere on the speech.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge import features as F
from edge.adapt import SPEECH_RANGE_DB, speech_frames
from edge.audio import read_audio

from . import augment
from .corpora import Utterance
from .dataset import save_npz

CACHE_VERSION = 2


@dataclass
class Spectra:
    """Frames of all copies of all utterances, concatenated; `start[i, c]`..`start[i, c] + length[i, c]`
    are the rows of utterance i, copy c. `speech` marks the rows that count as speech."""

    frames: np.ndarray  # (total rows, bands) float16 log-mel (natural log of power)
    speech: np.ndarray  # (total rows,) bool
    start: np.ndarray  # (N, copies) int64
    length: np.ndarray  # (N, copies) int64

    def get(self, i: int, copy: int = 0) -> np.ndarray:
        s, n = self.start[i, copy], self.length[i, copy]
        return self.frames[s : s + n]

    def speech_mask(self, i: int, copy: int = 0) -> np.ndarray:
        s, n = self.start[i, copy], self.length[i, copy]
        return self.speech[s : s + n]

    @property
    def copies(self) -> int:
        return self.start.shape[1]


def device_augment(x: np.ndarray, rng: np.random.Generator, babble: list[np.ndarray]) -> np.ndarray:
    """Another microphone, room and level, keeping the speaker's loudness relative to their other
    utterances within +-6 dB (a device hears one speaker at a roughly stable distance)."""
    if rng.random() < 0.5:
        x = augment.speed(x, float(rng.choice([0.9, 0.95, 1.05, 1.1])))
    if rng.random() < 0.7:
        x = augment.recording_chain(x, rng, lowpass_hz=rng.uniform(3000, 8000) if rng.random() < 0.5 else None,
                                    highpass_hz=rng.uniform(100, 300) if rng.random() < 0.5 else None)
    if rng.random() < 0.35:
        x = augment.reverb(x, rng, rt60=rng.uniform(0.15, 0.7))
    if rng.random() < 0.7:
        x = augment.add_noise(x, rng, snr_db=rng.uniform(5, 30), kind=str(rng.choice(["white", "pink", "babble"])),
                              babble=babble)
    return augment.gain(x, rng.uniform(-6, 6))


def _one(args):
    path, seed, n_aug, cfg_json, babble_paths = args
    cfg = F.FeatureConfig.from_json(cfg_json)
    rng = np.random.default_rng(seed)
    x = read_audio(path)
    # a little faint noise before and after: a device never sees digital silence around speech
    pad = np.zeros(int(0.3 * cfg.samplerate), np.float32)
    x = np.concatenate([pad, x, pad])
    x = x + (rng.standard_normal(len(x)) * (np.max(np.abs(x)) + 1e-6) * 10 ** (-60 / 20)).astype(np.float32)
    babble = [read_audio(p) for p in babble_paths]
    versions = [x, augment.lowpass(x, 4000.0)] + [device_augment(x, rng, babble) for _ in range(n_aug)]
    out = []
    for v in versions:
        feat = F.features(v, cfg)
        out.append((feat.astype(np.float16), speech_frames(feat)))
    return out


def build(utts: list[Utterance], cfg: F.FeatureConfig, n_aug: int = 2, seed: int = 0, workers: int = 2,
          cache_dir: str | Path | None = "runs/cache", progress: bool = True) -> Spectra:
    """Compute (or load from the cache) every utterance's frames in 2 + n_aug copies."""
    key = hashlib.sha256(json.dumps([[u.path for u in utts], cfg.to_json(), n_aug, seed, CACHE_VERSION,
                                     SPEECH_RANGE_DB]).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"spectra-{key}.npz" if cache_dir else None
    if cache and cache.exists():
        d = np.load(cache)
        return Spectra(d["frames"], d["speech"], d["start"], d["length"])
    from .dataset import babble_partners, run_jobs

    jobs = [(u.path, seed * 100003 + i, n_aug, cfg.to_json(), others)
            for i, (u, others) in enumerate(zip(utts, babble_partners(utts, seed)))]
    results = run_jobs(_one, jobs, "spectra", workers, progress, chunksize=16)
    length = np.array([[len(f) for f, _ in r] for r in results], np.int64)
    start = np.concatenate([[0], np.cumsum(length.ravel())[:-1]]).reshape(length.shape)
    frames = np.concatenate([f for r in results for f, _ in r])
    speech = np.concatenate([s for r in results for _, s in r])
    sp = Spectra(frames, speech, start, length)
    if cache:
        save_npz(cache, frames=frames, speech=speech, start=start, length=length)
    return sp
